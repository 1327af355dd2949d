/**
 * Parent proxies from config: URL, credentials (URL userinfo, an environment
 * variable or a file, so the YAML need not hold secrets) and TLS settings.
 * The Proxy-Authorization value is computed once here (docs/node-internals.md D5), and
 * a parent is only ever shown by name and host:port, never with credentials.
 */
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { isIPv6 } from 'node:net'

export interface ParentSpec {
  readonly url: string
  readonly username?: string | undefined
  readonly password_env?: string | undefined
  readonly password_file?: string | undefined
  readonly ca_file?: string | undefined
  readonly servername?: string | undefined
  readonly cert_file?: string | undefined
  readonly key_file?: string | undefined
}

export interface Parent {
  readonly name: string
  readonly tls: boolean
  /** Host name or IP (no brackets). */
  readonly host: string
  readonly port: number
  /** `host:port` / `[v6]:port`, for logs and Proxy-Status next-hop. */
  readonly authority: string
  /** Precomputed `Basic …` value, when the parent wants credentials. */
  readonly authorization?: string
  readonly tlsOptions?: {
    readonly ca?: string
    readonly cert?: string
    readonly key?: string
    readonly servername?: string
  }
}

function decode (part: string, what: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw new Error(`${what} in the URL is not valid percent-encoding`)
  }
}

/** The fields that hold or point at a secret: `sluice validate` can do without them. */
export type SecretField = 'password_env' | 'password_file' | 'key_file'

export interface SecretOptions {
  /**
   * Called instead of throwing when a secret cannot be had (an unset variable,
   * an unreadable file); the parent is then built without it. Only for
   * validating: a parent built this way must never be dialed.
   */
  readonly onMissingSecret?: (field: SecretField, message: string) => void
  /**
   * Each TLS file read (ca_file, cert_file, key_file): the config watches
   * and hashes them, so a rotated client certificate is picked up by a
   * reload (issue 13). Not password files: their content must not reach
   * the logged config hash, where a weak password could be guessed from it.
   */
  readonly onRead?: (path: string, content: string) => void
}

/** Build a Parent; throws Error with a message fit for a config problem. */
export function loadParent (name: string, spec: ParentSpec, configFile: string, env: NodeJS.ProcessEnv = process.env, secrets: SecretOptions = {}): Parent {
  let url: URL
  try {
    url = new URL(spec.url)
  } catch {
    throw new Error('url: expected http://[user:pass@]host:port or https://…')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`url: scheme must be http or https, got ${url.protocol}`)
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') throw new Error('url: a parent URL has no path, query or fragment')
  const tls = url.protocol === 'https:'
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
  // URL drops a port equal to the scheme's default (`:80` for http), so read it from the text.
  const explicit = /^[a-z]+:\/\/(?:[^@/]*@)?(?:\[[^\]]*\]|[^:/]*):(\d+)/i.exec(spec.url)
  const port = explicit?.[1] !== undefined ? Number(explicit[1]) : (tls ? 443 : 3128)
  if (port < 1 || port > 65535) throw new Error('url: port must be 1-65535')
  const readRel = (file: string): string => {
    const path = resolve(dirname(configFile), file)
    const text = readFileSync(path, 'utf8')
    secrets.onRead?.(path, text)
    return text
  }
  /** A secret that cannot be had: an error, or with onMissingSecret a warning and nothing. */
  const missing = (field: SecretField, message: string): undefined => {
    if (secrets.onMissingSecret === undefined) throw new Error(`${field}: ${message}`)
    secrets.onMissingSecret(field, message)
    return undefined
  }
  const readSecret = (field: SecretField, file: string): string | undefined => {
    const path = resolve(dirname(configFile), file)
    try {
      return readFileSync(path, 'utf8')
    } catch (err) {
      return missing(field, `cannot read ${path}: ${(err as Error).message}`)
    }
  }

  /** A private key: a secret, but high in entropy, so it is hashed with the config like the certificate. */
  const readKey = (file: string): string => {
    const text = readSecret('key_file', file) ?? ''
    if (text !== '') secrets.onRead?.(resolve(dirname(configFile), file), text)
    return text
  }

  let user = url.username === '' ? spec.username : decode(url.username, 'user name')
  let password = url.password === '' ? undefined : decode(url.password, 'password')
  if (spec.password_env !== undefined) {
    password = env[spec.password_env] ?? missing('password_env', `environment variable ${spec.password_env} is not set`) ?? ''
  }
  if (spec.password_file !== undefined) password = (readSecret('password_file', spec.password_file) ?? '').replace(/\r?\n$/, '')
  if (password !== undefined && user === undefined) user = ''
  // RFC 7617 §2: the user-id cannot contain a colon (the parent would split there).
  if (user?.includes(':') === true) throw new Error('the user name for a parent cannot contain ":"')
  const authorization = user === undefined ? undefined : 'Basic ' + Buffer.from(`${user}:${password ?? ''}`, 'utf8').toString('base64')

  const tlsOptions = tls
    ? {
        ...(spec.ca_file === undefined ? {} : { ca: readRel(spec.ca_file) }),
        ...(spec.cert_file === undefined ? {} : { cert: readRel(spec.cert_file) }),
        ...(spec.key_file === undefined ? {} : { key: readKey(spec.key_file) }),
        ...(spec.servername === undefined ? {} : { servername: spec.servername })
      }
    : undefined
  return {
    name,
    tls,
    host,
    port,
    authority: isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`,
    ...(authorization === undefined ? {} : { authorization }),
    ...(tlsOptions === undefined ? {} : { tlsOptions })
  }
}
