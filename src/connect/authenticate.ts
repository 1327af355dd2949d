/**
 * The authentication step of a CONNECT: lock-out check, Basic credentials,
 * failure counting. Returns the principal, undefined for an anonymous
 * request, or throws 407 / 429.
 */
import type { IncomingMessage } from 'node:http'
import { ProxyError } from '../errors.js'
import type { AuthFailure, Principal } from '../auth/authenticator.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import type { AuthState, ConnectContext } from './context.js'
import { F } from '../observability/fields.js'

const AUTH_FAILURES: Readonly<Record<AuthFailure, string>> = {
  not_basic: 'only the Basic scheme is supported',
  malformed: 'malformed Basic credentials (expected base64 of user:password)',
  unknown_user: 'unknown user or wrong password',
  bad_password: 'unknown user or wrong password'
}

export async function authenticate (ctx: ConnectContext, auth: AuthState, tunnel: Tunnel, req: IncomingMessage, client: string): Promise<Principal | undefined> {
  const wait = ctx.lockout.retryAfter(client)
  if (wait > 0) throw new ProxyError('ERR_AUTH_LOCKED', { detail: `retry in ${wait} s`, headers: { 'Retry-After': String(wait) } })
  const header = req.headers['proxy-authorization']
  const outcome = await auth.authenticator.authenticate(header)
  if (outcome.kind === 'none') return undefined
  if (outcome.kind === 'ok') {
    ctx.lockout.succeed(client)
    tunnel.authenticated(outcome.principal.user)
    return outcome.principal
  }
  tunnel.authenticated(outcome.user, false)
  // The log names the user (when there is one), never the password or the header.
  ctx.log.info({ [F.tunnel]: tunnel.id, [F.client]: tunnel.client, [F.attemptedUser]: outcome.user, [F.reason]: outcome.reason }, 'authentication failed')
  if (ctx.lockout.fail(client)) {
    const l = auth.config.lockout
    ctx.log.warn({ client, failures: l.failures, window_ms: l.windowMs, lockout_ms: l.durationMs }, 'client locked out after repeated failed logins')
  }
  throw new ProxyError('ERR_AUTH_FAILED', { detail: AUTH_FAILURES[outcome.reason] })
}
