/**
 * `sluice serve`'s reload path, in-process (issues 13, 14): a config file on
 * disk, loadConfig, createProxy, and createReloader watching the files the
 * config names, its apply calling proxy.reload. For tests of what a reload
 * changes (certificates, upstream TLS settings).
 */
import assert from 'node:assert/strict'
import { rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { createReloader } from '../../src/config/reloader.js'
import { createProxy, loadConfig, type Config } from '../../src/index.js'
import { captureLogs, type LogCapture } from './sluice.js'

let seq = 0

/** Replace `file` by rename, as a certificate manager does. */
export async function replaceFile (file: string, text: string): Promise<void> {
  const tmp = `${file}.new-${++seq}`
  await writeFile(tmp, text)
  await rename(tmp, file)
}

/** Serve `yaml` (without `version:`) from a file in `dir`, reloaded on change; closed after the test. Listeners on port 0. */
export async function serveFile (t: Pick<TestContext, 'after'>, dir: string, yaml: string, opts: { ticketKeys?: Buffer } = {}): Promise<LogCapture & { port: number, file: string }> {
  const file = join(dir, `sluice-${++seq}.yaml`)
  await writeFile(file, `version: 1\n${yaml}`)
  let current: Config = await loadConfig(file)
  const capture = captureLogs()
  const proxy = createProxy({ config: current, logger: capture.logger, listen: current.listen.map(l => ({ ...l, port: 0 })), ...opts })
  const [addr] = await proxy.listen()
  const reloader = createReloader({
    file,
    watchFiles: current.files,
    log: capture.logger,
    currentHash: () => current.hash,
    apply: (next) => { current = next; proxy.reload(next) }
  })
  t.after(async () => {
    reloader.close()
    await proxy.close(0)
  })
  assert.ok(addr !== undefined)
  return { ...capture, port: addr.port, file }
}
