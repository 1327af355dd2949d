/**
 * The record layer under the ClientHello reader (tls/client-hello.ts): it
 * reads TLS record headers and gathers the first handshake message from
 * however many records carry it, then hands the whole message to
 * hello-body.ts. RFC 8446 §5.1 lets a handshake message span records (and
 * post-quantum key shares make 1.2–2 KB hellos that some stacks fragment);
 * a hello over 2^14 bytes must span records. Haproxy and sniproxy fail a
 * hello split across two records (issue 14).
 *
 * Rules, each checked as soon as its bytes are in:
 * - the first byte is 0x16, else SSLV2 (high bit set and message type 1,
 *   known at the third byte) or NOT_TLS;
 * - every record is a handshake record of version 3.x with a fragment of
 *   1 to 2^14 bytes (RFC 8446 §5.1: no zero-length handshake fragments, no
 *   other record type between a handshake message's fragments). A first
 *   record of another version is NOT_TLS; anything else is MALFORMED;
 * - the first handshake message is a ClientHello (NOT_CLIENT_HELLO), and
 *   the records end where it ends: a record holding bytes after the
 *   ClientHello is MALFORMED (a client sends nothing else in a handshake
 *   record before the server's reply);
 * - TOO_LARGE as soon as the records are known to pass `maxBytes`: a
 *   record ending beyond it, or a declared message length whose smallest
 *   possible framing does. A hello whose records fit is never refused for
 *   size.
 *
 * Cost: a record header is read once, a one-record hello is parsed where it
 * lies, and a hello spanning records is copied once into a buffer of its
 * declared size (which `maxBytes` bounds).
 */
import { parseBody } from './hello-body.js'
import { failure, INCOMPLETE, malformed, type HelloResult } from './hello-result.js'

/** The default cap on a hello's records: 64 KiB. */
export const DEFAULT_MAX_HELLO_BYTES = 65536

const HEADER = 5
const HANDSHAKE = 0x16
/** RFC 8446 §5.1: a TLSPlaintext fragment is at most 2^14 bytes. */
const MAX_FRAGMENT = 16384
const CLIENT_HELLO = 1

/**
 * Where a read stands between calls, so each byte is read once: pass the
 * same HelloScan with each longer prefix of the same bytes.
 */
export class HelloScan {
  readonly maxBytes: number
  /** @internal The next byte to read. */
  pos = 0
  /** @internal The end of the current record, or -1 between records. */
  recordEnd = -1
  /** @internal Records whose header has been read. */
  records = 0
  /** @internal Bytes of the handshake message read so far, its 4-byte header included. */
  have = 0
  /** @internal The whole message's size once its header is read, else -1. */
  need = -1
  /** @internal The message's body length, as its header bytes come in. */
  bodyLength = 0
  /** @internal The message gathered from several records; undefined while it fits the first record. */
  gathered: Buffer | undefined = undefined
  /** @internal The answer, once there is one. */
  done: HelloResult | undefined = undefined

