/**
 * The second table: plain `sluice` and its variants from the same run, each
 * variant with its ratio to the peer it varies (and to its control peer,
 * when it has one), plus the notes only variants produce: a parent's CPU,
 * CPU per process of a cluster.
 */
import { cell, fmt, median, metricValues, pairedRatio } from './table.js'
import type { Peer, RepResult } from './types.js'

interface Column {
  readonly label: string
  readonly get: (r: RepResult) => number | undefined
  readonly ratio: boolean
}

const COLUMNS: readonly Column[] = [
  { label: 'tunnels/s', get: r => r.rate?.tunnelsPerS, ratio: true },
  { label: 'CONNECT→200 p99 ms', get: r => r.rate?.connectP99Ms, ratio: true },
  { label: 'cycle p99 ms', get: r => r.rate?.cycleP99Ms, ratio: true },
  { label: 'proxy CPU µs/tunnel', get: r => r.rate?.cpuUsPerTunnel, ratio: true },
  { label: 'errors', get: r => r.rate?.errors, ratio: false },
  { label: 'other processes\' CPU %', get: r => r.rate?.otherCpuPct, ratio: false }
]

type Results = ReadonlyMap<string, readonly RepResult[]>

function row (results: Results, peer: string, base: string | undefined): string[] {
  const out = [peer, base ?? '—']
  for (const c of COLUMNS) {
    const vs = metricValues(results.get(peer) ?? [], c.get)
    out.push(cell(vs))
    if (!c.ratio) continue
    const q = base === undefined ? undefined : pairedRatio(results.get(peer) ?? [], results.get(base) ?? [], c.get)
    out.push(q !== undefined ? `${q.toFixed(2)}×` : '—')
  }
  return out
}

/** Markdown table of the variants against their bases; undefined when the run had none. */
export function variantTable (peers: readonly Peer[], results: Results): string | undefined {
  const variants = peers.filter(p => p.variantOf !== undefined)
  if (variants.length === 0) return undefined
  const head = ['peer', 'compared with', ...COLUMNS.flatMap(c => c.ratio ? [c.label, '÷'] : [c.label])]
  const rows: string[][] = []
  for (const base of new Set(variants.map(v => v.variantOf as string))) if (results.has(base)) rows.push(row(results, base, undefined))
  for (const v of variants) {
    rows.push(row(results, v.name, v.variantOf))
    if (v.control !== undefined && results.has(v.control)) rows.push(row(results, v.name, v.control))
  }
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`
  return [line(head), line(head.map((_, i) => i < 2 ? '---' : '---:')), ...rows.map(line)].join('\n')
}

/** One bullet per variant: what it changes. */
export function variantLegend (peers: readonly Peer[]): string[] {
  return peers.filter(p => p.variantOf !== undefined && p.describe !== undefined).map(p => `**${p.name}**: ${p.describe ?? ''}`)
}

/** Readings beyond the table: a parent's CPU, CPU by process of multi-process peers. */
export function variantNotes (peers: readonly Peer[], results: Results, dnsQueries: number): string[] {
  const out: string[] = []
  for (const p of peers.filter(q => q.variantOf !== undefined)) {
    const reps = results.get(p.name) ?? []
    const tps = median(metricValues(reps, r => r.rate?.tunnelsPerS))
    /** µs per tunnel at the median rate → % of one CPU. */
    const busy = (us: number | undefined): string => us === undefined || tps === undefined ? '' : `, ≈ ${fmt(us * tps / 1e4)} % of one CPU at ${fmt(tps)} tunnels/s`
    const lg = median(metricValues(reps, r => r.rate?.loadgenCpuUsPerTunnel))
    const loadgen = lg === undefined ? '' : `; loadgen itself ${fmt(lg)} µs/tunnel${busy(lg)}`
    const aux = metricValues(reps, r => r.rate?.auxCpuUsPerTunnel)
    if (aux.length > 0) {
      const dead = aux.some(v => v === 0) ? ' — zero in some repetition: was the parent on the path?' : ''
      out.push(`${p.name}: the parent's CPU ${cell(aux)} µs/tunnel${busy(median(aux))} (not in the table's proxy CPU)${loadgen}; both share the load CPU with the origin${dead}`)
    }
    const split = reps.map(r => r.rate?.cpuByProcessUs).filter((s): s is readonly number[] => s !== undefined && s.length > 1)
    if (split.length > 0) {
      const n = Math.max(...split.map(s => s.length))
      const med = Array.from({ length: n }, (_, i) => fmt(median(split.map(s => s[i]).filter((v): v is number => v !== undefined))))
      const whole = busy(median(metricValues(reps, r => r.rate?.cpuUsPerTunnel))).replace(/^, /, '')
      out.push(`${p.name}: CPU µs/tunnel by process (medians over repetitions): primary ${med[0] ?? '—'}; workers ${med.slice(1).join(' / ')} (busiest first); the tree ${whole}${loadgen}`)
    }
  }
  if (dnsQueries > 0) out.push(`the loopback DNS stub answered ${dnsQueries} queries in the whole run (A + AAAA per Sluice process: the name is cached)`)
  return out
}
