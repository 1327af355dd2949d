/**
 * Local ingress (issue 13, ATS's "Adding Local Proxy"): a client that wants
 * the hop to its proxy secured runs a local Sluice that forwards to the
 * remote one over TLS with a client certificate. End to end, in-process:
 *
 *   curl / a TLS client → LOCAL (plain CONNECT, and a tcp listener; no auth)
 *     → https:// parent with cert_file/key_file → REMOTE (TLS listener,
 *       client_cert: required) → an HTTPS origin on loopback.
 *
 * The remote's log names the client certificate's CN as the tunnel's user;
 * the local one's names the route through the parent. README's recipe
 * "Local ingress: securing the hop to a remote proxy" is these configs.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect as netConnect, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { curl, needCurl } from '../helpers/curl.js'
import { startHttpsOrigin } from '../helpers/origin.js'
import { parseProxyStatus } from '../helpers/proxy-status.js'
import { clientOf, connectVia, readAll } from '../helpers/raw.js'
import { sluiceFor, type Sluice } from '../helpers/sluice.js'
import { clientCa, makeCert, makeClientCert } from '../helpers/tls.js'
import { within } from '../helpers/wait.js'

/** The client certificate's subject CN: the user the remote sees. */
const CN = 'laptop-alice'

let dir = ''
let origin: Awaited<ReturnType<typeof startHttpsOrigin>>
/** PEM files the configs name (absolute paths in a temp dir; no key is committed). */
const files = { proxyCert: '', proxyKey: '', clientsCa: '', ca: '', ingressCert: '', ingressKey: '', untrustedCert: '', untrustedKey: '' }

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-ingress-'))
  const server = await makeCert({ names: ['localhost'] })
  const ingress = await makeClientCert({ cn: CN })
  const untrusted = await makeClientCert({ cn: 'mallory', untrusted: true })
  const write = async (name: string, pem: string): Promise<string> => {
    const path = join(dir, name)
    await writeFile(path, pem)
    return path
  }
  files.proxyCert = await write('proxy.pem', server.cert)
  files.proxyKey = await write('proxy.key', server.key)
  files.clientsCa = await write('clients-ca.pem', await clientCa())
  files.ca = await write('ca.pem', server.ca)
  files.ingressCert = await write('ingress.pem', ingress.cert)
  files.ingressKey = await write('ingress.key', ingress.key)
  files.untrustedCert = await write('untrusted.pem', untrusted.cert)
  files.untrustedKey = await write('untrusted.key', untrusted.key)
  origin = await startHttpsOrigin()
})
after(async () => {
  await origin.close()
  await rm(dir, { recursive: true, force: true })
})

/** The remote Sluice: an HTTPS proxy that requires a client certificate, allowing loopback targets. */
function remoteYaml (): string {
  return `listen:
  - address: 127.0.0.1:0
    name: remote
    tls:
      cert_file: ${files.proxyCert}
      key_file: ${files.proxyKey}
      client_ca_file: ${files.clientsCa}
      client_cert: required
rules:
  - name: loopback
    action: allow
    ips: [127.0.0.0/8]
`
}

/** The client certificate the local Sluice presents to the remote: the trusted one, none, or one from another CA. */
type Presented = 'trusted' | 'none' | 'untrusted'

/** The local Sluice: a plain CONNECT listener and a tcp listener to the origin, everything via the remote. */
function localYaml (remotePort: number, presented: Presented): string {
  const cert = presented === 'trusted' ? [files.ingressCert, files.ingressKey] : presented === 'untrusted' ? [files.untrustedCert, files.untrustedKey] : undefined
  return `listen:
  - address: 127.0.0.1:0
    name: local
  - address: 127.0.0.1:0
    name: origin-tcp
    kind: tcp
    target: localhost:${origin.port}
parents:
  remote:
    url: https://127.0.0.1:${remotePort}
    ca_file: ${files.ca}
${cert === undefined ? '' : `    cert_file: ${cert[0] ?? ''}\n    key_file: ${cert[1] ?? ''}\n`}default_route: remote
rules:
  - name: via-remote
    action: allow
`
}

async function pair (t: Parameters<typeof sluiceFor>[0], presented: Presented = 'trusted'): Promise<{ remote: Sluice, local: Sluice }> {
  const remote = await sluiceFor(t, remoteYaml())
  const local = await sluiceFor(t, localYaml(remote.portOf('remote'), presented))
  return { remote, local }
}

/** How a parent that closes (or resets) a connection before replying to CONNECT is reported. */
const PARENT_CLOSED = /^ERR_PARENT_(?:PROTOCOL|FAILED)\b/

const target = (): string => `localhost:${origin.port}`

/** A TLS client through the local tcp listener: TLS end to end with the origin, an HTTP/1.1 GET inside. */
async function getThroughTcp (port: number): Promise<{ text: string, client: string }> {
  const raw = netConnect({ host: '127.0.0.1', port })
  raw.on('error', () => {})
  await once(raw, 'connect')
  const client = clientOf(raw)
  const socket = tlsConnect({ socket: raw, servername: 'localhost', ca: origin.ca })
  socket.on('error', () => {})
  await within(once(socket, 'secureConnect'), 'TLS handshake with the origin through the tcp listener')
  socket.write('GET /tcp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')
  const text = (await readAll(socket as unknown as Socket)).toString('utf8')
  return { text, client }
}

