/**
 * Parse a CONNECT request target. RFC 9110 §9.3.6 requires authority-form
 * (`host:port`); the head parser (connect/head-parser.ts) only checks the
 * target's characters (docs/node-internals.md A5: `/foo`, no port and
 * userinfo pass it), so this is the one place that decides what a target is.
 *
 * IP literals are normalised to one canonical spelling here (net/ip.ts), so
 * no later check can be dodged by writing `127.1`, `0x7f.0.0.1` or
 * `2130706433` (WHATWG URL host parsing, which curl and browsers also
 * follow); names are normalised by net/host.ts, the same code that
 * normalises policy `hosts:`.
 */
import { isIPv6 } from 'node:net'
import { ProxyError } from '../errors.js'
import { normaliseHost } from '../net/host.js'
import { canonicalIp, formatHostPort } from '../net/ip.js'

export type TargetKind = 'name' | 'ipv4' | 'ipv6'

export interface Target {
  /** Lower-case ASCII name (punycode, no trailing dot) or canonical IP literal, no brackets. */
  readonly host: string
  readonly port: number
  readonly kind: TargetKind
  /** Canonical `host:port` / `[v6]:port`, for logs and parent CONNECTs. */
  readonly authority: string
}

/** The longest target worth parsing: a 253-byte name, brackets, `:65535`. */
const MAX_TARGET = 253 + 8

function bad (detail: string): ProxyError {
  return new ProxyError('ERR_BAD_TARGET', { detail })
}

function parsePort (text: string, host: string): number {
  if (text === '') throw bad(`port is missing: add one, e.g. ${host === '' ? 'example.com' : host}:443`)
  if (!/^\d{1,5}$/.test(text)) throw bad('port must be a number 1-65535')
  const port = Number(text)
  if (port < 1 || port > 65535) throw bad('port must be a number 1-65535')
  return port
}

/** Parse a CONNECT target; throws ProxyError ERR_BAD_TARGET with a specific detail. */
export function parseTarget (url: string | undefined): Target {
  if (url === undefined || url === '') throw bad('request target is empty')
  if (url.length > MAX_TARGET) throw bad('request target is too long')
  if (url.includes('@')) throw bad('userinfo is not allowed in the request target')
  if (/[/?#\\]/.test(url) || url.includes('://')) throw bad('request target must be host:port, without scheme or path')
  if (url.startsWith('[')) {
    const close = url.indexOf(']')
    if (close < 0) throw bad('unterminated IPv6 literal')
    const literal = url.slice(1, close)
    if (url[close + 1] !== ':') throw bad(`port is missing: add one, e.g. ${url.slice(0, close + 1)}:443`)
    const port = parsePort(url.slice(close + 2), url.slice(0, close + 1))
    if (literal.includes('%')) throw bad('IPv6 zone identifiers are not allowed')
    const host = isIPv6(literal) ? canonicalIp(literal) : undefined
    if (host === undefined) throw bad('not a valid IPv6 literal')
    return { host, port, kind: 'ipv6', authority: formatHostPort(host, port) }
  }

  // Percent-encoding has no place in an authority a proxy dials (issue 12):
  // `%31%32%37.0.0.1` must not become 127.0.0.1.
  if (url.includes('%')) throw bad('percent-encoding is not allowed in the request target')
  const colon = url.lastIndexOf(':')
  if (colon < 0) throw bad(`port is missing: add one, e.g. ${url}:443`)
  const rawHost = url.slice(0, colon)
  if (rawHost.includes(':')) throw bad('IPv6 literals must be in brackets')
  const port = parsePort(url.slice(colon + 1), rawHost)
  if (rawHost === '') throw bad('host is empty')
  const h = normaliseHost(rawHost)
  if (h.kind === 'invalid') throw bad(h.reason)
  return { host: h.host, port, kind: h.kind, authority: formatHostPort(h.host, port) }
}
