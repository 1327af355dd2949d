/**
 * Sluice vs a no-proxy baseline (and squid/tinyproxy/ATS when installed), with
 * the C load generator and origin of bench/c/; with --tls, as an HTTPS proxy
 * against the same anchors on their TLS ports (issue 13); with --sni and
 * --terminate, as listeners routed by the ClientHello (issue 14). `--help`
 * lists the options; docs/benchmarks.md explains the method.
 */
import { appendFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { installCleanup, stopAll } from './lib/children.js'
import { buildC, buildSluice } from './lib/build.js'
import { cpuModel, nofileLimit, nofileRaise } from './lib/proc.js'
import { pinning } from './lib/pinning.js'
import { HELP, parseOptions, UsageError, type Options } from './lib/options.js'
import type { Peer, PeerContext, RunningPeer } from './lib/peers.js'
import { externalVersion, selectPeers } from './lib/select.js'
import { dnsQueries, stopVariantServices } from './lib/variants.js'
import { variantLegend, variantNotes, variantTable } from './lib/variant-table.js'
import { startOrigin } from './lib/origin.js'
import type { LoadgenEnv } from './lib/loadgen.js'
import { bulk, hold, leastDisturbed, rate } from './lib/scenarios.js'
import { fmt, notes as collectNotes, table, wordsFor, type RepResult, type Scenario } from './lib/table.js'
import { docsFile, resultsFile, type BarSection, type ChartLink, type ReportBody, type RunInfo, type VariantSection } from './lib/report.js'
import { benchCharts, CHART_FILES, type ChartFile } from './lib/charts.js'
import { makeBenchCerts } from './lib/tls-certs.js'
import { barMarkdown, tlsBar } from './lib/tls-bar.js'
import { sniBar, sniMoonshot } from './lib/sni-bar.js'
import { SNI_LOADGEN_ARGS } from './lib/sni-peers.js'
import { split, splitSettings, SPLIT_KINDS } from './lib/sni-split.js'
import { sniDocsFile } from './lib/report-sni.js'
import { startTerminateRun } from './lib/terminate-mode.js'
import { terminateSection } from './lib/terminate-summary.js'
import { terminateDocsFile } from './lib/report-terminate.js'

const benchDir = dirname(fileURLToPath(import.meta.url))
const root = dirname(benchDir)
const t0 = Date.now()

function log (msg: string): void {
  const s = ((Date.now() - t0) / 1000).toFixed(1).padStart(6)
  process.stderr.write(`[${s}s] ${msg}\n`)
}

function stamp (d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0')
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`
}

function command (argv: readonly string[]): string {
  const q = (a: string): string => /^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`
  const script = relative(process.cwd(), process.argv[1] ?? 'bench/run.ts') || 'bench/run.ts'
  return ['node', ...process.execArgv, script, ...argv].map(q).join(' ')
}

function sluiceVersion (): string {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: string }
  let rev = 'no git commit'
  try {
    rev = 'git ' + execFileSync('git', ['describe', '--always', '--dirty'], { cwd: root, encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] }).trim()
  } catch { /* no commits yet */ }
  return `${pkg.version ?? '?'} (${rev})`
}

/** dist/cli.js's mtime: a build (ours or anyone's on a shared checkout) changes it. */
function distStamp (): number | undefined {
  try {
    return statSync(join(root, 'dist', 'cli.js')).mtimeMs
  } catch {
    return undefined
  }
}

