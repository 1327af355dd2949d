/**
 * `sluice passwd NAME` as an operator runs it (`node dist/cli.js`): the
 * password is piped on stdin (never argv), a users-file line is printed,
 * and the hash verifies with bcryptjs / Sluice's scrypt. Plus `validate`
 * on a config whose users file holds an `$apr1$` line.
 *
 * Runs against dist/, so `npm run test:cli` builds first.
 */
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { before, describe, it } from 'node:test'
import bcrypt from 'bcryptjs'
import { parseHash, scryptVerify } from '../../src/auth/hash.js'
import { parseUsersFile } from '../../src/auth/users-file.js'
import { assertBuilt, runCli, type Finished } from '../helpers/cli.js'

const FIXTURES = fileURLToPath(new URL('../fixtures/auth/', import.meta.url))

/** Bound on one run; a failure bound, not synchronisation. */
const WAIT_MS = 10_000

/** Run the CLI to completion with `stdin` piped in (then closed). */
async function run (args: readonly string[], stdin: string | Buffer = ''): Promise<Finished> {
  return await runCli(args, { stdin, timeoutMs: WAIT_MS })
}

before(assertBuilt)

/** The single `NAME:HASH` line printed, split. */
function line (r: Finished, name: string): string {
  assert.equal(r.code, 0, `exit ${String(r.code)}; stderr: ${r.stderr}`)
  assert.ok(r.stdout.endsWith('\n'))
  const lines = r.stdout.split('\n')
  assert.equal(lines.length, 2, `one line: ${JSON.stringify(r.stdout)}`)
  const [l] = lines
  assert.ok(l !== undefined && l.startsWith(`${name}:`), l)
  return l.slice(name.length + 1)
}

function assertSecret (r: Finished, password: string): void {
  assert.ok(!r.argv.some(a => a.includes(password)), 'the password is not in argv')
  assert.ok(!r.stdout.includes(password), 'the password is not printed')
  assert.ok(!r.stderr.includes(password), 'the password is not in stderr')
}

describe('sluice passwd', { concurrency: true }, () => {
  it('bcrypt (default): prints alice:$2y$10$…, which bcryptjs verifies', async () => {
    const password = 'correct horse battery staple'
    const r = await run(['passwd', 'alice'], password + '\n')
    const hash = line(r, 'alice')
    assert.match(hash, /^\$2y\$10\$[./A-Za-z0-9]{53}$/)
    assert.equal(bcrypt.compareSync(password, hash), true)
    assert.equal(bcrypt.compareSync(password + '\n', hash), false, 'the trailing newline is not part of the password')
    assert.equal(bcrypt.compareSync('correct horse battery stapl', hash), false)
    assertSecret(r, password)
    assert.equal(r.stderr, '')
    // The printed line is a valid users file as it stands.
    const parsed = parseUsersFile(r.stdout, 'users')
    assert.deepEqual(parsed.problems, [])
    assert.deepEqual(parsed.users.get('alice'), { scheme: 'bcrypt', hash })
  })

  it('read whole without a trailing newline or with CRLF; salted: the same password hashes differently', async () => {
    const password = '  same pw  '
    const runs = await Promise.all([password, password + '\r\n'].map(async input => await run(['passwd', 'alice'], input)))
    const hashes = runs.map(r => line(r, 'alice'))
    for (const [i, hash] of hashes.entries()) assert.equal(bcrypt.compareSync(password, hash), true, `run ${i}`)
    assert.notEqual(hashes[0], hashes[1])
    for (const r of runs) assertSecret(r, password.trim())
  })

  it('a UTF-8 password is hashed in NFC', async () => {
    const password = 'p\u00e4ssw\u00f6rd\u2713'
    const r = await run(['passwd', 'j\u00fcrgen'], password.normalize('NFD') + '\n')
    const hash = line(r, 'j\u00fcrgen')
    assert.equal(bcrypt.compareSync(password.normalize('NFC'), hash), true)
    assertSecret(r, password.normalize('NFD'))
    assertSecret(r, password.normalize('NFC'))
  })

  it('--scheme scrypt prints $scrypt$ln=15,…, which parseHash and scryptVerify accept', async () => {
    const password = 'scrypt-cli-pw'
    const r = await run(['passwd', '--scheme', 'scrypt', 'carol'], password + '\n')
    const hash = line(r, 'carol')
    assert.match(hash, /^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$/)
    const h = parseHash(hash)
    assert.ok(h !== undefined && h.scheme === 'scrypt', hash)
    assert.equal(await scryptVerify(h, password), true)
    assert.equal(await scryptVerify(h, password + 'x'), false)
    assertSecret(r, password)
  })

  it('empty stdin → exit 2, nothing printed', async () => {
    const inputs = ['', '\n']
    const runs = await Promise.all(inputs.map(async input => await run(['passwd', 'alice'], input)))
    for (const [i, r] of runs.entries()) {
      assert.equal(r.code, 2, JSON.stringify(inputs[i]))
      assert.equal(r.stdout, '')
      assert.match(r.stderr, /empty password/)
    }
  })

  it('a name with ":" (or empty) → exit 2', async () => {
    const names = ['al:ice', '']
    const runs = await Promise.all(names.map(async name => await run(['passwd', name], 'some-pw\n')))
    for (const [i, r] of runs.entries()) {
      assert.equal(r.code, 2, JSON.stringify(names[i]))
      assert.equal(r.stdout, '')
      assert.match(r.stderr, /user name may not be empty or contain ":" or spaces/)
    }
  })

  it('passwd without NAME, or with an unknown scheme → exit 2, one line and a pointer to --help', async () => {
    const argvs = [['passwd'], ['passwd', '--scheme', 'md5', 'alice']]
    const runs = await Promise.all(argvs.map(async args => await run(args, 'some-pw\n')))
    for (const [i, r] of runs.entries()) {
      assert.equal(r.code, 2, argvs[i]?.join(' '))
      assert.equal(r.stdout, '')
      assert.match(r.stderr, /^sluice: [^\n]+\nsee 'sluice --help'\n$/)
    }
  })

  it('a password longer than 4096 bytes → exit 2 with a one-line message', async () => {
    const r = await run(['passwd', 'alice'], 'a'.repeat(5000))
    assert.equal(r.stdout, '')
    assert.equal(r.code, 2, `exit ${String(r.code)}; stderr: ${r.stderr}`)
    assert.match(r.stderr, /^sluice: .*4096/)
    assert.doesNotMatch(r.stderr, /fatal|\n\s+at /, 'no stack trace')
  })
})

describe('sluice validate with auth', { concurrency: true }, () => {
  it('a users file with an $apr1$ line → exit 2, naming the users file and :LINE:', async () => {
    const r = await run(['validate', `${FIXTURES}apr1.yaml`])
    assert.equal(r.code, 2)
    const out = r.stdout + r.stderr
    assert.ok(out.includes(`${FIXTURES}apr1.htpasswd:3: `), out)
    assert.match(out, /'bob' uses MD5-crypt \(\$apr1\$\)/)
    assert.ok(out.includes('htpasswd -B') && out.includes('sluice passwd'), out)
    assert.ok(!out.includes('$apr1$r31'), 'the hash itself is not printed')
  })

  it('a config with a $2y$05$ users file is valid', async () => {
    const r = await run(['validate', `${FIXTURES}good.yaml`])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /good\.yaml: ok \(1 rule, default deny, hash [0-9a-f]{16}\)/)
  })
})
