/**
 * Brute-force protection: failed logins are counted per client address in
 * a window; past the threshold the client is refused with 429 and
 * Retry-After for a while. State is bounded and expires lazily (no timers).
 *
 * Verdicts are budgeted, not just counted (issue 11, finding 1): a check
 * that will end in a verdict reserves one of the `failures` the window
 * allows before it starts, so however many guesses arrive at once, at most
 * `failures` of them are judged; the rest get the locked answer. (Counting
 * only when a verdict came back let 39 guesses sent together all be judged,
 * and the 40th, the right one, answered 200.) A success releases its
 * reservation but does not forget earlier failures: otherwise anyone with
 * one working login could interleave it with guesses at another user's
 * password and never be locked out.
 */
export interface LockoutOptions {
  /** Failures within `windowMs` that lock a client; 0 disables. */
  readonly failures: number
  readonly windowMs: number
  readonly durationMs: number
  readonly maxClients?: number
}

interface Entry {
  /** Failures in the current window. */
  count: number
  windowStart: number
  lockedUntil: number
  /** Checks reserved and not yet settled (fail() or release()). */
  reserved: number
}

/** One client's count as the process that decides it (under --workers, the primary) sees it. */
export interface LockoutState {
  readonly count: number
  readonly windowStart: number
  readonly lockedUntil: number
}

/** Under --workers (issue 15): every failure counted here is also told to the primary, which counts them for all. */
export type LockoutReport = (client: string, now: number, opts: LockoutOptions) => void

/** Retry-After while the budget is held by checks in flight: they settle within a few hash times. */
const IN_FLIGHT_RETRY_S = 1

export class Lockout {
  private opts: LockoutOptions
  private readonly clients = new Map<string, Entry>()
  private report: LockoutReport | undefined

  constructor (opts: LockoutOptions) {
    this.opts = opts
  }

  /**
   * Share the count with other processes (issue 15: under --workers a
   * brute-forcer must not get N times the attempts): each failure is
   * reported, and the shared count comes back through merge(). In flight,
   * each process still reserves from the count it has.
   */
  share (report: LockoutReport): void {
    this.report = report
  }

  /**
   * The shared count for `client` (from the primary): it replaces this
   * process's within a window, never lowering it (a reply to an earlier
   * failure may arrive after a later one was counted here) and never lifting
   * a lock-out still in force; reservations in flight are kept.
   */
  merge (client: string, state: LockoutState, now = Date.now()): void {
    if (this.opts.failures <= 0) return
    const e = this.current(client, now)
    if (state.windowStart > e.windowStart) {
      e.windowStart = state.windowStart
      e.count = state.count
    } else if (state.windowStart === e.windowStart) {
      e.count = Math.max(e.count, state.count)
    }
    e.lockedUntil = Math.max(e.lockedUntil, state.lockedUntil)
  }

  /** The count for `client` now (what the primary sends back). */
  state (client: string, now = Date.now()): LockoutState {
    const e = this.current(client, now)
    return { count: e.count, windowStart: e.windowStart, lockedUntil: e.lockedUntil }
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

  /**
   * Reserve a verdict for `client` before checking its credentials: 0 when
   * it may be checked (settle with fail() or release()), else the seconds
   * for Retry-After: the lock-out's, or 1 while checks already in flight
   * hold the rest of the window's budget.
   */
  reserve (client: string, now = Date.now()): number {
    if (this.opts.failures <= 0) return 0
    const e = this.current(client, now)
    if (e.lockedUntil > now) return Math.max(1, Math.ceil((e.lockedUntil - now) / 1000))
    if (e.count + e.reserved >= this.opts.failures) return IN_FLIGHT_RETRY_S
    e.reserved++
    return 0
  }

  /** A reserved check ended without a failure (a success, or no verdict at all). */
  release (client: string): void {
    const e = this.clients.get(client)
    if (e === undefined) return
    if (e.reserved > 0) e.reserved--
    if (e.reserved === 0 && e.count === 0 && e.lockedUntil === 0) this.clients.delete(client)
  }

  /** Count a failure (settling a reservation, if any); true when this failure starts a lock-out (log it once). */
  fail (client: string, now = Date.now()): boolean {
    if (this.opts.failures <= 0) return false
    const e = this.current(client, now)
    if (e.reserved > 0) e.reserved--
    // While locked out, further failures neither extend nor lift the lock.
    if (e.lockedUntil > now) return false
    e.count++
    const locks = e.count >= this.opts.failures
    if (locks) e.lockedUntil = now + this.opts.durationMs
    // After counting here: the primary's count (this failure included) then replaces ours, however soon it comes back.
    this.report?.(client, now, this.opts)
    return locks
  }

  /** The client's entry, its window restarted if it ran out or a lock-out ended; made if missing (bounded). */
  private current (client: string, now: number): Entry {
    let e = this.clients.get(client)
    if (e === undefined) {
      if (this.clients.size >= (this.opts.maxClients ?? 100_000)) {
        const oldest = this.clients.keys().next()
        if (oldest.done !== true) this.clients.delete(oldest.value)
      }
      e = { count: 0, windowStart: now, lockedUntil: 0, reserved: 0 }
      this.clients.set(client, e)
      return e
    }
    if (e.lockedUntil > now) return e
    if (e.lockedUntil !== 0 || now - e.windowStart > this.opts.windowMs) {
      e.count = 0
      e.windowStart = now
      e.lockedUntil = 0
    }
    return e
  }
}
