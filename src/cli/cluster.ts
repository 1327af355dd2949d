/**
 * `--workers N`: N worker processes share the listeners through node:cluster
 * (Node 20 has no reusePort; docs/node-internals.md B7). The primary only supervises:
 * it forwards SIGHUP (reload) and SIGTERM/SIGINT (graceful drain) to every
 * worker, counts failed logins for all of them (cluster-state.ts), decides parent health for all of them
 * (cluster-parents.ts), restarts a worker that dies unexpectedly, and exits when all
 * workers have exited after a shutdown. A second signal kills them at once;
 * `POST /drain` on its admin listener starts the same drain, and does not
 * make the signal after it a second one (cli/shutdown.ts).
 *
 * With `admin:` the primary also serves the admin listener (issue 15), so a
 * balancer or Prometheus sees one instance: `/readyz` is 503 from the
 * primary's first signal, `/tunnels` gathers every worker's over IPC
 * (admin/cluster.ts), and `/metrics` is the aggregated provider's.
 *
 * Reloads are the primary's (issue 15: one line per attempt): it alone
 * watches the config's files and takes SIGHUP, loads the config itself (for
 * the token, the PAC and `/config`) and has every worker reload alongside
 * (cli/cluster-reload.ts); its line counts how theirs ended, and `/config`
 * and the reload metrics show that one attempt.
 */
import cluster, { type Worker } from 'node:cluster'
import { randomBytes } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { createLogger, type LogLevel } from '../observability/log.js'
import { metricsWanted, TICKET_KEYS_ENV } from './serve.js'
import { primaryLockout } from './cluster-state.js'
import { primaryParentHealth } from './cluster-parents.js'
import { loadConfig, type Config } from '../config/load.js'
import { createReloader, type Reloader } from '../config/reloader.js'
import { createAdminServer, type AdminServer, type MetricsProvider } from '../admin/server.js'
import { ConfigStatus } from '../admin/config-view.js'
import { clusterTunnels } from '../admin/cluster.js'
import { primaryReloads } from './cluster-reload.js'
import { createShutdown } from './shutdown.js'

