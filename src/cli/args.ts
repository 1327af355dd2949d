/** argv → options, strictly: an unknown flag or bad value is a usage error (exit 2). */
import { parseArgs } from 'node:util'
import { LOG_LEVELS, type LogLevel } from '../observability/log.js'
import { parseListen } from '../config/schema.js'

export const USAGE = `Usage: sluice [serve] [options]

An explicit HTTP CONNECT forward proxy.

Options:
  -l, --listen HOST:PORT   listen here instead of the config's "listen"
                           (e.g. 127.0.0.1:3128, [::1]:3128, 0.0.0.0:3128)
  -c, --config FILE        YAML config and policy (default: the shipped
                           policies/default.yaml)
      --log-level LEVEL    fatal|error|warn|info|debug|trace|silent (default info)
      --log-format FORMAT  json|pretty (default json)
  -h, --help               show this help
  -v, --version            print the version

Signals: SIGTERM/SIGINT drain and exit 0 (a second one exits at once).
Exit codes: 0 ok, 1 runtime failure, 2 bad usage or invalid config.`

export interface CliOptions {
  readonly command: 'serve' | 'help' | 'version'
  readonly listen?: { host: string, port: number }
  readonly config?: string
  readonly logLevel: LogLevel
  readonly pretty: boolean
}

export class UsageError extends Error {
  override name = 'UsageError'
}

export function parseCli (argv: readonly string[]): CliOptions {
  let parsed
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        listen: { type: 'string', short: 'l' },
        config: { type: 'string', short: 'c' },
        'log-level': { type: 'string' },
        'log-format': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' }
      }
    })
  } catch (err) {
    throw new UsageError((err as Error).message)
  }
  const { values, positionals } = parsed
  if (values.help === true) return { command: 'help', logLevel: 'info', pretty: false }
  if (values.version === true) return { command: 'version', logLevel: 'info', pretty: false }
  const [command, ...rest] = positionals
  if (command !== undefined && command !== 'serve') throw new UsageError(`unknown command '${command}'`)
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
  return {
    command: 'serve',
    logLevel: level as LogLevel,
    pretty: format === 'pretty',
    ...(listen === undefined ? {} : { listen }),
    ...(values.config === undefined ? {} : { config: values.config })
  }
}
