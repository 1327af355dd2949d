/**
 * An in-test parent proxy: a CONNECT server on 127.0.0.1 (or ::1), port 0,
 * plain or TLS, whose answer is chosen per test. It parses the request head
 * itself (so it sees exactly what Sluice sent), records every request, and
 * records the bytes that arrived after the head before it answered and
 * after it answered, so tests can prove no client byte reached a parent
 * that did not say 200.
 *
 * It never asks the machine's resolver: a target name is mapped by
 * `resolve` (default: IP literals as they are, `*.test` → 127.0.0.1);
 * anything else gets `502 Bad Gateway`. Parents chain naturally: a parent
 * whose target is another parent's `host:port` dials and splices to it.
 */
import { once } from 'node:events'
import { STATUS_CODES } from 'node:http'
import { connect as netConnect, createServer as createNetServer, isIP, isIPv6, type Server, type Socket } from 'node:net'
import { createServer as createTlsServer, type TLSSocket } from 'node:tls'
import { listenOn } from './net.js'
import { closer } from './origin.js'
import { makeCert } from './tls.js'

/** How the parent answers a CONNECT. */
export type Behaviour =
  /** Dial the target and splice; with `auth`, a missing or different Proxy-Authorization gets 407. `extra` is written in the same write as the 200. */
  | { readonly kind: 'ok', readonly auth?: string, readonly extra?: string }
  /** Answer this status (and headers, body), keep the connection open until the other side closes it. */
  | { readonly kind: 'status', readonly status: number, readonly reason?: string, readonly headers?: Readonly<Record<string, string>>, readonly body?: string }
  /** Write the start of a 200 status line, then destroy the connection. */
  | { readonly kind: 'close-mid-head', readonly partial?: string }
  /** Write bytes that are not HTTP, and keep the connection open. */
  | { readonly kind: 'garbage', readonly bytes?: string }
  /** `ok` whose 200 carries `SERVER-FIRST` (or `extra`) in the same write. */
  | { readonly kind: 'extra-bytes', readonly extra?: string }
  /** Read the request and never answer. */
  | { readonly kind: 'slow' }

export type BehaviourKind = Behaviour['kind'] | 'tls'

export interface ParentOptions {
  /** Serve TLS with a certificate from makeCert (signed by the test CA). Implied by the `'tls'` shorthand. */
  readonly tls?: boolean
  /** Certificate names for a TLS parent (default localhost, 127.0.0.1, ::1). */
  readonly certNames?: string[]
  readonly certIps?: string[]
  /** Address to listen on (default 127.0.0.1). */
  readonly host?: string
  /** Target host (no brackets) → address to dial, or undefined for 502. */
  readonly resolve?: (host: string) => string | undefined
}

export interface ParentRequest {
  readonly method: string
  /** The request-target exactly as sent, e.g. `echo.test:443` or `[::1]:443`. */
  readonly target: string
  readonly version: string
  /** The whole head as received (request line and header lines, CRLF separated). */
  readonly head: string
  /** Lower-case names → values; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>
  /** Header lines in order, as sent. */
  readonly rawHeaders: ReadonlyArray<readonly [string, string]>
  /** SNI the client sent (TLS parents), else undefined. */
  readonly servername: string | undefined
  /** Bytes received after the head before the parent answered (should be empty for a proxy that waits for the 200). */
  readonly beforeReply: Buffer
  /** Bytes received after the answer, for answers that do not splice (status, garbage, slow). */
  readonly afterReply: Buffer
  /** Resolves when this connection has closed. */
  readonly closed: Promise<void>
}

export interface Parent {
  readonly port: number
  readonly host: string
  /** `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT` (IPv6 bracketed). */
  readonly url: string
  /** `host:port` as another proxy would CONNECT to it. */
  readonly authority: string
  /** The CA to trust for a TLS parent. */
  readonly ca: string | undefined
  readonly requests: ParentRequest[]
  /** Connections accepted (TCP level), ever. */
  accepted (): number
  /** TLS handshakes that failed (e.g. the client rejected our certificate). */
  tlsErrors (): number
  /** Answer later requests this way instead (e.g. a parent that recovers). */
  set (behaviour: Behaviour | Exclude<BehaviourKind, 'tls'>): void
  /** Resolves once `n` requests have been received. */
  waitForRequests (n: number, timeoutMs?: number): Promise<ParentRequest[]>
  close (): Promise<void>
}

