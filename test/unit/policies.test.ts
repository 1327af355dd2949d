/**
 * The shipped policies: every policies/*.yaml loads, and policies/default.yaml
 * (what `npm start` and a bare `sluice` run) is as safe as its comments say:
 * loopback listener only, port 443 only, special-purpose addresses refused.
 * Pure decisions: no sockets, no DNS.
 */
import assert from 'node:assert/strict'
import { readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { before, describe, it } from 'node:test'
import { DEFAULT_CONFIG_PATH, loadConfig, type Config } from '../../src/config/load.js'
import { decideAddress, decideRequest, type RequestFacts } from '../../src/policy/decide.js'

const POLICIES = fileURLToPath(new URL('../../policies/', import.meta.url))
const DEFAULT = fileURLToPath(new URL('../../policies/default.yaml', import.meta.url))

/** Facts for a CONNECT to `host:port` from a loopback client. */
function facts (host: string, port: number, isName: boolean): RequestFacts {
  return { host, port, isName, client: '127.0.0.1' }
}

describe('policies/*.yaml', () => {
  it('every shipped policy loads', async () => {
    const files = (await readdir(POLICIES)).filter(f => f.endsWith('.yaml')).sort()
    assert.ok(files.includes('default.yaml'), `policies/ holds ${JSON.stringify(files)}`)
    for (const f of files) {
      const config = await loadConfig(POLICIES + f)
      assert.equal(config.file, POLICIES + f)
      assert.match(config.hash, /^[0-9a-f]{16}$/)
      assert.ok(config.listen.length > 0, `${f} listens somewhere`)
    }
  })

  it('every shipped policy is free of `sluice validate` warnings (an example must not teach a mistake)', async () => {
    const files = (await readdir(POLICIES)).filter(f => f.endsWith('.yaml'))
    for (const f of files) {
      const config = await loadConfig(POLICIES + f, { lint: true })
      assert.deepEqual(config.warnings, [], f)
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
