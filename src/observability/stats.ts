/**
 * A periodic `stats` log line: the process's memory, open fds, open tunnels
 * and event-loop lag. Off unless asked for (`SLUICE_STATS_INTERVAL=30s`);
 * `npm run soak` (bench/soak.ts) turns it on to see the proxy from inside,
 * where /proc cannot: heap and loop lag (issue 11, "Soak").
 */
import { readdirSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import type { Logger } from 'pino'
import { parseDuration } from '../config/duration.js'

/** The environment variable that turns the line on, and its period (a duration). */
export const STATS_ENV = 'SLUICE_STATS_INTERVAL'

/** Field names of the `stats` line. */
export const STATS_FIELDS = {
  /** Resident set size, bytes. */
  rss: 'rss_bytes',
  /** V8 heap in use, bytes. */
  heapUsed: 'heap_used_bytes',
  /** Memory of ArrayBuffers and Buffers outside the V8 heap, bytes. */
  external: 'external_bytes',
  /** Open file descriptors (/proc/self/fd; absent where there is no /proc). */
  fds: 'fds',
  /** Tunnels in the registry. */
  tunnels: 'tunnels',
  /** Event-loop delay since the previous line, beyond the 10 ms sampling period: p99 and max, ms. */
  loopLagP99: 'loop_lag_p99_ms',
  loopLagMax: 'loop_lag_max_ms'
} as const

export interface StatsOptions {
  readonly log: Logger
  readonly intervalMs: number
  /** Open tunnels now. */
  readonly tunnels: () => number
}

function openFds (): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length - 1 // less the one readdir itself holds
  } catch {
    return undefined
  }
}

/** The histogram's sampling period, ms: each sample is the time between two of its ticks. */
export const RESOLUTION_MS = 10

/** A histogram value (ns, one tick period included) as the lag beyond the period, ms to 2 places. */
export const lagMs = (ns: number): number => Math.max(0, Math.round(ns / 1e4 - RESOLUTION_MS * 100) / 100)

/** Log a `stats` line every `intervalMs` until stopped; the timer never keeps the process alive. */
export function startStats (opts: StatsOptions): () => void {
  // Its own timer costs about nothing at this rate.
  const lag = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  lag.enable()
  const timer = setInterval(() => {
    const mem = process.memoryUsage()
    const fds = openFds()
    opts.log.info({
      [STATS_FIELDS.rss]: mem.rss,
      [STATS_FIELDS.heapUsed]: mem.heapUsed,
      [STATS_FIELDS.external]: mem.external,
      ...(fds === undefined ? {} : { [STATS_FIELDS.fds]: fds }),
      [STATS_FIELDS.tunnels]: opts.tunnels(),
      [STATS_FIELDS.loopLagP99]: lagMs(lag.percentile(99)),
      [STATS_FIELDS.loopLagMax]: lagMs(lag.max)
    }, 'stats')
    lag.reset()
  }, opts.intervalMs)
  timer.unref()
  return () => {
    clearInterval(timer)
    lag.disable()
  }
}

/** The period `SLUICE_STATS_INTERVAL` asks for: undefined when unset; an error for a bad value. */
export function statsIntervalFromEnv (env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[STATS_ENV]
  if (raw === undefined || raw === '') return undefined
  const value = parseDuration(/^\d+$/.test(raw) ? Number(raw) : raw)
  if (value === undefined || value < 100) throw new Error(`${STATS_ENV}: expected a duration of at least 100ms such as 30s, got '${raw}'`)
  return value
}
