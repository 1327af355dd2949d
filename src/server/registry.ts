/**
 * The live tunnels. Node's closeAllConnections() cannot see upgraded
 * sockets (nodejs/node#53536), so shutdown, limits and leak checks use this.
 *
 * Idle and lifetime limits are enforced by one shared sweep instead of a
 * timer per socket: it compares each tunnel's byte counters with the last
 * sweep, so the data path does no per-chunk bookkeeping at all. The sweep
 * timer exists only while there are tunnels.
 *
 * The same sweep feeds `limits.max_bytes_per_user` (issue 15,
 * server/user-bytes.ts): while that limit is on it ticks at least every
 * QUOTA_SWEEP_MS, counts each user's open tunnels' new bytes and closes
 * the tunnels of a user who reached the limit (`close: "quota"`); a
 * tunnel's last bytes are counted when it leaves.
 */
import type { CloseHow, Tunnel } from '../tunnel/tunnel.js'
import type { ProxyMetrics } from '../observability/proxy-metrics.js'
import { ProxyError } from '../errors.js'
import type { UserBytes } from './user-bytes.js'

/**
 * How often open tunnels' bytes are counted while a byte quota is on: the
 * precision of that limit (a user may go over it by what their tunnels move
 * in about this long). One pass over the tunnels, a few counter reads each.
 */
export const QUOTA_SWEEP_MS = 1000

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
  /** `limits.max_bytes_per_user` (issue 15): the counts this registry's tunnels feed. */
  readonly userBytes?: UserBytes
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
  /** The running timer's interval; 0 while there is none. */
  private tickMs = 0
  /** The idle, lifetime and keepalive sweep's interval (0 = none); the timer may tick faster for the byte quota. */
  private readonly sweepEveryMs: number
  /** When those limits are next swept, while the timer ticks faster than sweepEveryMs. */
  private nextLimitsSweep = 0
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
    this.retime()
  }

  /**
   * Start, change or stop the sweep timer for the limits in force: from
   * add(), and after a reload, which may turn the byte quota on or off.
   */
  retime (): void {
    const quotaMs = this.opts.userBytes?.on === true ? QUOTA_SWEEP_MS : 0
    const limitsMs = this.sweepEveryMs
    const every = this.tunnels.size === 0 ? 0 : quotaMs === 0 ? limitsMs : limitsMs === 0 ? quotaMs : Math.min(limitsMs, quotaMs)
    if (every === this.tickMs) return
    clearInterval(this.sweep)
    this.sweep = undefined
    this.tickMs = every
    if (every === 0) return
    // Half a tick early, so a tick that fires a little early does not put the limits off by a whole one.
    this.nextLimitsSweep = Date.now() + limitsMs - every / 2
    this.sweep = setInterval(() => this.sweepOnce(), every)
    this.sweep.unref()
  }

  delete (t: Tunnel): void {
    if (!this.tunnels.delete(t)) return
    const n = this.countFor(t.clientAddress) - 1
    if (n > 0) this.perClient.set(t.clientAddress, n)
    else this.perClient.delete(t.clientAddress)
    // The bytes its last sweep did not see (issue 15): a short tunnel is counted only here.
    const bytes = this.opts.userBytes
    if (t.user !== undefined && bytes?.on === true) bytes.add(t.user, t.takeBytes())
    const user = this.userOf.size === 0 ? undefined : this.userOf.get(t)
    if (user !== undefined) {
      this.userOf.delete(t)
      const u = this.countForUser(user) - 1
      if (u > 0) this.perUser.set(user, u)
      else this.perUser.delete(user)
    }
    this.opts.onDelete?.()
    if (this.tunnels.size === 0) {
      this.retime()
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
    if (this.sweepEveryMs > 0 && (this.tickMs === this.sweepEveryMs || now >= this.nextLimitsSweep)) {
      this.nextLimitsSweep = now + this.sweepEveryMs - this.tickMs / 2
      // Each tunnel keeps its own idle bookkeeping (Tunnel.sweep); this is only the clock.
      for (const t of this.tunnels) t.sweep(now, this.opts)
    }
    const bytes = this.opts.userBytes
    if (bytes?.on === true) this.countBytes(bytes)
  }

  /**
   * `limits.max_bytes_per_user`: count every user's open tunnels' new
   * bytes, then close the tunnels of each user now at the limit (issue 15:
   * an operator who sets a quota wants it to hold for long downloads too,
   * not only for the next CONNECT).
   */
  private countBytes (bytes: UserBytes): void {
    let over: Set<string> | undefined
    for (const t of this.tunnels) {
      const user = t.user
      if (user === undefined || t.state !== 'established') continue
      if (bytes.add(user, t.takeBytes())) (over ??= new Set()).add(user)
    }
    if (over === undefined) return
    for (const t of [...this.tunnels]) {
      // Its log line and sluice_tunnels_total say ERR_USER_BYTES, as for the CONNECTs refused from now on.
      if (t.state === 'established' && t.user !== undefined && over.has(t.user)) t.destroy('quota', new ProxyError('ERR_USER_BYTES', { detail: 'closed at the limit' }))
    }
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
