/**
 * Issue 14's bar for Sluice's SNI passthrough ("Bench and bar"), judged on
 * one run's medians, per core: sluice-sni against HAProxy for bulk, against
 * the bare Node SNI peer (node-sni) for connections/s, an absolute memory
 * cap per idle connection, and the split-hello runs. A bar whose peers did
 * not run, or have no value, is "not judged" rather than passed (as in
 * tls-bar.ts, whose Verdict and markdown it shares). HAProxy's and
 * sniproxy's connections/s are the issue's moonshot: shown, not judged.
 */
import { fmt, median, metricValues } from './table.js'
import { SPLIT_KINDS, splitPassed } from './sni-split.js'
import type { Verdict } from './tls-bar.js'
import type { RepResult } from './types.js'

type Results = ReadonlyMap<string, readonly RepResult[]>
type Get = (r: RepResult) => number | undefined

export const SLUICE_SNI = 'sluice-sni'
const HAPROXY = 'haproxy-sni'
const NODE = 'node-sni'
const MOONSHOT = ['haproxy-sni', 'sniproxy'] as const
/** PSS per idle passthrough connection, KiB (issue 14). */
export const IDLE_KIB_BAR = 8

const UP: Get = r => r.bulk?.upMBps
const DOWN: Get = r => r.bulk?.downMBps
const RATE: Get = r => r.rate?.tunnelsPerS
const IDLE: Get = r => r.hold?.pssKiBPerTunnel

function med (results: Results, peer: string, get: Get): number | undefined {
  return median(metricValues(results.get(peer) ?? [], get))
}

const ratio = (a: number, b: number): string => b === 0 ? '' : ` (${(a / b).toFixed(2)}×)`

/** sluice-sni's `get` at least `peer`'s, for each [label, get]. */
function atLeast (results: Results, bar: string, peer: string, gets: ReadonlyArray<readonly [string, Get]>, unit: string): Verdict {
  const parts: string[] = []
  let holds: boolean | undefined = true
  for (const [label, get] of gets) {
    const mine = med(results, SLUICE_SNI, get)
    const theirs = med(results, peer, get)
    const prefix = label === '' ? '' : `${label} `
    if (mine === undefined || theirs === undefined) {
      holds = undefined
      parts.push(`${prefix}no ${mine === undefined ? SLUICE_SNI : peer} figure`)
      continue
    }
    if (holds === true && mine < theirs) holds = false
    parts.push(`${prefix}${fmt(mine)} vs ${peer} ${fmt(theirs)} ${unit}${ratio(mine, theirs)}`)
  }
  return { bar, holds, figures: parts.join('; ') }
}

function idleVerdict (results: Results): Verdict {
  const bar = `memory per idle passthrough connection ≤ ${IDLE_KIB_BAR} KiB`
  const mine = med(results, SLUICE_SNI, IDLE)
  if (mine === undefined) return { bar, holds: undefined, figures: `no ${SLUICE_SNI} figure` }
  const others = [NODE, ...MOONSHOT].map(p => ({ p, v: med(results, p, IDLE) })).filter(x => x.v !== undefined)
  return { bar, holds: mine <= IDLE_KIB_BAR, figures: `${SLUICE_SNI} ${fmt(mine)} KiB${others.map(x => `; ${x.p} ${fmt(x.v)}`).join('')}` }
}

/** sluice-sni passes every split kind; the figures say how each peer that ran it did. */
function splitVerdict (results: Results): Verdict {
  const bar = 'split hellos (2 TCP writes; 2 TLS records) pass'
  const mine = SPLIT_KINDS.map(k => splitPassed(results.get(SLUICE_SNI) ?? [], k))
  const holds = mine.some(v => v === undefined) ? undefined : mine.every(v => v === true)
  const parts = SPLIT_KINDS.map(kind => {
    const who = [...results.keys()].filter(p => p !== 'direct')
      .map(p => ({ p, v: splitPassed(results.get(p) ?? [], kind) }))
      .filter(x => x.v !== undefined)
      .map(x => `${x.p} ${x.v === true ? 'pass' : 'FAIL'}`)
    return `${kind}: ${who.length === 0 ? 'not run' : who.join(', ')}`
  })
  return { bar, holds, figures: parts.join('; ') }
}

/** The verdicts, or none when sluice-sni did not run. */
export function sniBar (results: Results): Verdict[] {
  if (!results.has(SLUICE_SNI)) return []
  return [
    atLeast(results, `bulk MB/s ≥ 1.0× ${HAPROXY}, each way`, HAPROXY, [['upload', UP], ['download', DOWN]], 'MB/s'),
    atLeast(results, `connections/s ≥ 1.0× ${NODE} (the bare Node SNI passthrough)`, NODE, [['', RATE]], '/s'),
    idleVerdict(results),
    splitVerdict(results)
  ]
}

/** The moonshot, as a markdown bullet: sluice-sni's connections/s against HAProxy's and sniproxy's; undefined when there is nothing to compare. */
export function sniMoonshot (results: Results): string | undefined {
  const mine = med(results, SLUICE_SNI, RATE)
  const theirs = MOONSHOT.map(p => ({ p, v: med(results, p, RATE) })).filter((x): x is { p: typeof MOONSHOT[number], v: number } => x.v !== undefined)
  if (mine === undefined || theirs.length === 0) return undefined
  return `- moonshot (not judged): connections/s ${SLUICE_SNI} ${fmt(mine)} vs ${theirs.map(x => `${x.p} ${fmt(x.v)}${ratio(mine, x.v)}`).join(', ')}`
}
