/**
 * A strict parser for one Proxy-Status member (RFC 9209), which is an
 * RFC 8941 item with parameters: `token *( ";" *SP key [ "=" bare-item ] )`.
 * Anything else throws, so a malformed header fails the test rather than
 * half-parsing; a repeated parameter fails it too.
 */
import assert from 'node:assert/strict'

/** How a parameter's value was written (RFC 8941 §3.3); a key without `=` is a boolean true. */
export type BareItemKind = 'string' | 'integer' | 'decimal' | 'token' | 'boolean' | 'binary'

export interface ProxyStatus {
  readonly name: string
  /** Parameter values, strings unquoted and unescaped; booleans `?1` / `?0`. */
  readonly params: Readonly<Record<string, string>>
  /** How each value was written. */
  readonly kinds: Readonly<Record<string, BareItemKind>>
}

const TOKEN = /[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*/y

export function parseProxyStatus (value: string): ProxyStatus {
  let i = 0
  const take = (re: RegExp, what: string): string => {
    re.lastIndex = i
    const m = re.exec(value)
    if (m === null) throw new Error(`Proxy-Status: expected ${what} at ${i} in ${JSON.stringify(value)}`)
    i = re.lastIndex
    return m[0]
  }
  const name = take(TOKEN, 'a token')
  const params: Record<string, string> = {}
  const kinds: Record<string, BareItemKind> = {}
  while (i < value.length) {
    take(/;[ ]*/y, '";"')
    const key = take(/[a-z*][a-z0-9_\-.*]*/y, 'a parameter key')
    assert.ok(!(key in params), `Proxy-Status: duplicate parameter ${key}`)
    if (value[i] !== '=') {
      params[key] = '?1'
      kinds[key] = 'boolean'
      continue
    }
    i++
    const c = value[i] ?? ''
    if (c === '"') {
      const s = take(/"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"/y, 'an sf-string')
      params[key] = s.slice(1, -1).replace(/\\(["\\])/g, '$1')
      kinds[key] = 'string'
    } else if (c === '-' || (c >= '0' && c <= '9')) {
      const n = take(/-?\d{1,12}\.\d{1,3}(?![\d.])|-?\d{1,15}(?![\d.])/y, 'an sf-integer or sf-decimal')
      params[key] = n
      kinds[key] = n.includes('.') ? 'decimal' : 'integer'
    } else if (c === '?') {
      params[key] = take(/\?[01]/y, 'an sf-boolean')
      kinds[key] = 'boolean'
    } else if (c === ':') {
      params[key] = take(/:[A-Za-z0-9+/=]*:/y, 'an sf-binary')
      kinds[key] = 'binary'
    } else {
      params[key] = take(TOKEN, 'an sf-token')
      kinds[key] = 'token'
    }
  }
  return { name, params, kinds }
}
