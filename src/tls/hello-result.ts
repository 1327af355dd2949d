/**
 * What the ClientHello reader (tls/client-hello.ts) returns: "incomplete",
 * a ClientHello's routing facts, or a coded error (issue 14, `kind: sni`).
 * The codes are the parser's own; the SNI listener maps them to the error
 * registry (src/errors.ts) with its own codes, as it does a missing or
 * IP-literal server_name.
 */

export type HelloErrorCode =
  /** The first byte is not 0x16 (a handshake record), or the first record header is not TLS 1.x. */
  | 'NOT_TLS'
  /** An SSLv2-compatible ClientHello: high bit set in the first byte, message type 1. */
  | 'SSLV2'
  /** The first handshake message is not a ClientHello. */
  | 'NOT_CLIENT_HELLO'
  /** A length that does not add up, a bad vector, a refused extension or name (the detail says which). */
  | 'MALFORMED'
  /** The hello's records would exceed the caller's cap. */
  | 'TOO_LARGE'

export interface HelloError {
  readonly kind: 'error'
  readonly code: HelloErrorCode
  /** What was wrong, for people (not stable: match on `code`). */
  readonly detail: string
}

/** A complete, valid ClientHello: what routing and the log need, and how many bytes it took. */
export interface ClientHello {
  readonly kind: 'hello'
  /**
   * The host_name of server_name (RFC 6066 §3), lower-cased; undefined when
   * the hello has no server_name extension (the caller refuses that, or
   * not: a valid hello without SNI is still a hello). An IP literal is
   * returned as sent: refusing it is the caller's business.
   */
  readonly serverName: string | undefined
  /** The ALPN protocol names, in the client's order (RFC 7301 §3.1), latin1-decoded; empty without the extension. */
  readonly alpn: readonly string[]
  /**
   * encrypted_client_hello (0xfe0d) is present: this is an outer hello and
   * serverName is the ECH public name. A GREASE ECH extension looks the
   * same, by design, so this means "offered or greased".
   */
  readonly echOffered: boolean
  /** legacy_version, e.g. 0x0303. */
  readonly legacyVersion: number
  /** supported_versions (RFC 8446 §4.2.1), GREASE values included; undefined without the extension. */
  readonly supportedVersions: readonly number[] | undefined
  /** Bytes consumed: the hello's records, headers included, exactly as received (to replay). */
  readonly length: number
  /** How many TLS records carried it. */
  readonly records: number
}

export type HelloResult = { readonly kind: 'incomplete' } | ClientHello | HelloError

export const INCOMPLETE: HelloResult = Object.freeze({ kind: 'incomplete' })

export function failure (code: HelloErrorCode, detail: string): HelloError {
  return { kind: 'error', code, detail }
}

export function malformed (detail: string): HelloError {
  return { kind: 'error', code: 'MALFORMED', detail }
}