  constructor (maxBytes = DEFAULT_MAX_HELLO_BYTES) {
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`)
    this.maxBytes = maxBytes
  }

  /** @internal Start over (the shared scratch scan of one-shot calls). */
  reset (): this {
    this.pos = 0
    this.recordEnd = -1
    this.records = 0
    this.have = 0
    this.need = -1
    this.bodyLength = 0
    this.gathered = undefined
    this.done = undefined
    return this
  }
}

/** The first bytes, before a record header is complete: TLS, SSLv2, or neither. */
function firstBytes (buf: Buffer, end: number): HelloResult | undefined {
  const first = buf[0] as number
  if (first === HANDSHAKE) return undefined
  if ((first & 0x80) === 0) return failure('NOT_TLS', `the first byte is 0x${first.toString(16).padStart(2, '0')}, not a TLS handshake record (0x16)`)
  if (end < 3) return INCOMPLETE
  return buf[2] === CLIENT_HELLO
    ? failure('SSLV2', 'an SSLv2-compatible ClientHello (RFC 6101 appendix E); only TLS record framing is read')
    : failure('NOT_TLS', 'the first byte has its high bit set but this is no SSLv2 ClientHello either')
}

/** A record header at `at` (5 bytes are there): the fragment's length, or an error. */
function recordHeader (buf: Buffer, at: number, first: boolean): number | HelloResult {
  const type = buf[at] as number
  const major = buf[at + 1] as number
  const length = ((buf[at + 3] as number) << 8) | (buf[at + 4] as number)
  if (first && major !== 3) return failure('NOT_TLS', `the record version's major byte is ${major}, not 3 (TLS 1.x)`)
  if (type !== HANDSHAKE) return malformed(`a record of type ${type} between the ClientHello's records (RFC 8446 §5.1)`)
  if (major !== 3) return malformed(`a record of version ${major}.x inside the ClientHello`)
  if (length === 0) return malformed('a zero-length handshake record (RFC 8446 §5.1)')
  if (length > MAX_FRAGMENT) return malformed(`a record of ${length} bytes, over 2^14 (RFC 8446 §5.1)`)
  return length
}

function finish (s: HelloScan, result: HelloResult): HelloResult {
  s.done = result
  s.gathered = undefined
  return result
}

/**
 * Read `buf[0, end)` from where `s` stands. Only new bytes are read; the
 * bytes already read must be unchanged (they may have moved to a bigger
 * buffer). Once there is an answer it is returned again.
 */
export function scanHello (buf: Buffer, end: number, s: HelloScan): HelloResult {
  if (s.done !== undefined) return s.done
  if (end === 0) return INCOMPLETE
  if (s.records === 0) {
    const early = firstBytes(buf, end)
    if (early !== undefined) return early === INCOMPLETE ? early : finish(s, early)
  }
  let pos = s.pos
  // Each turn reads a record header or moves `pos` to the end of the bytes or of the record.
  for (;;) {
    if (s.recordEnd < 0) {
      if (end - pos < HEADER) break
      const length = recordHeader(buf, pos, s.records === 0)
      if (typeof length !== 'number') return finish(s, length)
      pos += HEADER
      s.records++
      s.recordEnd = pos + length
      if (s.recordEnd > s.maxBytes) return finish(s, failure('TOO_LARGE', `the ClientHello's records pass ${s.maxBytes} bytes`))
      if (s.need >= 0 && length > s.need - s.have) return finish(s, malformed('a record continues past the end of the ClientHello'))
      continue
    }
    const avail = end < s.recordEnd ? end : s.recordEnd
    if (s.need < 0) {
      // The message header (type, 3-byte length), which may itself be split across records.
      while (s.have < 4 && pos < avail) {
        const b = buf[pos++] as number
        if (s.have === 0 && b !== CLIENT_HELLO) return finish(s, failure('NOT_CLIENT_HELLO', `the first handshake message is of type ${b}, not a ClientHello (1)`))
        if (s.have > 0) s.bodyLength = s.bodyLength * 256 + b
        s.have++
      }
      if (s.have === 4) {
        const err = messageHeader(s, pos)
        if (err !== undefined) return finish(s, err)
      }
    }
    if (s.need >= 0) {
      if (s.gathered !== undefined) buf.copy(s.gathered, s.have, pos, avail)
      s.have += avail - pos
      pos = avail
      if (s.have === s.need) {
        // The record-header checks guarantee this record ends here too.
        const r = s.gathered === undefined
          ? parseBody(buf, HEADER, HEADER + s.need, pos, s.records)
          : parseBody(s.gathered, 0, s.need, pos, s.records)
        return finish(s, r)
      }
    }
    if (pos < s.recordEnd) break // out of bytes
    s.recordEnd = -1
  }
  s.pos = pos
  return INCOMPLETE
}

/** The message's size is known (`pos` is just past its header): check it against the cap and the current record. */
function messageHeader (s: HelloScan, pos: number): HelloResult | undefined {
  const remaining = s.bodyLength
  s.need = 4 + remaining
  const inRecord = s.recordEnd - pos
  if (inRecord > remaining) return malformed('the ClientHello ends before its record does')
  // The fewest bytes its records can take: the rest of this record, then full records.
  const beyond = remaining - inRecord
  const least = s.recordEnd + beyond + HEADER * Math.ceil(beyond / MAX_FRAGMENT)
  if (least > s.maxBytes) return failure('TOO_LARGE', `a ClientHello of ${s.need} bytes: its records pass ${s.maxBytes} bytes`)
  if (s.records === 1 && beyond === 0) return undefined // in one record: parsed where it lies
  s.gathered = Buffer.allocUnsafe(s.need)
  s.gathered[0] = CLIENT_HELLO
  s.gathered.writeUIntBE(remaining, 1, 3)
  return undefined
}
