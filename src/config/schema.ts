/**
 * The Sluice file: one YAML document holding the server settings and the
 * policy. Validated by one strict zod schema (unknown keys are errors);
 * README's "Configuration reference" documents every key here.
 */
import { isIP } from 'node:net'
import { z } from 'zod'
import { parseDuration } from './duration.js'
import { parseSize } from './size.js'
import { cidrSpec, policySchema } from '../policy/schema.js'
import { describeValue } from './issues.js'

/** Default `reload_settle`: long enough for an editor or a script to finish writing (issue 11, finding 4). */
export const DEFAULT_RELOAD_SETTLE_MS = 2000

const DURATION_HINT = 'expected a duration like 500ms, 30s, 10m, 1h or a number of milliseconds'
/** `${hint}, got …` for a value of the wrong type or form (config/issues.ts wording). */
const hint = (text: string) => (iss: { input?: unknown }) => iss.input === undefined ? `required: ${text}` : `${text}, got ${describeValue(iss.input)}`

const duration = z.union([z.number(), z.string()], { error: hint(DURATION_HINT) })
  .refine((v) => parseDuration(v) !== undefined, { error: hint(DURATION_HINT) })
  .transform((v) => parseDuration(v) ?? 0)

/** Node's timers wait at most 2^31-1 ms (about 24.8 days); asked for longer, they fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1
/**
 * A duration that arms a timer (setTimeout): at most MAX_TIMER_MS, else a
 * `connect: 30d` would time every dial out at once (issue 11, found by
 * test/unit/config.fuzz.test.ts).
 */
const timerDuration = duration.refine((ms) => ms <= MAX_TIMER_MS, {
  error: (iss) => `expected at most 24d (${MAX_TIMER_MS} ms, the longest Node's timers wait), got ${describeValue(iss.input)} ms`
})

const DNS_SERVER_HINT = 'expected an IP address, IP:PORT or [IPv6]:PORT (port 1-65535)'
/**
 * A DNS server as c-ares' setServers takes it: `ip`, `ip:port` or
 * `[ip]:port`. It must be checked here: setServers throws on anything
 * node:net's isIP refuses (a name, `127.1`) and aborts the whole process on
 * port 0 (issue 11, found by test/unit/config.fuzz.test.ts). isIP, not
 * net/ip.ts, because it is setServers' own test; no address is judged here.
 */
export function parseDnsServer (v: string): { host: string, port: number } | undefined {
  // `[ip]:port` or `[ip]`, `ipv4:port`, else a bare IPv4 or IPv6 address.
  const m = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(v) ?? /^([^:[\]]+):(\d{1,5})$/.exec(v)
  const host = m === null ? v : (m[1] ?? '')
  const port = m?.[2] === undefined ? 53 : Number(m[2])
  if (isIP(host) === 0 || port < 1 || port > 65535) return undefined
  return { host, port }
}

const LISTEN_HINT = 'expected host:port, e.g. 127.0.0.1:3128 or [::1]:3128'
export const listenSpec = z.string({ error: hint(LISTEN_HINT) }).refine((v) => parseListen(v) !== undefined, { error: hint(LISTEN_HINT) })

const fileName = z.string().min(1)
const certPair = z.strictObject({ cert_file: fileName, key_file: fileName })

/**
 * TLS from the client to this listener (issue 13): an HTTPS proxy. Files
 * are relative to the config file and reloaded with it.
 */
const listenerTls = z.strictObject({
  /** The certificate chain (PEM) and its key. */
  cert_file: fileName,
  key_file: fileName,
  /** More certificates, each chosen when the client's SNI matches one of its DNS names (wildcards too). */
  certs: z.array(certPair).max(64).default([]),
  min_version: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  /** CAs (PEM) that client certificates must chain to; without it no certificate is asked for. */
  client_ca_file: fileName.optional(),
  /** With client_ca_file: refuse a client without a valid certificate (required), or let it in anonymous (optional). */
  client_cert: z.enum(['required', 'optional']).default('required'),
  /** What of a verified client certificate becomes the tunnel's user. */
  identity: z.enum(['cn', 'san_dns', 'san_email', 'san_uri']).default('cn')
})

