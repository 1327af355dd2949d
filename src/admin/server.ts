/**
 * The admin listener (issue 15): a plain node:http server beside the proxy,
 * loopback by default. Not the hot path: one small request now and then.
 *
 *   GET /healthz     200 "ok": the process is alive
 *   GET /readyz      200 when listening with a config loaded; 503 from the
 *                    moment a drain starts, so balancers stop sending
 *   GET /metrics     the injected provider's Prometheus text (404 without one)
 *   GET /proxy.pac   a PAC file from the policy (admin/pac.ts)
 *   GET /tunnels     open tunnels as JSON, ?user= and ?target=
 *   DELETE /tunnels/ID  close one (`close: "admin"` on its line)
 *   GET /config      loaded files' hashes and the last reload (admin/config-view.ts)
 *   POST /drain      start the drain SIGTERM starts (cli/shutdown.ts), or find it
 *                    running: 202 and its timings, the same on every call
 *
 * With a token configured, /metrics, /tunnels, /config and /drain need it
 * (`Authorization: Bearer …`, else 401); /healthz, /readyz and /proxy.pac
 * never do: probes and browsers fetching a PAC send no credentials, and
 * they show nothing an operator keeps secret (README "Admin endpoint").
 * Everything it needs is injected: it serves a single process and a
 * --workers primary alike.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import type { Config, AdminConfig } from '../config/load.js'
import { formatHostPort } from '../net/ip.js'
import { F } from '../observability/fields.js'
import { checkBearer, challenge } from './auth.js'
import { configView, type ConfigStatus } from './config-view.js'
import { listenerProxy, pacScript, type PacListener } from './pac.js'
import type { TunnelFilter, TunnelSource } from './tunnels.js'

/** Prometheus text from whoever counts (observability/metrics.ts; under --workers the cluster aggregator). */
export type MetricsProvider = () => Promise<{ readonly contentType: string, readonly body: string }>

export type Readiness = 'starting' | 'ready' | 'draining'

/** A single process's readiness: listening, and not draining (proxy.close() started). */
export function proxyReadiness (proxy: { draining: () => boolean, readonly addresses: readonly unknown[] }): Readiness {
  return proxy.draining() ? 'draining' : proxy.addresses.length === 0 ? 'starting' : 'ready'
}

/** A drain as POST /drain reports it (cli/shutdown.ts makes it, once per process). */
export interface DrainStatus {
  readonly state: 'draining'
  /** What started it: the signal's name, `admin` or `primary`. */
  readonly by: string
  readonly started_at: string
  readonly drain_delay_ms: number
  readonly drain_ms: number
  /** started_at + drain_delay: the listeners close then. */
  readonly accepting_until: string
  /** accepting_until + drain: tunnels still open then are closed. */
  readonly deadline: string
}

/** Start the drain, or find it running (idempotent); `fields` go on its log line. */
export type DrainStarter = (fields: Record<string, unknown>) => DrainStatus

export interface AdminServerOptions {
  readonly log: Logger
  /** The running config (reloads swap it): token, PAC settings, loaded files. */
  readonly config: () => Config
  readonly readiness: () => Readiness
  readonly tunnels: TunnelSource
  readonly status: ConfigStatus
  readonly metrics?: MetricsProvider
  /**
   * POST /drain (issue 15: what a Kubernetes preStop runs, through `sluice drain`):
   * the process's one drain starter, the one its SIGTERM uses. Undefined: 404.
   */
  readonly drain?: DrainStarter
  /** Where the proxy really listens when not the config's (`serve --listen`): the PAC's default address. */
  readonly proxyListen?: readonly PacListener[]
  /** Listen here instead of `admin.listen` (tests: port 0). */
  readonly listen?: { readonly host: string, readonly port: number }
}

export interface AdminServer {
  listen (): Promise<AddressInfo>
  /** Stop listening and drop open admin connections. */
  close (): Promise<void>
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void> | void

interface Route {
  readonly methods: Readonly<Record<string, Handler>>
  readonly auth: boolean
}

function send (res: ServerResponse, status: number, body: string, type = 'text/plain; charset=utf-8', headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers })
  res.end(body)
}

const json = (res: ServerResponse, status: number, value: unknown): void => send(res, status, JSON.stringify(value) + '\n', 'application/json')

