/**
 * The explicit-proxy listener: a net.Server that reads each connection's
 * request head with Sluice's own parser (connect/head-parser.ts; issue 12,
 * docs/node-internals.md E) and answers CONNECT and nothing else.
 *
 * accept → read the head (one shared sweep times every connection still
 * reading, `timeouts.header`) →
 * - a CONNECT   → a Tunnel and the CONNECT pipeline (connect/handle.ts);
 *                 the bytes after the head are the tunnel's early data.
 *                 After a 407 the pipeline hands the connection back and the
 *                 next head is read here, on the same socket;
 * - another method → 405 with Allow: CONNECT; its body is never read, and
 *                 nothing after it is acted on (docs/node-internals.md A6);
 * - a bad head, too large, too slow, or cut off → 400 / 431 / 408 with
 *                 Proxy-Status, logged `request refused` with the parser's code.
 *
 * Socket listeners are shared functions that find their HeadReader through
 * one symbol on the socket (as waiting.ts and tunnel.ts do): no closure and
 * no timer per connection (one sweep: head-timeouts.ts). What a refusal
 * logs, and the 405, are in refusals.ts.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { ProxyError } from '../errors.js'
import { handleConnect, type Retry } from '../connect/handle.js'
import type { ConnectContext, ConnectionInfo } from '../connect/context.js'
import { HeadScan, parseHead, type RequestHead } from '../connect/head-parser.js'
import { Tunnel, type TunnelHost } from '../tunnel/tunnel.js'
import { errorResponse, flushAndClose, respondAndClose } from '../tunnel/respond.js'
import type { HeadTimed, HeadTimeouts } from './head-timeouts.js'
import { clientOf, refuseMethod, requestLine } from './refusals.js'
import { createTlsFront, type TlsFront, type TlsFrontOptions } from './tls-front.js'
import type { WaitingConnections } from './waiting.js'
import { F } from '../observability/fields.js'
import { onClosedFor } from './registry.js'

export interface ConnectListenerOptions {
  /** Listener name, matched by policy `listeners:`. */
  readonly name: string
  readonly maxHeaderSize: number
  /** Accepted connections that are not (yet) tunnels. */
  readonly waiting: WaitingConnections
  /** The header timeout's sweep, shared by every listener. */
  readonly heads: HeadTimeouts
  /** Called after each accept (the accept guard counts descriptors). */
  readonly accepted: () => void
  /** TLS from the client (issue 13): its certificates, timeouts and ticket keys. */
  readonly tls?: Pick<TlsFrontOptions, 'tls' | 'handshakeMs' | 'firstBytes' | 'ticketKeys'>
}

const EMPTY = Buffer.alloc(0)

/** What every connection of one listener shares. */
interface Listener {
  readonly ctx: ConnectContext
  readonly opts: ConnectListenerOptions
  readonly host: TunnelHost
  /** The first CONNECT of a connection: no challenge sent yet. */
  readonly first: ConnectionInfo
  /** The pipeline's outcome: a connection handed back after a 407 is read again. */
  readonly resumed: (retry: Retry | undefined) => void
  /** The backstop, should reading again fail. */
  readonly failed: (err: unknown) => void
}

const kReader = Symbol('sluice.head')
type Reading = Socket & { [kReader]?: HeadReader | undefined }

function onHeadData (this: Reading, chunk: Buffer): void { this[kReader]?.data(chunk) }
function onHeadEnd (this: Reading): void { this[kReader]?.end() }
/** Also the refused socket's listener while it lingers: a client RST must not crash the process (docs/node-internals.md A3). */
function onHeadError (this: Reading): void { this[kReader]?.detach() }

/**
 * One connection reading a request head. Bytes accumulate in `buf`
 * (the first read as Node delivered it, later ones appended into a buffer
 * that grows by doubling), and `scan` reads only the new ones.
 */
class HeadReader implements HeadTimed {
  readonly socket: Reading
  readonly listener: Listener
  /** Date.now() when this head was awaited from: the accept, or the 407. */
  readonly since = Date.now()
  private readonly challenges: number
  /** A verified client certificate's identity (TLS listeners). */
  private readonly identity: string | undefined
  private buf: Buffer = EMPTY
  private len = 0
  private scan: HeadScan | undefined

