/**
 * The domain-fronting guard's configuration (issue 14): `tunnel_checks` and
 * rules' `sni_match` / `tls_only` are compiled into the verdict that allows
 * a tunnel (the file's for the default and for report-mode denies, the
 * rule's own where it sets one), and the SNI comparison. No sockets.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ConfigError, parseConfig, parseConfigOffThread } from '../../src/config/load.js'
import { parseTarget } from '../../src/connect/target.js'
import { TunnelCheck } from '../../src/policy/compile.js'
import { Decision } from '../../src/policy/evaluate.js'
import { decideAddress, decideRequest, type RequestFacts } from '../../src/policy/decide.js'
import { sniNames } from '../../src/tunnel/first-bytes-check.js'

const BOTH = TunnelCheck.sniMatch | TunnelCheck.tlsOnly

const FILE = `version: 1
tunnel_checks: { sni_match: true, tls_only: true }
default: allow
rules:
  - name: ssh
    action: allow
    ports: [22]
    tls_only: false
  - name: legacy
    action: allow
    hosts: [legacy.example]
    sni_match: false
    tls_only: false
  - name: watched
    action: deny
    mode: report
    hosts: [watched.example]
  - name: by-address
    action: allow
    ips: [192.0.2.0/24]
`

function facts (host: string, port: number): RequestFacts {
  return { host, port, isName: !/^[\d.]+$/.test(host), client: '198.51.100.7' }
}

describe('tunnel_checks and per-rule overrides', () => {
  const c = parseConfig(FILE, 'checks.yaml')
  const checksOf = (host: string, port: number): number | undefined => decideRequest(c.policy, facts(host, port))?.checks

  it('the file\'s checks apply to the default action\'s tunnels and to a report-mode deny\'s', () => {
    // by-address has ips: a name that no earlier rule takes is judged with its address.
    assert.equal(checksOf('example.com', 443), undefined)
    assert.deepEqual([decideAddress(c.policy, facts('example.com', 443), '93.184.216.34')].map(v => [v.rule, v.checks]), [['default', BOTH]])
    assert.equal(checksOf('watched.example', 443), BOTH)
  })

  it('a rule overrides each check it names, and keeps the file\'s for the other', () => {
    assert.equal(checksOf('example.com', 22), TunnelCheck.sniMatch)
    assert.equal(checksOf('legacy.example', 443), 0)
  })

  it('a verdict decided on the address carries its rule\'s checks; a Decision exposes them only when it allows', () => {
    assert.equal(decideAddress(c.policy, facts('192.0.2.7', 443), '192.0.2.7').checks, BOTH)
    assert.equal(new Decision(c.policy, facts('legacy.example', 443)).checks, 0)
    assert.equal(new Decision(c.policy, facts('example.com', 22)).checks, TunnelCheck.sniMatch)
    const denied = parseConfig(FILE.replace('default: allow', 'default: deny').replace('    mode: report\n', ''), 'deny.yaml')
    assert.equal(new Decision(denied.policy, facts('watched.example', 443)).checks, 0)
  })

  it('off by default: no key, no checks', () => {
    const plain = parseConfig('version: 1\ndefault: allow\nrules: [{ action: allow, ports: [443] }]\n', 'plain.yaml')
    assert.equal(plain.policy.checks, 0)
    assert.equal(decideRequest(plain.policy, facts('example.com', 443))?.checks, 0)
    assert.equal(decideRequest(plain.policy, facts('example.com', 80))?.checks, 0)
  })

  it('a reload (validated off the main thread, each rule compiled at first use) compiles the same checks', async () => {
    const off = await parseConfigOffThread(FILE, 'checks.yaml')
    assert.deepEqual(off.policy.rules.map(r => r.checks), c.policy.rules.map(r => r.checks))
    assert.equal(off.policy.checks, c.policy.checks)
  })

  it('refuses the keys on a deny rule, unknown keys and non-booleans, each with its path', () => {
    const bad = `version: 1
tunnel_checks: { sni_match: yes-please, tls_onyl: true }
rules:
  - action: deny
    sni_match: true
`
    assert.throws(() => parseConfig(bad, 'bad.yaml'), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      const text = err.problems.join('\n')
      assert.match(text, /tunnel_checks\.sni_match: /)
      assert.match(text, /tunnel_checks: unknown key 'tls_onyl' \(did you mean 'tls_only'\?\)/)
      assert.match(text, /rules\[0\]\.sni_match: only an allow rule has sni_match/)
      return true
    })
  })
})

describe('sniNames: does the ClientHello name the CONNECT host?', () => {
  const cases: ReadonlyArray<readonly [target: string, sni: string | undefined, names: boolean]> = [
    ['example.com:443', 'example.com', true],
    ['example.com:443', 'example.com.', true],
    ['Example.COM:443', 'example.com', true],
    ['xn--bcher-kva.de:443', 'xn--bcher-kva.de', true],
    ['example.com:443', 'www.example.com', false],
    ['example.com:443', 'example.org', false],
    ['example.com:443', undefined, false],
    ['192.0.2.7:443', undefined, true],
    ['[2001:db8::1]:443', undefined, true],
    ['192.0.2.7:443', 'example.com', false],
    ['192.0.2.7:443', '192.0.2.7', true],
    ['[2001:db8::1]:443', '2001:DB8:0::1', true],
    ['example.com:443', '', false]
  ]
  for (const [target, sni, want] of cases) {
    it(`${target} with SNI ${JSON.stringify(sni)} → ${String(want)}`, () => {
      assert.equal(sniNames(parseTarget(target), sni), want)
    })
  }
})
