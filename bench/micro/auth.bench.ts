/**
 * The Proxy-Authorization check (src/auth/authenticator.ts) on its hot path:
 * a verified user:password is served from the cache (HMAC key, no hash).
 * The first verification (bcrypt in a worker) is paid once, before timing.
 */
import assert from 'node:assert/strict'
import { bench, do_not_optimize as keep, group } from 'mitata'
import bcrypt from 'bcryptjs'
import { Authenticator } from '../../src/auth/authenticator.js'
import { BcryptPool } from '../../src/auth/bcrypt-pool.js'
import { parseHash } from '../../src/auth/hash.js'

const hash = parseHash(bcrypt.hashSync('perf-Secret-42', 10))
assert.ok(hash !== undefined)
const pool = new BcryptPool(1)
const auth = new Authenticator({
  users: new Map([['perf', hash]]),
  groups: new Map([['perf', new Set(['bench'])]]),
  pool,
  cacheTtlMs: 3_600_000,
  cacheSize: 10_000
})
const header = 'Basic ' + Buffer.from('perf:perf-Secret-42').toString('base64')

// What is measured must be what it says: the first call hashes, the next is cached.
assert.equal((await auth.authenticate(header)).kind, 'ok')
const second = await auth.authenticate(header)
assert.ok(second.kind === 'ok' && second.cached)
await pool.close()

group('Proxy-Authorization', () => {
  bench('cached Basic credentials', async () => keep(await auth.authenticate(header)))
  bench('no header (anonymous)', async () => keep(await auth.authenticate(undefined)))
  bench('malformed header', async () => keep(await auth.authenticate('Basic !!!')))
})
