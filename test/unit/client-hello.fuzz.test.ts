/**
 * Fuzzing the ClientHello reader, tls/client-hello.ts (issue 14: "Fuzz the
 * ClientHello parser with fast-check, as a bounded run in `npm test`").
 * Properties, over random bytes, bytes that start like a TLS record,
 * generated valid hellos in random framings, and mutations of those and of
 * hellos captured from node:tls at test time:
 *
 * - exactly one answer and no exception: `incomplete` (only while fewer
 *   than the cap plus a record header are in), a hello, or an error with a
 *   known code and a detail;
 * - split at every byte boundary gives the same result as whole: fed one
 *   byte at a time to one reader, the answer is the whole input's, and at
 *   each byte it is what a one-shot parse of that prefix says; small inputs
 *   are also cut in two at every point, larger ones at random points;
 * - a hello's `length` is exactly its records: whole records, carrying one
 *   whole handshake message, checked by the test's own framing code; and
 *   the bytes after them change nothing;
 * - a generated valid hello is read as what was generated.
 *
 * Bounded in `npm test`; FUZZ_RUNS scales every run count, FUZZ_SEED replays.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { DEFAULT_MAX_HELLO_BYTES, HelloReader, parseClientHello, type HelloResult } from '../../src/tls/client-hello.js'
import {
  alpnData, browserLikeHello, frame, helloOf, inPieces, messageOf, nodeHello, recordsComplete, sniData, u16, versionsData, type Extension
} from '../helpers/client-hello.js'
import { fuzzParams, fuzzTimeout, mutated, splits } from '../helpers/fuzz.js'

const CODES = new Set(['NOT_TLS', 'SSLV2', 'NOT_CLIENT_HELLO', 'MALFORMED', 'TOO_LARGE'])

/** Captured once, at test time: a real client's hellos, with and without SNI, and a browser-shaped one. */
const REAL = [...await Promise.all([nodeHello('fuzz.example.test'), nodeHello(undefined)]), frame(browserLikeHello('www.example.com'))]

function shown (b: Buffer): string {
  return b.length <= 64 ? b.toString('hex') : `${b.subarray(0, 64).toString('hex')}… (${b.length} bytes)`
}

/** One answer, well-formed, for `buf` under `max`. */
function checkOne (buf: Buffer, r: HelloResult, max: number): void {
  switch (r.kind) {
    case 'incomplete':
      assert.ok(buf.length < max + 5, `incomplete with ${buf.length} bytes under a cap of ${max}: ${shown(buf)}`)
      return
    case 'error':
      assert.ok(CODES.has(r.code), `unknown code ${r.code}`)
      assert.ok(r.detail.length > 0)
      return
    case 'hello': {
      assert.ok(r.length <= buf.length && r.length <= max, `length ${r.length} of ${buf.length} (cap ${max})`)
      const records = buf.subarray(0, r.length)
      assert.ok(recordsComplete(records), `the first ${r.length} bytes are not whole records carrying one message: ${shown(buf)}`)
      const m = messageOf(records)
      assert.equal(m.length, 4 + m.readUIntBE(1, 3), 'the records carry exactly the message, nothing after it')
      assert.ok(!recordsComplete(buf.subarray(0, r.length - 1)), 'and not one byte fewer')
      // The bytes after the records change nothing.
      assert.deepEqual(parseClientHello(records, max), r)
      if (r.serverName !== undefined) assert.match(r.serverName, /^[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63})*$/)
    }
  }
}

/** Every property on one input under one cap. */
function check (buf: Buffer, max = DEFAULT_MAX_HELLO_BYTES): HelloResult {
  const whole = parseClientHello(buf, max)
  checkOne(buf, whole, max)
  // One byte at a time: at each byte, what a one-shot parse of that prefix says.
  const reader = new HelloReader(max)
  let at = buf.length
  for (let n = 1; n <= buf.length; n++) {
    const r = reader.push(buf.subarray(n - 1, n))
    assert.deepEqual(r, parseClientHello(buf.subarray(0, n), max), `reader and one-shot differ at ${n} bytes of ${shown(buf)}`)
    if (r.kind !== 'incomplete') {
      at = n
      assert.deepEqual(r, whole, `one byte at a time (answered at ${n}) vs whole: ${shown(buf)}`)
      break
    }
  }
  if (at === buf.length) assert.deepEqual(reader.push(Buffer.alloc(0)), whole)
  if (whole.kind === 'hello') assert.equal(at, whole.length, 'a hello is answered at its last byte')
  // Small inputs: cut in two at every point.
  if (buf.length <= 300) {
    for (let cut = 1; cut < buf.length; cut++) {
      assert.deepEqual(inPieces([buf.subarray(0, cut), buf.subarray(cut)], max), whole, `cut at ${cut}: ${shown(buf)}`)
    }
  }
  return whole
}

// ------------------------------------------------------------ generators

/** A host name as clients send it: fc's domains, some letters upper-cased, some labels with `_`. */
const hostName = fc.tuple(fc.domain(), fc.array(fc.boolean(), { maxLength: 40 }), fc.boolean())
  .map(([d, upper, underscore]) => (underscore ? `_${d}` : d).split('').map((c, i) => upper[i] === true ? c.toUpperCase() : c).join(''))
  .filter(n => n.length <= 253)

interface Spec {
  readonly legacyVersion: number
  readonly sessionId: number
  readonly suites: number
  readonly compression: number
  readonly name: string | undefined
  readonly alpn: string[] | undefined
  readonly versions: number[] | undefined
  readonly ech: boolean
  readonly others: Array<[number, Uint8Array]>
  readonly psk: boolean
}

