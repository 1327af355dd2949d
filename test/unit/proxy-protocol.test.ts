/**
 * The PROXY protocol reader, net/proxy-protocol.ts (issue 15;
 * docs/proxy-protocol.md): v1 and v2 headers as HAProxy's specification
 * writes them, fed whole, one byte at a time and cut in two at every
 * point; every rule of the specification that makes a header invalid;
 * the answer for bytes that are not a header. Random input is in
 * proxy-protocol.fuzz.test.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { DEFAULT_MAX_V2_BYTES, parseProxyHeader, ProxyHeaderReader, type ProxyHeaderResult } from '../../src/net/proxy-protocol.js'
import { SIGNATURE, v1, v2 } from '../helpers/proxy-protocol.js'

/** Whole, byte by byte, and cut in two everywhere: the same answer, and `incomplete` before the end. */
function read (bytes: Buffer): ProxyHeaderResult {
  const whole = parseProxyHeader(bytes)
  const r = new ProxyHeaderReader()
  let last: ProxyHeaderResult = { kind: 'incomplete' }
  for (let i = 0; i < bytes.length; i++) {
    last = r.push(bytes.subarray(i, i + 1))
    if (last.kind !== 'incomplete') {
      // The answer comes at the first byte that decides it, and a one-shot parse of that prefix agrees.
      assert.deepEqual(parseProxyHeader(bytes.subarray(0, i + 1)), last)
      break
    }
  }
  for (let cut = 1; cut < bytes.length; cut++) {
    const two = new ProxyHeaderReader()
    const first = two.push(bytes.subarray(0, cut))
    const second = first.kind === 'incomplete' ? two.push(bytes.subarray(cut)) : first
    assert.deepEqual(second, whole, `cut at ${cut}`)
  }
  if (whole.kind !== 'incomplete') assert.deepEqual(last, whole, 'byte by byte as whole')
  return whole
}

const text = (s: string): Buffer => Buffer.from(s, 'latin1')
const DATA = text('CONNECT a.test:443 HTTP/1.1\r\n\r\n')

function header (r: ProxyHeaderResult): Extract<ProxyHeaderResult, { kind: 'header' }>['header'] {
  assert.equal(r.kind, 'header', JSON.stringify(r))
  return (r as Extract<ProxyHeaderResult, { kind: 'header' }>).header
}

function reason (r: ProxyHeaderResult): string {
  assert.equal(r.kind, 'error', JSON.stringify(r))
  return (r as Extract<ProxyHeaderResult, { kind: 'error' }>).reason
}

