/**
 * One CONNECT, from accept to close, as one object (Smokescreen's
 * InstrumentedConn). It owns both sockets; `finalize()` runs exactly once,
 * after every socket it owns has closed, leaves the registry and writes the
 * one canonical `tunnel closed` log line.
 *
 * Data flow: client ⇄ downstream socket ⇄ [Tunnel] ⇄ upstream socket ⇄ target/parent.
 */
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { ProxyError } from '../errors.js'
import type { Target } from '../connect/target.js'
import type { RequestFacts } from '../policy/decide.js'
import { errorResponse, respondAndClose } from '../server/respond.js'
import { Relay } from './relay.js'

export type TunnelState = 'accepted' | 'dialing' | 'established' | 'closed'

/** Who ended the tunnel and how; `proxy` means we did. */
export type ClosedBy = 'client' | 'upstream' | 'proxy'
export type CloseHow = 'fin' | 'reset' | 'error' | 'idle_timeout' | 'max_lifetime' | 'shutdown' | 'rejected' | 'revoked' | 'challenged'

/** What the tunnel needs from its owner; kept narrow so other listeners (TLS, SNI) can reuse Tunnel. */
export interface TunnelHost {
  readonly log: Logger
  /** Called once from finalize(). */
  readonly onClosed: (t: Tunnel) => void
}

/** RFC 9110 §9.3.6; undici accepts exactly this reason phrase. */
const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1')

let nextId = 0
/** Pre-built abort reasons: no allocation when a client leaves mid-dial. */
const CLIENT_GONE = new Error('client went away')
const REFUSED = new Error('tunnel refused')
/** What `signal` is once the dial is over: never aborted, shared. */
const SETTLED = new AbortController().signal
const NO_HOPS: readonly string[] = Object.freeze([])

/**
 * Socket listeners are these shared functions, called with `this` = the
 * socket, which points back at its tunnel: an idle tunnel then holds no
 * closure and no `once` wrapper per event (issue 6, memory per tunnel).
 */
const kTunnel = Symbol('sluice.tunnel')
type Owned = Socket & { [kTunnel]?: Tunnel | undefined }

function onSocketError (this: Owned, err: Error): void { this[kTunnel]?.socketError(this, err) }
function onSocketClose (this: Owned): void { this[kTunnel]?.socketClose(this) }
function onSocketEnd (this: Owned): void { this[kTunnel]?.socketEnd(this) }
function onDialReadable (this: Owned): void { this[kTunnel]?.dialReadable() }

/** Whether `resetAndDestroy()` can work: it needs a TCP handle (Node 20 net.js). */
function isTcp (socket: Socket): boolean {
  return (socket as Socket & { _handle?: object | null })._handle?.constructor.name === 'TCP'
}

export class Tunnel {
  readonly id: string
  readonly startedAt = performance.now()
  readonly downstream: Socket
  readonly clientAddress: string
  readonly clientPort: number
  state: TunnelState = 'accepted'
  target: Target | undefined
  upstream: Socket | undefined
  dialedAddress: string | undefined
  rule: string | undefined
  /** Route taken and its parents in order (empty for direct). */
  route: string | undefined
  hops: readonly string[] = NO_HOPS
  /** Authenticated user, when there is one (never the password). */
  user: string | undefined
  /** What the policy was asked, kept so a reload can re-judge open tunnels. */
  facts: RequestFacts | undefined
  /** Policy stage that decided: 'request' (before DNS) or 'address'. */
  stage: 'request' | 'address' | undefined
  status = 0
  error: ProxyError | undefined
  connectMs: number | undefined
  closedBy: ClosedBy | undefined
  closeHow: CloseHow | undefined
  /** Idle bookkeeping for the registry's shared sweep: no per-chunk work (NODE-NOTES B3). */
  lastBytes = 0
  lastActive = 0
  /** Upstream byte counters at establishment: a parent's CONNECT exchange is not tunnel traffic. */
  private upBase = 0
  private downBase = 0
  private readonly host: TunnelHost
  private relay: Relay | undefined
  /** Aborted when the client goes away or the tunnel is refused while dialing; dropped once established. */
  private controller: AbortController | undefined = new AbortController()
  private finalized = false

