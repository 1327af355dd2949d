/**
 * Fuzzing the policy loader, config/load.ts parseConfig (issue 11,
 * "Fuzzing": every YAML value gets a clear error, never a crash). Documents
 * are built from a valid file that uses every section, with random values
 * (JSON values, numbers at the edges, durations, addresses, names that are
 * Object.prototype keys) set at random paths, keys deleted or added, and
 * sometimes the YAML text itself edited (syntax errors, aliases, tags).
 *
 * Properties:
 * - parseConfig returns a Config or throws a ConfigError whose every
 *   problem line names the file it is about (the config, or its users or
 *   groups file), never another exception;
 * - a Config it returns can be served: every duration is an exact number of
 *   milliseconds, those that arm a timer are ones Node's timers honour
 *   (≤ 2^31-1 ms; a longer one fires after 1 ms), every DNS server is an
 *   address with a port 1-65535 (c-ares aborts the process on port 0), and
 *   createProxy builds a proxy from it without throwing.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import bcrypt from 'bcryptjs'
import fc from 'fast-check'
import { stringify } from 'yaml'
import { ConfigError, parseConfig, type Config } from '../../src/config/load.js'
import { createLogger, createProxy } from '../../src/index.js'
import { parseIp } from '../../src/net/ip.js'
import { fuzzParams, mutated } from '../helpers/fuzz.js'

const dir = mkdtempSync(join(tmpdir(), 'sluice-config-fuzz-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const FILE = join(dir, 'fuzz.yaml')
writeFileSync(join(dir, 'users.htpasswd'), `alice:${bcrypt.hashSync('pw', 4)}\nbob:${bcrypt.hashSync('pw', 4)}\n`)
writeFileSync(join(dir, 'groups'), 'eng: alice bob\n')
writeFileSync(join(dir, 'corp.pass'), 'secret\n')
const ENV = { FUZZ_PARENT_PW: 'secret' }

/** A valid file with every section. */
const BASE = {
  version: 1,
  listen: [{ address: '127.0.0.1:3128', name: 'office' }, '[::1]:3129'],
  timeouts: { header: '30s', connect: 10_000, idle: '1h', max_lifetime: 0, drain: '30s', dns: '5s', happy_eyeballs: '250ms' },
  limits: { max_tunnels: 100, max_tunnels_per_client: 5, max_header_size: 16384 },
  dns: { servers: ['127.0.0.1:5353', '::1'], max_ttl: '5m', negative_ttl: '10s' },
  auth: {
    users_file: 'users.htpasswd',
    realm: 'Sluice',
    groups: { ops: ['alice'] },
    groups_file: 'groups',
    required: true,
    max_attempts: 3,
    cache_ttl: '5m',
    cache_size: 100,
    lockout: { failures: 5, window: '1m', duration: '5m' }
  },
  parents: {
    corp: { url: 'http://proxy.test:3128', username: 'svc', password_env: 'FUZZ_PARENT_PW' },
    edge: { url: 'https://edge.test:8443', servername: 'edge.test', password_file: 'corp.pass' }
  },
  routes: { 'corp-first': ['corp', 'direct'], chain: [['edge', 'corp']] },
  default_route: 'direct',
  parents_from_env: false,
  parent_backoff: '10s',
  mode: 'enforce',
  default: 'deny',
  revoke_on_reload: false,
  rules: [
    { name: 'web', action: 'allow', hosts: ['example.com', '*.example.org'], ports: [443, '8000-8080'], clients: ['192.0.2.0/24'], users: ['alice', '@eng'], listeners: ['office'], mode: 'report', via: 'corp-first' },
    { name: 'internal', action: 'allow', ips: ['10.0.0.0/8', '2001:db8::/32'], ports: [22] },
    { action: 'deny', ports: [25] }
  ]
}

/** The longest delay Node's timers take; a larger one fires after 1 ms (TimeoutOverflowWarning). */
const MAX_TIMER_MS = 2 ** 31 - 1

