/**
 * Open tunnels as the admin listener shows them (`GET /tunnels`) and closes
 * them (`DELETE /tunnels/ID`), issue 15. A TunnelSource is where they come
 * from: this process's registry, or every worker's over cluster IPC
 * (admin/cluster.ts); the server does not know which.
 */
import type { Logger } from 'pino'
import type { TunnelRegistry } from '../server/registry.js'
import type { Tunnel, TunnelState } from '../tunnel/tunnel.js'
import { formatHostPort } from '../net/ip.js'
import { F } from '../observability/fields.js'

/** One open tunnel, in JSON; field names as on the `tunnel closed` line where there is one. */
export interface TunnelInfo {
  /** Unique in the process; under --workers `wN-ID`, N the worker. */
  readonly id: string
  readonly worker?: number
  readonly state: TunnelState
  readonly client: string
  readonly user: string | null
  readonly target: string | null
  readonly dialed: string | null
  readonly rule: string | null
  readonly route: string | null
  readonly hops: readonly string[]
  readonly bytes_up: number
  readonly bytes_down: number
  /** Milliseconds since the connection was accepted. */
  readonly age_ms: number
}

/** `?user=` (exact) and `?target=` (`host:port` exact, or a host on any port). */
export interface TunnelFilter {
  readonly user?: string
  readonly target?: string
}

export interface TunnelSource {
  list (filter: TunnelFilter): Promise<TunnelInfo[]>
  /** Close one with `close: "admin"` on its line; false when there is no such tunnel. */
  close (id: string): Promise<boolean>
}

function matches (t: Tunnel, f: TunnelFilter): boolean {
  if (f.user !== undefined && t.user !== f.user) return false
  if (f.target !== undefined) {
    const target = t.target
    if (target === undefined) return false
    if (target.authority !== f.target.toLowerCase() && target.host !== f.target.toLowerCase().replace(/^\[(.*)\]$/, '$1')) return false
  }
  return true
}

export function describeTunnel (t: Tunnel, now = performance.now()): TunnelInfo {
  const d = t.dialed
  return {
    id: t.id,
    state: t.state,
    client: t.client,
    user: t.user ?? null,
    target: t.target?.authority ?? null,
    dialed: d === undefined ? null : formatHostPort(d.address, d.port),
    rule: t.decision?.rule ?? null,
    route: t.route ?? null,
    hops: t.hops,
    bytes_up: t.bytesUp,
    bytes_down: t.bytesDown,
    age_ms: Math.round(now - t.startedAt)
  }
}

/** This process's tunnels. */
export function localTunnels (registry: TunnelRegistry, log: Logger): TunnelSource {
  return {
    async list (filter) {
      const now = performance.now()
      return registry.filter(t => t.state !== 'closed' && matches(t, filter)).map(t => describeTunnel(t, now))
    },
    async close (id) {
      const [t] = registry.filter(t => t.id === id)
      if (t === undefined || t.state === 'closed') return false
      log.info({ [F.tunnel]: t.id, [F.client]: t.client, [F.target]: t.target?.authority }, 'closing tunnel: asked on the admin listener')
      t.destroy('admin')
      return true
    }
  }
}
