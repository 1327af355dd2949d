/**
 * The authentication step of a CONNECT: the Authenticator judges the
 * credentials under the client's lock-out budget and the pool's fair queue
 * (issue 11); this step turns its outcome into the principal, undefined
 * for an anonymous request, or the 407 / 429 to answer, and logs failures.
 */
import { ProxyError } from '../errors.js'
import type { AuthFailure, AuthOutcome, Principal } from '../auth/authenticator.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import type { RequestHead } from './head-parser.js'
import type { AuthState, ConnectContext } from './context.js'
import { F } from '../observability/fields.js'

const AUTH_FAILURES: Readonly<Record<AuthFailure, string>> = {
  not_basic: 'only the Basic scheme is supported',
  malformed: 'malformed Basic credentials (expected base64 of user:password)',
  unknown_user: 'unknown user or wrong password',
  bad_password: 'unknown user or wrong password'
}

/** Retry-After for a check refused by the queue's limits: checks ahead of it end within a few hash times. */
const BUSY_RETRY_S = '1'

/**
 * The principal, undefined when anonymous; throws the answer (407, 429).
 * Synchronous when the Authenticator answered at once (a cached
 * credential), else a promise (issue 12: no await per CONNECT for that).
 */
export function authenticate (ctx: ConnectContext, auth: AuthState, tunnel: Tunnel, req: RequestHead, client: string): Principal | undefined | Promise<Principal | undefined> {
  const outcome = auth.authenticator.authenticate(req.proxyAuthorization, { client, lockout: ctx.lockout })
  return outcome instanceof Promise
    ? outcome.then(o => principalOf(ctx, auth, tunnel, o, client))
    : principalOf(ctx, auth, tunnel, outcome, client)
}

function principalOf (ctx: ConnectContext, auth: AuthState, tunnel: Tunnel, outcome: AuthOutcome, client: string): Principal | undefined {
  switch (outcome.kind) {
    case 'none': return undefined
    case 'ok':
      tunnel.authenticated(outcome.principal.user)
      ctx.metrics.authSucceeded()
      return outcome.principal
    case 'locked':
      ctx.metrics.authRefused('locked')
      throw new ProxyError('ERR_AUTH_LOCKED', { detail: `retry in ${outcome.retryAfter} s`, headers: { 'Retry-After': String(outcome.retryAfter) } })
    case 'busy':
      ctx.metrics.authRefused('busy')
      throw new ProxyError('ERR_AUTH_BUSY', {
        detail: outcome.scope === 'client' ? `${outcome.limit} pending from this address` : `${outcome.limit} pending in all`,
        headers: { 'Retry-After': BUSY_RETRY_S }
      })
  }
  tunnel.authenticated(outcome.user, false)
  ctx.metrics.authFailed(outcome.reason)
  // The log names the user (when there is one), never the password or the header.
  ctx.log.info({ [F.tunnel]: tunnel.id, [F.client]: tunnel.client, [F.attemptedUser]: outcome.user, [F.reason]: outcome.reason }, 'authentication failed')
  if (outcome.lockedOut === true) {
    ctx.metrics.authLockedOut()
    const l = auth.config.lockout
    ctx.log.warn({ client, failures: l.failures, window_ms: l.windowMs, lockout_ms: l.durationMs }, 'client locked out after repeated failed logins')
  }
  throw new ProxyError('ERR_AUTH_FAILED', { detail: AUTH_FAILURES[outcome.reason] })
}

const NO_GROUPS: ReadonlySet<string> = new Set()

/**
 * A verified client certificate's identity as the principal (issue 13):
 * groups from `auth` when the config has it, as for a Basic user.
 */
export function certificateUser (ctx: ConnectContext, tunnel: Tunnel, user: string): Principal {
  tunnel.authenticated(user)
  return { user, groups: ctx.auth()?.config.groups.get(user) ?? NO_GROUPS }
}