async function runPeer (peer: Peer, rep: number, ctx: PeerContext, lg: LoadgenEnv, o: Options): Promise<RepResult> {
  const r: RepResult = { rep }
  const label = `${peer.name}-r${rep}`
  const started = Date.now()
  let running: RunningPeer | undefined
  const wants = (s: Scenario): boolean => o.scenarios.has(s) && (peer.scenarios?.has(s) ?? true)
  try {
    running = await peer.start(ctx)
    if (!peer.direct && wants('hold')) r.hold = await hold(lg, running, label, o.hold, o.holdSettleMs)
    const quiet = async <T extends { otherCpuPct?: number }>(what: string, fn: () => Promise<T>): Promise<T> =>
      await leastDisturbed(fn, o.noiseThresholdPct, o.noiseRetries, log, `${label} ${what}`)
    const peerNow = running
    if (wants('bulk')) r.bulk = await quiet('bulk', async () => await bulk(lg, peerNow, label, o.bulkBytes))
    if (wants('rate')) r.rate = await quiet('rate', async () => await rate(lg, peerNow, label, o.rateClients, o.rateSeconds, o.rateWarmupS))
    if (peer.tls === true && wants('resume')) {
      r.resume = await quiet('resume', async () => await rate(lg, peerNow, `${label}-resume`, o.rateClients, o.rateSeconds, o.rateWarmupS, ['--tls-resume']))
    }
    if (wants('split')) {
      r.split = {}
      for (const kind of SPLIT_KINDS) r.split[kind] = await split(lg, peerNow, label, kind, splitSettings(o.quick, o.sniGapMs))
    }
    if (!running.alive()) r.error = 'the proxy exited during the run (see its log)'
  } catch (err) {
    r.error = err instanceof Error ? err.message : String(err)
  } finally {
    await running?.stop()
  }
  r.seconds = (Date.now() - started) / 1000
  return r
}

function progress (peer: string, r: RepResult, words: (t: string) => string): string {
  const parts = [`rep ${r.rep} ${peer.padEnd(13)}`]
  if (r.bulk !== undefined) parts.push(`up ${fmt(r.bulk.upMBps)} down ${fmt(r.bulk.downMBps)} MB/s`)
  if (r.rate !== undefined) parts.push(`${fmt(r.rate.tunnelsPerS)} tunnels/s ${fmt(r.rate.cpuUsPerTunnel)} µs (errors ${fmt(r.rate.errors)})`)
  if (r.resume !== undefined) parts.push(`resumed ${fmt(r.resume.tunnelsPerS)}/s ${fmt(r.resume.cpuUsPerTunnel)} µs (${fmt(r.resume.tlsResumedPct)} % resumed)`)
  if (r.hold?.pssKiBPerTunnel !== undefined) parts.push(`${fmt(r.hold.pssKiBPerTunnel)} KiB/tunnel, alive ${fmt(r.hold.aliveAfter)}/${fmt(r.hold.established)}`)
  for (const [kind, x] of Object.entries(r.split ?? {})) parts.push(`split ${kind} ${x.passed ? 'pass' : `FAIL (${x.note ?? ''})`}`)
  if (r.error !== undefined) parts.push(`ERROR ${r.error}`)
  return words(`${parts.join('  ')}  (${fmt(r.seconds)} s)`)
}

/** Writes the charts into dir, and removes the ones this run has not drawn (their scenario did not run), so none is stale. */
function writeCharts (dir: string, charts: readonly ChartFile[]): void {
  mkdirSync(dir, { recursive: true })
  for (const file of CHART_FILES) if (!charts.some(c => c.file === file)) rmSync(join(dir, file), { force: true })
  for (const c of charts) writeFileSync(join(dir, c.file), c.svg)
}

/** Links from a markdown file to charts in its sibling directory `dir`. */
function links (charts: readonly ChartFile[], dir: string): ChartLink[] {
  return charts.map(c => ({ title: c.title, href: `${dir}/${c.file}` }))
}

/** loadgen's arguments for every run of the SNI mode: the names, and the run's split and padding. */
function sniLoadgenArgs (o: Options): string[] {
  return [...SNI_LOADGEN_ARGS,
    ...(o.sniSplit === 'none' ? [] : ['--sni-split', o.sniSplit, '--sni-gap-ms', String(o.sniGapMs)]),
    ...(o.sniPad > 0 ? ['--sni-pad', String(o.sniPad)] : [])]
}

function tlsBarSection (results: ReadonlyMap<string, readonly RepResult[]>): BarSection {
  const intro = 'sluice-tls against the anchors (ats-tls, squid-tls) and the bare Node TLS peer, on this run\'s medians.'
  return { title: 'The HTTPS proxy\'s bar (issue 13)', intro, lines: barMarkdown(tlsBar(results)) }
}

