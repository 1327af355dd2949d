/**
 * The bench's SNI mode (issue 14, "Bench and bar"): its options, which
 * peers it runs, the bar judged on medians (never passing what did not
 * run), the split-hello cells, and the configs it writes for Sluice and
 * HAProxy (loaded by Sluice's own loader and `haproxy -c`).
 */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseOptions, SNI_PEER_NAMES } from '../../bench/lib/options.js'
import { selectPeers } from '../../bench/lib/select.js'
import { barMarkdown } from '../../bench/lib/tls-bar.js'
import { sniBar, sniMoonshot } from '../../bench/lib/sni-bar.js'
import { haproxyConfig, sniproxyConfig, sniRoutes } from '../../bench/lib/sni-peers.js'
import { splitCell } from '../../bench/lib/sni-split.js'
import { sniWords, table } from '../../bench/lib/table.js'
import { LOOPBACK_RULE, writeSluiceConfig } from '../../bench/lib/sluice-config.js'
import { which } from '../../bench/lib/proc.js'
import type { RepResult, SplitResult } from '../../bench/lib/types.js'
import { loadConfig } from '../../src/config/load.js'

const root = join(import.meta.dirname, '..', '..')

describe('bench options: --sni', () => {
  it('--sni and --mode sni are the same, with the SNI peers and the split scenario', () => {
    for (const argv of [['--sni'], ['--mode', 'sni']]) {
      const o = parseOptions(argv)
      assert.equal(o.mode, 'sni')
      assert.equal(o.sni, true)
      assert.equal(o.tls, false)
      assert.equal(o.peers, SNI_PEER_NAMES)
      assert.deepEqual([...o.scenarios], ['bulk', 'rate', 'resume', 'hold', 'split'])
      assert.equal(o.sniSplit, 'none')
      assert.equal(o.sniGapMs, 5)
      assert.equal(o.sniPad, 0)
    }
  })

  it('keeps --tls, and --mode tls means it', () => {
    assert.equal(parseOptions(['--tls']).mode, 'tls')
    assert.equal(parseOptions(['--mode', 'tls']).tls, true)
    assert.equal(parseOptions(['--mode', 'tls']).peers, parseOptions(['--tls']).peers)
    const plain = parseOptions([])
    assert.equal(plain.mode, 'connect')
    assert.equal(plain.peers, 'direct,sluice')
    assert.equal(plain.scenarios.has('split'), false) // an SNI scenario only
  })

  it('takes the split, gap and pad, and --skip split', () => {
    const o = parseOptions(['--sni', '--sni-split', 'records', '--sni-gap-ms', '20', '--sni-pad', '1800', '--skip', 'split,hold'])
    assert.equal(o.sniSplit, 'records')
    assert.equal(o.sniGapMs, 20)
    assert.equal(o.sniPad, 1800)
    assert.deepEqual([...o.scenarios], ['bulk', 'rate', 'resume'])
    assert.equal(parseOptions(['--sni', '--sni-pad', '17000', '--sni-split', 'records', '--skip', 'split']).sniPad, 17000)
  })

  it('refuses conflicting modes, a bad split, SNI flags without --sni, and --variants with it', () => {
    const bad: Array<[string[], RegExp]> = [
      [['--tls', '--sni'], /choose one mode: tls or sni/],
      [['--mode', 'connect', '--sni'], /choose one mode/],
      [['--mode', 'quic'], /--mode must be connect, tls, sni/],
      [['--sni', '--sni-split', 'bytes'], /--sni-split must be tcp or records/],
      [['--sni-split', 'tcp'], /need --sni/],
      [['--tls', '--sni-pad', '100'], /need --sni/],
      [['--sni', '--sni-pad', '30000'], /--sni-pad must be an integer 0-20000/],
      [['--sni', '--sni-pad', '17000', '--sni-split', 'records'], /needs --sni-split records --skip split/],
      [['--sni', '--variants', 'auth'], /--variants: not with --sni/]
    ]
    for (const [argv, message] of bad) assert.throws(() => parseOptions(argv), message, argv.join(' '))
  })
})

