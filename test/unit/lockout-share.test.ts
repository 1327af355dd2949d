/**
 * Lockout shared through another process (issue 15, --workers): every
 * failure is reported, and a count merged from the primary replaces this
 * process's, with reservations in flight kept.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { Lockout, type LockoutOptions } from '../../src/auth/lockout.js'
import { primaryLockout, workerLockout, isLockoutState, type LockoutStateMessage } from '../../src/cli/cluster-state.js'

const OPTS: LockoutOptions = { failures: 3, windowMs: 60_000, durationMs: 60_000 }

test('two workers and a primary: three failures in all lock the client out on both', () => {
  const a = new Lockout(OPTS)
  const b = new Lockout(OPTS)
  const inbox: LockoutStateMessage[] = []
  const fakeWorker = (l: Lockout) => ({ isConnected: () => true, send: (m: unknown) => { if (isLockoutState(m)) { inbox.push(m); l.merge(m.client, m.state, 1000) } } })
  const workers = [fakeWorker(a), fakeWorker(b)] as unknown as import('node:cluster').Worker[]
  const primary = primaryLockout(() => workers)
  workerLockout(a, (m) => primary(m))
  workerLockout(b, (m) => primary(m))
  assert.equal(a.fail('10.0.0.1', 1000), false)
  assert.equal(b.fail('10.0.0.1', 1000), false)
  assert.equal(a.reserve('10.0.0.1', 1000), 0)
  // The third failure anywhere: a lock-out, on the other worker too.
  assert.equal(a.fail('10.0.0.1', 1000), true)
  assert.equal(b.retryAfter('10.0.0.1', 1000), 60)
  assert.equal(a.retryAfter('10.0.0.1', 1000), 60)
  assert.equal(inbox.length, 6)
  assert.equal(b.retryAfter('10.0.0.2', 1000), 0)
})

test('merge keeps reservations in flight: the budget still counts them', () => {
  const l = new Lockout(OPTS)
  assert.equal(l.reserve('c', 0), 0)
  assert.equal(l.reserve('c', 0), 0)
  l.merge('c', { count: 1, windowStart: 0, lockedUntil: 0 }, 0)
  // 1 failure + 2 in flight = the window's 3: a fourth check waits.
  assert.equal(l.reserve('c', 0), 1)
  assert.deepEqual(l.state('c', 0), { count: 1, windowStart: 0, lockedUntil: 0 })
})
