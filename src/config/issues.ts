/**
 * zod issues in our words. zod's own messages ("Invalid input: expected
 * number, received string") name JavaScript types; an operator wrote YAML, so
 * say "expected a number, got a string 'abc'". Messages a schema sets itself
 * (a port, a CIDR, a duration) are kept: zod only consults this map for
 * issues without one. Unknown keys get a "did you mean" from the keys the
 * schema allows at that path.
 */
import { z } from 'zod'
import { didYouMean } from './suggest.js'

type Issue = z.core.$ZodRawIssue

/** `['rules', 3, 'ports', 1]` → `rules[3].ports[1]`; odd keys are quoted: `parents["a b"]`. */
export function formatPath (path: ReadonlyArray<PropertyKey>): string {
  let out = ''
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`
    else if (/^[A-Za-z0-9_-]+$/.test(String(p))) out += out === '' ? String(p) : `.${String(p)}`
    else out += `[${JSON.stringify(String(p))}]`
  }
  return out === '' ? '(top level)' : out
}

const MAX_SHOWN = 40

/** A YAML value as the operator would recognise it. */
export function describeValue (v: unknown): string {
  if (v === null) return 'an empty value'
  if (typeof v === 'string') return `a string '${v.length > MAX_SHOWN ? v.slice(0, MAX_SHOWN) + '…' : v}'`
  if (typeof v === 'number') return `the number ${v}`
  if (typeof v === 'boolean') return String(v)
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : 'a list'
  if (typeof v === 'object') return 'a mapping'
  return String(v)
}

/** A value that was valid in type but not in value: `'audit'`, `5`. */
function quote (v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : v === null ? 'an empty value' : describeValue(v)
}

const TYPE_PHRASES: Readonly<Record<string, string>> = {
  number: 'a number',
  int: 'a whole number',
  string: 'a string',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping (key: value)',
  record: 'a mapping (key: value)'
}

function orList (items: readonly string[]): string {
  const unique = [...new Set(items)]
  return unique.length <= 1 ? (unique[0] ?? '') : `${unique.slice(0, -1).join(', ')} or ${unique.at(-1) ?? ''}`
}

/** The types a union's branches wanted, when every branch failed on the type alone. */
function unionTypes (errors: ReadonlyArray<ReadonlyArray<z.core.$ZodIssue>>): string[] | undefined {
  const out: string[] = []
  for (const branch of errors) {
    const [first] = branch
    if (branch.length !== 1 || first === undefined || first.path.length !== 0) return undefined
    if (first.code === 'invalid_type') out.push(TYPE_PHRASES[first.expected] ?? `a ${first.expected}`)
    else if (first.code === 'invalid_union') {
      const inner = unionTypes(first.errors)
      if (inner === undefined) return undefined
      out.push(...inner)
    } else return undefined
  }
  return out
}

function got (iss: Issue): string {
  return iss.input === undefined ? '' : `, got ${describeValue(iss.input)}`
}

function count (n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`
}

/**
 * The error map passed to `safeParse`: our message for each zod issue code.
 * A missing key (no input) reads "required: expected …".
 */
