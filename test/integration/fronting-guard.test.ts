/**
 * The CONNECT domain-fronting guard (issue 14, third part): `tunnel_checks`
 * and rules' `sni_match` / `tls_only` judge a tunnel's first client bytes
 * after the 200. Real clients (curl, openssl s_client -proxy, node:tls
 * hellos written raw), a TLS origin with its own CA, a stub DNS server,
 * plain echo and greeting (server-first) origins; loopback, port 0.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls'
import type { Socket } from 'node:net'
import { startDnsStubRetrying, type DnsStub } from '../helpers/dns-stub.js'
import { listenOn } from '../helpers/net.js'
import { connectVia, readAll, readBytes, roundTrip } from '../helpers/raw.js'
import { sluiceFor, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { makeCert, type TestCert } from '../helpers/tls.js'
import { within } from '../helpers/wait.js'
import { curl, needCurl } from '../helpers/curl.js'
import { nodeHello } from '../helpers/client-hello.js'
import { startEchoServer, startGreetingServer, type Origin } from '../helpers/origin.js'
import { tlsListenYaml, writeListenerFiles } from '../helpers/tls-listener.js'

const ACCESS_DENIED = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 49]
const GREETING = '220 smtp.test ESMTP ready\r\n'

let stub: DnsStub
let cert: TestCert
let origin: TlsServer
let originPort = 0
let echo: Origin
let greeter: Origin
let dir = ''
const originSockets = new Set<Socket>()

before(async () => {
  stub = await startDnsStubRetrying({ 'origin.test': { A: ['127.0.0.1'] }, 'other.test': { A: ['127.0.0.1'] } })
  cert = await makeCert({ names: ['origin.test', 'other.test'] })
  // An HTTPS origin with its own CA: a GET gets "ok", anything else an echo.
  origin = createTlsServer({ key: cert.key, cert: cert.cert }, (s) => {
    s.on('error', () => {})
    s.on('data', (d: Buffer) => {
      if (d.subarray(0, 4).toString() === 'GET ') s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok')
      else s.write(d)
    })
  })
  origin.on('connection', (raw: Socket) => {
    originSockets.add(raw)
    raw.on('close', () => originSockets.delete(raw))
  })
  originPort = await listenOn(origin, '127.0.0.1')
  echo = await startEchoServer()
  greeter = await startGreetingServer(GREETING)
  dir = await mkdtemp(join(tmpdir(), 'sluice-guard-'))
  await writeFile(join(dir, 'ca.pem'), cert.ca)
})
after(async () => {
  for (const s of originSockets) s.destroy()
  await within(new Promise<void>(resolve => origin.close(() => resolve())), 'the origin closes', 5000).catch(() => { origin.unref() })
  await echo.close()
  await greeter.close()
  await stub.close()
  await rm(dir, { recursive: true, force: true })
})

/** Both checks on for every tunnel but the echo port's (exempt from both) and the greeter's (sni_match only). */
function guarded (checks = 'tunnel_checks: { sni_match: true, tls_only: true }'): string {
  return `dns: { servers: ["${stub.address}"], negative_ttl: 0 }
timeouts: { header: 500ms }
${checks}
rules:
  - name: plain
    action: allow
    ports: [${echo.port}]
    ips: [127.0.0.0/8]
    sni_match: false
    tls_only: false
  - name: smtp
    action: allow
    ports: [${greeter.port}]
    ips: [127.0.0.0/8]
    tls_only: false
  - name: origin
    action: allow
    ips: [127.0.0.0/8]
`
}

const closedLine = async (s: Sluice, client: string): Promise<LogRecord> =>
  await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['client'] === client)

