/**
 * The ClientHello reader (src/tls/client-hello.ts): runs once per SNI
 * connection (issue 14). A 2 KB browser-shaped hello (an X25519MLKEM768 key
 * share, ECH, padding), read at once, through a reader in one push, and
 * gathered from two records; node:tls's 0.4 KB hello; a refusal.
 */
import assert from 'node:assert/strict'
import { bench, do_not_optimize as keep, group } from 'mitata'
import { HelloReader, parseClientHello } from '../../src/tls/client-hello.js'
import { browserLikeHello, frame, messageOf, nodeHello } from '../../test/helpers/client-hello.js'

const browser = frame(browserLikeHello('www.example.com'))
const twoRecords = frame(messageOf(browser), [1024, 16384])
const node = await nodeHello('www.example.com')
const notTls = Buffer.from('GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n')

// What is measured must be what it says.
assert.ok(browser.length >= 2000 && browser.length <= 2100, `${browser.length} bytes`)
for (const [b, records] of [[browser, 1], [twoRecords, 2], [node, 1]] as const) {
  const r = parseClientHello(b)
  assert.deepEqual(r.kind === 'hello' && [r.serverName, r.records, r.length], ['www.example.com', records, b.length])
}
assert.equal(parseClientHello(notTls).kind, 'error')

group('ClientHello', () => {
  bench(`parseClientHello, ${browser.length} B browser-shaped, one record`, () => keep(parseClientHello(browser)))
  bench(`HelloReader.push, ${browser.length} B in one push`, () => keep(new HelloReader().push(browser)))
  bench(`parseClientHello, ${twoRecords.length} B over two records`, () => keep(parseClientHello(twoRecords)))
  bench(`parseClientHello, ${node.length} B node:tls`, () => keep(parseClientHello(node)))
  bench('parseClientHello refuses an HTTP request (NOT_TLS)', () => keep(parseClientHello(notTls)))
})
