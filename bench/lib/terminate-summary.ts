/**
 * The terminate mode's summary (issue 14, "Bench and bar": "For
 * `terminate`, measure handshakes/s and bulk against ATS … if it can be set
 * up; else against Sluice's own passthrough. State which."). No bar is set,
 * so nothing is judged: each peer's medians, then sluice-terminate divided
 * by the reference, which is ats-terminate when it produced figures and
 * sluice-sni otherwise, said in the intro.
 */
import { fmt, median, metricValues } from './table.js'
import type { BarSection } from './report.js'
import type { RepResult } from './types.js'

type Results = ReadonlyMap<string, readonly RepResult[]>
type Get = (r: RepResult) => number | undefined

export const SLUICE_TERMINATE = 'sluice-terminate'
export const ATS_TERMINATE = 'ats-terminate'
export const PASSTHROUGH = 'sluice-sni'

interface Figure { readonly label: string, readonly unit: string, readonly get: Get }

const FIGURES: readonly Figure[] = [
  { label: 'handshakes/s', unit: '', get: r => r.rate?.tunnelsPerS },
  { label: 'bulk up', unit: ' MB/s', get: r => r.bulk?.upMBps },
  { label: 'bulk down', unit: ' MB/s', get: r => r.bulk?.downMBps },
  { label: 'proxy CPU per connection', unit: ' µs', get: r => r.rate?.cpuUsPerTunnel },
  { label: 'memory per idle connection', unit: ' KiB', get: r => r.hold?.pssKiBPerTunnel }
]

const med = (results: Results, peer: string, get: Get): number | undefined => median(metricValues(results.get(peer) ?? [], get))

/** ats-terminate when it has a handshakes/s figure, else sluice-sni when it has one, else none. */
export function terminateReference (results: Results): string | undefined {
  const rate = FIGURES[0]?.get ?? (() => undefined)
  return [ATS_TERMINATE, PASSTHROUGH].find(p => med(results, p, rate) !== undefined)
}

function peerLine (results: Results, peer: string): string | undefined {
  const parts = FIGURES.map(f => ({ f, v: med(results, peer, f.get) })).filter(x => x.v !== undefined).map(x => `${x.f.label} ${fmt(x.v)}${x.f.unit}`)
  return parts.length === 0 ? undefined : `- **${peer}**: ${parts.join(', ')}`
}

function ratioLine (results: Results, ref: string): string | undefined {
  const parts: string[] = []
  for (const f of FIGURES) {
    const mine = med(results, SLUICE_TERMINATE, f.get)
    const theirs = med(results, ref, f.get)
    if (mine !== undefined && theirs !== undefined && theirs !== 0) parts.push(`${f.label} ${(mine / theirs).toFixed(2)}×`)
  }
  return parts.length === 0 ? undefined : `- ${SLUICE_TERMINATE} ÷ ${ref}: ${parts.join(', ')}`
}

const WHY_REF: Readonly<Record<string, string>> = {
  [ATS_TERMINATE]: 'ATS 9.2 with sni.yaml `partial_blind_route` (it terminates the client\'s TLS and opens TLS anew to the origin, verified: the same work as Sluice\'s; not `forward_route`, which would forward plaintext)',
  [PASSTHROUGH]: 'Sluice\'s own SNI passthrough of the same end-to-end TLS (ats-terminate gave no figures in this run; see the notes)'
}

/** The summary section; no lines when no peer has figures. */
export function terminateSection (results: Results): BarSection {
  const ref = terminateReference(results)
  const lines = [...results.keys()].map(p => peerLine(results, p)).filter((l): l is string => l !== undefined)
  const ratio = ref === undefined ? undefined : ratioLine(results, ref)
  const intro = ref === undefined
    ? 'Medians of this run; neither ats-terminate nor sluice-sni gave figures to compare sluice-terminate with.'
    : `Medians of this run, one CPU per proxy. No bar is set for \`terminate\`; it is measured against ${ref}: ${WHY_REF[ref] ?? ref}.`
  return { title: 'TLS termination: handshakes/s and bulk (issue 14)', intro, lines: ratio === undefined ? lines : [...lines, ratio] }
}
