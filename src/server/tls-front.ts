/**
 * TLS from the client to a connect listener (issue 13): an HTTPS proxy.
 * The listener's net.Server accepts as for plain CONNECT (accept guard,
 * waiting connections); each connection's first bytes say what it speaks:
 *
 * - a TLS record (0x16, RFC 8446 §5.1 handshake) → handed to a tls.Server
 *   that never listens itself (`emit('connection')`), so Node's own TLS
 *   server path runs: SNI, ALPN, session tickets, client certificates.
 *   The bytes already read are put back (`unshift`), and TLSSocket feeds
 *   them to OpenSSL first (docs/node-internals.md F1);
 * - anything else → plain HTTP `400 ERR_TLS_REQUIRED`, "use an https://
 *   proxy URL", and close.
 *
 * A handshake has no HTTP channel: its failures are logged (`tls handshake
 * failed`, with a code from the registry and the reason) and the socket is
 * destroyed. The wait for the first byte is on the shared sweep of
 * `timeouts.tls_handshake` (head-timeouts.ts); the handshake itself runs
 * under tls.Server's `handshakeTimeout`, Node's one timer per handshake.
 */
import { createHash, randomBytes } from 'node:crypto'
import type { Socket } from 'node:net'
import { createServer as createTlsServer, type SecureContext, type Server as TlsServer, type TLSSocket } from 'node:tls'
import type { Logger } from 'pino'
import { ProxyError, type ErrorCode } from '../errors.js'
import type { ListenerTls } from '../config/listeners.js'
import { errorResponse, respondAndClose } from '../tunnel/respond.js'
import { F } from '../observability/fields.js'
import type { HeadTimed, HeadTimeouts } from './head-timeouts.js'
import { clientOf } from './refusals.js'
import { carryProxiedClient } from '../net/client-address.js'
import { clientIdentity, sniContext } from './tls-identity.js'
import type { WaitingConnections } from './waiting.js'

export interface TlsFrontOptions {
  readonly name: string
  readonly log: Logger
  readonly tls: ListenerTls
  readonly handshakeMs: number
  /** The wait for a first byte, on the shared sweep. */
  readonly firstBytes: HeadTimeouts
  readonly waiting: WaitingConnections
  /** Session ticket keys shared by every worker (cli/cluster.ts), else tls.Server's own. */
  readonly ticketKeys?: Buffer
  /** A handshake completed: read the CONNECT inside it; `user` is a verified client certificate's identity. */
  readonly secure: (socket: TLSSocket, user: string | undefined) => void
}

export interface TlsFront {
  /** An accepted connection: tell TLS from plain text, then hand it to the TLS server. */
  accept (socket: Socket): void
  /** New certificates from a reload (already validated at load). */
  update (tls: ListenerTls): void
}

const kFirst = Symbol('sluice.tls-first')
/** The client's `ip:port`, read at accept: a handshake that fails may leave no peer to ask. */
const kClient = Symbol('sluice.tls-client')
type Waiting = Socket & { [kFirst]?: FirstBytes | undefined, [kClient]?: string }

function onFirstData (this: Waiting, chunk: Buffer): void { this[kFirst]?.data(chunk) }
function onFirstEnd (this: Waiting): void { this[kFirst]?.detach(); this.destroy() }
function onFirstError (this: Waiting): void { this[kFirst]?.detach() }

/** One connection waiting for its first bytes. */
class FirstBytes implements HeadTimed {
  readonly since = Date.now()
  readonly socket: Waiting
  private readonly front: Front

  constructor (socket: Socket, front: Front) {
    this.socket = socket
    this.front = front
    this.socket[kClient] = clientOf(socket)
  }

  start (): void {
    const s = this.socket
    s[kFirst] = this
    s.on('data', onFirstData)
    s.on('end', onFirstEnd)
    s.on('error', onFirstError)
    this.front.opts.firstBytes.add(this)
  }

  detach (): void {
    const s = this.socket
    if (s[kFirst] !== this) return
    s[kFirst] = undefined
    s.removeListener('data', onFirstData)
    s.removeListener('end', onFirstEnd)
    this.front.opts.firstBytes.delete(this)
  }

  data (chunk: Buffer): void {
    this.detach()
    const s = this.socket
    s.removeListener('error', onFirstError)
    if (chunk[0] === 0x16) {
      s.pause()
      s.unshift(chunk)
      this.front.server.emit('connection', s)
      return
    }
    // Plain text on a TLS listener: answer in plain text, as Node's https server would not.
    const err = new ProxyError('ERR_TLS_REQUIRED')
    this.front.opts.log.info({ [F.client]: clientOf(s), [F.listener]: this.front.opts.name, [F.status]: err.status, [F.code]: err.code }, 'request refused')
    this.front.opts.waiting.delete(s)
    s.on('error', onFirstError)
    respondAndClose(s, errorResponse(err))
  }

  timedOut (ms: number): void {
    this.detach()
    this.front.failed(this.socket, 'ERR_TLS_TIMEOUT', `no TLS record within ${ms} ms`)
  }
}

