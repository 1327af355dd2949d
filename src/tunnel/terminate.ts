/**
 * TLS termination with re-origination (`kind: terminate`, issue 14; ATS's
 * forward_route): between the dial and the relay, open TLS to the upstream,
 * and only then finish the client's handshake with this listener's
 * certificate for its SNI. The two TLS sockets are relayed as plaintext.
 *
 * Order, and why: the client's ClientHello has been read (hello-wait.ts)
 * and no byte answered. The upstream's handshake runs first, so a refused
 * upstream (an untrusted, expired or misnamed certificate, an old TLS
 * version, a timeout) reaches the client as a TLS alert before its own
 * handshake went anywhere, never as a session that dies after it
 * completed. And ALPN is negotiated upstream first: the upstream is offered
 * what the client offered (filtered by `upstream_tls.alpn`), and the client
 * is offered exactly what the upstream chose, so both legs speak the same
 * protocol over the plaintext splice (none chosen upstream: none to the
 * client, which then speaks HTTP/1.1).
 *
 * Both handshakes are timed by the shared `timeouts.tls_handshake` sweep
 * (server/head-timeouts.ts), not a timer each.
 */
import type { Socket } from 'node:net'
import { connect as tlsConnect, TLSSocket, type PeerCertificate, type SecureContext } from 'node:tls'
import { ProxyError, type ErrorCode } from '../errors.js'
import type { UpstreamTls } from '../config/upstream-tls.js'
import type { HeadTimed, HeadTimeouts } from '../server/head-timeouts.js'
import { keepSessions, sessionCertificate, type KeptSession, type SessionCache } from '../tls/session-cache.js'
import type { Tunnel } from './tunnel.js'

export interface TerminateSettings {
  /** This listener's certificate for the client's SNI. */
  readonly context: SecureContext
  readonly upstream: UpstreamTls
  /** Sent to the upstream as SNI and verified in its certificate. */
  readonly servername: string
  /** The client's ALPN offer, from its ClientHello. */
  readonly clientAlpn: readonly string[]
  /** Every byte read from the client so far: its ClientHello, fed to our TLS server first. */
  readonly hello: Buffer
  /** `timeouts.tls_handshake`'s sweep. */
  readonly handshakes: HeadTimeouts
  /** Upstream sessions for resumption (tls/session-cache.ts), under `sessionKey`. */
  readonly sessions?: SessionCache
  readonly sessionKey?: string
  /** @internal The session offered, once reoriginate() looked it up. */
  resumed?: KeptSession | undefined
}

/** OpenSSL's and Node's codes for an upstream handshake → the registry. */
export function upstreamTlsCode (err: Error & { code?: string }): ErrorCode {
  const code = err.code ?? ''
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return 'ERR_UPSTREAM_TLS_EXPIRED'
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') return 'ERR_UPSTREAM_TLS_NAME'
  if (/CERT|SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY|CHAIN/.test(code)) return 'ERR_UPSTREAM_TLS_UNTRUSTED'
  if (/UNSUPPORTED_PROTOCOL|PROTOCOL_VERSION|NO_PROTOCOLS_AVAILABLE|WRONG_VERSION_NUMBER|VERSION_TOO_LOW/.test(code)) return 'ERR_UPSTREAM_TLS_VERSION'
  return 'ERR_UPSTREAM_TLS_HANDSHAKE'
}

/** `Dec  7 19:00:00 2027 GMT` → ISO 8601, for logs that machines read. */
function isoDate (openssl: string): string {
  const t = Date.parse(openssl)
  return Number.isNaN(t) ? openssl : new Date(t).toISOString()
}

/**
 * The upstream certificate's subject and expiry, for the log line. After
 * Node's own check (secureConnect) from an X509Certificate: cheaper than
 * getPeerCertificate(), which builds every field and three fingerprints. A
 * certificate about to be refused is read in the handshake's 'secure'
 * event, before Node's check destroys the socket, with getPeerCertificate():
 * on Node 20 a getPeerX509Certificate() there leaves the check an empty
 * certificate (measured: ERR_TLS_CERT_ALTNAME_INVALID for a good one).
 */
function x509Facts (tls: TLSSocket): { upstreamSubject?: string, upstreamExpiry?: string } {
  const cert = tls.getPeerX509Certificate()
  if (cert === undefined) return {}
  return { upstreamSubject: cert.subject.replace(/\n/g, ', '), upstreamExpiry: isoDate(cert.validTo) }
}

