/**
 * One CONNECT: admit → authorize → decide → dial → answer, each a step below
 * that reads top to bottom. Client bytes stay in the (non-flowing)
 * downstream socket until the dial succeeded; on any failure they are
 * dropped with the socket.
 */
import type { Socket } from 'node:net'
import { ProxyError, toProxyError } from '../errors.js'
import type { Endpoint } from '../net/ip.js'
import type { Config } from '../config/load.js'
import { parseTarget, type Target } from './target.js'
import { authenticate, certificateUser } from './authenticate.js'
import type { RequestHead } from './head-parser.js'
import type { Principal } from '../auth/authenticator.js'
import { stillAllowed } from '../policy/recheck.js'
import { evaluate, type Decision, type EvaluationEnv } from '../policy/evaluate.js'
import type { RequestFacts, Verdict } from '../policy/decide.js'
import { F } from '../observability/fields.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import { startsWithParent, type Routing } from '../upstream/routing.js'
import type { AuthState, ConnectContext, ConnectionInfo, Retry } from './context.js'

export type { AuthState, ConnectContext, ConnectionInfo, Retry } from './context.js'

/**
 * Run the pipeline for one parsed CONNECT head; `early` is what the client
 * sent after it (docs/node-internals.md A1). Resolves with the connection
 * when a 407 hands it back for the client's retry, else undefined. Never
 * rejects: every failure is answered here.
 */
export async function handleConnect (ctx: ConnectContext, tunnel: Tunnel, req: RequestHead, early: Buffer, conn: ConnectionInfo): Promise<Retry | undefined> {
  // A verified client certificate is the user (README "HTTPS proxy"): Basic auth is not asked for.
  const auth = conn.identity === undefined ? ctx.auth() : undefined
  try {
    const cfg = ctx.config()
    const target = admit(ctx, cfg, tunnel, parseRequest(req))
    // One await where something waits (a password check, DNS, the dial),
    // none where nothing does (a cached credential, an IP literal or a
    // cached name's decision): issue 12's "no promise chains".
    const checking = conn.identity !== undefined
      ? certificateUser(ctx, tunnel, conn.identity)
      : auth === undefined ? undefined : authenticate(ctx, auth, tunnel, req, tunnel.clientAddress)
    const principal = checking instanceof Promise ? await checking : checking
    if (principal !== undefined) admitUser(ctx, cfg, tunnel, principal.user)
    await open(ctx, cfg, tunnel, target, requestFacts(tunnel, target, conn, auth, principal), early)
    return undefined
  } catch (err) {
    try {
      return answerFailure(ctx, tunnel, err, auth, conn, early)
    } catch (bug) {
      // The backstop: answering failed too.
      ctx.log.error({ err: bug, [F.tunnel]: tunnel.id }, 'unhandled error in CONNECT pipeline')
      tunnel.destroy('error')
      return undefined
    }
  }
}

/**
 * A forward without HTTP (a `tcp` listener's fixed target, issue 13; an
 * `sni` listener's ClientHello name, issue 14, whose hello bytes are the
 * `early` data replayed to the target): the CONNECT pipeline from the
 * admission on, so a refusal is the listener's (a close, an alert) and its
 * code goes to the tunnel's log line.
 */
export async function handleForward (ctx: ConnectContext, tunnel: Tunnel, target: Target, conn: ConnectionInfo, early: Buffer = EMPTY, upgrade?: Upgrade): Promise<void> {
  try {
    const cfg = ctx.config()
    admit(ctx, cfg, tunnel, target)
    await open(ctx, cfg, tunnel, target, requestFacts(tunnel, target, conn, undefined, undefined, cfg.routing), early, upgrade)
  } catch (err) {
    const e = toProxyError(err)
    if (e.code === 'ERR_INTERNAL') ctx.log.error({ err, [F.tunnel]: tunnel.id }, 'internal error handling a forward')
    tunnel.fail(e)
  }
}

const EMPTY = Buffer.alloc(0)

/**
 * What a terminate listener does between the dial and the relay (issue 14,
 * tunnel/terminate.ts): TLS to the upstream, then the client's handshake.
 * Resolves with the socket to relay to; rejects with the refusal, having
 * closed what it opened.
 */
export type Upgrade = (tunnel: Tunnel, upstream: Socket) => Promise<Socket>

