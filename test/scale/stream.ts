/**
 * A bounded stream of short tunnels through the balancer (issue 15): a few
 * concurrent loops, each opening a tunnel from `localAddress`, CONNECTing
 * to an echo origin, round-tripping a few bytes and closing. Every tunnel
 * is counted as a success or a failure (with why and when), and waiters
 * resolve on counts, so the test waits on tunnels, not on time.
 */
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { readHead, roundTrip } from '../helpers/raw.js'

/** A failed tunnel: when it started and ended (Date.now()), and why. */
export interface Failure { readonly started: number, readonly at: number, readonly why: string }

export interface StreamOptions {
  /** HAProxy's frontend port (127.0.0.1). */
  readonly port: number
  /** Our source address: what Sluice must see as the client. */
  readonly localAddress: string
  /** `127.0.0.1:PORT` of the echo origin. */
  readonly target: string
  /** Concurrent loops. */
  readonly concurrency: number
  /** The bound: no more tunnels than this in all. */
  readonly max: number
}

export interface Stream {
  readonly ok: () => number
  readonly failures: readonly Failure[]
  /** Resolves once `n` more tunnels have succeeded in a row from now (rejects if the bound is reached first). */
  okInARow (n: number): Promise<void>
  /** Stop starting tunnels; resolves when every loop has finished its last one. */
  stop (): Promise<void>
}

async function oneTunnel (opts: StreamOptions, n: number): Promise<void> {
  const socket: Socket = connect({ port: opts.port, host: '127.0.0.1', localAddress: opts.localAddress, allowHalfOpen: true })
  socket.on('error', () => {})
  try {
    await Promise.race([once(socket, 'connect'), once(socket, 'close').then(() => { throw new Error('closed before connect') })])
    socket.write(`CONNECT ${opts.target} HTTP/1.1\r\nHost: ${opts.target}\r\n\r\n`)
    const head = await readHead(socket, 5000)
    if (head.status !== 200) throw new Error(`CONNECT answered ${head.statusLine}`)
    if (head.rest.length > 0) throw new Error('bytes before the round trip')
    const text = `ping ${n}\n`
    const back = await roundTrip(socket, text, 5000)
    if (back !== text) throw new Error(`echo ${JSON.stringify(back)}`)
    const closed = once(socket, 'close')
    socket.end()
    await closed
  } finally {
    socket.destroy()
  }
}

export function startStream (opts: StreamOptions): Stream {
  let started = 0
  let ok = 0
  const run = { stopped: false }
  const failures: Failure[] = []
  /** Each waiter: successes still needed in a row; a failure resets it to `need`. */
  const waiters = new Set<{ need: number, left: number, resolve: () => void, reject: (e: Error) => void }>()

  const settle = (success: boolean | undefined): void => {
    for (const w of [...waiters]) {
      if (success === true) w.left--
      else if (success === false) w.left = w.need
      if (w.left <= 0) {
        waiters.delete(w)
        w.resolve()
      } else if (started >= opts.max || run.stopped) {
        waiters.delete(w)
        w.reject(new Error(`stream ended (${started} of at most ${opts.max} tunnels, ${failures.length} failed) before ${w.need} successes in a row`))
      }
    }
  }

  async function loop (): Promise<void> {
    while (!run.stopped && started < opts.max) {
      const n = ++started
      const t0 = Date.now()
      let success = true
      try {
        await oneTunnel(opts, n)
        ok++
      } catch (err) {
        success = false
        failures.push({ started: t0, at: Date.now(), why: err instanceof Error ? err.message : String(err) })
      }
      settle(success)
    }
    settle(undefined)
  }
  const loops = Array.from({ length: opts.concurrency }, async () => await loop())

  return {
    ok: () => ok,
    failures,
    async okInARow (n) {
      await new Promise<void>((resolve, reject) => {
        waiters.add({ need: n, left: n, resolve, reject })
        settle(undefined)
      })
    },
    async stop () {
      run.stopped = true
      await Promise.all(loops)
      settle(undefined)
    }
  }
}
