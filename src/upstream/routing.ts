/**
 * Parents and routes from config, checked and resolved once per load.
 * Every parent is also a one-choice route of its own name, and `direct`
 * is always defined, so `via:` and `default_route` take any of them.
 */
import type { SluiceFile } from '../config/schema.js'
import { DIRECT, type Choice, type Route } from './route.js'
import { loadParent, type Parent } from './parent.js'

export interface Routing {
  readonly routes: ReadonlyMap<string, Route>
  readonly defaultRoute: Route
  /** From NO_PROXY when the default route comes from the environment: targets that go direct. */
  readonly noProxy?: (host: string, port: number) => boolean
  readonly parents: ReadonlyMap<string, Parent>
}

export interface RoutingOverrides {
  /** `--parent URL`: a parent named `cli` that becomes the default route. */
  readonly parentUrl?: string
  readonly env?: NodeJS.ProcessEnv
  /**
   * `warn`: a parent's secret that cannot be had (password_env unset,
   * password_file or key_file unreadable) is reported in `missingSecrets`
   * instead of being a problem, so `sluice validate` can run where the
   * secrets are not (CI). Default `require`: serving and `check` need them.
   */
  readonly secrets?: 'require' | 'warn'
}

/** A parent secret that could not be had, at its path in the file (`['parents', 'corp', 'password_env']`). */
export interface MissingSecret { readonly path: readonly string[], readonly message: string }

/**
 * NO_PROXY exactly as undici 7's EnvHttpProxyAgent reads it
 * (lib/dispatcher/env-http-proxy-agent.js): entries split on commas and
 * white space; a value of exactly `*` matches everything; an entry may end
 * in `:port`; a leading `.` or `*.` is dropped; an entry matches the host
 * itself and its sub-domains. IPv6 targets are compared in brackets.
 */
export function noProxyMatcher (value: string): (host: string, port: number) => boolean {
  if (value === '*') return () => true
  const entries = value.split(/[,\s]/).filter(e => e !== '').map(e => {
    const m = /^(.+):(\d+)$/.exec(e)
    return { host: (m?.[1] ?? e).replace(/^\*?\./, '').toLowerCase(), port: m?.[2] === undefined ? 0 : Number(m[2]) }
  })
  return (target, port) => {
    const host = target.includes(':') ? `[${target}]` : target
    return entries.some(e => (e.port === 0 || e.port === port) && (host === e.host || host.endsWith(`.${e.host}`)))
  }
}

/** Does the route (or parent) named `via` start with a parent? A name is then the parent's to resolve. */
export function startsWithParent (routing: Routing, via: string): boolean {
  return routing.routes.get(via)?.choices[0]?.kind === 'chain'
}

