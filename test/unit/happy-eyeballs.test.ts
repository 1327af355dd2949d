/**
 * RFC 8305 racing on real loopback sockets.
 *
 * - A dial whose tunnel was cancelled before the race started (the client
 *   sent FIN while DNS was in flight) must not connect at all.
 * - Staggered starts: the next address starts `attemptDelayMs` after the
 *   previous one, not before, while the earlier attempt stays alive.
 * - Fail-over: an attempt that fails starts the next address at once.
 * - The overall deadline, and the destroying of every losing attempt.
 *
 * Linux routes all of 127/8 to lo, so each address is its own host:
 * 127.0.0.2, 127.0.0.3, … on one shared port (the race dials one port).
 * An address is either accepting (a net.Server), refusing (nothing bound:
 * RST at once) or a blackhole (test/helpers/blackhole.ts: SYNs dropped, the
 * connect hangs).
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import { setImmediate as immediate } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { race } from '../../src/upstream/happy-eyeballs.js'
import { startBlackhole, type Blackhole } from '../helpers/blackhole.js'
import { listenOn } from '../helpers/net.js'
import { pollImmediate, within } from '../helpers/wait.js'

describe('race', () => {
  let accepted = 0
  const server = createServer((s) => { accepted++; s.destroy() })
  let port = 0
  before(async () => { port = await listenOn(server, '127.0.0.1') })
  after(() => { server.close() })

  it('rejects at once, without dialing, when the signal is already aborted', async () => {
    const ac = new AbortController()
    ac.abort(new Error('client went away'))
    const dial = race(['127.0.0.1'], { port, attemptDelayMs: 250, timeoutMs: 2000, keepAliveMs: 0, signal: ac.signal })
    dial.then(r => r.socket.destroy(), () => {})
    await within(assert.rejects(dial, { code: 'ERR_UPSTREAM_FAILED' }), 'race settles')
    assert.equal(accepted, 0)
  })

  it('connects when the signal is not aborted', async () => {
    const { socket, address } = await within(race(['127.0.0.1'], { port, attemptDelayMs: 250, timeoutMs: 2000, keepAliveMs: 0, signal: new AbortController().signal }), 'race settles')
    assert.equal(address, '127.0.0.1')
    socket.destroy()
  })
})

// ------------------------------------------------------------ several addresses

type Kind = 'accept' | 'refuse' | 'hole'

/** An accepting address: every connection it got, and a promise of the next one. */
interface Acceptor {
  readonly kind: 'accept'
  readonly host: string
  readonly server: Server
  readonly conns: Socket[]
  /** Resolves with the first connection (past or future). */
  readonly first: Promise<Socket>
  /** performance.now() at each 'connection'. */
  readonly times: number[]
}
type Endpoint = Acceptor | { readonly kind: 'refuse', readonly host: string } | { readonly kind: 'hole', readonly host: string, readonly hole: Blackhole }

interface Hosts {
  readonly port: number
  readonly at: readonly Endpoint[]
  close (): Promise<void>
}

