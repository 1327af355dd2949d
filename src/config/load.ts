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
import { loadAuth, type AuthConfig } from '../auth/load.js'
import { loadRouting, referenceProblems, type Routing, type RoutingOverrides } from '../upstream/routing.js'
import { ConfigError } from './errors.js'

export { ConfigError }

/** The policy shipped in the package; used when no --config is given. */
export const DEFAULT_CONFIG_PATH = fileURLToPath(new URL('../../policies/default.yaml', import.meta.url))

/** Where to listen; `name` is what policy `listeners:` match (defaults to the address text). */
export type { AuthConfig }

export interface ListenAddress { readonly host: string, readonly port: number, readonly name: string }

export interface Config {
  readonly file: string
  /** Every file this config was read from (the config, users and groups files): watched for reload. */
  readonly files: readonly string[]
  /** sha256 of the file text, logged so operators can tell versions apart. */
  readonly hash: string
  readonly listen: readonly ListenAddress[]
  readonly timeouts: SluiceFile['timeouts']
  readonly limits: SluiceFile['limits']
  readonly dns: Readonly<Omit<SluiceFile['dns'], 'servers'>> & { readonly servers: readonly string[] }
  readonly policy: CompiledPolicy
  readonly revokeOnReload: boolean
  readonly auth?: AuthConfig
  readonly routing: Routing
  readonly parentBackoffMs: number
}

export interface LoadOptions extends RoutingOverrides {}

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
export function parseConfig (text: string, file: string, options: LoadOptions = {}): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(file, doc.errors.map(e => `${file}: ${e.message.split('\n')[0] ?? ''}`))
  }
  const raw: unknown = doc.toJS() ?? {}
  const result = fileSchema.safeParse(raw)
  if (!result.success) {
    throw new ConfigError(file, [...result.error.issues.map(i => formatIssue(file, i)), ...referenceProblems(raw, file)])
  }
  const f = result.data
  const listen = (Array.isArray(f.listen) ? f.listen : [f.listen]).map(entry => {
    const { address, name } = typeof entry === 'string' ? { address: entry, name: entry } : entry
    const parsed = parseListen(address)
    if (parsed === undefined) throw new ConfigError(file, [`${file}: listen: bad address ${address}`])
    return Object.freeze({ ...parsed, name })
  })
  const hash = createHash('sha256').update(text)
  const files = [file]
  const { routing, problems } = loadRouting(f, file, options)
  const names = new Set<string>()
  for (const l of listen) {
    if (names.has(l.name)) problems.push(`${file}: listen: two listeners are named '${l.name}'`)
    names.add(l.name)
  }
  f.rules.forEach((r, i) => r.listeners?.forEach((n, j) => {
    if (!names.has(n)) problems.push(`${file}: rules[${i}].listeners[${j}]: no listener is named '${n}' (listeners: ${[...names].join(', ')})`)
  }))
  if (problems.length > 0) throw new ConfigError(file, problems)
  const authConfig = f.auth === undefined ? undefined : loadAuth(f.auth, file, (path, content) => { files.push(path); hash.update('\0').update(content) })
  return Object.freeze({
    file,
    files: Object.freeze(files),
    hash: hash.digest('hex').slice(0, 16),
    ...(authConfig === undefined ? {} : { auth: authConfig }),
    listen: Object.freeze(listen),
    timeouts: Object.freeze(f.timeouts),
    limits: Object.freeze(f.limits),
    dns: Object.freeze({ ...f.dns, servers: Object.freeze([...f.dns.servers]) }),
    policy: compilePolicy(f.rules, f.default, f.mode, (via) => {
      // A rule without `via` takes the default route (unless NO_PROXY may send it direct).
      const route = via === undefined ? (routing.noProxy === undefined ? routing.defaultRoute : undefined) : routing.routes.get(via)
      return route?.choices[0]?.kind === 'chain'
    }),
    routing,
    parentBackoffMs: f.parent_backoff,
    revokeOnReload: f.revoke_on_reload
  })
}

export async function loadConfig (file: string = DEFAULT_CONFIG_PATH, options: LoadOptions = {}): Promise<Config> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError(file, [`${file}: cannot read: ${(err as Error).message}`])
  }
  return parseConfig(text, file, options)
}
