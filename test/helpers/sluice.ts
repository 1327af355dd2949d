/**
 * Start a real Sluice in-process on 127.0.0.1:0 with a config written as
 * YAML in the test, and capture its log lines (pino sink, as in pino's
 * own tests) so tests can wait on them instead of sleeping.
 */
import { Writable } from 'node:stream'
import type { TestContext } from 'node:test'
import { createLogger, createProxy, parseConfig, type Proxy, type ProxyOptions } from '../../src/index.js'

type Logger = ReturnType<typeof createLogger>

export interface LogRecord {
  readonly msg: string
  readonly [key: string]: unknown
}

/** Captured log records and waiters on them. */
export interface LogWaiters {
  readonly logs: LogRecord[]
  /** Resolves with the first record (past or future) matching `pred`. */
  waitForLog (pred: (r: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>
  /** Resolves once `n` records match `pred`. */
  waitForLogs (pred: (r: LogRecord) => boolean, n: number, timeoutMs?: number): Promise<LogRecord[]>
}

export interface Sluice extends LogWaiters {
  readonly proxy: Proxy
  /** The first listener's port. */
  readonly port: number
  /** The port a listener (by name) got. */
  portOf (name: string): number
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  close (drainMs?: number): Promise<void>
}

/** A policy that lets tests reach their own loopback servers on any port. */
export const LOOPBACK_ALLOWED = `
rules:
  - name: test-loopback
    action: allow
    ips: [127.0.0.0/8, "::1/128"]
`

/** A Writable that parses each JSON line written to it into `logs`, then calls `onWrite`. */
export function recordSink<R = LogRecord> (logs: R[], onWrite: () => void = () => {}): Writable {
  return new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as R)
      onWrite()
      cb()
    }
  })
}

/** A debug-level Sluice logger whose records land in `logs`, with waiters on them. */
export interface LogCapture extends LogWaiters {
  readonly logger: Logger
}

/** Capture a logger's records (pino sink, as in pino's own tests) so tests can wait on them instead of sleeping. */
export function captureLogs (): LogCapture {
  const logs: LogRecord[] = []
  const waiters = new Set<() => void>()
  const logger = createLogger({ level: 'debug', destination: recordSink(logs, () => { for (const w of [...waiters]) w() }) })

  async function waitForLogs (pred: (r: LogRecord) => boolean, n: number, timeoutMs = 5000): Promise<LogRecord[]> {
    return await new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.filter(pred)
        if (found.length >= n) { clearTimeout(timer); waiters.delete(check); resolve(found) }
      }
      const timer = setTimeout(() => {
        waiters.delete(check)
        reject(new Error(`timed out waiting for ${n} log record(s); have:\n${logs.map(l => JSON.stringify(l)).join('\n')}`))
      }, timeoutMs)
      waiters.add(check)
      check()
    })
  }

  return {
    logger,
    logs,
    waitForLogs,
    async waitForLog (pred, timeoutMs) {
      const [first] = await waitForLogs(pred, 1, timeoutMs)
      if (first === undefined) throw new Error('unreachable')
      return first
    }
  }
}

export interface SluiceOptions {
  /** Bind every listener to this host instead of the config's. */
  readonly listenHost?: string
  readonly dial?: ProxyOptions['dial']
  /** The file name the config is parsed as (default `test.yaml`). */
  readonly file?: string
  /** parseConfig's overrides (`--parent`, the environment for `parents_from_env`). */
  readonly overrides?: Parameters<typeof parseConfig>[2]
  /** TCP keepalive delay for tunnels (ProxyOptions.keepAliveMs). */
  readonly keepAliveMs?: number
  /** TLS session ticket keys (ProxyOptions.ticketKeys, 48 bytes), as a --workers primary hands them out. */
  readonly ticketKeys?: Buffer
  /** Where to count (ProxyOptions.metrics). */
  readonly metrics?: ProxyOptions['metrics']
}

export async function startSluice (yaml: string = LOOPBACK_ALLOWED, opts: SluiceOptions = {}): Promise<Sluice> {
  const text = /^\s*version:/m.test(yaml) ? yaml : `version: 1\n${yaml}`
  const config = parseConfig(text, opts.file ?? 'test.yaml', opts.overrides)
  const { logger, logs, waitForLog, waitForLogs } = captureLogs()
  // The config's listeners (and their names, for `listeners:` rules), each on a free port.
  const listen = config.listen.map(l => ({ ...l, host: opts.listenHost ?? l.host, port: 0 }))
  const proxy = createProxy({
    config,
    logger,
    listen,
    ...(opts.dial === undefined ? {} : { dial: opts.dial }),
    ...(opts.keepAliveMs === undefined ? {} : { keepAliveMs: opts.keepAliveMs }),
    ...(opts.ticketKeys === undefined ? {} : { ticketKeys: opts.ticketKeys }),
    ...(opts.metrics === undefined ? {} : { metrics: opts.metrics })
  })
  const bound = await proxy.listen()
  const [addr] = bound
  if (addr === undefined) throw new Error('sluice did not listen')
  const ports = new Map(listen.map((l, i) => [l.name, bound[i]?.port ?? 0]))

  return {
    proxy,
    port: addr.port,
    portOf (name) {
      const p = ports.get(name)
      if (p === undefined) throw new Error(`no listener named ${name}`)
      return p
    },
    url: `http://127.0.0.1:${addr.port}`,
    logs,
    waitForLogs,
    waitForLog,
    async close (drainMs = 0) { await proxy.close(drainMs) }
  }
}

/** {@link startSluice} for one test: closed after it. */
export async function sluiceFor (t: Pick<TestContext, 'after'>, yaml?: string, opts?: SluiceOptions): Promise<Sluice> {
  const s = await startSluice(yaml, opts)
  t.after(async () => { await s.close() })
  return s
}
