/**
 * One CONNECT, accept → parse → decide → resolve → decide → dial → relay.
 * Client bytes stay in the (non-flowing) downstream socket until the dial
 * succeeded; on any failure they are dropped with the socket.
 */
import type { IncomingMessage } from 'node:http'
import type { Logger } from 'pino'
import { ProxyError, toProxyError } from '../errors.js'
import type { Config } from '../config/load.js'
import type { Resolver } from '../net/resolver.js'
import { dialRoute, DIRECT, type Route, type RouteDialOptions } from '../upstream/route.js'
import type { Routing } from '../upstream/routing.js'
import type { Target } from './target.js'
import { authenticate } from './authenticate.js'
import { stillAllowed } from '../policy/recheck.js'
import { decideRequest, judgeAddresses, type RequestFacts, type Verdict } from '../policy/decide.js'
import type { TunnelRegistry } from '../server/registry.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import type { Socket } from 'node:net'
import type { AuthConfig } from '../auth/load.js'
import type { Authenticator } from '../auth/authenticator.js'
import type { Lockout } from '../auth/lockout.js'
import { parseTarget } from './target.js'

export interface ConnectContext {
  readonly log: Logger
  /** The current config; a reload swaps what this returns. */
  readonly config: () => Config
  readonly resolver: Resolver
  readonly registry: TunnelRegistry
  readonly draining: () => boolean
  /** True for one of this proxy's own listening endpoints (loop guard). */
  readonly isSelf: (address: string, port: number) => boolean
  /** How routes are dialed (resolver, parent health, timeouts). */
  readonly routeOptions: () => RouteDialOptions
  readonly dial: typeof dialRoute
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

interface Judged {
  readonly allowed: readonly string[]
  readonly via: string | undefined
}

/** Resolve, refuse loops, judge every address; throws 403 when none may be dialed. */
async function judge (ctx: ConnectContext, tunnel: Tunnel, facts: RequestFacts, early: Verdict | undefined): Promise<Judged> {
  const target = tunnel.target
  if (target === undefined) throw new Error('judge before parse')
  const candidates = await ctx.resolver.resolve(target.host)
  for (const address of candidates) {
    if (ctx.isSelf(address, target.port)) {
      throw new ProxyError('ERR_LOOP_DETECTED', { detail: `${target.authority} resolves to this proxy's listener ${address}` })
    }
  }
  const { allowed, judgements } = judgeAddresses(ctx.config().policy, facts, candidates)
  let refusal: Verdict | undefined
  let via: string | undefined
  for (const { address, verdict: v } of judgements) {
    if (v.allow) {
      if (via === undefined && early === undefined) via = v.via
      if (early === undefined) tunnel.rule ??= v.rule
      tunnel.stage = v.stage
      if (v.wouldDeny === true && early?.wouldDeny !== true) reportWouldDeny(ctx, tunnel, v, address)
    } else {
      // A challenge wins: credentials may unlock the target.
      if (v.challenge === true && refusal?.challenge !== true) refusal = v
      else refusal ??= v
      ctx.log.debug({ tunnel: tunnel.id, target: target.authority, address, rule: v.rule, reason: v.reason }, 'address refused')
    }
  }
  if (allowed.length === 0 && refusal !== undefined) {
    tunnel.rule = refusal.rule
    tunnel.stage = refusal.stage
    if (refusal.challenge === true) throw new ProxyError('ERR_AUTH_REQUIRED', { detail: `rule ${refusal.rule} needs a user` })
    throw deny(refusal, target.authority)
  }
  return { allowed, via }
}

/** The rule's `via`, else the default route; NO_PROXY targets of an environment default go direct. */
function routeFor (routing: Routing, via: string | undefined, target: Target): Route {
  if (via !== undefined) return routing.routes.get(via) ?? routing.defaultRoute
  if (routing.noProxy?.(target.host, target.port) === true) return DIRECT
  return routing.defaultRoute
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
    tunnel.watchClient()

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
    if (early !== undefined) {
      tunnel.rule = early.rule
      tunnel.stage = early.stage
    }
    if (early?.challenge === true) throw new ProxyError('ERR_AUTH_REQUIRED', { detail: `rule ${early.rule} needs a user` })
    if (early !== undefined && !early.allow) throw deny(early, target.authority)
    if (early?.wouldDeny === true) reportWouldDeny(ctx, tunnel, early)
    tunnel.facts = facts

    // Stage 2 runs when a rule needs the address, for IP-literal targets,
    // and before any direct dial; a name sent to a parent is the parent's
    // to resolve (README: "Parent proxies").
    let judged: Promise<Judged> | undefined
    const addresses = async (): Promise<readonly string[]> => {
      judged ??= judge(ctx, tunnel, facts, early)
      return (await judged).allowed
    }
    let via = early?.via
    if (early === undefined || target.kind !== 'name') {
      const j = await (judged ??= judge(ctx, tunnel, facts, early))
      via ??= j.via
    }
    if (tunnel.signal.aborted) return
    const route = routeFor(cfg.routing, via, target)
    tunnel.route = route.name
    const { socket, dialed, hops } = await ctx.dial({ route, target, directAddresses: addresses, signal: tunnel.signal, tunnel: tunnel.id }, ctx.routeOptions())
    tunnel.hops = hops
    // A reload with revoke_on_reload while we were dialing: judge again (issue 3).
    const now = ctx.config()
    if (now !== cfg && now.revokeOnReload && !stillAllowed(now.policy, facts, dialed, hops.length > 0)) {
      socket.destroy()
      throw new ProxyError('ERR_POLICY_DENIED', { detail: `${target.authority} (revoked by a policy reload while connecting)` })
    }
    tunnel.establish(socket, dialed, head)
  } catch (err) {
    let e = toProxyError(err)
    // Work cut short by shutdown (e.g. a bcrypt compare when the pool closes) is not a bug.
    if (e.code === 'ERR_INTERNAL' && ctx.draining()) e = new ProxyError('ERR_SHUTTING_DOWN', { detail: 'shutdown', cause: err })
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
