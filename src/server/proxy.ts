/**
 * A Sluice instance: listeners, the shared resolver, dialer and tunnel
 * registry, and its lifecycle (listen, reload, graceful close). Logger is
 * injected, never global, so tests capture their own.
 */
import type { AddressInfo, Server } from 'node:net'
import type { ListenAddress } from '../config/listeners.js'
import { createTcpListener } from './tcp-listener.js'
import { createSniListener } from './sni-listener.js'
import { createTerminateListener, type TerminateListener } from './terminate-listener.js'
import { DEFAULT_MAX_HELLO_BYTES } from '../tls/client-hello.js'
import type { TlsFront } from './tls-front.js'
import { once } from 'node:events'
import type { Logger } from 'pino'
import type { Config } from '../config/load.js'
import { createResolver, type Resolver } from '../net/resolver.js'
import { ParentHealth } from '../upstream/health.js'
import { dialRoute, type RouteDialOptions } from '../upstream/route.js'
import { TunnelRegistry } from './registry.js'
import { UserBytes } from './user-bytes.js'
import { createConnectListener, refuseWaiting } from './connect-listener.js'
import { HeadTimeouts } from './head-timeouts.js'
import { installProxyStage } from './proxy-stage.js'
import { AcceptGuard, fdLimit, openFds } from './accept-guard.js'
import { WaitingConnections } from './waiting.js'
import type { AuthState, ConnectContext } from '../connect/context.js'
import { formatHostPort } from '../net/ip.js'
import { relayMode } from '../tunnel/relay.js'
import { F } from '../observability/fields.js'
import { Authenticator } from '../auth/authenticator.js'
import { BcryptPool } from '../auth/bcrypt-pool.js'
import { Lockout } from '../auth/lockout.js'
import { selfMatcher } from '../net/self.js'
import { stillAllowed } from '../policy/recheck.js'
import { NOOP_METRICS, type ProxyMetrics } from '../observability/proxy-metrics.js'

export interface ProxyOptions {
  readonly config: Config
  readonly logger: Logger
  /**
   * Override where to listen (the CLI's --listen: one plain connect
   * listener; tests: the config's listeners on port 0). A listener named
   * like one in the config gets that one's certificates on reload.
   */
  readonly listen?: ReadonlyArray<{ host: string, port: number, name?: string } & Partial<Pick<ListenAddress, 'kind' | 'tls' | 'target' | 'via' | 'targetPort' | 'map' | 'upstreamTls' | 'proxyProtocol'>>>
  /** Failed-login counts; default: this process's own (serve.ts shares one through the primary under --workers). */
  readonly lockout?: Lockout
  /** Parent health; default: this process's own (serve.ts shares one through the primary under --workers, issue 15). */
  readonly health?: ParentHealth
  /** Session ticket keys for TLS listeners (48 bytes), shared by every worker (cli/cluster.ts); default: each listener's own. */
  readonly ticketKeys?: Buffer
  /** Injected for tests and future listeners; the default is built from config. */
  readonly resolver?: Resolver
  /** How a route is dialed; tests inject one to reach "public" targets on loopback. */
  readonly dial?: typeof dialRoute
  /** The descriptor limit to plan for (default: the process's RLIMIT_NOFILE); tests set a small one. */
  readonly fdLimit?: number
  /** TCP keepalive idle delay for tunnels (default 60 s, as http.Server set it); tests set a short one. */
  readonly keepAliveMs?: number
  /**
   * Where to count (issue 15): a `Metrics` (observability/metrics.ts), one
   * per process. Without it nothing is counted.
   */
  readonly metrics?: ProxyMetrics
}

