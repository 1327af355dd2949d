/**
 * `sluice check HOST:PORT`: what would the policy do, and why. Runs the
 * proxy's own evaluation (policy/evaluate.ts) with the proxy's facts, minus
 * the dial, and names every rule it passed over. Exit 0 allowed, 1 refused
 * (or the name does not resolve), 2 bad input.
 */
import type { AddressInfo } from 'node:net'
import { parseTarget, type Target } from '../connect/target.js'
import type { Config, ListenAddress } from '../config/load.js'
import { mapped } from '../config/listeners.js'
import { servedFor } from '../server/tls-identity.js'
import { formatHostPort } from '../net/ip.js'
import { ProxyError } from '../errors.js'
import { createResolver } from '../net/resolver.js'
import { selfMatcher } from '../net/self.js'
import type { Miss, RequestFacts, Skip } from '../policy/decide.js'
import { evaluate, routeFor } from '../policy/evaluate.js'
import type { Choice, Route } from '../upstream/route.js'
import { startsWithParent } from '../upstream/routing.js'

export interface CheckInput {
  readonly target: string
  readonly client: string
  readonly user?: string
  readonly listener?: string
}

export interface CheckResult {
  readonly target: string
  /** The listener the request is judged as arriving on. */
  readonly listener?: string
  readonly allowed: boolean
  /** What the proxy would answer: 200, or the refusal's status and code. */
  readonly status: number
  readonly code?: string
  readonly rule: string
  readonly stage: string
  readonly reason: string
  readonly wouldDeny: boolean
  /** The route an allowed CONNECT would take, and its choices. */
  readonly route?: string
  readonly choices?: readonly string[]
  readonly error?: string
  readonly addresses: ReadonlyArray<{ address: string, allowed: boolean, rule: string, reason: string }>
  /** Rules passed over before the one that decided, and why. */
  readonly skipped: ReadonlyArray<{ rule: string, why: string }>
  /** A terminate listener (issue 14): the certificate the client would be shown, and the upstream TLS. */
  readonly certificate?: string
  readonly upstreamTls?: string
}

/** Codes whose reason is the policy's own; any other refusal (DNS, loop) is shown as an error. */
const POLICY_CODES = new Set(['ERR_POLICY_DENIED', 'ERR_DESTINATION_PROHIBITED', 'ERR_AUTH_REQUIRED'])

function choiceText (c: Choice): string {
  return c.kind === 'direct' ? 'direct to the target' : c.hops.map(h => `parent ${h.name} (${h.authority})`).join(' > ')
}

function firstParent (route: Route): string | undefined {
  const c = route.choices[0]
  return c?.kind === 'chain' ? c.hops[0]?.name : undefined
}

function why (config: Config, facts: RequestFacts, s: Skip, address: string | undefined): string {
  const m: Record<Miss, () => string> = {
    ports: () => `port ${facts.port} is not in its ports`,
    clients: () => `client ${facts.client} is not in its clients`,
    hosts: () => facts.isName ? `${facts.host} is not in its hosts` : `its hosts cannot match the IP literal ${facts.host}`,
    listeners: () => facts.listener === undefined ? 'it names listeners and no --listener was given' : `listener ${facts.listener} is not in its listeners`,
    users: () => facts.user === undefined ? 'it names users and the request has none' : `user ${facts.user} is not in its users`,
    ips: () => `${address ?? 'the address'} is not in its ips`,
    'ips-via-parent': () => `its ips cannot match a name sent to parent ${firstParent(routeFor(config.routing, s.via, facts)) ?? '?'}`
  }
  return m[s.miss]()
}

