/**
 * Property tests (fast-check) for the two places a policy can be dodged by
 * spelling: IP literals and host names.
 *
 * 1. Under `rules: [{ action: allow, ports: [443] }]` (guard on), no spelling
 *    of a special-purpose IPv4 (127/8, 10/8, 169.254/16, 100.64/10,
 *    192.168/16) survives parseTarget → decideRequest → decideAddress as
 *    allowed: dotted, one 32-bit integer, hex, octal, per-part mixed radix,
 *    shortened a.b / a.b.c forms, IPv4-mapped, IPv4-compatible and NAT64.
 * 2. A deny rule `hosts: ["*.blocked.example", "blocked.example"]` catches
 *    every spelling of the blocked names (case, trailing dot, sub-domains,
 *    full-width letters, ideographic dots, soft hyphens), and only them.
 *
 * numRuns is bounded (≤ 1000 per property); no sockets, no DNS.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { parseConfig } from '../../src/config/load.js'
import { parseTarget, type Target } from '../../src/connect/target.js'
import { ProxyError } from '../../src/errors.js'
import { classifyAddress } from '../../src/net/address-guard.js'
import { decideAddress, decideRequest, type RequestFacts } from '../../src/policy/decide.js'
import { Decision } from '../../src/policy/evaluate.js'

const RUNS = 1000

const port443 = parseConfig(`
version: 1
rules:
  - action: allow
    ports: [443]
`, 'property-443.yaml').policy

const blocking = parseConfig(`
version: 1
default: allow
rules:
  - name: block
    action: deny
    hosts: ["*.blocked.example", "blocked.example"]
  - name: web
    action: allow
    ports: [443]
`, 'property-block.yaml').policy

function factsFor (t: Target): RequestFacts {
  return { host: t.host, port: t.port, isName: t.kind === 'name', client: '192.0.2.10' }
}

/** parseTarget, or undefined when it refuses the target as ERR_BAD_TARGET (which is safe). */
function tryParse (authority: string): Target | undefined {
  try {
    return parseTarget(authority)
  } catch (err) {
    assert.ok(err instanceof ProxyError, `parseTarget threw a non-ProxyError for ${JSON.stringify(authority)}: ${String(err)}`)
    assert.equal(err.code, 'ERR_BAD_TARGET')
    return undefined
  }
}

// ------------------------------------------------------------ IPv4 spellings

/** Special-purpose ranges under test: [first address as uint32, prefix length]. */
const RANGES: ReadonlyArray<readonly [string, number, number]> = [
  ['127.0.0.0/8', 0x7f000000, 8],
  ['10.0.0.0/8', 0x0a000000, 8],
  ['169.254.0.0/16', 0xa9fe0000, 16],
  ['100.64.0.0/10', 0x64400000, 10],
  ['192.168.0.0/16', 0xc0a80000, 16]
]

const specialV4 = fc.tuple(fc.constantFrom(...RANGES), fc.integer({ min: 0, max: 0xffffffff }))
  .map(([[cidr, base, bits], r]) => {
    const host = 32 - bits
    const n = (base + (host === 32 ? r : r % (2 ** host))) >>> 0
    return { cidr, n }
  })

