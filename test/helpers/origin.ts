/**
 * Servers that act as the far end of a tunnel: an HTTPS origin, a plain-HTTP
 * origin, a TCP echo server that honours half-close, and a server-first
 * (greeting) server.
 * All listen on loopback, port 0; close() destroys every open socket.
 */
import { once } from 'node:events'
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, isIPv6, type Server, type Socket } from 'node:net'
import { listenOn } from './net.js'
import { makeCert } from './tls.js'

/** A running server. */
export interface Origin {
  readonly port: number
  /** The address it is bound to, e.g. `'127.0.0.1'` or `'::1'`. */
  readonly host: string
  /**
   * Where to reach it. `new URL(url).host` is the CONNECT authority
   * (`host:port`, IPv6 bracketed).
   */
  readonly url: string
  /** Stop listening, destroy open sockets, and resolve once closed. */
  close (): Promise<void>
}

/** Options shared by the servers here. */
export interface OriginOptions {
  /** Address to bind (default `'127.0.0.1'`). */
  host?: string
}

/** `host` as it appears in an authority: IPv6 literals bracketed. */
function authorityHost (host: string): string {
  return isIPv6(host) ? `[${host}]` : host
}

/** Track the server's raw sockets so close() can destroy them. */
function track (server: Server): Set<Socket> {
  const sockets = new Set<Socket>()
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  return sockets
}

/** close() for `server`: stop listening, destroy `sockets`, resolve once the server and every socket have closed (memoised). */
export function closer (server: Server, sockets: Set<Socket>): () => Promise<void> {
  let closed: Promise<void> | undefined
  return () => {
    closed ??= (async () => {
      const done: Array<Promise<unknown>> = [once(server, 'close')]
      server.close()
      // The server's 'close' can come before its sockets' own 'close' events
      // (waited on without once(), which would reject on a late 'error').
      for (const s of sockets) {
        done.push(new Promise(resolve => s.once('close', resolve)))
        s.destroy()
      }
      await Promise.all(done)
    })()
    return closed
  }
}

/** Echo everything back; when the client half-closes, finish echoing then end. */
function echo (socket: Socket): void {
  socket.on('error', () => {}) // resets from clients are expected in tests
  socket.pipe(socket)
}

/** Answer 200 with the text/plain body `hello from origin ${method} ${url}`. */
function hello (req: IncomingMessage, res: ServerResponse): void {
  const body = `hello from origin ${req.method ?? ''} ${req.url ?? ''}`
  req.resume()
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) })
  res.end(body)
}

/**
 * HTTPS server (node:https) on `host` (default `'127.0.0.1'`), port 0,
 * answering every request with 200 and the text/plain body
 * `hello from origin ${method} ${url}`. Its certificate (from
 * {@link makeCert}) has SANs localhost, 127.0.0.1 and ::1; `ca` is the PEM
 * to trust. `url` is `https://localhost:${port}/` when bound to 127.0.0.1
 * (so the name matches the cert), else `https://${host}:${port}/`.
 * `connections()` counts currently open connections.
 */
export async function startHttpsOrigin (opts?: OriginOptions): Promise<Origin & { ca: string, connections: () => number }> {
  const host = opts?.host ?? '127.0.0.1'
  const { key, cert, ca } = await makeCert()
  const server = createHttpsServer({ key, cert }, hello)
  server.on('tlsClientError', () => {}) // e.g. a client rejecting our cert
  const sockets = track(server)
  const port = await listenOn(server, host)
  const urlHost = host === '127.0.0.1' ? 'localhost' : authorityHost(host)
  return { port, host, url: `https://${urlHost}:${port}/`, ca, connections: () => sockets.size, close: closer(server, sockets) }
}

/**
 * Plain-HTTP server (node:http) on `host` (default `'127.0.0.1'`), port 0,
 * answering like {@link startHttpsOrigin}; `requests()` counts the requests
 * it answered. `url` is `http://host:port/`.
 */
export async function startHttpOrigin (opts?: OriginOptions): Promise<Origin & { requests: () => number }> {
  const host = opts?.host ?? '127.0.0.1'
  let requests = 0
  const server = createHttpServer((req, res) => {
    requests++
    hello(req, res)
  })
  const sockets = track(server)
  const port = await listenOn(server, host)
  return { port, host, url: `http://${authorityHost(host)}:${port}/`, requests: () => requests, close: closer(server, sockets) }
}

/**
 * Plain TCP echo server (allowHalfOpen: true): echoes bytes back; when the
 * client half-closes (FIN), it finishes echoing then ends its side.
 * `url` is `tcp://host:port`. `connections()` counts currently open
 * connections; `accepted()` counts every connection ever accepted.
 */
export async function startEchoServer (opts?: OriginOptions): Promise<Origin & { connections: () => number, accepted: () => number }> {
  const host = opts?.host ?? '127.0.0.1'
  let accepted = 0
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    accepted++
    echo(socket)
  })
  const sockets = track(server)
  const port = await listenOn(server, host)
  return {
    port,
    host,
    url: `tcp://${authorityHost(host)}:${port}`,
    connections: () => sockets.size,
    accepted: () => accepted,
    close: closer(server, sockets)
  }
}

/**
 * TCP server that sends `greeting` as soon as a client connects, then echoes
 * (a server-first protocol, like SMTP). Half-close behaves as in
 * {@link startEchoServer}. `url` is `tcp://host:port`.
 */
export async function startGreetingServer (greeting: string, opts?: OriginOptions): Promise<Origin> {
  const host = opts?.host ?? '127.0.0.1'
  const server = createNetServer({ allowHalfOpen: true }, (socket) => {
    socket.write(greeting)
    echo(socket)
  })
  const sockets = track(server)
  const port = await listenOn(server, host)
  return { port, host, url: `tcp://${authorityHost(host)}:${port}`, close: closer(server, sockets) }
}
