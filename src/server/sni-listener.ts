/**
 * SNI-routed TLS passthrough (`kind: sni`, issue 14; ATS's tunnel_route):
 * the client connects to Sluice as if it were the server, sends no CONNECT,
 * and its ClientHello says where it is going. Sluice reads the hello
 * (hello-wait.ts), routes by its server_name (or the listener's `map`) on
 * the listener's `target_port`, runs the CONNECT pipeline from admission on
 * (connect/handle.ts handleForward: policy with `hosts:` matching the SNI
 * name, DNS and the guard or a parent, the dial), replays the exact hello
 * bytes and relays. TLS itself is never touched.
 *
 * There is no HTTP: a refusal is logged with a code (`request refused`
 * before a tunnel exists, the tunnel's line after) and answered with a
 * TLS alert where one fits (tls/alerts.ts), then a close.
 */
import { createServer, type Server, type Socket } from 'node:net'
import type { ConnectContext, ConnectionInfo } from '../connect/context.js'
import { handleForward } from '../connect/handle.js'
import type { Target } from '../connect/target.js'
import { helloTarget, type SniMap } from '../config/sni-map.js'
import { refuseWithAlert } from '../tls/alerts.js'
import type { ClientHello } from '../tls/client-hello.js'
import { Tunnel, type TunnelHost } from '../tunnel/tunnel.js'
import type { HeadTimeouts } from './head-timeouts.js'
import { awaitHello, type HelloListener } from './hello-wait.js'
import type { WaitingConnections } from './waiting.js'
import { onClosedFor } from './registry.js'

export interface SniListenerOptions {
  readonly name: string
  readonly targetPort: number
  readonly map?: SniMap
  readonly via?: string
  /** Cap on the ClientHello's records (ERR_SNI_TOO_LARGE beyond it). */
  readonly maxHelloBytes: number
  /** `timeouts.header`'s shared sweep: the hello must arrive within it. */
  readonly hellos: HeadTimeouts
  /** Accepted connections that are not (yet) tunnels: the accept guard counts them, shutdown closes them. */
  readonly waiting: WaitingConnections
  /** Called after each accept (the accept guard counts descriptors). */
  readonly accepted: () => void
}

/** What a tcp, sni or terminate listener's connections share: no credentials, the listener's own route. */
export function forwardConnection (name: string, via: string | undefined): ConnectionInfo {
  return Object.freeze({ listener: name, challenges: 0, ...(via === undefined ? {} : { via }) })
}

export function createSniListener (ctx: ConnectContext, opts: SniListenerOptions): Server {
  // As the other listeners: half-open sockets, no Nagle (docs/node-internals.md A9).
  const server = createServer({ allowHalfOpen: true, noDelay: true })
  const host: TunnelHost = { log: ctx.log, onClosed: onClosedFor(ctx, opts.name), silent: true, refuse: refuseWithAlert }
  const conn = forwardConnection(opts.name, opts.via)
  const failed = (err: unknown): void => { ctx.log.error({ err }, 'unhandled error in an sni forward') }
  const listener: HelloListener = {
    log: ctx.log,
    name: opts.name,
    maxHelloBytes: opts.maxHelloBytes,
    hellos: opts.hellos,
    waiting: opts.waiting,
    targetOf: (hello) => helloTarget(opts.map, opts.targetPort, hello.serverName).target,
    open: (socket: Socket, hello: ClientHello, target: Target, bytes: Buffer) => {
      const tunnel = new Tunnel(socket, host)
      tunnel.helloFacts({ sni: hello.serverName, alpn: hello.alpn, ech: hello.echOffered })
      // The exact bytes received, hello and anything after it, are replayed to the target first.
      handleForward(ctx, tunnel, target, conn, bytes).catch(failed)
    }
  }
  server.on('connection', (socket: Socket) => {
    awaitHello(socket, listener)
    opts.accepted()
  })
  return server
}
