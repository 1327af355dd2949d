/**
 * The `auth` section of a config: read the users file (and groups file),
 * refuse weak hashes, resolve groups. Part of config load, so a reload
 * validates users before it swaps anything in.
 */
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import type { SluiceFile } from '../config/schema.js'
import { ConfigError } from '../config/errors.js'
import type { PasswordHash } from './hash.js'
import { parseUsersFile } from './users-file.js'

export interface AuthConfig {
  readonly realm: string
  readonly required: boolean
  readonly maxAttempts: number
  readonly cacheTtlMs: number
  readonly cacheSize: number
  readonly lockout: { readonly failures: number, readonly windowMs: number, readonly durationMs: number }
  /** Password checks waiting or running per client address, and in all, at most (issue 11). */
  readonly maxPendingPerClient: number
  readonly maxPending: number
  readonly users: ReadonlyMap<string, PasswordHash>
  /** user → the groups they belong to */
  readonly groups: ReadonlyMap<string, ReadonlySet<string>>
}

/** `onFile` is told each file read, for the config hash and the reload watch. */
export function loadAuth (a: NonNullable<SluiceFile['auth']>, file: string, onFile: (path: string, content: string) => void): AuthConfig {
  const problems: string[] = []
  const read = (name: string): string => {
    const path = resolve(dirname(file), name)
    try {
      const content = readFileSync(path, 'utf8')
      onFile(path, content)
      return content
    } catch (err) {
      problems.push(`${file}: auth: cannot read ${path}: ${(err as Error).message}`)
      return ''
    }
  }
  const usersText = read(a.users_file)
  const parsedUsers = parseUsersFile(usersText, resolve(dirname(file), a.users_file))
  problems.push(...parsedUsers.problems)
  const groupLists = new Map<string, string[]>(Object.entries(a.groups))
  if (a.groups_file !== undefined) {
    const path = resolve(dirname(file), a.groups_file)
    read(a.groups_file).split(/\r?\n/).forEach((line, i) => {
      const l = line.trim()
      if (l === '' || l.startsWith('#')) return
      const m = /^([^\s@:]+)\s*:(.*)$/.exec(l)
      if (m === null) { problems.push(`${path}:${i + 1}: expected GROUP: USER USER…`); return }
      groupLists.set(m[1] ?? '', [...(groupLists.get(m[1] ?? '') ?? []), ...(m[2] ?? '').trim().split(/\s+/).filter(u => u !== '')])
    })
  }
  const groups = new Map<string, Set<string>>()
  for (const [group, members] of groupLists) {
    for (const user of members) {
      if (!parsedUsers.users.has(user)) problems.push(`${file}: auth.groups.${group}: user '${user}' is not in the users file`)
      let set = groups.get(user)
      if (set === undefined) groups.set(user, (set = new Set()))
      set.add(group)
    }
  }
  if (problems.length > 0) throw new ConfigError(file, problems)
  return Object.freeze({
    realm: a.realm,
    required: a.required,
    maxAttempts: a.max_attempts,
    cacheTtlMs: a.cache_ttl,
    cacheSize: a.cache_size,
    lockout: Object.freeze({ failures: a.lockout.failures, windowMs: a.lockout.window, durationMs: a.lockout.duration }),
    maxPendingPerClient: a.max_pending_per_client,
    maxPending: a.max_pending,
    users: parsedUsers.users,
    groups
  })
}
