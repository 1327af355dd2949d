/**
 * What gets measured. A peer is either `direct` (no proxy: loadgen talks to
 * the origin) or a proxy started fresh on 127.0.0.1:PORT for every
 * repetition, pinned to the proxy CPU, and stopped by PID afterwards.
 * squid and tinyproxy are optional: used only when on PATH and asked for.
 */
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync, chownSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { execFileSync, type ChildProcess } from 'node:child_process'
import { exited, spawnTracked, stopChild } from './children.js'
import { procTree, which } from './proc.js'
import type { OriginPorts } from './loadgen.js'
import { UsageError } from './options.js'

export interface PeerContext {
  readonly root: string
  /** argv prefix: fd limit + pin to the proxy CPU (may be empty). */
  readonly prefix: readonly string[]
  readonly logDir: string
  readonly origin: OriginPorts
  /** Largest number of tunnels a peer must hold at once. */
  readonly maxTunnels: number
}

export interface RunningPeer {
  readonly port: number | undefined
  readonly pid: number | undefined
  tree (): number[]
  alive (): boolean
  stop (): Promise<void>
}

export interface Peer {
  readonly name: string
  readonly direct: boolean
  start (ctx: PeerContext): Promise<RunningPeer>
}

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

/** Start argv (prefixed), output to LOGDIR/peer-NAME.log, wait for the port. */
async function startProcess (name: string, ctx: PeerContext, argv: readonly string[], port: number, cleanup?: () => void): Promise<RunningPeer> {
  const logFile = join(ctx.logDir, `peer-${name}.log`)
  const fd = openSync(logFile, 'a')
  let child: ChildProcess
  try {
    child = spawnTracked([...ctx.prefix, ...argv], { stdio: ['ignore', fd, fd], cwd: ctx.root })
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
    await waitListening(name, child, port, logFile)
  } catch (err) {
    await running.stop()
    throw err
  }
  return running
}

export const direct: Peer = {
  name: 'direct',
  direct: true,
  async start () {
    return { port: undefined, pid: undefined, tree: () => [], alive: () => true, async stop () {} }
  }
}

export const sluice: Peer = {
  name: 'sluice',
  direct: false,
  async start (ctx) {
    const port = await freePort()
    const argv = [process.execPath, join(ctx.root, 'dist', 'cli.js'), '--config', join(ctx.root, 'bench', 'policy.yaml'),
      '--listen', `127.0.0.1:${port}`, '--log-level', 'warn']
    return await startProcess('sluice', ctx, argv, port)
  }
}

function workDir (name: string): { dir: string, cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `sluice-bench-${name}-`))
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** As root, squid/tinyproxy drop privileges: let their user write the work dir. */
function chownTo (dir: string, user: string): void {
  if (userInfo().uid !== 0) return
  try {
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8', timeout: 5000 }).trim())
    const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8', timeout: 5000 }).trim())
    chownSync(dir, uid, gid)
  } catch { /* user missing: the proxy will say so in its log */ }
}

/** Squid as a plain CONNECT proxy: foreground, one process, no cache, no access log. */
export const squid: Peer = {
  name: 'squid',
  direct: false,
  async start (ctx) {
    const port = await freePort()
    const { dir, cleanup } = workDir('squid')
    const o = ctx.origin
    const user = process.env['SQUID_USER'] ?? 'proxy'
    writeFileSync(join(dir, 'squid.conf'), [
      `http_port 127.0.0.1:${port}`,
      `acl origin_ports port ${o.echo} ${o.sink} ${o.source}`,
      'http_access allow localhost CONNECT origin_ports',
      'http_access deny all',
      'cache deny all', 'cache_mem 0 MB', 'access_log none', 'cache_store_log none',
      `cache_log ${dir}/cache.log`, 'logfile_rotate 0', `pid_filename ${dir}/squid.pid`, `coredump_dir ${dir}`,
      'netdb_filename none', 'pinger_enable off', 'client_db off', 'icp_port 0', 'htcp_port 0',
      'dns_nameservers 127.0.0.1', 'visible_hostname bench-squid', `max_filedescriptors ${2 * ctx.maxTunnels + 1024}`,
      'shutdown_lifetime 0 seconds', ...(userInfo().uid === 0 ? [`cache_effective_user ${user}`] : []), ''
    ].join('\n'))
    chownTo(dir, user)
    return await startProcess('squid', ctx, ['squid', '-N', '-f', join(dir, 'squid.conf')], port, cleanup)
  }
}

/** tinyproxy: one thread per client, so MaxClients must exceed the hold count. */
export const tinyproxy: Peer = {
  name: 'tinyproxy',
  direct: false,
  async start (ctx) {
    const port = await freePort()
    const { dir, cleanup } = workDir('tinyproxy')
    const o = ctx.origin
    const user = process.env['TINYPROXY_USER'] ?? 'tinyproxy'
    writeFileSync(join(dir, 'tinyproxy.conf'), [
      `Port ${port}`, 'Listen 127.0.0.1', 'Timeout 600', `MaxClients ${ctx.maxTunnels + 1000}`, 'Allow 127.0.0.1',
      `LogFile "${dir}/tinyproxy.log"`, 'LogLevel Critical', `PidFile "${dir}/tinyproxy.pid"`, 'DisableViaHeader Yes',
      `ConnectPort ${o.echo}`, `ConnectPort ${o.sink}`, `ConnectPort ${o.source}`,
      ...(userInfo().uid === 0 ? [`User ${user}`, `Group ${process.env['TINYPROXY_GROUP'] ?? user}`] : []), ''
    ].join('\n'))
    chownTo(dir, user)
    return await startProcess('tinyproxy', ctx, ['tinyproxy', '-d', '-c', join(dir, 'tinyproxy.conf')], port, cleanup)
  }
}

const ALL: Readonly<Record<string, Peer>> = { direct, sluice, squid, tinyproxy }

/**
 * `--peers direct,sluice,squid` → peers, in that order. Unknown names are an
 * error; squid/tinyproxy not on PATH are skipped silently (noted in `skipped`).
 */
export function selectPeers (list: string): { peers: Peer[], skipped: string[] } {
  const peers: Peer[] = []
  const skipped: string[] = []
  for (const name of [...new Set(list.split(',').map(s => s.trim()).filter(s => s !== ''))]) {
    const peer = ALL[name]
    if (peer === undefined) throw new UsageError(`unknown peer '${name}' (known: ${Object.keys(ALL).join(', ')})`)
    if ((name === 'squid' || name === 'tinyproxy') && which(name) === undefined) { skipped.push(name); continue }
    peers.push(peer)
  }
  return { peers, skipped }
}

/** "squid 5.7", "tinyproxy 1.11.1" for the report; undefined for the others or on failure. */
export function externalVersion (name: string): string | undefined {
  if (name !== 'squid' && name !== 'tinyproxy') return undefined
  try {
    const out = execFileSync(name, ['-v'], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] })
    const m = /(\d+\.\d+(?:\.\d+)?)/.exec(out)
    return m === null ? undefined : `${name} ${m[1] ?? ''}`
  } catch {
    return undefined
  }
}
