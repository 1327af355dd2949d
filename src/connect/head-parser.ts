/**
 * The request-head parser of the CONNECT listener (issue 12, "The front
 * end"; docs/node-internals.md E). One entry point, `parseHead`: bytes in, a
 * head, "incomplete", or a coded error out. It is strict by construction:
 * it accepts exactly
 *
 *   method SP target SP "HTTP/" DIGIT "." DIGIT CRLF   (RFC 9112 §3)
 *   *( field-name ":" OWS field-value OWS CRLF )       (RFC 9112 §5)
 *   CRLF
 *
 * - method: upper-case letters, `-`, `_`, starting with a letter (a
 *   lower-case `connect` is refused, as llhttp refuses it);
 * - target: one or more characters a URI may hold (RFC 3986 §2: unreserved,
 *   reserved and `%`) but `#`, which never appears in a request target
 *   (RFC 9112 §3.2). What a CONNECT target may be is connect/target.ts's to
 *   decide, so `/`, `?`, `%` or `@` pass here and are refused there with a
 *   precise detail. Tabs, controls, `"<>\^`{|}` and any byte ≥ 0x80 are
 *   refused here: a name that IDNA would turn into an IP literal
 *   (net/host.ts) never gets past the wire (issue 12);
 * - version: any `HTTP/d.d`; a request line with no version reads as HTTP/0.9.
 *   The listener's caller refuses every version but 1.0 and 1.1
 *   (connect/handle.ts, ERR_BAD_VERSION) with a precise detail;
 * - field names are tokens (RFC 9110 §5.1), with nothing between the name
 *   and the colon; values are visible ASCII, obs-text, SP and HTAB, with
 *   OWS trimmed. No obs-fold, no bare CR or LF, no NUL or other control;
 * - framing (RFC 9112 §6.3): two Content-Lengths, a Content-Length that is
 *   not digits, Content-Length with Transfer-Encoding, or two
 *   Transfer-Encodings are refused on any request; a CONNECT with any
 *   Transfer-Encoding or a Content-Length other than 0 is refused too (RFC
 *   9110 §9.3.6: a CONNECT request has no content; accepting one is how
 *   smuggling starts).
 *
 * It refuses as soon as a byte makes the head impossible (the first byte of
 * `GET` in lower case, a tab after the method), framing errors at the end of
 * their line, and says HPE_HEADER_OVERFLOW once `maxHeaderSize` bytes hold
 * no complete head. Error codes are llhttp's names for the same faults, so
 * logs read as before (the `parser` field); HPE_CONNECT_CONTENT is ours.
 *
 * Cost: one pass over the bytes through a 256-entry class table, no regex,
 * no string built until the head is complete, and then only the method,
 * target, version and Proxy-Authorization. A head that arrives in pieces is
 * scanned once if the caller keeps a `HeadScan` across calls.
 */

export type HeadErrorCode =
  | 'HPE_INVALID_METHOD'
  | 'HPE_INVALID_URL'
  | 'HPE_INVALID_VERSION'
  | 'HPE_CR_EXPECTED'
  | 'HPE_LF_EXPECTED'
  | 'HPE_INVALID_HEADER_TOKEN'
  | 'HPE_HEADER_OVERFLOW'
  | 'HPE_UNEXPECTED_CONTENT_LENGTH'
  | 'HPE_INVALID_CONTENT_LENGTH'
  | 'HPE_INVALID_TRANSFER_ENCODING'
  | 'HPE_CONNECT_CONTENT'

export interface HeadError {
  readonly kind: 'error'
  readonly code: HeadErrorCode
  /** 431 for HPE_HEADER_OVERFLOW, else 400. */
  readonly status: 400 | 431
  /** What was wrong, for people. */
  readonly detail: string
}

export type HeadResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'head', readonly head: RequestHead, readonly length: number }
  | HeadError