const MAX_HEAD = 64 * 1024

/** Default: IP literals as they are, made-up `*.test` names → 127.0.0.1. */
function defaultResolve (host: string): string | undefined {
  if (isIP(host) !== 0) return host
  return host.endsWith('.test') ? '127.0.0.1' : undefined
}

/** `host:port` / `[v6]:port` → host (no brackets) and port. */
function splitAuthority (target: string): { host: string, port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(target)
  if (m === null) return undefined
  return { host: m[1] ?? m[2] ?? '', port: Number(m[3]) }
}

function sniOf (socket: Socket): string | undefined {
  const name = (socket as Partial<TLSSocket>).servername
  return typeof name === 'string' ? name : undefined
}

function normalise (b: Behaviour | BehaviourKind): Behaviour {
  if (typeof b !== 'string') return b
  switch (b) {
    case 'ok': case 'tls': return { kind: 'ok' }
    case 'status': return { kind: 'status', status: 503 }
    case 'close-mid-head': return { kind: 'close-mid-head' }
    case 'garbage': return { kind: 'garbage' }
    case 'extra-bytes': return { kind: 'extra-bytes' }
    case 'slow': return { kind: 'slow' }
  }
}

export async function startParent (behaviour: Behaviour | BehaviourKind = 'ok', opts: ParentOptions = {}): Promise<Parent> {
  let b = normalise(behaviour)
  const useTls = opts.tls === true || behaviour === 'tls'
  const resolve = opts.resolve ?? defaultResolve
  const requests: ParentRequest[] = []
  const sockets = new Set<Socket>()
  const waiters = new Set<() => void>()
  let accepted = 0
  let tlsErrors = 0

  function track (s: Socket): void {
    sockets.add(s)
    s.once('close', () => sockets.delete(s))
    s.on('error', () => {})
  }

  function handle (socket: Socket): void {
    track(socket)
    let buf = Buffer.alloc(0)
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      // A TLS ClientHello (0x16) to a plain parent: answer like a plain HTTP server would.
      if (buf[0] === 0x16) { socket.off('data', onData); socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n'); return }
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) {
        if (buf.length > MAX_HEAD) socket.destroy()
        return
      }
      socket.off('data', onData)
      onHead(socket, buf.subarray(0, end).toString('latin1'), buf.subarray(end + 4))
    }
    socket.on('data', onData)
  }

  const current = (): Behaviour => b

  function onHead (socket: Socket, head: string, early: Buffer): void {
    const lines = head.split('\r\n')
    const [method = '', target = '', version = ''] = (lines[0] ?? '').split(' ')
    const headers: Record<string, string> = {}
    const rawHeaders: Array<[string, string]> = []
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':')
      const name = i < 0 ? line : line.slice(0, i)
      const value = i < 0 ? '' : line.slice(i + 1).trim()
      rawHeaders.push([name, value])
      const k = name.toLowerCase()
      headers[k] = headers[k] === undefined ? value : `${headers[k]}, ${value}`
    }
    let beforeReply = early
    let afterReply = Buffer.alloc(0)
    let replied = false
    // Count what arrives from now on: before our answer, then after it.
    const record = (chunk: Buffer): void => {
      if (replied) afterReply = Buffer.concat([afterReply, chunk])
      else beforeReply = Buffer.concat([beforeReply, chunk])
    }
    const closed = once(socket, 'close').then(() => {})
    const req: ParentRequest = {
      method,
      target,
      version,
      head,
      headers,
      rawHeaders,
      servername: sniOf(socket),
      get beforeReply () { return beforeReply },
      get afterReply () { return afterReply },
      closed
    }
    requests.push(req)
    for (const w of [...waiters]) w()

    const answer = (bytes: string | Buffer, then?: () => void): void => {
      replied = true
      socket.write(bytes, then)
    }
    const listen = (): void => {
      socket.on('data', record)
      // allowHalfOpen: a parent that is not splicing closes when the other side does.
      socket.once('end', () => { if (socket.listenerCount('data') > 0 && socket.listeners('data').includes(record)) socket.end() })
    }

    const b = current()
    switch (b.kind) {
      case 'status': {
        const body = b.body ?? ''
        let out = `HTTP/1.1 ${b.status} ${b.reason ?? STATUS_CODES[b.status] ?? 'Status'}\r\n`
        for (const [k, v] of Object.entries(b.headers ?? {})) out += `${k}: ${v}\r\n`
        out += `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
        listen()
        answer(out)
        return
      }
      case 'close-mid-head':
        listen()
        answer(b.partial ?? 'HTTP/1.1 200 Con', () => socket.destroy())
        return
      case 'garbage':
        listen()
        answer(b.bytes ?? 'SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n')
        return
      case 'slow':
        listen()
        return
      case 'ok': case 'extra-bytes': {
        const auth = b.kind === 'ok' ? b.auth : undefined
        if (auth !== undefined && headers['proxy-authorization'] !== auth) {
          const body = 'proxy authentication required\n'
          listen()
          answer(`HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="parent"\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
          return
        }
        const hp = method === 'CONNECT' ? splitAuthority(target) : undefined
        const address = hp === undefined ? undefined : resolve(hp.host)
        if (hp === undefined || address === undefined) {
          listen()
          answer('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n')
          return
        }
        // Client bytes that arrive before our 200 are recorded (and forwarded once connected).
        listen()
        const upstream = netConnect({ host: address, port: hp.port, allowHalfOpen: true })
        track(upstream)
        upstream.once('error', () => {
          if (!replied) answer('HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n')
          socket.destroy()
        })
        upstream.once('connect', () => {
          const extra = b.kind === 'extra-bytes' ? (b.extra ?? 'SERVER-FIRST') : (b.extra ?? '')
          // Status line and any extra bytes in one write: they arrive together.
          answer(`HTTP/1.1 200 Connection established\r\n\r\n${extra}`)
          socket.off('data', record)
          if (beforeReply.length > 0) upstream.write(beforeReply)
          socket.pipe(upstream)
          upstream.pipe(socket)
          socket.resume()
          upstream.once('close', () => socket.destroy())
          socket.once('close', () => upstream.destroy())
        })
      }
    }
  }

  const host = opts.host ?? '127.0.0.1'
  let server: Server
  let ca: string | undefined
  if (useTls) {
    const cert = await makeCert({ ...(opts.certNames === undefined ? {} : { names: opts.certNames }), ...(opts.certIps === undefined ? {} : { ips: opts.certIps }) })
    ca = cert.ca
    const tlsServer = createTlsServer({ key: cert.key, cert: cert.cert, allowHalfOpen: true })
    tlsServer.on('connection', (s: Socket) => { accepted++; track(s) })
    tlsServer.on('secureConnection', (s: TLSSocket) => handle(s))
    tlsServer.on('tlsClientError', () => { tlsErrors++ })
    server = tlsServer
  } else {
    server = createNetServer({ allowHalfOpen: true }, (s) => { accepted++; handle(s) })
  }
  const port = await listenOn(server, host)
  const authority = isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`

  return {
    port,
    host,
    url: `${useTls ? 'https' : 'http'}://${authority}`,
    authority,
    ca,
    requests,
    accepted: () => accepted,
    tlsErrors: () => tlsErrors,
    set (next) { b = normalise(next) },
    async waitForRequests (n, timeoutMs = 5000) {
      return await new Promise((resolve, reject) => {
        const check = (): void => {
          if (requests.length >= n) { clearTimeout(timer); waiters.delete(check); resolve(requests.slice(0, n)) }
        }
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`parent: timed out waiting for ${n} request(s); have ${requests.length}`))
        }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
    close: closer(server, sockets)
  }
}
