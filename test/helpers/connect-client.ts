/**
 * A raw CONNECT client that keeps its connection: several CONNECTs on one
 * socket (a 407, then a retry with credentials), each response read as a
 * head plus exactly Content-Length body bytes, then tunnel bytes. For
 * exact bytes where curl or undici would hide them (moved here from
 * test/integration/auth.test.ts, issue 10).
 *
 * Every read is bounded by {@link CLIENT_WAIT_MS}; the socket ignores
 * errors (resets are outcomes tests look at through eof()).
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'

/** Bound on one read; a failure bound, not synchronisation. */
export const CLIENT_WAIT_MS = 5000

/** One response read by {@link Client.response}. */
export interface ClientResponse {
  readonly status: number
  readonly statusLine: string
  /** Lower-cased names; a repeated header keeps every value, joined by '\n'. */
  readonly headers: Readonly<Record<string, string>>
  readonly body: string
}

/** One client connection, read as a stream of responses (head + Content-Length body), then tunnel bytes. */
export class Client {
  readonly socket: Socket
  private buf = Buffer.alloc(0)
  private ended = false
  private readonly waiters = new Set<() => void>()

  private constructor (socket: Socket) {
    this.socket = socket
    socket.on('data', (c: Buffer) => { this.buf = Buffer.concat([this.buf, c]); this.wake() })
    socket.on('end', () => { this.ended = true; this.wake() })
    socket.on('close', () => { this.ended = true; this.wake() })
    socket.on('error', () => {})
  }

  static async open (port: number, localAddress = '127.0.0.1'): Promise<Client> {
    const socket = connect({ port, host: '127.0.0.1', localAddress, allowHalfOpen: true })
    await once(socket, 'connect')
    return new Client(socket)
  }

  private wake (): void { for (const w of [...this.waiters]) w() }

  /** Resolve with `take()`'s result once it returns one; reject on timeout. */
  private async until<T> (what: string, take: () => T | undefined): Promise<T> {
    return await new Promise<T>((resolve, reject) => {
      const check = (): void => {
        let v: T | undefined
        try { v = take() } catch (err) { done(); reject(err instanceof Error ? err : new Error(String(err))); return }
        if (v !== undefined) { done(); resolve(v) }
      }
      const timer = setTimeout(() => { done(); reject(new Error(`${what}: nothing within ${CLIENT_WAIT_MS} ms; have ${JSON.stringify(this.buf.toString('latin1'))}, ended ${String(this.ended)}`)) }, CLIENT_WAIT_MS)
      const done = (): void => { clearTimeout(timer); this.waiters.delete(check) }
      this.waiters.add(check)
      check()
    })
  }

  /** The next response: head, then exactly Content-Length body bytes (none for 200). */
  async response (): Promise<ClientResponse> {
    return await this.until('response', () => {
      const end = this.buf.indexOf('\r\n\r\n')
      if (end < 0) {
        if (this.ended) throw new Error(`connection ended before a response head; got ${JSON.stringify(this.buf.toString('latin1'))}`)
        return undefined
      }
      const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n')
      const statusLine = lines.shift() ?? ''
      const headers: Record<string, string> = {}
      for (const l of lines) {
        const i = l.indexOf(':')
        if (i <= 0) continue
        const k = l.slice(0, i).trim().toLowerCase()
        const v = l.slice(i + 1).trim()
        headers[k] = headers[k] === undefined ? v : `${headers[k]}\n${v}`
      }
      const length = Number(headers['content-length'] ?? '0')
      if (this.buf.length < end + 4 + length) {
        if (this.ended) throw new Error(`connection ended inside a response body; got ${JSON.stringify(this.buf.toString('latin1'))}`)
        return undefined
      }
      const body = this.buf.subarray(end + 4, end + 4 + length).toString('utf8')
      this.buf = this.buf.subarray(end + 4 + length)
      return { status: Number(statusLine.split(' ')[1]), statusLine, headers, body }
    })
  }

  /** Exactly `n` more bytes. */
  async bytes (n: number): Promise<Buffer> {
    return await this.until('bytes', () => {
      if (this.buf.length < n) {
        if (this.ended) throw new Error(`connection ended after ${this.buf.length} of ${n} bytes`)
        return undefined
      }
      const out = this.buf.subarray(0, n)
      this.buf = this.buf.subarray(n)
      return out
    })
  }

  /** Resolves once the server has ended the connection, with any bytes left unread. */
  async eof (): Promise<Buffer> {
    return await this.until('end of connection', () => this.ended ? this.buf : undefined)
  }

  send (target: string, authorization?: string): void {
    const auth = authorization === undefined ? '' : `Proxy-Authorization: ${authorization}\r\n`
    this.socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${auth}\r\n`)
  }

  /** Send a CONNECT and read its response. */
  async connect (target: string, authorization?: string): Promise<ClientResponse> {
    this.send(target, authorization)
    return await this.response()
  }

  /** Bytes through an established tunnel to the echo server come back. */
  async echoes (text: string): Promise<void> {
    this.socket.write(text)
    assert.equal((await this.bytes(Buffer.byteLength(text))).toString('utf8'), text)
  }

  close (): void { this.socket.destroy() }
}
