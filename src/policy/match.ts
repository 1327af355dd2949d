/**
 * Matchers compiled once per policy load; nothing here is built per request.
 * Host suffixes are a Set probed once per label boundary, ports a sorted
 * range list, CIDRs grouped by family and prefix length so a lookup is one
 * Set probe per distinct prefix length (fast with 10,000 entries).
 */
import ipaddr from 'ipaddr.js'
import { parseCidr, parsePortSpec } from './schema.js'

export interface HostMatcher { match (host: string): boolean }

export function compileHosts (patterns: readonly string[]): HostMatcher {
  const exact = new Set<string>()
  const suffixes = new Set<string>()
  for (const p of patterns) {
    if (p.startsWith('*.')) suffixes.add(p.slice(2))
    else exact.add(p)
  }
  return {
    match (host: string): boolean {
      if (exact.has(host)) return true
      if (suffixes.size === 0) return false
      // `*.example.com` matches a.example.com and a.b.example.com, not example.com.
      for (let i = host.indexOf('.'); i >= 0; i = host.indexOf('.', i + 1)) {
        if (suffixes.has(host.slice(i + 1))) return true
      }
      return false
    }
  }
}

export interface PortMatcher { match (port: number): boolean }

export function compilePorts (specs: ReadonlyArray<number | string>): PortMatcher {
  const single = new Set<number>()
  const ranges: Array<readonly [number, number]> = []
  for (const s of specs) {
    const r = parsePortSpec(s)
    if (r === undefined) throw new TypeError(`bad port spec ${String(s)}`)
    if (r[0] === r[1]) single.add(r[0])
    else ranges.push(r)
  }
  return {
    match (port: number): boolean {
      if (single.has(port)) return true
      for (const [lo, hi] of ranges) if (port >= lo && port <= hi) return true
      return false
    }
  }
}

export interface CidrMatcher { match (address: string): boolean }

/** Network prefix of `bytes` as a string key, `bits` long. */
function prefixKey (bytes: readonly number[], bits: number): string {
  let key = ''
  const whole = bits >> 3
  for (let i = 0; i < whole; i++) key += String.fromCharCode(bytes[i] ?? 0)
  const rest = bits & 7
  if (rest > 0) key += String.fromCharCode((bytes[whole] ?? 0) & (0xff << (8 - rest)) & 0xff)
  return key
}

/**
 * IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is matched as the IPv4 it carries, so
 * `10.0.0.0/8` also covers `::ffff:10.0.0.1`.
 */
export function toBytes (address: string): { v4: boolean, bytes: number[] } | undefined {
  try {
    let a = ipaddr.parse(address)
    if (a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress()) a = (a as ipaddr.IPv6).toIPv4Address()
    return { v4: a.kind() === 'ipv4', bytes: a.toByteArray() }
  } catch {
    return undefined
  }
}

export function compileCidrs (specs: readonly string[]): CidrMatcher {
  const v4 = new Map<number, Set<string>>()
  const v6 = new Map<number, Set<string>>()
  for (const s of specs) {
    const parsed = parseCidr(s)
    if (parsed === undefined) throw new TypeError(`bad CIDR ${s}`)
    let [addr, bits] = parsed
    if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96) {
      addr = (addr as ipaddr.IPv6).toIPv4Address()
      bits -= 96
    }
    const table = addr.kind() === 'ipv4' ? v4 : v6
    let set = table.get(bits)
    if (set === undefined) table.set(bits, (set = new Set()))
    set.add(prefixKey(addr.toByteArray(), bits))
  }
  // Longest prefixes first does not matter for a yes/no answer; order is fixed for predictability.
  const v4Lens = [...v4.entries()].sort((a, b) => b[0] - a[0])
  const v6Lens = [...v6.entries()].sort((a, b) => b[0] - a[0])
  return {
    match (address: string): boolean {
      const parsed = toBytes(address)
      if (parsed === undefined) return false
      for (const [bits, set] of parsed.v4 ? v4Lens : v6Lens) {
        if (set.has(prefixKey(parsed.bytes, bits))) return true
      }
      return false
    }
  }
}
