/**
 * The users file: htpasswd format, `name:hash` per line, as `htpasswd -B`
 * writes it, so squid's and Apache's users can bring their files. Only
 * slow, salted hashes are accepted: bcrypt (`$2a$`, `$2b$`, `$2y$`) and
 * scrypt (`$scrypt$…`, written by `sluice passwd --scheme scrypt`).
 * Weak schemes are refused at load with the line number and the fix.
 */
import { parseHash, type PasswordHash } from './hash.js'

export interface UsersFileResult {
  readonly users: ReadonlyMap<string, PasswordHash>
  readonly problems: readonly string[]
}

const REGENERATE = 'regenerate it with `htpasswd -B FILE NAME` or `sluice passwd NAME`'

function weakScheme (hash: string): string | undefined {
  if (hash.startsWith('$apr1$')) return 'MD5-crypt ($apr1$)'
  if (hash.startsWith('$1$')) return 'MD5-crypt ($1$)'
  if (hash.startsWith('{SHA}')) return 'unsalted SHA-1 ({SHA})'
  if (hash.startsWith('$5$') || hash.startsWith('$6$')) return 'SHA-crypt ($5$/$6$)'
  if (/^[./0-9A-Za-z]{13}$/.test(hash)) return 'DES crypt'
  return undefined
}

/** Parse the text of a users file; `file` names it in problems. */
export function parseUsersFile (text: string, file: string): UsersFileResult {
  const users = new Map<string, PasswordHash>()
  const problems: string[] = []
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? '').trim()
    if (line === '' || line.startsWith('#')) continue
    const where = `${file}:${i + 1}`
    const colon = line.indexOf(':')
    if (colon <= 0) { problems.push(`${where}: expected NAME:HASH`); continue }
    // htpasswd splits at the first colon: names cannot contain one, hashes may not be empty.
    // Names compare in NFC, as the authenticator normalises what clients send.
    const name = line.slice(0, colon).normalize('NFC')
    const hash = line.slice(colon + 1)
    if (users.has(name)) { problems.push(`${where}: user '${name}' is listed twice`); continue }
    const weak = weakScheme(hash)
    if (weak !== undefined) { problems.push(`${where}: user '${name}' uses ${weak}, which Sluice refuses; ${REGENERATE}`); continue }
    const parsed = parseHash(hash)
    if (parsed === undefined) {
      problems.push(`${where}: user '${name}' has an unsupported or plain-text password hash (bcrypt $2y$/$2b$ or $scrypt$ expected); ${REGENERATE}`)
      continue
    }
    users.set(name, parsed)
  }
  return { users, problems }
}