/** SP / HTAB, trimmed off field values (OWS, RFC 9110 §5.6.3); not String.trim(), which also eats U+00A0. */
const OWS_EDGES = /^[ \t]+|[ \t]+$/g

/** A complete request head. Strings are decoded as latin1, as Node decodes them. */
export class RequestHead {
  readonly method: string
  readonly target: string
  /** `1.1`, `1.0`, whatever `d.d` was sent, or `0.9` when the request line had no version. */
  readonly version: string
  /** The first Proxy-Authorization field value (OWS trimmed), as Node's `req.headers` kept it. */
  readonly proxyAuthorization: string | undefined
  private readonly raw: Buffer
  private readonly fieldsStart: number
  private readonly fieldsEnd: number

  constructor (method: string, target: string, version: string, proxyAuthorization: string | undefined, raw: Buffer, fieldsStart: number, fieldsEnd: number) {
    this.method = method
    this.target = target
    this.version = version
    this.proxyAuthorization = proxyAuthorization
    this.raw = raw
    this.fieldsStart = fieldsStart
    this.fieldsEnd = fieldsEnd
  }

  /**
   * Every field in order as `[lower-case name, value]`, duplicates kept.
   * Built on demand: the CONNECT pipeline only needs Proxy-Authorization.
   */
  get headers (): Array<[string, string]> {
    const out: Array<[string, string]> = []
    if (this.fieldsEnd <= this.fieldsStart) return out
    // The scan validated every line: each has a colon, names are tokens.
    for (const line of this.raw.toString('latin1', this.fieldsStart, this.fieldsEnd).split('\r\n')) {
      const colon = line.indexOf(':')
      out.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).replace(OWS_EDGES, '')])
    }
    return out
  }
}

// ------------------------------------------------------------ byte classes

const CR = 13
const LF = 10
const SP = 32
const HTAB = 9
const COLON = 58

/** A letter, `-` or `_` (method). */
const K_METHOD = 1
/** An upper-case letter (the first byte of a method). */
const K_UPPER = 2
/** tchar (RFC 9110 §5.6.2): a field-name byte. */
const K_TCHAR = 4
/** A request-target byte: RFC 3986 unreserved, reserved but `#`, and `%`. */
const K_TARGET = 8
/** VCHAR or obs-text 0x80–0xFF: a field-value byte other than SP/HTAB. */
const K_FIELD = 16

const CLASS = new Uint8Array(256)
for (let c = 0; c < 256; c++) {
  const upper = c >= 0x41 && c <= 0x5a
  const alpha = upper || (c >= 0x61 && c <= 0x7a)
  const digit = c >= 0x30 && c <= 0x39
  let k = 0
  if (upper || c === 0x2d || c === 0x5f) k |= K_METHOD
  if (upper) k |= K_UPPER
  if (alpha || digit || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c))) k |= K_TCHAR
  if (alpha || digit || "-._~:/?[]@!$&'()*+,;=%".includes(String.fromCharCode(c))) k |= K_TARGET
  if (c >= 0x21 && c !== 0x7f) k |= K_FIELD
  CLASS[c] = k
}

/** The class of byte `c` (always in 0–255: a Buffer's bytes). */
function kind (c: number): number {
  return CLASS[c] as number
}

// ------------------------------------------------------------ the scan

const S_METHOD_START = 0
const S_METHOD = 1
const S_TARGET_START = 2
const S_TARGET = 3
const S_VERSION = 4
const S_LINE_LF = 5
const S_FIELD_START = 6
const S_NAME = 7
const S_OWS = 8
const S_VALUE = 9
const S_FIELD_LF = 10
const S_END_LF = 11

/** Which field the current line is, for framing and credentials. */
const F_OTHER = 0
const F_CONTENT_LENGTH = 1
const F_TRANSFER_ENCODING = 2
const F_PROXY_AUTHORIZATION = 3

