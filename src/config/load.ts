/**
 * load → validate → compile. Reads a Sluice YAML file, reports *every*
 * problem at once as `file: path: expected …`, and returns a frozen Config.
 */
import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { parseDocument } from 'yaml'
import type { z } from 'zod'
import { fileSchema, parseListen, type SluiceFile } from './schema.js'
import { compilePolicy, type CompiledPolicy } from '../policy/compile.js'

/** The policy shipped in the package; used when no --config is given. */
export const DEFAULT_CONFIG_PATH = fileURLToPath(new URL('../../policies/default.yaml', import.meta.url))

/** Where to listen; `name` is what policy `listeners:` match (defaults to the address text). */
export interface ListenAddress { readonly host: string, readonly port: number, readonly name: string }

export interface Config {
  readonly file: string
  /** sha256 of the file text, logged so operators can tell versions apart. */
  readonly hash: string
  readonly listen: readonly ListenAddress[]
  readonly timeouts: SluiceFile['timeouts']
  readonly limits: SluiceFile['limits']
  readonly dns: Readonly<Omit<SluiceFile['dns'], 'servers'>> & { readonly servers: readonly string[] }
  readonly policy: CompiledPolicy
  readonly revokeOnReload: boolean
}

/** Raised for an unreadable or invalid file; `problems` lists each one. */
export class ConfigError extends Error {
  readonly problems: readonly string[]
  constructor (file: string, problems: readonly string[]) {
    super(`${file}: invalid configuration\n` + problems.map(p => `  ${p}`).join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** `['rules', 3, 'ports', 1]` → `rules[3].ports[1]`. */
function formatPath (path: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : (out === '' ? String(p) : `.${String(p)}`)
  return out === '' ? '(top level)' : out
}

function formatIssue (file: string, issue: z.core.$ZodIssue): string {
  let msg = issue.message
  if (issue.code === 'unrecognized_keys') msg = `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map(k => `'${k}'`).join(', ')}`
  return `${file}: ${formatPath(issue.path)}: ${msg}`
}

/** Validate already-read text; `file` names it in errors. */
export function parseConfig (text: string, file: string): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map(e => `${file}: ${e.message.split('\n')[0] ?? ''}`))
  }
  const result = fileSchema.safeParse(doc.toJS() ?? {})
  if (!result.success) throw new ConfigError(file, result.error.issues.map(i => formatIssue(file, i)))
  const f = result.data
  const listen = (Array.isArray(f.listen) ? f.listen : [f.listen]).map(entry => {
    const { address, name } = typeof entry === 'string' ? { address: entry, name: entry } : entry
    const parsed = parseListen(address)
    if (parsed === undefined) throw new ConfigError(file, [`${file}: listen: bad address ${address}`])
    return Object.freeze({ ...parsed, name })
  })
  return Object.freeze({
    file,
    hash: createHash('sha256').update(text).digest('hex').slice(0, 16),
    listen: Object.freeze(listen),
    timeouts: Object.freeze(f.timeouts),
    limits: Object.freeze(f.limits),
    dns: Object.freeze({ ...f.dns, servers: Object.freeze([...f.dns.servers]) }),
    policy: compilePolicy(f.rules, f.default, f.mode),
    revokeOnReload: f.revoke_on_reload
  })
}

export async function loadConfig (file: string = DEFAULT_CONFIG_PATH): Promise<Config> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(file, [`${file}: cannot read: ${(err as Error).message}`])
  }
  return parseConfig(text, file)
}
