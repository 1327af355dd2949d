/**
 * A small CONNECT client for the soak: send a request head, read the
 * response head, and then use the socket as the tunnel. Every wait is
 * bounded; a socket is always destroyed by whoever gave up on it.
 */
import { connect, type Socket } from 'node:net'

/** Bound on any one step (connect, answer, a read): a stuck step is a failure, not a wait. */
export const STEP_MS = 30_000

export class SoakError extends Error {
  override name = 'SoakError'
}

export interface Answer {
  readonly status: number
  readonly socket: Socket
  /** Bytes after the head (tunnel data that came with the 200). */
  readonly rest: Buffer
}

export async function dial (port: number, localAddress?: string): Promise<Socket> {
  return await new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true, ...(localAddress === undefined ? {} : { localAddress }) })
    const timer = setTimeout(() => { s.destroy(); reject(new SoakError('connect timed out')) }, STEP_MS)
    s.once('connect', () => { clearTimeout(timer); s.off('error', reject); resolve(s) })
    s.once('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

/** Write `head` on a fresh connection and read the response head (at most 16 KiB). */
export async function ask (port: number, head: string, localAddress?: string): Promise<Answer> {
  const socket = await dial(port, localAddress)
  socket.on('error', () => {}) // errors surface through the reads below
  socket.write(head)
  try {
    return await new Promise<Answer>((resolve, reject) => {
      let buf = Buffer.alloc(0)
      const done = (err?: Error, answer?: Answer): void => {
        clearTimeout(timer)
        socket.off('data', onData)
        socket.off('end', onEnd)
        socket.off('close', onEnd)
        socket.pause()
        if (err !== undefined) reject(err)
        else if (answer !== undefined) resolve(answer)
      }
      const onData = (chunk: Buffer): void => {
        buf = Buffer.concat([buf, chunk])
        const end = buf.indexOf('\r\n\r\n')
        if (end < 0) {
          if (buf.length > 16384) done(new SoakError('response head over 16 KiB'))
          return
        }
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf.subarray(0, end).toString('latin1'))
        if (m === null) { done(new SoakError(`not an HTTP response: ${JSON.stringify(buf.subarray(0, 80).toString('latin1'))}`)); return }
        done(undefined, { status: Number(m[1]), socket, rest: buf.subarray(end + 4) })
      }
      const onEnd = (): void => done(new SoakError(`closed before a response head (${buf.length} bytes)`))
      const timer = setTimeout(() => done(new SoakError('no response head in time')), STEP_MS)
      socket.on('data', onData)
      socket.once('end', onEnd)
      socket.once('close', onEnd)
    })
  } catch (err) {
    socket.destroy()
    throw err
  }
}

export function connectHead (authority: string, credentials?: { user: string, password: string }): string {
  const auth = credentials === undefined ? '' : `Proxy-Authorization: Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64')}\r\n`
  return `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${auth}\r\n`
}

/**
 * Read from the tunnel until `want` bytes (counting `have`) or EOF when
 * `want` is undefined; resolves with the byte count. `onChunk` sees every byte.
 */
export async function drain (socket: Socket, have: Buffer, want: number | undefined, onChunk: (b: Buffer) => void = () => {}): Promise<number> {
  let n = have.length
  if (have.length > 0) onChunk(have)
  if (want !== undefined && n >= want) return n
  return await new Promise((resolve, reject) => {
    const done = (err?: Error): void => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('close', onClose)
      socket.off('error', onError)
      if (err === undefined) resolve(n)
      else reject(err)
    }
    let timer = setTimeout(() => done(new SoakError(`read stalled at ${n} bytes`)), STEP_MS)
    const onData = (chunk: Buffer): void => {
      n += chunk.length
      onChunk(chunk)
      // A moving transfer is not stuck: the bound is per step, not per transfer.
      clearTimeout(timer)
      timer = setTimeout(() => done(new SoakError(`read stalled at ${n} bytes`)), STEP_MS)
      if (want !== undefined && n >= want) done()
    }
    const onEnd = (): void => { done(want === undefined || n >= want ? undefined : new SoakError(`EOF after ${n} of ${want} bytes`)) }
    const onClose = (): void => { done(want === undefined || n >= want ? undefined : new SoakError(`closed after ${n} of ${want ?? '?'} bytes`)) }
    const onError = (err: Error): void => done(err)
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('close', onClose)
    socket.once('error', onError)
    socket.resume()
  })
}

/** End our side and wait (bounded) for the socket to close; destroy it if it does not. */
export async function finish (socket: Socket): Promise<void> {
  if (socket.closed) return
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => { socket.destroy(); resolve() }, STEP_MS)
    socket.once('close', () => { clearTimeout(timer); resolve() })
    socket.end()
    socket.resume()
  })
}
