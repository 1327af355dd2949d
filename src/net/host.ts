/**
 * The one host-name normaliser (issue 10): request targets
 * (connect/target.ts) and policy `hosts:` patterns (policy/schema.ts) are
 * normalised here the same way, so a rule and a request can never spell one
 * name two ways.
 *
 * Order matters (issue 12): normalise first (IDNA → punycode, lower case,
 * one trailing dot dropped), then classify. A name that becomes an IP
 * literal after normalisation (`169.254.169.254` followed by U+00AD, which
 * IDNA maps to nothing) is an IP literal for every later check.
 */
import { domainToASCII } from 'node:url'
import { parseWhatwgIPv4 } from './ip.js'

/** RFC 1035 limits on the presentation form. */
const MAX_NAME = 253
const MAX_LABEL = 63
/** LDH plus `_`, which real internal names use (SRV-style, AD). */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/
/** WHATWG "ends in a number": such a host must parse as IPv4 or is invalid. */
const ENDS_IN_NUMBER = /(?:^|\.)(?:\d+|0x[0-9a-f]*)$/
// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\x00-\x7f]/

export type HostResult =
  | { readonly kind: 'name', readonly host: string }
  | { readonly kind: 'ipv4', readonly host: string }
  | { readonly kind: 'invalid', readonly reason: string }

/**
 * Normalise and classify a host that is not a bracketed IPv6 literal.
 * `ipv4` hosts come back as a canonical dotted quad.
 */
export function normaliseHost (raw: string): HostResult {
  let host = NON_ASCII.test(raw) ? domainToASCII(raw) : raw.toLowerCase()
  if (host === '') return { kind: 'invalid', reason: 'host is not a valid name' }
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (host.length === 0 || host.length > MAX_NAME) return { kind: 'invalid', reason: 'host name is empty or longer than 253 characters' }
  if (ENDS_IN_NUMBER.test(host)) {
    const v4 = parseWhatwgIPv4(host)
    return v4 === undefined
      ? { kind: 'invalid', reason: 'host looks numeric but is not a valid IPv4 address' }
      : { kind: 'ipv4', host: v4 }
  }
  for (const label of host.split('.')) {
    if (label.length > MAX_LABEL) return { kind: 'invalid', reason: 'host name label longer than 63 characters' }
    if (!LABEL.test(label)) return { kind: 'invalid', reason: 'host name has an empty label or a character outside a-z 0-9 - _' }
  }
  return { kind: 'name', host }
}
