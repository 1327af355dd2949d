/**
 * `sluice serve --workers 2` with an HTTPS proxy listener, the built binary
 * (issue 13: "Session resumption works, including across --workers: share
 * the ticket keys"). The primary hands every worker the same ticket keys
 * (cli/cluster.ts), so a session ticket from one worker resumes on the
 * other. `--scheduling rr` makes the primary deal connections to the
 * workers in turn, so both are seen to resume; each worker watches the
 * certificate files and reloads them itself.
 *
 * Runs against dist/, so `npm run test:cli` builds first.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { ConnectionOptions } from 'node:tls'
import { assertBuilt, killCliChildren, serveCli, type LogLine, type Served } from '../helpers/cli.js'
import { startEchoServer } from '../helpers/origin.js'
import { clientOf, connectVia, roundTrip } from '../helpers/raw.js'
import { makeCert } from '../helpers/tls.js'
import { tlsClient, tlsListenYaml, writeListenerFiles, type ListenerFiles } from '../helpers/tls-listener.js'

let dir = ''
let files: ListenerFiles
let echo: Awaited<ReturnType<typeof startEchoServer>>

before(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'sluice-tls-workers-'))
  files = await writeListenerFiles(dir)
  echo = await startEchoServer()
})
after(async () => {
  killCliChildren()
  await echo?.close()
  await rm(dir, { recursive: true, force: true })
})

/** Once `n` lines match `pred` (bounded): all of them. */
async function lines (s: Served, pred: (l: LogLine) => boolean, n: number): Promise<LogLine[]> {
  await s.waitForLog(() => s.logs.filter(pred).length >= n)
  return s.logs.filter(pred)
}

interface Tunneled {
  readonly reused: boolean
  /** The worker whose `tunnel closed` line it is. */
  readonly worker: unknown
  /** The SHA-256 fingerprint of the certificate shown ('' on a resumed session: node:tls's client has none then). */
  readonly served: string
  ticket (): Promise<Buffer>
}

/** TLS to the listener, CONNECT to the echo server, a round trip, close; once its `tunnel closed` line is in. */
async function tunnel (s: Served, opts: Partial<ConnectionOptions> = {}): Promise<Tunneled> {
  const { socket, ticket } = await tlsClient(s.port, files.ca, opts)
  const reused = socket.isSessionReused()
  const served = socket.getPeerCertificate().fingerprint256 ?? ''
  const res = await connectVia(0, `127.0.0.1:${echo.port}`, { socket: socket as unknown as Socket })
  assert.equal(res.status, 200)
  assert.equal(await roundTrip(res.socket, 'which worker?'), 'which worker?')
  // Read now: a closed socket no longer knows its port.
  const client = clientOf(socket)
  socket.end()
  const rec = await s.waitForLog(l => l.msg === 'tunnel closed' && l['client'] === client)
  assert.equal(rec['status'], 200)
  return { reused, worker: rec['worker'], served, ticket }
}

/** Replace `file` by rename, as a certificate manager does. */
async function replace (file: string, text: string): Promise<void> {
  await writeFile(`${file}.new`, text)
  await rename(`${file}.new`, file)
}

describe('sluice serve --workers 2: an HTTPS proxy listener', { timeout: 60_000 }, () => {
  it('every connection resumes the first one\'s session, whichever worker accepts it; after a certificate reload too', async () => {
    const config = join(dir, 'sluice.yaml')
    await writeFile(config, `version: 1\n${tlsListenYaml(files)}timeouts: { drain: 300ms }\nrules:\n  - { name: loopback, action: allow, ips: [127.0.0.0/8] }\n`)
    const s = await serveCli(['--config', config, '--workers', '2', '--scheduling', 'rr', '--log-level', 'info'])
    const listening = await lines(s, l => l.msg === 'sluice listening', 2)
    assert.deepEqual(new Set(listening.map(l => JSON.stringify(l['listen']))).size, 1, 'both workers share the one port')

    const first = await tunnel(s)
    assert.equal(first.reused, false)
    const session = await first.ticket()
    const resumed = []
    for (let i = 0; i < 6; i++) resumed.push(await tunnel(s, { session }))
    assert.deepEqual(resumed.map(r => r.reused), Array(6).fill(true), 'every connection resumed the first session')
    assert.equal(new Set(resumed.map(r => r.worker)).size, 2, `both workers resumed it: ${JSON.stringify(resumed.map(r => r.worker))}`)

    // A new certificate, renamed into place: each worker reloads it; new connections get it from either.
    // The primary's one line for the attempt comes once both workers have applied it (issue 15).
    const b = await makeCert({ names: ['localhost', 'b.test'] })
    await replace(files.key, b.key)
    await replace(files.cert, b.cert)
    await s.waitForLog(l => l.msg === 'configuration reloaded' && (l['workers'] as { applied?: number } | undefined)?.applied === 2)
    const fresh = [await tunnel(s), await tunnel(s)]
    assert.deepEqual(fresh.map(f => f.served), Array(2).fill(new X509Certificate(b.cert).fingerprint256))
    assert.equal(new Set(fresh.map(f => f.worker)).size, 2)
    // The keys outlive the reload: the first session still resumes on both workers.
    const again = [await tunnel(s, { session }), await tunnel(s, { session })]
    assert.deepEqual(again.map(r => r.reused), [true, true])
    assert.equal(new Set(again.map(r => r.worker)).size, 2)

    s.child.kill('SIGTERM')
    assert.equal((await s.exited()).code, 0)
  })
})
