/**
 * Parent health shared through the primary (issue 15, --workers): a worker
 * reports what it sees, the primary decides it once for all (numbering each
 * change) and every worker adopts it; a late or repeated state never
 * brings an older one back. Fake workers deliver the primary's messages
 * synchronously unless a test holds them back to reorder them.
 */
import assert from 'node:assert/strict'
import type { Worker } from 'node:cluster'
import { test } from 'node:test'
import pino from 'pino'
import { Writable } from 'node:stream'
import { ParentHealth } from '../../src/upstream/health.js'
import { isParentState, PARENT_SYNC, primaryParentHealth, workerParentHealth, type ParentStateMessage } from '../../src/cli/cluster-parents.js'

type Rec = Record<string, unknown>

function sink (records: Rec[]): pino.Logger {
  return pino({ level: 'debug' }, new Writable({ write (chunk: Buffer, _enc, cb) { records.push(JSON.parse(chunk.toString()) as Rec); cb() } }))
}

/** pino writes to a Writable on the next tick. */
async function flushed (): Promise<void> { await new Promise(resolve => setImmediate(resolve)) }

interface Cluster {
  readonly primaryLogs: Rec[]
  readonly workers: Array<{ health: ParentHealth, logs: Rec[], inbox: ParentStateMessage[], worker: Worker, hold: boolean, connected: boolean }>
  /** Deliver what was held back, in order. */
  deliver: (i: number) => void
  sync: (i: number) => void
}

function cluster (n: number, baseMs = 1000): Cluster {
  const primaryLogs: Rec[] = []
  const workers: Cluster['workers'] = []
  let onMessage: (from: Worker, m: unknown) => void = () => {}
  for (let i = 0; i < n; i++) {
    const logs: Rec[] = []
    const health = new ParentHealth(sink(logs), baseMs)
    const entry = { health, logs, inbox: [] as ParentStateMessage[], worker: undefined as unknown as Worker, hold: false, connected: true }
    entry.worker = {
      id: i + 1,
      isConnected: () => entry.connected,
      send: (m: unknown) => {
        assert.ok(entry.connected, 'sent to a disconnected worker')
        if (!isParentState(m)) return false
        entry.inbox.push(m)
        if (!entry.hold) deliverOne(i)
        return true
      }
    } as unknown as Worker
    workerParentHealth(health, (m) => onMessage(entry.worker, m))
    workers.push(entry)
  }
  function deliverOne (i: number): void {
    const w = workers[i]
    for (let m = w?.inbox.shift(); m !== undefined; m = w?.inbox.shift()) w?.health.adopt(m.parent, m.state)
  }
  onMessage = primaryParentHealth(() => workers.map(w => w.worker), sink(primaryLogs))
  return {
    primaryLogs,
    workers,
    deliver: deliverOne,
    sync: (i) => { const w = workers[i]; if (w !== undefined) onMessage(w.worker, PARENT_SYNC) }
  }
}

const at = (c: Cluster, i: number): ParentHealth => {
  const w = c.workers[i]
  assert.ok(w !== undefined)
  return w.health
}
const msgs = (logs: Rec[], msg: string): Rec[] => logs.filter(l => l['msg'] === msg)

test('a failure seen by one worker marks the parent down on every worker, logged once by the primary', async () => {
  const c = cluster(3)
  at(c, 0).failed('dead', 'ERR_PARENT_REFUSED', 10_000)
  for (let i = 0; i < 3; i++) {
    assert.equal(at(c, i).isDown('dead', 10_500), true, `worker ${i + 1}`)
    assert.equal(at(c, i).isDown('dead', 11_000), false, `worker ${i + 1}: the same backoff`)
  }
  assert.equal(at(c, 0).isDown('other', 10_500), false)
  await flushed()
  const down = msgs(c.primaryLogs, 'parent marked down')
  assert.equal(down.length, 1)
  assert.equal(down[0]?.['level'], 40)
  assert.deepEqual([down[0]?.['parent'], down[0]?.['reason'], down[0]?.['failures'], down[0]?.['backoff_ms'], down[0]?.['reported_by']], ['dead', 'ERR_PARENT_REFUSED', 1, 1000, 1])
  // Workers say it at debug only: no worker writes the cluster's line.
  for (const w of c.workers) assert.equal(msgs(w.logs, 'parent marked down').length, 0)
  assert.equal(msgs(c.workers[0]?.logs ?? [], 'parent failed: reported to the primary').length, 1)
  // The reporter gets its own state back: nothing new for it to log.
  assert.equal(msgs(c.workers[0]?.logs ?? [], 'parent down for every worker').length, 0)
  assert.equal(msgs(c.workers[1]?.logs ?? [], 'parent down for every worker')[0]?.['level'], 20)
})

