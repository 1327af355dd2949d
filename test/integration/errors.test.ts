/**
 * Every way a request can fail, over real sockets: the exact status line,
 * a parsed Proxy-Status (RFC 9209) with the right error type, code, rcode
 * and next-hop, `Connection: close`, a text/plain body of exactly
 * Content-Length bytes, the connection closing after it, and the one log
 * record (`request refused` or `tunnel closed`) that matches.
 *
 * DNS outcomes come only from the stub (every Sluice here points at it);
 * slow outcomes use 300 ms timeouts and are awaited, never slept for.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { startDnsStubRetrying, type DnsStub } from '../helpers/dns-stub.js'
import { closedPort } from '../helpers/net.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectHead, connectVia, rawConnect, readAll, readBytes } from '../helpers/raw.js'
import { expectRefusal } from '../helpers/refusal.js'
import { startSluice, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { assertNothingOpen } from '../helpers/wait.js'

// ---------------------------------------------------------------- helpers

/** Open a tunnel through Sluice to the echo server and prove it carries bytes. */
async function openTunnel (s: Sluice, port: number, opts: { socket?: Socket, headers?: string } = {}): Promise<{ socket: Socket, client: string }> {
  const res = await connectVia(s.port, `127.0.0.1:${port}`, { ...opts, early: 'ping' })
  assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
  const echoed = await readBytes(res.socket, 4, { have: res.rest, mode: 'all' })
  assert.equal(echoed.toString(), 'ping')
  return { socket: res.socket, client: res.client }
}

/** Half-close an open tunnel and wait for its `tunnel closed` record. */
async function closeTunnel (s: Sluice, t: { socket: Socket, client: string }): Promise<LogRecord> {
  t.socket.end()
  await readAll(t.socket) // the echo server ends after our FIN
  if (!t.socket.closed) await once(t.socket, 'close')
  const record = await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['client'] === t.client)
  assert.equal(record['status'], 200)
  return record
}

/**
 * A loopback listener with `listen(0)` that never accepts: once one
 * connection fills its accept queue, further SYNs are dropped and connects
 * hang (the connect-timeout trick). Returns the child, its port and the
 * filler connection.
 */
async function blackhole (): Promise<{ child: ChildProcess, port: number, filler: Socket }> {
  const child = spawn('python3', ['-c', [
    'import socket, sys',
    's = socket.socket()',
    "s.bind(('127.0.0.1', 0))",
    's.listen(0)',
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.read()'
  ].join('\n')], { stdio: ['pipe', 'pipe', 'inherit'] })
  try {
    if (child.stdout === null) throw new Error('no stdout pipe')
    const [line] = await once(child.stdout, 'data') as [Buffer]
    const port = Number(line.toString().trim())
    assert.ok(Number.isInteger(port) && port > 0, `python printed ${JSON.stringify(line.toString())}`)
    const filler = connect({ host: '127.0.0.1', port })
    filler.on('error', () => {})
    await once(filler, 'connect')
    return { child, port, filler }
  } catch (err) {
    child.kill()
    throw err
  }
}

// ---------------------------------------------------------------- tests

let stub: DnsStub | undefined

before(async () => {
  stub = await startDnsStubRetrying({
    'loop.test': { A: ['127.0.0.1'] },
    'nodata.test': {},
    'servfail.test': { rcode: 'SERVFAIL' },
    'drop.test': { drop: true }
  })
})

after(async () => {
  await stub?.close()
})

/** The stub, once the top-level before() has started it. */
function dns (): DnsStub {
  assert.ok(stub !== undefined, 'DNS stub started')
  return stub
}

/** The helper's loopback rule, with DNS pointed at the stub (plus `dnsExtra` keys). */
function loopbackConfig (extra = '', dnsExtra = ''): string {
  return `
dns: { servers: ["${dns().address}"]${dnsExtra} }
rules:
  - name: test-loopback
    action: allow
    ips: [127.0.0.0/8, "::1/128"]
${extra}`
}

