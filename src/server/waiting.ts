/**
 * Connections accepted and not (yet) a tunnel: mid-way through a request
 * head, or idle between requests after a 405 or a 407. A tunnel is in the
 * registry; these are here, so that shutdown can answer them (issue 11,
 * finding 7: a request head cut off by SIGTERM got a bare FIN) and the
 * accept guard can count them.
 *
 * The close listener is one shared function (`this` is the socket), not a
 * closure per connection.
 */
import type { Socket } from 'node:net'

const kWaiting = Symbol('sluice.waiting')
type Tracked = Socket & { [kWaiting]?: WaitingConnections | undefined }

function onWaitingClose (this: Tracked): void {
  this[kWaiting]?.delete(this)
}

export class WaitingConnections {
  private readonly sockets = new Set<Socket>()
  private readonly onChange: () => void

  /** `onChange` runs after a connection leaves (the accept guard may resume). */
  constructor (onChange: () => void = () => {}) {
    this.onChange = onChange
  }

  get size (): number { return this.sockets.size }

  add (socket: Socket): void {
    if (this.sockets.has(socket)) return
    this.sockets.add(socket)
    ;(socket as Tracked)[kWaiting] = this
    socket.on('close', onWaitingClose)
  }

  /** The connection became a tunnel: the registry counts it from here. */
  delete (socket: Socket): void {
    if (!this.sockets.delete(socket)) return
    socket.removeListener('close', onWaitingClose)
    ;(socket as Tracked)[kWaiting] = undefined
    this.onChange()
  }

  /** Every waiting connection, for shutdown. */
  all (): Socket[] { return [...this.sockets] }
}
