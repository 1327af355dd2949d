/**
 * A tunnel before it is established (tunnel.ts has the rest): accepted →
 * admitted → dialing, or refused or challenged on the way. Its state, the
 * socket listeners every tunnel shares, and the dial's cancellation. One
 * class in two files, split by phase: Tunnel extends this.
 */
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { ProxyError } from '../errors.js'
import type { Target } from '../connect/target.js'
import type { Decision } from '../policy/evaluate.js'
import { formatHostPort, type Endpoint } from '../net/ip.js'
import { clientAddressOf, clientPortOf } from '../net/client-address.js'
import { errorResponse, respondAndClose } from './respond.js'
import type { Relay } from './relay.js'
import type { Cancellation } from '../upstream/cancel.js'
import type { Tunnel } from './tunnel.js'
import type { HeadTimeouts } from '../server/head-timeouts.js'

/**
 * accepted → admitted (counted, registered) → dialing → established → closed;
 * a refusal or a challenge goes to closed from any state before established.
 */
export type TunnelState = 'accepted' | 'admitted' | 'dialing' | 'established' | 'closed'

/** Who ended the tunnel and how; `proxy` means we did. */
export type ClosedBy = 'client' | 'upstream' | 'proxy'
export type CloseHow = 'fin' | 'reset' | 'error' | 'idle_timeout' | 'max_lifetime' | 'shutdown' | 'rejected' | 'revoked' | 'challenged' | 'admin' | 'quota'

/** What the tunnel needs from its owner; kept narrow so other listeners (TLS, SNI) can reuse Tunnel. */
export interface TunnelHost {
  readonly log: Logger
  /** Called once from finalize(). */
  readonly onClosed: (t: Tunnel) => void
  /**
   * No HTTP on this connection (a `tcp` or `sni` listener, issues 13, 14):
   * no 200, and a refusal is `refuse` (default: a close), its code only on
   * the log line.
   */
  readonly silent?: boolean
  /** How a silent listener refuses: e.g. a TLS alert, then a close (sni). */
  readonly refuse?: (socket: Socket, err: ProxyError) => void
  /**
   * The `timeouts.header` sweep the first-bytes check (the domain-fronting
   * guard, issue 14) waits on; listeners without one (tcp, sni) never check.
   */
  readonly firstBytes?: HeadTimeouts
}

/** What an SNI listener read from the ClientHello, for the log line (issue 14). */
export interface HelloFacts {
  readonly sni: string | undefined
  readonly alpn: readonly string[]
  readonly ech: boolean
}

/** A terminate listener's two TLS legs, for the log line (issue 14). */
export interface TlsLegFacts {
  /** The client's leg: version and cipher, once its handshake completed. */
  readonly version?: string | undefined
  readonly cipher?: string | undefined
  /** The upstream's leg, and its certificate's subject and expiry (ISO 8601), also when it was refused. */
  readonly upstreamVersion?: string | undefined
  readonly upstreamCipher?: string | undefined
  /** The upstream leg resumed a session (tls/session-cache.ts): no full handshake, the certificate verified when it was made. */
  readonly upstreamResumed?: boolean
  readonly upstreamSubject?: string | undefined
  readonly upstreamExpiry?: string | undefined
  /** OpenSSL's or Node's code for the handshake that failed, e.g. ERR_SSL_TLSV1_ALERT_UNKNOWN_CA, CERT_HAS_EXPIRED. */
  readonly tlsError?: string
}

/** RFC 9110 §9.3.6; undici accepts exactly this reason phrase. */
export const ESTABLISHED = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n', 'latin1')

let nextId = 0
const NO_HOPS: readonly string[] = Object.freeze([])

/**
 * Socket listeners are these shared functions, called with `this` = the
 * socket, which points back at its tunnel: an idle tunnel then holds no
 * closure and no `once` wrapper per event (issue 6, memory per tunnel).
 */
export const kTunnel = Symbol('sluice.tunnel')
export type Owned = Socket & { [kTunnel]?: TunnelSetup | undefined }

export function onSocketError (this: Owned, err: Error): void { this[kTunnel]?.socketError(this, err) }
export function onSocketClose (this: Owned): void { this[kTunnel]?.socketClose(this) }
export function onSocketEnd (this: Owned): void { this[kTunnel]?.socketEnd(this) }
export function onDialReadable (this: Owned): void { this[kTunnel]?.dialReadable() }

