/**
 * Every process the driver starts goes through `spawnTracked`, so one
 * `killAll` (on exit, on error, on SIGINT/SIGTERM) ends each of them by its
 * own PID (and its process group, which it leads: squid may fork). Nothing
 * is ever killed by name.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process'
import { once } from 'node:events'

const live = new Set<ChildProcess>()

export interface TrackedOptions {
  readonly stdio?: SpawnOptions['stdio']
  readonly env?: NodeJS.ProcessEnv
  readonly cwd?: string
}

/** Start argv[0] with argv[1..] in its own process group; remembered until it exits. */
export function spawnTracked (argv: readonly string[], opts: TrackedOptions = {}): ChildProcess {
  const [cmd, ...args] = argv
  if (cmd === undefined) throw new Error('spawnTracked: empty argv')
  const child = spawn(cmd, args, {
    stdio: opts.stdio ?? 'ignore',
    detached: true,
    ...(opts.env === undefined ? {} : { env: opts.env }),
    ...(opts.cwd === undefined ? {} : { cwd: opts.cwd })
  })
  live.add(child)
  child.once('exit', () => live.delete(child))
  child.once('error', () => live.delete(child))
  return child
}

function signalGroup (child: ChildProcess, signal: NodeJS.Signals): void {
  const pid = child.pid
  if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return
  try {
    process.kill(-pid, signal) // the group this child leads (detached: true)
  } catch {
    try { process.kill(pid, signal) } catch { /* already gone */ }
  }
}

export function exited (child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null
}

/** Resolves true when the child exits within `ms`. */
export async function waitExit (child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return true
  const ac = new AbortController()
  const timer = setTimeout(() => ac.abort(), ms)
  try {
    await once(child, 'exit', { signal: ac.signal })
    return true
  } catch {
    return exited(child)
  } finally {
    clearTimeout(timer)
  }
}

/** SIGTERM, up to `graceMs` to exit, then SIGKILL (the whole group). */
export async function stopChild (child: ChildProcess, graceMs = 5000): Promise<void> {
  signalGroup(child, 'SIGTERM')
  if (!(await waitExit(child, graceMs))) {
    process.stderr.write(`bench: pid ${child.pid ?? '?'} ignored SIGTERM for ${graceMs} ms; SIGKILL\n`)
  }
  signalGroup(child, 'SIGKILL')
  await waitExit(child, 2000)
  live.delete(child)
}

/** Synchronous last resort for process 'exit': SIGKILL whatever is left. */
export function killAllSync (): void {
  for (const child of live) signalGroup(child, 'SIGKILL')
  live.clear()
}

/** Graceful version for SIGINT and errors. */
export async function stopAll (graceMs = 2000): Promise<void> {
  await Promise.all([...live].map(async (c) => await stopChild(c, graceMs)))
}

/** Kill every child when the driver exits, however it exits. */
export function installCleanup (): void {
  process.once('exit', killAllSync)
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      process.stderr.write(`\nbench: ${sig}: stopping ${live.size} child process(es)\n`)
      const hard = setTimeout(() => { killAllSync(); process.exit(130) }, 4000)
      const exit = (): void => { clearTimeout(hard); process.exit(130) }
      stopAll().then(exit, exit)
    })
  }
}

/** Run to completion with a time bound; output captured; `input` (if any) written to its stdin. */
export async function runCaptured (argv: readonly string[], timeoutMs: number, opts: TrackedOptions & { readonly input?: string } = {}): Promise<{ code: number | null, stdout: string, stderr: string, timedOut: boolean }> {
  const { input, ...spawnOpts } = opts
  const child = spawnTracked(argv, { ...spawnOpts, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] })
  child.stdin?.on('error', () => {}) // EPIPE when it exits without reading
  child.stdin?.end(input)
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve))
  const done = waitExit(child, timeoutMs)
  const first = await Promise.race([done, spawnError])
  if (first instanceof Error) return { code: null, stdout, stderr: stderr + first.message, timedOut: false }
  const timedOut = !first
  if (timedOut) await stopChild(child, 1000)
  // Let the pipes drain ('close' follows 'exit'), bounded.
  if (child.stdout !== null && !child.stdout.readableEnded) {
    await Promise.race([once(child, 'close'), new Promise((resolve) => setTimeout(resolve, 2000))])
  }
  return { code: child.exitCode, stdout, stderr, timedOut }
}
