/**
 * An sni or terminate listener's `map` (issue 14): names or `*.suffix`
 * patterns → a fixed target, for names whose public address is not the one
 * to dial from the proxy. A terminate listener's entry may carry its own
 * upstream TLS settings.
 */
import { parseTarget, type Target } from '../connect/target.js'
import { isProxyError, ProxyError } from '../errors.js'
import { normaliseHost } from '../net/host.js'
import { formatHostPort } from '../net/ip.js'
import type { ReadFile } from './listeners.js'
import type { upstreamTls } from './schema.js'
import { loadUpstreamTls, type UpstreamTls } from './upstream-tls.js'
import type { z } from 'zod'

export interface MapEntry {
  readonly target: Target
  /** kind terminate: this entry's upstream TLS, instead of the listener's. */
  readonly tls?: UpstreamTls
}

export interface SniMap {
  readonly exact: ReadonlyMap<string, MapEntry>
  /** `.suffix` (with its dot) → entry, longest first. */
  readonly suffixes: ReadonlyArray<readonly [string, MapEntry]>
}

/** The map's entry for a (normalised) SNI name, if any: exact first, then the longest `*.suffix`. */
export function mapped (map: SniMap | undefined, name: string): MapEntry | undefined {
  if (map === undefined) return undefined
  const hit = map.exact.get(name)
  if (hit !== undefined) return hit
  for (const [suffix, entry] of map.suffixes) if (name.endsWith(suffix) && name.length > suffix.length) return entry
  return undefined
}

type RawEntry = string | { readonly target: string, readonly upstream_tls?: z.output<typeof upstreamTls> | undefined }

export function loadMap (raw: Readonly<Record<string, RawEntry>>, at: string, read: ReadFile, problems: string[]): SniMap {
  const exact = new Map<string, MapEntry>()
  const suffixes: Array<[string, MapEntry]> = []
  for (const [pattern, to] of Object.entries(raw)) {
    const where = `${at}.map.${pattern}`
    let target: Target
    try {
      target = parseTarget(typeof to === 'string' ? to : to.target)
    } catch (err) {
      problems.push(`${where}: ${isProxyError(err) ? err.detail ?? err.message : String(err)}`)
      continue
    }
    const tls = typeof to === 'string' || to.upstream_tls === undefined ? undefined : loadUpstreamTls(to.upstream_tls, `${where}.upstream_tls`, read, problems)
    const entry: MapEntry = Object.freeze({ target, ...(tls === undefined ? {} : { tls }) })
    const wildcard = pattern.startsWith('*.')
    const h = normaliseHost(wildcard ? pattern.slice(2) : pattern)
    if (h.kind !== 'name') { problems.push(`${at}.map: '${pattern}' is not a name or *.suffix`); continue }
    if (wildcard) suffixes.push([`.${h.host}`, entry])
    else exact.set(h.host, entry)
  }
  suffixes.sort((a, b) => b[0].length - a[0].length)
  return { exact, suffixes }
}

/**
 * Where a ClientHello naming `name` goes: the map's entry, else
 * `name:targetPort`. No name, or an IP literal, is refused (RFC 6066 §3:
 * "Literal IPv4 and IPv6 addresses are not permitted in HostName", also once
 * normalised). Throws the refusal.
 */
export function helloTarget (map: SniMap | undefined, targetPort: number, name: string | undefined): MapEntry {
  if (name === undefined) throw new ProxyError('ERR_SNI_MISSING')
  const fixed = mapped(map, name)
  if (fixed !== undefined) return fixed
  let target: Target
  try {
    target = parseTarget(formatHostPort(name, targetPort))
  } catch (err) {
    throw new ProxyError('ERR_SNI_MALFORMED', { detail: `server_name ${JSON.stringify(name.slice(0, 64))}: ${err instanceof ProxyError ? err.detail ?? err.message : String(err)}` })
  }
  if (target.kind !== 'name') throw new ProxyError('ERR_SNI_IP_LITERAL', { detail: name })
  return { target }
}
