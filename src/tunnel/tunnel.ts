/**
 * One CONNECT, from accept to close, as one object (Smokescreen's
 * InstrumentedConn). It owns both sockets and its state: other modules move
 * it on with its transition methods (parsed, admit, authenticated, decided,
 * dialing, establish, fail, challenge, destroy) and read it through
 * getters. `finalize()` runs exactly once,
 * after every socket it owns has closed, leaves the registry and writes the
 * one canonical `tunnel closed` log line.
 *
 * Data flow: client ⇄ downstream socket ⇄ [Tunnel] ⇄ upstream socket ⇄ target/parent.
 */
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { ProxyError } from '../errors.js'
import type { Target } from '../connect/target.js'
import type { Decision } from '../policy/evaluate.js'
import { clientAddress, formatHostPort, type Endpoint } from '../net/ip.js'
import { F } from '../observability/fields.js'
import { errorResponse, respondAndClose } from './respond.js'
import { canReset, Relay } from './relay.js'
import type { Cancellation } from '../upstream/cancel.js'
import type { SweepLimits } from '../server/registry.js'

/**
 * accepted → admitted (counted, registered) → dialing → established → closed;
 * a refusal or a challenge goes to closed from any state before established.
 */
export type TunnelState = 'accepted' | 'admitted' | 'dialing' | 'established' | 'closed'

/** Who ended the tunnel and how; `proxy` means we did. */
export type ClosedBy = 'client' | 'upstream' | 'proxy'
export type CloseHow = 'fin' | 'reset' | 'error' | 'idle_timeout' | 'max_lifetime' | 'shutdown' | 'rejected' | 'revoked' | 'challenged'

/** What the tunnel needs from its owner; kept narrow so other listeners (TLS, SNI) can reuse Tunnel. */
export interface TunnelHost {
  readonly log: Logger
  /** Called once from finalize(). */
  readonly onClosed: (t: Tunnel) => void
  /**
   * No HTTP on this connection (a `tcp` listener, issue 13): no 200, and a
   * refusal is a close, its code only on the log line.
   */
  readonly silent?: boolean
}

/** RFC 9110 §9.3.6; undici accepts exactly this reason phrase. */
const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1')

let nextId = 0
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

export class Tunnel implements Cancellation {
  readonly id: string
  readonly startedAt = performance.now()
  readonly downstream: Socket
  /** Client address as rules and limits see it (IPv4-mapped unwrapped). */
  readonly clientAddress: string
  readonly clientPort: number
  private _state: TunnelState = 'accepted'
  private _target: Target | undefined
  private _user: string | undefined
  private attemptedUser: string | undefined
  /** The policy's decision, kept so a reload can re-judge the open tunnel. */
  private _decision: Decision | undefined
  private routeName: string | undefined
  private _hops: readonly string[] = NO_HOPS
  private failedChoices: string[] | undefined
  private _dialed: Endpoint | undefined
  private status = 0
  private error: ProxyError | undefined
  private connectMs: number | undefined
  private closedBy: ClosedBy | undefined
  private closeHow: CloseHow | undefined
  /** Idle bookkeeping, read only by sweep(): no per-chunk work (docs/node-internals.md B3). */
  private lastBytes = 0
  private lastActive = 0
  /** Upstream byte counters at establishment: a parent's CONNECT exchange is not tunnel traffic. */
  private upBase = 0
  private downBase = 0
  private readonly host: TunnelHost
  private _upstream: Socket | undefined
  private relay: Relay | undefined
  /** Set when the client goes away or the tunnel is refused before establishment. */
  private _aborted = false
  /** The dial's 'abort' listeners (upstream/cancel.ts); dropped once established. */
  private abortListeners: Array<() => void> | undefined
  private finalized = false
  /** TCP keepalive is on for both legs (the first sweep after establishment). */
  private keptAlive = false

  constructor (downstream: Socket, host: TunnelHost) {
    // First thing: the listener hands the socket over without its own
    // 'error' listener, and a client RST on a socket with none would crash
    // the process (docs/node-internals.md A3).
    const owned = downstream as Owned
    owned[kTunnel] = this
    downstream.on('error', onSocketError)
    downstream.on('close', onSocketClose)
    this.downstream = downstream
    this.host = host
    this.id = (++nextId).toString(36)
    this.clientAddress = clientAddress(downstream.remoteAddress ?? '')
    this.clientPort = downstream.remotePort ?? 0
  }

  get state (): TunnelState { return this._state }
  get target (): Target | undefined { return this._target }
  get user (): string | undefined { return this._user }
  get decision (): Decision | undefined { return this._decision }
  get hops (): readonly string[] { return this._hops }
  get dialed (): Endpoint | undefined { return this._dialed }
  get upstream (): Socket | undefined { return this._upstream }
  /** `ip:port` of the client, IPv6 in brackets. */
  get client (): string { return formatHostPort(this.clientAddress, this.clientPort) }

  /**
   * The dial's cancellation: the tunnel itself, not an AbortController per
   * CONNECT (upstream/cancel.ts). Aborted when the client goes away or the
   * tunnel is refused before establishment.
   */
  get signal (): Cancellation { return this }
  get aborted (): boolean { return this._aborted }

