/**
 * The built binary as an operator runs it: `node dist/cli.js ARGS` from the
 * repository root, either to completion (stdin piped in, output collected)
 * or serving, with its stdout JSON log lines collected and waited on.
 * Every wait is bounded; every child started here is tracked so after()
 * can kill what a failed test left running.
 *
 * Runs against dist/, so `npm run test:cli` builds first.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

/** The repository root, the CLI's working directory. */
export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

/** Bound on waiting for one log line or an exit; a failure bound, not synchronisation. */
export const WAIT_MS = 5000

/** For before(): fail clearly when dist/ has not been built. */
export function assertBuilt (): void {
  assert.ok(existsSync(CLI), `${CLI} is missing: build first (npm run build; npm run test:cli does it)`)
}

const children = new Set<ChildProcess>()

/** SIGKILL every CLI process started here that is still running (for after()). */
export function killCliChildren (): void {
  for (const c of children) c.kill('SIGKILL')
}

function track<C extends ChildProcess> (child: C): C {
  children.add(child)
  child.once('exit', () => children.delete(child))
  return child
}

export interface Exit { readonly code: number | null, readonly signal: NodeJS.Signals | null }

/** The result of a run to completion. */
export interface Finished extends Exit {
  readonly stdout: string
  readonly stderr: string
  /** The node arguments it ran with: the CLI path, then ARGS. */
  readonly argv: readonly string[]
}

export interface RunOptions {
  /** Piped in, then closed; without it stdin is /dev/null. */
  readonly stdin?: string | Buffer
  /** The whole environment (default: ours). */
  readonly env?: NodeJS.ProcessEnv
  /** SIGKILL after this long (default {@link WAIT_MS}). */
  readonly timeoutMs?: number
}

/** Run `node dist/cli.js ARGS` to completion (bounded) and collect its output. */
export async function runCli (args: readonly string[], opts: RunOptions = {}): Promise<Finished> {
  const argv = [CLI, ...args]
  const child = track(spawn(process.execPath, argv, {
    cwd: ROOT,
    stdio: [opts.stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    ...(opts.env === undefined ? {} : { env: opts.env })
  }))
  let stdout = ''
  let stderr = ''
  child.stdout?.setEncoding('utf8').on('data', (s: string) => { stdout += s })
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  if (opts.stdin !== undefined) {
    child.stdin?.on('error', () => {}) // the child may exit before reading (usage errors)
    child.stdin?.end(opts.stdin)
  }
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? WAIT_MS)
  try {
    const [code, signal] = await once(child, 'close') as [number | null, NodeJS.Signals | null]
    return { code, signal, stdout, stderr, argv }
  } finally {
    clearTimeout(timer)
  }
}

export interface LogLine { readonly msg: string, readonly [key: string]: unknown }

/** A serving CLI process whose stdout JSON lines are collected. */
export interface Served {
  readonly child: ChildProcessWithoutNullStreams
  readonly logs: LogLine[]
  /** The port of its one listener (127.0.0.1), from the 'sluice listening' line. */
  readonly port: number
  /** stderr so far. */
  stderr (): string
  /** Resolves with the first line (past or future) matching `pred`; rejects if it exits first. */
  waitForLog (pred: (l: LogLine) => boolean, timeoutMs?: number): Promise<LogLine>
  /** Resolves once the process has exited (bounded). */
  exited (timeoutMs?: number): Promise<Exit>
}

export interface ServeCliOptions {
  /** What node runs instead of dist/cli.js: node flags and a script (e.g. a test's own primary). */
  readonly entry?: readonly string[]
  /** The whole environment (default: ours). */
  readonly env?: NodeJS.ProcessEnv
}

/** Start `node dist/cli.js ARGS` serving (ARGS must listen on one 127.0.0.1 address) and wait for 'sluice listening'. */
/** `host`: the address it is expected to listen on (default 127.0.0.1). */
export async function serveCli (args: readonly string[], host = '127.0.0.1', opts: ServeCliOptions = {}): Promise<Served> {
  const child = track(spawn(process.execPath, [...(opts.entry ?? [CLI]), ...args], {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(opts.env === undefined ? {} : { env: opts.env })
  }))
  const logs: LogLine[] = []
  const waiters = new Set<() => void>()
  let stderr = ''
  let exit: Exit | undefined
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const exitP = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      exit = { code, signal }
      resolve(exit)
      for (const w of [...waiters]) w()
    })
  })
  createInterface({ input: child.stdout }).on('line', (line) => {
    let rec: LogLine
    try {
      rec = JSON.parse(line) as LogLine
    } catch {
      rec = { msg: `(not JSON) ${line}` }
    }
    logs.push(rec)
    for (const w of [...waiters]) w()
  })
  const stdoutText = (): string => logs.map(l => JSON.stringify(l)).join('\n')

  function waitForLog (pred: (l: LogLine) => boolean, timeoutMs = WAIT_MS): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const found = logs.find(pred)
        if (found !== undefined) { done(); resolve(found); return }
        if (exit !== undefined) {
          done()
          reject(new Error(`sluice exited (${JSON.stringify(exit)}) without the expected log line; stdout:\n${stdoutText()}\nstderr:\n${stderr}`))
        }
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`timed out waiting for a log line; stdout:\n${stdoutText()}\nstderr:\n${stderr}`))
      }, timeoutMs)
      function done (): void { clearTimeout(timer); waiters.delete(check) }
      waiters.add(check)
      check()
    })
  }

  const listening = await waitForLog(l => l.msg === 'sluice listening')
  const listen = listening['listen']
  assert.ok(Array.isArray(listen) && listen.length === 1, `one listen address expected, got ${JSON.stringify(listen)}`)
  const m = new RegExp(`^${host.replace(/\./g, '\\.')}:(\\d+)$`).exec(String(listen[0]))
  assert.ok(m !== null, `listen address should be ${host}:PORT, got ${String(listen[0])}`)
  const port = Number(m[1])
  assert.ok(port > 0 && port < 65536)

  return {
    child,
    logs,
    port,
    stderr: () => stderr,
    waitForLog,
    async exited (timeoutMs = WAIT_MS) {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`sluice did not exit within ${timeoutMs} ms; stdout:\n${stdoutText()}`)), timeoutMs)
      })
      try {
        return await Promise.race([exitP, timeout])
      } finally {
        clearTimeout(timer)
      }
    }
  }
}