test('two workers that find the same outage before the news arrives: one line, and both take the first one\'s state', async () => {
  const c = cluster(2)
  for (const w of c.workers) w.hold = true
  at(c, 0).failed('dead', 'ERR_PARENT_REFUSED', 10_000)
  at(c, 1).failed('dead', 'ERR_PARENT_TIMEOUT', 10_400)
  c.deliver(0)
  c.deliver(1)
  await flushed()
  assert.equal(msgs(c.primaryLogs, 'parent marked down').length, 1)
  // Worker 2 had its own backoff running to 11,400; the cluster's (from 10,000) replaces it.
  assert.equal(at(c, 1).isDown('dead', 10_999), true)
  assert.equal(at(c, 1).isDown('dead', 11_000), false)
})

test('the backoff doubles across workers: the next failure after it, on another worker, is the second in a row', async () => {
  const c = cluster(2)
  at(c, 0).failed('dead', 'x', 0)
  // Worker 2 tries it when the backoff ends, and it fails again.
  at(c, 1).failed('dead', 'x', 1000)
  assert.equal(at(c, 0).isDown('dead', 2999), true)
  assert.equal(at(c, 0).isDown('dead', 3000), false)
  await flushed()
  assert.deepEqual(msgs(c.primaryLogs, 'parent marked down').map(l => [l['failures'], l['backoff_ms'], l['reported_by']]), [[1, 1000, 1], [2, 2000, 2]])
})

test('an answer after failures brings the parent back up everywhere, logged once; a second answer says nothing', async () => {
  const c = cluster(2)
  at(c, 0).failed('p', 'x', 0)
  at(c, 1).succeeded('p')
  at(c, 0).succeeded('p')
  at(c, 1).succeeded('p')
  assert.equal(at(c, 0).isDown('p', 500), false)
  assert.equal(at(c, 1).isDown('p', 500), false)
  // The failure count starts again: 1 s, not 2 s.
  at(c, 0).failed('p', 'x', 600)
  assert.equal(at(c, 1).isDown('p', 1599), true)
  assert.equal(at(c, 1).isDown('p', 1600), false)
  await flushed()
  const up = msgs(c.primaryLogs, 'parent back up')
  assert.equal(up.length, 1)
  assert.deepEqual([up[0]?.['parent'], up[0]?.['after_failures'], up[0]?.['reported_by']], ['p', 1, 2])
  assert.equal(msgs(c.workers[0]?.logs ?? [], 'parent up for every worker').length, 1)
})

test('adopt() is monotonic and idempotent: an older or repeated state changes nothing', () => {
  const h = new ParentHealth(pino({ level: 'silent' }), 1000)
  h.adopt('p', { gen: 2, failures: 0, downUntil: 0 })
  // Late: the outage that generation 2 ended.
  h.adopt('p', { gen: 1, failures: 1, downUntil: 5000 })
  assert.equal(h.isDown('p', 100), false)
  h.adopt('p', { gen: 3, failures: 2, downUntil: 5000 })
  assert.equal(h.isDown('p', 100), true)
  h.adopt('p', { gen: 3, failures: 0, downUntil: 0 })
  h.adopt('p', { gen: 2, failures: 0, downUntil: 0 })
  assert.equal(h.isDown('p', 100), true)
  // This process's own failure while down is the same outage; its own success is news.
  h.failed('p', 'x', 200)
  assert.equal(h.isDown('p', 4999), true)
  h.succeeded('p')
  assert.equal(h.isDown('p', 100), false)
  // An adopted up with a newer generation after a local failure wins: the primary decided after it.
  h.failed('p', 'x', 300)
  h.adopt('p', { gen: 4, failures: 0, downUntil: 0 })
  assert.equal(h.isDown('p', 400), false)
})

