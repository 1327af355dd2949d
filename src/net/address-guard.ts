/**
 * Classify the address actually dialed against the IANA IPv4 and IPv6
 * Special-Purpose Address Registries (RFC 6890, updated by RFC 8190), so the
 * proxy can refuse loopback, private, link-local, cloud-metadata and other
 * non-public destinations by default: the SSRF guard that Smokescreen calls
 * classifyAddr and ATS calls ip_allow.
 *
 * Judge the resolved address, never the name: DNS rebinding makes any name
 * resolve to 127.0.0.1. IPv6 forms that carry an IPv4 (mapped, compatible,
 * NAT64, 6to4, Teredo) are judged by that IPv4 as well, because the kernel or
 * a translator on the path delivers them to it.
 *
 * Called on every connection: CIDRs are compiled to integer masks once, at
 * module load, and a lookup is a short scan with no allocation beyond
 * ipaddr.parse and the result.
 */
import ipaddr from 'ipaddr.js'
import { parseIp } from './ip.js'

/** The verdict on one address. */
export interface AddressClass {
  /** Canonical text of the address as given (IPv4 dotted quad, IPv6 RFC 5952 via ipaddr.js toRFC5952String()). */
  readonly address: string
  /** True when the address (or the IPv4 it embeds) lies in a special-purpose range. */
  readonly special: boolean
  /** Short stable label such as 'loopback', 'private', 'metadata' or 'public'. */
  readonly label: string
  /** The matched range in CIDR text, e.g. '127.0.0.0/8'; undefined for public. */
  readonly range?: string
  /** The IPv4 decoded from a mapped, compatible, NAT64, 6to4 or Teredo IPv6 address. */
  readonly embeddedIPv4?: string
}

type Label =
  | 'this_network' | 'private' | 'cgnat' | 'metadata' | 'loopback' | 'link_local'
  | 'ietf_protocol' | 'documentation' | 'benchmarking' | 'multicast' | 'reserved'
  | 'broadcast' | 'unspecified' | 'unique_local' | 'discard_only' | 'translation' | 'public'

/** Where an IPv6 range carries its IPv4: the last 32 bits, bits 16-48, or Teredo's inverted client. */
type Embed = 'low32' | 'sixToFour' | 'teredo'

interface Row { readonly cidr: string, readonly label: Label, readonly embed?: Embed }

/** Overlapping rows need no particular order: matching goes most specific first. */
const IPV4: readonly Row[] = [
  { cidr: '0.0.0.0/8', label: 'this_network' }, // RFC 1122 §3.2.1.3; Linux dials 0.0.0.0 as localhost
  { cidr: '10.0.0.0/8', label: 'private' }, // RFC 1918
  { cidr: '100.64.0.0/10', label: 'cgnat' }, // RFC 6598 shared address space
  { cidr: '100.100.100.200/32', label: 'metadata' }, // Alibaba Cloud instance metadata
  { cidr: '127.0.0.0/8', label: 'loopback' }, // RFC 1122 §3.2.1.3
  { cidr: '169.254.169.254/32', label: 'metadata' }, // AWS, GCP, Azure, OpenStack instance metadata
  { cidr: '169.254.0.0/16', label: 'link_local' }, // RFC 3927
  { cidr: '172.16.0.0/12', label: 'private' }, // RFC 1918
  { cidr: '192.0.0.0/24', label: 'ietf_protocol' }, // RFC 6890 §2.2.2 (DS-Lite, NAT64 discovery, ...)
  { cidr: '192.0.2.0/24', label: 'documentation' }, // RFC 5737 TEST-NET-1
  { cidr: '192.31.196.0/24', label: 'ietf_protocol' }, // RFC 7535 AS112-v4
  { cidr: '192.52.193.0/24', label: 'ietf_protocol' }, // RFC 7450 AMT
  { cidr: '192.88.99.0/24', label: 'reserved' }, // RFC 3068 6to4 relay anycast, deprecated by RFC 7526
  { cidr: '192.168.0.0/16', label: 'private' }, // RFC 1918
  { cidr: '192.175.48.0/24', label: 'ietf_protocol' }, // RFC 7534 AS112 direct delegation
  { cidr: '198.18.0.0/15', label: 'benchmarking' }, // RFC 2544
  { cidr: '198.51.100.0/24', label: 'documentation' }, // RFC 5737 TEST-NET-2
  { cidr: '203.0.113.0/24', label: 'documentation' }, // RFC 5737 TEST-NET-3
  { cidr: '224.0.0.0/4', label: 'multicast' }, // RFC 5771
  { cidr: '240.0.0.0/4', label: 'reserved' }, // RFC 1112 §4 class E
  { cidr: '255.255.255.255/32', label: 'broadcast' } // RFC 919 limited broadcast
]

