/** Validated rules → matchers, once per load (never per request). */
import type { RuleSpec, TunnelChecksSpec } from './schema.js'
import { INDEX_MIN_RULES, RuleIndex } from './rule-index.js'
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
  readonly rules: readonly CompiledRule[]
  readonly defaultAllow: boolean
  /** Every deny is only reported (file-level `mode: report`). */
  readonly report: boolean
  /** Some rule matches `clients:`: parse the client address once per decision. */
  readonly usesClients: boolean
  /** 0 … rules.length-1: the linear walk. */
  readonly all: readonly number[]
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

function assemble (rules: readonly RuleSpec[], compiled: readonly CompiledRule[], index: RuleIndex | undefined, defaultAction: 'allow' | 'deny', mode: 'enforce' | 'report', checks: TunnelChecksSpec): CompiledPolicy {
  return Object.freeze({
    checks: checkBits(checks.sni_match, checks.tls_only),
    defaultAllow: defaultAction === 'allow',
    report: mode === 'report',
    usesClients: rules.some(r => r.clients !== undefined),
    all: Object.freeze(rules.map((_r, i) => i)),
    index,
    rules: Object.freeze(compiled)
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
  const compiled = rules.map((r, i) => compileRule(r, i, mode, parentFirst, checks))
  return assemble(rules, compiled, rules.length < INDEX_MIN_RULES ? undefined : RuleIndex.of(rules), defaultAction, mode, checks)
}

/**
 * compilePolicy in slices of at most `sliceMs` of work, yielding to the
 * event loop between them, so that a reload of a 20,000-rule policy does
 * not stall open tunnels (issue 11, finding 6). The result is the same.
 */
export async function compilePolicyInSlices (
  rules: readonly RuleSpec[],
  defaultAction: 'allow' | 'deny',
  mode: 'enforce' | 'report' = 'enforce',
  parentFirst: ParentFirst = () => false,
  checks: TunnelChecksSpec = NO_CHECKS,
  sliceMs = 1
): Promise<CompiledPolicy> {
  const compiled: CompiledRule[] = []
  const index = rules.length < INDEX_MIN_RULES ? undefined : RuleIndex.empty()
  let sliceStart = performance.now()
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i] as RuleSpec
    compiled.push(compileRule(r, i, mode, parentFirst, checks))
    index?.add(i, r)
    if ((i & 63) === 63 && performance.now() - sliceStart > sliceMs) {
      await new Promise<void>(resolve => setImmediate(resolve))
      sliceStart = performance.now()
    }
  }
  return assemble(rules, compiled, index?.seal(), defaultAction, mode, checks)
}
