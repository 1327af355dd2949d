/**
 * A fixed TCP forward (`kind: tcp`, issue 13): ATS's "for a TCP only
 * connection from the client the upstream must be explicitly configured".
 * Every connection goes to the listener's `target`, through its `via` or
 * the policy's route, judged by the same policy and guard as a CONNECT
 * (connect/handle.ts handleForward). There is no protocol to answer in:
 * a refusal closes the connection, and the tunnel's log line has the code.
 */
import { createServer, type Server, type Socket } from 'node:net'
import type { ConnectContext } from '../connect/context.js'
import { handleForward } from '../connect/handle.js'
import type { Target } from '../connect/target.js'
import { Tunnel, type TunnelHost } from '../tunnel/tunnel.js'
import { forwardConnection } from './sni-listener.js'
import { onClosedFor } from './registry.js'

export interface TcpListenerOptions {
  readonly name: string
  readonly target: Target
  readonly via?: string
  /** Called after each accept (the accept guard counts descriptors). */
  readonly accepted: () => void
}

export function createTcpListener (ctx: ConnectContext, opts: TcpListenerOptions): Server {
  // As the connect listener: half-open sockets, no Nagle (docs/node-internals.md A9).
  const server = createServer({ allowHalfOpen: true, noDelay: true })
  const host: TunnelHost = { log: ctx.log, onClosed: onClosedFor(ctx, opts.name), silent: true }
  const conn = forwardConnection(opts.name, opts.via)
  const failed = (err: unknown): void => { ctx.log.error({ err }, 'unhandled error in a tcp forward') }
  server.on('connection', (socket: Socket) => {
    // Until the dial succeeds, what the client sends waits in the stream;
    // the Tunnel's 'error' listener goes on first (docs/node-internals.md A3).
    socket.pause()
    const tunnel = new Tunnel(socket, host)
    opts.accepted()
    handleForward(ctx, tunnel, opts.target, conn).catch(failed)
  })
  return server
}
