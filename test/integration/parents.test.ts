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
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { startDnsStub, type DnsStub } from '../helpers/dns-stub.js'
import { closedPort } from '../helpers/net.js'
import { startEchoServer } from '../helpers/origin.js'
import { startParent, type Behaviour, type BehaviourKind, type Parent, type ParentOptions } from '../helpers/parent.js'
import type { ProxyStatus } from '../helpers/proxy-status.js'
import { connectVia as rawConnectVia, finish, rawConnect, readAll, readBytes as rawReadBytes, type Connected } from '../helpers/raw.js'
import { expectErrorAnswer } from '../helpers/refusal.js'
import { sluiceFor, type LogRecord, type Sluice, type SluiceOptions } from '../helpers/sluice.js'

// ---------------------------------------------------------------- helpers

const basic = (userPass: string): string => 'Basic ' + Buffer.from(userPass, 'utf8').toString('base64')
const ESTABLISHED = 'HTTP/1.1 200 Connection Established'

/** CONNECT through Sluice on a fresh connection; `early` goes in the same write as the head. */
async function connectVia (port: number, target: string, early = ''): Promise<Connected> {
  return await rawConnectVia(port, target, { early })
}

/** Read until `n` bytes (counting `have`) arrived; resolves with all of them. */
async function readBytes (socket: Socket, n: number, have: Buffer = Buffer.alloc(0)): Promise<Buffer> {
  return await rawReadBytes(socket, n, { have, timeoutMs: 3000, mode: 'all' })
}

/** A 200 with nothing else in the head; `expect` (early bytes echoed, or server-first bytes) arrives next. */
async function expectTunnel (res: Connected, expect: string): Promise<void> {
  assert.equal(res.statusLine, ESTABLISHED)
  assert.deepEqual(res.headers, {})
  const got = await readBytes(res.socket, Buffer.byteLength(expect), res.rest)
  assert.equal(got.toString('latin1'), expect)
}

/**
 * A tunnel through Sluice that works: CONNECT `target` with `early` in the
 * same write; `early` comes back first (or `expect`: server-first bytes),
 * then `ping` round-trips if given, then we close it.
 */
async function throughTunnel (port: number, target: string, early: string, opts: { expect?: string, ping?: string } = {}): Promise<Connected> {
  const res = await connectVia(port, target, early)
  await expectTunnel(res, opts.expect ?? early)
  if (opts.ping !== undefined) await ping(res.socket, opts.ping)
  await finish(res.socket)
  return res
}

/** Round-trip some bytes through an established tunnel to the echo server. */
async function ping (socket: Socket, text = 'ping'): Promise<void> {
  socket.write(text)
  assert.equal((await readBytes(socket, text.length)).toString('latin1'), text)
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
  // Our FIN lets Sluice close at once instead of lingering for more client bytes.
  const { proxyStatus: ps, body } = await expectErrorAnswer(res, { type: r.type, code: r.code, halfClose: true })
  // Every value an sf-string, sf-integer or sf-token, each with "=".
  assert.ok(Object.values(ps.kinds).every(k => k === 'string' || k === 'integer' || k === 'token'), `Proxy-Status: ${res.headers['proxy-status'] ?? ''}`)
  assert.equal(ps.params['next-hop'], r.nextHop)
  assert.equal(ps.params['received-status'], r.receivedStatus === undefined ? undefined : String(r.receivedStatus))
  return { ps, body }
}

const closedLog = async (s: Sluice, client: string): Promise<LogRecord> =>
  await s.waitForLog(r => r.msg === 'tunnel closed' && r['client'] === client)

const count = (s: Sluice, msg: string, pred: (r: LogRecord) => boolean = () => true): number =>
  s.logs.filter(r => r.msg === msg && pred(r)).length

/** Route choices that failed (optionally: this one), from the `failed_choices` of every closing line. */
const failovers = (s: Sluice, choice?: string): number =>
  s.logs.filter(r => r.msg === 'tunnel closed').flatMap(r => (r['failed_choices'] as string[] | undefined) ?? [])
    .filter(f => choice === undefined || f.startsWith(`${choice}: `)).length

