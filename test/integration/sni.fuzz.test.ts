/**
 * Fuzzing an `sni` listener over the wire (issue 14): arbitrary bytes,
 * real ClientHellos with random edits, and valid hellos cut into random
 * pieces are written to a real Sluice, then the client half-closes. The
 * ClientHello reader's own properties are in test/unit/client-hello.fuzz.test.ts.
 *
 * Properties, per connection, under a policy that dials nothing:
 * - what comes back is nothing, or exactly one fatal TLS alert record
 *   (`15 03 03 00 02 02 xx`), then EOF;
 * - no error-level line is logged;
 * - nothing is left behind: the registry and the open connections are back to 0.
 *
 * Bounded: 120 connections in `npm test`; FUZZ_RUNS scales them.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import fc from 'fast-check'
import { startDnsStubRetrying, type DnsStub } from '../helpers/dns-stub.js'
import { fuzzParams, fuzzTimeout, mutated, splits } from '../helpers/fuzz.js'
import { nodeHello } from '../helpers/client-hello.js'
import { clientOf, rawConnect } from '../helpers/raw.js'
import { startSluice, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { connectionsDrained, pollImmediate, within } from '../helpers/wait.js'

let dns: DnsStub
let s: Sluice
let hellos: Buffer[] = []

before(async () => {
  // No records: every name is NXDOMAIN; the one rule denies, so nothing is ever dialed.
  dns = await startDnsStubRetrying({})
  s = await startSluice(`
listen:
  - { address: "127.0.0.1:0", name: sni, kind: sni }
timeouts: { header: 5s, dns: 500ms }
dns: { servers: ["${dns.address}"] }
default: deny
rules:
  - { name: no-smtp, action: deny, ports: [25] }
  - { name: names, action: allow, hosts: ["*.test"] }
`)
  hellos = [await nodeHello('a.test', ['h2', 'http/1.1']), await nodeHello(undefined), await nodeHello('blocked.example', [])]
})
after(async () => {
  await s.close()
  await dns.close()
})

/** Write the pieces, half-close, and collect everything until the connection closes. */
async function exchange (pieces: readonly Buffer[]): Promise<{ bytes: Buffer, client: string }> {
  const socket = await rawConnect(s.port)
  const client = clientOf(socket)
  const chunks: Buffer[] = []
  socket.on('data', (c: Buffer) => chunks.push(c))
  socket.on('error', () => {})
  const closed = new Promise<void>(resolve => socket.once('close', () => resolve()))
  for (const p of pieces) socket.write(p)
  socket.end()
  await within(closed, 'the connection closes', 10_000)
  return { bytes: Buffer.concat(chunks), client }
}

async function check (pieces: readonly Buffer[]): Promise<void> {
  const logsBefore = s.logs.length
  const { bytes } = await exchange(pieces)
  const shown = JSON.stringify(Buffer.concat(pieces).subarray(0, 64).toString('hex'))
  assert.ok(bytes.length === 0 || (bytes.length === 7 && bytes.subarray(0, 6).equals(Buffer.from([0x15, 0x03, 0x03, 0x00, 0x02, 0x02]))),
    `nothing or one fatal alert, got ${bytes.toString('hex')} after ${shown}`)
  assert.ok(await pollImmediate(500, () => s.proxy.registry.size === 0), `registry size ${s.proxy.registry.size} after ${shown}`)
  assert.equal(await connectionsDrained(s.proxy, 500), 0, `open connections after ${shown}`)
  const errors = s.logs.slice(logsBefore).filter((r: LogRecord) => Number(r['level']) >= 50)
  assert.deepEqual(errors, [], `error-level lines after ${shown}`)
}

describe('an sni listener over the wire', { timeout: fuzzTimeout(120_000) }, () => {
  it('every input gets nothing or one alert, and leaves nothing behind', async () => {
    const hello = fc.constantFrom(...hellos)
    const input = fc.oneof(
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map(b => [Buffer.from(b)]) },
      { weight: 2, arbitrary: mutated(hello.map(b => new Uint8Array(b)), 3).map(b => [b]) },
      { weight: 2, arbitrary: hello.chain(h => splits(h)) }
    )
    await fc.assert(fc.asyncProperty(input, async (pieces) => { await check(pieces) }), fuzzParams(120))
  })
})