/** The facts a real CONNECT (or tcp forward) with these inputs would carry (connect/handle.ts requestFacts). */
function facts (config: Config, input: CheckInput, l: ListenAddress | undefined, host: string, port: number, isName: boolean): RequestFacts {
  const auth = config.auth
  // Only a connect listener has a channel for credentials: nobody is challenged on the others.
  const credentials = l === undefined || l.kind === 'connect'
  return {
    host,
    port,
    isName,
    client: input.client,
    ...(input.user === undefined ? {} : { user: input.user, groups: auth?.groups.get(input.user) ?? new Set<string>() }),
    ...(l === undefined ? {} : { listener: l.name }),
    ...(l?.via === undefined ? {} : { via: l.via, viaParent: startsWithParent(config.routing, l.via) }),
    // An anonymous request to a proxy with auth is challenged as the proxy would.
    ...(auth === undefined || input.user !== undefined || !credentials ? {} : { challenge: auth.required ? 'always' : 'rules' })
  }
}

/** The listener a check is for, and its target: a tcp listener's own when none is given. */
function listenerAndTarget (config: Config, input: CheckInput): { l: ListenAddress | undefined, target: Target } {
  // Every real request arrives on some listener: without --listener, the first one.
  const l = input.listener === undefined ? config.listen[0] : config.listen.find(x => x.name === input.listener)
  if (l === undefined && input.listener !== undefined) {
    throw new ProxyError('ERR_BAD_TARGET', { detail: `no listener is named '${input.listener}' (listeners: ${config.listen.map(x => x.name).join(', ')})` })
  }
  if (l?.kind === 'sni' || l?.kind === 'terminate') {
    // What a ClientHello naming this host would do (issue 14): the map's target, else host:target_port.
    const host = input.target.replace(/:\d+$/, '').toLowerCase()
    return { l, target: mapped(l.map, host)?.target ?? parseTarget(formatHostPort(host, l.targetPort ?? 443)) }
  }
  if (l?.kind === 'tcp' && l.target !== undefined) {
    if (input.target !== '' && parseTarget(input.target).authority !== l.target.authority) {
      throw new ProxyError('ERR_BAD_TARGET', { detail: `listener ${l.name} is a tcp forward to ${l.target.authority}: its connections go nowhere else` })
    }
    return { l, target: l.target }
  }
  return { l, target: parseTarget(input.target) }
}

/** Throws a ProxyError (ERR_BAD_TARGET) for a malformed target or an unknown listener. */
export async function check (config: Config, input: CheckInput): Promise<CheckResult> {
  const { l, target } = listenerAndTarget(config, input)
  const listener = l?.name
  const terminated = l?.kind === 'terminate' ? terminateFacts(l, input.target.replace(/:\d+$/, '').toLowerCase()) : undefined
  if (terminated?.refusal !== undefined) {
    const e = terminated.refusal
    return { target: target.authority, ...(listener === undefined ? {} : { listener }), allowed: false, status: e.status, code: e.code, rule: '-', stage: 'request', reason: `the proxy would answer ${e.status}`, wouldDeny: false, error: `${e.code}: ${e.message}`, addresses: [], skipped: [] }
  }
  const f = facts(config, input, l, target.host, target.port, target.kind === 'name')
  const resolver = createResolver({ servers: config.dns.servers, timeoutMs: config.timeouts.dns, maxTtlMs: 0, negativeTtlMs: 0 })
  const listening = config.listen.map((l): AddressInfo => ({ address: l.host, port: l.port, family: l.host.includes(':') ? 'IPv6' : 'IPv4' }))
  const d = await evaluate({
    policy: config.policy,
    routing: config.routing,
    resolve: async (host) => await resolver.resolve(host),
    isSelf: selfMatcher(listening),
    explain: true
  }, f)
  const refusal = d.refusal
  const v = d.verdict
  const decisive = d.judgements?.find(j => j.verdict === v) ?? d.judgements?.[0]
  const skips = decisive?.skipped ?? d.skipped ?? []
  const policyRefusal = refusal === undefined || POLICY_CODES.has(refusal.code)
  return {
    target: target.authority,
    ...(listener === undefined ? {} : { listener }),
    allowed: refusal === undefined,
    status: refusal?.status ?? 200,
    ...(refusal === undefined ? {} : { code: refusal.code }),
    rule: d.rule ?? '-',
    stage: d.stage ?? 'address',
    reason: policyRefusal ? (v?.reason ?? '') : `the proxy would answer ${refusal.status}`,
    wouldDeny: refusal === undefined && (v?.wouldDeny === true || d.judgements?.some(j => j.verdict.allow && j.verdict.wouldDeny === true) === true),
    ...(refusal === undefined ? { route: d.route.name, choices: d.route.choices.map(choiceText) } : {}),
    ...(policyRefusal ? {} : { error: `${refusal.code}: ${refusal.message}` }),
    addresses: (d.judgements ?? []).map(j => ({ address: j.address, allowed: j.verdict.allow, rule: j.verdict.rule, reason: j.verdict.reason })),
    skipped: skips.map(s => ({ rule: s.rule, why: why(config, f, s, decisive?.address) })),
    ...(terminated?.certificate === undefined ? {} : { certificate: terminated.certificate, upstreamTls: terminated.upstreamTls })
  }
}

