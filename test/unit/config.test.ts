import { after, before, describe, it, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ConfigError, parseConfig, type LoadOptions } from '../../src/config/load.js'
import { closest, levenshtein } from '../../src/config/suggest.js'
import { parseDuration } from '../../src/config/duration.js'
import { decideRequest } from '../../src/policy/decide.js'

test('every problem is listed at once, with file and path', () => {
  const text = `
version: 1
bogus: 1
timeouts: { idle: soon }
rules:
  - action: allow
    ports: [443, 99999]
  - action: maybe
    ips: [10.0.0.0/33]
`
  assert.throws(() => parseConfig(text, 'policies/corp.yaml'), (err: unknown) => {
    assert.ok(err instanceof ConfigError)
    // In file order, each with its line.
    assert.deepEqual(err.problems, [
      "policies/corp.yaml:3: (top level): unknown key 'bogus'",
      "policies/corp.yaml:4: timeouts.idle: expected a duration like 500ms, 30s, 10m, 1h or a number of milliseconds, got a string 'soon'",
      'policies/corp.yaml:7: rules[0].ports[1]: expected a port 1-65535 or a range like 8000-8080',
      "policies/corp.yaml:8: rules[1].action: expected allow or deny, got 'maybe'",
      'policies/corp.yaml:9: rules[1].ips[0]: expected an IP address or CIDR like 10.0.0.0/8 or 2001:db8::/32'
    ])
    return true
  })
})

/** The problems `text` is rejected with (fails if it is accepted). */
function problems (text: string, file = 'x.yaml', options: LoadOptions = {}): readonly string[] {
  try {
    parseConfig(text, file, options)
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    for (const p of err.problems) assert.ok(err.message.includes(p.replace(/\n/g, '\n  ')), `message lists ${p}`)
    return err.problems
  }
  assert.fail('expected a ConfigError')
}

describe('schema errors: the line, and our words', () => {
  const cases: ReadonlyArray<readonly [string, string, readonly string[]]> = [
    ['a number given as a string', 'version: 1\nlimits:\n  max_tunnels: abc\n', ["x.yaml:3: limits.max_tunnels: expected a number, got a string 'abc'"]],
    ['a boolean given as a string (YAML 1.2: yes is a string)', 'version: 1\nrevoke_on_reload: yes\n', ["x.yaml:2: revoke_on_reload: expected true or false, got a string 'yes'"]],
    ['a list given as a string', 'version: 1\nrules:\n  - action: allow\n    hosts: x.test\n', ["x.yaml:4: rules[0].hosts: expected a list, got a string 'x.test'"]],
    ['an empty value', 'version: 1\nrules:\n  - action: allow\n    ports:\n', ['x.yaml:4: rules[0].ports: expected a list, got an empty value']],
    ['an empty list', 'version: 1\nrules:\n  - action: allow\n    ports: []\n', ['x.yaml:4: rules[0].ports: expected at least one entry, got an empty list']],
    ['a number too small', 'version: 1\nlimits: { max_tunnels: 0 }\n', ['x.yaml:2: limits.max_tunnels: expected a number >= 1, got the number 0']],
    ['a number too big', 'version: 1\nlimits: { max_header_size: 100000 }\n', ['x.yaml:2: limits.max_header_size: expected a number <= 65536, got the number 100000']],
    ['a value not in the set', 'version: 1\ndefault: maybe\n', ["x.yaml:2: default: expected allow or deny, got 'maybe'"]],
    ['a required key left out: the line of its mapping', 'version: 1\nrules:\n  - hosts: [x.test]\n', ['x.yaml:3: rules[0].action: required: expected allow or deny']],
    ['a required key in a section', 'version: 1\nauth:\n  realm: x\n', ['x.yaml:2: auth.users_file: required: expected a string']],
    ['a required top-level key: no line to name', 'rules: []\n', ['x.yaml: version: expected version: 1']],
    ['a union (listen) names its forms', 'version: 1\nlisten: 5\n', ['x.yaml:2: listen: expected host:port, { address: host:port, name: NAME, … } or a list of them, got the number 5']],
    ['inside a union, the branch the value fits', 'version: 1\nlisten:\n  - 127.0.0.1:3128\n  - { address: 7, name: b }\n', ['x.yaml:4: listen[1].address: expected host:port, e.g. 127.0.0.1:3128 or [::1]:3128, got the number 7']],
    ['a duration of the wrong type', 'version: 1\ntimeouts:\n  idle: [1]\n', ['x.yaml:3: timeouts.idle: expected a duration like 500ms, 30s, 10m, 1h or a number of milliseconds, got a list']],
    ['a record key', 'version: 1\nparents:\n  "a b": { url: "http://10.0.0.1:3128" }\n', ['x.yaml:3: parents["a b"]: the name \'a b\' is not allowed: expected a name of letters, digits, _ . - (at most 64)']],
    ['a wrong type in a sequence item', 'version: 1\nrules:\n  - action: allow\n  - 7\n', ['x.yaml:4: rules[1]: expected a mapping (key: value), got the number 7']]
  ]
  for (const [name, text, expected] of cases) {
    it(name, () => assert.deepEqual(problems(text), expected))
  }

  it('no zod wording is left in any of these', () => {
    for (const [, text] of cases) {
      for (const p of problems(text)) assert.doesNotMatch(p, /Invalid input|Invalid option|Too small|Too big|received/, p)
    }
  })
})

