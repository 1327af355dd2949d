/** Validated rules → matchers, once per load (never per request). */
import type { RuleSpec, TunnelChecksSpec } from './schema.js'
import { INDEX_MIN_RULES, RuleIndex, type RuleIndexWire, type RuleList } from './rule-index.js'
import { RuleSource } from './rule-source.js'
import { compileCidrs, compileHosts, compilePorts, type CidrMatcher, type HostMatcher, type PortMatcher } from './match.js'

/**
 * The first-bytes checks of a CONNECT tunnel (issue 14, the domain-fronting
 * guard), as bits: 0 is none, and then the tunnel is relayed at once.
 */
export const TunnelCheck = { sniMatch: 1, tlsOnly: 2 } as const

/** No checks: what a policy compiled without `tunnel_checks` gets. */
export const NO_CHECKS: TunnelChecksSpec = Object.freeze({ sni_match: false, tls_only: false })

function checkBits (sniMatch: boolean, tlsOnly: boolean): number {
  return (sniMatch ? TunnelCheck.sniMatch : 0) | (tlsOnly ? TunnelCheck.tlsOnly : 0)
}

export interface CompiledRule {
  readonly name: string
  readonly allow: boolean
  readonly hosts?: HostMatcher
  readonly ports?: PortMatcher
  readonly ips?: CidrMatcher
  readonly clients?: CidrMatcher
  readonly users?: ReadonlySet<string>
  readonly groups?: ReadonlySet<string>
  readonly listeners?: ReadonlySet<string>
  /** A deny by this rule is only reported. */
  readonly report: boolean
  /** Route (or parent, or `direct`) for what this rule allows. */
  readonly via?: string
  /**
   * `via` sends targets to a parent first, so Sluice never resolves a name
   * for this rule: its `ips` can only match IP-literal targets.
   */
  readonly viaParent: boolean
  /** TunnelCheck bits for the tunnels this rule lets through: its own sni_match / tls_only, else the file's. */
  readonly checks: number
}

export interface CompiledPolicy {
  /** How many rules. */
  readonly size: number
  /**
   * Rule `i`. A policy loaded at start or by `sluice check` is compiled
   * whole; a reloaded one compiles each rule at its first use (lazyPolicy).
   */
  rule (i: number): CompiledRule
  /** Every rule, compiled (lint, tests): not for the request path. */
  readonly rules: readonly CompiledRule[]
  readonly defaultAllow: boolean
  /** Every deny is only reported (file-level `mode: report`). */
  readonly report: boolean
  /** Some rule matches `clients:`: parse the client address once per decision. */
  readonly usesClients: boolean
  /** 0 … size-1: the linear walk. */
  readonly all: RuleList
  /** Candidate lookup for large policies (policy/rule-index.ts); undefined when small. */
  readonly index: RuleIndex | undefined
  /** TunnelCheck bits of `tunnel_checks`: for the default action's tunnels. */
  readonly checks: number
}

type ParentFirst = (via: string | undefined) => boolean

function compileRule (r: RuleSpec, i: number, mode: 'enforce' | 'report', parentFirst: ParentFirst, checks: TunnelChecksSpec): CompiledRule {
  return Object.freeze({
    // Rules without a name get a stable one from their position.
    name: r.name ?? `rule-${i + 1}`,
    allow: r.action === 'allow',
    ...(r.hosts === undefined ? {} : { hosts: compileHosts(r.hosts) }),
    ...(r.ports === undefined ? {} : { ports: compilePorts(r.ports) }),
    ...(r.ips === undefined ? {} : { ips: compileCidrs(r.ips) }),
    ...(r.clients === undefined ? {} : { clients: compileCidrs(r.clients) }),
    ...(r.users === undefined
      ? {}
      : {
          users: new Set(r.users.filter(u => !u.startsWith('@'))),
          groups: new Set(r.users.filter(u => u.startsWith('@')).map(g => g.slice(1)))
        }),
    ...(r.listeners === undefined ? {} : { listeners: new Set(r.listeners) }),
    report: r.mode === 'report' || mode === 'report',
    ...(r.via === undefined ? {} : { via: r.via }),
    viaParent: parentFirst(r.via),
    checks: checkBits(r.sni_match ?? checks.sni_match, r.tls_only ?? checks.tls_only)
  })
}

