/**
 * Results → one markdown table: a row per metric, a column per peer with
 * "median (min–max)" over the repetitions, and for each proxy its ratio to
 * `direct` where direct has the same metric.
 */
import type { HoldResult, RepResult, Scenario } from './types.js'
import { splitRows } from './sni-split.js'

// For bench/run.ts, which imports them from here.
export type { RepResult, Scenario } from './types.js'

interface Metric {
  readonly scenario: Scenario
  readonly label: string
  readonly get: (r: RepResult) => number | undefined
  /** Compare with direct (only for metrics direct also has). */
  readonly ratio: boolean
}

const METRICS: readonly Metric[] = [
  { scenario: 'bulk', label: 'upload MB/s', get: r => r.bulk?.upMBps, ratio: true },
  { scenario: 'bulk', label: 'download MB/s', get: r => r.bulk?.downMBps, ratio: true },
  { scenario: 'bulk', label: 'proxy CPU s/GiB', get: r => r.bulk?.cpuSPerGiB, ratio: false },
  { scenario: 'bulk', label: 'other processes\' CPU %', get: r => r.bulk?.otherCpuPct, ratio: false },
  { scenario: 'rate', label: 'tunnels/s', get: r => r.rate?.tunnelsPerS, ratio: true },
  { scenario: 'rate', label: 'CONNECT→200 p50 ms', get: r => r.rate?.connectP50Ms, ratio: true },
  { scenario: 'rate', label: 'CONNECT→200 p99 ms', get: r => r.rate?.connectP99Ms, ratio: true },
  { scenario: 'rate', label: 'cycle p99 ms', get: r => r.rate?.cycleP99Ms, ratio: true },
  { scenario: 'rate', label: 'errors', get: r => r.rate?.errors, ratio: false },
  { scenario: 'rate', label: 'proxy CPU µs/tunnel', get: r => r.rate?.cpuUsPerTunnel, ratio: false },
  { scenario: 'rate', label: 'other processes\' CPU %', get: r => r.rate?.otherCpuPct, ratio: false },
  { scenario: 'resume', label: 'tunnels/s', get: r => r.resume?.tunnelsPerS, ratio: false },
  { scenario: 'resume', label: 'CONNECT→200 p50 ms', get: r => r.resume?.connectP50Ms, ratio: false },
  { scenario: 'resume', label: 'errors', get: r => r.resume?.errors, ratio: false },
  { scenario: 'resume', label: 'proxy CPU µs/tunnel', get: r => r.resume?.cpuUsPerTunnel, ratio: false },
  { scenario: 'resume', label: 'handshakes resumed %', get: r => r.resume?.tlsResumedPct, ratio: false },
  { scenario: 'resume', label: 'other processes\' CPU %', get: r => r.resume?.otherCpuPct, ratio: false },
  { scenario: 'hold', label: 'PSS KiB/tunnel', get: r => r.hold?.pssKiBPerTunnel, ratio: false },
  { scenario: 'hold', label: 'RSS KiB/tunnel', get: r => r.hold?.rssKiBPerTunnel, ratio: false },
  { scenario: 'hold', label: 'setup s (all tunnels)', get: r => r.hold?.setupS, ratio: false }
]

export function median (values: readonly number[]): number | undefined {
  const v = [...values].sort((a, b) => a - b)
  const n = v.length
  if (n === 0) return undefined
  const mid = Math.floor(n / 2)
  return n % 2 === 1 ? v[mid] : ((v[mid - 1] ?? 0) + (v[mid] ?? 0)) / 2
}

