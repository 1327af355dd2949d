/**
 * The rule index (src/policy/rule-index.ts) only skips rules that cannot
 * match: over random policies large enough to be indexed, decideRequest and
 * decideAddress give the same verdict as the linear walk (which they run
 * when asked to explain, `skipped` given). First match is kept.
 *
 * Policies mix the matchers the index files rules under (`ips`, `hosts`)
 * with the ones it does not (`ports`, `clients`, `users`, `listeners`),
 * from small pools so that rules overlap and order matters.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { compilePolicy, lazyPolicy } from '../../src/policy/compile.js'
import { decideAddress, decideRequest, type RequestFacts } from '../../src/policy/decide.js'
import { INDEX_MIN_RULES, RuleIndex } from '../../src/policy/rule-index.js'
import { packRules, RuleSource } from '../../src/policy/rule-source.js'
import type { RuleSpec } from '../../src/policy/schema.js'

const RUNS = 300

const NAMES = ['a.example', 'b.example', 'x.a.example', 'deep.x.a.example', 'c.test', 'example']
const PATTERNS = ['a.example', 'b.example', '*.a.example', '*.example', 'c.test', '*.test', 'example', '*.x.a.example']
const CIDRS = ['10.0.0.0/8', '10.1.0.0/16', '10.1.2.3/32', '93.184.216.0/24', '127.0.0.0/8', '::1/128', '2001:db8::/32', '2001:db8:1::/48', '::ffff:10.0.0.0/104', '0.0.0.0/0']
const ADDRESSES = ['10.1.2.3', '10.9.9.9', '93.184.216.34', '127.0.0.1', '::1', '2001:db8:1::5', '2001:db8:2::5', '::ffff:10.1.2.3', '8.8.8.8']

const rule: fc.Arbitrary<RuleSpec> = fc.record({
  action: fc.constantFrom('allow', 'deny'),
  hosts: fc.option(fc.uniqueArray(fc.constantFrom(...PATTERNS), { minLength: 1, maxLength: 3 }), { nil: undefined }),
  ips: fc.option(fc.uniqueArray(fc.constantFrom(...CIDRS), { minLength: 1, maxLength: 3 }), { nil: undefined }),
  ports: fc.option(fc.uniqueArray(fc.constantFrom(443, 80, '8000-8080'), { minLength: 1, maxLength: 2 }), { nil: undefined }),
  clients: fc.option(fc.constantFrom(['127.0.0.0/8'], ['192.0.2.0/24']), { nil: undefined }),
  users: fc.option(fc.constantFrom(['alice'], ['@eng']), { nil: undefined }),
  // Route `p` starts with a parent, `d` goes direct; a rule without one takes the default route.
  via: fc.option(fc.constantFrom('p', 'd'), { nil: undefined })
}, { requiredKeys: ['action'] }).map(r => Object.fromEntries(Object.entries(r).filter(([, v]) => v !== undefined)) as RuleSpec)

const specs = fc.tuple(fc.array(rule, { minLength: INDEX_MIN_RULES, maxLength: 80 }), fc.constantFrom('allow', 'deny'), fc.boolean())
  .map(([rules, def, viaParent]) => ({ rules: rules.map((r, i) => ({ ...r, name: `r${i}` })), def: def as 'allow' | 'deny', viaParent }))
/** Route `p` starts with a parent; the default route does when `viaParent`. */
const parentFirst = (defaultParent: boolean) => (via: string | undefined): boolean => via === 'p' || (via === undefined && defaultParent)
const policy = specs.map(s => compilePolicy(s.rules, s.def, 'enforce', parentFirst(s.viaParent)))

const facts: fc.Arbitrary<RequestFacts> = fc.record({
  target: fc.oneof(fc.constantFrom(...NAMES).map(h => ({ host: h, isName: true })), fc.constantFrom(...ADDRESSES).map(h => ({ host: h, isName: false }))),
  port: fc.constantFrom(443, 80, 8080, 22),
  client: fc.constantFrom('127.0.0.1', '192.0.2.7', '198.51.100.1'),
  user: fc.option(fc.constantFrom('alice', 'bob'), { nil: undefined }),
  challenge: fc.option(fc.constantFrom('rules' as const, 'always' as const), { nil: undefined }),
  // The listener's own route (a tcp or sni listener's via), which replaces the rules' own.
  listener: fc.option(fc.constantFrom({ via: 'p', viaParent: true }, { via: 'd', viaParent: false }), { nil: undefined })
}).map(({ target, port, client, user, challenge, listener }) => ({
  ...(listener ?? {}),
  host: target.host,
  isName: target.isName,
  port,
  client,
  ...(user === undefined ? {} : { user, groups: new Set(user === 'alice' ? ['eng'] : []) }),
  ...(challenge === undefined || user !== undefined ? {} : { challenge })
}))

describe('the rule index keeps first-match semantics', () => {
  it('policies this large are indexed', () => {
    const p = compilePolicy(Array.from({ length: INDEX_MIN_RULES }, (): RuleSpec => ({ action: 'allow', ports: [443] })), 'deny')
    assert.ok(p.index !== undefined)
  })

  it('decideRequest: indexed = linear', () => {
    fc.assert(fc.property(policy, facts, (p, f) => {
      assert.deepEqual(decideRequest(p, f), decideRequest(p, f, []))
    }), { numRuns: RUNS })
  })

  it('decideAddress: indexed = linear, for every candidate address', () => {
    fc.assert(fc.property(policy, facts, fc.constantFrom(...ADDRESSES), (p, f, address) => {
      assert.deepEqual(decideAddress(p, f, address), decideAddress(p, f, address, []))
    }), { numRuns: RUNS })
  })

  it('a reload\'s policy (rules packed and index built elsewhere, both cloned as postMessage would; each rule parsed and compiled at first use) decides as compilePolicy', () => {
    fc.assert(fc.property(specs, facts, fc.constantFrom(...ADDRESSES), (s, f, address) => {
      const eager = compilePolicy(s.rules, s.def, 'enforce', parentFirst(s.viaParent))
      const lazy = lazyPolicy(RuleSource.unpack(structuredClone(packRules(s.rules))), s.def, 'enforce', parentFirst(s.viaParent), { sni_match: false, tls_only: false }, structuredClone(RuleIndex.of(s.rules).wire()))
      assert.deepEqual(decideRequest(lazy, f), decideRequest(eager, f))
      assert.deepEqual(decideAddress(lazy, f, address), decideAddress(eager, f, address))
      assert.deepEqual(decideAddress(lazy, f, address, []), decideAddress(eager, f, address, []))
    }), { numRuns: RUNS })
  })
})
