/**
 * `sluice validate` as CI would run it, against the built binary: warnings
 * (`warning:` lines, exit 0) and `--strict` (exit 2), a parent's secrets that
 * are not there (a warning for validate; serve and check still refuse the
 * file), schema errors with their line and a "did you mean", and a YAML
 * syntax error shown with its line and a caret.
 *
 * Runs against dist/, so `npm run test:cli` builds first.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { assertBuilt, killCliChildren, runCli, type Finished } from '../helpers/cli.js'

let dir: string

/** Our environment minus `name`, so a variable can be known to be unset. */
function envWithout (name: string): NodeJS.ProcessEnv {
  const env = { ...process.env }
  delete env[name]
  return env
}

async function run (args: readonly string[], env?: NodeJS.ProcessEnv): Promise<Finished> {
  return await runCli(args, { stdin: '', ...(env === undefined ? {} : { env }) })
}

/** Write `text` as `name` in the temp directory; returns its path. */
async function file (name: string, text: string): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, text)
  return path
}

before(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'sluice-validate-'))
})

after(async () => {
  killCliChildren()
  await rm(dir, { recursive: true, force: true })
})

/** Three rules, three mistakes a valid file can hold. */
const SUSPICIOUS = `version: 1
listen: 0.0.0.0:3128
rules:
  - name: https
    action: allow
    ports: [443]
  - name: https
    action: allow
    hosts: [example.com]
    ports: [443]
`

