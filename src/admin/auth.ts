/**
 * The admin listener's bearer token (RFC 6750): compared in constant time,
 * over sha256 digests so both sides always have the same length (a length
 * check first would say how long the token is). The token itself is never
 * kept (config/admin.ts keeps its digest), logged or echoed.
 */
import { createHash, timingSafeEqual } from 'node:crypto'

export type TokenCheck = 'ok' | 'missing' | 'invalid'

/** `Authorization: Bearer TOKEN` against `digest`; no digest = no token configured = ok. */
export function checkBearer (authorization: string | undefined, digest: Buffer | undefined): TokenCheck {
  if (digest === undefined) return 'ok'
  if (authorization === undefined) return 'missing'
  // RFC 6750 §2.1: the scheme is case-insensitive; one or more spaces before the token.
  const m = /^Bearer +(\S+) *$/i.exec(authorization)
  if (m === null) return 'missing'
  const given = createHash('sha256').update(m[1] ?? '', 'utf8').digest()
  return timingSafeEqual(given, digest) ? 'ok' : 'invalid'
}

/** The challenge for a 401 (RFC 6750 §3): `invalid_token` when one was sent and refused. */
export function challenge (check: TokenCheck): string {
  return check === 'invalid' ? 'Bearer realm="sluice-admin", error="invalid_token"' : 'Bearer realm="sluice-admin"'
}
