/**
 * The three ClientHello extensions the SNI listener reads (issue 14), each
 * given as its extension_data at `b[p, p + size)`, each strict about its
 * vectors: a length that does not add up is MALFORMED, never skipped.
 */
import { malformed, type HelloError } from './hello-result.js'

/** The longest host name (RFC 1035 §2.3.4 less the trailing dot) and label. */
const MAX_NAME = 253
const MAX_LABEL = 63

/** Byte classes of a host name: letters, digits, hyphen, underscore; upper case; the dot. */
const C_NAME = 1
const C_UPPER = 2
const C_DOT = 3
const NAME_BYTES = new Uint8Array(256)
for (let c = 0; c < 256; c++) {
  const ch = String.fromCharCode(c)
  if (/[a-z0-9_-]/.test(ch)) NAME_BYTES[c] = C_NAME
  else if (/[A-Z]/.test(ch)) NAME_BYTES[c] = C_UPPER
  else if (ch === '.') NAME_BYTES[c] = C_DOT
}

function u16 (b: Buffer, at: number): number {
  return ((b[at] as number) << 8) | (b[at + 1] as number)
}

/**
 * server_name (RFC 6066 §3): a ServerNameList<1..2^16-1> holding exactly
 * one host_name (type 0), the only type defined. The name must be a
 * dotted host name: letters, digits, `-`, `_` (seen in real names, though
 * not LDH), non-empty labels of at most 63 bytes, at most 253 bytes, no
 * trailing dot ("without a trailing dot", RFC 6066 §3). It is returned
 * lower-cased. Whether it is an IP literal is the caller's question.
 */
export function serverNameOf (b: Buffer, p: number, size: number): string | HelloError {
  if (size < 2) return malformed('server_name has no ServerNameList')
  const list = u16(b, p)
  if (list !== size - 2) return malformed('the ServerNameList length does not match the extension')
  if (list === 0) return malformed('an empty ServerNameList (RFC 6066 §3)')
  let q = p + 2
  const end = p + size
  let name: string | undefined
  while (q < end) {
    if (end - q < 3) return malformed('the ServerNameList ends inside a ServerName')
    const type = b[q] as number
    const length = u16(b, q + 1)
    q += 3
    if (type !== 0) return malformed(`a server_name of type ${type}: only host_name (0) is defined (RFC 6066 §3)`)
    if (name !== undefined) return malformed('more than one host_name in server_name (RFC 6066 §3)')
    if (length > end - q) return malformed('a host_name runs past the ServerNameList')
    const err = checkName(b, q, length)
    if (typeof err === 'string') return malformed(err)
    name = b.toString('latin1', q, q + length)
    if (err) name = name.toLowerCase()
    q += length
  }
  // The list is non-empty and every entry set the name or returned: this is for the type checker.
  return name ?? malformed('an empty ServerNameList (RFC 6066 §3)')
}

/** A reason the name at `b[q, q + length)` is refused, or whether it has upper case to fold. */
function checkName (b: Buffer, q: number, length: number): string | boolean {
  if (length === 0) return 'an empty host_name (RFC 6066 §3)'
  if (length > MAX_NAME) return `a host_name of ${length} bytes, over ${MAX_NAME}`
  let upper = false
  let label = 0
  for (let i = q; i < q + length; i++) {
    const c = NAME_BYTES[b[i] as number] as number
    if (c === C_DOT) {
      if (label === 0) return 'a host_name with an empty label (a leading, doubled or trailing dot)'
      label = 0
      continue
    }
    if (c === 0) return `a host_name with byte 0x${(b[i] as number).toString(16).padStart(2, '0')}: only letters, digits, '-', '_' and '.'`
    if (c === C_UPPER) upper = true
    if (++label > MAX_LABEL) return `a host_name label over ${MAX_LABEL} bytes`
  }
  if (label === 0) return 'a host_name with an empty label (a leading, doubled or trailing dot)'
  return upper
}

/** ALPN names nearly every hello carries (RFC 7301 §6; RFC 9113 §3.1), as bytes, to share one string each. */
const COMMON_PROTOCOLS = ['h2', 'http/1.1', 'h3', 'http/1.0'].map(name => [name, Buffer.from(name, 'latin1')] as const)

/** The protocol name at `b[q, q + length)`: a shared string when it is a common one (no copy out of the buffer). */
function protocolName (b: Buffer, q: number, length: number): string {
  for (const [name, bytes] of COMMON_PROTOCOLS) {
    if (bytes.length !== length) continue
    let i = 0
    while (i < length && b[q + i] === bytes[i]) i++
    if (i === length) return name
  }
  return b.toString('latin1', q, q + length)
}

/** application_layer_protocol_negotiation (RFC 7301 §3.1): ProtocolName<1..2^8-1> protocol_name_list<2..2^16-1>. */
export function alpnOf (b: Buffer, p: number, size: number): string[] | HelloError {
  if (size < 2) return malformed('ALPN has no protocol_name_list')
  const list = u16(b, p)
  if (list !== size - 2) return malformed('the ALPN protocol_name_list length does not match the extension')
  if (list < 2) return malformed('an empty ALPN protocol_name_list (RFC 7301 §3.1)')
  const names: string[] = []
  let q = p + 2
  const end = p + size
  while (q < end) {
    const length = b[q] as number
    if (length === 0) return malformed('an empty ALPN protocol name (RFC 7301 §3.1)')
    if (length > end - q - 1) return malformed('an ALPN protocol name runs past its list')
    names.push(protocolName(b, q + 1, length))
    q += 1 + length
  }
  return names
}

/** supported_versions in a ClientHello (RFC 8446 §4.2.1): ProtocolVersion versions<2..254>. */
export function versionsOf (b: Buffer, p: number, size: number): number[] | HelloError {
  if (size < 1) return malformed('supported_versions is empty')
  const list = b[p] as number
  if (list !== size - 1) return malformed('the supported_versions length does not match the extension')
  if (list < 2 || list % 2 !== 0) return malformed(`supported_versions of ${list} bytes: must be a non-zero even length`)
  const versions: number[] = []
  for (let q = p + 1; q < p + size; q += 2) versions.push(u16(b, q))
  return versions
}