describe('unknown keys: still errors, with a "did you mean"', () => {
  const cases: ReadonlyArray<readonly [string, string, readonly string[]]> = [
    ['a rule key', 'version: 1\nrules:\n  - action: allow\n    host: [x.test]\n', ["x.yaml:4: rules[0]: unknown key 'host' (did you mean 'hosts'?)"]],
    ['a top-level key', 'version: 1\ndefualt: allow\n', ["x.yaml:2: (top level): unknown key 'defualt' (did you mean 'default'?)"]],
    ['a nested section', 'version: 1\nauth:\n  users_file: u\n  lockout: { failure: 3 }\n', ["x.yaml:4: auth.lockout: unknown key 'failure' (did you mean 'failures'?)"]],
    ['a parent', 'version: 1\nparents:\n  corp: { url: "http://10.0.0.1:3128", password_evn: X }\n', ["x.yaml:3: parents.corp: unknown key 'password_evn' (did you mean 'password_env'?)"]],
    ['a listener object (inside a union), with the key it then lacks', 'version: 1\nlisten: [{ adress: "127.0.0.1:1" }]\n', [
      'x.yaml:2: listen[0].address: required: expected host:port, e.g. 127.0.0.1:3128 or [::1]:3128',
      "x.yaml:2: listen[0]: unknown key 'adress' (did you mean 'address'?)"
    ]],
    ['case only', 'version: 1\nrules:\n  - action: allow\n    Ports: [443]\n', ["x.yaml:4: rules[0]: unknown key 'Ports' (did you mean 'ports'?)"]],
    ['nothing close: no suggestion', 'version: 1\nbogus: 1\n', ["x.yaml:2: (top level): unknown key 'bogus'"]],
    ['two unknown keys: one line each, at their own lines', 'version: 1\nrules:\n  - action: allow\n    hots: [a.test]\n    prots: [1]\n', [
      "x.yaml:4: rules[0]: unknown key 'hots' (did you mean 'hosts'?)",
      "x.yaml:5: rules[0]: unknown key 'prots' (did you mean 'ports'?)"
    ]]
  ]
  for (const [name, text, expected] of cases) {
    it(name, () => assert.deepEqual(problems(text), expected))
  }
})

