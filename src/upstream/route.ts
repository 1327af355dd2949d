/**
 * Routes, PAC-style: an ordered list of choices, each `direct` or a chain
 * of parents. Before the client is answered, a failure to reach a choice
 * moves on to the next; a parent's 403/407 (or another 4xx) is an answer
 * and is not retried elsewhere. Choices whose parents are marked down are
 * skipped, unless all are.
 */
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import { toProxyError, type ErrorCode, type ProxyError } from '../errors.js'
import type { Target } from '../connect/target.js'
import type { Resolver } from '../net/resolver.js'
import type { Endpoint } from '../net/ip.js'
import { race } from './happy-eyeballs.js'
import { dialChain } from './chain.js'
import type { ParentHealth } from './health.js'
import type { Cancellation } from './cancel.js'
import type { Parent } from './parent.js'

export type Choice = { readonly kind: 'direct' } | { readonly kind: 'chain', readonly hops: readonly Parent[] }

export interface Route {
  readonly name: string
  readonly choices: readonly Choice[]
}

const NO_HOPS: readonly string[] = Object.freeze([])

export const DIRECT: Route = Object.freeze({ name: 'direct', choices: Object.freeze([{ kind: 'direct' } as const]) })

export interface RouteDialOptions {
  readonly resolver: Resolver
  readonly health: ParentHealth
  readonly log: Logger
  readonly connectTimeoutMs: number
  readonly attemptDelayMs: number
  readonly keepAliveMs: number
}

export interface RouteDialRequest {
  readonly route: Route
  readonly target: Target
  /** Policy-checked addresses for a direct choice (resolved only if one is tried); an IP literal's come back at once. */
  readonly directAddresses: () => readonly string[] | Promise<readonly string[]>
  readonly signal: Cancellation
  /**
   * A choice failed and the next is tried: the tunnel records it for its
   * one closing log line (issue 10: no separate line per failed choice).
   */
  readonly onFailover?: (choice: string, err: ProxyError) => void
}

export interface RouteDialed {
  readonly socket: Socket
  /** What was dialed: the target's address for direct, the first parent's host otherwise. */
  readonly dialed: Endpoint
  /** Parent names in order; empty for direct. */
  readonly hops: readonly string[]
}

/** Failures that are worth another choice; everything else is an answer. */
const FAILOVER: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'ERR_PARENT_REFUSED', 'ERR_PARENT_TIMEOUT', 'ERR_PARENT_FAILED', 'ERR_PARENT_TLS', 'ERR_PARENT_TLS_CERT', 'ERR_PARENT_PROTOCOL',
  'ERR_UPSTREAM_REFUSED', 'ERR_UPSTREAM_UNREACHABLE', 'ERR_UPSTREAM_RESET', 'ERR_UPSTREAM_FAILED', 'ERR_UPSTREAM_TIMEOUT',
  'ERR_DNS_NXDOMAIN', 'ERR_DNS_NO_ADDRESSES', 'ERR_DNS_FAILED', 'ERR_DNS_TIMEOUT'
])
/** Failures that say the parent itself is unhealthy (a 5xx may be about the target). */
const UNHEALTHY: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'ERR_PARENT_REFUSED', 'ERR_PARENT_TIMEOUT', 'ERR_PARENT_FAILED', 'ERR_PARENT_TLS', 'ERR_PARENT_TLS_CERT', 'ERR_PARENT_PROTOCOL'
])

function retryable (e: ProxyError): boolean {
  if (FAILOVER.has(e.code)) return true
  return e.code === 'ERR_PARENT_STATUS' && Number(e.params['received-status'] ?? 0) >= 500
}

function label (c: Choice): string {
  return c.kind === 'direct' ? 'direct' : c.hops.map(h => h.name).join('>')
}

export async function dialRoute (req: RouteDialRequest, opts: RouteDialOptions): Promise<RouteDialed> {
  const all = req.route.choices
  // One choice (`direct`, the default route): nothing to skip or reorder.
  const up = all.length === 1 ? all : all.filter(c => c.kind === 'direct' || c.hops.every(h => !opts.health.isDown(h.name)))
  const choices = up.length > 0 ? up : all
  let last: ProxyError | undefined
  for (const choice of choices) {
    try {
      if (choice.kind === 'direct') {
        const known = req.directAddresses()
        const addresses = known instanceof Promise ? await known : known
        const { socket, address } = await race(addresses, {
          port: req.target.port,
          attemptDelayMs: opts.attemptDelayMs,
          timeoutMs: opts.connectTimeoutMs,
          // The tunnel's sweep turns it on (server/registry.ts): most tunnels end before.
          keepAliveMs: 0,
          signal: req.signal
        })
        return { socket, dialed: { address, port: req.target.port }, hops: NO_HOPS }
      }
      const socket = await dialChain(choice.hops, req.target, {
        resolver: opts.resolver,
        timeoutMs: opts.connectTimeoutMs,
        attemptDelayMs: opts.attemptDelayMs,
        keepAliveMs: opts.keepAliveMs,
        signal: req.signal
      })
      for (const h of choice.hops) opts.health.succeeded(h.name)
      const first = choice.hops[0]
      return { socket, dialed: { address: first?.host ?? '', port: first?.port ?? 0 }, hops: choice.hops.map(h => h.name) }
    } catch (err) {
      const e = toProxyError(err)
      if (req.signal.aborted || !retryable(e)) throw e
      const hop = e.params['next-hop']
      if (choice.kind === 'chain' && typeof hop === 'string' && UNHEALTHY.has(e.code)) opts.health.failed(hop, e.code)
      req.onFailover?.(label(choice), e)
      last = e
    }
  }
  throw last ?? toProxyError(new Error('route has no choices'))
}
