/**
 * `/proxy.pac` (issue 15), fetched over real HTTP from the admin listener
 * and run by a real PAC evaluator: pac-resolver (TooTallNate/proxy-agents)
 * on QuickJS. FindProxyForURL is asked about URLs the policy allows, denies
 * and never mentions (README "Admin endpoint": what goes to Sluice).
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { parseConfig } from '../../src/config/load.js'
import { adminFor, ask, pacEvaluator } from '../helpers/admin.js'
import { sluiceFor } from '../helpers/sluice.js'
import { tlsListenYaml, writeListenerFiles, type ListenerFiles } from '../helpers/tls-listener.js'

let dir = ''
let files: ListenerFiles

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-pac-'))
  files = await writeListenerFiles(dir)
})
after(async () => { await rm(dir, { recursive: true, force: true }) })

/** The PAC file an admin listener serves for `yaml`, as an evaluator. */
async function pacFor (t: TestContext, yaml: string): Promise<(url: string) => Promise<string>> {
  const text = `version: 1\n${yaml}`
  const file = join(dir, 'pac.yaml')
  const s = await sluiceFor(t, text, { file })
  const a = await adminFor(t, s, parseConfig(text, file))
  const res = await ask(`${a.url}/proxy.pac`)
  assert.equal(res.status, 200, res.text)
  assert.equal(res.headers['content-type'], 'application/x-ns-proxy-autoconfig')
  return await pacEvaluator(res.text)
}

