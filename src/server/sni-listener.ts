/**
 * SNI-routed TLS passthrough (`kind: sni`, issue 14; ATS's tunnel_route):
 * the client connects to Sluice as if it were the server, sends no CONNECT,
 * and its ClientHello says where it is going. Sluice reads the hello
 * (tls/client-hello.ts: split across segments or records, up to a cap),
 * routes by its server_name (or the listener's `map`) on the listener's
 * `target_port`, runs the CONNECT pipeline from admission on
 * (connect/handle.ts handleForward: policy with `hosts:` matching the SNI
 * name, DNS and the guard or a parent, the dial), replays the exact hello
 * bytes and relays. TLS itself is never touched.
 *
 * There is no HTTP: a refusal is logged with a code (`request refused`
 * before a tunnel exists, the tunnel's line after) and answered with a
 * TLS alert where one fits (RFC 8446 §6: access_denied for the policy,
 * unrecognized_name for a name that cannot be routed), then a close.
 * The wait for the hello is on the shared `timeouts.header` sweep.
 */
import { createServer, type Server, type Socket } from 'node:net'
import { ProxyError, type ErrorCode } from '../errors.js'
import type { ConnectContext, ConnectionInfo } from '../connect/context.js'
import { handleForward } from '../connect/handle.js'
import { parseTarget, type Target } from '../connect/target.js'
import { mapped, type SniMap } from '../config/listeners.js'
import { formatHostPort } from '../net/ip.js'
import { F } from '../observability/fields.js'
import { alertRecord, type Alert } from '../tls/alert.js'
import { HelloReader, type ClientHello, type HelloErrorCode } from '../tls/client-hello.js'
import { Tunnel, type TunnelHost } from '../tunnel/tunnel.js'
import type { HeadTimed, HeadTimeouts } from './head-timeouts.js'
import { clientOf } from './refusals.js'
import type { WaitingConnections } from './waiting.js'

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

/** The alert a refusal gets: the policy's is access_denied, a name that cannot be routed is unrecognized_name. */
function alertFor (code: ErrorCode): Alert | undefined {
  switch (code) {
    case 'ERR_POLICY_DENIED': case 'ERR_DESTINATION_PROHIBITED': case 'ERR_LOOP_DETECTED': case 'ERR_CLIENT_LIMIT': return 'access_denied'
    case 'ERR_SNI_MISSING': case 'ERR_SNI_IP_LITERAL': case 'ERR_DNS_NXDOMAIN': case 'ERR_DNS_NO_ADDRESSES': return 'unrecognized_name'
    case 'ERR_SNI_MALFORMED': case 'ERR_SNI_TOO_LARGE': return 'decode_error'
    case 'ERR_SNI_NOT_TLS': return undefined // not a TLS peer: a close says enough
    default: return 'handshake_failure'
  }
}

/** Refuse: the alert where one fits, then a close (a lingering read is not needed: we read nothing more). */
function refuse (socket: Socket, err: ProxyError): void {
  const alert = alertFor(err.code)
  if (alert !== undefined && socket.writable) socket.end(alertRecord(alert))
  else socket.destroy()
  // A client that never reads would hold the socket: end() is followed by a destroy once the alert is flushed.
  socket.once('finish', () => { socket.destroy() })
}

const PARSER_CODES: Readonly<Record<HelloErrorCode, ErrorCode>> = {
  NOT_TLS: 'ERR_SNI_NOT_TLS',
  SSLV2: 'ERR_SNI_NOT_TLS',
  NOT_CLIENT_HELLO: 'ERR_SNI_MALFORMED',
  MALFORMED: 'ERR_SNI_MALFORMED',
  TOO_LARGE: 'ERR_SNI_TOO_LARGE'
}

interface Listener {
  readonly ctx: ConnectContext
  readonly opts: SniListenerOptions
  readonly host: TunnelHost
  readonly conn: ConnectionInfo
  readonly failed: (err: unknown) => void
}

const kHello = Symbol('sluice.sni')
type Waiting = Socket & { [kHello]?: HelloWait | undefined }

function onHelloData (this: Waiting, chunk: Buffer): void { this[kHello]?.data(chunk) }
function onHelloEnd (this: Waiting): void { this[kHello]?.end() }
function onHelloError (this: Waiting): void { this[kHello]?.detach() }

/** One connection waiting for its ClientHello. */
class HelloWait implements HeadTimed {
  readonly since = Date.now()
  readonly socket: Waiting
  private readonly listener: Listener
  private readonly reader: HelloReader
  private seen = 0

