/**
 * The policy part of a Sluice file (rules and the default action), as a
 * strict zod schema: unknown keys are errors, and every error has a path.
 */
import { z } from 'zod'
import ipaddr from 'ipaddr.js'

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

export function parseCidr (v: string): [ipaddr.IPv4 | ipaddr.IPv6, number] | undefined {
  try {
    if (v.includes('/')) return ipaddr.parseCIDR(v)
    const a = ipaddr.parse(v)
    return [a, a.kind() === 'ipv4' ? 32 : 128]
  } catch {
    return undefined
  }
}

/** `example.com` or `*.example.com`, lower-case ASCII (punycode) without trailing dot. */
export const hostPattern = z.string().refine((v) => /^(\*\.)?[a-z0-9_](?:[a-z0-9_.-]*[a-z0-9_])?$/.test(v) && !v.includes('..'), {
  message: 'expected a lower-case host name or *.suffix (use punycode for IDN, no trailing dot)'
})

export const ruleSchema = z.strictObject({
  name: z.string().min(1).optional(),
  action: z.enum(['allow', 'deny']),
  /** Target host names; `*.example.com` matches sub-domains of example.com. */
  hosts: z.array(hostPattern).min(1).optional(),
  /** Target ports and ranges. */
  ports: z.array(portSpec).min(1).optional(),
  /** Addresses actually dialed; listing a special-purpose range here is how it is unlocked. */
  ips: z.array(cidrSpec).min(1).optional(),
  /** Client source addresses. */
  clients: z.array(cidrSpec).min(1).optional()
})

export const policySchema = {
  default: z.enum(['allow', 'deny']).default('deny'),
  rules: z.array(ruleSchema).default([])
}

export type RuleSpec = z.infer<typeof ruleSchema>
