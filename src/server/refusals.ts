/**
 * What the explicit-proxy listener (server/connect-listener.ts) needs to
 * refuse a request: who the client is, a request line and target as a log
 * may show them, and the 405 for a method other than CONNECT.
 */
import type { Socket } from 'node:net'
import { ProxyError } from '../errors.js'
import type { ConnectContext } from '../connect/context.js'
import { parseHead, type RequestHead } from '../connect/head-parser.js'
import { Tunnel, type TunnelHost } from '../tunnel/tunnel.js'
import { errorResponse, respondAndClose } from '../tunnel/respond.js'
import { clientOf } from '../net/client-address.js'
import { F } from '../observability/fields.js'

/** The client's address and port, as the logs name it (the PROXY protocol's client, if a header named one). */
export { clientOf }

const UNPRINTABLE = /[^\x21-\x7e]/g
const USERINFO = /^([^/@]*\/\/)?[^/@]*@/
const REQUEST_LINE = /^([^\s]{1,32}) ([^\s]+)/

/**
 * A request target as a log may show it: printable, at most 256 characters,
 * and never with credentials (`http://user:pw@host/` → `http://[redacted]@host/`).
 */
function loggable (target: string): string {
  return target.slice(0, 256).replace(UNPRINTABLE, '?').replace(USERINFO, '$1[redacted]@')
}

/** Method and target of a head the parser refused, for the log only. */
export function requestLine (raw: Buffer): { method: string, target: string } | undefined {
  const m = REQUEST_LINE.exec(raw.subarray(0, 512).toString('latin1'))
  if (m === null) return undefined
  return { method: loggable(m[1] ?? ''), target: loggable(m[2] ?? '') }
}

/** What refuseMethod needs of the listener: every connection's shared state (connect-listener.ts). */
export interface RefusingListener {
  readonly ctx: ConnectContext
  readonly opts: { readonly maxHeaderSize: number }
  readonly host: TunnelHost
}

/**
 * 405 for anything but CONNECT (README "Pointing clients at Sluice"), its
 * body never read. A CONNECT already received behind it is never acted on
 * (docs/node-internals.md A6): it gets a tunnel line of its own, closed by us.
 */
export function refuseMethod (listener: RefusingListener, socket: Socket, head: RequestHead, early: Buffer): void {
  const { ctx, opts, host } = listener
  if (!socket.writable) { socket.destroy(); return }
  const err = new ProxyError('ERR_METHOD_NOT_ALLOWED', { detail: head.method })
  ctx.log.info({ [F.client]: clientOf(socket), [F.method]: loggable(head.method), [F.target]: loggable(head.target), [F.status]: err.status, [F.code]: err.code }, 'request refused')
  let response = errorResponse(err, { Allow: 'CONNECT' })
  // RFC 9110 §9.3.2: the answer to HEAD has no content (Content-Length still says what GET would get).
  if (head.method === 'HEAD') response = response.slice(0, response.indexOf('\r\n\r\n') + 4)
  if (early.length > 0) {
    const next = parseHead(early, opts.maxHeaderSize)
    if (next.kind === 'head' && next.head.method === 'CONNECT') new Tunnel(socket, host).mark('proxy', 'rejected')
  }
  respondAndClose(socket, response)
}