describe('bench peers: --sni', () => {
  it('runs direct and the SNI listeners with --sni, and only then', () => {
    assert.deepEqual(selectPeers('direct,sluice-sni,node-sni', '', 'sni').peers.map(p => p.name), ['direct', 'sluice-sni', 'node-sni'])
    assert.throws(() => selectPeers('sluice-sni'), /is an SNI listener: run it with --sni/)
    assert.throws(() => selectPeers('direct,sluice', '', 'sni'), /sluice is not an SNI listener/)
    assert.deepEqual(selectPeers('direct,sluice').peers.map(p => p.name), ['direct', 'sluice'])
  })

  it('skips haproxy-sni and sniproxy when they are not installed', () => {
    const { peers, skipped } = selectPeers('haproxy-sni,sniproxy', '', 'sni')
    assert.equal(peers.some(p => p.name === 'haproxy-sni'), which('haproxy') !== undefined)
    assert.equal(skipped.some(s => s.startsWith('sniproxy (')), which('sniproxy') === undefined)
  })
})

interface Figures { up?: number, down?: number, rate?: number, idle?: number, tcp?: boolean, records?: boolean }

const splitRun = (passed: boolean): SplitResult => passed
  ? { ok: true, passed, completed: 100, errors: 0 }
  : { ok: true, passed, completed: 0, errors: 12, note: '0 completed, errors {"head_eof":12}' }

function reps (...all: Figures[]): RepResult[] {
  return all.map((f, i) => ({
    rep: i + 1,
    ...(f.up === undefined ? {} : { bulk: { ok: true, upMBps: f.up, downMBps: f.down ?? f.up } }),
    ...(f.rate === undefined ? {} : { rate: { ok: true, tunnelsPerS: f.rate } }),
    ...(f.idle === undefined ? {} : { hold: { ok: true, pssKiBPerTunnel: f.idle } }),
    ...(f.tcp === undefined && f.records === undefined
      ? {}
      : { split: { ...(f.tcp === undefined ? {} : { tcp: splitRun(f.tcp) }), ...(f.records === undefined ? {} : { records: splitRun(f.records) }) } })
  }))
}

describe('sniBar', () => {
  const peers: Array<[string, RepResult[]]> = [
    ['node-sni', reps({ up: 130, rate: 1900, idle: 26, tcp: true, records: true })],
    ['haproxy-sni', reps({ up: 560, down: 720, rate: 5000, idle: 1.5, tcp: true, records: false })],
    ['sniproxy', reps({ up: 140, rate: 3300, idle: 4.5, tcp: true, records: false })]
  ]

  it('judges each bar on the medians and shows the moonshot apart', () => {
    const sluice = reps(
      { up: 900, down: 980, rate: 2000, idle: 6, tcp: true, records: true },
      { up: 950, down: 700, rate: 1950, idle: 7, tcp: true, records: true },
      { up: 1, down: 1, rate: 1, idle: 900, tcp: true, records: true } // an outlier does not move a median of 3
    )
    const v = sniBar(new Map([...peers, ['sluice-sni', sluice]]))
    assert.deepEqual(v.map(x => x.holds), [false, true, true, true])
    // upload 900 beats 560; download 700 loses to 720.
    assert.match(v[0]?.figures ?? '', /upload 900 vs haproxy-sni 560 MB\/s \(1\.61×\); download 700 vs haproxy-sni 720/)
    assert.match(v[1]?.figures ?? '', /1,950 vs node-sni 1,900/)
    assert.match(v[3]?.figures ?? '', /records: node-sni pass, haproxy-sni FAIL, sniproxy FAIL, sluice-sni pass/)
    assert.match(sniMoonshot(new Map([...peers, ['sluice-sni', sluice]])) ?? '', /sluice-sni 1,950 vs haproxy-sni 5,000 \(0\.39×\), sniproxy 3,300/)
  })

  it('fails by a hair, and a split kind failing in one repetition fails the bar', () => {
    const sluice = reps({ up: 560, down: 719.9, rate: 1899, idle: 8.01, tcp: true, records: true }, { up: 560, down: 719.9, rate: 1899, idle: 8.01, tcp: true, records: false })
    const v = sniBar(new Map([...peers, ['sluice-sni', sluice]]))
    assert.deepEqual(v.map(x => x.holds), [false, false, false, false])
  })

  it('does not judge what did not run, and says nothing without sluice-sni', () => {
    const v = sniBar(new Map([['sluice-sni', reps({ up: 1, rate: 1, idle: 1 })]]))
    assert.deepEqual(v.map(x => x.holds), [undefined, undefined, true, undefined])
    assert.match(barMarkdown(v)[3] ?? '', /^- \*\*not judged\*\*: split hellos .*tcp: not run; records: not run/)
    assert.deepEqual(sniBar(new Map(peers)), [])
    assert.equal(sniMoonshot(new Map([['sluice-sni', reps({ rate: 1 })]])), undefined)
  })
})

