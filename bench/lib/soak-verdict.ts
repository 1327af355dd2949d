/**
 * The soak's samples, its table and its verdict. The rules (thresholds in
 * soak-options.ts) are applied to the samples taken after warm-up, split in
 * thirds; "floor" is the lowest reading of a third.
 */
import { FD_QUIET_SLACK, FD_TREND_SLACK, RSS_GROWTH, RSS_SLACK_BYTES } from './soak-options.js'

export interface Sample {
  /** ms since the main run started. */
  readonly t: number
  readonly rssBytes: number
  readonly fds: number
  /** From the proxy's latest stats line. */
  readonly heapUsedBytes: number | undefined
  readonly tunnels: number | undefined
}

export interface Check { readonly name: string, readonly ok: boolean, readonly detail: string }

const MiB = 1024 * 1024
export const mib = (b: number | undefined): string => b === undefined ? '-' : (b / MiB).toFixed(1)

function floor (xs: readonly number[]): number {
  return xs.reduce((a, b) => Math.min(a, b), Infinity)
}

/** The post-warm-up samples' first and last thirds (at least one sample each). */
export function thirds (samples: readonly Sample[], warmupMs: number): { first: Sample[], last: Sample[] } | undefined {
  const post = samples.filter(s => s.t >= warmupMs)
  if (post.length < 3) return undefined
  const k = Math.floor(post.length / 3)
  return { first: post.slice(0, k), last: post.slice(post.length - k) }
}

export interface Outcome {
  readonly samples: readonly Sample[]
  readonly warmupMs: number
  /** fds when quiet (no tunnel, no load) after priming, and again after the run. */
  readonly quietFdsBefore: number | undefined
  readonly quietFdsAfter: number | undefined
  readonly errorLines: readonly string[]
  readonly stderr: string
  readonly unexpected: number
  readonly unexpectedSamples: readonly string[]
  readonly reloadsWanted: number
  readonly reloadsSeen: number
  readonly reloadProblems: readonly string[]
  readonly exitCode: number | null | undefined
}

export function verdict (o: Outcome): Check[] {
  const checks: Check[] = []
  const split = thirds(o.samples, o.warmupMs)
  if (split === undefined) {
    checks.push({ name: 'samples', ok: false, detail: `only ${o.samples.filter(s => s.t >= o.warmupMs).length} samples after warm-up; need 3` })
  } else {
    const rss0 = floor(split.first.map(s => s.rssBytes))
    const rss1 = floor(split.last.map(s => s.rssBytes))
    const grew = rss1 - rss0
    const rssOk = !(grew > rss0 * RSS_GROWTH && grew > RSS_SLACK_BYTES)
    checks.push({
      name: 'RSS does not keep growing',
      ok: rssOk,
      detail: `floor of the first third ${mib(rss0)} MiB, of the last third ${mib(rss1)} MiB (${grew >= 0 ? '+' : ''}${(100 * grew / rss0).toFixed(1)} %; fails above +${100 * RSS_GROWTH} % and +${mib(RSS_SLACK_BYTES)} MiB)`
    })
    const fd0 = floor(split.first.map(s => s.fds))
    const fd1 = floor(split.last.map(s => s.fds))
    checks.push({
      name: 'fds do not keep growing under load',
      ok: fd1 - fd0 <= FD_TREND_SLACK,
      detail: `floor of the first third ${fd0}, of the last third ${fd1} (fails above +${FD_TREND_SLACK})`
    })
  }
  const { quietFdsBefore: q0, quietFdsAfter: q1 } = o
  checks.push({
    name: 'fds when quiet, before and after',
    ok: q0 !== undefined && q1 !== undefined && q1 - q0 <= FD_QUIET_SLACK,
    detail: q0 === undefined || q1 === undefined
      ? `not measured (before ${String(q0)}, after ${String(q1)}): the proxy never reported 0 tunnels`
      : `${q0} after priming, ${q1} after the run (fails above +${FD_QUIET_SLACK})`
  })
  checks.push({
    name: 'no error-level line',
    ok: o.errorLines.length === 0,
    detail: o.errorLines.length === 0 ? 'none' : `${o.errorLines.length}, first: ${o.errorLines.slice(0, 5).join('\n    ')}`
  })
  checks.push({ name: 'nothing on stderr', ok: o.stderr.trim() === '', detail: o.stderr.trim() === '' ? 'empty' : o.stderr.trim().slice(0, 2000) })
  checks.push({
    name: 'every answer as expected',
    ok: o.unexpected === 0,
    detail: o.unexpected === 0 ? 'yes' : `${o.unexpected} unexpected, first: ${o.unexpectedSamples.slice(0, 10).join('\n    ')}`
  })
  checks.push({
    name: 'every reload applied',
    ok: o.reloadProblems.length === 0 && o.reloadsSeen >= o.reloadsWanted,
    detail: `${o.reloadsSeen} of ${o.reloadsWanted}${o.reloadProblems.length === 0 ? '' : `; ${o.reloadProblems.join('; ')}`}`
  })
  checks.push({ name: 'clean exit on SIGTERM', ok: o.exitCode === 0, detail: `exit code ${String(o.exitCode)}` })
  return checks
}

export const TABLE_HEAD = '  elapsed  rss MiB  heap MiB   fds  tunnels  lag p99/max ms  tunnels/s  MiB/s  denials/s  reloads  unexpected'

export interface Row {
  readonly t: number
  readonly sample: Sample | undefined
  readonly lagP99: number | undefined
  readonly lagMax: number | undefined
  readonly perSecond: { tunnels: number, bytes: number, denials: number }
  readonly reloads: number
  readonly unexpected: number
}

export function row (r: Row): string {
  const s = r.sample
  const pad = (v: string, n: number): string => v.padStart(n)
  const lag = r.lagP99 === undefined ? '-' : `${r.lagP99.toFixed(1)}/${(r.lagMax ?? 0).toFixed(1)}`
  return [
    pad(`${(r.t / 1000).toFixed(0)} s`, 9),
    pad(mib(s?.rssBytes), 8),
    pad(mib(s?.heapUsedBytes), 9),
    pad(String(s?.fds ?? '-'), 5),
    pad(String(s?.tunnels ?? '-'), 8),
    pad(lag, 15),
    pad(r.perSecond.tunnels.toFixed(0), 10),
    pad((r.perSecond.bytes / MiB).toFixed(1), 6),
    pad(r.perSecond.denials.toFixed(1), 10),
    pad(String(r.reloads), 8),
    pad(String(r.unexpected), 11)
  ].join(' ')
}
