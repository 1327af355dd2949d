/**
 * The split-hello scenario of the SNI mode (issue 14: "the split-hello
 * scenarios (`--sni-split records`, `tcp`) pass where the peers fail"): a
 * short rate run whose every ClientHello is cut in the middle of its
 * server_name and sent in two writes `--sni-gap-ms` apart, either as one TLS
 * record in two TCP segments (`tcp`) or as two TLS records (`records`). A
 * peer passes when connections completed (the origin's reply to the right
 * name came back and the echo verified) and none failed. A peer that waits
 * for a hello it cannot see whole (HAProxy's `inspect-delay`) fails by the
 * short per-connection timeout, so the scenario stays a few seconds long.
 */
import { runLoadgen, num, obj, type LoadgenEnv } from './loadgen.js'
import type { RepResult, RunningPeer, SplitKind, SplitResult } from './types.js'

export const SPLIT_KINDS: readonly SplitKind[] = ['tcp', 'records']

/** What each kind sends, for the table and the report. */
export const SPLIT_LABEL: Readonly<Record<SplitKind, string>> = {
  tcp: 'hello in 2 TCP writes (1 record)',
  records: 'hello in 2 TLS records'
}

export interface SplitSettings {
  readonly clients: number
  readonly seconds: number
  readonly gapMs: number
  /** Per-connection timeout: a peer stuck on the hello fails within the run. */
  readonly timeoutMs: number
}

/** 8 clients for 2 s (--quick) or 3 s, a 1 s timeout per connection. */
export function splitSettings (quick: boolean, gapMs: number): SplitSettings {
  return { clients: 8, seconds: quick ? 2 : 3, gapMs, timeoutMs: 1000 }
}

/** One split run against `peer`. */
export async function split (lg: LoadgenEnv, peer: RunningPeer, label: string, kind: SplitKind, s: SplitSettings): Promise<SplitResult> {
  const extra = [...(peer.loadgenArgs ?? []), '--sni-split', kind, '--sni-gap-ms', String(s.gapMs), '--timeout-ms', String(s.timeoutMs),
    '-c', String(s.clients), '-d', String(s.seconds), '--warmup', '0', '--payload', '64']
  const r = await runLoadgen(lg, 'rate', peer.port, `${label}-split-${kind}`, extra, (s.seconds + 30) * 1000)
  const j = r.json ?? {}
  const completed = num(j['completed']) ?? 0
  const errors = num(j['error_total']) ?? 0
  const ok = r.code === 0 && r.json !== undefined
  const passed = ok && completed > 0 && errors === 0
  const why = !ok
    ? `loadgen exit ${String(r.code)}${r.timedOut ? ' (timed out)' : ''}`
    : passed ? undefined : `${completed} completed, errors ${JSON.stringify(obj(j['errors']))}`
  return { ok, passed, completed, errors, ...(why === undefined ? {} : { note: why }) }
}

/** A table cell: "pass" in every repetition, else how many failed and the first failure's figures. */
export function splitCell (reps: readonly RepResult[], kind: SplitKind): string {
  const runs = reps.map(r => r.split?.[kind]).filter((x): x is SplitResult => x !== undefined)
  if (runs.length === 0) return '—'
  const failed = runs.filter(x => !x.passed)
  if (failed.length === 0) return runs.length === 1 ? 'pass' : `pass (${runs.length}/${runs.length} reps)`
  return `**fail** (${failed.length}/${runs.length} reps; ${failed[0]?.note ?? ''})`.replace(/\|/g, '\\|')
}

/** Passed in every repetition that ran it; undefined when none did. */
export function splitPassed (reps: readonly RepResult[], kind: SplitKind): boolean | undefined {
  const runs = reps.map(r => r.split?.[kind]).filter((x): x is SplitResult => x !== undefined)
  return runs.length === 0 ? undefined : runs.every(x => x.passed)
}

/** The split rows of the results table: one per kind, a cell per peer (and "—" under the "÷ direct" columns). */
export function splitRows (peers: readonly string[], results: ReadonlyMap<string, readonly RepResult[]>, ratioColumns: boolean): string[][] {
  return SPLIT_KINDS.map(kind => {
    const row = ['split', SPLIT_LABEL[kind]]
    for (const p of peers) {
      row.push(splitCell(results.get(p) ?? [], kind))
      if (ratioColumns && p !== 'direct') row.push('—')
    }
    return row
  })
}