describe('bench table: --sni', () => {
  it('says pass, or how many repetitions failed and why', () => {
    assert.equal(splitCell(reps({ tcp: true }, { tcp: true }), 'tcp'), 'pass (2/2 reps)')
    assert.equal(splitCell(reps({ tcp: true }), 'records'), '—')
    assert.match(splitCell(reps({ records: true }, { records: false }), 'records'), /^\*\*fail\*\* \(1\/2 reps; 0 completed/)
  })

  it('names connections and the hello, and adds the split rows', () => {
    assert.equal(sniWords('rate: tunnels/s, CONNECT→200 p50 ms, proxy CPU µs/tunnel'), 'rate: connections/s, hello→reply p50 ms, proxy CPU µs/connection')
    const results = new Map([['direct', reps({ rate: 9000, tcp: true, records: true })], ['sluice-sni', reps({ rate: 2000, tcp: true, records: false })]])
    const text = table(['direct', 'sluice-sni'], results, new Set(['rate', 'split']), 100, sniWords)
    assert.match(text, /\| rate \| connections\/s \| 9,000 \| 2,000 \| 0\.22× \|/)
    assert.match(text, /\| split \| hello in 2 TCP writes \(1 record\) \| pass \| pass \| — \|/)
    assert.match(text, /\| split \| hello in 2 TLS records \| pass \| \*\*fail\*\* \(1\/1 reps; 0 completed, errors \{"head_eof":12\}\) \| — \|/)
    assert.doesNotMatch(text, /tunnel|CONNECT/)
  })
})

describe('bench SNI peer configs', () => {
  let dir: string
  const origin = { echo: 20001, sink: 20002, source: 20003 }
  before(() => { dir = mkdtempSync(join(tmpdir(), 'bench-sni-')) })
  after(() => rmSync(dir, { recursive: true, force: true }))

  it('gives sluice-sni a config whose only listener is the sni one, with the table as its map', async () => {
    const map = Object.fromEntries(sniRoutes(origin))
    const listen = [{ address: '127.0.0.1:28443', kind: 'sni' as const, target_port: origin.echo, map }]
    const config = await loadConfig(writeSluiceConfig(root, dir, { listen, rules: [LOOPBACK_RULE] }))
    assert.equal(config.listen.length, 1)
    assert.equal(config.listen[0]?.kind, 'sni')
    assert.equal(config.listen[0]?.port, 28443)
    assert.deepEqual(map, { 'echo.test': '127.0.0.1:20001', 'sink.test': '127.0.0.1:20002', 'source.test': '127.0.0.1:20003' })
  })

  it('writes sniproxy a table of anchored names with escaped dots', () => {
    const text = sniproxyConfig(28444, dir, sniRoutes(origin))
    assert.match(text, /^listener 127\.0\.0\.1:28444 \{\n {4}protocol tls\n {4}table bench\n\}$/m)
    assert.match(text, /^ {4}\^echo\\\\\.test\$ 127\.0\.0\.1:20001$/m)
    assert.doesNotMatch(text, /fallback/)
  })

  it('writes HAProxy a config it accepts: one backend per name, no default', { skip: which('haproxy') === undefined ? 'haproxy not installed' : false }, () => {
    const text = haproxyConfig(28445, dir, sniRoutes(origin), 3000)
    assert.match(text, /use_backend be0 if \{ req\.ssl_sni -i echo\.test \}/)
    assert.match(text, /backend be2\n {4}server s0 127\.0\.0\.1:20003/)
    assert.doesNotMatch(text, /default_backend/)
    const file = join(dir, 'haproxy.cfg')
    writeFileSync(file, text)
    const out = execFileSync('haproxy', ['-c', '-f', file], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] })
    assert.match(out, /Configuration file is valid/)
  })
})
