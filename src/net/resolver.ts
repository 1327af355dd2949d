/**
 * Name resolution for the dialer, with a bounded TTL cache, negative caching
 * and in-flight de-duplication, so a burst of tunnels to one name costs one
 * lookup (docs/node-internals.md B5: dns.lookup runs on the 4-thread libuv pool).
 *
 * Two back ends:
 * - `servers` set: c-ares (`dns.promises.Resolver`) against those servers,
 *   A and AAAA in parallel, honouring record TTLs. Tests point it at a stub.
 * - otherwise the system resolver (getaddrinfo), which honours /etc/hosts
 *   and nsswitch the way every other program on the host does.
 */
import { promises as dns } from 'node:dns'
import { isIP } from 'node:net'
import { ProxyError } from '../errors.js'
import { NOOP_METRICS, OK, type ProxyMetrics } from '../observability/proxy-metrics.js'

export interface ResolverOptions {
  /** `host[:port]` DNS servers; empty → system resolver. */
  readonly servers: readonly string[]
  /** Give up on a name after this long (ms). */
  readonly timeoutMs: number
  /** Upper bound on how long a positive answer is cached (ms). */
  readonly maxTtlMs: number
  /** How long NXDOMAIN / no-data answers are cached (ms); 0 disables. */
  readonly negativeTtlMs: number
  /** Bound on cached names. */
  readonly maxEntries?: number
  /** Where lookups and cache hits are counted (issue 15). */
  readonly metrics?: Pick<ProxyMetrics, 'dnsLookup' | 'dnsCacheHit'>
}

export interface Resolver {
  /** Addresses for `host`, IPv6 and IPv4 interleaved (RFC 8305 §4). IP literals are returned as is. */
  resolve (host: string): Promise<readonly string[]>
  /**
   * A fresh positive answer already cached for `host`, else undefined: lets
   * a CONNECT to a cached name be decided without a promise (issue 12).
   */
  cached?: (host: string) => readonly string[] | undefined
}

interface Entry { readonly expires: number, readonly addresses?: readonly string[], readonly error?: ProxyError }

/** Map a resolver errno to our registry, keeping the cause. */
function dnsError (host: string, err: unknown): ProxyError {
  const code = (err as { code?: unknown }).code
  switch (code) {
    case 'ENOTFOUND': case 'NXDOMAIN':
      return new ProxyError('ERR_DNS_NXDOMAIN', { detail: host, params: { rcode: 'NXDOMAIN' }, cause: err })
    case 'ENODATA':
      return new ProxyError('ERR_DNS_NO_ADDRESSES', { detail: host, params: { rcode: 'NOERROR' }, cause: err })
    case 'ETIMEOUT': case 'ETIMEDOUT':
      return new ProxyError('ERR_DNS_TIMEOUT', { detail: host, cause: err })
    case 'ESERVFAIL': case 'EAI_AGAIN':
      return new ProxyError('ERR_DNS_FAILED', { detail: host, params: { rcode: 'SERVFAIL' }, cause: err })
    case 'EREFUSED':
      return new ProxyError('ERR_DNS_FAILED', { detail: host, params: { rcode: 'REFUSED' }, cause: err })
    default:
      return new ProxyError('ERR_DNS_FAILED', { detail: `${host} (${String(code ?? 'unknown error')})`, cause: err })
  }
}

/** RFC 8305 §4: interleave families, IPv6 first. */
export function interleave (v6: readonly string[], v4: readonly string[]): string[] {
  const out: string[] = []
  const n = Math.max(v6.length, v4.length)
  for (let i = 0; i < n; i++) {
    const a = v6[i]
    const b = v4[i]
    if (a !== undefined) out.push(a)
    if (b !== undefined) out.push(b)
  }
  return out
}

type Answer = { addresses: string[], ttlMs: number }

