/**
 * Fuzzing the PROXY protocol reader, net/proxy-protocol.ts (issue 15).
 * Properties over random bytes, bytes that start with a signature,
 * generated valid v1 and v2 headers, and mutations of those:
 *
 * - exactly one answer and no exception: `incomplete` only while the bytes
 *   are fewer than a header can be (107 for v1, the v2 cap), `absent` only
 *   when they do not start like either signature, an error with a reason,
 *   or a header no longer than the bytes;
 * - any split gives the answer of the whole: the same reader fed the pieces;
 * - a header's `length` is exact: the first `length` bytes alone give the
 *   same header, and what follows changes nothing;
 * - a generated header is read as what was generated.
 *
 * Bounded in `npm test`; FUZZ_RUNS scales every run count, FUZZ_SEED replays.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { DEFAULT_MAX_V2_BYTES, MAX_V1_BYTES, mayBeProxyHeader, parseProxyHeader, ProxyHeaderReader, type ProxyHeaderResult } from '../../src/net/proxy-protocol.js'
import { canonicalIp } from '../../src/net/ip.js'
import { fuzzParams, fuzzTimeout, mutated, splits } from '../helpers/fuzz.js'
import { SIGNATURE, v1, v2 } from '../helpers/proxy-protocol.js'

function check (buf: Buffer, r: ProxyHeaderResult): void {
  switch (r.kind) {
    case 'incomplete':
      assert.ok(mayBeProxyHeader(buf), 'incomplete, yet not a signature\'s start')
      assert.ok(buf.length < Math.max(MAX_V1_BYTES, DEFAULT_MAX_V2_BYTES), `incomplete with ${buf.length} bytes`)
      if (buf[0] === 0x50) assert.ok(buf.length < MAX_V1_BYTES, `v1 incomplete with ${buf.length} bytes`)
      return
    case 'absent':
      assert.ok(!mayBeProxyHeader(buf))
      return
    case 'error':
      assert.ok(r.reason.length > 0)
      return
    case 'header': {
      const h = r.header
      assert.ok(h.length >= 15 && h.length <= buf.length)
      assert.ok(h.version === 1 ? h.length <= MAX_V1_BYTES : h.length <= DEFAULT_MAX_V2_BYTES)
      // Exact: the header's bytes alone give the same answer.
      assert.deepEqual(parseProxyHeader(buf.subarray(0, h.length)), r)
      if (h.version === 1) assert.equal(buf.subarray(h.length - 2, h.length).toString('latin1'), '\r\n')
      for (const e of [h.source, h.destination]) {
        if (e === undefined) continue
        assert.equal(canonicalIp(e.address), e.address, 'canonical address')
        assert.ok(Number.isInteger(e.port) && e.port >= 0 && e.port <= 65535)
      }
    }
  }
}

/** The reader fed `pieces` gives `whole`'s answer (it stops at a decisive one). */
function sameInPieces (pieces: Buffer[], whole: ProxyHeaderResult): void {
  const r = new ProxyHeaderReader()
  let last: ProxyHeaderResult = { kind: 'incomplete' }
  for (const p of pieces) {
    last = r.push(p)
    if (last.kind !== 'incomplete') break
  }
  assert.deepEqual(last, whole)
}

const startsLikeHeader = fc.oneof(
  fc.uint8Array({ maxLength: 200 }).map(b => Buffer.concat([Buffer.from('PROXY ', 'latin1'), Buffer.from(b)])),
  fc.uint8Array({ maxLength: 300 }).map(b => Buffer.concat([SIGNATURE, Buffer.from(b)])),
  fc.tuple(fc.constantFrom('TCP4', 'TCP6', 'UNKNOWN', 'TCP4 ', ''), fc.string({ unit: 'binary-ascii', maxLength: 110 }))
    .map(([p, rest]) => Buffer.from(`PROXY ${p}${rest}`, 'latin1'))
)

const endpoint4 = fc.record({ address: fc.ipV4(), port: fc.integer({ min: 0, max: 65535 }) })
const endpoint6 = fc.record({ address: fc.ipV6(), port: fc.integer({ min: 0, max: 65535 }) })
const pair = fc.oneof(fc.tuple(endpoint4, endpoint4), fc.tuple(endpoint6, endpoint6))
const tlvs = fc.array(fc.tuple(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 64 }).map(b => Buffer.from(b))), { maxLength: 4 })
const validHeader = fc.oneof(
  pair.map(([s, d]) => ({ bytes: v1(s.address, d.address, s.port, d.port), s, d })),
  fc.tuple(pair, tlvs).map(([[s, d], t]) => ({ bytes: v2(s, d, { tlvs: t }), s, d }))
)

/** As the reader writes a client: RFC 5952 text, and an IPv4-mapped address as its IPv4 (worked out here from the text). */
function asClient (a: string): string {
  const c = canonicalIp(a) ?? a
  const m = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(c)
  if (m === null) return c
  const hi = parseInt(m[1] ?? '0', 16)
  const lo = parseInt(m[2] ?? '0', 16)
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}

describe('PROXY protocol reader: fuzz', () => {
  it('random bytes: one answer, the same in any split', { timeout: fuzzTimeout(60_000) }, () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }).map(b => Buffer.from(b)).chain(b => fc.tuple(fc.constant(b), splits(b))), ([buf, pieces]) => {
      const r = parseProxyHeader(buf)
      check(buf, r)
      sameInPieces(pieces, r)
    }), fuzzParams(300))
  })

  it('bytes that start like a header: one answer, the same in any split', { timeout: fuzzTimeout(60_000) }, () => {
    fc.assert(fc.property(startsLikeHeader.chain(b => fc.tuple(fc.constant(b), splits(b))), ([buf, pieces]) => {
      const r = parseProxyHeader(buf)
      check(buf, r)
      sameInPieces(pieces, r)
    }), fuzzParams(500))
  })

  it('a generated header is read as generated, whatever follows, in any split', { timeout: fuzzTimeout(60_000) }, () => {
    const withData = fc.tuple(validHeader, fc.uint8Array({ maxLength: 64 }).map(b => Buffer.from(b)))
    fc.assert(fc.property(withData.chain(([h, data]) => {
      const all = Buffer.concat([h.bytes, data])
      return fc.tuple(fc.constant(h), fc.constant(all), splits(all))
    }), ([h, all, pieces]) => {
      const r = parseProxyHeader(all)
      check(all, r)
      assert.equal(r.kind, 'header', JSON.stringify(r))
      if (r.kind !== 'header') return
      assert.equal(r.header.length, h.bytes.length)
      assert.deepEqual(r.header.source, { address: asClient(h.s.address), port: h.s.port })
      assert.deepEqual(r.header.destination, { address: asClient(h.d.address), port: h.d.port })
      sameInPieces(pieces, r)
    }), fuzzParams(400))
  })

  it('mutated headers: one answer, the same in any split', { timeout: fuzzTimeout(60_000) }, () => {
    const mutants = mutated(validHeader.map(h => new Uint8Array(h.bytes)), 4)
    fc.assert(fc.property(mutants.chain(b => fc.tuple(fc.constant(b), splits(b))), ([buf, pieces]) => {
      const r = parseProxyHeader(buf)
      check(buf, r)
      sameInPieces(pieces, r)
    }), fuzzParams(600))
  })
})