function dotted (n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

type Radix = 'dec' | 'hex' | 'HEX' | 'oct' | 'padded-oct'

/** One number in a WHATWG IPv4 part radix; every form means the same value. */
function inRadix (v: number, radix: Radix): string {
  switch (radix) {
    case 'dec': return String(v)
    case 'hex': return `0x${v.toString(16)}`
    case 'HEX': return `0X${v.toString(16).toUpperCase()}`
    case 'oct': return `0${v.toString(8)}`
    case 'padded-oct': return `000${v.toString(8)}`
  }
}

const radix = fc.constantFrom<Radix>('dec', 'hex', 'HEX', 'oct', 'padded-oct')

function hexWords (n: number): [string, string] {
  return [(n >>> 16).toString(16), (n & 0xffff).toString(16)]
}

/** Upper- or lower-case every letter of an IPv6 literal at random. */
function caseMix (s: string, mask: number): string {
  let out = ''
  let i = 0
  for (const ch of s) out += /[a-f]/i.test(ch) && ((mask >> (i++ % 31)) & 1) === 1 ? ch.toUpperCase() : ch.toLowerCase()
  return out
}

interface Spelling { readonly form: string, readonly authority: string, readonly kind: 'ipv4' | 'ipv6' }

/** Every spelling we generate, from the address and some random choices. */
const spelling = fc.record({
  addr: specialV4,
  form: fc.constantFrom(
    'dotted', 'dotted-trailing-dot', 'int', 'hex', 'oct', 'parts', 'a.b24', 'a.b.c16',
    'mapped-dotted', 'mapped-hex', 'mapped-expanded', 'nat64-hex', 'nat64-dotted', 'nat64-expanded', 'compat-dotted'
  ),
  radixes: fc.tuple(radix, radix, radix, radix),
  caseMask: fc.integer({ min: 0, max: 0x7fffffff }),
  port: fc.constant(443)
}).map(({ addr, form, radixes, caseMask, port }): Spelling & { cidr: string, n: number } => {
  const { n, cidr } = addr
  const [r0, r1, r2, r3] = radixes
  const b = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255] as const
  const [hi, lo] = hexWords(n)
  let host: string
  let kind: 'ipv4' | 'ipv6' = 'ipv4'
  switch (form) {
    case 'dotted': host = dotted(n); break
    case 'dotted-trailing-dot': host = `${dotted(n)}.`; break
    case 'int': host = String(n); break
    case 'hex': host = inRadix(n, caseMask % 2 === 0 ? 'hex' : 'HEX'); break
    case 'oct': host = inRadix(n, 'oct'); break
    case 'parts': host = [inRadix(b[0], r0), inRadix(b[1], r1), inRadix(b[2], r2), inRadix(b[3], r3)].join('.'); break
    case 'a.b24': host = `${inRadix(b[0], r0)}.${inRadix(n & 0xffffff, r1)}`; break
    case 'a.b.c16': host = `${inRadix(b[0], r0)}.${inRadix(b[1], r1)}.${inRadix(n & 0xffff, r2)}`; break
    case 'mapped-dotted': kind = 'ipv6'; host = caseMix(`[::ffff:${dotted(n)}]`, caseMask); break
    case 'mapped-hex': kind = 'ipv6'; host = caseMix(`[::ffff:${hi}:${lo}]`, caseMask); break
    case 'mapped-expanded': kind = 'ipv6'; host = caseMix(`[0000:0:0:0:0:ffff:${hi.padStart(4, '0')}:${lo}]`, caseMask); break
    case 'nat64-hex': kind = 'ipv6'; host = caseMix(`[64:ff9b::${hi}:${lo}]`, caseMask); break
    case 'nat64-dotted': kind = 'ipv6'; host = caseMix(`[64:ff9b::${dotted(n)}]`, caseMask); break
    case 'nat64-expanded': kind = 'ipv6'; host = caseMix(`[0064:FF9B:0:0:0:0:${hi}:${lo.padStart(4, '0')}]`, caseMask); break
    case 'compat-dotted': kind = 'ipv6'; host = `[::${dotted(n)}]`; break
    default: throw new Error(`unhandled form ${form}`)
  }
  return { form, authority: `${host}:${port}`, kind, cidr, n }
})

