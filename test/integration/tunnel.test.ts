/**
 * The data path through Sluice, over real loopback sockets: bulk integrity
 * (sha256), bytes riding with the CONNECT head, backpressure against a slow
 * reader, half-close both ways, an IPv6 target, reset propagation, the idle
 * and lifetime limits, the header timeout versus established tunnels, and a
 * leak check after a burst of tunnels that end in every way.
 *
 * No sleeps: everything waits on socket events, on Sluice's log lines, or
 * on bounded setImmediate loops; each test has a runner timeout as backstop.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes, type Hash } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { setImmediate as immediate } from 'node:timers/promises'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { closedPort } from '../helpers/net.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectHead, rawConnect, readAll, readBytes, readHead } from '../helpers/raw.js'
import { LOOPBACK_ALLOWED, startSluice, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { pollImmediate, within } from '../helpers/wait.js'
import { dialRoute } from '../../src/upstream/route.js'
import { relayBufferBytes } from '../../src/tunnel/relay.js'

// A real gc() so arrayBuffers measures live buffers, not uncollected garbage.
setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as (opts?: { type?: 'major' | 'minor', execution?: 'sync' | 'async' }) => void

const MiB = 1024 * 1024
/** LOOPBACK_ALLOWED's rule alone, for configs that need a rule in front of it. */
const LOOPBACK_RULE = `
  - name: test-loopback
    action: allow
    ips: [127.0.0.0/8, "::1/128"]
`

type EchoServer = Awaited<ReturnType<typeof startEchoServer>>
type SocketError = Error & { code?: string }

/** Client sockets opened by a test; destroyed in after(). */
const clients = new Set<Socket>()

// ---------------------------------------------------------------- helpers

interface Opened {
  readonly socket: Socket
  /** `'127.0.0.1:PORT'` as Sluice logs the client. */
  readonly client: string
}

/** A fresh raw client, tracked for cleanup. */
async function client (port: number): Promise<Opened> {
  const socket = await rawConnect(port)
  clients.add(socket)
  socket.once('close', () => clients.delete(socket))
  socket.setNoDelay(true)
  return { socket, client: `127.0.0.1:${socket.localPort ?? 0}` }
}

/**
 * CONNECT through Sluice and expect exactly the 200 head. Bytes that came
 * after the head are pushed back into the (paused) socket, so the caller
 * reads the tunnel from its first byte.
 */
async function openTunnel (port: number, authority: string, extra: string | Buffer = ''): Promise<Opened> {
  const c = await client(port)
  c.socket.write(Buffer.concat([Buffer.from(connectHead(authority), 'latin1'), Buffer.from(extra)]))
  const res = await readHead(c.socket)
  assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
  assert.deepEqual(res.headers, {})
  if (res.rest.length > 0) c.socket.unshift(res.rest)
  return c
}

/** Resolves at 'close' with the socket's error, if any. Attach before the close can happen. */
async function closeOf (socket: Socket): Promise<SocketError | undefined> {
  // Not events.once(): it rejects on 'error', and the error is what we want to report.
  let error: SocketError | undefined
  socket.on('error', (err: SocketError) => { error ??= err })
  if (!socket.closed) await new Promise(resolve => socket.once('close', resolve))
  return error
}

/**
 * Resolves when the peer is done with us: EOF ('end'; our sockets are
 * half-open, so a FIN alone does not close them) or 'close'. Reports which,
 * and the error if any. Attach before it can happen.
 */
async function eofOf (socket: Socket): Promise<{ ended: boolean, error: SocketError | undefined }> {
  let error: SocketError | undefined
  let ended = false
  socket.on('error', (err: SocketError) => { error ??= err })
  socket.on('end', () => { ended = true })
  if (!socket.closed) {
    await new Promise<void>((resolve) => {
      socket.once('end', () => resolve())
      socket.once('close', () => resolve())
    })
  }
  return { ended, error }
}

/** Write `total` random bytes in `chunk`-sized pieces, honouring write()'s return value. */
async function writeRandom (socket: Socket, total: number, chunk: number, hash: Hash): Promise<void> {
  for (let off = 0; off < total; off += chunk) {
    const buf = randomBytes(Math.min(chunk, total - off))
    hash.update(buf)
    if (!socket.write(buf)) await once(socket, 'drain')
  }
}

/**
 * Ping-pong one byte through an echo tunnel: every echo triggers the next
 * byte, so the tunnel carries traffic continuously. Stops on stop(), on
 * close, or after `max` exchanges; resolves with the exchange count.
 */
