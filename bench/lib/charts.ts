/**
 * The benchmark's charts (issue 12): one horizontal bar chart per headline
 * metric, drawn as a standalone SVG string, so the driver needs no chart
 * service and no dependency. A bar is the median over the repetitions and a
 * thin line its min–max, both from table.ts's `summarize` (the table's cells
 * come from the same function). Plain SVG only: no script, no external font
 * or stylesheet, as GitHub renders an SVG linked from markdown as an image.
 */
import { metricValues, summarize, summaryText, type Summary } from './table.js'
import type { RepResult, Scenario } from './types.js'

export interface ChartRow {
  readonly peer: string
  /** One per series, in the chart's series order; undefined when the peer has no value. */
  readonly bars: ReadonlyArray<Summary | undefined>
}

export interface Chart {
  readonly title: string
  /** A line under the title (what the bars and lines are). */
  readonly note?: string
  /** Series names, e.g. ['upload', 'download']; one unnamed series is ['']. */
  readonly series: readonly string[]
  readonly rows: readonly ChartRow[]
}

/** A chart of the run, ready to write as `file`. */
export interface ChartFile {
  readonly file: string
  readonly title: string
  readonly svg: string
}

interface ChartSpec {
  readonly file: string
  readonly title: string
  readonly scenario: Scenario
  readonly series: ReadonlyArray<{ readonly label: string, readonly get: (r: RepResult) => number | undefined }>
}

/** The table's headline metrics, one chart each; a peer without a value (direct's CPU and memory) gets no row. */
const CHARTS: readonly ChartSpec[] = [
  { file: 'tunnels-per-s.svg', title: 'rate: tunnels/s (higher is better)', scenario: 'rate', series: [{ label: '', get: r => r.rate?.tunnelsPerS }] },
  { file: 'cpu-us-per-tunnel.svg', title: 'rate: proxy CPU µs per tunnel (lower is better)', scenario: 'rate', series: [{ label: '', get: r => r.rate?.cpuUsPerTunnel }] },
  { file: 'cpu-us-per-resumed-tunnel.svg', title: 'resume: proxy CPU µs per tunnel, TLS resumed (lower is better)', scenario: 'resume', series: [{ label: '', get: r => r.resume?.cpuUsPerTunnel }] },
  {
    file: 'bulk-mb-s.svg',
    title: 'bulk: MB/s through one tunnel (higher is better)',
    scenario: 'bulk',
    series: [{ label: 'upload', get: r => r.bulk?.upMBps }, { label: 'download', get: r => r.bulk?.downMBps }]
  },
  { file: 'memory-kib-per-tunnel.svg', title: 'hold: PSS KiB per idle tunnel (lower is better)', scenario: 'hold', series: [{ label: '', get: r => r.hold?.pssKiBPerTunnel }] }
]

/** Sluice and its variants (sluice+auth, sluice-w2, …) stand out; every other peer is grey. */
export function isSluice (peer: string): boolean {
  return /^sluice(?![a-z0-9])/i.test(peer)
}

const COLOURS = { sluice: ['#0969da', '#54aeff'], other: ['#6e7781', '#afb8c1'] } as const

