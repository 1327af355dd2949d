/**
 * The byte relay on real loopback sockets (issue 6): bytes in order both
 * ways, each FIN forwarded on its own (as Tunnel wires it), bytes buffered before the relay
 * started go first, own read buffers grow for bulk and go back to the
 * budget, and TLS sockets fall back to pipe().
 *
 * Runs on both relay paths (issue 10): `npm run test:relay-pipe` runs this
 * file again with SLUICE_RELAY=pipe. The expected path comes from the
 * environment, not from the module, so a fast path that silently falls back
 * to pipe() fails here; the tests about own read buffers are skipped on pipe.
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls'
import { after, describe, it } from 'node:test'
import { canReset, Relay, relayBufferBytes, relayMode, readsInPlace } from '../../src/tunnel/relay.js'
import { listenOn } from '../helpers/net.js'
import { makeCert } from '../helpers/tls.js'
import { within } from '../helpers/wait.js'

/** The path this run must take: SLUICE_RELAY=pipe forces pipe(), anything else is onread. */
const EXPECTED = process.env['SLUICE_RELAY'] === 'pipe' ? 'pipe' : 'onread'
const ON_PIPE = EXPECTED === 'pipe' ? 'SLUICE_RELAY=pipe: no own read buffers on the pipe() path' : false

const servers: Server[] = []
const sockets: Socket[] = []
after(() => {
  for (const s of sockets) s.destroy()
  for (const s of servers) s.close()
})

/** A connected pair on loopback: the dialing side and the accepted side. */
async function pair (): Promise<{ dialed: Socket, accepted: Socket }> {
  const server = createServer({ allowHalfOpen: true })
  servers.push(server)
  const port = await listenOn(server, '127.0.0.1')
  const accepted = once(server, 'connection') as Promise<[Socket]>
  const dialed = connect({ host: '127.0.0.1', port, allowHalfOpen: true })
  await once(dialed, 'connect')
  const [socket] = await accepted
  sockets.push(dialed, socket)
  return { dialed, accepted: socket }
}

/**
 * client ⇄ [accepted | relay | dialed] ⇄ target, the shape of a tunnel:
 * the relay reads an accepted socket and a socket it dialed.
 */
async function tunnel (before?: (client: Socket, down: Socket) => Promise<void>): Promise<{ client: Socket, target: Socket, relayed: [Socket, Socket], ends: string[], release: () => void }> {
  const front = await pair()
  const back = await pair()
  const ends: string[] = []
  if (before !== undefined) await before(front.dialed, front.accepted)
  forwardFins(front.accepted, back.dialed, ends)
  const r = new Relay(front.accepted, back.dialed)
  const closeBoth = (): void => { front.accepted.destroy(); back.dialed.destroy() }
  front.accepted.on('close', closeBoth)
  back.dialed.on('close', closeBoth)
  return { client: front.dialed, target: back.accepted, relayed: [front.accepted, back.dialed], ends, release: () => r.release() }
}

/** What Tunnel does at 'end': note the side, forward the FIN. */
function forwardFins (down: Socket, up: Socket, ends: string[]): void {
  down.on('end', () => { ends.push('client'); up.end() })
  up.on('end', () => { ends.push('upstream'); down.end() })
}

function digestOf (socket: Socket): Promise<{ bytes: number, sha: string }> {
  const h = createHash('sha256')
  let bytes = 0
  socket.on('data', (c: Buffer) => { h.update(c); bytes += c.length })
  return once(socket, 'end').then(() => ({ bytes, sha: h.digest('hex') }))
}

