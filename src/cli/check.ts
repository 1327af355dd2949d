/**
 * `sluice check HOST:PORT`: what would the policy do, and why. Runs the same
 * parse → decide → resolve → decide path as a real CONNECT, minus the dial.
 * Exit 0 allowed, 1 denied (or the name does not resolve), 2 bad input.
 */
import { parseTarget } from '../connect/target.js'
import { isProxyError } from '../errors.js'
import type { Config } from '../config/load.js'
import { createResolver } from '../net/resolver.js'
import { decideRequest, judgeAddresses, type RequestFacts, type Verdict } from '../policy/decide.js'
import { DIRECT } from '../upstream/route.js'

export interface CheckInput {
  readonly target: string
  readonly client: string
  readonly user?: string
  readonly listener?: string
}

export interface CheckResult {
  readonly target: string
  readonly allowed: boolean
  readonly rule: string
  readonly stage: string
  readonly reason: string
  readonly wouldDeny: boolean
  /** The route an allowed CONNECT would take, and its choices. */
  readonly route?: string
  readonly choices?: readonly string[]
  readonly error?: string
  readonly addresses: ReadonlyArray<{ address: string, allowed: boolean, rule: string, reason: string }>
}

function summary (target: string, v: Verdict, addresses: CheckResult['addresses']): CheckResult {
  return { target, allowed: v.allow, rule: v.rule, stage: v.stage, reason: v.reason, wouldDeny: v.wouldDeny === true, addresses }
}

/** Throws a ProxyError (ERR_BAD_TARGET) for a malformed target. */
export async function check (config: Config, input: CheckInput): Promise<CheckResult> {
  const target = parseTarget(input.target)
  const facts: RequestFacts = {
    host: target.host,
    port: target.port,
    isName: target.kind === 'name',
    client: input.client,
    ...(input.user === undefined ? {} : { user: input.user, groups: config.auth?.groups.get(input.user) ?? new Set<string>() }),
    ...(input.listener === undefined ? {} : { listener: input.listener })
  }
  const early = decideRequest(config.policy, facts)
  if (early !== undefined && !early.allow) return summary(target.authority, early, [])
  const routeOf = (via: string | undefined): Pick<CheckResult, 'route' | 'choices'> => {
    const r = via !== undefined
      ? (config.routing.routes.get(via) ?? config.routing.defaultRoute)
      : config.routing.noProxy?.(target.host, target.port) === true ? DIRECT : config.routing.defaultRoute
    return { route: r.name, choices: r.choices.map(c => c.kind === 'direct' ? 'direct' : c.hops.map(h => `${h.name} (${h.authority})`).join(' > ')) }
  }
  if (early !== undefined && target.kind === 'name') {
    const r = routeOf(early.via)
    // A name sent to a parent first is resolved by it, not by Sluice.
    if (r.choices?.[0] !== 'direct') return { ...summary(target.authority, early, []), ...r }
  }
  let candidates: readonly string[]
  try {
    const resolver = createResolver({ servers: config.dns.servers, timeoutMs: config.timeouts.dns, maxTtlMs: 0, negativeTtlMs: 0 })
    candidates = await resolver.resolve(target.host)
  } catch (err) {
    if (!isProxyError(err)) throw err
    return {
      target: target.authority,
      allowed: false,
      rule: early?.rule ?? '-',
      stage: 'address',
      wouldDeny: false,
      reason: `the proxy would answer ${err.status}`,
      error: `${err.code}: ${err.message}`,
      addresses: []
    }
  }
  const { allowed, judgements } = judgeAddresses(config.policy, facts, candidates)
  const addresses = judgements.map(j => ({ address: j.address, allowed: j.verdict.allow, rule: j.verdict.rule, reason: j.verdict.reason }))
  const decisive = judgements.find(j => j.verdict.allow) ?? judgements[0]
  if (decisive === undefined) throw new Error('resolver returned no addresses')
  const result = { ...summary(target.authority, decisive.verdict, addresses), ...routeOf(decisive.verdict.via ?? early?.via) }
  return allowed.length > 0 ? result : { ...result, allowed: false }
}

/** Human-readable report, one fact per line. */
export function formatCheck (r: CheckResult): string {
  const lines = [
    `target:   ${r.target}`,
    `verdict:  ${r.allowed ? (r.wouldDeny ? 'allow (report mode: enforce would deny)' : 'allow') : 'deny'}`,
    `rule:     ${r.rule} (stage: ${r.stage === 'request' ? 'request, before DNS' : 'address, after DNS'})`,
    `reason:   ${r.reason}`
  ]
  if (r.allowed && r.route !== undefined) lines.push(`route:    ${r.route}: ${(r.choices ?? []).join(', then ')}`)
  if (r.error !== undefined) lines.push(`error:    ${r.error}`)
  if (r.addresses.length > 0) {
    lines.push('addresses:')
    const width = Math.max(...r.addresses.map(a => a.address.length))
    for (const a of r.addresses) {
      lines.push(`  ${a.address.padEnd(width)}  ${a.allowed ? 'allow' : 'deny '}  ${a.rule}: ${a.reason}`)
    }
  } else if (r.stage === 'request' && !r.allowed) {
    lines.push('addresses: not resolved (denied before DNS)')
  } else if (r.allowed) {
    lines.push('addresses: not resolved here (the parent proxy resolves the name)')
  }
  return lines.join('\n') + '\n'
}