describe('YAML syntax errors: line, column, the line itself and a caret', () => {
  it('a mapping nested in a compact one (the two parser errors at one place share the snippet)', () => {
    assert.deepEqual(problems('version: 1\nrules:\n  - action: allow\n     ports: [1]\n'), [
      'x.yaml:3:13: Nested mappings are not allowed in compact mappings; Implicit keys need to be on a single line\n' +
      '      - action: allow\n' +
      '                ^'
    ])
  })

  it('an unclosed [ at the end of the file points at the end of its line, not an empty one', () => {
    assert.deepEqual(problems('version: 1\nrules: [\n'), [
      'x.yaml:2:9: Flow sequence in block collection must be sufficiently indented and end with a ]\n' +
      '    rules: [\n' +
      '            ^'
    ])
  })

  it('a duplicate key', () => {
    assert.deepEqual(problems('version: 1\nversion: 1\n'), ['x.yaml:2:1: Map keys must be unique\n    version: 1\n    ^'])
  })

  it('a long line is cut to a window around the column', () => {
    const long = `version: 1\nrules: [{ action: allow, hosts: [${Array.from({ length: 40 }, (_, i) => `h${i}.test`).join(', ')}] ]\n`
    const [p] = problems(long)
    const [head, shown, caret] = (p ?? '').split('\n')
    assert.match(head ?? '', /^x\.yaml:2:\d+: /)
    const col = Number(/^x\.yaml:2:(\d+):/.exec(head ?? '')?.[1])
    assert.ok((shown ?? '').length <= 4 + 2 + 100, shown)
    assert.match(shown ?? '', /^ {4}…/)
    // The caret sits under the character at the reported column.
    const line = long.split('\n')[1] ?? ''
    assert.equal((shown ?? '')[(caret ?? '').length - 1], line[col - 1])
  })

  it('the ConfigError message indents the snippet under its problem', () => {
    assert.throws(() => parseConfig('version: 1\nrules: [\n', 'x.yaml'), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.equal(err.message, 'x.yaml: invalid configuration\n  x.yaml:2:9: Flow sequence in block collection must be sufficiently indented and end with a ]\n      rules: [\n              ^')
      return true
    })
  })
})

