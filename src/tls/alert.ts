/**
 * TLS alerts sent in plaintext, before any key exists: how a refusal of a
 * ClientHello is told to a TLS client instead of a bare close (RFC 8446 §6).
 * Used by the sni listener (server/sni-listener.ts) and the CONNECT
 * domain-fronting guard (tunnel/first-bytes-check.ts), issue 14.
 */

/** RFC 8446 §6 alert descriptions. */
export const ALERT = { handshake_failure: 40, access_denied: 49, decode_error: 50, internal_error: 80, unrecognized_name: 112 } as const
export type Alert = keyof typeof ALERT

/** A fatal alert record in plaintext; 0x0303 is what TLS 1.3 peers send there too. */
export function alertRecord (a: Alert): Buffer {
  return Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, ALERT[a]])
}
