/**
 * One CONNECT, from accept to close, as one object (Smokescreen's
 * InstrumentedConn). It owns both sockets and its state: other modules move
 * it on with its transition methods (parsed, admit, authenticated, decided,
 * dialing, establish, fail, challenge, destroy) and read it through
 * getters. `finalize()` runs exactly once, after every socket it owns has
 * closed, leaves the registry and writes the one canonical `tunnel closed`
 * log line. The phase before establishment is in tunnel-setup.ts.
 *
 * Data flow: client ⇄ downstream socket ⇄ [Tunnel] ⇄ upstream socket ⇄ target/parent.
 */
import type { Socket } from 'node:net'
import { ProxyError, type ErrorCode } from '../errors.js'
import { formatHostPort, type Endpoint } from '../net/ip.js'
import { F } from '../observability/fields.js'
import { canReset, Relay, type Gate } from './relay.js'
import { checkFirstBytes } from './first-bytes-check.js'
import type { HeadTimeouts } from '../server/head-timeouts.js'
import type { SweepLimits } from '../server/registry.js'
import { ESTABLISHED, kTunnel, onDialReadable, onSocketClose, onSocketEnd, onSocketError, TunnelSetup, type CloseHow, type Owned } from './tunnel-setup.js'

export type { ClosedBy, CloseHow, HelloFacts, TlsLegFacts, TunnelHost, TunnelState } from './tunnel-setup.js'

export class Tunnel extends TunnelSetup {
  /** Tunnel bytes already counted against its user's byte quota (takeBytes()). */
  private quotaMark = 0

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
    upstream.on('end', onSocketEnd)
    if (this.host.silent !== true) this.downstream.write(ESTABLISHED)
    // The domain-fronting guard (issue 14): checks compiled into the verdict, on listeners that run them.
    const checks = this.host.firstBytes === undefined ? 0 : (this._decision?.checks ?? 0)
    if (checks === 0) this.relayClient(head)
    else {
      // The server is heard while the client's first bytes are judged (a banner may come first).
      this.relay = new Relay(this.downstream, upstream, false)
      checkFirstBytes(this, checks, head, this.host.firstBytes as HeadTimeouts)
    }
    // See relayClient() on a FIN read before we listened.
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
   * @internal From here the client's bytes go upstream: `head` first (sent
   * with the CONNECT, docs/node-internals.md A1, or read by the first-bytes
   * check), then the relay.
   */
  relayClient (head: Buffer): void {
    const upstream = this._upstream as Socket
    this.downstream.on('end', onSocketEnd)
    if (head.length > 0) upstream.write(head)
    if (this.relay === undefined) this.relay = new Relay(this.downstream, upstream)
    else this.relay.startClient(this.downstream, upstream)
    // A FIN read before we listened (the client's, while we dialed) had its
    // 'end' emitted to nobody and will not fire again; pipe() used to cover
    // this (endEmitted → end in nextTick). Forward it now.
    if (this.downstream.readableEnded) this.socketEnd(this.downstream)
  }

  /**
   * @internal Have the relay read the client and hand its bytes to `gate`
   * until relayClient() (tunnel/first-bytes-check.ts); false when the gate
   * must read the client itself.
   */
  gateClient (gate: Gate): boolean {
    return this.relay?.gateClient(this.downstream, this._upstream as Socket, gate) ?? false
  }

  /**
   * @internal Close an established tunnel for what its client sent first
   * (tunnel/first-bytes-check.ts): `err` goes on the log line (the status
   * stays the 200 the client got), `alert` to the client before the close.
   */
  reject (err: ProxyError, alert?: Buffer): void {
    if (this._state !== 'established' || this.error !== undefined) return
    this.error = err
    this.mark('proxy', 'rejected')
    this._upstream?.destroy()
    if (alert !== undefined && this.downstream.writable) this.downstream.end(alert)
    else this.downstream.destroy()
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

  /**
   * Tunnel bytes, up and down, moved since the last call: what the
   * registry's sweep and close count against the user's
   * `limits.max_bytes_per_user` (issue 15). Read from the sockets' own
   * counters, so the relay does nothing per chunk for it.
   */
  takeBytes (): number {
    const total = this.bytesUp + this.bytesDown
    const bytes = total - this.quotaMark
    this.quotaMark = total
    return bytes
  }

  /**
   * Close from our side (idle, lifetime, shutdown, revoke, admin, byte
   * quota). `err`, for a close that is a refusal after the fact (the byte
   * quota's), goes on the log line's `code`; the status stays the 200 sent.
   */
  destroy (how: CloseHow, err?: ProxyError): void {
    if (this._state === 'closed') return
    if (this._state !== 'established') {
      // Already answered and lingering: close it now.
      if (this.error !== undefined) { this.downstream.destroy(); return }
      this.fail(err ?? new ProxyError(how === 'shutdown' ? 'ERR_SHUTTING_DOWN' : 'ERR_INTERNAL', { detail: how }))
      return
    }
    if (this.closedBy === undefined && this.error === undefined) this.error = err
    this.mark('proxy', how)
    this._upstream?.destroy()
    this.downstream.destroy()
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

  /** The error it was refused or closed with, if any (the log line's `code`; metrics). */
  get code (): ErrorCode | undefined { return this.error?.code }
  /** ms from the request to establishment (the 200), once established. */
  get establishedMs (): number | undefined { return this.connectMs }

  protected finalize (released = false): void {
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
      [F.bytesUp]: this.bytesUp,
      [F.bytesDown]: this.bytesDown,
      [F.connectMs]: this.connectMs === undefined ? undefined : Math.round(this.connectMs * 100) / 100,
      [F.durationMs]: Math.round((performance.now() - this.startedAt) * 100) / 100,
      [F.closedBy]: this.closedBy,
      [F.close]: this.closeHow,
      ...(this.hello === undefined ? {} : { [F.sni]: this.hello.sni, [F.alpn]: this.hello.alpn.length === 0 ? undefined : this.hello.alpn, [F.ech]: this.hello.ech || undefined }),
      ...(this.tlsLegs === undefined
        ? {}
        : {
            [F.tlsVersion]: this.tlsLegs.version,
            [F.tlsCipher]: this.tlsLegs.cipher,
            [F.upstreamTlsVersion]: this.tlsLegs.upstreamVersion,
            [F.upstreamTlsCipher]: this.tlsLegs.upstreamCipher,
            [F.upstreamTlsResumed]: this.tlsLegs.upstreamResumed === true ? true : undefined,
            [F.upstreamCertSubject]: this.tlsLegs.upstreamSubject,
            [F.upstreamCertExpiry]: this.tlsLegs.upstreamExpiry,
            [F.tlsError]: this.tlsLegs.tlsError
          })
    }
  }
}
