/**
 * Issue 13's bar for Sluice as an HTTPS proxy, judged on one run's medians:
 * sluice-tls against the anchors (ats-tls, squid-tls) and against Node's own
 * floor (node-tls). A bar whose peers did not run, or have no value, is
 * "not judged" rather than passed.
 */
import { fmt, median, metricValues } from './table.js'
import type { RepResult } from './types.js'

export interface Verdict {
  readonly bar: string
  /** undefined: not judged (a peer it needs has no value in this run). */
  readonly holds: boolean | undefined
  readonly figures: string
}

type Results = ReadonlyMap<string, readonly RepResult[]>
type Get = (r: RepResult) => number | undefined

export const SLUICE_TLS = 'sluice-tls'
const ANCHORS = ['ats-tls', 'squid-tls'] as const
const ATS = 'ats-tls'
const NODE = 'node-tls'
/** Half of ATS's 49.9 KiB per idle TLS tunnel, measured for the issue. */
export const IDLE_KIB_BAR = 25
/** CPU per full handshake + tunnel may be at most this times node-tls's. */
export const NODE_FACTOR = 1.1

const UP: Get = r => r.bulk?.upMBps
const DOWN: Get = r => r.bulk?.downMBps
const FULL: Get = r => r.rate?.cpuUsPerTunnel
const RESUMED: Get = r => r.resume?.cpuUsPerTunnel
const RESUMED_PCT: Get = r => r.resume?.tlsResumedPct
const IDLE: Get = r => r.hold?.pssKiBPerTunnel

function med (results: Results, peer: string, get: Get): number | undefined {
  return median(metricValues(results.get(peer) ?? [], get))
}

const ratio = (a: number, b: number): string => b === 0 ? '' : ` (${(a / b).toFixed(2)}×)`

/** Each direction: sluice-tls's MB/s at least the best anchor's. */
function bulkVerdict (results: Results): Verdict {
  const bar = 'bulk MB/s through the TLS leg ≥ 1.0× the best anchor, each way'
  const parts: string[] = []
  let holds: boolean | undefined = true
  for (const [dir, get] of [['upload', UP], ['download', DOWN]] as const) {
    const mine = med(results, SLUICE_TLS, get)
    const anchors = ANCHORS.map(a => ({ a, v: med(results, a, get) })).filter((x): x is { a: typeof ANCHORS[number], v: number } => x.v !== undefined)
    const best = anchors.sort((x, y) => y.v - x.v)[0]
    if (mine === undefined || best === undefined) {
      holds = undefined
      parts.push(`${dir}: ${mine === undefined ? `no ${SLUICE_TLS} figure` : 'no anchor figure'}`)
      continue
    }
    if (holds === true && mine < best.v) holds = false
    parts.push(`${dir} ${fmt(mine)} vs ${best.a} ${fmt(best.v)}${ratio(mine, best.v)}`)
  }
  return { bar, holds, figures: parts.join('; ') }
}

/** sluice-tls's `get` at most `factor` × `peer`'s. */
function atMostPeer (results: Results, bar: string, get: Get, peer: string, factor = 1, unit = 'µs'): Verdict {
  const mine = med(results, SLUICE_TLS, get)
  const theirs = med(results, peer, get)
  if (mine === undefined || theirs === undefined) {
    return { bar, holds: undefined, figures: `no ${mine === undefined ? SLUICE_TLS : peer} figure` }
  }
  const limit = factor * theirs
  const limitText = factor === 1 ? '' : `, limit ${fmt(limit)} ${unit}`
  return { bar, holds: mine <= limit, figures: `${SLUICE_TLS} ${fmt(mine)} ${unit} vs ${peer} ${fmt(theirs)} ${unit}${ratio(mine, theirs)}${limitText}` }
}

function idleVerdict (results: Results): Verdict {
  const bar = `memory per idle TLS tunnel ≤ ${IDLE_KIB_BAR} KiB (half of ATS's 49.9 in the issue)`
  const mine = med(results, SLUICE_TLS, IDLE)
  if (mine === undefined) return { bar, holds: undefined, figures: `no ${SLUICE_TLS} figure` }
  const ats = med(results, ATS, IDLE)
  const atsText = ats === undefined ? '' : `; ${ATS} ${fmt(ats)} KiB here (half: ${fmt(ats / 2)})`
  return { bar, holds: mine <= IDLE_KIB_BAR, figures: `${SLUICE_TLS} ${fmt(mine)} KiB${atsText}` }
}

/** The share of resumed handshakes, so a "resumed" figure that is not can be seen. */
function resumedShares (results: Results): string {
  const shares = [SLUICE_TLS, ATS].map(p => ({ p, v: med(results, p, RESUMED_PCT) })).filter(x => x.v !== undefined)
  return shares.length === 0 ? '' : `; handshakes resumed: ${shares.map(x => `${x.p} ${fmt(x.v)} %`).join(', ')}`
}

/** The verdicts, or none when sluice-tls did not run. */
export function tlsBar (results: Results): Verdict[] {
  if (!results.has(SLUICE_TLS)) return []
  const resumed = atMostPeer(results, 'proxy CPU per resumed handshake + tunnel ≤ ATS\'s resumed', RESUMED, ATS)
  return [
    bulkVerdict(results),
    atMostPeer(results, 'proxy CPU per full handshake + tunnel ≤ ATS\'s', FULL, ATS),
    atMostPeer(results, `proxy CPU per full handshake + tunnel ≤ ${NODE_FACTOR}× ${NODE}'s`, FULL, NODE, NODE_FACTOR),
    { ...resumed, figures: resumed.figures + resumedShares(results) },
    idleVerdict(results)
  ]
}

/** Markdown bullets: "- **holds**: bar (figures)". */
export function barMarkdown (verdicts: readonly Verdict[]): string[] {
  return verdicts.map(v => `- **${v.holds === undefined ? 'not judged' : v.holds ? 'holds' : 'not met'}**: ${v.bar} (${v.figures})`)
}
