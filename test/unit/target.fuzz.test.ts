/**
 * Fuzzing the authority parser, connect/target.ts parseTarget (issue 11,
 * "Fuzzing"). Properties, over arbitrary strings and over near-valid
 * authorities (names, IPv4 in every radix, IPv6, brackets, ports, stray
 * `@ / % [ ]`, non-ASCII, random edits):
 *
 * - the result is a Target or a ProxyError ERR_BAD_TARGET (400), nothing else;
 * - a parsed target re-parses to itself (`authority` is a fixed point);
 * - IP literals are canonical as net/ip.ts canonicalIp says, a name is never
 *   an IP literal, and where canonicalIp also reads the raw host as an IPv4,
 *   both readings agree.
 *
 * Bounded: a few thousand runs in `npm test`; FUZZ_RUNS scales them.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { parseTarget, type Target } from '../../src/connect/target.js'
import { ProxyError } from '../../src/errors.js'
import { canonicalIp } from '../../src/net/ip.js'
import { fuzzParams, mutated } from '../helpers/fuzz.js'

/** parseTarget's outcome; any other throw fails the property with the input named. */
function outcome (input: string): Target | ProxyError {
  try {
    return parseTarget(input)
  } catch (err) {
    assert.ok(err instanceof ProxyError, `parseTarget(${JSON.stringify(input)}) threw a non-ProxyError: ${String(err)}`)
    assert.equal(err.code, 'ERR_BAD_TARGET', `parseTarget(${JSON.stringify(input)}): ${err.code}`)
    assert.equal(err.status, 400)
    assert.ok(err.detail !== undefined && err.detail !== '', `a refusal says why: ${JSON.stringify(input)}`)
    return err
  }
}