  addEventListener (_type: 'abort', listener: () => void): void {
    if (!this._aborted && this._state !== 'established') (this.abortListeners ??= []).push(listener)
  }

  removeEventListener (_type: 'abort', listener: () => void): void {
    const l = this.abortListeners
    const i = l === undefined ? -1 : l.indexOf(listener)
    if (i >= 0) l?.splice(i, 1)
  }

  private cancel (): void {
    if (this._state === 'established' || this._aborted) return
    this._aborted = true
    const l = this.abortListeners
    this.abortListeners = undefined
    if (l !== undefined) for (const listener of l) listener()
  }

  /** The request was parsed: this is what it asks for. */
  parsed (target: Target): void {
    this._target = target
  }

  /**
   * Counted against the limits and in the registry: from here on, notice a
   * client that gives up while we authenticate, decide or dial.
   */
  admit (): void {
    if (this._state !== 'accepted') return
    this._state = 'admitted'
    this.downstream.on('readable', onDialReadable)
  }

  /** Who the request is from: the authenticated user, or the user a failed login named. */
  authenticated (user: string | undefined, ok = true): void {
    if (ok) this._user = user
    else this.attemptedUser = user
  }

  /** The policy's decision (its rule and stage go on the log line, whatever comes next). */
  decided (decision: Decision): void {
    this._decision = decision
  }

  /** Dialing `route`. */
  dialing (route: string): void {
    if (this._state === 'admitted') this._state = 'dialing'
    this.routeName = route
  }

  /** A route choice failed and the next is tried (issue 10: folded into the closing line). */
  failover (choice: string, err: ProxyError): void {
    (this.failedChoices ??= []).push(`${choice}: ${err.code}`)
  }

  /** Refuse before establishment: error response, lingering close, then finalize. */
  fail (err: ProxyError, extraHeaders?: Readonly<Record<string, string>>): void {
    if (this._state === 'established' || this._state === 'closed' || this.error !== undefined) return
    this.error = err
    this.status = err.status
    this.mark('proxy', 'rejected')
    this.cancel()
    if (this.host.silent === true) this.downstream.destroy()
    else respondAndClose(this.downstream, errorResponse(err, extraHeaders))
  }

