/**
 * Proxy authentication, unit level: the users file (htpasswd format, only
 * slow salted hashes), the Authenticator (Basic parsing, verification,
 * cache without plaintext), the Lockout counter (explicit clocks, no
 * sleeping) and the BcryptPool (worker threads).
 *
 * Hashes are generated here: bcrypt at cost 4 (bcryptjs), one scrypt hash
 * (hashPassword, ln=15, ~100 ms) shared by every case.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import type { Worker } from 'node:worker_threads'
import { after, before, describe, it } from 'node:test'
import bcrypt from 'bcryptjs'
import { parseUsersFile } from '../../src/auth/users-file.js'
import { hashPassword, parseHash, scryptVerify, type PasswordHash } from '../../src/auth/hash.js'
import { Authenticator, type AuthenticatorOptions } from '../../src/auth/authenticator.js'
import { Lockout } from '../../src/auth/lockout.js'
import { BcryptPool } from '../../src/auth/bcrypt-pool.js'

/** A cost-4 bcrypt hash with the given prefix (`$2y$` is what `htpasswd -B` writes). */
function bcryptHash (password: string, prefix: '$2a$' | '$2b$' | '$2y$' = '$2b$'): string {
  return bcrypt.hashSync(password, 4).replace(/^\$2b\$/, prefix)
}

function basic (user: string, password: string): string {
  return 'Basic ' + Buffer.from(`${user}:${password}`, 'utf8').toString('base64')
}

let scryptLine: string
before(async () => {
  scryptLine = await hashPassword('scrypt-secret', 'scrypt')
})