/** Every property on one input. */
function check (input: string): void {
  const t = outcome(input)
  if (t instanceof ProxyError) return
  assert.ok(t.port >= 1 && t.port <= 65535 && Number.isInteger(t.port), `port of ${JSON.stringify(input)}`)
  // A fixed point: the canonical authority parses to the same target.
  assert.deepEqual(outcome(t.authority), t, `re-parse of ${JSON.stringify(input)} → ${t.authority}`)
  const canon = canonicalIp(t.host)
  if (t.kind === 'name') {
    assert.equal(canon, undefined, `${JSON.stringify(input)} → name ${t.host}, which canonicalIp reads as ${String(canon)}`)
    assert.match(t.host, /^[a-z0-9_.-]+$/, `a name is lower-case ASCII: ${JSON.stringify(input)}`)
    assert.equal(t.authority, `${t.host}:${t.port}`)
  } else {
    assert.equal(canon, t.host, `${JSON.stringify(input)} → ${t.kind} ${t.host} is not canonical (canonicalIp: ${String(canon)})`)
    assert.equal(t.kind === 'ipv6', t.host.includes(':'), `kind of ${t.host}`)
    assert.equal(t.authority, t.kind === 'ipv6' ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`)
  }
  // Where the one IP parser also reads the raw host as an IP literal, the two readings agree.
  const raw = rawHost(input)
  const rawCanon = raw === undefined ? undefined : canonicalIp(raw)
  if (rawCanon !== undefined) assert.equal(t.host, rawCanon, `${JSON.stringify(input)}: parseTarget says ${t.host}, canonicalIp(${JSON.stringify(raw)}) says ${rawCanon}`)
}

/** The host part as written (brackets stripped), for the agreement check. */
function rawHost (input: string): string | undefined {
  if (input.startsWith('[')) return input.slice(1, input.indexOf(']'))
  const colon = input.lastIndexOf(':')
  return colon < 0 ? undefined : input.slice(0, colon)
}

// ------------------------------------------------------------ generators

/** IPv4 in the spellings WHATWG and inet_aton accept: dotted, shortened, integer, hex, octal, mixed. */
const ipv4Spelling = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 4 }), fc.array(fc.constantFrom('dec', 'hex', 'HEX', 'oct', 'pad'), { minLength: 4, maxLength: 4 }), fc.boolean())
  .map(([n, parts, radix, dot]) => {
    const bytes = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]
    // parts-1 leading bytes, then the rest as one number.
    const head = bytes.slice(0, parts - 1)
    const tail = bytes.slice(parts - 1).reduce((a, b) => a * 256 + b, 0)
    const spell = (v: number, i: number): string => {
      switch (radix[i]) {
        case 'hex': return `0x${v.toString(16)}`
        case 'HEX': return `0X${v.toString(16).toUpperCase()}`
        case 'oct': return `0${v.toString(8)}`
        case 'pad': return `00${v}`
        default: return String(v)
      }
    }
    return [...head, tail].map(spell).join('.') + (dot ? '.' : '')
  })

const label = fc.stringMatching(/^[a-zA-Z0-9_-]{1,12}$/)
const nameish = fc.oneof(
  fc.domain(),
  fc.array(label, { minLength: 1, maxLength: 5 }).map(ls => ls.join('.')),
  fc.array(fc.oneof(label, fc.string({ unit: 'grapheme', maxLength: 6 })), { minLength: 1, maxLength: 4 }).map(ls => ls.join('.'))
)
const ipv6ish = fc.oneof(fc.ipV6(), fc.ipV4().map(v => `::ffff:${v}`), fc.ipV4().map(v => `::${v}`), fc.ipV6().map(v => v.toUpperCase()), fc.ipV6().map(v => `${v}%eth0`))
const portish = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 1, max: 65535 }).map(String) },
  { weight: 1, arbitrary: fc.integer({ min: -5, max: 200_000 }).map(String) },
  { weight: 1, arbitrary: fc.stringMatching(/^[0-9+ -]{0,7}$/) }
)
const SPICE = [':', '@', '/', '%', '[', ']', '.', '\\', '?', '#', ' ', '\t', '\u00ad', '\uff0e', '\u3002', 'Ａ', 'ß', '\u0000']

/** Authorities that are valid or one step from it, the forms a fuzzer finds bugs with. */
const authority = fc.oneof(
  fc.tuple(fc.oneof(nameish, ipv4Spelling), portish).map(([h, p]) => `${h}:${p}`),
  fc.tuple(ipv6ish, portish).map(([h, p]) => `[${h}]:${p}`),
  fc.tuple(fc.oneof(nameish, ipv4Spelling, ipv6ish), portish, fc.constantFrom(...SPICE), fc.nat())
    .map(([h, p, c, i]) => { const s = `${h}:${p}`; const at = i % (s.length + 1); return s.slice(0, at) + c + s.slice(at) })
)

const anyString = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 280 }),
  fc.string({ unit: 'grapheme-ascii', maxLength: 80 }),
  fc.string({ unit: fc.constantFrom(...SPICE, 'a', '1', '0', 'x', 'f'), maxLength: 40 })
)

const editedAuthority = mutated(authority.map(s => new Uint8Array(Buffer.from(s, 'latin1'))), 3).map(b => b.toString('latin1'))

describe('parseTarget fuzz', () => {
  it('any string: a Target or ERR_BAD_TARGET; targets re-parse to themselves', () => {
    fc.assert(fc.property(anyString, (s) => { check(s) }), fuzzParams(2000))
  })

  it('near-valid authorities: the same, and IP literals are canonical as canonicalIp says', () => {
    fc.assert(fc.property(authority, (s) => { check(s) }), fuzzParams(3000))
  })

  it('authorities with random byte edits', () => {
    fc.assert(fc.property(editedAuthority, (s) => { check(s) }), fuzzParams(2000))
  })

  it('every IPv4 spelling canonicalIp reads means the same address to parseTarget', () => {
    fc.assert(fc.property(ipv4Spelling, fc.integer({ min: 1, max: 65535 }), (h, p) => {
      check(`${h}:${p}`)
    }), fuzzParams(2000))
  })
})