/** Sluice for this test from a config parsed with overrides (--parent, environment). */
async function startConfigured (t: TestContext, text: string, overrides: SluiceOptions['overrides']): Promise<Sluice> {
  return await sluiceFor(t, text, { file: 'configured.yaml', overrides })
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
async function sluice (t: TestContext, routing: string, extra = ''): Promise<Sluice> {
  return await sluiceFor(t, `
dns: { servers: ["${dns.address}"] }
${routing}
${extra}
rules:
  - { name: names, action: allow, hosts: ["*.test"] }
  - { name: loopback, action: allow, ips: [127.0.0.0/8, "::1/128"] }
`)
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
    const res = await throughTunnel(s.port, echoName(), 'early-bytes', { ping: 'ping' })

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
    const res = await throughTunnel(s.port, echoName(), 'early-bytes', { ping: 'ping' })
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
    await throughTunnel(s.port, echoName(), 'x')
    assert.equal(corp.requests[0]?.headers['proxy-authorization'], auth)
    assert.ok(!JSON.stringify(s.logs).includes('env:pw@1'))
  })

  it('a rule via a parent overrides the default route', async (t) => {
    const noDns = watchDns()
    const p1 = await parent(t)
    const p2 = await parent(t)
    const s = await sluiceFor(t, `
dns: { servers: ["${dns.address}"] }
parents:
  p1: { url: "http://${p1.authority}" }
  p2: { url: "http://${p2.authority}" }
default_route: p1
rules:
  - { name: special, action: allow, hosts: [special.test], via: p2 }
  - { name: names, action: allow, hosts: ["*.test"] }
`)
    const a = await throughTunnel(s.port, `special.test:${echo.port}`, 'a')
    const b = await throughTunnel(s.port, `other.test:${echo.port}`, 'b')
    assert.deepEqual(p2.requests.map(r => r.target), [`special.test:${echo.port}`])
    assert.deepEqual(p1.requests.map(r => r.target), [`other.test:${echo.port}`])
    assert.equal((await closedLog(s, a.client))['route'], 'p2')
    assert.equal((await closedLog(s, b.client))['route'], 'p1')
    noDns()
  })

  it('extra bytes after the parent\'s 200 reach the client first, right after our 200', async (t) => {
    const p = await parent(t, 'extra-bytes')
    const s = await sluice(t, `parents:\n  p: { url: "http://${p.authority}" }\ndefault_route: p`)
    const res = await throughTunnel(s.port, echoName(), '', { expect: 'SERVER-FIRST', ping: 'after' })
    assert.equal((await closedLog(s, res.client))['status'], 200)
  })

  it('an IPv6 literal target goes to the parent as CONNECT [::1]:PORT', async (t) => {
    const p = await parent(t)
    const s = await sluice(t, `parents:\n  p: { url: "http://${p.authority}" }\ndefault_route: p`)
    const target = `[::1]:${echo6.port}`
    const res = await throughTunnel(s.port, target, 'v6')
    assert.equal(p.requests[0]?.target, target)
    assert.equal(p.requests[0]?.headers['host'], target)
    const rec = await closedLog(s, res.client)
    assert.equal(rec['target'], target)
    assert.deepEqual(rec['hops'], ['p'])
    assert.equal(rec['rule'], 'loopback')
  })

  it('the special-purpose guard still applies to IP-literal targets sent to a parent', async (t) => {
    const p = await parent(t)
    const s = await sluiceFor(t, `
parents:
  p: { url: "http://${p.authority}" }
default_route: p
rules:
  - { name: any, action: allow, ports: [${echo.port}] }
`)
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
    const s = await sluiceFor(t, `
dns: { servers: ["${dns.address}"] }
parents:
  p: { url: "http://${p.authority}" }
default_route: p
rules:
  - { name: loopback, action: allow, ips: [127.0.0.0/8] }
  - { name: names, action: allow, hosts: ["*.test"] }
`)
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
    assert.equal(rec['failed_choices'], undefined)
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
    const res = await throughTunnel(s.port, echoName(), 'early')
    await p1.requests[0]?.closed
    assert.equal(p1.requests[0]?.afterReply.length, 0, 'client bytes reached the 503 parent')
    assert.equal(p2.requests[0]?.target, echoName())
    const rec = await closedLog(s, res.client)
    // The failed choice is on the one closing line, not a line of its own (issue 10).
    assert.deepEqual(rec['failed_choices'], ['p1: ERR_PARENT_STATUS'])
    assert.equal(count(s, 'route choice failed'), 0)
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
    const res = await throughTunnel(s.port, echoName(), 'e')
    assert.deepEqual((await closedLog(s, res.client))['failed_choices'], ['mid: ERR_PARENT_PROTOCOL'])
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
    const res = await throughTunnel(s.port, target, 'd')
    const rec = await closedLog(s, res.client)
    assert.deepEqual(rec['failed_choices'], ['dead: ERR_PARENT_REFUSED'])
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
    const res = await throughTunnel(s.port, echoName(), 'tls', { ping: 'ping' })
    assert.equal(p.requests[0]?.target, echoName())
    assert.equal(p.requests[0]?.servername, undefined)
    assert.deepEqual((await closedLog(s, res.client))['hops'], ['sec'])
  })

  it('servername is sent as SNI and verified', async (t) => {
    const p = await parent(t, 'tls')
    const caFile = join(tmp, 'parent-ca-sni.pem')
    writeFileSync(caFile, p.ca ?? '')
    const s = await sluice(t, `parents:\n  sec: { url: "${p.url}", ca_file: "${caFile}", servername: localhost }\ndefault_route: sec`)
    await throughTunnel(s.port, echoName(), 'sni')
    assert.equal(p.requests[0]?.servername, 'localhost')
  })

  it('a client reset through an https parent closes the tunnel (the TLS upstream cannot send an RST)', async (t) => {
    const p = await parent(t, 'tls')
    const caFile = join(tmp, 'parent-ca-rst.pem')
    writeFileSync(caFile, p.ca ?? '')
    const s = await sluice(t, `parents:\n  sec: { url: "${p.url}", ca_file: "${caFile}" }\ndefault_route: sec`)
    const res = await connectVia(s.port, echoName(), 'rst')
    await expectTunnel(res, 'rst')
    res.socket.resetAndDestroy()
    const rec = await closedLog(s, res.client)
    assert.equal(rec['closed_by'], 'client')
    assert.equal(rec['close'], 'reset')
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
  /** Sluice whose default route is the chain [[edge, corp]], given each parent's YAML entry. */
  const chained = async (t: TestContext, edge: string, corp: string): Promise<Sluice> =>
    await sluice(t, `
parents:
  edge: ${edge}
  corp: ${corp}
routes:
  chained: [[edge, corp]]
default_route: chained
`)

  it('[[edge, corp]]: edge sees CONNECT corp with its own credentials only, corp sees CONNECT target with its own', async (t) => {
    const noDns = watchDns()
    const edgeAuth = basic('edge-user:edge-pw')
    const corpAuth = basic('corp-user:corp-pw')
    const edge = await parent(t, { kind: 'ok', auth: edgeAuth })
    const corp = await parent(t, { kind: 'ok', auth: corpAuth })
    const s = await chained(t, `{ url: "http://edge-user:edge-pw@${edge.authority}" }`, `{ url: "http://corp-user:corp-pw@${corp.authority}" }`)
    const res = await throughTunnel(s.port, echoName(), 'two-hops', { ping: 'ping' })
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
    const s = await chained(t, `{ url: "http://${edge.authority}" }`, `{ url: "${corp.url}", ca_file: "${caFile}" }`)
    await throughTunnel(s.port, echoName(), 'tls-in-tunnel')
    assert.equal(edge.requests[0]?.target, corp.authority)
    assert.equal(corp.requests[0]?.target, echoName())
  })

  it('the second hop refusing → the error names it as next-hop', async (t) => {
    const edge = await parent(t)
    const corp = await parent(t, { kind: 'status', status: 407 })
    const s = await chained(t, `{ url: "http://${edge.authority}" }`, `{ url: "http://${corp.authority}" }`)
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
    await closedLog(s, (await throughTunnel(s.port, echoName(), '1')).client)
    const down = await s.waitForLog(r => r.msg === 'parent marked down')
    assert.equal(down['level'], 'warn')
    assert.equal(down['parent'], 'dead')
    assert.equal(down['reason'], 'ERR_PARENT_REFUSED')
    assert.equal(down['failures'], 1)
    assert.equal(down['backoff_ms'], 60_000)

    const second = await throughTunnel(s.port, echoName(), '2')
    await closedLog(s, second.client)
    assert.equal(failovers(s), 1)
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
      await closedLog(s, res.client)
    }
    assert.equal(failovers(s), 2)
    assert.equal(count(s, 'parent marked down'), 1)
  })

  it('after a short backoff the parent is tried again (waited for by a 300 ms parent timeout, not a sleep)', async (t) => {
    const port = await closedPort()
    const alive = await parent(t)
    const slow = await parent(t, 'slow')
    const s = await sluiceFor(t, `
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
    await closedLog(s, (await throughTunnel(s.port, echoName(), '1')).client)
    assert.equal(failovers(s, 'dead'), 1)

    // The clock: a CONNECT that can only end by the 300 ms connect timeout (> 200 ms backoff).
    const clock = await connectVia(s.port, `wait.test:${echo.port}`)
    assert.equal(clock.status, 504)
    await readAll(clock.socket)

    const again = await throughTunnel(s.port, echoName(), '2')
    await closedLog(s, again.client)
    assert.equal(failovers(s, 'dead'), 2)
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
      const res = await throughTunnel(s.port, echoName(), text)
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
    const s = await startConfigured(t, rules(), { parentUrl: `http://cli%40x:pw@${p.authority}` })
    const a = await throughTunnel(s.port, echoName(), 'a')
    const b = await throughTunnel(s.port, `127.0.0.1:${echo.port}`, 'b')
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
    const s = await startConfigured(t, `${rules()}parents_from_env: true\n`, { env: { HTTPS_PROXY: p.url, NO_PROXY: 'localhost, 127.0.0.1' } })
    const viaParent = await throughTunnel(s.port, echoName(), 'p')
    const direct = await throughTunnel(s.port, `127.0.0.1:${echo.port}`, 'd')
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
    const s = await startConfigured(t, `
version: 1
dns: { servers: ["${dns.address}"] }
parents_from_env: true
rules:
  - { name: internal, action: allow, hosts: ["*.internal.test"], ips: [127.0.0.0/8] }
  - { name: names, action: allow, hosts: ["*.test"] }
`, { env: { HTTPS_PROXY: p.url, NO_PROXY: 'internal.test' } })
    const res = await throughTunnel(s.port, `svc.internal.test:${echo.port}`, 'i')
    const rec = await closedLog(s, res.client)
    assert.equal(rec['route'], 'direct', `went ${String(rec['route'])}`)
    assert.equal(p.requests.length, 0)
  })
})
