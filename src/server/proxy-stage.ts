/**
 * The PROXY protocol stage (issue 15; docs/proxy-protocol.md): one step in
 * front of any listener (connect plain or TLS, tcp, sni) that has
 * `proxy_protocol: { from: [CIDRs] }`. It takes over the listener's
 * 'connection' event, reads what the connection starts with, and then hands
 * the socket to the listener's usual handler as if it had just been
 * accepted, with the bytes after the header put back in the stream. A
 * listener without `proxy_protocol` never meets it: no cost there.
 *
 * - From a listed source (a balancer), the connection must start with a v1
 *   or v2 header (the specification's "MUST NOT try to guess"). A PROXY
 *   header's client becomes the connection's client (net/client-address.ts)
 *   for rules, limits, lock-outs and logs; LOCAL (a health check), v1
 *   UNKNOWN and v2 UNSPEC keep the connection's own address. No header:
 *   ERR_PROXY_PROTOCOL_MISSING; a bad or cut-off one: _MALFORMED.
 * - From any other source, a header is never read: only the first bytes are
 *   compared with "PROXY " and the v2 signature, so that a header from there
 *   is refused (ERR_PROXY_PROTOCOL_NOT_ALLOWED) rather than taken for the
 *   client's data, and anything else goes on at its first differing byte.
 *   Such a client must speak first; one that says nothing by the deadline is
 *   handed on as it is, and its listener's own deadline starts then.
 *
 * The header must arrive within `timeouts.header` (ERR_PROXY_PROTOCOL_TIMEOUT)
 * on the shared sweep (head-timeouts.ts), with the connection counted as
 * waiting, as every other listener's first bytes are: no timer per socket,
 * and the socket's listeners are shared functions, no closure per
 * connection. A refusal is logged as `request refused` with its code and
 * answered in HTTP on a plain connect listener; elsewhere the connection
 * is just closed.
 */
import type { Server, Socket } from 'node:net'
import type { Logger } from 'pino'
import { ProxyError, type ErrorCode } from '../errors.js'
import type { ListenerProxyProtocol } from '../config/listeners.js'
import { clientOf, peerOf, setProxiedClient } from '../net/client-address.js'
import { clientAddress, toIpKey } from '../net/ip.js'
import { ProxyHeaderReader, V1_PREFIX, V2_SIGNATURE } from '../net/proxy-protocol.js'
import { F } from '../observability/fields.js'
import { errorResponse, respondAndClose } from '../tunnel/respond.js'
import type { HeadTimed, HeadTimeouts } from './head-timeouts.js'
import type { WaitingConnections } from './waiting.js'

export interface ProxyStageOptions {
  /** The listener's name, for the log. */
  readonly name: string
  readonly log: Logger
  readonly proxyProtocol: ListenerProxyProtocol
  /** `timeouts.header`'s shared sweep. */
  readonly heads: HeadTimeouts
  readonly waiting: WaitingConnections
  /** Called after each accept (the accept guard counts descriptors). */
  readonly accepted: () => void
  /** A plain connect listener: refusals are answered in HTTP. */
  readonly http: boolean
}

type Handler = (socket: Socket) => void

interface Stage {
  readonly opts: ProxyStageOptions
  /** The listener's own 'connection' listeners, run once the stage is done. */
  readonly usual: readonly Handler[]
  readonly server: Server
}

const kStage = Symbol('sluice.proxy-stage')
type Waiting = Socket & { [kStage]?: HeaderWait | undefined }

function onStageData (this: Waiting, chunk: Buffer): void { this[kStage]?.data(chunk) }
function onStageEnd (this: Waiting): void { this[kStage]?.end() }
function onStageError (this: Waiting): void { this[kStage]?.detach() }

/** Does `bytes` hold all of "PROXY " or all of the v2 signature? */
function wholePrefix (bytes: Buffer): boolean {
  return (bytes.length >= V1_PREFIX.length && bytes.subarray(0, V1_PREFIX.length).equals(V1_PREFIX)) ||
    (bytes.length >= V2_SIGNATURE.length && bytes.subarray(0, V2_SIGNATURE.length).equals(V2_SIGNATURE))
}

/** One connection whose first bytes are awaited. */
class HeaderWait implements HeadTimed {
  readonly since = Date.now()
  readonly socket: Waiting
  private readonly stage: Stage
  /** The connection's own address is in `from`: a header is required, and believed. */
  private readonly trusted: boolean
  private readonly reader = new ProxyHeaderReader()
  private seen = 0

  constructor (socket: Socket, stage: Stage) {
    this.socket = socket
    this.stage = stage
    const key = toIpKey(clientAddress(socket.remoteAddress ?? ''))
    this.trusted = key !== undefined && stage.opts.proxyProtocol.sources.match(key)
  }

