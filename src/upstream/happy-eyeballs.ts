/**
 * RFC 8305 connection racing. Node 20's own `autoSelectFamily` closes each
 * attempt after 250 ms and fails any origin slower than that on every
 * address but the last (docs/node-internals.md B6, nodejs/node#54359), so we race
 * ourselves: start the next address after `attemptDelayMs` or as soon as
 * the current attempt fails, keep earlier attempts alive, take the first
 * to connect and destroy the rest.
 */
import { connect, type Socket } from 'node:net'
import { ProxyError, type ErrorCode } from '../errors.js'
import { formatHostPort } from '../net/ip.js'
import type { Cancellation } from './cancel.js'

export interface RaceOptions {
  readonly port: number
  /** RFC 8305 §5 "Connection Attempt Delay"; 250 ms recommended. */
  readonly attemptDelayMs: number
  /** Deadline for the whole race. */
  readonly timeoutMs: number
  readonly signal?: Cancellation
  /** TCP keepalive initial delay on the won socket (ms), 0 = off. */
  readonly keepAliveMs: number
}

export interface RaceResult {
  readonly socket: Socket
  readonly address: string
}

const ERRNO_CODES: Readonly<Record<string, ErrorCode>> = {
  ECONNREFUSED: 'ERR_UPSTREAM_REFUSED',
  EHOSTUNREACH: 'ERR_UPSTREAM_UNREACHABLE',
  ENETUNREACH: 'ERR_UPSTREAM_UNREACHABLE',
  EADDRNOTAVAIL: 'ERR_UPSTREAM_UNREACHABLE',
  ECONNRESET: 'ERR_UPSTREAM_RESET',
  ETIMEDOUT: 'ERR_UPSTREAM_TIMEOUT'
}

const hop = formatHostPort

/** Turn a socket errno into our registry, naming the hop (RFC 9209 next-hop). */
export function connectError (err: unknown, address: string, port: number): ProxyError {
  const errno = String((err as { code?: unknown }).code ?? '')
  const code = ERRNO_CODES[errno] ?? 'ERR_UPSTREAM_FAILED'
  const next = hop(address, port)
  return new ProxyError(code, { detail: `${next} (${errno || 'error'})`, params: { 'next-hop': next }, cause: err })
}

/**
 * The won socket's error listener until its owner adds one: the race's own
 * listener would keep the whole race (timers, attempts, closures) alive for
 * the tunnel's life. An error in between leaves the socket destroyed, which
 * Tunnel.establish checks.
 */
function ignoreUntilOwned (): void {}

/** Race `addresses` (already filtered by policy) and resolve with the first connected socket. */
export function race (addresses: readonly string[], opts: RaceOptions): Promise<RaceResult> {
  if (addresses.length === 0) return Promise.reject(new ProxyError('ERR_UPSTREAM_FAILED', { detail: 'no address to dial' }))
  // An 'abort' listener added to an already-aborted signal never fires: a
  // client that left while DNS was in flight would still get dialed.
  if (opts.signal?.aborted === true) return Promise.reject(new ProxyError('ERR_UPSTREAM_FAILED', { detail: 'client went away' }))
  // One promise, not an async wrapper around it (issue 12: promise layers per CONNECT).
  return new Promise<RaceResult>((resolve, reject) => {
    /** Each attempt's error listener, to take off the winner. */
    const attempts = new Map<Socket, (err: Error) => void>()
    let next = 0
    let settled = false
    let lastError: ProxyError | undefined
    let stagger: NodeJS.Timeout | undefined

    const deadline = setTimeout(() => {
      const tried = addresses.slice(0, next).map(a => hop(a, opts.port)).join(', ')
      finish(new ProxyError('ERR_UPSTREAM_TIMEOUT', {
        detail: `no answer within ${opts.timeoutMs} ms from ${tried}`,
        params: { 'next-hop': hop(addresses[0] ?? '', opts.port) }
      }))
    }, opts.timeoutMs)

    const onAbort = (): void => finish(new ProxyError('ERR_UPSTREAM_FAILED', { detail: 'client went away' }))
    opts.signal?.addEventListener('abort', onAbort, { once: true })

    function finish (err: ProxyError | undefined, winner?: Socket): void {
      if (settled) return
      settled = true
      clearTimeout(deadline)
      clearTimeout(stagger)
      opts.signal?.removeEventListener('abort', onAbort)
      for (const s of attempts.keys()) if (s !== winner) s.destroy()
      if (winner !== undefined && err === undefined) {
        winner.removeAllListeners('connect')
        // Add before removing: an emitter whose last listener of a type is
        // removed deletes the key and turns into a slow dictionary object.
        winner.on('error', ignoreUntilOwned)
        const raced = attempts.get(winner)
        if (raced !== undefined) winner.removeListener('error', raced)
        if (opts.keepAliveMs > 0) winner.setKeepAlive(true, opts.keepAliveMs)
        attempts.clear()
        resolve({ socket: winner, address: winnerAddress })
      } else {
        attempts.clear()
        reject(err ?? lastError)
      }
    }

    let winnerAddress = ''
    function start (): void {
      clearTimeout(stagger)
      const address = addresses[next++]
      if (address === undefined || settled) return
      // allowHalfOpen: a FIN from the target must not auto-end our write side
      // while the client is still sending (docs/node-internals.md A9).
      const s = connect({ host: address, port: opts.port, allowHalfOpen: true, noDelay: true, autoSelectFamily: false })
      const onError = (err: Error): void => {
        if (settled) return
        attempts.delete(s)
        s.destroy()
        lastError = connectError(err, address, opts.port)
        if (next < addresses.length) start()
        else if (attempts.size === 0) finish(lastError)
      }
      attempts.set(s, onError)
      s.on('error', onError)
      s.once('connect', () => { winnerAddress = address; finish(undefined, s) })
      if (next < addresses.length) stagger = setTimeout(start, opts.attemptDelayMs)
    }
    start()
  })
}
