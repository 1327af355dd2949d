/**
 * pino JSON to stdout (or pretty, when asked). Credentials must never
 * reach a log: nothing logs headers today, and redact is the backstop.
 */
import fs from 'node:fs'
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
  return pino(options, batched(pino.destination({ dest: 1, sync: false, minLength: LOG_BATCH_BYTES })))
}

/** Lines go out in writes of about this size… */
const LOG_BATCH_BYTES = 8192
/** …or at most this long after they were logged. */
const LOG_FLUSH_MS = 100

/**
 * Batched, asynchronous writes (issue 6): sonic-boom holds lines until
 * LOG_BATCH_BYTES and sends them in one write; the first line after a
 * quiet spell arms one timer that sends whatever is left LOG_FLUSH_MS
 * later. A busy proxy makes one write per ~20 tunnel lines instead of one
 * per line; an idle one has no timer and writes nothing. pino's exit hook
 * on the sonic-boom flushes what is left synchronously.
 */
function batched (dest: ReturnType<typeof pino.destination>): DestinationStream {
  survivesBrokenPipe(dest)
  let timer: NodeJS.Timeout | undefined
  const tick = (): void => {
    timer = undefined
    try {
      dest.flush()
    } catch {
      // Destroyed by pino's exit hook, which flushed already.
    }
  }
  return {
    write (line: string): void {
      if (timer === undefined) {
        timer = setTimeout(tick, LOG_FLUSH_MS)
        timer.unref()
      }
      dest.write(line)
    }
  }
}

/**
 * sonic-boom 4.2's flushSync (pino runs it at exit) retries every write
 * error but EAGAIN/EBUSY forever: with stdout a pipe whose reader is gone
 * (`sluice | head`, a log shipper that died) it spins on EPIPE and the
 * process never exits, SIGTERM or not. So during our flushSync a write that
 * fails with EPIPE counts as written: those lines had nowhere to go anyway.
 * (pino already stops logging on an EPIPE from an asynchronous write.)
 */
function survivesBrokenPipe (dest: ReturnType<typeof pino.destination>): void {
  const flushSync = dest.flushSync.bind(dest)
  dest.flushSync = (): void => {
    const writeSync = fs.writeSync
    fs.writeSync = ((...args: Parameters<typeof fs.writeSync>) => {
      try {
        return writeSync(...args)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EPIPE') throw err
        const data = args[1] as string | NodeJS.ArrayBufferView
        return typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength
      }
    }) as typeof fs.writeSync
    try {
      flushSync()
    } finally {
      fs.writeSync = writeSync
    }
  }
}
