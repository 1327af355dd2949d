/**
 * Reach a target through one or more parent proxies, hop by hop:
 * TCP (and TLS for https:// parents) to the first parent, then
 * `CONNECT next` through each, and `CONNECT target` through the last.
 *
 * Data flow: Sluice → parent 1 → … → parent N → target.
 *
 * Nothing from the client is sent before the last 200 (the HackerOne case
 * behind https-proxy-agent: a refusing parent must never see client bytes);
 * a non-200 destroys the socket; bytes after a 200 are kept (docs/node-internals.md D2).
 * The tunnel socket is never pooled or reused (docs/node-internals.md D7).
 */
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { isIP, type Socket } from 'node:net'
import { STATUS_CODES } from 'node:http'
import { ProxyError, isProxyError, type ErrorCode } from '../errors.js'
import type { Target } from '../connect/target.js'
import type { Resolver } from '../net/resolver.js'
import { race } from './happy-eyeballs.js'
import { readConnectReply, ReplyError } from './connect-response.js'
import type { Parent } from './parent.js'
import type { Cancellation } from './cancel.js'

export interface ChainOptions {
  readonly resolver: Resolver
  /** Deadline for the whole chain, every hop included. */
  readonly timeoutMs: number
  readonly attemptDelayMs: number
  readonly keepAliveMs: number
  readonly signal: Cancellation
}

function hopError (code: ErrorCode, parent: Parent, detail: string, cause?: unknown, status?: number): ProxyError {
  return new ProxyError(code, {
    detail: `parent ${parent.name} (${parent.authority}): ${detail}`,
    // RFC 9209 §2.1.4: received-status is an sf-integer.
    params: { 'next-hop': parent.name, ...(status === undefined ? {} : { 'received-status': status }) },
    ...(cause === undefined ? {} : { cause })
  })
}

/** A parent's non-200 answer → our error. 407/403 are answers; others are failures. */
function statusError (parent: Parent, status: number, reason: string): ProxyError {
  const text = `answered ${status} ${reason || (STATUS_CODES[status] ?? '')}`.trim()
  if (status === 407) return hopError('ERR_PARENT_AUTH', parent, `${text} (proxy_auth_required: check the parent's credentials)`, undefined, status)
  if (status === 403) return hopError('ERR_PARENT_DENIED', parent, text, undefined, status)
  return hopError('ERR_PARENT_STATUS', parent, text, undefined, status)
}

function replyError (parent: Parent, err: unknown): ProxyError {
  if (err instanceof ReplyError && err.kind === 'timeout') return hopError('ERR_PARENT_TIMEOUT', parent, err.message, err)
  if (err instanceof ReplyError) return hopError('ERR_PARENT_PROTOCOL', parent, err.message, err)
  return hopError('ERR_PARENT_FAILED', parent, `connection failed while waiting for its reply (${String((err as { code?: unknown }).code ?? err)})`, err)
}

async function startTls (socket: Socket, parent: Parent, timeoutMs: number): Promise<TLSSocket> {
  const o = parent.tlsOptions ?? {}
  // D6: name the parent explicitly; for an IP-addressed parent only an explicit servername is sent.
  const servername = o.servername ?? (isIP(parent.host) === 0 ? parent.host : undefined)
  const tls = tlsConnect({
    socket,
    ...(servername === undefined ? {} : { servername }),
    ...(o.ca === undefined ? {} : { ca: o.ca }),
    ...(o.cert === undefined ? {} : { cert: o.cert }),
    ...(o.key === undefined ? {} : { key: o.key }),
    ALPNProtocols: ['http/1.1'],
    rejectUnauthorized: true
  })
  return await new Promise<TLSSocket>((resolve, reject) => {
    const timer = setTimeout(() => { tls.destroy(); reject(hopError('ERR_PARENT_TIMEOUT', parent, `TLS handshake took over ${timeoutMs} ms`)) }, timeoutMs)
    tls.once('secureConnect', () => { clearTimeout(timer); tls.off('error', onError); resolve(tls) })
    const onError = (err: Error & { code?: string }): void => {
      clearTimeout(timer)
      tls.destroy()
      const cert = typeof err.code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO|HOSTNAME|ALTNAME/.test(err.code)
      reject(hopError(cert ? 'ERR_PARENT_TLS_CERT' : 'ERR_PARENT_TLS', parent, `TLS: ${err.code ?? err.message}`, err))
    }
    tls.once('error', onError)
  })
}

function connectRequest (authority: string, authorization: string | undefined): string {
  // Host names the target, as ProxyAgent does (D3); IPv6 is already bracketed.
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n` +
    (authorization === undefined ? '' : `Proxy-Authorization: ${authorization}\r\n`) + '\r\n'
}

/** Dial `target` through `hops`; resolves with the socket to use as the tunnel's upstream. */
export async function dialChain (hops: readonly Parent[], target: Target, opts: ChainOptions): Promise<Socket> {
  const first = hops[0]
  if (first === undefined) throw new Error('empty chain')
  const deadline = Date.now() + opts.timeoutMs
  const left = (): number => Math.max(1, deadline - Date.now())
  let socket: Socket | undefined
  const onAbort = (): void => { socket?.destroy() }
  opts.signal.addEventListener('abort', onAbort, { once: true })
  try {
    let addresses: readonly string[]
    try {
      addresses = await opts.resolver.resolve(first.host)
    } catch (err) {
      throw hopError('ERR_PARENT_FAILED', first, `cannot resolve it${isProxyError(err) ? `: ${err.code}` : ''}`, err)
    }
    try {
      socket = (await race(addresses, { port: first.port, attemptDelayMs: opts.attemptDelayMs, timeoutMs: left(), keepAliveMs: opts.keepAliveMs, signal: opts.signal })).socket
    } catch (err) {
      const code = isProxyError(err) ? err.code : 'ERR_UPSTREAM_FAILED'
      throw hopError(code === 'ERR_UPSTREAM_REFUSED' ? 'ERR_PARENT_REFUSED' : code === 'ERR_UPSTREAM_TIMEOUT' ? 'ERR_PARENT_TIMEOUT' : 'ERR_PARENT_FAILED', first, isProxyError(err) ? err.message : String(err), err)
    }
    if (first.tls) socket = await startTls(socket, first, left())

    for (let i = 0; i < hops.length; i++) {
      const hop = hops[i] as Parent
      const next = hops[i + 1]
      if (opts.signal.aborted) throw new ProxyError('ERR_UPSTREAM_FAILED', { detail: 'client went away' })
      socket.write(connectRequest(next?.authority ?? target.authority, hop.authorization))
      let reply
      try {
        reply = await readConnectReply(socket, left())
      } catch (err) {
        throw replyError(hop, err)
      }
      if (reply.status !== 200) throw statusError(hop, reply.status, reply.reason)
      // Bytes after the 200 are the start of the tunnel (or of the next TLS handshake).
      if (reply.rest.length > 0) socket.unshift(reply.rest)
      if (next?.tls === true) socket = await startTls(socket, next, left())
    }
    const result = socket
    socket = undefined
    return result
  } finally {
    opts.signal.removeEventListener('abort', onAbort)
    // Any failure: the half-built chain is destroyed, never reused.
    socket?.destroy()
  }
}
