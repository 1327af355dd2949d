/**
 * The explicit-proxy listener: an http.Server that answers CONNECT and
 * nothing else. llhttp does the parsing (docs/node-internals.md E); our own checks
 * (connect/target.ts) narrow what it accepts.
 *
 * - 'connect'     → a Tunnel and the CONNECT pipeline
 * - 'request'     → 405 with Allow: CONNECT, answered synchronously so a
 *                   pipelined CONNECT cannot overtake it (docs/node-internals.md A6)
 * - 'clientError' → 400 / 408 / 431 with Proxy-Status (docs/node-internals.md A7)
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { ProxyError } from '../errors.js'
import { handleConnect } from '../connect/handle.js'
import type { ConnectContext } from '../connect/context.js'
import { Tunnel, type TunnelHost } from '../tunnel/tunnel.js'
import { errorParts, errorResponse, flushAndClose } from '../tunnel/respond.js'
import type { WaitingConnections } from './waiting.js'
import { clientAddress, formatHostPort } from '../net/ip.js'
import { F } from '../observability/fields.js'

export interface HttpConnectOptions {
  /** Listener name, matched by policy `listeners:`. */
  readonly name: string
  readonly headerTimeoutMs: number
  readonly maxHeaderSize: number
  /** Accepted connections that are not (yet) tunnels. */
  readonly waiting: WaitingConnections
  /** Called after each accept (the accept guard counts descriptors). */
  readonly accepted: () => void
}

/** Sockets we have answered with a closing error; a CONNECT pipelined behind it is dropped. */
const refused = new WeakSet<Duplex>()
/** 407 challenges sent per connection (keep-alive retries are bounded). */
const challenges = new WeakMap<Duplex, number>()

function clientOf (socket: Socket): string {
  return formatHostPort(clientAddress(socket.remoteAddress ?? ''), socket.remotePort ?? 0)
}

/**
 * A request target as a log may show it: printable, at most 256 characters,
 * and never with credentials (`http://user:pw@host/` → `http://[redacted]@host/`).
 */
function loggable (target: string): string {
  return target.slice(0, 256).replace(/[^\x21-\x7e]/g, '?').replace(/^([^/@]*\/\/)?[^/@]*@/, '$1[redacted]@')
}

/** Method and target of a request line that llhttp refused, for the log only. */
function requestLine (raw: Buffer): { method: string, target: string } | undefined {
  const m = /^([^\s]{1,32}) ([^\s]+)/.exec(raw.subarray(0, 512).toString('latin1'))
  if (m === null) return undefined
  return { method: loggable(m[1] ?? ''), target: loggable(m[2] ?? '') }
}

