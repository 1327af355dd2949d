/**
 * The one IP parser (issue 10): every module that reads, compares, matches
 * or prints an IP address goes through here, so no two checks on the SSRF
 * path can read one address two ways.
 *
 * ipaddr.js does the parsing, with one correction: it reads `::a.b.c.d` as
 * IPv4-mapped (`::ffff:a.b.c.d`), but RFC 4291 §2.5.5.1 and inet_pton (so
 * net.connect, and c-ares' text for an AAAA answer) make it IPv4-compatible,
 * `::7f00:1` for `::127.0.0.1`. A dotted tail is therefore rewritten to two
 * hex groups before ipaddr.js sees it, whatever the spelling.
 */
import ipaddr from 'ipaddr.js'

export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6

/**
 * What a matcher compares: the bytes as the kernel dials them. IPv4-mapped
 * IPv6 (`::ffff:a.b.c.d`) is delivered to the IPv4, so it is that IPv4 here;
 * IPv4-compatible `::a.b.c.d` (deprecated, RFC 4291 §2.5.5.1) stays IPv6.
 */
export interface IpKey {
  readonly v4: boolean
  readonly bytes: readonly number[]
}

const DOTTED_TAIL = /^(.*:)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/

/**
 * A dotted quad already in canonical form (no leading zeros, each ≤ 255):
 * what nearly every IPv4 target and resolver answer is. It is read without
 * ipaddr.js's general parser (issue 12: 9–10 µs per CONNECT went to
 * parsing one address several ways).
 */
const CANONICAL_V4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/

/** `text` must match CANONICAL_V4. */
function quad (text: string): ipaddr.IPv4 {
  const a = text.indexOf('.')
  const b = text.indexOf('.', a + 1)
  const c = text.indexOf('.', b + 1)
  return new ipaddr.IPv4([Number(text.slice(0, a)), Number(text.slice(a + 1, b)), Number(text.slice(b + 1, c)), Number(text.slice(c + 1))])
}

/** `x::a.b.c.d` → `x::HHHH:HHHH`, so ipaddr.js never takes its embedded-IPv4 branch. */
function hexTail (text: string): string | undefined {
  const m = DOTTED_TAIL.exec(text)
  if (m === null) return undefined
  const o = [m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number]
  if (o.some(n => n > 255)) return undefined
  return `${m[1] ?? ''}${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`
}

/**
 * Parse an IP literal (no brackets, no port). IPv4 accepts what ipaddr.js
 * accepts, including the inet_aton spellings (`127.1`, `0x7f000001`) that
 * getaddrinfo would dial; IPv6 zone ids are kept by ipaddr.js and ignored
 * for matching. Undefined for anything else.
 */
export function parseIp (text: string): IpAddress | undefined {
  if (CANONICAL_V4.test(text)) return quad(text)
  let t = text
  if (t.includes(':') && t.includes('.')) {
    const zone = t.indexOf('%')
    const fixed = hexTail(zone < 0 ? t : t.slice(0, zone))
    if (fixed === undefined) return undefined
    t = zone < 0 ? fixed : fixed + t.slice(zone)
  }
  try {
    return ipaddr.parse(t)
  } catch {
    return undefined
  }
}

/** Canonical text: dotted quad, or RFC 5952 for IPv6. */
export function formatIp (a: IpAddress): string {
  return a.kind() === 'ipv4' ? a.toString() : (a as ipaddr.IPv6).toRFC5952String()
}

/** Canonical text of an IP literal, or undefined if `text` is not one. */
export function canonicalIp (text: string): string | undefined {
  const a = parseIp(text)
  return a === undefined ? undefined : formatIp(a)
}

/** The bytes a matcher compares (see IpKey). */
export function ipKey (a: IpAddress): IpKey {
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) {
    return { v4: true, bytes: (a as ipaddr.IPv6).toIPv4Address().toByteArray() }
  }
  return { v4: a.kind() === 'ipv4', bytes: a.toByteArray() }
}

/** parseIp + ipKey; undefined if `text` is not an IP literal. */
export function toIpKey (text: string): IpKey | undefined {
  const a = parseIp(text)
  return a === undefined ? undefined : ipKey(a)
}

