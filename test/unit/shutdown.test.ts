/**
 * cli/shutdown.ts (issue 15, "a preStop that drains"): the one drain a
 * process has, whatever starts it, and which OS signal is a "second" one.
 * The wiring into `sluice serve` and the --workers primary is
 * test/cli/drain.test.ts's; the drain itself test/integration/admin-drain.test.ts's.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { createShutdown, type Shutdown } from '../../src/cli/shutdown.js'
import { captureLogs } from '../helpers/sluice.js'

function harness (): { shutdown: Shutdown, drains: Array<[number, number]>, exits: NodeJS.Signals[], logs: ReturnType<typeof captureLogs>['logs'] } {
  const { logger, logs } = captureLogs()
  const drains: Array<[number, number]> = []
  const exits: NodeJS.Signals[] = []
  const shutdown = createShutdown({
    log: logger,
    timeouts: () => ({ drain: 25_000, drain_delay: 10_000 }),
    drain: (drainMs, delayMs) => { drains.push([drainMs, delayMs]) },
    exitNow: (signal) => { exits.push(signal) },
    now: () => Date.parse('2026-01-02T03:04:05.000Z')
  })
  return { shutdown, drains, exits, logs }
}

describe('shutdown: one drain, and which signal is a second one', () => {
  it('POST /drain starts the drain with the config\'s timings; a second request finds it running and restarts nothing', () => {
    const h = harness()
    assert.equal(h.shutdown.status(), undefined)
    const first = h.shutdown.request('admin', { admin_client: '127.0.0.1:5000' })
    assert.deepEqual(first, {
      state: 'draining',
      by: 'admin',
      started_at: '2026-01-02T03:04:05.000Z',
      drain_delay_ms: 10_000,
      drain_ms: 25_000,
      accepting_until: '2026-01-02T03:04:15.000Z',
      deadline: '2026-01-02T03:04:40.000Z'
    })
    assert.equal(h.shutdown.request('admin'), first)
    assert.deepEqual(h.drains, [[25_000, 10_000]], 'drained once, with drain and drain_delay')
    const line = h.logs.filter(l => l.msg === 'drain asked for on the admin listener: graceful shutdown')
    assert.equal(line.length, 1)
    assert.equal(line[0]?.['admin_client'], '127.0.0.1:5000')
  })

  it('after a drain by POST /drain (or the primary), the first OS signal changes nothing; the second exits now', () => {
    for (const cause of ['admin', 'primary'] as const) {
      const h = harness()
      h.shutdown.request(cause)
      h.shutdown.signal('SIGTERM')
      assert.deepEqual(h.exits, [], `${cause}: the kubelet's SIGTERM after the preStop is not a second signal`)
      assert.equal(h.drains.length, 1)
      assert.equal(h.logs.filter(l => l.msg === 'signal received: already draining').length, 1)
      h.shutdown.signal('SIGINT')
      assert.deepEqual(h.exits, ['SIGINT'], `${cause}: a second OS signal still means now`)
    }
  })

  it('after an OS signal, a second OS signal exits now; a request afterwards reports the signal\'s drain', () => {
    const h = harness()
    h.shutdown.signal('SIGTERM')
    assert.deepEqual(h.drains, [[25_000, 10_000]])
    assert.equal(h.shutdown.request('admin').by, 'SIGTERM')
    assert.deepEqual(h.exits, [], 'POST /drain is not a signal')
    h.shutdown.signal('SIGTERM')
    assert.deepEqual(h.exits, ['SIGTERM'])
    assert.equal(h.drains.length, 1)
  })
})
