/**
 * The pure decision. Rules are ordered; the first rule whose every matcher
 * matches decides; otherwise the default action does.
 *
 * Two stages, because names are not what gets dialed (Smokescreen's README:
 * "the ACL is only applied to hostnames as they appear in the request"):
 * 1. decideRequest: before DNS, on the request as written. A rule with an
 *    `ips` matcher cannot be judged yet; if one could still match, the
 *    answer is "undecided" and the target is resolved.
 * 2. decideAddress: for each resolved address, the same walk with the
 *    address known, then the special-purpose guard: a loopback, private,
 *    link-local… address is allowed only by a rule whose `ips` lists it.
 *
 * Report mode turns a rule's (or the default's) deny into an allow marked
 * `wouldDeny`. The special-purpose guard is not a rule and is always enforced.
 */
import { classifyAddress } from '../net/address-guard.js'
import type { CompiledPolicy, CompiledRule } from './compile.js'

export interface RequestFacts {
  /** Normalised host name or canonical IP literal. */
  readonly host: string
  readonly port: number
  readonly isName: boolean
  /** Client source address. */
  readonly client: string
  /** Authenticated user and their groups, when there is one. */
  readonly user?: string
  readonly groups?: ReadonlySet<string>
  /** Name of the listener the request came in on. */
  readonly listener?: string
  /**
   * Set when authentication is configured and the request carried no
   * credentials: `rules` → a rule naming users answers with a challenge
   * (407); `always` → the default action does too (auth.required).
   */
  readonly challenge?: 'rules' | 'always'
}

export type Stage = 'request' | 'address'

export interface Verdict {
  readonly allow: boolean
  /** Rule name, or `default`, or `special-purpose-guard`. */
  readonly rule: string
  readonly reason: string
  readonly stage: Stage
  /** True when the address guard (not a rule) refused. */
  readonly prohibitedAddress?: boolean
  /** Allowed only because the deny is in report mode: log it as "would deny". */
  readonly wouldDeny?: boolean
  /** Denied for want of credentials: answer 407, not 403. */
  readonly challenge?: boolean
  /** The allowing rule's `via`: how to reach the target. */
  readonly via?: string
}

function matchesRequest (r: CompiledRule, f: RequestFacts, ignoreUsers = false): boolean {
  if (r.ports !== undefined && !r.ports.match(f.port)) return false
  if (r.clients !== undefined && !r.clients.match(f.client)) return false
  if (r.hosts !== undefined && !(f.isName && r.hosts.match(f.host))) return false
  if (r.listeners !== undefined && (f.listener === undefined || !r.listeners.has(f.listener))) return false
  if (!ignoreUsers && r.users !== undefined && r.groups !== undefined && !matchesPrincipal(r.users, r.groups, f)) return false
  return true
}

function matchesPrincipal (users: ReadonlySet<string>, groups: ReadonlySet<string>, f: RequestFacts): boolean {
  if (f.user === undefined) return false
  if (users.has(f.user)) return true
  if (f.groups !== undefined) for (const g of f.groups) if (groups.has(g)) return true
  return false
}

function ruleVerdict (r: CompiledRule, stage: Stage): Verdict {
  if (r.allow) return { allow: true, rule: r.name, stage, reason: 'allowed by rule', ...(r.via === undefined ? {} : { via: r.via }) }
  if (r.report) return { allow: true, wouldDeny: true, rule: r.name, stage, reason: 'denied by rule (report mode: not enforced)' }
  return { allow: false, rule: r.name, stage, reason: 'denied by rule' }
}

function defaultVerdict (p: CompiledPolicy, stage: Stage): Verdict {
  if (p.defaultAllow) return { allow: true, rule: 'default', stage, reason: 'allowed by default action' }
  if (p.report) return { allow: true, wouldDeny: true, rule: 'default', stage, reason: 'no rule allows this target (report mode: not enforced)' }
  return { allow: false, rule: 'default', stage, reason: 'no rule allows this target' }
}

function challengeVerdict (rule: string, stage: Stage): Verdict {
  return { allow: false, challenge: true, rule, stage, reason: 'credentials required' }
}

/** Would `r` match if the anonymous request had the right user? */
function wantsUser (r: CompiledRule, f: RequestFacts): boolean {
  return f.challenge !== undefined && f.user === undefined && r.users !== undefined && matchesRequest(r, f, true)
}

/** Stage 1. `undefined` means the answer depends on the resolved address. */
export function decideRequest (p: CompiledPolicy, f: RequestFacts): Verdict | undefined {
  for (const r of p.rules) {
    // A users rule whose ips are still unknown is judged with the address.
    if (wantsUser(r, f)) return r.ips !== undefined && !(f.isName && r.viaParent) ? undefined : challengeVerdict(r.name, 'request')
    if (!matchesRequest(r, f)) continue
    if (r.ips !== undefined) {
      // A name sent to a parent is never resolved here: such a rule cannot match it.
      if (f.isName && r.viaParent) continue
      return undefined
    }
    // An allow here is provisional: the address guard still runs in stage 2.
    return ruleVerdict(r, 'request')
  }
  if (f.challenge === 'always' && f.user === undefined) return challengeVerdict('default', 'request')
  return defaultVerdict(p, 'request')
}

/** Stage 2, for one candidate address that would be dialed. */
export function decideAddress (p: CompiledPolicy, f: RequestFacts, address: string): Verdict {
  let decided: Verdict | undefined
  let unlocked = false
  for (const r of p.rules) {
    const ipsMatch = r.ips === undefined || (!(f.isName && r.viaParent) && r.ips.match(address))
    if (wantsUser(r, f) && ipsMatch) return challengeVerdict(r.name, 'address')
    if (!ipsMatch || !matchesRequest(r, f)) continue
    decided = ruleVerdict(r, 'address')
    unlocked = r.ips !== undefined && r.allow
    break
  }
  if (decided === undefined && f.challenge === 'always' && f.user === undefined) return challengeVerdict('default', 'address')
  decided ??= defaultVerdict(p, 'address')
  if (!decided.allow || unlocked) return decided
  const cls = classifyAddress(address)
  if (!cls.special) return decided
  const what = cls.embeddedIPv4 === undefined ? cls.label : `${cls.label} via embedded ${cls.embeddedIPv4}`
  return {
    allow: false,
    rule: 'special-purpose-guard',
    stage: 'address',
    prohibitedAddress: true,
    reason: `${address} is special-purpose (${what}${cls.range === undefined ? '' : ' ' + cls.range}); allow it with a rule listing it under ips`
  }
}

export interface AddressJudgement {
  readonly address: string
  readonly verdict: Verdict
}

/** Stage 2 over every candidate: which addresses may be dialed, and why each other one may not. */
export function judgeAddresses (p: CompiledPolicy, f: RequestFacts, addresses: readonly string[]): {
  readonly allowed: readonly string[]
  readonly judgements: readonly AddressJudgement[]
} {
  const allowed: string[] = []
  const judgements: AddressJudgement[] = []
  for (const address of addresses) {
    const verdict = decideAddress(p, f, address)
    if (verdict.allow) allowed.push(address)
    judgements.push({ address, verdict })
  }
  return { allowed, judgements }
}