describe('property: no spelling of a special-purpose IPv4 is allowed under "allow port 443"', () => {
  it('parseTarget → decideRequest → decideAddress refuses it at the special-purpose guard', () => {
    fc.assert(fc.property(spelling, (s) => {
      const t = tryParse(s.authority)
      if (t === undefined) return // refused as malformed: not allowed either
      assert.equal(t.kind, s.kind, `${s.form} ${s.authority} parsed as ${t.kind}`)
      // The canonical host carries the very address that was spelled.
      if (t.kind === 'ipv4') assert.equal(t.host, dotted(s.n), `${s.form} ${s.authority}`)
      else assert.equal(classifyAddress(t.host).embeddedIPv4, dotted(s.n), `${s.form} ${s.authority} → ${t.host}`)

      const f = factsFor(t)
      const early = decideRequest(port443, f)
      // Stage 1 can only allow provisionally (the rule has no ips matcher).
      assert.deepEqual(early === undefined ? undefined : { allow: early.allow, rule: early.rule }, { allow: true, rule: 'rule-1' })
      const v = decideAddress(port443, f, t.host)
      assert.equal(v.allow, false, `${s.form} ${s.authority} (${s.cidr}) was allowed: ${JSON.stringify(v)}`)
      assert.equal(v.rule, 'special-purpose-guard')
      assert.equal(v.prohibitedAddress, true)
      assert.equal(v.stage, 'address')
      assert.throws(() => new Decision(port443, f).judge([t.host]), { code: 'ERR_DESTINATION_PROHIBITED' })
    }), { numRuns: RUNS })
  })

  it('every generated form is exercised and accepted by parseTarget (the generator is not vacuous)', () => {
    const seen = new Map<string, number>()
    fc.assert(fc.property(spelling, (s) => {
      const t = tryParse(s.authority)
      assert.notEqual(t, undefined, `${s.form} ${s.authority} should be a valid IP literal`)
      seen.set(s.form, (seen.get(s.form) ?? 0) + 1)
    }), { numRuns: RUNS })
    assert.equal(seen.size, 15, `forms seen: ${JSON.stringify([...seen])}`)
  })

  it('the same spellings of a public address are allowed (the property is not "deny everything")', () => {
    // 93.184.216.0/24 is public: every spelling must reach rule-1 and be allowed.
    const n = 0x5db8d822 // 93.184.216.34
    for (const authority of ['93.184.216.34:443', '1572395042:443', '0x5db8d822:443', '013556154042:443', '93.12113954:443',
      '[::ffff:93.184.216.34]:443', '[::ffff:5db8:d822]:443', '[64:ff9b::5db8:d822]:443']) {
      const t = parseTarget(authority)
      const f = factsFor(t)
      const v = decideAddress(port443, f, t.host)
      assert.deepEqual({ allow: v.allow, rule: v.rule }, { allow: true, rule: 'rule-1' }, `${authority} → ${t.host}`)
      if (t.kind === 'ipv4') assert.equal(t.host, dotted(n))
    }
  })
})

// ------------------------------------------------------------ host names

const label = fc.stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?$/)

/** Random upper/lower case per letter. */
function randomCase (s: string, bits: readonly boolean[]): string {
  let out = ''
  for (let i = 0; i < s.length; i++) {
    const ch = s[i] ?? ''
    out += bits[i % Math.max(1, bits.length)] === true ? ch.toUpperCase() : ch
  }
  return out
}

/** Full-width forms (U+FF01..) of ASCII letters and digits; UTS 46 maps them back. */
function fullWidth (s: string, bits: readonly boolean[]): string {
  let out = ''
  for (let i = 0; i < s.length; i++) {
    const ch = s[i] ?? ''
    out += bits[(i + 1) % Math.max(1, bits.length)] === true && /[a-z0-9]/i.test(ch) ? String.fromCodePoint((ch.codePointAt(0) ?? 0) + 0xfee0) : ch
  }
  return out
}

const blockedSpelling = fc.record({
  sub: fc.array(label, { maxLength: 3 }),
  caseBits: fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }),
  trailingDot: fc.constantFrom('', '.', '。'),
  dot: fc.constantFrom('.', '。', '．', '｡'),
  fullWidth: fc.boolean(),
  softHyphen: fc.boolean()
}).map(({ sub, caseBits, trailingDot, dot, fullWidth: fw, softHyphen }) => {
  const canonical = [...sub, 'blocked', 'example'].join('.')
  // A soft hyphen (U+00AD) is mapped to nothing by UTS 46.
  let text = softHyphen ? canonical.replace(/blocked(?=\.example$)/, 'block\u00ADed') : canonical
  text = randomCase(text, caseBits)
  if (fw) text = fullWidth(text, caseBits)
  // Replace the dot before "example" only: other label separators stay ASCII.
  const at = text.toLowerCase().lastIndexOf('.')
  text = text.slice(0, at) + dot + text.slice(at + 1) + trailingDot
  return { text, canonical }
})

