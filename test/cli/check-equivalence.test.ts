/**
 * `sluice check --json` and a real CONNECT must give the same answer (issue
 * 10): the same verdict, rule, stage and status, over a table of configs ×
 * targets. Both run the one evaluation (src/policy/evaluate.ts); this test
 * is what keeps a second copy from growing back.
 *
 * The CONNECT is real (raw socket to an in-process Sluice on 127.0.0.1:0);
 * only its dial is carried to a local echo server, after the policy-checked
 * addresses were asked for, so "public" targets never leave the machine.
 * Names come from a stub DNS server on loopback.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import bcrypt from 'bcryptjs'
import type { dialRoute } from '../../src/upstream/route.js'
import { assertBuilt, killCliChildren, runCli } from '../helpers/cli.js'
import { startDnsStubRetrying, type DnsStub } from '../helpers/dns-stub.js'
import { startEchoServer } from '../helpers/origin.js'
import { parseProxyStatus } from '../helpers/proxy-status.js'
import { connectVia } from '../helpers/raw.js'
import { startSluice, type Sluice } from '../helpers/sluice.js'

interface Case {
  readonly target: string
  /** `--user` for check; the same user's Basic credentials on the CONNECT. */
  readonly user?: string
  readonly expect: { readonly status: number, readonly rule: string, readonly code?: string }
}

interface Table {
  readonly name: string
  readonly yaml: (ctx: { dns: string, users: string }) => string
  readonly cases: readonly Case[]
}

const PASSWORD = 'correct horse'

