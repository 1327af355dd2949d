/**
 * Loopback listening basics shared by the test servers: listen on port 0,
 * and a port nothing listens on.
 */
import { once } from 'node:events'
import { createServer, type Server } from 'node:net'

/** Listen on `host`, port 0; resolves with the port. */
export async function listenOn (server: Server, host: string): Promise<number> {
  server.listen(0, host)
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('server has no TCP address')
  return address.port
}

/** A loopback TCP port nothing listens on: bind port 0, note it, close. */
export async function closedPort (): Promise<number> {
  const server = createServer()
  const port = await listenOn(server, '127.0.0.1')
  const closed = once(server, 'close')
  server.close()
  await closed
  return port
}