describe('parseUsersFile', () => {
  it('accepts bcrypt $2y$, $2b$, $2a$ and scrypt lines; ignores comments and blank lines', () => {
    const y = bcryptHash('pw-y', '$2y$')
    const b = bcryptHash('pw-b', '$2b$')
    const a = bcryptHash('pw-a', '$2a$')
    const text = [
      '# users for the test proxy',
      '',
      `yvonne:${y}`,
      '   ',
      `bert:${b}`,
      '  # an indented comment',
      `anna:${a}`,
      `sam:${scryptLine}`,
      ''
    ].join('\n')
    const { users, problems } = parseUsersFile(text, '/etc/sluice/users')
    assert.deepEqual(problems, [])
    assert.deepEqual([...users.keys()], ['yvonne', 'bert', 'anna', 'sam'])
    assert.deepEqual(users.get('yvonne'), { scheme: 'bcrypt', hash: y })
    assert.deepEqual(users.get('bert'), { scheme: 'bcrypt', hash: b })
    assert.deepEqual(users.get('anna'), { scheme: 'bcrypt', hash: a })
    const sam = users.get('sam')
    assert.equal(sam?.scheme, 'scrypt')
    if (sam?.scheme === 'scrypt') {
      assert.equal(sam.N, 2 ** 15)
      assert.equal(sam.r, 8)
      assert.equal(sam.p, 1)
      assert.equal(sam.salt.length, 16)
      assert.equal(sam.key.length, 32)
    }
  })

  it('accepts CRLF line endings', () => {
    const h = bcryptHash('pw', '$2y$')
    const { users, problems } = parseUsersFile(`# c\r\nalice:${h}\r\n`, 'u')
    assert.deepEqual(problems, [])
    assert.deepEqual(users.get('alice'), { scheme: 'bcrypt', hash: h })
  })

  it('refuses an $apr1$ line with its line number and the fix', () => {
    const text = [
      '# comment',
      `alice:${bcryptHash('pw', '$2y$')}`,
      'bob:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/'
    ].join('\n')
    const { users, problems } = parseUsersFile(text, 'FILE')
    assert.equal(problems.length, 1)
    const [p] = problems
    assert.ok(p !== undefined)
    assert.ok(p.startsWith('FILE:3: '), p)
    assert.match(p, /'bob'/)
    assert.match(p, /\$apr1\$/)
    assert.ok(p.includes('htpasswd -B'), p)
    assert.ok(p.includes('sluice passwd'), p)
    assert.deepEqual([...users.keys()], ['alice'], 'the good line is still parsed')
  })

  it('lists every problem at once, each with its line number', () => {
    const good = bcryptHash('pw', '$2y$')
    const lines = [
      /* 1 */ '# weak and broken lines',
      /* 2 */ `alice:${good}`,
      /* 3 */ 'sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
      /* 4 */ 'md5:$1$saltsalt$qjXMvbEw8oaL.CzflDugX/',
      /* 5 */ 'sha512:$6$saltsalt$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF3VjRazbHsBFnHDddhgbhPzrOWtTjMmX2dBhYJNW1Eh9R5gU0N0',
      /* 6 */ '',
      /* 7 */ 'des:rl0uE4PYTCe3U',
      /* 8 */ 'plain:secret',
      /* 9 */ `alice:${bcryptHash('other', '$2y$')}`,
      /* 10 */ 'nocolonhere',
      /* 11 */ `:${good}`,
      /* 12 */ 'apr:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/',
      /* 13 */ `sam:${scryptLine}`
    ]
    const { users, problems } = parseUsersFile(lines.join('\n'), '/srv/users')
    const byLine = new Map<number, string>()
    for (const p of problems) {
      const m = /^\/srv\/users:(\d+): /.exec(p)
      assert.ok(m !== null, `problem without FILE:LINE: prefix: ${p}`)
      byLine.set(Number(m[1]), p)
    }
    assert.deepEqual([...byLine.keys()].sort((x, y) => x - y), [3, 4, 5, 7, 8, 9, 10, 11, 12])
    assert.equal(problems.length, 9)
    assert.match(byLine.get(3) ?? '', /'sha'.*\{SHA\}/)
    assert.match(byLine.get(4) ?? '', /'md5'.*\$1\$/)
    assert.match(byLine.get(5) ?? '', /'sha512'.*\$6\$/)
    assert.match(byLine.get(7) ?? '', /'des'.*DES crypt/)
    assert.match(byLine.get(8) ?? '', /'plain'.*plain-text/)
    assert.match(byLine.get(9) ?? '', /'alice' is listed twice/)
    assert.match(byLine.get(10) ?? '', /expected NAME:HASH/)
    assert.match(byLine.get(11) ?? '', /expected NAME:HASH/)
    assert.match(byLine.get(12) ?? '', /'apr'.*\$apr1\$/)
    for (const l of [3, 4, 5, 7, 8, 12]) {
      const p = byLine.get(l) ?? ''
      assert.ok(p.includes('htpasswd -B') && p.includes('sluice passwd'), `line ${l} names the fix: ${p}`)
    }
    // The first alice wins; refused users are not loaded.
    assert.deepEqual([...users.keys()].sort(), ['alice', 'sam'])
    assert.deepEqual(users.get('alice'), { scheme: 'bcrypt', hash: good })
    // No problem text repeats a hash (problems go to logs and terminals).
    for (const p of problems) assert.ok(!p.includes('W6ph5Mm5Pz8GgiULbPgzG37mj9g') && !p.includes('secret'), p)
  })

  it('refuses a truncated bcrypt hash and an scrypt hash with weak parameters', () => {
    const good = bcryptHash('pw', '$2y$')
    const weakScrypt = scryptLine.replace('$ln=15,', '$ln=4,')
    const { users, problems } = parseUsersFile(`short:${good.slice(0, -1)}\nweak:${weakScrypt}\n`, 'u')
    assert.equal(users.size, 0)
    assert.equal(problems.length, 2)
    assert.ok(problems[0]?.startsWith('u:1: '))
    assert.ok(problems[1]?.startsWith('u:2: '))
  })
})

describe('hash helpers', () => {
  it('hashPassword scrypt output parses and verifies; a wrong password does not', async () => {
    assert.match(scryptLine, /^\$scrypt\$ln=15,r=8,p=1\$/)
    const h = parseHash(scryptLine)
    assert.ok(h !== undefined && h.scheme === 'scrypt')
    assert.equal(await scryptVerify(h, 'scrypt-secret'), true)
    assert.equal(await scryptVerify(h, 'scrypt-secreT'), false)
  })
})

