/** The results file (bench/results/<stamp>.md) and docs/benchmarks.md. */
import { release } from 'node:os'
import type { Options } from './options.js'
import { NODE_FLAGS } from '../../src/cli/node-flags.js'
import { splitSettings } from './sni-split.js'
import { sniWords, terminateWords } from './table.js'

export interface RunInfo {
  readonly command: string
  readonly date: string
  readonly node: string
  readonly cpu: string
  readonly cpus: number
  readonly pinning: string
  readonly sluice: string
  /** e.g. squid 5.7 */
  readonly others: readonly string[]
  readonly wallS: number
  readonly nofile: number
  /** "name (why)" for each peer that could not run. */
  readonly skippedPeers: readonly string[]
  /** Some peer was an HTTPS proxy (issue 13). */
  readonly tls: boolean
}

/** The variants table with its legend and notes. */
export interface VariantSection {
  readonly table: string
  readonly legend: readonly string[]
  readonly notes: readonly string[]
}

/** A chart to embed: its title and its path relative to the markdown file. */
export interface ChartLink {
  readonly title: string
  readonly href: string
}

/** What a run found, for both files. */
export interface ReportBody {
  readonly table: string
  readonly notes: readonly string[]
  readonly variants?: VariantSection
  readonly charts: readonly ChartLink[]
  /** A mode's bar (tls-bar.ts, sni-bar.ts); none, or no lines, when the Sluice peer it judges did not run. */
  readonly bar?: BarSection
}

/** A bar as markdown bullets under a heading of its own. */
export interface BarSection {
  /** e.g. "The HTTPS proxy's bar (issue 13)" */
  readonly title: string
  /** One line on what is compared with what. */
  readonly intro: string
  readonly lines: readonly string[]
}

const MiB = 1024 ** 2

function settings (o: Options, tls: boolean): string {
  const parts = [`${o.reps} repetition${o.reps === 1 ? '' : 's'}, peers interleaved, their order rotated each repetition (A B C, B C A, …), each proxy started fresh per repetition`]
  if (o.scenarios.has('bulk')) parts.push(`bulk: ${(o.bulkBytes / MiB).toLocaleString('en-US')} MiB up, then down, through one tunnel`)
  const opening = o.sni ? 'ClientHello → the origin\'s reply' : o.terminate ? 'TLS handshake' : 'CONNECT'
  if (o.scenarios.has('rate')) parts.push(`rate: ${o.rateClients} clients × ${o.rateSeconds} s (after ${o.rateWarmupS} s warm-up), ${opening} → 64-byte echo → close`)
  if (o.sni) parts.push(sniSettings(o))
  if (o.terminate) parts.push(TERMINATE_SETTINGS)
  if (tls) parts.push('HTTPS proxies (*-tls): TLS 1.3 from loadgen to the proxy (ECDSA P-256 certificate, verified), then the CONNECT inside it; a full handshake per tunnel in rate, bulk and hold')
  if (tls && o.scenarios.has('resume')) parts.push('resume (HTTPS proxies): the rate test again, each client offering its previous connection\'s session (TLS 1.3 ticket)')
  if (o.scenarios.has('split')) parts.push(`split: ${splitText(o)}`)
  if (o.scenarios.has('hold')) parts.push(`hold: ${o.hold.toLocaleString('en-US')} idle tunnels, memory read ${o.holdSettleMs / 1000} s after the last was established`)
  // The SNI and terminate modes have connections, not tunnels (issue 14).
  const words = o.sni ? sniWords : o.terminate ? terminateWords : (t: string): string => t
  return parts.map(p => `  - ${words(p)}`).join('\n')
}

/** What every connection of a terminate run does (issue 14). */
const TERMINATE_SETTINGS = 'TLS termination: no CONNECT; each connection is a full TLS 1.3 handshake (ECDSA P-256, verified for its name) with SNI echo.test, sink.test or source.test, mapped to the TLS origin\'s ports; the origin is HAProxy with TLS (TCP mode, one thread, on the load CPU) in front of origin.c, and every proxy verifies its certificate for the client\'s SNI against the bench CA'

