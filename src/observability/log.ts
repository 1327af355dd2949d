/**
 * pino JSON to stdout (or pretty, when asked). Credentials must never
 * reach a log: nothing logs headers today, and redact is the backstop.
 */
import { createRequire } from 'node:module'
import { pino, type Logger, type DestinationStream } from 'pino'

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
  if (opts.pretty === true) {
    // Loaded only when asked for: it is a development aid and slow to import.
    const pretty = createRequire(import.meta.url)('pino-pretty') as (o: object) => DestinationStream
    return pino(options, pretty({ colorize: process.stdout.isTTY, sync: true }))
  }
  // Asynchronous writes: under load, lines logged while a write is in flight
  // go out together in the next one (one syscall, not one per tunnel), and
  // nothing waits for a buffer to fill. pino flushes what is left at exit.
  return pino(options, pino.destination({ dest: 1, sync: false, minLength: 0 }))
}
