/**
 * Listeners of every kind (issue 13): an HTTPS proxy (TLS from the client,
 * CONNECT inside), client certificates as the tunnel's user, the
 * wrong-protocol answers, handshake failures, and the fixed TCP forward.
 * Real TLS clients (node:tls here; curl, undici, Python, openssl and
 * Chromium in tls-clients.test.ts), real sockets on 127.0.0.1 port 0.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect as netConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import bcrypt from 'bcryptjs'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { startEchoServer } from '../helpers/origin.js'
import { clientOf, connectVia, readAll, roundTrip } from '../helpers/raw.js'
import { sluiceFor, type LogRecord } from '../helpers/sluice.js'
import { clientCa, makeCert, makeClientCert, type TestCert } from '../helpers/tls.js'
import { within } from '../helpers/wait.js'

let dir = ''
let server: TestCert
let echo: Awaited<ReturnType<typeof startEchoServer>>
/** Paths of the PEM files the configs name. */
const files = { cert: '', key: '', clientCa: '' }

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-listeners-'))
  server = await makeCert({ names: ['localhost', 'proxy.test'] })
  files.cert = join(dir, 'proxy.pem')
  files.key = join(dir, 'proxy.key')
  files.clientCa = join(dir, 'clients-ca.pem')
  await writeFile(files.cert, server.cert)
  await writeFile(files.key, server.key)
  await writeFile(files.clientCa, await clientCa())
  echo = await startEchoServer()
})
after(async () => {
  await echo.close()
  await rm(dir, { recursive: true, force: true })
})

const ALLOW_LOOPBACK = `
rules:
  - name: loopback
    action: allow
    ips: [127.0.0.0/8]
`

function tlsListener (extra = ''): string {
  return `listen:
  - address: 127.0.0.1:0
    name: remote
    tls:
      cert_file: ${files.cert}
      key_file: ${files.key}
${extra}
timeouts: { tls_handshake: 400ms }
${ALLOW_LOOPBACK}`
}

/** A TLS connection to the proxy that trusts the test CA; resolves once the handshake is done. */
async function tlsTo (port: number, opts: { key?: string, cert?: string, servername?: string } = {}): Promise<TLSSocket> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: server.ca, servername: opts.servername ?? 'localhost', ALPNProtocols: ['http/1.1'], ...(opts.key === undefined ? {} : { key: opts.key, cert: opts.cert }) })
  socket.on('error', () => {})
  await within(once(socket, 'secureConnect'), 'TLS handshake with the proxy')
  return socket
}