/** A CIDR (or a bare address, as /32 or /128), in matcher bytes. */
export interface Cidr extends IpKey {
  readonly bits: number
}

/**
 * `10.0.0.0/8`, `2001:db8::/32`, `::ffff:10.0.0.0/104` (the same as
 * `10.0.0.0/8`), or a bare address. Undefined if malformed.
 */
export function parseCidr (text: string): Cidr | undefined {
  const slash = text.indexOf('/')
  const a = parseIp(slash < 0 ? text : text.slice(0, slash))
  if (a === undefined) return undefined
  const max = a.kind() === 'ipv4' ? 32 : 128
  let bits = max
  if (slash >= 0) {
    const b = text.slice(slash + 1)
    if (!/^\d{1,3}$/.test(b)) return undefined
    bits = Number(b)
    if (bits > max) return undefined
  }
  if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
    return { v4: true, bytes: (a as ipaddr.IPv6).toIPv4Address().toByteArray(), bits: bits - 96 }
  }
  return { v4: a.kind() === 'ipv4', bytes: a.toByteArray(), bits }
}

/**
 * The first `bits` of `bytes` as a string: a Set or Map key, so that a CIDR
 * table lookup is one probe per distinct prefix length (policy/match.ts,
 * policy/rule-index.ts).
 */
export function prefixKey (bytes: readonly number[], bits: number): string {
  let key = ''
  const whole = bits >> 3
  for (let i = 0; i < whole; i++) key += String.fromCharCode(bytes[i] ?? 0)
  const rest = bits & 7
  if (rest > 0) key += String.fromCharCode((bytes[whole] ?? 0) & (0xff << (8 - rest)) & 0xff)
  return key
}

/** Does `key` lie in `cidr`? */
export function inCidr (key: IpKey, cidr: Cidr): boolean {
  if (key.v4 !== cidr.v4) return false
  const whole = cidr.bits >> 3
  for (let i = 0; i < whole; i++) if (key.bytes[i] !== cidr.bytes[i]) return false
  const rest = cidr.bits & 7
  if (rest === 0) return true
  const mask = (0xff << (8 - rest)) & 0xff
  return ((key.bytes[whole] ?? 0) & mask) === ((cidr.bytes[whole] ?? 0) & mask)
}

/** `host:port`, with IPv6 in brackets (RFC 3986 §3.2.2). */
export function formatHostPort (host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/**
 * A client address as rules and logs see it: a dual-stack listener reports
 * IPv4 clients as `::ffff:a.b.c.d`; they are `a.b.c.d`.
 */
export function clientAddress (address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

/** An address and port actually dialed (or listened on). */
export interface Endpoint {
  readonly address: string
  readonly port: number
}

/**
 * The WHATWG URL "IPv4 parser" (URL Standard §3.5), for a host that ends in
 * a number: `127.1`, `0x7f.0.0.1`, `2130706433`, `0177.0.0.1` all mean
 * 127.0.0.1 to curl and browsers, so they do here. Returns the dotted quad,
 * or undefined when the host is not a valid IPv4 address (a host ending in a
 * number must be one). Written out instead of `new URL()` because that also
 * percent-decodes (`%31%32%37.0.0.1`) and costs ~10 µs (issue 12).
 */
export function parseWhatwgIPv4 (host: string): string | undefined {
  if (CANONICAL_V4.test(host)) return host
  const parts = host.split('.')
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop()
  if (parts.length === 0 || parts.length > 4) return undefined
  const nums: number[] = []
  for (const p of parts) {
    let n: number
    if (/^0[xX][0-9a-fA-F]*$/.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16)
    else if (/^0[0-7]+$/.test(p)) n = parseInt(p.slice(1), 8)
    else if (/^(?:0|[1-9]\d*)$/.test(p)) n = Number(p)
    else return undefined
    if (!Number.isSafeInteger(n)) return undefined
    nums.push(n)
  }
  const last = nums.pop() as number
  if (nums.some(n => n > 255)) return undefined
  if (last >= 256 ** (4 - nums.length)) return undefined
  let value = last
  nums.forEach((n, i) => { value += n * 256 ** (3 - i) })
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`
}
