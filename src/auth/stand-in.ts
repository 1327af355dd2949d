/**
 * What an unknown user's password is checked against, so that an unknown
 * name costs what a real one does (issue 11, finding 3: with a fixed
 * bcrypt-10 stand-in, an unknown user took 84 ms where a wrong password
 * for a `htpasswd -B` (cost 5) user took 4 ms and a scrypt user 104 ms).
 *
 * The choice: a keyed hash of the name picks one of the loaded users, and
 * the check runs against a stand-in with that user's parameters (scheme,
 * bcrypt prefix and cost; scrypt N, r, p, salt and key length), made of
 * random bytes. Why this and not one stand-in with the file's median cost:
 * - in a file that mixes costs or schemes, a median stand-in leaves every
 *   user whose cost is not the median telling apart from unknown names;
 *   picking by name gives unknown names the same mix of costs as real ones;
 * - the pick is a function of the name, so one unknown name always costs
 *   the same, as one real user does (a random pick per attempt would show
 *   up as variance);
 * - the key is a per-process secret, so nobody can work out which cost an
 *   unknown name should have and compare (a real user's cost is fixed by
 *   their hash, an unknown name's by the key).
 * Stand-ins are random bytes in the right format, not real hashes, so they
 * are made at load without hashing (a bcrypt-12 user would otherwise cost
 * 0.3 s of event loop per reload) and no password matches them.
 */
import { hash as digest, randomBytes } from 'node:crypto'
import type { PasswordHash } from './hash.js'

/** Keys the name → user pick; stable for the life of the process, so across reloads too. */
const SECRET = randomBytes(32).toString('base64')

const BCRYPT64 = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

/** Random bcrypt salt and digest (53 characters) after the user's `$2y$NN$`. */
function bcryptStandIn (prefix: string): PasswordHash {
  const bytes = randomBytes(53)
  let tail = ''
  for (const b of bytes) tail += BCRYPT64[b & 63] ?? '.'
  return { scheme: 'bcrypt', hash: prefix + tail }
}

/** The parameters whose cost a check depends on, as one string. */
function costKey (h: PasswordHash): string {
  return h.scheme === 'bcrypt' ? h.hash.slice(0, 7) : `scrypt:${h.N}:${h.r}:${h.p}:${h.salt.length}:${h.key.length}`
}

function standInLike (h: PasswordHash): PasswordHash {
  if (h.scheme === 'bcrypt') return bcryptStandIn(h.hash.slice(0, 7))
  return { scheme: 'scrypt', N: h.N, r: h.r, p: h.p, salt: randomBytes(h.salt.length), key: randomBytes(h.key.length) }
}

/** With no users at all: what `sluice passwd` writes by default (bcrypt cost 10). */
const EMPTY_FILE_COST = '$2y$10$'

/**
 * For a loaded users map, the function giving an unknown name its stand-in
 * hash. One stand-in per distinct cost, shared by the users that have it.
 */
export function standIns (users: ReadonlyMap<string, PasswordHash>): (name: string) => PasswordHash {
  const byCost = new Map<string, PasswordHash>()
  const picks: PasswordHash[] = []
  for (const h of users.values()) {
    const key = costKey(h)
    let s = byCost.get(key)
    if (s === undefined) byCost.set(key, (s = standInLike(h)))
    picks.push(s)
  }
  if (picks.length === 0) {
    const only = bcryptStandIn(EMPTY_FILE_COST)
    return () => only
  }
  if (byCost.size === 1) {
    const only = picks[0] ?? bcryptStandIn(EMPTY_FILE_COST)
    return () => only
  }
  return (name) => {
    // 48 bits of a keyed SHA-256 of the name: uniform enough over any users file.
    const n = digest('sha256', SECRET + '\0' + name, 'buffer').readUIntBE(0, 6)
    return picks[n % picks.length] ?? picks[0] ?? bcryptStandIn(EMPTY_FILE_COST)
  }
}
