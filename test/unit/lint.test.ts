/**
 * config/lint.ts and config/shadow.ts: the warnings `sluice validate` gives
 * for a valid file, as named table cases. Each case is a whole file through
 * parseConfig (`lint: true`), so paths and line numbers are checked too, and
 * the "quiet" cases prove that each check stays silent where it should: a
 * warning that fires on everything would pass the loud cases alone.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { parseConfig } from '../../src/config/load.js'
import { covers, indexRule, type IndexedRule } from '../../src/config/shadow.js'
import { ruleSchema } from '../../src/policy/schema.js'

/** The warnings for `version: 1` + `yaml`, as l.yaml. */
function warnings (yaml: string, file = 'l.yaml'): readonly string[] {
  return parseConfig(`version: 1\n${yaml}`, file, { lint: true }).warnings
}

interface Case {
  readonly name: string
  readonly yaml: string
  /** Every warning, exactly, or patterns matched one to one in order. */
  readonly expect: ReadonlyArray<string | RegExp>
}

function check (c: Case, file?: string): void {
  const got = warnings(c.yaml, file)
  assert.equal(got.length, c.expect.length, `${c.name}: ${JSON.stringify(got, null, 1)}`)
  c.expect.forEach((e, i) => {
    if (typeof e === 'string') assert.equal(got[i], e, c.name)
    else assert.match(got[i] ?? '', e, c.name)
  })
}

describe('lint: duplicate rule names', () => {
  const cases: Case[] = [
    {
      name: 'two rules named https',
      yaml: 'rules:\n  - { name: https, action: allow, ports: [443] }\n  - { name: https, action: deny, hosts: [x.test] }\n',
      expect: ["l.yaml:4: rules[1].name: name 'https' is also the name of rules[0]: logs and denials cannot tell them apart"]
    },
    {
      name: 'an explicit name equal to a later unnamed rule\'s automatic name',
      yaml: 'rules:\n  - { name: rule-2, action: allow, hosts: [a.test] }\n  - { action: allow, hosts: [b.test] }\n',
      expect: ["l.yaml:4: rules[1]: its automatic name 'rule-2' is also the name of rules[0]: logs and denials cannot tell them apart"]
    },
    {
      name: 'quiet: distinct names and unnamed rules',
      yaml: 'rules:\n  - { name: a, action: allow, hosts: [a.test] }\n  - { action: allow, hosts: [b.test] }\n  - { action: allow, hosts: [c.test] }\n',
      expect: []
    }
  ]
  for (const c of cases) it(c.name, () => check(c))
})

