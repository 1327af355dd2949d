/**
 * `npm run soak -- --minutes 10`: mixed load against a real Sluice child
 * process for a bounded time, watching its memory, fds, tunnels and
 * event-loop lag, and failing when they keep growing after warm-up or when
 * it logs an error (issue 11, "Soak"). `--help` says more; the load is
 * described in bench/lib/soak-load.ts and the rules in bench/lib/soak-options.ts.
 *
 * Order: build if stale; start the origin and Sluice; a short priming round
 * of every kind of load; quiet (no tunnel) → fds baseline; the main run with
 * a sample every few seconds, a row every 30 s and a reload every 30 s; stop
 * the load; quiet → fds again; SIGTERM; the verdict. Everything is on
 * loopback, every child is killed by its own PID on any exit, and a hard
 * deadline ends a run that hangs.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir, loadavg } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { installCleanup, killAllSync } from './lib/children.js'
import { buildSluice } from './lib/build.js'
import { parseSoakOptions, planFor, SOAK_HELP, UsageError, type SoakOptions } from './lib/soak-options.js'
import { startSoakOrigin } from './lib/soak-origin.js'
import { runLoad, Tally, type Targets } from './lib/soak-load.js'
import { openFds, reloadSoak, rssBytes, startSoakSluice, writeUsers, type LogLine, type SoakSluice } from './lib/soak-sluice.js'
import { row, TABLE_HEAD, verdict, type Sample } from './lib/soak-verdict.js'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const say = (s: string): void => { process.stdout.write(s + '\n') }

const num = (l: LogLine | undefined, k: string): number | undefined => typeof l?.[k] === 'number' ? l[k] : undefined

/** Run every kind of load for `ms`, then stop it and wait for every loop to finish its request. */
async function loadFor (targets: Targets, tally: Tally, ms: number): Promise<void> {
  const stop = new AbortController()
  const running = runLoad(targets, tally, stop.signal)
  await sleep(ms)
  stop.abort()
  await running
}

/** fds once the proxy reports no tunnel: the lower of two readings a sample apart. */
async function quietFds (s: SoakSluice, sampleMs: number): Promise<number | undefined> {
  try {
    await s.waitFor(l => l.msg === 'stats' && l['tunnels'] === 0, 30_000)
  } catch {
    return undefined
  }
  const a = openFds(s.pid)
  await sleep(sampleMs)
  const b = openFds(s.pid)
  return a === undefined || b === undefined ? undefined : Math.min(a, b)
}

