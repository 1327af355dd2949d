/**
 * An index over a compiled policy's rules, so that first match over N rules
 * does not cost N matches (issue 11, finding 6: 20,000 rules each with its
 * own `ips:` cost 16 ms per CONNECT).
 *
 * Each rule is filed under one primary matcher:
 * - a rule with `ips` under its CIDRs (family, prefix length, prefix bytes);
 * - else a rule with `hosts` under its exact names and `*.suffix`es;
 * - else it is "always" a candidate.
 * A lookup collects the rules whose primary matcher can match, and the walk
 * visits them in rule order and runs the full match on each, exactly as the
 * linear walk does: the index only skips rules that cannot match, so first
 * match is kept (test/unit/rule-index.test.ts compares both walks).
 *
 * Small policies skip the index: a walk over a dozen rules is cheaper than
 * the lookups.
 *
 * The tables are KeyTables (policy/key-table.ts), plain data that a
 * reload's validation worker builds and sends (issue 15).
 */
import { parseCidr, prefixKey, type IpKey } from '../net/ip.js'
import { KeyTable, type KeyTableWire } from './key-table.js'

/** The fields of a rule the index needs (a subset of RuleSpec, as validated). */
export interface IndexedSpec {
  readonly hosts?: readonly string[] | undefined
  readonly ips?: readonly string[] | undefined
  readonly users?: readonly string[] | undefined
}

/**
 * Which rules send a name to a parent first (their `ips` then never match a
 * name, README "Parent proxies"): each rule's `via` by rule number,
 * ascending, and whether a route starts with a parent. Known only once the
 * routes are loaded, on the event loop.
 */
export interface RouteFacts {
  readonly vias: ReadonlyArray<readonly [number, string]>
  readonly parentFirst: (via: string | undefined) => boolean
}

/** Below this many rules the walk is linear. */
export const INDEX_MIN_RULES = 32

/** Rule numbers in ascending order: arrays, or KeyTable views. */
export type RuleList = ArrayLike<number>

/** Rule indices in ascending order, walked together with a second sorted list. */
export class Candidates {
  private a = 0
  private b = 0
  private readonly fixed: RuleList
  private readonly extra: RuleList

  constructor (fixed: RuleList, extra: RuleList) {
    this.fixed = fixed
    this.extra = extra
  }

  /** The next rule index in order, or -1 when none is left. */
  next (): number {
    const x = this.a < this.fixed.length ? (this.fixed[this.a] as number) : Infinity
    const y = this.b < this.extra.length ? (this.extra[this.b] as number) : Infinity
    if (x === Infinity && y === Infinity) return -1
    if (x <= y) this.a++
    if (y <= x) this.b++
    return Math.min(x, y)
  }
}

const NONE: RuleList = Object.freeze([])

function push<K> (map: Map<K, number[]>, key: K, rule: number): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [rule])
  else if (list[list.length - 1] !== rule) list.push(rule)
}

/** Sorted, without duplicates. */
function sortedUnique (lists: readonly RuleList[]): RuleList {
  if (lists.length === 0) return NONE
  if (lists.length === 1) return lists[0] as RuleList
  const all: number[] = []
  for (const l of lists) for (let i = 0; i < l.length; i++) all.push(l[i] as number)
  all.sort((x, y) => x - y)
  return all.filter((v, i) => i === 0 || all[i - 1] !== v)
}

/** A sealed RuleIndex as plain data: the validation worker builds it and postMessage carries it (issue 15). */
export interface RuleIndexWire {
  readonly always: Int32Array
  readonly alwaysOrIps: Int32Array
  /** Rules with `ips` and no `users`: skipped for a name sent to a parent first. */
  readonly ipsNoUsers: Int32Array
  readonly exact: KeyTableWire
  readonly suffix: KeyTableWire
  /** Per prefix length, the prefixes (net/ip.ts prefixKey). */
  readonly v4: ReadonlyArray<readonly [number, KeyTableWire]>
  readonly v6: ReadonlyArray<readonly [number, KeyTableWire]>
}

/** What add() collects; RuleIndex.of packs it into KeyTables. */
class Builder {
  readonly always: number[] = []
  readonly alwaysOrIps: number[] = []
  readonly ipsNoUsers: number[] = []
  readonly exact = new Map<string, number[]>()
  readonly suffix = new Map<string, number[]>()
  readonly v4 = new Map<number, Map<string, number[]>>()
  readonly v6 = new Map<number, Map<string, number[]>>()
}

const byLength = (m: ReadonlyMap<number, ReadonlyMap<string, readonly number[]>>): Array<[number, KeyTableWire]> =>
  [...m.entries()].map(([bits, keys]) => [bits, KeyTable.of(keys).wire()])

export class RuleIndex {
  /** Rules with neither `ips` nor `hosts`. */
  private readonly always: RuleList
  /** `always` and every rule with `ips` (the request stage cannot rule those out). */
  private readonly alwaysOrIps: RuleList
  /** alwaysOrIps for a name, under a listener without a route of its own: less the parent-first `ips` rules without `users`. */
  private readonly forNames: RuleList
  /** alwaysOrIps for a name under a listener whose route starts with a parent: less every `ips` rule without `users`. */
  private readonly forNamesViaParent: RuleList
  private readonly exact: KeyTable
  private readonly suffix: KeyTable
  private readonly v4Lens: ReadonlyArray<readonly [number, KeyTable]>
  private readonly v6Lens: ReadonlyArray<readonly [number, KeyTable]>
  private readonly w: RuleIndexWire

