/**
 * The built binary (`node dist/cli.js`), as an operator runs it: usage and
 * config errors (exit 2), serving with the startup log line, graceful
 * shutdown on SIGTERM (drain, then exit 0), a second signal (exit 1 at
 * once), and the shipped default policy.
 *
 * Runs against dist/, so `npm run test:cli` builds first.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { startEchoServer } from '../helpers/origin.js'
import { readHead, request, rawConnect } from '../helpers/raw.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))
const PKG = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

/** Bound on waiting for one log line or exit; a failure bound, not synchronisation. */
const WAIT_MS = 5000
/** "Promptly": far below any drain deadline used here (30 s). */
const PROMPT_MS = 3000

interface LogLine { readonly msg: string, readonly [key: string]: unknown }

interface Exit { readonly code: number | null, readonly signal: NodeJS.Signals | null }

/** The result of a run to completion. */
interface Finished extends Exit { readonly stdout: string, readonly stderr: string }

/** Run the CLI to completion (bounded) and collect its output. */
async function run (args: readonly string[]): Promise<Finished> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const timer = setTimeout(() => child.kill('SIGKILL'), WAIT_MS)
  try {
    const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
    return { code, signal, stdout, stderr }
  } finally {
    clearTimeout(timer)
  }
}

/** A serving CLI process whose stdout JSON lines are collected. */
interface Served {
  readonly child: ChildProcessWithoutNullStreams
  readonly logs: LogLine[]
  readonly port: number
  /** stderr so far. */
  stderr (): string
  /** Resolves with the first line (past or future) matching `pred`. */
  waitForLog (pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  /** Resolves once the process has exited (bounded). */
  exited (timeoutMs?: number): Promise<Exit>
}

const children = new Set<ChildProcessWithoutNullStreams>()

async function serve (args: readonly string[]): Promise<Served> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] })
  children.add(child)
  const logs: LogLine[] = []
  const waiters = new Set<() => void>()
  let stderr = ''
  let exit: Exit | undefined
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const exitP = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal }
      children.delete(child)
      resolve(exit)
      for (const w of [...waiters]) w()
    })
  })
  createInterface({ input: child.stdout }).on('line', (line) => {
    let rec: LogLine
    try {
      rec = JSON.parse(line) as LogLine
    } catch {
      rec = { msg: `(not JSON) ${line}` }
    }
    logs.push(rec)
    for (const w of [...waiters]) w()
  })

  function waitForLog (pred: (l: LogLine) => boolean, timeoutMs = WAIT_MS): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.find(pred)
        if (found !== undefined) { done(); resolve(found); return }
        if (exit !== undefined) {
          done()
          reject(new Error(`sluice exited (${JSON.stringify(exit)}) without the expected log line; stdout:\n${logs.map(l => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`timed out waiting for a log line; stdout:\n${logs.map(l => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr}`))
      }, timeoutMs)
      function done (): void { clearTimeout(timer); waiters.delete(check) }
      waiters.add(check)
      check()
    })
  }

  const listening = await waitForLog(l => l.msg === 'sluice listening')
  const listen = listening['listen']
  assert.ok(Array.isArray(listen) && listen.length === 1, `one listen address expected, got ${JSON.stringify(listen)}`)
  const m = /^127\.0\.0\.1:(\d+)$/.exec(String(listen[0]))
  assert.ok(m !== null, `listen address should be 127.0.0.1:PORT, got ${String(listen[0])}`)
  const port = Number(m[1])
  assert.ok(port > 0 && port < 65536)

  return {
    child,
    logs,
    port,
    stderr: () => stderr,
    waitForLog,
    async exited (timeoutMs = WAIT_MS) {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`sluice did not exit within ${timeoutMs} ms; stdout:\n${logs.map(l => JSON.stringify(l)).join('\n')}`)), timeoutMs)
      })
      try {
        return await Promise.race([exitP, timeout])
      } finally {
        clearTimeout(timer)
      }
    }
  }
}

/** Resolves with how the socket ended: 'eof' (FIN) or the error code (e.g. ECONNRESET). */
function ending (socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    socket.once('end', () => resolve('eof'))
    socket.once('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message))
    socket.resume()
  })
}

/** Open a tunnel through `proxyPort` to the echo server and prove it carries bytes. */
async function openTunnel (proxyPort: number, echoPort: number): Promise<Socket> {
  const socket = await rawConnect(proxyPort)
  socket.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`)
  const res = await readHead(socket)
  assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
  assert.equal(res.rest.length, 0)
  socket.write('ping')
  const echoed = await new Promise<string>((resolve, reject) => {
    let got = ''
    const onData = (c: Buffer): void => {
      got += c.toString('latin1')
      if (got.length >= 4) { socket.off('data', onData); socket.off('error', reject); socket.pause(); resolve(got) }
    }
    socket.on('data', onData)
    socket.once('error', reject)
    socket.resume()
  })
  assert.equal(echoed, 'ping')
  return socket
}

before(() => {
  assert.ok(existsSync(CLI), `${CLI} is missing: build first (npm run build; npm run test:cli does it)`)
})

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

  it('--bogus exits 2 naming the option on stderr', async () => {
    const r = await run(['--bogus'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    assert.match(r.stderr, /^sluice: .*'--bogus'/)
    assert.match(r.stderr, /\n\nUsage:\s/)
  })

  it('--log-level loud exits 2', async () => {
    const r = await run(['--log-level', 'loud'])
    assert.equal(r.code, 2)
    assert.equal(r.stdout, '')
    assert.match(r.stderr, /^sluice: --log-level must be one of .*got 'loud'/)
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
    assert.match(r.stderr, /test\/fixtures\/bad\.yaml: rules\[0\]\.ports\[0\]: expected a port 1-65535/)
    assert.match(r.stderr, /test\/fixtures\/bad\.yaml: \(top level\): unknown key 'bogus'/)
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
    for (const c of children) c.kill('SIGKILL')
    await echo.close()
  })

  it('SIGTERM with an open tunnel: warns at the drain deadline, closes the tunnel, exits 0', async () => {
    const s = await serve(['--config', 'test/fixtures/loopback.yaml', '--listen', '127.0.0.1:0'])
    const client = await openTunnel(s.port, echo.port)
    sockets.add(client)
    const ended = ending(client)

    s.child.kill('SIGTERM')
    const shutting = await s.waitForLog(l => l.msg === 'shutting down: draining tunnels')
    assert.equal(shutting['tunnels'], 1)
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
    const s = await serve(['--config', 'test/fixtures/loopback-long-drain.yaml', '--listen', '127.0.0.1:0'])
    const client = await openTunnel(s.port, echo.port)
    sockets.add(client)
    const ended = ending(client)

    s.child.kill('SIGTERM')
    const shutting = await s.waitForLog(l => l.msg === 'shutting down: draining tunnels')
    assert.equal(shutting['tunnels'], 1)
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