  constructor (socket: Socket, listener: Listener) {
    this.socket = socket
    this.listener = listener
    this.reader = new HelloReader(listener.opts.maxHelloBytes)
  }

  start (): void {
    const s = this.socket
    s[kHello] = this
    s.on('error', onHelloError)
    s.on('data', onHelloData)
    s.on('end', onHelloEnd)
    this.listener.opts.hellos.add(this)
  }

  detach (): void {
    const s = this.socket
    if (s[kHello] !== this) return
    s[kHello] = undefined
    s.removeListener('data', onHelloData)
    s.removeListener('end', onHelloEnd)
    this.listener.opts.hellos.delete(this)
  }

  data (chunk: Buffer): void {
    this.seen += chunk.length
    const r = this.reader.push(chunk)
    if (r.kind === 'incomplete') return
    this.detach()
    if (r.kind === 'error') this.refuse(new ProxyError(PARSER_CODES[r.code], { detail: r.detail }))
    else this.route(r)
  }

  /** Closed before a whole hello: nothing to answer; a log line when it had sent something. */
  end (): void {
    this.detach()
    if (this.seen > 0) this.refuse(new ProxyError('ERR_SNI_MALFORMED', { detail: 'the client closed before its ClientHello was complete' }))
    else this.socket.destroy()
  }

  timedOut (ms: number): void {
    this.detach()
    this.refuse(new ProxyError('ERR_SNI_TIMEOUT', { detail: `limit is ${ms} ms` }))
  }

  private refuse (err: ProxyError): void {
    const { ctx, opts } = this.listener
    ctx.log.info({ [F.client]: clientOf(this.socket), [F.listener]: opts.name, [F.status]: err.status, [F.code]: err.code, [F.reason]: err.detail }, 'request refused')
    refuse(this.socket, err)
  }

  private route (hello: ClientHello): void {
    const { ctx, opts, host, conn, failed } = this.listener
    let target: Target
    try {
      target = targetOf(hello, opts)
    } catch (err) {
      this.refuse(err instanceof ProxyError ? err : new ProxyError('ERR_SNI_MALFORMED', { detail: String(err) }))
      return
    }
    const socket = this.socket
    socket.removeListener('error', onHelloError)
    // From here the tunnel registry counts it.
    opts.waiting.delete(socket)
    // Until the dial succeeds, what else the client sends waits in the stream.
    socket.pause()
    const tunnel = new Tunnel(socket, host)
    tunnel.helloFacts({ sni: hello.serverName, alpn: hello.alpn, ech: hello.echOffered })
    // The exact bytes received, hello and anything after it, are replayed to the target first.
    handleForward(ctx, tunnel, target, conn, this.reader.bytes).catch(failed)
  }
}

/** The target for a hello: the map's, else `server_name:target_port`; an IP literal or no name is refused. */
function targetOf (hello: ClientHello, opts: SniListenerOptions): Target {
  const name = hello.serverName
  if (name === undefined) throw new ProxyError('ERR_SNI_MISSING')
  const fixed = mapped(opts.map, name)
  if (fixed !== undefined) return fixed
  let target: Target
  try {
    target = parseTarget(formatHostPort(name, opts.targetPort))
  } catch (err) {
    throw new ProxyError('ERR_SNI_MALFORMED', { detail: `server_name ${JSON.stringify(name.slice(0, 64))}: ${err instanceof ProxyError ? err.detail ?? err.message : String(err)}` })
  }
  // RFC 6066 §3: "Literal IPv4 and IPv6 addresses are not permitted in HostName" (also once normalised).
  if (target.kind !== 'name') throw new ProxyError('ERR_SNI_IP_LITERAL', { detail: name })
  return target
}

export function createSniListener (ctx: ConnectContext, opts: SniListenerOptions): Server {
  // As the other listeners: half-open sockets, no Nagle (docs/node-internals.md A9).
  const server = createServer({ allowHalfOpen: true, noDelay: true })
  const listener: Listener = {
    ctx,
    opts,
    host: { log: ctx.log, onClosed: (t) => ctx.registry.delete(t), silent: true, refuse },
    conn: Object.freeze({ listener: opts.name, challenges: 0, ...(opts.via === undefined ? {} : { via: opts.via }) }),
    failed: (err) => { ctx.log.error({ err }, 'unhandled error in an sni forward') }
  }
  server.on('connection', (socket: Socket) => {
    opts.waiting.add(socket)
    new HelloWait(socket, listener).start()
    opts.accepted()
  })
  return server
}
