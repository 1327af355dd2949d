/**
 * The one error registry: every failure Sluice reports to a client has a
 * stable `code`, one HTTP status, and one RFC 9209 Proxy-Status error type.
 * Match on `code`, never on message text (undici's rule). README's status
 * table is checked against this table by test/unit/errors.test.ts.
 */

/** RFC 9209 §2.3 Proxy-Status error types that Sluice emits. */
export type ProxyStatusType =
  | 'http_request_error'
  | 'http_request_denied'
  | 'destination_ip_prohibited'
  | 'destination_ip_unroutable'
  | 'destination_unavailable'
  | 'dns_error'
  | 'dns_timeout'
  | 'connection_refused'
  | 'connection_terminated'
  | 'connection_timeout'
  | 'connection_limit_reached'
  | 'proxy_internal_error'
  | 'proxy_loop_detected'
  | 'tls_protocol_error'
  | 'tls_certificate_error'
  | 'http_protocol_error'

interface ErrorSpec {
  readonly status: number
  readonly type: ProxyStatusType
  readonly message: string
}

/** code → status, Proxy-Status error type and default message. */
export const ERRORS = {
  ERR_BAD_REQUEST: { status: 400, type: 'http_request_error', message: 'malformed request' },
  ERR_BAD_VERSION: { status: 400, type: 'http_request_error', message: 'only HTTP/1.0 and HTTP/1.1 CONNECT is supported' },
  ERR_BAD_TARGET: { status: 400, type: 'http_request_error', message: 'request target must be authority-form host:port' },
  ERR_METHOD_NOT_ALLOWED: { status: 405, type: 'http_request_denied', message: 'only CONNECT is supported' },
  ERR_HEADERS_TIMEOUT: { status: 408, type: 'http_request_error', message: 'request head not received in time' },
  ERR_HEADERS_TOO_LARGE: { status: 431, type: 'http_request_error', message: 'request head too large' },
  ERR_AUTH_REQUIRED: { status: 407, type: 'http_request_denied', message: 'proxy authentication required' },
  ERR_AUTH_FAILED: { status: 407, type: 'http_request_denied', message: 'proxy credentials rejected' },
  ERR_AUTH_LOCKED: { status: 429, type: 'http_request_denied', message: 'too many failed logins from this address' },
  ERR_AUTH_BUSY: { status: 429, type: 'http_request_denied', message: 'too many logins waiting to be checked' },
  ERR_POLICY_DENIED: { status: 403, type: 'http_request_denied', message: 'denied by policy' },
  ERR_DESTINATION_PROHIBITED: { status: 403, type: 'destination_ip_prohibited', message: 'destination address not allowed' },
  ERR_LOOP_DETECTED: { status: 403, type: 'proxy_loop_detected', message: 'target is this proxy' },
  ERR_DNS_NXDOMAIN: { status: 502, type: 'dns_error', message: 'name does not exist' },
  ERR_DNS_NO_ADDRESSES: { status: 502, type: 'dns_error', message: 'name has no addresses' },
  ERR_DNS_FAILED: { status: 502, type: 'dns_error', message: 'name resolution failed' },
  ERR_DNS_TIMEOUT: { status: 504, type: 'dns_timeout', message: 'name resolution timed out' },
  ERR_UPSTREAM_REFUSED: { status: 502, type: 'connection_refused', message: 'connection refused by destination' },
  ERR_UPSTREAM_UNREACHABLE: { status: 502, type: 'destination_unavailable', message: 'destination unreachable' },
  ERR_UPSTREAM_RESET: { status: 502, type: 'connection_terminated', message: 'connection reset by destination' },
  ERR_UPSTREAM_FAILED: { status: 502, type: 'destination_unavailable', message: 'could not connect to destination' },
  ERR_UPSTREAM_TIMEOUT: { status: 504, type: 'connection_timeout', message: 'timed out connecting to destination' },
  ERR_PARENT_REFUSED: { status: 502, type: 'connection_refused', message: 'parent proxy refused the connection' },
  ERR_PARENT_TIMEOUT: { status: 504, type: 'connection_timeout', message: 'timed out reaching through the parent proxy' },
  ERR_PARENT_FAILED: { status: 502, type: 'destination_unavailable', message: 'could not reach the parent proxy' },
  ERR_PARENT_TLS: { status: 502, type: 'tls_protocol_error', message: 'TLS with the parent proxy failed' },
  ERR_PARENT_TLS_CERT: { status: 502, type: 'tls_certificate_error', message: "parent proxy's certificate was not accepted" },
  ERR_PARENT_PROTOCOL: { status: 502, type: 'http_protocol_error', message: 'parent proxy sent an invalid reply' },
  ERR_PARENT_AUTH: { status: 502, type: 'http_request_denied', message: 'parent proxy refused our credentials' },
  ERR_PARENT_DENIED: { status: 502, type: 'http_request_denied', message: 'parent proxy denied the CONNECT' },
  ERR_PARENT_STATUS: { status: 502, type: 'destination_unavailable', message: 'parent proxy could not open the tunnel' },
  ERR_TOO_MANY_TUNNELS: { status: 503, type: 'connection_limit_reached', message: 'proxy is at its tunnel limit' },
  ERR_CLIENT_LIMIT: { status: 429, type: 'connection_limit_reached', message: 'too many tunnels from this client' },
  ERR_USER_LIMIT: { status: 429, type: 'connection_limit_reached', message: 'too many tunnels for this user' },
  // limits.max_bytes_per_user (issue 15): a quota, not a connection count, so RFC 9209's plain "denied".
  ERR_USER_BYTES: { status: 429, type: 'http_request_denied', message: 'this user has used their bytes for this period' },
  ERR_SHUTTING_DOWN: { status: 503, type: 'proxy_internal_error', message: 'proxy is shutting down' },
  ERR_INTERNAL: { status: 500, type: 'proxy_internal_error', message: 'internal proxy error' },
  // TLS from the client (issue 13). A handshake has no HTTP channel: these are logged, not sent,
  // but ERR_TLS_REQUIRED, which answers plain HTTP on a TLS listener in plain HTTP.
  ERR_TLS_REQUIRED: { status: 400, type: 'tls_protocol_error', message: 'this listener speaks TLS: use an https:// proxy URL' },
  ERR_TLS_ON_PLAIN_LISTENER: { status: 400, type: 'tls_protocol_error', message: 'TLS sent to a plain-HTTP listener: the client has an https:// proxy URL for an http:// listener' },
  ERR_TLS_HANDSHAKE: { status: 400, type: 'tls_protocol_error', message: 'TLS handshake with the client failed' },
  ERR_TLS_TIMEOUT: { status: 408, type: 'tls_protocol_error', message: 'TLS handshake not completed in time' },
  ERR_TLS_CLIENT_CERT: { status: 403, type: 'tls_certificate_error', message: 'client certificate refused' },
  // SNI passthrough (issue 14): the ClientHello is all there is to route by, and there is no HTTP
  // channel: logged, with a TLS alert where TLS allows one.
  ERR_SNI_NOT_TLS: { status: 400, type: 'tls_protocol_error', message: 'not a TLS ClientHello (an SNI listener takes TLS only)' },
  ERR_SNI_MALFORMED: { status: 400, type: 'tls_protocol_error', message: 'malformed TLS ClientHello' },
  ERR_SNI_MISSING: { status: 400, type: 'tls_protocol_error', message: 'the ClientHello names no server (no SNI)' },
  ERR_SNI_IP_LITERAL: { status: 400, type: 'tls_protocol_error', message: 'the ClientHello names an IP address, which SNI may not (RFC 6066 §3)' },
  ERR_SNI_TOO_LARGE: { status: 431, type: 'tls_protocol_error', message: 'ClientHello too large' },
  ERR_SNI_TIMEOUT: { status: 408, type: 'tls_protocol_error', message: 'ClientHello not received in time' },
  // TLS termination (issue 14, kind terminate): the name has no certificate here, or the TLS Sluice opens
  // to the upstream failed; the client gets a TLS alert before its handshake goes on.
  ERR_SNI_NO_CERTIFICATE: { status: 421, type: 'tls_protocol_error', message: 'no certificate here serves the ClientHello\'s name' },
  ERR_UPSTREAM_TLS_UNTRUSTED: { status: 502, type: 'tls_certificate_error', message: "upstream's certificate does not chain to a trusted CA" },
  ERR_UPSTREAM_TLS_EXPIRED: { status: 502, type: 'tls_certificate_error', message: "upstream's certificate has expired or is not yet valid" },
  ERR_UPSTREAM_TLS_NAME: { status: 502, type: 'tls_certificate_error', message: "upstream's certificate is not for the name asked" },
  ERR_UPSTREAM_TLS_VERSION: { status: 502, type: 'tls_protocol_error', message: 'upstream offers no TLS version at or above the minimum' },
  ERR_UPSTREAM_TLS_HANDSHAKE: { status: 502, type: 'tls_protocol_error', message: 'TLS handshake with the upstream failed' },
  ERR_UPSTREAM_TLS_TIMEOUT: { status: 504, type: 'connection_timeout', message: 'TLS handshake with the upstream not completed in time' },
  // PROXY protocol on a listener (issue 15, docs/proxy-protocol.md): answered in HTTP on a plain
  // connect listener, logged and closed on the others.
  ERR_PROXY_PROTOCOL_MALFORMED: { status: 400, type: 'http_request_error', message: 'malformed or truncated PROXY protocol header' },
  ERR_PROXY_PROTOCOL_MISSING: { status: 400, type: 'http_request_error', message: 'connections from this address must start with a PROXY protocol header' },
  ERR_PROXY_PROTOCOL_NOT_ALLOWED: { status: 403, type: 'http_request_denied', message: 'PROXY protocol header from an address not in proxy_protocol.from' },
  ERR_PROXY_PROTOCOL_TIMEOUT: { status: 408, type: 'http_request_error', message: 'PROXY protocol header not received in time' },
  // The CONNECT domain-fronting guard (issue 14): a tunnel's first bytes are judged after its 200, so
  // these are logged on the tunnel's line (status 200), with a TLS alert where TLS allows one. The
  // reader's own failures reuse ERR_SNI_MALFORMED, ERR_SNI_TOO_LARGE and ERR_SNI_TIMEOUT.
  ERR_SNI_MISMATCH: { status: 403, type: 'http_request_denied', message: "the tunnel's ClientHello names another server than the CONNECT target" },
  ERR_TLS_ONLY: { status: 403, type: 'http_request_denied', message: "the tunnel's first bytes are not a TLS ClientHello (tls_only)" }
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

export interface ProxyErrorOptions {
  /** Human detail appended to the default message (goes to client and log). */
  readonly detail?: string
  /** Extra Proxy-Status parameters, e.g. `rcode` for dns_error (RFC 9209 §2.3.2); numbers are sf-integers. */
  readonly params?: Readonly<Record<string, string | number>>
  /** Extra response headers, e.g. Retry-After. */
  readonly headers?: Readonly<Record<string, string>>
  readonly cause?: unknown
}

/** A failure we answer the client for. `status` and `type` come from ERRORS. */
export class ProxyError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly type: ProxyStatusType
  readonly detail: string | undefined
  readonly params: Readonly<Record<string, string | number>>
  readonly headers: Readonly<Record<string, string>>

  constructor (code: ErrorCode, opts: ProxyErrorOptions = {}) {
    const spec: ErrorSpec = ERRORS[code]
    super(opts.detail === undefined ? spec.message : `${spec.message}: ${opts.detail}`,
      opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'ProxyError'
    this.code = code
    this.status = spec.status
    this.type = spec.type
    this.detail = opts.detail
    this.params = opts.params ?? {}
    this.headers = opts.headers ?? {}
  }
}

export function isProxyError (err: unknown): err is ProxyError {
  return err instanceof ProxyError
}

/** Anything thrown that is not a ProxyError becomes ERR_INTERNAL, keeping the cause. */
export function toProxyError (err: unknown): ProxyError {
  return isProxyError(err) ? err : new ProxyError('ERR_INTERNAL', { cause: err })
}