async function soak (opts: SoakOptions): Promise<boolean> {
  const plan = planFor(opts.durationMs)
  if (opts.build) await buildSluice(root, say)
  const dir = mkdtempSync(join(tmpdir(), 'sluice-soak-'))
  const origin = await startSoakOrigin()
  const ports = { echo: origin.echoPort, source: origin.sourcePort }
  writeUsers(dir)
  const s = await startSoakSluice({ root, dir, ports, statsMs: plan.sampleMs })
  const targets: Targets = { proxy: s.port, echo: origin.echoPort, source: origin.sourcePort }
  say(`soak: ${opts.durationMs / 1000} s against pid ${s.pid} on 127.0.0.1:${s.port}; warm-up ${plan.warmupMs / 1000} s, ` +
    `a sample every ${plan.sampleMs / 1000} s, a reload every ${plan.reloadMs / 1000} s; load average ${loadavg().map(v => v.toFixed(2)).join(' ')}`)
  say(`soak: config, users file and the proxy's log in ${dir}`)

  // Priming: every kind of load once (bcrypt workers, caches, lazily built state), then quiet.
  // A reload too: the first one starts the config-validation worker thread
  // (config/validate-worker.ts, ~15 MiB), a step that is not growth.
  const tally = new Tally()
  await loadFor(targets, tally, 5000)
  await reloadSoak(s, 1, ports)
  const primingReloads = s.reloads()
  const quietBefore = await quietFds(s, plan.sampleMs)
  say(`soak: primed; quiet fds ${String(quietBefore)}, rss ${String(Math.round((rssBytes(s.pid) ?? 0) / 1048576))} MiB`)
  say(TABLE_HEAD)

  const samples: Sample[] = []
  const reloadProblems: string[] = []
  let reloadsWanted = 0
  let gen = 1
  const t0 = Date.now()
  const stop = new AbortController()
  const load = runLoad(targets, tally, stop.signal)
  tally.take()
  let lastPrint = t0
  let nextPrint = t0 + plan.printMs
  let nextReload = t0 + plan.reloadMs
  const reloads: Array<Promise<void>> = []
  for (let tick = 1; Date.now() - t0 < plan.durationMs && tick < 100_000; tick++) {
    await sleep(Math.max(0, t0 + tick * plan.sampleMs - Date.now()))
    if (s.exitCode() !== undefined) break
    const now = Date.now()
    const stats = s.latestStats()
    const rss = rssBytes(s.pid)
    const fds = openFds(s.pid)
    if (rss !== undefined && fds !== undefined) {
      samples.push({ t: now - t0, rssBytes: rss, fds, heapUsedBytes: num(stats, 'heap_used_bytes'), tunnels: num(stats, 'tunnels') })
    }
    if (now >= nextReload && now - t0 < plan.durationMs - 1000) {
      nextReload += plan.reloadMs
      reloadsWanted++
      const g = ++gen
      reloads.push(reloadSoak(s, g, ports).then(() => {}, (err: unknown) => { reloadProblems.push(`generation ${g}: ${(err as Error).message}`) }))
    }
    if (now >= nextPrint || now - t0 >= plan.durationMs) {
      const window = s.takeStats()
      const lags = window.map(l => num(l, 'loop_lag_p99_ms')).filter((v): v is number => v !== undefined)
      const maxes = window.map(l => num(l, 'loop_lag_max_ms')).filter((v): v is number => v !== undefined)
      const secs = (now - lastPrint) / 1000
      const c = tally.take()
      say(row({
        t: now - t0,
        sample: samples.at(-1),
        lagP99: lags.length === 0 ? undefined : Math.max(...lags),
        lagMax: maxes.length === 0 ? undefined : Math.max(...maxes),
        perSecond: { tunnels: c.tunnels / secs, bytes: c.bytes / secs, denials: c.denials / secs },
        reloads: s.reloads(),
        unexpected: tally.unexpectedTotal()
      }))
      lastPrint = now
      nextPrint += plan.printMs
    }
  }
  stop.abort()
  await load
  await Promise.all(reloads)
  const quietAfter = s.exitCode() === undefined ? await quietFds(s, plan.sampleMs) : undefined
  const exitCode = await s.stop()
  await origin.close()

  const ok = [...tally.ok].map(([k, v]) => `${k} ${v}`).join(', ')
  say(`soak: requests answered as expected: ${ok}`)
  const checks = verdict({
    samples,
    warmupMs: plan.warmupMs,
    quietFdsBefore: quietBefore,
    quietFdsAfter: quietAfter,
    errorLines: s.errors.map(l => JSON.stringify(l).slice(0, 500)),
    stderr: s.stderr(),
    unexpected: tally.unexpectedTotal(),
    unexpectedSamples: tally.samples,
    reloadsWanted,
    reloadsSeen: s.reloads() - primingReloads,
    reloadProblems,
    exitCode
  })
  for (const c of checks) say(`${c.ok ? 'pass' : 'FAIL'}  ${c.name}: ${c.detail}`)
  const passed = checks.every(c => c.ok)
  if (passed && !opts.keep) rmSync(dir, { recursive: true, force: true })
  else say(`soak: kept ${dir} (sluice.log is the proxy's log)`)
  say(`soak: ${passed ? 'passed' : 'FAILED'}; load average ${loadavg().map(v => v.toFixed(2)).join(' ')}`)
  return passed
}

async function main (): Promise<number> {
  let opts: SoakOptions
  try {
    opts = parseSoakOptions(process.argv.slice(2))
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`soak: ${err.message}\nsee 'npm run soak -- --help'\n`)
    return 2
  }
  if (opts.help) {
    say(SOAK_HELP)
    return 0
  }
  installCleanup()
  // A run that hangs still ends: the priming, the quiet waits and the stop are each bounded, and so is the whole.
  const deadline = setTimeout(() => {
    process.stderr.write('soak: did not finish within its bound; killing its children\n')
    killAllSync()
    process.exit(1)
  }, opts.durationMs + 180_000)
  try {
    return (await soak(opts)) ? 0 : 1
  } finally {
    clearTimeout(deadline)
  }
}

const exit = (code: number): void => {
  process.exitCode = code
  // Whatever still holds the loop (nothing should) gets 5 s, not forever.
  setTimeout(() => process.exit(code), 5000).unref()
}
main().then(exit, (err: unknown) => {
  process.stderr.write(`soak: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  killAllSync()
  exit(1)
})
