/**
 * The bench's HTTPS-proxy mode (issue 13): the bar is judged on medians and
 * never passes what did not run; the run's certificates are P-256 and
 * verify for localhost and 127.0.0.1 only; sluice-tls's config keeps its
 * TLS listener instead of the policy's plain one.
 */
import assert from 'node:assert/strict'
import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect, createServer, type TLSSocket } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { barMarkdown, tlsBar } from '../../bench/lib/tls-bar.js'
import { makeBenchCerts } from '../../bench/lib/tls-certs.js'
import { LOOPBACK_RULE, writeSluiceConfig } from '../../bench/lib/sluice-config.js'
import type { RepResult, TlsFiles } from '../../bench/lib/types.js'
import { loadConfig } from '../../src/config/load.js'

const root = join(import.meta.dirname, '..', '..')

interface Figures { up?: number, down?: number, full?: number, resumed?: number, idle?: number }

/** Repetitions with these figures (one per value; the median is the middle one). */
function reps (...all: Figures[]): RepResult[] {
  return all.map((f, i) => ({
    rep: i + 1,
    ...(f.up === undefined ? {} : { bulk: { ok: true, upMBps: f.up, downMBps: f.down ?? f.up } }),
    ...(f.full === undefined ? {} : { rate: { ok: true, cpuUsPerTunnel: f.full } }),
    ...(f.resumed === undefined ? {} : { resume: { ok: true, cpuUsPerTunnel: f.resumed, tlsResumedPct: 99 } }),
    ...(f.idle === undefined ? {} : { hold: { ok: true, pssKiBPerTunnel: f.idle } })
  }))
}

describe('tlsBar', () => {
  const anchors: Array<[string, RepResult[]]> = [
    ['node-tls', reps({ up: 400, full: 966, resumed: 774, idle: 26.5 })],
    ['ats-tls', reps({ up: 560, down: 554, full: 1042, resumed: 745, idle: 49.9 })],
    ['squid-tls', reps({ up: 504, down: 747, full: 712, resumed: 709, idle: 62.3 })]
  ]

  it('judges each bar on the medians', () => {
    const sluice = reps(
      { up: 600, down: 740, full: 1000, resumed: 700, idle: 20 },
      { up: 580, down: 700, full: 1060, resumed: 760, idle: 24 },
      { up: 9000, down: 9000, full: 1, resumed: 1, idle: 1 } // one outlier does not move a median of 3
    )
    const v = tlsBar(new Map([...anchors, ['sluice-tls', sluice]]))
    assert.deepEqual(v.map(x => x.holds), [false, true, true, true, true])
    // Upload 600 beats ats-tls's 560; download 740 loses to squid-tls's 747.
    assert.match(v[0]?.figures ?? '', /upload 600 vs ats-tls 560 .*download 740 vs squid-tls 747/)
    assert.match(v[2]?.figures ?? '', /limit 1,063 µs/)
  })

  it('fails a bar by a hair, and the 1.1× node-tls bar on its own', () => {
    const v = tlsBar(new Map([...anchors, ['sluice-tls', reps({ up: 747, down: 747, full: 1063.5, resumed: 745.1, idle: 25.01 })]]))
    assert.deepEqual(v.map(x => x.holds), [true, false, false, false, false])
  })

  it('does not judge what did not run, and says nothing without sluice-tls', () => {
    const v = tlsBar(new Map([['sluice-tls', reps({ up: 1, full: 1, resumed: 1, idle: 1 })]]))
    assert.deepEqual(v.map(x => x.holds), [undefined, undefined, undefined, undefined, true])
    assert.match(barMarkdown(v)[0] ?? '', /^- \*\*not judged\*\*: bulk/)
    assert.deepEqual(tlsBar(new Map(anchors)), [])
  })
})

describe('bench TLS files', () => {
  let dir: string
  let certs: TlsFiles
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bench-tls-'))
    certs = await makeBenchCerts(join(dir, 'tls'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('makes an ECDSA P-256 leaf signed by its CA', () => {
    const leaf = new X509Certificate(readFileSync(certs.cert))
    const ca = new X509Certificate(readFileSync(certs.ca))
    assert.equal(leaf.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1')
    assert.ok(leaf.verify(ca.publicKey))
    assert.equal(leaf.ca, false)
    assert.equal(ca.ca, true)
  })

  /** One TLS 1.3 handshake against a server with the run's files; resolves with the client's verdict. */
  async function handshake (opts: { servername?: string, host?: string }): Promise<string> {
    const server = createServer({ cert: readFileSync(certs.cert), key: readFileSync(certs.key) }, (s: TLSSocket) => s.end())
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as { port: number }
    try {
      return await new Promise<string>((resolve) => {
        const c = connect({ host: '127.0.0.1', port, ca: readFileSync(certs.ca), minVersion: 'TLSv1.3', ...opts })
        c.once('secureConnect', () => { resolve(`ok ${c.getProtocol() ?? ''}`); c.destroy() })
        c.once('error', (err: Error & { code?: string }) => resolve(err.code ?? err.message))
      })
    } finally {
      server.close()
    }
  }

  it('verifies for localhost and for 127.0.0.1, and for no other name', async () => {
    assert.equal(await handshake({ servername: 'localhost' }), 'ok TLSv1.3')
    assert.equal(await handshake({}), 'ok TLSv1.3') // no SNI: the IP is checked
    assert.equal(await handshake({ servername: 'proxy.example.test' }), 'ERR_TLS_CERT_ALTNAME_INVALID')
  })

  it('gives sluice-tls a config whose only listener is the TLS one', async () => {
    const listen = [{ address: '127.0.0.1:28443', tls: { cert_file: certs.cert, key_file: certs.key } }]
    const file = writeSluiceConfig(root, dir, { listen, rules: [LOOPBACK_RULE] })
    const config = await loadConfig(file)
    assert.equal(config.listen.length, 1)
    assert.equal(config.listen[0]?.port, 28443)
    assert.equal(config.listen[0]?.tls?.main.subject.includes('localhost'), true)
  })
})