/**
 * kind terminate (issue 14): the TLS Sluice opens to the upstream after
 * terminating the client's. Verified always: against the system CAs, or
 * only `ca_file`'s. Files are relative to the config file and reloaded with it.
 */
export const upstreamTls = z.strictObject({
  /** CAs (PEM) the upstream's certificate must chain to, instead of the system's. */
  ca_file: fileName.optional(),
  /** A client certificate (PEM chain) and key to show the upstream. */
  cert_file: fileName.optional(),
  key_file: fileName.optional(),
  /** The name sent as SNI and verified in the certificate; default: the client's SNI. */
  servername: z.string().min(1).max(253).optional(),
  /** TLS 1.0 and 1.1 are refused whatever this says. */
  min_version: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
  /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults). */
  ciphers: z.string().min(1).optional(),
  /** ALPN protocols the upstream may be offered, of those the client offered. */
  alpn: z.array(z.string().min(1).max(255)).min(1).max(8).default(['h2', 'http/1.1'])
}).superRefine((u, ctx) => {
  if ((u.cert_file === undefined) !== (u.key_file === undefined)) ctx.addIssue({ code: 'custom', path: [u.cert_file === undefined ? 'cert_file' : 'key_file'], message: 'cert_file and key_file go together' })
})

/** kind sni or terminate: a map entry's target; for terminate also `{ target, upstream_tls }`. */
const mapEntry = z.union([z.string().min(1), z.strictObject({ target: z.string().min(1), upstream_tls: upstreamTls.optional() })],
  { error: hint('expected host:port, or { target: host:port, upstream_tls: { … } } on a terminate listener') })

/**
 * A listener: `host:port`, or an object with its `kind` (issue 13), a
 * `name` rules match with `listeners:`, and the kind's settings.
 */
const listenObject = z.strictObject({
  address: listenSpec,
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'expected a name of letters, digits, _ . -' }).optional(),
  /**
   * `connect`: HTTP CONNECT (plain, or inside TLS with `tls`); `tcp`: every
   * connection goes to `target`; `sni`: TLS passed through to the name in
   * the client's ClientHello; `terminate`: TLS terminated with `tls`'s
   * certificate for that name and opened anew to it (issue 14).
   */
  kind: z.enum(['connect', 'tcp', 'sni', 'terminate']).default('connect'),
  tls: listenerTls.optional(),
  /** kind tcp: where every connection goes, `host:port`. */
  target: z.string().min(1).optional(),
  /** kind tcp, sni or terminate: the route, parent or `direct` to reach the target by (default: the policy's). */
  via: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, { message: 'expected a route or parent name' }).optional(),
  /** kind sni or terminate: the port the SNI name is dialed on. */
  target_port: z.number().int().min(1).max(65535).optional(),
  /** kind sni or terminate: names or `*.suffix` patterns → a fixed `host:port`, for names that do not resolve from the proxy. */
  map: z.record(z.string().min(1), mapEntry).optional(),
  /** kind terminate: the TLS to the upstream. */
  upstream_tls: upstreamTls.optional(),
  /**
   * Every kind (issue 15): connections from these addresses (a balancer)
   * must start with a PROXY protocol v1 or v2 header, whose client address
   * is the one rules, limits and logs see; a header from anywhere else is
   * refused (docs/proxy-protocol.md).
   */
  proxy_protocol: z.strictObject({
    from: z.array(cidrSpec).min(1).max(1024)
  }).optional()
}).superRefine((l, ctx) => {
  const only = (key: 'target' | 'via' | 'target_port' | 'map' | 'tls' | 'upstream_tls', kinds: string, why: string): void => {
    if (l[key] !== undefined) ctx.addIssue({ code: 'custom', path: [key], message: `only a ${kinds} listener has ${key}${why}` })
  }
  if (l.kind === 'tcp' && l.target === undefined) ctx.addIssue({ code: 'custom', path: ['target'], message: 'required: a tcp listener needs target: host:port' })
  if (l.kind !== 'tcp') only('target', 'tcp', ' (add kind: tcp)')
  if (l.kind === 'connect') only('via', 'tcp, sni or terminate', '; a connect listener\'s routes come from its rules')
  if (l.kind !== 'sni' && l.kind !== 'terminate') { only('target_port', 'sni or terminate', ''); only('map', 'sni or terminate', '') }
  if (l.kind !== 'connect' && l.kind !== 'terminate') only('tls', 'connect or terminate', ': a tcp or sni listener relays the client\'s bytes as they are')
  if (l.kind !== 'terminate') only('upstream_tls', 'terminate', '')
  if (l.kind === 'terminate') {
    if (l.tls === undefined) ctx.addIssue({ code: 'custom', path: ['tls'], message: 'required: a terminate listener needs tls: { cert_file, key_file } to present to clients' })
    // The policy is decided before the client's handshake (the upstream's verdict comes first): a certificate could not name the user in time.
    else if (l.tls.client_ca_file !== undefined) ctx.addIssue({ code: 'custom', path: ['tls', 'client_ca_file'], message: 'a terminate listener does not ask for client certificates' })
  }
  if (l.kind !== 'terminate' && l.map !== undefined) {
    for (const [k, v] of Object.entries(l.map)) if (typeof v !== 'string') ctx.addIssue({ code: 'custom', path: ['map', k], message: 'expected host:port (only a terminate listener\'s map entries take { target, upstream_tls })' })
  }
})

