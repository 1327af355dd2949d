/**
 * The byte classes of the request-head parser (connect/head-parser.ts): which
 * bytes may stand in a method, a request target, a field name and a field
 * value, in one 256-entry table, so that the scan tests a byte with one load
 * and a mask, and no regex. head-parser.ts binds these as constants of its
 * own (it says why).
 */

export const CR = 13
export const LF = 10
export const SP = 32
export const HTAB = 9
export const COLON = 58

/** A letter, `-` or `_` (method). */
export const K_METHOD = 1
/** An upper-case letter (the first byte of a method). */
export const K_UPPER = 2
/** tchar (RFC 9110 §5.6.2): a field-name byte. */
export const K_TCHAR = 4
/** A request-target byte: RFC 3986 unreserved, reserved but `#`, and `%`. */
export const K_TARGET = 8
/** VCHAR or obs-text 0x80–0xFF: a field-value byte other than SP/HTAB. */
export const K_FIELD = 16

const CLASS = new Uint8Array(256)
for (let c = 0; c < 256; c++) {
  const upper = c >= 0x41 && c <= 0x5a
  const alpha = upper || (c >= 0x61 && c <= 0x7a)
  const digit = c >= 0x30 && c <= 0x39
  let k = 0
  if (upper || c === 0x2d || c === 0x5f) k |= K_METHOD
  if (upper) k |= K_UPPER
  if (alpha || digit || "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c))) k |= K_TCHAR
  if (alpha || digit || "-._~:/?[]@!$&'()*+,;=%".includes(String.fromCharCode(c))) k |= K_TARGET
  if (c >= 0x21 && c !== 0x7f) k |= K_FIELD
  CLASS[c] = k
}

/** The class of byte `c` (always in 0–255: a Buffer's bytes). */
export function kind (c: number): number {
  return CLASS[c] as number
}