/** What every connection of an SNI run sends (issue 14). */
function sniSettings (o: Options): string {
  const size = o.sniPad > 0 ? `padded to ~${o.sniPad.toLocaleString('en-US')} bytes` : 'unpadded, ~200 bytes'
  const how = o.sniSplit === 'none'
    ? 'one write, one record'
    : `in two writes ${o.sniGapMs} ms apart, cut mid server_name, as ${o.sniSplit === 'tcp' ? 'one record' : 'two TLS records'}`
  return `SNI passthrough: no CONNECT; each connection starts with a canned TLS 1.3 ClientHello (server_name echo.test, sink.test or source.test, mapped to the origin's ports; ${size}; ${how}), which the origin answers with one record`
}

function splitText (o: Options): string {
  const s = splitSettings(o.quick, o.sniGapMs)
  return `per peer, ${s.clients} clients × ${s.seconds} s with every hello in two writes ${s.gapMs} ms apart, cut mid server_name: one record in two TCP writes (tcp), then two TLS records (records); a pass is connections completed and none failed (${s.timeoutMs} ms timeout per connection)`
}

function variantsMarkdown (v: VariantSection | undefined, heading: string): string[] {
  if (v === undefined) return []
  return [
    `${heading} Variants against plain sluice (same run)`,
    '',
    'Rate test only, interleaved with the peers above. Each cell: median (min–max) over the repetitions; "÷" is the',
    'median over the repetitions of the ratio to the peer in "compared with" measured in the same repetition (adjacent in',
    'time, so a machine that slows down for a while moves both). Proxy CPU is the measured Sluice\'s whole process tree.',
    '',
    ...v.legend.map(l => `- ${l}`),
    '',
    v.table,
    '',
    ...(v.notes.length > 0 ? [...v.notes.map(n => `- ${n}`), ''] : [])
  ]
}

function chartsMarkdown (charts: readonly ChartLink[], heading: string): string[] {
  if (charts.length === 0) return []
  return [`${heading} Charts`, '', ...charts.flatMap(c => [`![${c.title.replace(/[[\]]/g, '')}](${c.href})`, ''])]
}

function barSection (bar: BarSection | undefined, heading: string): string[] {
  if (bar === undefined || bar.lines.length === 0) return []
  return [`${heading} ${bar.title}`, '', bar.intro, '', ...bar.lines, '']
}

/** Header + table + notes (+ the mode's bar, + charts, + the variants): the body of both files. */
export function resultsMarkdown (info: RunInfo, o: Options, body: ReportBody, heading = '##'): string {
  const { table: tableText, notes, variants, charts, bar } = body
  return [
    `- Command: \`${info.command}\``,
    `- Date: ${info.date}`,
    `- Node: ${info.node}; Sluice ${info.sluice}${info.others.map(v => `; ${v}`).join('')}`,
    `- CPU: ${info.cpu} (${info.cpus} CPUs); Linux ${release()}; fd limit ${info.nofile}`,
    `- Pinning: ${info.pinning}`,
    `- Settings:\n${settings(o, info.tls)}`,
    ...(info.skippedPeers.length > 0 ? [`- Skipped: ${info.skippedPeers.join(', ')}`] : []),
    `- Wall time: ${Math.round(info.wallS)} s`,
    '',
    `Each cell: median (min–max) over the repetitions.${tableText.includes('÷ direct') ? ' "÷ direct" is the median divided by direct\'s median.' : ''}`,
    '',
    tableText,
    '',
    ...(notes.length > 0 ? ['Notes:', '', ...notes.map(n => `- ${n}`), ''] : []),
    ...barSection(bar, heading),
    ...chartsMarkdown(charts, heading),
    ...variantsMarkdown(variants, heading)
  ].join('\n')
}

export function resultsFile (info: RunInfo, o: Options, body: ReportBody): string {
  return `# Sluice benchmark ${info.date}\n\n${resultsMarkdown(info, o, body)}`
}