/** Every URL → what FindProxyForURL said, for one deepEqual with a readable diff. */
async function answers (find: (url: string) => Promise<string>, urls: readonly string[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  for (const u of urls) out[u] = await find(u)
  return out
}

const PROXY = 'PROXY proxy.corp.example:3128'

describe('/proxy.pac, run by pac-resolver', () => {
  it('first match wins, as in the policy: allows → PROXY, unconditional denies and the deny default → DIRECT', async (t) => {
    const find = await pacFor(t, `
admin:
  listen: 127.0.0.1:0
  pac: { proxy: "proxy.corp.example:3128" }
rules:
  - { name: no-blocked, action: deny, hosts: [blocked.example.com] }
  - { name: web, action: allow, hosts: ["*.example.com", exact.example.org], ports: [443, "8443-8444"] }
  - { name: team, action: allow, hosts: [team.example.net], users: [alice] }
  - { name: not-from-lab, action: deny, hosts: ["*.example.net"], clients: [10.0.0.0/8] }
  - { name: docs, action: allow, hosts: ["*.example.net"] }
  - { name: report-only, action: deny, mode: report, hosts: [reported.example.io] }
  - { name: io, action: allow, hosts: ["*.example.io"] }
  - { name: net-range, action: allow, ips: [192.0.2.0/24, "2001:db8::/32"] }
  - { name: v6-only, action: allow, ips: ["2001:db8::/32"] }
`)
    assert.deepEqual(await answers(find, [
      'https://a.example.com/',
      'https://a.b.example.com:8443/path?q=1',
      'https://a.example.com:8444/',
      'https://A.Example.COM./',
      'wss://a.example.com/socket',
      'https://example.com/',
      'https://a.example.com:9000/',
      'ws://a.example.com/',
      'https://blocked.example.com/',
      'http://a.example.com/',
      'ftp://a.example.com/',
      'https://exact.example.org/',
      'https://x.exact.example.org/',
      'https://team.example.net/',
      'https://docs.example.net/',
      'https://reported.example.io/',
      'https://192.0.2.7/',
      'https://198.51.100.1/',
      'https://user:pw@192.0.2.9:8443/',
      'https://localhost/',
      'https://127.0.0.1/',
      'https://unlisted.example/'
    ]), {
      'https://a.example.com/': PROXY,
      'https://a.b.example.com:8443/path?q=1': PROXY,
      'https://a.example.com:8444/': PROXY,
      'https://A.Example.COM./': PROXY,
      'wss://a.example.com/socket': PROXY,
      // `*.example.com` is sub-domains only, as in rules.
      'https://example.com/': 'DIRECT',
      'https://a.example.com:9000/': 'DIRECT',
      // ws: is port 80, not in the rule's ports.
      'ws://a.example.com/': 'DIRECT',
      'https://blocked.example.com/': 'DIRECT',
      // Sluice takes CONNECT only: a plain-HTTP GET would be refused (405).
      'http://a.example.com/': 'DIRECT',
      'ftp://a.example.com/': 'DIRECT',
      'https://exact.example.org/': PROXY,
      'https://x.exact.example.org/': 'DIRECT',
      // A rule for a user is assumed to match: alice logs in and gets through.
      'https://team.example.net/': PROXY,
      // A deny for some clients may not be this one's: the allow after it decides.
      'https://docs.example.net/': PROXY,
      // A report-mode deny denies nothing.
      'https://reported.example.io/': PROXY,
      'https://192.0.2.7/': PROXY,
      'https://198.51.100.1/': 'DIRECT',
      'https://user:pw@192.0.2.9:8443/': PROXY,
      'https://localhost/': 'DIRECT',
      'https://127.0.0.1/': 'DIRECT',
      'https://unlisted.example/': 'DIRECT'
    })
  })

  it('default: allow sends everything unmatched to Sluice, unless admin.pac.default says direct; mode: report likewise', async (t) => {
    const rules = `
rules:
  - { name: no-bank, action: deny, hosts: ["*.bank.example"] }
`
    const allow = await pacFor(t, `admin: { listen: 127.0.0.1:0, pac: { proxy: "proxy.corp.example:3128" } }\ndefault: allow\n${rules}`)
    assert.deepEqual(await answers(allow, ['https://anything.example/', 'https://www.bank.example/']),
      { 'https://anything.example/': PROXY, 'https://www.bank.example/': 'DIRECT' })
    const direct = await pacFor(t, `admin: { listen: 127.0.0.1:0, pac: { proxy: "proxy.corp.example:3128", default: direct } }\ndefault: allow\n${rules}`)
    assert.equal(await direct('https://anything.example/'), 'DIRECT')
    const toProxy = await pacFor(t, `admin: { listen: 127.0.0.1:0, pac: { proxy: "proxy.corp.example:3128", default: proxy } }\n${rules}`)
    assert.equal(await toProxy('https://anything.example/'), PROXY)
    // In report mode nothing is denied: the deny rule and the deny default are only logged.
    const report = await pacFor(t, `admin: { listen: 127.0.0.1:0, pac: { proxy: "proxy.corp.example:3128" } }\nmode: report\n${rules}`)
    assert.deepEqual(await answers(report, ['https://anything.example/', 'https://www.bank.example/']),
      { 'https://anything.example/': PROXY, 'https://www.bank.example/': PROXY })
  })

  it('the proxy it names: admin.pac.proxy (https:// → HTTPS), else the first connect listener (HTTPS for a TLS one)', async (t) => {
    const allowAll = 'default: allow\n'
    const https = await pacFor(t, `admin: { listen: 127.0.0.1:0, pac: { proxy: "https://proxy.corp.example:3129" } }\n${allowAll}`)
    assert.equal(await https('https://a.example/'), 'HTTPS proxy.corp.example:3129')
    const plain = await pacFor(t, `listen: [{ address: "127.0.0.1:3999", kind: tcp, target: "a.example:1" }, "127.0.0.2:3128"]\nadmin: { listen: 127.0.0.1:0 }\n${allowAll}`)
    assert.equal(await plain('https://a.example/'), 'PROXY 127.0.0.2:3128')
    const tls = await pacFor(t, `${tlsListenYaml(files).replace('127.0.0.1:0', '127.0.0.1:3130')}admin: { listen: 127.0.0.1:0 }\n${allowAll}`)
    assert.equal(await tls('https://a.example/'), 'HTTPS 127.0.0.1:3130')
  })

  it('a connect listener on every interface and no admin.pac.proxy: 404 saying what to set', async (t) => {
    const text = 'version: 1\nlisten: 0.0.0.0:3128\nadmin: { listen: 127.0.0.1:0 }\n'
    const s = await sluiceFor(t, text, { listenHost: '127.0.0.1' })
    const a = await adminFor(t, s, parseConfig(text, 'test.yaml'))
    const res = await ask(`${a.url}/proxy.pac`)
    assert.equal(res.status, 404)
    assert.match(res.text, /set admin\.pac\.proxy/)
  })
})
