import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import ipaddr from 'ipaddr.js'
import { classifyAddress, isSpecialPurpose, SPECIAL_RANGES, type AddressClass } from '../../src/net/address-guard.js'

const RUNS = { numRuns: 2000 }

interface Case {
  readonly name: string
  readonly ip: string
  readonly special: boolean
  readonly label: string
  readonly range?: string
  readonly embeddedIPv4?: string
  /** Canonical text, when it differs from `ip`. */
  readonly address?: string
}

function pub (name: string, ip: string, address?: string): Case {
  return address === undefined ? { name, ip, special: false, label: 'public' } : { name, ip, special: false, label: 'public', address }
}

function sp (name: string, ip: string, label: string, range: string, extra: Partial<Case> = {}): Case {
  return { name, ip, special: true, label, range, ...extra }
}

// Teredo clients below: server 65.54.227.120 (4136:e378), flags 8000, port 63bf,
// client IPv4 = NOT of the last 32 bits (RFC 4380 §4).
const TEREDO = '2001:0:4136:e378:8000:63bf:'

const CASES: readonly Case[] = [
  // IPv4, with the boundaries on both sides of the tricky ranges
  sp('this network', '0.0.0.0', 'this_network', '0.0.0.0/8'),
  sp('this network, top', '0.255.255.255', 'this_network', '0.0.0.0/8'),
  pub('just above this network', '1.0.0.0'),
  sp('private 10/8', '10.0.0.1', 'private', '10.0.0.0/8'),
  pub('just below 10/8', '9.255.255.255'),
  pub('just above 10/8', '11.0.0.0'),
  pub('just below CGNAT', '100.63.255.255'),
  sp('CGNAT first', '100.64.0.0', 'cgnat', '100.64.0.0/10'),
  sp('CGNAT last', '100.127.255.255', 'cgnat', '100.64.0.0/10'),
  pub('just above CGNAT', '100.128.0.0'),
  sp('Alibaba metadata inside CGNAT', '100.100.100.200', 'metadata', '100.100.100.200/32'),
  sp('loopback', '127.0.0.1', 'loopback', '127.0.0.0/8'),
  sp('loopback, top', '127.255.255.255', 'loopback', '127.0.0.0/8'),
  sp('loopback, inet_aton short form', '127.1', 'loopback', '127.0.0.0/8', { address: '127.0.0.1' }),
  sp('loopback, inet_aton integer form', '2130706433', 'loopback', '127.0.0.0/8', { address: '127.0.0.1' }),
  sp('cloud metadata beats link-local', '169.254.169.254', 'metadata', '169.254.169.254/32'),
  sp('link-local next to metadata', '169.254.169.253', 'link_local', '169.254.0.0/16'),
  sp('link-local', '169.254.0.1', 'link_local', '169.254.0.0/16'),
  pub('just below 172.16/12', '172.15.255.255'),
  sp('private 172.16/12 first', '172.16.0.0', 'private', '172.16.0.0/12'),
  sp('private 172.16/12 last', '172.31.255.255', 'private', '172.16.0.0/12'),
  pub('just above 172.16/12', '172.32.0.0'),
  sp('IETF protocol assignments', '192.0.0.8', 'ietf_protocol', '192.0.0.0/24'),
  sp('TEST-NET-1', '192.0.2.1', 'documentation', '192.0.2.0/24'),
  sp('AS112-v4', '192.31.196.1', 'ietf_protocol', '192.31.196.0/24'),
  sp('AMT', '192.52.193.1', 'ietf_protocol', '192.52.193.0/24'),
  sp('6to4 relay anycast', '192.88.99.1', 'reserved', '192.88.99.0/24'),
  sp('private 192.168/16', '192.168.1.1', 'private', '192.168.0.0/16'),
  pub('just above 192.168/16', '192.169.0.0'),
  sp('AS112 direct delegation', '192.175.48.1', 'ietf_protocol', '192.175.48.0/24'),
  pub('just below benchmarking', '198.17.255.255'),
  sp('benchmarking', '198.18.0.1', 'benchmarking', '198.18.0.0/15'),
  sp('benchmarking, top', '198.19.255.255', 'benchmarking', '198.18.0.0/15'),
  pub('just above benchmarking', '198.20.0.0'),
  sp('TEST-NET-2', '198.51.100.1', 'documentation', '198.51.100.0/24'),
  sp('TEST-NET-3', '203.0.113.1', 'documentation', '203.0.113.0/24'),
  pub('just below multicast', '223.255.255.255'),
  sp('multicast', '224.0.0.1', 'multicast', '224.0.0.0/4'),
  sp('multicast, top', '239.255.255.255', 'multicast', '224.0.0.0/4'),
  sp('class E', '240.0.0.1', 'reserved', '240.0.0.0/4'),
  sp('class E, next to broadcast', '255.255.255.254', 'reserved', '240.0.0.0/4'),
  sp('limited broadcast', '255.255.255.255', 'broadcast', '255.255.255.255/32'),
  pub('Google DNS', '8.8.8.8'),
  pub('Cloudflare DNS', '1.1.1.1'),

  // IPv6 native ranges
  sp('unspecified', '::', 'unspecified', '::/128'),
  sp('loopback v6', '::1', 'loopback', '::1/128'),
  sp('discard-only', '100::1', 'discard_only', '100::/64'),
  sp('outside discard-only /64', '100:0:0:1::', 'reserved', '100::/8'),
  sp('IETF protocol assignments v6', '2001:1::1', 'ietf_protocol', '2001::/23'),
  sp('IETF protocol assignments, top of /23', '2001:1ff:ffff::1', 'ietf_protocol', '2001::/23'),
  pub('just above 2001::/23', '2001:200::1'),
  sp('benchmarking v6', '2001:2::1', 'benchmarking', '2001:2::/48'),
  sp('documentation 2001:db8::/32', '2001:db8::1', 'documentation', '2001:db8::/32', { ip: '2001:DB8:0:0:0:0:0:1', address: '2001:db8::1' }),
  sp('documentation 3fff::/20', '3fff:fff::1', 'documentation', '3fff::/20'),
  pub('just above 3fff::/20', '3fff:1000::1'),
  sp('AS112 direct delegation v6', '2620:4f:8000::1', 'ietf_protocol', '2620:4f:8000::/48'),
  sp('unique local fc00::/8', 'fc00::1', 'unique_local', 'fc00::/7'),
  sp('unique local fd00::/8', 'fd12:3456::1', 'unique_local', 'fc00::/7'),
  sp('AWS IMDS v6', 'fd00:ec2::254', 'metadata', 'fd00:ec2::254/128'),
  sp('next to AWS IMDS v6', 'fd00:ec2::253', 'unique_local', 'fc00::/7'),
  sp('GCP metadata v6', 'fd20:ce::254', 'metadata', 'fd20:ce::254/128'),
  sp('link-local v6', 'fe80::1', 'link_local', 'fe80::/10'),
  sp('link-local v6 with zone id', 'fe80::1%eth0', 'link_local', 'fe80::/10'),
  sp('link-local v6, top', 'febf:ffff::1', 'link_local', 'fe80::/10'),
  sp('site-local (deprecated)', 'fec0::1', 'reserved', 'fec0::/10'),
  sp('IETF reserved fe00::/9', 'fe00::1', 'reserved', 'fe00::/9'),
  sp('multicast v6', 'ff02::1', 'multicast', 'ff00::/8'),
  sp('outside 2000::/3', '4000::1', 'reserved', '4000::/3'),
  sp('SRv6 SIDs, outside 2000::/3', '5f00::1', 'reserved', '4000::/3'),
  sp('just below 2000::/3', '1fff:ffff::1', 'reserved', '1000::/4'),
  sp('RFC 6145 translated, inside ::/8', '::ffff:0:7f00:1', 'reserved', '::/8'),
  ...['200::/7', '400::/6', '800::/5', '6000::/3', '8000::/3', 'a000::/3', 'c000::/3', 'e000::/4', 'f000::/5', 'f800::/6']
    .map((range) => sp('IETF reserved ' + range, range.slice(0, range.indexOf('/')) + '1', 'reserved', range)),
  pub('first of 2000::/3', '2000::1'),
  pub('Cloudflare v6', '2606:4700::1111'),
  pub('Google DNS v6', '2001:4860:4860::8888'),

  // IPv4-mapped ::ffff:0:0/96: judged purely by the IPv4
  sp('mapped loopback', '::ffff:127.0.0.1', 'loopback', '127.0.0.0/8', { address: '::ffff:7f00:1', embeddedIPv4: '127.0.0.1' }),
  sp('mapped private', '::ffff:10.0.0.1', 'private', '10.0.0.0/8', { address: '::ffff:a00:1', embeddedIPv4: '10.0.0.1' }),
  sp('mapped metadata', '::ffff:a9fe:a9fe', 'metadata', '169.254.169.254/32', { embeddedIPv4: '169.254.169.254' }),
  { ...pub('mapped public', '::ffff:8.8.8.8', '::ffff:808:808'), embeddedIPv4: '8.8.8.8' },

  // IPv4-compatible ::/96 (deprecated): special even around a public IPv4
  sp('compatible loopback', '::127.0.0.1', 'loopback', '127.0.0.0/8', { address: '::7f00:1', embeddedIPv4: '127.0.0.1' }),
  sp('compatible private', '::a00:1', 'private', '10.0.0.0/8', { embeddedIPv4: '10.0.0.1' }),
  sp('compatible metadata', '::169.254.169.254', 'metadata', '169.254.169.254/32', { address: '::a9fe:a9fe', embeddedIPv4: '169.254.169.254' }),
  sp('compatible public (not read as mapped)', '::8.8.8.8', 'reserved', '::/96', { address: '::808:808', embeddedIPv4: '8.8.8.8' }),

  // NAT64 64:ff9b::/96 (RFC 6052) and local-use 64:ff9b:1::/48 (RFC 8215)
  sp('NAT64 loopback', '64:ff9b::127.0.0.1', 'loopback', '127.0.0.0/8', { address: '64:ff9b::7f00:1', embeddedIPv4: '127.0.0.1' }),
  sp('NAT64 private', '64:ff9b::a00:1', 'private', '10.0.0.0/8', { embeddedIPv4: '10.0.0.1' }),
  sp('NAT64 metadata', '64:ff9b::a9fe:a9fe', 'metadata', '169.254.169.254/32', { embeddedIPv4: '169.254.169.254' }),
  { ...pub('NAT64 public', '64:ff9b::808:808'), embeddedIPv4: '8.8.8.8' },
  sp('NAT64 local-use loopback', '64:ff9b:1::7f00:1', 'loopback', '127.0.0.0/8', { embeddedIPv4: '127.0.0.1' }),
  sp('NAT64 local-use public', '64:ff9b:1::808:808', 'translation', '64:ff9b:1::/48', { embeddedIPv4: '8.8.8.8' }),

  // 6to4 2002::/16 (RFC 3056): IPv4 in bits 16-48
  sp('6to4 loopback', '2002:7f00:1::1', 'loopback', '127.0.0.0/8', { embeddedIPv4: '127.0.0.1' }),
  sp('6to4 private', '2002:a00:1:1::1', 'private', '10.0.0.0/8', { embeddedIPv4: '10.0.0.1' }),
  sp('6to4 metadata', '2002:a9fe:a9fe::', 'metadata', '169.254.169.254/32', { embeddedIPv4: '169.254.169.254' }),
  { ...pub('6to4 public', '2002:808:808::1'), embeddedIPv4: '8.8.8.8' },

  // Teredo 2001::/32 (RFC 4380): always special
  sp('Teredo loopback client', TEREDO + '80ff:fffe', 'loopback', '127.0.0.0/8', { embeddedIPv4: '127.0.0.1' }),
  sp('Teredo private client', TEREDO + 'f5ff:fffe', 'private', '10.0.0.0/8', { embeddedIPv4: '10.0.0.1' }),
  sp('Teredo metadata client', TEREDO + '5601:5601', 'metadata', '169.254.169.254/32', { embeddedIPv4: '169.254.169.254' }),
  sp('Teredo public client', TEREDO + 'f7f7:f7f7', 'translation', '2001::/32', { embeddedIPv4: '8.8.8.8' })
]

