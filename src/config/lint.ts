/**
 * `sluice validate`'s warnings: a file can be valid and still not do what
 * its author meant. Pure: the validated file and what load compiled from it
 * in, warnings (a path in the file and a sentence) out; config/load.ts adds
 * the file and line. Every warning is something an operator can act on:
 *
 * - two rules with one name (logs and denials cannot tell them apart);
 * - a rule an earlier rule shadows (config/shadow.ts: it can never match);
 * - `users:` or `limits.max_bytes_per_user` without an `auth` section (no
 *   request has a user);
 * - a listener beyond loopback with no `auth` and a way for any client
 *   through (an open proxy);
 * - `ips:` on a rule whose route starts with a parent (names go to the
 *   parent unresolved, so `ips` only match IP literals there).
 */
import type { CompiledPolicy } from '../policy/compile.js'
import type { Routing } from '../upstream/routing.js'
import type { SluiceFile } from './schema.js'
import { parseCidr } from '../net/ip.js'
import { covers, indexRule, type IndexedRule } from './shadow.js'

export interface LintInput {
  readonly file: SluiceFile
  /** The listeners, in the order of `listen` (config/load.ts). */
  readonly listen: ReadonlyArray<{ readonly host: string, readonly name: string, readonly tls?: { readonly clientCert: 'none' | 'required' | 'optional' } }>
  readonly policy: CompiledPolicy
  readonly routing: Routing
}

export interface LintWarning {
  /** Where in the file, as a schema path: `['rules', 3, 'users']`. */
  readonly path: ReadonlyArray<string | number>
  readonly message: string
}

/** `rule 'https' (rules[2])`, or `rules[2]` when the name is only its position. */
function ruleRef (policy: CompiledPolicy, file: SluiceFile, i: number): string {
  const name = policy.rules[i]?.name ?? `rule-${i + 1}`
  return file.rules[i]?.name === undefined ? `rules[${i}] ('${name}')` : `rule '${name}' (rules[${i}])`
}

function duplicateNames (input: LintInput): LintWarning[] {
  const out: LintWarning[] = []
  const first = new Map<string, number>()
  input.policy.rules.forEach((r, i) => {
    const earlier = first.get(r.name)
    if (earlier === undefined) { first.set(r.name, i); return }
    const explicit = input.file.rules[i]?.name !== undefined
    out.push({
      path: explicit ? ['rules', i, 'name'] : ['rules', i],
      message: `${explicit ? '' : 'its automatic '}name '${r.name}' is also the name of rules[${earlier}]: logs and denials cannot tell them apart`
    })
  })
  return out
}

function shadowed (input: LintInput): LintWarning[] {
  const { file, policy } = input
  const indexed: Array<IndexedRule | undefined> = file.rules.map((spec, i) => indexRule({ spec, viaParent: policy.rules[i]?.viaParent ?? false }))
  const out: LintWarning[] = []
  indexed.forEach((later, j) => {
    if (later === undefined) return
    for (let i = 0; i < j; i++) {
      const earlier = indexed[i]
      // Without auth a users rule matches nothing: it shadows nothing (and is warned about itself).
      if (earlier === undefined || (file.auth === undefined && earlier.users !== undefined)) continue
      if (!covers(earlier, later)) continue
      out.push({
        path: ['rules', j],
        message: `${ruleRef(policy, file, j)} can never match: ${ruleRef(policy, file, i)} comes first and matches every request it could`
      })
      return
    }
  })
  return out
}

function usersWithoutAuth (input: LintInput): LintWarning[] {
  // Users come from Basic auth, or from client certificates on a TLS listener (issue 13).
  if (input.file.auth !== undefined || input.listen.some(l => l.tls?.clientCert !== undefined && l.tls.clientCert !== 'none')) return []
  const out: LintWarning[] = []
  if (input.file.limits.max_bytes_per_user !== undefined) {
    out.push({ path: ['limits', 'max_bytes_per_user'], message: 'there is no auth section, so no request has a user: this limit never applies' })
  }
  input.file.rules.forEach((r, i) => {
    if (r.users !== undefined) {
      out.push({ path: ['rules', i, 'users'], message: `there is no auth section, so no request has a user: ${ruleRef(input.policy, input.file, i)} never matches` })
    }
  })
  return out
}

