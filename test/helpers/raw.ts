/**
 * A raw TCP client for CONNECT: write exact bytes, read the response head
 * and whatever follows it. For the cases no well-behaved client produces.
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

export async function rawConnect (port: number, host = '127.0.0.1'): Promise<Socket> {
  const socket = connect({ port, host, allowHalfOpen: true })
  await once(socket, 'connect')
  return socket
}

/** Read until the end of a response head (bounded at 64 KiB), keeping the rest. */
export async function readHead (socket: Socket, timeoutMs = 5000): Promise<RawResponse> {
  return await new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const timer = setTimeout(() => { cleanup(); reject(new Error(`no response head within ${timeoutMs} ms; got ${JSON.stringify(buf.toString('latin1'))}`)) }, timeoutMs)
    const onData = (chunk: Buffer): void => {
      buf = Buffer.concat([buf, chunk])
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) {
        if (buf.length > 65536) { cleanup(); reject(new Error('response head too large')) }
        return
      }
      cleanup()
      socket.pause()
      const lines = buf.subarray(0, end).toString('latin1').split('\r\n')
      const statusLine = lines.shift() ?? ''
      const headers: Record<string, string> = {}
      for (const l of lines) {
        const i = l.indexOf(':')
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim()
      }
      resolve({ status: Number(statusLine.split(' ')[1]), statusLine, headers, rest: buf.subarray(end + 4), socket })
    }
    const onEnd = (): void => { cleanup(); reject(new Error(`connection ended before a response head; got ${JSON.stringify(buf.toString('latin1'))}`)) }
    const onError = (err: Error): void => { cleanup(); reject(err) }
    function cleanup (): void {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('error', onError)
    }
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('error', onError)
  })
}

/** Send `request` on a fresh connection and read the response head. */
export async function request (port: number, bytes: string | Buffer, host = '127.0.0.1'): Promise<RawResponse> {
  const socket = await rawConnect(port, host)
  socket.on('error', () => {})
  socket.write(bytes)
  return await readHead(socket)
}

/** Read everything until EOF (bounded by `limit` bytes and `timeoutMs`). */
export async function readAll (socket: Socket, limit = 1 << 20, timeoutMs = 5000): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  return await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no EOF within ${timeoutMs} ms`)), timeoutMs)
    socket.on('data', (c: Buffer) => {
      size += c.length
      if (size > limit) { clearTimeout(timer); reject(new Error('readAll limit exceeded')); socket.destroy(); return }
      chunks.push(c)
    })
    socket.once('end', () => { clearTimeout(timer); resolve(Buffer.concat(chunks)) })
    socket.once('error', (err) => { clearTimeout(timer); reject(err) })
    socket.resume()
  })
}