/** Decide, dial and establish: what every kind of listener shares once it knows the target. */
async function open (ctx: ConnectContext, cfg: Config, tunnel: Tunnel, target: Target, facts: RequestFacts, early: Buffer, upgrade?: Upgrade): Promise<void> {
  const pending = evaluate(envFor(ctx, cfg), facts, tunnel)
  const decision = decided(tunnel, pending instanceof Promise ? await pending : pending)
  if (tunnel.aborted) return
  tunnel.dialing(decision.route.name)
  const dialStart = performance.now()
  const { socket, dialed, hops } = await ctx.dial({
    route: decision.route,
    target,
    directAddresses: () => decision.addresses(),
    signal: tunnel,
    onFailover: (choice, err) => { tunnel.failover(choice, err); ctx.metrics.failover(choice) }
  }, ctx.routeOptions())
  ctx.metrics.upstreamConnected(performance.now() - dialStart)
  establish(ctx, cfg, tunnel, decision, upgrade === undefined ? socket : await upgrade(tunnel, socket), dialed, hops, early)
}

/** The request's target; throws the refusal. */
function parseRequest (req: RequestHead): Target {
  // RFC 9112 §2.3: HTTP/1.x only; the head parser reports any HTTP/d.d, and 0.9 for a request line without one.
  if (req.version !== '1.1' && req.version !== '1.0') throw new ProxyError('ERR_BAD_VERSION', { detail: `HTTP/${req.version}` })
  return parseTarget(req.target)
}

/** Count the request against the limits; throws the refusal. */
function admit (ctx: ConnectContext, cfg: Config, tunnel: Tunnel, target: Target): Target {
  if (ctx.draining()) throw new ProxyError('ERR_SHUTTING_DOWN', { headers: { 'Retry-After': '5' } })
  tunnel.parsed(target)
  if (ctx.registry.size >= cfg.limits.max_tunnels) {
    throw new ProxyError('ERR_TOO_MANY_TUNNELS', { headers: { 'Retry-After': '1' } })
  }
  const perClient = cfg.limits.max_tunnels_per_client
  if (perClient > 0 && ctx.registry.countFor(tunnel.clientAddress) >= perClient) {
    throw new ProxyError('ERR_CLIENT_LIMIT', { headers: { 'Retry-After': '1' } })
  }
  ctx.registry.add(tunnel)
  tunnel.admit()
  return target
}

/**
 * The per-user limits (issue 15), for an authenticated user: anonymous
 * tunnels are not counted. `limits.max_bytes_per_user` first (a user past it
 * waits for the window's end, whatever they have open), then
 * `limits.max_tunnels_per_user`, which counts the tunnel; throws the refusal.
 */
function admitUser (ctx: ConnectContext, cfg: Config, tunnel: Tunnel, user: string): void {
  const over = ctx.userBytes.over(user)
  if (over !== undefined) {
    throw new ProxyError('ERR_USER_BYTES', { detail: `${over.used} of ${over.limit} bytes`, headers: { 'Retry-After': String(over.retryAfterS) } })
  }
  const perUser = cfg.limits.max_tunnels_per_user
  if (perUser === 0) return
  if (ctx.registry.countForUser(user) >= perUser) {
    throw new ProxyError('ERR_USER_LIMIT', { detail: `${perUser} open`, headers: { 'Retry-After': '1' } })
  }
  ctx.registry.addUser(tunnel, user)
}

/** What the policy is asked: the same facts `sluice check` builds (cli/check.ts). */
export function requestFacts (tunnel: Tunnel, target: Target, conn: ConnectionInfo, auth: AuthState | undefined, principal: Principal | undefined, routing?: Routing): RequestFacts {
  return {
    host: target.host,
    port: target.port,
    isName: target.kind === 'name',
    client: tunnel.clientAddress,
    listener: conn.listener,
    // Read from the config in force, so a reload that reroutes the listener's via is seen (issue 13).
    ...(conn.via === undefined || routing === undefined ? {} : { via: conn.via, viaParent: startsWithParent(routing, conn.via) }),
    ...(principal === undefined ? {} : { user: principal.user, groups: principal.groups }),
    ...(auth === undefined || principal !== undefined ? {} : { challenge: auth.config.required ? 'always' : 'rules' })
  }
}

