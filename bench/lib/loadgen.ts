/**
 * Running bench/.build/loadgen (see bench/c/loadgen.c's header for modes and
 * flags) against a peer, pinned to the load CPU, and reading its one JSON
 * line. Every command line and its output goes to the run's loadgen.log.
 */
import { appendFileSync } from 'node:fs'
import { runCaptured } from './children.js'
import type { OriginPorts } from './types.js'

export interface LoadgenEnv {
  readonly bin: string
  readonly ports: OriginPorts
  /** argv prefix for pinning (e.g. taskset -c 1) and fd limits; may be empty. */
  readonly prefix: readonly string[]
  readonly logFile: string
  /** Arguments for every run, before the scenario's own (the SNI mode's --sni …); a later flag overrides. */
  readonly common?: readonly string[]
}

export type Json = Record<string, unknown>

/** The last line of `text` that parses as a JSON object. */
export function lastJson (text: string): Json | undefined {
  const lines = text.split('\n')
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i] ?? ''
    if (!line.startsWith('{')) continue
    try {
      const v: unknown = JSON.parse(line)
      if (typeof v === 'object' && v !== null) return v as Json
    } catch { /* keep looking */ }
  }
  return undefined
}

/** Full argv for one loadgen run; `proxyPort` undefined = --direct. */
export function loadgenArgv (env: LoadgenEnv, mode: string, proxyPort: number | undefined, label: string, extra: readonly string[]): string[] {
  return [
    ...env.prefix, env.bin, mode, '--label', label,
    '--echo', String(env.ports.echo), '--sink', String(env.ports.sink), '--source', String(env.ports.source),
    ...(proxyPort === undefined ? ['--direct'] : ['--proxy', `127.0.0.1:${proxyPort}`]),
    ...(env.common ?? []), ...extra
  ]
}

export function logLine (env: LoadgenEnv, text: string): void {
  appendFileSync(env.logFile, text.endsWith('\n') ? text : text + '\n')
}

export interface LoadgenResult { readonly json: Json | undefined, readonly code: number | null, readonly timedOut: boolean }

export async function runLoadgen (env: LoadgenEnv, mode: string, proxyPort: number | undefined, label: string, extra: readonly string[], timeoutMs: number): Promise<LoadgenResult> {
  const argv = loadgenArgv(env, mode, proxyPort, label, extra)
  logLine(env, '$ ' + argv.join(' '))
  const r = await runCaptured(argv, timeoutMs)
  logLine(env, r.stdout + r.stderr + `(exit ${String(r.code)}${r.timedOut ? `, killed after ${timeoutMs} ms` : ''})`)
  return { json: lastJson(r.stdout), code: r.code, timedOut: r.timedOut }
}

/** Narrowing helpers for the loadgen JSON. */
export function num (v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined
}

export function obj (v: unknown): Json {
  return typeof v === 'object' && v !== null ? v as Json : {}
}
