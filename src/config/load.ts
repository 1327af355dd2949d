/**
 * load → validate → compile. Reads a Sluice YAML file, reports *every*
 * problem at once as `file:LINE: path: expected …`, and returns a frozen Config.
 */
import { readFile } from 'node:fs/promises'
import { createHash } from 'node:crypto'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LineCounter, parseDocument } from 'yaml'
import type { z } from 'zod'
import { fileSchema, type SluiceFile } from './schema.js'
import { fileReader, prepareListeners, type ListenAddress } from './listeners.js'
import { compilePolicy, lazyPolicy, type CompiledPolicy } from '../policy/compile.js'
import { RuleSource } from '../policy/rule-source.js'
import { validateInWorker } from './validate-worker.js'
import { loadAuth, type AuthConfig } from '../auth/load.js'
import { loadRouting, referenceProblems, type Routing, type RoutingOverrides } from '../upstream/routing.js'
import { ConfigError } from './errors.js'
import { flattenUnions, formatPath, issueMessage, unknownKeyMessage } from './issues.js'
import { lintConfig } from './lint.js'
import { loadAdmin, type AdminConfig } from './admin.js'
import { pacTable, type PacTable } from '../admin/pac.js'
import { createLocator, formatYamlErrors, type DocPath, type Locator } from './yaml-position.js'

export { ConfigError }

/** The policy shipped in the package; used when no --config is given. */
export const DEFAULT_CONFIG_PATH = fileURLToPath(new URL('../../policies/default.yaml', import.meta.url))

export type { AuthConfig }
export type { AdminConfig } from './admin.js'

/**
 * A file the config was read from, for `/config` (issue 15): its sha256, or
 * none for a file holding a secret (a parent's password_file, the admin
 * token_file), whose digest could be brute-forced.
 */
export interface LoadedFile {
  readonly path: string
  readonly sha256?: string
  readonly secret?: true
}
/** Where to listen, and how (config/listeners.ts). */
export type { ListenAddress } from './listeners.js'

export interface Config {
  readonly file: string
  /** Every file this config was read from (the config, users and groups files): watched for reload. */
  readonly files: readonly string[]
  /** The same files with their own hashes (the admin listener's `/config`). */
  readonly loaded: readonly LoadedFile[]
  /** sha256 of the file text, logged so operators can tell versions apart. */
  readonly hash: string
  readonly listen: readonly ListenAddress[]
  readonly timeouts: SluiceFile['timeouts']
  readonly limits: SluiceFile['limits']
  readonly dns: Readonly<Omit<SluiceFile['dns'], 'servers'>> & { readonly servers: readonly string[] }
  readonly policy: CompiledPolicy
  readonly revokeOnReload: boolean
  readonly auth?: AuthConfig
  /** The admin listener (issue 15); undefined without `admin:`. */
  readonly admin?: AdminConfig
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
  /**
   * Also look for mistakes a valid file can hold (config/lint.ts): `true`
   * for `sluice validate`; `'startup'` for `serve`, without the quadratic
   * shadowing check.
   */
  readonly lint?: boolean | 'startup'
  /** Judge these listeners instead of the file's (`serve --listen`), for the open-proxy warning. */
  readonly lintListen?: readonly ListenAddress[]
}

