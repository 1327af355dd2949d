/**
 * `sluice drain` against the built binary (issue 15, "a preStop that
 * drains"), as docker/k8s/deployment.yaml's preStop runs it: it starts the
 * server's drain with POST /drain and waits for the open tunnels to end;
 * the SIGTERM that follows (the kubelet's, once the hook returns) is then
 * the server's first signal and changes nothing: it exits 0 when the drain
 * is over, not 1. The same under --workers 2, where the primary serves the
 * admin listener.
 *
 * Runs against dist/, so `npm run test:cli` builds first.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ask } from '../helpers/admin.js'
import { assertBuilt, killCliChildren, runCli, serveCli, type Served } from '../helpers/cli.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, rawConnect, roundTrip } from '../helpers/raw.js'

const TOKEN = 'drain-test-token'
let dir = ''
let tokenFile = ''
let echo: Awaited<ReturnType<typeof startEchoServer>>

before(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'sluice-cli-drain-'))
  tokenFile = join(dir, 'admin.token')
  await writeFile(tokenFile, `${TOKEN}\n`)
  echo = await startEchoServer()
})
after(async () => {
  killCliChildren()
  await echo?.close()
  await rm(dir, { recursive: true, force: true })
})

/**
 * A config with a token and a drain_delay long enough that the server is
 * still draining when the test signals it after `sluice drain` returned.
 */
async function configFile (name: string, drainDelay: string): Promise<string> {
  const file = join(dir, name)
  await writeFile(file, `version: 1
listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0, token_file: admin.token }
timeouts: { drain_delay: ${drainDelay}, drain: 20s }
rules:
  - { name: loopback, action: allow, ips: [127.0.0.0/8] }
`)
  return file
}

async function adminUrl (s: Served): Promise<string> {
  return `http://${String((await s.waitForLog(l => l.msg === 'admin listening'))['address'])}`
}

/** `sluice drain` runs: bounded well above its own --timeout. */
const drainCli = async (args: readonly string[]): ReturnType<typeof runCli> => await runCli(['drain', ...args], { timeoutMs: 40_000 })

