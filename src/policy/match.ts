/**
 * Matchers compiled once per policy load; nothing here is built per request.
 * Host suffixes are a Set probed once per label boundary, ports a sorted
 * range list, CIDRs grouped by family and prefix length so a lookup is one
 * Set probe per distinct prefix length (fast with 10,000 entries).
 */
import { inCidr, parseCidr, prefixKey, type Cidr, type IpKey } from '../net/ip.js'
import { parsePortSpec } from './schema.js'

export interface HostMatcher { match (host: string): boolean }

/**
 * The matchers are class instances, not closures: a closure with its
 * context cost a 20,000-rule policy ~430 bytes more per rule on the heap,
 * and every reload copies what it builds through V8's young generation
 * (issue 15: the reload stall was scavenges of the new policy).
 */
class Hosts implements HostMatcher {
  private readonly exact = new Set<string>()
  private readonly suffixes = new Set<string>()

  constructor (patterns: readonly string[]) {
    for (const p of patterns) {
      if (p.startsWith('*.')) this.suffixes.add(p.slice(2))
      else this.exact.add(p)
    }
  }

  match (host: string): boolean {
    if (this.exact.has(host)) return true
    const suffixes = this.suffixes
    if (suffixes.size === 0) return false
    // `*.example.com` matches a.example.com and a.b.example.com, not example.com.
    for (let i = host.indexOf('.'); i >= 0; i = host.indexOf('.', i + 1)) {
      if (suffixes.has(host.slice(i + 1))) return true
    }
    return false
  }
}

export function compileHosts (patterns: readonly string[]): HostMatcher {
  return new Hosts(patterns)
}

export interface PortMatcher { match (port: number): boolean }

class Ports implements PortMatcher {
  private readonly single = new Set<number>()
  private readonly ranges: Array<readonly [number, number]> = []

  constructor (specs: ReadonlyArray<number | string>) {
    for (const s of specs) {
      const r = parsePortSpec(s)
      if (r === undefined) throw new TypeError(`bad port spec ${String(s)}`)
      if (r[0] === r[1]) this.single.add(r[0])
      else this.ranges.push(r)
    }
  }

  match (port: number): boolean {
    if (this.single.has(port)) return true
    for (const [lo, hi] of this.ranges) if (port >= lo && port <= hi) return true
    return false
  }
}

export function compilePorts (specs: ReadonlyArray<number | string>): PortMatcher {
  return new Ports(specs)
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

/** A few CIDRs, compared one by one. */
class FewCidrs implements CidrMatcher {
  private readonly cidrs: readonly Cidr[]
  constructor (cidrs: readonly Cidr[]) { this.cidrs = cidrs }
  match (key: IpKey): boolean {
    for (const c of this.cidrs) if (inCidr(key, c)) return true
    return false
  }
}

type ByLength = ReadonlyArray<readonly [number, ReadonlySet<string>]>

/** Many CIDRs: one Set probe per distinct prefix length. */
class CidrTable implements CidrMatcher {
  private readonly v4Lens: ByLength
  private readonly v6Lens: ByLength

  constructor (parsed: readonly Cidr[]) {
    const v4 = new Map<number, Set<string>>()
    const v6 = new Map<number, Set<string>>()
    for (const c of parsed) {
      const table = c.v4 ? v4 : v6
      let set = table.get(c.bits)
      if (set === undefined) table.set(c.bits, (set = new Set()))
      set.add(prefixKey(c.bytes, c.bits))
    }
    // Longest prefixes first does not matter for a yes/no answer; order is fixed for predictability.
    this.v4Lens = [...v4.entries()].sort((a, b) => b[0] - a[0])
    this.v6Lens = [...v6.entries()].sort((a, b) => b[0] - a[0])
  }

  match (key: IpKey): boolean {
    for (const [bits, set] of key.v4 ? this.v4Lens : this.v6Lens) {
      if (set.has(prefixKey(key.bytes, bits))) return true
    }
    return false
  }
}

export function compileCidrs (specs: readonly string[]): CidrMatcher {
  const parsed = specs.map(s => {
    const c = parseCidr(s)
    if (c === undefined) throw new TypeError(`bad CIDR ${s}`)
    return c
  })
  return parsed.length <= FEW_CIDRS ? new FewCidrs(parsed) : new CidrTable(parsed)
}
