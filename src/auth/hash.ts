/**
 * Password hashes Sluice accepts, and making new ones for `sluice passwd`.
 * The proxy checks both schemes in its worker threads (bcrypt-pool.ts);
 * scryptVerify here runs on libuv's threadpool, for callers outside it.
 * Neither blocks the event loop.
 */
import { randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto'
import bcrypt from 'bcryptjs'

export type PasswordHash =
  | { readonly scheme: 'bcrypt', readonly hash: string }
  | { readonly scheme: 'scrypt', readonly N: number, readonly r: number, readonly p: number, readonly salt: Buffer, readonly key: Buffer }

const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/
/** `$scrypt$ln=15,r=8,p=1$<salt b64>$<key b64>` (PHC string format). */
const SCRYPT = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})$/

export function parseHash (text: string): PasswordHash | undefined {
  if (BCRYPT.test(text)) return { scheme: 'bcrypt', hash: text }
  const m = SCRYPT.exec(text)
  if (m === null) return undefined
  const ln = Number(m[1])
  const r = Number(m[2])
  const p = Number(m[3])
  const salt = Buffer.from(m[4] ?? '', 'base64')
  const key = Buffer.from(m[5] ?? '', 'base64')
  if (ln < 10 || ln > 20 || r < 1 || p < 1 || salt.length < 8 || key.length < 16) return undefined
  return { scheme: 'scrypt', N: 2 ** ln, r, p, salt, key }
}

export async function scryptVerify (h: Extract<PasswordHash, { scheme: 'scrypt' }>, password: string): Promise<boolean> {
  const derived = await new Promise<Buffer>((resolve, reject) => {
    scryptCb(password.normalize('NFC'), h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: 256 * h.N * h.r + 1024 * 1024 }, (err, key) => {
      if (err === null) resolve(key); else reject(err)
    })
  })
  return timingSafeEqual(derived, h.key)
}

/** A new hash line value for the users file. */
export async function hashPassword (password: string, scheme: 'bcrypt' | 'scrypt'): Promise<string> {
  if (scheme === 'bcrypt') {
    // `$2y$` is what `htpasswd -B` writes; bcryptjs produces `$2b$`, same algorithm.
    return (await bcrypt.hash(password.normalize('NFC'), 10)).replace(/^\$2b\$/, '$2y$')
  }
  const ln = 15
  const salt = randomBytes(16)
  const key = await new Promise<Buffer>((resolve, reject) => {
    scryptCb(password.normalize('NFC'), salt, 32, { N: 2 ** ln, r: 8, p: 1, maxmem: 64 * 1024 * 1024 }, (err, k) => {
      if (err === null) resolve(k); else reject(err)
    })
  })
  return `$scrypt$ln=${ln},r=8,p=1$${salt.toString('base64')}$${key.toString('base64')}`
}
