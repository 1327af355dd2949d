/**
 * Fuzzing the CONNECT listener's request-head parser, connect/head-parser.ts
 * (issue 12, "Fuzz it"). Properties, over random bytes, near-valid heads,
 * mutated valid heads and heads sized around the limit:
 *
 * - exactly one answer and no exception: a head (whose length ends on
 *   CRLFCRLF within the limit), "incomplete" (only below the limit), or a
 *   known code with its status;
 * - split at every byte boundary gives the same result as whole: fed one
 *   byte at a time with one HeadScan, the first answer is the whole input's,
 *   and it comes at the same byte whether or not the scan is kept;
 * - it agrees with llhttp on every CONNECT head it accepts: a real
 *   http.Server on 127.0.0.1 (Node 20's llhttp, the front end this parser
 *   replaced) is sent the same bytes, and must emit 'connect' with the same
 *   method, target, version, headers and early bytes. Valid heads are
 *   generated; mutated ones check the front end is never laxer than llhttp
 *   on a head that would become a tunnel (a CONNECT, HTTP/1.0 or 1.1, a
 *   target connect/target.ts accepts).
 *
 * Bounded in `npm test`; FUZZ_RUNS scales every run count.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { HeadScan, parseHead, type HeadResult } from '../../src/connect/head-parser.js'
import { parseTarget } from '../../src/connect/target.js'
import { fuzzParams, fuzzTimeout, mutated } from '../helpers/fuzz.js'

const MAX = 1024
const CODES = new Set(['HPE_INVALID_METHOD', 'HPE_INVALID_URL', 'HPE_INVALID_VERSION', 'HPE_CR_EXPECTED', 'HPE_LF_EXPECTED',
  'HPE_INVALID_HEADER_TOKEN', 'HPE_HEADER_OVERFLOW', 'HPE_UNEXPECTED_CONTENT_LENGTH', 'HPE_INVALID_CONTENT_LENGTH',
  'HPE_INVALID_TRANSFER_ENCODING', 'HPE_CONNECT_CONTENT'])

/** A result as plain data, comparable with deepEqual. */
function plain (r: HeadResult): unknown {
  if (r.kind === 'incomplete') return { kind: r.kind }
  if (r.kind === 'error') return { kind: r.kind, code: r.code, status: r.status }
  const h = r.head
  return { kind: r.kind, length: r.length, method: h.method, target: h.target, version: h.version, auth: h.proxyAuthorization, headers: h.headers }
}

function shown (b: Buffer): string {
  return JSON.stringify(b.subarray(0, 300).toString('latin1'))
}

/** One answer, well-formed. */
function checkOne (buf: Buffer, r: HeadResult, max: number): void {
  switch (r.kind) {
    case 'incomplete':
      assert.ok(buf.length < max, `incomplete with ${buf.length} bytes under a limit of ${max}: ${shown(buf)}`)
      return
    case 'error':
      assert.ok(CODES.has(r.code), `unknown code ${r.code}`)
      assert.equal(r.status, r.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400)
      assert.ok(r.detail.length > 0)
      return
    case 'head':
      assert.ok(r.length >= 4 && r.length <= Math.min(buf.length, max), `length ${r.length} of ${buf.length} (limit ${max})`)
      assert.equal(buf.toString('latin1', r.length - 4, r.length), '\r\n\r\n')
      assert.match(r.head.method, /^[A-Z][A-Z_-]*$/)
      assert.ok(!r.head.target.includes(' ') && r.head.target.length > 0)
      assert.match(r.head.version, /^\d\.\d$/)
  }
}

/** Fed one byte at a time with one scan: the first answer, and the byte count at which it came. */
function byteByByte (buf: Buffer, max: number): { r: HeadResult, at: number } {
  const scan = new HeadScan()
  for (let n = 1; n <= buf.length; n++) {
    const prefix = buf.subarray(0, n)
    const r = parseHead(prefix, max, scan)
    // Kept or not, the scan changes nothing: a one-shot call on the prefix says the same.
    assert.deepEqual(plain(parseHead(prefix, max)), plain(r), `one-shot and incremental differ at ${n} bytes of ${shown(buf)}`)
    if (r.kind !== 'incomplete') return { r, at: n }
  }
  return { r: parseHead(buf, max, scan), at: buf.length }
}

/** Every property but llhttp's, on one input. */
function check (buf: Buffer, max = MAX): void {
  const whole = parseHead(buf, max)
  checkOne(buf, whole, max)
  const { r, at } = byteByByte(buf, max)
  assert.deepEqual(plain(r), plain(whole), `split one byte at a time (answered at ${at}) vs whole: ${shown(buf)}`)
  // An answer depends only on the bytes it needed: the head's own, or up to the refusing byte.
  if (whole.kind === 'head') assert.equal(at, whole.length)
}

// ------------------------------------------------------------ generators