  constructor (downstream: Socket, host: TunnelHost) {
    // First thing: after 'connect' Node leaves the socket with no 'error'
    // listener, and a client RST would crash the process (NODE-NOTES A3).
    const owned = downstream as Owned
    owned[kTunnel] = this
    downstream.on('error', onSocketError)
    downstream.on('close', onSocketClose)
    this.downstream = downstream
    this.host = host
    this.id = (++nextId).toString(36)
    this.clientAddress = downstream.remoteAddress ?? ''
    this.clientPort = downstream.remotePort ?? 0
  }

  /** Aborted when the client goes away or the tunnel is refused before establishment. */
  get signal (): AbortSignal { return this.controller?.signal ?? SETTLED }

  private cancel (reason: Error): void {
    if (this.state !== 'established') this.controller?.abort(reason)
  }

  /** Refuse before establishment: error response, lingering close, then finalize. */
  fail (err: ProxyError, extraHeaders?: Readonly<Record<string, string>>): void {
    if (this.state === 'established' || this.state === 'closed' || this.error !== undefined) return
    this.error = err
    this.status = err.status
    this.mark('proxy', 'rejected')
    this.cancel(REFUSED)
    respondAndClose(this.downstream, errorResponse(err, extraHeaders))
  }

  /**
   * Answer with a challenge (407) and give the connection back for the
   * client's retry: this tunnel ends here (one log line), the socket lives on.
   */
  release (err: ProxyError, extraHeaders: Readonly<Record<string, string>>): Socket | undefined {
    if (this.state !== 'accepted' && this.state !== 'dialing') return undefined
    this.error = err
    this.status = err.status
    this.mark('proxy', 'challenged')
    this.cancel(REFUSED)
    const socket = this.downstream
    socket.removeListener('error', onSocketError)
    socket.removeListener('close', onSocketClose)
    socket.removeListener('readable', onDialReadable)
    ;(socket as Owned)[kTunnel] = undefined
    if (socket.destroyed || !socket.writable) {
      socket.destroy()
      this.finalize(true)
      return undefined
    }
    socket.write(errorResponse(err, { ...extraHeaders, Connection: 'keep-alive' }))
    this.finalize(true)
    return socket
  }

  /**
   * While dialing, notice a client that gives up (FIN) without consuming
   * its bytes: a 'readable' event with nothing buffered is the end of the
   * stream. A client that sent data first and then FIN is noticed at
   * establishment instead.
   */
  watchClient (): void {
    this.downstream.on('readable', onDialReadable)
  }

  /** @internal The client became readable while we dial. */
  dialReadable (): void {
    if (this.downstream.readableLength !== 0 || this.state === 'established') return
    this.mark('client', 'fin')
    this.cancel(CLIENT_GONE)
  }

  /** Take over a connected upstream: forward `head`, answer 200, relay. */
  establish (upstream: Socket, dialedAddress: string, head: Buffer): void {
    if (this.state === 'closed' || this.downstream.destroyed || this.error !== undefined) {
      upstream.destroy()
      return
    }
    if (upstream.destroyed) {
      // Lost between the dial and now; its error went to the dialer's no-op listener.
      this.fail(new ProxyError('ERR_UPSTREAM_RESET', { detail: `${dialedAddress} closed before the tunnel was established` }))
      return
    }
    this.state = 'established'
    this.upstream = upstream
    this.dialedAddress = dialedAddress
    this.status = 200
    this.connectMs = performance.now() - this.startedAt
    this.lastActive = Date.now()
    this.controller = undefined
    this.downstream.off('readable', onDialReadable)
    this.upBase = upstream.bytesWritten
    // Bytes a parent sent after its 200 are unshifted, still unread: they are tunnel data.
    this.downBase = upstream.bytesRead - upstream.readableLength
    const owned = upstream as Owned
    owned[kTunnel] = this
    upstream.on('error', onSocketError)
    upstream.on('close', onSocketClose)
    this.downstream.on('end', onSocketEnd)
    upstream.on('end', onSocketEnd)
    // Bytes the client sent with its CONNECT (NODE-NOTES A1) go first.
    if (head.length > 0) upstream.write(head)
    this.downstream.write(ESTABLISHED)
    this.relay = new Relay(this.downstream, upstream)
    // A FIN read before we listened (the client's, while we dialed) had its
    // 'end' emitted to nobody and will not fire again; pipe() used to cover
    // this (endEmitted → end in nextTick). Forward it now.
    if (this.downstream.readableEnded) this.socketEnd(this.downstream)
    if (upstream.readableEnded) this.socketEnd(upstream)
  }