export interface Proxy {
  /** Bound addresses, after listen(). */
  readonly addresses: readonly AddressInfo[]
  readonly registry: TunnelRegistry
  listen (): Promise<readonly AddressInfo[]>
  /** Open client connections across all listeners (tunnels included). */
  connections (): Promise<number>
  /**
   * True from the moment close() is called: the admin listener's `/readyz`
   * answers 503 from then on, so balancers stop sending (issue 15).
   */
  draining (): boolean
  /**
   * Swap in a new config for new tunnels (listen and timeouts need a restart).
   * `level`: its `configuration reloaded` line's; a --workers worker's is
   * debug, the primary logs the cluster's one line (issue 15).
   */
  reload (config: Config, level?: 'info' | 'debug'): void
  /**
   * Go on serving for `delayMs` (default: `timeouts.drain_delay`) while
   * draining() says so, then stop accepting, let open tunnels finish for
   * `drainMs` (default: `timeouts.drain`), and close the rest. Resolves when all is closed.
   */
  close (drainMs?: number, delayMs?: number): Promise<void>
}

export function createProxy (opts: ProxyOptions): Proxy {
  let config = opts.config
  /** Refusing new requests (503 ERR_SHUTTING_DOWN): after the drain delay. */
  let draining = false
  /** close() called: /readyz is 503 from here, during the drain delay too. */
  let closing = false
  const log = opts.logger
  const t = config.timeouts
  const keepAliveMs = opts.keepAliveMs ?? 60_000
  const metrics = opts.metrics ?? NOOP_METRICS
  // Byte counts outlive reloads; the limit is read from the config in force at each use (issue 15).
  const userBytes = new UserBytes(() => config.limits.max_bytes_per_user)
  const registry = new TunnelRegistry({ idleMs: t.idle, maxLifetimeMs: t.max_lifetime, keepAliveMs, onDelete: () => guard?.check(), userBytes })
  const resolver = opts.resolver ?? createResolver({
    servers: config.dns.servers,
    timeoutMs: t.dns,
    maxTtlMs: config.dns.max_ttl,
    negativeTtlMs: config.dns.negative_ttl,
    metrics
  })
  // Parent health outlives reloads: a parent that is down stays down.
  const health = opts.health ?? new ParentHealth(log, config.parentBackoffMs)
  const dialOptions: RouteDialOptions = Object.freeze({
    resolver,
    health,
    log,
    connectTimeoutMs: t.connect,
    attemptDelayMs: t.happy_eyeballs,
    keepAliveMs
  })
  const routeOptions = (): RouteDialOptions => dialOptions
  let isSelf: (address: string, port: number) => boolean = () => false
  // Lock-outs survive reloads; the bcrypt workers are shared by every authenticator.
  // Given by serve.ts under --workers, shared through the primary (cli/cluster-state.ts; issue 15).
  const lockout = opts.lockout ?? new Lockout(config.auth?.lockout ?? { failures: 0, windowMs: 0, durationMs: 0 })
  const pool = new BcryptPool({ size: 2, log })
  const makeAuth = (c: Config): AuthState | undefined => c.auth === undefined
    ? undefined
    : {
        config: c.auth,
        authenticator: new Authenticator({
          users: c.auth.users,
          groups: c.auth.groups,
          pool,
          cacheTtlMs: c.auth.cacheTtlMs,
          cacheSize: c.auth.cacheSize,
          maxPendingPerClient: c.auth.maxPendingPerClient,
          maxPending: c.auth.maxPending
        })
      }
  let auth = makeAuth(config)
  const ctx: ConnectContext = {
    log,
    config: () => config,
    resolver,
    routeOptions,
    dial: opts.dial ?? dialRoute,
    registry,
    draining: () => draining,
    isSelf: (a, p) => isSelf(a, p),
    auth: () => auth,
    lockout,
    userBytes,
    metrics
  }
  metrics.configApplied(config.hash)
  metrics.sources({
    tunnels: () => registry.size,
    parents: () => [...config.routing.parents.keys()].map(name => [name, !health.isDown(name)] as const)
  })
  const servers: Server[] = []
  const addresses: AddressInfo[] = []
  let listening: Promise<readonly AddressInfo[]> | undefined
  // Descriptors held for clients: one per waiting connection, two per tunnel.
  let guard: AcceptGuard | undefined
  const waiting = new WaitingConnections(() => guard?.check())
  const accepted = (): void => guard?.check()
  // One header-timeout sweep for every listener's connections (issue 12).
  const heads = new HeadTimeouts(t.header)
  // TLS listeners (issue 13): the wait for a first byte, on a sweep of its own; their fronts by name, for reloads.
  const handshakes = new HeadTimeouts(t.tls_handshake)
  const fronts = new Map<string, TlsFront>()
  const terminators = new Map<string, TerminateListener>()

  async function bind (): Promise<readonly AddressInfo[]> {
    for (const l of opts.listen ?? config.listen) {
      const { host, port } = l
      const name = l.name ?? formatHostPort(host, port)
      let server: Server
      if (l.kind === 'tcp' && l.target !== undefined) {
        server = createTcpListener(ctx, { name, target: l.target, ...(l.via === undefined ? {} : { via: l.via }), accepted })
      } else if (l.kind === 'sni') {
        server = createSniListener(ctx, {
          name,
          targetPort: l.targetPort ?? 443,
          ...(l.map === undefined ? {} : { map: l.map }),
          ...(l.via === undefined ? {} : { via: l.via }),
          maxHelloBytes: DEFAULT_MAX_HELLO_BYTES,
          hellos: heads,
          waiting,
          accepted
        })
      } else if (l.kind === 'terminate' && l.tls !== undefined && l.upstreamTls !== undefined) {
        const made = createTerminateListener(ctx, {
          name,
          targetPort: l.targetPort ?? 443,
          ...(l.map === undefined ? {} : { map: l.map }),
          ...(l.via === undefined ? {} : { via: l.via }),
          tls: l.tls,
          upstreamTls: l.upstreamTls,
          maxHelloBytes: DEFAULT_MAX_HELLO_BYTES,
          hellos: heads,
          handshakes,
          waiting,
          ...(opts.ticketKeys === undefined ? {} : { ticketKeys: opts.ticketKeys }),
          accepted
        })
        server = made.server
        terminators.set(name, made)
      } else {
        const made = createConnectListener(ctx, {
          name,
          maxHeaderSize: config.limits.max_header_size,
          waiting,
          heads,
          accepted,
          ...(l.tls === undefined
            ? {}
            : { tls: { tls: l.tls, handshakeMs: t.tls_handshake, firstBytes: handshakes, ...(opts.ticketKeys === undefined ? {} : { ticketKeys: opts.ticketKeys }) } })
        })
        server = made.server
        if (made.tls !== undefined) fronts.set(name, made.tls)
      }
      // PROXY protocol (issue 15): a stage in front of the listener's own handler, whatever its kind.
      if (l.proxyProtocol !== undefined) {
        installProxyStage(server, { name, log, proxyProtocol: l.proxyProtocol, heads, waiting, accepted, http: (l.kind ?? 'connect') === 'connect' && l.tls === undefined })
      }
      server.listen({ host, port })
      servers.push(server)
      await once(server, 'listening')
      addresses.push(server.address() as AddressInfo)
    }
    isSelf = selfMatcher(addresses)
    guard = new AcceptGuard({
      log,
      limit: opts.fdLimit ?? fdLimit(),
      base: openFds(),
      inUse: () => waiting.size + 2 * registry.size,
      // Stop listening; every connection stays as it is.
      pause: () => { for (const s of servers) if (s.listening) s.close() },
      resume: () => { servers.forEach((s, i) => { const a = addresses[i]; if (!s.listening && a !== undefined && !draining) s.listen({ host: a.address, port: a.port }) }) }
    })
    if (config.limits.max_tunnels * 2 > guard.capacity) {
      log.warn({ max_tunnels: config.limits.max_tunnels, fd_limit: opts.fdLimit ?? fdLimit(), tunnels_that_fit: Math.floor(guard.capacity / 2) },
        'limits.max_tunnels needs more file descriptors than this process may open: accepting pauses first (raise ulimit -n / LimitNOFILE)')
    }
    // The relay path in use (docs/node-internals.md B2): `pipe` when forced by SLUICE_RELAY=pipe or when Node's private fields are missing.
    log.info({ listen: addresses.map(a => formatHostPort(a.address, a.port)), config: config.file, hash: config.hash, relay: relayMode() }, 'sluice listening')
    return addresses
  }

  return {
    addresses,
    registry,
    async listen () {
      listening ??= bind()
      return await listening
    },
    draining: () => closing,
    async connections () {
      const counts = await Promise.all(servers.map(async s => await new Promise<number>((resolve, reject) =>
        s.getConnections((err, n) => { if (err === null) resolve(n); else reject(err) }))))
      return counts.reduce((a, b) => a + b, 0)
    },
    reload (next: Config, level: 'info' | 'debug' = 'info') {
      const previous = config
      config = next
      // A new authenticator: its verification cache starts empty (users may have changed).
      auth = makeAuth(next)
      // Certificates changed on disk come with the reload, validated at load (issue 13).
      for (const l of next.listen) {
        const front = fronts.get(l.name)
        if (front !== undefined && l.tls !== undefined && l.tls !== previous.listen.find(p => p.name === l.name)?.tls) front.update(l.tls)
        const terminator = terminators.get(l.name)
        if (terminator !== undefined && l.tls !== undefined && l.upstreamTls !== undefined) terminator.update(l.tls, l.upstreamTls, l.map)
      }
      if (next.auth !== undefined) lockout.configure(next.auth.lockout)
      // A byte quota turned on or off: the sweep's timer follows at once, not at the next CONNECT.
      registry.retime()
      metrics.configApplied(next.hash)
      log[level]({ config: next.file, hash: next.hash, previous_hash: previous.hash }, 'configuration reloaded')
      if (next.revokeOnReload) {
        // Open tunnels keep the decision they were given, unless asked otherwise.
        const revoked = registry.filter(t => t.state === 'established' && t.decision !== undefined &&
          !stillAllowed(next.policy, t.decision.facts, t.dialed, t.hops.length > 0))
        for (const t of revoked) {
          const d = t.dialed
          log.info({ [F.tunnel]: t.id, [F.target]: t.target?.authority, [F.dialed]: d === undefined ? undefined : formatHostPort(d.address, d.port) }, 'revoking tunnel denied by the new policy')
          t.destroy('revoked')
        }
      }
    },
    async close (drainMs = config.timeouts.drain, delayMs = config.timeouts.drain_delay) {
      closing = true
      // Issue 15: closing the listeners with /readyz would refuse what a balancer sends before its next check.
      if (delayMs > 0) {
        log.info({ drain_delay_ms: delayMs }, 'not ready: still accepting for drain_delay')
        await new Promise(resolve => setTimeout(resolve, delayMs))
      }
      draining = true
      // A close during listen() waits for the binding, then closes it too.
      await listening?.catch(() => [])
      for (const s of servers) if (s.listening) s.close()
      // Requests half-sent or not yet sent get 503, not a bare FIN (issue 11, finding 7).
      refuseWaiting(ctx, waiting)
      log.info({ tunnels: registry.size, drain_ms: drainMs }, 'shutting down: draining tunnels')
      if (!(await registry.drained(drainMs))) {
        log.warn({ tunnels: registry.size }, 'drain deadline passed: closing remaining tunnels')
        registry.closeAll('shutdown')
        await registry.drained(5000)
      }
      // Connections not (or no longer) tunnels: a refused one still lingering, a 407's retry still to come.
      for (const socket of waiting.all()) socket.destroy()
      // Resolves once every socket is gone (the close callback's ERR_SERVER_NOT_RUNNING only says it stopped listening earlier).
      await Promise.all(servers.map(async s => await new Promise<void>(resolve => s.close(() => resolve()))))
      await pool.close()
      log.info('shut down')
    }
  }
}