export function issueMessage (iss: Issue): string | undefined {
  const missing = iss.input === undefined
  switch (iss.code) {
    case 'invalid_type': {
      const expected = TYPE_PHRASES[iss.expected] ?? `a ${iss.expected}`
      return missing ? `required: expected ${expected}` : `expected ${expected}${got(iss)}`
    }
    case 'invalid_value': {
      const expected = orList(iss.values.map(v => String(v)))
      return missing ? `required: expected ${expected}` : `expected ${expected}, got ${quote(iss.input)}`
    }
    case 'invalid_union': {
      const types = unionTypes(iss.errors)
      return types === undefined ? `does not match any allowed form${got(iss)}` : `${missing ? 'required: ' : ''}expected ${orList(types)}${got(iss)}`
    }
    case 'too_small': {
      const min = Number(iss.minimum)
      if (iss.origin === 'array') return min === 1 ? 'expected at least one entry, got an empty list' : `expected at least ${count(min, 'entry', 'entries')}`
      if (iss.origin === 'string') return min === 1 ? 'must not be empty' : `expected at least ${count(min, 'character', 'characters')}`
      return `expected a number ${iss.inclusive === false ? '>' : '>='} ${min}${got(iss)}`
    }
    case 'too_big': {
      const max = Number(iss.maximum)
      if (iss.origin === 'array') return `expected at most ${count(max, 'entry', 'entries')}`
      if (iss.origin === 'string') return `expected at most ${count(max, 'character', 'characters')}`
      return `expected a number ${iss.inclusive === false ? '<' : '<='} ${max}${got(iss)}`
    }
    case 'invalid_key': {
      const inner = iss.issues[0]?.message
      return `the name ${quote(iss.input)} is not allowed${inner === undefined ? '' : `: ${inner}`}`
    }
    case 'invalid_format': return `has the wrong form${got(iss)}`
    case 'not_multiple_of': return `expected a multiple of ${String(iss.divisor)}${got(iss)}`
    default: return undefined
  }
}

/** Unwrap defaults, optionals and transforms down to the schema that holds the shape. */
function unwrap (s: z.core.$ZodType): z.core.$ZodType {
  for (let i = 0; i < 16; i++) {
    if (s instanceof z.ZodDefault || s instanceof z.ZodOptional || s instanceof z.ZodNullable || s instanceof z.ZodPrefault) s = s.unwrap()
    else if (s instanceof z.ZodPipe) s = s.in
    else return s
  }
  return s
}

/** The keys the schema allows in the mapping at `path` (for "did you mean"). */
export function allowedKeys (schema: z.core.$ZodType, path: ReadonlyArray<PropertyKey>): string[] {
  let candidates = [unwrap(schema)]
  for (const seg of path) {
    const next: z.core.$ZodType[] = []
    for (const s of candidates) {
      if (s instanceof z.ZodUnion) next.push(...s.options.map(o => unwrap(o)))
      else next.push(s)
    }
    candidates = next.flatMap((s): z.core.$ZodType[] => {
      if (s instanceof z.ZodObject && typeof seg === 'string') {
        const field = (s.shape as Record<string, z.core.$ZodType | undefined>)[seg]
        return field === undefined ? [] : [unwrap(field)]
      }
      if (s instanceof z.ZodArray && typeof seg === 'number') return [unwrap(s.element)]
      if (s instanceof z.ZodRecord && typeof seg === 'string') return [unwrap(s.valueType)]
      return []
    })
  }
  const keys: string[] = []
  for (const s of candidates.flatMap(c => c instanceof z.ZodUnion ? c.options.map(o => unwrap(o)) : [c])) {
    if (s instanceof z.ZodObject) keys.push(...Object.keys(s.shape))
  }
  return keys
}

/** `unknown key 'hoss' (did you mean 'hosts'?)` */
export function unknownKeyMessage (schema: z.core.$ZodType, path: ReadonlyArray<PropertyKey>, key: string): string {
  return `unknown key '${key}'${didYouMean(key, allowedKeys(schema, path))}`
}

/** Did this branch of a union fail on the value's type alone (it was not that kind of value)? */
function wrongKind (issue: z.core.$ZodIssue): boolean {
  if (issue.path.length !== 0) return false
  if (issue.code === 'invalid_type') return true
  return issue.code === 'invalid_union' && issue.errors.every(b => b.some(wrongKind))
}

/**
 * A union that failed is reported by the one branch the value was the right
 * kind for, at the paths inside it: `listen[1].address: expected host:port`,
 * not `listen: does not match any allowed form`. When no branch or several
 * fit the kind, the union's own message stays.
 */
export function flattenUnions (issue: z.core.$ZodIssue): z.core.$ZodIssue[] {
  if (issue.code !== 'invalid_union') return [issue]
  const fitting = issue.errors.filter(branch => !branch.some(wrongKind))
  const [only] = fitting
  if (fitting.length !== 1 || only === undefined || only.length === 0) return [issue]
  return only.flatMap(i => flattenUnions({ ...i, path: [...issue.path, ...i.path] }))
}
