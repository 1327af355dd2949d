/**
 * Config files for Sluice's variant peers, written into each peer's private
 * work dir (nothing in the repository): bench/policy.yaml's server settings
 * (everything above its `rules:`), then the variant's sections and rules,
 * plus the users file and the generated deny lists. A variant's `listen`
 * replaces the policy's (sluice-tls: a TLS listener).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { runCaptured } from './children.js'

/** Proxy credentials of the auth variant (the shared harness's defaults). */
export const AUTH_USER = 'perf'
export const AUTH_PASS = 'perf-Secret-42'

/** Entries in each deny list of the bigacl variant. */
export const ACL_SIZE = 10_000

/** CONNECT name of the name-target variants; the loopback DNS stub answers 127.0.0.1 (RFC 6761 .test). */
export const ORIGIN_NAME = 'origin.sluice-bench.test'

/** i-th deny-list domain, as the shared harness makes them: reserved TLDs, none a subdomain of another. */
export function aclDomain (i: number): string {
  return `ads${String(i).padStart(5, '0')}.tracker${String(i % 97).padStart(2, '0')}.${['example', 'invalid', 'test'][i % 3] ?? 'test'}`
}

/** i-th deny-list network: distinct /24s inside 10.0.0.0/8 (never the loopback target). */
export function aclCidr (i: number): string {
  return `10.${(i >> 8) & 255}.${i & 255}.0/24`
}

export interface Rule {
  readonly name: string
  readonly action: 'allow' | 'deny'
  readonly hosts?: readonly string[]
  readonly ips?: readonly string[]
  readonly users?: readonly string[]
}

/** What bench/policy.yaml's one rule allows: the origin, by address. */
export const LOOPBACK_RULE: Rule = { name: 'bench', action: 'allow', ips: ['127.0.0.0/8'] }

/**
 * A listener entry (README "Listeners"); `tls` makes it an HTTPS proxy,
 * `kind: sni` a TLS passthrough routed by the hello's name, `kind:
 * terminate` (with `tls` and `upstream_tls`) a TLS termination that opens
 * TLS anew to that name.
 */
export interface Listener {
  readonly address: string
  readonly tls?: { readonly cert_file: string, readonly key_file: string }
  readonly kind?: 'connect' | 'sni' | 'terminate'
  readonly target_port?: number
  readonly map?: Readonly<Record<string, string>>
  readonly upstream_tls?: { readonly ca_file: string }
}

export interface ConfigParts {
  readonly listen?: readonly Listener[]
  readonly auth?: { readonly users_file: string, readonly cache_ttl: string }
  readonly dns?: { readonly servers: readonly string[] }
  readonly parents?: Readonly<Record<string, { readonly url: string }>>
  readonly default_route?: string
  readonly tunnel_checks?: { readonly sni_match: boolean, readonly tls_only: boolean }
  readonly rules: readonly Rule[]
}

/** Write DIR/sluice.yaml; values in flow style (JSON is YAML). Returns its path. */
export function writeSluiceConfig (root: string, dir: string, parts: ConfigParts): string {
  const base = readFileSync(join(root, 'bench', 'policy.yaml'), 'utf8')
  const cut = base.search(/^rules:/m)
  if (cut < 0) throw new Error('bench/policy.yaml has no top-level rules: key')
  let head = base.slice(0, cut)
  if (parts.listen !== undefined) {
    // The policy's `listen:` line and any indented lines under it.
    head = head.replace(/^listen:[^\n]*\n(?:[ \t][^\n]*\n)*/m, '')
    if (/^listen:/m.test(head)) throw new Error('bench/policy.yaml: could not take out its listen: key')
  }
  const lines = [head.trimEnd(), '', '# bench variant: written by bench/lib/sluice-config.ts']
  const { rules, ...sections } = parts
  for (const [key, value] of Object.entries(sections)) if (value !== undefined) lines.push(`${key}: ${JSON.stringify(value)}`)
  lines.push('rules:', ...rules.map(r => `  - ${JSON.stringify(r)}`), '')
  const path = join(dir, 'sluice.yaml')
  writeFileSync(path, lines.join('\n'))
  return path
}

let usersLine: Promise<string> | undefined

/**
 * The users-file line for AUTH_USER, made once per run the way an operator
 * would: `node dist/cli.js passwd perf` with the password on stdin (bcrypt,
 * cost 10, `$2y$`).
 */
export async function usersFileLine (root: string): Promise<string> {
  usersLine ??= (async () => {
    const r = await runCaptured([process.execPath, join(root, 'dist', 'cli.js'), 'passwd', AUTH_USER], 60_000, { cwd: root, input: `${AUTH_PASS}\n` })
    const line = r.stdout.trim()
    if (r.code !== 0 || !line.startsWith(`${AUTH_USER}:$2y$10$`)) {
      throw new Error(`sluice passwd ${AUTH_USER} failed (exit ${String(r.code)}): ${r.stderr.trim() || line}`)
    }
    return line
  })()
  try {
    return await usersLine
  } catch (err) {
    usersLine = undefined // let a later repetition try again
    throw err
  }
}
