/**
 * Passive health of parent proxies: a parent that cannot be reached is
 * marked down for a backoff period (doubling per consecutive failure, up to
 * a cap) and skipped while down, unless every choice is down. State changes
 * are logged once each.
 */
import type { Logger } from 'pino'

interface State { failures: number, downUntil: number }

export class ParentHealth {
  private readonly states = new Map<string, State>()
  private readonly log: Logger
  private readonly baseMs: number
  private readonly maxMs: number

  constructor (log: Logger, baseMs: number, maxMs = Math.max(baseMs, 300_000)) {
    this.log = log
    this.baseMs = baseMs
    this.maxMs = maxMs
  }

  isDown (name: string, now = Date.now()): boolean {
    const s = this.states.get(name)
    return s !== undefined && s.downUntil > now
  }

  failed (name: string, reason: string, now = Date.now()): void {
    const s = this.states.get(name) ?? { failures: 0, downUntil: 0 }
    // Failures of tunnels that were already in flight when it went down are
    // the same outage: they must not stretch the backoff.
    if (s.downUntil > now) return
    s.failures++
    const backoff = Math.min(this.maxMs, this.baseMs * 2 ** Math.min(20, s.failures - 1))
    s.downUntil = now + backoff
    this.states.set(name, s)
    this.log.warn({ parent: name, reason, failures: s.failures, backoff_ms: backoff }, 'parent marked down')
  }

  succeeded (name: string): void {
    const s = this.states.get(name)
    if (s === undefined) return
    this.states.delete(name)
    this.log.info({ parent: name, after_failures: s.failures }, 'parent back up')
  }

  /** For logs and metrics: every parent currently marked down. */
  down (now = Date.now()): string[] {
    return [...this.states].filter(([, s]) => s.downUntil > now).map(([n]) => n)
  }
}
