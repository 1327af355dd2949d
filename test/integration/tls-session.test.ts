/**
 * TLS session resumption on an HTTPS proxy listener (issue 13: "Session
 * resumption works, including across --workers: share the ticket keys"),
 * with node:tls as the client: the ticket from one connection resumes the
 * next, a client certificate's user survives resumption, and two proxies
 * resume each other's tickets only when they share ticket keys (what
 * --workers does; the built binary is tested in test/cli/tls-workers.test.ts).
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import type { ConnectionOptions } from 'node:tls'
import { startEchoServer } from '../helpers/origin.js'
import { clientOf, connectVia, roundTrip } from '../helpers/raw.js'
import { sluiceFor, type Sluice } from '../helpers/sluice.js'
import { makeCert, makeClientCert } from '../helpers/tls.js'
import { tlsClient, tlsListenYaml, writeListenerFiles, type ListenerFiles } from '../helpers/tls-listener.js'

let dir = ''
let files: ListenerFiles
let echo: Awaited<ReturnType<typeof startEchoServer>>

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-tls-session-'))
  files = await writeListenerFiles(dir)
  echo = await startEchoServer()
})
after(async () => {
  await echo?.close()
  await rm(dir, { recursive: true, force: true })
})

const RULES = `
rules:
  - name: loopback
    action: allow
    ips: [127.0.0.0/8]
`

interface Tunneled {
  /** TLS resumed a session. */
  readonly reused: boolean
  /** The tunnel's `user` on its log line. */
  readonly user: unknown
  /** The SANs of the certificate the proxy showed ('' on a resumed session: node:tls's client has none then). */
  readonly served: string
}

/**
 * One connection: TLS (resuming `opts.session` when given), CONNECT to the
 * echo server, a round trip, close; resolves once its `tunnel closed` line is logged.
 */
async function tunnel (s: Sluice, opts: Partial<ConnectionOptions> = {}): Promise<Tunneled & { ticket: () => Promise<Buffer> }> {
  const { socket, ticket } = await tlsClient(s.portOf('remote'), files.ca, opts)
  const reused = socket.isSessionReused()
  const served = socket.getPeerCertificate().subjectaltname ?? ''
  const res = await connectVia(0, `127.0.0.1:${echo.port}`, { socket: socket as unknown as Socket })
  assert.equal(res.status, 200)
  assert.equal(await roundTrip(res.socket, 'resumed?'), 'resumed?')
  // Read now: a closed socket no longer knows its port.
  const client = clientOf(socket)
  socket.end()
  const rec = await s.waitForLog(r => r.msg === 'tunnel closed' && r['client'] === client)
  assert.equal(rec['status'], 200)
  return { reused, user: rec['user'], served, ticket }
}

/** A first connection: a full handshake, and the session ticket it was given (OpenSSL sends none on a resumed TLS 1.3 one). */
async function first (s: Sluice, opts: Partial<ConnectionOptions> = {}): Promise<Tunneled & { session: Buffer }> {
  const t = await tunnel(s, opts)
  assert.equal(t.reused, false, 'a first connection has nothing to resume')
  return { ...t, session: await t.ticket() }
}

describe('TLS session resumption', { timeout: 30_000 }, () => {
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`${version}: a ticket from one connection resumes the next`, async (t) => {
      const s = await sluiceFor(t, tlsListenYaml(files) + RULES)
      const one = await first(s, { maxVersion: version })
      const second = await tunnel(s, { maxVersion: version, session: one.session })
      assert.equal(second.reused, true, 'the second connection resumed the first one\'s session')
    })
  }

  it('a resumed session keeps its client certificate\'s user', async (t) => {
    const s = await sluiceFor(t, tlsListenYaml(files, { tlsExtra: [`client_ca_file: ${files.clientCa}`] }) + RULES)
    const alice = await makeClientCert({ cn: 'alice' })
    const one = await first(s, alice)
    assert.equal(one.user, 'alice')
    const second = await tunnel(s, { ...alice, session: one.session })
    assert.deepEqual([second.reused, second.user], [true, 'alice'])
  })

  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`${version}: with client certificates, a session on a certificate chosen by SNI resumes too`, async (t) => {
      const other = await makeCert({ names: ['other.test'] })
      await writeFile(join(dir, 'other.pem'), other.cert)
      await writeFile(join(dir, 'other.key'), other.key)
      const s = await sluiceFor(t, tlsListenYaml(files, {
        tlsExtra: [
        `client_ca_file: ${files.clientCa}`,
        `certs: [{ cert_file: ${join(dir, 'other.pem')}, key_file: ${join(dir, 'other.key')} }]`
        ]
      }) + RULES)
      const bob = await makeClientCert({ cn: 'bob' })
      const one = await first(s, { ...bob, servername: 'other.test', maxVersion: version })
      assert.deepEqual([one.user, one.served.split(', ')[0]], ['bob', 'DNS:other.test'])
      const second = await tunnel(s, { ...bob, servername: 'other.test', maxVersion: version, session: one.session })
      assert.deepEqual([second.reused, second.user], [true, 'bob'])
    })
  }
})

describe('ticket keys shared between proxies (what --workers does)', { timeout: 30_000 }, () => {
  it('a ticket from one proxy resumes on another with the same keys, and not on one with its own', async (t) => {
    const keys = randomBytes(48)
    const yaml = tlsListenYaml(files) + RULES
    const a = await sluiceFor(t, yaml, { ticketKeys: keys })
    const b = await sluiceFor(t, yaml, { ticketKeys: keys })
    const own = await sluiceFor(t, yaml)
    const { session } = await first(a)
    assert.equal((await tunnel(b, { session })).reused, true, 'same keys: resumed')
    // A full handshake instead: slower, but the tunnel still works.
    assert.equal((await tunnel(own, { session })).reused, false, 'other keys: not resumed')
  })
})
