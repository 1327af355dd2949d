/**
 * What the CONNECT pipeline needs from the proxy that runs it. A module of
 * its own so that the pipeline's steps (handle.ts, authenticate.ts) import
 * it without importing each other.
 */
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import type { Resolver } from '../net/resolver.js'
import type { dialRoute, RouteDialOptions } from '../upstream/route.js'
import type { TunnelRegistry } from '../server/registry.js'
import type { AuthConfig } from '../auth/load.js'
import type { Authenticator } from '../auth/authenticator.js'
import type { Lockout } from '../auth/lockout.js'
import type { ProxyMetrics } from '../observability/proxy-metrics.js'
import type { UserBytes } from '../server/user-bytes.js'

export interface ConnectContext {
  readonly log: Logger
  /** The current config; a reload swaps what this returns. */
  readonly config: () => Config
  readonly resolver: Resolver
  readonly registry: TunnelRegistry
  readonly draining: () => boolean
  /** True for one of this proxy's own listening endpoints (loop guard). */
  readonly isSelf: (address: string, port: number) => boolean
  /** How routes are dialed (resolver, parent health, timeouts). */
  readonly routeOptions: () => RouteDialOptions
  readonly dial: typeof dialRoute
  /** The current authenticator, when the config has an `auth` section. */
  readonly auth: () => AuthState | undefined
  readonly lockout: Lockout
  /** Bytes per user in the current window (`limits.max_bytes_per_user`, issue 15); outlives reloads. */
  readonly userBytes: UserBytes
  /** Where events are counted (NOOP_METRICS when metrics are off). */
  readonly metrics: ProxyMetrics
}

export interface AuthState {
  readonly authenticator: Authenticator
  readonly config: AuthConfig
}

/** What the listener knows about this connection. */
export interface ConnectionInfo {
  /** Listener name, for policy `listeners:`. */
  readonly listener: string
  /** 407s already sent on this connection. */
  readonly challenges: number
  /** A verified client certificate's identity (TLS listeners, issue 13): the tunnel's user, instead of Basic auth. */
  readonly identity?: string
  /** A tcp or sni listener's own route (its `via`). */
  readonly via?: string
}

/**
 * A connection the pipeline hands back to its listener after a 407, for the
 * client's retry on the same connection: the listener reads the next head
 * from `early` (the bytes that came after the challenged head) and then the
 * socket (server/connect-listener.ts).
 */
export interface Retry {
  readonly socket: Socket
  readonly early: Buffer
  /** 407s sent on this connection, this one included. */
  readonly challenges: number
}
