/**
 * PROXY protocol on listeners (issue 15; docs/proxy-protocol.md), over real
 * sockets on loopback: curl's --haproxy-protocol (v1 with its own address),
 * and v1/v2 headers written by hand from a raw socket naming a made-up
 * client (203.0.113.7, TEST-NET-3), whose address `clients:` rules,
 * per-client limits and the log line must then see. Every refusal has its
 * code: malformed, cut off, too slow, from an unlisted source, missing from
 * a listed one. A TLS connect listener, a tcp and an sni listener take the
 * header too.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { curl, needCurl } from '../helpers/curl.js'
import { nodeHello } from '../helpers/client-hello.js'
import { startEchoServer, startHttpOrigin } from '../helpers/origin.js'
import { v1, v2 } from '../helpers/proxy-protocol.js'
import { clientOf, connectHead, rawConnect, readAll, readBytes, readHead, roundTrip } from '../helpers/raw.js'
import { sluiceFor, startSluice, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { writeListenerFiles, type ListenerFiles } from '../helpers/tls-listener.js'

let echo: Awaited<ReturnType<typeof startEchoServer>>
let origin: Awaited<ReturnType<typeof startHttpOrigin>>
let dir = ''
let files: ListenerFiles

before(async () => {
  echo = await startEchoServer()
  origin = await startHttpOrigin()
  dir = await mkdtemp(join(tmpdir(), 'sluice-pp-'))
  files = await writeListenerFiles(dir)
})
after(async () => {
  await echo?.close()
  await origin?.close()
  await rm(dir, { recursive: true, force: true })
})

const CLIENT = { address: '203.0.113.7', port: 40_007 }

/**
 * `lb` takes headers from 127.0.0.1 (us); `direct` only from 192.0.2.1, so
 * we are an unlisted source there. Rules: the made-up client's network, and
 * our own address (curl's header, LOCAL, unlisted connections).
 */
function config (extra = ''): string {
  return `listen:
  - address: 127.0.0.1:0
    name: lb
    proxy_protocol: { from: [127.0.0.1/32] }
  - address: 127.0.0.1:0
    name: direct
    proxy_protocol: { from: [192.0.2.1/32] }
  - address: 127.0.0.1:0
    name: tls
    tls: { cert_file: ${files.cert}, key_file: ${files.key} }
    proxy_protocol: { from: [127.0.0.1/32] }
  - address: 127.0.0.1:0
    name: fwd
    kind: tcp
    target: 127.0.0.1:${echo.port}
    proxy_protocol: { from: ["::1", 127.0.0.0/8] }
  - address: 127.0.0.1:0
    name: web
    kind: tcp
    target: 127.0.0.1:${origin.port}
    proxy_protocol: { from: [127.0.0.1/32] }
  - address: 127.0.0.1:0
    name: sni
    kind: sni
    map: { "echo.test": "127.0.0.1:${echo.port}" }
    proxy_protocol: { from: [127.0.0.1/32] }
timeouts: { header: 400ms }
${extra}
rules:
  - name: via-balancer
    action: allow
    clients: [203.0.113.0/24]
    ips: [127.0.0.0/8]
  - name: local
    action: allow
    clients: [127.0.0.1/32]
    ips: [127.0.0.0/8]
`
}

const closedFor = (client: string) => (r: LogRecord): boolean => r.msg === 'tunnel closed' && r['client'] === client
const refused = (code: string) => (r: LogRecord): boolean => r.msg === 'request refused' && r['code'] === code

/** A raw connection to `port` that sends `bytes` first. */
async function withHeader (port: number, bytes: Buffer): Promise<Socket> {
  const socket = await rawConnect(port)
  socket.on('error', () => {})
  names.set(socket, clientOf(socket))
  socket.write(bytes)
  return socket
}

/** `ip:port` of our end, read while connected (a destroyed socket has forgotten it). */
const names = new WeakMap<Socket, string>()
const me = (socket: Socket): string => names.get(socket) ?? clientOf(socket)