const TABLES: readonly Table[] = [
  {
    name: 'names, ports and the special-purpose guard',
    yaml: ({ dns }) => `
dns: { servers: ["${dns}"] }
rules:
  - { name: no-ads, action: deny, hosts: ["*.ads.test"] }
  - { name: https, action: allow, ports: [443] }
`,
    cases: [
      { target: 'public.test:443', expect: { status: 200, rule: 'https' } },
      { target: 'x.ads.test:443', expect: { status: 403, rule: 'no-ads', code: 'ERR_POLICY_DENIED' } },
      { target: 'public.test:80', expect: { status: 403, rule: 'default', code: 'ERR_POLICY_DENIED' } },
      { target: 'loopback.test:443', expect: { status: 403, rule: 'special-purpose-guard', code: 'ERR_DESTINATION_PROHIBITED' } },
      { target: 'mixed.test:443', expect: { status: 200, rule: 'https' } },
      { target: '93.184.216.34:443', expect: { status: 200, rule: 'https' } },
      { target: '10.0.0.1:443', expect: { status: 403, rule: 'special-purpose-guard', code: 'ERR_DESTINATION_PROHIBITED' } },
      { target: '[::ffff:10.0.0.1]:443', expect: { status: 403, rule: 'special-purpose-guard', code: 'ERR_DESTINATION_PROHIBITED' } },
      { target: '[::10.0.0.1]:443', expect: { status: 403, rule: 'special-purpose-guard', code: 'ERR_DESTINATION_PROHIBITED' } },
      { target: '169.254.169.254:443', expect: { status: 403, rule: 'special-purpose-guard', code: 'ERR_DESTINATION_PROHIBITED' } },
      { target: 'nope.test:443', expect: { status: 502, rule: 'https', code: 'ERR_DNS_NXDOMAIN' } }
    ]
  },
  {
    name: 'ips rules and the judged address',
    yaml: ({ dns }) => `
dns: { servers: ["${dns}"] }
rules:
  - { name: internal, action: allow, ips: [10.0.0.0/8], ports: [443] }
  - { name: one-loopback, action: allow, ips: [127.0.0.2/32] }
  - { name: no-docs, action: deny, ips: [93.184.216.0/24] }
  - { name: web, action: allow, ports: [443] }
`,
    cases: [
      { target: 'private.test:443', expect: { status: 200, rule: 'internal' } },
      { target: 'private.test:80', expect: { status: 403, rule: 'default', code: 'ERR_POLICY_DENIED' } },
      { target: 'public.test:443', expect: { status: 403, rule: 'no-docs', code: 'ERR_POLICY_DENIED' } },
      { target: 'other.test:443', expect: { status: 200, rule: 'web' } },
      // Issue 11 finding 5: AAAA ::7f00:2 (c-ares text ::127.0.0.2) is IPv6, not 127.0.0.2.
      { target: 'compat.test:443', expect: { status: 403, rule: 'special-purpose-guard', code: 'ERR_DESTINATION_PROHIBITED' } },
      { target: '127.0.0.2:8080', expect: { status: 200, rule: 'one-loopback' } },
      { target: '[::7f00:2]:8080', expect: { status: 403, rule: 'default', code: 'ERR_POLICY_DENIED' } },
      { target: '10.1.1.1:443', expect: { status: 200, rule: 'internal' } }
    ]
  },
  {
    name: 'auth: users rules and challenges (issue 10, defect 1)',
    yaml: ({ dns, users }) => `
dns: { servers: ["${dns}"] }
auth:
  users_file: ${JSON.stringify(users)}
rules:
  - { name: alice-web, action: allow, users: [alice], ports: [443] }
  - { name: open-8443, action: allow, ports: [8443] }
`,
    cases: [
      { target: 'public.test:443', expect: { status: 407, rule: 'alice-web', code: 'ERR_AUTH_REQUIRED' } },
      { target: 'public.test:443', user: 'alice', expect: { status: 200, rule: 'alice-web' } },
      { target: 'public.test:443', user: 'bob', expect: { status: 403, rule: 'default', code: 'ERR_POLICY_DENIED' } },
      { target: 'public.test:8443', expect: { status: 200, rule: 'open-8443' } },
      // auth.required defaults to true: the default action challenges anonymous requests.
      { target: 'public.test:22', expect: { status: 407, rule: 'default', code: 'ERR_AUTH_REQUIRED' } }
    ]
  },
  {
    name: 'auth not required',
    yaml: ({ dns, users }) => `
dns: { servers: ["${dns}"] }
auth:
  users_file: ${JSON.stringify(users)}
  required: false
rules:
  - { name: alice-web, action: allow, users: [alice], ports: [443] }
`,
    cases: [
      { target: 'public.test:443', expect: { status: 407, rule: 'alice-web', code: 'ERR_AUTH_REQUIRED' } },
      { target: 'public.test:22', expect: { status: 403, rule: 'default', code: 'ERR_POLICY_DENIED' } }
    ]
  },
  {
    name: 'auth required',
    yaml: ({ dns, users }) => `
dns: { servers: ["${dns}"] }
auth:
  users_file: ${JSON.stringify(users)}
  required: true
rules:
  - { name: web, action: allow, ports: [443] }
`,
    cases: [
      { target: 'public.test:22', expect: { status: 407, rule: 'default', code: 'ERR_AUTH_REQUIRED' } },
      { target: 'public.test:443', user: 'bob', expect: { status: 200, rule: 'web' } },
      { target: 'public.test:22', user: 'bob', expect: { status: 403, rule: 'default', code: 'ERR_POLICY_DENIED' } }
    ]
  },
  {
    name: 'a parent first: names are the parent\'s to resolve',
    yaml: ({ dns }) => `
dns: { servers: ["${dns}"] }
parents:
  corp: { url: "http://127.0.0.1:9" }
default_route: corp
rules:
  - { name: internal, action: allow, ips: [10.0.0.0/8] }
  - { name: web, action: allow, ports: [443] }
`,
    cases: [
      { target: 'private.test:443', expect: { status: 200, rule: 'web' } },
      { target: 'private.test:80', expect: { status: 403, rule: 'default', code: 'ERR_POLICY_DENIED' } },
      { target: '10.0.0.1:80', expect: { status: 200, rule: 'internal' } },
      { target: '93.184.216.34:80', expect: { status: 403, rule: 'default', code: 'ERR_POLICY_DENIED' } }
    ]
  },
  {
    name: 'clients, listeners and report mode',
    yaml: ({ dns }) => `
dns: { servers: ["${dns}"] }
listen:
  - { address: 127.0.0.1:0, name: front }
mode: report
rules:
  - { name: from-loopback, action: allow, clients: [127.0.0.0/8], ports: [443] }
  - { name: back-only, action: allow, listeners: [front], ports: [8443] }
  - { name: watch, action: deny, hosts: [watched.test] }
`,
    cases: [
      { target: 'public.test:443', expect: { status: 200, rule: 'from-loopback' } },
      { target: 'public.test:8443', expect: { status: 200, rule: 'back-only' } },
      { target: 'watched.test:80', expect: { status: 200, rule: 'watch' } },
      { target: 'public.test:25', expect: { status: 200, rule: 'default' } }
    ]
  }
]

