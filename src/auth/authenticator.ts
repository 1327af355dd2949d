/**
 * Basic proxy authentication (RFC 7617 on Proxy-Authorization, RFC 9110
 * §11.7.2) against a users file, with a verification cache so a client
 * opening thousands of tunnels pays the slow hash once.
 *
 * The cache key is a SHA-256 of the header under a per-process random
 * secret: the cache never holds a password (nor its base64), a hit skips
 * parsing too, and a new Authenticator (built on every users-file reload)
 * starts with an empty cache.
 */
import { hash as digest, randomBytes } from 'node:crypto'
import basicAuth from 'basic-auth'
import type { BcryptPool } from './bcrypt-pool.js'
import { scryptVerify, type PasswordHash } from './hash.js'

export interface Principal {
  readonly user: string
  readonly groups: ReadonlySet<string>
}

export type AuthFailure = 'not_basic' | 'malformed' | 'unknown_user' | 'bad_password'

export type AuthOutcome =
  | { readonly kind: 'none' }
  | { readonly kind: 'ok', readonly principal: Principal, readonly cached: boolean }
  | { readonly kind: 'fail', readonly reason: AuthFailure, readonly user?: string }

export interface AuthenticatorOptions {
  readonly users: ReadonlyMap<string, PasswordHash>
  /** user → groups */
  readonly groups: ReadonlyMap<string, ReadonlySet<string>>
  readonly pool: BcryptPool
  readonly cacheTtlMs: number
  readonly cacheSize: number
}

/** A bcrypt hash of random bytes: unknown users cost the same as known ones. */
const DUMMY_BCRYPT = '$2b$10$yZzrgbLDItOkHBJGHdll8uf0MXnUBrg08jkoC7blczLNOSeZnCUpy'
const NO_GROUPS: ReadonlySet<string> = new Set()
/** Prefix of every cache key: without it a key would be a plain hash of the credentials. */
const SECRET = randomBytes(32).toString('base64')

export class Authenticator {
  private readonly opts: AuthenticatorOptions
  private readonly cache = new Map<string, { readonly principal: Principal, readonly expires: number }>()
  /** Verifications in progress by cache key: a burst of CONNECTs with the same credentials hashes once. */
  private readonly pending = new Map<string, Promise<AuthOutcome>>()

  constructor (opts: AuthenticatorOptions) {
    this.opts = opts
  }

  /** Judge a Proxy-Authorization header value (or its absence). */
  async authenticate (header: string | undefined): Promise<AuthOutcome> {
    if (header === undefined || header === '') return { kind: 'none' }
    // crypto.hash is one call (~1 µs); an HMAC object costs ~4 µs per CONNECT.
    const key = digest('sha256', SECRET + header, 'base64')
    const hit = this.cache.get(key)
    if (hit !== undefined) {
      if (hit.expires > Date.now()) return { kind: 'ok', principal: hit.principal, cached: true }
      this.cache.delete(key)
    }
    const inflight = this.pending.get(key)
    if (inflight !== undefined) return await inflight
    const verifying = this.verifyHeader(key, header)
    this.pending.set(key, verifying)
    try {
      return await verifying
    } finally {
      this.pending.delete(key)
    }
  }

  private async verifyHeader (key: string, header: string): Promise<AuthOutcome> {
    if (!/^\s*basic\s/i.test(header)) return { kind: 'fail', reason: 'not_basic' }
    const creds = basicAuth.parse(header)
    if (creds === undefined) return { kind: 'fail', reason: 'malformed' }
    const user = creds.name.normalize('NFC')
    const password = creds.pass.normalize('NFC')

    const hash = this.opts.users.get(user)
    const ok = await this.verify(hash, password)
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

  private async verify (hash: PasswordHash | undefined, password: string): Promise<boolean> {
    if (hash === undefined) {
      await this.opts.pool.compare(password, DUMMY_BCRYPT)
      return false
    }
    if (hash.scheme === 'scrypt') return await scryptVerify(hash, password)
    return await this.opts.pool.compare(password, hash.hash)
  }
}
