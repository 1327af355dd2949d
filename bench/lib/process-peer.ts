/**
 * Starting a proxy as a child process for one repetition: a free loopback
 * port, the argv behind a prefix (fd limit, CPU pinning), output to the
 * run's log directory, and a bounded wait until it accepts connections.
 */
import { closeSync, mkdtempSync, openSync, rmSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { exited, spawnTracked, stopChild } from './children.js'
import { procTree } from './proc.js'
import type { RunningPeer } from './types.js'

const usedPorts = new Set<number>()

async function canListen (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = createServer()
    s.once('error', () => resolve(false))
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)))
  })
}

/** A free loopback port in 20000-29999 (below the ephemeral range, so no client socket takes it). */
export async function freePort (): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 10000)
    if (usedPorts.has(port)) continue
    if (await canListen(port)) { usedPorts.add(port); return port }
  }
  throw new Error('no free port in 20000-29999 after 200 tries')
}

async function connects (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port })
    const done = (ok: boolean): void => { clearTimeout(t); s.destroy(); resolve(ok) }
    const t = setTimeout(() => done(false), 500)
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

/** Wait until something accepts on `port`: bounded retries, fails fast if the child exits. */
async function waitListening (name: string, child: ChildProcess, port: number, logFile: string, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs
  for (let i = 0; i < 1000 && Date.now() < end; i++) {
    if (exited(child)) throw new Error(`${name} exited during start (exit ${String(child.exitCode ?? child.signalCode)}); see ${logFile}`)
    if (await connects(port)) return
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`${name}: nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`)
}

export interface Launch {
  /** Names the log file: LOGDIR/peer-NAME.log. */
  readonly name: string
  /** argv prefix: fd limit and pinning (may be empty). */
  readonly prefix: readonly string[]
  readonly logDir: string
  readonly cwd: string
}

/** Start prefix + argv, wait for the port; `cleanup` runs after the process is stopped. */
export async function startProcess (l: Launch, argv: readonly string[], port: number, cleanup?: () => void): Promise<RunningPeer> {
  const logFile = join(l.logDir, `peer-${l.name}.log`)
  const fd = openSync(logFile, 'a')
  let child: ChildProcess
  try {
    child = spawnTracked([...l.prefix, ...argv], { stdio: ['ignore', fd, fd], cwd: l.cwd })
  } finally {
    closeSync(fd)
  }
  const running: RunningPeer = {
    port,
    pid: child.pid,
    tree: () => (child.pid === undefined || exited(child) ? [] : procTree(child.pid)),
    alive: () => !exited(child),
    async stop () {
      await stopChild(child, 10_000)
      cleanup?.()
    }
  }
  try {
    await waitListening(l.name, child, port, logFile)
  } catch (err) {
    await running.stop()
    throw err
  }
  return running
}

/** A private scratch directory under the system temp dir, removed by `cleanup`. */
export function workDir (name: string): { dir: string, cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `sluice-bench-${name.replace(/[^\w-]/g, '_')}-`))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}
