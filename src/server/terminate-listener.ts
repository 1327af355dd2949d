/**
 * TLS termination with re-origination (`kind: terminate`, issue 14; ATS's
 * forward_route; the seed's first reason, "control of the TLS
 * properties"). Routed as an sni listener (hello-wait.ts: the ClientHello's
 * name, or the `map`'s target for it, judged by the same policy, guard and
 * routes), but TLS is not passed through: the client is shown this
 * listener's certificate for its SNI (a store picked by SAN, wildcards
 * included, reloaded with the config) and Sluice opens its own TLS to the
 * upstream, verified, with the listener's or the map entry's
 * `upstream_tls` (tunnel/terminate.ts has the order of the two handshakes).
 *
 * A name that no certificate here serves is refused before anything is
 * dialed (unrecognized_name, ERR_SNI_NO_CERTIFICATE): the client could only
 * reject the certificate it would be shown.
 */
import { createServer, type Server, type Socket } from 'node:net'
import type { ConnectContext } from '../connect/context.js'
import { handleForward, type Upgrade } from '../connect/handle.js'
import { ProxyError } from '../errors.js'
import type { ListenerTls, SniMap, UpstreamTls } from '../config/listeners.js'
import { helloTarget } from '../config/sni-map.js'
import { refuseWithAlert } from '../tls/alerts.js'
import { sessionsFor } from '../tls/session-cache.js'
import { reoriginate } from '../tunnel/terminate.js'
import { Tunnel, type TunnelHost } from '../tunnel/tunnel.js'
import type { HeadTimeouts } from './head-timeouts.js'
import { awaitHello, type HelloListener } from './hello-wait.js'
import { forwardConnection } from './sni-listener.js'
import { servedFor } from './tls-identity.js'
import type { WaitingConnections } from './waiting.js'
import { onClosedFor } from './registry.js'

export interface TerminateListenerOptions {
  readonly name: string
  readonly targetPort: number
  readonly map?: SniMap
  readonly via?: string
  readonly tls: ListenerTls
  readonly upstreamTls: UpstreamTls
  readonly maxHelloBytes: number
  /** `timeouts.header`'s sweep: the ClientHello must arrive within it. */
  readonly hellos: HeadTimeouts
  /** `timeouts.tls_handshake`'s sweep: each of the two handshakes must complete within it. */
  readonly handshakes: HeadTimeouts
  readonly waiting: WaitingConnections
  /** Session ticket keys shared by every worker (cli/cluster.ts): a client resumes on any of them. */
  readonly ticketKeys?: Buffer
  readonly accepted: () => void
}

export interface TerminateListener {
  readonly server: Server
  /** Certificates and upstream TLS settings from a reload (already validated at load). */
  update (tls: ListenerTls, upstreamTls: UpstreamTls, map: SniMap | undefined): void
}

/** Every certificate's context gets the shared ticket keys, so a resumed session works on any worker. */
function shareTicketKeys (tls: ListenerTls, keys: Buffer | undefined): void {
  if (keys === undefined) return
  for (const c of [tls.main, ...tls.others]) (c.context.context as { setTicketKeys: (k: Buffer) => void }).setTicketKeys(keys)
}

export function createTerminateListener (ctx: ConnectContext, opts: TerminateListenerOptions): TerminateListener {
  // As the other listeners: half-open sockets, no Nagle (docs/node-internals.md A9).
  const server = createServer({ allowHalfOpen: true, noDelay: true })
  const host: TunnelHost = { log: ctx.log, onClosed: onClosedFor(ctx, opts.name), silent: true, refuse: refuseWithAlert }
  const conn = forwardConnection(opts.name, opts.via)
  const failed = (err: unknown): void => { ctx.log.error({ err }, 'unhandled error in a terminate forward') }
  let tls = opts.tls
  let upstreamTls = opts.upstreamTls
  let map = opts.map
  shareTicketKeys(tls, opts.ticketKeys)
  const listener: HelloListener = {
    log: ctx.log,
    name: opts.name,
    maxHelloBytes: opts.maxHelloBytes,
    hellos: opts.hellos,
    waiting: opts.waiting,
    targetOf: (hello) => {
      const entry = helloTarget(map, opts.targetPort, hello.serverName)
      // helloTarget refused a hello without a name.
      if (servedFor(tls, hello.serverName ?? '') === undefined) throw new ProxyError('ERR_SNI_NO_CERTIFICATE', { detail: hello.serverName ?? '' })
      return entry.target
    },
    open: (socket: Socket, hello, target, bytes) => {
      const name = hello.serverName ?? ''
      const served = servedFor(tls, name)
      const entry = helloTarget(map, opts.targetPort, name)
      const up = entry.tls ?? upstreamTls
      const tunnel = new Tunnel(socket, host)
      tunnel.helloFacts({ sni: hello.serverName, alpn: hello.alpn, ech: hello.echOffered })
      const servername = up.servername ?? name
      const upgrade: Upgrade = async (t, dialed) => await reoriginate(t, dialed, {
        context: (served ?? tls.main).context,
        upstream: up,
        servername,
        clientAlpn: hello.alpn,
        hello: bytes,
        handshakes: opts.handshakes,
        // Resumed only for the same name, target and settings: the session's certificate was verified for them.
        sessions: sessionsFor(up),
        sessionKey: `${servername} ${target.authority}`
      })
      handleForward(ctx, tunnel, target, conn, undefined, upgrade).catch(failed)
    }
  }
  server.on('connection', (socket: Socket) => {
    awaitHello(socket, listener)
    opts.accepted()
  })
  return {
    server,
    update (nextTls, nextUpstream, nextMap) {
      shareTicketKeys(nextTls, opts.ticketKeys)
      tls = nextTls
      upstreamTls = nextUpstream
      map = nextMap
    }
  }
}
