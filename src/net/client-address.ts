/**
 * "The client address of this socket", answered in one place (issue 15).
 * It is the TCP peer, unless a listener's PROXY protocol stage
 * (server/proxy-stage.ts) read a header from a trusted balancer naming the
 * real client: then it is that one. `clients:` rules, per-client limits,
 * lock-outs and every log line read it here, never `remoteAddress` itself.
 *
 * The header's client is one symbol on the socket, set once before any
 * other reader sees the socket; without PROXY protocol it is never set, and
 * the answer is the peer's, as before.
 */
import type { Socket } from 'node:net'
import { clientAddress, formatHostPort } from './ip.js'

const kClient = Symbol('sluice.proxied-client')
type Marked = Socket & { [kClient]?: { readonly address: string, readonly port: number } }

/** The PROXY protocol stage's answer: `socket`'s client is this one. */
export function setProxiedClient (socket: Socket, client: { readonly address: string, readonly port: number }): void {
  (socket as Marked)[kClient] = client
}

/** A socket made on top of another (a TLSSocket on the accepted one) speaks for the same client. */
export function carryProxiedClient (from: Socket, to: Socket): void {
  const c = (from as Marked)[kClient]
  if (c !== undefined) (to as Marked)[kClient] = c
}

/** The client's address as rules and logs see it (IPv4 clients of a dual-stack listener as `a.b.c.d`). */
export function clientAddressOf (socket: Socket): string {
  return (socket as Marked)[kClient]?.address ?? clientAddress(socket.remoteAddress ?? '')
}

export function clientPortOf (socket: Socket): number {
  return (socket as Marked)[kClient]?.port ?? socket.remotePort ?? 0
}

/** `ip:port` of the client, IPv6 in brackets, as the logs name it. */
export function clientOf (socket: Socket): string {
  return formatHostPort(clientAddressOf(socket), clientPortOf(socket))
}

/** The TCP peer itself (the balancer, when a header named someone else): who a PROXY header is trusted from. */
export function peerOf (socket: Socket): string {
  return formatHostPort(clientAddress(socket.remoteAddress ?? ''), socket.remotePort ?? 0)
}
