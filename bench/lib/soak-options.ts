/** bench/soak.ts command line → settings, and the pass/fail thresholds it applies. */
import { parseArgs } from 'node:util'
import { UsageError } from './options.js'

export { UsageError }

export const SOAK_HELP = `Usage: npm run soak -- [--minutes N | --seconds N] [options]

Runs mixed load against a real Sluice child process (dist/cli.js on 127.0.0.1,
port 0, a temp config) for a bounded time: bulk transfers, connection churn,
authenticated tunnels (a bcrypt cost-4 user), long-lived tunnels, denials (403,
407, 429, 400, 405) and a config reload every 30 s (alternately a rename into
place, and an in-place rewrite plus SIGHUP). Every 30 s it prints the proxy's
RSS and open fds (from /proc), heap, open tunnels and event-loop lag (from its
stats line). All traffic stays on loopback.

Fails (exit 1) when, after warm-up, RSS or fds keep growing, when the proxy
logs an error-level line or anything on stderr, when a client gets an answer
it should not, or when a reload is not applied.

  --minutes N       run for N minutes (default 10)
  --seconds N       run for N seconds instead (at least 30)
  --keep            keep the temp dir (config, users file, the proxy's log)
                    even when the soak passes; it is always kept on failure
  --no-build        use dist/ as it is (no npm run build when src/ is newer)
  -h, --help        this text`

export interface SoakOptions {
  readonly durationMs: number
  readonly keep: boolean
  readonly build: boolean
  readonly help: boolean
}

export function parseSoakOptions (argv: readonly string[]): SoakOptions {
  let values
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        minutes: { type: 'string' },
        seconds: { type: 'string' },
        keep: { type: 'boolean', default: false },
        'no-build': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false }
      },
      strict: true,
      allowPositionals: false
    }))
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  if (values.minutes !== undefined && values.seconds !== undefined) throw new UsageError('give --minutes or --seconds, not both')
  const number = (name: string, v: string): number => {
    const n = Number(v)
    if (!Number.isFinite(n) || n <= 0) throw new UsageError(`--${name}: expected a positive number, got '${v}'`)
    return n
  }
  const durationMs = values.seconds !== undefined
    ? number('seconds', values.seconds) * 1000
    : number('minutes', values.minutes ?? '10') * 60_000
  if (durationMs < 30_000) throw new UsageError('the soak needs at least 30 seconds (warm-up, then samples to compare)')
  return { durationMs: Math.round(durationMs), keep: values.keep, build: !values['no-build'], help: values.help }
}

/**
 * The schedule and the rules, derived from the duration. Samples are taken
 * every `sampleMs`; the proxy logs its stats line at the same period.
 */
export interface SoakPlan {
  readonly durationMs: number
  /** Samples before this are warm-up: heaps, caches and pools are still filling. */
  readonly warmupMs: number
  readonly sampleMs: number
  /** A table row this often. */
  readonly printMs: number
  /** A config reload this often. */
  readonly reloadMs: number
}

export function planFor (durationMs: number): SoakPlan {
  return {
    durationMs,
    warmupMs: Math.max(10_000, Math.round(durationMs * 0.2)),
    sampleMs: Math.min(5000, Math.max(2000, Math.round(durationMs / 30))),
    printMs: Math.min(30_000, Math.round(durationMs / 4)),
    reloadMs: Math.min(30_000, Math.round(durationMs / 4))
  }
}

/**
 * What "keeps growing" means. RSS: the lowest reading of the last third of
 * the post-warm-up samples exceeds the lowest of the first third by more than
 * RSS_GROWTH and by more than RSS_SLACK_BYTES (floors, because a sample can
 * land on a GC peak; a leak raises the floor). fds: the same floors may differ by at
 * most FD_TREND_SLACK (tunnels come and go under load), and once the load has
 * stopped and every tunnel has closed, the proxy holds at most FD_QUIET_SLACK
 * more fds than it did when quiet after the priming round.
 */
export const RSS_GROWTH = 0.15
export const RSS_SLACK_BYTES = 8 * 1024 * 1024
export const FD_TREND_SLACK = 16
export const FD_QUIET_SLACK = 4
