/**
 * Shadowed rules: does an earlier rule match every request a later one
 * could? Then, first match winning, the later rule is never reached.
 *
 * Conservative by design: "covers" is answered yes only when it is certain
 * from the lists as written. A matcher the earlier rule leaves out matches
 * anything; one it has must be a superset of the later rule's: hosts by
 * exact name and `*.suffix`, ports by range, `ips` and `clients` by CIDR
 * containment (one earlier CIDR must hold the later one; two /25s covering
 * a /24 are not recognised), users and listeners as sets of names (a user
 * is not looked up in `@groups`). `action` and `mode` do not matter: this
 * is about reachability.
 */
import { parseCidr, type Cidr } from '../net/ip.js'
import { parsePortSpec, type RuleSpec } from '../policy/schema.js'

/** A rule as shadowing needs it: the validated spec, and whether its route starts with a parent. */
export interface ShadowInput {
  readonly spec: RuleSpec
  /** Names sent to a parent are never resolved: this rule's `ips` match only IP literals. */
  readonly viaParent: boolean
}

interface HostSet { readonly exact: ReadonlySet<string>, readonly suffixes: ReadonlySet<string> }
/** CIDRs by family, then prefix length → network prefixes. */
interface CidrSet { readonly v4: ReadonlyMap<number, ReadonlySet<string>>, readonly v6: ReadonlyMap<number, ReadonlySet<string>> }

/** A rule's lists, indexed once so each pair of rules is compared cheaply. */
export interface IndexedRule {
  readonly hosts?: { readonly list: readonly string[], readonly set: HostSet }
  readonly ports?: ReadonlyArray<readonly [number, number]>
  readonly ips?: { readonly list: readonly Cidr[], readonly set: CidrSet }
  readonly clients?: { readonly list: readonly Cidr[], readonly set: CidrSet }
  readonly users?: ReadonlySet<string>
  readonly listeners?: ReadonlySet<string>
  readonly viaParent: boolean
}

/** The first `bits` of `bytes`, as a string key. */
function prefix (bytes: readonly number[], bits: number): string {
  let key = ''
  for (let i = 0; i < bits >> 3; i++) key += String.fromCharCode(bytes[i] ?? 0)
  if ((bits & 7) > 0) key += String.fromCharCode((bytes[bits >> 3] ?? 0) & (0xff << (8 - (bits & 7))) & 0xff)
  return key
}

function indexCidrs (specs: readonly string[]): { list: Cidr[], set: CidrSet } | undefined {
  const list: Cidr[] = []
  const v4 = new Map<number, Set<string>>()
  const v6 = new Map<number, Set<string>>()
  for (const s of specs) {
    // net/ip.ts, as the matcher parses them: IPv4-mapped IPv6 is its IPv4.
    const c = parseCidr(s)
    // Validated input always parses; if not, claim nothing about this rule.
    if (c === undefined) return undefined
    list.push(c)
    const table = c.v4 ? v4 : v6
    let set = table.get(c.bits)
    if (set === undefined) table.set(c.bits, (set = new Set()))
    set.add(prefix(c.bytes, c.bits))
  }
  return { list, set: { v4, v6 } }
}

/** Is `c` inside one CIDR of `set` (one of no longer prefix holding its network)? */
function cidrCovered (set: CidrSet, c: Cidr): boolean {
  for (const [bits, prefixes] of c.v4 ? set.v4 : set.v6) {
    if (bits <= c.bits && prefixes.has(prefix(c.bytes, bits))) return true
  }
  return false
}

/** Port ranges merged and sorted: [[1, 79], [443, 443]]. */
function mergePorts (specs: ReadonlyArray<number | string>): Array<readonly [number, number]> | undefined {
  const ranges: Array<readonly [number, number]> = []
  for (const s of specs) {
    const r = parsePortSpec(s)
    if (r === undefined) return undefined
    ranges.push(r)
  }
  ranges.sort((a, b) => a[0] - b[0])
  const merged: Array<[number, number]> = []
  for (const [lo, hi] of ranges) {
    const last = merged.at(-1)
    if (last !== undefined && lo <= last[1] + 1) last[1] = Math.max(last[1], hi)
    else merged.push([lo, hi])
  }
  return merged
}

