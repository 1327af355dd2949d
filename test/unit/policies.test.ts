/**
 * The shipped policies: every policies/*.yaml loads, and policies/default.yaml
 * (what `npm start` and a bare `sluice` run) is as safe as its comments say:
 * loopback listener only, port 443 only, special-purpose addresses refused.
 * Pure decisions: no sockets, no DNS.
 *
 * Examples with TLS (issue 13) name certificate and key files that are not
 * shipped (a key must never be committed): they are loaded from a copy of
 * policies/ in a temp dir, where each PEM file an example names is made
 * first (test/helpers/tls.ts), as an operator's copy would have them.
 */
import assert from 'node:assert/strict'
import { cp, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { parse } from 'yaml'
import { DEFAULT_CONFIG_PATH, loadConfig, type Config } from '../../src/config/load.js'
import { decideAddress, decideRequest, type RequestFacts } from '../../src/policy/decide.js'
import { makeCert } from '../helpers/tls.js'

const POLICIES = fileURLToPath(new URL('../../policies/', import.meta.url))
const DEFAULT = fileURLToPath(new URL('../../policies/default.yaml', import.meta.url))

/** Config keys whose value is a PEM file (listen[].tls, parents.NAME), and what it holds. */
const PEM_KEYS: Readonly<Record<string, 'cert' | 'key' | 'ca'>> = { cert_file: 'cert', key_file: 'key', ca_file: 'ca', client_ca_file: 'ca' }

/** Every PEM file named anywhere in a parsed config: path as written → what it holds. */
function namedPems (node: unknown, out = new Map<string, 'cert' | 'key' | 'ca'>()): Map<string, 'cert' | 'key' | 'ca'> {
  if (Array.isArray(node)) {
    for (const v of node) namedPems(v, out)
  } else if (node !== null && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      const kind = PEM_KEYS[k]
      if (kind !== undefined && typeof v === 'string') out.set(v, kind)
      else namedPems(v, out)
    }
  }
  return out
}

/**
 * A copy of policies/ in `dir` with every PEM file its examples name: one
 * test leaf certificate and key for every cert_file/key_file (so any pair
 * matches) and the test CA for every CA file. Returns the files it made.
 */
async function copyWithCerts (dir: string): Promise<string[]> {
  await cp(POLICIES, dir, { recursive: true })
  const leaf = await makeCert()
  const made: string[] = []
  for (const f of (await readdir(dir)).filter(n => n.endsWith('.yaml'))) {
    for (const [path, kind] of namedPems(parse(await readFile(join(dir, f), 'utf8')))) {
      const full = resolve(dir, path)
      assert.ok(!relative(dir, full).startsWith('..'), `${f} names ${path}, outside policies/`)
      await mkdir(dirname(full), { recursive: true })
      await writeFile(full, leaf[kind])
      made.push(relative(dir, full))
    }
  }
  return made
}

/** Facts for a CONNECT to `host:port` from a loopback client. */
function facts (host: string, port: number, isName: boolean): RequestFacts {
  return { host, port, isName, client: '127.0.0.1' }
}

