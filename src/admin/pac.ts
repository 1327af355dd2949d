/**
 * `/proxy.pac` (issue 15): a proxy auto-config file that sends a browser to
 * Sluice for the targets Sluice would take and DIRECT for the rest.
 *
 * The policy is first-match, so the PAC walks the same rules in the same
 * order, on what a PAC can see: the URL's scheme, host and port. What it
 * cannot see is decided in Sluice's favour ("might take it" → PROXY):
 * - an allow rule's `users`, `clients` and `listeners` are assumed to match
 *   (a user who logs in gets through); its `ips` too, when it has `hosts`;
 *   an allow rule with `ips` and no `hosts` matches IPv4 literals in its
 *   IPv4 ranges only, since the PAC never resolves a name;
 * - a deny rule is kept only when nothing but `hosts` and `ports` decide it
 *   (a conditional deny may not apply to this client); a deny in report
 *   mode denies nothing and is dropped;
 * - what no rule matches gets `admin.pac.default`, else the policy's
 *   default (allow, or `mode: report`, → PROXY).
 * Sluice takes only CONNECT, which browsers send for https:, wss: and ws:
 * URLs; an http: URL would be a plain GET (405 here), so it goes DIRECT,
 * as do loopback targets (the proxy's loopback is not the browser's).
 *
 * The rules are data (a table the one fixed FindProxyForURL walks), not
 * generated code: a 20,000-host policy is a lookup per label, as in
 * policy/match.ts, and no rule text is ever spliced into code.
 */
import type { RuleSpec } from '../policy/schema.js'
import { parsePortSpec } from '../policy/schema.js'
import { formatHostPort, parseCidr } from '../net/ip.js'
import type { PacProxy } from '../config/admin.js'

/** One rule as the PAC sees it. */
export interface PacRule {
  readonly rule: string
  /** PROXY (an allow) or DIRECT (a deny). */
  readonly to: 'PROXY' | 'DIRECT'
  /** Exact names, as an object for `in` lookups; absent = any host. */
  readonly hosts?: Readonly<Record<string, 1>>
  /** `*.suffix` patterns, without the `*.`. */
  readonly suffixes?: Readonly<Record<string, 1>>
  /** `[address, mask]` IPv4 ranges an IP-literal host must be in (isInNet). */
  readonly nets?: ReadonlyArray<readonly [string, string]>
  /** `[lo, hi]` port ranges; absent = any port. */
  readonly ports?: ReadonlyArray<readonly [number, number]>
}

export interface PacTable {
  readonly rules: readonly PacRule[]
  /** What no rule matches gets, by the policy. */
  readonly policyDefault: 'PROXY' | 'DIRECT'
}

function mask (bits: number): string {
  const m = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
  return [m >>> 24, (m >>> 16) & 255, (m >>> 8) & 255, m & 255].join('.')
}

/** `10.0.0.0/8` → `['10.0.0.0', '255.0.0.0']`; IPv6 ranges are left out (isInNet is IPv4). */
function ipv4Net (spec: string): readonly [string, string] | undefined {
  const c = parseCidr(spec)
  if (c === undefined || !c.v4) return undefined
  // The bytes, not the text: `::ffff:10.0.0.0/104` is 10.0.0.0/8, and `127.1` is 127.0.0.1.
  return [c.bytes.join('.'), mask(c.bits)]
}

function pacRule (r: RuleSpec, i: number, report: boolean): PacRule | undefined {
  const name = r.name ?? `rule-${i + 1}`
  const allow = r.action === 'allow'
  if (!allow) {
    const conditional = r.ips !== undefined || r.clients !== undefined || r.users !== undefined || r.listeners !== undefined
    if (report || r.mode === 'report' || conditional) return undefined
  }
  const hosts = r.hosts?.filter(h => !h.startsWith('*.'))
  const suffixes = r.hosts?.filter(h => h.startsWith('*.')).map(h => h.slice(2))
  const ports = r.ports?.map(p => parsePortSpec(p) ?? [0, 0] as const)
  let nets: Array<readonly [string, string]> | undefined
  if (r.hosts === undefined && r.ips !== undefined) {
    nets = r.ips.flatMap(s => { const n = ipv4Net(s); return n === undefined ? [] : [n] })
    // Only IPv6 ranges: no target a PAC can tell apart would match.
    if (nets.length === 0) return undefined
  }
  return {
    rule: name,
    to: allow ? 'PROXY' : 'DIRECT',
    ...(hosts === undefined ? {} : { hosts: Object.fromEntries(hosts.map(h => [h, 1 as const])) }),
    ...(suffixes === undefined ? {} : { suffixes: Object.fromEntries(suffixes.map(h => [h, 1 as const])) }),
    ...(nets === undefined ? {} : { nets }),
    ...(ports === undefined ? {} : { ports })
  }
}

