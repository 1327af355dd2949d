/**
 * The policy from the command line, against the built binary (node dist/cli.js):
 * `sluice validate` (exit 0 all valid, else 2 with every problem and its path),
 * `sluice check` (exit 0 allowed, 1 denied or DNS failure, 2 bad input; names
 * resolved only by a stub DNS server named in a temp config), and hot reload
 * of a running `sluice serve` on SIGHUP and on a file change.
 *
 * Runs against dist/, so `npm run test:cli` builds first.
 */
import assert from 'node:assert/strict'
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { assertBuilt, killCliChildren, ROOT, runCli, serveCli, type Finished, type Served } from '../helpers/cli.js'
import { startDnsStubRetrying, type DnsStub } from '../helpers/dns-stub.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, rawConnect, readAll } from '../helpers/raw.js'
import { makeCert } from '../helpers/tls.js'

const FIX = 'test/fixtures/policy'

/** Run the CLI to completion (bounded, stdin closed at once) and collect its output. */
async function run (args: readonly string[]): Promise<Finished> {
  return await runCli(args, { stdin: '' })
}

let dir: string
let stub: DnsStub

before(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'sluice-policy-cli-'))
  stub = await startDnsStubRetrying({
    'loopback.test': { A: ['127.0.0.1'], AAAA: ['::1'] },
    'public.test': { A: ['93.184.216.34'] },
    'mixed.test': { A: ['10.1.2.3', '93.184.216.34'] },
    'a.tracker.example': { A: ['93.184.216.34'] }
  })
})

after(async () => {
  killCliChildren()
  await stub.close()
  await rm(dir, { recursive: true, force: true })
})

// ---------------------------------------------------------------- validate

describe('sluice validate', () => {
  it('valid files: exit 0, one "ok" line per file, after its warnings', async () => {
    const r = await run(['validate', `${FIX}/web.yaml`, `${FIX}/features.yaml`])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.equal(r.stderr, '')
    const lines = r.stdout.trimEnd().split('\n')
    assert.equal(lines.length, 3, r.stdout)
    assert.match(lines[0] ?? '', /^test\/fixtures\/policy\/web\.yaml: ok \(2 rules, default deny, hash [0-9a-f]{16}\)$/)
    // features.yaml feeds `check --user`, but has no auth section: a running proxy never has a user.
    assert.equal(lines[1], "warning: test/fixtures/policy/features.yaml:16: rules[1].users: there is no auth section, so no request has a user: rule 'ssh-for-alice' (rules[1]) never matches")
    assert.match(lines[2] ?? '', /^test\/fixtures\/policy\/features\.yaml: ok \(5 rules, default deny, hash [0-9a-f]{16}, 1 warning\)$/)
  })

  it('a file-level report policy says so', async () => {
    const file = join(dir, 'report.yaml')
    await writeFile(file, 'version: 1\nmode: report\nrules: [{ action: deny, ports: [23] }]\n')
    const r = await run(['validate', file])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /: ok \(1 rule, default deny, report mode, hash [0-9a-f]{16}\)\n$/)
  })

  const BROKEN = [
    "3: mode: expected enforce or report, got 'audit'",
    "4: revoke_on_reload: expected true or false, got a string 'sometimes'",
    '8: rules[0].ports[1]: expected a port 1-65535 or a range like 8000-8080',
    "10: rules[1].action: expected allow or deny, got 'permit'",
    "11: rules[1].hosts[0]: expected a host name or *.suffix, got '*.*.example' (wildcards only as a leading '*.'; IP addresses go under ips)",
    '15: rules[2].clients[0]: expected an IP address or CIDR like 10.0.0.0/8 or 2001:db8::/32',
    '13: rules[2].users[0]: expected a user name or @group',
    '14: rules[2].listeners: expected at least one entry, got an empty list',
    "16: rules[2]: unknown key 'host' (did you mean 'hosts'?)"
  ].map(p => `${FIX}/broken.yaml:${p}`)
  const VIA = /^test\/fixtures\/policy\/broken\.yaml: rules\[0\]\.via: .*('direct'|'corp')/

  /** Every problem line of broken.yaml, in any order; the via one by pattern (its wording may change with parent routes). */
  function assertBroken (lines: readonly string[]): void {
    const via = lines.filter(l => VIA.test(l))
    assert.equal(via.length, 1, JSON.stringify(lines))
    assert.deepEqual(lines.filter(l => !VIA.test(l)).sort(), [...BROKEN].sort())
  }

  it('a broken file: exit 2, every problem on its own line with file and path', async () => {
    const r = await run(['validate', `${FIX}/broken.yaml`])
    assert.equal(r.code, 2, r.stdout + r.stderr)
    assertBroken(r.stdout.trimEnd().split('\n'))
  })

  it('several files, one broken: exit 2; the good ones are still reported ok', async () => {
    const r = await run(['validate', `${FIX}/web.yaml`, `${FIX}/broken.yaml`, `${FIX}/loopback.yaml`])
    assert.equal(r.code, 2, r.stdout + r.stderr)
    const lines = r.stdout.trimEnd().split('\n')
    assert.match(lines[0] ?? '', /^test\/fixtures\/policy\/web\.yaml: ok /)
    assert.match(lines.at(-1) ?? '', /^test\/fixtures\/policy\/loopback\.yaml: ok /)
    assertBroken(lines.slice(1, -1))
  })

  it('a missing file: exit 2 naming it', async () => {
    const r = await run(['validate', `${FIX}/web.yaml`, `${FIX}/does-not-exist.yaml`])
    assert.equal(r.code, 2)
    assert.match(r.stdout, /^test\/fixtures\/policy\/does-not-exist\.yaml: cannot read: ENOENT/m)
  })
})

