/**
 * load → validate → compile. Reads a Sluice YAML file, reports *every*
 * problem at once as `file:LINE: path: expected …`, and returns a frozen Config.
 */
import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { LineCounter, parseDocument } from 'yaml'
import type { z } from 'zod'
import { fileSchema, parseListen, type SluiceFile } from './schema.js'
import { compilePolicy, type CompiledPolicy } from '../policy/compile.js'
import { loadAuth, type AuthConfig } from '../auth/load.js'
import { loadRouting, referenceProblems, type Routing, type RoutingOverrides } from '../upstream/routing.js'
import { ConfigError } from './errors.js'
import { flattenUnions, formatPath, issueMessage, unknownKeyMessage } from './issues.js'
import { lintConfig } from './lint.js'
import { createLocator, formatYamlErrors, type DocPath, type Locator } from './yaml-position.js'

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
  /** `reload_settle`: how long a file changed in place must stay unchanged before a reload applies it. */
  readonly reloadSettleMs: number
  /**
   * `file:LINE: path: message`, in file order: secrets that were missing
   * (with `secrets: 'warn'`) and, with `lint`, what config/lint.ts found.
   * Empty for a plain load.
   */
  readonly warnings: readonly string[]
}

export interface LoadOptions extends RoutingOverrides {
  /** Also look for mistakes a valid file can hold (config/lint.ts): `sluice validate`. */
  readonly lint?: boolean
}

/** `file:LINE: path` (no line when the path is not in the text, e.g. a required key left out). */
function where (file: string, locator: Locator, path: DocPath, key?: string): { line: number | undefined, text: string } {
  const line = locator.line(path, key)
  return { line, text: `${file}${line === undefined ? '' : `:${line}`}: ${formatPath(path)}` }
}

/** A zod issue as problem lines; an issue naming several unknown keys gives one line per key. */
function formatIssue (file: string, locator: Locator, issue: z.core.$ZodIssue): Array<{ line: number, text: string }> {
  const problem = (at: { line: number | undefined, text: string }, message: string): { line: number, text: string } =>
    ({ line: at.line ?? Number.MAX_SAFE_INTEGER, text: `${at.text}: ${message}` })
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map(k => problem(where(file, locator, issue.path, k), unknownKeyMessage(fileSchema, issue.path, k)))
  }
  return [problem(where(file, locator, issue.path), issue.message)]
}

/** Validate already-read text; `file` names it in errors. */
export function parseConfig (text: string, file: string, options: LoadOptions = {}): Config {
  const counter = new LineCounter()
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter: counter })
  if (doc.errors.length > 0) {
    throw new ConfigError(file, formatYamlErrors(file, text, counter, doc.errors))
  }
  const locator = createLocator(doc, counter)
  let raw: unknown
  try {
    raw = doc.toJS() ?? {}
  } catch (err) {
    // yaml expands at most 100 aliases (a "billion laughs" file throws
    // ReferenceError here): a problem with the file, never a crash (issue 11,
    // found by test/unit/config.fuzz.test.ts).
    throw new ConfigError(file, [`${file}: cannot read the YAML: ${(err as Error).message}`])
  }
  // Our wording for zod's issues (config/issues.ts); the input is kept to say what was found.
  const result = fileSchema.safeParse(raw, { reportInput: true, error: issueMessage })
  if (!result.success) {
    const issues = result.error.issues.flatMap(flattenUnions).flatMap(i => formatIssue(file, locator, i))
    // In file order; a problem with no line (a required key left out) after those with one.
    issues.sort((a, b) => a.line - b.line)
    throw new ConfigError(file, [...issues.map(i => i.text), ...referenceProblems(raw, file)])
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
  const { routing, problems, missingSecrets } = loadRouting(f, file, options)
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
  const policy = compilePolicy(f.rules, f.default, f.mode, (via) => {
    // A rule without `via` takes the default route (unless NO_PROXY may send it direct).
    const route = via === undefined ? (routing.noProxy === undefined ? routing.defaultRoute : undefined) : routing.routes.get(via)
    return route?.choices[0]?.kind === 'chain'
  })
  const found = [
    ...missingSecrets.map(m => ({ path: m.path, message: `${m.message} (serve and check need it)` })),
    ...(options.lint === true ? lintConfig({ file: f, listen, policy, routing }) : [])
  ].map(w => {
    const at = where(file, locator, w.path)
    return { line: at.line ?? Number.MAX_SAFE_INTEGER, text: `${at.text}: ${w.message}` }
  }).sort((a, b) => a.line - b.line)
  return Object.freeze({
    file,
    files: Object.freeze(files),
    hash: hash.digest('hex').slice(0, 16),
    ...(authConfig === undefined ? {} : { auth: authConfig }),
    listen: Object.freeze(listen),
    timeouts: Object.freeze(f.timeouts),
    limits: Object.freeze(f.limits),
    dns: Object.freeze({ ...f.dns, servers: Object.freeze([...f.dns.servers]) }),
    policy,
    routing,
    parentBackoffMs: f.parent_backoff,
    reloadSettleMs: f.reload_settle,
    revokeOnReload: f.revoke_on_reload,
    warnings: Object.freeze(found.map(w => w.text))
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
