/**
 * Authentication hardening, unit level (issue 11): the fair queue of
 * password checks, the lock-out's verdict budget, the stand-in hashes for
 * unknown users, and the hash pool surviving a dead worker. Clocks are
 * explicit and jobs are promises settled by the test: nothing sleeps.
 */
import assert from 'node:assert/strict'
import { after, afterEach, describe, it } from 'node:test'
import bcrypt from 'bcryptjs'
import { FairQueue, QueueFullError, type QueueLimits } from '../../src/auth/fair-queue.js'
import { Lockout } from '../../src/auth/lockout.js'
import { standIns } from '../../src/auth/stand-in.js'
import { hashPassword, parseHash, type PasswordHash } from '../../src/auth/hash.js'
import { BcryptPool, testHooks } from '../../src/auth/bcrypt-pool.js'
import { Authenticator, type AuthOutcome } from '../../src/auth/authenticator.js'
import { captureLogs } from '../helpers/sluice.js'
import { pollImmediate } from '../helpers/wait.js'

function basic (user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`, 'utf8').toString('base64')
}

/** Every gate's finish: a test that fails half-way leaves none pending for the next. */
const unfinished = new Set<() => void>()
afterEach(() => {
  for (const finish of unfinished) finish()
  unfinished.clear()
})

/** A job the test finishes by hand (before or after it starts), recording when it started. */
function gate (log: string[], name: string): { task: () => Promise<string>, finish: () => void } {
  let finish = (): void => {}
  const finished = new Promise<void>(resolve => { finish = resolve })
  unfinished.add(finish)
  const task = async (): Promise<string> => {
    log.push(name)
    await finished
    return name
  }
  return { task, finish }
}

const WIDE: QueueLimits = { perKey: 100, total: 100 }

// ================================================================== FairQueue

describe('FairQueue', () => {
  it("one key's backlog: another key's first check runs next, not after the backlog (1 worker)", async () => {
    const q = new FairQueue(1)
    const started: string[] = []
    const flood = Array.from({ length: 10 }, (_, i) => gate(started, `a${i}`))
    const floodDone = flood.map(async g => await q.run('a', WIDE, g.task))
    const b = gate(started, 'b0')
    const bDone = q.run('b', WIDE, b.task)
    assert.deepEqual(started, ['a0'])
    flood[0]?.finish()
    await floodDone[0]
    assert.deepEqual(started, ['a0', 'b0'], 'b goes right after the check that was running')
    b.finish()
    assert.equal(await bDone, 'b0')
    for (const g of flood) g.finish()
    await Promise.all(floodDone)
    assert.equal(started.length, 11)
  })

  it('keys are served round-robin, and a never-served key goes first (2 workers)', async () => {
    const q = new FairQueue(2)
    const started: string[] = []
    const jobs: Array<{ finish: () => void, done: Promise<string> }> = []
    const add = (key: string, name: string): void => {
      const g = gate(started, name)
      jobs.push({ finish: g.finish, done: q.run(key, WIDE, g.task) })
    }
    for (let i = 0; i < 4; i++) add('a', `a${i}`)
    for (let i = 0; i < 2; i++) add('b', `b${i}`)
    add('c', 'c0')
    assert.deepEqual(started, ['a0', 'a1'])
    // a0 ends: b and c have nothing running; b was queued first but neither was served: b0.
    jobs[0]?.finish()
    await jobs[0]?.done
    assert.deepEqual(started, ['a0', 'a1', 'b0'])
    // a1 ends: c0 (never served) before a2 and b1.
    jobs[1]?.finish()
    await jobs[1]?.done
    assert.deepEqual(started, ['a0', 'a1', 'b0', 'c0'])
    for (const j of jobs) j.finish()
    await Promise.all(jobs.map(async j => await j.done))
    assert.deepEqual(started.slice(4), ['a2', 'b1', 'a3'], 'then round-robin: a, b, a')
  })

  it('refuses a key at perKey (waiting + running), and reports each refusal', async () => {
    const shed: Array<[string, string]> = []
    const q = new FairQueue(1, { onShed: (err, key) => shed.push([err.scope, key]) })
    const started: string[] = []
    const limits = { perKey: 2, total: 100 }
    const g1 = gate(started, '1')
    const g2 = gate(started, '2')
    const p1 = q.run('a', limits, g1.task)
    const p2 = q.run('a', limits, g2.task)
    await assert.rejects(q.run('a', limits, async () => 'x'), (err: unknown) => err instanceof QueueFullError && err.scope === 'client' && err.limit === 2)
    assert.deepEqual(shed, [['client', 'a']])
    // Another key is not affected.
    const g3 = gate(started, '3')
    const p3 = q.run('b', limits, g3.task)
    assert.equal(q.size, 3)
    for (const g of [g1, g2, g3]) g.finish()
    await Promise.all([p1, p2, p3])
    assert.equal(q.size, 0)
  })

  it('when full, sheds the newest waiting check of the longest backlog for a newcomer; refuses an equal one', async () => {
    const shed: Array<[string, string]> = []
    let idle = 0
    const q = new FairQueue(1, { onShed: (err, key) => shed.push([err.scope, key]), onIdle: () => { idle++ } })
    const started: string[] = []
    const limits = { perKey: 10, total: 4 }
    const gates = [0, 1, 2, 3].map(i => gate(started, `a${i}`))
    const results = gates.map(async g => await q.run('a', limits, g.task).catch((err: unknown) => err))
    const b = gate(started, 'b0')
    const bDone = q.run('b', limits, b.task)
    assert.deepEqual(shed, [['total', 'a']], "a's newest waiting check made room")
    assert.ok((await results[3]) instanceof QueueFullError)
    // Full again (a: 3, b: 1). Another newcomer 'c' sheds from a again, down to a: 2.
    const c = gate(started, 'c0')
    const cDone = q.run('c', limits, c.task)
    assert.ok((await results[2]) instanceof QueueFullError)
    // Now a: 2 (1 running), b: 1, c: 1. A second check from b would make b 2, not fewer than a's: refused.
    await assert.rejects(q.run('b', limits, async () => 'x'), (err: unknown) => err instanceof QueueFullError && err.scope === 'total')
    assert.deepEqual(shed.map(s => s[1]), ['a', 'a', 'b'])
    for (const g of [...gates, b, c]) g.finish()
    await Promise.all([bDone, cDone, ...results])
    assert.equal(q.size, 0)
    assert.equal(idle, 1, 'onIdle once, when the queue ran empty')
  })

  it('a task that throws (even synchronously) rejects its caller and the queue moves on', async () => {
    const q = new FairQueue(1)
    await assert.rejects(q.run('a', WIDE, () => { throw new Error('boom') }), /boom/)
    await assert.rejects(q.run('a', WIDE, async () => { throw new Error('async boom') }), /async boom/)
    assert.equal(await q.run('a', WIDE, async () => 'next'), 'next')
    assert.equal(q.size, 0)
  })

  it('clear() rejects what waits', async () => {
    const q = new FairQueue(1)
    const started: string[] = []
    const g = gate(started, 'run')
    const running = q.run('a', WIDE, g.task)
    const waiting = q.run('b', WIDE, async () => 'never')
    q.clear(new Error('closed'))
    await assert.rejects(waiting, /closed/)
    g.finish()
    assert.equal(await running, 'run')
  })
})

// ================================================================== Lockout budget

describe('Lockout: a verdict budget per window (finding 1)', () => {
  it('40 checks at once with failures 5: 5 reserve, 35 are refused; the 5 failures lock', () => {
    const l = new Lockout({ failures: 5, windowMs: 60_000, durationMs: 120_000 })
    const t0 = 1_000_000
    const answers = Array.from({ length: 40 }, () => l.reserve('c', t0))
    assert.equal(answers.filter(a => a === 0).length, 5)
    assert.deepEqual([...new Set(answers.slice(5))], [1], 'Retry-After 1 while the budget is held in flight')
    const locks = [0, 1, 2, 3, 4].map(i => l.fail('c', t0 + i))
    assert.deepEqual(locks, [false, false, false, false, true])
    assert.equal(l.reserve('c', t0 + 10), 120, 'now the lock-out itself')
    assert.equal(l.reserve('other', t0 + 10), 0)
  })

  it('release() gives a slot back; a clean entry is forgotten', () => {
    const l = new Lockout({ failures: 2, windowMs: 60_000, durationMs: 60_000 })
    assert.equal(l.reserve('c', 1000), 0)
    assert.equal(l.reserve('c', 1000), 0)
    assert.equal(l.reserve('c', 1000), 1)
    l.release('c')
    assert.equal(l.reserve('c', 1000), 0)
    l.release('c')
    l.release('c')
    assert.equal((l as unknown as { clients: Map<string, unknown> }).clients.size, 0)
  })

  it('failures in flight when the window ends count in the next one', () => {
    const l = new Lockout({ failures: 2, windowMs: 1000, durationMs: 5000 })
    assert.equal(l.reserve('c', 0), 0)
    assert.equal(l.reserve('c', 0), 0)
    assert.equal(l.fail('c', 10), false)
    // The window ran out with one reservation still open: it settles in a new window.
    assert.equal(l.fail('c', 2000), false)
    assert.equal(l.reserve('c', 2000), 0)
    assert.equal(l.fail('c', 2001), true)
  })

  it('failures: 0 reserves nothing and never refuses', () => {
    const l = new Lockout({ failures: 0, windowMs: 1000, durationMs: 1000 })
    for (let i = 0; i < 100; i++) assert.equal(l.reserve('c', i), 0)
    assert.equal((l as unknown as { clients: Map<string, unknown> }).clients.size, 0)
  })
})

// ================================================================== stand-ins

describe('stand-in hashes for unknown users (finding 3)', () => {
  const bcryptUser = (cost: number, prefix = '$2y$'): PasswordHash => {
    const h = parseHash(bcrypt.hashSync('pw', cost).replace(/^\$2b\$/, prefix))
    assert.ok(h !== undefined)
    return h
  }

  it('a file of one cost: every unknown name gets a stand-in of that scheme and cost, which no password matches', async () => {
    const users = new Map([['a', bcryptUser(5)], ['b', bcryptUser(5)]])
    const pick = standIns(users)
    const s = pick('nobody')
    assert.equal(s.scheme, 'bcrypt')
    if (s.scheme !== 'bcrypt') return
    assert.match(s.hash, /^\$2y\$05\$[./A-Za-z0-9]{53}$/)
    assert.ok(parseHash(s.hash) !== undefined, 'a well-formed hash, as the users file would hold')
    assert.equal(pick('someone-else'), s)
    assert.equal(await bcrypt.compare('pw', s.hash), false)
    assert.equal(await bcrypt.compare('', s.hash), false)
  })

  it('scrypt: same N, r, p and lengths, random salt and key', async () => {
    const real = parseHash(await hashPassword('pw', 'scrypt'))
    assert.ok(real?.scheme === 'scrypt')
    const s = standIns(new Map([['s', real]]))('nobody')
    assert.ok(s.scheme === 'scrypt')
    assert.deepEqual([s.N, s.r, s.p, s.salt.length, s.key.length], [real.N, real.r, real.p, real.salt.length, real.key.length])
    assert.notDeepEqual(s.salt, real.salt)
    assert.notDeepEqual(s.key, real.key)
  })

  it('a mixed file: a name always gets the same cost, and unknown names get the costs real users have, in proportion', () => {
    const users = new Map<string, PasswordHash>([
      ['c5a', bcryptUser(5)], ['c5b', bcryptUser(5)], ['c5c', bcryptUser(5, '$2b$')], ['c4', bcryptUser(4)]
    ])
    const pick = standIns(users)
    const counts = new Map<string, number>()
    for (let i = 0; i < 400; i++) {
      const s = pick(`unknown-${i}`)
      assert.equal(pick(`unknown-${i}`), s, 'deterministic per name')
      assert.ok(s.scheme === 'bcrypt')
      const cost = s.hash.slice(0, 7)
      counts.set(cost, (counts.get(cost) ?? 0) + 1)
    }
    assert.deepEqual([...counts.keys()].sort(), ['$2b$05$', '$2y$04$', '$2y$05$'])
    // Two of four users are $2y$05$: about half of the names (bounds far from chance).
    const half = counts.get('$2y$05$') ?? 0
    assert.ok(half > 140 && half < 260, `${half} of 400`)
  })

  it('an empty users file: bcrypt cost 10, what `sluice passwd` writes', () => {
    const s = standIns(new Map())('anyone')
    assert.ok(s.scheme === 'bcrypt' && s.hash.startsWith('$2y$10$'))
  })

  it('the Authenticator checks an unknown user against the stand-in, through the same pool call as a real one', async () => {
    const seen: PasswordHash[] = []
    const fake = { async verify (h: PasswordHash) { seen.push(h); return false } } as unknown as BcryptPool
    const real = bcryptUser(4)
    const a = new Authenticator({ users: new Map([['real', real]]), groups: new Map(), pool: fake, cacheTtlMs: 1000, cacheSize: 10 })
    assert.deepEqual(await a.authenticate(basic('real', 'x')), { kind: 'fail', reason: 'bad_password', user: 'real' })
    assert.deepEqual(await a.authenticate(basic('nobody', 'x')), { kind: 'fail', reason: 'unknown_user', user: 'nobody' })
    assert.equal(seen.length, 2)
    assert.equal(seen[0], real)
    assert.ok(seen[1]?.scheme === 'bcrypt' && seen[1].hash.startsWith('$2y$04$') && seen[1].hash !== (real.scheme === 'bcrypt' ? real.hash : ''))
  })
})

// ================================================================== Authenticator + Lockout

describe('Authenticator with a lock-out (finding 1)', () => {
  const pool = new BcryptPool(2)
  after(async () => { await pool.close() })
  const hash = parseHash(bcrypt.hashSync('right', 4))
  assert.ok(hash !== undefined)
  const make = (): Authenticator => new Authenticator({ users: new Map([['alice', hash]]), groups: new Map(), pool, cacheTtlMs: 60_000, cacheSize: 10 })

  it('39 wrong and the right one at once: at most 5 judged, the right one not accepted', async () => {
    const a = make()
    const lockout = new Lockout({ failures: 5, windowMs: 60_000, durationMs: 60_000 })
    const outcomes = await Promise.all(Array.from({ length: 40 }, async (_, i) =>
      await a.authenticate(basic('alice', i < 39 ? `wrong-${i}` : 'right'), { client: '10.0.0.1', lockout })))
    assert.ok(outcomes.filter(o => o.kind === 'fail').length <= 5)
    assert.equal(outcomes[39]?.kind, 'locked')
    assert.equal(outcomes.filter(o => o.kind === 'fail' && o.lockedOut === true).length, 1, 'one failure reports the lock-out')
  })

  it('a cached credential passes without a check, but not while its client is locked out', async () => {
    const a = make()
    const lockout = new Lockout({ failures: 1, windowMs: 60_000, durationMs: 60_000 })
    assert.equal((await a.authenticate(basic('alice', 'right'), { client: 'x', lockout })).kind, 'ok')
    const cached = await a.authenticate(basic('alice', 'right'), { client: 'y', lockout })
    assert.ok(cached.kind === 'ok' && cached.cached)
    assert.equal((await a.authenticate(basic('alice', 'wrong'), { client: 'y', lockout })).kind, 'fail')
    assert.deepEqual(await a.authenticate(basic('alice', 'right'), { client: 'y', lockout }), { kind: 'locked', retryAfter: 60 })
    assert.deepEqual(await a.authenticate(undefined, { client: 'y', lockout }), { kind: 'locked', retryAfter: 60 })
  })

  it('requests joining a check in flight share its verdict and are not charged for it', async () => {
    const a = make()
    const lockout = new Lockout({ failures: 2, windowMs: 60_000, durationMs: 60_000 })
    const same = await Promise.all(Array.from({ length: 10 }, async () => await a.authenticate(basic('alice', 'same-wrong'), { client: 'c', lockout })))
    assert.ok(same.every(o => o.kind === 'fail'))
    assert.equal(lockout.retryAfter('c'), 0, 'one failure counted, not ten')
  })

  it('a check refused by the queue is busy, not a failure, and gives its reservation back', async () => {
    const slow = parseHash(bcrypt.hashSync('slow', 9))
    assert.ok(slow !== undefined)
    const a = new Authenticator({ users: new Map([['slow', slow]]), groups: new Map(), pool, cacheTtlMs: 1, cacheSize: 10, maxPendingPerClient: 1 })
    const lockout = new Lockout({ failures: 3, windowMs: 60_000, durationMs: 60_000 })
    const first = a.authenticate(basic('slow', 'guess-1'), { client: 'c', lockout })
    const second: AuthOutcome = await a.authenticate(basic('slow', 'guess-2'), { client: 'c', lockout })
    assert.deepEqual(second, { kind: 'busy', scope: 'client', limit: 1 })
    assert.equal((await first).kind, 'fail')
    // Two of the three left: the failure counted above used one, the busy check gave its own back.
    assert.equal(lockout.reserve('c'), 0)
    assert.equal(lockout.reserve('c'), 0)
    assert.equal(lockout.reserve('c'), 1)
  })
})

// ================================================================== the pool

describe('BcryptPool (hash pool)', () => {
  const pools: BcryptPool[] = []
  after(async () => { await Promise.all(pools.map(async p => await p.close())) })

  it('checks bcrypt and scrypt hashes in its workers', async () => {
    const pool = new BcryptPool(1)
    pools.push(pool)
    const b = parseHash(bcrypt.hashSync('b-pw', 4))
    const s = parseHash(await hashPassword('s-pw', 'scrypt'))
    assert.ok(b !== undefined && s !== undefined)
    assert.deepEqual(await Promise.all([pool.verify(b, 'b-pw'), pool.verify(b, 'nope'), pool.verify(s, 's-pw'), pool.verify(s, 'nope')]), [true, false, true, false])
  })

  it('a worker that dies fails the check it ran (not a hang); the next check starts a new worker', async () => {
    const pool = new BcryptPool(1)
    pools.push(pool)
    const slow = parseHash(bcrypt.hashSync('pw', 12))
    const quick = parseHash(bcrypt.hashSync('pw', 4))
    assert.ok(slow !== undefined && quick !== undefined)
    const pending = pool.verify(slow, 'wrong')
    const queued = pool.verify(quick, 'pw')
    // Handled from the start: the worker's exit can reject it before terminateWorkers() resolves.
    const failed = assert.rejects(pending, /hash worker exited \(code \d+\) during a password check/)
    assert.ok(await pollImmediate(100_000, () => testHooks.running() > 0))
    assert.ok(await testHooks.terminateWorkers() >= 1)
    await failed
    assert.equal(await queued, true, 'the check waiting behind it ran on a new worker')
    assert.equal(pool.stats.workerDeaths, 1)
    assert.equal(await pool.verify(quick, 'pw'), true)
  })

  it('sheds beyond the per-client limit: counted, logged once per episode, then the count when the queue empties', async () => {
    const { logger, logs, waitForLog } = captureLogs()
    const pool = new BcryptPool({ size: 1, log: logger })
    pools.push(pool)
    const h = parseHash(bcrypt.hashSync('pw', 6))
    assert.ok(h !== undefined)
    const limits = { perKey: 2, total: 100 }
    const results = await Promise.allSettled(Array.from({ length: 6 }, async () => await pool.verify(h, 'x', { client: '10.9.9.9', limits })))
    assert.deepEqual(results.map(r => r.status), ['fulfilled', 'fulfilled', 'rejected', 'rejected', 'rejected', 'rejected'])
    assert.equal(pool.stats.shedClient, 4)
    const ended = await waitForLog(r => r.msg.startsWith('login checks no longer shed'))
    assert.equal(ended['shed'], 4)
    const warns = logs.filter(r => r.msg.startsWith('login checks shed'))
    assert.equal(warns.length, 1)
    assert.equal(warns[0]?.['client'], '10.9.9.9')
    assert.equal(warns[0]?.['scope'], 'client')
    // A new episode is logged again.
    await Promise.allSettled(Array.from({ length: 3 }, async () => await pool.verify(h, 'x', { client: '10.9.9.9', limits })))
    await waitForLog(r => r.msg.startsWith('login checks no longer shed') && r['shed'] === 1)
    assert.equal(logs.filter(r => r.msg.startsWith('login checks shed')).length, 2)
  })
})