const NAMES: ReadonlyArray<readonly [number, Buffer]> = [
  [F_CONTENT_LENGTH, Buffer.from('content-length', 'latin1')],
  [F_TRANSFER_ENCODING, Buffer.from('transfer-encoding', 'latin1')],
  [F_PROXY_AUTHORIZATION, Buffer.from('proxy-authorization', 'latin1')]
]
const CONNECT = Buffer.from('CONNECT ', 'latin1')
/** `HTTP/` then DIGIT `.` DIGIT, byte by byte (0 = a digit). */
const VERSION = [0x48, 0x54, 0x54, 0x50, 0x2f, 0, 0x2e, 0]

/**
 * Where a scan stands, so that a head arriving in pieces is read once:
 * pass the same HeadScan with each longer prefix of the same bytes. A new
 * one starts at the first byte.
 */
export class HeadScan {
  /** @internal The next byte to read. */
  pos = 0
  /** @internal */
  state = S_METHOD_START
  /** @internal The method is CONNECT (known at its SP). */
  connect = false
  /** @internal */
  methodEnd = 0
  /** @internal */
  targetStart = 0
  /** @internal */
  targetEnd = 0
  /** @internal -1: no version (HTTP/0.9). */
  versionStart = -1
  /** @internal First byte of the first field line. */
  fieldsStart = 0
  /** @internal Start of the current field name, then of its value. */
  mark = 0
  /** @internal End of the current value without trailing OWS. */
  valueEnd = 0
  /** @internal F_… of the current field. */
  field = F_OTHER
  /** @internal */
  contentLength = false
  /** @internal */
  transferEncoding = false
  /** @internal */
  authStart = -1
  /** @internal */
  authEnd = -1

  /** @internal Start over (the shared scratch scan of one-shot calls). */
  reset (): this {
    this.pos = 0
    this.state = S_METHOD_START
    this.connect = false
    this.versionStart = -1
    this.fieldsStart = 0
    this.field = F_OTHER
    this.contentLength = false
    this.transferEncoding = false
    this.authStart = -1
    this.authEnd = -1
    return this
  }
}

/** One-shot calls share this (parsing is synchronous): no allocation per head. */
const scratch = new HeadScan()
const INCOMPLETE: HeadResult = Object.freeze({ kind: 'incomplete' })

function failure (code: HeadErrorCode, detail: string): HeadError {
  return { kind: 'error', code, status: code === 'HPE_HEADER_OVERFLOW' ? 431 : 400, detail }
}

/** Whether buf[start, end) is `lower` in any letter case (`lower` is letters and `-` only). */
function nameIs (buf: Buffer, start: number, end: number, lower: Buffer): boolean {
  if (end - start !== lower.length) return false
  // `| 0x20` lower-cases a letter and leaves `-` as it is; no other tchar maps onto either.
  for (let j = 0; j < lower.length; j++) if (((buf[start + j] as number) | 0x20) !== lower[j]) return false
  return true
}

function fieldOf (buf: Buffer, start: number, end: number): number {
  for (const [f, name] of NAMES) if (nameIs(buf, start, end, name)) return f
  return F_OTHER
}