const KEYS = [
  'version', 'listen', 'timeouts', 'limits', 'dns', 'auth', 'parents', 'routes', 'default_route', 'parents_from_env',
  'parent_backoff', 'mode', 'default', 'rules', 'revoke_on_reload', 'header', 'connect', 'idle', 'max_lifetime', 'drain', 'drain_delay',
  'happy_eyeballs', 'max_tunnels', 'max_tunnels_per_client', 'max_header_size', 'servers', 'max_ttl', 'negative_ttl',
  'realm', 'users_file', 'groups', 'groups_file', 'required', 'max_attempts', 'cache_ttl', 'cache_size', 'lockout',
  'failures', 'window', 'duration', 'url', 'username', 'password_env', 'password_file', 'servername', 'name', 'action',
  'hosts', 'ports', 'ips', 'clients', 'users', 'listeners', 'via', 'address', 'direct', 'corp',
  '__proto__', 'constructor', 'toString', 'hasOwnProperty', '<<', '', ' ', '0'
]

/** Values at the edges of what each field takes. */
const EDGE_VALUES: readonly unknown[] = [
  0, -1, 1, 1.5, -0.5, 1023, 1024, 65535, 65536, 2 ** 31 - 1, 2 ** 31, 2 ** 53, 1e21, 1e300,
  '', ' ', '0', '-1s', '1.5s', '0.0001ms', '25d', '24d', '30d', '999999999999d', '1e3', '0x10', '10 s', '1w',
  'true', 'null', '~', 'allow', 'deny', 'report', 'direct', 'corp', 'edge', 'office', 'alice', '@eng', '@', '@@', 'a b',
  '*', '*.', '*.*.x', 'exa mple.com', 'ex%41mple.com', '127.0.0.1', '169.254.169.254', '::', '::ffff:10.0.0.1',
  '10.0.0.0/33', '10.0.0.0/-1', '2001:db8::/129', '127.0.0.1:0', '127.0.0.1:65536', '[::1]:0', '[::1', ':3128', '0.0.0.0:0',
  'http://', 'http://a:0', 'http://u:p%zz@a:1', 'https://[::1]:443', 'ftp://a:1', 'http://a:1/path', 'socks5://a:1',
  '__proto__', 'constructor', 'toString', 'A'.repeat(300), 'é', 'Bücher.de', '\u0000', '\t', 'line\nbreak',
  true, false, null, [], {}, [[]], [{}], { a: 1 }, ['direct'], [['corp']], ['corp', 'corp'], [443, 443]
]

