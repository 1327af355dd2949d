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
  private readonly exact: KeyTable
  private readonly suffix: KeyTable
  private readonly v4Lens: ReadonlyArray<readonly [number, KeyTable]>
  private readonly v6Lens: ReadonlyArray<readonly [number, KeyTable]>
  private readonly w: RuleIndexWire

  /** Index `specs` in one go. */
  static of (specs: readonly IndexedSpec[]): RuleIndex {
    const b = new Builder()
    specs.forEach((s, i) => { add(b, i, s) })
    return new RuleIndex({
      always: Int32Array.from(b.always),
      alwaysOrIps: Int32Array.from(b.alwaysOrIps),
      exact: KeyTable.of(b.exact).wire(),
      suffix: KeyTable.of(b.suffix).wire(),
      v4: byLength(b.v4),
      v6: byLength(b.v6)
    })
  }

  /** An index another thread built (RuleIndex.of(...).wire()). */
  static fromWire (w: RuleIndexWire): RuleIndex { return new RuleIndex(w) }

  private constructor (w: RuleIndexWire) {
    this.w = w
    this.always = w.always
    this.alwaysOrIps = w.alwaysOrIps
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

  /** Stage 1: every rule but those whose `hosts` cannot match. */
  forRequest (host: string, isName: boolean): Candidates {
    const lists: RuleList[] = []
    if (isName) this.byHost(host, lists)
    return new Candidates(this.alwaysOrIps, sortedUnique(lists))
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

/** File rule `i` (rules must be added in order); see RuleIndex.of. */
function add (b: Builder, i: number, s: IndexedSpec): void {
  if (s.ips !== undefined) {
    b.alwaysOrIps.push(i)
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
