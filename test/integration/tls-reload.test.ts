/**
 * Certificate reload on an HTTPS proxy listener (issue 13: "Certificate
 * files are reloaded on change, validated before the swap, like the
 * policy"). The path is serve.ts's own: a config file on disk, loadConfig,
 * createProxy, and createReloader watching the files the config names, its
 * apply calling proxy.reload. Files are replaced by rename, as certificate
 * managers do; every wait is on a log line or a socket event.
 */
import assert from 'node:assert/strict'
import { randomBytes, X509Certificate } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { replaceFile, serveFile as serveDir } from '../helpers/serve-file.js'
import { makeCert, makeClientCert, type TestCert } from '../helpers/tls.js'
import { tlsClient, tlsListenYaml, writeListenerFiles, type ListenerFiles } from '../helpers/tls-listener.js'

let dir = ''
let files: ListenerFiles
/** The certificate the listener starts with (A) and the one it is given (B), both from the test CA. */
let certA: TestCert
let certB: TestCert

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-tls-reload-'))
  files = await writeListenerFiles(dir)
  certA = files.server
  certB = await makeCert({ names: ['localhost', 'b.test'] })
})
after(async () => { await rm(dir, { recursive: true, force: true }) })

let seq = 0
const replace = replaceFile
const serveFile = async (t: TestContext, yaml: string, opts: { ticketKeys?: Buffer } = {}): ReturnType<typeof serveDir> => await serveDir(t, dir, yaml, opts)

const RULES = 'rules:\n  - { name: loopback, action: allow, ips: [127.0.0.0/8] }\n'

/** The SHA-256 fingerprint of the certificate a new connection is shown. */
async function served (port: number): Promise<string> {
  const { socket } = await tlsClient(port, files.ca)
  const fp = socket.getPeerCertificate().fingerprint256
  socket.destroy()
  return fp
}

/** The fingerprint node:tls reports for a PEM certificate. */
function fingerprint (cert: TestCert): string {
  return new X509Certificate(cert.cert).fingerprint256
}

describe('certificate reload', { timeout: 30_000 }, () => {
  it('a broken key file is rejected (the old certificate serves); a new pair replaced by rename is served to new connections', async (t) => {
    const s = await serveFile(t, tlsListenYaml(files) + RULES)
    const [a, b] = [fingerprint(certA), fingerprint(certB)]
    assert.notEqual(a, b)
    assert.equal(await served(s.port), a)

    // A key file that is not a key: the reload is refused with the reason, and A still serves.
    await replace(files.key, '-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n')
    const rejected = await s.waitForLog(r => r.msg === 'reload rejected: keeping the running configuration')
    const problems = rejected['problems'] as string[]
    assert.ok(problems.some(p => p.includes('listen[0].tls: cannot use this certificate and key')), JSON.stringify(problems))
    assert.equal(await served(s.port), a)
    assert.equal(s.logs.some(r => r.msg === 'configuration reloaded'), false)

    // B's key and certificate, each renamed into place: new connections get B.
    await replace(files.key, certB.key)
    await replace(files.cert, certB.cert)
    await s.waitForLog(r => r.msg === 'configuration reloaded')
    assert.equal(await served(s.port), b)
  })

  it('a session outlives a reload that leaves client certificates alone (a policy edit)', async (t) => {
    const yaml = tlsListenYaml(files) + RULES
    const s = await serveFile(t, yaml)
    const one = await tlsClient(s.port, files.ca)
    const session = await one.ticket()
    one.socket.destroy()
    await replace(s.file, `version: 1\n${yaml}  - { name: edit, action: deny, ports: [25] }\n`)
    await s.waitForLog(r => r.msg === 'configuration reloaded')
    const two = await tlsClient(s.port, files.ca, { session })
    assert.equal(two.socket.isSessionReused(), true, 'resumed after the reload')
    two.socket.destroy()
  })

  it('a reload that adds client_ca_file and certs takes effect: certificates are asked for, and the new certificate is served by SNI', async (t) => {
    const yaml = tlsListenYaml(files) + RULES
    const s = await serveFile(t, yaml)
    const caFile = join(dir, `clients-${++seq}.pem`)
    await writeFile(caFile, files.server.ca)
    const bCert = join(dir, `b-${++seq}.pem`)
    const bKey = join(dir, `b-${seq}.key`)
    await writeFile(bCert, certB.cert)
    await writeFile(bKey, certB.key)
    await replace(s.file, `version: 1\n${tlsListenYaml(files, { tlsExtra: [`client_ca_file: ${caFile}`, `certs: [{ cert_file: ${bCert}, key_file: ${bKey} }]`] })}${RULES}`)
    await s.waitForLog(r => r.msg === 'configuration reloaded')
    // A client certificate is now asked for and verified: alice is the user.
    const alice = await tlsClient(s.port, files.ca, await makeClientCert({ cn: 'alice' }))
    alice.socket.write('CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n')
    const rec = await s.waitForLog(r => r.msg === 'tunnel closed' && r['user'] === 'alice', 5000)
    assert.equal(rec['user'], 'alice')
    alice.socket.destroy()
    // The added certificate is served for its name.
    const b = await tlsClient(s.port, files.ca, { servername: 'b.test' })
    assert.equal(b.socket.getPeerCertificate().fingerprint256, fingerprint(certB))
    b.socket.destroy()
  })

  for (const shared of [false, true]) {
    it(`a reload that changes client_ca_file makes a client show its certificate again${shared ? ' (ticket keys shared, as under --workers)' : ''}`, async (t) => {
      // The bundle trusts the test CA and one more certificate; the reload takes that one out.
      const caFile = join(dir, `clients-${++seq}.pem`)
      await writeFile(caFile, `${files.server.ca}\n${certB.cert}\n`)
      const s = await serveFile(t, tlsListenYaml(files, { tlsExtra: [`client_ca_file: ${caFile}`] }) + RULES,
        shared ? { ticketKeys: randomBytes(48) } : {})
      const alice = await makeClientCert({ cn: 'alice' })
      const one = await tlsClient(s.port, files.ca, alice)
      const session = await one.ticket()
      one.socket.destroy()
      const again = await tlsClient(s.port, files.ca, { ...alice, session })
      assert.equal(again.socket.isSessionReused(), true, 'resumed before the reload')
      again.socket.destroy()

      await replace(caFile, files.server.ca)
      await s.waitForLog(r => r.msg === 'configuration reloaded')
      const after = await tlsClient(s.port, files.ca, { ...alice, session })
      assert.equal(after.socket.isSessionReused(), false, 'a session verified under the old client CA is not resumed')
      after.socket.destroy()
    })
  }
})
