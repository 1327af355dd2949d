/**
 * Where in the YAML text a value is: a path from a schema issue (`['rules',
 * 3, 'ports', 1]`) → the 1-based line of that node, found in the parsed
 * `yaml` document with its LineCounter. And YAML syntax errors → the line,
 * column and the offending line with a caret under the column.
 */
import { isMap, isPair, isScalar, isSeq, type Document, type LineCounter, type Node, type YAMLError } from 'yaml'

/** A path into the document, as zod reports it. */
export type DocPath = ReadonlyArray<PropertyKey>

export interface Locator {
  /**
   * The line of the node at `path`; with `key`, of that key in the mapping at
   * `path` (an unknown key). A path that goes missing part-way (a required key
   * left out) gives the line of the deepest node that exists, unless that is
   * the whole document: then there is no line worth naming.
   */
  line (path: DocPath, key?: string): number | undefined
}

export function createLocator (doc: Document, counter: LineCounter): Locator {
  const lineAt = (offset: number): number => counter.linePos(offset).line
  /** A node's own line; an empty scalar (`key:` with no value) has none worth naming. */
  const own = (node: unknown): number | undefined => {
    if (!isScalar(node) && !isMap(node) && !isSeq(node)) return undefined
    const range = (node as Node).range
    if (range === undefined || range === null) return undefined
    if (isScalar(node) && node.source === '' && range[0] === range[1]) return undefined
    return lineAt(range[0])
  }
  return {
    line (path, key) {
      let node: unknown = doc.contents
      /** The line of the `key:` that led to `node`, for collections and empty values. */
      let keyLine: number | undefined
      let depth = 0
      const segments = key === undefined ? path : [...path, key]
      for (const seg of segments) {
        let next: unknown
        let nextKeyLine: number | undefined
        if (isMap(node)) {
          const pair = node.items.find(p => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg))
          if (pair !== undefined) {
            next = pair.value
            nextKeyLine = own(pair.key)
            // An unknown key: the key itself is the place.
            if (key !== undefined && depth === segments.length - 1) return nextKeyLine
          }
        } else if (isSeq(node) && typeof seg === 'number') {
          next = node.items[seg]
        }
        if (next === undefined) break
        node = next
        keyLine = nextKeyLine
        depth++
      }
      if (depth === 0) return undefined
      // A collection reached through a key is named by the key's line (`ports:`), a
      // sequence item or a scalar by its own.
      if ((isMap(node) || isSeq(node)) && keyLine !== undefined) return keyLine
      return own(node) ?? keyLine
    }
  }
}

/** Longest stretch of a source line shown under a syntax error. */
const SNIPPET_WIDTH = 100

/**
 * YAML syntax errors (parsed with `prettyErrors: false`), each as
 * `file:LINE:COL: message`, then the offending line and a caret, indented:
 *
 *     sluice.yaml:3:13: Nested mappings are not allowed in compact mappings
 *         - action: allow
 *                   ^
 *
 * Errors at one place (the parser often gives two) share one snippet.
 */
export function formatYamlErrors (file: string, text: string, counter: LineCounter, errors: readonly YAMLError[]): string[] {
  const byPlace = new Map<number, { first: YAMLError, messages: string[] }>()
  for (const e of errors) {
    const message = e.message.split('\n')[0] ?? e.code
    const place = byPlace.get(e.pos[0])
    if (place === undefined) byPlace.set(e.pos[0], { first: e, messages: [message] })
    else if (!place.messages.includes(message)) place.messages.push(message)
  }
  return [...byPlace.values()].map(p => formatYamlError(file, text, counter, p.first, p.messages.join('; ')))
}

function formatYamlError (file: string, text: string, counter: LineCounter, err: YAMLError, message: string): string {
  const lines = text.split(/\r?\n/)
  let { line, col } = counter.linePos(err.pos[0])
  // An error at the very end of the input (an unclosed `[`) points at an empty last
  // line: show the end of the last line with content instead.
  while (line > 1 && (lines[line - 1] ?? '').trim() === '' && lines.slice(line).every(l => l.trim() === '')) {
    line--
    col = (lines[line - 1] ?? '').length + 1
  }
  const source = lines[line - 1] ?? ''
  // Long lines: a window around the column, marked with … on the cut sides.
  const start = Math.max(0, Math.min(col - 1 - SNIPPET_WIDTH / 2, source.length - SNIPPET_WIDTH))
  const cutLeft = start > 0
  const cutRight = start + SNIPPET_WIDTH < source.length
  const shown = (cutLeft ? '…' : '') + source.slice(start, start + SNIPPET_WIDTH) + (cutRight ? '…' : '')
  const caret = ' '.repeat(col - 1 - start + (cutLeft ? 1 : 0)) + '^'
  return `${file}:${line}:${col}: ${message}\n    ${shown.replace(/\t/g, ' ')}\n    ${caret}`
}