  start (): void {
    const s = this.socket
    s[kStage] = this
    s.on('error', onStageError)
    s.on('data', onStageData)
    s.on('end', onStageEnd)
    this.stage.opts.heads.add(this)
  }

  detach (): void {
    const s = this.socket
    if (s[kStage] !== this) return
    s[kStage] = undefined
    s.removeListener('data', onStageData)
    s.removeListener('end', onStageEnd)
    this.stage.opts.heads.delete(this)
  }

  data (chunk: Buffer): void {
    this.seen += chunk.length
    const r = this.reader.push(chunk)
    if (!this.trusted) {
      if (r.kind === 'absent') this.handOver(this.reader.bytes)
      else if (wholePrefix(this.reader.bytes)) this.refuse('ERR_PROXY_PROTOCOL_NOT_ALLOWED', `from ${peerOf(this.socket)}`)
      return
    }
    switch (r.kind) {
      case 'incomplete': return
      case 'absent': this.refuse('ERR_PROXY_PROTOCOL_MISSING', 'the connection does not start with "PROXY " or the v2 signature'); return
      case 'error': this.refuse('ERR_PROXY_PROTOCOL_MALFORMED', r.reason); return
      default: {
        const h = r.header
        if (h.source !== undefined) setProxiedClient(this.socket, h.source)
        const { log, name } = this.stage.opts
        if (log.isLevelEnabled('debug')) {
          log.debug({ [F.client]: clientOf(this.socket), [F.listener]: name, peer: peerOf(this.socket), version: h.version, command: h.command }, 'proxy protocol header')
        }
        this.handOver(this.reader.bytes.subarray(h.length))
      }
    }
  }

  /** The client's FIN before a decision: a header cut off is malformed; anything else is closed without a word. */
  end (): void {
    if (this.trusted && this.seen > 0) { this.refuse('ERR_PROXY_PROTOCOL_MALFORMED', `the connection ended after ${this.seen} bytes, before the header was complete`); return }
    this.detach()
    this.stage.opts.waiting.delete(this.socket)
    this.socket.destroy()
  }

  timedOut (ms: number): void {
    // An untrusted client that has said nothing yet is not ours to judge: its listener's own deadline applies.
    if (!this.trusted && this.seen === 0) { this.handOver(this.reader.bytes); return }
    this.refuse('ERR_PROXY_PROTOCOL_TIMEOUT', `limit is ${ms} ms`)
  }

  private refuse (code: ErrorCode, reason: string): void {
    this.detach()
    const { log, name, waiting, http } = this.stage.opts
    const socket = this.socket
    waiting.delete(socket)
    const err = new ProxyError(code, { detail: reason })
    log.info({ [F.client]: clientOf(socket), [F.listener]: name, [F.status]: err.status, [F.code]: err.code, [F.reason]: reason }, 'request refused')
    // The 'error' listener stays while a response lingers (docs/node-internals.md A3).
    if (http && socket.writable) respondAndClose(socket, errorResponse(err))
    else socket.destroy()
  }

  /**
   * To the listener's usual handler, as if just accepted: the bytes after
   * the header are put back in front of the stream (docs/node-internals.md
   * C1's unshift on a paused socket).
   */
  private handOver (rest: Buffer): void {
    this.detach()
    const { server, usual, opts } = this.stage
    const socket = this.socket
    // The handler counts it as waiting again if it waits for more (an sni or connect listener), a tcp forward as a tunnel.
    opts.waiting.delete(socket)
    socket.pause()
    if (rest.length > 0) socket.unshift(rest)
    for (const h of usual) h.call(server, socket)
    // The handler's own 'error' listener is on now (each adds it synchronously).
    socket.removeListener('error', onStageError)
    // On a fresh socket a 'data' listener starts the flow; the pause above was
    // ours, so undo it for a handler that listens (a tcp forward pauses itself
    // and reads later, and is left paused).
    if (!socket.destroyed && socket.isPaused() && socket.listenerCount('data') > 0) socket.resume()
  }
}

/**
 * Put the stage in front of `server`'s 'connection' listeners, which must
 * all be registered already (the create…Listener functions do so).
 */
export function installProxyStage (server: Server, opts: ProxyStageOptions): void {
  const usual = server.listeners('connection') as Handler[]
  server.removeAllListeners('connection')
  const stage: Stage = { opts, usual, server }
  server.on('connection', (socket: Socket) => {
    // The 'error' listener goes on at accept (docs/node-internals.md A3), in start().
    opts.waiting.add(socket)
    new HeaderWait(socket, stage).start()
    opts.accepted()
  })
}
