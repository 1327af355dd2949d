/**
 * A policy's validated rules, as everything after validation reads them.
 * At start (and for `sluice check`) they are the parsed file's array. A
 * reload's come from the validation worker packed: one JSON text and the
 * offsets of each rule in it, each rule parsed at its first use (issue 15).
 * Received as 20,000 objects, they were copied by V8's scavenges while
 * tunnels waited (5–40 ms at a time on a 2-vCPU VM); a string and a typed
 * array are two objects, whatever the size of the policy.
 *
 * What the event loop needs of every rule at once (does any rule match
 * `clients:`? which listener names and routes do rules cite?) travels with
 * them, worked out by the worker.
 */
import type { RuleSpec } from './schema.js'

/** Rule `rule`'s `listeners[item]` is `name`. */
export type ListenerRef = readonly [rule: number, item: number, name: string]

/** Rule `rule`'s `via` is `name`. */
export type ViaRef = readonly [rule: number, name: string]

/** The rules as plain data: what postMessage carries. */
export interface PackedRules {
  /** A JSON array of the rules. */
  readonly json: string
  /** ends[i]: where rule i's text ends in `json` (it starts after the `[` or the `,` before it). */
  readonly ends: Uint32Array
  readonly usesClients: boolean
  readonly listenerRefs: readonly ListenerRef[]
  readonly vias: readonly ViaRef[]
}

function viasOf (rules: readonly RuleSpec[]): ViaRef[] {
  return rules.flatMap((r, i) => r.via === undefined ? [] : [[i, r.via] as const])
}

function listenerRefsOf (rules: readonly RuleSpec[]): ListenerRef[] {
  const refs: ListenerRef[] = []
  rules.forEach((r, i) => r.listeners?.forEach((n, j) => { refs.push([i, j, n]) }))
  return refs
}

/** Pack `rules` (the validation worker). */
export function packRules (rules: readonly RuleSpec[]): PackedRules {
  const ends = new Uint32Array(rules.length)
  const parts: string[] = []
  let at = 1
  rules.forEach((r, i) => {
    const text = JSON.stringify(r)
    parts.push(text)
    at += text.length
    ends[i] = at
    at += 1 // the comma
  })
  return { json: `[${parts.join(',')}]`, ends, usesClients: rules.some(r => r.clients !== undefined), listenerRefs: listenerRefsOf(rules), vias: viasOf(rules) }
}

export class RuleSource {
  readonly size: number
  readonly usesClients: boolean
  readonly listenerRefs: readonly ListenerRef[]
  readonly vias: readonly ViaRef[]
  private specs: Array<RuleSpec | undefined>
  private readonly packed: PackedRules | undefined
  private complete: boolean

  /** The parsed file's rules. */
  static of (rules: readonly RuleSpec[]): RuleSource {
    return new RuleSource({ usesClients: rules.some(r => r.clients !== undefined), listenerRefs: listenerRefsOf(rules), vias: viasOf(rules) }, rules.length, [...rules], undefined)
  }

  /** Rules the worker packed (packRules). */
  static unpack (p: PackedRules): RuleSource {
    // Holey, and for a large policy one object in V8's large-object space: nothing for a scavenge to copy.
    return new RuleSource(p, p.ends.length, new Array<RuleSpec | undefined>(p.ends.length), p)
  }

  private constructor (facts: Pick<PackedRules, 'usesClients' | 'listenerRefs' | 'vias'>, size: number, specs: Array<RuleSpec | undefined>, packed: PackedRules | undefined) {
    this.size = size
    this.usesClients = facts.usesClients
    this.listenerRefs = facts.listenerRefs
    this.vias = facts.vias
    this.specs = specs
    this.packed = packed
    this.complete = packed === undefined
  }

  /** Rule `i`'s spec. */
  at (i: number): RuleSpec {
    const s = this.specs[i]
    if (s !== undefined || this.packed === undefined) return s as RuleSpec
    const { json, ends } = this.packed
    const parsed = JSON.parse(json.slice(i === 0 ? 1 : (ends[i - 1] as number) + 1, ends[i])) as RuleSpec
    this.specs[i] = parsed
    return parsed
  }

  /** Every spec (the PAC table, lint): a packed source parses its whole text once. */
  all (): readonly RuleSpec[] {
    if (!this.complete && this.packed !== undefined) {
      const every = JSON.parse(this.packed.json) as RuleSpec[]
      // Keep the specs already handed out: compiled rules were made from them.
      this.specs = every.map((s, i) => this.specs[i] ?? s)
      this.complete = true
    }
    return this.specs as readonly RuleSpec[]
  }
}