export function escapeXml (text: string): string {
  return text.replace(/[&<>"']/g, c => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c] ?? c)
}

/** Coordinates with one decimal: smaller files, same picture. */
const n = (v: number): string => String(Math.round(v * 10) / 10)

/** Rough width of 12px sans-serif text: enough to lay out, not to typeset. */
const textWidth = (text: string, px = 12): number => text.length * px * 0.6

function valueText (series: string, s: Summary | undefined): string {
  const v = summaryText(s)
  return series === '' ? v : `${series} ${v}`
}

const BAR = 18
const BAR_GAP = 4
const GROUP_GAP = 12
const PAD = 12
const TOP = 58

/** A horizontal bar chart: a group of bars per row, one per series, on one linear scale from 0. */
export function barChart (chart: Chart): string {
  const labelW = Math.max(60, ...chart.rows.map(r => textWidth(r.peer)))
  const valueW = Math.max(...chart.rows.flatMap(r => r.bars.map((b, i) => textWidth(valueText(chart.series[i] ?? '', b))))) + 12
  const x0 = PAD + labelW + 8
  const width = Math.ceil(Math.max(720, x0 + 240 + valueW + PAD, PAD * 2 + textWidth(chart.title, 15)))
  const plotW = width - x0 - valueW - PAD
  const top = Math.max(1e-9, ...chart.rows.flatMap(r => r.bars.map(b => b === undefined ? 0 : Math.max(b.median, b.max))))
  const px = (v: number): number => Math.max(0, v) / top * plotW
  const groupH = chart.series.length * BAR + (chart.series.length - 1) * BAR_GAP
  const out: string[] = []
  let y = TOP
  for (const row of chart.rows) {
    const colours = isSluice(row.peer) ? COLOURS.sluice : COLOURS.other
    out.push(`<text x="${n(x0 - 8)}" y="${n(y + groupH / 2 + 4)}" text-anchor="end"${isSluice(row.peer) ? ' font-weight="bold"' : ''}>${escapeXml(row.peer)}</text>`)
    row.bars.forEach((b, i) => {
      const by = y + i * (BAR + BAR_GAP)
      const mid = by + BAR / 2
      let end = 0
      if (b !== undefined) {
        end = px(Math.max(b.median, b.max))
        out.push(`<rect class="bar" x="${n(x0)}" y="${n(by)}" width="${n(px(b.median))}" height="${BAR}" fill="${colours[i % 2] ?? '#6e7781'}"/>`)
        if (b.n > 1 && b.max > b.min) {
          const [l, r] = [x0 + px(b.min), x0 + px(b.max)]
          out.push(`<path d="M${n(l)} ${n(mid)}H${n(r)}M${n(l)} ${n(mid - 4)}V${n(mid + 4)}M${n(r)} ${n(mid - 4)}V${n(mid + 4)}" stroke="#24292f" stroke-width="1.5" fill="none"/>`)
        }
      }
      out.push(`<text x="${n(x0 + end + 6)}" y="${n(mid + 4)}">${escapeXml(valueText(chart.series[i] ?? '', b))}</text>`)
    })
    y += groupH + GROUP_GAP
  }
  const height = Math.ceil(y - GROUP_GAP + PAD)
  const title = escapeXml(chart.title)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" fill="#24292f" role="img">`,
    `<title>${title}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${PAD}" y="24" font-size="15" font-weight="bold">${title}</text>`,
    ...(chart.note === undefined ? [] : [`<text x="${PAD}" y="42" font-size="11" fill="#57606a">${escapeXml(chart.note)}</text>`]),
    `<path d="M${n(x0)} ${TOP - 6}V${n(height - PAD + 6)}" stroke="#8c959f" stroke-width="1"/>`,
    ...out,
    '</svg>',
    ''
  ].join('\n')
}

/**
 * The run's charts, in CHARTS order: only scenarios that ran, only peers with a value, peers in run order.
 * `words` rewrites the titles (table.ts's sniWords in the SNI mode).
 */
export function benchCharts (peers: readonly string[], results: ReadonlyMap<string, readonly RepResult[]>, scenarios: ReadonlySet<Scenario>,
  words: (title: string) => string = (t) => t): ChartFile[] {
  const out: ChartFile[] = []
  for (const spec of CHARTS) {
    if (!scenarios.has(spec.scenario)) continue
    const rows = peers
      .map(peer => ({ peer, bars: spec.series.map(s => summarize(metricValues(results.get(peer) ?? [], s.get))) }))
      .filter(r => r.bars.some(b => b !== undefined))
    if (rows.length === 0) continue
    const ranges = rows.some(r => r.bars.some(b => b !== undefined && b.n > 1 && b.max > b.min))
    const blue = rows.some(r => isSluice(r.peer)) ? ' Blue: Sluice and its variants.' : ''
    const note = `Bars: median over the repetitions${ranges ? '; lines: min–max' : ''}.${blue}`
    const title = words(spec.title)
    out.push({ file: spec.file, title, svg: barChart({ title, note, series: spec.series.map(s => s.label), rows }) })
  }
  return out
}

/** Every file name benchCharts may write: what a directory of charts may hold from an earlier run. */
export const CHART_FILES: readonly string[] = CHARTS.map(c => c.file)
