/**
 * A Sluice instance: listeners, the shared resolver, dialer and tunnel
 * registry, and its lifecycle (listen, reload, graceful close). Logger is
 * injected, never global, so tests capture their own.
 */
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import { createResolver, type Resolver } from '../net/resolver.js'
import { directDialer, type Dialer } from '../upstream/dialer.js'
import { TunnelRegistry } from './registry.js'
import { createConnectServer } from './http-connect.js'

export interface ProxyOptions {
  readonly config: Config
  readonly logger: Logger
  /** Override where to listen (the CLI's --listen). */
  readonly listen?: ReadonlyArray<{ host: string, port: number }>
  /** Injected for tests and future listeners; defaults are built from config. */
  readonly resolver?: Resolver
  readonly dialer?: Dialer
}

export interface Proxy {
  /** Bound addresses, after listen(). */
  readonly addresses: readonly AddressInfo[]
  readonly registry: TunnelRegistry
  listen (): Promise<readonly AddressInfo[]>
  /** Open client connections across all listeners (tunnels included). */
  connections (): Promise<number>
  /** Swap in a new config for new tunnels (listen and timeouts need a restart). */
  reload (config: Config): void
  /**
   * Stop accepting, let open tunnels finish for `drainMs` (default: the
   * config's drain timeout), then close the rest. Resolves when all is closed.
   */
  close (drainMs?: number): Promise<void>
}

export function createProxy (opts: ProxyOptions): Proxy {
  let config = opts.config
  let draining = false
  const log = opts.logger
  const t = config.timeouts
  const registry = new TunnelRegistry({ idleMs: t.idle, maxLifetimeMs: t.max_lifetime })
  const resolver = opts.resolver ?? createResolver({
    servers: config.dns.servers,
    timeoutMs: t.dns,
    maxTtlMs: config.dns.max_ttl,
    negativeTtlMs: config.dns.negative_ttl
  })
  const dialer = opts.dialer ?? directDialer({ connectTimeoutMs: t.connect, attemptDelayMs: t.happy_eyeballs, keepAliveMs: 60_000 })
  const ctx = { log, config: () => config, resolver, dialer, registry, draining: () => draining }
  const servers: Server[] = []
  const addresses: AddressInfo[] = []

  return {
    addresses,
    registry,
    async listen () {
      for (const { host, port } of opts.listen ?? config.listen) {
        const server = createConnectServer(ctx, { headerTimeoutMs: t.header, maxHeaderSize: config.limits.max_header_size })
        server.listen({ host, port })
        await once(server, 'listening')
        servers.push(server)
        addresses.push(server.address() as AddressInfo)
      }
      log.info({ listen: addresses.map(a => a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`), config: config.file, hash: config.hash }, 'sluice listening')
      return addresses
    },
    async connections () {
      const counts = await Promise.all(servers.map(async s => await new Promise<number>((resolve, reject) =>
        s.getConnections((err, n) => { if (err === null) resolve(n); else reject(err) }))))
      return counts.reduce((a, b) => a + b, 0)
    },
    reload (next: Config) {
      config = next
      log.info({ config: next.file, hash: next.hash }, 'configuration reloaded')
    },
    async close (drainMs = config.timeouts.drain) {
      draining = true
      const closed = servers.map(async s => await new Promise<void>(resolve => s.close(() => resolve())))
      for (const s of servers) s.closeIdleConnections()
      log.info({ tunnels: registry.size, drain_ms: drainMs }, 'shutting down: draining tunnels')
      if (!(await registry.drained(drainMs))) {
        log.warn({ tunnels: registry.size }, 'drain deadline passed: closing remaining tunnels')
        registry.closeAll('shutdown')
        await registry.drained(5000)
      }
      for (const s of servers) s.closeAllConnections()
      await Promise.all(closed)
      log.info('shut down')
    }
  }
}