function pingPong (socket: Socket, max: number): { stop: () => Promise<number>, done: Promise<number>, ended: () => boolean } {
  let n = 0
  let stopping = false
  let ended = false
  let finish: (n: number) => void = () => {}
  const done = new Promise<number>((resolve) => { finish = resolve })
  const onData = (chunk: Buffer): void => {
    n += chunk.length
    if (stopping || n >= max) {
      socket.off('data', onData)
      socket.pause()
      finish(n)
      return
    }
    socket.write('.')
  }
  socket.on('data', onData)
  socket.once('close', () => { ended = true; finish(n) })
  socket.once('end', () => { ended = true; finish(n) })
  socket.on('error', () => {}) // the caller asserts on how the tunnel ended
  socket.resume()
  socket.write('.')
  return {
    done,
    ended: () => ended,
    stop: async () => { stopping = true; return await done }
  }
}

/** The fields of a 'tunnel closed' record. */
interface TunnelLog {
  readonly msg: string
  readonly client?: string
  readonly target?: string
  readonly dialed?: string
  readonly rule?: string
  readonly status?: number
  readonly code?: string
  readonly bytes_up?: number
  readonly bytes_down?: number
  readonly connect_ms?: number
  readonly duration_ms?: number
  readonly closed_by?: string
  readonly close?: string
}

/** A 'tunnel closed' record, for `clientAddr` if given. */
function isClosed (r: LogRecord, clientAddr?: string): boolean {
  return r.msg === 'tunnel closed' && (clientAddr === undefined || r['client'] === clientAddr)
}

/** The single 'tunnel closed' record for a client. */
async function closedLog (sluice: Sluice, clientAddr: string, timeoutMs?: number): Promise<TunnelLog> {
  const rec = await sluice.waitForLog(r => isClosed(r, clientAddr), timeoutMs)
  assert.equal(sluice.logs.filter(r => isClosed(r, clientAddr)).length, 1)
  return rec as TunnelLog
}

/**
 * Bytes held by live ArrayBuffers. V8 frees array buffers' memory on a
 * concurrent sweeper, so a reading right after gc() can still include
 * garbage: collect, give the sweeper a turn, collect again.
 */
async function liveArrayBuffers (): Promise<number> {
  gc({ type: 'major', execution: 'sync' })
  await immediate()
  gc({ type: 'major', execution: 'sync' })
  return process.memoryUsage().arrayBuffers
}

interface TargetConn {
  readonly socket: Socket
  /** Every byte received, in order. */
  readonly chunks: Buffer[]
  /** Resolves at 'close': what was received, whether EOF was seen, and the error if any. */
  readonly closed: Promise<{ data: Buffer, ended: boolean, error: SocketError | undefined }>
}

interface Target {
  readonly port: number
  readonly authority: string
  /** The next accepted connection (past ones first). */
  next: () => Promise<TargetConn>
  close: () => Promise<void>
}

