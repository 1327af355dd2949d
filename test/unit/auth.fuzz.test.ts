/**
 * Fuzzing Proxy-Authorization handling, auth/authenticator.ts (issue 11,
 * "Fuzzing"). Arbitrary header strings, and near-valid Basic credentials
 * (scheme spellings, whitespace, base64 with and without padding or with
 * stray characters, user names and passwords with `:`, NUL, non-ASCII and
 * NFC/NFD pairs), judged in concurrent batches against a users map with a
 * cost-4 bcrypt user and a real BcryptPool:
 *
 * - `authenticate` always settles with an outcome (none, ok, fail with a
 *   reason), never a throw;
 * - `ok` only for the one user and password there are, and then for the
 *   exact header that says so; `none` only for an absent or empty header;
 * - a batch leaves nothing in flight (every promise settled).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import bcrypt from 'bcryptjs'
import fc from 'fast-check'
import { Authenticator, type AuthOutcome } from '../../src/auth/authenticator.js'
import { BcryptPool } from '../../src/auth/bcrypt-pool.js'
import type { PasswordHash } from '../../src/auth/hash.js'
import { fuzzParams, fuzzTimeout } from '../helpers/fuzz.js'

const USER = 'alice'
const PASSWORD = 'right:pässword'
const basic = (userPass: string, scheme = 'Basic'): string => `${scheme} ${Buffer.from(userPass, 'utf8').toString('base64')}`
const GOOD = basic(`${USER}:${PASSWORD}`)

let pool: BcryptPool
let auth: Authenticator

before(() => {
  pool = new BcryptPool(2)
  const users = new Map<string, PasswordHash>([[USER, { scheme: 'bcrypt', hash: bcrypt.hashSync(PASSWORD, 4) }]])
  auth = new Authenticator({ users, groups: new Map([[USER, new Set(['staff'])]]), pool, cacheTtlMs: 60_000, cacheSize: 16 })
})
after(async () => { await pool.close() })

/** The outcome for `header`; a throw fails the property with the header named. */
async function judge (header: string | undefined): Promise<AuthOutcome> {
  let out: AuthOutcome
  try {
    out = await auth.authenticate(header)
  } catch (err) {
    assert.fail(`authenticate(${JSON.stringify(header)}) threw: ${String(err)}`)
  }
  const where = `authenticate(${JSON.stringify(header)}) → ${JSON.stringify(out)}`
  switch (out.kind) {
    case 'none':
      assert.ok(header === undefined || header === '', where)
      break
    case 'ok':
      assert.equal(out.principal.user, USER, where)
      assert.ok(out.principal.groups.has('staff'), where)
      break
    case 'fail':
      assert.ok(['not_basic', 'malformed', 'unknown_user', 'bad_password'].includes(out.reason), where)
      if (out.user !== undefined) assert.equal(typeof out.user, 'string', where)
      if (out.reason === 'bad_password') assert.equal(out.user, USER, where)
      break
    default:
      assert.fail(`unknown outcome ${where}`)
  }
  if (header === GOOD) assert.equal(out.kind, 'ok', where)
  return out
}

// ------------------------------------------------------------ generators

const scheme = fc.constantFrom('Basic', 'basic', 'BASIC', 'bAsIc', 'Bearer', 'Digest', 'Basicx', 'Basic:', '')
const space = fc.constantFrom(' ', '  ', '\t', '', ' \t ', '\u00a0')
const text = fc.oneof(
  fc.constantFrom(USER, PASSWORD, 'Alice', 'alice ', 'ａlice', 'a\u0308lice', 'ä', 'a\u0308', 'right', ''),
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 })
)
const credentials = fc.tuple(text, fc.constantFrom(':', '::', '', ' : '), text).map(([u, sep, p]) => `${u}${sep}${p}`)
const b64 = fc.tuple(credentials, fc.constantFrom('base64', 'base64url', 'latin1-as-base64', 'unpadded', 'junk'), fc.nat()).map(([c, how, n]) => {
  const std = Buffer.from(c, 'utf8').toString('base64')
  switch (how) {
    case 'base64url': return Buffer.from(c, 'utf8').toString('base64url')
    case 'latin1-as-base64': return Buffer.from(c, 'latin1').toString('base64')
    case 'unpadded': return std.replace(/=+$/, '')
    case 'junk': { const at = std.length === 0 ? 0 : n % std.length; return `${std.slice(0, at)}${'!*=.~ '[n % 6] ?? '!'}${std.slice(at)}` }
    default: return std
  }
})
const header = fc.oneof(
  { weight: 1, arbitrary: fc.constant(GOOD) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 120 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme-ascii', maxLength: 60 }) },
  { weight: 3, arbitrary: b64.map(c => `Basic ${c}`) },
  { weight: 2, arbitrary: text.map(p => basic(`${USER}:${p}`)) },
  { weight: 3, arbitrary: fc.tuple(space, scheme, space, b64, space).map(([a, s, b, c, d]) => `${a}${s}${b}${c}${d}`) }
)

describe('Authenticator.authenticate fuzz', { timeout: fuzzTimeout(60_000) }, () => {
  it('arbitrary headers, judged concurrently: always an outcome, never a throw; ok only for the real credentials', async () => {
    await fc.assert(fc.asyncProperty(fc.array(fc.option(header, { nil: undefined, freq: 20 }), { minLength: 1, maxLength: 4 }), async (headers) => {
      // Duplicates in a batch exercise the in-flight de-duplication and the cache.
      const batch = [...headers, ...headers.slice(0, 2)]
      const settled = await Promise.allSettled(batch.map(judge))
      for (const s of settled) if (s.status === 'rejected') throw s.reason
    }), fuzzParams(40))
  })
})
