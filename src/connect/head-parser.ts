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
 *
 * Its parts: the byte classes (head-bytes.ts), where a scan stands
 * (head-scan.ts), the field lines and their framing rules (head-fields.ts),
 * and what it returns (head-result.ts). The request line and the field lines
 * are one state machine, in one loop, here.
 */
import * as bytes from './head-bytes.js'
import { endField, fieldOf } from './head-fields.js'
import { failure, RequestHead, type HeadResult } from './head-result.js'
import * as states from './head-scan.js'
import { HeadScan } from './head-scan.js'

export { HeadScan } from './head-scan.js'
export { RequestHead, type HeadError, type HeadErrorCode, type HeadResult } from './head-result.js'

// What the loop below reads at every byte is bound here, as this module's own
// constants, which V8 folds into the compiled loop. Read as imports, each use
// loads a module cell, and parseHead took about 40% longer (measured when the
// parser was split into these modules, issue 12). Keep them bound here.
const { kind, CR, LF, SP, HTAB, COLON, K_METHOD, K_UPPER, K_TCHAR, K_TARGET, K_FIELD } = bytes
const {
  S_METHOD_START, S_METHOD, S_TARGET_START, S_TARGET, S_VERSION, S_LINE_LF, S_FIELD_START, S_NAME, S_OWS,
  S_VALUE, S_FIELD_LF, S_END_LF
} = states

const CONNECT = Buffer.from('CONNECT ', 'latin1')
/** `HTTP/` then DIGIT `.` DIGIT, byte by byte (0 = a digit). */
const VERSION = [0x48, 0x54, 0x54, 0x50, 0x2f, 0, 0x2e, 0]

/** One-shot calls share this (parsing is synchronous): no allocation per head. */
const scratch = new HeadScan()
const INCOMPLETE: HeadResult = Object.freeze({ kind: 'incomplete' })

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