const listenEntry = z.union([listenSpec, listenObject], { error: hint('expected host:port or { address: host:port, name: NAME, kind: connect|tcp|sni|terminate, … }') })

/** `127.0.0.1:3128`, `[::1]:3128`, `:3128` (all interfaces, explicit opt-in) → host, port. */
export function parseListen (v: string): { host: string, port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(v.trim())
  if (m === null) return undefined
  const port = Number(m[3])
  if (port > 65535) return undefined
  return { host: m[1] ?? (m[2] === '' ? '0.0.0.0' : (m[2] ?? '')), port }
}

const timeouts = z.strictObject({
  /** Time allowed for a client to send its request head (→ 408). */
  header: duration.default(30_000),
  /** Time allowed for a TLS listener's handshake (issue 13); the request head's `header` time starts after it. */
  tls_handshake: timerDuration.default(10_000),
  /** Time allowed to connect to the target, across all addresses (→ 504). */
  connect: timerDuration.default(10_000),
  /** Close a tunnel with no traffic either way for this long; 0 = never. */
  idle: duration.default(3_600_000),
  /** Close any tunnel after this long; 0 = never. */
  max_lifetime: duration.default(0),
  /** On SIGTERM/SIGINT, how long open tunnels may finish before they are closed. */
  drain: timerDuration.default(30_000),
  /**
   * On SIGTERM/SIGINT, how long to go on accepting after `/readyz` turns
   * 503, before the listeners close and the drain starts: a balancer's
   * health checks see the 503 first, so none of its new connections is
   * refused (issue 15; README "Behind a load balancer").
   */
  drain_delay: timerDuration.default(0),
  /** Time allowed for DNS resolution of a target (→ 504). */
  dns: timerDuration.default(5_000),
  /** RFC 8305 delay before racing the next address. */
  happy_eyeballs: timerDuration.default(250)
})

const SIZE_HINT = 'expected a size like 64KiB, 500MB, 10GiB or a number of bytes'
const size = z.union([z.number(), z.string()], { error: hint(SIZE_HINT) })
  .refine((v) => parseSize(v) !== undefined, { error: hint(SIZE_HINT) })
  .transform((v) => parseSize(v) ?? 0)

