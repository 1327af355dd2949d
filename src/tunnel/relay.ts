/**
 * The two-way byte pump (issue 6, docs/node-internals.md B1/B2), and the one module
 * that touches Node's private socket fields (issue 10).
 *
 * A plain socket allocates a fresh 64 KiB buffer for every read and pushes
 * it through the stream machinery ('data', pipe, write). Here each direction
 * reads with `onread` instead, into a buffer it reuses, and writes the bytes
 * straight to the other socket. The read buffer adapts:
 *
 * - An idle or chatty direction reads into one process-wide 16 KiB buffer
 *   and writes a copy of what it read, so an idle tunnel holds no buffer.
 * - A read that fills its buffer moves the direction to its own buffer,
 *   64 KiB and then ×4 up to 1 MiB, so a bulk transfer costs one read and
 *   one write per MiB instead of per 64 KiB. A short read moves it back.
 *   All own buffers together stay within a process-wide budget; past it a
 *   direction keeps the buffer it has.
 *
 * The in-flight guard: `write()` keeps a reference to the bytes, not a copy.
 * When a write does not complete at once (`writableLength > 0`), the
 * direction stops reading until it has, so the buffer is never overwritten
 * while queued; that is also the backpressure.
 *
 * Sockets accepted by a net.Server are built without `onread` (docs/node-internals.md
 * B2), so it is switched on after the fact through net.Socket's own fields
 * (Node 20 `onStreamRead` reads them on every read). A socket that lacks
 * them, such as a TLS socket, is relayed with `pipe()`. Once a socket is
 * relayed here, nothing else may read it ('data', 'readable', resume()):
 * Node's stream code could restart a handle the in-flight guard paused.
 *
 * Which path runs is decided once, at load, and `relayMode()` says which
 * (the server logs it at start-up):
 * - `onread` when net.Socket's private symbols `kBuffer`, `kBufferCb` and
 *   `kBufferGen` are found by name (Node 20.x has them);
 * - `pipe` for every socket when they are not, or when the environment
 *   says `SLUICE_RELAY=pipe` (any other value, or none, is automatic).
 *   The tests run the tunnel suites on both paths (`npm run test:relay-pipe`).
 *
 * `canReset()` is the other private read: whether a socket's handle is TCP,
 * the only kind `resetAndDestroy()` accepts.
 */
import { Socket } from 'node:net'
import { getSystemErrorName } from 'node:util'

const SHARED_SIZE = 16 * 1024
const FIRST_OWN = 64 * 1024
const MAX_OWN = 1024 * 1024
/** Bound on all own buffers together: 64 one-MiB directions, or more smaller ones. */
export const RELAY_BUDGET = 64 * 1024 * 1024

const shared = Buffer.allocUnsafe(SHARED_SIZE)
let ownBytes = 0

/** Bytes held in own read buffers right now (a leak check for tests). */
export function relayBufferBytes (): number { return ownBytes }

interface StreamHandle {
  reading: boolean
  readStart: () => number
  useUserBuffer: (buf: Uint8Array) => void
}
type Internals = Socket & { _handle: StreamHandle | null, encrypted?: boolean } & Record<symbol, unknown>

/** `SLUICE_RELAY=pipe`: relay every socket with `pipe()`, read once at load. */
const forcePipe = process.env['SLUICE_RELAY'] === 'pipe'

/** net.Socket's private onread fields, found by name once at load (none when `pipe()` is forced). */
const sym = (() => {
  if (forcePipe) return undefined
  const found = new Map<string, symbol>()
  for (const s of Object.getOwnPropertySymbols(new Socket())) found.set(s.description ?? '', s)
  const buffer = found.get('kBuffer')
  const callback = found.get('kBufferCb')
  const gen = found.get('kBufferGen')
  return buffer !== undefined && callback !== undefined && gen !== undefined ? { buffer, callback, gen } : undefined
})()

/** The path plain TCP sockets take in this process: `pipe` when forced or when the private fields are missing. */
export function relayMode (): 'onread' | 'pipe' {
  return sym === undefined ? 'pipe' : 'onread'
}

/**
 * Whether `resetAndDestroy()` can work on `socket`: Node 20 net.js throws
 * ERR_INVALID_HANDLE_TYPE unless the handle is TCP (a TLS socket's is a
 * TLSWrap), and a destroyed socket has no handle.
 */
export function canReset (socket: Socket): boolean {
  return (socket as Socket & { _handle?: object | null })._handle?.constructor.name === 'TCP'
}

/** Whether `src` can be read in place with `onread`; otherwise it is relayed with `pipe()`. */
export function readsInPlace (src: Socket): boolean {
  const s = src as Internals
  return sym !== undefined && s.encrypted !== true && typeof s._handle?.useUserBuffer === 'function'
}

/** The Half of a socket read in place. */
const kHalf = Symbol('sluice.relay')
type Relayed = Internals & { [kHalf]?: Half }

/**
 * Node calls the read callback as a method of the socket and then, as a
 * plain function, asks for the next buffer: so both are shared functions,
 * not closures per tunnel, and the second answers for the Half the first
 * just served (nothing runs in between).
 */
let serving: Half | undefined
function onReadShared (this: Relayed, n: number, buf: Buffer): boolean {
  serving = this[kHalf]
  return serving === undefined ? false : serving.onRead(n, buf)
}
function nextBufferShared (): Buffer {
  const half = serving
  serving = undefined
  return half?.buf ?? shared
}