describe('CONNECT domain-fronting guard', { timeout: 60_000 }, () => {
  it('curl through the proxy to a name whose certificate it verifies: the hello names the CONNECT host, the tunnel works', async (t) => {
    if (!needCurl(t)) return
    const s = await sluiceFor(t, guarded())
    const r = await curl(['--http1.1', '--cacert', join(dir, 'ca.pem'), '--proxy', s.url, `https://origin.test:${originPort}/`])
    assert.equal(r.exit, 0, r.stderr)
    assert.equal(r.body, 'ok')
    const rec = await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['target'] === `origin.test:${originPort}`)
    assert.deepEqual([rec['sni'], rec['code'], rec['status'], rec['rule']], ['origin.test', undefined, 200, 'origin'])
  })

  it('openssl s_client -proxy with -servername another name than the CONNECT host: access_denied, closed, ERR_SNI_MISMATCH', async (t) => {
    const s = await sluiceFor(t, guarded())
    const child = execFile('openssl', ['s_client', '-proxy', `127.0.0.1:${s.port}`, '-connect', `origin.test:${originPort}`,
      '-servername', 'other.test', '-CAfile', join(dir, 'ca.pem')], { timeout: 10_000 })
    child.stdin?.end()
    let out = ''
    child.stdout?.on('data', (d: Buffer) => { out += d.toString() })
    child.stderr?.on('data', (d: Buffer) => { out += d.toString() })
    await within(once(child, 'exit'), 'openssl exits', 10_000)
    // OpenSSL names the alert it got: 49, access denied.
    assert.match(out, /alert access denied|alert number 49/, out)
    const rec = await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['target'] === `origin.test:${originPort}`)
    assert.deepEqual([rec['code'], rec['sni'], rec['closed_by'], rec['close'], rec['bytes_up']], ['ERR_SNI_MISMATCH', 'other.test', 'proxy', 'rejected', 0])
  })

  it('a mismatched hello sent with the CONNECT (early data) is judged too; no SNI on a name target is a mismatch', async (t) => {
    const s = await sluiceFor(t, guarded())
    for (const name of ['other.test', undefined]) {
      const c = await connectVia(s.port, `origin.test:${originPort}`, { early: await nodeHello(name) })
      assert.equal(c.status, 200)
      const got = Buffer.concat([c.rest, await readAll(c.socket)])
      assert.deepEqual([...got], ACCESS_DENIED, String(name))
      const rec = await closedLine(s, c.client)
      assert.deepEqual([rec['code'], rec['sni'], rec['bytes_up']], ['ERR_SNI_MISMATCH', name, 0], String(name))
    }
  })

  it('a hello that passes reaches the origin byte for byte, however it is split, with what follows it', async (t) => {
    // Every port checked (no exemption), so the echo origin sees exactly what the guard let through.
    const s = await sluiceFor(t, `dns: { servers: ["${stub.address}"], negative_ttl: 0 }
timeouts: { header: 2s }
tunnel_checks: { sni_match: true, tls_only: true }
rules:
  - { name: all, action: allow, ips: [127.0.0.0/8] }
`)
    const hello = await nodeHello('origin.test')
    const tail = Buffer.from('after the hello')
    const whole = Buffer.concat([hello, tail])
    // One write; a byte, then the rest; many small writes (each a separate read when TCP keeps them apart).
    const splits: Buffer[][] = [
      [whole],
      [whole.subarray(0, 1), whole.subarray(1)],
      Array.from({ length: Math.ceil(hello.length / 64) }, (_, i) => hello.subarray(i * 64, (i + 1) * 64)).concat([tail])
    ]
    for (const [i, pieces] of splits.entries()) {
      const c = await connectVia(s.port, `origin.test:${echo.port}`)
      assert.equal(c.status, 200)
      c.socket.setNoDelay(true)
      for (const p of pieces) await new Promise<void>((resolve, reject) => c.socket.write(p, err => { if (err == null) resolve(); else reject(err) }))
      const got = await readBytes(c.socket, whole.length)
      assert.ok(got.equals(whole), `split ${i}: the echo returned other bytes`)
      c.socket.end()
      const rec = await closedLine(s, c.client)
      assert.deepEqual([rec['code'], rec['sni'], rec['bytes_up']], [undefined, 'origin.test', whole.length], `split ${i}`)
    }
  })

  it('tls_only: plain bytes are not forwarded, the tunnel is closed with ERR_TLS_ONLY', async (t) => {
    const s = await sluiceFor(t, guarded())
    const c = await connectVia(s.port, `origin.test:${originPort}`)
    assert.equal(c.status, 200)
    c.socket.write('GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n')
    assert.equal((await readAll(c.socket)).length, 0)
    const rec = await closedLine(s, c.client)
    assert.deepEqual([rec['code'], rec['bytes_up'], rec['close']], ['ERR_TLS_ONLY', 0, 'rejected'])
  })

  it('a rule exempting a port (tls_only: false, sni_match: false) lets plain bytes through', async (t) => {
    const s = await sluiceFor(t, guarded())
    const c = await connectVia(s.port, `127.0.0.1:${echo.port}`)
    assert.equal(c.status, 200)
    assert.equal(await roundTrip(c.socket, 'SSH-2.0-OpenSSH_9.2\r\n'), 'SSH-2.0-OpenSSH_9.2\r\n')
    c.socket.end()
    const rec = await closedLine(s, c.client)
    assert.deepEqual([rec['rule'], rec['code'], rec['sni']], ['plain', undefined, undefined])
  })

  it('sni_match alone: a server that speaks first is heard before the client sends anything, and plain replies pass', async (t) => {
    const s = await sluiceFor(t, guarded())
    const c = await connectVia(s.port, `127.0.0.1:${greeter.port}`)
    assert.equal(c.status, 200)
    // The banner arrives while the guard still waits for the client's first bytes.
    const banner = await readBytes(c.socket, Buffer.byteLength(GREETING), { have: c.rest })
    assert.equal(banner.toString(), GREETING)
    assert.equal(await roundTrip(c.socket, 'EHLO client.test\r\n'), 'EHLO client.test\r\n')
    c.socket.end()
    const rec = await closedLine(s, c.client)
    assert.deepEqual([rec['rule'], rec['code']], ['smtp', undefined])
  })

  it('a client that sends nothing within timeouts.header is closed with ERR_SNI_TIMEOUT', async (t) => {
    const s = await sluiceFor(t, guarded())
    const c = await connectVia(s.port, `origin.test:${originPort}`)
    assert.equal(c.status, 200)
    assert.equal((await readAll(c.socket)).length, 0)
    const rec = await closedLine(s, c.client)
    assert.deepEqual([rec['code'], rec['close']], ['ERR_SNI_TIMEOUT', 'rejected'])
  })

  it('an HTTPS proxy listener checks too: curl gets through, a mismatched hello inside the proxy\'s TLS gets access_denied', async (t) => {
    if (!needCurl(t)) return
    const files = await writeListenerFiles(dir)
    const s = await sluiceFor(t, tlsListenYaml(files, { name: 'tls' }) + guarded())
    const port = s.portOf('tls')
    const r = await curl(['--http1.1', '--cacert', join(dir, 'ca.pem'), '--proxy', `https://localhost:${port}`, '--proxy-cacert', files.caFile,
      `https://origin.test:${originPort}/`])
    assert.equal(r.exit, 0, r.stderr)
    assert.equal(r.body, 'ok')
    const c = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: files.ca })
    c.on('error', () => {})
    await within(once(c, 'secureConnect'), 'TLS to the proxy')
    const hello = await nodeHello('other.test')
    let got = Buffer.alloc(0)
    c.on('data', (d: Buffer) => {
      const first = !got.includes('\r\n\r\n')
      got = Buffer.concat([got, d])
      if (first && got.includes('\r\n\r\n')) c.write(hello)
    })
    c.write(`CONNECT origin.test:${originPort} HTTP/1.1\r\nHost: origin.test:${originPort}\r\n\r\n`)
    await within(once(c, 'close'), 'the proxy closes the tunnel')
    const end = got.indexOf('\r\n\r\n')
    assert.match(got.subarray(0, end).toString(), /^HTTP\/1\.1 200 /)
    assert.deepEqual([...got.subarray(end + 4)], ACCESS_DENIED)
    const rec = await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['code'] === 'ERR_SNI_MISMATCH')
    assert.deepEqual([rec['sni'], rec['bytes_up']], ['other.test', 0])
  })

  it('guard off: nothing is read, a hello naming another host goes through untouched and the log has no sni', async (t) => {
    const s = await sluiceFor(t, guarded(''))
    const hello = await nodeHello('other.test')
    const c = await connectVia(s.port, `origin.test:${originPort}`, { early: hello })
    assert.equal(c.status, 200)
    // The origin's ServerHello: the hello reached it.
    const first = c.rest.length > 0 ? c.rest : (await within(once(c.socket.resume(), 'data'), 'the ServerHello') as [Buffer])[0]
    assert.equal(first[0], 0x16)
    c.socket.destroy()
    const rec = await closedLine(s, c.client)
    assert.deepEqual([rec['code'], rec['sni'], rec['bytes_up']], [undefined, undefined, hello.length])
  })
})