export function createResolver (opts: ResolverOptions): Resolver {
  const cache = new Map<string, Entry>()
  const inflight = new Map<string, Promise<readonly string[]>>()
  const maxEntries = opts.maxEntries ?? 10_000
  const metrics = opts.metrics ?? NOOP_METRICS
  let cares: dns.Resolver | undefined
  if (opts.servers.length > 0) {
    // c-ares retries per server with its own timeout; our deadline bounds the total.
    cares = new dns.Resolver({ timeout: Math.max(50, Math.floor(opts.timeoutMs / 2)), tries: 2 })
    cares.setServers([...opts.servers])
  }

  async function viaCares (r: dns.Resolver, host: string): Promise<Answer> {
    const [v6, v4] = await Promise.allSettled([r.resolve6(host, { ttl: true }), r.resolve4(host, { ttl: true })])
    const a6 = v6.status === 'fulfilled' ? v6.value : []
    const a4 = v4.status === 'fulfilled' ? v4.value : []
    if (a6.length + a4.length === 0) {
      // Prefer the most telling failure: NXDOMAIN > timeout > SERVFAIL > no data.
      const errs = [v6, v4].flatMap(s => s.status === 'rejected' ? [s.reason as { code?: string }] : [])
      const rank = (e: { code?: string }): number =>
        ['ENOTFOUND', 'ETIMEOUT', 'ESERVFAIL', 'EREFUSED'].indexOf(e.code ?? '') >>> 0
      errs.sort((x, y) => rank(x) - rank(y))
      throw errs[0] ?? Object.assign(new Error('no addresses'), { code: 'ENODATA' })
    }
    const ttl = Math.min(...[...a6, ...a4].map(r => r.ttl)) * 1000
    return { addresses: interleave(a6.map(r => r.address), a4.map(r => r.address)), ttlMs: ttl }
  }

  async function viaSystem (host: string): Promise<Answer> {
    const all = await dns.lookup(host, { all: true, verbatim: true })
    if (all.length === 0) throw Object.assign(new Error('no addresses'), { code: 'ENODATA' })
    return {
      addresses: interleave(all.filter(a => a.family === 6).map(a => a.address), all.filter(a => a.family === 4).map(a => a.address)),
      ttlMs: opts.maxTtlMs
    }
  }

  function remember (host: string, entry: Entry): void {
    if (cache.size >= maxEntries) {
      const oldest = cache.keys().next()
      if (oldest.done !== true) cache.delete(oldest.value)
    }
    cache.set(host, entry)
  }

  async function lookup (host: string): Promise<readonly string[]> {
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('DNS timeout'), { code: 'ETIMEOUT' })), opts.timeoutMs)
    })
    try {
      const answer = await Promise.race([cares === undefined ? viaSystem(host) : viaCares(cares, host), deadline])
      const ttl = Math.min(answer.ttlMs, opts.maxTtlMs)
      if (ttl > 0) remember(host, { expires: Date.now() + ttl, addresses: answer.addresses })
      metrics.dnsLookup(OK)
      return answer.addresses
    } catch (err) {
      const mapped = dnsError(host, err)
      metrics.dnsLookup(mapped.code)
      if (opts.negativeTtlMs > 0 && (mapped.code === 'ERR_DNS_NXDOMAIN' || mapped.code === 'ERR_DNS_NO_ADDRESSES')) {
        remember(host, { expires: Date.now() + opts.negativeTtlMs, error: mapped })
      }
      throw mapped
    } finally {
      clearTimeout(timer)
    }
  }

  return {
    cached (host: string): readonly string[] | undefined {
      const hit = cache.get(host)
      const addresses = hit !== undefined && hit.expires > Date.now() ? hit.addresses : undefined
      // A hit here is the whole answer: resolve() is not asked (policy/evaluate.ts).
      if (addresses !== undefined) metrics.dnsCacheHit()
      return addresses
    },
    async resolve (host: string): Promise<readonly string[]> {
      if (isIP(host) !== 0) return [host]
      const hit = cache.get(host)
      if (hit !== undefined) {
        if (hit.expires > Date.now()) {
          metrics.dnsCacheHit()
          if (hit.error !== undefined) throw hit.error
          if (hit.addresses !== undefined) return hit.addresses
        }
        cache.delete(host)
      }
      let pending = inflight.get(host)
      if (pending === undefined) {
        pending = lookup(host).finally(() => inflight.delete(host))
        inflight.set(host, pending)
      }
      return await pending
    }
  }
}