function expected (c: Case): AddressClass {
  const base = { address: c.address ?? c.ip, special: c.special, label: c.label }
  return {
    ...base,
    ...(c.range === undefined ? {} : { range: c.range }),
    ...(c.embeddedIPv4 === undefined ? {} : { embeddedIPv4: c.embeddedIPv4 })
  }
}

for (const c of CASES) {
  test(`${c.name}: ${c.ip}`, () => {
    assert.deepEqual(classifyAddress(c.ip), expected(c))
    assert.equal(isSpecialPurpose(c.ip), c.special)
  })
}

test('the case table has at least 40 cases and reaches every special range', () => {
  assert.ok(CASES.length >= 40)
  const hit = new Set(CASES.map((c) => c.range))
  const missed = SPECIAL_RANGES.filter((r) => !hit.has(r.cidr)).map((r) => r.cidr)
  assert.deepEqual(missed, [])
})

test('SPECIAL_RANGES rows are canonical network CIDRs with no duplicates', () => {
  const seen = new Set<string>()
  for (const { cidr } of SPECIAL_RANGES) {
    assert.ok(!seen.has(cidr), `duplicate ${cidr}`)
    seen.add(cidr)
    const [addr, bits] = ipaddr.parseCIDR(cidr)
    const net = addr instanceof ipaddr.IPv4
      ? ipaddr.IPv4.networkAddressFromCIDR(cidr).toString()
      : ipaddr.IPv6.networkAddressFromCIDR(cidr).toRFC5952String()
    assert.equal(`${net}/${bits}`, cidr)
  }
})