/** A TLS client the proxy refuses in (or right after) the handshake: resolves with how it ended. */
async function refusedTls (port: number, opts: { key?: string, cert?: string }): Promise<string> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: server.ca, servername: 'localhost', ...(opts.key === undefined ? {} : { key: opts.key, cert: opts.cert }) })
  const ended = new Promise<string>((resolve) => {
    socket.on('error', (err: Error & { code?: string }) => resolve(`error ${err.code ?? err.message}`))
    socket.on('close', () => resolve('closed'))
  })
  // TLS 1.3: the server's verdict on our certificate arrives after our Finished; a read brings it.
  socket.on('secureConnect', () => { socket.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\n\r\n`) })
  socket.resume()
  return await within(ended, 'the refused TLS client sees the end')
}

const closedLine = (s: { waitForLog: (p: (r: LogRecord) => boolean, ms?: number) => Promise<LogRecord> }, client: string): Promise<LogRecord> =>
  s.waitForLog(r => r['msg'] === 'tunnel closed' && r['client'] === client)

describe('an HTTPS proxy listener (tls on a connect listener)', { timeout: 30_000 }, () => {
  it('takes a CONNECT inside TLS and relays both ways; the log names the listener\'s tunnel as usual', async (t) => {
    const s = await sluiceFor(t, tlsListener())
    const socket = await tlsTo(s.portOf('remote'))
    assert.equal(socket.alpnProtocol, 'http/1.1')
    const res = await connectVia(0, `127.0.0.1:${echo.port}`, { socket: socket as unknown as import('node:net').Socket })
    assert.equal(res.status, 200)
    assert.equal(await roundTrip(res.socket, 'through TLS'), 'through TLS')
    socket.end()
    const rec = await closedLine(s, clientOf(socket))
    assert.equal(rec['status'], 200)
    assert.ok(Number(rec['bytes_up']) >= 11)
  })

  it('answers plain HTTP with a plain-HTTP 400 ERR_TLS_REQUIRED that says to use https://', async (t) => {
    const s = await sluiceFor(t, tlsListener())
    const c = netConnect({ host: '127.0.0.1', port: s.portOf('remote') })
    c.on('error', () => {})
    await once(c, 'connect')
    c.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\n`)
    const text = (await readAll(c)).toString('latin1')
    assert.match(text, /^HTTP\/1\.1 400 /)
    assert.match(text, /ERR_TLS_REQUIRED/)
    assert.match(text, /https:\/\//)
    const rec = await s.waitForLog(r => r['msg'] === 'request refused' && r['code'] === 'ERR_TLS_REQUIRED')
    assert.equal(rec['listener'], 'remote')
  })

  it('logs a handshake that never comes as ERR_TLS_TIMEOUT and closes it', async (t) => {
    const s = await sluiceFor(t, tlsListener())
    const c = netConnect({ host: '127.0.0.1', port: s.portOf('remote') })
    c.on('error', () => {})
    await once(c, 'connect')
    const closed = once(c, 'close')
    c.resume()
    const rec = await s.waitForLog(r => r['msg'] === 'tls handshake failed' && r['code'] === 'ERR_TLS_TIMEOUT', 5000)
    assert.equal(rec['client'], clientOf(c))
    await within(closed, 'the silent client is closed')
  })

  it('logs a broken handshake (a TLS record header, then garbage) as ERR_TLS_HANDSHAKE, without crashing', async (t) => {
    const s = await sluiceFor(t, tlsListener())
    const c = netConnect({ host: '127.0.0.1', port: s.portOf('remote') })
    c.on('error', () => {})
    await once(c, 'connect')
    const closed = once(c, 'close')
    c.resume() // read the alert and the FIN
    c.write(Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x40]), Buffer.alloc(64, 0xee)]))
    const rec = await s.waitForLog(r => r['msg'] === 'tls handshake failed' && r['client'] === clientOf(c), 5000)
    assert.equal(rec['code'], 'ERR_TLS_HANDSHAKE')
    assert.equal(rec['tls_error'], 'ERR_SSL_UNEXPECTED_MESSAGE')
    await within(closed, 'the broken client is closed')
    assert.equal(s.proxy.registry.size, 0)
  })

  it('serves another certificate by SNI, the main one otherwise', async (t) => {
    const other = await makeCert({ names: ['other.test'] })
    await writeFile(join(dir, 'other.pem'), other.cert)
    await writeFile(join(dir, 'other.key'), other.key)
    const s = await sluiceFor(t, tlsListener(`      certs:\n        - { cert_file: ${join(dir, 'other.pem')}, key_file: ${join(dir, 'other.key')} }`))
    const a = await tlsTo(s.portOf('remote'), { servername: 'other.test' })
    assert.deepEqual(a.getPeerCertificate().subjectaltname, 'DNS:other.test, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')
    a.destroy()
    const b = await tlsTo(s.portOf('remote'), { servername: 'proxy.test' })
    assert.match(b.getPeerCertificate().subjectaltname ?? '', /DNS:proxy\.test/)
    b.destroy()
  })
})