export function docsFile (info: RunInfo, o: Options, body: ReportBody): string {
  return `<!-- Written by \`node --import tsx bench/run.ts ${o.tls ? '--tls ' : ''}--update-docs\`; rerun it rather than editing by hand. -->
# Benchmarks${o.tls ? ': HTTPS proxies (TLS from the client, then CONNECT)' : ''}
${o.tls ? '\nThe plain-CONNECT results are in [benchmarks.md](benchmarks.md).\n' : '\nThe HTTPS-proxy results (`--tls`) are in [benchmarks-tls.md](benchmarks-tls.md).\n'}
How fast Sluice relays, how quickly it sets tunnels up and how much memory an
idle tunnel costs, measured side by side with a no-proxy "direct" baseline on
one machine over loopback only.

## Latest results

${resultsMarkdown(info, o, body, '###')}
## What is measured

- **bulk**: one tunnel; the C load generator uploads N bytes to the origin's
  sink, then (a separate run) downloads N bytes from its source. MB/s is
  10^6 bytes per second over the data phase, byte counts verified. Proxy CPU
  is utime+stime of the proxy's process tree from \`/proc/PID/stat\`, before
  and after, per GiB relayed (both directions together).
- **rate**: C concurrent clients each loop connect → \`CONNECT\` → \`200\` →
  64-byte echo → close. Tunnels/s over the measured seconds (after a
  warm-up); CONNECT→200 latency from the \`connect()\` call to the end of the
  response head; cycle latency for the whole loop; errors by kind in the
  notes; proxy CPU µs per tunnel over warm-up and measurement.
- **hold**: after a 100-tunnel warm-up, K tunnels are opened (100 setups in
  flight) and left idle; proxy memory per tunnel is the PSS (and RSS) delta
  of the process tree from \`/proc/PID/smaps_rollup\` divided by K. Kernel
  socket buffers are not in PSS. Then every tunnel is pinged again: "alive
  after hold" must be K/K.
- **variants** (\`--variants auth,bigacl,chain,workers\`, or by name in
  \`--peers\`): Sluice with one feature on, run right after plain \`sluice\`
  in every repetition, rate test only, and tabled against it (the second
  table; the legend above it says what each one changes). Their configs are
  bench/policy.yaml's settings plus the variant's sections, written into a
  private temporary directory per start. Each start first checks that the
  feature bites (auth: 407 without and with a wrong password; bigacl: 403
  from each list) and that the measured CONNECT gets 200, else the
  repetition fails. \`sluice+bigacl\` and its control \`sluice+name\` CONNECT
  to a name (loadgen \`--connect-host\`) that a loopback DNS stub resolves:
  Sluice never applies \`hosts\` rules to an IP-literal target, so with
  127.0.0.1 the host list would not be consulted at all.
- **HTTPS proxies** (\`--tls\`, or by name in \`--peers\`: node-tls,
  sluice-tls, ats-tls, squid-tls): the load generator speaks TLS 1.3 to the
  proxy (OpenSSL, in its one epoll thread; X25519, ALPN http/1.1, the
  proxy's ECDSA P-256 certificate verified against the run's CA), then
  sends the \`CONNECT\` inside TLS; the leg from the proxy to the origin
  stays plain TCP. In **rate** each tunnel is a full handshake, and the
  proxy CPU µs per tunnel is the cost of handshake + CONNECT + echo +
  close. **resume** runs the rate test again with each client offering its
  previous connection's session (the newest TLS 1.3 ticket it got, or the
  one it resumed with); "handshakes resumed %" says how many the proxy
  accepted. **bulk** is MB/s through the TLS client leg, **hold** the
  memory per idle TLS tunnel. The client's TLS costs about as much CPU as
  the server's, so compare proxy CPU per tunnel, not tunnels/s. When
  sluice-tls runs, the report judges issue 13's bar on the medians (bulk
  ≥ the best anchor, CPU per full handshake ≤ ats-tls's and ≤ 1.1×
  node-tls's, resumed ≤ ats-tls's, ≤ 25 KiB per idle TLS tunnel).

## Method and caveats

- The proxy is pinned to one CPU and the load generator, the origin and the
  driver to another with \`taskset\`, so the client is not the bottleneck of
  a single-threaded proxy. \`direct\` runs loadgen and origin on the same
  single CPU: it is the floor for latency and the single-core loopback limit
  for throughput, not a two-CPU figure.
- Sluice runs as \`node ${NODE_FLAGS.join(' ')} dist/cli.js --config bench/policy.yaml
  --listen 127.0.0.1:PORT --log-level warn\` (the V8 flags npm start uses):
  one rule allowing 127.0.0.0/8, no per-tunnel log lines at that level, as
  squid (\`access_log none\`), tinyproxy (\`LogLevel Critical\`) and ATS
  (\`proxy.config.log.logging_enabled 0\`) run without theirs.
- Variants are pinned like \`sluice\` except: the parent of
  \`sluice+chain\` runs on the load CPU (next to loadgen and the origin;
  its CPU is reported apart), and \`sluice-w2\`/\`sluice-w2-os\` are not
  pinned (two workers need both CPUs, which loadgen and the origin then
  share; their proxy CPU is the whole tree, primary and workers). The
  notes under the variants table give the parent's, the tree's and
  loadgen's CPU as a share of one CPU: when the load CPU (parent + loadgen
  + origin) or both CPUs (workers + loadgen + origin) are close to full,
  tunnels/s is the machine's limit there rather than Sluice's alone.
- \`sluice+auth\` is measured with a warm credential cache (its start-up
  check logs in once): the steady state, not the first seconds after a
  start or a users-file reload.
- squid, tinyproxy and ats, when installed and named in \`--peers\`, run
  with private configs (no cache, no access log, one process / MaxClients
  above the hold count). ats is Apache Traffic Server's \`traffic_server\`
  alone (no traffic_manager) with a private runroot: a forward proxy (no
  remap), HTTP cache off and no cache storage, one exec (net) thread
  (\`ATS_NET_THREADS\` to change), accepting on it, default buffer sizes,
  \`connections_throttle\` 2.2 × the hold count + 1000, at least 19000
  (ATS counts both sides of a tunnel and stops accepting at 1/1.1 of it;
  it lowers it to the fd limit − 192 itself). ATS binds its net thread to
  every CPU, so the driver pins its threads back to the proxy CPU once it
  listens.
- The TLS files (a CA and a leaf for localhost and 127.0.0.1, ECDSA
  P-256, valid two days) are made for every run with the \`openssl\` CLI
  in \`bench/results/<timestamp>/tls/\` (not committed). Every HTTPS proxy
  is checked with one \`CONNECT\` inside TLS before it is measured.
  sluice-tls runs with a config whose \`listen\` is one TLS listener
  (\`{ address: 127.0.0.1:PORT, tls: { cert_file, key_file } }\`) and no
  \`--listen\`, which would replace it with a plain one; node-tls is
  bench/peers/node-tls.mjs, a bare \`tls.createServer\` with a hand-parsed
  \`CONNECT\`; ats-tls is ats on an \`ssl\` port
  (\`ssl_multicert.config\`, ATS's TLS defaults, tickets on); squid-tls
  is squid's \`https_port\`, run only when \`squid -v\` shows
  \`--with-openssl\` or \`--with-gnutls\` (Debian's 5.7 is GnuTLS, which
  does not resume sessions there).
- The machine may be shared. Around every bulk and rate measurement the
  driver adds up the CPU time of processes that are not its own (the
  "other processes' CPU %" rows, in % of one CPU; a lower bound). Above
  \`--noise-threshold\` (20 %) it measures again, at most \`--noise-retries\`
  times (2; 1 with \`--quick\`), and keeps the least disturbed attempt. A
  high figure left in that row means the neighbouring numbers are suspect.
- Compare ratios from one run rather than
  absolute numbers across runs. Raw loadgen output, peer logs and
  \`raw.jsonl\` are in \`bench/results/<timestamp>/\`.

## Running

\`\`\`
npm run bench                      # full: ${'3 reps, 2 GiB bulk, 50 clients × 10 s, 9000 held tunnels'}
npm run bench -- --quick           # about 30 seconds
npm run bench -- --peers direct,sluice,squid,tinyproxy,ats --skip hold
npm run bench -- --quick --peers direct,sluice --variants auth,bigacl,chain,workers
npm run bench -- --tls             # HTTPS proxies: node-tls,sluice-tls,ats-tls,squid-tls
npm run bench -- --quick --tls --skip hold
npm run bench -- --peers sluice,sluice-tls   # the cost of TLS, side by side
npm run bench -- --sni             # SNI passthrough listeners (issue 14): docs/benchmarks-sni.md
node --import tsx bench/run.ts --help
node --import tsx bench/micro/run.ts   # micro-benchmarks (mitata): parseTarget, decideRequest/decideAddress
\`\`\`

Every run writes \`bench/results/<timestamp>.md\` and its charts (SVG bar
charts of tunnels/s, proxy CPU per tunnel (and per resumed TLS tunnel),
bulk MB/s and memory per idle tunnel) in \`bench/results/<timestamp>/\`; \`--update-docs\` also rewrites
this page and its charts in \`docs/benchmarks/\`.

Needs a C compiler (\`cc\`) and OpenSSL's headers and libraries for the
load generator (Debian: \`libssl-dev\`), the \`openssl\` CLI for the TLS
peers' certificates, Linux \`/proc\`, and \`taskset\` for pinning
(without it the run goes on unpinned, with a warning).
`
}
