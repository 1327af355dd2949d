/**
 * The CONNECT front end over real sockets (issue 12, "The front end"):
 * net.Server and Sluice's own head parser (connect/head-parser.ts) in place
 * of http.Server and llhttp. Each input the issue lists gets its answer on
 * the wire (status, Proxy-Status, Connection: close, body, EOF) and its one
 * log line; at least as strict as llhttp was, and stricter where the issue
 * says so. Then: a CONNECT with content, early data, heads in pieces, the
 * header timeout on one shared sweep, and connections that end mid-head.
 *
 * DNS: the stub only (nothing here resolves a name); targets are the
 * loopback echo server, which must never be dialed for a refused request.
 */
import assert from 'node:assert/strict'
import { createHook } from 'node:async_hooks'
import { once } from 'node:events'
import type { Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { startDnsStubRetrying, type DnsStub } from '../helpers/dns-stub.js'
import { startEchoServer } from '../helpers/origin.js'
import { clientOf, rawConnect, readAll, readBytes, readHead } from '../helpers/raw.js'
import { expectRefusal, type Refusal } from '../helpers/refusal.js'
import { startSluice, type Sluice } from '../helpers/sluice.js'
import { assertNothingOpen, connectionsDrained, pollImmediate } from '../helpers/wait.js'

let dns: DnsStub
let echo: Awaited<ReturnType<typeof startEchoServer>>
let s: Sluice
/** The echo server's authority. */
let ECHO = ''

before(async () => {
  dns = await startDnsStubRetrying({})
  echo = await startEchoServer()
  ECHO = `127.0.0.1:${echo.port}`
  s = await startSluice(`
dns: { servers: ["${dns.address}"] }
timeouts: { header: 400ms }
limits: { max_header_size: 2048 }
rules:
  - name: test-loopback
    action: allow
    ips: [127.0.0.0/8]
`)
})
after(async () => {
  await s.close()
  await echo.close()
  await dns.close()
})

const BAD_REQUEST = { status: 400, code: 'ERR_BAD_REQUEST', type: 'http_request_error', log: 'request refused' } as const
const BAD_VERSION = { status: 400, code: 'ERR_BAD_VERSION', type: 'http_request_error', log: 'tunnel closed' } as const
const BAD_TARGET = { status: 400, code: 'ERR_BAD_TARGET', type: 'http_request_error', log: 'tunnel closed' } as const

/** [what, bytes (ECHO stands for the echo server's authority), the refusal, the `parser` log field]. */
const REFUSED: ReadonlyArray<readonly [string, (echo: string) => string | Buffer, Refusal, string | undefined]> = [
  // Versions (llhttp took 0.9 and 2.0 and left them to Sluice; 1.2 it refused itself).
  ['HTTP/0.9, spelled out', e => `CONNECT ${e} HTTP/0.9\r\n\r\n`, { ...BAD_VERSION, detail: 'HTTP/0.9' }, undefined],
  ['no version (HTTP/0.9)', e => `CONNECT ${e}\r\n\r\n`, { ...BAD_VERSION, detail: 'HTTP/0.9' }, undefined],
  ['HTTP/1.2', e => `CONNECT ${e} HTTP/1.2\r\nHost: x\r\n\r\n`, { ...BAD_VERSION, detail: 'HTTP/1.2' }, undefined],
  ['HTTP/2.0', e => `CONNECT ${e} HTTP/2.0\r\nHost: x\r\n\r\n`, { ...BAD_VERSION, detail: 'HTTP/2.0' }, undefined],
  ['the HTTP/2 preface, PRI * HTTP/2.0', () => 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    { status: 405, code: 'ERR_METHOD_NOT_ALLOWED', type: 'http_request_denied', detail: 'PRI', headers: { allow: 'CONNECT' }, log: 'request refused', logFields: { method: 'PRI', target: '*' } }, undefined],
  // Tabs and case.
  ['a tab after the method', e => `CONNECT\t${e} HTTP/1.1\r\n\r\n`, { ...BAD_REQUEST, detail: 'HPE_INVALID_METHOD' }, 'HPE_INVALID_METHOD'],
  ['a tab before the version', e => `CONNECT ${e}\tHTTP/1.1\r\n\r\n`, { ...BAD_REQUEST, detail: 'HPE_INVALID_URL' }, 'HPE_INVALID_URL'],
  ['a lower-case connect', e => `connect ${e} HTTP/1.1\r\nHost: x\r\n\r\n`, { ...BAD_REQUEST, detail: 'HPE_INVALID_METHOD' }, 'HPE_INVALID_METHOD'],
  // Framing.
  ['Content-Length with Transfer-Encoding', e => `CONNECT ${e} HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n`,
    { ...BAD_REQUEST, detail: 'HPE_INVALID_TRANSFER_ENCODING' }, 'HPE_INVALID_TRANSFER_ENCODING'],
  ['two Content-Lengths', e => `CONNECT ${e} HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n`,
    { ...BAD_REQUEST, detail: 'HPE_UNEXPECTED_CONTENT_LENGTH' }, 'HPE_UNEXPECTED_CONTENT_LENGTH'],
  ['two Transfer-Encodings (a GET: no 405 for a request that is not well framed)', () => 'GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n',
    { ...BAD_REQUEST, detail: 'HPE_INVALID_TRANSFER_ENCODING' }, 'HPE_INVALID_TRANSFER_ENCODING'],
  ['two Transfer-Encodings on a CONNECT', e => `CONNECT ${e} HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n`,
    { ...BAD_REQUEST, detail: 'HPE_CONNECT_CONTENT' }, 'HPE_CONNECT_CONTENT'],
  // Targets.
  ['# in the target', e => `CONNECT ${e}#x HTTP/1.1\r\n\r\n`, { ...BAD_REQUEST, detail: 'HPE_INVALID_URL' }, 'HPE_INVALID_URL'],
  ['/ in the target', e => `CONNECT ${e}/x HTTP/1.1\r\n\r\n`, { ...BAD_TARGET, detail: 'request target must be host:port, without scheme or path' }, undefined],
  // Stricter than llhttp, which took it and let WHATWG host parsing decode it into 127.0.0.1 (issue 12).
  ['a percent-encoded target', () => 'CONNECT %31%32%37.0.0.1:443 HTTP/1.1\r\n\r\n',
    { ...BAD_TARGET, detail: 'percent-encoding is not allowed in the request target' }, undefined],
  // Any byte ≥ 0x80 in the request line, wherever it is.
  ['a byte ≥ 0x80 in the target', e => Buffer.from(`CONNECT ${e}\xe9 HTTP/1.1\r\n\r\n`, 'latin1'), { ...BAD_REQUEST, detail: 'HPE_INVALID_URL' }, 'HPE_INVALID_URL'],
  // 169.254.169.254 + U+00AD (soft hyphen) in UTF-8: IDNA maps it to the IP literal (net/host.ts); the wire never lets it that far.
  ['169.254.169.254 followed by U+00AD', () => Buffer.concat([Buffer.from('CONNECT 169.254.169.254'), Buffer.from('\u00ad', 'utf8'), Buffer.from(':80 HTTP/1.1\r\n\r\n')]),
    { ...BAD_REQUEST, detail: 'HPE_INVALID_URL' }, 'HPE_INVALID_URL'],
  ['a byte ≥ 0x80 in the method', e => Buffer.from(`CONNEC\xd4 ${e} HTTP/1.1\r\n\r\n`, 'latin1'), { ...BAD_REQUEST, detail: 'HPE_INVALID_METHOD' }, 'HPE_INVALID_METHOD'],
  ['a byte ≥ 0x80 in the version', e => Buffer.from(`CONNECT ${e} HTTP/1.\xb1\r\n\r\n`, 'latin1'), { ...BAD_REQUEST, detail: 'HPE_INVALID_VERSION' }, 'HPE_INVALID_VERSION'],
  // Header fields (RFC 9110 §5, RFC 9112 §5).
  ['obs-fold', e => `CONNECT ${e} HTTP/1.1\r\nX: a\r\n folded\r\n\r\n`, { ...BAD_REQUEST, detail: 'HPE_INVALID_HEADER_TOKEN' }, 'HPE_INVALID_HEADER_TOKEN'],
  ['whitespace before the colon', e => `CONNECT ${e} HTTP/1.1\r\nHost : x\r\n\r\n`, { ...BAD_REQUEST, detail: 'HPE_INVALID_HEADER_TOKEN' }, 'HPE_INVALID_HEADER_TOKEN'],
  ['NUL in a value', e => `CONNECT ${e} HTTP/1.1\r\nX: a\u0000b\r\n\r\n`, { ...BAD_REQUEST, detail: 'HPE_INVALID_HEADER_TOKEN' }, 'HPE_INVALID_HEADER_TOKEN'],
  ['a bare LF', e => `CONNECT ${e} HTTP/1.1\r\nHost: x\n\r\n`, { ...BAD_REQUEST, detail: 'HPE_CR_EXPECTED' }, 'HPE_CR_EXPECTED'],
  ['a bare CR', e => `CONNECT ${e} HTTP/1.1\r\nHost: x\ry\r\n\r\n`, { ...BAD_REQUEST, detail: 'HPE_LF_EXPECTED' }, 'HPE_LF_EXPECTED']
]

describe('at least as strict as llhttp, stricter where the issue says', { timeout: 30_000 }, () => {
  for (const [what, bytes, refusal, parser] of REFUSED) {
    it(`${what}: ${refusal.status} ${refusal.code}`, async () => {
      const r = await expectRefusal(s, bytes(ECHO), refusal)
      assert.equal(r.record['parser'], parser)
    })
  }

  it('dialed nothing and leaves nothing open', async () => {
    assert.equal(echo.accepted(), 0)
    await assertNothingOpen(s)
  })
})

describe('a CONNECT has no content (RFC 9110 §9.3.6)', { timeout: 15_000 }, () => {
  for (const [what, framing, body] of [['Content-Length: 5', 'Content-Length: 5', 'hello'], ['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked', '5\r\nhello\r\n0\r\n\r\n']] as const) {
    it(`${what}: 400, and the would-be body never reaches the target`, async () => {
      const before = echo.accepted()
      const r = await expectRefusal(s, `CONNECT ${ECHO} HTTP/1.1\r\nHost: ${ECHO}\r\n${framing}\r\n\r\n${body}`, {
        ...BAD_REQUEST, detail: 'HPE_CONNECT_CONTENT', logFields: { method: 'CONNECT', target: ECHO }
      })
      assert.equal(r.record['parser'], 'HPE_CONNECT_CONTENT')
      assert.equal(echo.accepted(), before, 'never dialed')
    })
  }

  it('Content-Length: 0 is harmless: the tunnel opens, and the bytes after the head are its early data', async () => {
    const socket = await rawConnect(s.port)
    const client = clientOf(socket)
    socket.write(`CONNECT ${ECHO} HTTP/1.1\r\nHost: ${ECHO}\r\nContent-Length: 0\r\n\r\nearly`)
    const res = await readHead(socket)
    assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
    assert.equal((await readBytes(socket, 5, { have: res.rest })).toString(), 'early')
    socket.end()
    await readAll(socket)
    const rec = await s.waitForLog(r => r.msg === 'tunnel closed' && r['client'] === client)
    assert.equal(rec['status'], 200)
    assert.equal(rec['bytes_up'], 5)
  })
})

describe('heads in pieces, early data, pipelining', { timeout: 15_000 }, () => {
  it('a head written a byte at a time, then early data with the last byte: 200, the early bytes first', async () => {
    const socket = await rawConnect(s.port)
    socket.setNoDelay(true)
    const head = `CONNECT ${ECHO} HTTP/1.1\r\nHost: ${ECHO}\r\nX-Pad: ${'p'.repeat(40)}\r\n\r`
    for (const byte of head) await new Promise<void>((resolve, reject) => socket.write(byte, err => { if (err == null) resolve(); else reject(err) }))
    socket.write('\nFIRST')
    const res = await readHead(socket)
    assert.equal(res.status, 200)
    assert.equal((await readBytes(socket, 5, { have: res.rest })).toString(), 'FIRST')
    socket.write('SECOND')
    assert.equal((await readBytes(socket, 6)).toString(), 'SECOND')
    socket.end()
    await readAll(socket)
  })

  it('431 for a head over the limit that arrives in pieces', async () => {
    const socket = await rawConnect(s.port)
    socket.write(`CONNECT ${ECHO} HTTP/1.1\r\nX-Pad: ${'a'.repeat(1000)}`)
    const r = await expectRefusal(s, `${'b'.repeat(1100)}\r\n\r\n`, {
      status: 431, code: 'ERR_HEADERS_TOO_LARGE', type: 'http_request_error', detail: 'limit is 2048 bytes', log: 'request refused', logFields: { method: 'CONNECT' }
    }, socket)
    assert.equal(r.record['parser'], 'HPE_HEADER_OVERFLOW')
  })

  it('HEAD gets its 405 without a body (RFC 9110 §9.3.2), then EOF', async () => {
    const socket = await rawConnect(s.port)
    const client = clientOf(socket)
    socket.write('HEAD / HTTP/1.1\r\nHost: x\r\n\r\n')
    const res = await readHead(socket)
    assert.equal(res.statusLine, 'HTTP/1.1 405 Method Not Allowed')
    assert.equal(res.headers['allow'], 'CONNECT')
    assert.ok(Number(res.headers['content-length']) > 0)
    assert.equal(Buffer.concat([res.rest, await readAll(socket)]).length, 0, 'no body')
    // Sluice lingers for our FIN (tunnel/respond.ts).
    socket.end()
    const rec = await s.waitForLog(r => r.msg === 'request refused' && r['client'] === client)
    assert.deepEqual([rec['method'], rec['status']], ['HEAD', 405])
  })

  it('a POST body is never read as a request: a CONNECT inside it is not acted on', async () => {
    const before = echo.accepted()
    const connect = `CONNECT ${ECHO} HTTP/1.1\r\n\r\n`
    await expectRefusal(s, `POST / HTTP/1.1\r\nContent-Length: ${connect.length}\r\n\r\n${connect}`, {
      status: 405, code: 'ERR_METHOD_NOT_ALLOWED', type: 'http_request_denied', detail: 'POST', log: 'request refused', exclusive: false
    })
    assert.equal(echo.accepted(), before)
  })

  it('leaves nothing open', async () => {
    await assertNothingOpen(s)
  })
})

describe('timeouts.header, on one shared sweep', { timeout: 15_000 }, () => {
  it('a connection that sends nothing gets 408 too (http.Server left it open forever)', async () => {
    const r = await expectRefusal(s, '', { status: 408, code: 'ERR_HEADERS_TIMEOUT', type: 'http_request_error', detail: 'limit is 400 ms', log: 'request refused' })
    assert.equal(r.record['parser'], 'ERR_HTTP_REQUEST_TIMEOUT')
    assert.equal(r.record['method'], undefined)
    assert.ok(r.elapsedMs >= 350 && r.elapsedMs < 3000, `answered after ${r.elapsedMs} ms`)
  })

  it('30 connections mid-head: no timer each (at most one Timeout created), and each gets its 408', async () => {
    let timers = 0
    const hook = createHook({ init (_id, type) { if (type === 'Timeout') timers++ } })
    hook.enable()
    const sockets: Socket[] = []
    try {
      for (let i = 0; i < 30; i++) {
        const socket = await rawConnect(s.port)
        socket.on('error', () => {})
        socket.write(`CONNECT ${ECHO} HTTP/1.1\r\nHost: `)
        sockets.push(socket)
      }
      assert.ok(await pollImmediate(500, async () => await s.proxy.connections() >= 30), 'all accepted')
    } finally {
      hook.disable()
    }
    assert.ok(timers <= 1, `${timers} timers created for 30 connections reading their heads`)
    for (const socket of sockets) {
      const res = await readHead(socket)
      assert.equal(res.status, 408)
      socket.destroy()
    }
  })

  it('an open tunnel is not a head: it outlives the header timeout', async () => {
    const socket = await rawConnect(s.port)
    socket.write(`CONNECT ${ECHO} HTTP/1.1\r\n\r\n`)
    const res = await readHead(socket)
    assert.equal(res.status, 200)
    // Three times the timeout, measured by the proxy's own 408 to a slow head sent meanwhile, not by a sleep.
    for (let i = 0; i < 3; i++) {
      const slow = await expectRefusal(s, 'CONNECT ', { status: 408, code: 'ERR_HEADERS_TIMEOUT', type: 'http_request_error', log: 'request refused' })
      assert.ok(slow.elapsedMs >= 350)
    }
    socket.write('still here')
    assert.equal((await readBytes(socket, 10)).toString(), 'still here')
    socket.end()
    await readAll(socket)
  })
})

describe('connections that end mid-head', { timeout: 15_000 }, () => {
  it('FIN after part of a head: 400, as llhttp answered (HPE_INVALID_EOF_STATE)', async () => {
    const socket = await rawConnect(s.port)
    const client = clientOf(socket)
    socket.end(`CONNECT ${ECHO} HTTP/1.1\r\nHost:`)
    const res = await readHead(socket)
    assert.equal(res.status, 400)
    const rec = await s.waitForLog(r => r.msg === 'request refused' && r['client'] === client)
    assert.deepEqual([rec['parser'], rec['method'], rec['target']], ['HPE_INVALID_EOF_STATE', 'CONNECT', ECHO])
  })

  it('FIN with nothing sent: closed quietly, no answer, no log line', async () => {
    const socket = await rawConnect(s.port)
    const client = clientOf(socket)
    socket.end()
    assert.equal((await readAll(socket)).length, 0)
    assert.equal(await connectionsDrained(s.proxy), 0)
    assert.deepEqual(s.logs.filter(r => r['client'] === client), [])
  })

  it('a reset mid-head: nothing crashes, nothing is logged at error, nothing stays open', async () => {
    const errorsBefore = s.logs.filter(r => Number(r['level']) >= 50).length
    for (let i = 0; i < 5; i++) {
      const socket = await rawConnect(s.port)
      socket.on('error', () => {})
      socket.write(`CONNECT ${ECHO} HTTP/1.1\r\nHo`)
      socket.resetAndDestroy()
      await once(socket, 'close')
    }
    assert.equal(await connectionsDrained(s.proxy), 0)
    assert.equal(s.logs.filter(r => Number(r['level']) >= 50).length, errorsBefore)
    // Still serving.
    const ok = await rawConnect(s.port)
    ok.write(`CONNECT ${ECHO} HTTP/1.1\r\n\r\n`)
    assert.equal((await readHead(ok)).status, 200)
    ok.destroy()
  })
})
