/**
 * The one evaluation (issue 10): request facts → stage-1 verdict →
 * resolution → per-address verdicts → route. The proxy
 * (connect/handle.ts), `sluice check` (cli/check.ts) and the reload
 * re-check (policy/recheck.ts) all run this, so they cannot drift apart:
 * a test runs a table of configs and targets through `sluice check --json`
 * and a real CONNECT and asserts the same verdict, rule, stage and status.
 *
 * Stage 2 runs when a rule needs the address, for IP-literal targets, and
 * before a direct dial; a name sent to a parent first is the parent's to
 * resolve (README: "Parent proxies"), and is resolved here only if the
 * route falls back to going direct.
 */
import { ProxyError } from '../errors.js'
import { canonicalIp, formatHostPort } from '../net/ip.js'
import { DIRECT, type Route } from '../upstream/route.js'
import type { Routing } from '../upstream/routing.js'
import type { CompiledPolicy } from './compile.js'
import { decideAddress, decideRequest, type RequestFacts, type Skip, type Stage, type Verdict } from './decide.js'

export interface AddressJudgement {
  readonly address: string
  readonly verdict: Verdict
  /** Rules passed over for this address, when explaining. */
  readonly skipped?: readonly Skip[]
}

export interface EvaluationEnv {
  readonly policy: CompiledPolicy
  readonly routing: Routing
  /** Addresses for a name (IP literals come back as they are). */
  readonly resolve: (host: string) => Promise<readonly string[]>
  /** The resolver's cached answer for a name, if it has a fresh one (decided without waiting). */
  readonly cached?: (host: string) => readonly string[] | undefined
  /** True for one of this proxy's own listening endpoints (loop guard). */
  readonly isSelf: (address: string, port: number) => boolean
  /**
   * Report mode: a deny that is only reported (logged as "would deny").
   * The callbacks get the Decision, whose `owner` says for whom: one env
   * then serves every request under a config, with no closure per tunnel.
   */
  readonly report?: (v: Verdict, address: string | undefined, d: Decision) => void
  /** A resolved address that may not be dialed (logged at debug). */
  readonly refused?: (address: string, v: Verdict, d: Decision) => void
  /** Collect the rules passed over and why (`sluice check`). */
  readonly explain?: boolean
}

/** Policy-side refusal → the error the client is answered with. */
function refusalError (v: Verdict, authority: string): ProxyError {
  if (v.challenge === true) return new ProxyError('ERR_AUTH_REQUIRED', { detail: `rule ${v.rule} needs a user` })
  return new ProxyError(v.prohibitedAddress === true ? 'ERR_DESTINATION_PROHIBITED' : 'ERR_POLICY_DENIED', {
    detail: `${authority} (rule ${v.rule}: ${v.reason})`
  })
}

/** The rule's `via`, else the default route; NO_PROXY targets of an environment default go direct. */
export function routeFor (routing: Routing, via: string | undefined, facts: Pick<RequestFacts, 'host' | 'port'>): Route {
  if (via !== undefined) return routing.routes.get(via) ?? routing.defaultRoute
  if (routing.noProxy?.(facts.host, facts.port) === true) return DIRECT
  return routing.defaultRoute
}

/** Resolver text → the canonical spelling that is both judged and dialed (issue 11, finding 5). */
function canonical (address: string): string {
  // IPv6 has many spellings, and ipaddr.js and inet_pton read a dotted tail
  // (`::127.0.0.2`, c-ares' text for some AAAA answers) differently.
  return address.includes(':') ? (canonicalIp(address) ?? address) : address
}

/**
 * What the policy says about one request, built up as far as it has been
 * taken: stage 1 at construction, stage 2 by `judge()` / `addresses()`.
 * `rule` and `stage` are what the tunnel's log line reports.
 */
export class Decision {
  readonly facts: RequestFacts
  /** Stage 1; undefined when the answer depends on the resolved address. */
  readonly early: Verdict | undefined
  /** The verdict that decided so far: the refusal, or the allowing one. */
  verdict: Verdict | undefined
  rule: string | undefined
  stage: Stage | undefined
  /** How the policy (or DNS, or the loop guard) refused; undefined while allowed. */
  refusal: ProxyError | undefined
  /** Set by evaluate(): how an allowed tunnel is dialed. */
  route: Route = DIRECT
  /** Every candidate address and its verdict, once resolved. */
  judgements: readonly AddressJudgement[] | undefined
  /** Stage-1 rules passed over, when explaining. */
  readonly skipped: readonly Skip[] | undefined
  private via: string | undefined
  private readonly policy: CompiledPolicy
  private readonly env: Partial<EvaluationEnv>
  private pending: Promise<readonly string[]> | undefined
  /** Stage 2 done at once (an IP literal, a cached name): its addresses, or how it was refused. */
  private known: { readonly allowed: readonly string[] } | { readonly refused: unknown } | undefined

  /** Whom this decision is for (the proxy's Tunnel), handed to the env's callbacks. */
  readonly owner: unknown

  constructor (policy: CompiledPolicy, facts: RequestFacts, env: Partial<EvaluationEnv> = {}, owner?: unknown) {
    this.policy = policy
    this.facts = facts
    this.owner = owner
    this.env = env
    const skipped: Skip[] | undefined = env.explain === true ? [] : undefined
    this.skipped = skipped
    const early = decideRequest(policy, facts, skipped)
    this.early = early
    if (early === undefined) return
    this.verdict = early
    this.rule = early.rule
    this.stage = early.stage
    this.via = early.via
    if (!early.allow) this.refusal = refusalError(early, this.authority)
    else if (early.wouldDeny === true) env.report?.(early, undefined, this)
  }

