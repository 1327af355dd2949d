/**
 * Sluice's own PROXY protocol reader, versions 1 and 2 (issue 15;
 * docs/proxy-protocol.md summarises the specification sections used).
 * Written here rather than taken from npm: proxy-protocol-js, the most used
 * parser, reads v1 with one loose regular expression (any non-space text as
 * an address, unbounded ports, no 107-byte limit, no short UNKNOWN form) and
 * only whole buffers; a reader on a listener must be strict and incremental.
 *
 * Two entry points giving the same answers:
 * - `ProxyHeaderReader`: push bytes as they arrive, in any split (one byte at
 *   a time too); bytes are kept in one buffer that grows by doubling, up to
 *   the header's bound (107 bytes for v1, `maxV2Bytes` for v2);
 * - `parseProxyHeader`: the bytes at hand, at once.
 *
 * The answer is one of:
 * - `incomplete`: the bytes so far are the start of a header;
 * - `absent`: they cannot be the start of one (§2.2's "not covered by this
 *   specification"): the listener decides what that means;
 * - `error` with a reason: anything that does not match the specification
 *   exactly, a v1 line without CRLF in 107 bytes, a v2 header over the cap;
 * - `header`: its version, command, the source and destination when the
 *   header gives them (v1 TCP4/TCP6, v2 PROXY over AF_INET/AF_INET6 STREAM),
 *   and `length`, the header's bytes; everything after is the client's.
 *
 * Addresses are returned as rules and logs see a client: canonical text,
 * IPv4-mapped IPv6 as the IPv4 it carries (as net/ip.ts clientAddress
 * makes a dual-stack listener's `::ffff:a.b.c.d`).
 */
import { isIPv4, isIPv6 } from 'node:net'
import { formatIp, ipKey, parseIp } from './ip.js'

/** The cap on a v2 header, addresses and TLVs included (the specification sets none; 16 + 216 covers any address block). */
export const DEFAULT_MAX_V2_BYTES = 4096
/** §2.1: the longest v1 line, CRLF included. */
export const MAX_V1_BYTES = 107

/** §2.2: the v2 signature. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
/** §2.1: "PROXY" and the one space that must follow it. */
export const V1_PREFIX = Buffer.from('PROXY ', 'latin1')

export interface ProxyEndpoint {
  readonly address: string
  readonly port: number
}

export interface ProxyHeader {
  readonly version: 1 | 2
  /** v2 LOCAL (a balancer's health check), else `proxy` (v1 is always proxy). */
  readonly command: 'proxy' | 'local'
  /** The client, when the header names one: absent for LOCAL, v1 UNKNOWN and v2 UNSPEC/AF_UNIX/DGRAM (use the connection's own). */
  readonly source?: ProxyEndpoint
  readonly destination?: ProxyEndpoint
  /** The header's bytes; the client's data starts after them. */
  readonly length: number
}

export type ProxyHeaderResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'absent' }
  | { readonly kind: 'error', readonly reason: string }
  | { readonly kind: 'header', readonly header: ProxyHeader }

const INCOMPLETE: ProxyHeaderResult = Object.freeze({ kind: 'incomplete' })
const ABSENT: ProxyHeaderResult = Object.freeze({ kind: 'absent' })
const error = (reason: string): ProxyHeaderResult => ({ kind: 'error', reason })

/** Do the first bytes of `buf` agree with `prefix` (as far as either goes)? */
function startsLike (buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length)
  for (let i = 0; i < n; i++) if (buf[i] !== prefix[i]) return false
  return true
}

/** Could `buf` be the start of a v1 or v2 header? (Empty: yes.) */
export function mayBeProxyHeader (buf: Buffer): boolean {
  return startsLike(buf, V1_PREFIX) || startsLike(buf, V2_SIGNATURE)
}