export function createConnectServer (ctx: ConnectContext, opts: HttpConnectOptions): Server {
  const server = createServer({
    // Constructor options, not properties, so Node validates them (docs/node-internals.md A4).
    headersTimeout: opts.headerTimeoutMs,
    requestTimeout: opts.headerTimeoutMs,
    // headersTimeout is only checked this often; keep it well under the timeout.
    connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(opts.headerTimeoutMs / 4))),
    maxHeaderSize: opts.maxHeaderSize,
    keepAliveTimeout: 5000,
    noDelay: true,
    keepAlive: true,
    keepAliveInitialDelay: 60_000,
    // Node answers an HTTP/1.1 request without Host with its own bare 400
    // (no Proxy-Status, no log line) before 'request' (docs/node-internals.md
    // A5): let it reach the 405 below instead (issue 11, found by
    // test/integration/request-head.fuzz.test.ts). CONNECT never needed Host.
    requireHostHeader: false
  })
  // server.timeout stays 0: it would stay armed on tunnels (docs/node-internals.md A4).
  server.timeout = 0

  // One for all tunnels: nothing per tunnel beyond the Tunnel itself.
  const host: TunnelHost = { log: ctx.log, onClosed: (t) => ctx.registry.delete(t) }
  server.on('connection', (socket: Socket) => {
    opts.waiting.add(socket)
    opts.accepted()
  })
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    // From here the tunnel registry counts it.
    opts.waiting.delete(socket)
    const tunnel = new Tunnel(socket, host)
    if (refused.has(socket)) {
      // Pipelined behind a refused request: never acted on (docs/node-internals.md A6).
      tunnel.mark('proxy', 'rejected')
      socket.destroy()
      return
    }
    // handleConnect answers every failure itself; this catch is the backstop.
    handleConnect(ctx, tunnel, req, head, { listener: opts.name, challenges: challenges.get(socket) ?? 0, rearm }).catch((err: unknown) => {
      ctx.log.error({ err, tunnel: tunnel.id }, 'unhandled error in CONNECT pipeline')
      tunnel.destroy('error')
    })
  })

  const refuseRequest = (req: IncomingMessage, res: ServerResponse): void => {
    // Pipelined behind a request already refused: that answer closes the
    // connection, so this one is never sent and must not be logged as sent
    // (issue 11, found by test/integration/request-head.fuzz.test.ts).
    if (refused.has(req.socket)) return
    refused.add(req.socket)
    const err = new ProxyError('ERR_METHOD_NOT_ALLOWED', { detail: req.method ?? '' })
    const { status, headers, body } = errorParts(err, { Allow: 'CONNECT' })
    ctx.log.info({ [F.client]: clientOf(req.socket), [F.method]: req.method, [F.target]: loggable(req.url ?? ''), [F.status]: status, [F.code]: err.code }, 'request refused')
    res.writeHead(status, headers)
    res.end(body)
  }
  server.on('request', refuseRequest)
  // With an `Expect` header Node would answer by itself first: a 100
  // Continue (inviting a body we refuse), or a bare 417 that keeps the
  // connection open, neither logged nor with Proxy-Status. Listening here
  // stops both: the request gets its 405 (issue 11, found by
  // test/integration/request-head.fuzz.test.ts).
  server.on('checkContinue', refuseRequest)
  server.on('checkExpectation', refuseRequest)

  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    if (refused.has(socket)) { socket.destroy(); return }
    refused.add(socket)
    if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return }
    const e = err.code === 'HPE_HEADER_OVERFLOW'
      ? new ProxyError('ERR_HEADERS_TOO_LARGE', { detail: `limit is ${opts.maxHeaderSize} bytes` })
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new ProxyError('ERR_HEADERS_TIMEOUT', { detail: `limit is ${opts.headerTimeoutMs} ms` })
        : new ProxyError('ERR_BAD_REQUEST', { detail: err.code ?? err.message })
    // llhttp stopped before a request existed: what it had read is in rawPacket (docs/node-internals.md A7).
    const raw = (err as { rawPacket?: Buffer }).rawPacket
    const line = raw === undefined ? undefined : requestLine(raw)
    ctx.log.info({
      [F.client]: clientOf(socket as Socket),
      [F.method]: line?.method,
      [F.target]: line?.target,
      [F.status]: e.status,
      [F.code]: e.code,
      parser: err.code
    }, 'request refused')
    // The parser is still attached, so do not linger reading: flush and close.
    flushAndClose(socket, errorResponse(e))
  })

  /**
   * After a 407, give the socket back to Node's HTTP machinery so the client
   * can send its next CONNECT on the same connection. Node detached the
   * parser before 'connect' (docs/node-internals.md A3); 'connection' attaches a new one.
   */
  function rearm (socket: Socket, head: Buffer): void {
    challenges.set(socket, (challenges.get(socket) ?? 0) + 1)
    if (head.length > 0) socket.unshift(head)
    server.emit('connection', socket)
  }

  return server
}

/**
 * Shutdown: every connection still sending or between requests gets
 * `503 ERR_SHUTTING_DOWN` (issue 11, finding 7), not a bare FIN; one that
 * was already answered with a closing error is just closed.
 */
export function refuseWaiting (ctx: ConnectContext, waiting: WaitingConnections): void {
  const err = new ProxyError('ERR_SHUTTING_DOWN', { headers: { 'Retry-After': '5' } })
  for (const socket of waiting.all()) {
    waiting.delete(socket)
    if (refused.has(socket) || !socket.writable) { socket.destroy(); continue }
    // A head completed after this is never acted on (the 'connect' handler checks).
    refused.add(socket)
    ctx.log.info({ [F.client]: clientOf(socket), [F.status]: err.status, [F.code]: err.code }, 'request refused')
    flushAndClose(socket, errorResponse(err))
  }
}
