/**
 * Password checks off the event loop. bcryptjs is pure JavaScript and a
 * cost-10 compare takes ~75 ms of CPU; its async API still runs in slices
 * on the main thread. So checks run in worker threads: at most `size`,
 * started on first use, unref'd, terminated by close(). scrypt checks run
 * there too (crypto.scryptSync in the worker): they then wait in the same
 * fair queue, cost an unknown user what they cost a real one, and stay off
 * libuv's threadpool, which dns.lookup shares (docs/node-internals.md B5).
 *
 * Checks wait in a FairQueue (fair-queue.ts): round-robin per client
 * address, bounded per client and in all (issue 11, finding 2). Refusals
 * are counted in `stats` and logged once per episode: a warning at the
 * first, a line with the count when the queue next runs empty.
 *
 * A worker that dies (an uncaught error, or terminated) fails the check it
 * was running, which the caller answers with 500; the next check starts a
 * new worker in its place (issue 11, "the bcrypt worker thread dies").
 * Restarting on demand, not at once, keeps a worker that cannot start from
 * spinning.
 */
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'
import type { Logger } from 'pino'
import type { PasswordHash } from './hash.js'
import { FairQueue, type QueueFullError, type QueueLimits } from './fair-queue.js'
import { F } from '../observability/fields.js'

const BCRYPTJS = createRequire(import.meta.url).resolve('bcryptjs')

/** The worker's code: one check per message. Evaluated as CommonJS. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const { scryptSync, timingSafeEqual } = require('node:crypto')
const bcrypt = require(workerData.bcryptjs)
parentPort.on('message', (m) => {
  let ok = false
  try {
    if (m.scheme === 'bcrypt') ok = bcrypt.compareSync(m.password, m.hash)
    else ok = timingSafeEqual(scryptSync(m.password, m.salt, m.key.length, { N: m.N, r: m.r, p: m.p, maxmem: 256 * m.N * m.r + 1048576 }), m.key)
  } catch {}
  parentPort.postMessage({ id: m.id, ok })
})
`

/** No limits: for callers outside the proxy (tests, benchmarks, `compare`). */
const UNBOUNDED: QueueLimits = { perKey: Infinity, total: Infinity }

export interface BcryptPoolOptions {
  /** Worker threads at most (default 2). */
  readonly size?: number
  /** Where shedding episodes are logged. */
  readonly log?: Logger
}

export interface CheckOptions {
  /** Whom the check is for (the client address): the fair queue's key. */
  readonly client?: string
  readonly limits?: QueueLimits
}

/** Counters since start, for logs and metrics. */
export interface PoolStats {
  /** Checks refused because their client had `perKey` pending. */
  shedClient: number
  /** Checks refused or shed because the queue held `total`. */
  shedTotal: number
  /** Workers that died (crashed or were terminated) while the pool was open. */
  workerDeaths: number
}

interface Running { readonly id: number, readonly resolve: (ok: boolean) => void, readonly reject: (err: Error) => void }

/** When a test asks (testHooks.trace): each check's arrival and start, in order, by client. */
let trace: Array<readonly ['queued' | 'started', string]> | undefined

/** Every open pool in this process, for {@link testHooks}. */
const LIVE = new Set<BcryptPool>()

export class BcryptPool {
  private readonly size: number
  private readonly log: Logger | undefined
  private readonly workers: Worker[] = []
  /** The check each busy worker runs; the queue never gives a worker two. */
  private readonly busy = new Map<Worker, Running>()
  private readonly queue: FairQueue
  private nextId = 0
  private closed = false
  /** The shedding episode in progress: refusals since its start. */
  private episode: { shed: number, since: number } | undefined
  readonly stats: PoolStats = { shedClient: 0, shedTotal: 0, workerDeaths: 0 }

  constructor (opts: BcryptPoolOptions | number = {}) {
    const o = typeof opts === 'number' ? { size: opts } : opts
    this.size = o.size ?? 2
    this.log = o.log
    this.queue = new FairQueue(this.size, {
      onShed: (err, key) => this.shed(err, key),
      onIdle: () => this.endEpisode()
    })
    LIVE.add(this)
  }

