/**
 * A bounded, fair queue of password checks (issue 11, finding 2). Checks
 * are grouped by a key (the client address) and run at most `concurrency`
 * at a time. The next check to run comes from the key with the fewest
 * checks running, and among those the one served longest ago (a key never
 * served goes first), so one client's backlog delays another client's
 * first check by at most the time until a running check ends: one hash
 * time, whatever the number of workers.
 *
 * Bounds (both count checks waiting and running):
 * - `perKey`: a key at its limit is refused at once (`QueueFullError`,
 *   scope `client`);
 * - `total`: when the whole queue is full, the newest waiting check of the
 *   key with the most pending checks is shed to make room, if that key has
 *   more than the newcomer's key would; otherwise the newcomer is refused
 *   (scope `total`). So a flood from many addresses cannot crowd out a
 *   client with little or nothing pending.
 *
 * Limits are given with each check (they come from the current config and
 * change on reload); the queue itself outlives reloads.
 */

export interface QueueLimits {
  /** Checks waiting or running per key at most. */
  readonly perKey: number
  /** Checks waiting or running in all at most. */
  readonly total: number
}

export type QueueScope = 'client' | 'total'

/** A check refused or shed because a limit was reached; `limit` is the one that was. */
export class QueueFullError extends Error {
  readonly scope: QueueScope
  readonly limit: number

  constructor (scope: QueueScope, limit: number) {
    super(scope === 'client' ? `too many checks pending from this client (limit ${limit})` : `too many checks pending (limit ${limit})`)
    this.name = 'QueueFullError'
    this.scope = scope
    this.limit = limit
  }
}

interface Job {
  readonly run: () => Promise<unknown>
  readonly resolve: (value: unknown) => void
  readonly reject: (err: Error) => void
}

interface Lane {
  readonly key: string
  readonly waiting: Job[]
  running: number
  /** Sequence number of this lane's last start; 0 = never served. */
  served: number
}

export class FairQueue {
  private readonly concurrency: number
  private readonly lanes = new Map<string, Lane>()
  private waitingCount = 0
  private runningCount = 0
  private seq = 0
  /** Called with every refusal or shed, for counting and logging. */
  private readonly onShed: (err: QueueFullError, key: string) => void
  /** Called when the queue has nothing waiting or running any more. */
  private readonly onIdle: () => void

  constructor (concurrency: number, hooks: { onShed?: (err: QueueFullError, key: string) => void, onIdle?: () => void } = {}) {
    this.concurrency = concurrency
    this.onShed = hooks.onShed ?? (() => {})
    this.onIdle = hooks.onIdle ?? (() => {})
  }

  /** Checks waiting or running. */
  get size (): number { return this.waitingCount + this.runningCount }
  get running (): number { return this.runningCount }

  /** Run `task` when its turn comes; rejects with QueueFullError when refused or shed. */
  async run<T> (key: string, limits: QueueLimits, task: () => Promise<T>): Promise<T> {
    let lane = this.lanes.get(key)
    const mine = lane === undefined ? 0 : lane.waiting.length + lane.running
    if (mine >= limits.perKey) throw this.refuse(new QueueFullError('client', limits.perKey), key)
    if (this.size >= limits.total && !this.shedFor(mine, limits.total)) throw this.refuse(new QueueFullError('total', limits.total), key)
    if (lane === undefined) {
      lane = { key, waiting: [], running: 0, served: 0 }
      this.lanes.set(key, lane)
    }
    const promise = new Promise<unknown>((resolve, reject) => {
      lane.waiting.push({ run: task, resolve, reject })
    })
    this.waitingCount++
    this.pump()
    return await (promise as Promise<T>)
  }

  /** Reject every waiting check with `err` (running ones finish or fail on their own). */
  clear (err: Error): void {
    for (const lane of this.lanes.values()) {
      for (const job of lane.waiting.splice(0)) job.reject(err)
      if (lane.running === 0) this.lanes.delete(lane.key)
    }
    this.waitingCount = 0
  }

  private refuse (err: QueueFullError, key: string): QueueFullError {
    this.onShed(err, key)
    return err
  }

  /** Make room by shedding the newest waiting check of the longest lane, if it is longer than the newcomer's would be. */
  private shedFor (newcomerPending: number, limit: number): boolean {
    let longest: Lane | undefined
    let most = newcomerPending + 1
    for (const lane of this.lanes.values()) {
      const pending = lane.waiting.length + lane.running
      if (lane.waiting.length > 0 && pending > most) { longest = lane; most = pending }
    }
    const job = longest?.waiting.pop()
    if (longest === undefined || job === undefined) return false
    this.waitingCount--
    if (longest.running === 0 && longest.waiting.length === 0) this.lanes.delete(longest.key)
    job.reject(this.refuse(new QueueFullError('total', limit), longest.key))
    return true
  }

  private pump (): void {
    while (this.runningCount < this.concurrency && this.waitingCount > 0) {
      const lane = this.pick()
      const job = lane?.waiting.shift()
      if (lane === undefined || job === undefined) return
      this.waitingCount--
      this.runningCount++
      lane.running++
      lane.served = ++this.seq
      let started: Promise<unknown>
      try { started = job.run() } catch (err) { started = Promise.reject(err) }
      started.then(
        (value) => { this.done(lane); job.resolve(value) },
        (err: unknown) => { this.done(lane); job.reject(err instanceof Error ? err : new Error(String(err))) })
    }
  }

  /** The lane with waiting checks, fewest running, served longest ago. */
  private pick (): Lane | undefined {
    let best: Lane | undefined
    for (const lane of this.lanes.values()) {
      if (lane.waiting.length === 0) continue
      if (best === undefined || lane.running < best.running || (lane.running === best.running && lane.served < best.served)) best = lane
    }
    return best
  }

  private done (lane: Lane): void {
    this.runningCount--
    lane.running--
    if (lane.running === 0 && lane.waiting.length === 0) this.lanes.delete(lane.key)
    this.pump()
    if (this.size === 0) this.onIdle()
  }
}
