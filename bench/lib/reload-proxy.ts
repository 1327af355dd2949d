/**
 * The built Sluice (dist/cli.js) as a child process for
 * `npm run bench:reload -- --under-load` (issue 15): its config in a temp
 * dir with `admin:` on (so /metrics is served), both listeners on
 * 127.0.0.1 port 0 (the `sluice listening` and `admin listening` lines name
 * the ports), its JSON log lines watched for the reload's outcome, and
 * reloads triggered the ways an operator does: a new file renamed into
 * place (the watcher loads it at once) or SIGHUP.
 */
import { renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { ChildProcess } from 'node:child_process'
import { spawnTracked, stopChild } from './children.js'
import { bigPolicy } from './reload-policy.js'

export interface LogLine { readonly msg?: string, readonly [k: string]: unknown }

/** What /metrics says of the event loop since the previous scrape (the summary resets per scrape), ms. */
export interface LoopLag { readonly maxMs: number, readonly p99Ms: number }

export type ReloadHow = 'rename' | 'SIGHUP'

export interface ReloadProxy {
  readonly pid: number
  readonly port: number
  readonly adminPort: number
  /** Scrape /metrics: the event-loop lag since the previous scrape. */
  scrapeLag (): Promise<LoopLag>
  /** The text of generation `gen`: made before the window it is reloaded in, so the bench's own work stays out of it. */
  policy (gen: number): string
  /** Write `text` and trigger a reload; resolves when `configuration reloaded` is logged. */
  reload (text: string, how: ReloadHow, timeoutMs: number): Promise<void>
  stop (): Promise<number | null>
}

const header = (): string => 'version: 1\nlisten: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\n'

/** The lag gauge's value for one quantile, seconds → ms; undefined when absent. */
export function lagFromMetrics (text: string, quantile: string): number | undefined {
  const m = new RegExp(`^sluice_event_loop_lag_seconds\\{quantile="${quantile.replace('.', '\\.')}"\\} (\\S+)$`, 'm').exec(text)
  const v = Number(m?.[1])
  return m === null || !Number.isFinite(v) ? undefined : v * 1000
}

const portOf = (addr: unknown): number => Number(/:(\d+)$/.exec(typeof addr === 'string' ? addr : '')?.[1])

/**
 * Start the proxy on generation 0 of a `rules`-rule policy. `nodeFlags`
 * go before dist/cli.js (e.g. --cpu-prof); `prefix` before node (taskset). Start-up compiles the policy on
 * the event loop (and lints it), so it gets a long bound.
 */
export async function startReloadProxy (opts: { root: string, dir: string, rules: number, nodeFlags?: readonly string[], prefix?: readonly string[] }): Promise<ReloadProxy> {
  const config = join(opts.dir, 'sluice.yaml')
  writeFileSync(config, bigPolicy(opts.rules, 0, header()))
  const child: ChildProcess = spawnTracked([...(opts.prefix ?? []), process.execPath, '--max-semi-space-size=4', ...(opts.nodeFlags ?? []),
    join(opts.root, 'dist', 'cli.js'), 'serve', '--config', config, '--log-level', 'info'], {
    cwd: opts.root,
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let stderr = ''
  let exit: number | null | undefined
  const waiters = new Set<(l: LogLine | undefined) => void>()
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr = (stderr + s).slice(-4000) })
  child.once('exit', (code) => {
    exit = code
    for (const w of [...waiters]) w(undefined)
  })
  if (child.stdout === null || child.stdout === undefined) throw new Error('no stdout')
  createInterface({ input: child.stdout }).on('line', (text) => {
    // One `tunnel closed` line per CONNECT: parse only the lines anyone waits for.
    if (!/"msg":"(sluice listening|admin listening|configuration reloaded|reload rejected)/.test(text)) return
    let l: LogLine
    try {
      l = JSON.parse(text) as LogLine
    } catch {
      return
    }
    for (const w of [...waiters]) w(l)
  })

  const waitFor = async (pred: (l: LogLine) => boolean, ms: number): Promise<LogLine> => await new Promise((resolve, reject) => {
    const done = (l: LogLine | undefined): void => {
      if (l !== undefined && !pred(l)) return
      clearTimeout(timer)
      waiters.delete(done)
      if (l === undefined) reject(new Error(`sluice exited (code ${String(exit)}); stderr: ${stderr}`))
      else resolve(l)
    }
    const timer = setTimeout(() => { waiters.delete(done); reject(new Error(`no matching log line within ${ms} ms`)) }, ms)
    waiters.add(done)
    if (exit !== undefined) done(undefined)
  })

  let port = 0
  let adminPort = 0
  try {
    const adminLine = waitFor(l => l.msg === 'admin listening', 120_000)
    // Handled here too: if the wait below fails first, this one's rejection has no other reader.
    adminLine.catch(() => {})
    const listening = await waitFor(l => l.msg === 'sluice listening', 120_000)
    port = portOf((listening['listen'] as unknown[] | undefined)?.[0])
    adminPort = portOf((await adminLine)['address'])
    if (!(port > 0 && adminPort > 0)) throw new Error(`cannot read the ports from the log (proxy ${port}, admin ${adminPort})`)
  } catch (err) {
    await stopChild(child, 2000)
    throw err
  }

  return {
    pid: child.pid ?? 0,
    port,
    adminPort,
    async scrapeLag () {
      const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { signal: AbortSignal.timeout(10_000) })
      const text = await res.text()
      const maxMs = lagFromMetrics(text, '1')
      const p99Ms = lagFromMetrics(text, '0.99')
      if (res.status !== 200 || maxMs === undefined || p99Ms === undefined) throw new Error(`/metrics: ${res.status}, no sluice_event_loop_lag_seconds`)
      return { maxMs, p99Ms }
    },
    policy: (gen) => bigPolicy(opts.rules, gen, header()),
    async reload (text, how, timeoutMs) {
      const seen = waitFor(l => l.msg === 'configuration reloaded' || l.msg === 'reload rejected', timeoutMs)
      // A write or rename that throws below leaves this unread: its rejection must not be unhandled.
      seen.catch(() => {})
      if (how === 'rename') {
        // Written whole, then renamed into place: what README asks of operators.
        writeFileSync(`${config}.tmp`, text)
        renameSync(`${config}.tmp`, config)
      } else {
        writeFileSync(config, text)
        child.kill('SIGHUP')
      }
      const l = await seen
      if (l.msg !== 'configuration reloaded') throw new Error(`reload (${how}): ${l.msg ?? '?'}: ${JSON.stringify(l['problems'])}`)
    },
    async stop () {
      // SIGTERM: a graceful exit, so a --cpu-prof profile is written.
      await stopChild(child, 15_000)
      return child.exitCode
    }
  }
}
