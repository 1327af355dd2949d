/**
 * Log field names, in one place (Smokescreen's LogField… constants): the
 * canonical `tunnel closed` line and every line about a tunnel or a request
 * use these, so a field is spelled one way everywhere and README's log
 * reference has one list to match.
 */
export const F = {
  /** Tunnel id, unique within the process. */
  tunnel: 'tunnel',
  /** Client `ip:port`, IPv6 in brackets. */
  client: 'client',
  /** Request method of a refused request. */
  method: 'method',
  /** Canonical CONNECT authority `host:port`. */
  target: 'target',
  /** Authenticated user. */
  user: 'user',
  /** The user a failed or challenged login named (never the password). */
  attemptedUser: 'attempted_user',
  /** `ip:port` dialed (direct) or the first parent's `host:port`. */
  dialed: 'dialed',
  route: 'route',
  /** Parent names in order, when a parent was used. */
  hops: 'hops',
  /** Route choices that failed before the one used (or before giving up). */
  failedChoices: 'failed_choices',
  rule: 'rule',
  stage: 'stage',
  reason: 'reason',
  status: 'status',
  code: 'code',
  bytesUp: 'bytes_up',
  bytesDown: 'bytes_down',
  connectMs: 'connect_ms',
  durationMs: 'duration_ms',
  closedBy: 'closed_by',
  close: 'close',
  address: 'address',
  /** The admin listener's client (issue 15): who asked to close a tunnel, or sent a wrong token. */
  adminClient: 'admin_client',
  /** The listener a connection arrived on (its name, as `listeners:` rules match it). */
  listener: 'listener',
  /** OpenSSL's or Node's own code for a failed TLS handshake (beside `code`, ours). */
  tlsError: 'tls_error',
  /** SNI passthrough (issue 14): the ClientHello's server_name, its ALPN list, and whether it offered ECH. */
  sni: 'sni',
  alpn: 'alpn',
  ech: 'ech',
  /** TLS termination (issue 14): the client leg's TLS version and cipher, the upstream leg's, and the upstream certificate's subject and expiry. */
  tlsVersion: 'tls_version',
  tlsCipher: 'tls_cipher',
  upstreamTlsVersion: 'upstream_tls_version',
  upstreamTlsCipher: 'upstream_tls_cipher',
  /** The upstream leg resumed a session: true, else absent. */
  upstreamTlsResumed: 'upstream_tls_resumed',
  upstreamCertSubject: 'upstream_cert_subject',
  upstreamCertExpiry: 'upstream_cert_expiry'
} as const