describe('sluice drain', { timeout: 90_000 }, () => {
  it('starts the drain, waits for the open tunnel to end, exits 0; the SIGTERM after it is not a second signal (exit 0)', async () => {
    const s = await serveCli(['--config', await configFile('one.yaml', '10s')])
    const url = await adminUrl(s)
    const held = await rawConnect(s.port)
    held.on('error', () => {})
    assert.equal((await connectVia(s.port, `127.0.0.1:${echo.port}`, { socket: held })).status, 200)
    assert.equal(await roundTrip(held, 'ping'), 'ping')

    // Without the token the admin listener refuses, and nothing starts.
    const refused = await drainCli(['--admin', url])
    assert.equal(refused.code, 1, refused.stderr)
    assert.match(refused.stderr, /POST http:\/\/127\.0\.0\.1:\d+\/drain answered 401/)
    assert.equal((await ask(`${url}/readyz`)).status, 200)

    // A short --timeout: the tunnel is still open when it passes (it counted it), and it still exits 0.
    const short = await drainCli(['--admin', url, '--token-file', tokenFile, '--timeout', '1s'])
    assert.equal(short.code, 0, short.stderr)
    assert.match(short.stdout, /^draining since \S+ \(by admin\): accepting until \S+, open tunnels closed at \S+$/m)
    assert.match(short.stdout, /stopped waiting after 1000 ms: 1 tunnel still open/)
    await s.waitForLog(l => l.msg === 'drain asked for on the admin listener: graceful shutdown')
    assert.deepEqual([(await ask(`${url}/readyz`)).status, (await ask(`${url}/readyz`)).text], [503, 'draining\n'])

    // What the preStop runs: the drain already running, it waits for the tunnel.
    let waited = false
    const running = drainCli(['--admin', url, '--token-file', tokenFile, '--timeout', '30s']).finally(() => { waited = true })
    assert.equal(waited, false)
    assert.equal(await roundTrip(held, 'still'), 'still', 'the tunnel works during the drain')
    held.end()
    await s.waitForLog(l => l.msg === 'tunnel closed')
    const done = await running
    assert.equal(done.code, 0, done.stderr)
    assert.match(done.stdout, /\(by admin\)/)
    assert.match(done.stdout, /^drained: no tunnel open$/m)
    assert.equal(s.logs.filter(l => l.msg === 'not ready: still accepting for drain_delay').length, 1, 'one drain, started once')

    // A reload signal during the drain (systemctl reload, a stray HUP) is ignored, not Node's default exit.
    s.child.kill('SIGHUP')
    await s.waitForLog(l => l.msg === 'SIGHUP ignored: draining')
    // The kubelet's SIGTERM once the hook has returned.
    assert.equal(s.child.exitCode, null, 'the server should still be in its drain_delay (10 s); a machine this slow needs a longer one')
    s.child.kill('SIGTERM')
    await s.waitForLog(l => l.msg === 'signal received: already draining')
    assert.deepEqual(await s.exited(20_000), { code: 0, signal: null }, s.stderr())
    assert.equal(s.logs.some(l => l.msg === 'second signal: exiting now'), false)
  })

  it('--workers 2: the primary drains its workers on POST /drain, and its SIGTERM after it changes nothing (exit 0)', async () => {
    const s = await serveCli(['--config', await configFile('workers.yaml', '6s'), '--workers', '2'])
    const url = await adminUrl(s)
    await s.waitForLog(() => s.logs.filter(l => l.msg === 'sluice listening').length === 2)
    const done = await drainCli(['--admin', url, '--token-file', tokenFile, '--timeout', '20s'])
    assert.equal(done.code, 0, done.stderr)
    assert.match(done.stdout, /^drained: no tunnel open$/m)
    const started = await s.waitForLog(l => l.msg === 'drain asked for on the admin listener: graceful shutdown')
    assert.equal(started['worker'], 'primary')
    await s.waitForLog(() => s.logs.filter(l => l.msg === 'drain asked for by the primary: graceful shutdown').length === 2)
    assert.equal((await ask(`${url}/readyz`)).status, 503)

    assert.equal(s.child.exitCode, null, 'the workers should still be in their drain_delay (6 s)')
    s.child.kill('SIGTERM')
    const again = await s.waitForLog(l => l.msg === 'signal received: already draining')
    assert.equal(again['worker'], 'primary')
    assert.deepEqual(await s.exited(20_000), { code: 0, signal: null }, s.stderr())
    assert.equal(s.logs.some(l => /^second signal/.test(l.msg)), false)
  })

  it('exit 1 when nothing listens at --admin; 2 for bad usage', async () => {
    const server = createServer()
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as { port: number }
    server.close()
    await once(server, 'close')
    const none = await drainCli(['--admin', `http://127.0.0.1:${port}`, '--timeout', '1s'])
    assert.equal(none.code, 1)
    assert.match(none.stderr, /cannot reach the admin listener at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/)

    for (const [args, message] of [
      [['--admin', '127.0.0.1:9090'], /--admin must be the admin listener's http:\/\/HOST:PORT/],
      [['--timeout', 'soon'], /--timeout must be a duration/],
      [['--token-file', tokenFile, '--token-env', 'X'], /not both/],
      [['--token-env', 'SLUICE_TEST_UNSET_TOKEN'], /environment variable SLUICE_TEST_UNSET_TOKEN is not set/],
      [['--token-file', join(dir, 'missing.token')], /cannot read --token-file .*ENOENT/],
      [['--listen', '127.0.0.1:0'], /option '--listen' does not apply to 'drain'/]
    ] as const) {
      const r = await drainCli(args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, message)
    }
  })
})