let dir: string
let dns: DnsStub
let users: string
let echo: Awaited<ReturnType<typeof startEchoServer>>

before(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'sluice-equivalence-'))
  dns = await startDnsStubRetrying({
    'public.test': { A: ['93.184.216.34'] },
    'other.test': { A: ['198.18.0.1', '8.8.8.8'] },
    'watched.test': { A: ['8.8.4.4'] },
    'loopback.test': { A: ['127.0.0.1'], AAAA: ['::1'] },
    'mixed.test': { A: ['10.1.2.3', '93.184.216.34'] },
    'private.test': { A: ['10.20.30.40'] },
    'compat.test': { AAAA: ['::7f00:2'] },
    'nope.test': { rcode: 'NXDOMAIN' },
    'x.ads.test': { A: ['93.184.216.34'] }
  })
  users = join(dir, 'users.htpasswd')
  await writeFile(users, ['alice', 'bob'].map(u => `${u}:${bcrypt.hashSync(PASSWORD, 4)}`).join('\n') + '\n')
  echo = await startEchoServer()
})

after(async () => {
  killCliChildren()
  await echo.close()
  await dns.close()
  await rm(dir, { recursive: true, force: true })
})

/** Every dial goes to the echo server, after the policy-checked addresses were asked for (direct first choices). */
const echoDial: typeof dialRoute = async (req) => {
  const direct = req.route.choices[0]?.kind === 'direct'
  const addresses = direct ? await req.directAddresses() : []
  const socket = connect({ host: '127.0.0.1', port: echo.port, allowHalfOpen: true })
  await once(socket, 'connect')
  return { socket, dialed: { address: addresses[0] ?? '127.0.0.1', port: req.target.port }, hops: direct ? [] : ['corp'] }
}

function basic (user: string): string {
  return `Proxy-Authorization: Basic ${Buffer.from(`${user}:${PASSWORD}`).toString('base64')}\r\n`
}

describe('sluice check --json answers as a real CONNECT does', { timeout: 120_000 }, () => {
  let count = 0
  for (const table of TABLES) {
    describe(table.name, () => {
      let s: Sluice
      let file: string
      before(async () => {
        const yaml = `version: 1\n${table.yaml({ dns: dns.address, users })}`
        file = join(dir, `${table.name.replace(/\W+/g, '-')}.yaml`)
        await writeFile(file, yaml)
        s = await startSluice(yaml, { dial: echoDial, file })
      })
      after(async () => { await s.close() })

      for (const c of table.cases) {
        count++
        it(`${c.target}${c.user === undefined ? '' : ` as ${c.user}`} → ${c.expect.status} ${c.expect.rule}`, async () => {
          const args = ['check', '--config', file, '--json', ...(c.user === undefined ? [] : ['--user', c.user]), c.target]
          const r = await runCli(args, { stdin: '' })
          assert.ok(r.code === 0 || r.code === 1, `check exited ${String(r.code)}: ${r.stderr}`)
          const j = JSON.parse(r.stdout) as { allowed: boolean, status: number, code?: string, rule: string, stage: string }

          const res = await connectVia(s.port, c.target, c.user === undefined ? {} : { headers: basic(c.user) })
          res.socket.destroy()
          const line = await s.waitForLog(l => l.msg === 'tunnel closed' && l['client'] === res.client)
          const real = {
            status: res.status,
            code: res.status === 200 ? undefined : parseProxyStatus(res.headers['proxy-status'] ?? '').params['details']?.toString().split(':')[0],
            rule: line['rule'],
            stage: line['stage']
          }
          const checked = { status: j.status, code: j.code, rule: j.rule, stage: j.stage }
          assert.deepEqual(checked, real, `check ${JSON.stringify(checked)} vs CONNECT ${JSON.stringify(real)}`)
          assert.equal(j.allowed, res.status === 200)
          assert.equal(r.code, j.allowed ? 0 : 1)
          assert.deepEqual({ status: real.status, rule: real.rule, code: real.code }, { status: c.expect.status, rule: c.expect.rule, code: c.expect.code })
        })
      }
    })
  }
  it('covers at least 30 cases', () => { assert.ok(count >= 30, `${count} cases`) })
})
