/**
 * The metrics module (issue 15): names and types as Prometheus wants them,
 * the list a dashboard may rely on (METRIC_NAMES) against what a scrape
 * shows and what README documents, and values after events driven through
 * the real objects: a resolver against a stub DNS server, a reloader on a
 * real file, a blocked event loop. Tunnels, auth and parents are counted
 * in test/integration/metrics.test.ts, through a running proxy.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createReloader } from '../../src/config/reloader.js'
import { stopValidator } from '../../src/config/validate-worker.js'
import { createResolver } from '../../src/net/resolver.js'
import { M, METRIC_NAMES, Metrics, NOOP_METRICS, OK } from '../../src/observability/metrics.js'
import { createLogger, loadConfig } from '../../src/index.js'
import { startDnsStubRetrying, type DnsStub } from '../helpers/dns-stub.js'
import { declared, sample, samples } from '../helpers/metrics.js'

const silent = createLogger({ level: 'silent' })
const made: Metrics[] = []
function metrics (): Metrics {
  const m = new Metrics()
  made.push(m)
  return m
}
after(async () => {
  for (const m of made) m.close()
  await stopValidator()
})

describe('names', () => {
  it('every name in METRIC_NAMES is declared by a fresh scrape, and nothing else is', async () => {
    const types = declared((await metrics().render()).body)
    assert.deepEqual([...types.keys()].sort(), [...METRIC_NAMES].sort())
  })

  it('are named the Prometheus way: sluice_ prefix, counters _total, histograms _seconds, byte gauges _bytes', async () => {
    const types = declared((await metrics().render()).body)
    for (const [name, type] of types) {
      assert.match(name, /^sluice_[a-z_]+$/, name)
      if (type === 'counter') assert.match(name, /_total$/, name)
      else assert.doesNotMatch(name, /_total$/, `${name} (${type}) is not a counter`)
      if (type === 'histogram') assert.match(name, /_seconds$/, name)
    }
    assert.equal(types.get(M.relayBuffers), 'gauge')
    assert.match(M.relayBuffers, /_bytes$/)
  })

  it('README\'s Metrics table lists exactly these names', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
    const section = /^### Metrics\n([\s\S]*?)(?=^##)/m.exec(readme)?.[1]
    assert.ok(section !== undefined, 'README has a "### Metrics" section')
    const listed = new Set([...section.matchAll(/^\| `(sluice_[a-z_]+)`/gm)].map(m => m[1]))
    assert.deepEqual([...listed].sort(), [...METRIC_NAMES].sort())
  })

  it('NOOP_METRICS takes every report a Metrics takes', () => {
    const reports = Object.getOwnPropertyNames(Metrics.prototype).filter(n => !['constructor', 'render', 'close'].includes(n))
    assert.deepEqual(Object.keys(NOOP_METRICS).sort(), reports.sort())
  })
})

describe('DNS, through a real resolver and a stub server', () => {
  let stub: DnsStub
  before(async () => {
    stub = await startDnsStubRetrying({ 'cached.test': { A: ['192.0.2.1'], ttl: 60 } })
  })
  after(async () => { await stub?.close() })

  it('counts each query once, by result, and each answer from the cache', async () => {
    const m = metrics()
    const r = createResolver({ servers: [stub.address], timeoutMs: 2000, maxTtlMs: 60_000, negativeTtlMs: 60_000, metrics: m })
    // A burst for one name is one query.
    await Promise.all([r.resolve('cached.test'), r.resolve('cached.test')])
    await r.resolve('cached.test')
    assert.deepEqual(r.cached?.('cached.test'), ['192.0.2.1'])
    await assert.rejects(r.resolve('missing.test'), { code: 'ERR_DNS_NXDOMAIN' })
    await assert.rejects(r.resolve('missing.test'), { code: 'ERR_DNS_NXDOMAIN' })
    // An IP literal is no lookup.
    await r.resolve('192.0.2.7')
    const text = (await m.render()).body
    assert.equal(sample(text, M.dnsLookups, { code: OK }), 1)
    assert.equal(sample(text, M.dnsLookups, { code: 'ERR_DNS_NXDOMAIN' }), 1)
    assert.equal(samples(text).filter(s => s.name === M.dnsLookups).length, 2)
    // resolve() from the cache, cached(), and the cached NXDOMAIN.
    assert.equal(sample(text, M.dnsCacheHits), 3)
    assert.equal(stub.queries.filter(q => q.name === 'cached.test').length, 2, 'A and AAAA, once')
  })
})

describe('reloads, through a real reloader', () => {
  let dir = ''
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'sluice-metrics-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('counts each attempt by result; the last result, its time and the config hash follow', async () => {
    const file = join(dir, 'sluice.yaml')
    const text = 'version: 1\nrules:\n  - { name: web, action: allow, ports: [443] }\n'
    await writeFile(file, text)
    let current = await loadConfig(file)
    const m = metrics()
    m.configApplied(current.hash)
    const started = sample((await m.render()).body, M.lastReloadTime) ?? 0
    const reloader = createReloader({
      file,
      log: silent,
      watch: false,
      currentHash: () => current.hash,
      apply: (next) => { current = next; m.configApplied(next.hash) },
      onOutcome: (r) => { m.reloaded(r.result) }
    })
    after(() => reloader.close())
    const first = current.hash
    let body = (await m.render()).body
    assert.equal(sample(body, M.configInfo, { hash: first }), 1)
    assert.equal(sample(body, M.lastReloadSuccess), 1, 'the start counts as a success')

    assert.equal(await reloader.reload('test'), false)
    body = (await m.render()).body
    assert.equal(sample(body, M.reloads, { result: 'unchanged' }), 1)
    assert.equal(sample(body, M.lastReloadSuccess), 1)

    await writeFile(file, 'version: 1\nrules: [oops\n')
    assert.equal(await reloader.reload('test'), false)
    body = (await m.render()).body
    assert.equal(sample(body, M.reloads, { result: 'rejected' }), 1)
    assert.equal(sample(body, M.lastReloadSuccess), 0)
    assert.ok((sample(body, M.lastReloadTime) ?? 0) >= started)
    assert.equal(sample(body, M.configInfo, { hash: first }), 1, 'a rejected file changes nothing')

    await writeFile(file, text.replace('443', '8443'))
    assert.equal(await reloader.reload('test'), true)
    body = (await m.render()).body
    assert.equal(sample(body, M.reloads, { result: 'applied' }), 1)
    assert.equal(sample(body, M.lastReloadSuccess), 1)
    assert.notEqual(current.hash, first)
    assert.equal(sample(body, M.configInfo, { hash: current.hash }), 1)
    assert.equal(samples(body).filter(s => s.name === M.configInfo).length, 1, 'only the hash in use')
  })
})

describe('scrape-time gauges', () => {
  it('event-loop lag: a blocked loop shows in the worst quantile, and each scrape starts afresh', async () => {
    const m = metrics()
    // Hold the loop for 120 ms, twice. The monitor records the delay
    // between two runs of its own timer (its first run only starts the
    // clock). libuv runs due timers in order of due time: the monitor's,
    // overdue since the block, runs before a timer set after it, so the
    // await is an ordering, not a guess at a duration.
    for (let i = 0; i < 2; i++) {
      const until = performance.now() + 120
      while (performance.now() < until) { /* blocking on purpose: this is the lag measured */ }
      await new Promise<void>(resolve => setTimeout(resolve, 1))
    }
    const worst = sample((await m.render()).body, M.loopLag, { quantile: '1' }) ?? 0
    assert.ok(worst >= 0.08, `lag ${worst} s after a 120 ms block`)
    const next = sample((await m.render()).body, M.loopLag, { quantile: '1' }) ?? Infinity
    assert.ok(next < 0.08, `reset after the scrape: ${next} s`)
  })

  it('open tunnels and parent state come from the proxy\'s sources at each scrape', async () => {
    const m = metrics()
    let open = 3
    let bDown = false
    m.sources({ tunnels: () => open, parents: () => [['a', true], ['b', !bDown]] })
    let body = (await m.render()).body
    assert.equal(sample(body, M.tunnelsOpen), 3)
    assert.equal(sample(body, M.parentUp, { parent: 'b' }), 1)
    open = 0
    bDown = true
    body = (await m.render()).body
    assert.equal(sample(body, M.tunnelsOpen), 0)
    assert.equal(sample(body, M.parentUp, { parent: 'a' }), 1)
    assert.equal(sample(body, M.parentUp, { parent: 'b' }), 0)
  })
})