/** A field line is complete: check framing (RFC 9112 §6.3, RFC 9110 §9.3.6) and note credentials. */
function endField (buf: Buffer, s: HeadScan): HeadError | undefined {
  switch (s.field) {
    case F_CONTENT_LENGTH: {
      if (s.transferEncoding) return failure('HPE_INVALID_CONTENT_LENGTH', 'Content-Length with Transfer-Encoding')
      if (s.contentLength) return failure('HPE_UNEXPECTED_CONTENT_LENGTH', 'Content-Length more than once')
      s.contentLength = true
      if (s.valueEnd === s.mark) return failure('HPE_INVALID_CONTENT_LENGTH', 'Content-Length is empty')
      let zero = true
      for (let j = s.mark; j < s.valueEnd; j++) {
        const c = buf[j] as number
        if (c < 0x30 || c > 0x39) return failure('HPE_INVALID_CONTENT_LENGTH', 'Content-Length is not a number')
        if (c !== 0x30) zero = false
      }
      if (s.connect && !zero) return failure('HPE_CONNECT_CONTENT', 'a CONNECT request has no content (RFC 9110 §9.3.6): Content-Length must be 0 or absent')
      return undefined
    }
    case F_TRANSFER_ENCODING:
      if (s.contentLength) return failure('HPE_INVALID_TRANSFER_ENCODING', 'Transfer-Encoding with Content-Length')
      if (s.transferEncoding) return failure('HPE_INVALID_TRANSFER_ENCODING', 'Transfer-Encoding more than once')
      s.transferEncoding = true
      if (s.connect) return failure('HPE_CONNECT_CONTENT', 'a CONNECT request has no content (RFC 9110 §9.3.6): no Transfer-Encoding')
      return undefined
    case F_PROXY_AUTHORIZATION:
      if (s.authStart < 0) {
        s.authStart = s.mark
        s.authEnd = s.valueEnd
      }
      return undefined
    default:
      return undefined
  }
}

function versionOf (buf: Buffer, start: number): string {
  if (start < 0) return '0.9'
  const major = buf[start + 5] as number
  const minor = buf[start + 7] as number
  if (major === 0x31 && minor === 0x31) return '1.1'
  if (major === 0x31 && minor === 0x30) return '1.0'
  return String.fromCharCode(major, 0x2e, minor)
}

function complete (buf: Buffer, s: HeadScan, length: number): HeadResult {
  const method = s.connect ? 'CONNECT' : buf.toString('latin1', 0, s.methodEnd)
  const auth = s.authStart < 0 ? undefined : buf.toString('latin1', s.authStart, s.authEnd)
  // Fields end before the CRLF that ends the last field line.
  const head = new RequestHead(method, buf.toString('latin1', s.targetStart, s.targetEnd), versionOf(buf, s.versionStart),
    auth, buf, s.fieldsStart, length - 4)
  return { kind: 'head', head, length }
}

/**
 * Parse the request head at the start of `buf`. `length` in the result is
 * the head's size up to and including its final CRLFCRLF: what follows is
 * the next message or, for a CONNECT, the tunnel's first bytes.
 *
 * `scan` makes it incremental: keep one per connection and call again with
 * the same bytes and more; only the new bytes are read. Without it the
 * whole buffer is read.
 */
