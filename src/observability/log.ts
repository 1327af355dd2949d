/**
 * pino JSON to stdout (or pretty, when asked). Credentials must never
 * reach a log: nothing logs headers today, and redact is the backstop.
 */
import { pino, type Logger, type DestinationStream } from 'pino'
import pretty from 'pino-pretty'

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = typeof LOG_LEVELS[number]

export interface LogOptions {
  readonly level: LogLevel
  readonly pretty?: boolean
  /** Defaults to stdout; tests pass a capturing stream. */
  readonly destination?: DestinationStream
}

export function createLogger (opts: LogOptions): Logger {
  const options = {
    level: opts.level,
    base: { pid: process.pid },
    formatters: { level: (label: string) => ({ level: label }) },
    redact: {
      paths: ['headers["proxy-authorization"]', 'headers.authorization', '*.headers["proxy-authorization"]', 'password', '*.password'],
      censor: '[redacted]'
    }
  }
  if (opts.destination !== undefined) return pino(options, opts.destination)
  if (opts.pretty === true) return pino(options, pretty({ colorize: process.stdout.isTTY, sync: true }))
  return pino(options)
}
