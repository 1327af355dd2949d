/**
 * Who a TLS client is, and which certificate it is shown (issue 13).
 *
 * A verified client certificate is an identity "sufficient of itself": its
 * subject CN, or one SAN (DNS, email or URI) as the listener's `identity`
 * says, becomes the tunnel's user. The certificate's own chain was checked
 * by OpenSSL against the listener's `client_ca_file` in the handshake.
 */
import type { SecureContext, TLSSocket } from 'node:tls'
import type { ListenerTls, ServedCertificate } from '../config/listeners.js'

export interface ClientIdentity {
  /** The verified certificate's identity; undefined for a client without one. */
  readonly user?: string
  /** Why a certificate that was sent is refused (`client_cert: optional` lets only its absence through). */
  readonly refused?: string
}

const NONE: ClientIdentity = Object.freeze({})
const SAN_PREFIX = { san_dns: 'DNS:', san_email: 'email:', san_uri: 'URI:' } as const

export function clientIdentity (socket: TLSSocket, tls: ListenerTls): ClientIdentity {
  if (tls.clientCert === 'none') return NONE
  const cert = socket.getPeerCertificate()
  const sent = cert !== null && typeof cert === 'object' && Object.keys(cert).length > 0
  if (!sent) return tls.clientCert === 'required' ? { refused: 'no client certificate (client_cert: required)' } : NONE
  // OpenSSL's verdict, e.g. CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE.
  if (!socket.authorized) return { refused: `client certificate not accepted: ${String(socket.authorizationError)}` }
  let user: string | undefined
  if (tls.identity === 'cn') {
    const cn = cert.subject?.CN
    user = Array.isArray(cn) ? cn[0] : cn
  } else {
    const prefix = SAN_PREFIX[tls.identity]
    user = (cert.subjectaltname ?? '').split(', ').find(s => s.startsWith(prefix))?.slice(prefix.length)
  }
  if (user === undefined || user === '') return { refused: `client certificate has no ${tls.identity === 'cn' ? 'subject CN' : `${SAN_PREFIX[tls.identity]} SAN`} to name its user` }
  return { user }
}

/** RFC 6125 §6.4.3: `*.example.com` matches one whole left-most label. */
function matches (pattern: string, name: string): boolean {
  if (!pattern.startsWith('*.')) return pattern === name
  const dot = name.indexOf('.')
  return dot > 0 && name.slice(dot) === pattern.slice(1)
}

/** The first of the listener's certificates whose names serve `servername` (main first), if any. */
export function servedFor (tls: ListenerTls, servername: string): ServedCertificate | undefined {
  const name = servername.toLowerCase()
  const serves = (c: ServedCertificate): boolean => c.names.some(p => matches(p, name))
  return serves(tls.main) ? tls.main : tls.others.find(serves)
}

/**
 * The certificate for the client's SNI: the main one when its names match
 * (undefined: the server's own context), else the first other one whose
 * names match, else the main one.
 */
export function sniContext (tls: ListenerTls, servername: string): SecureContext | undefined {
  const c = servedFor(tls, servername)
  return c === undefined || c === tls.main ? undefined : c.context
}
