/**
 * The wait for a client's ClientHello on the listeners that route by it
 * (`sni` and `terminate`, issue 14): read until the hello is complete
 * (tls/client-hello.ts: split across segments or records, up to a cap),
 * under the shared `timeouts.header` sweep, then hand over the socket,
 * paused, with every byte read. Every way to fail is a `request refused`
 * line with a code, and an alert where TLS has one (tls/alerts.ts).
 */
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { ProxyError, type ErrorCode } from '../errors.js'
import type { Target } from '../connect/target.js'
import { F } from '../observability/fields.js'
import { refuseWithAlert } from '../tls/alerts.js'
import { HelloReader, type ClientHello, type HelloErrorCode } from '../tls/client-hello.js'
import type { HeadTimed, HeadTimeouts } from './head-timeouts.js'
import { clientOf } from './refusals.js'
import type { WaitingConnections } from './waiting.js'

export interface HelloListener {
  readonly log: Logger
  readonly name: string
  /** Cap on the ClientHello's records (ERR_SNI_TOO_LARGE beyond it). */
  readonly maxHelloBytes: number
  /** `timeouts.header`'s shared sweep: the hello must arrive within it. */
  readonly hellos: HeadTimeouts
  /** Accepted connections that are not (yet) tunnels: the accept guard counts them, shutdown closes them. */
  readonly waiting: WaitingConnections
  /** Where a hello goes; throws the refusal (a ProxyError) for one that cannot be routed. */
  readonly targetOf: (hello: ClientHello) => Target
  /**
   * Take over: the socket is paused, out of `waiting`, with no listener of
   * ours; `bytes` is everything read, the hello and anything after it.
   */
  readonly open: (socket: Socket, hello: ClientHello, target: Target, bytes: Buffer) => void
}

const PARSER_CODES: Readonly<Record<HelloErrorCode, ErrorCode>> = {
  NOT_TLS: 'ERR_SNI_NOT_TLS',
  SSLV2: 'ERR_SNI_NOT_TLS',
  NOT_CLIENT_HELLO: 'ERR_SNI_MALFORMED',
  MALFORMED: 'ERR_SNI_MALFORMED',
  TOO_LARGE: 'ERR_SNI_TOO_LARGE'
}

const kHello = Symbol('sluice.hello')
type Waiting = Socket & { [kHello]?: HelloWait | undefined }

function onHelloData (this: Waiting, chunk: Buffer): void { this[kHello]?.data(chunk) }
function onHelloEnd (this: Waiting): void { this[kHello]?.end() }
function onHelloError (this: Waiting): void { this[kHello]?.detach() }

/** Read this accepted connection's ClientHello, then hand it to `listener.open`. */
export function awaitHello (socket: Socket, listener: HelloListener): void {
  listener.waiting.add(socket)
  new HelloWait(socket, listener).start()
}

/** One connection waiting for its ClientHello. */
class HelloWait implements HeadTimed {
  readonly since = Date.now()
  readonly socket: Waiting
  private readonly listener: HelloListener
  private readonly reader: HelloReader
  private seen = 0

  constructor (socket: Socket, listener: HelloListener) {
    this.socket = socket
    this.listener = listener
    this.reader = new HelloReader(listener.maxHelloBytes)
  }

  start (): void {
    const s = this.socket
    s[kHello] = this
    s.on('error', onHelloError)
    s.on('data', onHelloData)
    s.on('end', onHelloEnd)
    this.listener.hellos.add(this)
  }

  detach (): void {
    const s = this.socket
    if (s[kHello] !== this) return
    s[kHello] = undefined
    s.removeListener('data', onHelloData)
    s.removeListener('end', onHelloEnd)
    this.listener.hellos.delete(this)
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
    const { log, name } = this.listener
    log.info({ [F.client]: clientOf(this.socket), [F.listener]: name, [F.status]: err.status, [F.code]: err.code, [F.reason]: err.detail }, 'request refused')
    refuseWithAlert(this.socket, err)
  }

  private route (hello: ClientHello): void {
    let target: Target
    try {
      target = this.listener.targetOf(hello)
    } catch (err) {
      this.refuse(err instanceof ProxyError ? err : new ProxyError('ERR_SNI_MALFORMED', { detail: String(err) }))
      return
    }
    const socket = this.socket
    socket.removeListener('error', onHelloError)
    // From here the tunnel registry counts it.
    this.listener.waiting.delete(socket)
    // Until the dial succeeds, what else the client sends waits in the stream.
    socket.pause()
    this.listener.open(socket, hello, target, this.reader.bytes)
  }
}