export function parseHead (buf: Buffer, maxHeaderSize: number, scan?: HeadScan): HeadResult {
  const s = scan ?? scratch.reset()
  const lim = buf.length < maxHeaderSize ? buf.length : maxHeaderSize
  let i = s.pos
  let state = s.state
  // Inner loops run over a class of bytes; at `lim` they `continue`, which ends the scan.
  while (i < lim) {
    let c = buf[i] as number
    switch (state) {
      case S_METHOD_START:
        if ((kind(c) & K_UPPER) === 0) return failure('HPE_INVALID_METHOD', 'a request starts with an upper-case method')
        state = S_METHOD
        i++
        break
      case S_METHOD:
        while (i < lim && (kind(buf[i] as number) & K_METHOD) !== 0) i++
        if (i === lim) continue
        c = buf[i] as number
        if (c !== SP) return failure('HPE_INVALID_METHOD', 'the method must be letters followed by one space')
        s.methodEnd = i
        s.connect = i === 7 && buf.compare(CONNECT, 0, 8, 0, 8) === 0
        state = S_TARGET_START
        i++
        break
      case S_TARGET_START:
        if ((kind(c) & K_TARGET) === 0) return failure('HPE_INVALID_URL', 'the request target must follow one space and be URI characters')
        s.targetStart = i
        state = S_TARGET
        i++
        break
      case S_TARGET:
        while (i < lim && (kind(buf[i] as number) & K_TARGET) !== 0) i++
        if (i === lim) continue
        c = buf[i] as number
        s.targetEnd = i
        if (c === SP) {
          s.versionStart = i + 1
          state = S_VERSION
        } else if (c === CR) {
          state = S_LINE_LF // no version: HTTP/0.9, refused later with a detail that says so
        } else {
          return c === LF
            ? failure('HPE_CR_EXPECTED', 'lines end with CRLF, not a bare LF')
            : failure('HPE_INVALID_URL', 'the request target must be URI characters (RFC 3986: no #, tab, control, space or byte above 0x7E)')
        }
        i++
        break
      case S_VERSION: {
        const at = i - s.versionStart
        if (at < VERSION.length) {
          const want = VERSION[at] as number
          if (want === 0 ? c < 0x30 || c > 0x39 : c !== want) return failure('HPE_INVALID_VERSION', 'the version must be HTTP/ followed by DIGIT.DIGIT')
        } else if (c !== CR) {
          return failure('HPE_INVALID_VERSION', 'the version must be followed by CRLF')
        } else {
          state = S_LINE_LF
        }
        i++
        break
      }
      case S_LINE_LF:
        if (c !== LF) return failure('HPE_LF_EXPECTED', 'a CR must be followed by LF')
        s.fieldsStart = i + 1
        state = S_FIELD_START
        i++
        break
      case S_FIELD_START:
        if (c === CR) {
          state = S_END_LF
        } else if ((kind(c) & K_TCHAR) !== 0) {
          s.mark = i
          state = S_NAME
        } else {
          return c === LF
            ? failure('HPE_CR_EXPECTED', 'lines end with CRLF, not a bare LF')
            : failure('HPE_INVALID_HEADER_TOKEN', c === SP || c === HTAB
              ? 'a field line must not start with whitespace (no obs-fold, RFC 9112 §5.2)'
              : 'a field name must be a token (RFC 9110 §5.1)')
        }
        i++
        break
      case S_NAME:
        while (i < lim && (kind(buf[i] as number) & K_TCHAR) !== 0) i++
        if (i === lim) continue
        c = buf[i] as number
        if (c !== COLON) return failure('HPE_INVALID_HEADER_TOKEN', 'a field name must be a token followed directly by a colon')
        s.field = fieldOf(buf, s.mark, i)
        state = S_OWS
        i++
        break
      case S_OWS:
        while (i < lim && (buf[i] === SP || buf[i] === HTAB)) i++
        if (i === lim) continue
        s.mark = i
        s.valueEnd = i
        state = S_VALUE
        continue // this byte is the value's first (or its CR)
      case S_VALUE:
        for (; i < lim; i++) {
          c = buf[i] as number
          if ((kind(c) & K_FIELD) !== 0) s.valueEnd = i + 1
          else if (c !== SP && c !== HTAB) break
        }
        if (i === lim) continue
        if (c !== CR) {
          return c === LF
            ? failure('HPE_CR_EXPECTED', 'lines end with CRLF, not a bare LF')
            : failure('HPE_INVALID_HEADER_TOKEN', 'a field value must not contain NUL or other control characters')
        }
        {
          const err = endField(buf, s)
          if (err !== undefined) return err
        }
        state = S_FIELD_LF
        i++
        break
      case S_FIELD_LF:
        if (c !== LF) return failure('HPE_LF_EXPECTED', 'a CR must be followed by LF')
        state = S_FIELD_START
        i++
        break
      default: // S_END_LF
        if (c !== LF) return failure('HPE_LF_EXPECTED', 'a CR must be followed by LF')
        return complete(buf, s, i + 1)
    }
  }
  s.pos = i
  s.state = state
  // maxHeaderSize bytes read and no end in them: the head is too large, whatever follows.
  return lim === maxHeaderSize ? failure('HPE_HEADER_OVERFLOW', `the request head exceeds ${maxHeaderSize} bytes`) : INCOMPLETE
}
