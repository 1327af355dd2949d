/**
 * One reload line for the whole cluster (issue 15, "Reloads an operator can
 * follow": every attempt ends in exactly one line, and /config and the
 * metrics show the same). The built binary with `--workers 2`: a SIGHUP with
 * the file as it is, a new file renamed into place (the primary's watcher),
 * and an invalid one each end in exactly one line on the log, which counts
 * both workers; both workers serve the new rules once the line is out; the
 * admin listener's /config and /metrics count each attempt once.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { ConfigView } from '../../src/admin/config-view.js'
import { M } from '../../src/observability/metrics.js'
import { ask, askJson } from '../helpers/admin.js'
import { assertBuilt, killCliChildren, serveCli, type LogLine, type Served } from '../helpers/cli.js'
import { sample } from '../helpers/metrics.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, finish } from '../helpers/raw.js'

let dir = ''
let echo: Awaited<ReturnType<typeof startEchoServer>>

before(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'sluice-reload-workers-'))
  echo = await startEchoServer()
})
after(async () => {
  killCliChildren()
  await echo?.close()
  await rm(dir, { recursive: true, force: true })
})

const config = (rule: string): string => `version: 1
listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0 }
timeouts: { drain: 2s }
rules:
  - { name: ${rule}, action: allow, ips: [127.0.0.0/8] }
`

/** Replace the file by rename, as editors and config managers do: the watcher loads it at once. */
async function replace (file: string, text: string): Promise<void> {
  await writeFile(`${file}.new`, text)
  await rename(`${file}.new`, file)
}

/** Bound on one attempt's line: the primary waits up to 10 s for the workers (a failure bound, not synchronisation). */
const LINE_MS = 15_000

const UNCHANGED = 'configuration unchanged'
const RELOADED = 'configuration reloaded'
const REJECTED = 'reload rejected: keeping the running configuration'

/** The rule each of two tunnels was decided by, and the worker that served it. */
async function twoTunnels (s: Served): Promise<Array<{ rule: unknown, worker: unknown }>> {
  const out = []
  for (let i = 0; i < 2; i++) {
    const res = await connectVia(s.port, `127.0.0.1:${echo.port}`)
    assert.equal(res.status, 200)
    await finish(res.socket)
    const line = await s.waitForLog(l => l.msg === 'tunnel closed' && l['client'] === res.client)
    out.push({ rule: line['rule'], worker: line['worker'] })
  }
  return out
}

describe('sluice serve --workers 2: one line per reload attempt', { timeout: 60_000 }, () => {
  it('SIGHUP unchanged, a new file, a bad file: one line each, counting both workers; /config and /metrics agree', async () => {
    const file = join(dir, 'sluice.yaml')
    await writeFile(file, config('first'))
    const s = await serveCli(['--config', file, '--workers', '2', '--scheduling', 'rr', '--log-level', 'info'])
    await s.waitForLog(() => s.logs.filter(l => l.msg === 'sluice listening').length === 2, LINE_MS)
    const admin = `http://${String((await s.waitForLog(l => l.msg === 'admin listening'))['address'])}`
    const started = String(s.logs.find(l => l.msg === 'sluice listening')?.['hash'])
    const lastReload = async (): Promise<NonNullable<ConfigView['last_reload']>> => {
      const { status, body } = await askJson<ConfigView>(`${admin}/config`)
      assert.equal(status, 200)
      assert.ok(body.last_reload !== null)
      return body.last_reload
    }
    const reloads = async (result: string): Promise<number | undefined> =>
      sample((await ask(`${admin}/metrics`)).text, M.reloads, { result })

    // 1. SIGHUP, the file as it is.
    s.child.kill('SIGHUP')
    const unchanged = await s.waitForLog(l => l.msg === UNCHANGED, LINE_MS)
    assert.equal(unchanged['worker'], 'primary')
    assert.equal(unchanged['hash'], started)
    assert.deepEqual(unchanged['workers'], { applied: 0, unchanged: 2, rejected: 0, no_answer: 0 })
    assert.equal(unchanged['level'], 'info', 'the workers agree')
    const { at: _at, ...first } = await lastReload()
    assert.deepEqual(first, { why: 'SIGHUP', result: 'unchanged', hash: started, workers: unchanged['workers'] })
    assert.equal(await reloads('unchanged'), 1)

    // 2. A new file, renamed into place: the primary's watcher starts the attempt.
    await replace(file, config('second'))
    const reloaded = await s.waitForLog(l => l.msg === RELOADED, LINE_MS)
    assert.equal(reloaded['previous_hash'], started)
    assert.notEqual(reloaded['hash'], started)
    assert.deepEqual(reloaded['workers'], { applied: 2, unchanged: 0, rejected: 0, no_answer: 0 })
    // The line comes once both workers run it: round-robin, the next two tunnels are one on each.
    const served = await twoTunnels(s)
    assert.deepEqual(served.map(t => t.rule), ['second', 'second'])
    assert.equal(new Set(served.map(t => t.worker)).size, 2)
    assert.equal((await lastReload()).hash, reloaded['hash'])
    assert.equal(await reloads('applied'), 1)

    // 3. An invalid file: rejected by all, the running rules stay.
    await replace(file, 'version: 1\nrules:\n  - { name: bad, action: maybe }\n')
    const rejected = await s.waitForLog(l => l.msg === REJECTED, LINE_MS)
    assert.equal(rejected['hash'], reloaded['hash'])
    assert.deepEqual(rejected['workers'], { applied: 0, unchanged: 0, rejected: 2, no_answer: 0 })
    assert.ok(Array.isArray(rejected['problems']) && rejected['problems'].length > 0)
    const last = await lastReload()
    assert.deepEqual([last.result, last.hash, last.workers], ['rejected', reloaded['hash'], rejected['workers']])
    assert.equal(await reloads('rejected'), 1)
    assert.equal(sample((await ask(`${admin}/metrics`)).text, M.lastReloadSuccess), 0)

    s.child.kill('SIGTERM')
    assert.equal((await s.exited(10_000)).code, 0)
    // Every line is out now: exactly one per attempt, from the primary.
    const count = (msg: string): LogLine[] => s.logs.filter(l => l.msg === msg)
    assert.deepEqual([count(UNCHANGED).length, count(RELOADED).length, count(REJECTED).length], [1, 1, 1],
      JSON.stringify(s.logs.filter(l => [UNCHANGED, RELOADED, REJECTED].includes(l.msg))))
  })
})
