/**
 * How a tunnel reaches its target. The CONNECT listener, and later the TLS,
 * SNI and port-forward listeners, all hand a policy-checked request to a
 * Dialer and get back a connected socket; routes through parent proxies
 * are another Dialer with the same shape.
 */
import type { Socket } from 'node:net'
import type { Target } from '../connect/target.js'
import { race } from './happy-eyeballs.js'

export interface DialRequest {
  readonly target: Target
  /** Addresses that passed the policy's address stage, in RFC 8305 order. */
  readonly addresses: readonly string[]
  /** Aborted when the client goes away. */
  readonly signal: AbortSignal
}

export interface Dialed {
  readonly socket: Socket
  /** What was actually dialed, e.g. `93.184.216.34:443`, for the log line. */
  readonly dialed: string
}

export interface Dialer {
  dial (req: DialRequest): Promise<Dialed>
}

export interface DirectDialerOptions {
  readonly connectTimeoutMs: number
  readonly attemptDelayMs: number
  readonly keepAliveMs: number
}

/** Straight to the target over TCP, racing its addresses. */
export function directDialer (opts: DirectDialerOptions): Dialer {
  return {
    async dial (req: DialRequest): Promise<Dialed> {
      const { socket, address } = await race(req.addresses, {
        port: req.target.port,
        attemptDelayMs: opts.attemptDelayMs,
        timeoutMs: opts.connectTimeoutMs,
        keepAliveMs: opts.keepAliveMs,
        signal: req.signal
      })
      return { socket, dialed: address.includes(':') ? `[${address}]:${req.target.port}` : `${address}:${req.target.port}` }
    }
  }
}