/** The policy's rules as the PAC sees them: once per load (config/load.ts). */
export function pacTable (rules: readonly RuleSpec[], defaultAction: 'allow' | 'deny', mode: 'enforce' | 'report'): PacTable {
  const report = mode === 'report'
  return Object.freeze({
    rules: Object.freeze(rules.flatMap((r, i) => { const p = pacRule(r, i, report); return p === undefined ? [] : [p] })),
    policyDefault: defaultAction === 'allow' || report ? 'PROXY' : 'DIRECT'
  })
}

/**
 * The fixed part of the file. ES3-era JavaScript on purpose: PAC engines
 * (Chromium's V8 sandbox, Firefox, Windows' WinHTTP, pac-resolver's
 * QuickJS) agree on little beyond it.
 */
const FIND_PROXY = `
function sluicePort(url, scheme) {
  var rest = url.substring(url.indexOf("//") + 2);
  var end = rest.search(/[\\/?#]/);
  var auth = end < 0 ? rest : rest.substring(0, end);
  auth = auth.substring(auth.lastIndexOf("@") + 1);
  var m = /:(\\d+)$/.exec(auth.charAt(0) === "[" ? auth.substring(auth.indexOf("]")) : auth);
  if (m) return parseInt(m[1], 10);
  return scheme === "ws" ? 80 : 443;
}

function sluiceMatches(r, host, port) {
  var i, ok;
  if (r.ports) {
    ok = false;
    for (i = 0; i < r.ports.length && !ok; i++) ok = port >= r.ports[i][0] && port <= r.ports[i][1];
    if (!ok) return false;
  }
  if (r.nets) {
    if (!/^\\d+\\.\\d+\\.\\d+\\.\\d+$/.test(host)) return false;
    for (i = 0; i < r.nets.length; i++) if (isInNet(host, r.nets[i][0], r.nets[i][1])) return true;
    return false;
  }
  if (!r.hosts && !r.suffixes) return true;
  if (r.hosts && Object.prototype.hasOwnProperty.call(r.hosts, host)) return true;
  if (r.suffixes) {
    for (i = host.indexOf("."); i >= 0; i = host.indexOf(".", i + 1)) {
      if (Object.prototype.hasOwnProperty.call(r.suffixes, host.substring(i + 1))) return true;
    }
  }
  return false;
}

function FindProxyForURL(url, host) {
  var scheme = url.substring(0, url.indexOf(":")).toLowerCase();
  // Sluice takes CONNECT only: browsers send it for these schemes.
  if (scheme !== "https" && scheme !== "wss" && scheme !== "ws") return "DIRECT";
  var h = host.toLowerCase().replace(/\\.$/, "").replace(/^\\[(.*)\\]$/, "$1");
  if (h === "localhost" || /\\.localhost$/.test(h) || /^127\\./.test(h) || h === "::1") return "DIRECT";
  var port = sluicePort(url, scheme);
  for (var i = 0; i < RULES.length; i++) {
    if (sluiceMatches(RULES[i], h, port)) return RULES[i].to === "PROXY" ? SLUICE : "DIRECT";
  }
  return DEFAULT === "PROXY" ? SLUICE : "DIRECT";
}
`

export interface PacScriptOptions {
  /** `PROXY host:port` or `HTTPS host:port`. */
  readonly proxy: string
  /** `admin.pac.default`, else the table's. */
  readonly fallback: 'PROXY' | 'DIRECT'
  /** For the header comment: the config file's hash. */
  readonly hash: string
}

/** The PAC file's text. JSON is valid JavaScript, and nothing from the policy is ever code. */
export function pacScript (table: PacTable, o: PacScriptOptions): string {
  // A browser's fallback after the proxy: none, so a down Sluice is visible rather than bypassed.
  const lines = [
    `// Generated by Sluice (policy ${o.hash}). First match wins, as in the policy; see README "Admin endpoint".`,
    `var SLUICE = ${JSON.stringify(o.proxy)};`,
    `var DEFAULT = ${JSON.stringify(o.fallback)};`,
    `var RULES = [\n${table.rules.map(r => '  ' + JSON.stringify(r)).join(',\n')}\n];`
  ]
  return lines.join('\n') + '\n' + FIND_PROXY
}

/** A listener as far as the PAC cares. */
export interface PacListener {
  readonly host: string
  readonly port: number
  readonly kind?: string
  readonly tls?: unknown
}

/**
 * Without `admin.pac.proxy`: the first connect listener, `HTTPS` when it
 * speaks TLS. Undefined when that listens on every interface (0.0.0.0,
 * ::): the name clients should use is not known here.
 */
export function listenerProxy (listen: readonly PacListener[]): PacProxy | undefined {
  const l = listen.find(l => (l.kind ?? 'connect') === 'connect')
  if (l === undefined || l.host === '0.0.0.0' || l.host === '::') return undefined
  return { scheme: l.tls === undefined ? 'PROXY' : 'HTTPS', hostPort: formatHostPort(l.host, l.port) }
}
