import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseConfig } from '../../src/config/load.js'
import { decideAddress, decideRequest, type RequestFacts } from '../../src/policy/decide.js'

const policy = parseConfig(`
version: 1
default: deny
rules:
  - name: no-ads
    action: deny
    hosts: ["*.ads.example"]
  - name: intranet
    action: allow
    hosts: [git.corp.example]
    ips: [10.20.0.0/16]
  - name: ci-any-port
    action: allow
    clients: [192.0.2.0/24]
    hosts: [build.example]
  - name: https
    action: allow
    ports: [443, "8443-8444"]
`, 'decide.yaml').policy

function facts (host: string, port: number, client = '198.51.100.7'): RequestFacts {
  return { host, port, isName: !/^[\d.]+$|:/.test(host), client }
}

interface Case {
  readonly name: string
  readonly host: string
  readonly port: number
  readonly client?: string
  /** undefined: stage 1 must defer to the address stage */
  readonly request: { allow: boolean, rule: string } | undefined
  /** address → expected verdict */
  readonly addresses?: Readonly<Record<string, { allow: boolean, rule: string }>>
}

const cases: readonly Case[] = [
  { name: 'public https allowed', host: 'example.com', port: 443, request: { allow: true, rule: 'https' }, addresses: { '93.184.216.34': { allow: true, rule: 'https' } } },
  { name: 'range port allowed', host: 'example.com', port: 8444, request: { allow: true, rule: 'https' } },
  { name: 'port outside range denied by default', host: 'example.com', port: 8445, request: { allow: false, rule: 'default' } },
  { name: 'deny rule wins before allow', host: 'x.ads.example', port: 443, request: { allow: false, rule: 'no-ads' } },
  { name: 'wildcard does not match apex', host: 'ads.example', port: 443, request: { allow: true, rule: 'https' } },
  { name: 'deep sub-domain matches wildcard', host: 'a.b.ads.example', port: 443, request: { allow: false, rule: 'no-ads' } },
  { name: 'https name resolving to loopback is refused by the guard', host: 'sneaky.example', port: 443, request: { allow: true, rule: 'https' }, addresses: { '127.0.0.1': { allow: false, rule: 'special-purpose-guard' }, '::1': { allow: false, rule: 'special-purpose-guard' } } },
  { name: 'metadata address refused', host: 'meta.example', port: 443, request: { allow: true, rule: 'https' }, addresses: { '169.254.169.254': { allow: false, rule: 'special-purpose-guard' }, 'fd00:ec2::254': { allow: false, rule: 'special-purpose-guard' } } },
  { name: 'mapped and NAT64 loopback refused', host: 'v6.example', port: 443, request: { allow: true, rule: 'https' }, addresses: { '::ffff:127.0.0.1': { allow: false, rule: 'special-purpose-guard' }, '64:ff9b::a00:1': { allow: false, rule: 'special-purpose-guard' } } },
  { name: 'intranet name defers to address stage', host: 'git.corp.example', port: 22, request: undefined, addresses: { '10.20.1.2': { allow: true, rule: 'intranet' }, '10.21.0.1': { allow: false, rule: 'default' } } },
  { name: 'intranet name on 443: listed range unlocked, other private refused', host: 'git.corp.example', port: 443, request: undefined, addresses: { '10.20.1.2': { allow: true, rule: 'intranet' }, '192.168.1.1': { allow: false, rule: 'special-purpose-guard' } } },
  { name: 'client rule matches its subnet', host: 'build.example', port: 9000, client: '192.0.2.10', request: { allow: true, rule: 'ci-any-port' } },
  { name: 'client rule ignores other clients', host: 'build.example', port: 9000, client: '192.0.3.10', request: { allow: false, rule: 'default' } },
  { name: 'IP literal target on 443 allowed if public', host: '8.8.8.8', port: 443, request: { allow: true, rule: 'https' }, addresses: { '8.8.8.8': { allow: true, rule: 'https' } } },
  { name: 'IP literal private target refused', host: '10.0.0.1', port: 443, request: { allow: true, rule: 'https' }, addresses: { '10.0.0.1': { allow: false, rule: 'special-purpose-guard' } } }
]

for (const c of cases) {
  test(c.name, () => {
    const f = facts(c.host, c.port, c.client)
    const early = decideRequest(policy, f)
    if (c.request === undefined) assert.equal(early, undefined)
    else assert.deepEqual({ allow: early?.allow, rule: early?.rule }, c.request)
    for (const [address, want] of Object.entries(c.addresses ?? {})) {
      const v = decideAddress(policy, f, address)
      assert.deepEqual({ allow: v.allow, rule: v.rule }, want, address)
      if (v.rule === 'special-purpose-guard') {
        assert.equal(v.prohibitedAddress, true)
        assert.match(v.reason, /special-purpose/)
      }
    }
  })
}
