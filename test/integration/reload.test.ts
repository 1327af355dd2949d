/**
 * Hot reload. In-process: proxy.reload(config) swaps the policy for new
 * CONNECTs; open tunnels keep their decision unless the new file says
 * `revoke_on_reload: true`, in which case those the new policy would deny
 * are closed (log close 'revoked') and the others stay up.
 *
 * createReloader on a real temp file: a changed file is applied once, a
 * broken one is rejected with every problem and its path (the old config
 * keeps serving), and close() stops watching. Files are replaced by rename,
 * as editors do, so a half-written file is never read; a file changed in
 * place waits for reload_settle (issue 11, finding 4, at the end). No sleeps:
 * every wait is on apply, a log line, or a socket event.
 */
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, open, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { startEchoServer, startGreetingServer } from '../helpers/origin.js'
import { connectHead, connectVia, ending, rawConnect, readAll, readBytes, readHead, roundTrip } from '../helpers/raw.js'
import { captureLogs, sluiceFor, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { within } from '../helpers/wait.js'
import { parseConfig, type Config } from '../../src/config/load.js'
import { createReloader, type ReloadOutcome, type Reloader } from '../../src/config/reloader.js'
import { createProxy } from '../../src/index.js'
import type { dialRoute } from '../../src/upstream/route.js'

let echo: Awaited<ReturnType<typeof startEchoServer>>
let greeter: Awaited<ReturnType<typeof startGreetingServer>>

before(async () => {
  echo = await startEchoServer()
  greeter = await startGreetingServer('hello\n')
})

after(async () => {
  await echo.close()
  await greeter.close()
})

// ---------------------------------------------------------------- helpers

/** A tunnel (destroyed after the test); bytes that arrived right behind the 200 (a server-first target's greeting) are pushed back into the socket. */
async function openTunnel (port: number, authority: string, t: TestContext): Promise<Socket> {
  const socket = await rawConnect(port)
  t.after(() => { socket.destroy() })
  const res = await connectVia(port, authority, { socket })
  assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established', `CONNECT ${authority}`)
  if (res.rest.length > 0) socket.unshift(res.rest)
  return socket
}

/** Read at least `n` bytes (including any that came with the 200), bounded at 5 s; all of them, latin1. */
async function readN (socket: Socket, n: number): Promise<string> {
  return (await readBytes(socket, n, { mode: 'all' })).toString('latin1')
}

async function echoes (socket: Socket, payload: string): Promise<void> {
  assert.equal(await roundTrip(socket, payload), payload)
}

/** CONNECT on a fresh connection, expecting a refusal; returns status line and Proxy-Status. */
async function refused (port: number, authority: string, t: TestContext): Promise<[string, string]> {
  const socket = await rawConnect(port)
  t.after(() => { socket.destroy() })
  const res = await connectVia(port, authority, { socket })
  socket.end()
  await readAll(socket)
  return [res.statusLine, res.headers['proxy-status'] ?? '']
}

const ALLOW_LOOPBACK = `
rules:
  - name: allow-loopback
    action: allow
    ips: [127.0.0.0/8]
`

/** Sluice with ALLOW_LOOPBACK (closed after the test) and a tunnel through it to the echo server that carried `payload`. */
async function echoTunnel (t: TestContext, payload: string): Promise<{ s: Sluice, tunnel: Socket }> {
  const s = await sluiceFor(t, ALLOW_LOOPBACK)
  const tunnel = await openTunnel(s.port, `127.0.0.1:${echo.port}`, t)
  await echoes(tunnel, payload)
  return { s, tunnel }
}

function config (yaml: string, file = 'b.yaml'): Config {
  return parseConfig(`version: 1\n${yaml}`, file)
}

// ---------------------------------------------------------------- proxy.reload

describe('proxy.reload', () => {
  it('without revoke_on_reload: the open tunnel keeps working, a new CONNECT is denied', async (t) => {
    const { s, tunnel } = await echoTunnel(t, 'before')

    const b = config(`
rules:
  - name: no-echo
    action: deny
    ports: [${echo.port}]
`)
    s.proxy.reload(b)
    const reloaded = await s.waitForLog(r => r.msg === 'configuration reloaded')
    assert.equal(reloaded['hash'], b.hash)
    assert.equal(reloaded['config'], 'b.yaml')
    assert.equal(typeof reloaded['previous_hash'], 'string')
    assert.notEqual(reloaded['previous_hash'], b.hash)

    await echoes(tunnel, 'after the reload')
    assert.deepEqual(await refused(s.port, `127.0.0.1:${echo.port}`, t), ['HTTP/1.1 403 Forbidden',
      `sluice; error=http_request_denied; details="ERR_POLICY_DENIED: denied by policy: 127.0.0.1:${echo.port} (rule no-echo: denied by rule)"`])
    assert.equal(s.logs.some(r => r.msg === 'revoking tunnel denied by the new policy'), false)
    await s.waitForLog(r => r.msg === 'tunnel closed' && r['status'] === 403)
    assert.equal(s.proxy.registry.size, 1, 'the old tunnel is still registered')
    await echoes(tunnel, 'still')
  })

  it('with revoke_on_reload: true the open tunnel the new policy denies is closed; one it allows stays', async (t) => {
    const { s, tunnel: doomed } = await echoTunnel(t, 'doomed')
    const kept = await openTunnel(s.port, `127.0.0.1:${greeter.port}`, t)
    assert.equal(await readN(kept, 6), 'hello\n')
    const doomedEnds = ending(doomed)

    s.proxy.reload(config(`
revoke_on_reload: true
rules:
  - name: no-echo
    action: deny
    ports: [${echo.port}]
  - name: allow-loopback
    action: allow
    ips: [127.0.0.0/8]
`))
    const revoking = await s.waitForLog(r => r.msg === 'revoking tunnel denied by the new policy')
    assert.equal(revoking['target'], `127.0.0.1:${echo.port}`)
    assert.equal(revoking['dialed'], `127.0.0.1:${echo.port}`)
    assert.ok(['eof', 'ECONNRESET'].includes(await doomedEnds), 'the client sees its tunnel end')

    const closed = await s.waitForLog(r => r.msg === 'tunnel closed' && r['target'] === `127.0.0.1:${echo.port}`)
    assert.equal(closed['tunnel'], revoking['tunnel'])
    assert.equal(closed['close'], 'revoked')
    assert.equal(closed['closed_by'], 'proxy')
    assert.equal(closed['status'], 200)
    assert.equal(closed['bytes_up'], 6)

    // Exactly one revocation; the greeter tunnel (still allowed) is open and registered.
    assert.equal(s.logs.filter(r => r.msg === 'revoking tunnel denied by the new policy').length, 1)
    assert.equal(s.proxy.registry.size, 1)
    assert.equal(kept.destroyed, false)
    assert.equal(s.logs.some(r => r.msg === 'tunnel closed' && r['target'] === `127.0.0.1:${greeter.port}`), false)
  })

  it('revoke re-judges the dialed address: an "allow port" policy without ips revokes a loopback tunnel (guard)', async (t) => {
    const { s, tunnel } = await echoTunnel(t, 'x')
    const ends = ending(tunnel)
    s.proxy.reload(config(`
revoke_on_reload: true
rules:
  - name: echo-port
    action: allow
    ports: [${echo.port}]
`))
    await s.waitForLog(r => r.msg === 'revoking tunnel denied by the new policy')
    assert.ok(['eof', 'ECONNRESET'].includes(await ends))
    const closed = await s.waitForLog(r => r.msg === 'tunnel closed')
    assert.equal(closed['close'], 'revoked')
  })

  it('revoke_on_reload with a policy that only reports the deny keeps the tunnel', async (t) => {
    // Report mode never unlocks the guard, so a loopback target would be refused
    // by it anyway: the tunnel here is to a public address, carried by a test
    // dial to the echo server, so only the reported rule is in play.
    const { logger, logs, waitForLog: waitFor } = captureLogs()
    const dial: typeof dialRoute = async (req) => {
      await req.directAddresses() // the address stage and its policy still run
      const socket = connect({ host: '127.0.0.1', port: echo.port, allowHalfOpen: true })
      await once(socket, 'connect')
      return { socket, dialed: { address: '93.184.216.34', port: 443 }, hops: [] }
    }
    const proxy = createProxy({ config: config('rules: [{ name: https, action: allow, ports: [443] }]', 'a.yaml'), logger, dial, listen: [{ host: '127.0.0.1', port: 0 }] })
    const [addr] = await proxy.listen()
    t.after(async () => { await proxy.close(0) })
    const tunnel = await openTunnel(addr?.port ?? 0, '93.184.216.34:443', t)
    await echoes(tunnel, 'a')

    proxy.reload(config(`
revoke_on_reload: true
rules:
  - name: watch-https
    action: deny
    mode: report
    ports: [443]
`))
    await waitFor(r => r.msg === 'configuration reloaded')
    assert.equal(logs.some(r => r.msg === 'revoking tunnel denied by the new policy'), false)
    await echoes(tunnel, 'kept')

    // The same reload without report mode revokes it: the test above can fail.
    const ends = ending(tunnel)
    proxy.reload(config(`
revoke_on_reload: true
rules:
  - name: no-https
    action: deny
    ports: [443]
`, 'c.yaml'))
    const revoking = await waitFor(r => r.msg === 'revoking tunnel denied by the new policy')
    assert.equal(revoking['target'], '93.184.216.34:443')
    assert.ok(['eof', 'ECONNRESET'].includes(await ends))
  })
})

describe('proxy.reload: a CONNECT in flight', () => {
  it('revoke_on_reload also stops a CONNECT that was still dialing when the denying policy arrived', async (t) => {
    // The dial holds the CONNECT in 'dialing' (after the address stage) until the reload is done, then connects to the echo server.
    const { logger, logs } = captureLogs()
    let release: (() => void) | undefined
    const gate = new Promise<void>((resolve) => { release = resolve })
    let started: (() => void) | undefined
    const dialStarted = new Promise<void>((resolve) => { started = resolve })
    const dial: typeof dialRoute = async (req) => {
      const [address] = await req.directAddresses()
      started?.()
      await gate
      const socket = connect({ host: '127.0.0.1', port: echo.port, allowHalfOpen: true })
      await once(socket, 'connect')
      return { socket, dialed: { address: address ?? '?', port: req.target.port }, hops: [] }
    }
    const proxy = createProxy({ config: config(ALLOW_LOOPBACK, 'a.yaml'), logger, dial, listen: [{ host: '127.0.0.1', port: 0 }] })
    const [addr] = await proxy.listen()
    t.after(async () => { await proxy.close(0) })
    t.after(() => release?.())

    const socket = await rawConnect(addr?.port ?? 0)
    t.after(() => { socket.destroy() })
    socket.on('error', () => {})
    socket.write(connectHead(`127.0.0.1:${echo.port}`))
    await within(dialStarted, 'the dial starts')
    proxy.reload(config(`
revoke_on_reload: true
rules:
  - name: no-echo
    action: deny
    ports: [${echo.port}]
`))
    release?.()
    const res = await readHead(socket)
    let outcome = `refused with ${res.status}`
    if (res.status === 200) {
      // Does the tunnel the new policy denies carry bytes?
      socket.write('ping')
      outcome = await new Promise<string>((resolve) => {
        const timer = setTimeout(() => resolve('no answer within 5 s'), 5000)
        let got = res.rest.toString('latin1')
        const done = (what: string): void => { clearTimeout(timer); resolve(what) }
        socket.on('data', (c: Buffer) => { got += c.toString('latin1'); if (got === 'ping') done('carried bytes') })
        socket.once('end', () => done('closed'))
        socket.once('close', () => done('closed'))
        socket.resume()
      })
    }
    assert.notEqual(outcome, 'carried bytes',
      'a tunnel the revoking policy denies was established after the reload and stays open; log: ' +
      JSON.stringify(logs.filter(r => r.msg === 'tunnel closed' || r.msg.startsWith('revoking'))))
  })
})

// ---------------------------------------------------------------- createReloader

const GOOD_A = 'version: 1\nrules:\n  - name: a\n    action: allow\n    ports: [443]\n'
const GOOD_B = 'version: 1\nrules:\n  - name: b\n    action: deny\n    ports: [443]\n'
const BROKEN = 'version: 1\nbogus: true\nrules:\n  - action: allow\n    ports: [99999]\n'

/** Replace `file` atomically, as editors and config managers do. */
let seq = 0
async function replace (file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${++seq}`
  await writeFile(tmp, text)
  await rename(tmp, file)
}

interface Harness {
  readonly file: string
  readonly reloader: Reloader
  readonly applied: Config[]
  readonly logs: LogRecord[]
  current (): Config
  nextApply (): Promise<Config>
  waitFor (pred: (r: LogRecord) => boolean): Promise<LogRecord>
}

describe('createReloader', () => {
  let dir: string
  const reloaders: Reloader[] = []

  before(async () => { dir = await mkdtemp(join(tmpdir(), 'sluice-reload-')) })
  after(async () => {
    for (const r of reloaders) r.close()
    await rm(dir, { recursive: true, force: true })
  })

  let n = 0
  async function harness (opts: { watch?: boolean, debounceMs?: number, settleMs?: () => number, onOutcome?: (o: ReloadOutcome) => void } = {}): Promise<Harness> {
    const file = join(dir, `sluice-${++n}.yaml`)
    await writeFile(file, GOOD_A)
    let current = parseConfig(GOOD_A, file)
    const applied: Config[] = []
    let waiting: ((c: Config) => void) | undefined
    const { logger, logs, waitForLog: waitFor } = captureLogs()
    const reloader = createReloader({
      file,
      log: logger,
      currentHash: () => current.hash,
      apply: (c) => { current = c; applied.push(c); waiting?.(c) },
      ...opts
    })
    reloaders.push(reloader)
    return {
      file,
      reloader,
      applied,
      logs,
      current: () => current,
      async nextApply () { return await within(new Promise<Config>((resolve) => { waiting = resolve }), 'apply') },
      waitFor
    }
  }

  it('a changed file is applied once, with the new hash', async () => {
    const h = await harness({ debounceMs: 20 })
    const applied = h.nextApply()
    await replace(h.file, GOOD_B)
    const c = await applied
    assert.equal(c.hash, parseConfig(GOOD_B, h.file).hash)
    assert.equal(c.file, h.file)
    assert.equal(c.policy.rules[0]?.name, 'b')
    // The same text again is not a change: no second apply.
    assert.equal(await h.reloader.reload('manual'), false)
    assert.equal(h.applied.length, 1)
    assert.equal(h.logs.some(r => r.msg.startsWith('reload rejected')), false)
  })

  it('a broken file is rejected with every problem and its path; apply is not called', async () => {
    const h = await harness({ debounceMs: 20 })
    await replace(h.file, BROKEN)
    const rejected = await h.waitFor(r => r.msg === 'reload rejected: keeping the running configuration')
    assert.equal(rejected['level'], 'error')
    assert.equal(rejected['config'], h.file)
    assert.equal(rejected['why'], 'file replaced')
    assert.ok(Array.isArray(rejected['problems']))
    assert.deepEqual([...(rejected['problems'] as string[])].sort(), [
      `${h.file}:2: (top level): unknown key 'bogus'`,
      `${h.file}:5: rules[0].ports[0]: expected a port 1-65535 or a range like 8000-8080`
    ])
    assert.equal(h.applied.length, 0)
    assert.equal(h.current().policy.rules[0]?.name, 'a', 'the running config is kept')

    // Fixing the file applies it.
    const applied = h.nextApply()
    await replace(h.file, GOOD_B)
    assert.equal((await applied).policy.rules[0]?.name, 'b')
    assert.equal(h.applied.length, 1)
  })

  it('every attempt ends in one line and one outcome (issue 15): a bad save is rejected once, the running file put back is "unchanged", so is SIGHUP', async () => {
    const outcomes: ReloadOutcome[] = []
    const h = await harness({ debounceMs: 20, settleMs: () => 50, onOutcome: (o) => outcomes.push(o) })
    const rejected = (r: LogRecord): boolean => r.msg === 'reload rejected: keeping the running configuration'
    await replace(h.file, BROKEN)
    await h.waitFor(rejected)
    // The same bad bytes renamed into place again (an editor's second event for one save): no second attempt.
    await replace(h.file, BROKEN)
    // The running file put back: unchanged, and said so.
    await replace(h.file, GOOD_A)
    // (Two renames in one debounce may be judged a change in place: then it settles first.)
    await h.waitFor(r => r.msg === 'configuration unchanged')
    assert.equal(await h.reloader.reload('SIGHUP'), false)
    await h.waitFor(r => r.msg === 'configuration unchanged' && r['why'] === 'SIGHUP')
    const applied = h.nextApply()
    await replace(h.file, GOOD_B)
    await applied
    assert.equal(h.logs.filter(rejected).length, 1)
    assert.deepEqual(outcomes.map(o => o.result), ['rejected', 'unchanged', 'unchanged', 'reloaded'])
    assert.equal(outcomes[2]?.why, 'SIGHUP')
    const last = outcomes.at(-1)
    assert.equal(last?.hash, parseConfig(GOOD_B, h.file).hash)
    assert.equal(last?.previousHash, parseConfig(GOOD_A, h.file).hash)
    assert.ok(outcomes.every(o => o.at > 0))
  })

  it('reload(why) without watching: true when applied, false when unchanged or invalid', async () => {
    const h = await harness({ watch: false })
    assert.equal(await h.reloader.reload('SIGHUP'), false, 'unchanged')
    await writeFile(h.file, GOOD_B)
    assert.equal(await h.reloader.reload('SIGHUP'), true)
    assert.equal(h.applied.length, 1)
    await writeFile(h.file, BROKEN)
    assert.equal(await h.reloader.reload('SIGHUP'), false)
    const rejected = await h.waitFor(r => r.msg === 'reload rejected: keeping the running configuration')
    assert.equal(rejected['why'], 'SIGHUP')
    await unlink(h.file)
    assert.equal(await h.reloader.reload('SIGHUP'), false)
    const gone = await h.waitFor(r => r.msg === 'reload rejected: keeping the running configuration' && String((r['problems'] as string[])[0]).includes('cannot read'))
    assert.match(String((gone['problems'] as string[])[0]), new RegExp(`^${h.file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: cannot read: ENOENT`))
    assert.equal(h.applied.length, 1)
  })

  it('close() stops watching: a later change is not applied (a second, open reloader on the same file sees it)', async () => {
    const closed = await harness({ debounceMs: 1 })
    closed.reloader.close()
    // The witness watches the same file with a longer debounce: by the time it has
    // applied the change, the closed one (1 ms debounce) would have too.
    const { logger } = captureLogs()
    let witnessHash = parseConfig(GOOD_A, closed.file).hash
    let resolveWitness: ((c: Config) => void) | undefined
    const witnessApplied = new Promise<Config>((resolve) => { resolveWitness = resolve })
    const witness = createReloader({
      file: closed.file,
      log: logger,
      currentHash: () => witnessHash,
      apply: (c) => { witnessHash = c.hash; resolveWitness?.(c) },
      debounceMs: 100
    })
    reloaders.push(witness)
    await replace(closed.file, GOOD_B)
    await within(witnessApplied, 'the witness reloader applies the change')
    assert.equal(closed.applied.length, 0, 'the closed reloader did not apply the change')
    assert.equal(closed.logs.length, 0, 'nor log anything')
    // Its explicit reload still works (close stops watching, not reloading).
    assert.equal(await closed.reloader.reload('SIGHUP'), true)
    assert.equal(closed.applied.length, 1)
  })
})

// ---------------------------------------------------------------- a change is applied only when complete

/**
 * Issue 11, finding 4: a policy file rewritten in place was loaded while
 * half-written. The writer stops just before a rule's `users:` line; the
 * prefix is itself a valid file that lets anonymous clients through. A
 * real Sluice (auth on) is fed by a real reloader on a real temp file; the
 * writer's pause is driven by events, not a timer: write the prefix, wait
 * until the reloader has reacted to it (it either says it waits for the file
 * to settle, or, before the fix, loads it), probe, then append the rest.
 */
describe('createReloader: a change is applied only when it is complete (issue 11, finding 4)', () => {
  /** Shorter than the 2 s default, and long enough that a probe while the writer pauses ends before it. */
  const SETTLE_MS = 1000
  const PASSWORD = 'reload-pw'
  const SETTLING = 'configuration changed in place: waiting for it to settle'
  let dir: string
  let usersFile: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-settle-'))
    usersFile = join(dir, 'users')
    // bcryptjs at cost 4: the cheapest cost a users file may hold.
    const { default: bcrypt } = await import('bcryptjs')
    await writeFile(usersFile, `alice:${bcrypt.hashSync(PASSWORD, 4)}\n`)
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  /** Auth on; `name` allows `users` (if any) to reach loopback. */
  const policy = (settle: number, name: string, users?: string): string =>
    `version: 1\nreload_settle: ${settle}ms\nauth:\n  users_file: ${usersFile}\nrules:\n  - name: ${name}\n    action: allow\n    ips: [127.0.0.0/8]\n` +
    (users === undefined ? '' : `    users: [${users}]\n`)

  interface Served {
    readonly file: string
    readonly port: number
    readonly reloader: Reloader
    readonly logs: LogRecord[]
    waitFor (pred: (r: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>
    /** The status of a CONNECT to the echo server (anonymous unless `user`); the connection is closed after. */
    status (user?: string): Promise<number>
  }

  let n = 0
  /** Sluice and a watching reloader on DIR/NAME (or a path relative to DIR) holding `text`; both closed after the test. */
  async function serveFile (t: TestContext, text: string, opts: { path?: string } = {}): Promise<Served> {
    const file = join(dir, opts.path ?? `policy-${++n}.yaml`)
    if (opts.path === undefined) await writeFile(file, text)
    let current = parseConfig(text, file)
    // One log for the proxy and the reloader, so a wait can watch both.
    const { logger, logs, waitForLog } = captureLogs()
    const proxy = createProxy({ config: current, logger, listen: [{ host: '127.0.0.1', port: 0 }] })
    const [addr] = await proxy.listen()
    t.after(async () => { await proxy.close(0) })
    const reloader = createReloader({
      file,
      log: logger,
      watchFiles: current.files,
      currentHash: () => current.hash,
      apply: (c) => { current = c; proxy.reload(c) },
      settleMs: () => current.reloadSettleMs,
      debounceMs: 20
    })
    t.after(() => { reloader.close() })
    const port = addr?.port ?? 0
    return {
      file,
      port,
      reloader,
      logs,
      waitFor: waitForLog,
      async status (user) {
        const socket = await rawConnect(port)
        t.after(() => { socket.destroy() })
        const headers = user === undefined ? '' : `Proxy-Authorization: Basic ${Buffer.from(`${user}:${PASSWORD}`).toString('base64')}\r\n`
        const res = await connectVia(port, `127.0.0.1:${echo.port}`, { socket, headers })
        socket.destroy()
        return res.status
      }
    }
  }

  const reloadedTo = (text: string, file: string) => (r: LogRecord): boolean =>
    r.msg === 'configuration reloaded' && r['hash'] === parseConfig(text, file).hash

  it('a file rewritten in place is not applied while half-written; the finished file is, after reload_settle', async (t) => {
    const s = await serveFile(t, policy(SETTLE_MS, 'staff', 'alice'))
    assert.equal(await s.status(), 407, 'the running policy asks anonymous clients to log in')

    const prefix = policy(SETTLE_MS, 'staff-v2')
    const finished = policy(SETTLE_MS, 'staff-v2', 'alice')
    assert.ok(finished.startsWith(prefix))
    assert.equal(parseConfig(prefix, s.file).policy.rules[0]?.users, undefined, 'the prefix is a valid file that lets anyone through')

    // The writer: truncate, write up to the rule's users: line, and stop.
    const writer = await open(s.file, 'w')
    t.after(async () => { await writer.close().catch(() => {}) })
    await writer.write(prefix)
    const reaction = await s.waitFor(r => r.msg === SETTLING || r.msg === 'configuration reloaded')
    assert.equal(reaction.msg, SETTLING, 'the half-written file was loaded')
    assert.equal(reaction['settle_ms'], SETTLE_MS)
    assert.equal(reaction['config'], s.file)
    // While the writer is paused, the running policy still answers.
    assert.equal(await s.status(), 407, 'an anonymous CONNECT while the file is half-written')

    // The writer finishes; the file is applied once it has been still for the settle period.
    const appended = Date.now()
    await writer.write(finished.slice(prefix.length))
    await writer.close()
    const reloaded = await s.waitFor(reloadedTo(finished, s.file), SETTLE_MS + 5000)
    assert.ok(Date.now() - appended >= SETTLE_MS - 1, `applied ${Date.now() - appended} ms after the last write, before reload_settle`)
    assert.equal(s.logs.filter(r => r.msg === 'configuration reloaded').length, 1, 'one reload: the finished file')
    assert.equal(reloaded['config'], s.file)

    assert.equal(await s.status(), 407, 'the finished file asks anonymous clients to log in')
    assert.equal(await s.status('alice'), 200)
    const closed = await s.waitFor(r => r.msg === 'tunnel closed' && r['status'] === 200)
    assert.equal(closed['rule'], 'staff-v2', 'the new policy decided')
  })

  it('a file replaced by rename is applied at once, well before reload_settle', async (t) => {
    const LONG = 60_000
    const s = await serveFile(t, policy(LONG, 'staff', 'alice'))
    const next = policy(LONG, 'anyone')
    const started = Date.now()
    await replace(s.file, next)
    // A failure bound far below reload_settle: waiting for it would time out here.
    await s.waitFor(reloadedTo(next, s.file), 5000)
    assert.ok(Date.now() - started < LONG / 10)
    assert.equal(s.logs.some(r => r.msg === SETTLING), false, 'a rename is complete: nothing to wait for')
    assert.equal(await s.status(), 200)
  })

  it('a Kubernetes ConfigMap update (a symlinked directory swapped by rename) is applied at once', async (t) => {
    // The layout the kubelet makes: NAME -> ..data/NAME, ..data -> ..TIMESTAMP/;
    // an update writes a new ..TIMESTAMP/ and renames a new ..data symlink over the old.
    const LONG = 60_000
    const mount = await mkdtemp(join(dir, 'configmap-'))
    await mkdir(join(mount, '..v1'))
    await writeFile(join(mount, '..v1', 'sluice.yaml'), policy(LONG, 'staff', 'alice'))
    await symlink('..v1', join(mount, '..data'))
    await symlink(join('..data', 'sluice.yaml'), join(mount, 'sluice.yaml'))
    const s = await serveFile(t, policy(LONG, 'staff', 'alice'), { path: join(mount.slice(dir.length + 1), 'sluice.yaml') })

    const next = policy(LONG, 'anyone')
    await mkdir(join(mount, '..v2'))
    await writeFile(join(mount, '..v2', 'sluice.yaml'), next)
    await symlink('..v2', join(mount, '..data_tmp'))
    await rename(join(mount, '..data_tmp'), join(mount, '..data'))
    await s.waitFor(reloadedTo(next, s.file), 5000)
    assert.equal(s.logs.some(r => r.msg === SETTLING), false)
    assert.equal(await s.status(), 200)
  })

  it('SIGHUP applies a file changed in place at once: the operator says it is complete', async (t) => {
    const LONG = 60_000
    const s = await serveFile(t, policy(LONG, 'staff', 'alice'))
    const next = policy(LONG, 'anyone')
    await writeFile(s.file, next)
    await s.waitFor(r => r.msg === SETTLING)
    assert.equal(await s.status(), 407, 'not applied by the watcher before reload_settle')
    assert.equal(await s.reloader.reload('SIGHUP'), true)
    await s.waitFor(reloadedTo(next, s.file), 0)
    assert.equal(await s.status(), 200)
  })
})
