/**
 * decideRequest / decideAddress (src/policy/decide.ts), the per-CONNECT
 * policy walk, on a small policy (3 rules) and a large one (10,000 `*.suffix`
 * hosts and 10,000 /24 networks in 10.0.0.0/8 that the target never
 * matches, then an allow rule), each compiled once by compilePolicy.
 */
import assert from 'node:assert/strict'
import { bench, do_not_optimize as keep, group } from 'mitata'
import { compilePolicy } from '../../src/policy/compile.js'
import { decideAddress, decideRequest, type RequestFacts } from '../../src/policy/decide.js'
import type { RuleSpec } from '../../src/policy/schema.js'

const small: RuleSpec[] = [
  { name: 'no-metadata', action: 'deny', ips: ['169.254.169.254/32', 'fd00:ec2::254/128'] },
  { name: 'internal', action: 'allow', hosts: ['*.internal.example', 'api.example.com'], ports: [443, '8000-8080'], clients: ['10.0.0.0/8'] },
  { name: 'https', action: 'allow', ports: [443] }
]

/** As the perf harness's bigacl lists: reserved TLDs, none a subdomain of another. */
const suffixes = Array.from({ length: 10_000 }, (_, i) => `*.ads${String(i).padStart(5, '0')}.tracker${String(i % 97).padStart(2, '0')}.${['example', 'invalid', 'test'][i % 3] ?? 'test'}`)
const cidrs = Array.from({ length: 10_000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.0/24`)
const large: RuleSpec[] = [
  { name: 'deny-hosts', action: 'deny', hosts: suffixes },
  { name: 'deny-nets', action: 'deny', ips: cidrs },
  { name: 'https', action: 'allow', ports: [443] }
]

/** Issue 11 finding 6: 20,000 rules, each with its own `ips:` (and 20,000 each with its own `hosts:`). */
const manyIps: RuleSpec[] = [
  ...Array.from({ length: 20_000 }, (_, i): RuleSpec => ({ name: `net-${i}`, action: 'deny', ips: [`10.${(i >> 8) & 255}.${i & 255}.0/24`] })),
  { name: 'https', action: 'allow', ports: [443] }
]
const manyHosts: RuleSpec[] = [
  ...Array.from({ length: 20_000 }, (_, i): RuleSpec => ({ name: `host-${i}`, action: 'deny', hosts: [`*.ads${i}.tracker.example`], ports: [443] })),
  { name: 'https', action: 'allow', ports: [443] }
]

const smallPolicy = compilePolicy(small, 'deny')
const largePolicy = compilePolicy(large, 'deny')
const manyIpsPolicy = compilePolicy(manyIps, 'deny')
const manyHostsPolicy = compilePolicy(manyHosts, 'deny')

const name: RequestFacts = { host: 'a.b.c.www.example.org', port: 443, isName: true, client: '192.168.1.20' }
const literal: RequestFacts = { host: '93.184.216.34', port: 443, isName: false, client: '192.168.1.20' }
const address = '93.184.216.34'

// The large lists must not match the target, and the walk must end where intended.
for (const p of [smallPolicy, largePolicy, manyIpsPolicy, manyHostsPolicy]) {
  if (p !== manyHostsPolicy) assert.equal(decideRequest(p, name), undefined, 'an ips rule leaves the request stage undecided')
  assert.equal(decideAddress(p, name, address).rule, 'https')
  assert.equal(decideAddress(p, literal, address).rule, 'https')
}
assert.equal(decideRequest(largePolicy, { ...name, host: 'x.ads00042.tracker42.example' })?.rule, 'deny-hosts')
assert.equal(decideAddress(largePolicy, literal, '10.0.42.7').rule, 'deny-nets')
assert.equal(decideAddress(manyIpsPolicy, literal, '10.78.31.7').rule, 'net-19999')
assert.equal(decideRequest(manyHostsPolicy, { ...name, host: 'x.ads19999.tracker.example' })?.rule, 'host-19999')

for (const [label, p] of [
  ['small (3 rules)', smallPolicy],
  ['large (10k hosts + 10k CIDRs)', largePolicy],
  ['20k rules, each its own ips', manyIpsPolicy],
  ['20k rules, each its own hosts', manyHostsPolicy]
] as const) {
  group(`policy ${label}`, () => {
    bench('decideRequest, name (6 labels)', () => keep(decideRequest(p, name)))
    bench('decideRequest, IP literal', () => keep(decideRequest(p, literal)))
    bench('decideAddress, name → public IPv4', () => keep(decideAddress(p, name, address)))
    bench('decideAddress, IP literal', () => keep(decideAddress(p, literal, address)))
  })
}

group('compilePolicy (once per config load)', () => {
  bench('small (3 rules)', () => keep(compilePolicy(small, 'deny')))
  bench('large (10k hosts + 10k CIDRs)', () => keep(compilePolicy(large, 'deny')))
  bench('20k rules, each its own ips', () => keep(compilePolicy(manyIps, 'deny')))
})
