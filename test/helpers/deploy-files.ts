/**
 * Reading docker/'s deploy files (issue 15) for test/unit/deploy-files.test.ts:
 * YAML documents, a systemd unit, durations as compose and systemd write
 * them, the metric names in PromQL, and a shipped config loaded with the
 * real loader from a temp directory that also holds the files it names.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { loadConfig, type Config } from '../../src/config/load.js'
import { METRIC_NAMES } from '../../src/observability/proxy-metrics.js'

export const DOCKER = fileURLToPath(new URL('../../docker/', import.meta.url))

/** Any parsed YAML value: navigated with `at`, which fails loudly on a missing key. */
export type Node = unknown

/** A parsed YAML file under docker/. */
export async function yamlFile (path: string): Promise<Node> {
  return parse(await readFile(join(DOCKER, path), 'utf8')) as Node
}

/** `node[k1][k2]…`, or an error naming the path that is missing. */
export function at (node: Node, ...keys: Array<string | number>): Node {
  let v = node
  for (const [i, k] of keys.entries()) {
    if (v === null || typeof v !== 'object' || !(k in v)) throw new Error(`missing ${keys.slice(0, i + 1).join('.')}`)
    v = (v as Record<string | number, Node>)[k]
  }
  return v
}

export const str = (node: Node, ...keys: Array<string | number>): string => {
  const v = at(node, ...keys)
  if (typeof v !== 'string') throw new Error(`${keys.join('.')}: expected a string, got ${JSON.stringify(v)}`)
  return v
}

export const list = (node: Node, ...keys: Array<string | number>): Node[] => {
  const v = at(node, ...keys)
  if (!Array.isArray(v)) throw new Error(`${keys.join('.')}: expected a list, got ${JSON.stringify(v)}`)
  return v as Node[]
}

/** The entry of a list of objects whose `name` is `name` (containers, ports, volumes). */
export function named (items: Node[], name: string): Node {
  const found = items.find(i => (i as { name?: unknown }).name === name)
  if (found === undefined) throw new Error(`no entry named ${name}`)
  return found
}

const UNIT_MS: Readonly<Record<string, number>> = { ms: 1, s: 1000, sec: 1000, m: 60_000, min: 60_000, h: 3_600_000 }

/**
 * A duration in ms as compose (Go: `1m30s`) or systemd (`1min 30s`, a bare
 * number = seconds) write it.
 */
export function durationMs (v: string | number): number {
  if (typeof v === 'number' || /^\d+$/.test(v)) return Number(v) * 1000
  const parts = [...v.replaceAll(' ', '').matchAll(/(\d+(?:\.\d+)?)(ms|sec|min|s|m|h)/g)]
  if (parts.length === 0 || parts.map(p => p[0]).join('') !== v.replaceAll(' ', '')) throw new Error(`not a duration: ${v}`)
  return parts.reduce((ms, p) => ms + Number(p[1]) * (UNIT_MS[p[2] ?? ''] ?? NaN), 0)
}

/** A systemd unit: section → key → every value (a key may repeat). */
export type Unit = ReadonlyMap<string, ReadonlyMap<string, readonly string[]>>

export function parseUnit (text: string): Unit {
  const sections = new Map<string, Map<string, string[]>>()
  let current: Map<string, string[]> | undefined
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const section = /^\[(.+)\]$/.exec(line)
    if (section !== null) {
      current = new Map()
      sections.set(section[1] ?? '', current)
      continue
    }
    const eq = line.indexOf('=')
    if (current === undefined || eq < 0) throw new Error(`not a unit line: ${line}`)
    const key = line.slice(0, eq)
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1)])
  }
  return sections
}

/** The one value of `section`'s `key` (the last, as systemd takes it), or undefined. */
export function unitValue (unit: Unit, section: string, key: string): string | undefined {
  return unit.get(section)?.get(key)?.at(-1)
}

const HISTOGRAM_SERIES = /_(bucket|sum|count)$/

/**
 * Every metric a PromQL expression reads, as METRIC_NAMES spells it: a
 * histogram's `_bucket`, `_sum` and `_count` series count as its base name.
 */
export function promqlMetrics (expr: string): string[] {
  return [...expr.matchAll(/\bsluice_[a-zA-Z0-9_]+/g)].map(([name]) => {
    const base = name.replace(HISTOGRAM_SERIES, '')
    return base !== name && METRIC_NAMES.includes(base) ? base : name
  })
}

/** Every `expr` in a Grafana dashboard's panels (rows' nested panels too). */
export function dashboardExprs (dashboard: Node): string[] {
  const panels = at(dashboard, 'panels') as Array<{ panels?: unknown[], targets?: Array<{ expr?: string }> }>
  return panels.flatMap(p => [p, ...((p.panels ?? []) as typeof panels)])
    .flatMap(p => (p.targets ?? []).flatMap(t => t.expr === undefined ? [] : [t.expr]))
}

export interface Shipped {
  readonly config: Config
  /** The token written for admin.token_file. */
  readonly token: string
}

/**
 * `text` (a shipped config) loaded with the real loader and lint, from a temp
 * directory that also holds a made-up `admin.token`: the token is a secret
 * the operator makes, never shipped.
 */
export async function loadShipped (text: string, name: string): Promise<Shipped> {
  const dir = await mkdtemp(join(tmpdir(), 'sluice-deploy-'))
  try {
    const token = 'deploy-files-test-token'
    await writeFile(join(dir, 'admin.token'), token + '\n')
    await writeFile(join(dir, name), text)
    return { config: await loadConfig(join(dir, name), { lint: true }), token }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** The proxy listeners' ports and the admin port of a loaded config. */
export function ports (config: Config): { readonly listen: number[], readonly admin: number | undefined } {
  return { listen: config.listen.map(l => l.port), admin: config.admin?.port }
}