  /**
   * Answer with a challenge (407) and give the connection back for the
   * client's retry: this tunnel ends here (one log line, `close:
   * "challenged"`), the socket lives on. Undefined if it cannot.
   */
  challenge (err: ProxyError, extraHeaders: Readonly<Record<string, string>>): Socket | undefined {
    if (this._state === 'established' || this._state === 'closed' || this.error !== undefined) return undefined
    this.error = err
    this.status = err.status
    this.mark('proxy', 'challenged')
    this.cancel()
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
   * @internal The client became readable while we dial: with nothing
   * buffered, that is the end of the stream (a client that sent data first
   * and then FIN is noticed at establishment instead).
   */
  dialReadable (): void {
    if (this.downstream.readableLength !== 0 || this._state === 'established') return
    this.mark('client', 'fin')
    this.cancel()
  }

  /** Take over a connected upstream: forward `head`, answer 200, relay. */
  establish (upstream: Socket, dialed: Endpoint, hops: readonly string[], head: Buffer): void {
    this._hops = hops
    if (this._state === 'closed' || this.downstream.destroyed || this.error !== undefined) {
      upstream.destroy()
      return
    }
    if (upstream.destroyed) {
      // Lost between the dial and now; its error went to the dialer's no-op listener.
      this.fail(new ProxyError('ERR_UPSTREAM_RESET', { detail: `${formatHostPort(dialed.address, dialed.port)} closed before the tunnel was established` }))
      return
    }
    this._state = 'established'
    this._upstream = upstream
    this._dialed = dialed
    this.status = 200
    this.connectMs = performance.now() - this.startedAt
    this.lastActive = Date.now()
    this.abortListeners = undefined
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
    // Bytes the client sent with its CONNECT (docs/node-internals.md A1) go first.
    if (head.length > 0) upstream.write(head)
    if (this.host.silent !== true) this.downstream.write(ESTABLISHED)
    this.relay = new Relay(this.downstream, upstream)
    // A FIN read before we listened (the client's, while we dialed) had its
    // 'end' emitted to nobody and will not fire again; pipe() used to cover
    // this (endEmitted → end in nextTick). Forward it now.
    if (this.downstream.readableEnded) this.socketEnd(this.downstream)
    if (upstream.readableEnded) this.socketEnd(upstream)
    if (this.host.log.isLevelEnabled('debug')) {
      // Long tunnels are otherwise invisible until they close (issue 10).
      this.host.log.debug({
        [F.tunnel]: this.id,
        [F.client]: this.client,
        [F.target]: this._target?.authority,
        [F.user]: this._user,
        [F.dialed]: formatHostPort(dialed.address, dialed.port),
        [F.route]: this.routeName,
        [F.hops]: hops.length === 0 ? undefined : hops,
        [F.rule]: this._decision?.rule
      }, 'tunnel opened')
    }
  }

  /**
   * The registry's shared sweep (one timer for all tunnels): close this
   * tunnel if it outlived `maxLifetimeMs` or moved no byte for `idleMs`,
   * and turn TCP keepalive on for both legs at its first sweep (registry.ts).
   */
  sweep (now: number, { idleMs, maxLifetimeMs, keepAliveMs }: SweepLimits): void {
    const up = this._upstream
    if (this._state !== 'established' || up === undefined) return
    if (!this.keptAlive && keepAliveMs > 0) {
      this.keptAlive = true
      // A TLS socket (an https parent) has had it since the dial (upstream/chain.ts).
      this.downstream.setKeepAlive(true, keepAliveMs)
      if (canReset(up)) up.setKeepAlive(true, keepAliveMs)
    }
    if (maxLifetimeMs > 0 && performance.now() - this.startedAt >= maxLifetimeMs) {
      this.destroy('max_lifetime')
      return
    }
    const bytes = this.downstream.bytesRead + up.bytesRead
    if (bytes !== this.lastBytes) {
      this.lastBytes = bytes
      this.lastActive = now
    } else if (idleMs > 0 && now - this.lastActive >= idleMs) {
      this.destroy('idle_timeout')
    }
  }

  /** Close from our side (idle, lifetime, shutdown, revoke). */
  destroy (how: CloseHow): void {
    if (this._state === 'closed') return
    if (this._state !== 'established') {
      // Already answered and lingering: close it now.
      if (this.error !== undefined) { this.downstream.destroy(); return }
      this.fail(new ProxyError(how === 'shutdown' ? 'ERR_SHUTTING_DOWN' : 'ERR_INTERNAL', { detail: how }))
      return
    }
    this.mark('proxy', how)
    this._upstream?.destroy()
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
   * worse happens; it is forwarded on its own (half-close, docs/node-internals.md A9).
   */
  socketEnd (socket: Socket): void {
    const client = socket === this.downstream
    this.mark(client ? 'client' : 'upstream', 'fin')
    const other = client ? this._upstream : this.downstream
    if (other !== undefined && !other.destroyed) other.end()
  }

  /** @internal */
  socketError (socket: Socket, err: Error): void {
    const side = socket === this.downstream ? 'client' : 'upstream'
    const reset = (err as { code?: string }).code === 'ECONNRESET'
    this.mark(side, reset ? 'reset' : 'error')
    const other = side === 'client' ? this._upstream : this.downstream
    // Pass a reset on as a reset (RST), anything else as a plain close.
    if (other !== undefined && !other.destroyed) {
      // resetAndDestroy() throws ERR_INVALID_HANDLE_TYPE on a non-TCP handle
      // (a TLS upstream to an https parent): here that is an uncaught crash.
      if (reset && this._state === 'established' && canReset(other)) other.resetAndDestroy()
      else other.destroy()
    }
    if (side === 'client' && this._state !== 'established') this.cancel()
  }

  /** @internal */
  socketClose (socket: Socket): void {
    const side = socket === this.downstream ? 'client' : 'upstream'
    // Only a dial in progress listens.
    if (side === 'client' && this._state !== 'established') this.cancel()
    const other = side === 'client' ? this._upstream : this.downstream
    // If the other side still has bytes to send, nobody is left to read them.
    if (other !== undefined && !other.destroyed && !other.readableEnded) other.destroy()
    this.finalize()
  }

  private finalize (released = false): void {
    if (this.finalized) return
    if (this._upstream !== undefined && !this._upstream.closed) return
    if (!released && !this.downstream.closed) return
    this.finalized = true
    this._state = 'closed'
    this.relay?.release()
    if (this.closedBy === undefined) this.mark('client', 'fin')
    // Built only when it is written (issue 12: no log object at levels that are off).
    if (this.host.log.isLevelEnabled('info')) this.host.log.info(this.closedLine(), 'tunnel closed')
    this.host.onClosed(this)
  }

  /** The one canonical line (field names: observability/fields.ts). */
  private closedLine (): Record<string, unknown> {
    const up = this._upstream
    const d = this._dialed
    return {
      [F.tunnel]: this.id,
      [F.client]: this.client,
      [F.target]: this._target?.authority,
      [F.user]: this._user,
      [F.attemptedUser]: this.attemptedUser,
      [F.dialed]: d === undefined ? undefined : formatHostPort(d.address, d.port),
      [F.route]: this.routeName,
      [F.hops]: this._hops.length === 0 ? undefined : this._hops,
      [F.failedChoices]: this.failedChoices,
      [F.rule]: this._decision?.rule,
      [F.stage]: this._decision?.stage,
      [F.status]: this.status,
      [F.code]: this.error?.code,
      [F.bytesUp]: up === undefined ? 0 : up.bytesWritten - this.upBase,
      [F.bytesDown]: up === undefined ? 0 : up.bytesRead - this.downBase,
      [F.connectMs]: this.connectMs === undefined ? undefined : Math.round(this.connectMs * 100) / 100,
      [F.durationMs]: Math.round((performance.now() - this.startedAt) * 100) / 100,
      [F.closedBy]: this.closedBy,
      [F.close]: this.closeHow
    }
  }
}