test('a late broadcast does not resurrect an outage the worker has since been told is over', () => {
  const c = cluster(2)
  const w2 = c.workers[1]
  assert.ok(w2 !== undefined)
  w2.hold = true
  at(c, 0).failed('p', 'x', 0)
  at(c, 0).succeeded('p')
  // Worker 2 gets "down" (gen 1) and "up" (gen 2) in the wrong order.
  const [down, up] = w2.inbox.splice(0)
  assert.ok(down !== undefined && up !== undefined)
  at(c, 1).adopt(up.parent, up.state)
  at(c, 1).adopt(down.parent, down.state)
  assert.equal(at(c, 1).isDown('p', 10), false)
  // Delivered twice: still nothing.
  at(c, 1).adopt(down.parent, down.state)
  assert.equal(at(c, 1).isDown('p', 10), false)
})

test('a worker that starts later asks for the states and skips a parent the others found down', () => {
  const c = cluster(2)
  const late = c.workers[1]
  assert.ok(late !== undefined)
  late.connected = false
  const now = Date.now()
  at(c, 0).failed('dead', 'x', now)
  assert.equal(at(c, 1).isDown('dead', now + 1), false, 'not connected: told nothing')
  late.connected = true
  c.sync(1)
  assert.equal(at(c, 1).isDown('dead', now + 1), true)
})

test('without share() a process logs its own changes at warn/info, as before --workers', async () => {
  const logs: Rec[] = []
  const h = new ParentHealth(sink(logs), 1000)
  h.failed('p', 'x', 0)
  h.succeeded('p')
  await flushed()
  assert.deepEqual(logs.map(l => [l['msg'], l['level']]), [['parent marked down', 40], ['parent back up', 30]])
})

test('metrics: sluice_parent_up is 0 on a worker that only adopted the outage, and 0 in the primary\'s aggregate', async () => {
  const { Metrics } = await import('../../src/observability/metrics.js')
  const { AggregatorRegistry } = await import('prom-client')
  const c = cluster(2)
  const metrics = c.workers.map(w => {
    const m = new Metrics()
    m.sources({ tunnels: () => 0, parents: () => ['dead', 'fine'].map(name => [name, !w.health.isDown(name)] as const) })
    return m
  })
  try {
    at(c, 0).failed('dead', 'x', Date.now())
    const second = await metrics[1]?.render()
    assert.match(second?.body ?? '', /^sluice_parent_up\{parent="dead"\} 0$/m, 'the worker that never tried it reports it down')
    assert.match(second?.body ?? '', /^sluice_parent_up\{parent="fine"\} 1$/m)
    // Before the news arrives one worker may still say up: the aggregate is the minimum, not an average.
    at(c, 1).adopt('dead', { gen: 99, failures: 0, downUntil: 0 })
    const merged = AggregatorRegistry.aggregate(await Promise.all(metrics.map(async m => await m.registry.getMetricsAsJSON())))
    const text = await merged.metrics()
    assert.match(text, /^sluice_parent_up\{parent="dead"\} 0$/m)
    assert.match(text, /^sluice_parent_up\{parent="fine"\} 1$/m)
  } finally {
    for (const m of metrics) m.close()
  }
})

test('an answer seen before a later outage, arriving after it (worker channels are not ordered), does not bring the parent back up', async () => {
  const c = cluster(2)
  at(c, 1).failed('dead', 'x', 1000)
  // Worker 1 marks it down again after the backoff, at 10,000 …
  at(c, 0).failed('dead', 'x', 10_000)
  // … and worker 2's report of an answer it saw at 9,500 only arrives now.
  at(c, 1).succeeded('dead', 9_500)
  await flushed()
  assert.equal(msgs(c.primaryLogs, 'parent back up').length, 0)
  for (let i = 0; i < 2; i++) assert.equal(at(c, i).isDown('dead', 10_500), true, `worker ${i + 1}`)
  // A later answer does bring it back.
  at(c, 1).succeeded('dead', 10_600)
  await flushed()
  assert.equal(msgs(c.primaryLogs, 'parent back up').length, 1)
  assert.equal(at(c, 0).isDown('dead', 10_700), false)
})
