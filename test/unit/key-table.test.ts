/**
 * KeyTable (src/policy/key-table.ts) answers as the Map it was packed from:
 * for every key, for keys that are absent, for prefixes and extensions of
 * keys, and when the query starts at an offset (the suffix lookups of
 * policy/rule-index.ts). Keys include the bytes of CIDR prefixes (code
 * units 0-255) and names beyond ASCII.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import fc from 'fast-check'
import { KeyTable } from '../../src/policy/key-table.js'

const key = fc.oneof(
  fc.string({ maxLength: 6 }),
  fc.array(fc.integer({ min: 0, max: 255 }), { maxLength: 16 }).map(b => String.fromCharCode(...b)),
  fc.constantFrom('example.com', 'a.example.com', 'b\u00fccher.de', 'xn--bcher-kva.de', '')
)
const table = fc.uniqueArray(key, { maxLength: 40 }).chain(keys =>
  fc.tuple(...keys.map(() => fc.uniqueArray(fc.nat(500), { minLength: 1, maxLength: 4 }).map(l => l.sort((a, b) => a - b))))
    .map(lists => new Map(keys.map((k, i) => [k, lists[i] as number[]]))))

const got = (t: KeyTable, q: string, from?: number): number[] | undefined => {
  const l = t.get(q, from)
  return l === undefined ? undefined : [...l]
}

describe('KeyTable = the Map it packs', () => {
  it('every key, absent keys, prefixes and extensions of keys', () => {
    fc.assert(fc.property(table, fc.array(key, { maxLength: 10 }), (map, others) => {
      const t = KeyTable.of(map)
      assert.equal(t.size, map.size)
      const queries = [...map.keys(), ...others, ...[...map.keys()].flatMap(k => [k.slice(0, -1), k + 'x', k + '\0'])]
      for (const q of queries) assert.deepEqual(got(t, q), map.get(q), JSON.stringify(q))
    }), { numRuns: 300 })
  })

  it('a query from an offset is the query sliced there', () => {
    fc.assert(fc.property(table, fc.string({ maxLength: 4 }), (map, head) => {
      const t = KeyTable.of(map)
      for (const k of [...map.keys(), 'nothing']) assert.deepEqual(got(t, head + k, head.length), map.get(k))
    }), { numRuns: 300 })
  })

  it('survives a structured clone (what postMessage does)', () => {
    const map = new Map([['b', [1, 4]], ['a', [2]], ['\u00ff\u0001', [3]]])
    const t = new KeyTable(structuredClone(KeyTable.of(map).wire()))
    for (const [k, v] of map) assert.deepEqual(got(t, k), v)
    assert.equal(t.get('c'), undefined)
  })

  it('an empty table finds nothing', () => {
    const t = KeyTable.of(new Map())
    assert.equal(t.size, 0)
    assert.equal(t.get(''), undefined)
    assert.equal(t.get('a'), undefined)
  })
})
