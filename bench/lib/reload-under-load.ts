/**
 * `npm run bench:reload -- --under-load`: the reload stall issue 15 asks
 * for, measured on the built proxy in its own process (bench/lib/reload-proxy.ts)
 * under load (bench/lib/reload-load.ts): new CONNECTs at a steady rate and
 * long tunnels pinged every few ms, to the C echo origin.
 *
 * Each reload is framed by windows: `before` (steady load), `during` (from
 * the trigger to the `configuration reloaded` line, plus SETTLE_MS for
 * what follows the apply: the old policy's garbage, the watcher's own look
 * at the file) and `after`. Client samples go to the window they completed
 * in. The event-loop lag is the proxy's own `sluice_event_loop_lag_seconds`:
 * its summary is reset by every scrape (observability/metrics.ts), so a
 * scrape at each window's edge gives that window alone. The bench's own
 * loop delay is shown too: a client that stalls would look like a proxy that
 * does. Exits non-zero only when setup fails; no figure is asserted.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { buildC, buildSluice } from './build.js'
import { installCleanup, runCaptured, stopAll } from './children.js'
import type { Options } from './options.js'
import { pinning } from './pinning.js'
import { foreignPercent, foreignTicks } from './proc.js'
import { startOrigin } from './origin.js'
import { startLoad, type LoadSamples, type Sample } from './reload-load.js'
import { startReloadProxy, type LoopLag, type ReloadHow } from './reload-proxy.js'

export interface UnderLoadOptions {
  readonly rules: number
  readonly reps: number
  readonly connectsPerS: number
  readonly tunnels: number
  readonly pingMs: number
  readonly windowMs: number
  /** Write the proxy's CPU profile (node --cpu-prof) into this directory. */
  readonly cpuProfDir?: string
  readonly build: boolean
  /** Where the proxy runs (bench/lib/pinning.ts); `whole`: all its threads on its CPU, else only the event loop's. */
  readonly pin: Pick<Options, 'pin' | 'proxyCpu' | 'loadCpu'> & { readonly whole: boolean }
}

const SETTLE_MS = 500
const RELOAD_TIMEOUT_MS = 120_000
const benchDir = dirname(dirname(fileURLToPath(import.meta.url)))
const say = (s: string): void => { process.stdout.write(s + '\n') }

/** How the proxy was pinned, for the report. */
function pinText (none: string | undefined, loopOnly: boolean, p: UnderLoadOptions['pin']): string {
  if (none !== undefined) return none
  if (loopOnly) return `the proxy's event loop (its main thread) on CPU ${p.proxyCpu}; its other threads (the validation worker, V8's and libuv's), loadgen, origin and this driver on CPU ${p.loadCpu}`
  return `every thread of the proxy (its validation worker too) on CPU ${p.proxyCpu}; loadgen, origin and this driver on CPU ${p.loadCpu}`
}

/** One window's figures. */
export interface WindowRow {
  readonly name: string
  readonly ms: number
  readonly connects: readonly number[]
  readonly failures: number
  readonly pings: readonly number[]
  readonly lost: number
  readonly lag: LoopLag
  readonly benchLagMs: number
  /** Other processes' CPU (not this bench's), % of one CPU: the machine is shared. */
  readonly othersPct: number
}

