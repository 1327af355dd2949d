/**
 * argv → a command, strictly: an unknown flag or bad value is a usage error
 * (exit 2), told in one line, with a "did you mean" for a near miss.
 */
import { parseArgs } from 'node:util'
import { isIP } from 'node:net'
import { LOG_LEVELS, type LogLevel } from '../observability/log.js'
import { MAX_TIMER_MS, parseListen } from '../config/schema.js'
import { didYouMean } from '../config/suggest.js'
import { parseDuration } from '../config/duration.js'
import { resolveWorkers } from './cluster.js'

export const USAGE = `Usage:
  sluice [serve] [options]          run the proxy
  sluice check [options] HOST:PORT  explain what the policy does with a target
                                    (for a tcp listener: sluice check --listener NAME)
  sluice validate [--strict] FILE...
                                    check config files: every problem, and
                                    warnings about likely mistakes
  sluice passwd [--scheme S] NAME   print a users-file line; the password is
                                    read from the terminal or stdin
  sluice drain [options]            start a running Sluice's drain (POST /drain
                                    on its admin listener) and wait for its
                                    tunnels to end: a Kubernetes preStop

Options (serve):
  -l, --listen HOST:PORT   listen here instead of the config's "listen"
                           (e.g. 127.0.0.1:3128, [::1]:3128, 0.0.0.0:3128)
  -c, --config FILE        YAML config and policy (default: the shipped
                           policies/default.yaml)
  -p, --parent URL         send every tunnel through this parent proxy
                           (http://[user:pass@]host:port or https://…)
  -w, --workers N|auto     run N worker processes sharing the listeners (default 1)
      --scheduling os|rr   with workers: each worker accepts for itself (os,
                           default) or the primary hands connections out
                           round-robin (rr)
      --log-level LEVEL    fatal|error|warn|info|debug|trace|silent (default info)
      --log-format FORMAT  json|pretty (default json)
  -h, --help               show this help
  -v, --version            print the version

Options (check):
  -c, --config FILE        as above
  -p, --parent URL         as above
      --client IP          the client's address (default 127.0.0.1)
      --user NAME          the authenticated user
      --listener NAME      the listener the request arrives on
      --json               print the result as JSON

Options (validate):
      --strict             warnings are errors too (exit 2)

Options (passwd):
      --scheme SCHEME      bcrypt (default; what htpasswd -B writes) or scrypt

Options (drain):
      --admin URL          the admin listener (default http://127.0.0.1:9090)
      --token-file FILE    the bearer token: this file's first line
      --token-env NAME     the bearer token: this environment variable
      --timeout DURATION   wait at most this long for open tunnels to end
                           (default 1m; 0: do not wait); exit 0 either way

Signals (serve): SIGTERM/SIGINT drain and exit 0 (a second one exits at once;
after POST /drain the first one changes nothing); SIGHUP reloads the config
(the file is also watched).
Exit codes: 0 ok / allowed (validate: valid, perhaps with warnings; drain:
started), 1 runtime failure / denied (drain: not started), 2 bad usage or
invalid config.`

export type Command =
  | { readonly command: 'help' }
  | { readonly command: 'version' }
  | { readonly command: 'serve', readonly config?: string, readonly parent?: string, readonly listen?: { host: string, port: number }, readonly logLevel: LogLevel, readonly pretty: boolean, readonly workers: number, readonly scheduling: 'rr' | 'os' }
  | { readonly command: 'check', readonly config?: string, readonly parent?: string, readonly target: string, readonly client: string, readonly user?: string, readonly listener?: string, readonly json: boolean }
  | { readonly command: 'validate', readonly files: readonly string[], readonly strict: boolean }
  | { readonly command: 'passwd', readonly name: string, readonly scheme: 'bcrypt' | 'scrypt' }
  | { readonly command: 'drain', readonly admin: string, readonly tokenFile?: string, readonly tokenEnv?: string, readonly timeoutMs: number }

export class UsageError extends Error {
  override name = 'UsageError'
}

