/** `sluice serve`: load, listen, reload on SIGHUP / file change, drain on SIGTERM/SIGINT or POST /drain. */
import cluster from 'node:cluster'
import type { LogLevel } from '../observability/log.js'
import { createLogger } from '../observability/log.js'
import { loadConfig } from '../config/load.js'
import { formatHostPort } from '../net/ip.js'
import { createReloader, type Reloader } from '../config/reloader.js'
import { createProxy } from '../server/proxy.js'
import { startStats, statsIntervalFromEnv } from '../observability/stats.js'
import { Lockout } from '../auth/lockout.js'
import { isLockoutState, workerLockout } from './cluster-state.js'
import { isParentState, PARENT_SYNC, workerParentHealth } from './cluster-parents.js'
import { ParentHealth } from '../upstream/health.js'
import { createAdminServer, proxyReadiness, type AdminServer, type MetricsProvider } from '../admin/server.js'
import { ConfigStatus } from '../admin/config-view.js'
import { localTunnels } from '../admin/tunnels.js'
import { answerAdminRequest } from '../admin/cluster.js'
import { answerReload, askPrimary, isReloadRequest } from './cluster-reload.js'
import { createShutdown } from './shutdown.js'

export interface ServeOptions {
  readonly config?: string
  readonly listen?: { host: string, port: number }
  readonly parent?: string
  readonly logLevel: LogLevel
  readonly pretty: boolean
  /**
   * `/metrics` on the admin listener: the metrics module's registry as
   * Prometheus text. Undefined: `/metrics` answers 404.
   */
  readonly metrics?: MetricsProvider
}

/**
 * Counting metrics (issue 15) is on with an `admin:` section, whose
 * `/metrics` renders them (Metrics.render(); under --workers the primary's
 * clusterMetrics()), or when this is `1` (the `sluice+metrics` bench
 * variant, which scrapes nothing).
 */
export const METRICS_ENV = 'SLUICE_METRICS'

/** Whether this process counts metrics (a --workers primary: whether it gathers them). */
export function metricsWanted (config: { readonly admin?: unknown }, env: NodeJS.ProcessEnv = process.env): boolean {
  return config.admin !== undefined || env[METRICS_ENV] === '1'
}

/** The environment variable a --workers primary hands its workers' shared TLS session ticket keys in (cli/cluster.ts). */
export const TICKET_KEYS_ENV = 'SLUICE_TLS_TICKET_KEYS'

function ticketKeys (): Buffer | undefined {
  const text = process.env[TICKET_KEYS_ENV]
  if (text === undefined) return undefined
  const keys = Buffer.from(text, 'base64')
  return keys.length === 48 ? keys : undefined
}

