/**
 * The policy part of a Sluice file (rules and the default action), as a
 * strict zod schema: unknown keys are errors, and every error has a path.
 */
import { z } from 'zod'
import { parseCidr } from '../net/ip.js'
import { normaliseHost } from '../net/host.js'

const PORT_HINT = 'expected a port 1-65535 or a range like 8000-8080'

export const portSpec = z.union([z.number(), z.string()]).refine((v) => parsePortSpec(v) !== undefined, { message: PORT_HINT })

/** `443`, `'443'` or `'8000-8080'` → [lo, hi]. */
export function parsePortSpec (v: number | string): readonly [number, number] | undefined {
  const m = typeof v === 'number' ? [String(v), String(v), undefined] : /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(v)
  if (m === null) return undefined
  const lo = Number(m[1])
  const hi = m[2] === undefined ? lo : Number(m[2])
  if (!Number.isInteger(lo) || lo < 1 || hi > 65535 || hi < lo) return undefined
  return [lo, hi]
}

export const cidrSpec = z.string().refine((v) => parseCidr(v) !== undefined, {
  message: 'expected an IP address or CIDR like 10.0.0.0/8 or 2001:db8::/32'
})

/**
 * Host patterns are normalised by the code that normalises targets
 * (net/host.ts): lower case, no trailing dot, IDN → punycode; then `name`
 * or `*.suffix`. A pattern that normalises to an IP address is refused:
 * addresses go under `ips`.
 */
export function normaliseHostPattern (v: string): string | undefined {
  const wild = v.startsWith('*.')
  const h = normaliseHost(wild ? v.slice(2) : v)
  if (h.kind !== 'name') return undefined
  return wild ? `*.${h.host}` : h.host
}

export const hostPattern = z.string().transform((v, ctx) => {
  const n = normaliseHostPattern(v)
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected a host name or *.suffix, got '${v}' (wildcards only as a leading '*.'; IP addresses go under ips)` })
    return z.NEVER
  }
  return n
})

/** `alice` or `@group` (groups come from the auth section). */
const principal = z.string().regex(/^@?[^\s@:][^\s:]*$/, { message: 'expected a user name or @group' })

export const modeSchema = z.enum(['enforce', 'report'])

export const ruleSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'expected a name of letters, digits, _ . - (at most 64)' }).optional(),
  action: z.enum(['allow', 'deny']),
  /** Target host names; `*.example.com` matches sub-domains of example.com. */
  hosts: z.array(hostPattern).min(1).optional(),
  /** Target ports and ranges. */
  ports: z.array(portSpec).min(1).optional(),
  /** Addresses actually dialed; listing a special-purpose range here is how it is unlocked. */
  ips: z.array(cidrSpec).min(1).optional(),
  /** Client source addresses. */
  clients: z.array(cidrSpec).min(1).optional(),
  /** Authenticated users and `@groups`. */
  users: z.array(principal).min(1).optional(),
  /** Names of the listeners this rule applies to. */
  listeners: z.array(z.string().min(1)).min(1).optional(),
  /** `report`: a deny by this rule is logged as "would deny" and the tunnel allowed. */
  mode: modeSchema.optional(),
  /** How to reach what this rule allows: a route name, a parent name, or `direct`. */
  via: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'expected a route name, a parent name or direct' }).optional(),
  /** Overrides `tunnel_checks.sni_match` for the CONNECT tunnels this rule allows. */
  sni_match: z.boolean().optional(),
  /** Overrides `tunnel_checks.tls_only` for the CONNECT tunnels this rule allows (e.g. false for `ports: [22]`). */
  tls_only: z.boolean().optional()
}).superRefine((r, ctx) => {
  // A deny rule opens no tunnel (in report mode its tunnels get the file's tunnel_checks).
  for (const key of ['sni_match', 'tls_only'] as const) {
    if (r[key] !== undefined && r.action !== 'allow') ctx.addIssue({ code: 'custom', path: [key], message: `only an allow rule has ${key}: it applies to the tunnels the rule allows` })
  }
})

/**
 * Checks on the first bytes a CONNECT tunnel's client sends (issue 14, the
 * domain-fronting guard; tunnel/first-bytes-check.ts), for every tunnel a
 * rule allows unless the rule says otherwise.
 */
export const tunnelChecksSchema = z.strictObject({
  /** The ClientHello's SNI must name the CONNECT target's host. */
  sni_match: z.boolean().default(false),
  /** The first bytes must be a TLS ClientHello. */
  tls_only: z.boolean().default(false)
})

export const policySchema = {
  /** `report`: every deny by a rule or the default is logged, not enforced. */
  mode: modeSchema.default('enforce'),
  default: z.enum(['allow', 'deny']).default('deny'),
  rules: z.array(ruleSchema).default([]),
  /** On reload, close open tunnels that the new policy would deny. */
  revoke_on_reload: z.boolean().default(false),
  tunnel_checks: tunnelChecksSchema.default({ sni_match: false, tls_only: false })
}

export type RuleSpec = z.output<typeof ruleSchema>
export type TunnelChecksSpec = z.output<typeof tunnelChecksSchema>