/**
 * `limits.max_bytes_per_user` (issue 15): tunnel bytes, up and down, a user
 * may move per `period` (server/user-bytes.ts). The period is at least a
 * second: `Retry-After` counts whole seconds, and open tunnels are counted
 * by a sweep about once a second.
 */
const bytesPerUser = z.strictObject({
  bytes: size.refine((n) => n >= 1, { error: (iss) => `expected at least 1 byte, got ${String(iss.input)}` }),
  period: duration.refine((ms) => ms >= 1000, { error: (iss) => `expected at least 1s, got ${String(iss.input)} ms` })
})

const limits = z.strictObject({
  /** Open tunnels at most (→ 503 with Retry-After). */
  max_tunnels: z.number().int().min(1).default(10_000),
  /** Open tunnels per client address at most; 0 = no limit (→ 429). */
  max_tunnels_per_client: z.number().int().min(0).default(0),
  /** Open tunnels per authenticated user at most (a Basic user or a client certificate's); 0 = no limit (→ 429, issue 15). */
  max_tunnels_per_user: z.number().int().min(0).default(0),
  /** Tunnel bytes per authenticated user per fixed period, counted per instance; absent = no limit (→ 429, issue 15). */
  max_bytes_per_user: bytesPerUser.optional(),
  /** Largest request head accepted, bytes (→ 431). */
  max_header_size: z.number().int().min(1024).max(65_536).default(16_384)
})

const dns = z.strictObject({
  /** DNS servers (`ip` or `ip:port`) to query directly; empty = the system resolver. */
  servers: z.array(z.string({ error: hint(DNS_SERVER_HINT) }).refine((v) => parseDnsServer(v) !== undefined, { error: hint(DNS_SERVER_HINT) })).default([]),
  /** Longest time an answer is cached (record TTLs are honoured below it). */
  max_ttl: duration.default(300_000),
  /** How long "no such name" answers are cached. */
  negative_ttl: duration.default(10_000)
})

const auth = z.strictObject({
  /** Realm in the Proxy-Authenticate challenge. */
  realm: z.string().regex(/^[\x20-\x7e]{1,64}$/, { message: 'expected printable ASCII, at most 64 characters' }).refine(v => !v.includes('"') && !v.includes('\\'), { message: 'must not contain " or \\' }).default('Sluice'),
  /** htpasswd-format users file (bcrypt or scrypt hashes), relative to this file. */
  users_file: z.string().min(1),
  /** group → users. */
  groups: z.record(z.string().regex(/^[^\s@:]+$/, { message: 'expected a group name without spaces, @ or :' }), z.array(z.string().min(1))).default({}),
  /** Apache htgroup-format file (`group: user user`), relative to this file. */
  groups_file: z.string().min(1).optional(),
  /** Anonymous requests need credentials unless a rule without `users` allows them. */
  required: z.boolean().default(true),
  /** 407 challenges answered on one connection before it is closed. */
  max_attempts: z.number().int().min(1).max(20).default(3),
  /** How long a verified user:password stays verified without re-hashing. */
  cache_ttl: duration.default(300_000),
  cache_size: z.number().int().min(1).default(10_000),
  /** Password checks waiting or running per client address at most; beyond it 429 + Retry-After (issue 11). */
  max_pending_per_client: z.number().int().min(1).default(8),
  /** Password checks waiting or running in all at most; the longest backlog is shed first (issue 11). */
  max_pending: z.number().int().min(1).default(128),
  lockout: z.strictObject({
    /** Failed logins from one client address, within `window`, that lock it out; 0 disables. */
    failures: z.number().int().min(0).default(10),
    window: duration.default(60_000),
    duration: duration.default(300_000)
  }).default({ failures: 10, window: 60_000, duration: 300_000 })
})

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