describe('sluice validate: warnings', () => {
  it('a valid file with mistakes: warning lines in file order, then ok; exit 0', async () => {
    const f = await file('suspicious.yaml', SUSPICIOUS)
    const r = await run(['validate', f])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.equal(r.stderr, '')
    const lines = r.stdout.trimEnd().split('\n')
    assert.deepEqual(lines.slice(0, -1), [
      `warning: ${f}:2: listen: listener '0.0.0.0:3128' is reachable beyond loopback with no auth section, and rule 'https' (rules[0]) allows any client (it has no clients:): anyone who can reach the listener can use the proxy (an open proxy); add an auth section, or clients: to the allowing rules`,
      `warning: ${f}:7: rules[1].name: name 'https' is also the name of rules[0]: logs and denials cannot tell them apart`,
      `warning: ${f}:7: rules[1]: rule 'https' (rules[1]) can never match: rule 'https' (rules[0]) comes first and matches every request it could`
    ])
    assert.match(lines.at(-1) ?? '', new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: ok \\(2 rules, default deny, hash [0-9a-f]{16}, 3 warnings\\)$`))
  })

  it('--strict: the same file is invalid, exit 2, the warnings still printed', async () => {
    const f = await file('suspicious-strict.yaml', SUSPICIOUS)
    const r = await run(['validate', '--strict', f])
    assert.equal(r.code, 2, r.stdout + r.stderr)
    const lines = r.stdout.trimEnd().split('\n')
    assert.equal(lines.filter(l => l.startsWith('warning: ')).length, 3, r.stdout)
    assert.equal(lines.at(-1), `${f}: invalid with --strict (3 warnings)`)
    assert.equal(lines.some(l => l.includes(': ok (')), false)
  })

  it('--strict with a clean file, and with several files: exit 2 only if one has warnings', async () => {
    const clean = await file('clean.yaml', 'version: 1\nrules:\n  - { name: https, action: allow, ports: [443] }\n')
    const ok = await run(['validate', '--strict', clean])
    assert.equal(ok.code, 0, ok.stdout + ok.stderr)
    assert.match(ok.stdout, /: ok \(1 rule, default deny, hash [0-9a-f]{16}\)\n$/)
    const mixed = await run(['validate', clean, '--strict', await file('suspicious-mixed.yaml', SUSPICIOUS)])
    assert.equal(mixed.code, 2, mixed.stdout + mixed.stderr)
    assert.match(mixed.stdout, /^.*clean\.yaml: ok /m)
    assert.match(mixed.stdout, /suspicious-mixed\.yaml: invalid with --strict \(3 warnings\)\n$/)
  })
})

describe('sluice validate: secrets are not needed', () => {
  const PARENT = (secret: string): string => `version: 1
parents:
  corp:
    url: http://10.0.0.1:3128
    username: svc
    ${secret}
default_route: corp
rules:
  - { name: https, action: allow, ports: [443] }
`
  const UNSET = 'SLUICE_TEST_VALIDATE_SURELY_UNSET'

  it('password_env unset: validate warns (exit 0); check and serve refuse the file (exit 2)', async () => {
    const f = await file('secret-env.yaml', PARENT(`password_env: ${UNSET}`))
    const env = envWithout(UNSET)
    const v = await run(['validate', f], env)
    assert.equal(v.code, 0, v.stdout + v.stderr)
    assert.equal(v.stdout.split('\n')[0], `warning: ${f}:6: parents.corp.password_env: environment variable ${UNSET} is not set (serve and check need it)`)
    assert.match(v.stdout, /: ok \(1 rule, default deny, hash [0-9a-f]{16}, 1 warning\)\n$/)

    const strict = await run(['validate', '--strict', f], env)
    assert.equal(strict.code, 2, 'with --strict a missing secret fails CI too')

    const c = await run(['check', '--config', f, '93.184.216.34:443'], env)
    assert.equal(c.code, 2, c.stdout + c.stderr)
    assert.match(c.stderr, new RegExp(`parents\\.corp: password_env: environment variable ${UNSET} is not set`))

    const s = await run(['serve', '--config', f, '--listen', '127.0.0.1:0'], env)
    assert.equal(s.code, 2, s.stdout + s.stderr)
    assert.match(s.stderr, new RegExp(`parents\\.corp: password_env: environment variable ${UNSET} is not set`))
  })

  it('password_file missing: validate warns (exit 0); check refuses (exit 2)', async () => {
    const f = await file('secret-file.yaml', PARENT('password_file: corp.pass'))
    const v = await run(['validate', f])
    assert.equal(v.code, 0, v.stdout + v.stderr)
    assert.match(v.stdout, new RegExp(`^warning: .*secret-file\\.yaml:6: parents\\.corp\\.password_file: cannot read ${join(dir, 'corp.pass').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: ENOENT`))
    const c = await run(['check', '--config', f, '93.184.216.34:443'])
    assert.equal(c.code, 2, c.stdout + c.stderr)
    assert.match(c.stderr, /parents\.corp: password_file: cannot read .*corp\.pass/)
  })

  it('with the secret present there is no warning', async () => {
    await writeFile(join(dir, 'present.pass'), 'pw\n')
    const f = await file('secret-present.yaml', PARENT('password_file: present.pass'))
    const v = await run(['validate', '--strict', f])
    assert.equal(v.code, 0, v.stdout + v.stderr)
    assert.doesNotMatch(v.stdout, /warning/)
  })
})

describe('sluice validate: errors an operator can find', () => {
  it('schema errors: file:LINE, our wording, a "did you mean" for an unknown key', async () => {
    const f = await file('typos.yaml', 'version: 1\nlimits:\n  max_tunnels: lots\nrules:\n  - action: allow\n    prots: [443]\n')
    const r = await run(['validate', f])
    assert.equal(r.code, 2, r.stdout + r.stderr)
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      `${f}:3: limits.max_tunnels: expected a number, got a string 'lots'`,
      `${f}:6: rules[0]: unknown key 'prots' (did you mean 'ports'?)`
    ])
  })

  it('a YAML syntax error: the line, the column, the line itself and a caret', async () => {
    const f = await file('syntax.yaml', 'version: 1\nrules:\n  - { action: allow, ports: [443 }\n')
    const r = await run(['validate', f])
    assert.equal(r.code, 2, r.stdout + r.stderr)
    const [head, shown, caret] = r.stdout.split('\n')
    assert.match(head ?? '', new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:3:(\\d+): Flow sequence in block collection must be sufficiently indented and end with a \\]`))
    assert.equal(shown, '      - { action: allow, ports: [443 }')
    const col = Number(/:3:(\d+):/.exec(head ?? '')?.[1])
    assert.equal(caret, ' '.repeat(4 + col - 1) + '^')
    assert.equal((shown ?? '')[(caret ?? '').length - 1], '}', 'the caret is under the offending character')
  })

  it('validate needs a FILE; --strict only applies to validate', async () => {
    const none = await run(['validate', '--strict'])
    assert.equal(none.code, 2)
    assert.equal(none.stderr, "sluice: validate needs at least one FILE\nsee 'sluice --help'\n")
  })
})