export function loadRouting (
  f: SluiceFile,
  file: string,
  /** Each rule's `via`, by rule number, never read from f.rules: that is empty after a reload's validation worker (policy/rule-source.ts). */
  vias: ReadonlyArray<readonly [number, string]>,
  o: RoutingOverrides = {},
  onRead?: (path: string, content: string) => void
): { routing: Routing, problems: string[], missingSecrets: MissingSecret[] } {
  const problems: string[] = []
  const missingSecrets: MissingSecret[] = []
  const env = o.env ?? process.env
  const parents = new Map<string, Parent>()
  // Parents that exist but failed to load: reported once, not again as "unknown".
  const broken = new Set<string>()
  const add = (name: string, spec: Parameters<typeof loadParent>[1], where: string): void => {
    const secrets = {
      ...(o.secrets === 'warn' ? { onMissingSecret: (field: string, message: string) => { missingSecrets.push({ path: ['parents', name, field], message }) } } : {}),
      ...(onRead === undefined ? {} : { onRead })
    }
    try {
      parents.set(name, loadParent(name, spec, file, env, secrets))
    } catch (err) {
      broken.add(name)
      problems.push(`${file}: ${where}: ${(err as Error).message}`)
    }
  }
  for (const [name, spec] of Object.entries(f.parents)) {
    if (name === 'direct') { problems.push(`${file}: parents.direct: 'direct' is reserved`); continue }
    add(name, spec, `parents.${name}`)
  }
  let envDefault = false
  if (f.parents_from_env) {
    // undici's order: lower case first; an https target falls back to the http proxy.
    const url = env['https_proxy'] ?? env['HTTPS_PROXY'] ?? env['http_proxy'] ?? env['HTTP_PROXY']
    if (url !== undefined && url !== '') {
      add('env', { url }, 'parents_from_env (HTTPS_PROXY)')
      envDefault = true
    }
  }
  if (o.parentUrl !== undefined) add('cli', { url: o.parentUrl }, '--parent')

  const routes = new Map<string, Route>([['direct', DIRECT]])
  for (const p of parents.values()) routes.set(p.name, Object.freeze({ name: p.name, choices: Object.freeze([{ kind: 'chain' as const, hops: Object.freeze([p]) }]) }))
  for (const [name, choices] of Object.entries(f.routes)) {
    if (routes.has(name)) { problems.push(`${file}: routes.${name}: a parent or 'direct' already has this name`); continue }
    const compiled: Choice[] = []
    choices.forEach((c, i) => {
      const names = typeof c === 'string' ? [c] : c
      if (typeof c === 'string' && c === 'direct') { compiled.push({ kind: 'direct' }); return }
      const hops: Parent[] = []
      names.forEach((n, j) => {
        const p = parents.get(n)
        if (p === undefined && broken.has(n)) return
        if (p === undefined) problems.push(`${file}: routes.${name}[${i}]${typeof c === 'string' ? '' : `[${j}]`}: unknown parent '${n}'${n === 'direct' ? " ('direct' cannot be part of a chain)" : ''}`)
        else hops.push(p)
      })
      compiled.push({ kind: 'chain', hops: Object.freeze(hops) })
    })
    routes.set(name, Object.freeze({ name, choices: Object.freeze(compiled) }))
  }
  const defaultName = o.parentUrl !== undefined ? 'cli' : envDefault ? 'env' : f.default_route
  const defaultRoute = routes.get(defaultName)
  if (defaultRoute === undefined && !broken.has(defaultName)) problems.push(`${file}: default_route: unknown route or parent '${defaultName}'`)
  for (const [i, via] of vias) {
    if (!routes.has(via) && !broken.has(via)) problems.push(`${file}: rules[${i}].via: unknown route or parent '${via}'`)
  }
  const noProxyValue = env['no_proxy'] ?? env['NO_PROXY']
  return {
    problems,
    missingSecrets,
    routing: Object.freeze({
      routes,
      parents,
      defaultRoute: defaultRoute ?? DIRECT,
      ...(envDefault && o.parentUrl === undefined && noProxyValue !== undefined && noProxyValue !== '' ? { noProxy: noProxyMatcher(noProxyValue) } : {})
    })
  }
}

/**
 * Reference checks on a document that failed schema validation, so that
 * `via:` and route typos are listed together with every other problem.
 */
export function referenceProblems (raw: unknown, file: string): string[] {
  if (typeof raw !== 'object' || raw === null) return []
  const doc = raw as Record<string, unknown>
  const keys = (v: unknown): string[] => typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.keys(v) : []
  const known = new Set(['direct', ...keys(doc['parents']), ...keys(doc['routes'])])
  if (doc['parents_from_env'] === true) known.add('env')
  const problems: string[] = []
  if (typeof doc['default_route'] === 'string' && !known.has(doc['default_route'])) {
    problems.push(`${file}: default_route: unknown route or parent '${doc['default_route']}'`)
  }
  if (Array.isArray(doc['rules'])) {
    doc['rules'].forEach((r: unknown, i) => {
      const via = typeof r === 'object' && r !== null ? (r as Record<string, unknown>)['via'] : undefined
      if (typeof via === 'string' && !known.has(via)) problems.push(`${file}: rules[${i}].via: unknown route or parent '${via}'`)
    })
  }
  return problems
}