  constructor (socket: Socket, listener: Listener, challenges: number, identity?: string) {
    this.socket = socket as Reading
    this.listener = listener
    this.challenges = challenges
    this.identity = identity
  }

  /** Read the head from `early` (bytes already received), then the socket. */
  start (early: Buffer): void {
    const s = this.socket
    s[kReader] = this
    s.on('error', onHeadError)
    s.on('data', onHeadData)
    s.on('end', onHeadEnd)
    this.listener.opts.heads.add(this)
    if (early.length > 0) this.data(early)
    // A 407's retry: the tunnel's 'readable' watch left the stream non-flowing.
    if (s[kReader] === this) s.resume()
  }

  /** Stop reading the head; the 'error' listener stays unless a Tunnel takes the socket. */
  detach (keepErrorListener = true): void {
    const s = this.socket
    if (s[kReader] !== this) return
    s[kReader] = undefined
    s.removeListener('data', onHeadData)
    s.removeListener('end', onHeadEnd)
    if (!keepErrorListener) s.removeListener('error', onHeadError)
    this.listener.opts.heads.delete(this)
  }

  data (chunk: Buffer): void {
    const max = this.listener.opts.maxHeaderSize
    let bytes: Buffer
    if (this.len === 0) {
      // RFC 8446 §5.1: a TLS handshake record. Only a plain listener gets here with it.
      if (chunk[0] === 0x16 && this.challenges === 0 && (this.socket as { encrypted?: boolean }).encrypted !== true) { this.tlsOnPlain(); return }
      this.buf = bytes = chunk
      this.len = chunk.length
    } else {
      const need = this.len + chunk.length
      if (need > this.buf.length) {
        // Doubling: a head sent a byte at a time costs linear copying, not quadratic.
        const grown = Buffer.allocUnsafe(Math.max(need, 2 * this.len, 1024))
        this.buf.copy(grown, 0, 0, this.len)
        this.buf = grown
      }
      chunk.copy(this.buf, this.len)
      this.len = need
      bytes = this.buf.subarray(0, need)
    }
    const r = parseHead(bytes, max, this.scan)
    switch (r.kind) {
      case 'incomplete':
        // The first read used the parser's scratch scan: from here on, one of our own.
        this.scan ??= new HeadScan()
        return
      case 'error':
        this.refuse(r.code === 'HPE_HEADER_OVERFLOW'
          ? new ProxyError('ERR_HEADERS_TOO_LARGE', { detail: `limit is ${max} bytes` })
          : new ProxyError('ERR_BAD_REQUEST', { detail: r.code }), r.code)
        return
      default:
        this.complete(r.head, r.length === bytes.length ? EMPTY : bytes.subarray(r.length))
    }
  }

  /**
   * The client sent FIN before a complete head: with part of one, 400 (as
   * Node's parser answered, HPE_INVALID_EOF_STATE); with nothing at all, a
   * quiet close, no answer and no log line (as before).
   */
  end (): void {
    if (this.len === 0) {
      this.detach()
      this.socket.end()
      return
    }
    this.refuse(new ProxyError('ERR_BAD_REQUEST', { detail: 'HPE_INVALID_EOF_STATE' }), 'HPE_INVALID_EOF_STATE')
  }

  /**
   * A TLS ClientHello on a plain listener: the client was given an
   * `https://` proxy URL for an `http://` listener. It cannot read an HTTP
   * answer, so the code goes to the log and the connection is closed.
   */
  private tlsOnPlain (): void {
    this.detach()
    const err = new ProxyError('ERR_TLS_ON_PLAIN_LISTENER')
    this.listener.ctx.log.info({ [F.client]: clientOf(this.socket), [F.listener]: this.listener.opts.name, [F.status]: err.status, [F.code]: err.code }, 'request refused')
    this.listener.opts.waiting.delete(this.socket)
    this.socket.destroy()
  }

  /** From the shared sweep: no complete head within `timeouts.header`. */
  timedOut (timeoutMs: number): void {
    this.refuse(new ProxyError('ERR_HEADERS_TIMEOUT', { detail: `limit is ${timeoutMs} ms` }), 'ERR_HTTP_REQUEST_TIMEOUT')
  }

