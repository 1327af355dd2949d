/**
 * Lists of rule numbers under string keys, packed into one string and
 * three typed arrays instead of a Map entry, an array and a string per key
 * (policy/rule-index.ts). A reload's index is built by the validation
 * worker and sent as this (config/validate-worker.ts): the event loop then
 * receives a few objects rather than building 20,000 entries, which V8's
 * young generation would copy while tunnels wait (issue 15: the reload
 * stall was those scavenges). Lookups are a binary search over the sorted
 * keys, compared in place: no string is built to probe.
 */

/** A KeyTable as plain data: what postMessage carries. */
export interface KeyTableWire {
  /** Every key, sorted by UTF-16 code units, concatenated. */
  readonly keys: string
  /** keyEnds[k]: where key k ends in `keys` (it starts where key k-1 ends). */
  readonly keyEnds: Uint32Array
  /** listEnds[k]: where key k's rules end in `rules`. */
  readonly listEnds: Uint32Array
  /** Each key's rule numbers, ascending. */
  readonly rules: Int32Array
}

/** `keys[s, e)` against `q[from, end)`: negative, zero or positive, as string order. */
function compare (keys: string, s: number, e: number, q: string, from: number): number {
  const a = e - s
  const b = q.length - from
  const n = a < b ? a : b
  for (let i = 0; i < n; i++) {
    const d = keys.charCodeAt(s + i) - q.charCodeAt(from + i)
    if (d !== 0) return d
  }
  return a - b
}

export class KeyTable {
  private readonly w: KeyTableWire

  constructor (w: KeyTableWire) { this.w = w }

  /** Pack `map` (each list ascending, as rule-index.ts fills them). */
  static of (map: ReadonlyMap<string, readonly number[]>): KeyTable {
    // Default sort: UTF-16 code unit order, the order compare() searches by.
    const keys = [...map.keys()].sort()
    const keyEnds = new Uint32Array(keys.length)
    const listEnds = new Uint32Array(keys.length)
    let total = 0
    for (const k of keys) total += (map.get(k) as readonly number[]).length
    const rules = new Int32Array(total)
    let at = 0
    let chars = 0
    keys.forEach((k, i) => {
      for (const r of map.get(k) as readonly number[]) rules[at++] = r
      chars += k.length
      keyEnds[i] = chars
      listEnds[i] = at
    })
    return new KeyTable({ keys: keys.join(''), keyEnds, listEnds, rules })
  }

  get size (): number { return this.w.keyEnds.length }

  wire (): KeyTableWire { return this.w }

  /** The rules under `q.slice(from)` (a view, ascending), or undefined. */
  get (q: string, from = 0): Int32Array | undefined {
    const { keys, keyEnds, listEnds, rules } = this.w
    let lo = 0
    let hi = keyEnds.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1
      const c = compare(keys, mid === 0 ? 0 : keyEnds[mid - 1] as number, keyEnds[mid] as number, q, from)
      if (c === 0) return rules.subarray(mid === 0 ? 0 : listEnds[mid - 1] as number, listEnds[mid] as number)
      if (c < 0) lo = mid + 1
      else hi = mid - 1
    }
    return undefined
  }
}
