/**
 * A raw TCP client for CONNECT: write exact bytes, read the response head
 * and whatever follows it. For the cases no well-behaved client produces.
 * Every read here is bounded (bytes and time) and leaves the socket paused.
 */
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'

export interface RawResponse {
  readonly status: number
  readonly statusLine: string
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string>>
  /** Bytes received after the head (body or tunnel data) so far. */
  readonly rest: Buffer
  readonly socket: Socket
}

/** A response to a CONNECT sent with {@link connectVia}. */
export interface Connected extends RawResponse {
  /** `127.0.0.1:PORT` of our end, as the log's `client` field names it. */
  readonly client: string
}

/** The CONNECT head for `authority` (`headers`: extra CRLF-terminated header lines). */
export function connectHead (authority: string, headers = ''): string {
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${headers}\r\n`
}

/** `ADDRESS:PORT` of our end of `socket`, as Sluice logs the client. */
export function clientOf (socket: Socket): string {
  return `${socket.localAddress ?? '127.0.0.1'}:${socket.localPort ?? 0}`
}

export async function rawConnect (port: number, host = '127.0.0.1'): Promise<Socket> {
  const socket = connect({ port, host, allowHalfOpen: true })
  await once(socket, 'connect')
  return socket
}

interface ReadSpec<T> {
  /** Bytes already received (e.g. a head's `rest`). */
  readonly have?: Buffer
  readonly timeoutMs: number
  /**
   * The result once `buf` holds enough, else undefined; may throw to fail
   * the read. `surplus` is pushed back into the socket once it is paused.
   */
  readonly take: (buf: Buffer) => { value: T, surplus?: Buffer } | undefined
  /** At EOF before `take` had a result: the result, or throw. */
  readonly atEnd: (buf: Buffer) => T
  readonly onTimeout: (buf: Buffer) => Error
}

/**
 * The one reader behind every read here: collect data until `take` has a
 * result, EOF, an error or the timeout; then stop listening and pause.
 */
async function readUntil<T> (socket: Socket, spec: ReadSpec<T>): Promise<T> {
  let buf = spec.have ?? Buffer.alloc(0)
  return await new Promise<T>((resolve, reject) => {
    const settle = (get: () => T): void => {
      cleanup()
      socket.pause()
      try { resolve(get()) } catch (err) { reject(err instanceof Error ? err : new Error(String(err))) }
    }
    const check = (): boolean => {
      let got: { value: T, surplus?: Buffer } | undefined
      try { got = spec.take(buf) } catch (err) { settle(() => { throw err }); return true }
      if (got === undefined) return false
      const { value, surplus } = got
      settle(() => {
        if (surplus !== undefined && surplus.length > 0) socket.unshift(surplus)
        return value
      })
      return true
    }
    const timer = setTimeout(() => { cleanup(); reject(spec.onTimeout(buf)) }, spec.timeoutMs)
    const onData = (chunk: Buffer): void => { buf = Buffer.concat([buf, chunk]); check() }
    const onEnd = (): void => settle(() => spec.atEnd(buf))
    const onError = (err: Error): void => { cleanup(); reject(err) }
    function cleanup (): void {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('error', onError)
    }
    if (check()) return
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('error', onError)
    socket.resume()
  })
}

/** Read until the end of a response head (bounded at 64 KiB), keeping the rest. */
export async function readHead (socket: Socket, timeoutMs = 5000): Promise<RawResponse> {
  return await readUntil(socket, {
    timeoutMs,
    onTimeout: buf => new Error(`no response head within ${timeoutMs} ms; got ${JSON.stringify(buf.toString('latin1'))}`),
    atEnd: (buf) => { throw new Error(`connection ended before a response head; got ${JSON.stringify(buf.toString('latin1'))}`) },
    take: (buf) => {
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) {
        if (buf.length > 65536) throw new Error('response head too large')
        return undefined
      }
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n')
      const statusLine = lines.shift() ?? ''
      const headers: Record<string, string> = {}
      for (const l of lines) {
        const i = l.indexOf(':')
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
      }
      return { value: { status: Number(statusLine.split(' ')[1]), statusLine, headers, rest: buf.subarray(end + 4), socket } }
    }
  })
}

/** Send `request` on a fresh connection and read the response head. */
export async function request (port: number, bytes: string | Buffer, host = '127.0.0.1'): Promise<RawResponse> {
  const socket = await rawConnect(port, host)
  socket.on('error', () => {})
  socket.write(bytes)
  return await readHead(socket)
}

/**
 * CONNECT `target` through the proxy on `port`, on a fresh connection
 * (or `socket`); `early` goes in the same write as the head.
 */
export async function connectVia (port: number, target: string, opts: { early?: string | Buffer, headers?: string, socket?: Socket } = {}): Promise<Connected> {
  const socket = opts.socket ?? await rawConnect(port)
  socket.on('error', () => {})
  const client = clientOf(socket)
  socket.write(Buffer.concat([Buffer.from(connectHead(target, opts.headers)), Buffer.from(opts.early ?? '')]))
  return { ...(await readHead(socket)), client }
}

/** Read everything until EOF (bounded by `limit` bytes and `timeoutMs`). */
export async function readAll (socket: Socket, limit = 1 << 20, timeoutMs = 5000): Promise<Buffer> {
  return await readUntil(socket, {
    timeoutMs,
    onTimeout: () => new Error(`no EOF within ${timeoutMs} ms`),
    atEnd: buf => buf,
    take: (buf) => {
      if (buf.length <= limit) return undefined
      socket.destroy()
      throw new Error('readAll limit exceeded')
    }
  })
}

export interface ReadBytesOptions {
  /** Bytes already received, counted first (e.g. a head's `rest`). */
  readonly have?: Buffer
  /** Bound on the wait (default 5000 ms). */
  readonly timeoutMs?: number
  /**
   * 'exact' (default): resolve with exactly `n` bytes and push the surplus
   * back into the (paused) socket. 'all': resolve with everything received
   * once there are at least `n` bytes, so a caller comparing it sees any surplus.
   */
  readonly mode?: 'exact' | 'all'
}

/** `n` bytes from the socket (see {@link ReadBytesOptions}); EOF or an error first rejects. */
export async function readBytes (socket: Socket, n: number, opts: ReadBytesOptions = {}): Promise<Buffer> {
  const timeoutMs = opts.timeoutMs ?? 5000
  return await readUntil(socket, {
    ...(opts.have === undefined ? {} : { have: opts.have }),
    timeoutMs,
    onTimeout: buf => new Error(`wanted ${n} bytes within ${timeoutMs} ms, have ${JSON.stringify(buf.toString('latin1'))}`),
    atEnd: (buf) => { throw new Error(`EOF after ${buf.length} of ${n} bytes: ${JSON.stringify(buf.toString('latin1'))}`) },
    take: (buf) => {
      if (buf.length < n) return undefined
      if (opts.mode === 'all') return { value: buf }
      return { value: buf.subarray(0, n), surplus: buf.subarray(n) }
    }
  })
}

/** Write `text` into an open tunnel to an echo server and read back as many bytes (all that came, latin1). */
export async function roundTrip (socket: Socket, text: string, timeoutMs?: number): Promise<string> {
  socket.write(text)
  const got = await readBytes(socket, Buffer.byteLength(text), { mode: 'all', ...(timeoutMs === undefined ? {} : { timeoutMs }) })
  return got.toString('latin1')
}

/** Close our side and wait until the socket is fully closed. */
export async function finish (socket: Socket): Promise<void> {
  if (socket.closed) return
  const closed = once(socket, 'close')
  socket.end()
  await closed
}

/** Resolves with how the socket ended: 'eof' (FIN), the error code (e.g. ECONNRESET), or 'still open after …' (bounded). */
export async function ending (socket: Socket, timeoutMs = 5000): Promise<string> {
  return await new Promise((resolve) => {
    const timer = setTimeout(() => resolve(`still open after ${timeoutMs / 1000} s`), timeoutMs)
    socket.once('end', () => { clearTimeout(timer); resolve('eof') })
    socket.once('error', (err: Error & { code?: string }) => { clearTimeout(timer); resolve(err.code ?? err.message) })
    socket.resume()
  })
}
