/**
 * Fixtures shared by the authentication tests (test/integration/auth.test.ts
 * and auth-hardening.test.ts): Basic credentials, bcrypt users-file lines,
 * users files in a temp dir, and raw {@link Client}s tracked so that a
 * failed test cannot leave one open.
 *
 * Every password and base64 credential made here is recorded in `secrets`,
 * so a file can assert that none of them reached a log line.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'
import bcrypt from 'bcryptjs'
import { Client, type ClientResponse } from './connect-client.js'

/**
 * A cost-12 bcrypt hash (~0.3 s per compare) of a password no test sends:
 * a precomputed constant, since making it costs as much as checking it.
 */
export const SLOW_HASH = '$2y$12$FQfcyTJ8uSnpf26mtdBLNOf/IaIGlqjzBWDXtAJgCI9vkXb/B6Q/u'

export interface AuthFixtures {
  /** Every password and base64 credential made by `basic` and `bcryptLine`, plus any a test adds. */
  readonly secrets: Set<string>
  /** The clients `open` made that are still open. */
  readonly clients: Set<Client>
  /** A `Proxy-Authorization` value: `Basic` and the UTF-8 `user:password` in base64. */
  readonly basic: (user: string, password: string) => string
  /** A users-file line with a bcrypt hash; `$2y$` as `htpasswd -B` writes it, or bcryptjs' own `$2b$`. */
  readonly bcryptLine: (user: string, password: string, cost?: number, prefix?: '$2y$' | '$2b$') => string
  /** Write a users file named `name` in the temp dir; resolves with its absolute path (startSluice parses its YAML as 'test.yaml'). */
  readonly usersFile: (name: string, lines: readonly string[]) => Promise<string>
  /** A client connected from `localAddress` (default 127.0.0.1), tracked until closed. */
  readonly open: (port: number, localAddress?: string) => Promise<Client>
  /** One CONNECT on a fresh connection; the connection is closed after the response. */
  readonly connectOnce: (port: number, target: string, authorization?: string, localAddress?: string) => Promise<ClientResponse>
  /** Close every client still open (a failed test may leave one): before closing Sluice, which would linger on them. */
  readonly closeClients: () => void
}

/**
 * The fixtures for one test file. Call it at the file's top level: it
 * registers a root `before` making the temp dir (named from `prefix`) and
 * root `after`s closing the clients left open and removing the dir.
 */
export function authFixtures (prefix: string): AuthFixtures {
  const secrets = new Set<string>()
  const clients = new Set<Client>()
  let dir: string | undefined

  before(async () => { dir = await mkdtemp(join(tmpdir(), prefix)) })
  after(async () => { if (dir !== undefined) await rm(dir, { recursive: true, force: true }) })

  const closeClients = (): void => {
    for (const c of clients) c.close()
    clients.clear()
  }
  after(closeClients)

  const open = async (port: number, localAddress?: string): Promise<Client> => {
    const c = await Client.open(port, localAddress)
    clients.add(c)
    return c
  }

  return {
    secrets,
    clients,
    basic: (user, password) => {
      const b64 = Buffer.from(`${user}:${password}`, 'utf8').toString('base64')
      secrets.add(password)
      secrets.add(b64)
      return `Basic ${b64}`
    },
    bcryptLine: (user, password, cost = 4, prefix = '$2y$') => {
      secrets.add(password)
      return `${user}:${bcrypt.hashSync(password, cost).replace(/^\$2b\$/, prefix)}`
    },
    usersFile: async (name, lines) => {
      if (dir === undefined) throw new Error('usersFile before the temp dir exists (call it from a hook or a test)')
      const path = join(dir, name)
      await writeFile(path, ['# test users', ...lines, ''].join('\n'))
      return path
    },
    open,
    connectOnce: async (port, target, authorization, localAddress) => {
      const c = await open(port, localAddress)
      try {
        return await c.connect(target, authorization)
      } finally {
        c.close()
        clients.delete(c)
      }
    },
    closeClients
  }
}
