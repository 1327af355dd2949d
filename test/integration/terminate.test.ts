/**
 * TLS termination with re-origination (`kind: terminate`, issue 14): the
 * client is shown Sluice's certificate for its SNI (Sluice's own CA, the
 * only one the clients here trust), Sluice opens verified TLS to the
 * upstream (origins with the per-process test CA, passed as `ca_file`) and
 * splices the plaintext. Upstreams that must be refused: expired, for
 * another name, signed by an unknown CA, TLS 1.1 only, silent. Real clients:
 * curl --connect-to and node:tls; port 0, no DNS (map entries are IPs, and
 * a mapped name is judged as its target).
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { X509Certificate } from 'node:crypto'
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect as netConnect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls'
import { nodeHello } from '../helpers/client-hello.js'
import { listenOn } from '../helpers/net.js'
import { readAll } from '../helpers/raw.js'
import { replaceFile, serveFile } from '../helpers/serve-file.js'
import { sluiceFor, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { makeCa, makeClientCert, makeServerCertFrom, testCaPair, type TestCert } from '../helpers/tls.js'
import { assertNothingOpen, within } from '../helpers/wait.js'

const run = promisify(execFile)

let dir = ''
let sluiceCa = ''
let own: Awaited<ReturnType<typeof makeCa>>
const servers: Array<TlsServer | NetServer> = []
const sockets = new Set<Socket>()
const ports: Record<string, number> = {}

/** An HTTPS-ish origin: answers `GET` with 200 "ok", anything else with `echo: …`; says its ALPN on `alpn?`. */
async function origin (name: string, cert: TestCert, extra: Record<string, unknown> = {}): Promise<void> {
  const server = createTlsServer({ key: cert.key, cert: cert.cert, ALPNProtocols: ['h2', 'http/1.1'], ...extra }, (s) => {
    s.on('error', () => {})
    s.on('data', (d: Buffer) => {
      const text = d.toString()
      if (text.startsWith('GET ')) s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok')
      else if (text === 'alpn?') s.write(`alpn=${String(s.alpnProtocol)}`)
      else s.write(`echo: ${text}`)
    })
  })
  server.on('connection', (raw: Socket) => { sockets.add(raw); raw.on('close', () => sockets.delete(raw)) })
  server.on('tlsClientError', () => {})
  ports[name] = await listenOn(server, '127.0.0.1')
  servers.push(server)
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-terminate-'))
  const testCa = await testCaPair()
  const stranger = await makeCa('Stranger CA')
  // The origins, with their own CA (the per-process test CA).
  await origin('good', await makeServerCertFrom(testCa, ['good.example.test', 'other.test']))
  await origin('expired', await makeServerCertFrom(testCa, ['expired.example.test'], { expired: true }))
  await origin('wrongname', await makeServerCertFrom(testCa, ['somebody-else.test']))
  await origin('unknownca', await makeServerCertFrom(stranger, ['unknownca.example.test']))
  // TLS 1.1 at most: OpenSSL 3 needs security level 0 for it.
  await origin('old', await makeServerCertFrom(testCa, ['old.example.test']), { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' })
  await origin('tls12', await makeServerCertFrom(testCa, ['tls12.example.test']), { maxVersion: 'TLSv1.2' })
  // An origin that asks for a client certificate from the test CA.
  await origin('mtls', await makeServerCertFrom(testCa, ['mtls.example.test']), { requestCert: true, rejectUnauthorized: true, ca: testCa.cert })
  // Accepts and never answers.
  const silent = createNetServer((s) => { sockets.add(s); s.on('error', () => {}); s.on('close', () => sockets.delete(s)) })
  ports['silent'] = await listenOn(silent, '127.0.0.1')
  servers.push(silent)
  // Sluice's own CA and what it shows clients: a wildcard, and a second certificate for other.test.
  own = await makeCa('Sluice Terminate CA')
  sluiceCa = own.cert
  const wildcard = await makeServerCertFrom(own, ['*.example.test'])
  const other = await makeServerCertFrom(own, ['other.test'])
  const client = await makeClientCert({ cn: 'sluice-upstream-client' })
  await Promise.all([
    writeFile(join(dir, 'sluice-ca.pem'), own.cert),
    writeFile(join(dir, 'origin-ca.pem'), testCa.cert),
    writeFile(join(dir, 'wild.pem'), wildcard.cert), writeFile(join(dir, 'wild.key'), wildcard.key),
    writeFile(join(dir, 'other.pem'), other.cert), writeFile(join(dir, 'other.key'), other.key),
    writeFile(join(dir, 'client.pem'), client.cert), writeFile(join(dir, 'client.key'), client.key)
  ])
})

after(async () => {
  for (const s of sockets) s.destroy()
  await Promise.all(servers.map(async s => await within(new Promise<void>(resolve => s.close(() => resolve())), 'an origin closes', 5000).catch(() => { s.unref() })))
  await rm(dir, { recursive: true, force: true })
})

function config (opts: { upstream?: string, rules?: string, timeouts?: string } = {}): string {
  const p = ports
  return `listen:
  - address: 127.0.0.1:0
    name: term
    kind: terminate
    tls: { cert_file: wild.pem, key_file: wild.key, certs: [{ cert_file: other.pem, key_file: other.key }] }
    upstream_tls: ${opts.upstream ?? '{ ca_file: origin-ca.pem }'}
    map:
      good.example.test: 127.0.0.1:${p['good'] ?? 0}
      other.test: 127.0.0.1:${p['good'] ?? 0}
      expired.example.test: 127.0.0.1:${p['expired'] ?? 0}
      wrongname.example.test: 127.0.0.1:${p['wrongname'] ?? 0}
      unknownca.example.test: 127.0.0.1:${p['unknownca'] ?? 0}
      old.example.test: 127.0.0.1:${p['old'] ?? 0}
      tls12.example.test: 127.0.0.1:${p['tls12'] ?? 0}
      silent.example.test: 127.0.0.1:${p['silent'] ?? 0}
      mtls.example.test: { target: "127.0.0.1:${p['mtls'] ?? 0}", upstream_tls: { ca_file: origin-ca.pem, cert_file: client.pem, key_file: client.key } }
      nocert.invalid: 127.0.0.1:${p['good'] ?? 0}
timeouts: { header: 2s, tls_handshake: ${opts.timeouts ?? '2s'} }
${opts.rules ?? `rules:
  - name: terminated
    action: allow
    ips: [127.0.0.0/8]`}
`
}

const start = async (t: Parameters<typeof sluiceFor>[0], opts?: Parameters<typeof config>[0]): Promise<Sluice> =>
  await sluiceFor(t, config(opts), { file: join(dir, 'sluice.yaml') })

/** A TLS client through the listener that trusts only Sluice's CA; resolves once secure or with its error. */
async function client (port: number, servername: string, alpn = ['http/1.1'], ca = sluiceCa): Promise<{ socket: TLSSocket, error?: Error & { code?: string } }> {
  const socket = tlsConnect({ host: '127.0.0.1', port, servername, ca, ALPNProtocols: alpn })
  return await within(new Promise((resolve) => {
    socket.once('secureConnect', () => resolve({ socket }))
    socket.once('error', (error: Error & { code?: string }) => resolve({ socket, error }))
  }), `TLS to Sluice as ${servername}`)
}

async function say (socket: TLSSocket, text: string): Promise<string> {
  socket.write(text)
  const [d] = await within(once(socket, 'data'), `the origin answers ${text}`) as [Buffer]
  return d.toString()
}

const closedLine = async (s: Sluice, pred: (r: LogRecord) => boolean): Promise<LogRecord> =>
  await s.waitForLog(r => r['msg'] === 'tunnel closed' && pred(r))

describe('kind: terminate', { timeout: 60_000 }, () => {
  it('curl --connect-to, trusting only Sluice\'s CA, gets the origin\'s answer; the log line has both legs\' TLS and the upstream certificate', async (t) => {
    const s = await start(t)
    const r = await run('curl', ['-sS', '--http1.1', '-w', ' %{http_code} %{ssl_verify_result}', '--max-time', '5', '--cacert', join(dir, 'sluice-ca.pem'),
      '--connect-to', `good.example.test:443:127.0.0.1:${s.portOf('term')}`, 'https://good.example.test/'], { timeout: 10_000 })
    assert.equal(r.stdout, 'ok 200 0')
    const rec = await closedLine(s, r => r['sni'] === 'good.example.test')
    assert.equal(rec['status'], 200)
    assert.equal(rec['target'], `127.0.0.1:${ports['good'] ?? 0}`)
    assert.equal(rec['rule'], 'terminated')
    assert.match(String(rec['tls_version']), /^TLSv1\.[23]$/)
    assert.match(String(rec['upstream_tls_version']), /^TLSv1\.[23]$/)
    assert.equal(typeof rec['tls_cipher'], 'string')
    assert.equal(typeof rec['upstream_tls_cipher'], 'string')
    assert.match(String(rec['upstream_cert_subject']), /CN=good\.example\.test/)
    assert.ok(!Number.isNaN(Date.parse(String(rec['upstream_cert_expiry']))), String(rec['upstream_cert_expiry']))
    assert.ok(Number(rec['bytes_down']) > 0)
    await assertNothingOpen(s)
  })

  it('shows the certificate for the SNI from the store (a wildcard, a second certificate), and the client sees Sluice\'s, not the origin\'s', async (t) => {
    const s = await start(t)
    const port = s.portOf('term')
    const a = await client(port, 'good.example.test')
    assert.equal(a.error, undefined)
    assert.equal(a.socket.getPeerCertificate().issuer.CN, 'Sluice Terminate CA')
    assert.match(a.socket.getPeerCertificate().subjectaltname ?? '', /DNS:\*\.example\.test/)
    assert.equal(await say(a.socket, 'hi'), 'echo: hi')
    a.socket.end()
    const b = await client(port, 'other.test')
    assert.equal(b.error, undefined)
    assert.equal(b.socket.getPeerCertificate().subjectaltname, 'DNS:other.test')
    b.socket.end()
    await closedLine(s, r => r['sni'] === 'other.test')
  })

  it('resumes the upstream\'s session for the next client of the same name and target: no second full upstream handshake', async (t) => {
    const s = await start(t)
    const first = await client(s.portOf('term'), 'good.example.test')
    assert.equal(await say(first.socket, 'one'), 'echo: one')
    first.socket.end()
    const one = await closedLine(s, r => r['sni'] === 'good.example.test')
    assert.equal(one['upstream_tls_resumed'], undefined)
    const second = await client(s.portOf('term'), 'good.example.test')
    assert.equal(await say(second.socket, 'two'), 'echo: two')
    second.socket.end()
    const two = await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['sni'] === 'good.example.test' && r['tunnel'] !== one['tunnel'])
    assert.equal(two['upstream_tls_resumed'], true)
    assert.match(String(two['upstream_cert_subject']), /CN=good\.example\.test/)
    // Another name on the same origin: its own session, a full handshake.
    const other = await client(s.portOf('term'), 'other.test')
    assert.equal(await say(other.socket, 'three'), 'echo: three')
    other.socket.end()
    assert.equal((await closedLine(s, r => r['sni'] === 'other.test'))['upstream_tls_resumed'], undefined)
  })

  it('negotiates ALPN with the upstream first: the client gets what the upstream chose, within upstream_tls.alpn', async (t) => {
    const s = await start(t)
    const h2 = await client(s.portOf('term'), 'good.example.test', ['h2', 'http/1.1'])
    assert.equal(h2.socket.alpnProtocol, 'h2')
    assert.equal(await say(h2.socket, 'alpn?'), 'alpn=h2')
    h2.socket.end()
    const s2 = await start(t, { upstream: '{ ca_file: origin-ca.pem, alpn: [http/1.1] }' })
    const h1 = await client(s2.portOf('term'), 'good.example.test', ['h2', 'http/1.1'])
    assert.equal(h1.socket.alpnProtocol, 'http/1.1')
    assert.equal(await say(h1.socket, 'alpn?'), 'alpn=http/1.1')
    h1.socket.end()
    // No ALPN offered: none upstream either.
    const none = await client(s2.portOf('term'), 'good.example.test', [])
    assert.equal(none.socket.alpnProtocol, false)
    assert.equal(await say(none.socket, 'alpn?'), 'alpn=false')
    none.socket.end()
  })

  for (const [name, code] of [
    ['expired', 'ERR_UPSTREAM_TLS_EXPIRED'],
    ['wrongname', 'ERR_UPSTREAM_TLS_NAME'],
    ['unknownca', 'ERR_UPSTREAM_TLS_UNTRUSTED'],
    ['old', 'ERR_UPSTREAM_TLS_VERSION']
  ] as const) {
    it(`refuses a ${name} upstream with ${code}: the client gets a TLS alert before its handshake completes`, async (t) => {
      const s = await start(t)
      const c = await client(s.portOf('term'), `${name}.example.test`)
      assert.equal(c.error?.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', String(c.error))
      const rec = await closedLine(s, r => r['sni'] === `${name}.example.test`)
      assert.equal(rec['code'], code)
      assert.equal(rec['status'], 502)
      assert.equal(rec['tls_version'], undefined)
      assert.equal(typeof rec['tls_error'], 'string')
      if (name !== 'old') assert.match(String(rec['upstream_cert_subject']), /CN=/)
      await assertNothingOpen(s)
    })
  }

  it('verifies against the system CAs when upstream_tls has no ca_file: the test CA\'s origin is untrusted', async (t) => {
    const s = await start(t, { upstream: '{}' })
    const c = await client(s.portOf('term'), 'good.example.test')
    assert.equal(c.error?.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE')
    assert.equal((await closedLine(s, r => r['sni'] === 'good.example.test'))['code'], 'ERR_UPSTREAM_TLS_UNTRUSTED')
  })

  it('min_version TLSv1.3 refuses a TLS 1.2 upstream (TLS 1.2 is fine by default)', async (t) => {
    const s = await start(t)
    const ok = await client(s.portOf('term'), 'tls12.example.test')
    assert.equal(ok.error, undefined)
    ok.socket.end()
    assert.equal((await closedLine(s, r => r['sni'] === 'tls12.example.test'))['upstream_tls_version'], 'TLSv1.2')
    const s13 = await start(t, { upstream: '{ ca_file: origin-ca.pem, min_version: TLSv1.3 }' })
    const refused = await client(s13.portOf('term'), 'tls12.example.test')
    assert.equal(refused.error?.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE')
    assert.equal((await closedLine(s13, r => r['sni'] === 'tls12.example.test'))['code'], 'ERR_UPSTREAM_TLS_VERSION')
  })

  it('a map entry\'s own upstream_tls: a client certificate for an upstream that asks for one', async (t) => {
    const s = await start(t)
    const c = await client(s.portOf('term'), 'mtls.example.test')
    assert.equal(c.error, undefined)
    assert.equal(await say(c.socket, 'hi'), 'echo: hi')
    c.socket.end()
    await closedLine(s, r => r['sni'] === 'mtls.example.test' && r['status'] === 200)
  })

  it('an upstream that never finishes its handshake: ERR_UPSTREAM_TLS_TIMEOUT', async (t) => {
    const s = await start(t, { timeouts: '300ms' })
    const c = await client(s.portOf('term'), 'silent.example.test')
    assert.equal(c.error?.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE')
    assert.equal((await closedLine(s, r => r['sni'] === 'silent.example.test'))['code'], 'ERR_UPSTREAM_TLS_TIMEOUT')
  })

  it('a client that does not trust Sluice\'s certificate (curl trusting only the origin\'s CA): ERR_TLS_HANDSHAKE on the line', async (t) => {
    const s = await start(t)
    const r = await run('curl', ['-sS', '--http1.1', '--max-time', '5', '--cacert', join(dir, 'origin-ca.pem'),
      '--connect-to', `good.example.test:443:127.0.0.1:${s.portOf('term')}`, 'https://good.example.test/'], { timeout: 10_000 }).catch((err: { code?: number }) => err)
    assert.equal((r as { code?: number }).code, 60) // curl: peer certificate cannot be authenticated
    const rec = await closedLine(s, r => r['sni'] === 'good.example.test')
    assert.equal(rec['code'], 'ERR_TLS_HANDSHAKE')
    assert.equal(rec['tls_error'], 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA')
    assert.match(String(rec['upstream_tls_version']), /^TLSv1\.[23]$/)
  })

  it('a client that sends its hello and stops: ERR_TLS_TIMEOUT at tls_handshake, the upstream leg closed too', async (t) => {
    const s = await start(t, { timeouts: '300ms' })
    const c = netConnect({ host: '127.0.0.1', port: s.portOf('term') })
    c.on('error', () => {})
    await once(c, 'connect')
    c.write(await nodeHello('good.example.test', ['http/1.1']))
    // Sluice's ServerHello and the rest of its flight, then the close.
    const got = await readAll(c)
    assert.equal(got[0], 0x16)
    const rec = await closedLine(s, r => r['sni'] === 'good.example.test')
    assert.deepEqual([rec['code'], rec['closed_by']], ['ERR_TLS_TIMEOUT', 'proxy'])
    await assertNothingOpen(s)
  })

  it('certificates and upstream TLS settings are reloaded on change', async (t) => {
    const sub = await mkdtemp(join(dir, 'reload-'))
    for (const f of ['wild.pem', 'wild.key', 'other.pem', 'other.key', 'origin-ca.pem', 'client.pem', 'client.key']) await copyFile(join(dir, f), join(sub, f))
    const yaml = config().replace(/^listen:/, 'reload_settle: 50ms\nlisten:')
    const s = await serveFile(t, sub, yaml)
    const first = await client(s.port, 'good.example.test')
    const before = first.socket.getPeerCertificate().fingerprint256
    first.socket.destroy()
    // A new certificate for the same names, renamed into place: new connections are shown it.
    const next = await makeServerCertFrom(own, ['*.example.test'])
    await replaceFile(join(sub, 'wild.key'), next.key)
    await replaceFile(join(sub, 'wild.pem'), next.cert)
    await s.waitForLog(r => r['msg'] === 'configuration reloaded')
    const second = await client(s.port, 'good.example.test')
    assert.notEqual(second.socket.getPeerCertificate().fingerprint256, before)
    assert.equal(second.socket.getPeerCertificate().fingerprint256, new X509Certificate(next.cert).fingerprint256)
    second.socket.destroy()
    // The upstream CA replaced by a stranger's: the same origin is now untrusted.
    await replaceFile(join(sub, 'origin-ca.pem'), (await makeCa('Another CA')).cert)
    await s.waitForLogs(r => r['msg'] === 'configuration reloaded', 2)
    const third = await client(s.port, 'good.example.test')
    assert.equal(third.error?.code, 'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE')
    await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['code'] === 'ERR_UPSTREAM_TLS_UNTRUSTED')
  })

  it('a name no certificate here serves: unrecognized_name before anything is dialed', async (t) => {
    const s = await start(t)
    const c = await client(s.portOf('term'), 'nocert.invalid')
    assert.equal(c.error?.code, 'ERR_SSL_TLSV1_UNRECOGNIZED_NAME')
    const rec = await s.waitForLog(r => r['msg'] === 'request refused' && r['code'] === 'ERR_SNI_NO_CERTIFICATE')
    assert.equal(rec['reason'], 'nocert.invalid')
    assert.equal(s.logs.filter(r => r['msg'] === 'tunnel closed').length, 0)
  })

  it('a name the policy denies: access_denied, and the log line has the rule', async (t) => {
    const s = await start(t, { rules: 'rules: []' })
    const c = await client(s.portOf('term'), 'good.example.test')
    assert.equal(c.error?.code, 'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED')
    const rec = await closedLine(s, r => r['sni'] === 'good.example.test')
    assert.deepEqual([rec['code'], rec['rule']], ['ERR_POLICY_DENIED', 'default'])
  })
})
