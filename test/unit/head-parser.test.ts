/**
 * The CONNECT listener's request-head parser, connect/head-parser.ts
 * (issue 12, "The front end"): what it accepts, what it refuses with which
 * code, how early it refuses, the size bound, and incremental reading.
 * Over-the-wire behaviour (status, Proxy-Status, log line) is in
 * test/integration/front-end.test.ts; properties in head-parser.fuzz.test.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HeadScan, parseHead, type HeadErrorCode, type HeadResult, type RequestHead } from '../../src/connect/head-parser.js'

const MAX = 16384

function parse (text: string | Buffer, max = MAX): HeadResult {
  return parseHead(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, max)
}

function head (text: string, max = MAX): { head: RequestHead, length: number } {
  const r = parse(text, max)
  assert.equal(r.kind, 'head', `expected a head for ${JSON.stringify(text)}: ${JSON.stringify(r)}`)
  if (r.kind !== 'head') throw new Error('unreachable')
  return r
}

function refused (text: string | Buffer, code: HeadErrorCode, max = MAX): string {
  const r = parse(text, max)
  assert.equal(r.kind, 'error', `expected ${code} for ${JSON.stringify(text.toString())}: ${JSON.stringify(r)}`)
  if (r.kind !== 'error') throw new Error('unreachable')
  assert.equal(r.code, code, `for ${JSON.stringify(text.toString())}: ${r.detail}`)
  assert.equal(r.status, code === 'HPE_HEADER_OVERFLOW' ? 431 : 400)
  return r.detail
}

describe('accepts', () => {
  it('a CONNECT head, with the bytes after it left to the caller', () => {
    const text = 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nUser-Agent: curl/8\r\n\r\n'
    const { head: h, length } = head(text + '\x16\x03\x01early')
    assert.equal(length, Buffer.byteLength(text))
    assert.deepEqual([h.method, h.target, h.version], ['CONNECT', 'example.com:443', '1.1'])
    assert.deepEqual(h.headers, [['host', 'example.com:443'], ['user-agent', 'curl/8']])
    assert.equal(h.proxyAuthorization, undefined)
  })

  it('HTTP/1.0, and a head with no fields at all', () => {
    const { head: h, length } = head('CONNECT [::1]:443 HTTP/1.0\r\n\r\n')
    assert.deepEqual([h.method, h.target, h.version, h.headers], ['CONNECT', '[::1]:443', '1.0', []])
    assert.equal(length, 30)
  })

  it('names lower-cased, values trimmed of OWS only (not of U+00A0), empty values, obs-text', () => {
    const { head: h } = head('CONNECT a:1 HTTP/1.1\r\nX-A: \t one two \t\r\nX-Empty:\r\nX-Ows:   \r\nX-Latin: \xa0caf\xe9\xa0\r\nX-Tok!#$%&\'*+.^_`|~09: v\r\n\r\n')
    assert.deepEqual(h.headers, [['x-a', 'one two'], ['x-empty', ''], ['x-ows', ''], ['x-latin', '\xa0caf\xe9\xa0'], ['x-tok!#$%&\'*+.^_`|~09', 'v']])
  })

  it('Proxy-Authorization in any case, trimmed; the first of two, as Node kept it', () => {
    const { head: h } = head('CONNECT a:1 HTTP/1.1\r\nPROXY-authorization:  Basic YTpi \r\nProxy-Authorization: Basic other\r\n\r\n')
    assert.equal(h.proxyAuthorization, 'Basic YTpi')
  })

  it('Content-Length: 0 on a CONNECT (some clients send it)', () => {
    assert.equal(head('CONNECT a:1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n').head.method, 'CONNECT')
    assert.equal(head('CONNECT a:1 HTTP/1.1\r\ncontent-length: 000\r\n\r\n').head.method, 'CONNECT')
  })

  it('other methods, with whatever framing they announce (the listener answers 405 and reads no body)', () => {
    assert.equal(head('POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello').length, 39)
    assert.equal(head('GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n').head.method, 'GET')
    assert.equal(head('M-SEARCH * HTTP/1.1\r\n\r\n').head.method, 'M-SEARCH')
  })

  it('versions other than 1.x, reported as sent for the caller to refuse with a detail', () => {
    assert.equal(head('CONNECT a:1 HTTP/2.0\r\n\r\n').head.version, '2.0')
    assert.equal(head('CONNECT a:1 HTTP/1.2\r\n\r\n').head.version, '1.2')
    assert.equal(head('CONNECT a:1 HTTP/0.9\r\n\r\n').head.version, '0.9')
    // No version at all (HTTP/0.9's request line); llhttp reports 0.9 too.
    assert.equal(head('CONNECT a:1\r\n\r\n').head.version, '0.9')
    const pri = head('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')
    assert.deepEqual([pri.head.method, pri.head.target, pri.head.version, pri.length], ['PRI', '*', '2.0', 18])
  })

  it('targets connect/target.ts refuses in detail: path, query, percent, userinfo', () => {
    for (const t of ['a/b:1', '/foo', 'a:1?x', '%31%32%37.0.0.1:443', 'u:p@a:1', 'http://a:1', '[fe80::1%25eth0]:443']) {
      assert.equal(head(`CONNECT ${t} HTTP/1.1\r\n\r\n`).head.target, t)
    }
  })
})

describe('refuses', () => {
  const cases: ReadonlyArray<readonly [string, string, HeadErrorCode]> = [
    ['a lower-case connect', 'connect a:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_METHOD'],
    ['a mixed-case method', 'CONNECt a:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_METHOD'],
    ['garbage (a TLS ClientHello)', '\x16\x03\x01\x00\xa5\x01\x00\x00', 'HPE_INVALID_METHOD'],
    ['NUL first', '\x00CONNECT a:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_METHOD'],
    ['an empty line before the request line', '\r\nCONNECT a:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_METHOD'],
    ['a tab after the method', 'CONNECT\ta:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_METHOD'],
    ['a tab after the target', 'CONNECT a:1\tHTTP/1.1\r\n\r\n', 'HPE_INVALID_URL'],
    ['a tab inside the target', 'CONNECT a\t:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_URL'],
    ['two spaces before the target', 'CONNECT  a:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_URL'],
    ['two spaces before the version', 'CONNECT a:1  HTTP/1.1\r\n\r\n', 'HPE_INVALID_VERSION'],
    ['# in the target', 'CONNECT a#b:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_URL'],
    ['a quote in the target', 'CONNECT a"b:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_URL'],
    ['a backslash in the target', 'CONNECT a\\b:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_URL'],
    ['a byte ≥ 0x80 in the target', 'CONNECT a\xe9:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_URL'],
    ['U+00AD (soft hyphen) after an IP literal, in UTF-8', 'CONNECT 169.254.169.254\xc2\xad:80 HTTP/1.1\r\n\r\n', 'HPE_INVALID_URL'],
    ['a byte ≥ 0x80 in the method', 'CONN\xc9CT a:1 HTTP/1.1\r\n\r\n', 'HPE_INVALID_METHOD'],
    ['a byte ≥ 0x80 in the version', 'CONNECT a:1 HTTP/1.\xb9\r\n\r\n', 'HPE_INVALID_VERSION'],
    ['a lower-case version', 'CONNECT a:1 http/1.1\r\n\r\n', 'HPE_INVALID_VERSION'],
    ['HTTP/11', 'CONNECT a:1 HTTP/11\r\n\r\n', 'HPE_INVALID_VERSION'],
    ['a space after the version', 'CONNECT a:1 HTTP/1.1 \r\n\r\n', 'HPE_INVALID_VERSION'],
    ['a bare LF after the version', 'CONNECT a:1 HTTP/1.1\n\n', 'HPE_INVALID_VERSION'],
    ['a bare CR after the request line', 'CONNECT a:1 HTTP/1.1\rX: y\r\n\r\n', 'HPE_LF_EXPECTED'],
    ['a bare LF ending a field', 'CONNECT a:1 HTTP/1.1\r\nX: y\nZ: w\r\n\r\n', 'HPE_CR_EXPECTED'],
    ['a bare CR inside a value', 'CONNECT a:1 HTTP/1.1\r\nX: a\rb\r\n\r\n', 'HPE_LF_EXPECTED'],
    ['a bare LF as the last line', 'CONNECT a:1 HTTP/1.1\r\nX: y\r\n\n', 'HPE_CR_EXPECTED'],
    ['obs-fold', 'CONNECT a:1 HTTP/1.1\r\nX: a\r\n b\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['whitespace before the colon', 'CONNECT a:1 HTTP/1.1\r\nX : a\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['a space inside a name', 'CONNECT a:1 HTTP/1.1\r\nNot A Header\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['no colon', 'CONNECT a:1 HTTP/1.1\r\nNoColon\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['an empty name', 'CONNECT a:1 HTTP/1.1\r\n: v\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['NUL in a value', 'CONNECT a:1 HTTP/1.1\r\nX: a\x00b\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['DEL in a value', 'CONNECT a:1 HTTP/1.1\r\nX: a\x7fb\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['a byte ≥ 0x80 in a name', 'CONNECT a:1 HTTP/1.1\r\nX\xe9: a\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
    ['Content-Length with Transfer-Encoding', 'CONNECT a:1 HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n', 'HPE_INVALID_TRANSFER_ENCODING'],
    ['Transfer-Encoding with Content-Length', 'GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n', 'HPE_INVALID_CONTENT_LENGTH'],
    ['two Content-Lengths', 'CONNECT a:1 HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n', 'HPE_UNEXPECTED_CONTENT_LENGTH'],
    ['two Content-Lengths on a GET', 'GET / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\n', 'HPE_UNEXPECTED_CONTENT_LENGTH'],
    ['two Transfer-Encodings', 'GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n', 'HPE_INVALID_TRANSFER_ENCODING'],
    ['a Content-Length that is not a number', 'GET / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n', 'HPE_INVALID_CONTENT_LENGTH'],
    ['an empty Content-Length', 'CONNECT a:1 HTTP/1.1\r\nContent-Length:\r\n\r\n', 'HPE_INVALID_CONTENT_LENGTH'],
    ['a negative Content-Length', 'CONNECT a:1 HTTP/1.1\r\nContent-Length: -1\r\n\r\n', 'HPE_INVALID_CONTENT_LENGTH'],
    ['a CONNECT with Content-Length: 5 (RFC 9110 §9.3.6)', 'CONNECT a:1 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello', 'HPE_CONNECT_CONTENT'],
    ['a CONNECT with Transfer-Encoding', 'CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 'HPE_CONNECT_CONTENT'],
    ['a CONNECT with two Transfer-Encodings', 'CONNECT a:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n', 'HPE_CONNECT_CONTENT']
  ]
  for (const [what, text, code] of cases) {
    it(`${what}: ${code}`, () => { refused(text, code) })
  }

  it('says why, for people', () => {
    assert.match(refused('CONNECT a:1 HTTP/1.1\r\nContent-Length: 5\r\n\r\n', 'HPE_CONNECT_CONTENT'), /RFC 9110 §9\.3\.6/)
    assert.match(refused('CONNECT a:1 HTTP/1.1\r\nX: a\r\n b\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'), /obs-fold/)
  })
})

describe('refuses as soon as a byte makes the head impossible', () => {
  const early: ReadonlyArray<readonly [string, HeadErrorCode]> = [
    ['g', 'HPE_INVALID_METHOD'],
    ['\x16', 'HPE_INVALID_METHOD'],
    ['CONNECT\t', 'HPE_INVALID_METHOD'],
    ['CONNECT a\xc2', 'HPE_INVALID_URL'],
    ['CONNECT a:1 HTTPS', 'HPE_INVALID_VERSION'],
    ['CONNECT a:1 HTTP/1.1\r\n ', 'HPE_INVALID_HEADER_TOKEN'],
    ['CONNECT a:1 HTTP/1.1\r\nX ', 'HPE_INVALID_HEADER_TOKEN'],
    ['CONNECT a:1 HTTP/1.1\r\nX: \x00', 'HPE_INVALID_HEADER_TOKEN'],
    ['CONNECT a:1 HTTP/1.1\r\nContent-Length: 7\r', 'HPE_CONNECT_CONTENT']
  ]
  for (const [prefix, code] of early) {
    it(`${JSON.stringify(prefix)}: ${code}, without waiting for CRLFCRLF`, () => { refused(prefix, code) })
  }
})

describe('limits.max_header_size', () => {
  const text = 'CONNECT a:1 HTTP/1.1\r\nX-Pad: ' + 'p'.repeat(100) + '\r\n\r\n'
  const size = Buffer.byteLength(text)

  it('a head of exactly the limit is accepted (the limit counts the request line and the final CRLFCRLF)', () => {
    assert.equal(head(text, size).length, size)
  })

  it('one byte over is HPE_HEADER_OVERFLOW (431)', () => {
    refused(text, 'HPE_HEADER_OVERFLOW', size - 1)
  })

  it('says so once the limit holds no complete head, without waiting for the rest', () => {
    refused(text.slice(0, size - 1), 'HPE_HEADER_OVERFLOW', size - 1)
    assert.equal(parse(text.slice(0, size - 2), size - 1).kind, 'incomplete')
  })

  it('an error inside the limit wins over the size', () => {
    refused('connect' + 'x'.repeat(200), 'HPE_INVALID_METHOD', 64)
  })
})

describe('incremental reading with a HeadScan', () => {
  const text = 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic YTpi\r\nX-Pad:  a b  \r\n\r\nEARLY'
  const bytes = Buffer.from(text, 'latin1')
  const whole = head(text)

  it('one byte at a time gives the whole head at exactly its last byte', () => {
    const scan = new HeadScan()
    for (let n = 1; n <= bytes.length; n++) {
      const r = parseHead(bytes.subarray(0, n), MAX, scan)
      if (n < whole.length) {
        assert.equal(r.kind, 'incomplete', `at ${n}`)
        continue
      }
      assert.equal(r.kind, 'head')
      if (r.kind !== 'head') return
      assert.equal(r.length, whole.length)
      assert.deepEqual([r.head.method, r.head.target, r.head.version, r.head.proxyAuthorization, r.head.headers],
        [whole.head.method, whole.head.target, whole.head.version, whole.head.proxyAuthorization, whole.head.headers])
      return
    }
    assert.fail('never complete')
  })

  it('reads each byte once: a call with no new bytes does no work and says incomplete', () => {
    const scan = new HeadScan()
    const part = bytes.subarray(0, 40)
    assert.equal(parseHead(part, MAX, scan).kind, 'incomplete')
    const pos = scan.pos
    assert.equal(pos, 40)
    assert.equal(parseHead(part, MAX, scan).kind, 'incomplete')
    assert.equal(scan.pos, pos)
  })

  it('one-shot calls share no state with each other', () => {
    assert.equal(parse('CONNECT a:1 HTTP/1.1\r\nContent-Length: 0\r\n').kind, 'incomplete')
    // A Content-Length seen by the call before must not count here.
    assert.equal(head('CONNECT a:1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n').head.method, 'CONNECT')
  })
})
