/**
 * Stop accepting before file descriptors run out (issue 11, finding 7).
 *
 * At the fd limit, libuv's accept() fails with EMFILE and libuv drains the
 * backlog with a reserved descriptor, accepting and closing each pending
 * connection: those clients get no response, and Node hears nothing. So
 * Sluice never lets it get there. It counts the descriptors it holds (those
 * open when it started listening, one per waiting connection, two per
 * tunnel) and, `RESERVE` short of the limit, stops listening: new clients
 * are refused by the kernel (a clear ECONNREFUSED a balancer retries
 * elsewhere) instead of being accepted into silence. Tunnels carry on; when
 * enough close, it listens again on the same address. Each pause is logged
 * once, with the counts, and counted.
 */
import { readdirSync, readFileSync } from 'node:fs'
import type { Logger } from 'pino'

/** Descriptors kept free for dials, DNS, log and config files while paused. */
export const RESERVE = 64

/** The soft RLIMIT_NOFILE, from /proc (Linux); Infinity where it cannot be read. */
export function fdLimit (): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    return m?.[1] === undefined || m[1] === 'unlimited' ? Infinity : Number(m[1])
  } catch {
    return Infinity
  }
}

/** Descriptors open now (once, at start-up). */
export function openFds (): number {
  try {
    return readdirSync('/proc/self/fd').length
  } catch {
    return 0
  }
}

export interface AcceptGuardOptions {
  readonly log: Logger
  /** The process's descriptor limit. */
  readonly limit: number
  /** Descriptors open before any client connected. */
  readonly base: number
  /** Descriptors held for clients now (waiting connections + 2 per tunnel). */
  readonly inUse: () => number
  readonly pause: () => void
  readonly resume: () => void
}

export class AcceptGuard {
  /** Times accepting was paused (a metric's source). */
  pauses = 0
  private paused = false
  private pausedAt = 0
  private readonly pauseAt: number
  private readonly resumeBelow: number
  private readonly opts: AcceptGuardOptions

  constructor (opts: AcceptGuardOptions) {
    this.opts = opts
    this.pauseAt = opts.limit - opts.base - RESERVE
    // Hysteresis: do not flap on every close (16 descriptors, less for a tiny budget).
    this.resumeBelow = this.pauseAt - Math.max(1, Math.min(Math.floor(RESERVE / 4), Math.floor(this.pauseAt / 4)))
  }

  /** How many client descriptors fit before accepting pauses. */
  get capacity (): number { return this.pauseAt }

  get isPaused (): boolean { return this.paused }

  /** After an accept or a close: pause or resume as the count says. */
  check (): void {
    if (this.pauseAt === Infinity) return
    const used = this.opts.inUse()
    if (!this.paused && used >= this.pauseAt) {
      this.paused = true
      this.pausedAt = performance.now()
      this.pauses++
      this.opts.log.warn({ fds_in_use: used + this.opts.base, fd_limit: this.opts.limit, reserve: RESERVE, pauses: this.pauses },
        'accepting paused: file descriptors nearly exhausted')
      this.opts.pause()
    } else if (this.paused && used < this.resumeBelow) {
      this.paused = false
      this.opts.log.info({ fds_in_use: used + this.opts.base, fd_limit: this.opts.limit, paused_ms: Math.round(performance.now() - this.pausedAt) },
        'accepting resumed')
      this.opts.resume()
    }
  }
}