export async function serve (opts: ServeOptions): Promise<number> {
  const loadOptions = opts.parent === undefined ? {} : { parentUrl: opts.parent }
  // At start-up, the cheap validate checks too: an open proxy must not go unnoticed (SECURITY.md).
  const config = await loadConfig(opts.config, {
    ...loadOptions,
    lint: 'startup',
    ...(opts.listen === undefined ? {} : { lintListen: [{ ...opts.listen, name: formatHostPort(opts.listen.host, opts.listen.port), kind: 'connect' }] })
  })
  const base = createLogger({ level: opts.logLevel, pretty: opts.pretty })
  // Under --workers, every line names its worker.
  const logger = cluster.isWorker ? base.child({ worker: cluster.worker?.id }) : base
  for (const w of config.warnings) logger.warn({ warning: w }, 'configuration warning (see sluice validate)')
  const keys = ticketKeys()
  // Under --workers, failed logins are counted for all workers by the primary (cli/cluster-state.ts; issue 15).
  const lockout = cluster.isWorker ? new Lockout(config.auth?.lockout ?? { failures: 0, windowMs: 0, durationMs: 0 }) : undefined
  if (lockout !== undefined) workerLockout(lockout, (m) => { if (process.connected) process.send?.(m) })
  // And parent health: a parent one worker finds dead, the others skip without trying it (cli/cluster-parents.ts; issue 15).
  const health = cluster.isWorker ? new ParentHealth(logger, config.parentBackoffMs) : undefined
  if (health !== undefined) workerParentHealth(health, (m) => { if (process.connected) process.send?.(m) })
  // Loaded only when counting: prom-client is not for a proxy that does not.
  const metrics = metricsWanted(config) ? new (await import('../observability/metrics.js')).Metrics() : undefined
  // Under --workers the primary asks each worker for its numbers.
  const stopAnswering = metrics !== undefined && cluster.isWorker
    ? (await import('../observability/cluster-metrics.js')).answerPrimary(metrics)
    : undefined
  const proxy = createProxy({
    config,
    logger,
    ...(opts.listen === undefined ? {} : { listen: [opts.listen] }),
    ...(keys === undefined ? {} : { ticketKeys: keys }),
    ...(lockout === undefined ? {} : { lockout }),
    ...(health === undefined ? {} : { health }),
    ...(metrics === undefined ? {} : { metrics })
  })
  let current = config
  const closeAdmin = async (): Promise<void> => { await admin?.close() }
  const status = new ConfigStatus()
  const tunnels = localTunnels(proxy.registry, logger)
  let reloader: Reloader | undefined
  // Under --workers the primary's reload requests wait for it (made once the proxy listens).
  let reloaderMade: (r: Reloader) => void = () => {}
  const madeReloader = new Promise<Reloader>((resolve) => { reloaderMade = resolve })
  let stopStats: (() => void) | undefined
  let stopping = false
  let resolveServe: (code: number) => void = () => {}
  const onHup = (): void => {
    // Draining: nothing to reload, and the handler stays so that Node's default (exit) never cuts the drain.
    if (stopping) { logger.info({ signal: 'SIGHUP' }, 'SIGHUP ignored: draining'); return }
    // Under --workers the primary makes it one attempt for every worker, with one line (cli/cluster-reload.ts).
    if (cluster.isWorker) askPrimary()
    else reloader?.reload('SIGHUP').catch((err: unknown) => logger.error({ err }, 'reload failed'))
  }
  // SIGTERM/SIGINT, POST /drain and (in a worker) the primary's request all start this one drain (issue 15).
  const shutdown = createShutdown({
    log: logger,
    timeouts: () => current.timeouts,
    exitNow: () => process.exit(1),
    drain: (drainMs, delayMs) => {
      stopping = true
      reloader?.close()
      stopStats?.()
      const done = (code: number): void => {
        stopAnswering?.()
        metrics?.close()
        process.off('SIGHUP', onHup)
        // The IPC channel to the primary would keep a worker alive.
        if (cluster.isWorker && process.connected) process.disconnect()
        // The admin listener goes last: /readyz says 503 for the whole drain.
        closeAdmin().finally(() => resolveServe(code)).catch(() => {})
      }
      proxy.close(drainMs, delayMs).then(() => done(0), (err: unknown) => { logger.error({ err }, 'shutdown failed'); done(1) })
    }
  })
  const onSignal = (signal: NodeJS.Signals): void => { shutdown.signal(signal) }
  // The admin listener (issue 15); under --workers the primary serves it (cli/cluster.ts).
  const admin: AdminServer | undefined = config.admin === undefined || cluster.isWorker
    ? undefined
    : createAdminServer({
      log: logger,
      config: () => current,
      readiness: () => proxyReadiness(proxy),
      tunnels,
      status,
      drain: (fields) => shutdown.request('admin', fields),
      ...(opts.metrics !== undefined ? { metrics: opts.metrics } : metrics !== undefined ? { metrics: async () => await metrics.render() } : {}),
      ...(opts.listen === undefined ? {} : { proxyListen: [opts.listen] })
    })

  return await new Promise<number>((resolve) => {
    resolveServe = resolve
    // Handlers go in before listening: a supervisor may signal as soon as
    // the port is open, and Node's default action would kill us mid-start.
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
    process.on('SIGHUP', onHup)
    if (cluster.isWorker) {
      // From the primary (cli/cluster.ts).
      process.on('message', (m: unknown) => {
        if (answerAdminRequest(m, tunnels)) return
        if (isReloadRequest(m)) answerReload(m, madeReloader, logger)
        else if (isLockoutState(m)) {
          lockout?.merge(m.client, m.state)
          if (m.state.lockedUntil > Date.now()) logger.info({ client: m.client, locked_until: new Date(m.state.lockedUntil).toISOString() }, 'client locked out for every worker')
        } else if (isParentState(m)) {
          health?.adopt(m.parent, m.state)
        } else if (m === 'sluice:shutdown') {
          // Never a second signal: the worker's own OS signal after it is its first (cli/shutdown.ts).
          shutdown.request('primary')
        }
      })
      // The parents other workers already found down (this one may be a restart).
      if (process.connected) process.send?.(PARENT_SYNC)
    }

    // The admin listener first: a probe sees `starting`, then `ready`.
    const adminListening = async (): Promise<unknown> => await admin?.listen()
    // A signal while the admin listener binds: the proxy never listens (close() has nothing to wait for).
    adminListening().then(async () => { if (!stopping) await proxy.listen() }).then(() => {
      if (stopping) return
      stopStats = statsFromEnv(logger, () => proxy.registry.size)
      // Under --workers the primary watches the files, starts every attempt, and logs and counts
      // each once for all workers (cli/cluster-reload.ts; issue 15): a worker reloads when asked, quietly.
      const follower = cluster.isWorker
      reloader = createReloader({
        file: config.file,
        loadOptions,
        rules: config.policy.size,
        watchFiles: config.files,
        watch: !follower,
        quiet: follower,
        log: logger,
        currentHash: () => current.hash,
        apply: (next) => { current = next; proxy.reload(next, follower ? 'debug' : 'info') },
        // The running config's reload_settle: a file changed in place waits this long (issue 11).
        settleMs: () => current.reloadSettleMs,
        onOutcome: (r) => { status.record(r); if (!follower) metrics?.reloaded(r.result) }
      })
      reloaderMade(reloader)
    }, (err: unknown) => {
      logger.fatal({ err }, 'cannot listen')
      // Nothing may keep the process alive now: a worker that lingered here would never be restarted.
      process.off('SIGTERM', onSignal)
      process.off('SIGINT', onSignal)
      process.off('SIGHUP', onHup)
      stopAnswering?.()
      metrics?.close()
      if (cluster.isWorker && process.connected) process.disconnect()
      closeAdmin().finally(() => resolve(1)).catch(() => {})
    })
  })
}

/** The periodic `stats` line, when SLUICE_STATS_INTERVAL asks for it (npm run soak does; issue 11). */
function statsFromEnv (log: ReturnType<typeof createLogger>, tunnels: () => number): (() => void) | undefined {
  let intervalMs: number | undefined
  try {
    intervalMs = statsIntervalFromEnv()
  } catch (err) {
    log.warn({ err }, 'no stats lines')
    return undefined
  }
  return intervalMs === undefined ? undefined : startStats({ log, intervalMs, tunnels })
}
