/**
 * `limits.max_bytes_per_user` (issue 15: "bytes per user per period,
 * enforced per instance"): the tunnel bytes, up and down, each
 * authenticated user moved in the current window, and whether a user has
 * reached the limit.
 *
 * Windows are fixed and aligned to the Unix epoch, in UTC: a `1h` period
 * ends on the hour, a `1d` one at 00:00 UTC. Aligned to the clock rather
 * than to the process's start, every worker and instance ends its window at
 * the same moment and answers the same `Retry-After`, and neither a reload
 * nor a restart moves the boundary (a restart does lose the counts: they
 * are held in memory only). The counts are this process's own: under
 * `--workers` each worker counts the tunnels it relays.
 *
 * Bytes arrive from the registry (server/registry.ts): for open tunnels at
 * its sweep, the delta since the previous one, and the rest when a tunnel
 * closes. The relay does no per-chunk work for this (issue 12's rule).
 */

/** The limit in force: `bytes` per `period` (ms), as the schema gives it. */
export interface ByteQuota {
  readonly bytes: number
  readonly period: number
}

/** A user at the limit: what they used, the limit, and whole seconds until the window ends (at least 1). */
export interface OverQuota {
  readonly used: number
  readonly limit: number
  readonly retryAfterS: number
}

export class UserBytes {
  private readonly quota: () => ByteQuota | undefined
  private readonly now: () => number
  /** Bytes per user in the current window; users with none are absent. */
  private readonly used = new Map<string, number>()
  /** When the current window ends (epoch ms); 0 before the first. */
  private windowEnd = 0
  /** The period the current window was cut with. */
  private period = 0

  /**
   * `quota` is read at every use, so a reload's new limit applies to the
   * next decision and the counts carry over; `now` is the wall clock
   * (tests inject one).
   */
  constructor (quota: () => ByteQuota | undefined, now: () => number = Date.now) {
    this.quota = quota
    this.now = now
  }

  /** A limit is configured: the registry then counts and sweeps for it. */
  get on (): boolean { return this.quota() !== undefined }

  /** Bytes `user` moved in the current window (as counted so far). */
  usedBy (user: string): number {
    return this.window() === undefined ? 0 : (this.used.get(user) ?? 0)
  }

  /** Count `bytes` for `user`; true when the user is at or over the limit. */
  add (user: string, bytes: number): boolean {
    const q = this.window()
    if (q === undefined) return false
    const used = (this.used.get(user) ?? 0) + bytes
    if (used > 0) this.used.set(user, used)
    return used >= q.bytes
  }

  /** The refusal's facts when `user` has reached the limit, else undefined. */
  over (user: string): OverQuota | undefined {
    const q = this.window()
    if (q === undefined) return undefined
    const used = this.used.get(user) ?? 0
    if (used < q.bytes) return undefined
    return { used, limit: q.bytes, retryAfterS: Math.max(1, Math.ceil((this.windowEnd - this.now()) / 1000)) }
  }

  /**
   * The limit in force, after starting a new window if the last one ended.
   * A reload that changes the period keeps the counts and ends the window
   * at the new period's next boundary; one that removes the limit drops
   * them (nothing is counted while there is none).
   */
  private window (): ByteQuota | undefined {
    const q = this.quota()
    if (q === undefined) {
      if (this.windowEnd !== 0) {
        this.used.clear()
        this.windowEnd = 0
      }
      return undefined
    }
    const now = this.now()
    if (now >= this.windowEnd) this.used.clear()
    if (now >= this.windowEnd || q.period !== this.period) {
      this.period = q.period
      this.windowEnd = (Math.floor(now / q.period) + 1) * q.period
    }
    return q
  }
}
