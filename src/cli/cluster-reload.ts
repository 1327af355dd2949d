/**
 * One reload line for the whole cluster (issue 15, "Reloads an operator can
 * follow"). Under `--workers` only the primary watches the config files and
 * takes SIGHUP; each attempt its reloader starts (config/reloader.ts
 * `workers`) asks every listening worker to reload too, over the cluster IPC
 * channel, and waits for their answers, bounded, so its line can count them.
 * Workers log their own line at debug. A SIGHUP that reaches a worker itself
 * is passed to the primary, which makes it an attempt for all.
 *
 * Attempts are matched by a request id, not by content: a worker loads only
 * when the primary asks, as part of the primary's attempt, so nothing has
 * to be paired up after the fact (when every process watched the files,
 * each one's debounce and settle timers made its own attempts, at its own
 * moments, and logged them).
 */
import type { Worker } from 'node:cluster'
import type { Logger } from 'pino'
import type { WorkerAnswer, WorkersHeard } from '../config/cluster-outcome.js'
import type { ReloadOutcome, Reloader } from '../config/reloader.js'

/** primary → worker: reload, as part of attempt `id`. */
interface ReloadRequest { readonly type: 'sluice:reload', readonly id: number, readonly why: string }
/** worker → primary: how it ended. */
interface ReloadAnswer {
  readonly type: 'sluice:reload-answer'
  readonly id: number
  readonly result: ReloadOutcome['result']
  readonly hash: string
  readonly problems?: readonly string[]
}
/** worker → primary: a SIGHUP reached this worker. */
interface ReloadAsk { readonly type: 'sluice:reload-ask' }

/** How long an attempt's line waits for the workers (ms): a 20,000-rule policy loads in 1–2 s. */
export const DEFAULT_RELOAD_WAIT_MS = 10_000

const is = <T extends { type: string }>(m: unknown, type: T['type']): m is T =>
  typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type

export function isReloadRequest (m: unknown): m is ReloadRequest { return is<ReloadRequest>(m, 'sluice:reload') }

export interface PrimaryReloadOptions {
  /** The workers to ask: connected, and listening (one still starting loads the file as it starts). */
  readonly workers: () => Iterable<Worker>
  /** A worker passed on a SIGHUP it got. */
  readonly onAsk: (worker: Worker) => void
  readonly timeoutMs?: number
}

export interface PrimaryReloads {
  /** The primary reloader's `workers`: ask them all, resolve with what came back in time. Never rejects. */
  gather: (why: string) => Promise<WorkersHeard>
  /** Every message from a worker: true when it was about reloads. */
  message: (worker: Worker, m: unknown) => boolean
  /** A worker exited: no answer will come from it. */
  exited: (worker: Worker) => void
  /** Stop every wait now (the primary is exiting): no timer is left behind. */
  close: () => void
}

interface Pending { readonly waiting: Set<number>, readonly answers: WorkerAnswer[], readonly gone: number[], readonly done: () => void }

export function primaryReloads (opts: PrimaryReloadOptions): PrimaryReloads {
  const pending = new Map<number, Pending>()
  let nextId = 0
  const stopWaiting = (p: Pending, worker: number): void => { if (p.waiting.delete(worker) && p.waiting.size === 0) p.done() }
  return {
    async gather (why) {
      const id = nextId++
      const waiting = new Set<number>()
      const answers: WorkerAnswer[] = []
      const gone: number[] = []
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, opts.timeoutMs ?? DEFAULT_RELOAD_WAIT_MS)
        function done (): void {
          clearTimeout(timer)
          pending.delete(id)
          resolve()
        }
        pending.set(id, { waiting, answers, gone, done })
        for (const w of opts.workers()) {
          if (!w.isConnected()) continue
          waiting.add(w.id)
          w.send({ type: 'sluice:reload', id, why } satisfies ReloadRequest)
        }
        if (waiting.size === 0) done()
      })
      // Whoever is still waited for did not answer in time; the gone exited first.
      return { answers, silent: [...waiting, ...gone].sort((a, b) => a - b) }
    },
    message (worker, m) {
      if (is<ReloadAsk>(m, 'sluice:reload-ask')) {
        opts.onAsk(worker)
        return true
      }
      if (!is<ReloadAnswer>(m, 'sluice:reload-answer')) return false
      const p = pending.get(m.id)
      if (p?.waiting.has(worker.id) === true) {
        p.answers.push({ worker: worker.id, result: m.result, hash: m.hash, ...(m.problems === undefined ? {} : { problems: m.problems }) })
        stopWaiting(p, worker.id)
      }
      return true
    },
    exited (worker) {
      for (const p of [...pending.values()]) {
        if (p.waiting.has(worker.id)) p.gone.push(worker.id)
        stopWaiting(p, worker.id)
      }
    },
    close () { for (const p of [...pending.values()]) p.done() }
  }
}

/** In a worker: reload as the primary asks, once the reloader exists (it is made once the worker listens), and answer. */
export function answerReload (m: ReloadRequest, reloader: Promise<Reloader>, log: Logger): void {
  const send = (a: ReloadAnswer): void => { if (process.connected) process.send?.(a) }
  reloader.then(async r => await r.attempt(m.why)).then(
    (o) => send({ type: 'sluice:reload-answer', id: m.id, result: o.result, hash: o.hash, ...(o.problems === undefined ? {} : { problems: o.problems }) }),
    // No answer: the primary's line counts this worker under no_answer once its wait ends.
    (err: unknown) => log.error({ err }, 'reload failed'))
}

/** In a worker: a SIGHUP it got itself goes to the primary, which reloads every worker (this one too). */
export function askPrimary (): void {
  if (process.connected) process.send?.({ type: 'sluice:reload-ask' } satisfies ReloadAsk)
}
