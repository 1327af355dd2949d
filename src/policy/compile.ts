/** Validated rules → matchers, once per load (never per request). */
import type { RuleSpec } from './schema.js'
import { INDEX_MIN_RULES, RuleIndex } from './rule-index.js'
import { compileCidrs, compileHosts, compilePorts, type CidrMatcher, type HostMatcher, type PortMatcher } from './match.js'

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
}

type ParentFirst = (via: string | undefined) => boolean

function compileRule (r: RuleSpec, i: number, mode: 'enforce' | 'report', parentFirst: ParentFirst): CompiledRule {
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
    viaParent: parentFirst(r.via)
  })
}

function assemble (rules: readonly RuleSpec[], compiled: readonly CompiledRule[], index: RuleIndex | undefined, defaultAction: 'allow' | 'deny', mode: 'enforce' | 'report'): CompiledPolicy {
  return Object.freeze({
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
  parentFirst: ParentFirst = () => false
): CompiledPolicy {
  const compiled = rules.map((r, i) => compileRule(r, i, mode, parentFirst))
  return assemble(rules, compiled, rules.length < INDEX_MIN_RULES ? undefined : RuleIndex.of(rules), defaultAction, mode)
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
  sliceMs = 1
): Promise<CompiledPolicy> {
  const compiled: CompiledRule[] = []
  const index = rules.length < INDEX_MIN_RULES ? undefined : RuleIndex.empty()
  let sliceStart = performance.now()
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i] as RuleSpec
    compiled.push(compileRule(r, i, mode, parentFirst))
    index?.add(i, r)
    if ((i & 63) === 63 && performance.now() - sliceStart > sliceMs) {
      await new Promise<void>(resolve => setImmediate(resolve))
      sliceStart = performance.now()
    }
  }
  return assemble(rules, compiled, index?.seal(), defaultAction, mode)
}