/** 127.0.0.0/8, ::1 (also IPv4-mapped), and `localhost`. */
function isLoopback (host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true
  const c = parseCidr(host)
  if (c === undefined) return false
  return c.v4 ? c.bytes[0] === 127 : c.bytes.every((b, i) => b === (i === 15 ? 1 : 0))
}

/** `clients:` that admit everyone (`0.0.0.0/0`, `::/0`) restrict nothing. */
function restrictsClients (clients: readonly string[] | undefined): boolean {
  return clients !== undefined && clients.every(c => (parseCidr(c)?.bits ?? 0) > 0)
}

function openProxy (input: LintInput): LintWarning[] {
  const { file, policy } = input
  if (file.auth !== undefined) return []
  const out: LintWarning[] = []
  input.listen.forEach((l, k) => {
    // Loopback, or every client must show a certificate from client_ca_file (issue 13).
    if (isLoopback(l.host) || l.tls?.clientCert === 'required') return
    let reason: string | undefined
    /** What an open listener is open to: anywhere, or the hosts one rule lists. */
    let to = ''
    if (file.default === 'allow') reason = 'default: allow lets through what no rule denies'
    else if (file.mode === 'report') reason = 'mode: report lets every deny through'
    else {
      const i = file.rules.findIndex((r, idx) =>
        (r.action === 'allow' || policy.rules[idx]?.report === true) &&
        r.users === undefined &&
        (r.listeners === undefined || r.listeners.includes(l.name)) &&
        !restrictsClients(r.clients))
      if (i >= 0) {
        reason = `${ruleRef(policy, file, i)} ${file.rules[i]?.action === 'allow' ? 'allows' : 'lets through (report mode)'} any client (it has no clients:)`
        if (file.rules[i]?.hosts !== undefined) to = ' to the hosts that rule lists'
      }
    }
    if (reason === undefined) return
    out.push({
      path: Array.isArray(file.listen) ? ['listen', k] : ['listen'],
      message: `listener '${l.name}' is reachable beyond loopback with no auth section, and ${reason}: anyone who can reach the listener can use the proxy${to} (an open proxy); add an auth section, or clients: to the allowing rules`
    })
  })
  return out
}

function ipsViaParent (input: LintInput): LintWarning[] {
  const { file, policy, routing } = input
  const out: LintWarning[] = []
  file.rules.forEach((r, i) => {
    if (r.ips === undefined || policy.rules[i]?.viaParent !== true) return
    const route = r.via === undefined ? routing.defaultRoute : routing.routes.get(r.via)
    const first = route?.choices[0]
    const parent = first?.kind === 'chain' ? first.hops[0]?.name : undefined
    const name = route?.name ?? r.via ?? ''
    const which = r.via === undefined ? `the default route '${name}'` : `its route '${name}'`
    // A parent is also a route of its own name: "goes to parent 'corp'", not "route 'corp' starts with parent 'corp'".
    const goes = name === parent ? `${r.via === undefined ? 'the default route' : 'its route'} is parent '${name}'` : `${which} starts with parent '${parent ?? '?'}'`
    out.push({
      path: ['rules', i, 'ips'],
      message: `${goes}, which is sent names unresolved: these ips can only match targets given as IP addresses`
    })
  })
  return out
}

/**
 * Every warning for a valid file; none means nothing suspicious was found.
 * `shadowing: false` leaves out the one check that compares every pair of
 * rules (quadratic): `serve` runs the rest at start-up.
 */
export function lintConfig (input: LintInput, { shadowing = true }: { shadowing?: boolean } = {}): LintWarning[] {
  return [
    ...openProxy(input),
    ...duplicateNames(input),
    ...usersWithoutAuth(input),
    ...ipsViaParent(input),
    ...(shadowing ? shadowed(input) : [])
  ]
}