export function createAdminServer (opts: AdminServerOptions): AdminServer {
  const { log } = opts
  // admin.listen is read at start; token and PAC settings follow reloads. A
  // reload that drops `admin:` keeps the last settings (and the token): the
  // listener stays up until a restart, and must not open up meanwhile.
  let lastAdmin: AdminConfig | undefined = opts.config().admin
  const settings = (): AdminConfig | undefined => {
    const a = opts.config().admin
    if (a !== undefined) lastAdmin = a
    return lastAdmin
  }
  // One PAC text per loaded config: built at the first request after a load, not per request.
  const pacs = new WeakMap<Config, string | undefined>()

  function pac (): string | undefined {
    const config = opts.config()
    if (pacs.has(config)) return pacs.get(config)
    const a = settings()
    const proxy = a?.pacProxy ?? listenerProxy(opts.proxyListen ?? config.listen)
    const table = a?.pac
    const text = proxy === undefined || table === undefined
      ? undefined
      : pacScript(table, {
        proxy: `${proxy.scheme} ${proxy.hostPort}`,
        fallback: a?.pacDefault === undefined ? table.policyDefault : a.pacDefault === 'proxy' ? 'PROXY' : 'DIRECT',
        hash: config.hash
      })
    pacs.set(config, text)
    return text
  }

  const routes: Readonly<Record<string, Route>> = {
    '/healthz': { auth: false, methods: { GET: (_q, res) => send(res, 200, 'ok\n') } },
    '/readyz': {
      auth: false,
      methods: {
        GET: (_q, res) => {
          const r = opts.readiness()
          send(res, r === 'ready' ? 200 : 503, `${r}\n`)
        }
      }
    },
    '/metrics': {
      auth: true,
      methods: {
        GET: async (_q, res) => {
          if (opts.metrics === undefined) { send(res, 404, 'no metrics in this process\n'); return }
          const m = await opts.metrics()
          send(res, 200, m.body, m.contentType)
        }
      }
    },
    '/proxy.pac': {
      auth: false,
      methods: {
        GET: (_q, res) => {
          const text = pac()
          if (text === undefined) { send(res, 404, 'no proxy address to advertise: the first connect listener listens on every interface; set admin.pac.proxy\n'); return }
          send(res, 200, text, 'application/x-ns-proxy-autoconfig')
        }
      }
    },
    '/tunnels': {
      auth: true,
      methods: {
        GET: async (_q, res, url) => {
          const user = url.searchParams.get('user')
          const target = url.searchParams.get('target')
          const filter: TunnelFilter = { ...(user === null ? {} : { user }), ...(target === null ? {} : { target }) }
          json(res, 200, await opts.tunnels.list(filter))
        }
      }
    },
    '/config': { auth: true, methods: { GET: (_q, res) => json(res, 200, configView(opts.config(), opts.status)) } },
    '/drain': {
      auth: true,
      methods: {
        // 202: the drain runs on after the answer; a second POST finds it running and restarts nothing.
        POST: (req, res) => {
          if (opts.drain === undefined) { send(res, 404, 'no drain in this process\n'); return }
          json(res, 202, opts.drain({ [F.adminClient]: formatHostPort(req.socket.remoteAddress ?? '', req.socket.remotePort ?? 0) }))
        }
      }
    }
  }

  /** `/tunnels/ID`: the one route with a parameter. */
  const closeTunnel: Route = {
    auth: true,
    methods: {
      DELETE: async (req, res, url) => {
        const id = decodeURIComponent(url.pathname.slice('/tunnels/'.length))
        const closed = await opts.tunnels.close(id)
        if (!closed) { json(res, 404, { error: `no open tunnel ${id}` }); return }
        log.info({ [F.tunnel]: id, [F.adminClient]: formatHostPort(req.socket.remoteAddress ?? '', req.socket.remotePort ?? 0) }, 'admin: tunnel close asked for and done')
        json(res, 200, { closed: id })
      }
    }
  }

  async function handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin.invalid')
    const route = routes[url.pathname] ?? (/^\/tunnels\/[^/]+$/.test(url.pathname) ? closeTunnel : undefined)
    if (route === undefined) { send(res, 404, 'not found\n'); return }
    const method = req.method === 'HEAD' && route.methods['GET'] !== undefined ? 'GET' : req.method ?? ''
    const handler = route.methods[method]
    if (handler === undefined) {
      const allow = Object.keys(route.methods).flatMap(m => m === 'GET' ? ['GET', 'HEAD'] : [m]).join(', ')
      send(res, 405, 'method not allowed\n', undefined, { allow })
      return
    }
    if (route.auth) {
      const check = checkBearer(req.headers.authorization, settings()?.tokenDigest)
      if (check !== 'ok') {
        if (check === 'invalid') log.warn({ path: url.pathname, [F.adminClient]: req.socket.remoteAddress }, 'admin request refused: wrong token')
        send(res, 401, 'unauthorized\n', undefined, { 'www-authenticate': challenge(check) })
        return
      }
    }
    await handler(req, res, url)
  }

  const server: Server = createServer({ requestTimeout: 10_000, headersTimeout: 5_000, keepAliveTimeout: 5_000 }, (req, res) => {
    req.resume()
    handle(req, res).catch((err: unknown) => {
      log.error({ err, path: req.url }, 'admin request failed')
      if (!res.headersSent) send(res, 500, 'internal error\n')
      else res.destroy()
    })
  })
  server.on('clientError', (_err, socket) => { socket.destroy() })

  return {
    async listen () {
      const a = opts.listen ?? settings()
      if (a === undefined) throw new Error('no admin section in the configuration')
      server.listen({ host: a.host, port: a.port })
      await once(server, 'listening')
      const addr = server.address() as AddressInfo
      const tokenFrom = settings()?.tokenFrom
      log.info({ [F.address]: formatHostPort(addr.address, addr.port), token: tokenFrom ?? 'none' }, 'admin listening')
      const loopback = /^(127\.|::1$|::ffff:127\.)/.test(addr.address)
      if (!loopback && tokenFrom === undefined) {
        log.warn({ address: formatHostPort(addr.address, addr.port) }, 'admin listener beyond loopback without a token: anyone who reaches it can list and close tunnels (set admin.token_file or token_env)')
      }
      return addr
    },
    async close () {
      if (!server.listening) return
      const closed = once(server, 'close')
      server.close()
      server.closeAllConnections()
      await closed
    }
  }
}
