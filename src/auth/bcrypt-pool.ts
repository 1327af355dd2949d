/**
 * bcrypt comparisons off the event loop. bcryptjs is pure JavaScript and a
 * cost-10 compare takes ~75 ms of CPU; its async API still runs in slices
 * on the main thread. So compares run in worker threads (at most
 * `size`, started on first use, unref'd, terminated by close()).
 */
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'

const BCRYPTJS = createRequire(import.meta.url).resolve('bcryptjs')

/** The worker's code: one compare per message. Evaluated as CommonJS. */
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads')
const bcrypt = require(workerData.bcryptjs)
parentPort.on('message', ({ id, password, hash }) => {
  let ok = false
  try { ok = bcrypt.compareSync(password, hash) } catch {}
  parentPort.postMessage({ id, ok })
})
`

interface Job { readonly worker: Worker, readonly resolve: (ok: boolean) => void, readonly reject: (err: Error) => void }

export class BcryptPool {
  private readonly size: number
  private readonly workers: Worker[] = []
  private readonly pending = new Map<number, Job>()
  private readonly load = new Map<Worker, number>()
  private nextId = 0
  private closed = false

  constructor (size = 2) {
    this.size = size
  }

  async compare (password: string, hash: string): Promise<boolean> {
    if (this.closed) throw new Error('bcrypt pool is closed')
    const worker = this.pick()
    const id = ++this.nextId
    return await new Promise<boolean>((resolve, reject) => {
      this.pending.set(id, { worker, resolve, reject })
      this.load.set(worker, (this.load.get(worker) ?? 0) + 1)
      worker.postMessage({ id, password, hash })
    })
  }

  async close (): Promise<void> {
    this.closed = true
    const err = new Error('bcrypt pool closed')
    for (const job of this.pending.values()) job.reject(err)
    this.pending.clear()
    await Promise.all(this.workers.map(async w => await w.terminate()))
    this.workers.length = 0
  }

  /** The least-loaded worker, starting a new one while under `size`. */
  private pick (): Worker {
    let best: Worker | undefined
    for (const w of this.workers) if (best === undefined || (this.load.get(w) ?? 0) < (this.load.get(best) ?? 0)) best = w
    if (best !== undefined && ((this.load.get(best) ?? 0) === 0 || this.workers.length >= this.size)) return best
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData: { bcryptjs: BCRYPTJS } })
    w.unref()
    w.on('message', ({ id, ok }: { id: number, ok: boolean }) => {
      this.load.set(w, Math.max(0, (this.load.get(w) ?? 1) - 1))
      const job = this.pending.get(id)
      if (job === undefined) return
      this.pending.delete(id)
      job.resolve(ok)
    })
    w.on('error', (err) => {
      // A dead worker fails its own jobs; the next compare starts a fresh one.
      for (const [id, job] of this.pending) {
        if (job.worker !== w) continue
        this.pending.delete(id)
        job.reject(err)
      }
      this.workers.splice(this.workers.indexOf(w), 1)
      this.load.delete(w)
    })
    this.workers.push(w)
    this.load.set(w, 0)
    return w
  }
}