// ---------------------------------------------------------------- check

describe('sluice check', () => {
  /** A copy of web.yaml whose names are resolved by the stub. */
  let stubbed: string
  before(async () => {
    stubbed = join(dir, 'web-stub-dns.yaml')
    const web = await readFile(join(ROOT, FIX, 'web.yaml'), 'utf8')
    await writeFile(stubbed, `${web}\ndns:\n  servers: ["${stub.address}"]\n`)
  })

  it('a public IP literal on 443 with the default policy: exit 0, verdict allow', async () => {
    const r = await run(['check', '93.184.216.34:443'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.equal(r.stdout, [
      'target:   93.184.216.34:443',
      'verdict:  allow',
      'rule:     https (stage: address, after DNS)',
      'reason:   allowed by rule',
      'route:    direct to the target',
      'addresses:',
      '  93.184.216.34  allow  https: allowed by rule',
      ''
    ].join('\n'))
  })

  it('a denied port: exit 1, denied at the request stage, nothing resolved', async () => {
    const r = await run(['check', '--config', `${FIX}/web.yaml`, '93.184.216.34:8080'])
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.match(r.stdout, /^verdict: {2}deny$/m)
    assert.match(r.stdout, /^rule: {5}default \(stage: request, before DNS\)$/m)
    assert.match(r.stdout, /^addresses: not resolved \(denied before DNS\)$/m)
  })

  it('a denied name: the deny rule is named and the name is never looked up', async () => {
    const r = await run(['check', '--config', stubbed, 'X.Ads.Example.:443'])
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.match(r.stdout, /^target: {3}x\.ads\.example:443$/m)
    assert.match(r.stdout, /^rule: {5}no-ads \(stage: request, before DNS\)$/m)
    assert.equal(stub.queries.some(q => q.name === 'x.ads.example'), false)
  })

  it('a name resolving to loopback: exit 1, each address refused by the special-purpose guard', async () => {
    const r = await run(['check', '--config', stubbed, 'loopback.test:443'])
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.match(r.stdout, /^verdict: {2}deny$/m)
    assert.match(r.stdout, /^rule: {5}special-purpose-guard \(stage: address, after DNS\)$/m)
    assert.match(r.stdout, /^ {2}127\.0\.0\.1 {2}deny {3}special-purpose-guard: 127\.0\.0\.1 is special-purpose \(loopback 127\.0\.0\.0\/8\)/m)
    assert.match(r.stdout, /^ {2}::1 {8}deny {3}special-purpose-guard: ::1 is special-purpose \(loopback/m)
    assert.ok(stub.queries.some(q => q.name === 'loopback.test'), 'the stub was asked')
  })

  it('a name resolving to a private and a public address: allowed, and the private one listed as refused', async () => {
    const r = await run(['check', '--config', stubbed, 'mixed.test:443'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /^verdict: {2}allow$/m)
    assert.match(r.stdout, /^ {2}10\.1\.2\.3 {7}deny {3}special-purpose-guard: /m)
    assert.match(r.stdout, /^ {2}93\.184\.216\.34 {2}allow {2}https: allowed by rule$/m)
  })

  it('a name that does not exist: exit 1 with the DNS error', async () => {
    const r = await run(['check', '--config', stubbed, 'nope.test:443'])
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.match(r.stdout, /^error: {4}ERR_DNS_NXDOMAIN: name does not exist: nope\.test$/m)
  })

  it('--json prints one parseable object with every address', async () => {
    const r = await run(['check', '--config', stubbed, '--json', 'loopback.test:443'])
    assert.equal(r.code, 1, r.stdout + r.stderr)
    assert.equal(r.stdout.trimEnd().split('\n').length, 1)
    const j = JSON.parse(r.stdout) as Record<string, unknown>
    assert.equal(j['target'], 'loopback.test:443')
    assert.equal(j['allowed'], false)
    assert.equal(j['rule'], 'special-purpose-guard')
    assert.equal(j['stage'], 'address')
    assert.equal(j['wouldDeny'], false)
    const addrs = j['addresses'] as Array<Record<string, unknown>>
    assert.deepEqual(addrs.map(a => [a['address'], a['allowed'], a['rule']]).sort(), [
      ['127.0.0.1', false, 'special-purpose-guard'],
      ['::1', false, 'special-purpose-guard']
    ])
  })

  it('--json for an allowed IP literal', async () => {
    const r = await run(['check', '--json', '--config', `${FIX}/web.yaml`, '[::ffff:93.184.216.34]:443'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const j = JSON.parse(r.stdout) as Record<string, unknown>
    assert.deepEqual({ target: j['target'], allowed: j['allowed'], rule: j['rule'] }, { target: '[::ffff:5db8:d822]:443', allowed: true, rule: 'https' })
  })

  it('--user, --listener and --client feed the users, listeners and clients matchers', async () => {
    const cfg = `${FIX}/features.yaml`
    const cases: ReadonlyArray<readonly [string[], number, string]> = [
      [['--user', 'bob', '93.184.216.34:22'], 1, 'default'],
      [['--user', 'alice', '93.184.216.34:22'], 0, 'ssh-for-alice'],
      [['--listener', 'internal', '93.184.216.34:8080'], 0, 'internal-alt-http'],
      [['--client', '::ffff:192.0.2.9', '93.184.216.34:9000'], 0, 'ci-clients'],
      [['--client', '198.51.100.1', '93.184.216.34:9000'], 1, 'default']
    ]
    for (const [args, code, rule] of cases) {
      const r = await run(['check', '--config', cfg, '--json', ...args])
      assert.equal(r.code, code, `${args.join(' ')}: ${r.stdout}${r.stderr}`)
      assert.equal((JSON.parse(r.stdout) as { rule: string }).rule, rule, args.join(' '))
    }
  })

  it('report mode: allowed (exit 0) and says enforce would deny', async () => {
    // A reported deny goes on to DNS like an allow: names come from the stub.
    const features = join(dir, 'features-stub-dns.yaml')
    await writeFile(features, `${await readFile(join(ROOT, FIX, 'features.yaml'), 'utf8')}\ndns:\n  servers: ["${stub.address}"]\n`)
    const r = await run(['check', '--config', features, 'a.tracker.example:443'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /^verdict: {2}allow \(report mode: enforce would deny\)$/m)
    assert.match(r.stdout, /^rule: {5}watch-trackers \(stage: address, after DNS\)$/m)
    assert.match(r.stdout, /^ {2}93\.184\.216\.34 {2}allow {2}watch-trackers: denied by rule \(report mode: not enforced\)$/m)
  })

  it('--listener of a tcp listener: its own target, its own route; another target or an unknown listener: exit 2', async () => {
    const cfg = join(dir, 'tcp-forward.yaml')
    await writeFile(cfg, `version: 1
listen:
  - 127.0.0.1:3128
  - { address: "127.0.0.1:15432", name: db, kind: tcp, target: "10.1.2.3:5432" }
rules:
  - name: db-forward
    action: allow
    listeners: [db]
    ips: [10.0.0.0/8]
`)
    const r = await run(['check', '--config', cfg, '--json', '--listener', 'db'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const j = JSON.parse(r.stdout) as { target: string, listener: string, rule: string, allowed: boolean }
    assert.deepEqual([j.target, j.listener, j.rule, j.allowed], ['10.1.2.3:5432', 'db', 'db-forward', true])
    // The same target on the connect listener: no rule for it there, and the guard refuses the private address.
    const other = await run(['check', '--config', cfg, '--json', '10.1.2.3:5432'])
    assert.equal(other.code, 1, other.stdout + other.stderr)
    const elsewhere = await run(['check', '--config', cfg, '--listener', 'db', '10.9.9.9:5432'])
    assert.equal(elsewhere.code, 2)
    assert.match(elsewhere.stderr, /listener db is a tcp forward to 10\.1\.2\.3:5432/)
    const unknown = await run(['check', '--config', cfg, '--listener', 'nope', '10.1.2.3:5432'])
    assert.equal(unknown.code, 2)
    assert.match(unknown.stderr, /no listener is named 'nope' \(listeners: 127\.0\.0\.1:3128, db\)/)
  })

  it('a tcp listener\'s via decides whether its name is resolved here: via direct under a parent default_route, an ips rule matches', async () => {
    const cfg = join(dir, 'tcp-via.yaml')
    await writeFile(cfg, `version: 1
dns: { servers: ["${stub.address}"] }
parents: { corp: { url: "http://127.0.0.1:9" } }
default_route: corp
listen:
  - 127.0.0.1:3128
  - { address: "127.0.0.1:15433", name: db, kind: tcp, target: "loopback.test:5432", via: direct }
rules:
  - { name: db-forward, action: allow, listeners: [db], ports: [5432], ips: [127.0.0.0/8] }
`)
    const r = await run(['check', '--config', cfg, '--json', '--listener', 'db'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const j = JSON.parse(r.stdout) as { rule: string, route: string }
    assert.equal(j.rule, 'db-forward')
  })

  it('--listener of an sni listener: the name on its target_port, or the map\'s target (issue 14)', async () => {
    const cfg = join(dir, 'sni.yaml')
    await writeFile(cfg, `version: 1
dns: { servers: ["${stub.address}"] }
listen:
  - 127.0.0.1:3128
  - { address: "127.0.0.1:15443", name: s, kind: sni, target_port: 8443, map: { "*.mapped.example": "10.2.3.4:9443" } }
rules:
  - { name: sni-loopback, action: allow, listeners: [s], hosts: [loopback.test], ips: [127.0.0.0/8] }
  - { name: sni-mapped, action: allow, listeners: [s], ips: [10.2.3.4/32] }
`)
    const r = await run(['check', '--config', cfg, '--json', '--listener', 's', 'loopback.test'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    const j = JSON.parse(r.stdout) as { target: string, rule: string }
    assert.deepEqual([j.target, j.rule], ['loopback.test:8443', 'sni-loopback'])
    const m = await run(['check', '--config', cfg, '--json', '--listener', 's', 'db.mapped.example'])
    assert.equal(m.code, 0, m.stdout + m.stderr)
    const k = JSON.parse(m.stdout) as { target: string, rule: string }
    assert.deepEqual([k.target, k.rule], ['10.2.3.4:9443', 'sni-mapped'])
  })

  it('--listener of a terminate listener: the certificate it would show and how it verifies the upstream; a name without a certificate is refused (issue 14)', async () => {
    const cert = await makeCert({ names: ['*.corp.example'] })
    await writeFile(join(dir, 'term.pem'), cert.cert)
    await writeFile(join(dir, 'term.key'), cert.key)
    await writeFile(join(dir, 'corp-ca.pem'), cert.ca)
    const cfg = join(dir, 'term.yaml')
    await writeFile(cfg, `version: 1
listen:
  - 127.0.0.1:3128
  - { address: "127.0.0.1:15444", name: t, kind: terminate, tls: { cert_file: term.pem, key_file: term.key }, upstream_tls: { ca_file: corp-ca.pem }, map: { "*.corp.example": "10.2.3.4:9443" } }
rules:
  - { name: corp, action: allow, listeners: [t], ips: [10.2.3.4/32] }
`)
    const r = await run(['check', '--config', cfg, '--listener', 't', 'wiki.corp.example'])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /^target: {3}10\.2\.3\.4:9443$/m)
    assert.match(r.stdout, /^shows: {4}CN=\*\.corp\.example \(\*\.corp\.example; expires /m)
    assert.match(r.stdout, /^upstream: TLS verified against corp-ca\.pem as wiki\.corp\.example, TLSv1\.2 or later$/m)
    const none = await run(['check', '--config', cfg, '--json', '--listener', 't', 'elsewhere.example'])
    assert.equal(none.code, 1, none.stdout + none.stderr)
    const j = JSON.parse(none.stdout) as { allowed: boolean, code: string }
    assert.deepEqual([j.allowed, j.code], [false, 'ERR_SNI_NO_CERTIFICATE'])
  })

  for (const target of ['example.com', 'a@b:443', '[fe80::1%25eth0]:443']) {
    it(`a bad target (${target}): exit 2 with ERR_BAD_TARGET on stderr`, async () => {
      const r = await run(['check', '--config', `${FIX}/web.yaml`, target])
      assert.equal(r.code, 2, r.stdout + r.stderr)
      assert.equal(r.stdout, '')
      assert.match(r.stderr, /^sluice: ERR_BAD_TARGET: /)
    })
  }

  it('bad input: --client not an IP, two targets, an invalid config: exit 2', async () => {
    const notIp = await run(['check', '--client', 'localhost', '93.184.216.34:443'])
    assert.equal(notIp.code, 2)
    assert.match(notIp.stderr, /^sluice: --client must be an IP address, got 'localhost'/)
    const two = await run(['check', 'a.example:443', 'b.example:443'])
    assert.equal(two.code, 2)
    assert.match(two.stderr, /^sluice: check needs exactly one HOST:PORT/)
    const broken = await run(['check', '--config', `${FIX}/broken.yaml`, '93.184.216.34:443'])
    assert.equal(broken.code, 2)
    assert.match(broken.stderr, /^sluice: test\/fixtures\/policy\/broken\.yaml: invalid configuration\n/)
    assert.match(broken.stderr, /rules\[0\]\.via: /)
  })
})

// ---------------------------------------------------------------- serve + reload

/** `sluice serve --config CONFIG` on 127.0.0.1, port 0. */
async function serve (config: string): Promise<Served> {
  return await serveCli(['serve', '--config', config, '--listen', '127.0.0.1:0'])
}

/** CONNECT through the served proxy; returns the status line (the connection is closed after). */
async function connectStatus (port: number, authority: string, sockets: Set<Socket>): Promise<string> {
  const socket = await rawConnect(port)
  sockets.add(socket)
  const res = await connectVia(port, authority, { socket })
  if (res.status !== 200) {
    socket.end()
    await readAll(socket)
  }
  socket.destroy()
  return `${res.statusLine} ${res.headers['proxy-status'] ?? ''}`.trim()
}

describe('sluice serve: reload', () => {
  let echo: Awaited<ReturnType<typeof startEchoServer>>
  const sockets = new Set<Socket>()
  before(async () => { echo = await startEchoServer() })
  after(async () => {
    for (const s of sockets) s.destroy()
    killCliChildren()
    await echo.close()
  })

  const allowed = (): string => 'HTTP/1.1 200 Connection Established'
  const deniedByMaintenance = (): string =>
    `HTTP/1.1 403 Forbidden sluice; error=http_request_denied; details="ERR_POLICY_DENIED: denied by policy: 127.0.0.1:${echo.port} (rule closed-for-maintenance: denied by rule)"`

  it('SIGHUP: a broken rewrite is rejected (old policy serves), a deny rewrite is applied', async () => {
    // The served path is a symlink in a watched directory to a file elsewhere:
    // rewriting the target is invisible to the watcher, so only SIGHUP reloads.
    const real = join(dir, 'sighup-real')
    const watched = join(dir, 'sighup-watched')
    await mkdir(real)
    await mkdir(watched)
    const target = join(real, 'sluice.yaml')
    const served = join(watched, 'sluice.yaml')
    await copyFile(join(ROOT, FIX, 'loopback.yaml'), target)
    await symlink(target, served)
    const s = await serve(served)
    assert.equal(await connectStatus(s.port, `127.0.0.1:${echo.port}`, sockets), allowed())

    // Broken: rejected with every problem and its path; the old policy keeps serving.
    await copyFile(join(ROOT, FIX, 'broken.yaml'), target)
    s.child.kill('SIGHUP')
    const rejected = await s.waitForLog(l => l.msg === 'reload rejected: keeping the running configuration')
    assert.equal(rejected['level'], 'error')
    assert.equal(rejected['why'], 'SIGHUP')
    assert.equal(rejected['config'], served)
    const problems = rejected['problems'] as string[]
    assert.equal(problems.length, 10, JSON.stringify(problems))
    assert.ok(problems.some(p => p.startsWith(`${served}: rules[0].via: `)), JSON.stringify(problems))
    assert.ok(problems.includes(`${served}:16: rules[2]: unknown key 'host' (did you mean 'hosts'?)`), JSON.stringify(problems))
    assert.equal(await connectStatus(s.port, `127.0.0.1:${echo.port}`, sockets), allowed())
    assert.equal(s.logs.some(l => l.msg === 'configuration reloaded'), false)

    // Deny: applied on SIGHUP; new CONNECTs are refused by the new rule.
    await copyFile(join(ROOT, FIX, 'deny-loopback.yaml'), target)
    s.child.kill('SIGHUP')
    const reloaded = await s.waitForLog(l => l.msg === 'configuration reloaded')
    assert.equal(reloaded['config'], served)
    assert.match(String(reloaded['hash']), /^[0-9a-f]{16}$/)
    assert.notEqual(reloaded['hash'], reloaded['previous_hash'])
    assert.equal(await connectStatus(s.port, `127.0.0.1:${echo.port}`, sockets), deniedByMaintenance())

    s.child.kill('SIGTERM')
    const { code } = await s.exited()
    assert.equal(code, 0)
  })

  it('a file change (replaced by rename) is reloaded without a signal', async () => {
    const sub = join(dir, 'watch')
    await mkdir(sub)
    const file = join(sub, 'sluice.yaml')
    await copyFile(join(ROOT, FIX, 'loopback.yaml'), file)
    const s = await serve(file)
    assert.equal(await connectStatus(s.port, `127.0.0.1:${echo.port}`, sockets), allowed())

    await copyFile(join(ROOT, FIX, 'deny-loopback.yaml'), `${file}.new`)
    await rename(`${file}.new`, file)
    const reloaded = await s.waitForLog(l => l.msg === 'configuration reloaded')
    assert.equal(reloaded['config'], file)
    assert.equal(await connectStatus(s.port, `127.0.0.1:${echo.port}`, sockets), deniedByMaintenance())
    assert.equal(s.logs.some(l => l.msg === 'configuration changed in place: waiting for it to settle'), false, 'a rename is applied at once')

    s.child.kill('SIGTERM')
    const { code } = await s.exited()
    assert.equal(code, 0)
  })

  it('a file changed in place is applied once it has been still for the running config\'s reload_settle (issue 11)', async () => {
    const sub = join(dir, 'in-place')
    await mkdir(sub)
    const file = join(sub, 'sluice.yaml')
    const settle = 1000
    await writeFile(file, `${await readFile(join(ROOT, FIX, 'loopback.yaml'), 'utf8')}reload_settle: ${settle}ms\n`)
    const s = await serve(file)
    assert.equal(await connectStatus(s.port, `127.0.0.1:${echo.port}`, sockets), allowed())

    const written = Date.now()
    await copyFile(join(ROOT, FIX, 'deny-loopback.yaml'), file) // in place: same inode, new content
    const waiting = await s.waitForLog(l => l.msg === 'configuration changed in place: waiting for it to settle' || l.msg === 'configuration reloaded')
    assert.equal(waiting.msg, 'configuration changed in place: waiting for it to settle')
    assert.equal(waiting['settle_ms'], settle, 'the running file\'s reload_settle')
    assert.equal(waiting['level'], 'info')
    assert.equal(await connectStatus(s.port, `127.0.0.1:${echo.port}`, sockets), allowed(), 'not applied before it settled')
    await s.waitForLog(l => l.msg === 'configuration reloaded')
    assert.ok(Date.now() - written >= settle, 'applied after reload_settle')
    assert.equal(await connectStatus(s.port, `127.0.0.1:${echo.port}`, sockets), deniedByMaintenance())

    s.child.kill('SIGTERM')
    const { code } = await s.exited()
    assert.equal(code, 0)
  })
})
