/**
 * SNI-routed TLS passthrough (`kind: sni`, issue 14): the ClientHello's
 * server_name picks the target, the policy judges it (hosts: match the
 * name), the exact hello is replayed, TLS is end to end between client and
 * origin. Real TLS clients (node:tls, curl --connect-to, openssl
 * s_client), a stub DNS server on loopback, port 0.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect as netConnect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls'
import { startDnsStubRetrying, type DnsStub } from '../helpers/dns-stub.js'
import { listenOn } from '../helpers/net.js'
import { clientOf, readAll } from '../helpers/raw.js'
import { sluiceFor, startSluice, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { makeCert, type TestCert } from '../helpers/tls.js'
import { within } from '../helpers/wait.js'
import { frame, messageOf, nodeHello, sniData, withExtensions } from '../helpers/client-hello.js'

const run = promisify(execFile)

let stub: DnsStub
let cert: TestCert
let origin: TlsServer
let originPort = 0
let dir = ''
const originSockets = new Set<import('node:net').Socket>()

before(async () => {
  stub = await startDnsStubRetrying({ 'origin.test': { A: ['127.0.0.1'] }, 'other.test': { A: ['127.0.0.1'] }, 'gone.test': { rcode: 'NXDOMAIN' } })
  cert = await makeCert({ names: ['origin.test', 'other.test', 'db.internal.example'] })
  // The origin: TLS with its own certificate, answers every line with "echo: line", and says which name it was asked for.
  origin = createTlsServer({ key: cert.key, cert: cert.cert, ALPNProtocols: ['h2', 'http/1.1'] }, (s) => {
    s.on('error', () => {})
    const name = String((s as unknown as { servername?: string }).servername)
    // other.test is the HTTP origin (curl's): no greeting there.
    if (name !== 'other.test') s.write(`hello ${name} ${String(s.alpnProtocol)}\n`)
    s.on('data', (d: Buffer) => {
      // An HTTP client (curl) gets a real answer and the end of the connection; anything else an echo.
      if (d.subarray(0, 4).toString() === 'GET ') s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok')
      else s.write(`echo: ${d.toString()}`)
    })
  })
  // Every raw connection, handshake finished or not, so that after() can end them all.
  origin.on('connection', (raw: import('node:net').Socket) => {
    originSockets.add(raw)
    raw.on('close', () => originSockets.delete(raw))
  })
  originPort = await listenOn(origin, '127.0.0.1')
  dir = await mkdtemp(join(tmpdir(), 'sluice-sni-'))
  await writeFile(join(dir, 'ca.pem'), cert.ca)
})
after(async () => {
  for (const s of originSockets) s.destroy()
  // Bounded: a connection still closing must not hold the file open.
  await within(new Promise<void>(resolve => origin.close(() => resolve())), 'the origin closes', 5000).catch(() => { origin.unref() })
  await stub.close()
  await rm(dir, { recursive: true, force: true })
})

function config (rules: string, extra = ''): string {
  return `listen:
  - address: 127.0.0.1:0
    name: sni
    kind: sni
    target_port: ${originPort}
${extra}
dns: { servers: ["${stub.address}"], negative_ttl: 0 }
timeouts: { header: 500ms }
${rules}`
}

const ALLOW_ORIGIN = `rules:
  - name: origin
    action: allow
    hosts: [origin.test, other.test]
    ips: [127.0.0.0/8]
`

/** A TLS client through the SNI listener, trusting the origin's CA: the first line the origin says. */
async function through (port: number, servername: string, alpn = ['http/1.1']): Promise<{ line: string, socket: Socket }> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername, ca: cert.ca, ALPNProtocols: alpn })
  socket.on('error', () => {})
  await within(once(socket, 'secureConnect'), `TLS to the origin through Sluice as ${servername}`)
  const [data] = await within(once(socket, 'data'), 'the origin\'s greeting') as [Buffer]
  return { line: data.toString().trim(), socket: socket as unknown as Socket }
}

const closedLine = async (s: Sluice, client: string): Promise<LogRecord> =>
  await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['client'] === client)

/** Raw bytes to the SNI listener: what came back (bounded), and the connection's end. */
async function raw (port: number, bytes: Buffer | Buffer[]): Promise<{ got: Buffer, client: string }> {
  const c = netConnect({ host: '127.0.0.1', port })
  c.on('error', () => {})
  await once(c, 'connect')
  const client = clientOf(c)
  for (const b of Array.isArray(bytes) ? bytes : [bytes]) c.write(b)
  return { got: await readAll(c), client }
}

