/**
 * The admin listener (issue 15) beside an in-process Sluice: started on
 * 127.0.0.1:0 with what serve.ts gives it, asked over real HTTP (undici),
 * and a real PAC evaluator (pac-resolver on QuickJS) for /proxy.pac.
 */
import { readFile } from 'node:fs/promises'
import type { TestContext } from 'node:test'
import { QuickJS } from 'quickjs-wasi'
import { createPacResolver } from 'pac-resolver'
import { request } from 'undici'
import type { Config } from '../../src/config/load.js'
import { ConfigStatus } from '../../src/admin/config-view.js'
import { createAdminServer, proxyReadiness, type DrainStarter, type MetricsProvider } from '../../src/admin/server.js'
import { localTunnels } from '../../src/admin/tunnels.js'
import type { Sluice } from './sluice.js'
import { captureLogs, type LogCapture } from './sluice.js'

export interface Admin extends Pick<LogCapture, 'logs' | 'waitForLog'> {
  /** `http://127.0.0.1:PORT` */
  readonly url: string
  readonly status: ConfigStatus
  /** Swap the config the admin server sees (a reload). */
  setConfig (c: Config): void
}

export interface AdminOptions {
  readonly metrics?: MetricsProvider
  /** Use this ConfigStatus (a test's reloader feeds it). */
  readonly status?: ConfigStatus
  /** POST /drain's starter (serve.ts gives its cli/shutdown.ts one). */
  readonly drain?: DrainStarter
}

/** The admin listener for `s` (closed after the test), serving `config` as serve.ts would. */
export async function adminFor (t: Pick<TestContext, 'after'>, s: Sluice, config: Config, opts: AdminOptions = {}): Promise<Admin> {
  const { logger, logs, waitForLog } = captureLogs()
  let current = config
  const status = opts.status ?? new ConfigStatus()
  const server = createAdminServer({
    log: logger,
    config: () => current,
    readiness: () => proxyReadiness(s.proxy),
    tunnels: localTunnels(s.proxy.registry, logger),
    status,
    listen: { host: '127.0.0.1', port: 0 },
    ...(opts.metrics === undefined ? {} : { metrics: opts.metrics }),
    ...(opts.drain === undefined ? {} : { drain: opts.drain })
  })
  const addr = await server.listen()
  t.after(async () => { await server.close() })
  return { url: `http://127.0.0.1:${addr.port}`, status, logs, waitForLog, setConfig: (c) => { current = c } }
}

export interface Answer {
  readonly status: number
  readonly headers: Readonly<Record<string, string | string[] | undefined>>
  readonly text: string
}

/** One admin request (undici), its whole body as text. */
export async function ask (url: string, opts: { method?: 'GET' | 'HEAD' | 'POST' | 'DELETE' | 'PUT', token?: string, authorization?: string } = {}): Promise<Answer> {
  const authorization = opts.authorization ?? (opts.token === undefined ? undefined : `Bearer ${opts.token}`)
  const res = await request(url, {
    method: opts.method ?? 'GET',
    ...(authorization === undefined ? {} : { headers: { authorization } }),
    headersTimeout: 5000,
    bodyTimeout: 5000
  })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

/** GET `url` and parse its JSON body (asserting 200 first is the caller's). */
export async function askJson<T> (url: string, token?: string): Promise<{ status: number, body: T }> {
  const a = await ask(url, token === undefined ? {} : { token })
  return { status: a.status, body: JSON.parse(a.text) as T }
}

let quickjs: Promise<QuickJS> | undefined

/** A PAC file's FindProxyForURL, run by pac-resolver in QuickJS (WebAssembly, no network). */
export async function pacEvaluator (pac: string): Promise<(url: string) => Promise<string>> {
  quickjs ??= readFile(new URL(import.meta.resolve('quickjs-wasi/quickjs.wasm'))).then(async wasm => await QuickJS.create({ wasm }))
  const find = createPacResolver(await quickjs, pac)
  return async (url) => await find(url)
}
