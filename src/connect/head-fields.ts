/**
 * The field lines of a request head (connect/head-parser.ts): which field a
 * line is, and, once the line is complete, the framing rules (RFC 9112 §6.3,
 * RFC 9110 §9.3.6) and where the Proxy-Authorization value lies.
 */
import { failure, type HeadError } from './head-result.js'
import { F_CONTENT_LENGTH, F_OTHER, F_PROXY_AUTHORIZATION, F_TRANSFER_ENCODING, type HeadScan } from './head-scan.js'

const NAMES: ReadonlyArray<readonly [number, Buffer]> = [
  [F_CONTENT_LENGTH, Buffer.from('content-length', 'latin1')],
  [F_TRANSFER_ENCODING, Buffer.from('transfer-encoding', 'latin1')],
  [F_PROXY_AUTHORIZATION, Buffer.from('proxy-authorization', 'latin1')]
]

/** Whether buf[start, end) is `lower` in any letter case (`lower` is letters and `-` only). */
function nameIs (buf: Buffer, start: number, end: number, lower: Buffer): boolean {
  if (end - start !== lower.length) return false
  // `| 0x20` lower-cases a letter and leaves `-` as it is; no other tchar maps onto either.
  for (let j = 0; j < lower.length; j++) if (((buf[start + j] as number) | 0x20) !== lower[j]) return false
  return true
}

export function fieldOf (buf: Buffer, start: number, end: number): number {
  for (const [f, name] of NAMES) if (nameIs(buf, start, end, name)) return f
  return F_OTHER
}

/** A field line is complete: check framing (RFC 9112 §6.3, RFC 9110 §9.3.6) and note credentials. */
export function endField (buf: Buffer, s: HeadScan): HeadError | undefined {
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