async function acceptor (host: string, port: number): Promise<Acceptor> {
  const conns: Socket[] = []
  const times: number[] = []
  let gotFirst: (s: Socket) => void = () => {}
  const first = new Promise<Socket>((resolve) => { gotFirst = resolve })
  const server = createServer((s) => {
    times.push(performance.now())
    conns.push(s)
    s.on('error', () => {})
    gotFirst(s)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
  return { kind: 'accept', host, server, conns, first, times }
}

/**
 * One endpoint per kind on 127.0.0.2, 127.0.0.3, …, all on one port: the
 * first bound takes a free port, the others bind the same number on their
 * address. Retries (bounded) when that port is taken on another address.
 */
async function hosts (kinds: readonly Kind[]): Promise<Hosts> {
  let lastErr: unknown
  for (let attempt = 0; attempt < 5; attempt++) {
    const at: Endpoint[] = []
    const close = async (): Promise<void> => {
      for (const e of at) {
        if (e.kind === 'accept') {
          for (const c of e.conns) c.destroy()
          const closed = once(e.server, 'close')
          e.server.close()
          await closed
        } else if (e.kind === 'hole') {
          await e.hole.close()
        }
      }
    }
    try {
      let port = 0
      for (const [i, kind] of kinds.entries()) {
        const host = `127.0.0.${i + 2}`
        if (kind === 'refuse') { at.push({ kind, host }); continue }
        const e: Endpoint = kind === 'accept' ? await acceptor(host, port) : { kind, host, hole: await startBlackhole(host, port) }
        at.push(e)
        if (port === 0) port = e.kind === 'accept' ? (e.server.address() as { port: number }).port : e.hole.port
      }
      if (port === 0) {
        // Only refusing addresses: a port nothing listens on, on any of them.
        const probe = createServer()
        port = await listenOn(probe, '127.0.0.2')
        probe.close()
        await once(probe, 'close')
      }
      return { port, at, close }
    } catch (err) {
      lastErr = err
      await close()
    }
  }
  throw lastErr
}

/** Open TCP socket handles in this process (client and server side, pending connects included). */
function tcpHandles (): number {
  return process.getActiveResourcesInfo().filter(r => r === 'TCPSocketWrap').length
}

/** Resolves true once there are at most `n` TCP handles again (bounded; handles close on a later turn). */
async function backTo (n: number): Promise<boolean> {
  return await pollImmediate(50, () => tcpHandles() <= n)
}

function acceptorAt (h: Hosts, i: number): Acceptor {
  const e = h.at[i]
  assert.ok(e?.kind === 'accept')
  return e
}

/** Block the event loop for `ms` without yielding (see the losers test). */
function stall (ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

describe('race over several addresses', () => {
  const open: Hosts[] = []
  after(async () => { for (const h of open) await h.close() })
  async function given (...kinds: Kind[]): Promise<Hosts> {
    const h = await hosts(kinds)
    open.push(h)
    return h
  }

  it('fails over to the next address as soon as an attempt is refused, without waiting for the stagger', async () => {
    const h = await given('refuse', 'accept')
    // The stagger is far beyond the deadline: only fail-over can reach the second address in time.
    const r = await within(race(['127.0.0.2', '127.0.0.3'], { port: h.port, attemptDelayMs: 60_000, timeoutMs: 3000, keepAliveMs: 0 }), 'race settles')
    assert.equal(r.address, '127.0.0.3')
    assert.equal(r.socket.remotePort, h.port)
    await within(acceptorAt(h, 1).first, 'connection at 127.0.0.3')
    r.socket.destroy()
  })

  it('rejects with the last failure when every address refuses', async () => {
    const h = await given('refuse', 'refuse', 'refuse')
    const base = tcpHandles()
    await within(assert.rejects(
      race(['127.0.0.2', '127.0.0.3', '127.0.0.4'], { port: h.port, attemptDelayMs: 60_000, timeoutMs: 3000, keepAliveMs: 0 }),
      (err: Error & { code?: string, detail?: string }) => {
        assert.equal(err.code, 'ERR_UPSTREAM_REFUSED')
        assert.equal(err.detail, `127.0.0.4:${h.port} (ECONNREFUSED)`)
        return true
      }), 'race settles')
    assert.ok(await backTo(base), 'a refused attempt was left open')
  })

  it('starts the next address only after attemptDelayMs while the first hangs', async () => {
    const h = await given('hole', 'accept')
    const delay = 300
    const t0 = performance.now()
    const r = await within(race(['127.0.0.2', '127.0.0.3'], { port: h.port, attemptDelayMs: delay, timeoutMs: 5000, keepAliveMs: 0 }), 'race settles')
    assert.equal(r.address, '127.0.0.3')
    const b = acceptorAt(h, 1)
    await within(b.first, 'connection at 127.0.0.3')
    const waited = (b.times[0] ?? 0) - t0
    // Node's timers count from the loop's cached clock, which can lag t0 by a few ms.
    assert.ok(waited >= delay - 50, `the second address was dialed after ${waited.toFixed(1)} ms, before attemptDelayMs ${delay}`)
    r.socket.destroy()
  })

  it('does not dial the next address before attemptDelayMs: the deadline comes first', async () => {
    const h = await given('hole', 'accept')
    const base = tcpHandles()
    const t0 = performance.now()
    await within(assert.rejects(
      race(['127.0.0.2', '127.0.0.3'], { port: h.port, attemptDelayMs: 60_000, timeoutMs: 300, keepAliveMs: 0 }),
      (err: Error & { code?: string, detail?: string, params?: Record<string, unknown> }) => {
        assert.equal(err.code, 'ERR_UPSTREAM_TIMEOUT')
        assert.equal(err.detail, `no answer within 300 ms from 127.0.0.2:${h.port}`)
        return true
      }), 'race settles')
    const waited = performance.now() - t0
    assert.ok(waited >= 250, `the deadline fired after ${waited.toFixed(1)} ms`)
    assert.equal(acceptorAt(h, 1).conns.length, 0, '127.0.0.3 was dialed before attemptDelayMs')
    assert.ok(await backTo(base), 'the hanging attempt was not destroyed at the deadline')
  })

  it('the overall deadline rejects with ERR_UPSTREAM_TIMEOUT, names every address tried and destroys every attempt', async () => {
    const h = await given('hole', 'hole')
    const base = tcpHandles()
    await within(assert.rejects(
      race(['127.0.0.2', '127.0.0.3'], { port: h.port, attemptDelayMs: 50, timeoutMs: 400, keepAliveMs: 0 }),
      (err: Error & { code?: string, detail?: string }) => {
        assert.equal(err.code, 'ERR_UPSTREAM_TIMEOUT')
        assert.equal(err.detail, `no answer within 400 ms from 127.0.0.2:${h.port}, 127.0.0.3:${h.port}`)
        return true
      }), 'race settles')
    assert.ok(await backTo(base), 'a hanging attempt outlived the deadline')
  })

  it('keeps an attempt alive when the next one starts, and destroys all in flight when the signal aborts', async () => {
    const h = await given('hole', 'hole')
    const base = tcpHandles()
    const ac = new AbortController()
    const dial = race(['127.0.0.2', '127.0.0.3'], { port: h.port, attemptDelayMs: 0, timeoutMs: 5000, keepAliveMs: 0, signal: ac.signal })
    // Both attempts are pending at once: two more TCP handles (Node's own
    // autoSelectFamily would have closed the first: docs/node-internals.md B6).
    // (The second starts on a 0 ms timer: a bounded number of loop turns, each running due timers.)
    assert.ok(await pollImmediate(10_000, () => tcpHandles() >= base + 2), 'both attempts started')
    // A destroyed handle still counts until the loop's close phase: some turns later both must still be open.
    for (let i = 0; i < 5; i++) await immediate()
    assert.ok(tcpHandles() >= base + 2, 'the first attempt was closed when the second started')
    ac.abort()
    await within(assert.rejects(dial, { code: 'ERR_UPSTREAM_FAILED' }), 'race settles')
    assert.ok(await backTo(base), 'an attempt outlived the abort')
  })

  it('destroys the losing attempt: its server sees the connection close, the winner\'s stays open', async () => {
    const h = await given('accept', 'accept')
    const a = acceptorAt(h, 0)
    const b = acceptorAt(h, 1)
    // Both attempts must reach their servers before the race sees either
    // connect. Started from a setImmediate callback, the first connect()
    // runs on the next tick; stalling the loop after it makes the 0 ms
    // stagger due, so the timers phase starts the second before the next
    // poll reports the first. Whichever connect is reported first wins.
    const { dial } = await new Promise<{ dial: ReturnType<typeof race> }>((resolve) => {
      setImmediate(() => {
        const p = race(['127.0.0.2', '127.0.0.3'], { port: h.port, attemptDelayMs: 0, timeoutMs: 5000, keepAliveMs: 0 })
        process.nextTick(() => stall(20))
        resolve({ dial: p })
      })
    })
    const r = await within(dial, 'race settles')
    const [winner, loser] = r.address === '127.0.0.2' ? [a, b] : [b, a]
    const won = await within(winner.first, 'connection at the winner')
    const lost = await within(loser.first, `connection at the loser (${loser.host}): both attempts must have connected`)
    if (!lost.closed) await within(once(lost, 'close'), 'the loser\'s server side closes')
    assert.equal(won.closed, false, 'the winner\'s connection stays open')
    assert.equal(r.socket.destroyed, false)
    r.socket.destroy()
  })
})