describe('lint: shadowed rules', () => {
  const shadow = (later: string, earlier: string): RegExp =>
    new RegExp(`^l\\.yaml:\\d+: rules\\[\\d+\\]: ${later.replace(/[[\]().]/g, '\\$&')} can never match: ${earlier.replace(/[[\]().]/g, '\\$&')} comes first and matches every request it could$`)
  const two = (a: string, b: string): string => `rules:\n  - { name: a, ${a} }\n  - { name: b, ${b} }\n`
  const cases: Case[] = [
    { name: 'a catch-all shadows everything after it', yaml: two('action: deny', 'action: allow, hosts: [x.test], ports: [443]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'the same rule twice (action does not matter)', yaml: two('action: allow, ports: [443]', 'action: deny, ports: [443]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'hosts: *.suffix covers deeper wildcards and names under it', yaml: two('action: allow, hosts: ["*.example.com"]', 'action: allow, hosts: [a.example.com, "*.b.example.com", x.y.example.com]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'hosts: exact names as a superset', yaml: two('action: allow, hosts: [a.test, b.test, c.test]', 'action: allow, hosts: [c.test, a.test]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'hosts are normalised before comparing', yaml: two('action: allow, hosts: ["*.Example.COM."]', 'action: allow, hosts: [WWW.example.com]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'ports: a range covers single ports and sub-ranges', yaml: two('action: allow, ports: ["1-1024"]', 'action: allow, ports: [22, 443, "80-90"]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'ports: adjacent ranges merge', yaml: two('action: allow, ports: ["1-79", 80, "81-100"]', 'action: allow, ports: ["50-90"]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'clients: CIDR containment', yaml: two('action: allow, clients: [10.0.0.0/8]', 'action: allow, clients: [10.1.0.0/16, 10.2.3.4]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'clients: IPv4-mapped IPv6 is its IPv4', yaml: two('action: allow, clients: ["::ffff:10.0.0.0/104"]', 'action: allow, clients: [10.9.0.0/16]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'clients: IPv6', yaml: two('action: allow, clients: ["2001:db8::/32"]', 'action: allow, clients: ["2001:db8:1::/48"]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'ips: CIDR containment on direct routes', yaml: two('action: allow, ips: [10.0.0.0/8]', 'action: allow, ips: [10.20.0.0/16], hosts: [git.test]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    { name: 'listeners: a superset', yaml: 'listen: [{ address: "127.0.0.1:3128", name: a }, { address: "127.0.0.1:3129", name: b }]\n' + two('action: allow, listeners: [a, b]', 'action: allow, listeners: [b]'), expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")] },
    {
      name: 'users: a superset (with auth)',
      yaml: 'auth: { users_file: USERS }\n' + two('action: allow, users: [alice, bob, "@ops"]', 'action: allow, users: ["@ops", alice], ports: [22]'),
      expect: [shadow("rule 'b' (rules[1])", "rule 'a' (rules[0])")]
    },
    {
      name: 'only the first shadowing rule is named; unnamed rules by position',
      yaml: 'rules:\n  - { action: allow, ports: [443] }\n  - { action: allow, ports: [443] }\n  - { action: allow, ports: [443] }\n',
      expect: [shadow("rules[1] ('rule-2')", "rules[0] ('rule-1')"), shadow("rules[2] ('rule-3')", "rules[0] ('rule-1')")]
    },
    // Quiet: the earlier rule is narrower somewhere, or it cannot be told for certain.
    { name: 'quiet: a later rule first in the file', yaml: two('action: allow, hosts: [x.test]', 'action: deny'), expect: [] },
    { name: 'quiet: an exact name never covers a wildcard', yaml: two('action: allow, hosts: [example.com, a.example.com]', 'action: allow, hosts: ["*.example.com"]'), expect: [] },
    { name: 'quiet: *.example.com does not cover example.com', yaml: two('action: allow, hosts: ["*.example.com"]', 'action: allow, hosts: [example.com]'), expect: [] },
    { name: 'quiet: earlier has hosts, later matches IP literals too', yaml: two('action: allow, hosts: [x.test]', 'action: allow, ports: [443]'), expect: [] },
    { name: 'quiet: ports only partly covered', yaml: two('action: allow, ports: ["1-1024"]', 'action: allow, ports: ["1000-2000"]'), expect: [] },
    { name: 'quiet: two /25s are not recognised as covering a /24 (conservative)', yaml: two('action: allow, clients: [10.0.0.0/25, 10.0.0.128/25]', 'action: allow, clients: [10.0.0.0/24]'), expect: [] },
    { name: 'quiet: IPv4 never covers IPv6', yaml: two('action: allow, clients: [0.0.0.0/0]', 'action: allow, clients: ["2001:db8::/32"]'), expect: [] },
    { name: 'quiet: a wider CIDR later', yaml: two('action: allow, ips: [10.1.0.0/16]', 'action: allow, ips: [10.0.0.0/8]'), expect: [] },
    {
      name: 'quiet: ips on a parent route match only IP literals, so a direct rule with narrower ips is still reachable',
      yaml: 'parents: { corp: { url: "http://10.0.0.1:3128" } }\n' + two('action: allow, ips: [0.0.0.0/0], via: corp, ports: [443]', 'action: allow, ips: [93.184.216.0/24], ports: [443]'),
      expect: [/rules\[0\]\.ips: its route is parent 'corp'/]
    },
    { name: 'quiet: users without auth shadow nothing (they match nothing)', yaml: two('action: allow, users: [alice]', 'action: allow, users: [alice], ports: [22]'), expect: [/rules\[0\]\.users/, /rules\[1\]\.users/] },
    {
      name: 'quiet: a user is not looked up in @groups (conservative)',
      yaml: 'auth: { users_file: USERS, groups: { ops: [alice] } }\n' + two('action: allow, users: ["@ops"]', 'action: allow, users: [alice]'),
      expect: []
    },
    { name: 'quiet: later rule without listeners', yaml: 'listen: [{ address: "127.0.0.1:3128", name: a }]\n' + two('action: allow, listeners: [a]', 'action: allow'), expect: [] }
  ]
  let dir: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sluice-lint-'))
    // The hash of test/fixtures/auth/good.htpasswd; nothing is verified here.
    const hash = '$2y$05$rsw5ybReloe2FrJgdF8rvutKDKPhW3otbNeE4UiYpR.uceuDYMIAK'
    await writeFile(join(dir, 'users'), `alice:${hash}\nbob:${hash}\n`)
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })
  for (const c of cases) {
    it(c.name, () => check({ ...c, yaml: c.yaml.replace('USERS', join(dir, 'users')) }))
  }
})

describe('lint: users without auth', () => {
  const cases: Case[] = [
    {
      name: 'a users rule and no auth section',
      yaml: 'rules:\n  - name: eng\n    action: allow\n    users: ["@engineering"]\n',
      expect: ["l.yaml:5: rules[0].users: there is no auth section, so no request has a user: rule 'eng' (rules[0]) never matches"]
    },
    {
      name: 'limits.max_bytes_per_user and no auth section (issue 15)',
      yaml: 'limits:\n  max_bytes_per_user: { bytes: 1GiB, period: 1d }\n',
      expect: ['l.yaml:3: limits.max_bytes_per_user: there is no auth section, so no request has a user: this limit never applies']
    },
    { name: 'quiet: no users', yaml: 'rules:\n  - { action: allow, ports: [443] }\n', expect: [] }
  ]
  for (const c of cases) it(c.name, () => check(c))
})

describe('lint: open proxy (a listener beyond loopback, no auth)', () => {
  const open = (listener: string, path: string, reason: string, to = ''): string =>
    `l.yaml:2: ${path}: listener '${listener}' is reachable beyond loopback with no auth section, and ${reason}: anyone who can reach the listener can use the proxy${to} (an open proxy); add an auth section, or clients: to the allowing rules`
  const cases: Case[] = [
    { name: '0.0.0.0 and an allow rule with no clients', yaml: 'listen: 0.0.0.0:3128\nrules: [{ name: https, action: allow, ports: [443] }]\n', expect: [open('0.0.0.0:3128', 'listen', "rule 'https' (rules[0]) allows any client (it has no clients:)")] },
    { name: 'a private address, and the rule lists hosts', yaml: 'listen: 10.0.0.5:3128\nrules: [{ name: saas, action: allow, hosts: [slack.com] }]\n', expect: [open('10.0.0.5:3128', 'listen', "rule 'saas' (rules[0]) allows any client (it has no clients:)", ' to the hosts that rule lists')] },
    { name: 'default: allow with no rules at all', yaml: 'listen: "[::]:3128"\ndefault: allow\n', expect: [open('[::]:3128', 'listen', 'default: allow lets through what no rule denies')] },
    { name: 'mode: report lets every deny through', yaml: 'listen: 0.0.0.0:3128\nmode: report\nrules: [{ action: deny, ports: [25] }]\n', expect: [open('0.0.0.0:3128', 'listen', 'mode: report lets every deny through')] },
    { name: 'a report-mode deny rule lets through too', yaml: 'listen: 0.0.0.0:3128\nrules: [{ name: watch, action: deny, mode: report, hosts: [x.test] }]\n', expect: [open('0.0.0.0:3128', 'listen', "rule 'watch' (rules[0]) lets through (report mode) any client (it has no clients:)", ' to the hosts that rule lists')] },
    { name: 'clients: [0.0.0.0/0] restricts nothing', yaml: 'listen: 0.0.0.0:3128\nrules: [{ name: all, action: allow, clients: [0.0.0.0/0], ports: [443] }]\n', expect: [open('0.0.0.0:3128', 'listen', "rule 'all' (rules[0]) allows any client (it has no clients:)")] },
    {
      name: 'only the listener the open rule applies to, at its index',
      yaml: 'listen: [{ address: "127.0.0.1:3128", name: local }, { address: "0.0.0.0:3129", name: lan }]\nrules: [{ name: https, action: allow, ports: [443] }]\n',
      expect: [open('lan', 'listen[1]', "rule 'https' (rules[0]) allows any client (it has no clients:)")]
    },
    { name: 'quiet: loopback listeners (IPv4, IPv6, mapped, localhost)', yaml: 'listen: ["127.0.0.2:3128", "[::1]:3129", "[::ffff:127.0.0.1]:3130", "localhost:3131"]\ndefault: allow\n', expect: [] },
    { name: 'quiet: every allowing rule is clients-restricted', yaml: 'listen: 0.0.0.0:3128\nrules:\n  - { action: allow, clients: [10.0.0.0/8], ports: [443] }\n  - { action: deny, ports: [25] }\n', expect: [] },
    { name: 'quiet: the open rule is for another listener', yaml: 'listen: [{ address: "127.0.0.1:3128", name: local }, { address: "0.0.0.0:3129", name: lan }]\nrules: [{ action: allow, listeners: [local], ports: [443] }]\n', expect: [] },
    { name: 'quiet: default deny and no rules', yaml: 'listen: 0.0.0.0:3128\n', expect: [] }
  ]
  for (const c of cases) it(c.name, () => check(c))

  it('quiet: with an auth section', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'sluice-lint-'))
    t.after(async () => { await rm(dir, { recursive: true, force: true }) })
    await writeFile(join(dir, 'users'), '')
    check({ name: 'auth', yaml: `listen: 0.0.0.0:3128\nauth: { users_file: ${join(dir, 'users')} }\ndefault: allow\n`, expect: [] })
  })
})

describe('lint: ips on a rule routed to a parent', () => {
  const PARENTS = 'parents:\n  corp: { url: "http://10.0.0.1:3128" }\nroutes:\n  out: [corp, direct]\n'
  const cases: Case[] = [
    { name: 'via a parent', yaml: `${PARENTS}rules: [{ action: allow, ips: [10.0.0.0/8], via: corp }]\n`, expect: ["l.yaml:6: rules[0].ips: its route is parent 'corp', which is sent names unresolved: these ips can only match targets given as IP addresses"] },
    { name: 'via a route that starts with a parent', yaml: `${PARENTS}rules: [{ action: allow, ips: [10.0.0.0/8], via: out }]\n`, expect: ["l.yaml:6: rules[0].ips: its route 'out' starts with parent 'corp', which is sent names unresolved: these ips can only match targets given as IP addresses"] },
    { name: 'the default route', yaml: `${PARENTS}default_route: out\nrules: [{ action: allow, ips: [10.0.0.0/8] }]\n`, expect: ["l.yaml:7: rules[0].ips: the default route 'out' starts with parent 'corp', which is sent names unresolved: these ips can only match targets given as IP addresses"] },
    { name: 'quiet: via direct', yaml: `${PARENTS}default_route: out\nrules: [{ action: allow, ips: [10.0.0.0/8], via: direct }]\n`, expect: [] },
    { name: 'quiet: a parent route without ips', yaml: `${PARENTS}rules: [{ action: allow, hosts: [x.test], via: corp }]\n`, expect: [] }
  ]
  for (const c of cases) it(c.name, () => check(c))
})

describe('lint: warnings come in file order', () => {
  it('several checks, sorted by line', () => {
    const got = warnings('listen: 0.0.0.0:3128\nrules:\n  - { name: a, action: allow, ports: [443] }\n  - { name: a, action: allow, users: [x] }\n')
    assert.deepEqual(got.map(w => /^l\.yaml:(\d+): (\S+)/.exec(w)?.slice(1).join(' ')), ['2 listen:', '5 rules[1].name:', '5 rules[1].users:'])
  })

  it('a plain load (no lint option) computes none', () => {
    assert.deepEqual(parseConfig('version: 1\nlisten: 0.0.0.0:3128\ndefault: allow\n', 'p.yaml').warnings, [])
  })
})

describe('shadow.covers directly', () => {
  const rule = (spec: Record<string, unknown>, viaParent = false): IndexedRule => {
    const r = indexRule({ spec: ruleSchema.parse({ action: 'allow', ...spec }), viaParent })
    assert.ok(r !== undefined)
    return r
  }
  it('is reflexive and follows each matcher', () => {
    const r = rule({ hosts: ['a.test'], ports: [443], clients: ['10.0.0.0/8'], listeners: ['x'] })
    assert.equal(covers(r, r), true)
    assert.equal(covers(rule({}), r), true)
    assert.equal(covers(r, rule({})), false)
  })
  it('ips: an earlier parent-routed rule covers a later parent-routed one, not a direct one', () => {
    const earlier = rule({ ips: ['10.0.0.0/8'] }, true)
    assert.equal(covers(earlier, rule({ ips: ['10.1.0.0/16'] }, true)), true)
    assert.equal(covers(earlier, rule({ ips: ['10.1.0.0/16'] }, false)), false)
    assert.equal(covers(rule({ ips: ['10.0.0.0/8'] }, false), rule({ ips: ['10.1.0.0/16'] }, true)), true)
  })
})
