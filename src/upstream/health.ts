/**
 * Passive health of parent proxies: a parent that cannot be reached is
 * marked down for a backoff period (doubling per consecutive failure, up to
 * a cap) and skipped while down, unless every choice is down. State changes
 * are logged once each.
 *
 * Under --workers (issue 15, "State across workers") each change is also
 * reported to the primary, which decides it for every worker and sends the
 * result back (cli/cluster-parents.ts); a worker adopts it (adopt()) so it
 * skips a parent another worker found dead without trying it. The primary
 * then writes the one `parent marked down` / `parent back up` line per
 * change; a worker's own lines go to debug.
 */
import type { Logger } from 'pino'

/** A parent's state: consecutive failures (0: up) and until when it is skipped (epoch ms). */
export interface ParentState { readonly failures: number, readonly downUntil: number }

/**
 * The state as the primary decided it, numbered per parent: a worker takes
 * it only when `gen` is newer than the last it took, so a message that
 * arrives late (or twice) never brings an older state back.
 */
export interface SharedParentState extends ParentState { readonly gen: number }

/** What a worker saw, for the primary (issue 15). */
export type HealthReport =
  | { readonly kind: 'down', readonly parent: string, readonly reason: string, readonly at: number, readonly baseMs: number, readonly maxMs: number }
  | { readonly kind: 'up', readonly parent: string, readonly at: number }

/**
 * The state after a failure seen at `now`, or undefined when the parent is
 * already down then: failures of tunnels that were in flight when it went
 * down are the same outage and must not stretch the backoff. One rule for
 * a process on its own and for the primary deciding for all workers.
 */
export function markDown (s: ParentState | undefined, now: number, baseMs: number, maxMs: number): ParentState | undefined {
  if (s !== undefined && s.downUntil > now) return undefined
  const failures = (s?.failures ?? 0) + 1
  return { failures, downUntil: now + backoffMs(failures, baseMs, maxMs) }
}

/** The backoff after `failures` in a row: base doubling per failure, at most `maxMs`. */
export function backoffMs (failures: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(20, failures - 1))
}

interface State { failures: number, downUntil: number, gen: number }

export class ParentHealth {
  private readonly states = new Map<string, State>()
  private readonly log: Logger
  private readonly baseMs: number
  private readonly maxMs: number
  private report: ((r: HealthReport) => void) | undefined

  constructor (log: Logger, baseMs: number, maxMs = Math.max(baseMs, 300_000)) {
    this.log = log
    this.baseMs = baseMs
    this.maxMs = maxMs
  }

  /**
   * Under --workers (issue 15): report every change to the primary, which
   * logs it for the cluster and sends the outcome back through adopt().
   * This process still applies its own change at once, so it does not try
   * the parent again while the answer is on its way.
   */
  share (report: (r: HealthReport) => void): void {
    this.report = report
  }

  isDown (name: string, now = Date.now()): boolean {
    const s = this.states.get(name)
    return s !== undefined && s.downUntil > now
  }

  failed (name: string, reason: string, now = Date.now()): void {
    const s = this.states.get(name)
    const next = markDown(s, now, this.baseMs, this.maxMs)
    if (next === undefined) return
    this.states.set(name, { ...next, gen: s?.gen ?? 0 })
    const fields = { parent: name, reason, failures: next.failures, backoff_ms: next.downUntil - now }
    if (this.report === undefined) {
      this.log.warn(fields, 'parent marked down')
      return
    }
    this.log.debug(fields, 'parent failed: reported to the primary')
    this.report({ kind: 'down', parent: name, reason, at: now, baseMs: this.baseMs, maxMs: this.maxMs })
  }

  succeeded (name: string, now = Date.now()): void {
    const s = this.states.get(name)
    if (s === undefined || s.failures === 0) return
    this.clear(name, s)
    if (this.report === undefined) {
      this.log.info({ parent: name, after_failures: s.failures }, 'parent back up')
      return
    }
    this.log.debug({ parent: name, after_failures: s.failures }, 'parent answered: reported to the primary')
    this.report({ kind: 'up', parent: name, at: now })
  }

  /**
   * The primary's decision for every worker (issue 15): taken as this
   * process's own when newer than the last one taken (by `gen`), whatever
   * this process saw meanwhile; an older or repeated one changes nothing.
   * Logged at debug: the primary logs the change once for all.
   */
  adopt (name: string, shared: SharedParentState): void {
    const s = this.states.get(name)
    if (s !== undefined && shared.gen <= s.gen) return
    this.states.set(name, { failures: shared.failures, downUntil: shared.downUntil, gen: shared.gen })
    // What this process reported itself comes back unchanged: nothing new to say.
    if (shared.failures > 0 && (s?.failures !== shared.failures || s.downUntil !== shared.downUntil)) {
      this.log.debug({ parent: name, failures: shared.failures, down_until: new Date(shared.downUntil).toISOString() }, 'parent down for every worker')
    } else if (shared.failures === 0 && s !== undefined && s.failures > 0) {
      this.log.debug({ parent: name }, 'parent up for every worker')
    }
  }

  /** For logs and metrics: every parent currently marked down. */
  down (now = Date.now()): string[] {
    return [...this.states].filter(([, s]) => s.downUntil > now).map(([n]) => n)
  }

  /** Up again: forgotten, unless a shared generation must be kept to judge later messages by. */
  private clear (name: string, s: State): void {
    if (s.gen === 0) this.states.delete(name)
    else this.states.set(name, { failures: 0, downUntil: 0, gen: s.gen })
  }
}