/**
 * The evaluation's environment for one proxy under one config: built once
 * per (proxy, config), not per CONNECT (issue 12: no closures per tunnel).
 * The callbacks find their tunnel as the Decision's owner.
 */
const envs = new WeakMap<ConnectContext, { readonly config: Config, readonly env: EvaluationEnv }>()

function envFor (ctx: ConnectContext, cfg: Config): EvaluationEnv {
  const cached = envs.get(ctx)
  if (cached?.config === cfg) return cached.env
  const env: EvaluationEnv = {
    policy: cfg.policy,
    routing: cfg.routing,
    resolve: async (host) => await ctx.resolver.resolve(host),
    cached: (host) => ctx.resolver.cached?.(host),
    isSelf: ctx.isSelf,
    report: (v, address, d) => reportWouldDeny(ctx, d.owner as Tunnel, v, address),
    refused: (address, v, d) => {
      const tunnel = d.owner as Tunnel
      ctx.log.debug({ [F.tunnel]: tunnel.id, [F.target]: tunnel.target?.authority, [F.address]: address, [F.rule]: v.rule, [F.reason]: v.reason }, 'address refused')
    }
  }
  envs.set(ctx, { config: cfg, env })
  return env
}

/** The one evaluation's outcome (policy/evaluate.ts) goes on the tunnel; throws its refusal. */
function decided (tunnel: Tunnel, decision: Decision): Decision {
  tunnel.decided(decision)
  if (decision.refusal !== undefined) throw decision.refusal
  return decision
}

/** Report mode: the tunnel goes ahead, the log says what enforce would do. */
function reportWouldDeny (ctx: ConnectContext, tunnel: Tunnel, v: Verdict, address?: string): void {
  ctx.log.warn({ [F.tunnel]: tunnel.id, [F.target]: tunnel.target?.authority, [F.address]: address, [F.rule]: v.rule, [F.stage]: v.stage, [F.reason]: v.reason }, 'policy would deny (report mode)')
}

/** Hand the dialed upstream to the tunnel, unless a reload revoked it meanwhile. */
function establish (ctx: ConnectContext, cfg: Config, tunnel: Tunnel, decision: Decision, socket: Socket, dialed: Endpoint, hops: readonly string[], early: Buffer): void {
  // A reload with revoke_on_reload while we were dialing: judge again (issue 3).
  const now = ctx.config()
  if (now !== cfg && now.revokeOnReload && !stillAllowed(now.policy, decision.facts, dialed, hops.length > 0)) {
    socket.destroy()
    throw new ProxyError('ERR_POLICY_DENIED', { detail: `${decision.authority} (revoked by a policy reload while connecting)` })
  }
  tunnel.establish(socket, dialed, hops, early)
}

/** Every failure ends here: one answer, a 407 with a retry on the same connection if allowed (then the connection to read again). */
function answerFailure (ctx: ConnectContext, tunnel: Tunnel, err: unknown, auth: AuthState | undefined, conn: ConnectionInfo, early: Buffer): Retry | undefined {
  let e = toProxyError(err)
  // Work cut short by shutdown (e.g. a bcrypt compare when the pool closes) is not a bug.
  if (e.code === 'ERR_INTERNAL' && ctx.draining()) e = new ProxyError('ERR_SHUTTING_DOWN', { detail: 'shutdown', cause: err })
  if (e.code === 'ERR_INTERNAL') ctx.log.error({ err, [F.tunnel]: tunnel.id }, 'internal error handling CONNECT')
  if (e.status === 407 && auth !== undefined) {
    // RFC 7617 §2.1: charset="UTF-8" tells clients to send UTF-8 credentials.
    const challenge = { 'Proxy-Authenticate': `Basic realm="${auth.config.realm}", charset="UTF-8"` }
    if (conn.challenges + 1 < auth.config.maxAttempts) {
      // The client may retry on this same connection (clients that only
      // answer a challenge, e.g. Apache HttpClient, need that): its
      // listener reads the next head, starting with the bytes after this one.
      const socket = tunnel.challenge(e, challenge)
      return socket === undefined ? undefined : { socket, early, challenges: conn.challenges + 1 }
    }
    tunnel.fail(e, challenge)
    return undefined
  }
  tunnel.fail(e)
  return undefined
}