/** 3 significant digits-ish: 12,345 · 123 · 12.3 · 1.23 · 0.123 */
export function fmt (v: number | undefined): string {
  if (v === undefined || !Number.isFinite(v)) return '—'
  const a = Math.abs(v)
  const digits = a >= 100 || Number.isInteger(v) ? 0 : a >= 10 ? 1 : a >= 1 ? 2 : 3
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/** One metric over the repetitions: what a table cell and a chart's bar (median, whisker) show. */
export interface Summary {
  readonly median: number
  readonly min: number
  readonly max: number
  /** How many repetitions had a value. */
  readonly n: number
}

/** undefined when no repetition had a value. */
export function summarize (values: readonly number[]): Summary | undefined {
  const m = median(values)
  if (m === undefined) return undefined
  return { median: m, min: Math.min(...values), max: Math.max(...values), n: values.length }
}

/** "12,345 (11,900–12,500)", or the bare median for one repetition. */
export function summaryText (s: Summary | undefined): string {
  if (s === undefined) return '—'
  return s.n === 1 ? fmt(s.median) : `${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)})`
}

export function cell (values: readonly number[]): string {
  return summaryText(summarize(values))
}

/** A metric's finite values, one per repetition that has it. */
export function metricValues (reps: readonly RepResult[], get: (r: RepResult) => number | undefined): number[] {
  return reps.map(get).filter((v): v is number => v !== undefined && Number.isFinite(v))
}

/**
 * The median over repetitions of `reps`' value divided by `base`'s in the
 * same repetition. Peers are interleaved (order rotated per repetition), so a pair was measured
 * minutes apart at most: a machine that slows down for a while (a shared
 * host: issue 14's guard runs swung 2,000–3,900 tunnels/s between
 * repetitions, for every peer alike) moves both sides of a pair, and not
 * the ratio. Undefined when no repetition has both.
 */
export function pairedRatio (reps: readonly RepResult[], base: readonly RepResult[], get: (r: RepResult) => number | undefined): number | undefined {
  const byRep = new Map(base.map(r => [r.rep, get(r)]))
  const ratios: number[] = []
  for (const r of reps) {
    const v = get(r)
    const b = byRep.get(r.rep)
    if (v !== undefined && b !== undefined && b !== 0 && Number.isFinite(v) && Number.isFinite(b)) ratios.push(v / b)
  }
  return median(ratios)
}

/** "2000/2000 in every rep" or the worst rep. */
function aliveCell (reps: readonly RepResult[], k: number): string {
  const held = reps.map(r => r.hold).filter((h): h is HoldResult => h?.established !== undefined)
  if (held.length === 0) return '—'
  const worst = Math.min(...held.map(h => Math.min(h.aliveAfter ?? 0, h.established ?? 0)))
  const n = (v: number): string => v.toLocaleString('en-US')
  return worst === k && held.every(h => h.ok) ? `${n(k)}/${n(k)} every rep` : `worst ${n(worst)}/${n(k)}`
}

/**
 * The SNI mode's words for the same metrics (issue 14): there is no CONNECT
 * and no tunnel, but a passthrough connection whose ClientHello gets the
 * origin's reply where a CONNECT gets its 200.
 */
export function sniWords (text: string): string {
  return text.replace(/CONNECT→200/g, 'hello→reply').replace(/\btunnel(s?)\b/g, 'connection$1')
}

/**
 * The terminate mode's words (issue 14): every connection is one full TLS
 * handshake routed by its SNI, so the rate is handshakes/s, and the latency
 * that stands for CONNECT→200 runs from the connect through the handshake
 * to the first echoed byte (a proxy may finish the client's handshake
 * before it reached the upstream: only the echo proves the route).
 */
export function terminateWords (text: string): string {
  return text.replace(/CONNECT→200/g, 'handshake→first echo').replace(/\btunnels\/s\b/g, 'handshakes/s').replace(/\btunnel(s?)\b/g, 'connection$1')
}

/** The metric labels' words for a run: sniWords, terminateWords, or as they are. */
export function wordsFor (o: { readonly sni: boolean, readonly terminate: boolean }): (text: string) => string {
  return o.sni ? sniWords : o.terminate ? terminateWords : (t) => t
}

/** `words` rewrites the metric labels (sniWords in the SNI mode, terminateWords in the terminate mode). */
export function table (peers: readonly string[], results: ReadonlyMap<string, readonly RepResult[]>, scenarios: ReadonlySet<Scenario>, holdK: number,
  words: (label: string) => string = (l) => l): string {
  const proxies = peers.filter(p => p !== 'direct')
  const hasDirect = peers.includes('direct')
  const head = ['scenario', 'metric', ...peers.flatMap(p => p === 'direct' || !hasDirect ? [p] : [p, `${p} ÷ direct`])]
  const rows: string[][] = []
  for (const m of METRICS) {
    if (!scenarios.has(m.scenario)) continue
    const base = hasDirect ? median(metricValues(results.get('direct') ?? [], m.get)) : undefined
    const row = [m.scenario, words(m.label)]
    for (const p of peers) {
      const vs = metricValues(results.get(p) ?? [], m.get)
      row.push(cell(vs))
      if (p === 'direct' || !hasDirect) continue
      const med = median(vs)
      row.push(m.ratio && base !== undefined && base !== 0 && med !== undefined ? `${(med / base).toFixed(2)}×` : '—')
    }
    rows.push(row)
  }
  if (scenarios.has('hold') && proxies.length > 0) {
    const row = ['hold', words(`alive after hold (${holdK.toLocaleString('en-US')} tunnels)`)]
    for (const p of peers) {
      row.push(p === 'direct' ? '—' : aliveCell(results.get(p) ?? [], holdK))
      if (p !== 'direct' && hasDirect) row.push('—')
    }
    rows.push(row)
  }
  if (scenarios.has('split')) rows.push(...splitRows(peers, results, hasDirect))
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`
  return [line(head), line(head.map((_, i) => i < 2 ? '---' : '---:')), ...rows.map(line)].join('\n')
}

/** Every failure or oddity, one bullet each (empty when all went well). */
export function notes (results: ReadonlyMap<string, readonly RepResult[]>): string[] {
  const out: string[] = []
  for (const [peer, reps] of results) {
    for (const r of reps) {
      if (r.error !== undefined) out.push(`${peer} rep ${r.rep}: ERROR ${r.error}`)
      for (const [name, res] of [['bulk', r.bulk], ['rate', r.rate], ['resume', r.resume], ['hold', r.hold]] as const) {
        if (res?.note !== undefined && res.note !== 'no proxy') out.push(`${peer} rep ${r.rep} ${name}: ${res.note}`)
      }
    }
  }
  return out
}