const OPTIONS = {
  listen: { type: 'string', short: 'l' },
  config: { type: 'string', short: 'c' },
  parent: { type: 'string', short: 'p' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  client: { type: 'string' },
  user: { type: 'string' },
  listener: { type: 'string' },
  json: { type: 'boolean' },
  scheme: { type: 'string' },
  workers: { type: 'string', short: 'w' },
  scheduling: { type: 'string' },
  strict: { type: 'boolean' },
  admin: { type: 'string' },
  'token-file': { type: 'string' },
  'token-env': { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' }
} as const

/** Options each command accepts; anything else is a usage error. */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  serve: ['listen', 'config', 'parent', 'log-level', 'log-format', 'workers', 'scheduling'],
  check: ['config', 'parent', 'client', 'user', 'listener', 'json'],
  validate: ['strict'],
  passwd: ['scheme'],
  drain: ['admin', 'token-file', 'token-env', 'timeout']
}

/** `sluice drain`'s default admin URL: `admin.listen`'s default (config/schema.ts). */
export const DEFAULT_ADMIN_URL = 'http://127.0.0.1:9090'

/** The first option in `argv` that is not one of ours, with a "did you mean". */
function unknownOption (argv: readonly string[]): string | undefined {
  const longs = Object.keys(OPTIONS)
  const shorts = new Set<string>(Object.values(OPTIONS).flatMap(o => 'short' in o ? [o.short] : []))
  for (const arg of argv) {
    if (arg === '--') return undefined
    if (arg.startsWith('--')) {
      const name = arg.slice(2).split('=')[0] ?? ''
      if (!longs.includes(name)) return `unknown option '--${name}'${didYouMean(`--${name}`, longs.map(l => `--${l}`))}`
    } else if (arg.startsWith('-') && arg.length > 1 && !shorts.has(arg[1] ?? '')) {
      return `unknown option '-${arg[1] ?? ''}'`
    }
  }
  return undefined
}

/** node's parseArgs messages, first sentence, lower-case start: `option '--json' does not take an argument`. */
function parseArgsMessage (err: Error): string {
  const first = err.message.split(/\.\s/)[0] ?? err.message
  return first.charAt(0).toLowerCase() + first.slice(1)
}

export function parseCli (argv: readonly string[]): Command {
  let parsed
  try {
    parsed = parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: OPTIONS })
  } catch (err) {
    const unknown = (err as { code?: unknown }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? unknownOption(argv) : undefined
    throw new UsageError(unknown ?? parseArgsMessage(err as Error))
  }
  const { values, positionals } = parsed
  if (values.help === true) return { command: 'help' }
  if (values.version === true) return { command: 'version' }
  const [first, ...rest] = positionals
  const command = first ?? 'serve'
  const allowed = ALLOWED[command]
  if (allowed === undefined) throw new UsageError(`unknown command '${command}'${didYouMean(command, Object.keys(ALLOWED))}`)
  for (const key of Object.keys(values)) {
    if (!allowed.includes(key)) throw new UsageError(`option '--${key}' does not apply to '${command}'`)
  }

  if (command === 'validate') {
    if (rest.length === 0) throw new UsageError('validate needs at least one FILE')
    return { command, files: rest, strict: values.strict === true }
  }
  if (command === 'passwd') {
    if (rest.length !== 1) throw new UsageError('passwd needs exactly one NAME')
    const scheme = values.scheme ?? 'bcrypt'
    if (scheme !== 'bcrypt' && scheme !== 'scrypt') throw new UsageError(`--scheme must be bcrypt or scrypt, got '${scheme}'`)
    return { command, name: rest[0] ?? '', scheme }
  }
  if (command === 'drain') {
    if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0] ?? ''}'`)
    const admin = values.admin ?? DEFAULT_ADMIN_URL
    if (!/^https?:\/\/[^/]+\/?$/.test(admin) || !URL.canParse(admin)) throw new UsageError(`--admin must be the admin listener's http://HOST:PORT, got '${admin}'`)
    if (values['token-file'] !== undefined && values['token-env'] !== undefined) throw new UsageError('give --token-file or --token-env, not both')
    const timeoutMs = parseDuration(values.timeout ?? '1m')
    if (timeoutMs === undefined || timeoutMs > MAX_TIMER_MS) throw new UsageError(`--timeout must be a duration such as 30s or 2m (at most 24d), got '${values.timeout ?? ''}'`)
    return {
      command,
      admin: admin.replace(/\/$/, ''),
      timeoutMs,
      ...(values['token-file'] === undefined ? {} : { tokenFile: values['token-file'] }),
      ...(values['token-env'] === undefined ? {} : { tokenEnv: values['token-env'] })
    }
  }
  if (command === 'check') {
    // A tcp listener has its own target: `check --listener NAME` alone asks about it.
    if (rest.length > 1 || (rest.length === 0 && values.listener === undefined)) throw new UsageError('check needs exactly one HOST:PORT (or --listener NAME of a tcp listener)')
    const client = values.client ?? '127.0.0.1'
    if (isIP(client) === 0) throw new UsageError(`--client must be an IP address, got '${client}'`)
    return {
      command,
      target: rest[0] ?? '',
      client,
      json: values.json === true,
      ...(values.config === undefined ? {} : { config: values.config }),
      ...(values.parent === undefined ? {} : { parent: values.parent }),
      ...(values.user === undefined ? {} : { user: values.user }),
      ...(values.listener === undefined ? {} : { listener: values.listener })
    }
  }

  if (rest.length > 0) throw new UsageError(`unexpected argument '${rest[0] ?? ''}'`)
  const level = values['log-level'] ?? 'info'
  if (!(LOG_LEVELS as readonly string[]).includes(level)) throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join('|')}, got '${level}'`)
  const format = values['log-format'] ?? 'json'
  if (format !== 'json' && format !== 'pretty') throw new UsageError(`--log-format must be json or pretty, got '${format}'`)
  let listen
  if (values.listen !== undefined) {
    listen = parseListen(values.listen)
    if (listen === undefined) throw new UsageError(`--listen must be HOST:PORT, got '${values.listen}'`)
  }
  const workers = resolveWorkers(values.workers ?? '1')
  if (workers === undefined) throw new UsageError(`--workers must be a number 1-999 or auto, got '${values.workers ?? ''}'`)
  // Measured (docs/benchmarks.md): os 2,857 vs rr 2,244 tunnels/s with 2 workers;
  // rr costs the primary ~78 µs per connection passed over IPC.
  const scheduling = values.scheduling ?? 'os'
  if (scheduling !== 'rr' && scheduling !== 'os') throw new UsageError(`--scheduling must be rr or os, got '${scheduling}'`)
  return {
    command: 'serve',
    logLevel: level as LogLevel,
    pretty: format === 'pretty',
    workers,
    scheduling,
    ...(listen === undefined ? {} : { listen }),
    ...(values.config === undefined ? {} : { config: values.config }),
    ...(values.parent === undefined ? {} : { parent: values.parent })
  }
}