/** 403 ERR_POLICY_DENIED by `rule` for CONNECT `target` (details including each of `detailIncludes`), decided before DNS: the stub is asked nothing. */
async function expectDeniedBeforeDns (s: Sluice, target: string, rule: string, detailIncludes: readonly string[]): Promise<void> {
  const before = dns().queries.length
  await expectRefusal(s, connectHead(target), {
    status: 403,
    code: 'ERR_POLICY_DENIED',
    type: 'http_request_denied',
    detailIncludes,
    log: 'tunnel closed',
    logFields: { rule, target, dialed: undefined }
  })
  assert.equal(dns().queries.length, before, 'denied without a DNS query')
}

const BAD_TARGET = 'request target must be authority-form host:port'
const LABEL_CHARS = 'host name has an empty label or a character outside a-z 0-9 - _'
const PORT_RANGE = 'port must be a number 1-65535'
const NO_PATH = 'request target must be host:port, without scheme or path'
/** 254 characters: four 62-character labels with dots, then `ab`. */
const NAME_254 = `${'n'.repeat(62)}.`.repeat(4) + 'ab'

/** [target, detail] — each refused by Sluice's own parser with that detail. */
const BAD_TARGETS: ReadonlyArray<readonly [string, string]> = [
  ['example.com', 'port is missing: add one, e.g. example.com:443'],
  ['example.com:', 'port is missing: add one, e.g. example.com:443'],
  ['[::1]', 'port is missing: add one, e.g. [::1]:443'],
  ['example.com:0', PORT_RANGE],
  ['example.com:65536', PORT_RANGE],
  ['example.com:https', PORT_RANGE],
  ['example.com:-1', PORT_RANGE],
  ['a@b:1', 'userinfo is not allowed in the request target'],
  ['user:pw@example.com:443', 'userinfo is not allowed in the request target'],
  ['/foo', NO_PATH],
  ['h:1/x', NO_PATH],
  ['http://example.com:443', NO_PATH],
  ['example.com:443?x', NO_PATH],
  [':443', 'host is empty'],
  ['exa!mple.com:443', LABEL_CHARS],
  ['a..b:443', LABEL_CHARS],
  ['-a.example:443', LABEL_CHARS],
  [`${'l'.repeat(64)}.example:443`, 'host name label longer than 63 characters'],
  [`${NAME_254}:443`, 'host name is empty or longer than 253 characters'],
  ['.:443', 'host name is empty or longer than 253 characters'],
  [`${'t'.repeat(300)}:443`, 'request target is too long'],
  ['::1:443', 'IPv6 literals must be in brackets'],
  ['[fe80::1%25eth0]:443', 'IPv6 zone identifiers are not allowed'],
  ['[::1:443', 'unterminated IPv6 literal'],
  ['[1.2.3.4]:443', 'not a valid IPv6 literal'],
  ['foo.123:443', 'host looks numeric but is not a valid IPv4 address'],
  ['1.2.3.4.5:443', 'host looks numeric but is not a valid IPv4 address'],
  // Stricter than WHATWG, which would decode this into 127.0.0.1 (issue 12).
  ['%31%32%37.0.0.1:443', 'percent-encoding is not allowed in the request target']
]