describe('Authenticator', () => {
  const pool = new BcryptPool(2)
  after(async () => { await pool.close() })

  const NFC = 'caf\u00e9-\u00fc' // café-ü, precomposed
  const NFD = NFC.normalize('NFD')
  const passwords = {
    alice: 'alice-pw',
    colon: 'pa:ss',
    jürgen: '\u043f\u0430\u0440\u043e\u043b\u044c\u2713', // jürgen / пароль✓
    nfc: NFC,
    sam: 'scrypt-secret'
  } as const
  let users: Map<string, PasswordHash>
  const groups = new Map<string, ReadonlySet<string>>([['alice', new Set(['eng', 'ops'])]])

  before(() => {
    users = new Map()
    for (const [name, pw] of Object.entries(passwords)) {
      const h = parseHash(name === 'sam' ? scryptLine : bcryptHash(pw, '$2y$'))
      assert.ok(h !== undefined)
      users.set(name, h)
    }
  })

  function make (opts: Partial<AuthenticatorOptions> = {}): Authenticator {
    return new Authenticator({ users, groups, pool, cacheTtlMs: 60_000, cacheSize: 100, ...opts })
  }

  it('no header → none', async () => {
    const a = make()
    assert.deepEqual(await a.authenticate(undefined), { kind: 'none' })
    assert.deepEqual(await a.authenticate(''), { kind: 'none' })
  })

  it('the right password → ok with the principal and groups; the second call is served from the cache', async () => {
    const a = make()
    const first = await a.authenticate(basic('alice', 'alice-pw'))
    assert.equal(first.kind, 'ok')
    if (first.kind !== 'ok') return
    assert.equal(first.cached, false)
    assert.equal(first.principal.user, 'alice')
    assert.deepEqual([...first.principal.groups].sort(), ['eng', 'ops'])
    const second = await a.authenticate(basic('alice', 'alice-pw'))
    assert.equal(second.kind, 'ok')
    if (second.kind !== 'ok') return
    assert.equal(second.cached, true)
    assert.equal(second.principal.user, 'alice')
  })

  it('a scrypt user → ok, then cached', async () => {
    const a = make()
    assert.deepEqual(await a.authenticate(basic('sam', 'scrypt-secret')), { kind: 'ok', principal: { user: 'sam', groups: new Set() }, cached: false })
    assert.deepEqual(await a.authenticate(basic('sam', 'scrypt-secret')), { kind: 'ok', principal: { user: 'sam', groups: new Set() }, cached: true })
    assert.deepEqual(await a.authenticate(basic('sam', 'scrypt-secreT')), { kind: 'fail', reason: 'bad_password', user: 'sam' })
  })

  it('the scheme name is case-insensitive', async () => {
    const a = make()
    const header = basic('alice', 'alice-pw').replace('Basic', 'bAsIc')
    assert.equal((await a.authenticate(header)).kind, 'ok')
  })

  it('a wrong password → bad_password, even right after a cached success', async () => {
    const a = make()
    assert.equal((await a.authenticate(basic('alice', 'alice-pw'))).kind, 'ok')
    assert.deepEqual(await a.authenticate(basic('alice', 'alice-pW')), { kind: 'fail', reason: 'bad_password', user: 'alice' })
    assert.deepEqual(await a.authenticate(basic('alice', '')), { kind: 'fail', reason: 'bad_password', user: 'alice' })
  })

  it('an unknown user → unknown_user', async () => {
    const a = make()
    assert.deepEqual(await a.authenticate(basic('mallory', 'alice-pw')), { kind: 'fail', reason: 'unknown_user', user: 'mallory' })
  })

  it('a scheme other than Basic → not_basic', async () => {
    const a = make()
    for (const h of ['Bearer x', 'Digest username="alice"', 'Negotiate YIIB', 'Basicdb2', 'alice:alice-pw']) {
      assert.deepEqual(await a.authenticate(h), { kind: 'fail', reason: 'not_basic' }, h)
    }
  })

  it('bad base64 or no colon → malformed', async () => {
    const a = make()
    const cases = [
      'Basic !!!',
      'Basic ' + Buffer.from('nocolon').toString('base64'),
      'Basic ',
      'Basic YWxp Y2U6YWxpY2UtcHc='
    ]
    for (const h of cases) assert.deepEqual(await a.authenticate(h), { kind: 'fail', reason: 'malformed' }, h)
  })

  it('the password may contain colons: user:pa:ss', async () => {
    const a = make()
    const ok = await a.authenticate(basic('colon', 'pa:ss'))
    assert.equal(ok.kind, 'ok')
    assert.deepEqual(await a.authenticate(basic('colon', 'pa')), { kind: 'fail', reason: 'bad_password', user: 'colon' })
  })

  it('UTF-8 user name and password: jürgen / пароль✓', async () => {
    const a = make()
    const ok = await a.authenticate(basic('j\u00fcrgen', '\u043f\u0430\u0440\u043e\u043b\u044c\u2713'))
    assert.equal(ok.kind, 'ok')
    if (ok.kind === 'ok') assert.equal(ok.principal.user, 'j\u00fcrgen')
    // The same name decomposed (ü as u + U+0308) is the same user.
    const nfdName = await make().authenticate(basic('j\u00fcrgen'.normalize('NFD'), '\u043f\u0430\u0440\u043e\u043b\u044c\u2713'))
    assert.equal(nfdName.kind, 'ok')
    if (nfdName.kind === 'ok') assert.equal(nfdName.principal.user, 'j\u00fcrgen')
    // Latin-1 bytes of the same password are a different password.
    const latin1 = 'Basic ' + Buffer.from('j\u00fcrgen:\u00fc', 'latin1').toString('base64')
    assert.equal((await a.authenticate(latin1)).kind, 'fail')
  })

  it('NFC and NFD spellings of the same password both work', async () => {
    assert.notEqual(NFC, NFD)
    const viaNfc = await make().authenticate(basic('nfc', NFC))
    assert.equal(viaNfc.kind, 'ok')
    const viaNfd = await make().authenticate(basic('nfc', NFD))
    assert.equal(viaNfd.kind, 'ok')
    if (viaNfd.kind === 'ok') assert.equal(viaNfd.cached, false, 'a fresh authenticator verified the NFD spelling itself')
  })

  it('the cache never holds a plaintext password (keys or values)', async () => {
    const a = make()
    for (const [name, pw] of Object.entries(passwords)) assert.equal((await a.authenticate(basic(name, pw))).kind, 'ok', name)
    assert.equal((await a.authenticate(basic('nfc', NFD))).kind, 'ok')
    const cache = (a as unknown as { cache: Map<string, unknown> }).cache
    assert.ok(cache instanceof Map)
    // Keys come from the header as sent, so the NFD spelling (verified after NFC normalisation) has its own entry.
    assert.equal(cache.size, Object.keys(passwords).length + 1, 'one entry per distinct header')
    const secrets = [...Object.values(passwords), NFD, ...Object.entries(passwords).map(([n, p]) => Buffer.from(`${n}:${p}`).toString('base64'))]
    for (const [key, value] of cache) {
      const text = key + '\n' + JSON.stringify(value, (_k, v: unknown) => v instanceof Set ? [...v as Set<unknown>] : v)
      for (const s of secrets) assert.ok(!text.includes(s), `cache entry contains ${JSON.stringify(s)}: ${text}`)
    }
  })

  it('cache_ttl 0 never serves from the cache', async () => {
    const a = make({ cacheTtlMs: 0 })
    for (let i = 0; i < 2; i++) {
      const r = await a.authenticate(basic('alice', 'alice-pw'))
      assert.equal(r.kind, 'ok')
      if (r.kind === 'ok') assert.equal(r.cached, false)
    }
  })

  it('cache_size bounds the cache (the oldest entry goes first)', async () => {
    const a = make({ cacheSize: 1 })
    const cache = (a as unknown as { cache: Map<string, unknown> }).cache
    assert.equal((await a.authenticate(basic('alice', 'alice-pw'))).kind, 'ok')
    assert.equal((await a.authenticate(basic('colon', 'pa:ss'))).kind, 'ok')
    assert.equal(cache.size, 1)
    const again = await a.authenticate(basic('alice', 'alice-pw'))
    assert.equal(again.kind, 'ok')
    if (again.kind === 'ok') assert.equal(again.cached, false, 'alice was evicted by colon')
  })

  it('failures are not cached as successes', async () => {
    const a = make()
    const cache = (a as unknown as { cache: Map<string, unknown> }).cache
    await a.authenticate(basic('alice', 'nope'))
    await a.authenticate(basic('mallory', 'nope'))
    assert.equal(cache.size, 0)
  })
})

