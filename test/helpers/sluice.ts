/**
 * Start a real Sluice in-process on 127.0.0.1:0 with a config written as
 * YAML in the test, and capture its log lines (pino sink, as in pino's
 * own tests) so tests can wait on them instead of sleeping.
 */
import { Writable } from 'node:stream'
import { createLogger, createProxy, parseConfig, type Proxy, type ProxyOptions } from '../../src/index.js'

export interface LogRecord {
  readonly msg: string
  readonly [key: string]: unknown
}

export interface Sluice {
  readonly proxy: Proxy
  readonly port: number
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  readonly logs: LogRecord[]
  /** Resolves with the first record (past or future) matching `pred`. */
  waitForLog (pred: (r: LogRecord) => boolean, timeoutMs?: number): Promise<LogRecord>
  /** Resolves once `n` records match `pred`. */
  waitForLogs (pred: (r: LogRecord) => boolean, n: number, timeoutMs?: number): Promise<LogRecord[]>
  close (drainMs?: number): Promise<void>
}

/** A policy that lets tests reach their own loopback servers on any port. */
export const LOOPBACK_ALLOWED = `
rules:
  - name: test-loopback
    action: allow
    ips: [127.0.0.0/8, "::1/128"]
`

export async function startSluice (yaml: string = LOOPBACK_ALLOWED, opts: { listenHost?: string, dial?: ProxyOptions['dial'] } = {}): Promise<Sluice> {
  const text = /^\s*version:/m.test(yaml) ? yaml : `version: 1\n${yaml}`
  const config = parseConfig(text, 'test.yaml')
  const logs: LogRecord[] = []
  const waiters = new Set<() => void>()
  const sink = new Writable({
    write (chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogRecord)
      for (const w of [...waiters]) w()
      cb()
    }
  })
  const logger = createLogger({ level: 'debug', destination: sink })
  // The config's listeners (and their names, for `listeners:` rules), each on a free port.
  const listen = config.listen.map(l => ({ host: opts.listenHost ?? l.host, port: 0, name: l.name }))
  const proxy = createProxy({ config, logger, listen, ...(opts.dial === undefined ? {} : { dial: opts.dial }) })
  const [addr] = await proxy.listen()
  if (addr === undefined) throw new Error('sluice did not listen')

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
    proxy,
    port: addr.port,
    url: `http://127.0.0.1:${addr.port}`,
    logs,
    waitForLogs,
    async waitForLog (pred, timeoutMs) {
      const [first] = await waitForLogs(pred, 1, timeoutMs)
      if (first === undefined) throw new Error('unreachable')
      return first
    },
    async close (drainMs = 0) { await proxy.close(drainMs) }
  }
}
