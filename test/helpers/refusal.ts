/**
 * What a refused request looks like: the error answer on the wire (status,
 * Proxy-Status, `Connection: close`, a text/plain body of exactly
 * Content-Length bytes, then EOF) and the one log record that ends it.
 */
import assert from 'node:assert/strict'
import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import { parseProxyStatus, type ProxyStatus } from './proxy-status.js'
import { clientOf, finish, rawConnect, readAll, readHead, type RawResponse } from './raw.js'
import type { LogRecord, Sluice } from './sluice.js'

/** An error answer, read to its end. */
export interface ErrorAnswer {
  /** The body, exactly Content-Length bytes. */
  readonly body: string
  readonly proxyStatus: ProxyStatus
}

export interface ErrorAnswerExpectation {
  /** RFC 9209 error type (Proxy-Status `error`). */
  readonly type?: string
  /** `details` must start with `${code}: `. */
  readonly code?: string
  /**
   * Send our FIN before reading to EOF: Sluice then closes at once instead
   * of lingering for more client bytes. Without it (default) the EOF must
   * come from Sluice unprompted.
   */
  readonly halfClose?: boolean
}

/**
 * The framing every error answer shares, checked on `res` (a head from
 * readHead): a Proxy-Status named `sluice` that parses (with the expected
 * error type and code), `Connection: close`, a text/plain body of exactly
 * Content-Length bytes, then EOF. The socket is fully closed afterwards.
 */
export async function expectErrorAnswer (res: RawResponse, exp: ErrorAnswerExpectation = {}): Promise<ErrorAnswer> {
  if (exp.halfClose === true) res.socket.end()
  // readAll resolves only at EOF: the connection must close after the body.
  const body = Buffer.concat([res.rest, await readAll(res.socket)])
  await finish(res.socket)

  const h = res.headers
  assert.equal(h['connection'], 'close')
  assert.equal(h['content-type'], 'text/plain; charset=utf-8')
  assert.equal(h['content-length'], String(body.length), 'body is exactly Content-Length bytes, then EOF')

  const raw = h['proxy-status']
  assert.ok(raw !== undefined, 'Proxy-Status header present')
  const ps = parseProxyStatus(raw)
  assert.equal(ps.name, 'sluice')
  if (exp.type !== undefined) assert.equal(ps.params['error'], exp.type, `Proxy-Status error in ${raw}`)
  if (exp.code !== undefined) assert.ok(ps.params['details']?.startsWith(`${exp.code}: `), `details should start with ${exp.code}: ${raw}`)
  return { body: body.toString('utf8'), proxyStatus: ps }
}

/** What a refused request must look like on the wire and in the log. */
export interface Refusal {
  readonly status: number
  readonly code: string
  /** RFC 9209 error type. */
  readonly type: string
  /** Proxy-Status parameters besides `error` and `details`, exactly (default none). */
  readonly params?: Readonly<Record<string, string>>
  /** `details` must end with `: ${detail}` (the message after the default text). */
  readonly detail?: string
  /** Substrings `details` must contain. */
  readonly detailIncludes?: readonly string[]
  /** Extra response headers (lower-case names), exactly. */
  readonly headers?: Readonly<Record<string, string | RegExp>>
  readonly bodyIncludes?: readonly string[]
  /** Which log record ends this request. */
  readonly log: 'request refused' | 'tunnel closed'
  /** Extra fields the log record must have (undefined = must be absent). */
  readonly logFields?: Readonly<Record<string, unknown>>
  /** Whether this must be the only final record for the connection (default true). */
  readonly exclusive?: boolean
}

export interface Refused {
  readonly head: RawResponse
  readonly proxyStatus: ProxyStatus
  readonly body: string
  readonly record: LogRecord
  readonly client: string
  /** ms from the first byte written to the response head arriving. */
  readonly elapsedMs: number
}

/**
 * Send `bytes` on a fresh connection (or `from`) and check the refusal
 * completely: status line, Proxy-Status, headers, body, EOF, log record.
 */
export async function expectRefusal (s: Sluice, bytes: string | Buffer, exp: Refusal, from?: Socket): Promise<Refused> {
  const socket = from ?? await rawConnect(s.port)
  socket.on('error', () => {}) // a reset fails readHead/readAll with a clear message instead
  const client = clientOf(socket)
  const started = performance.now()
  socket.write(bytes)
  const head = await readHead(socket)
  const elapsedMs = performance.now() - started
  const { body: text, proxyStatus: ps } = await expectErrorAnswer(head)

  assert.equal(head.statusLine, `HTTP/1.1 ${exp.status} ${STATUS_CODES[exp.status] ?? ''}`)
  const h = head.headers
  assert.ok(text.startsWith(`${exp.status} ${STATUS_CODES[exp.status] ?? ''}\n`), `body: ${JSON.stringify(text)}`)
  assert.match(text, /^[\t\n\x20-\x7e]+$/, 'body is printable text')
  for (const part of exp.bodyIncludes ?? []) assert.ok(text.includes(part), `body should mention ${part}: ${JSON.stringify(text)}`)
  for (const [k, v] of Object.entries(exp.headers ?? {})) {
    if (typeof v === 'string') assert.equal(h[k], v, `header ${k}`)
    else assert.match(h[k] ?? '', v, `header ${k}`)
  }

  const raw = h['proxy-status'] ?? ''
  const { error, details, ...rest } = ps.params
  assert.equal(error, exp.type, `Proxy-Status error in ${raw}`)
  assert.deepEqual(rest, exp.params ?? {}, `Proxy-Status parameters in ${raw}`)
  assert.ok(details?.startsWith(`${exp.code}: `), `details should start with ${exp.code}: ${raw}`)
  if (exp.detail !== undefined) assert.ok(details?.endsWith(`: ${exp.detail}`), `details should end with ": ${exp.detail}": ${raw}`)
  for (const part of exp.detailIncludes ?? []) assert.ok(details?.includes(part), `details should include ${part}: ${raw}`)

  const record = await s.waitForLog(r => r['msg'] === exp.log && r['client'] === client)
  assert.equal(record['status'], exp.status)
  assert.equal(record['code'], exp.code)
  if (exp.log === 'tunnel closed') {
    assert.equal(record['closed_by'], 'proxy')
    assert.equal(record['close'], 'rejected')
    assert.equal(record['bytes_up'], 0)
    assert.equal(record['bytes_down'], 0)
  }
  for (const [k, v] of Object.entries(exp.logFields ?? {})) assert.deepEqual(record[k], v, `log field ${k} in ${JSON.stringify(record)}`)
  if (exp.exclusive !== false) {
    const finals = s.logs.filter(r => r['client'] === client && (r['msg'] === 'tunnel closed' || r['msg'] === 'request refused'))
    assert.equal(finals.length, 1, `exactly one final record for ${client}: ${JSON.stringify(finals)}`)
  }
  return { head, proxyStatus: ps, body: text, record, client, elapsedMs }
}
