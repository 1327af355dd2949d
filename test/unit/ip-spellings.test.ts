/**
 * One address, every spelling, every matcher (issue 10, defect 2; issue 11,
 * finding 5): whatever module reads an address, each spelling of it gets
 * the same answer. All of them go through src/net/ip.ts; this test is what
 * fails if a second parser creeps back in.
 *
 * IPv4-compatible `::a.b.c.d` (RFC 4291 §2.5.5.1) is IPv6 `::HHHH:HHHH`, as
 * inet_pton and so net.connect read it, never the IPv4 it resembles;
 * IPv4-mapped `::ffff:a.b.c.d` is dialed as the IPv4, so it matches as one.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { classifyAddress, isSpecialPurpose } from '../../src/net/address-guard.js'
import { canonicalIp, parseCidr, toIpKey } from '../../src/net/ip.js'
import { selfMatcher } from '../../src/net/self.js'
import { compileCidrs } from '../../src/policy/match.js'
import { compilePolicy } from '../../src/policy/compile.js'
import { decideAddress } from '../../src/policy/decide.js'
import { Decision } from '../../src/policy/evaluate.js'
import { stillAllowed } from '../../src/policy/recheck.js'
import { parseTarget } from '../../src/connect/target.js'

/** Canonical form → spellings of that one address. */
const SPELLINGS: Readonly<Record<string, readonly string[]>> = {
  '127.0.0.2': ['127.0.0.2'],
  '::7f00:2': ['::7f00:2', '::127.0.0.2', '0:0:0:0:0:0:7f00:2', '0::127.0.0.2', '::0:127.0.0.2', '0:0:0:0:0:0:127.0.0.2', '::7F00:2', '0000:0000::7f00:0002'],
  '::ffff:7f00:2': ['::ffff:7f00:2', '::ffff:127.0.0.2', '::FFFF:7F00:2', '0:0:0:0:0:ffff:127.0.0.2', '0::ffff:127.0.0.2'],
  '::a00:1': ['::a00:1', '::10.0.0.1', '0:0:0:0:0:0:10.0.0.1'],
  '64:ff9b::7f00:2': ['64:ff9b::7f00:2', '64:ff9b::127.0.0.2', '64:FF9B:0:0:0:0:7f00:2'],
  '::1': ['::1', '0:0:0:0:0:0:0:1', '::0:1', '0000::0001']
}

const CIDR_SETS = [['127.0.0.2/32'], ['127.0.0.0/8'], ['::/96'], ['::ffff:0:0/96'], ['::7f00:0/104'], ['::1/128'], ['64:ff9b::/96'], ['10.0.0.0/8']]

function facts (host: string) {
  return { host, port: 443, isName: false, client: '127.0.0.1' }
}

describe('every spelling of an address gets one answer from every matcher', () => {
  for (const [canonical, spellings] of Object.entries(SPELLINGS)) {
    it(canonical, () => {
      const answers = (spelling: string): unknown => {
        const policies = CIDR_SETS.map(ips => compilePolicy([{ action: 'allow', ips }], 'deny'))
        return {
          canonical: canonicalIp(spelling),
          key: toIpKey(spelling),
          classify: (({ address: _a, ...rest }) => rest)(classifyAddress(spelling)),
          special: isSpecialPurpose(spelling),
          cidrs: CIDR_SETS.map(c => compileCidrs(c).match(toIpKey(spelling) ?? { v4: true, bytes: [] })),
          decide: policies.map(p => decideAddress(p, facts(canonical), spelling).allow),
          judged: policies.map(p => { try { return new Decision(p, facts(canonical)).judge([spelling]) } catch (err) { return (err as { code?: string }).code } }),
          recheck: policies.map(p => stillAllowed(p, facts(canonical), { address: spelling, port: 443 }, false)),
          self: selfMatcher([{ address: '127.0.0.2', port: 443, family: 'IPv4' }, { address: '::1', port: 443, family: 'IPv6' }])(spelling, 443)
        }
      }
      const first = answers(canonical)
      for (const s of spellings) assert.deepEqual(answers(s), first, `${s} is judged unlike ${canonical}`)
      assert.equal(canonicalIp(canonical), canonical)
    })
  }

  it('IPv4-compatible ::127.0.0.2 is never judged as 127.0.0.2 (issue 11, finding 5)', () => {
    const p = compilePolicy([{ name: 'one', action: 'allow', ips: ['127.0.0.2/32'] }], 'deny')
    assert.equal(decideAddress(p, facts('127.0.0.2'), '127.0.0.2').allow, true)
    for (const s of SPELLINGS['::7f00:2'] ?? []) {
      const v = decideAddress(p, facts('::7f00:2'), s)
      assert.equal(v.allow, false, s)
      assert.equal(v.rule, 'default', s)
      // The judged address is the dialed one: the canonical IPv6 text.
      assert.throws(() => new Decision(p, facts('::7f00:2')).judge([s]), { code: 'ERR_POLICY_DENIED' })
    }
    const any = compilePolicy([{ action: 'allow' }], 'deny')
    for (const s of SPELLINGS['::7f00:2'] ?? []) {
      assert.equal(decideAddress(any, facts('::7f00:2'), s).rule, 'special-purpose-guard', s)
    }
  })

  it('a judged candidate is the canonical spelling that is dialed', () => {
    const p = compilePolicy([{ action: 'allow', ips: ['::/96'] }], 'deny')
    assert.deepEqual(new Decision(p, { host: 'compat.test', port: 443, isName: true, client: '127.0.0.1' }).judge(['::127.0.0.2']), ['::7f00:2'])
  })

  it('targets, CIDRs and addresses agree on each spelling', () => {
    for (const [canonical, spellings] of Object.entries(SPELLINGS)) {
      for (const s of spellings) {
        const t = parseTarget(s.includes(':') ? `[${s}]:443` : `${s}:443`)
        assert.equal(t.host, canonical, s)
        assert.deepEqual(parseCidr(s), parseCidr(canonical), s)
      }
    }
  })
})

describe('names that normalise into IP literals are IP literals (issue 12)', () => {
  it('169.254.169.254 followed by a soft hyphen is the metadata address, not a name', () => {
    const t = parseTarget('169.254.169.254\u00ad:443')
    assert.equal(t.kind, 'ipv4')
    assert.equal(t.host, '169.254.169.254')
  })

  it('a percent-encoded target is refused, not decoded', () => {
    assert.throws(() => parseTarget('%31%32%37.0.0.1:443'), { code: 'ERR_BAD_TARGET' })
  })
})