describe('policies/*.yaml', () => {
  /** The copy of policies/ the examples load from, with their PEM files made. */
  let copy = ''
  let made: string[] = []

  before(async () => {
    copy = await mkdtemp(join(tmpdir(), 'sluice-policies-'))
    made = await copyWithCerts(copy)
  })
  after(async () => { await rm(copy, { recursive: true, force: true }) })

  it('every shipped policy loads', async () => {
    const files = (await readdir(POLICIES)).filter(f => f.endsWith('.yaml')).sort()
    assert.ok(files.includes('default.yaml'), `policies/ holds ${JSON.stringify(files)}`)
    for (const f of files) {
      const config = await loadConfig(join(copy, f))
      assert.equal(config.file, join(copy, f))
      assert.match(config.hash, /^[0-9a-f]{16}$/)
      assert.ok(config.listen.length > 0, `${f} listens somewhere`)
    }
  })

  it('every shipped policy is free of `sluice validate` warnings (an example must not teach a mistake)', async () => {
    const files = (await readdir(POLICIES)).filter(f => f.endsWith('.yaml'))
    for (const f of files) {
      const config = await loadConfig(join(copy, f), { lint: true })
      assert.deepEqual(config.warnings, [], f)
    }
  })

  it('has an example of each listener kind, of client certificates and of a client certificate to a parent (issues 13, 14)', async () => {
    const configs = await Promise.all((await readdir(POLICIES)).filter(f => f.endsWith('.yaml')).map(f => loadConfig(join(copy, f))))
    const listeners = configs.flatMap(c => c.listen)
    assert.ok(listeners.some(l => l.kind === 'connect' && l.tls === undefined), 'a plain CONNECT listener')
    assert.ok(listeners.some(l => l.tls !== undefined && l.tls.clientCert !== 'none'), 'an HTTPS proxy listener asking for client certificates')
    assert.ok(listeners.some(l => l.kind === 'tcp'), 'a tcp listener')
    assert.ok(listeners.some(l => l.kind === 'sni'), 'an sni listener (issue 14)')
    assert.ok(listeners.some(l => l.kind === 'terminate' && l.upstreamTls !== undefined), 'a terminate listener (issue 14)')
    const parents = configs.flatMap(c => [...c.routing.parents.values()])
    assert.ok(parents.some(p => p.tls && p.tlsOptions?.cert !== undefined && p.tlsOptions.key !== undefined), 'an https:// parent with a client certificate')
    // Those certificates were made in the copy, never found in policies/.
    assert.ok(made.length > 0)
  })

  it('ships no private key', async () => {
    for (const f of await readdir(POLICIES)) {
      assert.doesNotMatch(await readFile(join(POLICIES, f), 'utf8'), /PRIVATE KEY-----/, f)
    }
  })

  it('the default config path is policies/default.yaml', async () => {
    assert.equal(DEFAULT_CONFIG_PATH, DEFAULT)
    const config = await loadConfig()
    assert.equal(config.file, DEFAULT)
  })
})

describe('policies/default.yaml', () => {
  let config: Config

  before(async () => {
    config = await loadConfig(DEFAULT)
  })

  it('listens on 127.0.0.1:3128 only', () => {
    assert.deepEqual(config.listen.map(l => ({ host: l.host, port: l.port })), [{ host: '127.0.0.1', port: 3128 }])
  })

  it('denies by default, with the system resolver', () => {
    assert.equal(config.policy.defaultAllow, false)
    assert.deepEqual(config.dns.servers, [])
  })

  it('allows a name on port 443 (provisionally, before DNS)', () => {
    const v = decideRequest(config.policy, facts('example.com', 443, true))
    assert.ok(v !== undefined)
    assert.equal(v.allow, true)
    assert.equal(v.rule, 'https')
    assert.equal(v.stage, 'request')
  })

  it('allows no port but 443', () => {
    for (const port of [1, 22, 25, 80, 442, 444, 3128, 8080, 8443, 65535]) {
      for (const [host, isName] of [['example.com', true], ['93.184.216.34', false]] as const) {
        const v = decideRequest(config.policy, facts(host, port, isName))
        assert.ok(v !== undefined, `${host}:${port} is decided before DNS`)
        assert.equal(v.allow, false, `${host}:${port}`)
        assert.equal(v.rule, 'default', `${host}:${port}`)
        const a = decideAddress(config.policy, facts(host, port, isName), '93.184.216.34')
        assert.equal(a.allow, false, `${host}:${port} dialed at 93.184.216.34`)
        assert.equal(a.rule, 'default')
      }
    }
  })

  it('allows a public address on 443, as a literal and as a resolved name', () => {
    const literal = decideAddress(config.policy, facts('93.184.216.34', 443, false), '93.184.216.34')
    assert.equal(literal.allow, true)
    assert.equal(literal.rule, 'https')
    assert.equal(literal.stage, 'address')
    const named = decideAddress(config.policy, facts('example.com', 443, true), '93.184.216.34')
    assert.equal(named.allow, true)
    assert.equal(named.rule, 'https')
  })

  for (const address of ['127.0.0.1', '10.1.2.3', '169.254.169.254', '::1']) {
    it(`denies ${address} on 443, as a literal and as what a name resolved to`, () => {
      const literal = decideAddress(config.policy, facts(address, 443, false), address)
      assert.equal(literal.allow, false)
      assert.equal(literal.rule, 'special-purpose-guard')
      assert.equal(literal.prohibitedAddress, true)
      assert.match(literal.reason, /special-purpose/)
      // DNS rebinding: a harmless-looking name that resolves to it.
      const named = decideAddress(config.policy, facts('example.com', 443, true), address)
      assert.equal(named.allow, false)
      assert.equal(named.rule, 'special-purpose-guard')
      assert.equal(named.prohibitedAddress, true)
    })
  }
})
