/**
 * POST /drain on a real admin listener (issue 15, "a preStop that drains"),
 * beside a real Sluice on 127.0.0.1:0, wired as serve.ts wires it: the
 * admin endpoint and the signal handler share one cli/shutdown.ts, whose
 * drain is proxy.close() with the config's drain_delay and drain. What
 * SIGTERM does, POST /drain does: /readyz 503 at once, still accepting for
 * drain_delay, then the listener closes, open tunnels go on until they end
 * or the drain deadline. No sleeps: waits are on log lines and responses.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import type { DrainStatus } from '../../src/admin/server.js'
import { createShutdown, type Shutdown } from '../../src/cli/shutdown.js'
import { loadConfig, parseConfig, type Config } from '../../src/config/load.js'
import { adminFor, ask, type Admin } from '../helpers/admin.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, ending, rawConnect, roundTrip } from '../helpers/raw.js'
import { captureLogs, LOOPBACK_ALLOWED, sluiceFor, type Sluice } from '../helpers/sluice.js'
import { within } from '../helpers/wait.js'

const ADMIN = `version: 1\nadmin: { listen: 127.0.0.1:0 }\n${LOOPBACK_ALLOWED}`
let echo: Awaited<ReturnType<typeof startEchoServer>>
let dir = ''

before(async () => {
  echo = await startEchoServer()
  dir = await mkdtemp(join(tmpdir(), 'sluice-admin-drain-'))
})
after(async () => {
  await echo.close()
  await rm(dir, { recursive: true, force: true })
})

interface Drained {
  readonly s: Sluice
  readonly a: Admin
  readonly shutdown: Shutdown
  /** proxy.close()'s promise, once the drain has started. */
  closed (): Promise<void>
  readonly exits: NodeJS.Signals[]
}

/** A Sluice and its admin listener, POST /drain and signals going to one shutdown as in serve.ts. */
async function drainable (t: TestContext, yaml: string, config: Config = parseConfig(yaml, 'test.yaml')): Promise<Drained> {
  const s = await sluiceFor(t, yaml)
  let closing: Promise<void> | undefined
  const exits: NodeJS.Signals[] = []
  const shutdown = createShutdown({
    log: captureLogs().logger,
    timeouts: () => config.timeouts,
    drain: (drainMs, delayMs) => { closing = s.proxy.close(drainMs, delayMs) },
    exitNow: (signal) => { exits.push(signal) }
  })
  const a = await adminFor(t, s, config, { drain: (fields) => shutdown.request('admin', fields) })
  return {
    s,
    a,
    shutdown,
    exits,
    closed: async () => { assert.ok(closing !== undefined, 'the drain has not started'); await closing }
  }
}

/** A tunnel to the echo server through `port`, one round trip done; destroyed after the test. */
async function tunnel (t: TestContext, port: number): Promise<Awaited<ReturnType<typeof rawConnect>>> {
  const socket = await rawConnect(port)
  t.after(() => { socket.destroy() })
  assert.equal((await connectVia(port, `127.0.0.1:${echo.port}`, { socket })).status, 200)
  assert.equal(await roundTrip(socket, 'ping'), 'ping')
  return socket
}

