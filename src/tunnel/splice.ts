/**
 * The two-way byte pump. `pipe()` gives backpressure (a slow reader pauses
 * the fast writer, so nothing buffers without bound) and forwards each FIN
 * separately with `end()` (half-close, NODE-NOTES A9). It adds no per-chunk
 * closure or timer; errors are handled by the Tunnel's listeners.
 */
import type { Socket } from 'node:net'
import type { Tunnel } from './tunnel.js'

export function splice (downstream: Socket, upstream: Socket, tunnel: Tunnel): void {
  // Who sent the first FIN is how the tunnel ended, if nothing worse happens.
  downstream.once('end', () => tunnel.mark('client', 'fin'))
  upstream.once('end', () => tunnel.mark('upstream', 'fin'))
  upstream.pipe(downstream)
  downstream.pipe(upstream)
}
