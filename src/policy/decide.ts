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
import { toIpKey, type IpKey } from '../net/ip.js'
import { allRules } from './rule-index.js'
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
  /**
   * The listener's own route (a `tcp` listener's `via`, issue 13): it
   * replaces the deciding rule's `via` and the default route.
   */
  readonly via?: string
  /** With `via`: does that route start with a parent (a name is then the parent's to resolve)? */
  readonly viaParent?: boolean
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
  /**
   * TunnelCheck bits (policy/compile.ts) for the tunnel an allowing verdict
   * opens: the rule's, or the file's for the default; compiled at load.
   */
  readonly checks?: number
}

/** Which matcher of a rule did not match: how `sluice check` explains a skipped rule. */
export type Miss = 'ports' | 'clients' | 'hosts' | 'listeners' | 'users' | 'ips' | 'ips-via-parent'

/** A rule passed over, and the first matcher that did not match. */
export interface Skip {
  readonly rule: string
  readonly miss: Miss
  /** The rule's `via`, for 'ips-via-parent'. */
  readonly via?: string | undefined
}

/** The first matcher of `r` that the request fails, or undefined when all match. */
function mismatch (r: CompiledRule, f: RequestFacts, client: IpKey | undefined, ignoreUsers = false): Miss | undefined {
  if (r.ports !== undefined && !r.ports.match(f.port)) return 'ports'
  if (r.clients !== undefined && (client === undefined || !r.clients.match(client))) return 'clients'
  if (r.hosts !== undefined && !(f.isName && r.hosts.match(f.host))) return 'hosts'
  if (r.listeners !== undefined && (f.listener === undefined || !r.listeners.has(f.listener))) return 'listeners'
  if (!ignoreUsers && r.users !== undefined && r.groups !== undefined && !matchesPrincipal(r.users, r.groups, f)) return 'users'
  return undefined
}

function matchesPrincipal (users: ReadonlySet<string>, groups: ReadonlySet<string>, f: RequestFacts): boolean {
  if (f.user === undefined) return false
  if (users.has(f.user)) return true
  if (f.groups !== undefined) for (const g of f.groups) if (groups.has(g)) return true
  return false
}

/** The client address, parsed once per decision when a rule looks at it. */
function clientKey (p: CompiledPolicy, f: RequestFacts): IpKey | undefined {
  return p.usesClients ? toIpKey(f.client) : undefined
}

function ruleVerdict (r: CompiledRule, stage: Stage): Verdict {
  if (r.allow) return { allow: true, rule: r.name, stage, reason: 'allowed by rule', checks: r.checks, ...(r.via === undefined ? {} : { via: r.via }) }
  if (r.report) return { allow: true, wouldDeny: true, rule: r.name, stage, reason: 'denied by rule (report mode: not enforced)', checks: r.checks }
  return { allow: false, rule: r.name, stage, reason: 'denied by rule' }
}

function defaultVerdict (p: CompiledPolicy, stage: Stage): Verdict {
  if (p.defaultAllow) return { allow: true, rule: 'default', stage, reason: 'allowed by default action', checks: p.checks }
  if (p.report) return { allow: true, wouldDeny: true, rule: 'default', stage, reason: 'no rule allows this target (report mode: not enforced)', checks: p.checks }
  return { allow: false, rule: 'default', stage, reason: 'no rule allows this target' }
}

function challengeVerdict (rule: string, stage: Stage): Verdict {
  return { allow: false, challenge: true, rule, stage, reason: 'credentials required' }
}

/** Would `r` match if the anonymous request had the right user? */
function wantsUser (r: CompiledRule, f: RequestFacts, client: IpKey | undefined): boolean {
  return f.challenge !== undefined && f.user === undefined && r.users !== undefined && mismatch(r, f, client, true) === undefined
}

/**
 * Stage 1. `undefined` means the answer depends on the resolved address.
 * `skipped`, when given, collects the rules passed over and why.
 */
/** Is a name the parent's to resolve? The listener's own route decides when it has one (a tcp listener's via, issue 13), else the rule's. */
function parentFirst (r: CompiledRule, f: RequestFacts): boolean {
  return f.via === undefined ? r.viaParent : f.viaParent === true
}

export function decideRequest (p: CompiledPolicy, f: RequestFacts, skipped?: Skip[]): Verdict | undefined {
  const client = clientKey(p, f)
  const walk = skipped === undefined && p.index !== undefined ? p.index.forRequest(f.host, f.isName, f) : allRules(p.all)
  for (let i = walk.next(); i >= 0; i = walk.next()) {
    const r = p.rule(i)
    // A users rule whose ips are still unknown is judged with the address.
    if (wantsUser(r, f, client)) return r.ips !== undefined && !(f.isName && parentFirst(r, f)) ? undefined : challengeVerdict(r.name, 'request')
    const miss = mismatch(r, f, client)
    if (miss !== undefined) { skipped?.push({ rule: r.name, miss }); continue }
    if (r.ips !== undefined) {
      // A name sent to a parent is never resolved here: such a rule cannot match it.
      if (f.isName && parentFirst(r, f)) { skipped?.push({ rule: r.name, miss: 'ips-via-parent', via: f.via ?? r.via }); continue }
      return undefined
    }
    // An allow here is provisional: the address guard still runs in stage 2.
    return ruleVerdict(r, 'request')
  }
  if (f.challenge === 'always' && f.user === undefined) return challengeVerdict('default', 'request')
  return defaultVerdict(p, 'request')
}

/**
 * Stage 2, for one candidate address that would be dialed. The address is
 * parsed once, by net/ip.ts, for every rule and the guard.
 */
export function decideAddress (p: CompiledPolicy, f: RequestFacts, address: string, skipped?: Skip[]): Verdict {
  const key = toIpKey(address)
  if (key === undefined) throw new TypeError(`not an IP address: ${JSON.stringify(address)}`)
  const client = clientKey(p, f)
  let decided: Verdict | undefined
  let unlocked = false
  // The index skips only rules that cannot match; explaining walks them all.
  const walk = skipped === undefined && p.index !== undefined ? p.index.forAddress(f.host, f.isName, key) : allRules(p.all)
  for (let i = walk.next(); i >= 0; i = walk.next()) {
    const r = p.rule(i)
    const viaParent = r.ips !== undefined && f.isName && parentFirst(r, f)
    const ipsMatch = r.ips === undefined || (!viaParent && r.ips.match(key))
    if (wantsUser(r, f, client) && ipsMatch) return challengeVerdict(r.name, 'address')
    const miss = mismatch(r, f, client) ?? (ipsMatch ? undefined : viaParent ? 'ips-via-parent' : 'ips')
    if (miss !== undefined) { skipped?.push({ rule: r.name, miss, via: f.via ?? r.via }); continue }
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