function peerFacts (cert: PeerCertificate | undefined): { upstreamSubject?: string, upstreamExpiry?: string } {
  if (cert === undefined || cert === null || typeof cert !== 'object' || cert.subject === undefined) return {}
  const subject = Object.entries(cert.subject as unknown as Record<string, string | string[]>).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`).join(', ')
  return { upstreamSubject: subject, ...(typeof cert.valid_to === 'string' ? { upstreamExpiry: isoDate(cert.valid_to) } : {}) }
}

/** OpenSSL's verdict on the chain, before Node acts on it (a private TLSWrap method, read defensively). */
function verifyFailed (tls: TLSSocket): boolean {
  const ssl = (tls as unknown as { _handle?: { verifyError?: () => unknown } })._handle
  return typeof ssl?.verifyError === 'function' && ssl.verifyError() != null
}

const kStep = Symbol('sluice.terminate')
type Stepped = TLSSocket & { [kStep]?: Handshake | undefined }

function onSecure (this: Stepped): void { this[kStep]?.secure() }
/** Before Node's own check of the upstream's certificate (which destroys the socket if it fails): read it while it is there. */
function onUpstreamHandshake (this: Stepped): void { this[kStep]?.handshook() }
function onError (this: Stepped, err: Error): void { this[kStep]?.error(err) }
function onClose (this: Stepped): void { this[kStep]?.closed() }

/** One handshake, upstream or client, on the shared sweep; settles once. */
abstract class Handshake implements HeadTimed {
  readonly since = Date.now()
  readonly socket: Stepped
  protected readonly tunnel: Tunnel
  protected readonly s: TerminateSettings
  private settle: ((err: ProxyError | undefined) => void) | undefined

  constructor (socket: TLSSocket, tunnel: Tunnel, s: TerminateSettings) {
    this.socket = socket
    this.tunnel = tunnel
    this.s = s
  }

  /**
   * Resolves once secure; rejects with the refusal. The listeners go on
   * before anyone else's. `secureConnect` for a client socket: its 'secure'
   * comes before Node checks the certificate.
   */
  run (): Promise<void> {
    const t = this.socket
    t[kStep] = this
    t.once(this.secureEvent, onSecure)
    t.on('error', onError)
    t.on('close', onClose)
    this.s.handshakes.add(this)
    return new Promise<void>((resolve, reject) => {
      this.settle = (err) => { if (err === undefined) resolve(); else reject(err) }
    })
  }

  detach (): void {
    const t = this.socket
    if (t[kStep] !== this) return
    t[kStep] = undefined
    // The 'error' listener stays, a no-op from now on: a TLS socket must
    // never be without one, and the tunnel's goes on only at establishment.
    t.removeListener(this.secureEvent, onSecure)
    t.removeListener('close', onClose)
    this.s.handshakes.delete(this)
  }

  protected done (err?: ProxyError): void {
    const settle = this.settle
    if (settle === undefined) return
    this.settle = undefined
    this.detach()
    settle(err)
  }

  protected abstract readonly secureEvent: 'secure' | 'secureConnect'
  handshook (): void {}
  abstract secure (): void
  abstract error (err: Error & { code?: string }): void
  abstract closed (): void
  abstract timedOut (ms: number): void
}

/** The upstream leg: TLS over the dialed socket, verified. */
class UpstreamHandshake extends Handshake {
  protected readonly secureEvent = 'secureConnect'
  private readonly onAbort = (): void => { this.fail(new ProxyError('ERR_UPSTREAM_TLS_HANDSHAKE', { detail: 'the client went away' })) }

  start (): Promise<void> {
    this.tunnel.addEventListener('abort', this.onAbort)
    // tls.connect put its certificate check on 'secure' already: ours goes first.
    this.socket.prependOnceListener('secure', onUpstreamHandshake)
    return this.run()
  }

  /** The handshake is done and the certificate not yet judged: its facts go on the line either way. */
  override handshook (): void {
    const t = this.socket
    this.tunnel.tlsFacts({
      upstreamVersion: t.getProtocol() ?? undefined,
      upstreamCipher: t.getCipher().name,
      upstreamResumed: t.isSessionReused(),
      ...(verifyFailed(t) ? peerFacts(t.getPeerCertificate()) : {})
    })
  }

  secure (): void {
    const t = this.socket
    // A resumed session shows no certificate: the one verified when it was made is on the line instead.
    const facts = t.isSessionReused() ? { upstreamSubject: this.s.resumed?.subject, upstreamExpiry: this.s.resumed?.expiry } : x509Facts(t)
    this.tunnel.tlsFacts(facts)
    sessionCertificate(t, facts.upstreamSubject, facts.upstreamExpiry)
    this.tunnel.removeEventListener('abort', this.onAbort)
    this.done()
  }

  error (err: Error & { code?: string, cert?: PeerCertificate }): void {
    if (err.code !== undefined) this.tunnel.tlsFacts({ tlsError: err.code })
    // A name mismatch (checkServerIdentity) carries the certificate it judged.
    if (err.cert !== undefined) this.tunnel.tlsFacts(peerFacts(err.cert))
    // A session that led nowhere is not offered again.
    this.s.sessions?.forget(this.s.sessionKey ?? '')
    this.fail(new ProxyError(upstreamTlsCode(err), { detail: `${this.s.servername}: ${err.code ?? ''} ${err.message}`.trim(), cause: err }))
  }

  closed (): void { this.fail(new ProxyError('ERR_UPSTREAM_TLS_HANDSHAKE', { detail: `${this.s.servername}: the upstream closed during the handshake` })) }

  timedOut (ms: number): void { this.fail(new ProxyError('ERR_UPSTREAM_TLS_TIMEOUT', { detail: `${this.s.servername}: limit is ${ms} ms` })) }

  private fail (err: ProxyError): void {
    this.tunnel.removeEventListener('abort', this.onAbort)
    this.socket.destroy()
    this.done(err)
  }
}

/** The client leg: our TLS server on the client's socket, fed the hello we read. */
class ClientHandshake extends Handshake {
  protected readonly secureEvent = 'secure'
  private readonly upstream: TLSSocket

  constructor (socket: TLSSocket, tunnel: Tunnel, s: TerminateSettings, upstream: TLSSocket) {
    super(socket, tunnel, s)
    this.upstream = upstream
  }

  secure (): void {
    const t = this.socket
    this.tunnel.tlsFacts({ version: t.getProtocol() ?? undefined, cipher: t.getCipher().name })
    this.done()
  }

  // The client's alert (it does not trust our certificate: "unknown ca"), or its garbage.
  error (err: Error & { code?: string }): void {
    if (err.code !== undefined) this.tunnel.tlsFacts({ tlsError: err.code })
    this.fail(new ProxyError('ERR_TLS_HANDSHAKE', { detail: `${err.code ?? ''} ${err.message}`.trim(), cause: err }), 'error')
  }

  closed (): void { this.fail(new ProxyError('ERR_TLS_HANDSHAKE', { detail: 'the client closed during the handshake' }), 'fin') }

  timedOut (ms: number): void { this.fail(new ProxyError('ERR_TLS_TIMEOUT', { detail: `limit is ${ms} ms` })) }

  /** Synchronously, before the tunnel's own listeners see the close: its line carries the code. */
  private fail (err: ProxyError, how?: 'error' | 'fin'): void {
    if (how !== undefined) this.tunnel.mark('client', how)
    this.upstream.destroy()
    this.tunnel.fail(err)
    this.done(err)
  }
}

/**
 * The terminate listener's Upgrade (connect/handle.ts): TLS to the
 * upstream, then the client's handshake; resolves with the upstream TLS
 * socket for the relay, the tunnel's downstream being the client's TLS
 * socket by then.
 */
export async function reoriginate (tunnel: Tunnel, dialed: Socket, s: TerminateSettings): Promise<Socket> {
  const offer = s.clientAlpn.filter(p => s.upstream.alpn.includes(p))
  // Gone while we dialed: no handshake for nobody (its abort listener would not be called now).
  if (tunnel.aborted) {
    dialed.destroy()
    throw new ProxyError('ERR_UPSTREAM_TLS_HANDSHAKE', { detail: 'the client went away' })
  }
  const kept = s.sessionKey === undefined ? undefined : s.sessions?.get(s.sessionKey)
  s.resumed = kept
  const up = tlsConnect({
    socket: dialed,
    secureContext: s.upstream.context,
    servername: s.servername,
    rejectUnauthorized: true,
    ...(offer.length === 0 ? {} : { ALPNProtocols: offer }),
    ...(kept === undefined ? {} : { session: kept.session })
  })
  if (s.sessions !== undefined && s.sessionKey !== undefined) keepSessions(up, s.sessions, s.sessionKey)
  await new UpstreamHandshake(up, tunnel, s).start()
  const raw = tunnel.downstream
  if (tunnel.aborted || raw.destroyed) {
    up.destroy()
    throw new ProxyError('ERR_TLS_HANDSHAKE', { detail: 'the client went away' })
  }
  // The hello goes back in front of whatever followed it; TLSSocket feeds a
  // wrapped socket's buffered bytes to OpenSSL first (docs/node-internals.md F1).
  raw.unshift(s.hello)
  const chosen = up.alpnProtocol
  const client = new TLSSocket(raw, {
    isServer: true,
    secureContext: s.context,
    ...(typeof chosen === 'string' ? { ALPNProtocols: [chosen] } : {})
  })
  const handshake = new ClientHandshake(client, tunnel, s, up)
  const secured = handshake.run()
  tunnel.adoptDownstream(client)
  await secured
  return up
}