describe('TLS bytes on a plain listener', { timeout: 30_000 }, () => {
  it('are logged as ERR_TLS_ON_PLAIN_LISTENER (an https:// proxy URL for an http:// listener) and closed', async (t) => {
    const s = await sluiceFor(t, `listen: 127.0.0.1:0\n${ALLOW_LOOPBACK}`)
    const refused = refusedTls(s.port, {})
    assert.match(await refused, /^(error|closed)/)
    const rec = await s.waitForLog(r => r['msg'] === 'request refused' && r['code'] === 'ERR_TLS_ON_PLAIN_LISTENER')
    assert.equal(rec['status'], 400)
  })
})

describe('client certificates', { timeout: 30_000 }, () => {
  const mtls = (mode: string, identity = 'cn'): string => tlsListener(`      client_ca_file: ${files.clientCa}\n      client_cert: ${mode}\n      identity: ${identity}`)

  it('a verified certificate\'s CN is the tunnel\'s user: users: rules and the log see it', async (t) => {
    const yaml = mtls('required').replace(ALLOW_LOOPBACK, `
rules:
  - name: alice-only
    action: allow
    users: [alice]
    ips: [127.0.0.0/8]
`)
    const s = await sluiceFor(t, yaml)
    const alice = await makeClientCert({ cn: 'alice' })
    const socket = await tlsTo(s.portOf('remote'), alice)
    const res = await connectVia(0, `127.0.0.1:${echo.port}`, { socket: socket as unknown as import('node:net').Socket })
    assert.equal(res.status, 200)
    socket.end()
    const rec = await closedLine(s, clientOf(socket))
    assert.deepEqual([rec['user'], rec['rule']], ['alice', 'alice-only'])

    const bob = await makeClientCert({ cn: 'bob' })
    const other = await tlsTo(s.portOf('remote'), bob)
    const denied = await connectVia(0, `127.0.0.1:${echo.port}`, { socket: other as unknown as import('node:net').Socket })
    assert.equal(denied.status, 403)
    other.destroy()
  })

  it('identity: san_email takes the rfc822Name SAN', async (t) => {
    const s = await sluiceFor(t, mtls('required', 'san_email'))
    const c = await makeClientCert({ cn: 'ignored', email: 'carol@example.com' })
    const socket = await tlsTo(s.portOf('remote'), c)
    const res = await connectVia(0, `127.0.0.1:${echo.port}`, { socket: socket as unknown as import('node:net').Socket })
    assert.equal(res.status, 200)
    socket.end()
    assert.equal((await closedLine(s, clientOf(socket)))['user'], 'carol@example.com')
  })

  for (const [what, make] of [
    ['missing', async () => ({})],
    ['untrusted', async () => await makeClientCert({ cn: 'mallory', untrusted: true })],
    ['expired', async () => await makeClientCert({ cn: 'old', expired: true })]
  ] as const) {
    it(`required: a ${what} certificate is refused in the handshake and logged as ERR_TLS_CLIENT_CERT`, async (t) => {
      const s = await sluiceFor(t, mtls('required'))
      const ended = await refusedTls(s.portOf('remote'), await make())
      assert.match(ended, /^(error|closed)/)
      const rec = await s.waitForLog(r => r['msg'] === 'tls handshake failed', 5000)
      assert.equal(rec['code'], 'ERR_TLS_CLIENT_CERT', JSON.stringify(rec))
      assert.equal(s.proxy.registry.size, 0)
    })
  }

  it('optional: no certificate is an anonymous client; an untrusted one is still refused', async (t) => {
    const s = await sluiceFor(t, mtls('optional'))
    const anon = await tlsTo(s.portOf('remote'))
    const res = await connectVia(0, `127.0.0.1:${echo.port}`, { socket: anon as unknown as import('node:net').Socket })
    assert.equal(res.status, 200)
    anon.end()
    assert.equal((await closedLine(s, clientOf(anon)))['user'], undefined)
    await refusedTls(s.portOf('remote'), await makeClientCert({ cn: 'mallory', untrusted: true }))
    const rec = await s.waitForLog(r => r['msg'] === 'tls handshake failed', 5000)
    assert.equal(rec['code'], 'ERR_TLS_CLIENT_CERT')
  })
})