/** Does `pattern` (`name` or `*.suffix`) only match names `hosts` also matches? */
function hostCovered (hosts: HostSet, pattern: string): boolean {
  const wild = pattern.startsWith('*.')
  const name = wild ? pattern.slice(2) : pattern
  // `*.example.com` also covers `*.a.example.com`, `x.example.com` and `x.a.example.com`;
  // an exact name never covers a wildcard (which matches endless names).
  if (wild && hosts.suffixes.has(name)) return true
  if (!wild && hosts.exact.has(name)) return true
  for (let i = name.indexOf('.'); i >= 0; i = name.indexOf('.', i + 1)) {
    if (hosts.suffixes.has(name.slice(i + 1))) return true
  }
  return false
}

/** Index a rule's lists; `undefined` for a list that cannot be read (then nothing is claimed). */
export function indexRule (r: ShadowInput): IndexedRule | undefined {
  const s = r.spec
  const ports = s.ports === undefined ? undefined : mergePorts(s.ports)
  const ips = s.ips === undefined ? undefined : indexCidrs(s.ips)
  const clients = s.clients === undefined ? undefined : indexCidrs(s.clients)
  if ((s.ports !== undefined && ports === undefined) || (s.ips !== undefined && ips === undefined) || (s.clients !== undefined && clients === undefined)) return undefined
  return {
    viaParent: r.viaParent,
    ...(s.hosts === undefined
      ? {}
      : {
          hosts: {
            list: s.hosts,
            set: { exact: new Set(s.hosts.filter(h => !h.startsWith('*.'))), suffixes: new Set(s.hosts.filter(h => h.startsWith('*.')).map(h => h.slice(2))) }
          }
        }),
    ...(ports === undefined ? {} : { ports }),
    ...(ips === undefined ? {} : { ips }),
    ...(clients === undefined ? {} : { clients }),
    ...(s.users === undefined ? {} : { users: new Set(s.users) }),
    ...(s.listeners === undefined ? {} : { listeners: new Set(s.listeners) })
  }
}

function subset (later: ReadonlySet<string> | undefined, earlier: ReadonlySet<string>): boolean {
  if (later === undefined) return false
  for (const v of later) if (!earlier.has(v)) return false
  return true
}

/** Does `earlier` match every request `later` could match? Only yes when certain. */
export function covers (earlier: IndexedRule, later: IndexedRule): boolean {
  if (earlier.hosts !== undefined) {
    const set = earlier.hosts.set
    if (later.hosts === undefined || !later.hosts.list.every(h => hostCovered(set, h))) return false
  }
  if (earlier.ports !== undefined) {
    const merged = earlier.ports
    if (later.ports === undefined || !later.ports.every(([lo, hi]) => merged.some(([a, b]) => a <= lo && hi <= b))) return false
  }
  if (earlier.clients !== undefined) {
    const set = earlier.clients.set
    if (later.clients === undefined || !later.clients.list.every(c => cidrCovered(set, c))) return false
  }
  if (earlier.ips !== undefined) {
    // An earlier rule routed to a parent matches only IP literals by `ips`; a later
    // direct one also matches names resolving into them.
    if (earlier.viaParent && !later.viaParent) return false
    const set = earlier.ips.set
    if (later.ips === undefined || !later.ips.list.every(c => cidrCovered(set, c))) return false
  }
  if (earlier.users !== undefined && !subset(later.users, earlier.users)) return false
  if (earlier.listeners !== undefined && !subset(later.listeners, earlier.listeners)) return false
  return true
}