describe('malformed requests', { timeout: 15_000 }, () => {
  let s: Sluice
  let echo: Awaited<ReturnType<typeof startEchoServer>>

  before(async () => {
    echo = await startEchoServer()
    s = await startSluice(loopbackConfig())
  })
  after(async () => {
    await s.close()
    await echo.close()
  })

  for (const [target, detail] of BAD_TARGETS) {
    it(`400 ERR_BAD_TARGET for CONNECT ${target.length > 40 ? `${target.slice(0, 12)}…(${target.length} chars)` : target}`, async () => {
      const r = await expectRefusal(s, `CONNECT ${target} HTTP/1.1\r\nHost: x\r\n\r\n`, {
        status: 400,
        code: 'ERR_BAD_TARGET',
        type: 'http_request_error',
        detail,
        bodyIncludes: [detail],
        log: 'tunnel closed',
        logFields: { target: undefined, dialed: undefined }
      })
      assert.ok(r.proxyStatus.params['details']?.includes(BAD_TARGET))
    })
  }

  it('covers at least 14 distinct target-parser details in 15+ cases', () => {
    assert.ok(BAD_TARGETS.length >= 15)
    assert.ok(new Set(BAD_TARGETS.map(([, d]) => d)).size >= 14)
  })

  it('400 ERR_BAD_VERSION for an HTTP/2.0 CONNECT', async () => {
    await expectRefusal(s, `CONNECT 127.0.0.1:${echo.port} HTTP/2.0\r\nHost: x\r\n\r\n`, {
      status: 400, code: 'ERR_BAD_VERSION', type: 'http_request_error', detail: 'HTTP/2.0', log: 'tunnel closed'
    })
  })

  it('400 ERR_BAD_VERSION for a CONNECT without a version (HTTP/0.9)', async () => {
    await expectRefusal(s, `CONNECT 127.0.0.1:${echo.port}\r\n\r\n`, {
      status: 400, code: 'ERR_BAD_VERSION', type: 'http_request_error', detail: 'HTTP/0.9', log: 'tunnel closed'
    })
  })

  it('400 ERR_BAD_REQUEST for a lower-case connect', async () => {
    const r = await expectRefusal(s, `connect 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\n`, {
      status: 400, code: 'ERR_BAD_REQUEST', type: 'http_request_error', detail: 'HPE_INVALID_METHOD', log: 'request refused'
    })
    assert.equal(r.record['parser'], 'HPE_INVALID_METHOD')
  })

  it('400 ERR_BAD_REQUEST for garbage bytes', async () => {
    const r = await expectRefusal(s, Buffer.from([0x00, 0x01, 0xff, 0x16, 0x03, 0x01, 0x0d, 0x0a, 0x0d, 0x0a]), {
      status: 400, code: 'ERR_BAD_REQUEST', type: 'http_request_error', log: 'request refused'
    })
    assert.equal(r.record['parser'], 'HPE_INVALID_METHOD')
  })

  it('400 ERR_BAD_REQUEST for a malformed header line', async () => {
    const r = await expectRefusal(s, `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nNot A Header\r\n\r\n`, {
      status: 400, code: 'ERR_BAD_REQUEST', type: 'http_request_error', detail: 'HPE_INVALID_HEADER_TOKEN', log: 'request refused'
    })
    assert.equal(r.record['parser'], 'HPE_INVALID_HEADER_TOKEN')
  })

  const notConnect: ReadonlyArray<readonly [string, string, string]> = [
    ['GET /', 'GET', 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['absolute-form GET http://x/', 'GET', 'GET http://x/ HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['POST with a body', 'POST', 'POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello']
  ]
  for (const [name, method, bytes] of notConnect) {
    it(`405 with Allow: CONNECT for ${name}`, async () => {
      await expectRefusal(s, bytes, {
        status: 405,
        code: 'ERR_METHOD_NOT_ALLOWED',
        type: 'http_request_denied',
        detail: method,
        headers: { allow: 'CONNECT' },
        bodyIncludes: ['CONNECT', 'HTTPS_PROXY'],
        log: 'request refused',
        logFields: { method }
      })
    })
  }

  describe('a CONNECT pipelined behind a GET in one write', () => {
    let client = ''
    const bytes = (): string => 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' +
      `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\nsmuggled`

    it('gets only the 405, and the target is never connected', async () => {
      const socket = await rawConnect(s.port)
      client = `127.0.0.1:${socket.localPort ?? 0}`
      // expectRefusal reads to EOF and checks the body is exactly Content-Length
      // bytes: a second response (200 or otherwise) would show up there.
      await expectRefusal(s, bytes(), {
        status: 405,
        code: 'ERR_METHOD_NOT_ALLOWED',
        type: 'http_request_denied',
        detail: 'GET',
        headers: { allow: 'CONNECT' },
        log: 'request refused',
        exclusive: false // the dropped CONNECT gets its own record, checked below
      }, socket)
      assert.ok(socket.closed)
      assert.equal(echo.accepted(), 0, 'the echo target was never connected')
      const record = await s.waitForLog(l => l['client'] === client && l['msg'] === 'tunnel closed')
      assert.equal(record['dialed'], undefined)
      assert.notEqual(record['status'], 200)
      assert.equal(echo.accepted(), 0, 'the echo target was never connected')
    })

    it('logs the dropped CONNECT as closed by the proxy (rejected), not by the client', () => {
      assert.notEqual(client, '', 'previous test ran')
      const records = s.logs.filter(l => l['client'] === client && l['msg'] === 'tunnel closed')
      assert.equal(records.length, 1, JSON.stringify(records))
      const [rec] = records
      assert.deepEqual(
        { closed_by: rec?.['closed_by'], close: rec?.['close'] },
        { closed_by: 'proxy', close: 'rejected' },
        `pipelined CONNECT record: ${JSON.stringify(rec)}`)
    })
  })

  it('resolved no names and leaves no tunnels or connections behind', async () => {
    assert.deepEqual(dns().queries, [])
    assert.equal(echo.accepted(), 0)
    await assertNothingOpen(s)
  })
})

describe('request head limits', { timeout: 15_000 }, () => {
  let s: Sluice
  let echo: Awaited<ReturnType<typeof startEchoServer>>

  before(async () => {
    echo = await startEchoServer()
    s = await startSluice(loopbackConfig(`
limits: { max_header_size: 2048 }
timeouts: { header: 300ms }
`))
  })
  after(async () => {
    await s.close()
    await echo.close()
  })

  it('431 for a head over limits.max_header_size', async () => {
    const pad = 'a'.repeat(3000)
    const r = await expectRefusal(s, `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\nX-Pad: ${pad}\r\n\r\n`, {
      status: 431, code: 'ERR_HEADERS_TOO_LARGE', type: 'http_request_error', detail: 'limit is 2048 bytes', log: 'request refused'
    })
    assert.equal(r.record['parser'], 'HPE_HEADER_OVERFLOW')
    assert.equal(echo.accepted(), 0)
  })

  it('accepts a head under the limit (the 431 is about size)', async () => {
    const t = await openTunnel(s, echo.port, { headers: `X-Pad: ${'a'.repeat(1500)}\r\n` })
    await closeTunnel(s, t)
  })

  it('408 for a head not completed within timeouts.header', async () => {
    const r = await expectRefusal(s, `CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n`, {
      status: 408, code: 'ERR_HEADERS_TIMEOUT', type: 'http_request_error', detail: 'limit is 300 ms', log: 'request refused'
    })
    assert.equal(r.record['parser'], 'ERR_HTTP_REQUEST_TIMEOUT')
    assert.ok(r.elapsedMs >= 250 && r.elapsedMs < 3000, `answered after ${r.elapsedMs} ms`)
  })

  it('leaves no tunnels or connections behind', async () => {
    assert.equal(echo.accepted(), 1) // only the accepted tunnel
    await assertNothingOpen(s)
  })
})

describe('policy refusals', { timeout: 15_000 }, () => {
  describe('port-443-only config (default deny)', () => {
    let s: Sluice

    before(async () => {
      s = await startSluice(`
dns: { servers: ["${dns().address}"] }
default: deny
rules: [{ name: https, action: allow, ports: [443] }]
`)
    })
    after(async () => { await s.close() })

    it('403 ERR_POLICY_DENIED naming rule default for another port, before DNS', async () => {
      await expectDeniedBeforeDns(s, 'elsewhere.test:8443', 'default', ['elsewhere.test:8443', '(rule default:'])
    })

    const prohibited: ReadonlyArray<readonly [string, string]> = [
      ['10.0.0.1:443', '10.0.0.1:443'],
      ['169.254.169.254:443', '169.254.169.254:443'],
      ['[::ffff:127.0.0.1]:443', '[::ffff:7f00:1]:443'],
      ['127.1:443', '127.0.0.1:443']
    ]
    for (const [target, canonical] of prohibited) {
      it(`403 destination_ip_prohibited for ${target}, without dialing`, async () => {
        const before = dns().queries.length
        await expectRefusal(s, connectHead(target), {
          status: 403,
          code: 'ERR_DESTINATION_PROHIBITED',
          type: 'destination_ip_prohibited',
          detailIncludes: [`${canonical} (rule special-purpose-guard:`],
          log: 'tunnel closed',
          logFields: { rule: 'special-purpose-guard', target: canonical, dialed: undefined, connect_ms: undefined }
        })
        assert.equal(dns().queries.length, before, 'an IP literal is not looked up')
      })
    }

    it('403 destination_ip_prohibited for a name resolving to 127.0.0.1', async () => {
      await expectRefusal(s, connectHead('loop.test:443'), {
        status: 403,
        code: 'ERR_DESTINATION_PROHIBITED',
        type: 'destination_ip_prohibited',
        detailIncludes: ['loop.test:443 (rule special-purpose-guard: 127.0.0.1 is special-purpose'],
        log: 'tunnel closed',
        logFields: { rule: 'special-purpose-guard', target: 'loop.test:443', dialed: undefined, connect_ms: undefined }
      })
      assert.ok(dns().queries.some(q => q.name === 'loop.test' && q.type === 'A'), 'the name was resolved via the stub')
    })

    it('leaves no tunnels or connections behind', async () => {
      await assertNothingOpen(s)
    })
  })

  describe('deny rule', () => {
    let s: Sluice
    before(async () => {
      s = await startSluice(loopbackConfig().replace('rules:\n', 'rules:\n  - name: no-smtp\n    action: deny\n    ports: [25]\n'))
    })
    after(async () => { await s.close() })

    it('403 ERR_POLICY_DENIED naming the deny rule, before DNS', async () => {
      await expectDeniedBeforeDns(s, 'mail.test:25', 'no-smtp', ['mail.test:25 (rule no-smtp:'])
    })

    it('leaves no tunnels or connections behind', async () => {
      await assertNothingOpen(s)
    })
  })
})

describe('DNS and upstream failures', { timeout: 15_000 }, () => {
  let s: Sluice
  let hole: ReturnType<typeof blackhole> | undefined

  before(async () => {
    // The python listener starts while the DNS tests run; its test awaits it.
    hole = blackhole()
    hole.catch(() => {}) // reported by the test that awaits it
    s = await startSluice(loopbackConfig('timeouts: { dns: 300ms, connect: 300ms }', ', negative_ttl: 0'))
  })
  after(async () => {
    await s.close()
    const h = await hole?.catch(() => undefined)
    if (h !== undefined) {
      h.filler.destroy()
      const exited = h.child.exitCode === null ? once(h.child, 'exit') : undefined
      h.child.kill()
      await exited
    }
  })

  /** [what the name is, name, code, rcode]: each a 502 dns_error for `CONNECT name:443`. */
  const dnsErrors: ReadonlyArray<readonly [string, string, string, string]> = [
    ['a name that does not exist', 'nx.test', 'ERR_DNS_NXDOMAIN', 'NXDOMAIN'],
    ['a name with no addresses', 'nodata.test', 'ERR_DNS_NO_ADDRESSES', 'NOERROR'],
    ['a failing name', 'servfail.test', 'ERR_DNS_FAILED', 'SERVFAIL']
  ]
  for (const [what, name, code, rcode] of dnsErrors) {
    it(`502 dns_error rcode="${rcode}" for ${what}`, async () => {
      await expectRefusal(s, connectHead(`${name}:443`), {
        status: 502,
        code,
        type: 'dns_error',
        params: { rcode },
        detail: name,
        log: 'tunnel closed',
        logFields: { target: `${name}:443`, dialed: undefined }
      })
    })
  }

  it('504 dns_timeout when the DNS server never answers', async () => {
    const r = await expectRefusal(s, connectHead('drop.test:443'), {
      status: 504,
      code: 'ERR_DNS_TIMEOUT',
      type: 'dns_timeout',
      detail: 'drop.test',
      log: 'tunnel closed',
      logFields: { target: 'drop.test:443', dialed: undefined }
    })
    assert.ok(r.elapsedMs >= 250 && r.elapsedMs < 3000, `answered after ${r.elapsedMs} ms`)
  })

  it('502 connection_refused with next-hop for a closed port', async () => {
    const port = await closedPort()
    await expectRefusal(s, connectHead(`127.0.0.1:${port}`), {
      status: 502,
      code: 'ERR_UPSTREAM_REFUSED',
      type: 'connection_refused',
      params: { 'next-hop': `127.0.0.1:${port}` },
      detailIncludes: [`127.0.0.1:${port}`],
      log: 'tunnel closed',
      logFields: { target: `127.0.0.1:${port}`, rule: 'test-loopback', dialed: undefined }
    })
  })

  it('504 connection_timeout when the target never completes the handshake', async () => {
    assert.ok(hole !== undefined)
    const { port } = await hole
    const r = await expectRefusal(s, connectHead(`127.0.0.1:${port}`), {
      status: 504,
      code: 'ERR_UPSTREAM_TIMEOUT',
      type: 'connection_timeout',
      params: { 'next-hop': `127.0.0.1:${port}` },
      detailIncludes: ['300 ms', `127.0.0.1:${port}`],
      log: 'tunnel closed',
      logFields: { target: `127.0.0.1:${port}`, rule: 'test-loopback', dialed: undefined }
    })
    assert.ok(r.elapsedMs >= 250 && r.elapsedMs < 3000, `answered after ${r.elapsedMs} ms`)
  })

  it('leaves no tunnels or connections behind', async () => {
    await assertNothingOpen(s)
  })
})

describe('tunnel limits', { timeout: 15_000 }, () => {
  let echo: Awaited<ReturnType<typeof startEchoServer>>
  before(async () => { echo = await startEchoServer() })
  after(async () => { await echo.close() })

  /** A CONNECT to the echo server refused by a limit: `status` connection_limit_reached with Retry-After, never dialed. */
  async function expectLimited (s: Sluice, status: number, code: string): Promise<void> {
    await expectRefusal(s, connectHead(`127.0.0.1:${echo.port}`), {
      status,
      code,
      type: 'connection_limit_reached',
      headers: { 'retry-after': /^[1-9]\d*$/ },
      log: 'tunnel closed',
      logFields: { target: `127.0.0.1:${echo.port}`, dialed: undefined }
    })
  }

  describe('limits.max_tunnels: 1', () => {
    let s: Sluice
    before(async () => { s = await startSluice(loopbackConfig('limits: { max_tunnels: 1 }')) })
    after(async () => { await s.close() })

    it('503 with Retry-After while one tunnel is open, and accepts again once it closed', async () => {
      const first = await openTunnel(s, echo.port)
      try {
        assert.equal(s.proxy.registry.size, 1)
        await expectLimited(s, 503, 'ERR_TOO_MANY_TUNNELS')
        assert.equal(echo.accepted(), 1, 'the refused CONNECT was not dialed')
      } finally {
        await closeTunnel(s, first)
      }
      await closeTunnel(s, await openTunnel(s, echo.port))
    })

    it('leaves no tunnels or connections behind', async () => {
      await assertNothingOpen(s)
    })
  })

  describe('limits.max_tunnels_per_client: 1', () => {
    let s: Sluice
    before(async () => { s = await startSluice(loopbackConfig('limits: { max_tunnels_per_client: 1 }')) })
    after(async () => { await s.close() })

    it('429 with Retry-After for a second tunnel from the same client, not from another', async () => {
      const first = await openTunnel(s, echo.port)
      const accepted = echo.accepted()
      try {
        await expectLimited(s, 429, 'ERR_CLIENT_LIMIT')
        assert.equal(echo.accepted(), accepted, 'the refused CONNECT was not dialed')
        // Another client address (127.0.0.2) has its own allowance.
        const other = connect({ host: '127.0.0.1', port: s.port, localAddress: '127.0.0.2' })
        other.on('error', () => {})
        await once(other, 'connect')
        const second = await openTunnel(s, echo.port, { socket: other })
        assert.ok(second.client.startsWith('127.0.0.2:'))
        await closeTunnel(s, second)
      } finally {
        await closeTunnel(s, first)
      }
    })

    it('leaves no tunnels or connections behind', async () => {
      await assertNothingOpen(s)
    })
  })
})
