/**
 * The built binary (`node dist/cli.js`), as an operator runs it: usage and
 * config errors (exit 2), serving with the startup log line, graceful
 * shutdown on SIGTERM (drain, then exit 0), a second signal (exit 1 at
 * once), and the shipped default policy.
 *
 * Runs against dist/, so `npm run test:cli` builds first.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { assertBuilt, CLI, killCliChildren, ROOT, runCli as run, serveCli as serve, WAIT_MS, type LogLine, type Served } from '../helpers/cli.js'
import { within } from '../helpers/wait.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, ending, request, roundTrip } from '../helpers/raw.js'

const PKG = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

/** "Promptly": far below any drain deadline used here (30 s). */
const PROMPT_MS = 3000

/** Open a tunnel through `proxyPort` to the echo server and prove it carries bytes. */
async function openTunnel (proxyPort: number, echoPort: number): Promise<Socket> {
  const res = await connectVia(proxyPort, `127.0.0.1:${echoPort}`)
  assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
  assert.equal(res.rest.length, 0)
  assert.equal(await roundTrip(res.socket, 'ping'), 'ping')
  return res.socket
}

before(assertBuilt)

describe('sluice CLI: usage', () => {
  it('--help exits 0 and prints the usage', async () => {
    const r = await run(['--help'])
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^Usage:\s/)
    assert.match(r.stdout, /--listen HOST:PORT/)
    assert.equal(r.stderr, '')
  })

  it('--version exits 0 and prints package.json\'s version', async () => {
    const r = await run(['--version'])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, `${PKG.version}\n`)
    assert.equal(r.stderr, '')
  })

  it('--bogus exits 2 with one line naming the option and a pointer to --help, not the whole help', async () => {
    const r = await run(['--bogus'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    assert.equal(r.stderr, "sluice: unknown option '--bogus'\nsee 'sluice --help'\n")
  })

  it('a near miss gets a "did you mean": options and commands', async () => {
    const cases: ReadonlyArray<readonly [string[], string]> = [
      [['--lisen', '127.0.0.1:0'], "sluice: unknown option '--lisen' (did you mean '--listen'?)"],
      [['check', '--jsn', 'a.test:443'], "sluice: unknown option '--jsn' (did you mean '--json'?)"],
      [['valdate', 'x.yaml'], "sluice: unknown command 'valdate' (did you mean 'validate'?)"],
      [['frobnicate'], "sluice: unknown command 'frobnicate'"],
      [['-x'], "sluice: unknown option '-x'"]
    ]
    for (const [args, line] of cases) {
      const r = await run(args)
      assert.equal(r.code, 2, args.join(' '))
      assert.equal(r.stdout, '')
      assert.equal(r.stderr, `${line}\nsee 'sluice --help'\n`, args.join(' '))
    }
  })

  it('an option without its value, or one that does not apply: one line each', async () => {
    const missing = await run(['--listen'])
    assert.equal(missing.code, 2)
    assert.match(missing.stderr, /^sluice: option '-l, --listen <value>' argument missing\nsee 'sluice --help'\n$/)
    const strict = await run(['check', '--strict', 'a.test:443'])
    assert.equal(strict.code, 2)
    assert.equal(strict.stderr, "sluice: option '--strict' does not apply to 'check'\nsee 'sluice --help'\n")
  })

  it('--help documents validate --strict', async () => {
    const r = await run(['--help'])
    assert.match(r.stdout, /sluice validate \[--strict\] FILE\.\.\./)
    assert.match(r.stdout, /--strict {13}warnings are errors too \(exit 2\)/)
  })

  it('--log-level loud exits 2', async () => {
    const r = await run(['--log-level', 'loud'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    assert.match(r.stderr, /^sluice: --log-level must be one of .*got 'loud'\nsee 'sluice --help'\n$/)
  })

  it('--listen nonsense exits 2', async () => {
    const r = await run(['--listen', 'nonsense'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    assert.match(r.stderr, /^sluice: --listen must be HOST:PORT, got 'nonsense'/)
  })

  it('an invalid config exits 2 and lists every problem with its path', async () => {
    const r = await run(['--config', 'test/fixtures/bad.yaml', '--listen', '127.0.0.1:0'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '', 'nothing is served, so nothing is logged')
    assert.match(r.stderr, /^sluice: test\/fixtures\/bad\.yaml: invalid configuration\n/)
    assert.match(r.stderr, /test\/fixtures\/bad\.yaml:4: rules\[0\]\.ports\[0\]: expected a port 1-65535/)
    assert.match(r.stderr, /test\/fixtures\/bad\.yaml:3: \(top level\): unknown key 'bogus'/)
    assert.doesNotMatch(r.stderr, /Usage:/, 'a config error is not a usage error: no help')
  })
})

describe('sluice CLI: serving and signals', () => {
  let echo: Awaited<ReturnType<typeof startEchoServer>>
  const sockets = new Set<Socket>()

  before(async () => {
    echo = await startEchoServer()
  })

  after(async () => {
    for (const s of sockets) s.destroy()
    killCliChildren()
    await echo.close()
  })

  /** Serve with `fixture`, open one tunnel through it, SIGTERM: resolves once it is draining that one tunnel. */
  async function drainingOneTunnel (fixture: string): Promise<{ s: Served, shutting: LogLine, ended: Promise<string> }> {
    const s = await serve(['--config', fixture, '--listen', '127.0.0.1:0'])
    const client = await openTunnel(s.port, echo.port)
    sockets.add(client)
    const ended = ending(client)

    s.child.kill('SIGTERM')
    const shutting = await s.waitForLog(l => l.msg === 'shutting down: draining tunnels')
    assert.equal(shutting['tunnels'], 1)
    return { s, shutting, ended }
  }

  it('SIGTERM with an open tunnel: warns at the drain deadline, closes the tunnel, exits 0', async () => {
    const { s, shutting, ended } = await drainingOneTunnel('test/fixtures/loopback.yaml')
    assert.equal(shutting['drain_ms'], 300)
    const warn = await s.waitForLog(l => l.msg === 'drain deadline passed: closing remaining tunnels')
    assert.equal(warn['level'], 'warn')
    assert.equal(warn['tunnels'], 1)

    assert.ok(['eof', 'ECONNRESET'].includes(await ended), 'the client sees its tunnel end')
    const closed = await s.waitForLog(l => l.msg === 'tunnel closed')
    assert.equal(closed['status'], 200)
    assert.equal(closed['target'], `127.0.0.1:${echo.port}`)
    assert.equal(closed['closed_by'], 'proxy')
    assert.equal(closed['close'], 'shutdown')
    assert.equal(closed['bytes_up'], 4)
    assert.equal(closed['bytes_down'], 4)

    const exit = await s.exited()
    assert.deepEqual(exit, { code: 0, signal: null }, s.stderr())
    await s.waitForLog(l => l.msg === 'shut down')
  })

  it('serve --listen 0.0.0.0 without auth logs the open-proxy warning at start-up', async () => {
    // Bound for an instant and signalled at once; nothing is sent anywhere.
    const s = await serve(['--listen', '0.0.0.0:0'], '0.0.0.0')
    const warning = await s.waitForLog(l => l.msg === 'configuration warning (see sluice validate)')
    assert.equal(warning['level'], 'warn')
    assert.match(String(warning['warning']), /listener '0\.0\.0\.0:0' is reachable beyond loopback with no auth section.*open proxy/)
    s.child.kill('SIGTERM')
    assert.deepEqual(await s.exited(), { code: 0, signal: null }, s.stderr())
  })

  it('exits on SIGTERM when its stdout reader is gone (a broken log pipe does not hang shutdown)', async () => {
    const child = spawn(process.execPath, [CLI, '--listen', '127.0.0.1:0'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    try {
      // The first line says it is up; then the reader goes away, as `sluice | head -1` does.
      await once(child.stdout, 'data')
      child.stdout.destroy()
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      const [code] = await within(exited, 'sluice exits after SIGTERM with stdout broken', WAIT_MS) as [number | null]
      assert.equal(code, 0)
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('the shipped default policy on loopback logs no configuration warning', async () => {
    const s = await serve(['--listen', '127.0.0.1:0'])
    s.child.kill('SIGTERM')
    assert.deepEqual(await s.exited(), { code: 0, signal: null }, s.stderr())
    assert.deepEqual(s.logs.filter(l => l.msg === 'configuration warning (see sluice validate)'), [])
  })

  it('SIGTERM with no tunnels exits 0 promptly, not after the drain deadline', async () => {
    // drain is 30 s in this fixture: an idle proxy must not wait for it.
    // The signal goes out as soon as 'sluice listening' is read, as a
    // supervisor would send it: the process must already handle it then.
    const s = await serve(['--config', 'test/fixtures/loopback-long-drain.yaml', '--listen', '127.0.0.1:0'])
    const started = performance.now()
    s.child.kill('SIGTERM')
    const exit = await s.exited(PROMPT_MS)
    assert.deepEqual(exit, { code: 0, signal: null }, s.stderr())
    assert.ok(performance.now() - started < PROMPT_MS)
    const shutting = await s.waitForLog(l => l.msg === 'shutting down: draining tunnels')
    assert.equal(shutting['tunnels'], 0)
    assert.equal(s.logs.some(l => l.msg === 'drain deadline passed: closing remaining tunnels'), false)
  })

  it('a second SIGTERM during a long drain exits at once with code 1', async () => {
    const { s, shutting, ended } = await drainingOneTunnel('test/fixtures/loopback-long-drain.yaml')
    assert.equal(shutting['drain_ms'], 30_000)
    const started = performance.now()
    s.child.kill('SIGTERM')
    const exit = await s.exited(PROMPT_MS)
    assert.deepEqual(exit, { code: 1, signal: null }, s.stderr())
    assert.ok(performance.now() - started < PROMPT_MS)
    assert.ok(['eof', 'ECONNRESET'].includes(await ended), 'the client sees its tunnel end when the process exits')
  })

  it('without --config the shipped default policy applies: loopback and non-443 ports are refused', async () => {
    const s = await serve(['--listen', '127.0.0.1:0'])
    const acceptedBefore = echo.accepted()
    const listening = await s.waitForLog(l => l.msg === 'sluice listening')
    assert.equal(listening['config'], fileURLToPath(new URL('../../policies/default.yaml', import.meta.url)))

    // Not port 443: no rule allows it, the default denies it.
    const r1 = await request(s.port, `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`)
    r1.socket.destroy()
    assert.equal(r1.statusLine, 'HTTP/1.1 403 Forbidden')
    assert.match(r1.headers['proxy-status'] ?? '', /^sluice; error=http_request_denied; details="ERR_POLICY_DENIED: .*rule default/)

    // Port 443 is allowed by rule, but loopback is special-purpose: refused before dialing.
    const r2 = await request(s.port, 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n')
    r2.socket.destroy()
    assert.equal(r2.statusLine, 'HTTP/1.1 403 Forbidden')
    assert.match(r2.headers['proxy-status'] ?? '', /^sluice; error=destination_ip_prohibited; details="ERR_DESTINATION_PROHIBITED: .*special-purpose-guard/)

    const isClosed = (l: LogLine): boolean => l.msg === 'tunnel closed'
    await s.waitForLog(() => s.logs.filter(isClosed).length >= 2)
    const closed = s.logs.filter(isClosed)
    assert.deepEqual(closed.map(l => [l['target'], l['status'], l['code'], l['rule']]), [
      [`127.0.0.1:${echo.port}`, 403, 'ERR_POLICY_DENIED', 'default'],
      ['127.0.0.1:443', 403, 'ERR_DESTINATION_PROHIBITED', 'special-purpose-guard']
    ])
    assert.equal(echo.accepted(), acceptedBefore, 'nothing was dialed')

    s.child.kill('SIGTERM')
    assert.deepEqual(await s.exited(), { code: 0, signal: null }, s.stderr())
  })
})
