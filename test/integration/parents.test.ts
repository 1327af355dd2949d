/**
 * Parent proxies end to end: a real Sluice sending tunnels through in-test
 * parents (test/helpers/parent.ts) to a local echo server.
 *
 * Targets are made-up `*.test` names that only the in-test parent maps to
 * 127.0.0.1: Sluice must not resolve a name it sends to a parent, and its
 * DNS points at the stub, which must see no question at all. IP-literal
 * targets need an `ips` rule. Slow outcomes use 300 ms timeouts and are
 * awaited (log lines, socket events), never slept for.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, it, type TestContext } from 'node:test'
import { createLogger, createProxy, parseConfig, type Proxy } from '../../src/index.js'
import { startDnsStub, type DnsStub } from '../helpers/dns-stub.js'
import { startEchoServer } from '../helpers/origin.js'
import { startParent, type Behaviour, type BehaviourKind, type Parent, type ParentOptions } from '../helpers/parent.js'
import { rawConnect, readAll, readHead, type RawResponse } from '../helpers/raw.js'
import { startSluice, type LogRecord } from '../helpers/sluice.js'

// ---------------------------------------------------------------- helpers

const basic = (userPass: string): string => 'Basic ' + Buffer.from(userPass, 'utf8').toString('base64')
const ESTABLISHED = 'HTTP/1.1 200 Connection Established'

/** What tests need from a running Sluice (startSluice's, or one built from a parsed config). */
interface Running {
  readonly port: number
  readonly logs: LogRecord[]
  waitForLog (pred: (r: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>
  waitForLogs (pred: (r: LogRecord) => boolean, n: number, timeoutMs?: number): Promise<LogRecord[]>
  close (): Promise<void>
}

interface ProxyStatus {
  readonly name: string
  /** Parameter values, strings unquoted. */
  readonly params: Readonly<Record<string, string>>
  /** How each value was written: sf-string, sf-integer or sf-token. */
  readonly kinds: Readonly<Record<string, 'string' | 'integer' | 'token'>>
}

/** A strict parser for one Proxy-Status member (RFC 8941 item with parameters). */
function parseProxyStatus (value: string): ProxyStatus {
  let i = 0
  const take = (re: RegExp, what: string): string => {
    re.lastIndex = i
    const m = re.exec(value)
    if (m === null) throw new Error(`Proxy-Status: expected ${what} at ${i} in ${JSON.stringify(value)}`)
    i = re.lastIndex
    return m[0]
  }
  const name = take(/[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*/y, 'a token')
  const params: Record<string, string> = {}
  const kinds: Record<string, 'string' | 'integer' | 'token'> = {}
  while (i < value.length) {
    take(/;[ ]*/y, '";"')
    const key = take(/[a-z*][a-z0-9_\-.*]*/y, 'a parameter key')
    assert.ok(!(key in params), `Proxy-Status: duplicate parameter ${key}`)
    take(/=/y, '"="')
    if (value[i] === '"') {
      const s = take(/"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"/y, 'an sf-string')
      params[key] = s.slice(1, -1).replace(/\\(["\\])/g, '$1')
      kinds[key] = 'string'
    } else if (/[-\d]/.test(value[i] ?? '')) {
      params[key] = take(/-?\d{1,15}/y, 'an sf-integer')
      kinds[key] = 'integer'
    } else {
      params[key] = take(/[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*/y, 'an sf-token')
      kinds[key] = 'token'
    }
  }
  return { name, params, kinds }
}

interface Connected extends RawResponse {
  /** `127.0.0.1:PORT` of our end, as the log's `client` field names it. */
  readonly client: string
}

/** CONNECT through Sluice on a fresh connection; `early` goes in the same write as the head. */
async function connectVia (port: number, target: string, early = ''): Promise<Connected> {
  const socket = await rawConnect(port)
  socket.on('error', () => {})
  const client = `127.0.0.1:${socket.localPort ?? 0}`
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n${early}`)
  return { ...(await readHead(socket)), client }
}

/** Read until `n` bytes (counting `have`) arrived. */
async function readBytes (socket: Socket, n: number, have: Buffer = Buffer.alloc(0), timeoutMs = 3000): Promise<Buffer> {
  let buf = have
  if (buf.length >= n) return buf
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { done(); reject(new Error(`wanted ${n} bytes, have ${JSON.stringify(buf.toString('latin1'))}`)) }, timeoutMs)
    const onData = (c: Buffer): void => {
      buf = Buffer.concat([buf, c])
      if (buf.length >= n) { done(); resolve(buf) }
    }
    const onEnd = (): void => { done(); reject(new Error(`EOF after ${JSON.stringify(buf.toString('latin1'))}`)) }
    function done (): void { clearTimeout(timer); socket.off('data', onData); socket.off('end', onEnd) }
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.resume()
  })
}

/** A 200 with nothing else in the head; `expect` (early bytes echoed, or server-first bytes) arrives next. */
async function expectTunnel (res: Connected, expect: string): Promise<void> {
  assert.equal(res.statusLine, ESTABLISHED)
  assert.deepEqual(res.headers, {})
  const got = await readBytes(res.socket, Buffer.byteLength(expect), res.rest)
  assert.equal(got.toString('latin1'), expect)
}

/** Round-trip some bytes through an established tunnel to the echo server. */
async function ping (socket: Socket, text = 'ping'): Promise<void> {
  socket.write(text)
  assert.equal((await readBytes(socket, text.length)).toString('latin1'), text)
}

async function finish (socket: Socket): Promise<void> {
  if (socket.closed) return
  const closed = once(socket, 'close')
  socket.end()
  await closed
}

interface Refusal {
  readonly status: number
  readonly code: string
  readonly type: string
  readonly nextHop: string
  readonly receivedStatus?: number
}

/** A complete error answer: status, Proxy-Status, Connection: close, a body of Content-Length bytes, then EOF. */
async function expectRefusal (res: Connected, r: Refusal): Promise<{ ps: ProxyStatus, body: string }> {
  assert.equal(res.status, r.status, `status line ${res.statusLine}; proxy-status ${res.headers['proxy-status'] ?? '-'}`)
  const raw = res.headers['proxy-status']
  assert.ok(raw !== undefined, 'no Proxy-Status')
  const ps = parseProxyStatus(raw)
  assert.equal(ps.name, 'sluice')
  assert.equal(ps.params['error'], r.type)
  assert.equal(ps.params['next-hop'], r.nextHop)
  assert.equal(ps.params['received-status'], r.receivedStatus === undefined ? undefined : String(r.receivedStatus))
  assert.ok(ps.params['details']?.startsWith(`${r.code}: `), `details ${ps.params['details'] ?? '-'}`)
  assert.equal(res.headers['connection'], 'close')
  assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8')
  // Our FIN lets Sluice close at once instead of lingering for more client bytes.
  res.socket.end()
  const body = Buffer.concat([res.rest, await readAll(res.socket)]).toString('utf8')
  assert.equal(Buffer.byteLength(body), Number(res.headers['content-length']))
  return { ps, body }
}

const closedLog = async (s: Running, client: string): Promise<LogRecord> =>
  await s.waitForLog(r => r.msg === 'tunnel closed' && r['client'] === client)

const count = (s: Running, msg: string, pred: (r: LogRecord) => boolean = () => true): number =>
  s.logs.filter(r => r.msg === msg && pred(r)).length

/** A port with nothing listening (bound, then closed). */
async function closedPort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  const closed = once(server, 'close')
  server.close()
  await closed
  return address.port
}

/** Start Sluice from a config parsed with overrides (--parent, environment), logs captured as startSluice does. */
async function startConfigured (text: string, overrides: Parameters<typeof parseConfig>[2]): Promise<Running> {
  const config = parseConfig(text, 'configured.yaml', overrides)
  const logs: LogRecord[] = []
  const waiters = new Set<() => void>()
  const sink = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogRecord)
      for (const w of [...waiters]) w()
      cb()
    }
  })
  const proxy: Proxy = createProxy({ config, logger: createLogger({ level: 'debug', destination: sink }), listen: [{ host: '127.0.0.1', port: 0 }] })
  const [addr] = await proxy.listen()
  if (addr === undefined) throw new Error('sluice did not listen')
  async function waitForLogs (pred: (r: LogRecord) => boolean, n: number, timeoutMs = 5000): Promise<LogRecord[]> {
    return await new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.filter(pred)
        if (found.length >= n) { clearTimeout(timer); waiters.delete(check); resolve(found) }
      }
      const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`timed out waiting for ${n} log record(s); have:\n${logs.map(l => JSON.stringify(l)).join('\n')}`)) }, timeoutMs)
      waiters.add(check)
      check()
    })
  }
  return {
    port: addr.port,
    logs,
    waitForLogs,
    async waitForLog (pred, timeoutMs) {
      const [first] = await waitForLogs(pred, 1, timeoutMs)
      if (first === undefined) throw new Error('unreachable')
      return first
    },
    async close () { await proxy.close(0) }
  }
}

// ---------------------------------------------------------------- fixtures

let echo: Awaited<ReturnType<typeof startEchoServer>>
let echo6: Awaited<ReturnType<typeof startEchoServer>>
let dns: DnsStub
let tmp: string

before(async () => {
  echo = await startEchoServer()
  echo6 = await startEchoServer({ host: '::1' })
  dns = await startDnsStub()
  tmp = mkdtempSync(join(tmpdir(), 'sluice-parents-'))
})

after(async () => {
  rmSync(tmp, { recursive: true, force: true })
  await Promise.all([echo.close(), echo6.close(), dns.close()])
})

async function parent (t: TestContext, behaviour: Behaviour | BehaviourKind = 'ok', opts: ParentOptions = {}): Promise<Parent> {
  const p = await startParent(behaviour, opts)
  t.after(async () => { await p.close() })
  return p
}

/**
 * Sluice with `parents`/`routes` YAML, DNS at the stub, and rules allowing
 * `*.test` names and loopback IP literals. The hosts rule comes first: see
 * the test on `ips` rules and name targets for why the order matters.
 */
async function sluice (t: TestContext, routing: string, extra = ''): Promise<Running> {
  const s = await startSluice(`
dns: { servers: ["${dns.address}"] }
${routing}
${extra}
rules:
  - { name: names, action: allow, hosts: ["*.test"] }
  - { name: loopback, action: allow, ips: [127.0.0.0/8, "::1/128"] }
`)
  t.after(async () => { await s.close() })
  return s
}

const echoName = (): string => `echo.test:${echo.port}`

/** Call at the start of a test; the returned check asserts Sluice looked up no name since (the parent resolves). */
function watchDns (): () => void {
  const seen = dns.queries.length
  return () => { assert.deepEqual(dns.queries.slice(seen), [], 'Sluice asked DNS about a name it sends to a parent') }
}

// ---------------------------------------------------------------- one parent

describe('through one parent', () => {
  it('tunnels; the parent saw CONNECT target, Host target and the URL credentials (percent-decoded); no client byte before its 200', async (t) => {
    const noDns = watchDns()
    const auth = basic('svc@corp:p@ss:w0rd')
    const corp = await parent(t, { kind: 'ok', auth })
    const s = await sluice(t, `
parents:
  corp: { url: "http://svc%40corp:p%40ss%3Aw0rd@${corp.authority}" }
default_route: corp
`)
    const res = await connectVia(s.port, echoName(), 'early-bytes')
    await expectTunnel(res, 'early-bytes')
    await ping(res.socket)
    await finish(res.socket)

    const [req] = corp.requests
    assert.ok(req !== undefined)
    assert.equal(req.method, 'CONNECT')
    assert.equal(req.target, echoName())
    assert.equal(req.version, 'HTTP/1.1')
    assert.deepEqual(req.rawHeaders, [['Host', echoName()], ['Proxy-Authorization', auth]])
    assert.equal(req.beforeReply.length, 0, `client bytes reached the parent before its 200: ${JSON.stringify(req.beforeReply.toString())}`)
    assert.equal(corp.requests.length, 1)

    const rec = await closedLog(s, res.client)
    assert.equal(rec['target'], echoName())
    assert.equal(rec['route'], 'corp')
    assert.deepEqual(rec['hops'], ['corp'])
    assert.equal(rec['dialed'], corp.authority)
    assert.equal(rec['rule'], 'names')
    assert.equal(rec['status'], 200)
    noDns()
    // Credentials never reach the log, in clear or encoded.
    const all = JSON.stringify(s.logs)
    for (const secret of ['p@ss:w0rd', 'p%40ss%3Aw0rd', auth.slice(6)]) assert.ok(!all.includes(secret), `log contains ${secret}`)
  })

  it('bytes_up / bytes_down count tunnel payload only, not our CONNECT to the parent and its 200', async (t) => {
    const corp = await parent(t)
    const s = await sluice(t, `parents:\n  corp: { url: "http://u:p@${corp.authority}" }\ndefault_route: corp`)
    const res = await connectVia(s.port, echoName(), 'early-bytes')
    await expectTunnel(res, 'early-bytes')
    await ping(res.socket)
    await finish(res.socket)
    const rec = await closedLog(s, res.client)
    // As for a direct tunnel: 11 + 4 bytes each way.
    assert.deepEqual([rec['bytes_up'], rec['bytes_down']], ['early-bytes'.length + 4, 'early-bytes'.length + 4])
  })

  it('password_env: the password comes from the process environment', async (t) => {
    const name = `SLUICE_TEST_PARENT_PW_${process.pid}_${Date.now()}`
    process.env[name] = 'env:pw@1'
    t.after(() => { Reflect.deleteProperty(process.env, name) })
    const auth = basic('svc:env:pw@1')
    const corp = await parent(t, { kind: 'ok', auth })
    const s = await sluice(t, `
parents:
  corp: { url: "http://${corp.authority}", username: svc, password_env: ${name} }
default_route: corp
`)
    const res = await connectVia(s.port, echoName(), 'x')
    await expectTunnel(res, 'x')
    await finish(res.socket)
    assert.equal(corp.requests[0]?.headers['proxy-authorization'], auth)
    assert.ok(!JSON.stringify(s.logs).includes('env:pw@1'))
  })

  it('a rule via a parent overrides the default route', async (t) => {
    const noDns = watchDns()
    const p1 = await parent(t)
    const p2 = await parent(t)
    const s = await startSluice(`
dns: { servers: ["${dns.address}"] }
parents:
  p1: { url: "http://${p1.authority}" }
  p2: { url: "http://${p2.authority}" }
default_route: p1
rules:
  - { name: special, action: allow, hosts: [special.test], via: p2 }
  - { name: names, action: allow, hosts: ["*.test"] }
`)
    t.after(async () => { await s.close() })
    const a = await connectVia(s.port, `special.test:${echo.port}`, 'a')
    await expectTunnel(a, 'a')
    await finish(a.socket)
    const b = await connectVia(s.port, `other.test:${echo.port}`, 'b')
    await expectTunnel(b, 'b')
    await finish(b.socket)
    assert.deepEqual(p2.requests.map(r => r.target), [`special.test:${echo.port}`])
    assert.deepEqual(p1.requests.map(r => r.target), [`other.test:${echo.port}`])
    assert.equal((await closedLog(s, a.client))['route'], 'p2')
    assert.equal((await closedLog(s, b.client))['route'], 'p1')
    noDns()
  })

  it('extra bytes after the parent\'s 200 reach the client first, right after our 200', async (t) => {
    const p = await parent(t, 'extra-bytes')
    const s = await sluice(t, `parents:\n  p: { url: "http://${p.authority}" }\ndefault_route: p`)
    const res = await connectVia(s.port, echoName())
    await expectTunnel(res, 'SERVER-FIRST')
    await ping(res.socket, 'after')
    await finish(res.socket)
    assert.equal((await closedLog(s, res.client))['status'], 200)
  })

  it('an IPv6 literal target goes to the parent as CONNECT [::1]:PORT', async (t) => {
    const p = await parent(t)
    const s = await sluice(t, `parents:\n  p: { url: "http://${p.authority}" }\ndefault_route: p`)
    const target = `[::1]:${echo6.port}`
    const res = await connectVia(s.port, target, 'v6')
    await expectTunnel(res, 'v6')
    await finish(res.socket)
    assert.equal(p.requests[0]?.target, target)
    assert.equal(p.requests[0]?.headers['host'], target)
    const rec = await closedLog(s, res.client)
    assert.equal(rec['target'], target)
    assert.deepEqual(rec['hops'], ['p'])
    assert.equal(rec['rule'], 'loopback')
  })

  it('the special-purpose guard still applies to IP-literal targets sent to a parent', async (t) => {
    const p = await parent(t)
    const s = await startSluice(`
parents:
  p: { url: "http://${p.authority}" }
default_route: p
rules:
  - { name: any, action: allow, ports: [${echo.port}] }
`)
    t.after(async () => { await s.close() })
    const res = await connectVia(s.port, `127.0.0.1:${echo.port}`)
    assert.equal(res.status, 403)
    assert.match(res.headers['proxy-status'] ?? '', /error=destination_ip_prohibited/)
    await readAll(res.socket)
    assert.equal(p.accepted(), 0)
  })

  it('with a parent as default route, an ips rule before the hosts rule does not make Sluice resolve names', async (t) => {
    // README: "When a target goes to a parent first, resolving its name is the parent's job …
    // ips rules only match IP-literal targets." A name only the parent can resolve (NXDOMAIN
    // at the stub) must still reach the parent, and Sluice must not ask DNS about it.
    const p = await parent(t)
    const s = await startSluice(`
dns: { servers: ["${dns.address}"] }
parents:
  p: { url: "http://${p.authority}" }
default_route: p
rules:
  - { name: loopback, action: allow, ips: [127.0.0.0/8] }
  - { name: names, action: allow, hosts: ["*.test"] }
`)
    t.after(async () => { await s.close() })
    const target = `only-parent-knows.test:${echo.port}`
    const res = await connectVia(s.port, target, 'n')
    const asked = dns.queries.filter(q => q.name === 'only-parent-knows.test')
    assert.equal(res.statusLine, ESTABLISHED, `got ${res.statusLine} ${res.headers['proxy-status'] ?? ''}; DNS questions: ${JSON.stringify(asked)}`)
    await expectTunnel(res, 'n')
    await finish(res.socket)
    const rec = await closedLog(s, res.client)
    assert.equal(rec['route'], 'p')
    assert.equal(rec['rule'], 'names')
    assert.equal(p.requests[0]?.target, target)
    assert.deepEqual(asked, [], 'Sluice asked DNS about a name it sends to a parent')
  })

  it('a client that leaves while the parent is silent: the parent connection is closed at once, the parent not blamed', async (t) => {
    const p = await parent(t, 'slow')
    const s = await sluice(t, `parents:\n  p: { url: "http://${p.authority}" }\ndefault_route: p`, 'timeouts: { connect: 1s }')
    const socket = await rawConnect(s.port)
    socket.on('error', () => {})
    const client = `127.0.0.1:${socket.localPort ?? 0}`
    socket.write(`CONNECT ${echoName()} HTTP/1.1\r\nHost: ${echoName()}\r\n\r\nearly`)
    const [req] = await p.waitForRequests(1)
    assert.ok(req !== undefined)
    const left = performance.now()
    socket.destroy()
    await req.closed
    const elapsed = performance.now() - left
    const rec = await closedLog(s, client)
    assert.equal(req.beforeReply.length, 0)
    assert.ok(elapsed < 700, `the parent connection was closed ${Math.round(elapsed)} ms after the client left (timeouts.connect is 1000 ms)`)
    assert.equal(rec['closed_by'], 'client')
    assert.equal(count(s, 'parent marked down'), 0, 'a client leaving marked the parent down')
  })
})

// ---------------------------------------------------------------- refusals and failover

describe('parent answers and failover', () => {
  it('407 with a body → 502 ERR_PARENT_AUTH, no client bytes at the parent, no failover', async (t) => {
    const noDns = watchDns()
    const p1 = await parent(t, { kind: 'status', status: 407, headers: { 'Proxy-Authenticate': 'Basic realm="corp"' }, body: 'PARENT-407-BODY' })
    const p2 = await parent(t)
    const s = await sluice(t, `
parents:
  p1: { url: "http://wrong:creds@${p1.authority}" }
  p2: { url: "http://${p2.authority}" }
routes:
  r: [p1, p2]
default_route: r
`)
    const res = await connectVia(s.port, echoName(), 'CLIENT-SECRET-BYTES')
    const { body } = await expectRefusal(res, { status: 502, code: 'ERR_PARENT_AUTH', type: 'http_request_denied', nextHop: 'p1', receivedStatus: 407 })
    // The parent's challenge is not passed on: it is about our credentials, not the client's.
    assert.equal(res.headers['proxy-authenticate'], undefined)
    assert.ok(!body.includes('PARENT-407-BODY'))
    const [req] = p1.requests
    assert.ok(req !== undefined)
    await req.closed
    assert.equal(req.beforeReply.length, 0)
    assert.equal(req.afterReply.length, 0, `client bytes reached a refusing parent: ${JSON.stringify(req.afterReply.toString())}`)
    assert.equal(p2.accepted(), 0)
    const rec = await closedLog(s, res.client)
    assert.equal(rec['status'], 502)
    assert.equal(rec['code'], 'ERR_PARENT_AUTH')
    assert.equal(rec['route'], 'r')
    assert.equal(count(s, 'route choice failed'), 0)
    assert.equal(count(s, 'parent marked down'), 0)
    noDns()
  })

  it('403 → 502 ERR_PARENT_DENIED, no failover', async (t) => {
    const p1 = await parent(t, { kind: 'status', status: 403, body: 'forbidden by corp policy' })
    const p2 = await parent(t)
    const s = await sluice(t, `parents:\n  p1: { url: "http://${p1.authority}" }\n  p2: { url: "http://${p2.authority}" }\nroutes:\n  r: [p1, p2]\ndefault_route: r`)
    const res = await connectVia(s.port, echoName(), 'early')
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_DENIED', type: 'http_request_denied', nextHop: 'p1', receivedStatus: 403 })
    await p1.requests[0]?.closed
    assert.equal(p1.requests[0]?.afterReply.length, 0)
    assert.equal(p2.accepted(), 0)
    assert.equal((await closedLog(s, res.client))['code'], 'ERR_PARENT_DENIED')
  })

  it('another 4xx → 502 ERR_PARENT_STATUS, no failover', async (t) => {
    const p1 = await parent(t, { kind: 'status', status: 400 })
    const p2 = await parent(t)
    const s = await sluice(t, `parents:\n  p1: { url: "http://${p1.authority}" }\n  p2: { url: "http://${p2.authority}" }\nroutes:\n  r: [p1, p2]\ndefault_route: r`)
    const res = await connectVia(s.port, echoName())
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_STATUS', type: 'destination_unavailable', nextHop: 'p1', receivedStatus: 400 })
    assert.equal(p2.accepted(), 0)
  })

  it('503 → fails over to the second parent (which is used), the first is not marked down', async (t) => {
    const p1 = await parent(t, { kind: 'status', status: 503, body: 'overloaded' })
    const p2 = await parent(t)
    const s = await sluice(t, `parents:\n  p1: { url: "http://${p1.authority}" }\n  p2: { url: "http://${p2.authority}" }\nroutes:\n  r: [p1, p2]\ndefault_route: r`)
    const res = await connectVia(s.port, echoName(), 'early')
    await expectTunnel(res, 'early')
    await finish(res.socket)
    await p1.requests[0]?.closed
    assert.equal(p1.requests[0]?.afterReply.length, 0, 'client bytes reached the 503 parent')
    assert.equal(p2.requests[0]?.target, echoName())
    const failed = await s.waitForLog(r => r.msg === 'route choice failed')
    assert.equal(failed['route'], 'r')
    assert.equal(failed['choice'], 'p1')
    assert.equal(failed['code'], 'ERR_PARENT_STATUS')
    const rec = await closedLog(s, res.client)
    assert.equal(rec['route'], 'r')
    assert.deepEqual(rec['hops'], ['p2'])
    assert.equal(rec['dialed'], p2.authority)
    assert.equal(count(s, 'parent marked down'), 0)
  })

  it('503 from the only parent → 502 ERR_PARENT_STATUS with received-status', async (t) => {
    const p1 = await parent(t, { kind: 'status', status: 503 })
    const s = await sluice(t, `parents:\n  p1: { url: "http://${p1.authority}" }\ndefault_route: p1`)
    const res = await connectVia(s.port, echoName())
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_STATUS', type: 'destination_unavailable', nextHop: 'p1', receivedStatus: 503 })
  })

  it('received-status is an sf-integer (RFC 9209 §2.1.4), not a string', async (t) => {
    const p1 = await parent(t, { kind: 'status', status: 407 })
    const s = await sluice(t, `parents:\n  p1: { url: "http://${p1.authority}" }\ndefault_route: p1`)
    const res = await connectVia(s.port, echoName())
    const { ps } = await expectRefusal(res, { status: 502, code: 'ERR_PARENT_AUTH', type: 'http_request_denied', nextHop: 'p1', receivedStatus: 407 })
    assert.equal(ps.kinds['received-status'], 'integer', `Proxy-Status: ${res.headers['proxy-status'] ?? ''}`)
  })

  it('a parent that closes in the middle of its head → ERR_PARENT_PROTOCOL, then failover', async (t) => {
    const mid = await parent(t, 'close-mid-head')
    const good = await parent(t)
    const s = await sluice(t, `parents:\n  mid: { url: "http://${mid.authority}" }\n  good: { url: "http://${good.authority}" }\nroutes:\n  r: [mid, good]\ndefault_route: r`)
    const res = await connectVia(s.port, echoName(), 'e')
    await expectTunnel(res, 'e')
    await finish(res.socket)
    const failed = await s.waitForLog(r => r.msg === 'route choice failed')
    assert.equal(failed['choice'], 'mid')
    assert.equal(failed['code'], 'ERR_PARENT_PROTOCOL')
    const down = await s.waitForLog(r => r.msg === 'parent marked down')
    assert.equal(down['parent'], 'mid')
    assert.equal(down['reason'], 'ERR_PARENT_PROTOCOL')
    assert.deepEqual((await closedLog(s, res.client))['hops'], ['good'])
  })

  it('a parent that closes in the middle of its head, as the only choice → 502 ERR_PARENT_PROTOCOL', async (t) => {
    const mid = await parent(t, 'close-mid-head')
    const s = await sluice(t, `parents:\n  mid: { url: "http://${mid.authority}" }\ndefault_route: mid`)
    const res = await connectVia(s.port, echoName())
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_PROTOCOL', type: 'http_protocol_error', nextHop: 'mid' })
  })

  it('garbage ending in CRLFCRLF → 502 ERR_PARENT_PROTOCOL', async (t) => {
    const g = await parent(t, { kind: 'garbage', bytes: 'this is not http\r\n\r\n' })
    const s = await sluice(t, `parents:\n  g: { url: "http://${g.authority}" }\ndefault_route: g`)
    const res = await connectVia(s.port, echoName(), 'early')
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_PROTOCOL', type: 'http_protocol_error', nextHop: 'g' })
    await g.requests[0]?.closed
    assert.equal(g.requests[0]?.afterReply.length, 0)
  })

  it('a non-HTTP banner (an SSH server on the parent port) → 502 ERR_PARENT_PROTOCOL at once, not a 504 after the connect timeout', async (t) => {
    const g = await parent(t, 'garbage')
    const s = await sluice(t, `parents:\n  g: { url: "http://${g.authority}" }\ndefault_route: g`, 'timeouts: { connect: 1s }')
    const res = await connectVia(s.port, echoName())
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_PROTOCOL', type: 'http_protocol_error', nextHop: 'g' })
  })

  it('a silent parent, the only choice, with timeouts.connect 300ms → 504 ERR_PARENT_TIMEOUT', async (t) => {
    const slow = await parent(t, 'slow')
    const s = await sluice(t, `parents:\n  slow: { url: "http://${slow.authority}" }\ndefault_route: slow`, 'timeouts: { connect: 300ms }')
    const started = performance.now()
    const res = await connectVia(s.port, echoName(), 'early')
    const elapsed = performance.now() - started
    await expectRefusal(res, { status: 504, code: 'ERR_PARENT_TIMEOUT', type: 'connection_timeout', nextHop: 'slow' })
    assert.ok(elapsed >= 290 && elapsed < 3000, `answered after ${elapsed} ms`)
    await slow.requests[0]?.closed
    assert.equal(slow.requests[0]?.beforeReply.length, 0)
    assert.equal((await closedLog(s, res.client))['code'], 'ERR_PARENT_TIMEOUT')
  })

  it('a refused parent, the only choice → 502 ERR_PARENT_REFUSED', async (t) => {
    const port = await closedPort()
    const s = await sluice(t, `parents:\n  dead: { url: "http://127.0.0.1:${port}" }\ndefault_route: dead`)
    const res = await connectVia(s.port, echoName())
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_REFUSED', type: 'connection_refused', nextHop: 'dead' })
  })

  it('route [dead, direct] falls back to going direct', async (t) => {
    const port = await closedPort()
    const s = await sluice(t, `parents:\n  dead: { url: "http://127.0.0.1:${port}" }\nroutes:\n  r: [dead, direct]\ndefault_route: r`)
    const target = `127.0.0.1:${echo.port}`
    const res = await connectVia(s.port, target, 'd')
    await expectTunnel(res, 'd')
    await finish(res.socket)
    const failed = await s.waitForLog(r => r.msg === 'route choice failed')
    assert.equal(failed['choice'], 'dead')
    assert.equal(failed['code'], 'ERR_PARENT_REFUSED')
    const rec = await closedLog(s, res.client)
    assert.equal(rec['route'], 'r')
    assert.equal(rec['hops'], undefined)
    assert.equal(rec['dialed'], target)
  })
})

// ---------------------------------------------------------------- TLS to the parent

describe('https parents', () => {
  it('with ca_file: TLS to the parent, then CONNECT inside it; no SNI for an IP-addressed parent', async (t) => {
    const p = await parent(t, 'tls')
    const caFile = join(tmp, 'parent-ca.pem')
    writeFileSync(caFile, p.ca ?? '')
    const s = await sluice(t, `parents:\n  sec: { url: "${p.url}", ca_file: "${caFile}" }\ndefault_route: sec`)
    assert.match(p.url, /^https:\/\/127\.0\.0\.1:\d+$/)
    const res = await connectVia(s.port, echoName(), 'tls')
    await expectTunnel(res, 'tls')
    await ping(res.socket)
    await finish(res.socket)
    assert.equal(p.requests[0]?.target, echoName())
    assert.equal(p.requests[0]?.servername, undefined)
    assert.deepEqual((await closedLog(s, res.client))['hops'], ['sec'])
  })

  it('servername is sent as SNI and verified', async (t) => {
    const p = await parent(t, 'tls')
    const caFile = join(tmp, 'parent-ca-sni.pem')
    writeFileSync(caFile, p.ca ?? '')
    const s = await sluice(t, `parents:\n  sec: { url: "${p.url}", ca_file: "${caFile}", servername: localhost }\ndefault_route: sec`)
    const res = await connectVia(s.port, echoName(), 'sni')
    await expectTunnel(res, 'sni')
    await finish(res.socket)
    assert.equal(p.requests[0]?.servername, 'localhost')
  })

  it('a servername the certificate does not cover → 502 ERR_PARENT_TLS_CERT', async (t) => {
    const p = await parent(t, 'tls')
    const caFile = join(tmp, 'parent-ca-bad-sni.pem')
    writeFileSync(caFile, p.ca ?? '')
    const s = await sluice(t, `parents:\n  sec: { url: "${p.url}", ca_file: "${caFile}", servername: proxy.elsewhere.test }\ndefault_route: sec`)
    const res = await connectVia(s.port, echoName())
    const { ps } = await expectRefusal(res, { status: 502, code: 'ERR_PARENT_TLS_CERT', type: 'tls_certificate_error', nextHop: 'sec' })
    assert.match(ps.params['details'] ?? '', /ALTNAME/)
    assert.equal(p.requests.length, 0)
  })

  it('without ca_file the test CA is not trusted → 502 ERR_PARENT_TLS_CERT, nothing sent in clear', async (t) => {
    const p = await parent(t, 'tls')
    const s = await sluice(t, `parents:\n  sec: { url: "${p.url}" }\ndefault_route: sec`)
    const res = await connectVia(s.port, echoName(), 'early')
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_TLS_CERT', type: 'tls_certificate_error', nextHop: 'sec' })
    assert.equal(p.requests.length, 0)
    assert.equal(p.accepted(), 1)
  })

  it('an https:// URL to a plain-HTTP parent → 502 ERR_PARENT_TLS', async (t) => {
    const p = await parent(t)
    const s = await sluice(t, `parents:\n  sec: { url: "https://${p.authority}" }\ndefault_route: sec`)
    const res = await connectVia(s.port, echoName())
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_TLS', type: 'tls_protocol_error', nextHop: 'sec' })
    assert.equal(p.requests.length, 0)
  })
})

// ---------------------------------------------------------------- chains

describe('chains', () => {
  it('[[edge, corp]]: edge sees CONNECT corp with its own credentials only, corp sees CONNECT target with its own', async (t) => {
    const noDns = watchDns()
    const edgeAuth = basic('edge-user:edge-pw')
    const corpAuth = basic('corp-user:corp-pw')
    const edge = await parent(t, { kind: 'ok', auth: edgeAuth })
    const corp = await parent(t, { kind: 'ok', auth: corpAuth })
    const s = await sluice(t, `
parents:
  edge: { url: "http://edge-user:edge-pw@${edge.authority}" }
  corp: { url: "http://corp-user:corp-pw@${corp.authority}" }
routes:
  chained: [[edge, corp]]
default_route: chained
`)
    const res = await connectVia(s.port, echoName(), 'two-hops')
    await expectTunnel(res, 'two-hops')
    await ping(res.socket)
    await finish(res.socket)
    assert.equal(edge.requests.length, 1)
    assert.equal(edge.requests[0]?.target, corp.authority)
    assert.deepEqual(edge.requests[0]?.rawHeaders, [['Host', corp.authority], ['Proxy-Authorization', edgeAuth]])
    assert.equal(corp.requests.length, 1)
    assert.equal(corp.requests[0]?.target, echoName())
    assert.deepEqual(corp.requests[0]?.rawHeaders, [['Host', echoName()], ['Proxy-Authorization', corpAuth]])
    assert.equal(corp.requests[0]?.beforeReply.length, 0)
    const rec = await closedLog(s, res.client)
    assert.equal(rec['route'], 'chained')
    assert.deepEqual(rec['hops'], ['edge', 'corp'])
    assert.equal(rec['dialed'], edge.authority)
    noDns()
  })

  it('[[edge, corp]] with an https corp: TLS to corp inside the edge tunnel', async (t) => {
    const edge = await parent(t)
    const corp = await parent(t, 'tls')
    const caFile = join(tmp, 'corp-ca.pem')
    writeFileSync(caFile, corp.ca ?? '')
    const s = await sluice(t, `
parents:
  edge: { url: "http://${edge.authority}" }
  corp: { url: "${corp.url}", ca_file: "${caFile}" }
routes:
  chained: [[edge, corp]]
default_route: chained
`)
    const res = await connectVia(s.port, echoName(), 'tls-in-tunnel')
    await expectTunnel(res, 'tls-in-tunnel')
    await finish(res.socket)
    assert.equal(edge.requests[0]?.target, corp.authority)
    assert.equal(corp.requests[0]?.target, echoName())
  })

  it('the second hop refusing → the error names it as next-hop', async (t) => {
    const edge = await parent(t)
    const corp = await parent(t, { kind: 'status', status: 407 })
    const s = await sluice(t, `
parents:
  edge: { url: "http://${edge.authority}" }
  corp: { url: "http://${corp.authority}" }
routes:
  chained: [[edge, corp]]
default_route: chained
`)
    const res = await connectVia(s.port, echoName(), 'early')
    await expectRefusal(res, { status: 502, code: 'ERR_PARENT_AUTH', type: 'http_request_denied', nextHop: 'corp', receivedStatus: 407 })
    await corp.requests[0]?.closed
    assert.equal(corp.requests[0]?.afterReply.length, 0)
  })
})

// ---------------------------------------------------------------- passive health

describe('parent backoff', () => {
  it('a dead parent is marked down once and skipped while down; the next choice is used directly', async (t) => {
    const port = await closedPort()
    const alive = await parent(t)
    const s = await sluice(t, `
parents:
  dead: { url: "http://127.0.0.1:${port}" }
  alive: { url: "http://${alive.authority}" }
routes:
  r: [dead, alive]
default_route: r
parent_backoff: 60s
`)
    const first = await connectVia(s.port, echoName(), '1')
    await expectTunnel(first, '1')
    await finish(first.socket)
    const down = await s.waitForLog(r => r.msg === 'parent marked down')
    assert.equal(down['level'], 'warn')
    assert.equal(down['parent'], 'dead')
    assert.equal(down['reason'], 'ERR_PARENT_REFUSED')
    assert.equal(down['failures'], 1)
    assert.equal(down['backoff_ms'], 60_000)

    const second = await connectVia(s.port, echoName(), '2')
    await expectTunnel(second, '2')
    await finish(second.socket)
    await closedLog(s, second.client)
    assert.equal(count(s, 'route choice failed'), 1)
    assert.equal(count(s, 'parent marked down'), 1)
    assert.equal(alive.requests.length, 2)
    assert.deepEqual((await closedLog(s, second.client))['hops'], ['alive'])
  })

  it('when every choice is down, they are tried anyway', async (t) => {
    const port = await closedPort()
    const s = await sluice(t, `parents:\n  dead: { url: "http://127.0.0.1:${port}" }\ndefault_route: dead\nparent_backoff: 60s`)
    for (let i = 0; i < 2; i++) {
      const res = await connectVia(s.port, echoName())
      await expectRefusal(res, { status: 502, code: 'ERR_PARENT_REFUSED', type: 'connection_refused', nextHop: 'dead' })
    }
    assert.equal(count(s, 'route choice failed'), 2)
    assert.equal(count(s, 'parent marked down'), 1)
  })

  it('after a short backoff the parent is tried again (waited for by a 300 ms parent timeout, not a sleep)', async (t) => {
    const port = await closedPort()
    const alive = await parent(t)
    const slow = await parent(t, 'slow')
    const s = await startSluice(`
dns: { servers: ["${dns.address}"] }
timeouts: { connect: 300ms }
parent_backoff: 200ms
parents:
  dead: { url: "http://127.0.0.1:${port}" }
  alive: { url: "http://${alive.authority}" }
  slow: { url: "http://${slow.authority}" }
routes:
  flaky: [dead, alive]
rules:
  - { name: wait, action: allow, hosts: [wait.test], via: slow }
  - { name: flaky, action: allow, hosts: ["*.test"], via: flaky }
`)
    t.after(async () => { await s.close() })
    const first = await connectVia(s.port, echoName(), '1')
    await expectTunnel(first, '1')
    await finish(first.socket)
    assert.equal(count(s, 'route choice failed', r => r['choice'] === 'dead'), 1)

    // The clock: a CONNECT that can only end by the 300 ms connect timeout (> 200 ms backoff).
    const clock = await connectVia(s.port, `wait.test:${echo.port}`)
    assert.equal(clock.status, 504)
    await readAll(clock.socket)

    const again = await connectVia(s.port, echoName(), '2')
    await expectTunnel(again, '2')
    await finish(again.socket)
    await closedLog(s, again.client)
    assert.equal(count(s, 'route choice failed', r => r['choice'] === 'dead'), 2)
    const downs = s.logs.filter(r => r.msg === 'parent marked down' && r['parent'] === 'dead')
    assert.deepEqual(downs.map(r => [r['failures'], r['backoff_ms']]), [[1, 200], [2, 400]])
    assert.equal(alive.requests.length, 2)
  })

  it('a parent that works again is logged back up, once', async (t) => {
    const p = await parent(t, 'close-mid-head')
    const s = await sluice(t, `parents:\n  p: { url: "http://${p.authority}" }\ndefault_route: p\nparent_backoff: 60s`)
    const bad = await connectVia(s.port, echoName())
    await expectRefusal(bad, { status: 502, code: 'ERR_PARENT_PROTOCOL', type: 'http_protocol_error', nextHop: 'p' })
    await s.waitForLog(r => r.msg === 'parent marked down' && r['parent'] === 'p')
    p.set('ok')
    // Down, but the only choice: tried anyway, and it works.
    for (const text of ['1', '2']) {
      const res = await connectVia(s.port, echoName(), text)
      await expectTunnel(res, text)
      await finish(res.socket)
      await closedLog(s, res.client)
    }
    const up = s.logs.filter(r => r.msg === 'parent back up')
    assert.equal(up.length, 1)
    assert.equal(up[0]?.['parent'], 'p')
    assert.equal(up[0]?.['after_failures'], 1)
  })
})

// ---------------------------------------------------------------- --parent and the environment

describe('--parent and parents_from_env', () => {
  const rules = (): string => `
version: 1
dns: { servers: ["${dns.address}"] }
rules:
  - { name: names, action: allow, hosts: ["*.test"] }
  - { name: loopback, action: allow, ips: [127.0.0.0/8] }
`

  it('--parent sends every target through it, names and IP literals', async (t) => {
    const noDns = watchDns()
    const p = await parent(t, { kind: 'ok', auth: basic('cli@x:pw') })
    const s = await startConfigured(rules(), { parentUrl: `http://cli%40x:pw@${p.authority}` })
    t.after(async () => { await s.close() })
    const a = await connectVia(s.port, echoName(), 'a')
    await expectTunnel(a, 'a')
    await finish(a.socket)
    const b = await connectVia(s.port, `127.0.0.1:${echo.port}`, 'b')
    await expectTunnel(b, 'b')
    await finish(b.socket)
    assert.deepEqual(p.requests.map(r => r.target), [echoName(), `127.0.0.1:${echo.port}`])
    for (const c of [a.client, b.client]) {
      const rec = await closedLog(s, c)
      assert.equal(rec['route'], 'cli')
      assert.deepEqual(rec['hops'], ['cli'])
    }
    noDns()
  })

  it('parents_from_env: HTTPS_PROXY from the given env is the default route, NO_PROXY targets go direct', async (t) => {
    const p = await parent(t)
    const s = await startConfigured(`${rules()}parents_from_env: true\n`, { env: { HTTPS_PROXY: p.url, NO_PROXY: 'localhost, 127.0.0.1' } })
    t.after(async () => { await s.close() })
    const viaParent = await connectVia(s.port, echoName(), 'p')
    await expectTunnel(viaParent, 'p')
    await finish(viaParent.socket)
    const direct = await connectVia(s.port, `127.0.0.1:${echo.port}`, 'd')
    await expectTunnel(direct, 'd')
    await finish(direct.socket)
    assert.deepEqual(p.requests.map(r => r.target), [echoName()])
    const r1 = await closedLog(s, viaParent.client)
    assert.equal(r1['route'], 'env')
    assert.deepEqual(r1['hops'], ['env'])
    const r2 = await closedLog(s, direct.client)
    assert.equal(r2['route'], 'direct')
    assert.equal(r2['hops'], undefined)
    assert.equal(r2['dialed'], `127.0.0.1:${echo.port}`)
  })

  it('parents_from_env: a NO_PROXY domain also covers its sub-domains (undici semantics)', async (t) => {
    const p = await parent(t)
    dns.set('svc.internal.test', { A: ['127.0.0.1'] })
    const s = await startConfigured(`
version: 1
dns: { servers: ["${dns.address}"] }
parents_from_env: true
rules:
  - { name: internal, action: allow, hosts: ["*.internal.test"], ips: [127.0.0.0/8] }
  - { name: names, action: allow, hosts: ["*.test"] }
`, { env: { HTTPS_PROXY: p.url, NO_PROXY: 'internal.test' } })
    t.after(async () => { await s.close() })
    const res = await connectVia(s.port, `svc.internal.test:${echo.port}`, 'i')
    await expectTunnel(res, 'i')
    await finish(res.socket)
    const rec = await closedLog(s, res.client)
    assert.equal(rec['route'], 'direct', `went ${String(rec['route'])}`)
    assert.equal(p.requests.length, 0)
  })
})