describe('PROXY protocol on a connect listener', { timeout: 30_000 }, () => {
  let s: Sluice
  before(async () => { s = await startSluice(config()) })
  after(async () => { await s?.close() })

  it('curl --haproxy-protocol (v1) through a tcp listener: the request arrives, logged with the header\'s client', async (t) => {
    if (!needCurl(t)) return
    // curl sends its header to the server it talks HTTP to (through a CONNECT, inside the tunnel): here, a tcp forward.
    const r = await curl(['--haproxy-protocol', `http://127.0.0.1:${s.portOf('web')}/`])
    assert.equal(r.exit, 0, r.stderr)
    assert.match(r.codes, /^200 /)
    const rec = await s.waitForLog(r => r.msg === 'tunnel closed' && r['target'] === `127.0.0.1:${origin.port}` && r['rule'] === 'local')
    assert.match(String(rec['client']), /^127\.0\.0\.1:\d+$/)
    const dbg = await s.waitForLog(r => r.msg === 'proxy protocol header' && r['client'] === rec['client'])
    assert.equal(dbg['version'], 1)
  })

  it('curl without a header through a connect listener that requires one: 400', async (t) => {
    if (!needCurl(t)) return
    const plain = await curl(['-p', '-x', `http://127.0.0.1:${s.portOf('lb')}`, origin.url])
    assert.match(plain.codes, / 400$/)
    await s.waitForLog(refused('ERR_PROXY_PROTOCOL_MISSING'))
  })

  for (const [name, header] of [['v1', v1(CLIENT.address, '127.0.0.1', CLIENT.port, 3128)], ['v2', v2(CLIENT, { address: '127.0.0.1', port: 3128 })]] as const) {
    it(`${name} by hand: the header's client is what the clients: rule and the log line see`, async () => {
      const socket = await withHeader(s.portOf('lb'), Buffer.concat([header, Buffer.from(connectHead(`127.0.0.1:${echo.port}`))]))
      const res = await readHead(socket)
      assert.equal(res.status, 200)
      assert.equal(await roundTrip(socket, 'ping'), 'ping')
      socket.end()
      const rec = await s.waitForLog(closedFor(`${CLIENT.address}:${CLIENT.port}`))
      assert.deepEqual([rec['rule'], rec['status']], ['via-balancer', 200])
    })
  }

  it('a client no rule allows is denied by the header\'s address, not by the balancer\'s', async () => {
    const who = { address: '198.51.100.1', port: 5555 }
    const socket = await withHeader(s.portOf('lb'), Buffer.concat([v2(who, { address: '127.0.0.1', port: 1 }), Buffer.from(connectHead(`127.0.0.1:${echo.port}`))]))
    assert.equal((await readHead(socket)).status, 403)
    socket.destroy()
    assert.equal((await s.waitForLog(closedFor('198.51.100.1:5555')))['code'], 'ERR_POLICY_DENIED')
  })

  it('the header and the CONNECT split one byte per write give the same tunnel', async () => {
    const who = { address: '203.0.113.8', port: 1234 }
    const bytes = Buffer.concat([v2(who, { address: '127.0.0.1', port: 1 }, { tlvs: [[0x04, Buffer.from('pad')]] }), Buffer.from(connectHead(`127.0.0.1:${echo.port}`))])
    const socket = await rawConnect(s.portOf('lb'))
    socket.on('error', () => {})
    socket.setNoDelay(true)
    // Each byte its own write, each written before the next (the kernel may still merge some; the reader's unit tests split exactly).
    for (const b of bytes) await new Promise<void>((resolve, reject) => socket.write(Buffer.from([b]), err => { if (err == null) resolve(); else reject(err) }))
    assert.equal((await readHead(socket)).status, 200)
    socket.end()
    assert.equal((await s.waitForLog(closedFor('203.0.113.8:1234')))['rule'], 'via-balancer')
  })

  it('v2 LOCAL (a health check): the connection\'s own address', async () => {
    const socket = await withHeader(s.portOf('lb'), Buffer.concat([v2(undefined, undefined, { command: 0 }), Buffer.from(connectHead(`127.0.0.1:${echo.port}`))]))
    assert.equal((await readHead(socket)).status, 200)
    socket.end()
    assert.equal((await s.waitForLog(closedFor(me(socket))))['rule'], 'local')
  })

  it('malformed → 400 ERR_PROXY_PROTOCOL_MALFORMED, with the reason logged', async () => {
    const socket = await withHeader(s.portOf('lb'), Buffer.from('PROXY TCP4 203.0.113.7 127.0.0.1 1 99999\r\nCONNECT a:1 HTTP/1.1\r\n\r\n'))
    const res = await readHead(socket)
    assert.equal(res.status, 400)
    assert.match(res.headers['proxy-status'] ?? '', /ERR_PROXY_PROTOCOL_MALFORMED/)
    socket.destroy()
    const rec = await s.waitForLog(r => refused('ERR_PROXY_PROTOCOL_MALFORMED')(r) && r['client'] === me(socket))
    assert.match(String(rec['reason']), /destination port "99999"/)
  })

  it('a header cut off by the client\'s FIN → ERR_PROXY_PROTOCOL_MALFORMED', async () => {
    const socket = await withHeader(s.portOf('lb'), v2(CLIENT, { address: '127.0.0.1', port: 1 }).subarray(0, 20))
    socket.end()
    assert.equal((await readHead(socket)).status, 400)
    const rec = await s.waitForLog(r => refused('ERR_PROXY_PROTOCOL_MALFORMED')(r) && r['client'] === me(socket))
    assert.match(String(rec['reason']), /ended after 20 bytes/)
  })

  it('too slow → 408 ERR_PROXY_PROTOCOL_TIMEOUT (timeouts.header), part of a header or none', async () => {
    const part = await withHeader(s.portOf('lb'), Buffer.from('PROXY TCP4 203.0'))
    const none = await rawConnect(s.portOf('lb'))
    none.on('error', () => {})
    for (const socket of [part, none]) {
      const res = await readHead(socket, 5000)
      assert.equal(res.status, 408)
      assert.match(res.headers['proxy-status'] ?? '', /ERR_PROXY_PROTOCOL_TIMEOUT/)
      socket.destroy()
    }
  })

  it('a listed source without a header → 400 ERR_PROXY_PROTOCOL_MISSING', async () => {
    const socket = await withHeader(s.portOf('lb'), Buffer.from(connectHead(`127.0.0.1:${echo.port}`)))
    const res = await readHead(socket)
    assert.equal(res.status, 400)
    assert.match(res.headers['proxy-status'] ?? '', /ERR_PROXY_PROTOCOL_MISSING/)
    socket.destroy()
    await s.waitForLog(r => refused('ERR_PROXY_PROTOCOL_MISSING')(r) && r['client'] === me(socket))
  })

  it('an unlisted source: a v1 or v2 header is refused (403 ERR_PROXY_PROTOCOL_NOT_ALLOWED); anything else is served, as its own address', async () => {
    for (const header of [v1(CLIENT.address, '127.0.0.1', 1, 2), v2(CLIENT, { address: '127.0.0.1', port: 1 })]) {
      const socket = await withHeader(s.portOf('direct'), Buffer.concat([header, Buffer.from(connectHead(`127.0.0.1:${echo.port}`))]))
      const res = await readHead(socket)
      assert.equal(res.status, 403)
      assert.match(res.headers['proxy-status'] ?? '', /ERR_PROXY_PROTOCOL_NOT_ALLOWED/)
      socket.destroy()
      // Logged with the connection's own address: the header is never believed.
      await s.waitForLog(r => refused('ERR_PROXY_PROTOCOL_NOT_ALLOWED')(r) && r['client'] === me(socket))
    }
    // "P" could start a header: the stage waits for the next byte, then hands everything on.
    const socket = await withHeader(s.portOf('direct'), Buffer.from('P'))
    socket.write(connectHead(`127.0.0.1:${echo.port}`).replace(/^CONNECT/, 'OST'))
    assert.equal((await readHead(socket)).status, 405)
    socket.destroy()
    const ok = await withHeader(s.portOf('direct'), Buffer.from(connectHead(`127.0.0.1:${echo.port}`)))
    assert.equal((await readHead(ok)).status, 200)
    ok.end()
    assert.equal((await s.waitForLog(closedFor(me(ok))))['rule'], 'local')
  })

  it('a TLS listener: the header comes before the TLS handshake', async () => {
    const raw = await withHeader(s.portOf('tls'), v1(CLIENT.address, '127.0.0.1', 7777, 443))
    const tls = tlsConnect({ socket: raw, servername: 'localhost', ca: files.ca })
    tls.on('error', () => {})
    await once(tls, 'secureConnect')
    tls.write(connectHead(`127.0.0.1:${echo.port}`))
    assert.equal((await readHead(tls as unknown as Socket)).status, 200)
    tls.end()
    assert.equal((await s.waitForLog(closedFor(`${CLIENT.address}:7777`)))['rule'], 'via-balancer')
  })
})