describe('Lockout', () => {
  const opts = { failures: 3, windowMs: 60_000, durationMs: 300_000 }

  it('N failures within the window lock the client; fail() is true exactly once', () => {
    const l = new Lockout(opts)
    const t0 = 1_000_000
    assert.equal(l.fail('10.0.0.1', t0), false)
    assert.equal(l.fail('10.0.0.1', t0 + 1000), false)
    assert.equal(l.retryAfter('10.0.0.1', t0 + 1000), 0)
    assert.equal(l.fail('10.0.0.1', t0 + 2000), true)
    assert.equal(l.retryAfter('10.0.0.1', t0 + 2000), 300)
    assert.equal(l.fail('10.0.0.1', t0 + 3000), false, 'still the same lock-out: not reported again')
    assert.equal(l.fail('10.0.0.1', t0 + 4000), false)
    assert.equal(l.retryAfter('10.0.0.1', t0 + 2000 + 299_500), 1)
    assert.ok(l.retryAfter('10.0.0.1', t0 + 10_000) > 0)
    // Another client is not affected.
    assert.equal(l.retryAfter('10.0.0.2', t0 + 10_000), 0)
  })

  it('the lock-out expires after its duration; a new episode is reported again', () => {
    const l = new Lockout({ failures: 2, windowMs: 1000, durationMs: 500 })
    const t0 = 5_000_000
    l.fail('c', t0)
    assert.equal(l.fail('c', t0 + 1), true)
    assert.equal(l.retryAfter('c', t0 + 500), 1)
    assert.equal(l.retryAfter('c', t0 + 501), 0)
    assert.equal(l.fail('c', t0 + 600), false, 'a failure after expiry starts a new count')
    assert.equal(l.retryAfter('c', t0 + 600), 0)
    assert.equal(l.fail('c', t0 + 700), true)
    assert.equal(l.retryAfter('c', t0 + 700), 1)
  })

  it('failures spread wider than the window do not lock', () => {
    const l = new Lockout({ failures: 3, windowMs: 1000, durationMs: 5000 })
    const t0 = 9_000_000
    assert.equal(l.fail('c', t0), false)
    assert.equal(l.fail('c', t0 + 900), false)
    assert.equal(l.fail('c', t0 + 1500), false, 'the window restarted')
    assert.equal(l.fail('c', t0 + 2000), false)
    assert.equal(l.retryAfter('c', t0 + 2000), 0)
    assert.equal(l.fail('c', t0 + 2100), true)
  })

  it('a failure counted during a lock-out (after the window) does not lift it', () => {
    // Reachable from handle.ts: the retryAfter() check runs before the slow
    // hash, so in-flight attempts from a burst call fail() after the lock-out began.
    const l = new Lockout(opts)
    const t0 = 2_000_000
    l.fail('c', t0)
    l.fail('c', t0 + 59_000)
    assert.equal(l.fail('c', t0 + 59_500), true)
    assert.equal(l.fail('c', t0 + 61_000), false)
    assert.ok(l.retryAfter('c', t0 + 61_000) > 0, `still locked out until ${t0 + 59_500 + 300_000}; retryAfter = ${l.retryAfter('c', t0 + 61_000)}`)
  })

  it('a success does not forget earlier failures in the window (issue 11: no reset by a known login)', () => {
    const l = new Lockout(opts)
    const now = Date.now()
    assert.equal(l.reserve('c', now), 0)
    l.fail('c', now)
    assert.equal(l.reserve('c', now), 0)
    l.fail('c', now)
    assert.equal(l.reserve('c', now), 0)
    l.release('c') // a success
    assert.equal(l.reserve('c', now), 0)
    assert.equal(l.fail('c', now), true, 'the third failure in the window locks, success or not')
  })

  it('a success does not lift an active lock-out', () => {
    const l = new Lockout(opts)
    const now = Date.now()
    l.fail('c', now)
    l.fail('c', now)
    assert.equal(l.fail('c', now), true)
    l.release('c')
    assert.ok(l.retryAfter('c', now + 1000) > 0)
  })

  it('failures: 0 disables lock-outs; configure() changes thresholds', () => {
    const l = new Lockout({ failures: 0, windowMs: 60_000, durationMs: 60_000 })
    for (let i = 0; i < 50; i++) assert.equal(l.fail('c', 1000 + i), false)
    assert.equal(l.retryAfter('c', 1100), 0)
    l.configure({ failures: 1, windowMs: 60_000, durationMs: 60_000 })
    assert.equal(l.fail('c', 2000), true)
    assert.equal(l.retryAfter('c', 2000), 60)
  })

  it('state is bounded by maxClients', () => {
    const l = new Lockout({ failures: 5, windowMs: 60_000, durationMs: 60_000, maxClients: 3 })
    for (let i = 0; i < 10; i++) l.fail(`10.0.0.${i}`, 1000)
    const clients = (l as unknown as { clients: Map<string, unknown> }).clients
    assert.equal(clients.size, 3)
  })
})

