/**
 * bench/peers/node-sni.mjs, the bench's bare Node SNI passthrough (issue 14,
 * "Bench and bar"): the floor Sluice's sni listener is measured against must
 * itself read a ClientHello across TCP segments and TLS records, or the
 * split-hello scenario would compare Sluice with a peer that cheats. Real
 * sockets: a client, the peer as a child process, an echo origin.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { setImmediate as immediate } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { browserLikeHello, fixedPart, frame, helloOf, sniData } from '../helpers/client-hello.js'
import { listenOn } from '../helpers/net.js'
import { within } from '../helpers/wait.js'

const script = join(import.meta.dirname, '..', '..', 'bench', 'peers', 'node-sni.mjs')
const NAME = 'echo.test'

/** Framed as two records, the first ending in the middle of the server_name. */
function twoRecords (message: Buffer): Buffer {
  const at = message.indexOf(NAME)
  assert.ok(at > 0)
  return frame(message, [at + 4, 16384])
}

describe('bench/peers/node-sni.mjs', () => {
  let origin: Server
  let originBytes: Buffer[]
  let peer: ChildProcess
  let port: number

  before(async () => {
    originBytes = []
    origin = createServer((s: Socket) => {
      s.on('error', () => {})
      s.on('data', (chunk: Buffer) => { originBytes.push(chunk); s.write(chunk) })
    })
    const originPort = await listenOn(origin, '127.0.0.1')
    peer = spawn(process.execPath, [script, '0', `${NAME}=127.0.0.1:${originPort}`], { stdio: ['ignore', 'pipe', 'inherit'] })
    const lines = createInterface({ input: peer.stdout as NodeJS.ReadableStream })
    const [line] = await within(once(lines, 'line') as Promise<[string]>, 'node-sni to listen', 20_000)
    port = Number(/127\.0\.0\.1:(\d+)/.exec(line)?.[1])
    assert.ok(port > 0, line)
  })

  after(async () => {
    peer.kill()
    origin.close()
  })

  /**
   * Write `pieces` one by one (a turn apart, so each tends to be a segment of
   * its own) plus `tail`; resolve with all the client reads back before the
   * connection closes or `want` bytes arrived.
   */
  async function through (pieces: readonly Buffer[], want: number): Promise<Buffer> {
    originBytes = []
    const s = connect({ host: '127.0.0.1', port, noDelay: true })
    await once(s, 'connect')
    const got: Buffer[] = []
    let n = 0
    const done = new Promise<void>((resolve) => {
      s.on('data', (c: Buffer) => { got.push(c); n += c.length; if (n >= want) resolve() })
      s.once('close', () => resolve())
      s.on('error', () => resolve())
    })
    for (const p of pieces) {
      if (s.destroyed) break
      await new Promise<void>((resolve) => s.write(p, () => resolve()))
      await immediate()
    }
    await within(done, 'the echo or a close')
    s.destroy()
    return Buffer.concat(got)
  }

  const ping = Buffer.from('ping after the hello')

  it('passes a hello in one write, and what follows it', async () => {
    const hello = frame(browserLikeHello(NAME))
    const back = await through([Buffer.concat([hello, ping])], hello.length + ping.length)
    assert.deepEqual(back, Buffer.concat([hello, ping]))
    assert.deepEqual(Buffer.concat(originBytes), Buffer.concat([hello, ping]))
  })

  it('passes a hello in two TLS records cut mid server_name, in two writes', async () => {
    const hello = twoRecords(browserLikeHello(NAME))
    const cut = hello.indexOf(NAME.slice(4)) // inside the second record, before the rest of the name
    assert.ok(cut > 0)
    const back = await through([hello.subarray(0, cut), hello.subarray(cut), ping], hello.length + ping.length)
    assert.deepEqual(back, Buffer.concat([hello, ping]))
  })

  it('passes a hello written one byte at a time', async () => {
    const hello = twoRecords(browserLikeHello(NAME))
    const pieces = [...hello].map(b => Buffer.from([b]))
    const back = await through([...pieces, ping], hello.length + ping.length)
    assert.deepEqual(back, Buffer.concat([hello, ping]))
  })

  it('passes a 17 KiB hello (two records)', async () => {
    const big = helloOf(fixedPart(), [[0, sniData(NAME)], [21, Buffer.alloc(17 * 1024)]])
    const hello = frame(big)
    assert.ok(hello.readUInt16BE(3) === 16384)
    const back = await through([hello, ping], hello.length + ping.length)
    assert.deepEqual(back, Buffer.concat([hello, ping]))
  })

  it('closes a name not in its table, a hello without one, and plain text, sending nothing on', async () => {
    for (const bytes of [
      frame(browserLikeHello('unknown.test')),
      frame(helloOf(fixedPart(), [[21, Buffer.alloc(10)]])),
      Buffer.from('GET / HTTP/1.1\r\nHost: echo.test\r\n\r\n')
    ]) {
      const back = await through([bytes], 1)
      assert.equal(back.length, 0)
      assert.equal(originBytes.length, 0)
    }
  })
})
