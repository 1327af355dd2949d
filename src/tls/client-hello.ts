/**
 * Sluice's own TLS ClientHello reader, for routing by SNI without touching
 * the TLS (issue 14, `kind: sni`, and the CONNECT domain-fronting guard).
 * We write our own: node:tls reads a hello only by terminating the
 * handshake, and the SNI routers issue 14 measured (haproxy, sniproxy) fail
 * a hello split across two records. This one is strict, incremental and
 * fuzzed (test/unit/client-hello.fuzz.test.ts).
 *
 * One entry point per use, both giving the same answers:
 * - `HelloReader`: push the bytes as they arrive, in any split (one byte at a
 *   time, many segments, a hello fragmented over several TLS records or over
 *   16 KiB); each call reads only the new bytes, and the bytes are kept in
 *   one buffer that grows by doubling, so copying is linear;
 * - `parseClientHello`: the bytes at hand, at once.
 *
 * The answer is one of:
 * - `incomplete`: more bytes are needed;
 * - `hello`: the server name (lower-cased, undefined when the client sent
 *   none), ALPN, whether ECH was offered, the versions, and `length`, the
 *   exact record bytes to replay to the server;
 * - `error` with a code: NOT_TLS, SSLV2, NOT_CLIENT_HELLO, MALFORMED or
 *   TOO_LARGE (hello-result.ts says when each applies).
 *
 * A hello without server_name is a `hello` whose serverName is undefined,
 * not an error: the listener decides what a hello without SNI gets (its own
 * code, or a default route), and the domain-fronting guard may let one
 * through. An IP literal as SNI is returned as sent, for the same reason.
 *
 * The parts: the record layer and gathering a hello across records
 * (hello-records.ts), the ClientHello message (hello-body.ts), the
 * extensions it reads (hello-extensions.ts), and the result types
 * (hello-result.ts).
 */
import { DEFAULT_MAX_HELLO_BYTES, HelloScan, scanHello } from './hello-records.js'
import type { HelloResult } from './hello-result.js'

export { DEFAULT_MAX_HELLO_BYTES } from './hello-records.js'
export type { ClientHello, HelloError, HelloErrorCode, HelloResult } from './hello-result.js'

const EMPTY = Buffer.alloc(0)
/** The first buffer a reader allocates, when a hello does not arrive in one piece. */
const FIRST_CAPACITY = 4096

function asBuffer (bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** One-shot calls share this (parsing is synchronous). */
const scratch = new HelloScan()

/**
 * Read the ClientHello at the start of `bytes`, all at once. Bytes after
 * its records (early data, a ChangeCipherSpec) are left to the caller:
 * `length` says where they start.
 */
export function parseClientHello (bytes: Uint8Array, maxBytes = DEFAULT_MAX_HELLO_BYTES): HelloResult {
  const s = maxBytes === scratch.maxBytes ? scratch.reset() : new HelloScan(maxBytes)
  return scanHello(asBuffer(bytes), bytes.length, s)
}

/**
 * Reads a ClientHello from bytes pushed as they arrive, one per connection.
 * `push` answers as `parseClientHello` would on all the bytes pushed so
 * far; after an answer other than `incomplete` it returns that answer again
 * and keeps no more bytes.
 */
export class HelloReader {
  readonly #scan: HelloScan
  #buf: Buffer = EMPTY
  #end = 0
  /** #buf is ours, not the caller's first chunk. */
  #owned = false

  /** `maxBytes`: the cap on the hello's records (TOO_LARGE beyond it); 64 KiB by default. */
  constructor (maxBytes = DEFAULT_MAX_HELLO_BYTES) {
    this.#scan = new HelloScan(maxBytes)
  }

  push (chunk: Uint8Array): HelloResult {
    if (this.#scan.done !== undefined) return this.#scan.done
    this.#append(chunk)
    const r = scanHello(this.#buf, this.#end, this.#scan)
    // A chunk's memory may be reused by its owner once we return: keep what we must wait on.
    if (r.kind === 'incomplete' && !this.#owned && this.#end > 0) this.#grow(this.#end)
    return r
  }

  /**
   * Every byte pushed so far: the hello's records (its first `length`
   * bytes), then what came after them in the same pushes. When the whole
   * hello came in one push this is a view of that chunk, not a copy.
   */
  get bytes (): Buffer {
    return this.#buf.subarray(0, this.#end)
  }

  #append (chunk: Uint8Array): void {
    if (chunk.length === 0) return
    if (this.#end === 0) {
      // The usual case, a hello in one segment: read it where it lies.
      this.#buf = asBuffer(chunk)
      this.#end = chunk.length
      this.#owned = false
      return
    }
    const end = this.#end + chunk.length
    if (!this.#owned || end > this.#buf.length) this.#grow(end)
    this.#buf.set(chunk, this.#end)
    this.#end = end
  }

  /** Move the bytes into a buffer of ours that holds at least `size`, doubling, so copying stays linear. */
  #grow (size: number): void {
    let capacity = this.#owned ? this.#buf.length * 2 : FIRST_CAPACITY
    while (capacity < size) capacity *= 2
    const next = Buffer.allocUnsafe(capacity)
    this.#buf.copy(next, 0, 0, this.#end)
    this.#buf = next
    this.#owned = true
  }
}
