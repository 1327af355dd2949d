/**
 * Fuzzing the parent's CONNECT reply reader, upstream/connect-response.ts
 * (issue 11, "Fuzzing"; docs/node-internals.md D7: readers that broke on
 * replies split across chunks). Properties, over random bytes, mutated valid
 * replies and heads sized around the 16 KiB bound, each fed whole and then
 * split at random points:
 *
 * - the reader settles with a reply or a ReplyError (its coded error,
 *   which upstream/chain.ts maps to ERR_PARENT_*), nothing else, once the
 *   parent has closed;
 * - split gives the same result as whole: the same status, reason and
 *   headers, the same bytes after the head (handed back, or still unread
 *   in the socket), or the same error kind;
 * - it leaves no listener on the socket.
 *
 * The socket is a PassThrough, as in test/unit/parents.test.ts: this is the
 * byte-level parser, fed exactly the chunks under test (TCP would merge them).
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import { PassThrough } from 'node:stream'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { readConnectReply, ReplyError } from '../../src/upstream/connect-response.js'
import { fuzzParams, mutated, splits } from '../helpers/fuzz.js'

/** What a read came to, comparable between a whole and a split feed. */
type Result =
  | { readonly ok: true, readonly status: number, readonly reason: string, readonly headers: string, readonly after: string }
  | { readonly ok: false, readonly kind: ReplyError['kind'] }

const MAX_HEAD = 16 * 1024

/** `text`, or its digest when too long to read in a failure message. */
function short (text: string): string {
  return text.length <= 200 ? text : `sha256:${createHash('sha256').update(text).digest('hex').slice(0, 16)} (${text.length} chars)`
}

/** Feed `chunks` (then EOF) to readConnectReply on a stand-in socket; what it came to. */
async function feed (chunks: readonly Buffer[]): Promise<Result> {
  const stream = new PassThrough()
  const pending = readConnectReply(stream as unknown as Socket, 60_000)
  for (const c of chunks) stream.write(c)
  stream.end()
  let result: Result
  try {
    const reply = await pending
    // Bytes after the head: those handed back, then those left unread in the socket.
    const left: Buffer[] = [reply.rest]
    for (let b = stream.read() as Buffer | null; b !== null; b = stream.read() as Buffer | null) left.push(b)
    result = { ok: true, status: reply.status, reason: reply.reason, headers: short(JSON.stringify(reply.headers)), after: Buffer.concat(left).toString('latin1') }
  } catch (err) {
    assert.ok(err instanceof ReplyError, `readConnectReply rejected with a non-ReplyError: ${String(err)}`)
    assert.ok(['closed', 'too_large', 'malformed'].includes(err.kind), `kind ${err.kind}`)
    result = { ok: false, kind: err.kind }
  }
  for (const event of ['data', 'end', 'close', 'error']) assert.equal(stream.listenerCount(event), 0, `a '${event}' listener was left on the socket`)
  stream.destroy()
  return result
}

/** The property: whole and split agree. */
async function sameWholeAndSplit (bytes: Buffer, parts: readonly Buffer[]): Promise<void> {
  const whole = await feed([bytes])
  const split = await feed(parts)
  assert.deepEqual(split, whole, `split at ${JSON.stringify(parts.map(p => p.length))} of ${bytes.length} bytes ${JSON.stringify(bytes.subarray(0, 120).toString('latin1'))}`)
}

// ------------------------------------------------------------ generators

const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/)
const fieldValue = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).map(c => String.fromCharCode(c)), maxLength: 30 })
const header = fc.tuple(token, fc.constantFrom(':', ': ', ':\t', ' :', ':  '), fieldValue).map(([n, sep, v]) => `${n}${sep}${v}`)
const statusLine = fc.tuple(fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2', 'http/1.1', 'HTTP/1.1 '), fc.integer({ min: 0, max: 1000 }), fc.constantFrom('', ' ', ' OK', ' Connection established', ' Proxy Authentication Required'))
  .map(([v, s, r]) => `${v} ${s}${r}`)
const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r')
/** A reply head (every line ended by CRLF or, rarely, something else), then tunnel bytes. */
const reply = fc.tuple(statusLine, fc.array(fc.tuple(header, eol), { maxLength: 6 }), eol, fc.uint8Array({ maxLength: 40 }))
  .map(([s, hs, end, rest]) => Buffer.concat([Buffer.from(`${s}\r\n${hs.map(([h, e]) => h + e).join('')}${end}`, 'latin1'), rest]))

/**
 * A 200 whose head's CRLFCRLF starts `delta` bytes from the 16 KiB bound,
 * the edge where chunking matters, cut `near` bytes from its CRLFCRLF and
 * at random points. Generated as numbers (so a counterexample prints short),
 * built in the property.
 */
const nearBound = fc.record({
  delta: fc.integer({ min: -8, max: 8 }),
  near: fc.integer({ min: -4, max: 6 }),
  rest: fc.integer({ min: 0, max: 8 }),
  cuts: fc.uniqueArray(fc.integer({ min: 1, max: MAX_HEAD + 20 }), { maxLength: 4 })
})

function buildNearBound (c: { delta: number, near: number, rest: number, cuts: number[] }): { bytes: Buffer, parts: Buffer[] } {
  const start = 'HTTP/1.1 200 OK\r\nX-Fill: '
  const end = MAX_HEAD + c.delta
  const bytes = Buffer.from(`${start}${'a'.repeat(end - start.length)}\r\n\r\n${'r'.repeat(c.rest)}`, 'latin1')
  const points = [...new Set([0, ...c.cuts, end + c.near, bytes.length])].filter(p => p >= 0 && p <= bytes.length).sort((a, b) => a - b)
  const parts: Buffer[] = []
  for (let i = 1; i < points.length; i++) parts.push(bytes.subarray(points[i - 1], points[i]))
  return { bytes, parts }
}

const bytes = fc.oneof(
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map(b => Buffer.from(b)) },
  { weight: 4, arbitrary: reply },
  { weight: 4, arbitrary: mutated(reply, 4) }
)

describe('readConnectReply fuzz', () => {
  it('random and mutated replies: a reply or a ReplyError, the same whole or split', async () => {
    await fc.assert(fc.asyncProperty(bytes.chain(b => fc.tuple(fc.constant(b), splits(b))), async ([b, parts]) => {
      await sameWholeAndSplit(b, parts)
    }), fuzzParams(600))
  })

  it('heads ending around the 16 KiB bound: the same whole or split', async () => {
    await fc.assert(fc.asyncProperty(nearBound, async (c) => {
      const { bytes, parts } = buildNearBound(c)
      await sameWholeAndSplit(bytes, parts)
    }), fuzzParams(150))
  })
})
