/**
 * Parent health shared through the primary (issue 15, "State across
 * workers"): without it each worker finds a dead parent on its own, so N
 * workers try it N times per outage and log it N times. A worker reports
 * what it sees (a failure, or an answer after failures); the primary
 * decides it with the same rule a single process uses (upstream/health.ts
 * markDown: a failure while already down is the same outage), numbers each
 * change per parent, logs it once for the cluster and sends it to every
 * connected worker, which adopts it as its own (ParentHealth.adopt: only a
 * newer number counts, so a late or repeated message changes nothing).
 *
 * The primary loads no config for this: a failure report carries the
 * backoff settings of the worker that saw it. A worker that starts (or is
 * restarted) asks for the current states, so it does not try a parent the
 * others already know is down. Lock-outs: cluster-state.ts.
 */
import type { Worker } from 'node:cluster'
import type { Logger } from 'pino'
import { markDown, type HealthReport, type ParentHealth, type SharedParentState } from '../upstream/health.js'

/** worker → primary: a parent failed, or answered after failures. */
export interface ParentReportMessage {
  readonly type: 'sluice:parent-report'
  readonly report: HealthReport
}

/** worker → primary, once its handler is in: send me every parent's state. */
export interface ParentSyncMessage { readonly type: 'sluice:parent-sync' }

/** primary → workers: a parent's state as decided for all. */
export interface ParentStateMessage {
  readonly type: 'sluice:parent-state'
  readonly parent: string
  readonly state: SharedParentState
}

/** Parent names the primary keeps; they come from the workers' configs, so this is only a backstop. */
const MAX_PARENTS = 10_000

const typed = (m: unknown, type: string): boolean =>
  typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type

export function isParentState (m: unknown): m is ParentStateMessage { return typed(m, 'sluice:parent-state') }

/**
 * The primary's side: decide what workers report, log each change once,
 * tell every connected worker (send() to one that disconnected would emit
 * 'error' on its Worker). Returns the handler for `cluster.on('message')`.
 */
export function primaryParentHealth (workers: () => Iterable<Worker>, log: Logger): (from: Worker, m: unknown) => void {
  const states = new Map<string, SharedParentState>()
  /** When each parent was last marked down: an answer seen before that is older news (worker channels are not ordered). */
  const downAt = new Map<string, number>()
  const tell = (w: Worker, parent: string, state: SharedParentState): void => {
    if (w.isConnected()) w.send({ type: 'sluice:parent-state', parent, state } satisfies ParentStateMessage)
  }
  const decided = (parent: string, state: SharedParentState): void => {
    states.delete(parent)
    if (states.size >= MAX_PARENTS) {
      const oldest = states.keys().next()
      if (oldest.done !== true) { states.delete(oldest.value); downAt.delete(oldest.value) }
    }
    states.set(parent, state)
    for (const w of workers()) tell(w, parent, state)
  }
  return (from, m) => {
    if (typed(m, 'sluice:parent-sync')) {
      for (const [parent, state] of states) tell(from, parent, state)
      return
    }
    if (!typed(m, 'sluice:parent-report')) return
    const r = (m as ParentReportMessage).report
    const cur = states.get(r.parent)
    const gen = (cur?.gen ?? 0) + 1
    if (r.kind === 'down') {
      const next = markDown(cur, r.at, r.baseMs, r.maxMs)
      if (next === undefined) {
        // Found by this worker before the news reached it: the same outage. It takes the cluster's state.
        if (cur !== undefined) tell(from, r.parent, cur)
        return
      }
      log.warn({ parent: r.parent, reason: r.reason, failures: next.failures, backoff_ms: next.downUntil - r.at, reported_by: from.id }, 'parent marked down')
      downAt.set(r.parent, r.at)
      decided(r.parent, { ...next, gen })
      return
    }
    if (cur === undefined || cur.failures === 0) return
    // An answer from before the outage was decided, arriving after it: older news. The sender has
    // cleared its own state meanwhile, so the cluster's goes out again, numbered anew, to take it back.
    if (r.at < (downAt.get(r.parent) ?? 0)) { decided(r.parent, { ...cur, gen }); return }
    log.info({ parent: r.parent, after_failures: cur.failures, reported_by: from.id }, 'parent back up')
    decided(r.parent, { failures: 0, downUntil: 0, gen })
  }
}

/**
 * A worker's side: report what `health` sees to the primary. Send
 * PARENT_SYNC once the worker takes messages; the states come back as
 * `sluice:parent-state` (isParentState), for ParentHealth.adopt.
 */
export function workerParentHealth (health: ParentHealth, send: (m: ParentReportMessage) => void): void {
  health.share((report) => { send({ type: 'sluice:parent-report', report }) })
}

/** The message a worker sends, once its handler is in, for every parent's current state. */
export const PARENT_SYNC: ParentSyncMessage = Object.freeze({ type: 'sluice:parent-sync' })