describe('relay', () => {
  it(`takes the ${EXPECTED} path for plain TCP sockets, accepted or dialed`, async () => {
    assert.equal(relayMode(), EXPECTED, EXPECTED === 'onread' ? 'the fast path fell back to pipe(): net.Socket\'s private onread fields were not found' : 'SLUICE_RELAY=pipe was ignored')
    const { dialed, accepted } = await pair()
    assert.equal(readsInPlace(dialed), EXPECTED === 'onread')
    assert.equal(readsInPlace(accepted), EXPECTED === 'onread')
    dialed.destroy(); accepted.destroy()
  })

  it(`relays through the ${EXPECTED} path`, async () => {
    const { client, target, relayed, release } = await tunnel()
    // pipe() reads with a 'data' listener; onread leaves the sockets without one.
    for (const s of relayed) assert.equal(s.listenerCount('data'), EXPECTED === 'pipe' ? 1 : 0)
    const got = once(target, 'data') as Promise<[Buffer]>
    client.write('through')
    assert.equal((await within(got, 'bytes at target'))[0].toString(), 'through')
    client.destroy(); target.destroy()
    release()
  })

  it(`moves 16 MiB each way intact and in order, ${EXPECTED === 'onread' ? 'grows own buffers for it, and gives them back' : 'with no relay buffer'}`, { timeout: 30_000 }, async () => {
    const { client, target, ends, release } = await tunnel()
    const up = randomBytes(16 * 1024 * 1024)
    const down = randomBytes(16 * 1024 * 1024)
    const atTarget = digestOf(target)
    const atClient = digestOf(client)
    // Sampled from the receivers' 'data' events: the relay has read a chunk by then.
    let peak = 0
    const sample = (): void => { peak = Math.max(peak, relayBufferBytes()) }
    target.on('data', sample)
    client.on('data', sample)
    client.end(up)
    target.end(down)
    const [t, c] = await within(Promise.all([atTarget, atClient]), '16 MiB each way', 25_000)
    assert.deepEqual(t, { bytes: up.length, sha: createHash('sha256').update(up).digest('hex') })
    assert.deepEqual(c, { bytes: down.length, sha: createHash('sha256').update(down).digest('hex') })
    assert.deepEqual([...ends].sort(), ['client', 'upstream'])
    if (EXPECTED === 'onread') assert.ok(peak >= 64 * 1024, `own read buffers never grew (peak ${peak} B)`)
    else assert.equal(peak, 0, 'the pipe() path holds no relay buffer')
    client.destroy(); target.destroy()
    release()
    assert.equal(relayBufferBytes(), 0)
  })

  it('holds no buffer of its own for a tunnel that only exchanges small messages', { skip: ON_PIPE }, async () => {
    const { client, target, release } = await tunnel()
    for (let i = 0; i < 5; i++) {
      const echoed = once(client, 'data') as Promise<[Buffer]>
      const got = once(target, 'data') as Promise<[Buffer]>
      client.write(`ping ${i}`)
      const [at] = await within(got, 'ping at target')
      target.write(at)
      const [back] = await within(echoed, 'echo at client')
      assert.equal(back.toString(), `ping ${i}`)
    }
    assert.equal(relayBufferBytes(), 0, 'an idle, chatty tunnel keeps reading into the shared buffer')
    client.destroy(); target.destroy()
    release()
  })

  it('forwards each FIN on its own: the other direction keeps flowing after a half-close', async () => {
    const { client, target, ends, release } = await tunnel()
    const atTarget = digestOf(target)
    client.end('bye')
    const t = await within(atTarget, 'FIN at target')
    assert.equal(t.bytes, 3)
    assert.deepEqual(ends, ['client'])
    // The target can still answer after the client's FIN.
    const atClient = digestOf(client)
    target.end('still here')
    assert.equal((await within(atClient, 'answer after half-close')).bytes, 10)
    assert.deepEqual(ends, ['client', 'upstream'])
    release()
  })

  it('sends bytes buffered before it started first, and a FIN that came with them', async () => {
    const { target, ends, release } = await tunnel(async (client, down) => {
      // The client's bytes and FIN arrive while nobody relays: the stream buffers them.
      down.pause()
      const readable = once(down, 'readable')
      client.end('early bytes')
      await readable
      await within(new Promise<void>((resolve) => {
        const check = (): void => { if ((down as unknown as { _readableState: { ended: boolean } })._readableState.ended) resolve(); else setImmediate(check) }
        check()
      }), 'EOF buffered')
    })
    const t = await within(digestOf(target), 'early bytes and FIN at target')
    assert.equal(t.bytes, 'early bytes'.length)
    await within(new Promise<void>((resolve) => { const c = (): void => { if (ends.includes('client')) resolve(); else setImmediate(c) }; c() }), 'client end seen')
    release()
  })

  it(`relays a TLS socket with pipe(), and the TCP side on the ${EXPECTED} path`, async () => {
    const cert = await makeCert()
    const tlsServer = createTlsServer({ key: cert.key, cert: cert.cert, allowHalfOpen: true })
    const port = await listenOn(tlsServer as unknown as Server, '127.0.0.1')
    servers.push(tlsServer as unknown as Server)
    const accepted = once(tlsServer, 'secureConnection') as Promise<[Socket]>
    const tlsSide = tlsConnect({ host: '127.0.0.1', port, ca: cert.ca, servername: 'localhost' })
    await once(tlsSide, 'secureConnect')
    const [tlsPeer] = await accepted
    sockets.push(tlsSide, tlsPeer)
    assert.equal(readsInPlace(tlsSide), false)
    // Its handle is a TLSWrap, which resetAndDestroy() refuses.
    assert.equal(canReset(tlsSide), false)
    assert.throws(() => tlsSide.resetAndDestroy(), { code: 'ERR_INVALID_HANDLE_TYPE' })

    const front = await pair()
    assert.equal(readsInPlace(front.accepted), EXPECTED === 'onread')
    const ends: string[] = []
    forwardFins(front.accepted, tlsSide, ends)
    const r = new Relay(front.accepted, tlsSide)
    const atPeer = digestOf(tlsPeer)
    const atClient = digestOf(front.dialed)
    const payload = randomBytes(1024 * 1024)
    // One way, then back: the TLS client is not half-open, so its FIN follows ours.
    front.dialed.end(payload)
    const p = await within(atPeer, 'client to TLS peer')
    tlsPeer.end(payload)
    const c = await within(atClient, 'TLS peer to client')
    const sha = createHash('sha256').update(payload).digest('hex')
    assert.deepEqual(p, { bytes: payload.length, sha })
    assert.deepEqual(c, { bytes: payload.length, sha })
    front.dialed.destroy(); front.accepted.destroy(); tlsSide.destroy(); tlsPeer.destroy()
    r.release()
    assert.equal(relayBufferBytes(), 0)
  })

  it('canReset(): true for a connected TCP socket, whose peer then sees a reset; false once it is destroyed', async () => {
    const { dialed, accepted } = await pair()
    assert.equal(canReset(dialed), true)
    assert.equal(canReset(accepted), true)
    const reset = once(accepted, 'error') as Promise<[NodeJS.ErrnoException]>
    accepted.resume()
    const closed = once(dialed, 'close')
    dialed.resetAndDestroy()
    assert.equal((await within(reset, 'RST at the peer'))[0].code, 'ECONNRESET')
    await within(closed, 'reset socket closed')
    assert.equal(canReset(dialed), false, 'a destroyed socket has no handle')
  })
})