  /** Index `specs` in one go; `routes` as in fromWire. */
  static of (specs: readonly IndexedSpec[], routes?: RouteFacts): RuleIndex {
    const b = new Builder()
    specs.forEach((s, i) => { add(b, i, s) })
    return new RuleIndex({
      always: Int32Array.from(b.always),
      alwaysOrIps: Int32Array.from(b.alwaysOrIps),
      ipsNoUsers: Int32Array.from(b.ipsNoUsers),
      exact: KeyTable.of(b.exact).wire(),
      suffix: KeyTable.of(b.suffix).wire(),
      v4: byLength(b.v4),
      v6: byLength(b.v6)
    }, routes)
  }

  /**
   * An index another thread built (RuleIndex.of(...).wire()). With `routes`,
   * the request stage of a name leaves out the `ips` rules that would send
   * it to a parent first: a name past 20,000 such rules otherwise walked
   * them all (2 ms per CONNECT; after a reload, 140 ms compiling them).
   */
  static fromWire (w: RuleIndexWire, routes?: RouteFacts): RuleIndex { return new RuleIndex(w, routes) }

  private constructor (w: RuleIndexWire, routes: RouteFacts | undefined) {
    this.w = w
    this.always = w.always
    this.alwaysOrIps = w.alwaysOrIps
    this.forNames = routes === undefined ? w.alwaysOrIps : without(w.alwaysOrIps, w.ipsNoUsers, routes)
    this.forNamesViaParent = without(w.alwaysOrIps, w.ipsNoUsers, { vias: [], parentFirst: () => true })
    this.exact = new KeyTable(w.exact)
    this.suffix = new KeyTable(w.suffix)
    this.v4Lens = w.v4.map(([bits, t]) => [bits, new KeyTable(t)] as const)
    this.v6Lens = w.v6.map(([bits, t]) => [bits, new KeyTable(t)] as const)
  }

  /** This index as plain data, for postMessage. */
  wire (): RuleIndexWire { return this.w }

  /** Rules whose `hosts` can match `host` (hosts only match names). */
  private byHost (host: string, lists: RuleList[]): void {
    const e = this.exact.get(host)
    if (e !== undefined) lists.push(e)
    if (this.suffix.size === 0) return
    for (let i = host.indexOf('.'); i >= 0; i = host.indexOf('.', i + 1)) {
      const s = this.suffix.get(host, i + 1)
      if (s !== undefined) lists.push(s)
    }
  }

  /**
   * Stage 1: every rule but those whose `hosts` cannot match, and for a
   * name, those whose `ips` it is a parent's to resolve (policy/decide.ts
   * skips them: `ips-via-parent`). `listener` is the listener's own route,
   * as RequestFacts carries it.
   */
  forRequest (host: string, isName: boolean, listener?: { readonly via?: string | undefined, readonly viaParent?: boolean | undefined }): Candidates {
    const lists: RuleList[] = []
    if (isName) this.byHost(host, lists)
    const fixed = !isName
      ? this.alwaysOrIps
      : listener?.via === undefined ? this.forNames : listener.viaParent === true ? this.forNamesViaParent : this.alwaysOrIps
    return new Candidates(fixed, sortedUnique(lists))
  }

  /** Stage 2: rules whose `ips` contain `key`, those whose `hosts` can match, and the rest. */
  forAddress (host: string, isName: boolean, key: IpKey): Candidates {
    const lists: RuleList[] = []
    if (isName) this.byHost(host, lists)
    for (const [bits, table] of key.v4 ? this.v4Lens : this.v6Lens) {
      const l = table.get(prefixKey(key.bytes, bits))
      if (l !== undefined) lists.push(l)
    }
    return new Candidates(this.always, sortedUnique(lists))
  }
}

/** `all` less the rules in `drop` whose route starts with a parent; both ascending. */
function without (all: RuleList, drop: RuleList, routes: RouteFacts): RuleList {
  if (drop.length === 0) return all
  const out = new Int32Array(all.length)
  let n = 0
  let d = 0
  let v = 0
  for (let k = 0; k < all.length; k++) {
    const i = all[k] as number
    while (d < drop.length && (drop[d] as number) < i) d++
    if (d < drop.length && drop[d] === i) {
      while (v < routes.vias.length && (routes.vias[v]?.[0] as number) < i) v++
      const via = routes.vias[v]?.[0] === i ? routes.vias[v]?.[1] : undefined
      if (routes.parentFirst(via)) continue
    }
    out[n++] = i
  }
  return out.subarray(0, n)
}

/** File rule `i` (rules must be added in order); see RuleIndex.of. */
function add (b: Builder, i: number, s: IndexedSpec): void {
  if (s.ips !== undefined) {
    b.alwaysOrIps.push(i)
    if (s.users === undefined) b.ipsNoUsers.push(i)
    for (const text of s.ips) {
      const c = parseCidr(text)
      if (c === undefined) continue
      const table = c.v4 ? b.v4 : b.v6
      let byPrefix = table.get(c.bits)
      if (byPrefix === undefined) table.set(c.bits, (byPrefix = new Map()))
      push(byPrefix, prefixKey(c.bytes, c.bits), i)
    }
  } else if (s.hosts !== undefined) {
    for (const h of s.hosts) {
      if (h.startsWith('*.')) push(b.suffix, h.slice(2), i)
      else push(b.exact, h, i)
    }
  } else {
    b.always.push(i)
    b.alwaysOrIps.push(i)
  }
}

/** Every rule, in order: the linear walk (small policies, and `sluice check`'s explanation). */
export function allRules (all: RuleList): Candidates {
  return new Candidates(all, NONE)
}
