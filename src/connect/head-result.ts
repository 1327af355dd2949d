/**
 * What the request-head parser (connect/head-parser.ts) returns: a complete
 * head, "incomplete", or a coded error (llhttp's code for the same fault, or
 * HPE_CONNECT_CONTENT, ours).
 */

export type HeadErrorCode =
  | 'HPE_INVALID_METHOD'
  | 'HPE_INVALID_URL'
  | 'HPE_INVALID_VERSION'
  | 'HPE_CR_EXPECTED'
  | 'HPE_LF_EXPECTED'
  | 'HPE_INVALID_HEADER_TOKEN'
  | 'HPE_HEADER_OVERFLOW'
  | 'HPE_UNEXPECTED_CONTENT_LENGTH'
  | 'HPE_INVALID_CONTENT_LENGTH'
  | 'HPE_INVALID_TRANSFER_ENCODING'
  | 'HPE_CONNECT_CONTENT'

export interface HeadError {
  readonly kind: 'error'
  readonly code: HeadErrorCode
  /** 431 for HPE_HEADER_OVERFLOW, else 400. */
  readonly status: 400 | 431
  /** What was wrong, for people. */
  readonly detail: string
}

export type HeadResult =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'head', readonly head: RequestHead, readonly length: number }
  | HeadError

export function failure (code: HeadErrorCode, detail: string): HeadError {
  return { kind: 'error', code, status: code === 'HPE_HEADER_OVERFLOW' ? 431 : 400, detail }
}

/** SP / HTAB, trimmed off field values (OWS, RFC 9110 §5.6.3); not String.trim(), which also eats U+00A0. */
const OWS_EDGES = /^[ \t]+|[ \t]+$/g

/** A complete request head. Strings are decoded as latin1, as Node decodes them. */
export class RequestHead {
  readonly method: string
  readonly target: string
  /** `1.1`, `1.0`, whatever `d.d` was sent, or `0.9` when the request line had no version. */
  readonly version: string
  /** The first Proxy-Authorization field value (OWS trimmed), as Node's `req.headers` kept it. */
  readonly proxyAuthorization: string | undefined
  private readonly raw: Buffer
  private readonly fieldsStart: number
  private readonly fieldsEnd: number

  constructor (method: string, target: string, version: string, proxyAuthorization: string | undefined, raw: Buffer, fieldsStart: number, fieldsEnd: number) {
    this.method = method
    this.target = target
    this.version = version
    this.proxyAuthorization = proxyAuthorization
    this.raw = raw
    this.fieldsStart = fieldsStart
    this.fieldsEnd = fieldsEnd
  }

  /**
   * Every field in order as `[lower-case name, value]`, duplicates kept.
   * Built on demand: the CONNECT pipeline only needs Proxy-Authorization.
   */
  get headers (): Array<[string, string]> {
    const out: Array<[string, string]> = []
    if (this.fieldsEnd <= this.fieldsStart) return out
    // The scan validated every line: each has a colon, names are tokens.
    for (const line of this.raw.toString('latin1', this.fieldsStart, this.fieldsEnd).split('\r\n')) {
      const colon = line.indexOf(':')
      out.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).replace(OWS_EDGES, '')])
    }
    return out
  }
}
