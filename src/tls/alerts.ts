/**
 * TLS alerts for refusals of a ClientHello (issue 14), sent in plaintext
 * before any key exists: a listener that reads the hello itself (sni,
 * terminate) and the CONNECT domain-fronting guard (tunnel/first-bytes-check.ts)
 * have no HTTP to say why, so they say what TLS can (RFC 8446 §6), then close.
 */
import type { Socket } from 'node:net'
import type { ErrorCode, ProxyError } from '../errors.js'

/** RFC 8446 §6 alert descriptions. */
const ALERT = { handshake_failure: 40, access_denied: 49, decode_error: 50, internal_error: 80, unrecognized_name: 112 } as const
export type Alert = keyof typeof ALERT

/** A fatal alert record in plaintext (before any key exists); 0x0303 is what TLS 1.3 peers send there too. */
export function alertRecord (a: Alert): Buffer {
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, ALERT[a]])
}

/** The alert a refusal gets: the policy's is access_denied, a name that cannot be routed is unrecognized_name. */
export function alertFor (code: ErrorCode): Alert | undefined {
  switch (code) {
    case 'ERR_POLICY_DENIED': case 'ERR_DESTINATION_PROHIBITED': case 'ERR_LOOP_DETECTED': case 'ERR_CLIENT_LIMIT': return 'access_denied'
    case 'ERR_SNI_MISSING': case 'ERR_SNI_IP_LITERAL': case 'ERR_SNI_NO_CERTIFICATE': case 'ERR_DNS_NXDOMAIN': case 'ERR_DNS_NO_ADDRESSES': return 'unrecognized_name'
    case 'ERR_SNI_MALFORMED': case 'ERR_SNI_TOO_LARGE': return 'decode_error'
    case 'ERR_SNI_NOT_TLS': return undefined // not a TLS peer: a close says enough
    default: return 'handshake_failure'
  }
}

/**
 * Refuse: the alert where one fits, then a close (a lingering read is not
 * needed: we read nothing more). A socket already inside TLS (a terminate
 * listener's client whose handshake began) is only closed: a plaintext
 * record there would be nonsense to its peer, and the TLS stack sent its own alert.
 */
export function refuseWithAlert (socket: Socket, err: ProxyError): void {
  const alert = alertFor(err.code)
  if (alert !== undefined && socket.writable && (socket as Socket & { encrypted?: boolean }).encrypted !== true) socket.end(alertRecord(alert))
  else socket.destroy()
  // A client that never reads would hold the socket: end() is followed by a destroy once the alert is flushed.
  socket.once('finish', () => { socket.destroy() })
}
