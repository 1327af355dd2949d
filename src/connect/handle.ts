/**
 * One CONNECT, accept → parse → decide → resolve → decide → dial → splice.
 * Client bytes stay in the (non-flowing) downstream socket until the dial
 * succeeded; on any failure they are dropped with the socket.
 */
import type { IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import { ProxyError, toProxyError } from '../errors.js'
import type { Config } from '../config/load.js'
import type { Resolver } from '../net/resolver.js'
import type { Dialer } from '../upstream/dialer.js'
import { decideRequest, judgeAddresses, type RequestFacts, type Verdict } from '../policy/decide.js'
import type { TunnelRegistry } from '../server/registry.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import type { Socket } from 'node:net'
import type { AuthConfig } from '../auth/load.js'
import type { Authenticator, AuthFailure, Principal } from '../auth/authenticator.js'
import type { Lockout } from '../auth/lockout.js'
import { parseTarget } from './target.js'

export interface ConnectContext {
  readonly log: Logger
  /** The current config; a reload swaps what this returns. */
  readonly config: () => Config
  readonly resolver: Resolver
  readonly dialer: Dialer
  readonly registry: TunnelRegistry
  readonly draining: () => boolean
  /** True for one of this proxy's own listening endpoints (loop guard). */
  readonly isSelf: (address: string, port: number) => boolean
  /** The current authenticator, when the config has an `auth` section. */
  readonly auth: () => AuthState | undefined
  readonly lockout: Lockout
}

export interface AuthState {
  readonly authenticator: Authenticator
  readonly config: AuthConfig
}

/** What the listener knows about this connection. */
export interface ConnectionInfo {
  /** Listener name, for policy `listeners:`. */
  readonly listener: string
  /** 407s already sent on this connection. */
  readonly challenges: number
  /** Hand the connection back to the HTTP parser after a 407 (keep-alive retry). */
  readonly rearm: (socket: Socket, head: Buffer) => void
}

const AUTH_FAILURES: Readonly<Record<AuthFailure, string>> = {
  not_basic: 'only the Basic scheme is supported',
  malformed: 'malformed Basic credentials (expected base64 of user:password)',
  unknown_user: 'unknown user or wrong password',
  bad_password: 'unknown user or wrong password'
}

/**
 * Authenticate the request's Proxy-Authorization. Returns the principal,
 * undefined for an anonymous request, or throws 407 / 429.
 */
async function authenticate (ctx: ConnectContext, auth: AuthState, tunnel: Tunnel, req: IncomingMessage, client: string): Promise<Principal | undefined> {
  const wait = ctx.lockout.retryAfter(client)
  if (wait > 0) throw new ProxyError('ERR_AUTH_LOCKED', { detail: `retry in ${wait} s`, headers: { 'Retry-After': String(wait) } })
  const header = req.headers['proxy-authorization']
  const outcome = await auth.authenticator.authenticate(header)
  if (outcome.kind === 'none') return undefined
  if (outcome.kind === 'ok') {
    ctx.lockout.succeed(client)
    return outcome.principal
  }
  // The log names the user (when there is one), never the password or the header.
  ctx.log.info({ tunnel: tunnel.id, client, user: outcome.user, reason: outcome.reason }, 'authentication failed')
  if (ctx.lockout.fail(client)) {
    const l = auth.config.lockout
    ctx.log.warn({ client, failures: l.failures, window_ms: l.windowMs, lockout_ms: l.durationMs }, 'client locked out after repeated failed logins')
  }
  throw new ProxyError('ERR_AUTH_FAILED', { detail: AUTH_FAILURES[outcome.reason] })
}

/** Report mode: the tunnel goes ahead, the log says what enforce would do. */
function reportWouldDeny (ctx: ConnectContext, tunnel: Tunnel, v: Verdict, address?: string): void {
  ctx.log.warn({ tunnel: tunnel.id, target: tunnel.target?.authority, address, rule: v.rule, stage: v.stage, reason: v.reason }, 'policy would deny (report mode)')
}

function deny (v: Verdict, target: string): ProxyError {
  return new ProxyError(v.prohibitedAddress === true ? 'ERR_DESTINATION_PROHIBITED' : 'ERR_POLICY_DENIED', {
    detail: `${target} (rule ${v.rule}: ${v.reason})`
  })
}

/** Strip an IPv4-mapped prefix so client rules and logs see `127.0.0.1`. */
function clientIp (address: string): string {
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
}

export async function handleConnect (ctx: ConnectContext, tunnel: Tunnel, req: IncomingMessage, head: Buffer, conn: ConnectionInfo): Promise<void> {
  const auth = ctx.auth()
  try {
    const cfg = ctx.config()
    if (ctx.draining()) throw new ProxyError('ERR_SHUTTING_DOWN', { headers: { 'Retry-After': '5' } })
    // RFC 9112 §2.3: HTTP/1.x only; llhttp also accepts 0.9 and 2.0 (NODE-NOTES A5).
    if (req.httpVersion !== '1.1' && req.httpVersion !== '1.0') throw new ProxyError('ERR_BAD_VERSION', { detail: `HTTP/${req.httpVersion}` })
    const target = parseTarget(req.url)
    tunnel.target = target

    if (ctx.registry.size >= cfg.limits.max_tunnels) {
      throw new ProxyError('ERR_TOO_MANY_TUNNELS', { headers: { 'Retry-After': '1' } })
    }
    const perClient = cfg.limits.max_tunnels_per_client
    if (perClient > 0 && ctx.registry.countFor(tunnel.clientAddress) >= perClient) {
      throw new ProxyError('ERR_CLIENT_LIMIT', { headers: { 'Retry-After': '1' } })
    }
    ctx.registry.add(tunnel)
    tunnel.state = 'dialing'

    const client = clientIp(tunnel.clientAddress)
    const principal = auth === undefined ? undefined : await authenticate(ctx, auth, tunnel, req, client)
    if (principal !== undefined) tunnel.user = principal.user
    const facts: RequestFacts = {
      host: target.host,
      port: target.port,
      isName: target.kind === 'name',
      client,
      listener: conn.listener,
      ...(principal === undefined ? {} : { user: principal.user, groups: principal.groups }),
      ...(auth === undefined || principal !== undefined ? {} : { challenge: auth.config.required ? 'always' : 'rules' })
    }
    const early = decideRequest(cfg.policy, facts)
    if (early?.challenge === true) {
      tunnel.rule = early.rule
      throw new ProxyError('ERR_AUTH_REQUIRED', { detail: `rule ${early.rule} needs a user` })
    }
    if (early !== undefined && !early.allow) {
      tunnel.rule = early.rule
      tunnel.stage = early.stage
      throw deny(early, target.authority)
    }
    if (early?.wouldDeny === true) reportWouldDeny(ctx, tunnel, early)

    const candidates = await ctx.resolver.resolve(target.host)
    if (tunnel.abort.signal.aborted) return
    for (const address of candidates) {
      if (ctx.isSelf(address, target.port)) {
        throw new ProxyError('ERR_LOOP_DETECTED', { detail: `${target.authority} resolves to this proxy's listener ${address}` })
      }
    }
    const { allowed, judgements } = judgeAddresses(cfg.policy, facts, candidates)
    let refusal: Verdict | undefined
    for (const { address, verdict: v } of judgements) {
      if (v.allow) {
        tunnel.rule ??= v.rule
        tunnel.stage ??= v.stage
        if (v.wouldDeny === true && early?.wouldDeny !== true) reportWouldDeny(ctx, tunnel, v, address)
      } else {
        refusal ??= v
        ctx.log.debug({ tunnel: tunnel.id, target: target.authority, address, rule: v.rule, reason: v.reason }, 'address refused')
      }
    }
    if (allowed.length === 0 && refusal !== undefined) {
      tunnel.rule = refusal.rule
      tunnel.stage = refusal.stage
      throw deny(refusal, target.authority)
    }
    tunnel.facts = facts

    const { socket, dialed } = await ctx.dialer.dial({ target, addresses: allowed, signal: tunnel.abort.signal })
    tunnel.establish(socket, dialed, head)
  } catch (err) {
    const e = toProxyError(err)
    if (e.code === 'ERR_INTERNAL') ctx.log.error({ err, tunnel: tunnel.id }, 'internal error handling CONNECT')
    if (e.status === 407 && auth !== undefined) {
      // RFC 7617 §2.1: charset="UTF-8" tells clients to send UTF-8 credentials.
      const challenge = { 'Proxy-Authenticate': `Basic realm="${auth.config.realm}", charset="UTF-8"` }
      if (conn.challenges + 1 < auth.config.maxAttempts) {
        // The client may retry on this same connection (clients that only
        // answer a challenge, e.g. Apache HttpClient, need that).
        const socket = tunnel.release(e, challenge)
        if (socket !== undefined) conn.rearm(socket, head)
        return
      }
      tunnel.fail(e, challenge)
      return
    }
    tunnel.fail(e)
  }
}