describe('PROXY protocol on tcp and sni listeners', { timeout: 30_000 }, () => {
  let s: Sluice
  before(async () => { s = await startSluice(config()) })
  after(async () => { await s?.close() })

  it('tcp: the bytes after the header reach the target, and the log has the header\'s client', async () => {
    const socket = await withHeader(s.portOf('fwd'), Buffer.concat([v2(CLIENT, { address: '127.0.0.1', port: 5432 }), Buffer.from('SELECT 1')]))
    assert.equal((await readBytes(socket, 8)).toString(), 'SELECT 1')
    socket.end()
    assert.equal((await s.waitForLog(closedFor(`${CLIENT.address}:${CLIENT.port}`)))['rule'], 'via-balancer')
  })

  it('tcp: a refusal just closes (no HTTP), with the code logged', async () => {
    const socket = await withHeader(s.portOf('fwd'), Buffer.from('PROXY TCP9 x\r\n'))
    assert.equal((await readAll(socket)).length, 0)
    await s.waitForLog(r => refused('ERR_PROXY_PROTOCOL_MALFORMED')(r) && r['listener'] === 'fwd' && r['client'] === me(socket))
  })

  it('sni: the exact ClientHello after the header is routed and replayed', async () => {
    const hello = await nodeHello('echo.test')
    const socket = await withHeader(s.portOf('sni'), Buffer.concat([v1(CLIENT.address, '127.0.0.1', 9999, 443), hello]))
    // The echo target returns what it was sent: the hello, not a byte of the header.
    assert.ok((await readBytes(socket, hello.length)).equals(hello))
    socket.destroy()
    const rec = await s.waitForLog(closedFor(`${CLIENT.address}:9999`))
    assert.deepEqual([rec['sni'], rec['rule']], ['echo.test', 'via-balancer'])
  })

  it('sni: no header from a listed source → closed, ERR_PROXY_PROTOCOL_MISSING', async () => {
    const socket = await withHeader(s.portOf('sni'), await nodeHello('echo.test'))
    assert.equal((await readAll(socket)).length, 0)
    await s.waitForLog(r => refused('ERR_PROXY_PROTOCOL_MISSING')(r) && r['listener'] === 'sni' && r['client'] === me(socket))
  })
})

describe('per-client limits count the header\'s client', { timeout: 30_000 }, () => {
  it('max_tunnels_per_client: 1 → a second tunnel for 203.0.113.7 is refused, one for 203.0.113.9 is not', async (t) => {
    const s = await sluiceFor(t, config('limits: { max_tunnels_per_client: 1 }'))
    const open = async (address: string, port: number): Promise<{ status: number, socket: Socket }> => {
      const socket = await withHeader(s.portOf('lb'), Buffer.concat([v2({ address, port }, { address: '127.0.0.1', port: 1 }), Buffer.from(connectHead(`127.0.0.1:${echo.port}`))]))
      return { status: (await readHead(socket)).status, socket }
    }
    const first = await open('203.0.113.7', 1)
    const second = await open('203.0.113.7', 2)
    const other = await open('203.0.113.9', 3)
    assert.deepEqual([first.status, second.status, other.status], [200, 429, 200])
    for (const c of [first, second, other]) c.socket.destroy()
  })
})