describe('secrets: required to serve, a warning to validate', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'sluice-secrets-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  const parents = (spec: string): string => `version: 1\nparents:\n  corp:\n    url: https://10.0.0.1:3128\n    username: svc\n    ${spec}\n`

  it('password_env unset: an error by default; with secrets: warn, a warning at its line', () => {
    const text = parents('password_env: SLUICE_TEST_SURELY_UNSET_VAR')
    assert.deepEqual(problems(text, join(dir, 'a.yaml'), { env: {} }), [`${join(dir, 'a.yaml')}: parents.corp: password_env: environment variable SLUICE_TEST_SURELY_UNSET_VAR is not set`])
    const c = parseConfig(text, join(dir, 'a.yaml'), { env: {}, secrets: 'warn' })
    assert.deepEqual(c.warnings, [`${join(dir, 'a.yaml')}:6: parents.corp.password_env: environment variable SLUICE_TEST_SURELY_UNSET_VAR is not set (serve and check need it)`])
  })

  it('password_file and key_file unreadable: errors by default, warnings with secrets: warn', () => {
    for (const field of ['password_file', 'key_file']) {
      const text = parents(`${field}: missing.secret`)
      const file = join(dir, 'b.yaml')
      const [p] = problems(text, file)
      assert.match(p ?? '', new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: parents\\.corp: ${field}: cannot read .*missing\\.secret: ENOENT`))
      const c = parseConfig(text, file, { secrets: 'warn' })
      assert.equal(c.warnings.length, 1, field)
      assert.match(c.warnings[0] ?? '', new RegExp(`:6: parents\\.corp\\.${field}: cannot read .*missing\\.secret: ENOENT.*\\(serve and check need it\\)$`))
    }
  })

  it('a secret that is there gives no warning', async () => {
    await writeFile(join(dir, 'pw'), 'hunter2\n')
    assert.deepEqual(parseConfig(parents('password_file: pw'), join(dir, 'c.yaml'), { secrets: 'warn' }).warnings, [])
    assert.deepEqual(parseConfig(parents('password_env: PW'), join(dir, 'c.yaml'), { env: { PW: 'x' }, secrets: 'warn' }).warnings, [])
  })

  it('files that are not secrets (ca_file) stay required, even with secrets: warn', () => {
    const [p] = problems(parents('ca_file: missing-ca.pem'), join(dir, 'd.yaml'), { secrets: 'warn' })
    assert.match(p ?? '', /parents\.corp: .*missing-ca\.pem/)
  })

  it('other problems are still errors with secrets: warn', () => {
    assert.deepEqual(problems('version: 1\nparents:\n  corp: { url: "ftp://x", password_env: NOPE }\n', 'e.yaml', { env: {}, secrets: 'warn' }), ['e.yaml: parents.corp: url: scheme must be http or https, got ftp:'])
  })
})

describe('did you mean', () => {
  it('levenshtein', () => {
    assert.equal(levenshtein('', ''), 0)
    assert.equal(levenshtein('hosts', 'hosts'), 0)
    assert.equal(levenshtein('host', 'hosts'), 1)
    assert.equal(levenshtein('kitten', 'sitting'), 3)
    assert.equal(levenshtein('abc', ''), 3)
    assert.equal(levenshtein('nmae', 'name'), 1, 'a swap of neighbours is one edit')
    assert.equal(levenshtein('ca', 'abc'), 3, 'optimal string alignment, not full Damerau')
  })
  it('closest: a threshold that grows with the word, ties to the first', () => {
    assert.equal(closest('hots', ['hosts', 'ports']), 'hosts')
    assert.equal(closest('bogus', ['hosts', 'ports', 'rules']), undefined)
    assert.equal(closest('valdate', ['serve', 'check', 'validate', 'passwd']), 'validate')
    assert.equal(closest('xy', ['ab']), undefined)
    assert.equal(closest('ab', ['ac', 'ad']), 'ac')
  })
})

test('defaults fill in and the result is frozen', () => {
  const c = parseConfig('version: 1\n', 'min.yaml')
  assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 3128, name: '127.0.0.1:3128', kind: 'connect' }])
  assert.equal(c.timeouts.header, 30_000)
  assert.equal(c.timeouts.idle, 3_600_000)
  assert.equal(c.limits.max_header_size, 16_384)
  assert.equal(c.policy.defaultAllow, false)
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.timeouts) && Object.isFrozen(c.policy))
})

test('listen accepts IPv6, lists and named listeners', () => {
  const c = parseConfig('version: 1\nlisten: ["[::1]:3128", { address: "127.0.0.1:8080", name: office }]\n', 'l.yaml')
  assert.deepEqual(c.listen, [{ host: '::1', port: 3128, name: '[::1]:3128', kind: 'connect' }, { host: '127.0.0.1', port: 8080, name: 'office', kind: 'connect' }])
})

test('host patterns are normalised like targets: case, trailing dot, IDN', () => {
  const c = parseConfig('version: 1\nrules: [{ action: allow, hosts: ["Bücher.DE.", "*.Example.com"] }]\n', 'h.yaml')
  const f = { port: 443, isName: true, client: '127.0.0.1' }
  assert.equal(decideRequest(c.policy, { ...f, host: 'xn--bcher-kva.de' })?.allow, true)
  assert.equal(decideRequest(c.policy, { ...f, host: 'a.example.com' })?.allow, true)
  assert.equal(decideRequest(c.policy, { ...f, host: 'example.com' })?.allow, false)
  assert.throws(() => parseConfig('version: 1\nrules: [{ action: allow, hosts: ["a.*.com"] }]\n', 'h.yaml'), /rules\[0\]\.hosts\[0\]: expected a host name or \*\.suffix/)
})

test('durations', () => {
  assert.equal(parseDuration('500ms'), 500)
  assert.equal(parseDuration('30s'), 30_000)
  assert.equal(parseDuration('1.5m'), 90_000)
  assert.equal(parseDuration('1h'), 3_600_000)
  assert.equal(parseDuration(250), 250)
  assert.equal(parseDuration('soon'), undefined)
  assert.equal(parseDuration(-1), undefined)
})