describe('admin listener: POST /drain', () => {
  it('202 with the drain\'s timings; /readyz 503 at once; still accepting for drain_delay, then the listener closes; an open tunnel drains; a second POST restarts nothing', async (t) => {
    const d = await drainable(t, `${ADMIN}\ntimeouts: { drain_delay: 2s, drain: 10s }\n`)
    const held = await tunnel(t, d.s.port)
    assert.equal((await ask(`${d.a.url}/readyz`)).status, 200)

    const first = await ask(`${d.a.url}/drain`, { method: 'POST' })
    assert.equal(first.status, 202, first.text)
    assert.match(String(first.headers['content-type']), /^application\/json/)
    const body = JSON.parse(first.text) as DrainStatus
    assert.deepEqual({ ...body, started_at: '', accepting_until: '', deadline: '' },
      { state: 'draining', by: 'admin', started_at: '', drain_delay_ms: 2000, drain_ms: 10_000, accepting_until: '', deadline: '' })
    assert.equal(Date.parse(body.accepting_until) - Date.parse(body.started_at), 2000)
    assert.equal(Date.parse(body.deadline) - Date.parse(body.accepting_until), 10_000)
    assert.deepEqual([(await ask(`${d.a.url}/readyz`)).status, (await ask(`${d.a.url}/readyz`)).text], [503, 'draining\n'])

    // Within drain_delay: what a balancer sent before it saw the 503 still gets through.
    const late = await tunnel(t, d.s.port)
    assert.equal(d.s.logs.some(r => r.msg === 'shutting down: draining tunnels'), false, 'still within drain_delay')
    const again = await ask(`${d.a.url}/drain`, { method: 'POST' })
    assert.equal(again.status, 202)
    assert.deepEqual(JSON.parse(again.text), body, 'the same drain, not a new one')
    assert.equal(d.s.logs.filter(r => r.msg === 'not ready: still accepting for drain_delay').length, 1, 'proxy.close() ran once')

    await d.s.waitForLog(r => r.msg === 'shutting down: draining tunnels', 5000)
    await assert.rejects(rawConnect(d.s.port), { code: 'ECONNREFUSED' })
    assert.equal(await roundTrip(held, 'still'), 'still', 'the tunnel open before the drain drains')
    assert.equal(await roundTrip(late, 'late'), 'late', 'so does the one accepted during drain_delay')
    held.end()
    late.end()
    await within(d.closed(), 'the drain ends once the tunnels close', 10_000)
    const closes = d.s.logs.filter(r => r.msg === 'tunnel closed')
    assert.deepEqual(closes.map(r => r['close']).filter(c => c === 'shutdown'), [], 'no tunnel was cut')
  })

  it('a tunnel that does not end is closed at the drain deadline (close: "shutdown"), as after SIGTERM', async (t) => {
    const d = await drainable(t, `${ADMIN}\ntimeouts: { drain: 500ms }\n`)
    const held = await tunnel(t, d.s.port)
    const ends = ending(held, 10_000)
    assert.equal((await ask(`${d.a.url}/drain`, { method: 'POST' })).status, 202)
    await d.s.waitForLog(r => r.msg === 'drain deadline passed: closing remaining tunnels', 5000)
    assert.match(await ends, /^(eof|ECONNRESET)$/)
    assert.equal((await d.s.waitForLog(r => r.msg === 'tunnel closed'))['close'], 'shutdown')
    await within(d.closed(), 'the drain ends at its deadline', 10_000)
  })

  it('the OS signal after POST /drain is not a second signal; the one after that is', async (t) => {
    const d = await drainable(t, `${ADMIN}\ntimeouts: { drain_delay: 1s }\n`)
    assert.equal((await ask(`${d.a.url}/drain`, { method: 'POST' })).status, 202)
    d.shutdown.signal('SIGTERM')
    assert.deepEqual(d.exits, [], 'the kubelet\'s SIGTERM after the preStop changes nothing')
    d.shutdown.signal('SIGTERM')
    assert.deepEqual(d.exits, ['SIGTERM'])
    await within(d.closed(), 'the drain ends', 10_000)
  })

  it('GET /drain is 405 with Allow: POST; with a token, POST needs it (401) and starts nothing without it', async (t) => {
    const tokenFile = join(dir, 'admin.token')
    await writeFile(tokenFile, 's3cret\n')
    const file = join(dir, 'token.yaml')
    await writeFile(file, `version: 1\nadmin: { listen: 127.0.0.1:0, token_file: admin.token }\n${LOOPBACK_ALLOWED}`)
    const config = await loadConfig(file)
    const d = await drainable(t, `version: 1\n${LOOPBACK_ALLOWED}`, config)
    for (const method of ['GET', 'HEAD', 'PUT'] as const) {
      const r = await ask(`${d.a.url}/drain`, { method, token: 's3cret' })
      assert.deepEqual([r.status, r.headers['allow']], [405, 'POST'], method)
    }
    const refused = await ask(`${d.a.url}/drain`, { method: 'POST' })
    assert.equal(refused.status, 401)
    assert.match(String(refused.headers['www-authenticate']), /^Bearer /)
    assert.equal((await ask(`${d.a.url}/drain`, { method: 'POST', token: 'wrong' })).status, 401)
    assert.equal(d.shutdown.status(), undefined, 'no drain without the token')
    assert.equal((await ask(`${d.a.url}/readyz`)).status, 200)
    assert.equal((await ask(`${d.a.url}/drain`, { method: 'POST', token: 's3cret' })).status, 202)
    assert.equal((await ask(`${d.a.url}/readyz`)).status, 503)
    await within(d.closed(), 'the drain ends', 10_000)
  })
})
