/**
 * Parse a CONNECT request target. RFC 9110 §9.3.6 requires authority-form
 * (`host:port`); llhttp accepts far more (NODE-NOTES A5: `/foo`, no port,
 * userinfo), so this is the one place that decides what a target is.
 *
 * IP literals are normalised to one canonical spelling here, so no later
 * check can be dodged by writing `127.1`, `0x7f.0.0.1` or `2130706433`
 * (WHATWG URL host parsing, which curl and browsers also follow).
 */
import { isIPv6 } from 'node:net'
import { domainToASCII } from 'node:url'
import ipaddr from 'ipaddr.js'
import { ProxyError } from '../errors.js'
import { classifyAddress } from '../net/address-guard.js'

export type TargetKind = 'name' | 'ipv4' | 'ipv6'

export interface Target {
  /** Lower-case ASCII name (punycode, no trailing dot) or canonical IP literal, no brackets. */
  readonly host: string
  readonly port: number
  readonly kind: TargetKind
  /** Canonical `host:port` / `[v6]:port`, for logs and parent CONNECTs. */
  readonly authority: string
}

/** RFC 1035 limits on the presentation form. */
const MAX_NAME = 253
const MAX_LABEL = 63
/** LDH plus `_`, which real internal names use (SRV-style, AD). */
const LABEL = /^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$/
/** WHATWG "ends in a number": such a host must parse as IPv4 or is invalid. */
const ENDS_IN_NUMBER = /(?:^|\.)(?:\d+|0x[0-9a-f]*)\.?$/

function bad (detail: string): ProxyError {
  return new ProxyError('ERR_BAD_TARGET', { detail })
}

function parsePort (text: string): number {
  if (!/^\d{1,5}$/.test(text)) throw bad(text === '' ? 'port is missing' : 'port must be a number 1-65535')
  const port = Number(text)
  if (port < 1 || port > 65535) throw bad('port must be a number 1-65535')
  return port
}

/** Canonical IPv4 via the WHATWG host parser, or null if it is not one. */
function parseIPv4Like (host: string): string | null {
  try {
    const parsed = new URL(`http://${host}/`).hostname
    return ipaddr.IPv4.isValidFourPartDecimal(parsed) ? parsed : null
  } catch {
    return null
  }
}

function parseName (raw: string): string {
  // eslint-disable-next-line no-control-regex
  let host = /[^\x00-\x7f]/.test(raw) ? domainToASCII(raw) : raw.toLowerCase()
  if (host === '') throw bad('host is not a valid name')
  if (host.endsWith('.')) host = host.slice(0, -1)
  if (host.length === 0 || host.length > MAX_NAME) throw bad('host name is empty or longer than 253 characters')
  for (const label of host.split('.')) {
    if (label.length > MAX_LABEL) throw bad('host name label longer than 63 characters')
    if (!LABEL.test(label)) throw bad('host name has an empty label or a character outside a-z 0-9 - _')
  }
  return host
}

/** Parse `req.url` of a CONNECT; throws ProxyError ERR_BAD_TARGET with a specific detail. */
export function parseTarget (url: string | undefined): Target {
  if (url === undefined || url === '') throw bad('request target is empty')
  if (url.length > MAX_NAME + 8) throw bad('request target is too long')
  if (url.includes('@')) throw bad('userinfo is not allowed in the request target')
  if (/[/?#\\]/.test(url) || url.includes('://')) throw bad('request target must be host:port, without scheme or path')

  if (url.startsWith('[')) {
    const close = url.indexOf(']')
    if (close < 0) throw bad('unterminated IPv6 literal')
    const literal = url.slice(1, close)
    if (url[close + 1] !== ':') throw bad('port is missing')
    const port = parsePort(url.slice(close + 2))
    if (literal.includes('%')) throw bad('IPv6 zone identifiers are not allowed')
    if (!isIPv6(literal)) throw bad('not a valid IPv6 literal')
    // classifyAddress's parser fixes ipaddr.js reading `::a.b.c.d` as IPv4-mapped.
    const host = classifyAddress(literal).address
    return { host, port, kind: 'ipv6', authority: `[${host}]:${port}` }
  }

  const colon = url.lastIndexOf(':')
  if (colon < 0) throw bad('port is missing')
  const rawHost = url.slice(0, colon)
  const port = parsePort(url.slice(colon + 1))
  if (rawHost === '') throw bad('host is empty')
  if (rawHost.includes(':')) throw bad('IPv6 literals must be in brackets')

  if (ENDS_IN_NUMBER.test(rawHost.toLowerCase())) {
    const v4 = parseIPv4Like(rawHost)
    if (v4 === null) throw bad('host looks numeric but is not a valid IPv4 address')
    return { host: v4, port, kind: 'ipv4', authority: `${v4}:${port}` }
  }
  const host = parseName(rawHost)
  return { host, port, kind: 'name', authority: `${host}:${port}` }
}
