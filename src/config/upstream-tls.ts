/**
 * A terminate listener's TLS to the upstream (issue 14), prepared at load:
 * one client SecureContext per setting (CAs, client certificate, minimum
 * version, ciphers), so nothing is parsed or compiled per connection, and a
 * bad file is a refused config like any other.
 *
 * The upstream's certificate is always verified (there is no switch to turn
 * that off): against Node's bundled root CAs, or only `ca_file`'s, for the
 * name in `servername` or else the client's SNI. TLS 1.0 and 1.1 are refused
 * by the minimum version (RFC 8996 deprecates them).
 */
import { createSecureContext, type SecureContext } from 'node:tls'
import type { z } from 'zod'
import { checkCaBundle } from './pem.js'
import type { ReadFile } from './listeners.js'
import type { upstreamTls } from './schema.js'

export interface UpstreamTls {
  readonly context: SecureContext
  /** The name to send and verify instead of the client's SNI. */
  readonly servername?: string
  /** ALPN protocols the upstream may be offered (the client's offer, filtered by these). */
  readonly alpn: readonly string[]
  readonly minVersion: 'TLSv1.2' | 'TLSv1.3'
  /** For `sluice validate` and logs: where trust comes from. */
  readonly trust: string
}

export type RawUpstreamTls = z.output<typeof upstreamTls>

/** The settings a terminate listener without `upstream_tls` gets: system CAs, TLS 1.2 or later. */
export const UPSTREAM_TLS_DEFAULTS: RawUpstreamTls = Object.freeze({ min_version: 'TLSv1.2', alpn: ['h2', 'http/1.1'] })

export function loadUpstreamTls (raw: RawUpstreamTls, at: string, read: ReadFile, problems: string[]): UpstreamTls | undefined {
  const ca = raw.ca_file === undefined ? undefined : read(raw.ca_file, `${at}.ca_file`)
  if (ca !== undefined && (ca === '' || !checkCaBundle(ca, `${at}.ca_file`, problems))) return undefined
  const cert = raw.cert_file === undefined ? undefined : read(raw.cert_file, `${at}.cert_file`)
  const key = raw.key_file === undefined ? undefined : read(raw.key_file, `${at}.key_file`)
  if (cert === '' || key === '') return undefined
  let context: SecureContext
  try {
    context = createSecureContext({
      minVersion: raw.min_version,
      ...(ca === undefined ? {} : { ca }),
      ...(cert === undefined || key === undefined ? {} : { cert, key }),
      ...(raw.ciphers === undefined ? {} : { ciphers: raw.ciphers })
    })
  } catch (err) {
    // A key that does not match its certificate, a cipher list OpenSSL does not know.
    problems.push(`${at}: cannot use these TLS settings: ${(err as Error).message}`)
    return undefined
  }
  return Object.freeze({
    context,
    ...(raw.servername === undefined ? {} : { servername: raw.servername }),
    alpn: Object.freeze([...raw.alpn]),
    minVersion: raw.min_version,
    trust: raw.ca_file === undefined ? 'system CAs' : raw.ca_file
  })
}
