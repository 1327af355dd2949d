/**
 * Brute-force protection: failed logins are counted per client address in
 * a window; past the threshold the client is refused with 429 and
 * Retry-After for a while. State is bounded and expires lazily (no timers).
 */
export interface LockoutOptions {
  /** Failures within `windowMs` that lock a client; 0 disables. */
  readonly failures: number
  readonly windowMs: number
  readonly durationMs: number
  readonly maxClients?: number
}

interface Entry { count: number, windowStart: number, lockedUntil: number }

export class Lockout {
  private opts: LockoutOptions
  private readonly clients = new Map<string, Entry>()

  constructor (opts: LockoutOptions) {
    this.opts = opts
  }

  /** New thresholds (on reload); current counts and lock-outs are kept. */
  configure (opts: LockoutOptions): void {
    this.opts = opts
  }

  /** Seconds until `client` may try again, or 0 when not locked out. */
  retryAfter (client: string, now = Date.now()): number {
    const e = this.clients.get(client)
    if (e === undefined || e.lockedUntil <= now) return 0
    return Math.max(1, Math.ceil((e.lockedUntil - now) / 1000))
  }

  /** Count a failure; true when this failure starts a lock-out (log it once). */
  fail (client: string, now = Date.now()): boolean {
    if (this.opts.failures <= 0) return false
    let e = this.clients.get(client)
    // While locked out, further failures neither extend nor lift the lock.
    if (e !== undefined && e.lockedUntil > now) return false
    if (e === undefined || now - e.windowStart > this.opts.windowMs || e.lockedUntil !== 0) {
      if (e === undefined && this.clients.size >= (this.opts.maxClients ?? 100_000)) {
        const oldest = this.clients.keys().next()
        if (oldest.done !== true) this.clients.delete(oldest.value)
      }
      e = { count: 0, windowStart: now, lockedUntil: 0 }
      this.clients.set(client, e)
    }
    e.count++
    if (e.count >= this.opts.failures && e.lockedUntil <= now) {
      e.lockedUntil = now + this.opts.durationMs
      return true
    }
    return false
  }

  /** A success forgets earlier failures. */
  succeed (client: string): void {
    const e = this.clients.get(client)
    if (e !== undefined && e.lockedUntil <= Date.now()) this.clients.delete(client)
  }
}