describe('property: a deny rule on "*.blocked.example" and "blocked.example"', () => {
  it('no spelling of a blocked name or sub-domain gets through', () => {
    fc.assert(fc.property(blockedSpelling, ({ text, canonical }) => {
      const t = tryParse(`${text}:443`)
      if (t === undefined) return // refused as malformed: not allowed either
      assert.equal(t.kind, 'name')
      assert.equal(t.host, canonical, `${JSON.stringify(text)} normalised to ${t.host}`)
      const v = decideRequest(blocking, factsFor(t))
      assert.ok(v !== undefined)
      assert.deepEqual({ allow: v.allow, rule: v.rule, stage: v.stage }, { allow: false, rule: 'block', stage: 'request' }, JSON.stringify(text))
    }), { numRuns: RUNS })
  })

  it('the plain-ASCII spellings are never refused by parseTarget (the property above is not vacuous)', () => {
    fc.assert(fc.property(blockedSpelling, ({ text }) => {
      if (/^[\x21-\x7e]*$/.test(text)) assert.notEqual(tryParse(`${text}:443`), undefined, JSON.stringify(text))
    }), { numRuns: RUNS })
  })

  /** Names that look like the blocked ones but are other names. */
  const lookalike = fc.record({
    sub: fc.array(label, { maxLength: 2 }),
    shape: fc.constantFrom('suffix-label', 'prefix-glued', 'dash-glued', 'suffix-glued', 'apex-parent', 'other-tld', 'truncated'),
    // Starts with a letter: a last label that is all digits makes the name an invalid IPv4.
    extra: fc.stringMatching(/^[a-z](?:[a-z0-9-]{0,10}[a-z0-9])?$/),
    caseBits: fc.array(fc.boolean(), { minLength: 1, maxLength: 40 })
  }).map(({ sub, shape, extra, caseBits }) => {
    let name: string
    switch (shape) {
      case 'suffix-label': name = [...sub, 'blocked', 'example', extra].join('.'); break // blocked.example.com
      case 'prefix-glued': name = [...sub, `${extra}blocked`, 'example'].join('.'); break // notblocked.example
      case 'dash-glued': name = [...sub, `${extra}-blocked`, 'example'].join('.'); break
      case 'suffix-glued': name = [...sub, 'blocked', `example${extra}`].join('.'); break // blocked.examplex
      case 'apex-parent': name = 'example'; break
      case 'other-tld': name = [...sub, 'blocked', 'example-org'].join('.'); break
      case 'truncated': name = [...sub, 'blocked', 'exampl'].join('.'); break
      default: throw new Error(`unhandled shape ${shape}`)
    }
    return randomCase(name, caseBits)
  })

  it('names that merely contain or resemble the blocked names are not denied by that rule', () => {
    fc.assert(fc.property(lookalike, (name) => {
      const t = tryParse(`${name}:443`)
      assert.ok(t !== undefined, `${name} should parse`)
      const v = decideRequest(blocking, factsFor(t))
      assert.ok(v !== undefined)
      assert.notEqual(v.rule, 'block', `${name} was denied by the blocked-names rule`)
      assert.deepEqual({ allow: v.allow, rule: v.rule }, { allow: true, rule: 'web' })
    }), { numRuns: RUNS })
  })

  it('named examples', () => {
    const expect: ReadonlyArray<readonly [string, string]> = [
      ['blocked.example', 'block'],
      ['BLOCKED.Example.', 'block'],
      ['a.b.blocked.example', 'block'],
      ['ＢＬＯＣＫＥＤ。ｅｘａｍｐｌｅ', 'block'],
      ['blocked.example.com', 'web'],
      ['notblocked.example', 'web'],
      ['blocked-example', 'web'],
      ['example', 'web']
    ]
    for (const [name, rule] of expect) {
      const v = decideRequest(blocking, factsFor(parseTarget(`${name}:443`)))
      assert.equal(v?.rule, rule, name)
    }
  })
})
