/**
 * parseTarget (src/connect/target.ts): runs once per CONNECT. A few common
 * spellings, the WHATWG IPv4 path (URL parser), IPv6, IDN, and a rejected one.
 */
import assert from 'node:assert/strict'
import { bench, do_not_optimize as keep, group } from 'mitata'
import { parseTarget } from '../../src/connect/target.js'

const TARGETS: ReadonlyArray<readonly [string, string]> = [
  ['name', 'example.com:443'],
  ['name, mixed case + trailing dot', 'WWW.Example.COM.:8443'],
  ['long name (6 labels)', 'a1.b2.c3.service.eu-west-1.example.net:443'],
  ['IPv4', '127.0.0.1:443'],
  ['IPv4, odd spelling', '0x7f.1:443'],
  ['IPv6', '[2001:db8::1]:443'],
  ['IDN', 'bücher.example:443']
]

// What is measured must be what it says: each of these parses.
for (const [, t] of TARGETS) assert.doesNotThrow(() => parseTarget(t), t)
assert.equal(parseTarget('0x7f.1:443').host, '127.0.0.1')
assert.throws(() => parseTarget('user@example.com:443'))

group('parseTarget', () => {
  for (const [what, t] of TARGETS) bench(`${what}: ${t}`, () => keep(parseTarget(t)))
  bench('rejected (userinfo): user@example.com:443', () => {
    try {
      parseTarget('user@example.com:443')
    } catch (err) {
      keep(err)
    }
  })
})