test('non-IP strings throw TypeError', () => {
  for (const bad of ['', 'example.com', 'localhost', '256.0.0.1', '1.2.3.4/24', '[::1]', '::1::', ' 1.2.3.4', '2001:db8::1/32']) {
    assert.throws(() => classifyAddress(bad), TypeError, bad)
    assert.throws(() => isSpecialPurpose(bad), TypeError, bad)
  }
})

// --- properties -------------------------------------------------------------

const u32 = fc.integer({ min: 0, max: 0xffffffff })
const u16 = fc.integer({ min: 0, max: 0xffff })

function v4 (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

function v6 (words: readonly number[]): string {
  return words.map((w) => w.toString(16)).join(':')
}

const V4_ROWS = SPECIAL_RANGES.filter((r) => r.cidr.includes('.')).map((r) => {
  const [net, bits] = ipaddr.IPv4.parseCIDR(r.cidr)
  const o = net.octets
  const mask = bits === 0 ? 0 : (~0 << (32 - bits)) >>> 0
  return { ...r, base: (((o[0] ?? 0) << 24 | (o[1] ?? 0) << 16 | (o[2] ?? 0) << 8 | (o[3] ?? 0)) & mask) >>> 0, mask }
})

/** Any IPv4 inside one of the special IPv4 ranges. */
const specialV4 = fc.tuple(fc.constantFrom(...V4_ROWS), u32)
  .map(([row, n]) => (row.base | (n & ~row.mask)) >>> 0)

test('property: an IPv4 in any special range is special, and so are its mapped, NAT64, 6to4 and Teredo forms', () => {
  fc.assert(fc.property(specialV4, fc.array(u16, { minLength: 5, maxLength: 5 }), (n, rest) => {
    const text = v4(n)
    const plain = classifyAddress(text)
    assert.equal(plain.special, true, text)
    const hi = n >>> 16
    const lo = n & 0xffff
    const forms = [
      `::ffff:${text}`,
      `64:ff9b::${text}`,
      v6([0x2002, hi, lo, ...rest]),
      v6([0x2001, 0, rest[0] ?? 0, rest[1] ?? 0, rest[2] ?? 0, rest[3] ?? 0, ~hi & 0xffff, ~lo & 0xffff])
    ]
    for (const form of forms) {
      const got = classifyAddress(form)
      assert.equal(isSpecialPurpose(form), true, form)
      assert.deepEqual([got.special, got.label, got.range, got.embeddedIPv4], [true, plain.label, plain.range, text], form)
    }
  }), RUNS)
})

test('property: a public IPv4 stays public when mapped, NAT64 or 6to4, but not as compatible or Teredo', () => {
  fc.assert(fc.property(u32.filter((n) => !isSpecialPurpose(v4(n))), u16, (n, s) => {
    const text = v4(n)
    const hi = n >>> 16
    const lo = n & 0xffff
    for (const form of [`::ffff:${text}`, `64:ff9b::${text}`, v6([0x2002, hi, lo, s, 0, 0, 0, 1])]) {
      assert.deepEqual(classifyAddress(form), { address: ipaddr.IPv6.parse(form).toRFC5952String(), special: false, label: 'public', embeddedIPv4: text })
    }
    const compat = classifyAddress(v6([0, 0, 0, 0, 0, 0, hi, lo]))
    assert.deepEqual([compat.special, compat.label, compat.range], [true, 'reserved', '::/96'])
    const teredo = classifyAddress(v6([0x2001, 0, s, 0, 0, s, ~hi & 0xffff, ~lo & 0xffff]))
    assert.deepEqual([teredo.special, teredo.label, teredo.range, teredo.embeddedIPv4], [true, 'translation', '2001::/32', text])
  }), RUNS)
})

test('property: IPv4 verdicts agree with ipaddr.js range() (special iff not unicast)', () => {
  fc.assert(fc.property(u32, (n) => {
    const text = v4(n)
    assert.equal(isSpecialPurpose(text), ipaddr.IPv4.parse(text).range() !== 'unicast', text)
  }), RUNS)
})

/** IPv6 words biased toward the prefixes the guard cares about. */
const word0 = fc.oneof(fc.constantFrom(0, 0x64, 0x100, 0x2001, 0x2002, 0x2620, 0x3fff, 0xfc00, 0xfd00, 0xfe80, 0xfec0, 0xff02), u16)
const wordN = fc.oneof(fc.constantFrom(0, 1, 2, 3, 4, 0x4f, 0xdb8, 0xec2, 0xff9b, 0xffff, 0x8000), u16)
const interestingV6 = fc.tuple(word0, fc.array(wordN, { minLength: 7, maxLength: 7 })).map(([w, rest]) => v6([w, ...rest]))

test('property: classifyAddress never throws on fc.ipV4()/fc.ipV6() and its result is self-consistent', () => {
  fc.assert(fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), interestingV6), (ip) => {
    const got = classifyAddress(ip)
    assert.equal(isSpecialPurpose(ip), got.special, ip)
    assert.equal(got.label === 'public', !got.special, ip)
    assert.equal(got.range === undefined, !got.special, ip)
    assert.deepEqual(classifyAddress(got.address), got, ip)
  }), RUNS)
})

test('property: whatever ipaddr.js files under a non-unicast, non-embedding IPv6 range is special', () => {
  const embedding = new Set(['unicast', 'ipv4Mapped', 'rfc6052', '6to4'])
  fc.assert(fc.property(interestingV6, (ip) => {
    if (!embedding.has(ipaddr.IPv6.parse(ip).range())) assert.equal(isSpecialPurpose(ip), true, ip)
  }), RUNS)
})

test('property: every address built in 127/8 from a 32-bit integer is loopback', () => {
  fc.assert(fc.property(u32, (n) => {
    const ip = `127.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
    const got = classifyAddress(ip)
    assert.deepEqual([got.special, got.label, got.range], [true, 'loopback', '127.0.0.0/8'], ip)
  }), RUNS)
})