export abstract class TunnelSetup implements Cancellation {
  readonly id: string
  readonly startedAt = performance.now()
  /** The client's socket; a terminate listener's becomes its TLS socket (adoptDownstream). */
  protected _downstream: Socket
  /** Client address as rules and limits see it (IPv4-mapped unwrapped). */
  readonly clientAddress: string
  readonly clientPort: number
  protected _state: TunnelState = 'accepted'
  protected _target: Target | undefined
  protected _user: string | undefined
  protected attemptedUser: string | undefined
  /** The policy's decision, kept so a reload can re-judge the open tunnel. */
  protected _decision: Decision | undefined
  protected routeName: string | undefined
  protected _hops: readonly string[] = NO_HOPS
  protected failedChoices: string[] | undefined
  protected _dialed: Endpoint | undefined
  protected status = 0
  protected error: ProxyError | undefined
  protected connectMs: number | undefined
  protected closedBy: ClosedBy | undefined
  protected closeHow: CloseHow | undefined
  /** Idle bookkeeping, read only by sweep(): no per-chunk work (docs/node-internals.md B3). */
  protected lastBytes = 0
  protected lastActive = 0
  /** Upstream byte counters at establishment: a parent's CONNECT exchange is not tunnel traffic. */
  protected upBase = 0
  protected downBase = 0
  protected readonly host: TunnelHost
  protected _upstream: Socket | undefined
  protected relay: Relay | undefined
  /** Set when the client goes away or the tunnel is refused before establishment. */
  protected _aborted = false
  /** The dial's 'abort' listeners (upstream/cancel.ts); dropped once established. */
  protected abortListeners: Array<() => void> | undefined
  protected finalized = false
  /** SNI listeners: what the ClientHello said. */
  protected hello: HelloFacts | undefined
  /** Terminate listeners: both TLS legs. */
  protected tlsLegs: TlsLegFacts | undefined
  /** TCP keepalive is on for both legs (the first sweep after establishment). */
  protected keptAlive = false

  constructor (downstream: Socket, host: TunnelHost) {
    // First thing: the listener hands the socket over without its own
    // 'error' listener, and a client RST on a socket with none would crash
    // the process (docs/node-internals.md A3).
    const owned = downstream as Owned
    owned[kTunnel] = this
    downstream.on('error', onSocketError)
    downstream.on('close', onSocketClose)
    this._downstream = downstream
    this.host = host
    this.id = (++nextId).toString(36)
    // The PROXY protocol's client, when a trusted balancer's header named one (issue 15).
    this.clientAddress = clientAddressOf(downstream)
    this.clientPort = clientPortOf(downstream)
  }

  get downstream (): Socket { return this._downstream }
  get state (): TunnelState { return this._state }
  get target (): Target | undefined { return this._target }
  get user (): string | undefined { return this._user }
  get decision (): Decision | undefined { return this._decision }
  get hops (): readonly string[] { return this._hops }
  get dialed (): Endpoint | undefined { return this._dialed }
  get upstream (): Socket | undefined { return this._upstream }
  /** `ip:port` of the client, IPv6 in brackets. */
  get client (): string { return formatHostPort(this.clientAddress, this.clientPort) }
  /** The route being dialed or used (the admin listener's `/tunnels`, issue 15). */
  get route (): string | undefined { return this.routeName }
  /** Tunnel bytes so far, client → target and back, as the closing line counts them (0 before establishment). */
  get bytesUp (): number { return this._upstream === undefined ? 0 : this._upstream.bytesWritten - this.upBase }
  get bytesDown (): number { return this._upstream === undefined ? 0 : this._upstream.bytesRead - this.downBase }

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

  protected cancel (): void {
    if (this._state === 'established' || this._aborted) return
    this._aborted = true
    const l = this.abortListeners
    this.abortListeners = undefined
    if (l !== undefined) for (const listener of l) listener()
  }

  /** What the ClientHello said (SNI listeners): on the log line. */
  helloFacts (facts: HelloFacts): void {
    this.hello = facts
  }

  /** What the TLS legs negotiated (terminate listeners): on the log line; later facts add to earlier ones. */
  tlsFacts (facts: TlsLegFacts): void {
    this.tlsLegs = { ...this.tlsLegs, ...facts }
  }

  /**
   * A terminate listener's client, now inside TLS (issue 14): the tunnel
   * owns the TLS socket in place of the raw one, which the TLS socket
   * owns (Node destroys it with the TLS socket, and forwards its close and
   * errors). Listeners that were added to `tls` first run first.
   */
  adoptDownstream (tls: Socket): void {
    const raw = this._downstream as Owned
    raw.removeListener('error', onSocketError)
    raw.removeListener('close', onSocketClose)
    raw.removeListener('readable', onDialReadable)
    raw[kTunnel] = undefined
    ;(tls as Owned)[kTunnel] = this
    tls.on('error', onSocketError)
    tls.on('close', onSocketClose)
    this._downstream = tls
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
    if (this.host.silent !== true) respondAndClose(this.downstream, errorResponse(err, extraHeaders))
    else if (this.host.refuse !== undefined) this.host.refuse(this.downstream, err)
    else this.downstream.destroy()
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

  /** Record the first close cause only: later events are consequences. */
  mark (by: ClosedBy, how: CloseHow): void {
    if (this.closedBy !== undefined) return
    this.closedBy = by
    this.closeHow = how
  }

  /** @internal A FIN from one side (tunnel.ts). */
  abstract socketEnd (socket: Socket): void
  /** @internal */
  abstract socketError (socket: Socket, err: Error): void
  /** @internal */
  abstract socketClose (socket: Socket): void
  /** Runs once, after every socket this tunnel owns has closed (or was released). */
  protected abstract finalize (released?: boolean): void
}
