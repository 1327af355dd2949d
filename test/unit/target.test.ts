import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseTarget } from '../../src/connect/target.js'
import { ProxyError } from '../../src/errors.js'

const good: ReadonlyArray<[string, string, string]> = [
  // input, canonical authority, kind
  ['example.com:443', 'example.com:443', 'name'],
  ['EXAMPLE.Com.:443', 'example.com:443', 'name'],
  ['x_y.internal:8443', 'x_y.internal:8443', 'name'],
  ['1password.com:443', '1password.com:443', 'name'],
  ['bücher.de:443', 'xn--bcher-kva.de:443', 'name'],
  ['93.184.216.34:443', '93.184.216.34:443', 'ipv4'],
  ['127.1:443', '127.0.0.1:443', 'ipv4'],
  ['0x7f.1:443', '127.0.0.1:443', 'ipv4'],
  ['2130706433:443', '127.0.0.1:443', 'ipv4'],
  ['017700000001:443', '127.0.0.1:443', 'ipv4'],
  ['[::1]:443', '[::1]:443', 'ipv6'],
  ['[2001:DB8:0:0::1]:443', '[2001:db8::1]:443', 'ipv6'],
  ['[::ffff:127.0.0.1]:443', '[::ffff:7f00:1]:443', 'ipv6'],
  ['[::8.8.8.8]:443', '[::808:808]:443', 'ipv6'],
  ['a.b:1', 'a.b:1', 'name'],
  ['a.b:65535', 'a.b:65535', 'name']
]

for (const [input, authority, kind] of good) {
  test(`accepts ${input}`, () => {
    const t = parseTarget(input)
    assert.equal(t.authority, authority)
    assert.equal(t.kind, kind)
  })
}

const bad: ReadonlyArray<[string, RegExp]> = [
  ['', /empty/],
  ['example.com', /port is missing/],
  ['example.com:', /port is missing/],
  ['example.com:0', /1-65535/],
  ['example.com:65536', /1-65535/],
  ['example.com:+443', /1-65535/],
  ['example.com:44a', /1-65535/],
  ['example.com:0443443', /1-65535/],
  [':443', /host is empty/],
  ['user:pass@example.com:443', /userinfo/],
  ['/foo', /without scheme or path/],
  ['example.com:443/path', /without scheme or path/],
  ['https://example.com:443', /without scheme or path/],
  ['exa mple.com:443', /character/],
  ['exa$mple.com:443', /character/],
  ['a..b:443', /empty label/],
  ['-a.com:443', /character/],
  [`${'a'.repeat(64)}.com:443`, /63/],
  [`${'a.'.repeat(127)}com:443`, /253|too long/],
  ['::1:443', /brackets/],
  ['[::1]443', /port is missing/],
  ['[::1', /unterminated/],
  ['[fe80::1%25eth0]:443', /zone/],
  ['[not-v6]:443', /IPv6/],
  ['foo.123:443', /numeric/],
  ['1.2.3.4.5:443', /numeric/],
  ['256.1.1.1:443', /numeric/]
]

for (const [input, detail] of bad) {
  test(`rejects ${JSON.stringify(input)} with a specific reason`, () => {
    assert.throws(() => parseTarget(input), (err: unknown) => {
      assert.ok(err instanceof ProxyError)
      assert.equal(err.code, 'ERR_BAD_TARGET')
      assert.equal(err.status, 400)
      assert.match(err.message, detail)
      return true
    })
  })
}

test('rejects a missing target', () => {
  assert.throws(() => parseTarget(undefined), /empty/)
})