/** Handshake errors → the registry (their reason goes on the log line). */
function handshakeCode (err: Error & { code?: string }): ErrorCode {
  const code = err.code ?? ''
  if (code === 'ERR_TLS_HANDSHAKE_TIMEOUT') return 'ERR_TLS_TIMEOUT'
  // An alert from the client is its verdict on us, say "unknown ca" when it
  // does not trust this listener's certificate (curl, Python, Chromium): not
  // ours on its certificate, though OpenSSL's text names one.
  if (/^ERR_SSL_(?:SSLV3|TLSV1)_ALERT_/.test(code)) return 'ERR_TLS_HANDSHAKE'
  // OpenSSL's verdicts on the client's certificate, or on its absence.
  if (/CERTIFICATE|CERT_|UNABLE_TO_GET_ISSUER|SELF_SIGNED|UNKNOWN_CA/.test(code) || /certificate/i.test(err.message)) return 'ERR_TLS_CLIENT_CERT'
  return 'ERR_TLS_HANDSHAKE'
}

/**
 * OpenSSL resumes a session only in the session ID context it began in
 * (SSL_CTX_set_session_id_context). One per client-certificate trust (issue
 * 13): a reload that changes `client_ca_file` makes every client show its
 * certificate again, on every worker alike; any other reload keeps sessions
 * resumable.
 */
function sessionIdContext (tls: ListenerTls): string {
  return createHash('sha256').update(`${tls.clientCert}\n${tls.ca ?? ''}`).digest('hex').slice(0, 32)
}

class Front implements TlsFront {
  readonly server: TlsServer
  readonly opts: TlsFrontOptions

  constructor (opts: TlsFrontOptions) {
    this.opts = opts
    const t = opts.tls
    let current = t
    // Given explicitly, so they outlive setSecureContext: without ticketKeys
    // it makes a new context with new random keys, and every reload (a
    // policy edit too) would end every client's resumption.
    const ticketKeys = opts.ticketKeys ?? randomBytes(48)
    this.server = createTlsServer({
      key: t.key,
      cert: t.cert,
      minVersion: t.minVersion,
      // RFC 7301: a CONNECT proxy speaks HTTP/1.1 inside TLS, nothing else.
      ALPNProtocols: ['http/1.1'],
      allowHalfOpen: true,
      handshakeTimeout: opts.handshakeMs,
      // Always installed, so a reload that adds `certs` is served; no match (or no SNI) is the main one, the server's own context.
      SNICallback: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => { cb(null, sniContext(current, servername)) },
      // Node 20 destroys a server socket whose client certificate fails
      // verification without telling the server why (docs/node-internals.md
      // F2): so the certificate is asked for, and judged right after the
      // handshake (tls-identity.ts), with OpenSSL's reason.
      ...(t.clientCert === 'none' ? {} : { requestCert: true, rejectUnauthorized: false, ca: t.ca }),
      sessionIdContext: sessionIdContext(t),
      ticketKeys
    })
    this.update = (next: ListenerTls): void => {
      current = next
      // tls.Server reads these for each new connection (tlsConnectionListener): a reload may add or remove client_ca_file.
      const server = this.server as TlsServer & { requestCert: boolean, rejectUnauthorized: boolean }
      server.requestCert = next.clientCert !== 'none'
      server.rejectUnauthorized = false
      this.server.setSecureContext({
        key: next.key,
        cert: next.cert,
        minVersion: next.minVersion,
        ...(next.clientCert === 'none' ? {} : { ca: next.ca }),
        sessionIdContext: sessionIdContext(next),
        ticketKeys
      })
    }
    this.server.on('secureConnection', (socket: TLSSocket) => { this.secured(socket, current) })
    this.server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      this.failed(socket, handshakeCode(err), err.message, err.code)
    })
  }

  readonly update: (tls: ListenerTls) => void

  accept (socket: Socket): void {
    new FirstBytes(socket, this).start()
  }

  private secured (socket: TLSSocket, tls: ListenerTls): void {
    const raw = (socket as TLSSocket & { _parent?: Socket })._parent
    if (raw !== undefined) {
      this.opts.waiting.delete(raw)
      // The PROXY protocol's client (issue 15) is this connection's inside TLS too.
      carryProxiedClient(raw, socket)
    }
    const id = clientIdentity(socket, tls)
    if (id.refused !== undefined) {
      // `optional`: a certificate was sent and is not trusted; refuse it rather than treat the client as anonymous.
      this.failed(socket, 'ERR_TLS_CLIENT_CERT', id.refused)
      return
    }
    this.opts.waiting.add(socket)
    this.opts.secure(socket, id.user)
  }

  /** A handshake that failed or never came: one log line, and the connection is gone. */
  failed (socket: Socket, code: ErrorCode, reason: string, tlsCode?: string): void {
    const raw: Waiting = (socket as Socket & { _parent?: Socket })._parent ?? socket
    this.opts.waiting.delete(raw)
    this.opts.log.info({
      [F.client]: raw[kClient] ?? clientOf(raw),
      [F.listener]: this.opts.name,
      [F.code]: code,
      [F.reason]: reason,
      ...(tlsCode === undefined ? {} : { [F.tlsError]: tlsCode })
    }, 'tls handshake failed')
    socket.destroy()
    if (raw !== socket) raw.destroy()
  }
}

export function createTlsFront (opts: TlsFrontOptions): TlsFront {
  return new Front(opts)
}
