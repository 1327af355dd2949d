/**
 * The bench's terminate mode (issue 14, "Bench and bar", last bullet): its
 * options, which peers it runs, the words of its table, the summary that
 * states what sluice-terminate was measured against, and the configs it
 * writes: sluice-terminate's (through Sluice's own loader, with real
 * certificates from the bench CA), the TLS origin's (`haproxy -c`) and
 * ATS's sni.yaml and upstream records.
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseOptions, TERMINATE_PEER_NAMES } from '../../bench/lib/options.js'
import { selectPeers } from '../../bench/lib/select.js'
import { terminateWords, table, wordsFor } from '../../bench/lib/table.js'
import { terminateReference, terminateSection } from '../../bench/lib/terminate-summary.js'
import { atsSniYaml, atsUpstreamRecords, TERMINATE_NAMES, terminateListener, terminateLoadgenArgs } from '../../bench/lib/terminate-peers.js'
import { sniRoutes } from '../../bench/lib/sni-peers.js'
import { tlsOriginConfig } from '../../bench/lib/tls-origin.js'
import { makeBenchCerts, makeLeaf } from '../../bench/lib/tls-certs.js'
import { LOOPBACK_RULE, writeSluiceConfig } from '../../bench/lib/sluice-config.js'
import { which } from '../../bench/lib/proc.js'
import type { RepResult, TlsFiles } from '../../bench/lib/types.js'
import { loadConfig } from '../../src/config/load.js'

const root = join(import.meta.dirname, '..', '..')

describe('bench options: --terminate', () => {
  it('--terminate and --mode terminate are the same, with its peers, and neither split nor resume', () => {
    for (const argv of [['--terminate'], ['--mode', 'terminate']]) {
      const o = parseOptions(argv)
      assert.equal(o.mode, 'terminate')
      assert.equal(o.terminate, true)
      assert.equal(o.sni, false)
      assert.equal(o.tls, false)
      assert.equal(o.peers, TERMINATE_PEER_NAMES)
      assert.deepEqual([...o.scenarios], ['bulk', 'rate', 'hold'])
    }
    assert.equal(TERMINATE_PEER_NAMES, 'direct,sluice-terminate,sluice-sni,ats-terminate')
    assert.equal(parseOptions(['--sni']).terminate, false)
    assert.deepEqual([...parseOptions(['--terminate', '--skip', 'hold', '--quick']).scenarios], ['bulk', 'rate'])
  })

  it('refuses other modes beside it, SNI flags and --variants', () => {
    const bad: Array<[string[], RegExp]> = [
      [['--terminate', '--sni'], /choose one mode: sni or terminate/],
      [['--tls', '--mode', 'terminate'], /choose one mode: terminate or tls/],
      [['--terminate', '--sni-split', 'tcp'], /need --sni/],
      [['--terminate', '--variants', 'auth'], /--variants: not with --terminate/]
    ]
    for (const [argv, message] of bad) assert.throws(() => parseOptions(argv), message, argv.join(' '))
  })
})

describe('bench peers: --terminate', () => {
  it('runs direct, sluice-terminate and sluice-sni with --terminate, and sluice-terminate only then', () => {
    assert.deepEqual(selectPeers('direct,sluice-terminate,sluice-sni', '', 'terminate').peers.map(p => p.name), ['direct', 'sluice-terminate', 'sluice-sni'])
    assert.throws(() => selectPeers('direct,sluice', '', 'terminate'), /sluice does not run with --terminate \(it runs direct, sluice-sni, sluice-terminate, ats-terminate\)/)
    assert.throws(() => selectPeers('node-sni', '', 'terminate'), /node-sni does not run with --terminate/)
    assert.throws(() => selectPeers('sluice-terminate'), /sluice-terminate runs with --terminate only/)
    assert.throws(() => selectPeers('sluice-terminate', '', 'sni'), /sluice-terminate is not an SNI listener/)
    assert.deepEqual(selectPeers('sluice-sni', '', 'sni').peers.map(p => p.name), ['sluice-sni'])
  })

  it('skips ats-terminate when traffic_server is not installed', () => {
    const { peers, skipped } = selectPeers('ats-terminate', '', 'terminate')
    assert.equal(peers.length === 1, which('traffic_server') !== undefined)
    assert.equal(skipped.length === 1, which('traffic_server') === undefined)
  })
})

interface Figures { up?: number, rate?: number, cpu?: number, idle?: number }

function reps (...all: Figures[]): RepResult[] {
  return all.map((f, i) => ({
    rep: i + 1,
    ...(f.up === undefined ? {} : { bulk: { ok: true, upMBps: f.up, downMBps: f.up } }),
    ...(f.rate === undefined ? {} : { rate: { ok: true, tunnelsPerS: f.rate, ...(f.cpu === undefined ? {} : { cpuUsPerTunnel: f.cpu }) } }),
    ...(f.idle === undefined ? {} : { hold: { ok: true, pssKiBPerTunnel: f.idle } })
  }))
}

describe('bench table and summary: --terminate', () => {
  it('counts handshakes, names connections and the first echo', () => {
    assert.equal(terminateWords('rate: tunnels/s, CONNECT→200 p50 ms, proxy CPU µs/tunnel, 2,000 tunnels'),
      'rate: handshakes/s, handshake→first echo p50 ms, proxy CPU µs/connection, 2,000 connections')
    assert.equal(wordsFor(parseOptions(['--terminate']))('tunnels/s'), 'handshakes/s')
    assert.equal(wordsFor(parseOptions([]))('tunnels/s'), 'tunnels/s')
    const text = table(['direct', 'sluice-terminate'], new Map([['direct', reps({ rate: 400 })], ['sluice-terminate', reps({ rate: 100 })]]), new Set(['rate']), 10, terminateWords)
    assert.match(text, /\| rate \| handshakes\/s \| 400 \| 100 \| 0\.25× \|/)
    assert.doesNotMatch(text, /tunnel|CONNECT/)
  })

  const sluice = reps({ up: 120, rate: 130, cpu: 3400, idle: 67 }, { up: 130, rate: 120, cpu: 3300, idle: 66 })
  const passthrough = reps({ up: 300, rate: 450, cpu: 650, idle: 7.6 })

  it('measures against ats-terminate when it gave figures, and says so', () => {
    const results = new Map([['sluice-terminate', sluice], ['sluice-sni', passthrough], ['ats-terminate', reps({ up: 250, rate: 390, cpu: 1100, idle: 84 })]])
    assert.equal(terminateReference(results), 'ats-terminate')
    const s = terminateSection(results)
    assert.match(s.intro, /against ats-terminate: ATS 9\.2 with sni\.yaml `partial_blind_route`/)
    assert.match(s.lines[0] ?? '', /^- \*\*sluice-terminate\*\*: handshakes\/s 125, bulk up 125 MB\/s, bulk down 125 MB\/s, proxy CPU per connection 3,350 µs, memory per idle connection 66\.5 KiB$/)
    assert.equal(s.lines.length, 4)
    assert.match(s.lines[3] ?? '', /^- sluice-terminate ÷ ats-terminate: handshakes\/s 0\.32×, bulk up 0\.50×, bulk down 0\.50×, proxy CPU per connection 3\.05×, memory per idle connection 0\.79×$/)
  })

  it('falls back to Sluice\'s own passthrough when ATS gave none, and compares nothing without either', () => {
    const failedAts: RepResult[] = [{ rep: 1, error: 'ats-terminate exited during start' }]
    const results = new Map([['sluice-terminate', sluice], ['sluice-sni', passthrough], ['ats-terminate', failedAts]])
    assert.equal(terminateReference(results), 'sluice-sni')
    const s = terminateSection(results)
    assert.match(s.intro, /against sluice-sni: Sluice's own SNI passthrough .*ats-terminate gave no figures/)
    assert.match(s.lines.at(-1) ?? '', /^- sluice-terminate ÷ sluice-sni: handshakes\/s 0\.28×/)
    const alone = terminateSection(new Map([['sluice-terminate', sluice]]))
    assert.equal(terminateReference(new Map([['sluice-terminate', sluice]])), undefined)
    assert.match(alone.intro, /neither ats-terminate nor sluice-sni/)
    assert.equal(alone.lines.length, 1)
  })
})

describe('bench terminate configs', () => {
  let dir: string
  let tls: TlsFiles
  let origin: { cert: string, key: string }
  const ports = { echo: 20001, sink: 20002, source: 20003 }
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bench-terminate-'))
    tls = await makeBenchCerts(dir, TERMINATE_NAMES)
    origin = await makeLeaf(dir, 'origin', TERMINATE_NAMES)
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('makes leaves for the three names, signed by the bench CA', () => {
    assert.equal(tls.servername, 'echo.test')
    for (const cert of [tls.cert, origin.cert]) {
      const text = execFileSync('openssl', ['x509', '-in', cert, '-noout', '-ext', 'subjectAltName'], { encoding: 'utf8', timeout: 10_000 })
      assert.match(text, /DNS:echo\.test, DNS:sink\.test, DNS:source\.test/)
      assert.doesNotMatch(text, /IP Address/)
      const verify = execFileSync('openssl', ['verify', '-CAfile', tls.ca, '-verify_hostname', 'sink.test', cert], { encoding: 'utf8', timeout: 10_000 })
      assert.match(verify, /: OK/)
    }
  })

  it('gives sluice-terminate a config Sluice loads: one terminate listener, the bench CA upstream, the table as its map', async () => {
    const listener = terminateListener(28446, ports, tls)
    const config = await loadConfig(writeSluiceConfig(root, dir, { listen: [listener], rules: [LOOPBACK_RULE] }))
    assert.equal(config.listen.length, 1)
    const l = config.listen[0]
    assert.equal(l?.kind, 'terminate')
    assert.equal(l?.port, 28446)
    assert.equal(l?.targetPort, 20001)
    assert.ok(l?.tls !== undefined && l.upstreamTls !== undefined)
    assert.deepEqual(listener.map, { 'echo.test': '127.0.0.1:20001', 'sink.test': '127.0.0.1:20002', 'source.test': '127.0.0.1:20003' })
    assert.deepEqual(listener.upstream_tls, { ca_file: tls.ca })
  })

  it('has loadgen verify every name against the bench CA, with no CONNECT', () => {
    assert.deepEqual(terminateLoadgenArgs('/x/ca.pem'), ['--tls-sni', 'echo.test', '--sni-sink', 'sink.test', '--sni-source', 'source.test', '--tls-ca', '/x/ca.pem'])
  })

  it('writes ATS a partial_blind_route per name that sends the client\'s SNI and verifies it', () => {
    const yaml = atsSniYaml(sniRoutes(ports))
    assert.match(yaml, /^ {2}- fqdn: echo\.test\n {4}partial_blind_route: 127\.0\.0\.1:20001\n {4}client_sni_policy: server_name$/m)
    assert.doesNotMatch(yaml, /forward_route|tunnel_route/)
    assert.deepEqual(atsUpstreamRecords('/run/tls/ca.pem'), [
      ['ssl.client.CA.cert.path', 'STRING', '/run/tls'],
      ['ssl.client.CA.cert.filename', 'STRING', 'ca.pem'],
      ['ssl.client.verify.server.policy', 'STRING', 'ENFORCED'],
      ['ssl.client.verify.server.properties', 'STRING', 'ALL']
    ])
  })

  it('writes the TLS origin a config HAProxy accepts: a TLS frontend per kind to origin.c\'s port', { skip: which('haproxy') === undefined ? 'haproxy not installed' : false }, () => {
    const pem = join(dir, 'origin-bundle.pem')
    execFileSync('sh', ['-c', `cat "${origin.cert}" "${origin.key}" > "${pem}"`], { timeout: 10_000 })
    const text = tlsOriginConfig({ echo: 28451, sink: 28452, source: 28453 }, ports, pem, dir, 3000)
    assert.match(text, /frontend sink\n {4}bind 127\.0\.0\.1:28452 ssl crt .*origin-bundle\.pem\n {4}maxconn 3000\n {4}default_backend sink\nbackend sink\n {4}server s0 127\.0\.0\.1:20002/)
    assert.match(text, /nbthread 1/)
    const file = join(dir, 'haproxy.cfg')
    writeFileSync(file, text)
    const out = execFileSync('haproxy', ['-c', '-f', file], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] })
    assert.match(out, /Configuration file is valid/)
  })
})
