/**
 * The `admin:` section loaded (issue 15): where the admin listener listens,
 * the bearer token's digest (never the token), and the PAC settings. The
 * token is read like the parents' secrets: from a file relative to the
 * config file (watched and hashed with it, so a new token applies on
 * reload) or from an environment variable, at load.
 */
import { createHash } from 'node:crypto'
import { parseListen, type SluiceFile } from './schema.js'
import type { ReadFile } from './listeners.js'
import type { PacTable } from '../admin/pac.js'

/** Where the PAC file sends the targets Sluice takes: `PROXY host:port` or `HTTPS host:port`. */
export interface PacProxy {
  readonly scheme: 'PROXY' | 'HTTPS'
  /** `host:port`, IPv6 in brackets. */
  readonly hostPort: string
}

export interface AdminConfig {
  readonly host: string
  readonly port: number
  /**
   * sha256 of the bearer token; undefined = no token (anyone who can reach
   * the listener may use it: loopback by default). Only the digest is kept,
   * so no dump of the config can show the token.
   */
  readonly tokenDigest?: Buffer
  /** Where the token came from, for the start-up line (`file` or `env`). */
  readonly tokenFrom?: 'file' | 'env'
  /** `admin.pac.proxy`; undefined = the first connect listener's address. */
  readonly pacProxy?: PacProxy
  /** `admin.pac.default`; undefined = the policy's default. */
  readonly pacDefault?: 'proxy' | 'direct'
  /** The policy as the PAC file sees it (admin/pac.ts), built once per load, when first read. */
  readonly pac: PacTable
}

export type AdminSpec = NonNullable<SluiceFile['admin']>

/** sha256 of a token: what is stored and what a request's token is compared with (admin/auth.ts). */
export function tokenDigest (token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest()
}

/** `host:port` / `https://host:port` → a PacProxy, or undefined for a bad port. */
export function parsePacProxy (v: string): PacProxy | undefined {
  const https = v.startsWith('https://')
  const rest = v.replace(/^https?:\/\//, '')
  const m = /^(.*):(\d{1,5})$/.exec(rest)
  const port = Number(m?.[2] ?? 0)
  if (m === null || port < 1 || port > 65535) return undefined
  return { scheme: https ? 'HTTPS' : 'PROXY', hostPort: rest }
}

export interface AdminLoad {
  readonly spec: AdminSpec
  readonly file: string
  readonly read: ReadFile
  readonly env: NodeJS.ProcessEnv
  readonly problems: string[]
  /** A secret that cannot be had, when `sluice validate` only warns (RoutingOverrides.secrets). */
  readonly onMissingSecret?: (field: 'token_env', message: string) => void
  /** Builds the PAC table; called at the first read of `pac`, not at load. */
  readonly pac: () => PacTable
}

export function loadAdmin ({ spec, file, read, env, problems, onMissingSecret, pac }: AdminLoad): AdminConfig | undefined {
  const at = `${file}: admin`
  const listen = parseListen(spec.listen)
  if (listen === undefined) { problems.push(`${at}.listen: bad address ${spec.listen}`); return undefined }
  let token: string | undefined
  let tokenFrom: 'file' | 'env' | undefined
  if (spec.token_file !== undefined) {
    // The first line: a trailing newline (echo > file) is not part of the token.
    token = read(spec.token_file, `${at}.token_file`).split(/\r?\n/)[0] ?? ''
    tokenFrom = 'file'
    if (token === '') problems.push(`${at}.token_file: the file is empty (the token is its first line)`)
  } else if (spec.token_env !== undefined) {
    token = env[spec.token_env]
    tokenFrom = 'env'
    if (token === undefined || token === '') {
      const message = `environment variable ${spec.token_env} is not set`
      if (onMissingSecret !== undefined) onMissingSecret('token_env', message)
      else problems.push(`${at}.token_env: ${message}`)
      token = undefined
    }
  }
  let table: PacTable | undefined
  let pacProxy: PacProxy | undefined
  if (spec.pac.proxy !== undefined) {
    pacProxy = parsePacProxy(spec.pac.proxy)
    if (pacProxy === undefined) problems.push(`${at}.pac.proxy: expected a port 1-65535 in ${spec.pac.proxy}`)
  }
  return Object.freeze({
    host: listen.host,
    port: listen.port,
    ...(token === undefined || token === '' ? {} : { tokenDigest: tokenDigest(token), tokenFrom: tokenFrom ?? 'env' }),
    ...(pacProxy === undefined ? {} : { pacProxy }),
    ...(spec.pac.default === undefined ? {} : { pacDefault: spec.pac.default }),
    get pac (): PacTable { return (table ??= pac()) }
  })
}