function often<T> (common: T, ...rare: T[]): fc.Arbitrary<T> {
  return fc.oneof({ weight: 6, arbitrary: fc.constant(common) }, { weight: 1, arbitrary: fc.constantFrom(...rare) })
}

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,16}$/)
/** A field name: mostly ordinary, sometimes one the parser treats specially. */
const name = fc.oneof(
  { weight: 6, arbitrary: token.filter(n => !['content-length', 'transfer-encoding'].includes(n.toLowerCase())) },
  { weight: 2, arbitrary: fc.constantFrom('Host', 'User-Agent', 'Proxy-Authorization', 'proxy-AUTHORIZATION', 'Proxy-Connection') }
)
const fieldChar = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0x21, max: 0x7e }) },
  { weight: 2, arbitrary: fc.constantFrom(0x20, 0x09) },
  { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }) }
).map(c => String.fromCharCode(c))
const value = fc.string({ unit: fieldChar, maxLength: 24 })
const ows = fc.constantFrom('', '', ' ', '\t', '  ', ' \t')
const field = fc.tuple(name, ows, value, ows).map(([n, a, v, b]) => `${n}:${a}${v}${b}`)

const port = fc.integer({ min: 1, max: 65535 })
/** Authority-form targets connect/target.ts accepts. */
const validTarget = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.domain(), port).map(([h, p]) => `${h}:${p}`) },
  { weight: 2, arbitrary: fc.tuple(fc.ipV4(), port).map(([h, p]) => `${h}:${p}`) },
  { weight: 2, arbitrary: fc.tuple(fc.ipV6(), port).map(([h, p]) => `[${h}]:${p}`) }
)
/** Those, and arbitrary strings of URI characters. */
const target = fc.oneof(
  { weight: 3, arbitrary: validTarget },
  { weight: 1, arbitrary: fc.stringMatching(/^[A-Za-z0-9._~:/?[\]@!$&'()*+,;=%-]{1,40}$/) }
)

/** A CONNECT head (HTTP/1.0 or 1.1, fields, maybe Content-Length: 0) with early bytes after it. */
function connectHead (t: fc.Arbitrary<string>): fc.Arbitrary<Buffer> {
  return fc.tuple(t, fc.constantFrom('1.1', '1.0'), fc.array(field, { maxLength: 8 }), fc.boolean(), fc.uint8Array({ maxLength: 24 }))
    .map(([t, v, fs, cl0, early]) => Buffer.concat([
      Buffer.from(`CONNECT ${t} HTTP/${v}\r\n${fs.map(f => f + '\r\n').join('')}${cl0 ? 'Content-Length: 0\r\n' : ''}\r\n`, 'latin1'),
      Buffer.from(early)
    ]))
}
/** Valid CONNECT heads: every part as a client may send it. */
const validConnect = connectHead(validTarget)
const anyConnect = connectHead(target)

/** Near-valid heads: the pieces a parser must refuse, mixed in. */
const nearValid = fc.tuple(
  often('CONNECT', 'connect', 'GET', 'PRI', 'CONNECTX', 'CONNEC', ''),
  often(' ', '  ', '\t', ''),
  fc.oneof(target, fc.constantFrom('a#b:1', 'a\xe9:1', '169.254.169.254\xc2\xad:80', '', '*')),
  often(' HTTP/1.1', ' HTTP/1.0', ' HTTP/2.0', ' HTTP/0.9', ' HTTP/1.2', ' http/1.1', ' HTTP/11', '', '  HTTP/1.1', ' HTTP/1.1 '),
  fc.array(fc.tuple(fc.oneof(field, fc.constantFrom('Content-Length: 0', 'Content-Length: 5', 'Content-Length: 1, 1', 'Transfer-Encoding: chunked',
    ' folded', 'X : y', 'NoColon', 'X: a\x00b', ':empty')), often('\r\n', '\n', '\r', '\r\r\n')), { maxLength: 5 }),
  often('\r\n', '\n', ''),
  fc.constantFrom('', 'hello', 'GET / HTTP/1.1\r\n\r\n'))
  .map(([m, sp, t, v, fs, end, rest]) => Buffer.from(`${m}${sp}${t}${v}\r\n${fs.map(([f, e]) => f + e).join('')}${end}${rest}`, 'latin1'))

const input = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map(b => Buffer.from(b)) },
  { weight: 3, arbitrary: nearValid },
  { weight: 2, arbitrary: validConnect },
  { weight: 3, arbitrary: mutated(anyConnect.map(b => new Uint8Array(b)), 3) }
)

/** A head whose end lies `delta` bytes from the limit (the edge where the size check and splitting meet). */
const nearLimit = fc.record({ max: fc.integer({ min: 64, max: 400 }), delta: fc.integer({ min: -6, max: 6 }), rest: fc.integer({ min: 0, max: 6 }) })
  .map(({ max, delta, rest }) => {
    const start = 'CONNECT a.test:443 HTTP/1.1\r\nX-Pad: '
    const padded = `${start}${'p'.repeat(Math.max(0, max + delta - start.length - 4))}\r\n\r\n`
    return { max, bytes: Buffer.from(padded + 'r'.repeat(rest), 'latin1') }
  })

// ------------------------------------------------------------ llhttp, the oracle

interface Oracle { readonly event: 'connect' | 'request' | 'clientError', readonly req?: IncomingMessage, readonly head?: Buffer, readonly code?: string }

let server: Server
let port0 = 0
/** What llhttp made of each connection, by the client's port. */
const seen = new Map<number, (o: Oracle) => void>()

function settle (socket: Socket, o: Oracle): void {
  seen.get(socket.remotePort ?? -1)?.(o)
  socket.destroy()
}

before(async () => {
  // Node's own front end, as Sluice had it (docs/node-internals.md A5): strict parser, no Host required.
  server = createServer({ requireHostHeader: false, maxHeaderSize: 16384 })
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => { settle(socket, { event: 'connect', req, head }) })
  server.on('request', (req: IncomingMessage) => { settle(req.socket, { event: 'request', req }) })
  server.on('clientError', (err: Error & { code?: string }, socket: Socket) => {
    settle(socket, { event: 'clientError', ...(err.code === undefined ? {} : { code: err.code }) })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  port0 = (server.address() as AddressInfo).port
})
after(async () => {
  server.closeAllConnections()
  await new Promise<void>(resolve => server.close(() => resolve()))
})

/** Send `bytes` to llhttp over a real socket; what it emitted (bounded: the client half-closes, so llhttp must decide). */
async function llhttp (bytes: Buffer): Promise<Oracle> {
  const socket = connect({ port: port0, host: '127.0.0.1', allowHalfOpen: true })
  socket.on('error', () => {})
  await once(socket, 'connect')
  const local = socket.localPort ?? 0
  const outcome = new Promise<Oracle>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`llhttp said nothing about ${shown(bytes)}`)), 5000)
    seen.set(local, (o) => { clearTimeout(timer); resolve(o) })
  })
  socket.end(bytes)
  try {
    return await outcome
  } finally {
    seen.delete(local)
    socket.destroy()
  }
}

