/**
 * The primary's side of one reload line for the cluster (issue 15): what it
 * makes of the workers' answers (config/cluster-outcome.ts), and its wait
 * for them (cli/cluster-reload.ts), which is bounded, stops for a worker
 * that exits, and leaves no timer behind. The IPC channel is node:cluster's;
 * here each worker is an object that records what it was sent, and answers
 * are fed as the cluster 'message' event would.
 * test/cli/reload-workers.test.ts runs the real thing with --workers 2.
 */
import assert from 'node:assert/strict'
import type { Worker } from 'node:cluster'
import { describe, it } from 'node:test'
import { primaryReloads } from '../../src/cli/cluster-reload.js'
import { summarise } from '../../src/config/cluster-outcome.js'

interface Sent { readonly type: string, readonly id: number, readonly why: string }

function worker (id: number, connected = true): Worker & { sent: Sent[] } {
  const sent: Sent[] = []
  return { id, sent, isConnected: () => connected, send: (m: Sent) => { sent.push(m); return true } } as unknown as Worker & { sent: Sent[] }
}

const answer = (id: number, result: string, hash: string): unknown => ({ type: 'sluice:reload-answer', id, result, hash })

describe('summarise', () => {
  it('counts each result; a worker on the primary\'s hash agrees whatever its result', () => {
    const s = summarise({ answers: [{ worker: 1, result: 'reloaded', hash: 'h2' }, { worker: 2, result: 'unchanged', hash: 'h2' }], silent: [] }, 'h2')
    assert.deepEqual(s, { counts: { applied: 1, unchanged: 1, rejected: 0, no_answer: 0 }, disagree: [] })
  })

  it('a worker on another hash, or silent, disagrees (in worker order, with a rejected one\'s problems)', () => {
    const s = summarise({
      answers: [{ worker: 3, result: 'rejected', hash: 'h1', problems: ['x.yaml:2: rules[0].action: bad'] }, { worker: 1, result: 'reloaded', hash: 'h2' }],
      silent: [2]
    }, 'h2')
    assert.deepEqual(s.counts, { applied: 1, unchanged: 0, rejected: 1, no_answer: 1 })
    assert.deepEqual(s.disagree, [
      { worker: 2, result: 'no_answer' },
      { worker: 3, result: 'rejected', hash: 'h1', problems: ['x.yaml:2: rules[0].action: bad'] }
    ])
  })

  it('all rejected, all keep the running hash: agreement', () => {
    assert.deepEqual(summarise({ answers: [{ worker: 1, result: 'rejected', hash: 'h1' }], silent: [] }, 'h1').disagree, [])
  })
})

describe('primaryReloads', () => {
  it('asks every connected worker, and resolves once all have answered', async () => {
    const ws = [worker(1), worker(2), worker(3, false)]
    const r = primaryReloads({ workers: () => ws, onAsk: () => {}, timeoutMs: 60_000 })
    const heard = r.gather('SIGHUP')
    assert.deepEqual(ws.map(w => w.sent.length), [1, 1, 0], 'not the disconnected one')
    const id = ws[0]?.sent[0]?.id ?? -1
    assert.deepEqual(ws[0]?.sent[0], { type: 'sluice:reload', id, why: 'SIGHUP' })
    assert.equal(r.message(ws[1] as Worker, answer(id, 'reloaded', 'h2')), true)
    // An answer for another attempt, or from a worker not asked, is ours but counts for nothing.
    assert.equal(r.message(ws[0] as Worker, answer(id + 1, 'rejected', 'h1')), true)
    assert.equal(r.message(ws[2] as Worker, answer(id, 'rejected', 'h1')), true)
    r.message(ws[0] as Worker, answer(id, 'unchanged', 'h2'))
    const got = await heard
    assert.deepEqual(got.silent, [])
    assert.deepEqual(got.answers.map(a => [a.worker, a.result, a.hash]), [[2, 'reloaded', 'h2'], [1, 'unchanged', 'h2']])
    // Other messages are not about reloads (the lock-out state takes them).
    assert.equal(r.message(ws[0] as Worker, { type: 'sluice:lockout-fail' }), false)
  })

  it('the wait is bounded: a worker that never answers is silent; one that exits stops being waited for', async () => {
    const ws = [worker(1), worker(2), worker(3)]
    const r = primaryReloads({ workers: () => ws, onAsk: () => {}, timeoutMs: 200 })
    const started = performance.now()
    const heard = r.gather('file replaced')
    r.message(ws[0] as Worker, answer(ws[0]?.sent[0]?.id ?? -1, 'reloaded', 'h2'))
    r.exited(ws[2] as Worker)
    const got = await heard
    assert.ok(performance.now() - started >= 150, 'waited for worker 2 until the bound')
    assert.deepEqual(got.silent, [2, 3])
    assert.equal(got.answers.length, 1)
  })

  it('with no worker to ask it resolves at once; close() ends every wait; a worker\'s SIGHUP goes to onAsk', async () => {
    const asked: number[] = []
    const ws = [worker(7)]
    const r = primaryReloads({ workers: () => ws, onAsk: (w) => asked.push(w.id), timeoutMs: 60_000 })
    assert.deepEqual(await primaryReloads({ workers: () => [], onAsk: () => {}, timeoutMs: 60_000 }).gather('SIGHUP'), { answers: [], silent: [] })
    const heard = r.gather('SIGHUP')
    r.close()
    // Resolved by close(), not by the 60 s timer: the test would time out otherwise, and no timer keeps the process.
    assert.deepEqual(await heard, { answers: [], silent: [7] })
    assert.equal(r.message(ws[0] as Worker, { type: 'sluice:reload-ask' }), true)
    assert.deepEqual(asked, [7])
  })
})
