/**
 * What the proxy reports to its metrics (issue 15), and the names they are
 * published under, without prom-client: the proxy, resolver and listeners
 * import this; observability/metrics.ts is the prom-client side, loaded only
 * by whoever counts.
 */
import type { AuthFailure } from '../auth/authenticator.js'
import type { ErrorCode } from '../errors.js'
import type { Tunnel } from '../tunnel/tunnel.js'

/** Every metric's name (a histogram's series add `_bucket`, `_sum`, `_count`). */
export const M = {
  tunnels: 'sluice_tunnels_total',
  tunnelsOpen: 'sluice_tunnels_open',
  bytes: 'sluice_tunnel_bytes_total',
  connect: 'sluice_upstream_connect_seconds',
  established: 'sluice_tunnel_established_seconds',
  duration: 'sluice_tunnel_duration_seconds',
  dnsLookups: 'sluice_dns_lookups_total',
  dnsCacheHits: 'sluice_dns_cache_hits_total',
  authSuccesses: 'sluice_auth_successes_total',
  authFailures: 'sluice_auth_failures_total',
  authLockouts: 'sluice_auth_lockouts_total',
  authRefused: 'sluice_auth_refused_total',
  parentUp: 'sluice_parent_up',
  failovers: 'sluice_parent_failovers_total',
  configInfo: 'sluice_config_info',
  reloads: 'sluice_config_reloads_total',
  lastReloadSuccess: 'sluice_config_last_reload_success',
  lastReloadTime: 'sluice_config_last_reload_timestamp_seconds',
  loopLag: 'sluice_event_loop_lag_seconds',
  relayBuffers: 'sluice_relay_buffer_bytes'
} as const

/** The names a scrape always shows (a dashboard may query any of them). */
export const METRIC_NAMES: readonly string[] = Object.freeze(Object.values(M))

/** `code` label of a tunnel or DNS lookup that ended without an error. */
export const OK = 'OK'

/** How a reload attempt ended, as config/reloader.ts says it (the metric's label calls `reloaded` `applied`). */
export type ReloadResult = 'reloaded' | 'unchanged' | 'rejected'

/** What only the proxy knows, read at each scrape. */
export interface MetricSources {
  /** Tunnels in the registry: admitted and not yet closed. */
  readonly tunnels: () => number
  /** Each configured parent's name, and false while it is marked down. */
  readonly parents: () => Iterable<readonly [string, boolean]>
}

/** What the proxy reports. One call per event, never per chunk. */
export interface ProxyMetrics {
  /** Once per tunnel, from its listener's onClosed. */
  tunnelClosed: (t: Tunnel, listener: string) => void
  /** A route's dial reached a usable upstream (TCP, and a parent chain's CONNECTs) after `ms`. */
  upstreamConnected: (ms: number) => void
  /** A DNS query the resolver made (one per name per burst), and how it ended. */
  dnsLookup: (code: ErrorCode | typeof OK) => void
  /** An answer (positive or negative) from the resolver's cache. */
  dnsCacheHit: () => void
  authSucceeded: () => void
  authFailed: (reason: AuthFailure) => void
  /** A failure that locked its client out. */
  authLockedOut: () => void
  /** Credentials not checked: the client is locked out, or too many checks wait. */
  authRefused: (reason: 'locked' | 'busy') => void
  /** A route choice failed and the next was tried (`choice`: `direct` or `a>b`). */
  failover: (choice: string) => void
  /** A config is in use (at start and after each reload). */
  configApplied: (hash: string) => void
  /** A reload attempt ended. */
  reloaded: (result: ReloadResult) => void
  /** Where the scrape-time gauges read from. */
  sources: (s: MetricSources) => void
}

const nothing = (): void => {}

/** Metrics off: every report is a call that does nothing. */
export const NOOP_METRICS: ProxyMetrics = Object.freeze({
  tunnelClosed: nothing,
  upstreamConnected: nothing,
  dnsLookup: nothing,
  dnsCacheHit: nothing,
  authSucceeded: nothing,
  authFailed: nothing,
  authLockedOut: nothing,
  authRefused: nothing,
  failover: nothing,
  configApplied: nothing,
  reloaded: nothing,
  sources: nothing
})

/** The rendered text, for a `/metrics` endpoint. */
export interface Rendered {
  readonly contentType: string
  readonly body: string
}