/**
 * An `embed` row is judged by its IPv4 first: a special IPv4 makes the address
 * special with the IPv4's label and range. Otherwise its own label applies,
 * and 'public' there means the prefix alone is not special.
 */
const IPV6: readonly Row[] = [
  { cidr: '::/128', label: 'unspecified' }, // RFC 4291 §2.5.2
  { cidr: '::1/128', label: 'loopback' }, // RFC 4291 §2.5.3
  { cidr: '::ffff:0:0/96', label: 'public', embed: 'low32' }, // RFC 4291 §2.5.5.2: dialed as the IPv4
  { cidr: '::/96', label: 'reserved', embed: 'low32' }, // IPv4-compatible, deprecated by RFC 4291 §2.5.5.1
  { cidr: '64:ff9b::/96', label: 'public', embed: 'low32' }, // RFC 6052 well-known NAT64 prefix
  // RFC 8215 local-use NAT64: the operator picks the prefix length, so the
  // decoded IPv4 assumes the common /96 layout; the /48 is special either way.
  { cidr: '64:ff9b:1::/48', label: 'translation', embed: 'low32' },
  { cidr: '100::/64', label: 'discard_only' }, // RFC 6666
  { cidr: '2001::/32', label: 'translation', embed: 'teredo' }, // RFC 4380 §4
  { cidr: '2001:2::/48', label: 'benchmarking' }, // RFC 5180
  { cidr: '2001::/23', label: 'ietf_protocol' }, // RFC 2928
  { cidr: '2001:db8::/32', label: 'documentation' }, // RFC 3849
  { cidr: '2002::/16', label: 'public', embed: 'sixToFour' }, // RFC 3056 §2
  { cidr: '2620:4f:8000::/48', label: 'ietf_protocol' }, // RFC 7534 AS112 direct delegation
  { cidr: '3fff::/20', label: 'documentation' }, // RFC 9637
  { cidr: 'fd00:ec2::254/128', label: 'metadata' }, // AWS IMDS over IPv6
  { cidr: 'fd20:ce::254/128', label: 'metadata' }, // GCP metadata server over IPv6
  { cidr: 'fc00::/7', label: 'unique_local' }, // RFC 4193
  { cidr: 'fe80::/10', label: 'link_local' }, // RFC 4291 §2.5.6
  { cidr: 'fec0::/10', label: 'reserved' }, // site-local, deprecated by RFC 3879
  { cidr: 'ff00::/8', label: 'multicast' }, // RFC 4291 §2.7
  // The rest of the space outside 2000::/3 is "Reserved by IETF" in IANA's
  // IPv6 Address Space registry (RFC 4291 §2.4): nothing public lives there
  // (e.g. RFC 6145's ::ffff:0:0:0/96, RFC 9602's 5f00::/16 SRv6 SIDs).
  ...['::/8', '100::/8', '200::/7', '400::/6', '800::/5', '1000::/4', '4000::/3', '6000::/3', '8000::/3',
    'a000::/3', 'c000::/3', 'e000::/4', 'f000::/5', 'f800::/6', 'fe00::/9']
    .map((cidr): Row => ({ cidr, label: 'reserved' }))
]

/**
 * Every special-purpose range, IPv4 then IPv6, most rows citing an RFC in the
 * source. Prefixes that are special only through the IPv4 they embed
 * (::ffff:0:0/96, 64:ff9b::/96, 2002::/16) are not listed.
 */
export const SPECIAL_RANGES: readonly { cidr: string, label: string }[] = Object.freeze(
  [...IPV4, ...IPV6].filter((r) => r.label !== 'public').map((r) => Object.freeze({ cidr: r.cidr, label: r.label }))
)

interface V4Rule { readonly cidr: string, readonly label: Label, readonly base: number, readonly mask: number }
interface V6Rule {
  readonly cidr: string
  readonly label: Label
  readonly embed: Embed | undefined
  /** Masked prefix and mask per 16-bit word, only as many words as the prefix length covers. */
  readonly base: readonly number[]
  readonly mask: readonly number[]
}

function v4ToInt (octets: readonly number[]): number {
  return ((octets[0] ?? 0) << 24 | (octets[1] ?? 0) << 16 | (octets[2] ?? 0) << 8 | (octets[3] ?? 0)) >>> 0
}