/** The value at quantile q (0..1) of ascending `sorted`, or undefined when empty. */
export function quantile (sorted: readonly number[], q: number): number | undefined {
  if (sorted.length === 0) return undefined
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

/** Durations of the samples that completed in [from, to), ascending. */
export function within (samples: readonly Sample[], from: number, to: number): number[] {
  return samples.filter(s => s.at >= from && s.at < to).map(s => s.ms).sort((a, b) => a - b)
}

const count = (times: readonly number[], from: number, to: number): number => times.filter(t => t >= from && t < to).length
const f1 = (v: number | undefined): string => v === undefined ? '–' : v.toFixed(1)

export const ROW_HEAD = [
  '| window | ms | CONNECTs ok / failed | CONNECT→200 p50 / p99 / worst ms | pings | ping p50 / worst ms | proxy loop lag p99 / max ms (/metrics) | bench loop max ms | others\' CPU % |',
  '|---|---:|---:|---:|---:|---:|---:|---:|---:|'
]

export function rowText (r: WindowRow): string {
  return `| ${r.name} | ${r.ms.toFixed(0)} | ${r.connects.length} / ${r.failures} | ${f1(quantile(r.connects, 0.5))} / ${f1(quantile(r.connects, 0.99))} / ${f1(r.connects.at(-1))} | ` +
    `${r.pings.length}${r.lost > 0 ? ` (${r.lost} tunnels lost)` : ''} | ${f1(quantile(r.pings, 0.5))} / ${f1(r.pings.at(-1))} | ${f1(r.lag.p99Ms)} / ${f1(r.lag.maxMs)} | ${f1(r.benchLagMs)} | ${r.othersPct.toFixed(0)} |`
}

/** A window's edge: when, the proxy's loop lag and the bench's own worst delay since the previous edge, and other processes' CPU ticks. */
interface Edge { readonly at: number, readonly lag: LoopLag, readonly benchLagMs: number, readonly ticks: Map<number, number> }

function windowRow (name: string, s: LoadSamples, from: Edge, to: Edge): WindowRow {
  const [a, b] = [from.at, to.at]
  return {
    name,
    ms: b - a,
    connects: within(s.connects, a, b),
    failures: count(s.failures, a, b),
    pings: within(s.pings, a, b),
    lost: count(s.lost, a, b),
    lag: to.lag,
    benchLagMs: to.benchLagMs,
    othersPct: foreignPercent(from.ticks, to.ticks, (b - a) / 1000)
  }
}

/** Everything, or a setup error (thrown). Returns the rows of every reload's `during` window. */
export async function underLoad (o: UnderLoadOptions): Promise<WindowRow[]> {
  installCleanup()
  const root = dirname(benchDir)
  if (o.build) await buildSluice(root, say)
  const bins = await buildC(benchDir, say)
  const dir = mkdtempSync(join(tmpdir(), 'sluice-reload-load-'))
  const during: WindowRow[] = []
  try {
    // Unpinned, the proxy's loop lag with no reload running reached 10-20 ms on a 2-vCPU VM: it shared CPUs with this driver.
    const pins = await pinning(o.pin, say)
    const origin = await startOrigin(bins.origin, pins.load, dir)
    const startedAt = performance.now()
    // Started on the load's CPU, then only the main thread (the event loop) moves to its own: the
    // validation worker, V8's helpers and libuv's pool, started with it, stay beside the load. The
    // worker starts with the proxy only for 1,000 rules or more (WARM_RULES); below that it would be
    // started later, by the main thread, and inherit the event loop's CPU.
    const loopOnly = !o.pin.whole && pins.proxy.length > 0
    const proxy = await startReloadProxy({ root, dir, rules: o.rules, prefix: loopOnly ? pins.load : pins.proxy, nodeFlags: o.cpuProfDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', o.cpuProfDir] })
    if (loopOnly) {
      const moved = await runCaptured(['taskset', '-p', '-c', String(o.pin.proxyCpu), String(proxy.pid)], 10_000)
      if (moved.code !== 0) throw new Error(`taskset: cannot move the proxy's event loop to CPU ${o.pin.proxyCpu}: ${moved.stderr.trim()}`)
    }
    say(`pinning: ${pinText(pins.proxy.length === 0 ? pins.text : undefined, loopOnly, o.pin)}`)
    say(`dist/cli.js listening on :${proxy.port} (admin :${proxy.adminPort}) with ${o.rules} rules after ${((performance.now() - startedAt) / 1000).toFixed(1)} s`)
    const load = await startLoad({ proxyPort: proxy.port, echoPort: origin.ports.echo, connectsPerS: o.connectsPerS, tunnels: o.tunnels, pingMs: o.pingMs })
    say(`load: ${o.connectsPerS} CONNECTs/s (each closed after its 200), ${o.tunnels} tunnels pinged every ${o.pingMs} ms; windows of ${o.windowMs} ms; load average ${loadavg().map(l => l.toFixed(2)).join(' ')}`)
    const bench = monitorEventLoopDelay({ resolution: 1 })
    bench.enable()
    /** Scrape (ending the proxy's lag window) and take the bench's own worst delay since the last edge. */
    const edge = async (): Promise<Edge> => {
      const lag = await proxy.scrapeLag()
      const benchLagMs = bench.max / 1e6
      bench.reset()
      return { at: performance.now(), lag, benchLagMs, ticks: foreignTicks() }
    }
    await sleep(o.windowMs) // warm-up, not counted
    for (let rep = 1; rep <= o.reps; rep++) {
      const how: ReloadHow = rep % 2 === 1 ? 'rename' : 'SIGHUP'
      const text = proxy.policy(rep)
      const t0 = await edge()
      await sleep(o.windowMs)
      const t1 = await edge()
      await proxy.reload(text, how, RELOAD_TIMEOUT_MS)
      const took = performance.now() - t1.at
      await sleep(SETTLE_MS)
      const t2 = await edge()
      await sleep(o.windowMs)
      const t3 = await edge()
      const rows = [
        windowRow('before', load.samples, t0, t1),
        windowRow('during', load.samples, t1, t2),
        windowRow('after', load.samples, t2, t3)
      ]
      during.push(rows[1] as WindowRow)
      say(`\nreload ${rep} (${how === 'rename' ? 'new file renamed into place' : 'file rewritten, then SIGHUP'}): ${took.toFixed(0)} ms from the trigger to 'configuration reloaded'`)
      for (const l of [...ROW_HEAD, ...rows.map(rowText)]) say(l)
    }
    bench.disable()
    await load.stop()
    const code = await proxy.stop()
    if (o.cpuProfDir !== undefined) say(`\nCPU profiles (proxy exited ${String(code)}): ${o.cpuProfDir}`)
    await origin.stop()
  } finally {
    await stopAll()
    rmSync(dir, { recursive: true, force: true })
  }
  return during
}

/** The worst of every `during` window, one line, against issue 15's bar. */
export function summary (rows: readonly WindowRow[]): string {
  const worst = (get: (r: WindowRow) => number | undefined): string => f1(Math.max(...rows.map(r => get(r) ?? 0)))
  return `worst during ${rows.length} reload(s): CONNECT→200 ${worst(r => r.connects.at(-1))} ms, tunnel ping ${worst(r => r.pings.at(-1))} ms, ` +
    `proxy event-loop lag ${worst(r => r.lag.maxMs)} ms (issue 15: a stall of at most 10 ms)`
}