  /** Check `password` against `hash` in a worker, when the fair queue says; rejects with QueueFullError when refused. */
  async verify (hash: PasswordHash, password: string, opts: CheckOptions = {}): Promise<boolean> {
    if (this.closed) throw new Error('hash pool closed')
    const client = opts.client ?? ''
    trace?.push(['queued', client])
    return await this.queue.run(client, opts.limits ?? UNBOUNDED, async () => {
      trace?.push(['started', client])
      return await this.exec(hash, password)
    })
  }

  /** A bcrypt compare, unbounded (tests and benchmarks). */
  async compare (password: string, hash: string): Promise<boolean> {
    return await this.verify({ scheme: 'bcrypt', hash }, password)
  }

  async close (): Promise<void> {
    this.closed = true
    LIVE.delete(this)
    const err = new Error('hash pool closed')
    this.queue.clear(err)
    for (const job of this.busy.values()) job.reject(err)
    this.busy.clear()
    await Promise.all(this.workers.map(async w => await w.terminate()))
    this.workers.length = 0
  }

  /** Post one check to an idle worker (the queue guarantees one is idle or may be started). */
  private async exec (hash: PasswordHash, password: string): Promise<boolean> {
    if (this.closed) throw new Error('hash pool closed')
    const worker = this.workers.find(w => !this.busy.has(w)) ?? this.start()
    const id = ++this.nextId
    return await new Promise<boolean>((resolve, reject) => {
      this.busy.set(worker, { id, resolve, reject })
      worker.postMessage(hash.scheme === 'bcrypt'
        ? { id, scheme: 'bcrypt', password, hash: hash.hash }
        : { id, scheme: 'scrypt', password, N: hash.N, r: hash.r, p: hash.p, salt: hash.salt, key: hash.key })
    })
  }

  private start (): Worker {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { bcryptjs: BCRYPTJS } })
    w.unref()
    let failure: Error | undefined
    w.on('message', ({ id, ok }: { id: number, ok: boolean }) => {
      const job = this.busy.get(w)
      if (job === undefined || job.id !== id) return
      this.busy.delete(w)
      job.resolve(ok)
    })
    // An uncaught error in the worker: 'exit' follows, and settles its check.
    w.on('error', (err) => { failure = err })
    w.on('exit', (code) => {
      const i = this.workers.indexOf(w)
      if (i >= 0) this.workers.splice(i, 1)
      const job = this.busy.get(w)
      this.busy.delete(w)
      if (this.closed) return
      this.stats.workerDeaths++
      job?.reject(new Error(`hash worker exited (code ${code}) during a password check`, failure === undefined ? undefined : { cause: failure }))
    })
    this.workers.push(w)
    return w
  }

  private shed (err: QueueFullError, client: string): void {
    if (err.scope === 'client') this.stats.shedClient++; else this.stats.shedTotal++
    if (this.episode !== undefined) { this.episode.shed++; return }
    this.episode = { shed: 1, since: Date.now() }
    this.log?.warn({ [F.client]: client, scope: err.scope, limit: err.limit, pending: this.queue.size }, 'login checks shed: too many waiting to be checked (logged once until the queue empties)')
  }

  private endEpisode (): void {
    const e = this.episode
    if (e === undefined) return
    this.episode = undefined
    this.log?.info({ shed: e.shed, duration_ms: Date.now() - e.since }, 'login checks no longer shed: the queue is empty')
  }
}

/**
 * Hooks for the fault tests (issue 11): reach the pools a proxy built
 * inside this process. Not part of the proxy's behaviour.
 */
export const testHooks = {
  /** Start recording arrivals and starts of checks (all pools); returns the live record. */
  trace (): ReadonlyArray<readonly ['queued' | 'started', string]> {
    trace = []
    return trace
  },
  /** Checks running in a worker right now, in every open pool. */
  running (): number {
    let n = 0
    for (const p of LIVE) n += p['busy'].size
    return n
  },
  /** `worker.terminate()` every worker of every open pool, as if it had died; resolves with how many. */
  async terminateWorkers (): Promise<number> {
    const all = [...LIVE].flatMap(p => [...p['workers']])
    await Promise.all(all.map(async w => await w.terminate()))
    return all.length
  }
}
