/**
 * `--workers N`: N worker processes share the listeners through node:cluster
 * (Node 20 has no reusePort; docs/node-internals.md B7). The primary only supervises:
 * it forwards SIGHUP (reload) and SIGTERM/SIGINT (graceful drain) to every
 * worker, restarts a worker that dies unexpectedly, and exits when all
 * workers have exited after a shutdown. A second signal kills them at once.
 */
import cluster, { type Worker } from 'node:cluster'
import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { createLogger, type LogLevel } from '../observability/log.js'
import { metricsWanted, TICKET_KEYS_ENV } from './serve.js'

export interface ClusterOptions {
  readonly workers: number
  /** 'rr': the primary accepts and hands connections round-robin; 'os': workers accept themselves. */
  readonly scheduling: 'rr' | 'os'
  readonly logLevel: LogLevel
  readonly pretty: boolean
}

export function resolveWorkers (value: string): number | undefined {
  if (value === 'auto') return availableParallelism()
  return /^\d{1,3}$/.test(value) && Number(value) >= 1 ? Number(value) : undefined
}

export async function runPrimary (opts: ClusterOptions): Promise<number> {
  // Must be set before the first fork.
  cluster.schedulingPolicy = opts.scheduling === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE
  const log = createLogger({ level: opts.logLevel, pretty: opts.pretty }).child({ worker: 'primary' })
  let stopping = false
  let failures = 0
  // One set of TLS session ticket keys for every worker (issue 13): a ticket
  // issued by one is accepted by the next, whichever the kernel hands the
  // resumed connection to. Made here, given by the environment, never written down.
  const ticketKeys = randomBytes(48).toString('base64')
  const fork = (): Worker => cluster.fork({ SLUICE_WORKER: '1', [TICKET_KEYS_ENV]: ticketKeys })
  // One /metrics for all workers (issue 15): note each worker that answers, from its first message.
  // Loaded here, not at import: prom-client is not for `sluice check` and the like.
  if (metricsWanted()) (await import('../observability/cluster-metrics.js')).trackWorkerMetrics()

  return await new Promise<number>((resolve) => {
    cluster.on('exit', (worker, code, signal) => {
      if (stopping) {
        if (Object.keys(cluster.workers ?? {}).length === 0) resolve(failures > 0 ? 1 : 0)
        return
      }
      failures++
      log.error({ worker_id: worker.id, pid: worker.process.pid, code, signal }, 'worker died: restarting')
      // Bounded restart rate: a worker that cannot start must not spin.
      const delay = Math.min(10_000, 100 * 2 ** Math.min(7, failures))
      setTimeout(() => { if (!stopping) fork() }, delay).unref()
    })
    const forEach = (f: (w: Worker) => void): void => { for (const w of Object.values(cluster.workers ?? {})) if (w !== undefined) f(w) }
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: killing workers')
        forEach(w => w.process.kill('SIGKILL'))
        process.exit(1)
      }
      stopping = true
      failures = 0
      log.info({ signal }, 'signal received: draining workers')
      // A message, not a signal: a worker may also get the OS signal itself
      // (a terminal's Ctrl-C, systemd's control-group kill), and two
      // signals would mean "exit now" to it.
      forEach(w => w.send('sluice:shutdown'))
      if (Object.keys(cluster.workers ?? {}).length === 0) resolve(0)
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
    process.on('SIGHUP', () => forEach(w => w.send('sluice:reload')))
    log.info({ workers: opts.workers, scheduling: opts.scheduling }, 'starting workers')
    for (let i = 0; i < opts.workers; i++) fork()
  })
}
