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

export async function handleConnect (ctx: ConnectContext, tunnel: Tunnel, req: IncomingMessage, head: Buffer, listener: string): Promise<void> {
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

    const facts: RequestFacts = { host: target.host, port: target.port, isName: target.kind === 'name', client: clientIp(tunnel.clientAddress), listener }
    const early = decideRequest(cfg.policy, facts)
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
    tunnel.fail(e)
  }
}