/**
 * Judges a direction's first bytes before any of them goes on (the CONNECT
 * domain-fronting guard, tunnel/first-bytes-check.ts). `feed` gets each read
 * as a view of the relay's buffer, valid only during the call; it answers
 * whether to keep reading. Passing ends the gate (`Relay.startClient`).
 */
export interface Gate {
  feed (chunk: Buffer): boolean
}

/** One direction: reads `src` into its buffer and writes to `dst`. */
class Half {
  buf: Buffer = shared
  /** While set, what is read goes to the gate, not to `dst` (issue 14: no 'data' events, no 64 KiB read). */
  gate: Gate | undefined
  private paused = false
  private readonly src: Relayed
  private readonly dst: Socket

  constructor (src: Socket, dst: Socket) {
    this.src = src as Relayed
    this.dst = dst
  }

  start (): void {
    const src = this.src
    // Bytes the stream already holds (sent by the client while we dialed,
    // or by a parent after its 200) go first.
    for (let chunk = src.read() as Buffer | null; chunk !== null; chunk = src.read() as Buffer | null) {
      if (this.gate === undefined) this.dst.write(chunk)
      else if (!this.gate.feed(chunk)) return
    }
    // After EOF there is nothing left to read, and reading again would push past the end.
    if ((src as unknown as { _readableState: { ended: boolean } })._readableState.ended || src.destroyed) return
    const s = sym as NonNullable<typeof sym>
    src[kHalf] = this
    src[s.buffer] = this.buf
    src[s.gen] = nextBufferShared
    src[s.callback] = onReadShared
    const handle = src._handle as StreamHandle
    handle.useUserBuffer(this.buf)
    this.resume()
  }

  /** Give the own buffer back to the budget (the tunnel has closed). */
  release (): void { this.shrink() }

  onRead (n: number, buf: Buffer): boolean {
    // One test per read; true only for a tunnel's first reads under the guard.
    if (this.gate !== undefined) return this.gate.feed(buf.subarray(0, n))
    const dst = this.dst
    if (buf === shared) {
      // Shared by every direction: hand the writer a copy (from Node's
      // pool when small, as a plain socket read would allocate anyway).
      const copy = Buffer.allocUnsafe(n)
      buf.copy(copy, 0, 0, n)
      dst.write(copy, this.onWritten)
      if (n === buf.length) this.grow()
    } else {
      // A full read writes the buffer itself: no view to allocate.
      const full = n === buf.length
      dst.write(full ? buf : buf.subarray(0, n), this.onWritten)
      if (full) this.grow()
      else if (n < SHARED_SIZE) this.shrink()
    }
    if (dst.writableLength === 0) return true
    // Queued, so `buf` is still referenced: read nothing until it is written.
    this.paused = true
    return false
  }

  /** The write callback: called without `this`, so one closure per direction. */
  private readonly onWritten = (): void => {
    if (this.paused && this.dst.writableLength === 0 && !this.src.destroyed) {
      this.paused = false
      this.resume()
    }
  }

  private resume (): void {
    const handle = this.src._handle
    if (handle === null || handle.reading) return
    handle.reading = true
    const err = handle.readStart()
    if (err < 0) {
      handle.reading = false
      this.src.destroy(Object.assign(new Error(`read ${getSystemErrorName(err)}`), { code: getSystemErrorName(err) }))
    }
  }

  private grow (): void {
    const cur = this.buf === shared ? 0 : this.buf.length
    const size = cur === 0 ? FIRST_OWN : Math.min(cur * 4, MAX_OWN)
    if (size <= cur || ownBytes + size - cur > RELAY_BUDGET) return
    ownBytes += size - cur
    this.buf = Buffer.allocUnsafe(size)
  }

  private shrink (): void {
    if (this.buf === shared) return
    ownBytes -= this.buf.length
    this.buf = shared
  }
}

/**
 * Relay both ways. FINs are the caller's to forward (`end()` on the other
 * socket at 'end'): the tunnel also records who sent the first.
 */
export class Relay {
  private down: Half | undefined
  private readonly up: Half | undefined

  /**
   * `client` false: only upstream → client flows, until `startClient()`
   * (the first-bytes check, tunnel/first-bytes-check.ts, judges the
   * client's first bytes meanwhile, while a server that speaks first is heard).
   */
  constructor (downstream: Socket, upstream: Socket, client = true) {
    if (client) this.down = pump(downstream, upstream)
    this.up = pump(upstream, downstream)
  }

  /**
   * For a relay built with `client` false: read the client in place, as the
   * relay will, but hand its bytes to `gate` until `startClient()`. False
   * when the client cannot be read in place (pipe path): the gate reads it
   * itself then.
   */
  gateClient (downstream: Socket, upstream: Socket, gate: Gate): boolean {
    if (this.down !== undefined || !readsInPlace(downstream)) return false
    const half = new Half(downstream, upstream)
    half.gate = gate
    this.down = half
    half.start()
    return true
  }

  /** Start client → upstream, for a relay built with `client` false (or end its gate). */
  startClient (downstream: Socket, upstream: Socket): void {
    if (this.down === undefined) this.down = pump(downstream, upstream)
    else this.down.gate = undefined
  }

  /** Return the relay's buffers; call once both sockets have closed. */
  release (): void {
    this.down?.release()
    this.up?.release()
  }
}

function pump (src: Socket, dst: Socket): Half | undefined {
  if (!readsInPlace(src)) {
    src.pipe(dst, { end: false })
    return undefined
  }
  const half = new Half(src, dst)
  half.start()
  return half
}