describe('kind: sni passthrough', { timeout: 30_000 }, () => {
  it('routes by the ClientHello\'s name: TLS is end to end, the origin sees the client\'s SNI and ALPN, the log has sni and alpn', async (t) => {
    const s = await sluiceFor(t, config(ALLOW_ORIGIN))
    const { line, socket } = await through(s.portOf('sni'), 'origin.test', ['h2', 'http/1.1'])
    assert.equal(line, 'hello origin.test h2')
    socket.end()
    const rec = await closedLine(s, clientOf(socket))
    assert.deepEqual([rec['target'], rec['rule'], rec['sni'], rec['alpn'], rec['status']], [`origin.test:${originPort}`, 'origin', 'origin.test', ['h2', 'http/1.1'], 200])
  })

  it('curl --connect-to reaches the origin through it', async (t) => {
    const s = await sluiceFor(t, config(ALLOW_ORIGIN))
    // curl verifies origin.test's own certificate through Sluice, and gets the origin's answer.
    const r = await run('curl', ['-sS', '--http1.1', '-w', ' %{http_code} %{ssl_verify_result}', '--max-time', '5', '--cacert', join(dir, 'ca.pem'),
      '--connect-to', `other.test:${originPort}:127.0.0.1:${s.portOf('sni')}`, `https://other.test:${originPort}/`], { timeout: 10_000 })
    assert.equal(r.stdout, 'ok 200 0')
    await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['sni'] === 'other.test')
  })

  it('openssl s_client -servername: verified through the listener', async (t) => {
    const s = await sluiceFor(t, config(ALLOW_ORIGIN))
    const child = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${s.portOf('sni')}`, '-servername', 'origin.test', '-CAfile', join(dir, 'ca.pem'),
      '-verify_return_error', '-verify_hostname', 'origin.test', '-quiet'], { timeout: 10_000 })
    let out = ''
    const greeted = new Promise<void>((resolve) => {
      child.stdout?.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('hello origin.test')) resolve() })
    })
    child.stderr?.on('data', () => {})
    const exited = once(child, 'exit')
    await within(greeted, 'openssl shows the origin\'s greeting', 10_000).catch(() => {})
    child.kill()
    await within(exited, 'openssl exits')
    assert.match(out, /hello origin\.test/)
  })

  it('a hello written a byte at a time, one split across two TLS records, and a 17 KiB one are routed and replayed exactly', async (t) => {
    const s = await sluiceFor(t, config(ALLOW_ORIGIN))
    const hello = await nodeHello('origin.test', ['http/1.1'])
    const message = messageOf(hello)
    const half = Math.floor(message.length / 2)
    const big = withExtensions(message, ex => [...ex, [0x0015, Buffer.alloc(17 * 1024)]])
    const variants: ReadonlyArray<readonly [string, Buffer[]]> = [
      ['byte by byte', [...hello].map(b => Buffer.from([b]))],
      ['two records', [frame(message, [half, message.length - half])]],
      ['17 KiB over two records', [frame(big)]]
    ]
    for (const [what, writes] of variants) {
      const c = netConnect({ host: '127.0.0.1', port: s.portOf('sni'), noDelay: true })
      c.on('error', () => {})
      await once(c, 'connect')
      const client = clientOf(c)
      for (const w of writes) c.write(w)
      // The origin's answer, through the tunnel: a TLS handshake record (its ServerHello), so it got the hello whole.
      const [first] = await within(once(c, 'data'), `${what}: the origin's ServerHello`) as [Buffer]
      assert.equal(first[0], 0x16, what)
      c.destroy()
      const rec = await closedLine(s, client)
      assert.deepEqual([rec['sni'], rec['status']], ['origin.test', 200], what)
    }
  })

  it('an outer ClientHello offering ECH is routed by its public name, and the log says ech', async (t) => {
    const s = await sluiceFor(t, config(ALLOW_ORIGIN))
    const hello = frame(withExtensions(messageOf(await nodeHello('origin.test', ['http/1.1'])), ex => [...ex, [0xfe0d, Buffer.from([0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00])]]))
    const c = netConnect({ host: '127.0.0.1', port: s.portOf('sni') })
    c.on('error', () => {})
    await once(c, 'connect')
    const client = clientOf(c)
    c.write(hello)
    // The origin does not speak ECH: it answers (or refuses) the outer hello; either way the tunnel was routed.
    await within(once(c, 'data'), 'the origin answers through the tunnel')
    c.destroy()
    const rec = await closedLine(s, client)
    assert.deepEqual([rec['sni'], rec['ech'], rec['status']], ['origin.test', true, 200])
  })

  it('refuses a name the policy denies with an access_denied alert, and logs the rule', async (t) => {
    const s = await sluiceFor(t, config(ALLOW_ORIGIN))
    stub.set('denied.test', { A: ['127.0.0.1'] })
    const { got, client } = await raw(s.portOf('sni'), await nodeHello('denied.test'))
    assert.deepEqual([...got], [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49])
    const rec = await closedLine(s, client)
    assert.deepEqual([rec['code'], rec['sni'], rec['rule']], ['ERR_POLICY_DENIED', 'denied.test', 'default'])
  })

  it('refuses no SNI and an IP literal as SNI with unrecognized_name; not TLS with a close; garbage and slowness with codes', async (t) => {
    const s = await sluiceFor(t, config(ALLOW_ORIGIN))
    const port = s.portOf('sni')
    const noSni = await nodeHello(undefined)
    const a = await raw(port, noSni)
    assert.deepEqual([...a.got], [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112])
    await s.waitForLog(r => r['msg'] === 'request refused' && r['client'] === a.client && r['code'] === 'ERR_SNI_MISSING')
    const b = await raw(port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))
    assert.equal(b.got.length, 0)
    await s.waitForLog(r => r['msg'] === 'request refused' && r['client'] === b.client && r['code'] === 'ERR_SNI_NOT_TLS')
    // A ClientHello whose body is 4 bytes: lengths that do not add up.
    const c = await raw(port, Buffer.from([0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x04, 0x03, 0x03, 0x00, 0x00]))
    assert.deepEqual([...c.got], [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 50])
    await s.waitForLog(r => r['msg'] === 'request refused' && r['client'] === c.client && r['code'] === 'ERR_SNI_MALFORMED')
    // A handshake message longer than the 64 KiB cap.
    const d = await raw(port, Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x10]), Buffer.alloc(16, 0x01)]))
    await s.waitForLog(r => r['msg'] === 'request refused' && r['client'] === d.client && r['code'] === 'ERR_SNI_TOO_LARGE')
    // An IP literal as the SNI name (RFC 6066 forbids it).
    const ipHello = frame(withExtensions(messageOf(noSni), ex => [...ex.filter(([type]) => type !== 0), [0, sniData('10.0.0.1')]]))
    const e = await raw(port, ipHello)
    assert.deepEqual([...e.got], [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112])
    await s.waitForLog(r => r['msg'] === 'request refused' && r['client'] === e.client && r['code'] === 'ERR_SNI_IP_LITERAL')
    // Half a hello, then silence: timeouts.header (500 ms) ends it.
    const slow = netConnect({ host: '127.0.0.1', port })
    slow.on('error', () => {})
    await once(slow, 'connect')
    slow.write(noSni.subarray(0, 20))
    const closed = once(slow, 'close')
    slow.resume()
    await s.waitForLog(r => r['msg'] === 'request refused' && r['client'] === clientOf(slow) && r['code'] === 'ERR_SNI_TIMEOUT', 5000)
    await within(closed, 'the slow client is closed')
    assert.equal(s.proxy.registry.size, 0)
  })

  it('a client still sending its hello is closed by shutdown, not left to the header timeout', async () => {
    const s = await startSluice(config(ALLOW_ORIGIN).replace('timeouts: { header: 500ms }', 'timeouts: { header: 60s }'))
    const c = netConnect({ host: '127.0.0.1', port: s.portOf('sni') })
    c.on('error', () => {})
    await once(c, 'connect')
    c.write((await nodeHello('origin.test')).subarray(0, 10))
    // A close or a reset: either ends it (once() would reject on the reset's 'error').
    const closed = new Promise<void>(resolve => c.on('close', () => resolve()))
    c.resume()
    await within(s.close(0), 'shutdown with a connection mid-hello', 10_000)
    await within(closed, 'the mid-hello client is closed')
  })

  it('map: a name goes to a fixed host:port, judged as that target', async (t) => {
    const s = await sluiceFor(t, config(`rules:
  - name: mapped
    action: allow
    ips: [127.0.0.0/8]
`, `    map: { "*.internal.example": "127.0.0.1:${originPort}" }`))
    const { line, socket } = await through(s.portOf('sni'), 'db.internal.example')
    assert.equal(line, 'hello db.internal.example http/1.1')
    socket.end()
    const rec = await closedLine(s, clientOf(socket))
    assert.deepEqual([rec['target'], rec['sni']], [`127.0.0.1:${originPort}`, 'db.internal.example'])
  })
})
