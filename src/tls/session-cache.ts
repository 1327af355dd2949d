/**
 * TLS sessions to upstreams, kept for resumption (issue 14, kind terminate):
 * a terminate listener opens a new TLS connection to the upstream for
 * every client, and a full handshake costs the upstream's signature, our
 * verification of its chain and name, and Node's certificate object
 * (`onConnectSecure`); a resumed one (RFC 8446 §2.2, a PSK from the
 * upstream's NewSessionTicket) costs none of that, as ATS's origin session
 * cache does. The certificate was verified when the session was made, for
 * the same name under the same trust: the key is the name and the target,
 * and each set of upstream TLS settings has its own cache (a reload that
 * changes the CAs starts empty).
 *
 * Bounded: at most MAX_SESSIONS per set of settings, the oldest dropped
 * first; one session per key, the newest ticket replacing the last.
 */
import type { TLSSocket } from 'node:tls'

const MAX_SESSIONS = 1024

/** A session, and what was learnt of the certificate when it was made (a resumed handshake shows none). */
export interface KeptSession {
  readonly session: Buffer
  readonly subject?: string
  readonly expiry?: string
}

export class SessionCache {
  private readonly sessions = new Map<string, KeptSession>()

  get (key: string): KeptSession | undefined {
    return this.sessions.get(key)
  }

  set (key: string, kept: KeptSession): void {
    this.sessions.delete(key)
    if (this.sessions.size >= MAX_SESSIONS) {
      const oldest = this.sessions.keys().next()
      if (oldest.done !== true) this.sessions.delete(oldest.value)
    }
    this.sessions.set(key, kept)
  }

  /** A session the upstream would not resume (or that failed): not offered again. */
  forget (key: string): void {
    this.sessions.delete(key)
  }

  get size (): number { return this.sessions.size }
}

const caches = new WeakMap<object, SessionCache>()

/** The cache for one set of upstream TLS settings (made on first use, dropped with them). */
export function sessionsFor (settings: object): SessionCache {
  let c = caches.get(settings)
  if (c === undefined) {
    c = new SessionCache()
    caches.set(settings, c)
  }
  return c
}

const kSession = Symbol('sluice.session-key')
interface Keeping { readonly cache: SessionCache, readonly key: string, subject?: string | undefined, expiry?: string | undefined }
type Keyed = TLSSocket & { [kSession]?: Keeping }

/** Shared by every upstream socket (no closure each): a ticket that arrives is kept for the next connection. */
function onSession (this: Keyed, session: Buffer): void {
  const k = this[kSession]
  if (k === undefined) return
  k.cache.set(k.key, { session, ...(k.subject === undefined ? {} : { subject: k.subject }), ...(k.expiry === undefined ? {} : { expiry: k.expiry }) })
}

/** Keep `socket`'s sessions under `key`; `certificate()` tells what its certificate was, once verified. */
export function keepSessions (socket: TLSSocket, cache: SessionCache, key: string): void {
  (socket as Keyed)[kSession] = { cache, key }
  socket.on('session', onSession)
}

/** The verified certificate's facts, kept with the sessions that follow (tickets come after the handshake). */
export function sessionCertificate (socket: TLSSocket, subject: string | undefined, expiry: string | undefined): void {
  const k = (socket as Keyed)[kSession]
  if (k === undefined) return
  k.subject = subject
  k.expiry = expiry
}
