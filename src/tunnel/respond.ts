/**
 * Error responses to the downstream client. Every one carries a Proxy-Status
 * header (RFC 9209), a short text/plain body and `Connection: close`.
 */
import type { Duplex } from 'node:stream'
import { STATUS_CODES } from 'node:http'
import type { ProxyError } from '../errors.js'

/** Name of this intermediary in Proxy-Status (RFC 9209 §2: a token). */
export const PROXY_STATUS_NAME = 'sluice'

/** How long a refused client may keep sending before we drop it (Apache's lingering close). */
export const LINGER_MS = 2000

/** RFC 8941 sf-string: printable ASCII with `"` and `\` escaped. */
function sfString (value: string): string {
  return '"' + value.replace(/[^\x20-\x7e]/g, '?').replace(/["\\]/g, '\\$&') + '"'
}

/** The Proxy-Status field value for an error: `sluice; error=…; details="CODE: …"`. */
export function proxyStatus (err: ProxyError): string {
  let value = `${PROXY_STATUS_NAME}; error=${err.type}`
  for (const [k, v] of Object.entries(err.params)) value += `; ${k}=${typeof v === 'number' ? String(v) : sfString(v)}`
  return value + `; details=${sfString(`${err.code}: ${err.message}`)}`
}

/** Status, headers and body of an error response; `extra` adds headers such as Allow. */
export function errorParts (err: ProxyError, extra: Readonly<Record<string, string>> = {}): {
  status: number, reason: string, headers: Record<string, string>, body: string
} {
  const reason = STATUS_CODES[err.status] ?? 'Error'
  const body = `${err.status} ${reason}\n${err.message}\n` + hintFor(err)
  return {
    status: err.status,
    reason,
    headers: {
      'Proxy-Status': proxyStatus(err),
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': String(Buffer.byteLength(body)),
      Connection: 'close',
      ...err.headers,
      ...extra
    },
    body
  }
}

/** Serialise a complete error response for a socket we own. */
export function errorResponse (err: ProxyError, extra: Readonly<Record<string, string>> = {}): string {
  const { status, reason, headers, body } = errorParts(err, extra)
  let head = `HTTP/1.1 ${status} ${reason}\r\n`
  for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  return head + '\r\n' + body
}

function hintFor (err: ProxyError): string {
  if (err.code === 'ERR_METHOD_NOT_ALLOWED') {
    return 'Sluice only tunnels with CONNECT (HTTPS through a proxy).\n' +
      'Use it as an HTTPS proxy, e.g. `curl -x http://HOST:PORT https://example.com/`\n' +
      'or `export HTTPS_PROXY=http://HOST:PORT`; plain http:// URLs are not proxied.\n'
  }
  return ''
}

/**
 * Write `response`, send FIN, then keep reading (and discarding) until the
 * client closes or LINGER_MS passes. Closing at once with unread bytes in the
 * kernel buffer would send an RST that can wipe our response off the client.
 */
export function respondAndClose (socket: Duplex, response: string): void {
  if (socket.destroyed) return
  if (!socket.writable) { socket.destroy(); return }
  socket.end(response)
  socket.resume()
  const timer = setTimeout(() => socket.destroy(), LINGER_MS)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
  // Half-open server sockets stay open after our FIN until the client's FIN;
  // 'end' means the client is done too.
  socket.once('end', () => socket.destroy())
}

/**
 * Write `response` and close once it is flushed, or after LINGER_MS at the
 * latest, without reading on: for shutdown's 503 (server/connect-listener.ts
 * refuseWaiting), where the client's reply is of no interest any more.
 */
export function flushAndClose (socket: Duplex, response: string): void {
  socket.end(response)
  socket.once('finish', () => socket.destroy())
  const timer = setTimeout(() => socket.destroy(), LINGER_MS)
  timer.unref()
  socket.once('close', () => clearTimeout(timer))
}
