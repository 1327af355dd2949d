/**
 * State every worker shares through the primary (issue 15, "State across
 * workers"): failed-login counts, so a brute-forcer gets `auth.lockout.failures`
 * guesses in all, not that many per worker. A worker reports each failure;
 * the primary counts it in its own Lockout (configured from the report: the
 * primary does not load the config) and sends the client's count back to
 * every worker, which takes it as its own (auth/lockout.ts merge). Messages
 * are small objects over the cluster IPC channel; a lost worker loses
 * nothing the primary does not keep. Parent health is shared the same way:
 * cluster-parents.ts.
 */
import type { Worker } from 'node:cluster'
import { Lockout, type LockoutOptions, type LockoutState } from '../auth/lockout.js'

/** worker → primary: one failed login. */
export interface LockoutFailMessage {
  readonly type: 'sluice:lockout-fail'
  readonly client: string
  readonly now: number
  readonly opts: LockoutOptions
}

/** primary → every worker: the client's count now. */
export interface LockoutStateMessage {
  readonly type: 'sluice:lockout-state'
  readonly client: string
  readonly state: LockoutState
}

function isFail (m: unknown): m is LockoutFailMessage {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'sluice:lockout-fail'
}

export function isLockoutState (m: unknown): m is LockoutStateMessage {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === 'sluice:lockout-state'
}

/** The primary's side: count what workers report, tell them all. */
export function primaryLockout (workers: () => Iterable<Worker>): (m: unknown) => void {
  const lockout = new Lockout({ failures: 0, windowMs: 0, durationMs: 0 })
  return (m) => {
    if (!isFail(m)) return
    lockout.configure(m.opts)
    lockout.fail(m.client, m.now)
    const reply: LockoutStateMessage = { type: 'sluice:lockout-state', client: m.client, state: lockout.state(m.client, m.now) }
    for (const w of workers()) if (w.isConnected()) w.send(reply)
  }
}

/** A worker's side: report failures to the primary. */
export function workerLockout (lockout: Lockout, send: (m: LockoutFailMessage) => void): void {
  lockout.share((client, now, opts) => { send({ type: 'sluice:lockout-fail', client, now, opts }) })
}