describe('Basic auth inside TLS, and a certificate beside it', { timeout: 30_000 }, () => {
  const basic = (user: string, password: string): string => `Proxy-Authorization: Basic ${Buffer.from(`${user}:${password}`).toString('base64')}\r\n`

  it('without a client certificate, Basic auth works inside the TLS session; with a verified one, the certificate is the user and Basic is not consulted', async (t) => {
    const users = join(dir, 'users')
    await writeFile(users, `dave:${bcrypt.hashSync('right', 4)}\n`)
    const yaml = tlsListener(`      client_ca_file: ${files.clientCa}\n      client_cert: optional`)
      .replace('timeouts:', `auth: { users_file: ${users} }\ntimeouts:`)
      .replace('    ips: [127.0.0.0/8]', '    users: [dave, erin]\n    ips: [127.0.0.0/8]')
    const s = await sluiceFor(t, yaml)
    const port = s.portOf('remote')
    const target = `127.0.0.1:${echo.port}`

    const anon = await tlsTo(port)
    const challenged = await connectVia(0, target, { socket: anon as unknown as import('node:net').Socket })
    assert.equal(challenged.status, 407)
    anon.destroy()

    const withBasic = await tlsTo(port)
    const ok = await connectVia(0, target, { socket: withBasic as unknown as import('node:net').Socket, headers: basic('dave', 'right') })
    assert.equal(ok.status, 200)
    withBasic.end()
    assert.equal((await closedLine(s, clientOf(withBasic)))['user'], 'dave')

    // A certificate for erin and a wrong password for dave: the certificate wins.
    const erin = await tlsTo(port, await makeClientCert({ cn: 'erin' }))
    const both = await connectVia(0, target, { socket: erin as unknown as import('node:net').Socket, headers: basic('dave', 'wrong') })
    assert.equal(both.status, 200)
    erin.end()
    assert.equal((await closedLine(s, clientOf(erin)))['user'], 'erin')
  })
})

describe('a fixed TCP forward (kind: tcp)', { timeout: 30_000 }, () => {
  const tcp = (rules: string): string => `listen:
  - 127.0.0.1:0
  - address: 127.0.0.1:0
    name: db
    kind: tcp
    target: 127.0.0.1:${echo.port}
${rules}`

  it('relays every connection to its target, with no HTTP at all; the log line names the listener\'s rule', async (t) => {
    const s = await sluiceFor(t, tcp(`rules:
  - name: db-forward
    action: allow
    listeners: [db]
    ips: [127.0.0.0/8]
`))
    const c = netConnect({ host: '127.0.0.1', port: s.portOf('db') })
    c.on('error', () => {})
    await once(c, 'connect')
    assert.equal(await roundTrip(c, 'SELECT 1'), 'SELECT 1')
    c.end()
    const rec = await closedLine(s, clientOf(c))
    assert.deepEqual([rec['status'], rec['rule'], rec['target']], [200, 'db-forward', `127.0.0.1:${echo.port}`])
  })

  it('closes a connection the policy refuses, sends nothing, and logs the code', async (t) => {
    // No rule lists 127.0.0.0/8 under ips: the special-purpose guard refuses the loopback target.
    const s = await sluiceFor(t, tcp(`rules:
  - name: db-forward
    action: allow
    listeners: [db]
`))
    const c = netConnect({ host: '127.0.0.1', port: s.portOf('db') })
    c.on('error', () => {})
    await once(c, 'connect')
    const got = await readAll(c)
    assert.equal(got.length, 0, 'nothing is sent on a refusal')
    const rec = await closedLine(s, clientOf(c))
    assert.deepEqual([rec['status'], rec['code']], [403, 'ERR_DESTINATION_PROHIBITED'])
  })
})