const value = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...EDGE_VALUES) },
  { weight: 2, arbitrary: fc.jsonValue({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 1, arbitrary: fc.integer({ min: -10, max: 2 ** 32 }) },
  { weight: 1, arbitrary: fc.double({ noNaN: false }) }
)

type Path = ReadonlyArray<string | number>
type Edit = { readonly op: 'set' | 'delete' | 'add', readonly at: number, readonly key: string, readonly value: unknown }

/** Every path in `v`: keys of objects and indexes of arrays, depth first. */
function paths (v: unknown, prefix: Path = []): Path[] {
  if (typeof v !== 'object' || v === null) return []
  const entries: Array<[string | number, unknown]> = Array.isArray(v) ? v.map((x, i) => [i, x]) : Object.entries(v)
  return entries.flatMap(([k, x]) => [[...prefix, k], ...paths(x, [...prefix, k])])
}

/** `doc` with `edits` applied; an edit whose path no longer exists is skipped. */
function applyEdits (edits: readonly Edit[]): unknown {
  const doc: unknown = structuredClone(BASE)
  for (const e of edits) {
    const all = paths(doc)
    const path = all[e.at % all.length] ?? []
    let parent: unknown = doc
    for (const k of path.slice(0, -1)) parent = (parent as Record<string | number, unknown>)[k]
    if (typeof parent !== 'object' || parent === null) continue
    const last = path[path.length - 1] ?? ''
    const p = parent as Record<string | number, unknown>
    if (e.op === 'delete') {
      if (Array.isArray(p)) p.splice(Number(last), 1)
      else Reflect.deleteProperty(p, last)
    } else if (e.op === 'set') {
      p[last] = e.value
    } else if (!Array.isArray(p)) {
      // A key that is not there (or is elsewhere in the schema), defined as an own property even for __proto__.
      Object.defineProperty(p, e.key, { value: e.value, enumerable: true, writable: true, configurable: true })
    } else {
      p.push(e.value)
    }
  }
  return doc
}

const edit = fc.record({
  op: fc.constantFrom('set', 'set', 'delete', 'add'),
  at: fc.nat(),
  key: fc.oneof(fc.constantFrom(...KEYS), fc.string({ maxLength: 8 })),
  value
}) as fc.Arbitrary<Edit>

/** YAML that yaml.stringify never writes: aliases (one a bomb), tags, merge keys, a second document. */
const SNIPPETS = [
  'x: &a [1, 2]\ny: *a\n',
  'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\na1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]\na2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]\na3: [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]\n',
  'rules: !!set { a, b }\n', 'timeouts: !!binary aGVsbG8=\n', 'limits: { max_tunnels: !!float 1e400 }\n',
  'timeouts: { idle: !!timestamp 2001-12-14 }\n', '<<: { default: allow }\n', '? [a, b]\n: 1\n', 'rules: &r [ *r ]\n',
  '---\nversion: 1\n', 'version: !!str 1\n', 'default: !custom allow\n', 'mode: *undefined\n'
]

const document = fc.tuple(fc.array(edit, { maxLength: 4 }), fc.constantFrom('plain', 'plain', 'plain', 'bytes', 'snippet'), fc.constantFrom(...SNIPPETS), fc.nat())
  .chain(([edits, how, snippet, n]) => {
    const text = stringify(applyEdits(edits))
    if (how === 'plain') return fc.constant(text)
    if (how === 'snippet') {
      // Replace a top-level line (or append) with the snippet.
      const lines = text.split('\n')
      const at = n % (lines.length + 1)
      return fc.constant([...lines.slice(0, at), snippet, ...lines.slice(at + 1)].join('\n'))
    }
    return mutated(fc.constant(new Uint8Array(Buffer.from(text, 'utf8'))), 3).map(b => b.toString('utf8'))
  })

/** parseConfig's outcome; any other throw fails the property. */
function load (text: string): Config | ConfigError {
  try {
    return parseConfig(text, FILE, { env: ENV })
  } catch (err) {
    assert.ok(err instanceof ConfigError, `parseConfig threw ${String((err as Error)?.stack ?? err)}\nfor:\n${text}`)
    assert.ok(err.problems.length >= 1, `a ConfigError with no problem for:\n${text}`)
    assert.ok(err.message.startsWith(`${FILE}: invalid configuration\n`), err.message)
    for (const p of err.problems) assert.ok(p.startsWith(`${dir}/`) && p.length > dir.length + 3, `problem line does not name the file: ${JSON.stringify(p)}`)
    return err
  }
}

const silent = createLogger({ level: 'silent' })

/** `ip`, `ip:port` or `[v6]:port` (port 53 when absent), as c-ares' setServers reads them. */
function dnsServer (s: string): { host: string, port: number } | undefined {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(s)
  if (bracketed !== null) return { host: bracketed[1] ?? '', port: bracketed[2] === undefined ? 53 : Number(bracketed[2]) }
  if (parseIp(s) !== undefined) return { host: s, port: 53 }
  const m = /^([^:]+):(\d+)$/.exec(s)
  return m === null ? undefined : { host: m[1] ?? '', port: Number(m[2]) }
}

/** A Config that parseConfig accepted must be one Sluice can serve. */
async function servable (c: Config, text: string): Promise<void> {
  const durations: Record<string, number> = {
    ...Object.fromEntries(Object.entries(c.timeouts).map(([k, v]) => [`timeouts.${k}`, v])),
    'dns.max_ttl': c.dns.max_ttl,
    'dns.negative_ttl': c.dns.negative_ttl,
    parent_backoff: c.parentBackoffMs,
    reload_settle: c.reloadSettleMs,
    ...(c.auth === undefined
      ? {}
      : { 'auth.cache_ttl': c.auth.cacheTtlMs, 'auth.lockout.window': c.auth.lockout.windowMs, 'auth.lockout.duration': c.auth.lockout.durationMs })
  }
  for (const [k, ms] of Object.entries(durations)) {
    // Past 2^53 a number of milliseconds is not exact, and http.createServer refuses it as a timeout.
    assert.ok(Number.isSafeInteger(ms) && ms >= 0, `${k}: ${ms} ms was accepted\nfor:\n${text}`)
  }
  // These arm a timer (setTimeout), which fires after 1 ms when asked to wait longer than it can.
  for (const k of ['timeouts.connect', 'timeouts.dns', 'timeouts.happy_eyeballs', 'timeouts.drain', 'timeouts.drain_delay', 'reload_settle']) {
    const ms = durations[k] ?? 0
    assert.ok(ms <= MAX_TIMER_MS, `${k}: ${ms} ms was accepted, but Node's timers fire at once past ${MAX_TIMER_MS} ms\nfor:\n${text}`)
  }
  for (const s of c.dns.servers) {
    const server = dnsServer(s)
    assert.ok(server !== undefined && parseIp(server.host) !== undefined && server.port >= 1 && server.port <= 65535,
      `dns.servers: ${JSON.stringify(s)} was accepted, but is not an address with a port 1-65535\nfor:\n${text}`)
  }
  const proxy = createProxy({ config: c, logger: silent })
  await proxy.close(0)
}

/** Files the fuzzer found (issue 11), kept as plain cases: each was accepted, or crashed, before its fix. */
const FOUND: ReadonlyArray<readonly [string, string, RegExp]> = [
  ['aliases expanded past yaml\'s limit (a "billion laughs" file): ReferenceError, not a ConfigError',
    `version: 1\n${SNIPPETS[1] ?? ''}`, /: cannot read the YAML: Excessive alias count/],
  ['a timer duration past 2^31-1 ms, which Node fires after 1 ms', 'version: 1\ntimeouts: { connect: 30d }',
    /:2: timeouts\.connect: expected at most 24d \(2147483647 ms, the longest Node's timers wait\), got the number 2592000000 ms$/],
  ['a duration past 2^53 ms, which http.createServer refuses at start-up', 'version: 1\ntimeouts: { header: 1e23 }',
    /:2: timeouts\.header: expected a duration like 500ms/],
  ['a DNS server with port 0, on which c-ares aborts the process', 'version: 1\ndns: { servers: ["127.0.0.1:0"] }',
    /:2: dns\.servers\[0\]: expected an IP address, IP:PORT or \[IPv6\]:PORT \(port 1-65535\), got a string '127\.0\.0\.1:0'$/],
  ['a DNS server that is a name, on which createProxy throws', 'version: 1\ndns: { servers: [Bücher.de] }',
    /:2: dns\.servers\[0\]: expected an IP address/]
]

describe('files the fuzzer found: a ConfigError naming the file and the path', () => {
  for (const [what, text, problem] of FOUND) {
    it(what, () => {
      const c = load(text)
      assert.ok(c instanceof ConfigError, `accepted:\n${text}`)
      assert.ok(c.problems.some(p => p.startsWith(FILE) && problem.test(p)), `problems: ${JSON.stringify(c.problems)}`)
    })
  }
})

describe('parseConfig fuzz', () => {
  it('the base document is valid', async () => {
    const c = load(stringify(BASE))
    assert.ok(!(c instanceof ConfigError), c instanceof ConfigError ? c.message : '')
    await servable(c, stringify(BASE))
  })

  it('random values at random paths: a Config Sluice can serve, or a ConfigError naming the file', async () => {
    await fc.assert(fc.asyncProperty(document, async (text) => {
      const c = load(text)
      if (!(c instanceof ConfigError)) await servable(c, text)
    }), fuzzParams(400))
  })
})