/** Rules compiled on demand, each once. */
class RuleTable {
  private readonly compiled: Array<CompiledRule | undefined>
  private readonly specs: RuleSource
  private readonly compileOne: (r: RuleSpec, i: number) => CompiledRule
  private frozen: readonly CompiledRule[] | undefined

  constructor (specs: RuleSource, compileOne: (r: RuleSpec, i: number) => CompiledRule) {
    this.specs = specs
    this.compileOne = compileOne
    // Holey, and for a large policy one object in V8's large-object space: nothing for a scavenge to copy.
    this.compiled = new Array<CompiledRule | undefined>(specs.size)
  }

  at (i: number): CompiledRule {
    return this.compiled[i] ?? (this.compiled[i] = this.compileOne(this.specs.at(i), i))
  }

  /** Every rule, compiled: a frozen copy, so no caller can reorder the running policy. */
  every (): readonly CompiledRule[] {
    for (let i = 0; i < this.specs.size; i++) this.at(i)
    this.frozen ??= Object.freeze([...this.compiled] as CompiledRule[])
    return this.frozen
  }
}

function assemble (source: RuleSource, table: RuleTable, index: RuleIndex | undefined, defaultAction: 'allow' | 'deny', mode: 'enforce' | 'report', checks: TunnelChecksSpec): CompiledPolicy {
  const all = new Int32Array(source.size)
  for (let i = 0; i < all.length; i++) all[i] = i
  return Object.freeze({
    size: source.size,
    rule: (i: number) => table.at(i),
    get rules () { return table.every() },
    checks: checkBits(checks.sni_match, checks.tls_only),
    defaultAllow: defaultAction === 'allow',
    report: mode === 'report',
    usesClients: source.usesClients,
    all,
    index
  })
}

export function compilePolicy (
  rules: readonly RuleSpec[],
  defaultAction: 'allow' | 'deny',
  mode: 'enforce' | 'report' = 'enforce',
  /** Does this route (undefined: the default route) start with a parent rather than direct? */
  parentFirst: ParentFirst = () => false,
  /** `tunnel_checks`: the first-bytes checks of tunnels whose rule does not set its own. */
  checks: TunnelChecksSpec = NO_CHECKS
): CompiledPolicy {
  const source = RuleSource.of(rules)
  const table = new RuleTable(source, (r, i) => compileRule(r, i, mode, parentFirst, checks))
  table.every()
  return assemble(source, table, rules.length < INDEX_MIN_RULES ? undefined : RuleIndex.of(rules, { vias: source.vias, parentFirst }), defaultAction, mode, checks)
}

/**
 * compilePolicy for a reload (issue 15): nothing per rule happens on the
 * event loop at the swap. The validation worker has compiled every rule once (so a
 * rule that cannot compile rejects the reload there), built the index
 * (`index`, RuleIndex.wire()) and packed the specs (policy/rule-source.ts);
 * here a rule is parsed and compiled at its first use, and a CONNECT uses
 * the few the index names (the request stage of a name leaves out the
 * `ips` rules that send it to a parent first: it met all 20,000, and
 * compiled them in one 140 ms turn). Compiling 20,000 rules and their index here,
 * even in 1 ms slices, stalled tunnels for 5–25 ms at a time: V8's
 * scavenges copying what was built. Same decisions as compilePolicy
 * (test/unit/rule-index.test.ts, test/unit/config-offthread.test.ts).
 */
export function lazyPolicy (
  source: RuleSource,
  defaultAction: 'allow' | 'deny',
  mode: 'enforce' | 'report',
  parentFirst: ParentFirst,
  checks: TunnelChecksSpec,
  index: RuleIndexWire | undefined
): CompiledPolicy {
  const table = new RuleTable(source, (r, i) => compileRule(r, i, mode, parentFirst, checks))
  const routes = { vias: source.vias, parentFirst }
  const built = source.size < INDEX_MIN_RULES ? undefined : index === undefined ? RuleIndex.of(source.all(), routes) : RuleIndex.fromWire(index, routes)
  return assemble(source, table, built, defaultAction, mode, checks)
}

/** Compile every rule and build the index, as the validation worker does before a reload is applied: throws what compilePolicy would. */
export function checkCompiles (rules: readonly RuleSpec[]): RuleIndexWire | undefined {
  rules.forEach((r, i) => compileRule(r, i, 'enforce', () => false, NO_CHECKS))
  return rules.length < INDEX_MIN_RULES ? undefined : RuleIndex.of(rules).wire()
}