  get authority (): string { return formatHostPort(this.facts.host, this.facts.port) }

  /** TunnelCheck bits (policy/compile.ts) of the verdict that allowed the tunnel; 0: none. */
  get checks (): number { return this.verdict?.allow === true ? (this.verdict.checks ?? 0) : 0 }

  /** True once stage 2 must run before anything is dialed. */
  get needsAddresses (): boolean { return this.early === undefined || !this.facts.isName }

  /**
   * Stage 2 over resolved candidates: the addresses that may be dialed.
   * Throws the refusal (403, 407, loop) when none may; pure but for `report`.
   */
  judge (resolved: readonly string[]): readonly string[] {
    const { facts, early, policy } = this
    const candidates = resolved.map(canonical)
    for (const address of candidates) {
      if (this.env.isSelf?.(address, facts.port) === true) {
        throw this.refuse(new ProxyError('ERR_LOOP_DETECTED', { detail: `${this.authority} resolves to this proxy's listener ${address}` }))
      }
    }
    const allowed: string[] = []
    const judgements: AddressJudgement[] = []
    let refusal: Verdict | undefined
    for (const address of candidates) {
      const skipped: Skip[] | undefined = this.env.explain === true ? [] : undefined
      const v = decideAddress(policy, facts, address, skipped)
      judgements.push(skipped === undefined ? { address, verdict: v } : { address, verdict: v, skipped })
      if (v.allow) {
        if (allowed.length === 0 && early === undefined) {
          this.via = v.via
          this.rule = v.rule
          this.verdict = v
        }
        allowed.push(address)
        this.stage = v.stage
        if (v.wouldDeny === true && early?.wouldDeny !== true) this.env.report?.(v, address, this)
      } else {
        // A challenge wins: credentials may unlock the target.
        if (v.challenge === true && refusal?.challenge !== true) refusal = v
        else refusal ??= v
        this.env.refused?.(address, v, this)
      }
    }
    this.judgements = judgements
    if (allowed.length === 0 && refusal !== undefined) {
      this.verdict = refusal
      this.rule = refusal.rule
      this.stage = refusal.stage
      throw this.refuse(refusalError(refusal, this.authority))
    }
    return allowed
  }

  /**
   * Resolve and judge (once): the policy-checked addresses for a direct
   * dial. An IP literal, or a name the resolver has a fresh answer for, is
   * judged at once, its addresses (or its refusal, thrown) returned without
   * a promise (issue 12: the async chain cost ~20 µs per CONNECT); any
   * other name waits for DNS.
   */
  addresses (): readonly string[] | Promise<readonly string[]> {
    if (this.pending !== undefined) return this.pending
    if (this.known === undefined) {
      const now = this.facts.isName ? this.env.cached?.(this.facts.host) : [this.facts.host]
      if (now === undefined) return (this.pending = this.resolveAndJudge())
      try {
        this.known = { allowed: this.judge(now) }
      } catch (err) {
        this.known = { refused: err }
      }
    }
    if ('refused' in this.known) throw this.known.refused
    return this.known.allowed
  }

  private async resolveAndJudge (): Promise<readonly string[]> {
    const resolve = this.env.resolve
    if (resolve === undefined) throw new Error('Decision.addresses() needs a resolver')
    let resolved: readonly string[]
    try {
      resolved = await resolve(this.facts.host)
    } catch (err) {
      throw err instanceof ProxyError ? this.refuse(err) : err
    }
    return this.judge(resolved)
  }

  private refuse (err: ProxyError): ProxyError {
    this.refusal ??= err
    return err
  }

  /** Pick the route from the deciding rule's `via`. */
  chooseRoute (routing: Routing): Route {
    this.route = routeFor(routing, this.facts.via ?? this.via, this.facts)
    return this.route
  }
}

/**
 * Run the whole evaluation as the proxy does before it dials. Never throws
 * a ProxyError: a refusal (policy, DNS, loop) is `decision.refusal`. The
 * Decision itself when nothing had to wait (no DNS: an IP literal, or a
 * name left to a parent), else a promise of it.
 */
export function evaluate (env: EvaluationEnv, facts: RequestFacts, owner?: unknown): Decision | Promise<Decision> {
  const d = new Decision(env.policy, facts, env, owner)
  if (d.refusal !== undefined) return d
  try {
    if (d.needsAddresses) {
      const a = d.addresses()
      if (a instanceof Promise) return settle(d, env, a)
    }
    // A direct first choice is judged before anything is dialed; a parent
    // first leaves the name to the parent (judged only on fallback).
    if (d.chooseRoute(env.routing).choices[0]?.kind === 'direct') {
      const a = d.addresses()
      if (a instanceof Promise) return settle(d, env, a, true)
    }
  } catch (err) {
    if (!(err instanceof ProxyError)) throw err
  }
  return d
}

/** evaluate(), from the first wait for DNS on. */
async function settle (d: Decision, env: EvaluationEnv, waiting: Promise<readonly string[]>, routed = false): Promise<Decision> {
  try {
    await waiting
    if (!routed && d.chooseRoute(env.routing).choices[0]?.kind === 'direct') await d.addresses()
  } catch (err) {
    if (!(err instanceof ProxyError)) throw err
  }
  return d
}
