/**
 * Under `--workers`, one reload attempt ends in one line for the whole
 * cluster (issue 15: "every reload attempt should end in exactly one line"),
 * not one per process: the primary's. Each worker reloads when the primary
 * asks and answers how it ended (cli/cluster-reload.ts); this module is what
 * the primary's reloader makes of the answers: counts for the line and for
 * `/config`, and who, if anyone, does not run what the primary runs.
 */
import type { ReloadOutcome } from './reloader.js'

/** One worker's answer for one attempt. */
export interface WorkerAnswer {
  /** node:cluster's worker id, as on every worker's log lines. */
  readonly worker: number
  readonly result: ReloadOutcome['result']
  /** The hash it runs after the attempt. */
  readonly hash: string
  readonly problems?: readonly string[]
}

/** What the primary heard about one attempt. */
export interface WorkersHeard {
  readonly answers: readonly WorkerAnswer[]
  /** Workers asked that did not answer in time, or exited first. */
  readonly silent: readonly number[]
}

/** How the workers' reloads ended: `applied` is `reloaded`, as the metric's label says. */
export interface WorkerCounts {
  readonly applied: number
  readonly unchanged: number
  readonly rejected: number
  readonly no_answer: number
}

/** A worker that does not run the primary's configuration after an attempt. */
export interface Disagreement {
  readonly worker: number
  /** Its own result, or `no_answer`. */
  readonly result: ReloadOutcome['result'] | 'no_answer'
  readonly hash?: string
  readonly problems?: readonly string[]
}

export interface WorkersSummary {
  readonly counts: WorkerCounts
  /**
   * Non-empty when the cluster is not of one mind: a worker ended on another
   * hash than the primary's (say its read caught a save the primary's did
   * not), or did not answer. `unchanged` beside `applied` on the same hash is
   * agreement: a worker restarted after the change already ran it.
   */
  readonly disagree: readonly Disagreement[]
}

export function summarise (heard: WorkersHeard, hash: string): WorkersSummary {
  const count = (r: ReloadOutcome['result']): number => heard.answers.filter(a => a.result === r).length
  const disagree: Disagreement[] = heard.answers
    .filter(a => a.hash !== hash)
    .map(a => ({ worker: a.worker, result: a.result, hash: a.hash, ...(a.problems === undefined ? {} : { problems: a.problems }) }))
  for (const worker of heard.silent) disagree.push({ worker, result: 'no_answer' })
  return {
    counts: { applied: count('reloaded'), unchanged: count('unchanged'), rejected: count('rejected'), no_answer: heard.silent.length },
    disagree: disagree.sort((a, b) => a.worker - b.worker)
  }
}
