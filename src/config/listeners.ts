/**
 * Listeners (issue 13): `listen` is a list of ways in, each of a kind, all
 * sharing one policy, routes, dialer, tunnel, relay and log line:
 *
 * - `connect`: HTTP CONNECT, in plain text or, with `tls`, inside TLS from
 *   the client (an HTTPS proxy), optionally with client certificates;
 * - `tcp`: a fixed forward, every connection to `target` (ATS's "for a TCP
 *   only connection the upstream must be explicitly configured");
 * - `sni`: TLS passed through to the name in the ClientHello, on
 *   `target_port`, or to the `map`'s target for it (issue 14);
 * - `terminate`: routed as `sni`, but TLS is terminated with the listener's
 *   certificate for that name and opened anew to the upstream (issue 14).
 *
 * TLS material is read and checked here, at load, so a reload with a bad
 * certificate or key is refused like any other bad config and the running
 * one keeps serving (certificate files are watched with the config file).
 */
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContext } from 'node:tls'
import { parseTarget, type Target } from '../connect/target.js'
import { isProxyError } from '../errors.js'
import { parseListen, type SluiceFile } from './schema.js'
import { checkCaBundle } from './pem.js'
import { loadMap, type SniMap } from './sni-map.js'
import { loadUpstreamTls, UPSTREAM_TLS_DEFAULTS, type UpstreamTls } from './upstream-tls.js'
import { compileCidrs, type CidrMatcher } from '../policy/match.js'

export { mapped, type MapEntry, type SniMap } from './sni-map.js'
export type { UpstreamTls } from './upstream-tls.js'

export type ListenerKind = 'connect' | 'tcp' | 'sni' | 'terminate'
export type ClientIdentity = 'cn' | 'san_dns' | 'san_email' | 'san_uri'

/** One certificate a TLS listener can present, and the names it serves by SNI. */
export interface ServedCertificate {
  readonly context: SecureContext
  /** Lower-case DNS names from its SANs (or its CN without SANs); `*.example.com` wildcards kept as written. */
  readonly names: readonly string[]
  /** For logs and `sluice validate`: subject and expiry. */
  readonly subject: string
  readonly validTo: string
}

export interface ListenerTls {
  /** The first certificate: served when no other one's names match the client's SNI (or it sent none). */
  readonly main: ServedCertificate
  readonly others: readonly ServedCertificate[]
  /** PEM text, for the tls.Server's own options. */
  readonly key: string
  readonly cert: string
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
  /** Client certificates: not asked for, or checked against `ca`. */
  readonly clientCert: 'none' | 'required' | 'optional'
  readonly ca?: string
  readonly identity: ClientIdentity
}

export interface ListenAddress {
  readonly host: string
  readonly port: number
  /** What policy `listeners:` match; defaults to the address text. */
  readonly name: string
  readonly kind: ListenerKind
  readonly tls?: ListenerTls
  /** kind tcp: where every connection goes. */
  readonly target?: Target
  /** kind tcp or sni: the route, parent or `direct` it goes by; undefined = the policy's. */
  readonly via?: string
  /** kind sni or terminate: the port an SNI name is dialed on (default 443). */
  readonly targetPort?: number
  /** kind sni or terminate: fixed targets for names (exact first, then the longest `*.suffix`). */
  readonly map?: SniMap
  /** kind terminate: the TLS to the upstream, unless the map's entry has its own. */
  readonly upstreamTls?: UpstreamTls
  /** Every kind (issue 15): the PROXY protocol from these sources (server/proxy-stage.ts). */
  readonly proxyProtocol?: ListenerProxyProtocol
}

/** `proxy_protocol:` compiled: the sources a header is taken from, matched on the connection's own address. */
export interface ListenerProxyProtocol {
  /** The CIDRs as written, for logs and `sluice validate`. */
  readonly from: readonly string[]
  readonly sources: CidrMatcher
}

type Entry = Extract<SluiceFile['listen'], readonly unknown[]>[number]

/** Reads a file relative to the config, recording it (watched, hashed); throws a problem line. */
export type ReadFile = (path: string, what: string) => string

/** The lower-case DNS names a certificate serves. */
function servedNames (x: X509Certificate): string[] {
  const sans = (x.subjectAltName ?? '').split(', ').filter(s => s.startsWith('DNS:')).map(s => s.slice(4).toLowerCase())
  if (sans.length > 0) return sans
  const cn = /(?:^|\n)CN=([^\n]+)/.exec(x.subject)?.[1]
  return cn === undefined ? [] : [cn.toLowerCase()]
}

/** Settings every certificate's context shares: an SNI-chosen one replaces the server's own for the handshake. */
interface Shared { readonly ca?: string, readonly minVersion: 'TLSv1.2' | 'TLSv1.3' }

