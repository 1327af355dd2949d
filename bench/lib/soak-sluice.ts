/**
 * The Sluice under soak: its config and users file in a temp dir, the built
 * dist/cli.js as a child process on 127.0.0.1 port 0 (the `sluice listening`
 * line names the port), its stdout JSON lines saved to DIR/sluice.log and
 * watched (error-level lines, `stats` lines, reloads), and its /proc figures.
 */
import { createWriteStream, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import type { ChildProcess } from 'node:child_process'
import bcrypt from 'bcryptjs'
import { spawnTracked, stopChild } from './children.js'
import { DENIED_HOST, DENIED_PORT, SOAK_PASSWORD, SOAK_USER } from './soak-load.js'

export interface LogLine { readonly level?: string, readonly msg?: string, readonly [k: string]: unknown }

/** The policy of generation `gen`: each reload writes the next one (rule names change, so the hash does). */
export function soakConfig (gen: number, ports: { echo: number, source: number }): string {
  return `# bench/soak.ts, generation ${gen}
version: 1
listen: 127.0.0.1:0
timeouts:
  idle: 10m
  drain: 2s
limits:
  max_tunnels: 5000
auth:
  users_file: users
  lockout:
    failures: 5
    window: 1m
    duration: 15s
default: deny
rules:
  - name: no-discard
    action: deny
    ports: [${DENIED_PORT}]
  - name: blocked
    action: deny
    hosts: [${DENIED_HOST}]
  - name: public-g${gen}
    action: allow
    clients: [127.0.0.1/32]
    ips: [127.0.0.0/8]
    ports: [${ports.echo}, ${ports.source}]
  - name: staff-g${gen}
    action: allow
    users: [${SOAK_USER}]
    ips: [127.0.0.0/8]
    ports: [${ports.echo}]
`
}

/** The users file: one bcrypt user at cost 4 (the cheapest a users file may hold). */
export function writeUsers (dir: string): void {
  writeFileSync(join(dir, 'users'), `${SOAK_USER}:${bcrypt.hashSync(SOAK_PASSWORD, 4)}\n`)
}

export interface SoakSluice {
  readonly pid: number
  readonly port: number
  readonly config: string
  /** Every error- or fatal-level line so far. */
  readonly errors: LogLine[]
  /** The latest `stats` line, and every one since the last takeStats(). */
  latestStats (): LogLine | undefined
  takeStats (): LogLine[]
  reloads (): number
  stderr (): string
  /** Resolves with the first future line matching `pred`; rejects after `ms` or when the process exits. */
  waitFor (pred: (l: LogLine) => boolean, ms: number): Promise<LogLine>
  exitCode (): number | null | undefined
  stop (): Promise<number | null>
}

/** Resident set size from /proc/PID/status, bytes. */
export function rssBytes (pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m === null ? undefined : Number(m[1]) * 1024
  } catch {
    return undefined
  }
}

export function openFds (pid: number): number | undefined {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return undefined
  }
}

export async function startSoakSluice (opts: { root: string, dir: string, ports: { echo: number, source: number }, statsMs: number }): Promise<SoakSluice> {
  const config = join(opts.dir, 'sluice.yaml')
  writeFileSync(config, soakConfig(0, opts.ports))
  const child: ChildProcess = spawnTracked([process.execPath, '--max-semi-space-size=4', join(opts.root, 'dist', 'cli.js'),
    'serve', '--config', config, '--listen', '127.0.0.1:0', '--log-level', 'info'], {
    cwd: opts.root,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, SLUICE_STATS_INTERVAL: `${opts.statsMs}ms` }
  })
  const log = createWriteStream(join(opts.dir, 'sluice.log'))
  const errors: LogLine[] = []
  let stats: LogLine[] = []
  let latest: LogLine | undefined
  let reloads = 0
  let stderr = ''
  let exit: number | null | undefined
  const waiters = new Set<(l: LogLine | undefined) => void>()
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  child.once('exit', (code) => {
    exit = code
    for (const w of [...waiters]) w(undefined)
  })
  if (child.stdout === null || child.stdout === undefined) throw new Error('no stdout')
  createInterface({ input: child.stdout }).on('line', (text) => {
    log.write(text + '\n')
    let l: LogLine
    try {
      l = JSON.parse(text) as LogLine
    } catch {
      l = { level: 'error', msg: `not a JSON line: ${text.slice(0, 200)}` }
    }
    if (l.level === 'error' || l.level === 'fatal') errors.push(l)
    if (l.msg === 'stats') { stats.push(l); latest = l }
    if (l.msg === 'configuration reloaded') reloads++
    for (const w of [...waiters]) w(l)
  })

  const waitFor = async (pred: (l: LogLine) => boolean, ms: number): Promise<LogLine> => {
    return await new Promise((resolve, reject) => {
      const done = (l: LogLine | undefined): void => {
        if (l !== undefined && !pred(l)) return
        clearTimeout(timer)
        waiters.delete(done)
        if (l === undefined) reject(new Error(`sluice exited (code ${String(exit)}); stderr: ${stderr.slice(-2000)}`))
        else resolve(l)
      }
      const timer = setTimeout(() => { waiters.delete(done); reject(new Error(`no matching log line within ${ms} ms`)) }, ms)
      waiters.add(done)
      if (exit !== undefined) done(undefined)
    })
  }

  let port: number
  try {
    const listening = await waitFor(l => l.msg === 'sluice listening', 15_000)
    const addr = (listening['listen'] as string[] | undefined)?.[0] ?? ''
    port = Number(/:(\d+)$/.exec(addr)?.[1])
    if (!Number.isInteger(port) || port <= 0) throw new Error(`cannot read the port from ${JSON.stringify(listening)}`)
  } catch (err) {
    await stopChild(child, 2000)
    throw err
  }

  return {
    pid: child.pid ?? 0,
    port,
    config,
    errors,
    latestStats: () => latest,
    takeStats () { const out = stats; stats = []; return out },
    reloads: () => reloads,
    stderr: () => stderr,
    waitFor,
    exitCode: () => exit,
    async stop () {
      await stopChild(child, 10_000)
      await new Promise<void>((resolve) => log.end(resolve))
      return child.exitCode
    }
  }
}

/**
 * Reload generation `gen`: even generations are written to a temp name and
 * renamed into place (the watcher applies them at once); odd ones are
 * rewritten in place and followed by SIGHUP (applied at once, without
 * waiting for reload_settle). Resolves when the proxy says it reloaded.
 */
export async function reloadSoak (s: SoakSluice, gen: number, ports: { echo: number, source: number }): Promise<string> {
  const before = s.reloads()
  const text = soakConfig(gen, ports)
  const how = gen % 2 === 0 ? 'rename' : 'SIGHUP'
  const seen = s.waitFor(l => l.msg === 'configuration reloaded', 10_000)
  if (how === 'rename') {
    writeFileSync(`${s.config}.tmp`, text)
    renameSync(`${s.config}.tmp`, s.config)
  } else {
    writeFileSync(s.config, text)
    process.kill(s.pid, 'SIGHUP')
  }
  await seen
  if (s.reloads() <= before) throw new Error('reload not counted')
  return how
}