/**
 * The admin listener (issue 15): health, readiness, metrics, the PAC file,
 * open tunnels and the loaded files (admin/server.ts). Without `admin:`
 * there is none.
 */
const admin = z.strictObject({
  /** Loopback by default: a token, or a trusted network, before listening beyond it. Read at start. */
  listen: listenSpec.default('127.0.0.1:9090'),
  /** A bearer token (the file's first line, relative to this file; watched and reloaded), or one from an environment variable. */
  token_file: z.string().min(1).optional(),
  token_env: z.string().regex(ENV_NAME, { message: 'expected an environment variable name' }).optional(),
  pac: z.strictObject({
    /** The proxy the PAC file names: `host:port` (PROXY), `https://host:port` (HTTPS) or `http://host:port`; default: the first connect listener. */
    proxy: z.string().regex(/^(?:https?:\/\/)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, { message: 'expected host:port, https://host:port or http://host:port' }).optional(),
    /** What targets no rule decides get: `proxy` or `direct`; default: the policy's default (allow → proxy). */
    default: z.enum(['proxy', 'direct']).optional()
  }).default({})
}).superRefine((a, ctx) => {
  if (a.token_file !== undefined && a.token_env !== undefined) ctx.addIssue({ code: 'custom', path: ['token_env'], message: 'token_file and token_env are alternatives: give one' })
})

const NAME = /^[A-Za-z0-9_.-]{1,64}$/
const nameSpec = z.string().regex(NAME, { message: 'expected a name of letters, digits, _ . - (at most 64)' })

const parent = z.strictObject({
  /** `http://[user:pass@]host:port` or `https://…` (TLS to the parent). */
  url: z.string().min(1),
  /** User name, when not in the URL. */
  username: z.string().optional(),
  /** Read the password from this environment variable instead of the YAML. */
  password_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { message: 'expected an environment variable name' }).optional(),
  /** Read the password from this file (relative to the config file). */
  password_file: z.string().min(1).optional(),
  /** https parents: CA bundle to trust (PEM), server name to verify, client certificate and key. */
  ca_file: z.string().min(1).optional(),
  servername: z.string().min(1).optional(),
  cert_file: z.string().min(1).optional(),
  key_file: z.string().min(1).optional()
})

/** A route choice: `direct`, a parent name, or a chain `[edge, corp]`. */
const choice = z.union([nameSpec, z.array(nameSpec).min(1).max(8)])

export const fileSchema = z.strictObject({
  version: z.literal(1, { message: 'expected version: 1' }),
  listen: z.union([listenEntry, z.array(listenEntry).min(1)], { error: hint('expected host:port, { address: host:port, name: NAME, … } or a list of them') }).default('127.0.0.1:3128'),
  timeouts: timeouts.default(timeouts.parse({})),
  limits: limits.default(limits.parse({})),
  dns: dns.default(dns.parse({})),
  auth: auth.optional(),
  admin: admin.optional(),
  /** Named parent proxies. */
  parents: z.record(nameSpec, parent).default({}),
  /** Named routes: ordered choices, each `direct`, a parent, or a chain of parents. */
  routes: z.record(nameSpec, z.array(choice).min(1).max(16)).default({}),
  /** Route for targets whose allowing rule has no `via`: a route name, a parent name or `direct`. */
  default_route: nameSpec.default('direct'),
  /** Use HTTPS_PROXY / NO_PROXY from the environment as the default route (as undici's EnvHttpProxyAgent reads them). */
  parents_from_env: z.boolean().default(false),
  /** First backoff for a parent that failed; doubles per consecutive failure, at most 5 minutes. */
  parent_backoff: duration.default(10_000),
  /** A watched file changed in place is applied once unchanged for this long (config/reloader.ts; issue 11, finding 4). */
  reload_settle: timerDuration.default(DEFAULT_RELOAD_SETTLE_MS),
  ...policySchema
})

export type SluiceFile = z.output<typeof fileSchema>
