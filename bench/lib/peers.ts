/**
 * What gets measured. A peer is either `direct` (no proxy: loadgen talks to
 * the origin) or a proxy started fresh on 127.0.0.1:PORT for every
 * repetition, pinned to the proxy CPU, and stopped by PID afterwards.
 * squid, tinyproxy and ats (Apache Traffic Server, in ats.ts) are optional:
 * used only when on PATH and asked for.
 * Sluice's variants (auth, big ACL, a parent hop, workers) are in variants.ts,
 * the HTTPS proxies (TLS from the client, issue 13) in tls-peers.ts.
 */
import { writeFileSync, chownSync } from 'node:fs'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { freePort, startProcess, workDir, type Launch } from './process-peer.js'
import type { Peer, PeerContext } from './types.js'
import { NODE_FLAGS } from '../../src/cli/node-flags.js'

// For bench/run.ts, which imports them from here.
export type { Peer, PeerContext, RunningPeer } from './types.js'

export const direct: Peer = {
  name: 'direct',
  direct: true,
  async start () {
    return { port: undefined, pid: undefined, tree: () => [], alive: () => true, async stop () {} }
  }
}

export function launch (ctx: PeerContext, name: string, prefix: readonly string[] = ctx.prefix): Launch {
  return { name, prefix, logDir: ctx.logDir, cwd: ctx.root }
}

/** `node NODE_FLAGS dist/cli.js --config FILE --listen 127.0.0.1:PORT --log-level warn [extra]`, as npm start runs it. */
export function sluiceArgv (ctx: PeerContext, config: string, port: number, extra: readonly string[] = []): string[] {
  return [process.execPath, ...NODE_FLAGS, join(ctx.root, 'dist', 'cli.js'), '--config', config,
    '--listen', `127.0.0.1:${port}`, '--log-level', 'warn', ...extra]
}

/** The same without --listen: the config's own listeners (--listen would replace them with one plain listener). */
export function sluiceConfigArgv (ctx: PeerContext, config: string, extra: readonly string[] = []): string[] {
  return [process.execPath, ...NODE_FLAGS, join(ctx.root, 'dist', 'cli.js'), '--config', config, '--log-level', 'warn', ...extra]
}

export const sluice: Peer = {
  name: 'sluice',
  direct: false,
  async start (ctx) {
    const port = await freePort()
    return await startProcess(launch(ctx, 'sluice'), sluiceArgv(ctx, join(ctx.root, 'bench', 'policy.yaml'), port), port)
  }
}

/**
 * Bare Node CONNECT proxies (bench/peers/*.mjs, issue 12): Node's own floor
 * per tunnel, on net.Server and on http.Server, with the same Node flags as
 * Sluice. No policy, limits or logs.
 */
function bareNode (name: string, script: string): Peer {
  return {
    name,
    direct: false,
    async start (ctx) {
      const port = await freePort()
      return await startProcess(launch(ctx, name), [process.execPath, ...NODE_FLAGS, join(ctx.root, 'bench', 'peers', script), String(port)], port)
    }
  }
}
export const nodeNet = bareNode('node-net', 'node-net.mjs')
export const nodeHttp = bareNode('node-http', 'node-http.mjs')

/** As root, squid/tinyproxy drop privileges: let their user own `path` (their work dir, a key file). */
export function chownTo (path: string, user: string): void {
  if (userInfo().uid !== 0) return
  try {
    const uid = Number(execFileSync('id', ['-u', user], { encoding: 'utf8', timeout: 5000 }).trim())
    const gid = Number(execFileSync('id', ['-g', user], { encoding: 'utf8', timeout: 5000 }).trim())
    chownSync(path, uid, gid)
  } catch { /* user missing: the proxy will say so in its log */ }
}

export const squidUser = (): string => process.env['SQUID_USER'] ?? 'proxy'

/** DIR/squid.conf: a CONNECT proxy on `portLine` (http_port or https_port …), one process, no cache, no access log. */
export function writeSquidConf (ctx: PeerContext, dir: string, portLine: string): string {
  const o = ctx.origin
  const file = join(dir, 'squid.conf')
  writeFileSync(file, [
    portLine,
    `acl origin_ports port ${o.echo} ${o.sink} ${o.source}`,
    'http_access allow localhost CONNECT origin_ports',
    'http_access deny all',
    'cache deny all', 'cache_mem 0 MB', 'access_log none', 'cache_store_log none',
    `cache_log ${dir}/cache.log`, 'logfile_rotate 0', `pid_filename ${dir}/squid.pid`, `coredump_dir ${dir}`,
    'netdb_filename none', 'pinger_enable off', 'client_db off', 'icp_port 0', 'htcp_port 0',
    'dns_nameservers 127.0.0.1', 'visible_hostname bench-squid', `max_filedescriptors ${2 * ctx.maxTunnels + 1024}`,
    'shutdown_lifetime 0 seconds', ...(userInfo().uid === 0 ? [`cache_effective_user ${squidUser()}`] : []), ''
  ].join('\n'))
  chownTo(dir, squidUser())
  return file
}

/** Squid as a plain CONNECT proxy: foreground, one process, no cache, no access log. */
export const squid: Peer = {
  name: 'squid',
  direct: false,
  async start (ctx) {
    const port = await freePort()
    const { dir, cleanup } = workDir('squid')
    const conf = writeSquidConf(ctx, dir, `http_port 127.0.0.1:${port}`)
    return await startProcess(launch(ctx, 'squid'), ['squid', '-N', '-f', conf], port, cleanup)
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
    return await startProcess(launch(ctx, 'tinyproxy'), ['tinyproxy', '-d', '-c', join(dir, 'tinyproxy.conf')], port, cleanup)
  }
}
