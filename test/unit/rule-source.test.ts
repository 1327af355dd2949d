/**
 * A reload's rules arrive packed (src/policy/rule-source.ts): one JSON text,
 * each rule parsed at its first use. Packed or not, a RuleSource gives the
 * same specs and the same facts about them.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { packRules, RuleSource } from '../../src/policy/rule-source.js'
import type { RuleSpec } from '../../src/policy/schema.js'

const RULES: RuleSpec[] = [
  { name: 'a', action: 'allow', hosts: ['*.example.com', 'b\u00fccher.de'], ports: [443, '8000-8080'] },
  { action: 'deny', ips: ['10.0.0.0/8'], listeners: ['main', 'other'] },
  { name: 'c,"]', action: 'allow', clients: ['192.0.2.0/24'], users: ['alice', '@eng'], via: 'corp', sni_match: true },
  { action: 'deny', listeners: ['nope'] }
]

describe('RuleSource', () => {
  it('packed and unpacked give the same specs, one at a time or all at once', () => {
    const plain = RuleSource.of(RULES)
    const packed = RuleSource.unpack(structuredClone(packRules(RULES)))
    assert.equal(packed.size, RULES.length)
    for (let i = RULES.length - 1; i >= 0; i--) assert.deepEqual(packed.at(i), RULES[i])
    assert.deepEqual(packed.all(), plain.all())
    assert.deepEqual(RuleSource.unpack(packRules(RULES)).all(), RULES)
  })

  it('all() keeps the spec objects at() already handed out', () => {
    const packed = RuleSource.unpack(packRules(RULES))
    const first = packed.at(2)
    assert.equal(packed.all()[2], first)
    assert.equal(packed.at(2), first)
  })

  it('what the event loop needs of every rule travels with them', () => {
    for (const s of [RuleSource.of(RULES), RuleSource.unpack(packRules(RULES))]) {
      assert.equal(s.usesClients, true)
      assert.deepEqual(s.listenerRefs, [[1, 0, 'main'], [1, 1, 'other'], [3, 0, 'nope']])
      assert.deepEqual(s.vias, [[2, 'corp']])
    }
    const none = RuleSource.unpack(packRules([{ action: 'allow' }]))
    assert.equal(none.usesClients, false)
    assert.deepEqual(none.listenerRefs, [])
    assert.deepEqual(none.vias, [])
  })

  it('no rules', () => {
    const s = RuleSource.unpack(packRules([]))
    assert.equal(s.size, 0)
    assert.deepEqual(s.all(), [])
  })
})