describe('BcryptPool', () => {
  const pools: BcryptPool[] = []
  after(async () => { await Promise.all(pools.map(async p => await p.close())) })

  it('compare is true for the right password, false for a wrong one or a junk hash', async () => {
    const pool = new BcryptPool(2)
    pools.push(pool)
    const h = bcryptHash('s3cret', '$2y$')
    assert.equal(await pool.compare('s3cret', h), true)
    assert.equal(await pool.compare('s3cret!', h), false)
    assert.equal(await pool.compare('s3cret', 'not a hash'), false)
    const results = await Promise.all(['s3cret', 'x', 's3cret', 'y'].map(async pw => await pool.compare(pw, h)))
    assert.deepEqual(results, [true, false, true, false])
  })

  it('starts at most `size` workers; close() terminates them and later compares reject', async () => {
    const pool = new BcryptPool(2)
    pools.push(pool)
    const h = bcryptHash('pw')
    await Promise.all(Array.from({ length: 6 }, async () => await pool.compare('pw', h)))
    const workers = [...(pool as unknown as { workers: Worker[] }).workers]
    assert.equal(workers.length, 2)
    const exits = workers.map(async w => await once(w, 'exit'))
    await pool.close()
    await Promise.all(exits)
    assert.equal((pool as unknown as { workers: Worker[] }).workers.length, 0)
    await assert.rejects(pool.compare('pw', h), /closed/)
  })

  it('close() rejects compares still in flight', async () => {
    const pool = new BcryptPool(1)
    pools.push(pool)
    const slow = bcrypt.hashSync('pw', 8)
    const rejected = assert.rejects(pool.compare('pw', slow), /closed/)
    await pool.close()
    await rejected
  })
})

describe('Authenticator under a burst', () => {
  it('concurrent CONNECTs with the same credentials share one hash (no stampede on a cold cache)', async () => {
    const hash = parseHash(bcryptHash('burst-pw'))
    assert.ok(hash !== undefined)
    const pool = new BcryptPool(1)
    let compares = 0
    const counting = {
      async verify (h: PasswordHash, password: string): Promise<boolean> {
        compares++
        return await pool.verify(h, password)
      }
    } as unknown as BcryptPool
    const a = new Authenticator({ users: new Map([['burst', hash]]), groups: new Map(), pool: counting, cacheTtlMs: 60_000, cacheSize: 10 })
    try {
      const outcomes = await Promise.all(Array.from({ length: 20 }, async () => await a.authenticate(basic('burst', 'burst-pw'))))
      assert.ok(outcomes.every(o => o.kind === 'ok'))
      assert.equal(compares, 1)
      // A wrong password in a burst is also checked once, and not cached.
      const wrong = await Promise.all(Array.from({ length: 5 }, async () => await a.authenticate(basic('burst', 'nope'))))
      assert.ok(wrong.every(o => o.kind === 'fail' && o.reason === 'bad_password'))
      assert.equal(compares, 2)
    } finally {
      await pool.close()
    }
  })
})