/** What a terminate listener adds: the certificate it would show for `name` (none: the refusal), and how it verifies the upstream. */
function terminateFacts (l: ListenAddress, name: string): { refusal?: ProxyError, certificate?: string, upstreamTls?: string } {
  const c = l.tls === undefined ? undefined : servedFor(l.tls, name)
  if (c === undefined) return { refusal: new ProxyError('ERR_SNI_NO_CERTIFICATE', { detail: `listener ${l.name} has no certificate for ${name}` }) }
  const up = mapped(l.map, name)?.tls ?? l.upstreamTls
  return {
    certificate: `${c.subject} (${c.names.join(', ')}; expires ${c.validTo})`,
    upstreamTls: up === undefined ? '' : `verified against ${up.trust} as ${up.servername ?? name}, ${up.minVersion} or later`
  }
}

/** Human-readable report, one fact per line. */
export function formatCheck (r: CheckResult): string {
  const lines = [
    `target:   ${r.target}`,
    `verdict:  ${r.allowed ? (r.wouldDeny ? 'allow (report mode: enforce would deny)' : 'allow') : 'deny'}`,
    `rule:     ${r.rule} (stage: ${r.stage === 'request' ? 'request, before DNS' : 'address, after DNS'})`,
    `reason:   ${r.reason}`
  ]
  if (!r.allowed) lines.push(`answer:   ${r.status} ${r.code ?? ''}`)
  if (r.allowed && r.route !== undefined) {
    const choices = (r.choices ?? []).join(', then ')
    // `direct` and a parent used as its own route need no route name in front.
    const named = r.route !== 'direct' && !(r.choices?.length === 1 && r.choices[0]?.startsWith(`parent ${r.route} (`) === true)
    lines.push(`route:    ${named ? `${r.route}: ${choices}` : choices}`)
  }
  if (r.error !== undefined) lines.push(`error:    ${r.error}`)
  if (r.certificate !== undefined) lines.push(`shows:    ${r.certificate}`)
  if (r.upstreamTls !== undefined) lines.push(`upstream: TLS ${r.upstreamTls}`)
  if (r.skipped.length > 0) {
    lines.push('skipped:')
    for (const s of r.skipped) lines.push(`  rule ${s.rule}: ${s.why}`)
  }
  if (r.addresses.length > 0) {
    lines.push('addresses:')
    const width = Math.max(...r.addresses.map(a => a.address.length))
    for (const a of r.addresses) {
      lines.push(`  ${a.address.padEnd(width)}  ${a.allowed ? 'allow' : 'deny '}  ${a.rule}: ${a.reason}`)
    }
  } else if (r.stage === 'request' && !r.allowed) {
    lines.push(r.status === 407 ? 'addresses: not resolved (credentials are needed first)' : 'addresses: not resolved (denied before DNS)')
  } else if (r.allowed) {
    lines.push('addresses: not resolved here (the parent proxy resolves the name)')
  }
  return lines.join('\n') + '\n'
}
