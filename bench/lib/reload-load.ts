/**
 * The load for `npm run bench:reload -- --under-load` (issue 15), from the
 * bench process on loopback: new CONNECTs at a steady rate (open loop: a
 * stalled proxy makes them slow, it does not make the client send fewer),
 * each timed from the client's connect() to the `200`, then closed; and
 * `tunnels` long tunnels, each pinged (8 bytes, echoed) `pingMs` after its
 * previous reply, staggered. Every sample keeps the time it completed, so
 * the caller can put it in the window it ended in. Bounded: at most
 * MAX_IN_FLIGHT CONNECTs at once, each given up after TIMEOUT_MS.
 */
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'

const MAX_IN_FLIGHT = 500
const TIMEOUT_MS = 10_000
const PING = Buffer.from('pingpong')

export interface Sample {
  /** performance.now() when it completed. */
  readonly at: number
  readonly ms: number
}

export interface LoadSamples {
  readonly connects: Sample[]
  readonly pings: Sample[]
  /** Completion times of CONNECTs that failed (refused, not 200, timed out) or were not started (too many in flight). */
  readonly failures: number[]
  /** When a long tunnel closed before the end (its pings stop). */
  readonly lost: number[]
}

export interface LoadOptions {
  readonly proxyPort: number
  readonly echoPort: number
  readonly connectsPerS: number
  readonly tunnels: number
  readonly pingMs: number
}

export interface RunningLoad {
  readonly samples: LoadSamples
  stop (): Promise<void>
}

/** Resolves with the response head's status line once `\r\n\r\n` arrived; rejects on close, error or a head over 4 KiB. */
async function connectHead (s: Socket, authority: string): Promise<string> {
  s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`)
  let head = ''
  for (let i = 0; i < 64; i++) {
    const [chunk] = await once(s, 'data') as [Buffer]
    head += chunk.toString('latin1')
    const end = head.indexOf('\r\n\r\n')
    if (end >= 0) {
      if (end + 4 < head.length) throw new Error('bytes after the head before any were sent')
      return head.slice(0, head.indexOf('\r\n'))
    }
    if (head.length > 4096) break
  }
  throw new Error('no complete response head')
}

async function openTunnel (o: LoadOptions): Promise<Socket> {
  const s = connect(o.proxyPort, '127.0.0.1')
  s.setNoDelay(true)
  s.setTimeout(TIMEOUT_MS, () => s.destroy(new Error('long tunnel: no answer')))
  await once(s, 'connect')
  const status = await connectHead(s, `127.0.0.1:${o.echoPort}`)
  if (!/^HTTP\/1\.1 200/.test(status)) throw new Error(`long tunnel: ${status}`)
  s.setTimeout(0)
  s.on('error', () => {}) // a tunnel that dies is counted in `lost`
  return s
}

/** Open the long tunnels, then start both loops. Rejects when a long tunnel cannot be opened (setup failure). */
export async function startLoad (o: LoadOptions): Promise<RunningLoad> {
  const samples: LoadSamples = { connects: [], pings: [], failures: [], lost: [] }
  const tunnels: Socket[] = []
  const inFlight = new Set<Socket>()
  let stopped = false
  try {
    for (let i = 0; i < o.tunnels; i++) tunnels.push(await openTunnel(o))
  } catch (err) {
    for (const t of tunnels) t.destroy()
    throw err
  }

  const pingers = tunnels.map(async (t, i) => await new Promise<void>((resolve) => {
    let sent = 0
    let got = 0
    const fire = (): void => {
      if (stopped || t.destroyed) { resolve(); return }
      sent = performance.now()
      got = 0
      t.write(PING)
    }
    t.on('data', (chunk: Buffer) => {
      got += chunk.length
      if (got < PING.length) return
      const at = performance.now()
      samples.pings.push({ at, ms: at - sent })
      setTimeout(fire, o.pingMs)
    })
    t.once('close', () => { if (!stopped) samples.lost.push(performance.now()); resolve() })
    // Staggered, so the pings are spread over the period, not sent in one burst.
    setTimeout(fire, (o.pingMs * i) / o.tunnels)
  }))

  const one = (): void => {
    const started = performance.now()
    if (inFlight.size >= MAX_IN_FLIGHT) { samples.failures.push(started); return }
    const s = connect(o.proxyPort, '127.0.0.1')
    inFlight.add(s)
    s.setNoDelay(true)
    s.setTimeout(TIMEOUT_MS, () => s.destroy(new Error('timed out')))
    s.on('error', () => {})
    once(s, 'connect').then(async () => await connectHead(s, `127.0.0.1:${o.echoPort}`)).then((status) => {
      const at = performance.now()
      if (/^HTTP\/1\.1 200/.test(status)) samples.connects.push({ at, ms: at - started })
      else samples.failures.push(at)
      s.end()
    }, () => { samples.failures.push(performance.now()); s.destroy() })
    s.once('close', () => inFlight.delete(s))
  }
  const every = 1000 / o.connectsPerS
  const timer = setInterval(one, every)

  return {
    samples,
    async stop () {
      stopped = true
      clearInterval(timer)
      // A pinger waiting for its echo gets it (the proxy is still up), then stops; bounded all the same.
      await Promise.race([Promise.all(pingers), new Promise(resolve => setTimeout(resolve, TIMEOUT_MS).unref())])
      for (const t of tunnels) t.destroy()
      for (const s of inFlight) s.destroy()
    }
  }
}
