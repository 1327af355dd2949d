/**
 * The soak's targets, in the driver's process on 127.0.0.1 port 0: an echo
 * server (honours half-close) and a source that sends a fixed number of
 * bytes and closes. Node rather than bench/c/origin.c: the soak measures the
 * proxy's memory over time, not throughput, and needs no fixed ports.
 */
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'

/** Bytes the source sends on every connection. */
export const SOURCE_BYTES = 8 * 1024 * 1024

export interface SoakOrigin {
  readonly echoPort: number
  readonly sourcePort: number
  close (): Promise<void>
}

const CHUNK = Buffer.alloc(64 * 1024, 'soak-source-bytes ')

function serve (onSocket: (s: Socket) => void): { server: Server, sockets: Set<Socket> } {
  const sockets = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
    s.on('error', () => {}) // a client reset is part of the load, not a failure here
    onSocket(s)
  })
  return { server, sockets }
}

/** Write SOURCE_BYTES, honouring backpressure, then end. */
function pour (s: Socket): void {
  let left = SOURCE_BYTES
  const more = (): void => {
    while (left > 0 && !s.destroyed) {
      const n = Math.min(left, CHUNK.length)
      left -= n
      if (!s.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) { s.once('drain', more); return }
    }
    if (left === 0) s.end()
  }
  s.resume() // whatever the client sends is ignored
  more()
}

async function listen (server: Server): Promise<number> {
  server.listen({ host: '127.0.0.1', port: 0 })
  await once(server, 'listening')
  const addr = server.address()
  if (addr === null || typeof addr === 'string') throw new Error('origin: no address')
  return addr.port
}

export async function startSoakOrigin (): Promise<SoakOrigin> {
  const echo = serve((s) => { s.pipe(s) }) // pipe() ends the write side when the client half-closes
  const source = serve(pour)
  const echoPort = await listen(echo.server)
  const sourcePort = await listen(source.server)
  return {
    echoPort,
    sourcePort,
    async close () {
      for (const o of [echo, source]) {
        const closed = once(o.server, 'close')
        o.server.close()
        for (const s of o.sockets) s.destroy()
        await closed
      }
    }
  }
}