  /** Answer a head that is not a request we take, and close (lingering: respond.ts). */
  private refuse (err: ProxyError, parser: string): void {
    this.detach()
    const socket = this.socket
    if (!socket.writable) { socket.destroy(); return }
    const line = this.len === 0 ? undefined : requestLine(this.buf.subarray(0, this.len))
    this.listener.ctx.log.info({
      [F.client]: clientOf(socket),
      [F.method]: line?.method,
      [F.target]: line?.target,
      [F.status]: err.status,
      [F.code]: err.code,
      parser
    }, 'request refused')
    respondAndClose(socket, errorResponse(err))
  }

  private complete (head: RequestHead, early: Buffer): void {
    const { ctx, opts, host } = this.listener
    const socket = this.socket
    if (head.method !== 'CONNECT') {
      this.detach()
      refuseMethod(this.listener, socket, head, early)
      return
    }
    // From here the tunnel registry counts it; the Tunnel listens for errors.
    opts.waiting.delete(socket)
    this.detach(false)
    // Stop the flow, as http.Server did before 'connect' (docs/node-internals.md A3):
    // until the dial succeeds, what the client sends waits in the stream.
    socket.pause()
    const tunnel = new Tunnel(socket, host)
    const conn = this.challenges === 0 && this.identity === undefined
      ? this.listener.first
      : { listener: opts.name, challenges: this.challenges, ...(this.identity === undefined ? {} : { identity: this.identity }) }
    // handleConnect answers every failure itself and never rejects.
    handleConnect(ctx, tunnel, head, early, conn).then(this.listener.resumed, this.listener.failed)
  }
}

export interface ConnectListener {
  readonly server: Server
  /** TLS listeners: the TLS front, for new certificates on reload. */
  readonly tls: TlsFront | undefined
}

export function createConnectListener (ctx: ConnectContext, opts: ConnectListenerOptions): ConnectListener {
  // As http.Server set them (docs/node-internals.md A9): half-open
  // sockets, no Nagle. TCP keepalive comes with the tunnel's first sweep
  // (server/registry.ts), not at accept: most tunnels end before it.
  const server = createServer({ allowHalfOpen: true, noDelay: true })
  const listener: Listener = {
    ctx,
    opts,
    // One for all tunnels: nothing per tunnel beyond the Tunnel itself.
    // heads: the first-bytes check of the domain-fronting guard waits on the head's sweep (issue 14).
    host: { log: ctx.log, onClosed: onClosedFor(ctx, opts.name), firstBytes: opts.heads },
    first: Object.freeze({ listener: opts.name, challenges: 0 }),
    resumed: (retry) => {
      if (retry === undefined) return
      const { socket, early, challenges } = retry
      if (socket.destroyed) return
      opts.waiting.add(socket)
      opts.accepted()
      new HeadReader(socket, listener, challenges).start(early)
    },
    failed: (err) => { ctx.log.error({ err }, 'unhandled error reading the next request head') }
  }
  const t = opts.tls
  const tls = t === undefined
    ? undefined
    : createTlsFront({
      ...t,
      name: opts.name,
      log: ctx.log,
      waiting: opts.waiting,
      // After the handshake, the head is read inside TLS, as on a plain listener.
      secure: (socket, user) => { new HeadReader(socket, listener, 0, user).start(EMPTY) }
    })
  server.on('connection', (socket: Socket) => {
    // The reader (or the TLS front) adds its 'error' listener synchronously,
    // at accept: a client RST must never find a socket without one
    // (docs/node-internals.md A3).
    opts.waiting.add(socket)
    if (tls === undefined) new HeadReader(socket, listener, 0).start(EMPTY)
    else tls.accept(socket)
    opts.accepted()
  })
  return { server, tls }
}

/**
 * Shutdown: every connection still sending its head or between requests
 * gets `503 ERR_SHUTTING_DOWN` (issue 11, finding 7), not a bare FIN, and
 * nothing it sends after is read; one already answered is just closed.
 */
export function refuseWaiting (ctx: ConnectContext, waiting: WaitingConnections): void {
  const err = new ProxyError('ERR_SHUTTING_DOWN', { headers: { 'Retry-After': '5' } })
  for (const socket of waiting.all()) {
    waiting.delete(socket)
    const reader = (socket as Reading)[kReader]
    if (reader === undefined || !socket.writable) { socket.destroy(); continue }
    reader.detach()
    ctx.log.info({ [F.client]: clientOf(socket), [F.status]: err.status, [F.code]: err.code }, 'request refused')
    flushAndClose(socket, errorResponse(err))
  }
}