describe('v1 (§2.1)', () => {
  it('TCP4 and TCP6, the data after the CRLF is not the header', () => {
    const h4 = v1('203.0.113.7', '127.0.0.1', 56324, 3128)
    assert.deepEqual(header(read(Buffer.concat([h4, DATA]))), {
      version: 1, command: 'proxy', source: { address: '203.0.113.7', port: 56324 }, destination: { address: '127.0.0.1', port: 3128 }, length: h4.length
    })
    const h6 = text('PROXY TCP6 2001:DB8:0:0:0:0:0:7 ::1 0 65535\r\n')
    assert.deepEqual(header(read(Buffer.concat([h6, DATA]))), {
      version: 1, command: 'proxy', source: { address: '2001:db8::7', port: 0 }, destination: { address: '::1', port: 65535 }, length: h6.length
    })
  })

  it('an IPv4-mapped IPv6 address (as inet_ntop writes it) is the IPv4 client', () => {
    assert.equal(header(read(text('PROXY TCP6 ::ffff:198.51.100.9 ::1 1 2\r\n'))).source?.address, '198.51.100.9')
  })

  it('UNKNOWN: short form and long form, no address (the connection\'s own is used)', () => {
    assert.deepEqual(header(read(text('PROXY UNKNOWN\r\n'))), { version: 1, command: 'proxy', length: 15 })
    const long = text(`PROXY UNKNOWN ${'f'.repeat(39)} ${'f'.repeat(39)} 65535 65535\r\n`)
    assert.equal(long.length, 107)
    assert.equal(header(read(long)).length, 107)
  })

  it('107 bytes at most, CRLF included; a lone CR or LF is not a line end', () => {
    assert.match(reason(read(text(`PROXY UNKNOWN ${'x'.repeat(92)}\r\n`))), /no CRLF in its first 107 bytes/)
    assert.match(reason(read(text(`PROXY UNKNOWN ${'x'.repeat(200)}`))), /no CRLF/)
    assert.match(reason(read(text('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'))), /LF without CR/)
    assert.match(reason(read(text('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX'))), /CR without LF/)
  })

  const bad: Array<[string, RegExp]> = [
    ['PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n', /protocol "TCP5"/],
    ['PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol "tcp4"/],
    ['PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', /fields/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n', /fields/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n', /fields/],
    ['PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n', /protocol ""/],
    ['PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n', /source address "01.2.3.4"/],
    ['PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n', /source address/],
    ['PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n', /source address/],
    ['PROXY TCP4 ::1 5.6.7.8 1 2\r\n', /not an IPv4/],
    ['PROXY TCP6 1.2.3.4 ::1 1 2\r\n', /not an IPv6/],
    ['PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n', /not an IPv6/],
    ['PROXY TCP6 1::2::3 ::1 1 2\r\n', /not an IPv6/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n', /source port "01"/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n', /destination port "65536"/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n', /source port/],
    ['PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n', /source port/],
    ['PROXY TCP4 1.2.3.4 example.com 1 2\r\n', /destination address/]
  ]
  for (const [line, why] of bad) {
    it(`refuses ${JSON.stringify(line)}`, () => { assert.match(reason(read(text(line))), why) })
  }
})

describe('v2 (§2.2)', () => {
  const src = { address: '203.0.113.7', port: 40000 }
  const dst = { address: '127.0.0.1', port: 3128 }

  it('PROXY over TCP/IPv4 and TCP/IPv6, with the data after it', () => {
    const h = v2(src, dst)
    assert.equal(h.length, 28)
    assert.deepEqual(header(read(Buffer.concat([h, DATA]))), { version: 2, command: 'proxy', source: src, destination: dst, length: 28 })
    const h6 = v2({ address: '2001:db8::7', port: 1 }, { address: '::1', port: 2 })
    assert.deepEqual(header(read(h6)), { version: 2, command: 'proxy', source: { address: '2001:db8::7', port: 1 }, destination: { address: '::1', port: 2 }, length: 52 })
    assert.equal(header(read(v2({ address: '::ffff:198.51.100.9', port: 1 }, { address: '::1', port: 2 }))).source?.address, '198.51.100.9')
  })

  it('TLVs are skipped, each within the length; the NOOP and the SSL ones alike', () => {
    const h = v2(src, dst, { tlvs: [[0x04, Buffer.alloc(0)], [0x20, Buffer.from('0100000000', 'hex')], [0x02, text('a.test')]] })
    assert.deepEqual(header(read(h)).source, src)
    const short = v2(src, dst, { tlvs: [[0x02, text('a.test')]] })
    short.writeUInt16BE(short.readUInt16BE(14) - 1, 14)
    assert.match(reason(read(short)), /TLV of type 0x2 .* runs past/)
    const stub = Buffer.concat([v2(src, dst, { length: 14 }), Buffer.from([0x01, 0x00])])
    assert.match(reason(read(stub)), /TLV header .* runs past/)
  })

  it('LOCAL (a health check) carries no client, whatever follows in its block', () => {
    assert.deepEqual(header(read(v2(undefined, undefined, { command: 0 }))), { version: 2, command: 'local', length: 16 })
    assert.deepEqual(header(read(v2(src, dst, { command: 0 }))), { version: 2, command: 'local', length: 28 })
  })

  it('UNSPEC, AF_UNIX and DGRAM fall back to the connection\'s own address', () => {
    assert.deepEqual(header(read(v2(undefined, undefined))), { version: 2, command: 'proxy', length: 16 })
    const unix = Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x31, 0, 216]), Buffer.alloc(216)])
    assert.deepEqual(header(read(unix)), { version: 2, command: 'proxy', length: 232 })
    assert.equal(header(read(v2(src, dst, { fam: 0x12 }))).source, undefined)
  })

  it('refuses a bad version, command, family, transport, a short address block, and a header over the cap', () => {
    assert.match(reason(read(v2(src, dst, { version: 1 }))), /version 1/)
    assert.match(reason(read(v2(src, dst, { command: 2 }))), /command 2/)
    assert.match(reason(read(v2(src, dst, { fam: 0x41 }))), /family 4/)
    assert.match(reason(read(v2(src, dst, { fam: 0x13 }))), /transport 3/)
    assert.match(reason(read(v2(src, dst, { fam: 0x21 }))), /shorter than the 36 address bytes/)
    const big = v2(src, dst, { tlvs: [[0x04, Buffer.alloc(DEFAULT_MAX_V2_BYTES)]] })
    // Refused at its 16th byte: the length says enough.
    assert.match(reason(parseProxyHeader(big.subarray(0, 16))), /over the limit of 4096/)
    assert.equal(header(parseProxyHeader(v2(src, dst, { tlvs: [[0x04, Buffer.alloc(DEFAULT_MAX_V2_BYTES - 31)]] }))).length, 4096)
  })

  it('a header cut short stays incomplete (the listener refuses it at FIN or the deadline)', () => {
    const h = v2(src, dst)
    for (let n = 0; n < h.length; n++) assert.deepEqual(parseProxyHeader(h.subarray(0, n)), { kind: 'incomplete' })
  })
})

describe('not a header', () => {
  it('absent at the first byte that differs from both signatures', () => {
    assert.deepEqual(read(DATA), { kind: 'absent' })
    assert.deepEqual(parseProxyHeader(text('P')), { kind: 'incomplete' })
    assert.deepEqual(parseProxyHeader(text('PO')), { kind: 'absent' })
    assert.deepEqual(parseProxyHeader(text('PROXY')), { kind: 'incomplete' })
    assert.deepEqual(parseProxyHeader(text('PROXYX')), { kind: 'absent' })
    assert.deepEqual(parseProxyHeader(Buffer.from([0x16, 0x03, 0x01])), { kind: 'absent' })
    assert.deepEqual(parseProxyHeader(Buffer.from('0d0a0d0a00', 'hex')), { kind: 'incomplete' })
    assert.deepEqual(parseProxyHeader(Buffer.from('0d0a0d0a01', 'hex')), { kind: 'absent' })
  })

  it('the reader keeps every byte it was given, for the listener to put back', () => {
    const r = new ProxyHeaderReader()
    assert.equal(r.push(text('PR')).kind, 'incomplete')
    assert.equal(r.push(text('OBE / HTTP/1.1\r\n')).kind, 'absent')
    assert.equal(r.bytes.toString('latin1'), 'PROBE / HTTP/1.1\r\n')
  })
})
