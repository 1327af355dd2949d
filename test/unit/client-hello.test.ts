/**
 * The ClientHello reader, tls/client-hello.ts (issue 14, `kind: sni`):
 * hellos captured from real clients at test time (node:tls, openssl
 * s_client, curl), the same hellos re-framed over several records and past
 * 16 KiB, fed whole, one byte at a time and in random splits, and every
 * error code. Properties over random input are in client-hello.fuzz.test.ts.
 */
import assert from 'node:assert/strict'
import { before, describe, it, type TestContext } from 'node:test'
import { HelloReader, parseClientHello, type ClientHello, type HelloErrorCode, type HelloResult } from '../../src/tls/client-hello.js'
import {
  alpnData, byteByByte, CURL_MISSING, curlHello, fixedPart, frame, helloOf, inPieces, messageOf, nodeHello, OPENSSL_MISSING,
  opensslHello, partsOf, record, sniData, u16, versionsData, withExtensions, type Extension
} from '../helpers/client-hello.js'

/** A deterministic PRNG (mulberry32), so a failing split can be replayed. */
function prng (seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `bytes` cut at `count` random points. */
function randomPieces (bytes: Buffer, count: number, next: () => number): Buffer[] {
  const cuts = Array.from({ length: count }, () => Math.floor(next() * bytes.length)).sort((a, b) => a - b)
  const pieces: Buffer[] = []
  let from = 0
  for (const cut of [...cuts, bytes.length]) {
    pieces.push(bytes.subarray(from, cut)) // empty pieces too: a reader must take them
    from = cut
  }
  return pieces
}

/** Whole, one byte at a time, and in 30 random splits: the same answer; a hello's comes at its last byte. */
function sameInAnySplit (bytes: Buffer, maxBytes?: number): HelloResult {
  const whole = parseClientHello(bytes, maxBytes)
  const { result, at } = byteByByte(bytes, maxBytes)
  assert.deepEqual(result, whole, 'one byte at a time vs whole')
  if (whole.kind === 'hello') assert.equal(at, whole.length, 'a hello is answered at its last byte, not before or after')
  const next = prng(bytes.length)
  for (let i = 0; i < 30; i++) {
    const pieces = randomPieces(bytes, 1 + (i % 12), next)
    assert.deepEqual(inPieces(pieces, maxBytes), whole, `in pieces of ${pieces.map(p => p.length).join('+')}`)
  }
  return whole
}

function hello (bytes: Buffer, maxBytes?: number): ClientHello {
  const r = sameInAnySplit(bytes, maxBytes)
  assert.equal(r.kind, 'hello', `expected a hello: ${JSON.stringify(r)}`)
  if (r.kind !== 'hello') throw new Error('unreachable')
  return r
}

function refused (bytes: Buffer, code: HelloErrorCode, detail?: RegExp, maxBytes?: number): void {
  const r = sameInAnySplit(bytes, maxBytes)
  assert.equal(r.kind, 'error', `expected ${code}: ${JSON.stringify(r)}`)
  if (r.kind !== 'error') throw new Error('unreachable')
  assert.equal(r.code, code, r.detail)
  if (detail !== undefined) assert.match(r.detail, detail)
}

/** A small valid hello message with these extensions (server_name, ALPN and supported_versions by default). */
function message (extensions?: Extension[]): Buffer {
  return helloOf(fixedPart(), extensions ?? [[0, sniData('a.example')], [16, alpnData(['h2'])], [43, versionsData([0x0304])]])
}

function needProgram (t: TestContext, missing: string | undefined): boolean {
  if (missing === undefined) return true
  if (process.env['CI'] !== undefined && process.env['CI'] !== '') assert.fail(`${missing}, and CI requires it`)
  t.skip(missing)
  return false
}

describe('hellos from real clients', () => {
  let node: Buffer
  let nodeNoSni: Buffer
  before(async () => {
    [node, nodeNoSni] = await Promise.all([nodeHello('Node.Example.test'), nodeHello(undefined)])
  })

  it('node:tls: the name lower-cased, ALPN, TLS 1.3 and 1.2, length = every byte it sent', () => {
    const h = hello(node)
    assert.equal(h.serverName, 'node.example.test')
    assert.deepEqual(h.alpn, ['h2', 'http/1.1'])
    assert.equal(h.legacyVersion, 0x0303)
    assert.deepEqual(h.supportedVersions?.slice(0, 2), [0x0304, 0x0303])
    assert.equal(h.echOffered, false)
    assert.equal(h.length, node.length)
    assert.equal(h.records, 1)
  })

  it('node:tls to an IP address sends no server_name: a hello whose serverName is undefined (the caller refuses it)', () => {
    const h = hello(nodeNoSni)
    assert.equal(h.serverName, undefined)
    assert.deepEqual(h.alpn, ['h2', 'http/1.1'])
    assert.equal(h.length, nodeNoSni.length)
  })

  it('openssl s_client -servername -alpn: the name as sent, lower-cased', async (t) => {
    if (!needProgram(t, OPENSSL_MISSING)) return
    const bytes = await opensslHello('Mixed.Example.test', 'h2,http/1.1')
    assert.ok(bytes.includes('Mixed.Example.test'), 'openssl sent the name in mixed case')
    const h = hello(bytes)
    assert.equal(h.serverName, 'mixed.example.test')
    assert.deepEqual(h.alpn, ['h2', 'http/1.1'])
    assert.equal(h.length, bytes.length)
    const none = hello(await opensslHello(undefined, 'http/1.1'))
    assert.equal(none.serverName, undefined)
    assert.deepEqual(none.alpn, ['http/1.1'])
  })

  it('curl --connect-to name:443:127.0.0.1:PORT https://name/', async (t) => {
    if (!needProgram(t, CURL_MISSING)) return
    const bytes = await curlHello('curl.example.test')
    const h = hello(bytes)
    assert.equal(h.serverName, 'curl.example.test')
    assert.deepEqual(h.alpn, ['h2', 'http/1.1'])
    assert.equal(h.length, bytes.length)
  })

  it('split across two records at every point of the handshake header and of the first 64 body bytes', () => {
    const m = messageOf(node)
    for (let cut = 1; cut < 68; cut++) {
      const bytes = frame(m, [cut, 16384])
      const h = cut < 12 ? hello(bytes) : parseClientHello(bytes) // every split for the header; whole beyond it (fast)
      assert.equal(h.kind, 'hello', `cut at ${cut}`)
      if (h.kind !== 'hello') continue
      assert.deepEqual([h.serverName, h.length, h.records], ['node.example.test', bytes.length, 2], `cut at ${cut}`)
    }
  })

  it('in one-byte records, and in records of random sizes: the same facts, length = the records', () => {
    const m = messageOf(node)
    const whole = hello(node)
    const tiny = frame(m, [1])
    const h = hello(tiny)
    assert.deepEqual({ ...h, length: 0, records: 0 }, { ...whole, length: 0, records: 0 })
    assert.deepEqual([h.length, h.records], [tiny.length, m.length])
    const next = prng(7)
    for (let i = 0; i < 20; i++) {
      const sizes = Array.from({ length: 8 }, () => 1 + Math.floor(next() * 200))
      const bytes = frame(m, sizes, i % 2 === 0 ? 0x0301 : 0x0303)
      const r = parseClientHello(bytes)
      assert.equal(r.kind, 'hello', `sizes ${sizes.join(',')}`)
      if (r.kind === 'hello') assert.deepEqual([r.serverName, r.length], ['node.example.test', bytes.length])
    }
  })

  it('a 17 KiB hello (padding 0x0015) across two records, and across three; over 16 KiB in one record is refused', () => {
    const padded = withExtensions(messageOf(node), (exts) => {
      assert.ok(!exts.some(([t]) => t === 0x0015), 'node sends no padding of its own')
      return [[0x0015, Buffer.alloc(17 * 1024 - node.length)], ...exts]
    })
    assert.ok(padded.length > 17_000)
    const two = frame(padded)
    const h = hello(two)
    assert.deepEqual([h.serverName, h.length, h.records], ['node.example.test', two.length, 2])
    const three = frame(padded, [9000, 4000, 16384])
    assert.deepEqual([hello(three).length, hello(three).records], [three.length, 3])
    refused(frame(padded, [padded.length]), 'MALFORMED', /over 2\^14/)
  })

  it('bytes after the hello (a ChangeCipherSpec, early data) are left to the caller', () => {
    const after = Buffer.concat([record(Buffer.from([1]), 0x14, 0x0303), record(Buffer.alloc(40, 9), 0x17, 0x0303)])
    const r = parseClientHello(Buffer.concat([node, after]))
    assert.equal(r.kind, 'hello')
    if (r.kind === 'hello') assert.equal(r.length, node.length)
    const reader = new HelloReader()
    assert.equal(reader.push(node.subarray(0, 100)).kind, 'incomplete')
    const done = reader.push(Buffer.concat([node.subarray(100), after]))
    assert.equal(done.kind === 'hello' && done.length, node.length)
    assert.deepEqual(reader.bytes, Buffer.concat([node, after]), 'bytes holds everything pushed, the hello first')
    assert.equal(reader.push(Buffer.from('more')), done, 'after an answer, the same answer, and nothing kept')
    assert.equal(reader.bytes.length, node.length + after.length)
  })

  it('ECH: encrypted_client_hello (0xfe0d) makes echOffered true; the name is the outer (public) one', () => {
    const m = withExtensions(messageOf(node), (exts) => [...exts, [0xfe0d, Buffer.from([0, 0, 1, 0, 1, 7, 0, 0, 0, 0])]])
    const h = hello(frame(m))
    assert.equal(h.echOffered, true)
    assert.equal(h.serverName, 'node.example.test')
  })
})

describe('names', () => {
  const named = (name: string): ClientHello => hello(frame(message([[0, sniData(name)]])))

  it('lower-cased; underscores, digits and hyphens kept; 253 bytes and 63-byte labels accepted', () => {
    assert.equal(named('WWW.Example.COM').serverName, 'www.example.com')
    assert.equal(named('_acme-challenge.x-1.example').serverName, '_acme-challenge.x-1.example')
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`
    assert.equal(long.length, 253)
    assert.equal(named(long).serverName, long)
    assert.equal(named('localhost').serverName, 'localhost')
  })

  it('an IP literal is returned as sent (RFC 6066 forbids it; the caller refuses it with its own code)', () => {
    assert.equal(named('192.0.2.1').serverName, '192.0.2.1')
  })

  it('a hello with no extensions at all (TLS 1.2 allows it) has no name and no ALPN', () => {
    const h = hello(frame(helloOf(fixedPart(0), undefined)))
    assert.deepEqual([h.serverName, h.alpn, h.supportedVersions], [undefined, [], undefined])
  })
})

describe('refuses, with a code', () => {
  it('NOT_TLS: HTTP, a PROXY header, an alert record, a record version that is not 3.x, a high-bit byte that is not SSLv2', () => {
    refused(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n'), 'NOT_TLS')
    assert.equal(parseClientHello(Buffer.from('G')).kind, 'error', 'refused at the first byte')
    refused(Buffer.from('PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n'), 'NOT_TLS')
    refused(record(Buffer.from([2, 40]), 0x15, 0x0303), 'NOT_TLS')
    refused(frame(message(), [16384], 0x0201), 'NOT_TLS', /major byte is 2/)
    refused(frame(message(), [16384], 0x0001), 'NOT_TLS')
    refused(Buffer.from([0x80, 0x20, 0x02, 0, 0]), 'NOT_TLS')
  })

  it('SSLV2: an SSLv2-compatible ClientHello', () => {
    const body = Buffer.concat([Buffer.from([1, 3, 1]), u16(3), u16(0), u16(16), Buffer.from([0, 0, 4]), Buffer.alloc(16, 1)])
    refused(Buffer.concat([Buffer.from([0x80, body.length]), body]), 'SSLV2')
    assert.equal(parseClientHello(Buffer.from([0x80, body.length])).kind, 'incomplete', 'the message type is the third byte')
  })

  it('NOT_CLIENT_HELLO: a ServerHello, a HelloRequest, a Finished-looking message', () => {
    for (const type of [2, 0, 20]) {
      const m = message()
      m[0] = type
      refused(frame(m), 'NOT_CLIENT_HELLO')
    }
  })

  const MALFORMED: ReadonlyArray<readonly [string, () => Buffer, RegExp?]> = [
    ['a zero-length record', () => Buffer.from([0x16, 3, 1, 0, 0]), /zero-length/],
    ['a record over 2^14', () => Buffer.from([0x16, 3, 1, 0x40, 0x01]), /2\^14/],
    ['an alert record between the hello\'s records', () => { const f = frame(message(), [20]); return Buffer.concat([f.subarray(0, 25), record(Buffer.from([2, 40]), 0x15), f.subarray(25)]) }, /type 21/],
    ['a ChangeCipherSpec between the hello\'s records', () => { const f = frame(message(), [3]); return Buffer.concat([f.subarray(0, 8), record(Buffer.from([1]), 0x14), f.subarray(8)]) }, /type 20/],
    ['a later record of version 2.x', () => { const f = frame(message(), [20]); f[26] = 2; return f }, /version 2/],
    ['the record goes on after the hello', () => record(Buffer.concat([message(), Buffer.from([0])])), /before its record/],
    ['a later record goes on after the hello', () => { const m = message(); return Buffer.concat([record(m.subarray(0, 20)), record(Buffer.concat([m.subarray(20), Buffer.from([0])]))]) }, /past the end/],
    ['legacy_version 2.0', () => { const m = message(); m.writeUInt16BE(0x0200, 4); return frame(m) }, /legacy_version/],
    ['a body too short for a random', () => frame(helloOf(Buffer.alloc(20, 3), undefined)), /random/],
    ['a 33-byte session id', () => frame(helloOf(fixedPart(33), undefined)), /session_id/],
    ['an odd cipher_suites length', () => { const f = fixedPart(0); f.writeUInt16BE(3, 35); return frame(helloOf(f.subarray(0, 40), undefined)) }, /cipher_suites/],
    ['empty cipher_suites', () => frame(helloOf(fixedPart(0, []), undefined)), /cipher_suites/],
    ['empty compression methods', () => { const f = fixedPart(0); f[41] = 0; return frame(helloOf(f.subarray(0, 42), undefined)) }, /compression_methods is empty/],
    ['cut inside compression methods', () => { const f = fixedPart(0); f[41] = 5; return frame(helloOf(f, undefined)) }, /inside legacy_compression_methods/],
    ['one byte after compression methods', () => frame(helloOf(Buffer.concat([fixedPart(), Buffer.from([0])]), undefined)), /one byte/],
    ['the extensions run past the hello', () => { const m = message(); return frame(helloOf(m.subarray(4, m.length - 3), undefined)) }, /run past the end/],
    ['garbage after the extensions, inside the hello', () => frame(helloOf(Buffer.concat([fixedPart(), u16(0), Buffer.from([0, 0, 0])]), undefined)), /bytes after the extensions/],
    ['an extension header cut short', () => frame(helloOf(Buffer.concat([fixedPart(), u16(3), Buffer.from([0, 0, 0])]), undefined)), /extension header/],
    ['an extension running past the hello', () => frame(helloOf(Buffer.concat([fixedPart(), u16(4), u16(9), u16(1)]), undefined)), /runs past/],
    ['two ALPN extensions', () => frame(message([[16, alpnData(['h2'])], [16, alpnData(['h2'])]])), /appears twice/],
    ['two unknown extensions of one type', () => frame(message([[0x1234, Buffer.alloc(0)], [0, sniData('a.b')], [0x1234, Buffer.alloc(1)]])), /4660 appears twice/],
    ['two server_name extensions', () => frame(message([[0, sniData('a.b')], [0, sniData('a.b')]])), /twice/],
    ['pre_shared_key not last', () => frame(message([[41, Buffer.alloc(4)], [0, sniData('a.b')]])), /pre_shared_key/],
    ['a server_name of type 1', () => frame(message([[0, sniData([1, 'a.b'])]])), /type 1/],
    ['a host_name and a name of another type', () => frame(message([[0, sniData('a.b', [2, 'c.d'])]])), /type 2/],
    ['two host_names', () => frame(message([[0, sniData('a.b', 'c.d')]])), /more than one/],
    ['an empty host_name', () => frame(message([[0, sniData('')]])), /empty host_name/],
    ['an empty ServerNameList', () => frame(message([[0, u16(0)]])), /empty ServerNameList/],
    ['server_name with no list', () => frame(message([[0, Buffer.alloc(0)]])), /no ServerNameList/],
    ['a ServerNameList length that does not match', () => frame(message([[0, Buffer.concat([sniData('a.b'), Buffer.from([0])])]])), /does not match/],
    ['a host_name running past its list', () => { const d = sniData('a.b'); d.writeUInt16BE(9, 3); return frame(message([[0, d]])) }, /runs past/],
    ['a ServerName cut inside its header', () => frame(message([[0, Buffer.concat([u16(2), Buffer.from([0, 0])])]])), /inside a ServerName/],
    ['a space in a name', () => frame(message([[0, sniData('a b.example')]])), /0x20/],
    ['a colon (an IPv6 literal or a port)', () => frame(message([[0, sniData('a.example:443')]])), /0x3a/],
    ['a byte above 0x7f', () => frame(message([[0, sniData('b\xfccher.example')]])), /0xfc/],
    ['a NUL', () => frame(message([[0, sniData('a.example\x00.evil')]])), /0x00/],
    ['a trailing dot', () => frame(message([[0, sniData('a.example.')]])), /empty label/],
    ['a leading dot', () => frame(message([[0, sniData('.a.example')]])), /empty label/],
    ['a doubled dot', () => frame(message([[0, sniData('a..example')]])), /empty label/],
    ['a 254-byte name', () => frame(message([[0, sniData(`${'a.'.repeat(126)}bc`)]])), /254 bytes/],
    ['a 64-byte label', () => frame(message([[0, sniData(`${'a'.repeat(64)}.example`)]])), /label over 63/],
    ['an empty ALPN list', () => frame(message([[16, u16(0)]])), /empty ALPN/],
    ['ALPN with no list', () => frame(message([[16, Buffer.alloc(1)]])), /no protocol_name_list/],
    ['an empty ALPN name', () => frame(message([[16, Buffer.concat([u16(3), Buffer.from([0, 1, 0x61])])]])), /empty ALPN protocol name/],
    ['an ALPN name running past its list', () => frame(message([[16, Buffer.concat([u16(2), Buffer.from([5, 0x61])])]])), /runs past/],
    ['an ALPN list length that does not match', () => frame(message([[16, Buffer.concat([alpnData(['h2']), Buffer.from([0])])]])), /does not match/],
    ['supported_versions of odd length', () => frame(message([[43, Buffer.from([3, 3, 4, 3])]])), /even/],
    ['empty supported_versions', () => frame(message([[43, Buffer.alloc(0)]])), /empty/],
    ['a supported_versions length that does not match', () => frame(message([[43, Buffer.from([4, 3, 4])]])), /does not match/],
    ['an empty ClientHello', () => frame(Buffer.from([1, 0, 0, 0])), /random/]
  ]

  for (const [what, bytes, detail] of MALFORMED) {
    it(`MALFORMED: ${what}`, () => { refused(bytes(), 'MALFORMED', detail) })
  }

  it('TOO_LARGE: as soon as the declared length cannot fit the cap, or a record passes it; a hello of exactly the cap is read', () => {
    const m = message()
    const bytes = frame(m)
    assert.equal(hello(bytes, bytes.length).length, bytes.length)
    refused(bytes, 'TOO_LARGE', /records pass/, bytes.length - 1)
    assert.equal(parseClientHello(bytes.subarray(0, 9), bytes.length - 1).kind, 'error', 'refused at the handshake header')
    // The default cap, 64 KiB, against a declared 16 MiB message: refused at its ninth byte.
    refused(Buffer.from([0x16, 3, 1, 0x40, 0, 1, 0xff, 0xff, 0xff]), 'TOO_LARGE')
    // In one-byte records a 100-byte hello takes 600 bytes: refused at the record that passes the cap.
    const tiny = frame(m, [1])
    refused(tiny, 'TOO_LARGE', /records pass 512/, 512)
    assert.equal(parseClientHello(tiny.subarray(0, 510), 512).kind, 'incomplete')
    assert.equal(hello(tiny, tiny.length).length, tiny.length)
  })

  it('a cap that is not a positive integer is a programming error', () => {
    assert.throws(() => new HelloReader(0), RangeError)
    assert.throws(() => parseClientHello(Buffer.alloc(0), 1.5), RangeError)
  })
})

describe('HelloReader', () => {
  it('grows its buffer by doubling, so a hello pushed one byte at a time is copied a linear number of bytes', () => {
    const m = withExtensions(message(), (exts) => [[0x0015, Buffer.alloc(60_000)], ...exts])
    const bytes = frame(m)
    const reader = new HelloReader()
    const buffers = new Set<ArrayBufferLike>()
    let r: HelloResult = { kind: 'incomplete' }
    for (let i = 0; i < bytes.length; i++) {
      r = reader.push(bytes.subarray(i, i + 1))
      buffers.add(reader.bytes.buffer)
    }
    assert.equal(r.kind, 'hello')
    // 4 KiB, 8, 16, 32, 64: each a copy of what came before it.
    assert.ok(buffers.size <= 6, `${buffers.size} buffers for ${bytes.length} bytes`)
    assert.deepEqual(reader.bytes, bytes)
  })

  it('reads a hello that came in one push where it lies, and copies a first push it must wait on', () => {
    const bytes = frame(message())
    const one = new HelloReader()
    assert.equal(one.push(bytes).kind, 'hello')
    assert.equal(one.bytes.buffer, bytes.buffer, 'no copy')
    const chunk = Buffer.from(bytes.subarray(0, 50))
    const two = new HelloReader()
    assert.equal(two.push(chunk).kind, 'incomplete')
    chunk.fill(0) // the owner reuses its memory
    const r = two.push(bytes.subarray(50))
    assert.equal(r.kind, 'hello')
    assert.deepEqual(two.bytes, bytes)
  })

  it('a one-shot parse and a reader agree on empty input: incomplete', () => {
    assert.equal(parseClientHello(Buffer.alloc(0)).kind, 'incomplete')
    assert.equal(new HelloReader().push(new Uint8Array(0)).kind, 'incomplete')
    assert.equal(parseClientHello(new Uint8Array(frame(message()))).kind, 'hello', 'a plain Uint8Array is read too')
  })
})

/** partsOf and helloOf, the test's own framing, round-trip a real hello (so the cases above test the parser, not the builder). */
describe('the test helpers', () => {
  it('take a hello apart and put it back byte for byte', async () => {
    const bytes = await nodeHello('rt.example')
    const m = messageOf(bytes)
    const { fixed, extensions } = partsOf(m)
    assert.deepEqual(helloOf(fixed, extensions), m)
    assert.deepEqual(frame(m), bytes)
  })
})