describe('local ingress: a local Sluice forwarding to a remote one over TLS with a client certificate', { timeout: 30_000 }, () => {
  it('curl through the local CONNECT listener reaches the HTTPS origin; the remote logs the certificate\'s user', async (t) => {
    if (!needCurl(t)) return
    const { remote, local } = await pair(t)
    const r = await curl(['-p', '-x', `http://127.0.0.1:${local.portOf('local')}`, `https://${target()}/curl`, '--cacert', files.ca])
    assert.equal(r.exit, 0, r.stderr)
    assert.equal(r.codes, '200 200')
    assert.equal(r.body, 'hello from origin GET /curl')

    const far = await remote.waitForLog(rec => rec['msg'] === 'tunnel closed' && rec['target'] === target())
    assert.equal(far['user'], CN, JSON.stringify(far))
    assert.deepEqual([far['status'], far['rule']], [200, 'loopback'])
    assert.match(String(far['dialed']), /^127\.0\.0\.1:/)
    const near = await local.waitForLog(rec => rec['msg'] === 'tunnel closed' && rec['target'] === target())
    assert.deepEqual([near['status'], near['rule'], near['route'], near['hops'], near['user']], [200, 'via-remote', 'remote', ['remote'], undefined])
    assert.equal(near['dialed'], `127.0.0.1:${remote.portOf('remote')}`)
  })

  it('a TLS client through the local tcp listener reaches the origin by the same parent', async (t) => {
    const { remote, local } = await pair(t)
    const got = await getThroughTcp(local.portOf('origin-tcp'))
    assert.match(got.text, /^HTTP\/1\.1 200 /)
    assert.ok(got.text.endsWith('hello from origin GET /tcp'), got.text)

    const near = await local.waitForLog(rec => rec['msg'] === 'tunnel closed' && rec['client'] === got.client)
    assert.deepEqual([near['status'], near['target'], near['route'], near['hops']], [200, target(), 'remote', ['remote']])
    const far = await remote.waitForLog(rec => rec['msg'] === 'tunnel closed' && rec['target'] === target())
    assert.deepEqual([far['status'], far['user']], [200, CN])
  })

  for (const [presented, reason] of [['none', /^no client certificate \(client_cert: required\)$/], ['untrusted', /^client certificate not accepted: /]] as const) {
    it(`with ${presented === 'none' ? 'no' : 'an untrusted'} client certificate the remote refuses the handshake and the local one answers 502 with the parent error`, async (t) => {
      const { remote, local } = await pair(t, presented)
      const res = await connectVia(local.portOf('local'), target())
      res.socket.destroy()
      assert.equal(res.status, 502)
      const ps = parseProxyStatus(res.headers['proxy-status'] ?? '')
      assert.equal(ps.params['next-hop'], 'remote')
      // TLS 1.3: the client's handshake is done before the server judges its
      // certificate, and the remote then closes without an alert or an answer
      // (server/tls-front.ts), so the local side sees no TLS error: the parent
      // closed while it waited for the CONNECT reply (ERR_PARENT_PROTOCOL,
      // "closed before replying"), or reset it when our CONNECT reached the
      // closed socket first (ERR_PARENT_FAILED).
      assert.match(ps.params['details'] ?? '', PARENT_CLOSED, ps.params['details'])

      const refused = await remote.waitForLog(rec => rec['msg'] === 'tls handshake failed')
      assert.deepEqual([refused['code'], refused['listener']], ['ERR_TLS_CLIENT_CERT', 'remote'])
      assert.match(String(refused['reason']), reason)
      const near = await local.waitForLog(rec => rec['msg'] === 'tunnel closed' && rec['client'] === res.client)
      assert.equal(near['status'], 502)
      assert.match(String(near['code']), PARENT_CLOSED)
      assert.equal(remote.logs.filter(rec => rec['msg'] === 'tunnel closed').length, 0, 'no tunnel was opened on the remote')
    })
  }

  it('without the client certificate the local tcp listener closes the connection and logs the parent error', async (t) => {
    const { remote, local } = await pair(t, 'none')
    const c = netConnect({ host: '127.0.0.1', port: local.portOf('origin-tcp') })
    c.on('error', () => {})
    await once(c, 'connect')
    const got = await readAll(c)
    assert.equal(got.length, 0, 'nothing is sent on a refusal')
    const near = await local.waitForLog(rec => rec['msg'] === 'tunnel closed' && rec['client'] === clientOf(c))
    assert.equal(near['status'], 502)
    assert.match(String(near['code']), PARENT_CLOSED)
    assert.equal((await remote.waitForLog(rec => rec['msg'] === 'tls handshake failed'))['code'], 'ERR_TLS_CLIENT_CERT')
  })
})