/** A TCP target (allowHalfOpen) that records what it receives and runs `behaviour` per connection. */
async function startTarget (behaviour: (c: TargetConn) => void, host = '127.0.0.1'): Promise<Target> {
  const pending: TargetConn[] = []
  const waiters: Array<(c: TargetConn) => void> = []
  const sockets = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket)
    const chunks: Buffer[] = []
    let ended = false
    let error: SocketError | undefined
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('end', () => { ended = true })
    socket.on('error', (err: SocketError) => { error ??= err })
    const closed = new Promise<{ data: Buffer, ended: boolean, error: SocketError | undefined }>((resolve) => {
      socket.once('close', () => { sockets.delete(socket); resolve({ data: Buffer.concat(chunks), ended, error }) })
    })
    const conn: TargetConn = { socket, chunks, closed }
    behaviour(conn)
    const w = waiters.shift()
    if (w !== undefined) w(conn)
    else pending.push(conn)
  })
  server.listen(0, host)
  await once(server, 'listening')
  const port = (server.address() as { port: number }).port
  return {
    port,
    authority: host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`,
    next: async () => {
      const c = pending.shift()
      if (c !== undefined) return c
      return await new Promise<TargetConn>((resolve) => waiters.push(resolve))
    },
    close: async () => {
      const done = once(server, 'close')
      server.close()
      for (const s of sockets) s.destroy()
      await done
    }
  }
}

/** Echo, and end after the peer's FIN (like the helper echo server, but recording). */
function echoBehaviour (c: TargetConn): void {
  c.socket.on('data', (d: Buffer) => c.socket.write(d))
  c.socket.on('end', () => c.socket.end())
}

async function closeServer (server: Server): Promise<void> {
  if (!server.listening) return
  const done = once(server, 'close')
  server.close()
  await done
}

function destroyClients (): void {
  for (const s of clients) s.destroy()
  clients.clear()
}

/**
 * Counts of the resource kinds a leak would show up as. A closed socket's
 * wrap stays listed until its JS object is collected, so collect first.
 */
async function resourceCounts (): Promise<{ Timeout: number, TCPSocketWrap: number }> {
  await liveArrayBuffers() // gc, a turn for weak callbacks, gc
  await immediate()
  const info = process.getActiveResourcesInfo()
  return {
    Timeout: info.filter(x => x === 'Timeout').length,
    TCPSocketWrap: info.filter(x => x === 'TCPSocketWrap').length
  }
}

/** The fields every successful tunnel's log record must carry. */
function assertEstablishedLog (rec: TunnelLog, authority: string, up: number, down: number): void {
  assert.equal(rec.status, 200)
  assert.equal(rec.target, authority)
  assert.equal(rec.dialed, authority)
  assert.equal(rec.rule, 'test-loopback')
  assert.equal(rec.code, undefined)
  assert.equal(rec.bytes_up, up, 'bytes_up')
  assert.equal(rec.bytes_down, down, 'bytes_down')
  assert.equal(typeof rec.connect_ms, 'number')
  assert.equal(typeof rec.duration_ms, 'number')
}

// ---------------------------------------------------------------- tests

describe('tunnel data path (default LOOPBACK_ALLOWED config)', () => {
  let sluice: Sluice
  let echo: EchoServer
  let echoAuthority: string

  before(async () => {
    sluice = await startSluice()
    echo = await startEchoServer()
    echoAuthority = `127.0.0.1:${echo.port}`
  })
  after(async () => {
    destroyClients()
    await sluice.close()
    await echo.close()
  })

  it('carries 64 MiB each way through an echo tunnel intact (sha256 of sent = received)', { timeout: 60_000 }, async () => {
    const total = 64 * MiB
    const { socket, client: clientAddr } = await openTunnel(sluice.port, echoAuthority)
    const sent = createHash('sha256')
    const recv = createHash('sha256')
    let received = 0
    // Read concurrently with writing, or the echo's backpressure deadlocks us.
    const eof = new Promise<void>((resolve, reject) => {
      socket.on('data', (c: Buffer) => { recv.update(c); received += c.length })
      socket.once('end', resolve)
      socket.once('error', reject)
    })
    socket.resume()
    await writeRandom(socket, total, MiB, sent)
    socket.end()
    await eof
    assert.equal(received, total)
    assert.equal(recv.digest('hex'), sent.digest('hex'))
    const rec = await closedLog(sluice, clientAddr)
    assertEstablishedLog(rec, echoAuthority, total, total)
    assert.equal(rec.closed_by, 'client')
    assert.equal(rec.close, 'fin')
  })

  it('forwards bytes sent in the same write as the CONNECT head first, echoed after the 200', { timeout: 10_000 }, async () => {
    const target = await startTarget(echoBehaviour)
    try {
      // One write: head and payload together (openTunnel writes them in one call).
      const { socket, client: clientAddr } = await openTunnel(sluice.port, target.authority, 'HELLO')
      const conn = await target.next()
      // The status line was parsed from the very first bytes, so the echo came after the 200.
      assert.equal((await readBytes(socket, 5)).toString(), 'HELLO')
      assert.equal(Buffer.concat(conn.chunks).toString(), 'HELLO', 'the target got HELLO before anything else')
      socket.write(' WORLD')
      assert.equal((await readBytes(socket, 6)).toString(), ' WORLD')
      socket.end()
      assert.equal((await readAll(socket)).length, 0)
      const { data, ended } = await conn.closed
      assert.equal(data.toString(), 'HELLO WORLD')
      assert.equal(ended, true)
      const rec = await closedLog(sluice, clientAddr)
      assertEstablishedLog(rec, target.authority, 11, 11)
    } finally {
      await target.close()
    }
  })

  it('does not buffer without bound for a slow reader: the target blocks, then all 64 MiB arrive', { timeout: 60_000 }, async (t) => {
    const block = randomBytes(64 * 1024)
    const blocks = 1024 // 64 MiB
    const expected = createHash('sha256')
    for (let i = 0; i < blocks; i++) expected.update(block)
    const state = { written: 0, drains: 0, socket: undefined as Socket | undefined }
    // Writes the same block until write() returns false, resumes on 'drain', ends after 64 MiB.
    const pusher = createServer({ allowHalfOpen: true }, (socket) => {
      state.socket = socket
      socket.on('error', () => {})
      const push = (): void => {
        while (state.written < blocks) {
          state.written++
          if (!socket.write(block)) return
        }
        socket.end()
      }
      socket.on('drain', () => { state.drains++; push() })
      push()
    })
    pusher.listen(0, '127.0.0.1')
    await once(pusher, 'listening')
    const authority = `127.0.0.1:${(pusher.address() as { port: number }).port}`
    try {
      const before = await liveArrayBuffers()
      // openTunnel leaves the client paused: it reads nothing from here on.
      const { socket, client: clientAddr } = await openTunnel(sluice.port, authority)

      // Blocked = a write is stuck in the target's socket and no 'drain' came for 500 turns.
      let stable = 0
      let lastDrains = -1
      const blocked = await pollImmediate(200_000, () => {
        if (state.written >= blocks) return true // everything was absorbed somewhere: fails below
        const s = state.socket
        if (s !== undefined && s.writableLength > 0 && state.drains === lastDrains) stable++
        else { stable = 0; lastDrains = state.drains }
        return stable >= 500
      })
      assert.ok(blocked, `target never settled; wrote ${state.written} blocks, ${state.drains} drains`)
      assert.ok(state.written < blocks, `target wrote all ${blocks} blocks to a client that reads nothing`)

      const [tunnel] = sluice.proxy.registry.filter(() => true)
      assert.ok(tunnel?.upstream !== undefined)
      const queued = tunnel.downstream.writableLength + tunnel.upstream.readableLength
      assert.ok(queued <= 1 * MiB, `Sluice holds ${queued} bytes in its stream buffers`)
      const grown = await liveArrayBuffers() - before
      assert.ok(grown < 4 * MiB, `arrayBuffers grew by ${grown} bytes while the target was blocked after ${state.written} blocks`)
      t.diagnostic(`target blocked after ${state.written} of ${blocks} blocks; Sluice queued ${queued} B; arrayBuffers +${grown} B`)

      // Resume: every byte arrives, in order, then EOF.
      const got = createHash('sha256')
      let received = 0
      const eof = new Promise<void>((resolve, reject) => {
        socket.on('data', (c: Buffer) => { got.update(c); received += c.length })
        socket.once('end', resolve)
        socket.once('error', reject)
      })
      socket.resume()
      await eof
      assert.equal(received, blocks * block.length)
      assert.equal(got.digest('hex'), expected.digest('hex'))
      socket.end()
      const rec = await closedLog(sluice, clientAddr)
      assertEstablishedLog(rec, authority, 0, blocks * block.length)
      assert.equal(rec.closed_by, 'upstream')
      assert.equal(rec.close, 'fin')
    } finally {
      state.socket?.destroy()
      await closeServer(pusher)
    }
  })

  it('half-close client→target: after the client FIN the echo still comes back in full, then EOF', { timeout: 10_000 }, async () => {
    const total = 1 * MiB
    const { socket, client: clientAddr } = await openTunnel(sluice.port, echoAuthority)
    const payload = randomBytes(total)
    let receivedAtFinish = -1
    const chunks: Buffer[] = []
    const eof = new Promise<void>((resolve, reject) => {
      socket.on('data', (c: Buffer) => chunks.push(c))
      socket.once('end', resolve)
      socket.once('error', reject)
    })
    socket.once('finish', () => { receivedAtFinish = Buffer.concat(chunks).length })
    socket.resume()
    socket.end(payload) // data and FIN together
    await eof
    // Our FIN went out before the echo was complete: the rest crossed the half-closed tunnel.
    assert.ok(receivedAtFinish >= 0 && receivedAtFinish < total, `received ${receivedAtFinish} of ${total} bytes by the time our FIN was sent`)
    assert.ok(Buffer.concat(chunks).equals(payload), 'echo differs from what was sent')
    const rec = await closedLog(sluice, clientAddr)
    assertEstablishedLog(rec, echoAuthority, total, total)
    assert.equal(rec.closed_by, 'client')
    assert.equal(rec.close, 'fin')
  })

  it('half-close target→client: greeting then target FIN; the client can still send 26 bytes', { timeout: 10_000 }, async () => {
    const greeting = 'HELLO FROM TARGET\n'
    const target = await startTarget((c) => { c.socket.end(greeting) })
    try {
      const { socket, client: clientAddr } = await openTunnel(sluice.port, target.authority)
      const conn = await target.next()
      assert.equal((await readAll(socket)).toString(), greeting)
      const tail = 'abcdefghijklmnopqrstuvwxyz'
      assert.equal(tail.length, 26)
      socket.end(tail)
      const { data, ended, error } = await conn.closed
      assert.equal(error, undefined)
      assert.equal(ended, true)
      assert.equal(data.toString(), tail)
      const rec = await closedLog(sluice, clientAddr)
      assertEstablishedLog(rec, target.authority, 26, greeting.length)
      assert.equal(rec.closed_by, 'upstream')
      assert.equal(rec.close, 'fin')
    } finally {
      await target.close()
    }
  })

  it('tunnels to an IPv6 literal target [::1]:PORT', { timeout: 10_000 }, async () => {
    const echo6 = await startEchoServer({ host: '::1' })
    try {
      const authority = `[::1]:${echo6.port}`
      const { socket, client: clientAddr } = await openTunnel(sluice.port, authority)
      socket.write('over IPv6')
      assert.equal((await readBytes(socket, 9)).toString(), 'over IPv6')
      socket.end()
      assert.equal((await readAll(socket)).length, 0)
      const rec = await closedLog(sluice, clientAddr)
      assertEstablishedLog(rec, authority, 9, 9)
      assert.equal(echo6.accepted(), 1)
    } finally {
      await echo6.close()
    }
  })

  /**
   * Through a tunnel to a fresh echoing target, one byte each way; then
   * `reset` (which resolves once the reset has been seen), and the tunnel's
   * record: 1 byte each way, closed by `closedBy` with close 'reset'.
   */
  async function resetAfterOneByte (byte: string, closedBy: string, reset: (socket: Socket, conn: TargetConn) => Promise<void>): Promise<void> {
    const target = await startTarget(echoBehaviour)
    try {
      const { socket, client: clientAddr } = await openTunnel(sluice.port, target.authority)
      const conn = await target.next()
      socket.write(byte)
      assert.equal((await readBytes(socket, 1)).toString(), byte)
      await reset(socket, conn)
      const rec = await closedLog(sluice, clientAddr)
      assertEstablishedLog(rec, target.authority, 1, 1)
      assert.equal(rec.closed_by, closedBy)
      assert.equal(rec.close, 'reset')
    } finally {
      await target.close()
    }
  }

  it('propagates a client reset to the target as a reset', { timeout: 10_000 }, async () => {
    await resetAfterOneByte('x', 'client', async (socket, conn) => {
      socket.resetAndDestroy()
      const { error, ended } = await conn.closed
      assert.equal(error?.code, 'ECONNRESET', `target saw ${error?.code ?? 'no error'} (ended: ${String(ended)})`)
    })
  })

  it('propagates a target reset to the client as a reset', { timeout: 10_000 }, async () => {
    await resetAfterOneByte('y', 'upstream', async (socket, conn) => {
      const eof = eofOf(socket)
      socket.resume()
      conn.socket.resetAndDestroy()
      const { error, ended } = await eof
      assert.equal(error?.code, 'ECONNRESET', `client saw ${error?.code ?? 'no error'} (EOF: ${String(ended)})`)
    })
  })
})

describe('a client FIN that lands before the tunnel is established', () => {
  /**
   * The client sends CONNECT and FIN; the dial completes only after the
   * proxy has read that FIN (its 'end' already emitted, nobody listening
   * yet), as when the FIN arrives while DNS or the connect is in flight.
   * The FIN must still reach the target, and the target's FIN come back.
   */
  it('is forwarded to the target, whose FIN comes back', { timeout: 10_000 }, async (t) => {
    const target = await startTarget(echoBehaviour)
    t.after(async () => { await target.close() })
    let connected = (): void => {}
    const upstreamReady = new Promise<void>((resolve) => { connected = resolve })
    const s: Sluice = await startSluice(LOOPBACK_ALLOWED, {
      dial: async (req, opts) => {
        const dialed = await dialRoute(req, opts)
        connected()
        const finSeen = (): boolean => s.proxy.registry.filter(() => true)[0]?.downstream.readableEnded === true
        assert.ok(await pollImmediate(10_000, finSeen), 'the proxy never saw the client FIN')
        return dialed
      }
    })
    t.after(async () => { await s.close() })
    const { socket, client: clientAddr } = await client(s.port)
    socket.write(connectHead(target.authority))
    await within(upstreamReady, 'upstream connected')
    socket.end()
    const res = await readHead(socket)
    assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
    const conn = await within(target.next(), 'target connection')
    assert.equal((await readAll(socket, 1 << 20, 3000)).length, 0, 'EOF from the target through the tunnel')
    const { data, ended } = await within(conn.closed, 'target sees the client FIN', 3000)
    assert.equal(ended, true)
    assert.equal(data.length, 0)
    const rec = await closedLog(s, clientAddr)
    assert.equal(rec.closed_by, 'client')
    assert.equal(rec.close, 'fin')
  })
})

describe('tunnel timeouts', () => {
  let echo: EchoServer
  let echoAuthority: string
  const sluices: Sluice[] = []

  before(async () => {
    echo = await startEchoServer()
    echoAuthority = `127.0.0.1:${echo.port}`
  })
  after(async () => {
    destroyClients()
    for (const s of sluices) await s.close()
    await echo.close()
  })

  async function sluiceWith (timeouts: string): Promise<Sluice> {
    const s = await startSluice(`timeouts: { ${timeouts} }\n${LOOPBACK_ALLOWED}`)
    sluices.push(s)
    return s
  }

  it('idle 200ms: closes idle tunnels (idle_timeout), not one that keeps exchanging bytes, until it goes quiet', { timeout: 10_000 }, async () => {
    const sluice = await sluiceWith('idle: 200ms')
    const busy = await openTunnel(sluice.port, echoAuthority)
    const idle1 = await openTunnel(sluice.port, echoAuthority)
    const idle1Eof = eofOf(idle1.socket)
    idle1.socket.resume()
    const pp = pingPong(busy.socket, 1_000_000)

    // The idle tunnels are the clock: each closing proves >= 200 ms passed.
    const rec1 = await closedLog(sluice, idle1.client)
    assert.deepEqual(await idle1Eof, { ended: true, error: undefined })
    idle1.socket.end()
    const idle2 = await openTunnel(sluice.port, echoAuthority)
    idle2.socket.resume()
    const rec2 = await closedLog(sluice, idle2.client)
    idle2.socket.end()
    assert.equal(pp.ended(), false, 'the busy tunnel was closed while busy')
    const exchanges = await pp.stop()
    assert.ok(exchanges < 1_000_000, 'ping-pong ran out before the idle tunnels closed')

    for (const rec of [rec1, rec2]) {
      assertEstablishedLog(rec, echoAuthority, 0, 0)
      assert.equal(rec.closed_by, 'proxy')
      assert.equal(rec.close, 'idle_timeout')
      assert.ok((rec.duration_ms ?? 0) >= 200, `closed after ${String(rec.duration_ms)} ms`)
    }
    // The busy tunnel outlived two idle periods and still works ...
    assert.equal(sluice.logs.some(r => isClosed(r, busy.client)), false, 'the busy tunnel was closed')
    busy.socket.write('still here')
    assert.equal((await readBytes(busy.socket, 10)).toString(), 'still here')
    // ... and once quiet, it is closed a full idle period after its last byte, not earlier.
    const quietSince = performance.now()
    const busyEof = eofOf(busy.socket)
    busy.socket.resume()
    assert.deepEqual(await busyEof, { ended: true, error: undefined })
    const quiet = performance.now() - quietSince
    assert.ok(quiet >= 195, `closed after only ${quiet.toFixed(1)} ms without traffic`)
    busy.socket.end()
    const rec = await closedLog(sluice, busy.client)
    assertEstablishedLog(rec, echoAuthority, exchanges + 10, exchanges + 10)
    assert.equal(rec.closed_by, 'proxy')
    assert.equal(rec.close, 'idle_timeout')
  })

  it('max_lifetime 200ms: closes even a busy tunnel (max_lifetime)', { timeout: 10_000 }, async () => {
    const sluice = await sluiceWith('max_lifetime: 200ms')
    const t = await openTunnel(sluice.port, echoAuthority)
    const eof = eofOf(t.socket)
    const pp = pingPong(t.socket, 1_000_000)
    const rec = await closedLog(sluice, t.client)
    await eof
    const exchanges = await pp.done
    assert.ok(exchanges > 0 && exchanges < 1_000_000, `ping-pong made ${exchanges} exchanges`)
    assert.equal(rec.status, 200)
    assert.equal(rec.target, echoAuthority)
    assert.equal(rec.closed_by, 'proxy')
    assert.equal(rec.close, 'max_lifetime')
    assert.ok((rec.duration_ms ?? 0) >= 200, `closed after ${String(rec.duration_ms)} ms`)
    assert.ok((rec.bytes_up ?? 0) >= exchanges, 'bytes_up counts the pings')
  })

  it('header 300ms: an established idle tunnel outlives the header timeout (a later slow head gets 408)', { timeout: 10_000 }, async () => {
    const sluice = await sluiceWith('header: 300ms')
    const t = await openTunnel(sluice.port, echoAuthority)
    t.socket.write('ping')
    assert.equal((await readBytes(t.socket, 4)).toString(), 'ping')

    // Opened after the tunnel: its 408 proves the tunnel has been up > 300 ms.
    const started = performance.now()
    const slow = await client(sluice.port)
    slow.socket.on('error', () => {})
    slow.socket.write('CONNECT 127.0.0.1:1 HTTP/1.1\r\n') // never finished
    const res = await readHead(slow.socket)
    assert.equal(res.status, 408)
    assert.ok(performance.now() - started >= 290, 'the 408 came before the header timeout')
    assert.match(res.headers['proxy-status'] ?? '', /ERR_HEADERS_TIMEOUT/)

    assert.equal(sluice.logs.some(r => isClosed(r, t.client)), false, 'the tunnel was closed')
    t.socket.write('still alive')
    assert.equal((await readBytes(t.socket, 11)).toString(), 'still alive')
    t.socket.end()
    await readAll(t.socket)
    const rec = await closedLog(sluice, t.client)
    assertEstablishedLog(rec, echoAuthority, 15, 15)
    assert.equal(rec.closed_by, 'client')
    assert.equal(rec.close, 'fin')
  })
})

describe('no leaks after a burst of tunnels ending every way', () => {
  let sluice: Sluice
  let echo: EchoServer
  let resetter: Target

  before(async () => {
    sluice = await startSluice(`
timeouts: { idle: 300ms }
rules:
  - name: deny-discard
    action: deny
    ports: [9]
${LOOPBACK_RULE}`)
    echo = await startEchoServer()
    // Resets the connection as soon as it receives anything.
    resetter = await startTarget((c) => { c.socket.once('data', () => c.socket.resetAndDestroy()) })
  })
  after(async () => {
    destroyClients()
    await sluice.close()
    await echo.close()
    await resetter.close()
  })

  it('~50 concurrent tunnels (FIN, resets, refused, denied, bad target, idle) all close and leave nothing behind', { timeout: 20_000 }, async (testCtx) => {
    const echoAuthority = `127.0.0.1:${echo.port}`
    const refused = await closedPort()
    const kinds = ['fin', 'client-reset', 'upstream-reset', 'refused', 'denied', 'bad-target', 'idle'] as const
    type Kind = typeof kinds[number]
    interface Outcome { kind: Kind, client: string, check: (rec: TunnelLog) => void }

    /** A CONNECT Sluice refuses: read the error head, then finish the close politely. */
    async function refusedConnect (authority: string, status: number, code: string): Promise<string> {
      const c = await client(sluice.port)
      const closed = closeOf(c.socket)
      c.socket.write(connectHead(authority))
      const res = await readHead(c.socket)
      assert.equal(res.status, status)
      assert.match(res.headers['proxy-status'] ?? '', new RegExp(`details="${code}:`))
      c.socket.end()
      c.socket.resume()
      await closed
      return c.client
    }

    /** A tunnel that was established: its record carries `bytes` up and down, closed as `closed` (closed_by, close). */
    const established = (kind: Kind, client: string, authority: string, bytes: readonly [number, number], closed: readonly [string, string]): Outcome => ({
      kind,
      client,
      check: (rec) => {
        assertEstablishedLog(rec, authority, bytes[0], bytes[1])
        assert.deepEqual([rec.closed_by, rec.close], closed)
      }
    })

    async function run (kind: Kind, i: number): Promise<Outcome> {
      const n = 1000 + i * 37
      switch (kind) {
        case 'fin': {
          const t = await openTunnel(sluice.port, echoAuthority)
          const payload = randomBytes(n)
          t.socket.end(payload)
          assert.ok((await readAll(t.socket)).equals(payload))
          return established(kind, t.client, echoAuthority, [n, n], ['client', 'fin'])
        }
        case 'client-reset': {
          const t = await openTunnel(sluice.port, echoAuthority)
          t.socket.write(randomBytes(n))
          await readBytes(t.socket, n)
          const closed = closeOf(t.socket)
          t.socket.resetAndDestroy()
          await closed
          return established(kind, t.client, echoAuthority, [n, n], ['client', 'reset'])
        }
        case 'upstream-reset': {
          const t = await openTunnel(sluice.port, resetter.authority)
          const eof = eofOf(t.socket)
          t.socket.resume()
          t.socket.write(randomBytes(n))
          const { error, ended } = await eof
          assert.equal(error?.code, 'ECONNRESET', `upstream reset: client saw ${error?.code ?? 'no error'} (EOF: ${String(ended)})`)
          return established(kind, t.client, resetter.authority, [n, 0], ['upstream', 'reset'])
        }
        case 'refused': {
          const c = await refusedConnect(`127.0.0.1:${refused}`, 502, 'ERR_UPSTREAM_REFUSED')
          return {
            kind,
            client: c,
            check: (rec) => {
              assert.equal(rec.status, 502)
              assert.equal(rec.code, 'ERR_UPSTREAM_REFUSED')
              assert.equal(rec.target, `127.0.0.1:${refused}`)
              assert.deepEqual([rec.closed_by, rec.close, rec.bytes_up, rec.bytes_down], ['proxy', 'rejected', 0, 0])
            }
          }
        }
        case 'denied': {
          const c = await refusedConnect('127.0.0.1:9', 403, 'ERR_POLICY_DENIED')
          return {
            kind,
            client: c,
            check: (rec) => {
              assert.equal(rec.status, 403)
              assert.equal(rec.code, 'ERR_POLICY_DENIED')
              assert.equal(rec.rule, 'deny-discard')
              assert.equal(rec.dialed, undefined)
              assert.deepEqual([rec.closed_by, rec.close], ['proxy', 'rejected'])
            }
          }
        }
        case 'bad-target': {
          const c = await refusedConnect('no-port.test', 400, 'ERR_BAD_TARGET')
          return {
            kind,
            client: c,
            check: (rec) => {
              assert.equal(rec.status, 400)
              assert.equal(rec.code, 'ERR_BAD_TARGET')
              assert.equal(rec.dialed, undefined)
              assert.deepEqual([rec.closed_by, rec.close], ['proxy', 'rejected'])
            }
          }
        }
        case 'idle': {
          const t = await openTunnel(sluice.port, echoAuthority)
          const eof = eofOf(t.socket)
          t.socket.resume()
          assert.deepEqual(await eof, { ended: true, error: undefined })
          t.socket.end()
          return established(kind, t.client, echoAuthority, [0, 0], ['proxy', 'idle_timeout'])
        }
      }
    }

    const baseline = await resourceCounts()
    const count = kinds.length * 7
    const outcomes = await Promise.all(Array.from({ length: count }, async (_, i) => await run(kinds[i % kinds.length] ?? 'fin', i)))
    assert.equal(outcomes.length, 49)

    const records = (await sluice.waitForLogs(r => isClosed(r), count)) as TunnelLog[]
    assert.equal(records.length, count, 'one tunnel closed record per CONNECT')
    for (const o of outcomes) {
      const mine = records.filter(r => r.client === o.client)
      assert.equal(mine.length, 1, `${o.kind} ${o.client}: ${mine.length} records`)
      const [rec] = mine
      assert.ok(rec !== undefined)
      try {
        o.check(rec)
      } catch (err) {
        throw new Error(`${o.kind} tunnel: ${(err as Error).message}\nrecord: ${JSON.stringify(rec)}`)
      }
    }
    assert.equal(sluice.proxy.registry.size, 0)
    assert.equal(await sluice.proxy.connections(), 0)
    assert.equal(relayBufferBytes(), 0, 'relay read buffers returned to the budget')
    assert.equal(sluice.logs.filter(r => isClosed(r)).length, count)

    destroyClients()
    assert.ok(await pollImmediate(1000, () => echo.connections() === 0), `echo server still has ${echo.connections()} connections`)
    // Closed handles leave the list as they are collected: a few rounds at most.
    let now = baseline
    let settled = false
    for (let i = 0; i < 20 && !settled; i++) {
      now = await resourceCounts()
      settled = now.Timeout <= baseline.Timeout && now.TCPSocketWrap <= baseline.TCPSocketWrap
    }
    assert.ok(settled, `resources before ${JSON.stringify(baseline)}, after ${JSON.stringify(now)}: ${process.getActiveResourcesInfo().join(', ')}`)
    assert.ok(now.Timeout <= baseline.Timeout)
    assert.ok(now.TCPSocketWrap <= baseline.TCPSocketWrap)
    testCtx.diagnostic(`resources before ${JSON.stringify(baseline)}, after ${JSON.stringify(now)}`)
  })
})