/**
 * A head the front end would take for a tunnel (a CONNECT, HTTP/1.x, a
 * target connect/target.ts accepts) must be llhttp's too, field for field.
 * False when it would not become a tunnel (llhttp is not asked).
 */
async function agreesWithLlhttp (bytes: Buffer): Promise<boolean> {
  const r = parseHead(bytes, MAX)
  if (r.kind !== 'head' || r.head.method !== 'CONNECT' || (r.head.version !== '1.1' && r.head.version !== '1.0')) return false
  try {
    parseTarget(r.head.target)
  } catch {
    return false // ERR_BAD_TARGET: refused whatever llhttp thinks
  }
  const o = await llhttp(bytes)
  assert.equal(o.event, 'connect', `we accept a CONNECT llhttp does not (${o.event} ${o.code ?? ''}): ${shown(bytes)}`)
  const req = o.req as IncomingMessage
  const raw: Array<[string, string]> = []
  for (let i = 0; i < req.rawHeaders.length; i += 2) raw.push([(req.rawHeaders[i] ?? '').toLowerCase(), req.rawHeaders[i + 1] ?? ''])
  assert.deepEqual(
    { method: r.head.method, target: r.head.target, version: r.head.version, headers: r.head.headers, auth: r.head.proxyAuthorization, early: bytes.subarray(r.length).toString('latin1') },
    { method: req.method, target: req.url, version: req.httpVersion, headers: raw, auth: req.headers['proxy-authorization'], early: (o.head ?? Buffer.alloc(0)).toString('latin1') },
    `ours vs llhttp for ${shown(bytes)}`)
  return true
}

// ------------------------------------------------------------ properties

describe('parseHead fuzz', { timeout: fuzzTimeout(120_000) }, () => {
  it('random, near-valid and mutated heads: one well-formed answer, the same split at every byte as whole', () => {
    fc.assert(fc.property(input, (b) => { check(b) }), fuzzParams(400))
  })

  it('heads ending around the limit: the same split at every byte as whole', () => {
    fc.assert(fc.property(nearLimit, ({ max, bytes }) => { check(bytes, max) }), fuzzParams(150))
  })

  it('agrees with llhttp on every valid CONNECT head (method, target, version, headers, early bytes)', async () => {
    await fc.assert(fc.asyncProperty(validConnect, async (b) => {
      assert.ok(await agreesWithLlhttp(b), `a generated valid head was not accepted: ${shown(b)}`)
    }), fuzzParams(150))
  })

  it('never laxer than llhttp: a mutated head that would become a tunnel, llhttp takes the same way', async () => {
    await fc.assert(fc.asyncProperty(mutated(anyConnect.map(b => new Uint8Array(b)), 3), async (b) => {
      await agreesWithLlhttp(b)
    }), fuzzParams(150))
  })
})