function served (certPem: string, keyPem: string, shared: Shared, where: string, problems: string[]): ServedCertificate | undefined {
  // A file that could not be read is already a problem of its own.
  if (certPem === '' || keyPem === '') return undefined
  try {
    const context = createSecureContext({ cert: certPem, key: keyPem, minVersion: shared.minVersion, ...(shared.ca === undefined ? {} : { ca: shared.ca }) })
    const x = new X509Certificate(certPem)
    return { context, names: servedNames(x), subject: x.subject.replace(/\n/g, ', '), validTo: x.validTo }
  } catch (err) {
    // A key that does not match, a PEM that is not one: refused before anything listens or swaps.
    problems.push(`${where}: cannot use this certificate and key: ${(err as Error).message}`)
    return undefined
  }
}

function loadTls (t: NonNullable<Extract<Entry, { address: string }>['tls']>, at: string, read: ReadFile, problems: string[]): ListenerTls | undefined {
  const ca = t.client_ca_file === undefined ? undefined : read(t.client_ca_file, `${at}.tls.client_ca_file`)
  if (ca !== undefined && ca !== '') checkCaBundle(ca, `${at}.tls.client_ca_file`, problems)
  const shared: Shared = { minVersion: t.min_version, ...(ca === undefined ? {} : { ca }) }
  const cert = read(t.cert_file, `${at}.tls.cert_file`)
  const key = read(t.key_file, `${at}.tls.key_file`)
  const main = served(cert, key, shared, `${at}.tls`, problems)
  const others = t.certs.map((c, i) => served(read(c.cert_file, `${at}.tls.certs[${i}].cert_file`), read(c.key_file, `${at}.tls.certs[${i}].key_file`), shared, `${at}.tls.certs[${i}]`, problems))
  if (main === undefined || others.some(o => o === undefined)) return undefined
  return {
    main,
    others: others as ServedCertificate[],
    key,
    cert,
    minVersion: t.min_version,
    clientCert: ca === undefined ? 'none' : t.client_cert,
    ...(ca === undefined ? {} : { ca }),
    identity: t.identity
  }
}

/**
 * The file's `listen` as listeners; problems (bad address, duplicate
 * name, unusable TLS files, a bad target) are pushed as `file: …` lines.
 */
export function prepareListeners (f: SluiceFile, file: string, read: ReadFile, problems: string[]): ListenAddress[] {
  const entries: readonly Entry[] = Array.isArray(f.listen) ? f.listen : [f.listen as Entry]
  const many = Array.isArray(f.listen)
  return entries.flatMap((entry, i): ListenAddress[] => {
    const at = `${file}: listen${many ? `[${i}]` : ''}`
    const e = typeof entry === 'string' ? { address: entry, kind: 'connect' as const } : entry
    const parsed = parseListen(e.address)
    if (parsed === undefined) { problems.push(`${at}: bad address ${e.address}`); return [] }
    const name = 'name' in e && e.name !== undefined ? e.name : e.address
    const tls = 'tls' in e && e.tls !== undefined ? loadTls(e.tls, at, read, problems) : undefined
    let target: Target | undefined
    if ('target' in e && e.target !== undefined) {
      try {
        target = parseTarget(e.target)
      } catch (err) {
        problems.push(`${at}.target: ${isProxyError(err) ? err.detail : String(err)}`)
        return []
      }
    }
    const via = 'via' in e ? e.via : undefined
    const routed = (e.kind === 'sni' || e.kind === 'terminate') && 'address' in e
      ? { targetPort: e.target_port ?? 443, ...(e.map === undefined ? {} : { map: loadMap(e.map, at, read, problems) }) }
      : {}
    const upstreamTls = e.kind === 'terminate' && 'address' in e
      ? loadUpstreamTls(e.upstream_tls ?? UPSTREAM_TLS_DEFAULTS, `${at}.upstream_tls`, read, problems)
      : undefined
    const pp = 'proxy_protocol' in e && e.proxy_protocol !== undefined
      ? { proxyProtocol: Object.freeze({ from: e.proxy_protocol.from, sources: compileCidrs(e.proxy_protocol.from) }) }
      : {}
    return [Object.freeze({
      ...parsed,
      name,
      kind: e.kind,
      ...(tls === undefined ? {} : { tls }),
      ...(target === undefined ? {} : { target }),
      ...(via === undefined ? {} : { via }),
      ...routed,
      ...(upstreamTls === undefined ? {} : { upstreamTls }),
      ...pp
    })]
  })
}

/** A ReadFile for `prepareListeners`: relative to the config file, each read reported to `seen`. */
export function fileReader (file: string, seen: (path: string, content: string) => void, problems: string[]): ReadFile {
  return (path, what) => {
    const full = resolve(dirname(file), path)
    try {
      const text = readFileSync(full, 'utf8')
      seen(full, text)
      return text
    } catch (err) {
      problems.push(`${what}: cannot read ${full}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
      return ''
    }
  }
}
