/**
 * `--workers N` (cli/cluster.ts): one `/metrics` for all workers (issue 15).
 * The primary asks each worker over the cluster IPC channel; each answers
 * with its registry as JSON (prom-client's getMetricsAsJSON), and the
 * primary merges the answers with prom-client's
 * AggregatorRegistry.aggregate(): counters and histograms summed, gauges by
 * each metric's own `aggregator` (observability/metrics.ts: max for the
 * event-loop lag, min for a parent's state…).
 *
 * The request and answer are ours rather than AggregatorRegistry's own
 * clusterMetrics(): that one asks every connected worker, one still
 * loading its modules included, which never answers, and then fails the
 * whole scrape after 5 s; and one slow worker fails it too. Here only
 * workers that said they can answer are asked, the wait is bounded, and a
 * scrape shows what came back with `sluice_cluster_workers` saying how many
 * answered. A worker that restarts starts its counters from zero, which
 * Prometheus reads as a counter reset.
 */
import cluster, { type Worker } from 'node:cluster'
import { AggregatorRegistry, Gauge, Registry } from 'prom-client'
import type { Metrics, Rendered } from './metrics.js'

/** Worker → primary: this worker answers metrics requests. */
const READY = 'sluice:metrics-ready'
/** Primary → worker, and the answer. */
const REQUEST = 'sluice:metrics-request'
const ANSWER = 'sluice:metrics-answer'

/** Workers per scrape: how many answered (`answered="true"`) and how many did not in time. */
export const CLUSTER_WORKERS = 'sluice_cluster_workers'

/** How long a scrape waits for the workers (ms); Prometheus' default scrape timeout is 10 s. */
export const DEFAULT_GATHER_MS = 2000

/** One worker's registry, as getMetricsAsJSON() gives it and aggregate() takes it. */
type RegistryJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>

interface Request { readonly type: typeof REQUEST, readonly id: number }
interface Answer { readonly type: typeof ANSWER, readonly id: number, readonly metrics?: RegistryJson, readonly error?: string }

const isMessage = <T extends { type: string }>(m: unknown, type: T['type']): m is T =>
  typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type

/**
 * In a worker: answer the primary's requests with `metrics`. Call before
 * listening (the primary may ask as soon as the worker is up). Returns the
 * function that stops answering.
 */
export function answerPrimary (metrics: Metrics): () => void {
  const onMessage = (m: unknown): void => {
    if (!isMessage<Request>(m, REQUEST)) return
    const reply = (answer: Answer): void => { if (process.connected) process.send?.(answer) }
    metrics.registry.getMetricsAsJSON().then(
      (json) => reply({ type: ANSWER, id: m.id, metrics: json }),
      (err: unknown) => reply({ type: ANSWER, id: m.id, error: String(err) }))
  }
  process.on('message', onMessage)
  if (process.connected) process.send?.({ type: READY })
  return () => { process.off('message', onMessage) }
}

interface Pending {
  readonly waiting: Set<number>
  readonly answers: RegistryJson[]
  readonly done: () => void
}

/** Worker ids that said they answer. */
const ready = new Set<number>()
const pending = new Map<number, Pending>()
let nextId = 0
let tracking = false

/**
 * In the primary, before the first fork: note which workers answer, and
 * route their answers. Idempotent.
 */
export function trackWorkerMetrics (): void {
  if (tracking) return
  tracking = true
  cluster.on('message', (worker: Worker, m: unknown) => {
    if (isMessage(m, READY)) { ready.add(worker.id); return }
    if (!isMessage<Answer>(m, ANSWER)) return
    const p = pending.get(m.id)
    if (p === undefined || !p.waiting.delete(worker.id)) return
    if (m.metrics !== undefined) p.answers.push(m.metrics)
    if (p.waiting.size === 0) p.done()
  })
  cluster.on('exit', (worker: Worker) => {
    ready.delete(worker.id)
    // A worker that dies mid-scrape will not answer: stop waiting for it.
    for (const p of pending.values()) if (p.waiting.delete(worker.id) && p.waiting.size === 0) p.done()
  })
}

/**
 * In the primary: every answering worker's metrics as one Prometheus text,
 * for the admin listener's `/metrics`, with the primary's own registry
 * (`own`: its reload counts) merged in. Waits at most `timeoutMs` for the
 * workers; those that did not answer are left out (and counted).
 */
export async function clusterMetrics (timeoutMs = DEFAULT_GATHER_MS, own?: Registry): Promise<Rendered> {
  trackWorkerMetrics()
  const id = nextId++
  const waiting = new Set<number>()
  const answers: RegistryJson[] = []
  let asked = 0
  await new Promise<void>((resolve) => {
    const timer = setTimeout(finish, timeoutMs)
    function finish (): void {
      clearTimeout(timer)
      pending.delete(id)
      resolve()
    }
    pending.set(id, { waiting, answers, done: finish })
    for (const w of Object.values(cluster.workers ?? {})) {
      if (w === undefined || !ready.has(w.id) || !w.isConnected()) continue
      waiting.add(w.id)
      asked++
      w.send({ type: REQUEST, id } satisfies Request)
    }
    if (waiting.size === 0) finish()
  })
  const answered = answers.length
  if (own !== undefined) answers.push(await own.getMetricsAsJSON())
  const merged = answers.length === 0 ? new Registry() : AggregatorRegistry.aggregate(answers)
  const workers = new Gauge({ name: CLUSTER_WORKERS, help: 'Workers asked for this scrape: answered="true" are in it, "false" did not answer (in time)', labelNames: ['answered'], registers: [merged] })
  workers.set({ answered: 'true' }, answered)
  workers.set({ answered: 'false' }, asked - answered)
  return { contentType: merged.contentType, body: await merged.metrics() }
}
