/**
 * Where a scan of the request-head parser (connect/head-parser.ts) stands:
 * its states, which field the current line is, and the HeadScan that keeps
 * them between calls, so that a head arriving in pieces is read once.
 * head-parser.ts binds the states as its own constants (it says why).
 */

export const S_METHOD_START = 0
export const S_METHOD = 1
export const S_TARGET_START = 2
export const S_TARGET = 3
export const S_VERSION = 4
export const S_LINE_LF = 5
export const S_FIELD_START = 6
export const S_NAME = 7
export const S_OWS = 8
export const S_VALUE = 9
export const S_FIELD_LF = 10
export const S_END_LF = 11

/** Which field the current line is, for framing and credentials. */
export const F_OTHER = 0
export const F_CONTENT_LENGTH = 1
export const F_TRANSFER_ENCODING = 2
export const F_PROXY_AUTHORIZATION = 3

/**
 * Where a scan stands, so that a head arriving in pieces is read once:
 * pass the same HeadScan with each longer prefix of the same bytes. A new
 * one starts at the first byte.
 */
export class HeadScan {
  /** @internal The next byte to read. */
  pos = 0
  /** @internal */
  state = S_METHOD_START
  /** @internal The method is CONNECT (known at its SP). */
  connect = false
  /** @internal */
  methodEnd = 0
  /** @internal */
  targetStart = 0
  /** @internal */
  targetEnd = 0
  /** @internal -1: no version (HTTP/0.9). */
  versionStart = -1
  /** @internal First byte of the first field line. */
  fieldsStart = 0
  /** @internal Start of the current field name, then of its value. */
  mark = 0
  /** @internal End of the current value without trailing OWS. */
  valueEnd = 0
  /** @internal F_… of the current field. */
  field = F_OTHER
  /** @internal */
  contentLength = false
  /** @internal */
  transferEncoding = false
  /** @internal */
  authStart = -1
  /** @internal */
  authEnd = -1

  /** @internal Start over (the shared scratch scan of one-shot calls). */
  reset (): this {
    this.pos = 0
    this.state = S_METHOD_START
    this.connect = false
    this.versionStart = -1
    this.fieldsStart = 0
    this.field = F_OTHER
    this.contentLength = false
    this.transferEncoding = false
    this.authStart = -1
    this.authEnd = -1
    return this
  }
}