/** Parse a header from the start of `buf`. */
export function parseProxyHeader (buf: Buffer, maxV2Bytes = DEFAULT_MAX_V2_BYTES): ProxyHeaderResult {
  if (startsLike(buf, V2_SIGNATURE)) return buf.length < V2_SIGNATURE.length ? INCOMPLETE : parseV2(buf, maxV2Bytes)
  if (startsLike(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? INCOMPLETE : parseV1(buf)
  return ABSENT
}

/** Canonical text of an address already checked to be one; IPv4-mapped IPv6 → its IPv4. */
function asClient (text: string): string {
  const a = parseIp(text)
  if (a === undefined) return text
  const key = ipKey(a)
  return key.v4 ? key.bytes.join('.') : formatIp(a)
}

const PORT = /^(?:0|[1-9]\d{0,4})$/
/** §2.1: hex groups, colons, and a dotted IPv4 tail as inet_ntop writes a mapped address; no zone. */
const V6_TEXT = /^[0-9A-Fa-f:.]+$/

function v1Endpoint (family: 'TCP4' | 'TCP6', address: string, port: string, which: string): ProxyEndpoint | string {
  const ok = family === 'TCP4' ? isIPv4(address) : V6_TEXT.test(address) && isIPv6(address)
  if (!ok) return `v1 ${which} address ${JSON.stringify(address.slice(0, 48))} is not an ${family === 'TCP4' ? 'IPv4' : 'IPv6'} address`
  if (!PORT.test(port) || Number(port) > 65535) return `v1 ${which} port ${JSON.stringify(port.slice(0, 8))} is not 0-65535 without leading zeros`
  return { address: asClient(address), port: Number(port) }
}

/** §2.1. `buf` starts with "PROXY ". */
function parseV1 (buf: Buffer): ProxyHeaderResult {
  // The CR can be at most the 106th byte, so that the LF is the 107th.
  const end = Math.min(buf.length, MAX_V1_BYTES - 1)
  let cr = -1
  for (let i = V1_PREFIX.length; i < end; i++) {
    const c = buf[i]
    if (c === 0x0a) return error('v1 line ends in LF without CR')
    if (c === 0x0d) { cr = i; break }
  }
  if (cr < 0) return buf.length >= MAX_V1_BYTES - 1 ? error(`v1 line has no CRLF in its first ${MAX_V1_BYTES} bytes`) : INCOMPLETE
  if (cr + 1 >= buf.length) return INCOMPLETE
  if (buf[cr + 1] !== 0x0a) return error('v1 line has a CR without LF')
  const length = cr + 2
  const fields = buf.toString('latin1', V1_PREFIX.length, cr).split(' ')
  const proto = fields[0]
  // "the receiver must ignore anything presented before the CRLF" after UNKNOWN.
  if (proto === 'UNKNOWN') return { kind: 'header', header: { version: 1, command: 'proxy', length } }
  if (proto !== 'TCP4' && proto !== 'TCP6') return error(`v1 protocol ${JSON.stringify((proto ?? '').slice(0, 16))} is not TCP4, TCP6 or UNKNOWN`)
  if (fields.length !== 5) return error(`v1 ${proto} line has ${fields.length - 1} fields after the protocol, not 4 separated by single spaces`)
  const source = v1Endpoint(proto, fields[1] ?? '', fields[3] ?? '', 'source')
  if (typeof source === 'string') return error(source)
  const destination = v1Endpoint(proto, fields[2] ?? '', fields[4] ?? '', 'destination')
  if (typeof destination === 'string') return error(destination)
  return { kind: 'header', header: { version: 1, command: 'proxy', source, destination, length } }
}

/** §2.2: address bytes by family (UNSPEC, AF_INET, AF_INET6, AF_UNIX). */
const ADDRESS_BYTES = [0, 12, 36, 216] as const

function ipv6Text (buf: Buffer, at: number): string {
  let text = ''
  for (let i = 0; i < 16; i += 2) text += (i === 0 ? '' : ':') + buf.readUInt16BE(at + i).toString(16)
  return asClient(text)
}

/** §2.2. `buf` starts with the 12-byte signature. */
function parseV2 (buf: Buffer, maxV2Bytes: number): ProxyHeaderResult {
  if (buf.length < 13) return INCOMPLETE
  const verCmd = buf[12] ?? 0
  if (verCmd >> 4 !== 2) return error(`v2 version ${verCmd >> 4}, not 2`)
  const cmd = verCmd & 0x0f
  if (cmd > 1) return error(`v2 command ${cmd}, not LOCAL (0) or PROXY (1)`)
  if (buf.length < 14) return INCOMPLETE
  const fam = buf[13] ?? 0
  const family = fam >> 4
  const transport = fam & 0x0f
  if (family > 3) return error(`v2 address family ${family} is not one of 0-3`)
  if (transport > 2) return error(`v2 transport ${transport} is not one of 0-2`)
  if (buf.length < 16) return INCOMPLETE
  const length = 16 + buf.readUInt16BE(14)
  if (length > maxV2Bytes) return error(`v2 header of ${length} bytes is over the limit of ${maxV2Bytes}`)
  if (buf.length < length) return INCOMPLETE
  // LOCAL: "discard the protocol block including the family".
  if (cmd === 0) return { kind: 'header', header: { version: 2, command: 'local', length } }
  // UNSPEC family or transport: "the receiver should ignore address information".
  if (family === 0 || transport === 0) return { kind: 'header', header: { version: 2, command: 'proxy', length } }
  const addressBytes = ADDRESS_BYTES[family as 1 | 2 | 3]
  if (length - 16 < addressBytes) return error(`v2 length ${length - 16} is shorter than the ${addressBytes} address bytes of family ${family}`)
  // TLVs fill the rest exactly; each is skipped, after its length is checked.
  for (let at = 16 + addressBytes; at < length;) {
    if (at + 3 > length) return error(`v2 TLV header at byte ${at} runs past the header's end (${length})`)
    const next = at + 3 + buf.readUInt16BE(at + 1)
    if (next > length) return error(`v2 TLV of type 0x${(buf[at] ?? 0).toString(16)} at byte ${at} runs past the header's end (${length})`)
    at = next
  }
  // AF_UNIX and DGRAM: valid, not ours to use; §2.2's fall back to UNSPEC.
  if (family === 3 || transport === 2) return { kind: 'header', header: { version: 2, command: 'proxy', length } }
  const v4 = family === 1
  const ports = v4 ? 24 : 48
  const source = { address: v4 ? `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}` : ipv6Text(buf, 16), port: buf.readUInt16BE(ports) }
  const destination = { address: v4 ? `${buf[20]}.${buf[21]}.${buf[22]}.${buf[23]}` : ipv6Text(buf, 32), port: buf.readUInt16BE(ports + 2) }
  return { kind: 'header', header: { version: 2, command: 'proxy', source, destination, length } }
}

const EMPTY = Buffer.alloc(0)

/**
 * One connection's header, pushed as it arrives. After any answer other
 * than `incomplete`, `bytes` holds everything received (a header's rest,
 * or the bytes to put back when `absent`), and the reader is done.
 */
export class ProxyHeaderReader {
  private buf: Buffer = EMPTY
  private len = 0
  private readonly maxV2Bytes: number

  constructor (maxV2Bytes = DEFAULT_MAX_V2_BYTES) {
    this.maxV2Bytes = maxV2Bytes
  }

  /** Everything received so far. */
  get bytes (): Buffer { return this.buf.subarray(0, this.len) }

  push (chunk: Buffer): ProxyHeaderResult {
    if (this.len === 0) {
      // The usual case, a whole header in the first read: parsed where it lies.
      this.buf = chunk
      this.len = chunk.length
      const r = parseProxyHeader(chunk, this.maxV2Bytes)
      // Kept past this read: a copy of our own, the chunk may be reused by its owner.
      if (r.kind === 'incomplete') this.buf = Buffer.from(chunk)
      return r
    }
    const need = this.len + chunk.length
    if (need > this.buf.length) {
      // Doubling: a header sent a byte at a time costs linear copying. `incomplete` bounds it (v1 107, v2 maxV2Bytes).
      const grown = Buffer.allocUnsafe(Math.max(need, 2 * this.len, 64))
      this.buf.copy(grown, 0, 0, this.len)
      this.buf = grown
    }
    chunk.copy(this.buf, this.len)
    this.len = need
    return parseProxyHeader(this.buf.subarray(0, need), this.maxV2Bytes)
  }
}
