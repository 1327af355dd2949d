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
 */
import { parseCidr, prefixKey, type IpKey } from '../net/ip.js'

/** The fields of a rule the index needs (a subset of RuleSpec, as validated). */
export interface IndexedSpec {
  readonly hosts?: readonly string[] | undefined
  readonly ips?: readonly string[] | undefined
}

/** Below this many rules the walk is linear. */
export const INDEX_MIN_RULES = 32

/** Rule indices in ascending order, walked together with a second sorted list. */
export class Candidates {
  private a = 0
  private b = 0
  private readonly fixed: readonly number[]
  private readonly extra: readonly number[]

  constructor (fixed: readonly number[], extra: readonly number[]) {
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

const NONE: readonly number[] = Object.freeze([])

function push<K> (map: Map<K, number[]>, key: K, rule: number): void {
  const list = map.get(key)
  if (list === undefined) map.set(key, [rule])
  else if (list[list.length - 1] !== rule) list.push(rule)
}

/** Sorted, without duplicates. */
function sortedUnique (lists: ReadonlyArray<readonly number[]>): readonly number[] {
  if (lists.length === 0) return NONE
  if (lists.length === 1) return lists[0] as readonly number[]
  const all = lists.flat().sort((x, y) => x - y)
  return all.filter((v, i) => i === 0 || all[i - 1] !== v)
}

export class RuleIndex {
  /** Rules with neither `ips` nor `hosts`. */
  private readonly always: readonly number[]
  /** `always` and every rule with `ips` (the request stage cannot rule those out). */
  private readonly alwaysOrIps: readonly number[]
  private readonly exact = new Map<string, number[]>()
  private readonly suffix = new Map<string, number[]>()
  private readonly v4 = new Map<number, Map<string, number[]>>()
  private readonly v6 = new Map<number, Map<string, number[]>>()
  private v4Lens: ReadonlyArray<readonly [number, Map<string, number[]>]> = []
  private v6Lens: ReadonlyArray<readonly [number, Map<string, number[]>]> = []

  private readonly alwaysList: number[] = []
  private readonly alwaysOrIpsList: number[] = []

  /** Index `specs` in one go. */
  static of (specs: readonly IndexedSpec[]): RuleIndex {
    const index = new RuleIndex()
    specs.forEach((s, i) => index.add(i, s))
    return index.seal()
  }

  /** An index to add() rules to, in order, then seal(). */
  static empty (): RuleIndex { return new RuleIndex() }

  private constructor () {
    this.always = this.alwaysList
    this.alwaysOrIps = this.alwaysOrIpsList
  }

  /** File rule `i` (rules must be added in order); see RuleIndex.of. */
  add (i: number, s: IndexedSpec): void {
    if (s.ips !== undefined) {
      this.alwaysOrIpsList.push(i)
      for (const text of s.ips) {
        const c = parseCidr(text)
        if (c === undefined) continue
        const table = c.v4 ? this.v4 : this.v6
        let byPrefix = table.get(c.bits)
        if (byPrefix === undefined) table.set(c.bits, (byPrefix = new Map()))
        push(byPrefix, prefixKey(c.bytes, c.bits), i)
      }
    } else if (s.hosts !== undefined) {
      for (const h of s.hosts) {
        if (h.startsWith('*.')) push(this.suffix, h.slice(2), i)
        else push(this.exact, h, i)
      }
    } else {
      this.alwaysList.push(i)
      this.alwaysOrIpsList.push(i)
    }
  }

  /** After the last add(). */
  seal (): this {
    this.v4Lens = [...this.v4.entries()]
    this.v6Lens = [...this.v6.entries()]
    return this
  }

  /** Rules whose `hosts` can match `host` (hosts only match names). */
  private byHost (host: string, lists: Array<readonly number[]>): void {
    const e = this.exact.get(host)
    if (e !== undefined) lists.push(e)
    if (this.suffix.size === 0) return
    for (let i = host.indexOf('.'); i >= 0; i = host.indexOf('.', i + 1)) {
      const s = this.suffix.get(host.slice(i + 1))
      if (s !== undefined) lists.push(s)
    }
  }

  /** Stage 1: every rule but those whose `hosts` cannot match. */
  forRequest (host: string, isName: boolean): Candidates {
    const lists: Array<readonly number[]> = []
    if (isName) this.byHost(host, lists)
    return new Candidates(this.alwaysOrIps, sortedUnique(lists))
  }

  /** Stage 2: rules whose `ips` contain `key`, those whose `hosts` can match, and the rest. */
  forAddress (host: string, isName: boolean, key: IpKey): Candidates {
    const lists: Array<readonly number[]> = []
    if (isName) this.byHost(host, lists)
    for (const [bits, byPrefix] of key.v4 ? this.v4Lens : this.v6Lens) {
      const l = byPrefix.get(prefixKey(key.bytes, bits))
      if (l !== undefined) lists.push(l)
    }
    return new Candidates(this.always, sortedUnique(lists))
  }
}

/** Every rule, in order: the linear walk (small policies, and `sluice check`'s explanation). */
export function allRules (all: readonly number[]): Candidates {
  return new Candidates(all, NONE)
}
