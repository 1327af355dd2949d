/**
 * The live tunnels. Node's closeAllConnections() cannot see upgraded
 * sockets (nodejs/node#53536), so shutdown, limits and leak checks use this.
 *
 * Idle and lifetime limits are enforced by one shared sweep instead of a
 * timer per socket: it compares each tunnel's byte counters with the last
 * sweep, so the data path does no per-chunk bookkeeping at all. The sweep
 * timer exists only while there are tunnels.
 */
import type { CloseHow, Tunnel } from '../tunnel/tunnel.js'
import type { ProxyMetrics } from '../observability/proxy-metrics.js'

export interface RegistryOptions {
  /** Close a tunnel with no bytes either way for this long (ms); 0 = never. */
  readonly idleMs: number
  /** Close any tunnel after this long (ms); 0 = never. */
  readonly maxLifetimeMs: number
  /**
   * TCP keepalive idle delay (ms) that the sweep turns on for established
   * tunnels, both legs; 0 = off. Armed by the sweep rather than at accept
   * and dial: 8 setsockopt calls cost 11–13 µs per tunnel (issue 12), and
   * most tunnels end before the first sweep.
   */
  readonly keepAliveMs: number
  /** Called after a tunnel leaves (the accept guard may resume). */
  readonly onDelete?: () => void
}

/** What Tunnel.sweep() enforces. */
export type SweepLimits = Pick<RegistryOptions, 'idleMs' | 'maxLifetimeMs' | 'keepAliveMs'>

export class TunnelRegistry {
  private readonly tunnels = new Set<Tunnel>()
  private readonly perClient = new Map<string, number>()
  /** `limits.max_tunnels_per_user` (issue 15): open tunnels per user, and whom each counted tunnel counts for; empty while the limit is off. */
  private readonly perUser = new Map<string, number>()
  private readonly userOf = new Map<Tunnel, string>()
  private readonly waiters = new Set<() => void>()
  private sweep: NodeJS.Timeout | undefined
  private readonly sweepEveryMs: number
  private readonly opts: RegistryOptions

  constructor (opts: RegistryOptions) {
    this.opts = opts
    const limits = [opts.idleMs, opts.maxLifetimeMs, opts.keepAliveMs].filter(ms => ms > 0)
    // Precision of the limits is one sweep interval: a quarter of the
    // shortest limit, between 20 ms and 30 s. Keepalive counts as one, so
    // it is armed within a quarter of its delay.
    this.sweepEveryMs = limits.length === 0 ? 0 : Math.min(30_000, Math.max(20, Math.floor(Math.min(...limits) / 4)))
  }

  get size (): number { return this.tunnels.size }

  countFor (clientAddress: string): number { return this.perClient.get(clientAddress) ?? 0 }

  /** Open tunnels counted for `user` (only while `limits.max_tunnels_per_user` is on). */
  countForUser (user: string): number { return this.perUser.get(user) ?? 0 }

  /** Count an admitted tunnel for its user, until it leaves the registry. */
  addUser (t: Tunnel, user: string): void {
    if (!this.tunnels.has(t) || this.userOf.has(t)) return
    this.userOf.set(t, user)
    this.perUser.set(user, this.countForUser(user) + 1)
  }

  add (t: Tunnel): void {
    this.tunnels.add(t)
    this.perClient.set(t.clientAddress, this.countFor(t.clientAddress) + 1)
    if (this.sweep === undefined && this.sweepEveryMs > 0) {
      this.sweep = setInterval(() => this.sweepOnce(), this.sweepEveryMs)
      this.sweep.unref()
    }
  }

  delete (t: Tunnel): void {
    if (!this.tunnels.delete(t)) return
    const n = this.countFor(t.clientAddress) - 1
    if (n > 0) this.perClient.set(t.clientAddress, n)
    else this.perClient.delete(t.clientAddress)
    const user = this.userOf.size === 0 ? undefined : this.userOf.get(t)
    if (user !== undefined) {
      this.userOf.delete(t)
      const u = this.countForUser(user) - 1
      if (u > 0) this.perUser.set(user, u)
      else this.perUser.delete(user)
    }
    this.opts.onDelete?.()
    if (this.tunnels.size === 0) {
      clearInterval(this.sweep)
      this.sweep = undefined
      for (const w of this.waiters) w()
      this.waiters.clear()
    }
  }

  /** Close every tunnel (shutdown, revoke-all). */
  closeAll (how: CloseHow): void {
    for (const t of [...this.tunnels]) t.destroy(how)
  }

  /** Tunnels matching `pred`, e.g. those a reloaded policy would deny. */
  filter (pred: (t: Tunnel) => boolean): Tunnel[] {
    return [...this.tunnels].filter(pred)
  }

  /** Resolves once no tunnel is left, or after `timeoutMs`; true when empty. */
  async drained (timeoutMs: number): Promise<boolean> {
    if (this.tunnels.size === 0) return true
    return await new Promise<boolean>((resolve) => {
      const done = (): void => { clearTimeout(timer); resolve(true) }
      const timer = setTimeout(() => { this.waiters.delete(done); resolve(false) }, timeoutMs)
      this.waiters.add(done)
    })
  }

  private sweepOnce (): void {
    const now = Date.now()
    // Each tunnel keeps its own idle bookkeeping (Tunnel.sweep); this is only the clock.
    for (const t of this.tunnels) t.sweep(now, this.opts)
  }
}

/**
 * A listener's `onClosed` (tunnel/tunnel-setup.ts TunnelHost): the tunnel
 * leaves the registry and is counted, once each, at its end (issue 15: no
 * metrics work while it runs).
 */
export function onClosedFor (ctx: { readonly registry: TunnelRegistry, readonly metrics: ProxyMetrics }, listener: string): (t: Tunnel) => void {
  const { registry, metrics } = ctx
  return (t) => {
    registry.delete(t)
    metrics.tunnelClosed(t, listener)
  }
}
