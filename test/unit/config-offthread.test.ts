/**
 * A reload validates in a worker thread, which also builds the rule index,
 * and compiles each rule at its first use (parseConfigOffThread, issue 11
 * finding 6, issue 15); it must give exactly what parseConfig gives: the
 * same config, the same decisions, the same errors.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { getPriority, tmpdir } from 'node:os'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { ConfigError, loadConfig, loadConfigOffThread, parseConfig, parseConfigOffThread } from '../../src/config/load.js'
import { stopValidator, WORKER_NICE } from '../../src/config/validate-worker.js'
import { decideAddress, decideRequest, type RequestFacts } from '../../src/policy/decide.js'

after(async () => { await stopValidator() })

const FEATURES = `version: 1
listen: [127.0.0.1:3128, { address: "127.0.0.1:3129", name: other }]
timeouts: { idle: 10m }
default: deny
rules:
  - { name: no-ads, action: deny, hosts: ["*.ads.example"] }
  - { name: internal, action: allow, ips: [10.0.0.0/8], ports: [443] }
  - { name: other-only, action: allow, listeners: [other], ports: ["8000-8080"] }
  - { name: web, action: allow, ports: [443], mode: report }
`

function bigPolicy (n: number): string {
  const rules = Array.from({ length: n }, (_, i) => `  - { name: net-${i}, action: ${i % 2 === 0 ? 'deny' : 'allow'}, ips: [10.${(i >> 8) & 255}.${i & 255}.0/24] }`)
  return `version: 1\nrules:\n${rules.join('\n')}\n  - { name: https, action: allow, ports: [443] }\n`
}

const FACTS: RequestFacts[] = [
  { host: 'x.ads.example', port: 443, isName: true, client: '127.0.0.1', listener: '127.0.0.1:3128' },
  { host: 'example.com', port: 8080, isName: true, client: '127.0.0.1', listener: 'other' },
  { host: '10.1.2.3', port: 443, isName: false, client: '127.0.0.1', listener: '127.0.0.1:3128' },
  { host: '93.184.216.34', port: 443, isName: false, client: '127.0.0.1' }
]
const ADDRESSES = ['10.1.2.3', '10.0.7.9', '93.184.216.34', '127.0.0.1']

describe('parseConfigOffThread = parseConfig', () => {
  for (const [label, text] of [['a policy with every stage', FEATURES], ['2,000 rules (indexed by the worker, compiled at first use)', bigPolicy(2000)]] as const) {
    it(label, async () => {
      const a = parseConfig(text, 'p.yaml')
      const b = await parseConfigOffThread(text, 'p.yaml')
      const { policy: pa, routing: ra, ...restA } = a
      const { policy: pb, routing: rb, ...restB } = b
      assert.deepEqual(restB, restA)
      assert.equal(pb.index === undefined, pa.index === undefined)
      assert.equal(rb.defaultRoute.name, ra.defaultRoute.name)
      // Decisions first, while pb's rules are compiled one by one as they are used; then all of them.
      for (const f of FACTS) {
        assert.deepEqual(decideRequest(pb, f), decideRequest(pa, f))
        for (const address of ADDRESSES) assert.deepEqual(decideAddress(pb, f, address), decideAddress(pa, f, address))
      }
      assert.equal(pb.size, pa.size)
      assert.deepEqual(pb.rules, pa.rules)
      assert.ok(Object.isFrozen(pb.rules) && Object.isFrozen(pa.rules), 'no caller can reorder a running policy')
    })
  }

  it('with admin: the same PAC table (the worker builds it; the event loop parses it at the first /proxy.pac)', async () => {
    const text = `${FEATURES}  - { name: hosts, action: allow, hosts: [a.example, "*.b.example"], ports: [443, "8000-8080"] }\n  - { name: nets, action: allow, ips: [192.0.2.0/24, "2001:db8::/32"] }\nadmin:\n  listen: 127.0.0.1:0\n`
    const a = parseConfig(text, 'p.yaml')
    const b = await parseConfigOffThread(text, 'p.yaml')
    assert.ok(a.admin !== undefined && b.admin !== undefined)
    assert.ok(a.admin.pac.rules.length >= 3, 'the table has rules to compare')
    assert.deepEqual(b.admin.pac, a.admin.pac)
  })

  it('the same problems, with the same line numbers', async () => {
    const broken = 'version: 1\nbogus: 1\nrules:\n  - { action: maybe, ports: [0] }\n'
    const sync = (() => { try { parseConfig(broken, 'b.yaml'); return undefined } catch (err) { return err } })()
    assert.ok(sync instanceof ConfigError)
    await assert.rejects(parseConfigOffThread(broken, 'b.yaml'), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.deepEqual(err.problems, sync.problems)
      return true
    })
  })

  it('rules that cite an unknown route or listener: the same problems (the worker sends those citations with the packed rules)', async () => {
    const bad = 'version: 1\nlisten: [127.0.0.1:3128]\nrules:\n  - { action: allow, ports: [443] }\n  - { action: allow, via: nowhere }\n  - { action: deny, listeners: [nobody] }\n'
    const sync = (() => { try { parseConfig(bad, 'r.yaml'); return undefined } catch (err) { return err } })()
    assert.ok(sync instanceof ConfigError)
    assert.equal(sync.problems.length, 2, sync.problems.join('\n'))
    await assert.rejects(parseConfigOffThread(bad, 'r.yaml'), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.deepEqual(err.problems, sync.problems)
      return true
    })
  })

  it('YAML syntax errors too', async () => {
    const bad = 'version: 1\nrules: [\n'
    const sync = (() => { try { parseConfig(bad, 'y.yaml'); return undefined } catch (err) { return err } })()
    assert.ok(sync instanceof ConfigError)
    await assert.rejects(parseConfigOffThread(bad, 'y.yaml'), (err: unknown) => err instanceof ConfigError && err.problems.join('\n') === sync.problems.join('\n'))
  })

  it('a file read at start and at reload: the same config and hash, of its bytes as read (a BOM and a byte that is not UTF-8 too)', async () => {
    // A reload hands the worker bytes and hashes bytes (issue 15): start-up must hash the same, or an unchanged file would "reload".
    const dir = await mkdtemp(join(tmpdir(), 'sluice-offthread-'))
    try {
      const file = join(dir, 'p.yaml')
      const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(FEATURES.replace('timeouts:', '# caf\u00e9 \xff\ntimeouts:'), 'latin1')])
      await writeFile(file, bytes)
      const a = await loadConfig(file)
      const b = await loadConfigOffThread(file)
      assert.equal(b.hash, a.hash)
      assert.equal(a.hash, createHash('sha256').update(bytes).digest('hex').slice(0, 16))
      assert.deepEqual(b.loaded, a.loaded)
      assert.deepEqual(b.policy.rules.map(r => r.name), a.policy.rules.map(r => r.name))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('the worker runs at a lower priority than the event loop (Linux: nice is per thread)', { skip: process.platform !== 'linux' }, async () => {
    await parseConfigOffThread(FEATURES, 'p.yaml') // the worker is kept, idle, after a validation
    const nice = (tid: string): number => Number(readFileSync(`/proc/self/task/${tid}/stat`, 'utf8').split(') ')[1]?.split(' ')[16])
    const tids = readdirSync('/proc/self/task')
    const main = nice(String(process.pid))
    if (main >= WORKER_NICE) return // run under nice already: the worker cannot go lower than it is
    assert.equal(getPriority(), main, 'the main thread keeps its priority')
    assert.ok(tids.some(t => nice(t) === WORKER_NICE), `a thread at nice ${WORKER_NICE}: ${tids.map(t => `${t}:${nice(t)}`).join(' ')}`)
  })
})
