/**
 * Matchers compiled once per policy load; nothing here is built per request.
 * Host suffixes are a Set probed once per label boundary, ports a sorted
 * range list, CIDRs grouped by family and prefix length so a lookup is one
 * Set probe per distinct prefix length (fast with 10,000 entries).
 */
import { inCidr, parseCidr, prefixKey, type IpKey } from '../net/ip.js'
import { parsePortSpec } from './schema.js'

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

export interface CidrMatcher {
  /** `key` is the address parsed once per decision (net/ip.ts toIpKey). */
  match (key: IpKey): boolean
}

/**
 * CIDRs are parsed by net/ip.ts, the parser every other address check uses:
 * IPv4-mapped `::ffff:a.b.c.d` is matched as the IPv4 it carries (so
 * `10.0.0.0/8` covers `::ffff:10.0.0.1`); IPv4-compatible `::a.b.c.d` is
 * IPv6 and never matched as its IPv4 (issue 11, finding 5).
 */
/** Up to this many CIDRs are compared one by one: fewer objects per rule than the tables below. */
const FEW_CIDRS = 4

export function compileCidrs (specs: readonly string[]): CidrMatcher {
  const parsed = specs.map(s => {
    const c = parseCidr(s)
    if (c === undefined) throw new TypeError(`bad CIDR ${s}`)
    return c
  })
  if (parsed.length <= FEW_CIDRS) {
    return { match: (key: IpKey): boolean => parsed.some(c => inCidr(key, c)) }
  }
  const v4 = new Map<number, Set<string>>()
  const v6 = new Map<number, Set<string>>()
  for (const c of parsed) {
    const table = c.v4 ? v4 : v6
    let set = table.get(c.bits)
    if (set === undefined) table.set(c.bits, (set = new Set()))
    set.add(prefixKey(c.bytes, c.bits))
  }
  // Longest prefixes first does not matter for a yes/no answer; order is fixed for predictability.
  const v4Lens = [...v4.entries()].sort((a, b) => b[0] - a[0])
  const v6Lens = [...v6.entries()].sort((a, b) => b[0] - a[0])
  return {
    match (key: IpKey): boolean {
      for (const [bits, set] of key.v4 ? v4Lens : v6Lens) {
        if (set.has(prefixKey(key.bytes, bits))) return true
      }
      return false
    }
  }
}