export interface ClusterOptions {
  readonly workers: number
  /** 'rr': the primary accepts and hands connections round-robin; 'os': workers accept themselves. */
  readonly scheduling: 'rr' | 'os'
  readonly logLevel: LogLevel
  readonly pretty: boolean
  readonly config?: string
  readonly parent?: string
  readonly listen?: { host: string, port: number }
  /**
   * The primary's `/metrics`: every worker's numbers aggregated (prom-client's
   * AggregatorRegistry, observability/metrics.ts). Undefined: 404.
   */
  readonly metrics?: MetricsProvider
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
  // Loaded here too: a bad file is refused once, before any worker starts.
  const loadOptions = opts.parent === undefined ? {} : { parentUrl: opts.parent }
  let current: Config = await loadConfig(opts.config, loadOptions)
  // One /metrics for all workers (issue 15): note each worker that answers, from its first message.
  // Loaded here, not at import: prom-client is not for `sluice check` and the like.
  const gathered = metricsWanted(current) ? await import('../observability/cluster-metrics.js') : undefined
  gathered?.trackWorkerMetrics()
  // Reloads are counted here, once per attempt for all workers; the workers leave theirs at zero.
  const own = gathered === undefined ? undefined : new (await import('prom-client')).Registry()
  const reloadMetrics = own === undefined ? undefined : new (await import('../observability/metrics.js')).ReloadMetrics([own])
  const metrics: MetricsProvider | undefined = opts.metrics ?? (gathered === undefined ? undefined : async () => await gathered.clusterMetrics(undefined, own))
  /** Workers that have listened and not exited: /readyz is 200 while there is one and no drain. */
  const listening = new Set<number>()
  cluster.on('listening', (w) => listening.add(w.id))
  const live = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)
  // Set once the workers are forked: what the primary's drain and a second signal do to them.
  let drainWorkers = (): void => {}
  let killWorkers = (): void => { process.exit(1) }
  // The primary's SIGTERM/SIGINT and POST /drain on its admin listener start this one drain (issue 15).
  const shutdown = createShutdown({
    log,
    timeouts: () => current.timeouts,
    drain: () => { drainWorkers() },
    exitNow: () => { killWorkers() },
    messages: { signal: 'signal received: draining workers', second: 'second signal: killing workers' }
  })
  const admin = startAdmin()
  const reloads = primaryReloads({
    // Every connected worker, listening yet or not: one still starting answers once its reloader
    // is up (within the wait), rather than being left on the config it read before this change.
    workers: () => live().filter(w => w.isConnected()),
    onAsk: (w) => { reloader.reload(`SIGHUP to worker ${w.id}`).catch((err: unknown) => log.error({ err }, 'reload failed')) }
  })
  const reloader: Reloader = createReloader({
    file: current.file,
    loadOptions,
    rules: current.policy.size,
    watchFiles: current.files,
    log,
    currentHash: () => current.hash,
    apply: (next) => { current = next },
    settleMs: () => current.reloadSettleMs,
    workers: async (why) => await reloads.gather(why),
    onOutcome: (r) => { admin?.status.record(r); reloadMetrics?.reloaded(r.result) }
  })

  function startAdmin (): { server: AdminServer, status: ConfigStatus } | undefined {
    if (current.admin === undefined) return undefined
    const status = new ConfigStatus()
    const server = createAdminServer({
      log,
      config: () => current,
      readiness: () => stopping ? 'draining' : listening.size === 0 ? 'starting' : 'ready',
      tunnels: clusterTunnels(log),
      status,
      drain: (fields) => shutdown.request('admin', fields),
      ...(metrics === undefined ? {} : { metrics }),
      ...(opts.listen === undefined ? {} : { proxyListen: [opts.listen] })
    })
    return { server, status }
  }
  try {
    await admin?.server.listen()
  } catch (err) {
    // Nothing may keep the primary alive now: the reloader's watches would.
    reloader.close()
    reloads.close()
    throw err
  }
  const closeAdmin = async (): Promise<void> => { await admin?.server.close() }

  return await new Promise<number>((resolve) => {
    const finish = (code: number): void => {
      reloader.close()
      reloads.close()
      closeAdmin().finally(() => resolve(code)).catch(() => {})
    }
    cluster.on('exit', (worker, code, signal) => {
      listening.delete(worker.id)
      reloads.exited(worker)
      if (stopping) {
        if (Object.keys(cluster.workers ?? {}).length === 0) finish(failures > 0 ? 1 : 0)
        return
      }
      failures++
      log.error({ worker_id: worker.id, pid: worker.process.pid, code, signal }, 'worker died: restarting')
      // Bounded restart rate: a worker that cannot start must not spin.
      const delay = Math.min(10_000, 100 * 2 ** Math.min(7, failures))
      setTimeout(() => { if (!stopping) fork() }, delay).unref()
    })
    // Only connected workers: send() to one that disconnected and has not exited yet emits 'error' on the
    // Worker, which would kill the primary (a SIGHUP during a drain).
    const forEach = (f: (w: Worker) => void): void => { for (const w of Object.values(cluster.workers ?? {})) if (w?.isConnected() === true) f(w) }
    const onLockout = primaryLockout(live)
    // Parent health, decided and logged here once for all workers (issue 15).
    const onParents = primaryParentHealth(live, log)
    drainWorkers = (): void => {
      stopping = true
      failures = 0
      // No more reloads: a revoke_on_reload reload must not close tunnels before the drain's deadline.
      reloader.close()
      // A message, not a signal: a worker may also get the OS signal itself
      // (a terminal's Ctrl-C, systemd's control-group kill), and two
      // signals would mean "exit now" to it.
      forEach(w => w.send('sluice:shutdown'))
      if (Object.keys(cluster.workers ?? {}).length === 0) finish(0)
    }
    killWorkers = (): void => {
      forEach(w => w.process.kill('SIGKILL'))
      process.exit(1)
    }
    const onSignal = (signal: NodeJS.Signals): void => { shutdown.signal(signal) }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
    // One attempt for every worker (cli/cluster-reload.ts asks them), one line.
    process.on('SIGHUP', () => {
      if (stopping) { log.info({ signal: 'SIGHUP' }, 'SIGHUP ignored: draining'); return }
      reloader.reload('SIGHUP').catch((err: unknown) => log.error({ err }, 'reload failed'))
    })
    // Reload answers; failed logins counted, and parent health decided, for all workers (issue 15).
    cluster.on('message', (worker, m: unknown) => {
      if (reloads.message(worker, m)) return
      onLockout(m)
      onParents(worker, m)
    })
    log.info({ workers: opts.workers, scheduling: opts.scheduling }, 'starting workers')
    for (let i = 0; i < opts.workers; i++) fork()
  })
}