function sniBarSection (results: ReadonlyMap<string, readonly RepResult[]>): BarSection {
  const lines = barMarkdown(sniBar(results))
  const moon = sniMoonshot(results)
  const intro = 'sluice-sni against haproxy-sni (bulk), the bare Node SNI peer node-sni (connections/s), a fixed memory cap and the split hellos, on this run\'s medians, one CPU each.'
  return { title: 'The SNI passthrough\'s bar (issue 14)', intro, lines: lines.length > 0 && moon !== undefined ? [...lines, moon] : lines }
}

async function main (argv: readonly string[]): Promise<number> {
  let o = parseOptions(argv)
  if (o.help) { process.stdout.write(HELP + '\n'); return 0 }
  const { peers, skipped } = selectPeers(o.peers, o.variants, o.mode)
  if (peers.length === 0) throw new UsageError(`no peers to run${skipped.length > 0 ? ` (skipped: ${skipped.join(', ')})` : ''}`)
  const tlsRun = peers.some(p => p.tls === true)
  const started = new Date()
  const resultsDir = join(benchDir, 'results')
  const runName = stamp(started)
  const runDir = join(resultsDir, runName)
  mkdirSync(runDir, { recursive: true })
  log(`logs and raw data → ${relative(root, runDir)}/`)
  const nofile = nofileLimit()
  const fdCap = Number.isFinite(nofile.hard) ? nofile.hard : 1_048_576
  if (o.scenarios.has('hold') && 2 * o.hold + 200 > fdCap) {
    const k = Math.max(1, Math.floor((fdCap - 200) / 2))
    log(`warning: fd limit ${fdCap} is too low for ${o.hold} tunnels (2 fds each in the proxy); holding ${k}`)
    o = { ...o, hold: k }
  }
  const pin = await pinning(o, log)
  const bins = await buildC(benchDir, log)
  if (o.build && peers.some(p => p.name.startsWith('sluice'))) await buildSluice(root, log)
  // What is measured is fixed now: the checkout may move on while we run.
  const measured = { version: sluiceVersion(), dist: distStamp() }

  const tls = tlsRun ? await makeBenchCerts(join(runDir, 'tls')) : undefined
  if (tls !== undefined) log(`TLS: a CA and a certificate for ${tls.servername} (ECDSA P-256) in ${relative(root, dirname(tls.ca))}/`)

  const raise = nofileRaise()
  // The SNI mode: the origin reads and answers a ClientHello, and loadgen sends one instead of a CONNECT (issue 14).
  const origin = await startOrigin(bins.origin, [...raise, ...pin.load], runDir, o.sni ? ['--tls-hello'] : [])
  log(`origin: echo ${origin.ports.echo}, sink ${origin.ports.sink}, source ${origin.ports.source}`)
  // The terminate mode: HAProxy with TLS in front of it, and certificates for its names; the peers see only that (issue 14).
  const term = o.terminate ? await startTerminateRun(runDir, root, origin.ports, [...raise, ...pin.load], o.hold + 500, log) : undefined
  const ports = term?.origin.ports ?? origin.ports
  const tlsFiles = term?.tls ?? tls
  const common = o.sni ? sniLoadgenArgs(o) : term?.common
  const lg: LoadgenEnv = { bin: bins.loadgen, ports, prefix: [...raise, ...pin.load], logFile: join(runDir, 'loadgen.log'), ...(common === undefined ? {} : { common }) }
  const ctx: PeerContext = {
    root,
    prefix: [...raise, ...pin.proxy],
    proxyCpu: pin.proxy.length > 0 ? o.proxyCpu : undefined,
    unpinned: [...raise, ...pin.all],
    loadSide: [...raise, ...pin.load],
    logDir: runDir,
    origin: ports,
    maxTunnels: o.hold,
    ...(tlsFiles === undefined ? {} : { tls: tlsFiles })
  }
  const results = new Map<string, RepResult[]>(peers.map(p => [p.name, []]))
  try {
    for (let rep = 1; rep <= o.reps; rep++) {
      // Rotated each repetition (A B C, B C A, …): no peer always runs first or
      // last, next to the same neighbour, when the machine drifts (issue 15's metrics bar).
      for (let i = 0; i < peers.length; i++) {
        const peer = peers[(i + rep - 1) % peers.length] as Peer
        const r = await runPeer(peer, rep, ctx, lg, o)
        results.get(peer.name)?.push(r)
        appendFileSync(join(runDir, 'raw.jsonl'), JSON.stringify({ peer: peer.name, ...r }) + '\n')
        log(progress(peer.name, r, wordsFor(o)))
      }
    }
  } finally {
    await term?.origin.stop()
    await origin.stop()
    await stopVariantServices()
  }

  const info: RunInfo = {
    command: command(argv),
    date: started.toISOString().replace(/\.\d+Z$/, 'Z'),
    node: process.version,
    cpu: cpuModel(),
    cpus: cpus().length,
    pinning: pin.text,
    sluice: measured.version,
    others: [...new Set(peers.map(p => externalVersion(p.name)).filter((v): v is string => v !== undefined))],
    wallS: (Date.now() - t0) / 1000,
    nofile: nofile.soft,
    skippedPeers: skipped,
    tls: tlsRun
  }
  // The resume rows and chart only when some peer speaks TLS.
  const shown = new Set([...o.scenarios].filter(s => s !== 'resume' || tlsRun))
  const mainPeers = peers.filter(p => p.variantOf === undefined)
  const words = wordsFor(o)
  const tableText = table(mainPeers.map(p => p.name), results, shown, o.hold, words)
  const notes = collectNotes(results)
  if (distStamp() !== measured.dist) notes.push('dist/ was rebuilt while this ran (not by this driver): later repetitions may have measured other code')
  const versionNow = sluiceVersion()
  if (versionNow !== measured.version) notes.push(`the checkout moved to ${versionNow} while this ran; the Sluice version above is the one at the start`)
  const vTable = variantTable(peers, results)
  const variants: VariantSection | undefined = vTable === undefined
    ? undefined
    : { table: vTable, legend: variantLegend(peers), notes: variantNotes(peers, results, await dnsQueries()) }
  const charts = benchCharts(peers.map(p => p.name), results, shown, words)
  writeCharts(runDir, charts)
  const bar = o.sni ? sniBarSection(results) : o.terminate ? terminateSection(results) : tlsBarSection(results)
  const body = (dir: string): ReportBody => ({ table: tableText, notes, ...(variants === undefined ? {} : { variants }), charts: links(charts, dir), bar })
  const resultsPath = join(resultsDir, `${runName}.md`)
  writeFileSync(resultsPath, resultsFile(info, o, body(runName)))
  const bullets = (list: readonly string[]): string => list.map(n => `- ${n}\n`).join('')
  process.stdout.write(`\n${tableText}\n\n${bullets(notes)}`)
  if (bar.lines.length > 0) process.stdout.write(`\n${bar.title}:\n\n${bar.lines.join('\n')}\n`)
  if (variants !== undefined) process.stdout.write(`\nVariants against plain sluice (same run):\n\n${variants.table}\n\n${bullets(variants.notes)}`)
  log(`wrote ${relative(root, resultsPath)}`)
  if (o.updateDocs) {
    // A --tls run (the HTTPS proxies), an --sni and a --terminate run have pages of their own beside the plain one (issues 13, 14).
    const page = o.tls ? 'benchmarks-tls' : o.sni ? 'benchmarks-sni' : o.terminate ? 'benchmarks-terminate' : 'benchmarks'
    mkdirSync(join(root, 'docs'), { recursive: true })
    writeCharts(join(root, 'docs', page), charts)
    writeFileSync(join(root, 'docs', `${page}.md`), (o.sni ? sniDocsFile : o.terminate ? terminateDocsFile : docsFile)(info, o, body(page)))
    log(`wrote docs/${page}.md and ${charts.length} chart${charts.length === 1 ? '' : 's'} in docs/${page}/`)
  }
  const failed = [...results.values()].flat().some(r => r.error !== undefined)
  return failed ? 1 : 0
}

installCleanup()
try {
  process.exitCode = await main(process.argv.slice(2))
} catch (err) {
  const usage = err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') === true
  process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}${usage ? ' (see --help)' : ''}\n`)
  process.exitCode = usage ? 2 : 1
} finally {
  await stopAll()
}
