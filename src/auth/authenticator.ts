/**
 * Basic proxy authentication (RFC 7617 on Proxy-Authorization, RFC 9110
 * §11.7.2) against a users file, with a verification cache so a client
 * opening thousands of tunnels pays the slow hash once.
 *
 * The cache key is a SHA-256 of the header under a per-process random
 * secret: the cache never holds a password (nor its base64), a hit skips
 * parsing too, and a new Authenticator (built on every users-file reload)
 * starts with an empty cache.
 *
 * One call, in this order (issue 11): a locked-out client is refused
 * first, even a cached credential; a cached credential is then one hash
 * lookup; a check already running for the same header is joined (its
 * verdict was already counted); anything else reserves a verdict from the
 * client's lock-out budget, then waits its turn in the pool's fair queue.
 * Unknown users are checked against a stand-in with a real user's cost
 * (stand-in.ts), so they cost what real ones do.
 */
import { hash as digest, randomBytes } from 'node:crypto'
import basicAuth from 'basic-auth'
import type { BcryptPool } from './bcrypt-pool.js'
import { QueueFullError, type QueueLimits, type QueueScope } from './fair-queue.js'
import type { PasswordHash } from './hash.js'
import type { Lockout } from './lockout.js'
import { standIns } from './stand-in.js'

export interface Principal {
  readonly user: string
  readonly groups: ReadonlySet<string>
}

export type AuthFailure = 'not_basic' | 'malformed' | 'unknown_user' | 'bad_password'

export type AuthOutcome =
  | { readonly kind: 'none' }
  | { readonly kind: 'ok', readonly principal: Principal, readonly cached: boolean }
  /** `lockedOut`: this failure started a lock-out (log it once). */
  | { readonly kind: 'fail', readonly reason: AuthFailure, readonly user?: string, readonly lockedOut?: boolean }
  /** Not judged: the client is locked out, or its lock-out budget is held by checks in flight. */
  | { readonly kind: 'locked', readonly retryAfter: number }
  /** Not judged: too many checks pending, from this client or in all. */
  | { readonly kind: 'busy', readonly scope: QueueScope, readonly limit: number }

export interface AuthenticatorOptions {
  readonly users: ReadonlyMap<string, PasswordHash>
  /** user → groups */
  readonly groups: ReadonlyMap<string, ReadonlySet<string>>
  readonly pool: BcryptPool
  readonly cacheTtlMs: number
  readonly cacheSize: number
  /** Checks waiting or running per client address at most (default: no limit). */
  readonly maxPendingPerClient?: number
  /** Checks waiting or running in all at most (default: no limit). */
  readonly maxPending?: number
}

/** Who asks and what guards them; without a lockout, failures are not counted. */
export interface AuthContext {
  readonly client: string
  readonly lockout?: Lockout
}

const NO_GROUPS: ReadonlySet<string> = new Set()
const NONE: AuthOutcome = Object.freeze({ kind: 'none' })
const ANONYMOUS_CALLER: AuthContext = Object.freeze({ client: '' })
/** Prefix of every cache key: without it a key would be a plain hash of the credentials. */
const SECRET = randomBytes(32).toString('base64')

type Verdict = Extract<AuthOutcome, { kind: 'ok' | 'fail' | 'busy' }>

export class Authenticator {
  private readonly opts: AuthenticatorOptions
  private readonly limits: QueueLimits
  private readonly standIn: (name: string) => PasswordHash
  private readonly cache = new Map<string, { readonly principal: Principal, readonly expires: number }>()
  /** Verifications in progress by cache key: a burst of CONNECTs with the same credentials hashes once. */
  private readonly pending = new Map<string, Promise<Verdict>>()

  constructor (opts: AuthenticatorOptions) {
    this.opts = opts
    this.limits = { perKey: opts.maxPendingPerClient ?? Infinity, total: opts.maxPending ?? Infinity }
    this.standIn = standIns(opts.users)
  }

  /**
   * Judge a Proxy-Authorization header value (or its absence) from
   * `caller.client`. A lock-out, no header and a cached credential are
   * answered at once, without a promise (issue 12: auth on should cost ≤ 3 %
   * of tunnels/s); anything else is a promise of the verdict.
   */
  authenticate (header: string | undefined, caller: AuthContext = ANONYMOUS_CALLER): AuthOutcome | Promise<AuthOutcome> {
    const { client, lockout } = caller
    const wait = lockout?.retryAfter(client) ?? 0
    if (wait > 0) return { kind: 'locked', retryAfter: wait }
    if (header === undefined || header === '') return NONE
    // crypto.hash is one call (~1 µs); an HMAC object costs ~4 µs per CONNECT.
    const key = digest('sha256', SECRET + header, 'base64')
    const hit = this.cache.get(key)
    if (hit !== undefined) {
      if (hit.expires > Date.now()) return { kind: 'ok', principal: hit.principal, cached: true }
      this.cache.delete(key)
    }
    return this.check(key, header, caller)
  }

  /** Not cached: join a check in flight, or reserve a verdict from the lock-out budget and verify. */
  private async check (key: string, header: string, { client, lockout }: AuthContext): Promise<AuthOutcome> {
    // The same header already being checked: its verdict is shared, and was counted once.
    const inflight = this.pending.get(key)
    if (inflight !== undefined) return await inflight
    const budget = lockout?.reserve(client) ?? 0
    if (budget > 0) return { kind: 'locked', retryAfter: budget }
    const verifying = this.verifyHeader(key, header, client)
    this.pending.set(key, verifying)
    let verdict: Verdict
    try {
      verdict = await verifying
    } catch (err) {
      lockout?.release(client)
      throw err
    } finally {
      this.pending.delete(key)
    }
    if (verdict.kind !== 'fail') {
      lockout?.release(client)
      return verdict
    }
    return lockout?.fail(client) === true ? { ...verdict, lockedOut: true } : verdict
  }

  private async verifyHeader (key: string, header: string, client: string): Promise<Verdict> {
    if (!/^\s*basic\s/i.test(header)) return { kind: 'fail', reason: 'not_basic' }
    const creds = basicAuth.parse(header)
    if (creds === undefined) return { kind: 'fail', reason: 'malformed' }
    const user = creds.name.normalize('NFC')
    const password = creds.pass.normalize('NFC')

    const hash = this.opts.users.get(user)
    let ok: boolean
    try {
      // Unknown or not, the same path: a stand-in with a real user's cost for an unknown name.
      ok = await this.opts.pool.verify(hash ?? this.standIn(user), password, { client, limits: this.limits })
    } catch (err) {
      if (err instanceof QueueFullError) return { kind: 'busy', scope: err.scope, limit: err.limit }
      throw err
    }
    if (hash === undefined) return { kind: 'fail', reason: 'unknown_user', user }
    if (!ok) return { kind: 'fail', reason: 'bad_password', user }
    const principal: Principal = { user, groups: this.opts.groups.get(user) ?? NO_GROUPS }
    if (this.cache.size >= this.opts.cacheSize) {
      const oldest = this.cache.keys().next()
      if (oldest.done !== true) this.cache.delete(oldest.value)
    }
    this.cache.set(key, { principal, expires: Date.now() + this.opts.cacheTtlMs })
    return { kind: 'ok', principal, cached: false }
  }
}