const KNOWN = new Set([0, 16, 41, 43, 0xfe0d])
const spec: fc.Arbitrary<Spec> = fc.record({
  legacyVersion: fc.integer({ min: 0x0300, max: 0x03ff }),
  sessionId: fc.integer({ min: 0, max: 32 }),
  suites: fc.integer({ min: 1, max: 60 }),
  compression: fc.integer({ min: 1, max: 4 }),
  name: fc.option(hostName, { nil: undefined }),
  alpn: fc.option(fc.array(fc.string({ unit: fc.integer({ min: 0x21, max: 0xff }).map(c => String.fromCharCode(c)), minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 5 }), { nil: undefined }),
  versions: fc.option(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 10 }), { nil: undefined }),
  ech: fc.boolean(),
  others: fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: 0xffff }).filter(t => !KNOWN.has(t)), fc.uint8Array({ maxLength: 64 })), { selector: ([t]) => t, maxLength: 12 }),
  psk: fc.boolean()
})

/** The message a spec describes, its extensions in a shuffled order (pre_shared_key last). */
function built (s: Spec, order: readonly number[]): Buffer {
  const fixed = Buffer.concat([u16(s.legacyVersion), Buffer.alloc(32, 7), Buffer.from([s.sessionId]), Buffer.alloc(s.sessionId, 1),
    u16(s.suites * 2), Buffer.alloc(s.suites * 2, 0x13), Buffer.from([s.compression]), Buffer.alloc(s.compression)])
  const exts: Extension[] = s.others.map(([t, d]) => [t, Buffer.from(d)])
  if (s.name !== undefined) exts.push([0, sniData(s.name)])
  if (s.alpn !== undefined) exts.push([16, alpnData(s.alpn)])
  if (s.versions !== undefined) exts.push([43, versionsData(s.versions)])
  if (s.ech) exts.push([0xfe0d, Buffer.from([0, 0, 1, 0, 1, 3])])
  const shuffled = exts.map((e, i) => [order[i] ?? i, e] as const).sort((a, b) => a[0] - b[0]).map(([, e]) => e)
  if (s.psk) shuffled.push([41, Buffer.alloc(8, 9)])
  // With nothing to carry, sometimes no extensions block at all (TLS 1.2 allows it).
  return helloOf(fixed, shuffled.length === 0 && order.length % 2 === 0 ? undefined : shuffled)
}

/** Fragment sizes: mostly small (many records), sometimes whole. */
const sizes = fc.array(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 400 }), fc.constant(16384)), { minLength: 1, maxLength: 6 })

/** A valid hello: its spec, and its records (in a random framing) followed by random bytes. */
const valid = fc.tuple(spec, fc.array(fc.nat(), { maxLength: 20 }), sizes, fc.constantFrom(0x0301, 0x0303), fc.uint8Array({ maxLength: 16 }))
  .map(([s, order, sz, version, after]) => {
    const records = frame(built(s, order), sz, version)
    return { s, records, bytes: Buffer.concat([records, after]) }
  })

const real = fc.tuple(fc.constantFrom(...REAL), sizes).map(([r, sz]) => new Uint8Array(frame(messageOf(r), sz)))

const input: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map(b => Buffer.from(b)) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom([0x16, 3, 1], [0x16, 3, 3], [0x80], [0x16]), fc.uint8Array({ maxLength: 120 })).map(([h, b]) => Buffer.from([...h, ...b])) },
  { weight: 3, arbitrary: mutated(valid.map(v => new Uint8Array(v.bytes)), 3) },
  { weight: 3, arbitrary: mutated(real, 3) }
)

/** A cap: mostly the default, sometimes small enough to meet. */
const cap = fc.oneof({ weight: 3, arbitrary: fc.constant(DEFAULT_MAX_HELLO_BYTES) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 3000 }) })

// ------------------------------------------------------------ properties

describe('ClientHello reader fuzz', { timeout: fuzzTimeout(60_000) }, () => {
  it('random, TLS-looking and mutated bytes: one well-formed answer, the same one byte at a time and at every cut', () => {
    fc.assert(fc.property(input, cap, (b, max) => { check(b, max) }), fuzzParams(300))
  })

  it('generated valid hellos in any framing: read as generated, length = their records', () => {
    fc.assert(fc.property(valid, ({ s, records, bytes }) => {
      const r = check(bytes)
      const expected: HelloResult = {
        kind: 'hello',
        serverName: s.name?.toLowerCase(),
        alpn: s.alpn ?? [],
        echOffered: s.ech,
        legacyVersion: s.legacyVersion,
        supportedVersions: s.versions,
        length: records.length,
        records: countRecords(records)
      }
      assert.deepEqual(r, expected)
    }), fuzzParams(150))
  })

  it('real hellos, re-framed and mutated: never an exception; random splits answer as whole', () => {
    fc.assert(fc.property(mutated(real, 4).chain(b => fc.tuple(fc.constant(b), splits(b))), ([b, pieces]) => {
      const whole = parseClientHello(b)
      checkOne(b, whole, DEFAULT_MAX_HELLO_BYTES)
      assert.deepEqual(inPieces(pieces), whole, `in pieces of ${pieces.map(p => p.length).join('+')}`)
    }), fuzzParams(300))
  })
})

function countRecords (records: Buffer): number {
  let n = 0
  for (let at = 0; at + 5 <= records.length; at += 5 + records.readUInt16BE(at + 3)) n++
  return n
}