function intToV4 (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

/** Longest prefix first, so a /32 inside a /16 (metadata in link-local) wins. */
function bySpecificity<T extends { bits: number }> (a: T, b: T): number {
  return b.bits - a.bits
}

const V4_RULES: readonly V4Rule[] = IPV4
  .map((row) => {
    const [net, bits] = ipaddr.IPv4.parseCIDR(row.cidr)
    const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0
    return { bits, rule: { cidr: row.cidr, label: row.label, base: (v4ToInt(net.octets) & mask) >>> 0, mask } }
  })
  .sort(bySpecificity).map((x) => x.rule)

const V6_RULES: readonly V6Rule[] = IPV6
  .map((row) => {
    const [net, bits] = ipaddr.IPv6.parseCIDR(row.cidr)
    const base: number[] = []
    const mask: number[] = []
    for (let i = 0; i * 16 < bits; i++) {
      const m = (0xffff << (16 - Math.min(16, bits - i * 16))) & 0xffff
      mask.push(m)
      base.push((net.parts[i] ?? 0) & m)
    }
    return { bits, rule: { cidr: row.cidr, label: row.label, embed: row.embed, base, mask } }
  })
  .sort(bySpecificity).map((x) => x.rule)

function matchV4 (n: number): V4Rule | undefined {
  for (const rule of V4_RULES) {
    if (((n & rule.mask) >>> 0) === rule.base) return rule
  }
  return undefined
}

function inV6 (parts: readonly number[], rule: V6Rule): boolean {
  for (let i = 0; i < rule.mask.length; i++) {
    if (((parts[i] ?? 0) & (rule.mask[i] ?? 0)) !== rule.base[i]) return false
  }
  return true
}

function matchV6 (parts: readonly number[]): V6Rule | undefined {
  for (const rule of V6_RULES) {
    if (inV6(parts, rule)) return rule
  }
  return undefined
}

/** The IPv4 an IPv6 address carries, as an unsigned 32-bit integer. */
function decode (embed: Embed, p: readonly number[]): number {
  switch (embed) {
    case 'low32': return ((p[6] ?? 0) << 16 | (p[7] ?? 0)) >>> 0 // RFC 4291 §2.5.5, RFC 6052 §2.2 (/96)
    case 'sixToFour': return ((p[1] ?? 0) << 16 | (p[2] ?? 0)) >>> 0 // RFC 3056 §2: 2002:V4ADDR::/48
    case 'teredo': return ~((p[6] ?? 0) << 16 | (p[7] ?? 0)) >>> 0 // RFC 4380 §4: client IPv4, bits inverted
  }
}

function parse (ip: string): ipaddr.IPv4 | ipaddr.IPv6 {
  // net/ip.ts reads `::a.b.c.d` as RFC 4291 and inet_pton do: IPv4-compatible.
  const addr = parseIp(ip)
  if (addr === undefined) throw new TypeError(`not an IP address: ${JSON.stringify(ip)}`)
  return addr
}

/**
 * Classify one IP literal. Accepts what ipaddr.parse accepts, including the
 * inet_aton spellings ('127.1', '0x7f000001') that getaddrinfo would dial,
 * and IPv6 zone ids (kept in `address`, ignored for matching).
 *
 * @throws {TypeError} when `ip` is not an IP literal (a name, a CIDR, '[::1]').
 */
export function classifyAddress (ip: string): AddressClass {
  const addr = parse(ip)
  if (addr instanceof ipaddr.IPv4) {
    const address = addr.toString()
    const rule = matchV4(v4ToInt(addr.octets))
    if (rule === undefined) return { address, special: false, label: 'public' }
    return { address, special: true, label: rule.label, range: rule.cidr }
  }
  const address = addr.toRFC5952String()
  const rule = matchV6(addr.parts)
  if (rule === undefined) return { address, special: false, label: 'public' }
  if (rule.embed === undefined) return { address, special: true, label: rule.label, range: rule.cidr }
  const v4 = decode(rule.embed, addr.parts)
  const embeddedIPv4 = intToV4(v4)
  const inner = matchV4(v4)
  if (inner !== undefined) return { address, special: true, label: inner.label, range: inner.cidr, embeddedIPv4 }
  if (rule.label === 'public') return { address, special: false, label: 'public', embeddedIPv4 }
  return { address, special: true, label: rule.label, range: rule.cidr, embeddedIPv4 }
}

/**
 * Whether `ip` is a special-purpose destination: `classifyAddress(ip).special`
 * without building the result.
 *
 * @throws {TypeError} when `ip` is not an IP literal.
 */
export function isSpecialPurpose (ip: string): boolean {
  const addr = parse(ip)
  if (addr instanceof ipaddr.IPv4) return matchV4(v4ToInt(addr.octets)) !== undefined
  const rule = matchV6(addr.parts)
  if (rule === undefined) return false
  if (rule.embed !== undefined && rule.label === 'public') return matchV4(decode(rule.embed, addr.parts)) !== undefined
  return true
}