  /** Close from our side (idle, lifetime, shutdown, revoke). */
  destroy (how: CloseHow): void {
    if (this.state === 'closed') return
    if (this.state !== 'established') {
      // Already answered and lingering: close it now.
      if (this.error !== undefined) { this.downstream.destroy(); return }
      this.fail(new ProxyError(how === 'shutdown' ? 'ERR_SHUTTING_DOWN' : 'ERR_INTERNAL', { detail: how }))
      return
    }
    this.mark('proxy', how)
    this.upstream?.destroy()
    this.downstream.destroy()
  }

  /** Record the first close cause only: later events are consequences. */
  mark (by: ClosedBy, how: CloseHow): void {
    if (this.closedBy !== undefined) return
    this.closedBy = by
    this.closeHow = how
  }

  /**
   * @internal A FIN: who sent the first is how the tunnel ended, if nothing
   * worse happens; it is forwarded on its own (half-close, NODE-NOTES A9).
   */
  socketEnd (socket: Socket): void {
    const client = socket === this.downstream
    this.mark(client ? 'client' : 'upstream', 'fin')
    const other = client ? this.upstream : this.downstream
    if (other !== undefined && !other.destroyed) other.end()
  }

  /** @internal */
  socketError (socket: Socket, err: Error): void {
    const side = socket === this.downstream ? 'client' : 'upstream'
    const reset = (err as { code?: string }).code === 'ECONNRESET'
    this.mark(side, reset ? 'reset' : 'error')
    const other = side === 'client' ? this.upstream : this.downstream
    // Pass a reset on as a reset (RST), anything else as a plain close.
    if (other !== undefined && !other.destroyed) {
      // resetAndDestroy() throws ERR_INVALID_HANDLE_TYPE on a non-TCP handle
      // (a TLS upstream to an https parent): here that is an uncaught crash.
      if (reset && this.state === 'established' && isTcp(other)) other.resetAndDestroy()
      else other.destroy()
    }
    if (side === 'client' && this.state !== 'established') this.cancel(CLIENT_GONE)
  }

  /** @internal */
  socketClose (socket: Socket): void {
    const side = socket === this.downstream ? 'client' : 'upstream'
    // Only a dial in progress listens; an aborted signal with no reason
    // builds a DOMException with a stack (~10 µs): skip it when established.
    if (side === 'client' && this.state !== 'established') this.cancel(CLIENT_GONE)
    const other = side === 'client' ? this.upstream : this.downstream
    // If the other side still has bytes to send, nobody is left to read them.
    if (other !== undefined && !other.destroyed && !other.readableEnded) other.destroy()
    this.finalize()
  }

  private finalize (released = false): void {
    if (this.finalized) return
    if (this.upstream !== undefined && !this.upstream.closed) return
    if (!released && !this.downstream.closed) return
    this.finalized = true
    this.state = 'closed'
    this.relay?.release()
    if (this.closedBy === undefined) this.mark('client', 'fin')
    const up = this.upstream
    this.host.log.info({
      tunnel: this.id,
      client: `${this.clientAddress}:${this.clientPort}`,
      target: this.target?.authority,
      user: this.user,
      dialed: this.dialedAddress,
      route: this.route,
      hops: this.hops.length === 0 ? undefined : this.hops,
      rule: this.rule,
      stage: this.stage,
      status: this.status,
      code: this.error?.code,
      bytes_up: up === undefined ? 0 : up.bytesWritten - this.upBase,
      bytes_down: up === undefined ? 0 : up.bytesRead - this.downBase,
      connect_ms: this.connectMs === undefined ? undefined : Math.round(this.connectMs * 100) / 100,
      duration_ms: Math.round((performance.now() - this.startedAt) * 100) / 100,
      closed_by: this.closedBy,
      close: this.closeHow
    }, 'tunnel closed')
    this.host.onClosed(this)
  }
}