/** `file:LINE: path` (no line when the path is not known, e.g. a required key left out, or no locator). */
function where (file: string, locator: Locator | undefined, path: DocPath, key?: string): { line: number | undefined, text: string } {
  const line = locator?.line(path, key)
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

/**
 * Step 1, text → the validated file: YAML and the schema. Pure and
 * self-contained, so a reload can run it in a worker thread
 * (config/validate-worker.ts): for a 20,000-rule file it is ~1 s of CPU.
 */
export function validateText (text: string, file: string): { readonly f: SluiceFile, readonly locator: Locator } {
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
  return { f: result.data, locator }
}

/** Step 2, what the file refers to: listeners, parents and routes, the users file. */
interface Prepared {
  readonly listen: readonly ListenAddress[]
  readonly routing: Routing
  readonly missingSecrets: ReadonlyArray<{ path: DocPath, message: string }>
  readonly files: readonly string[]
  readonly loaded: readonly LoadedFile[]
  readonly hash: string
  readonly authConfig: AuthConfig | undefined
  readonly adminConfig: AdminConfig | undefined
  /** Does a rule's route start with a parent (its `ips` then only match IP literals)? */
  readonly parentFirst: (via: string | undefined) => boolean
}

/**
 * `bytes`: the config file as read. Hashed as bytes, never as a string: a
 * string is encoded to UTF-8 first, and for a 20,000-rule file (1.3 MB)
 * each of the two hashes then cost ~5 ms of a reload's event loop (issue 15).
 */
function prepare (f: SluiceFile, rules: RuleSource, pac: () => PacTable, bytes: Uint8Array, file: string, options: LoadOptions, sha256?: string): Prepared {
  // The file's own digest once (a reload's worker has taken it already).
  const digest = sha256 ?? createHash('sha256').update(bytes).digest('hex')
  const files = [file]
  const digests = new Map<string, string>([[file, digest]])
  /** Other files' content (certificates…), which the config's hash covers too. */
  const extra: string[] = []
  // Certificate files are part of the config: hashed, and watched for reload (issue 13).
  const seen = (path: string, content: string): void => {
    files.push(path)
    extra.push(content)
    digests.set(path, createHash('sha256').update(content).digest('hex'))
  }
  const { routing, problems, missingSecrets } = loadRouting(f, file, rules.vias, options, seen)
  const listen = prepareListeners(f, file, fileReader(file, seen, problems), problems)
  const names = new Set<string>()
  for (const l of listen) {
    if (names.has(l.name)) problems.push(`${file}: listen: two listeners are named '${l.name}'`)
    names.add(l.name)
    if (l.via !== undefined && !routing.routes.has(l.via) && l.via !== 'direct') {
      problems.push(`${file}: listen: listener '${l.name}': via '${l.via}' is not a route or parent (routes: ${[...routing.routes.keys()].join(', ') || 'none'})`)
    }
  }
  for (const [i, j, n] of rules.listenerRefs) {
    if (!names.has(n)) problems.push(`${file}: rules[${i}].listeners[${j}]: no listener is named '${n}' (listeners: ${[...names].join(', ')})`)
  }
  const adminConfig = f.admin === undefined
    ? undefined
    : loadAdmin({
      spec: f.admin,
      file,
      read: fileReader(file, seen, problems),
      env: options.env ?? process.env,
      problems,
      ...(options.secrets === 'warn' ? { onMissingSecret: (field: string, message: string) => { missingSecrets.push({ path: ['admin', field], message }) } } : {}),
      // Built when /proxy.pac is first asked for: 2-3 ms of a 20,000-rule reload's turn otherwise (issue 15);
      // after a reload, the worker has built it and it is only parsed then.
      pac
    })
  if (problems.length > 0) throw new ConfigError(file, problems)
  const authConfig = f.auth === undefined ? undefined : loadAuth(f.auth, file, seen)
  const secretFiles = new Set([
    ...Object.values(f.parents).flatMap(p => p.password_file === undefined ? [] : [p.password_file]),
    ...(f.admin?.token_file === undefined ? [] : [f.admin.token_file])
  ].map(p => resolve(dirname(file), p)))
  return {
    listen,
    routing,
    missingSecrets: [...missingSecrets],
    files,
    loaded: [...new Set(files)].map(path => secretFiles.has(path) ? { path, secret: true as const } : { path, sha256: digests.get(path) ?? '' }),
    adminConfig,
    hash: configHash(bytes, digest, extra),
    authConfig,
    parentFirst: (via) => {
      // A rule without `via` takes the default route (unless NO_PROXY may send it direct).
      const route = via === undefined ? (routing.noProxy === undefined ? routing.defaultRoute : undefined) : routing.routes.get(via)
      return route?.choices[0]?.kind === 'chain'
    }
  }
}

/**
 * sha256 over the file's bytes, then a NUL and each other file's content;
 * a file alone is its own digest, not hashed again on the event loop.
 */
function configHash (bytes: Uint8Array, digest: string, extra: readonly string[]): string {
  if (extra.length === 0) return digest.slice(0, 16)
  const hash = createHash('sha256').update(bytes)
  for (const c of extra) hash.update('\0').update(c)
  return hash.digest('hex').slice(0, 16)
}

/** Step 4, after the policy is compiled: warnings, and the frozen Config. */
function finish (f: SluiceFile, file: string, locator: Locator | undefined, p: Prepared, policy: CompiledPolicy, options: LoadOptions): Config {
  const found = [
    ...p.missingSecrets.map(m => ({ path: m.path, message: `${m.message} (serve and check need it)` })),
    ...(options.lint === undefined || options.lint === false
      ? []
      : lintConfig({ file: f, listen: options.lintListen ?? p.listen, policy, routing: p.routing }, { shadowing: options.lint === true }))
  ].map(w => {
    const at = where(file, locator, w.path)
    return { line: at.line ?? Number.MAX_SAFE_INTEGER, text: `${at.text}: ${w.message}` }
  }).sort((a, b) => a.line - b.line)
  return Object.freeze({
    file,
    files: Object.freeze([...p.files]),
    hash: p.hash,
    ...(p.authConfig === undefined ? {} : { auth: p.authConfig }),
    ...(p.adminConfig === undefined ? {} : { admin: p.adminConfig }),
    loaded: Object.freeze(p.loaded),
    listen: Object.freeze(p.listen),
    timeouts: Object.freeze(f.timeouts),
    limits: Object.freeze(f.limits),
    dns: Object.freeze({ ...f.dns, servers: Object.freeze([...f.dns.servers]) }),
    reloadSettleMs: f.reload_settle,
    policy,
    routing: p.routing,
    parentBackoffMs: f.parent_backoff,
    revokeOnReload: f.revoke_on_reload,
    warnings: Object.freeze(found.map(w => w.text))
  })
}

/** Validate already-read text; `file` names it in errors. */
export function parseConfig (text: string, file: string, options: LoadOptions = {}): Config {
  return parseRead(text, Buffer.from(text, 'utf8'), file, options)
}

/** parseConfig on what a file held: its text, and its bytes for the hash (the same hash a reload computes). */
function parseRead (text: string, bytes: Uint8Array, file: string, options: LoadOptions): Config {
  const { f, locator } = validateText(text, file)
  const p = prepare(f, RuleSource.of(f.rules), () => pacTable(f.rules, f.default, f.mode), bytes, file, options)
  return finish(f, file, locator, p, compilePolicy(f.rules, f.default, f.mode, p.parentFirst, f.tunnel_checks), options)
}

/**
 * parseConfig for a running proxy (reload): the YAML, the schema, a trial
 * compile and the rule index run in a worker thread, and each rule is
 * compiled at its first use (policy/compile.ts lazyPolicy), so that no step
 * holds the event loop for long (issue 11, finding 6: a 20,000-rule reload
 * held it for 1.7 s; issue 15). Same result as parseConfig; errors without line numbers
 * are never lost (the worker formats them with the document at hand).
 */
export async function parseConfigOffThread (text: string, file: string, options: LoadOptions = {}): Promise<Config> {
  return await parseBytesOffThread(Buffer.from(text, 'utf8'), file, options)
}

/**
 * parseConfigOffThread on the file's bytes: the event loop never decodes
 * them (the worker does) nor hashes a string (issue 15: for 20,000 rules the
 * decode, the text's trip to the worker and the two hashes of the string
 * were each several ms of one turn).
 */
async function parseBytesOffThread (bytes: Buffer, file: string, options: LoadOptions): Promise<Config> {
  if (options.lint !== undefined && options.lint !== false) return parseRead(bytes.toString('utf8'), bytes, file, options)
  const { f, rules: packed, index, pac, sha256 } = await validateInWorker(bytes, file)
  const rules = RuleSource.unpack(packed)
  const p = prepare(f, rules, () => pac === undefined ? pacTable(rules.all(), f.default, f.mode) : JSON.parse(pac) as PacTable, bytes, file, options, sha256)
  const policy = lazyPolicy(rules, f.default, f.mode, p.parentFirst, f.tunnel_checks, index)
  return finish(f, file, undefined, p, policy, options)
}

/** The file's bytes: decoded by whoever parses them (a reload's worker), hashed as they are. */
async function readConfigFile (file: string): Promise<Buffer> {
  try {
    return await readFile(file)
  } catch (err) {
    throw new ConfigError(file, [`${file}: cannot read: ${(err as Error).message}`])
  }
}

export async function loadConfig (file: string = DEFAULT_CONFIG_PATH, options: LoadOptions = {}): Promise<Config> {
  const bytes = await readConfigFile(file)
  return parseRead(bytes.toString('utf8'), bytes, file, options)
}

/** loadConfig with parseConfigOffThread: what a reload uses. */
export async function loadConfigOffThread (file: string = DEFAULT_CONFIG_PATH, options: LoadOptions = {}): Promise<Config> {
  return await parseBytesOffThread(await readConfigFile(file), file, options)
}
