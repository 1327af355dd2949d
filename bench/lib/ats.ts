/**
 * Apache Traffic Server 9.2 as a CONNECT forward proxy, set up as
 * shared/perf/peers/ats.sh does it: traffic_server alone (no traffic_manager)
 * in the foreground with a private runroot (etc/, log/, run/, cache/ in a work
 * dir), the packaged configs as the base, then forward proxy (no remap), HTTP
 * cache off and no cache storage, transaction logging off, one exec (net)
 * thread (ATS_NET_THREADS to change), accept on the net thread, default buffer
 * sizes. `proxy.config.admin.user_id #-1` keeps it the user that started it
 * (root too), so unlike squid/tinyproxy nothing needs a chown.
 *
 * ats-tls (issue 13) is the same on an `ssl` port: TLS from the client, then
 * CONNECT inside it, with the run's certificate (ssl_multicert.config) and
 * ATS's defaults for TLS (TLS 1.3 on, session tickets on).
 *
 * startAts takes more records and etc/ files for other setups (the
 * terminate mode's ats-terminate, terminate-peers.ts: sni.yaml routes).
 */
import { appendFileSync, cpSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { runCaptured } from './children.js'
import { freePort, startProcess, workDir } from './process-peer.js'
import { launch } from './peers.js'
import type { Peer, PeerContext, RunningPeer, TlsFiles } from './types.js'

const PACKAGED_CONFIG = '/etc/trafficserver'

function runroot (dir: string): string {
  return [
    'prefix: /usr', 'exec_prefix: /usr', 'bindir: /usr/bin', 'sbindir: /usr/sbin',
    `sysconfdir: ${dir}/etc`, `datadir: ${dir}/var`, 'includedir: /usr/include',
    'libdir: /usr/lib/trafficserver', 'libexecdir: /usr/lib/trafficserver/modules',
    `localstatedir: ${dir}/var`, `runtimedir: ${dir}/run`, `logdir: ${dir}/log`, `cachedir: ${dir}/cache`, ''
  ].join('\n')
}

const IP_ALLOW = `ip_allow:
  - apply: in
    ip_addrs: 127.0.0.1
    action: allow
    methods: ALL
  - apply: in
    ip_addrs: 0/0
    action: deny
    methods: ALL
`

/** One records.config line: name (after proxy.config.), type, value. */
export type AtsRecord = readonly [string, 'INT' | 'STRING', string | number]

/** The ssl port's records: where ssl_multicert.config's file names are (the run's TLS directory). */
function tlsRecords (tls: TlsFiles): AtsRecord[] {
  return [
    ['ssl.server.cert.path', 'STRING', dirname(tls.cert)],
    ['ssl.server.private_key.path', 'STRING', dirname(tls.key)]
  ]
}

/** What differs between the ATS peers: TLS on the port, and more records and etc/ files. */
export interface AtsSetup {
  readonly tls?: TlsFiles
  /** Records after the common ones (a later CONFIG line wins). */
  readonly records?: readonly AtsRecord[]
  /** etc/NAME → content, written last. */
  readonly files?: Readonly<Record<string, string>>
}

function records (dir: string, port: number, ctx: PeerContext, setup: AtsSetup): string {
  const o = ctx.origin
  const tls = setup.tls
  const threads = process.env['ATS_NET_THREADS'] ?? '1'
  if (!/^[1-9]\d{0,2}$/.test(threads)) throw new Error(`ATS_NET_THREADS must be 1-999, got '${threads}'`)
  // A held tunnel is two connections (client and origin side); ATS counts
  // both against connections_throttle and stops accepting once open × 1.1
  // reaches it (its accept headroom): 19000 holds ~8,600 tunnels, not 9,000.
  // ATS itself lowers the throttle to its fd limit less 192 when that is lower.
  const throttle = Math.max(19_000, Math.ceil(2.2 * ctx.maxTunnels) + 1000)
  const rec: AtsRecord[] = [
    ['admin.user_id', 'STRING', '#-1'],
    ['http.server_ports', 'STRING', `${port}${tls === undefined ? '' : ':ssl'}:ipv4:ip-in=127.0.0.1`],
    ['http.connect_ports', 'STRING', `${o.echo} ${o.sink} ${o.source}`],
    ['url_remap.remap_required', 'INT', 0],
    ['reverse_proxy.enabled', 'INT', 0],
    ['http.cache.http', 'INT', 0],
    ['cache.ram_cache.size', 'INT', 0],
    ['exec_thread.autoconfig', 'INT', 0],
    ['exec_thread.limit', 'INT', threads],
    ['exec_thread.affinity', 'INT', 0],
    ['accept_threads', 'INT', 0],
    ['task_threads', 'INT', 1],
    ['cache.threads_per_disk', 'INT', 1],
    ['log.logging_enabled', 'INT', 0],
    ['diags.debug.enabled', 'INT', 0],
    ['http.insert_request_via_str', 'INT', 0],
    ['http.insert_response_via_str', 'INT', 0],
    ['http.insert_client_ip', 'INT', 0],
    ['http.insert_squid_x_forwarded_for', 'INT', 0],
    ['http.transaction_no_activity_timeout_in', 'INT', 600],
    ['http.transaction_no_activity_timeout_out', 'INT', 600],
    ['http.transaction_active_timeout_in', 'INT', 0],
    ['http.accept_no_activity_timeout', 'INT', 120],
    ['net.connections_throttle', 'INT', throttle],
    ['crash_log_helper', 'STRING', 'NULL'],
    ['net.max_connections_in', 'INT', Math.max(30_000, throttle)],
    ['net.max_requests_in', 'INT', 0],
    ['dns.nameservers', 'STRING', '127.0.0.1'],
    ['dns.resolv_conf', 'STRING', 'NULL'],
    ['hostdb.host_file.path', 'STRING', '/etc/hosts'],
    ['body_factory.template_sets_dir', 'STRING', `${dir}/etc/body_factory`],
    ['proxy_name', 'STRING', 'bench-ats'],
    ...(tls === undefined ? [] : tlsRecords(tls)),
    ...(setup.records ?? [])
  ]
  return rec.map(([name, type, value]) => `CONFIG proxy.config.${name} ${type} ${value}\n`).join('')
}

/** The private runroot: directories, runroot.yaml, the packaged configs, then ours over them. */
function writeConfig (dir: string, port: number, ctx: PeerContext, setup: AtsSetup): string {
  const tls = setup.tls
  for (const d of ['etc', 'log', 'run', 'cache', 'var']) mkdirSync(join(dir, d), { recursive: true })
  const file = join(dir, 'runroot.yaml')
  writeFileSync(file, runroot(dir))
  cpSync(PACKAGED_CONFIG, join(dir, 'etc'), { recursive: true }) // read only: copied, never changed
  const etc = (name: string, text: string): void => writeFileSync(join(dir, 'etc', name), text)
  etc('storage.config', '') // no cache storage
  etc('remap.config', '') // forward proxy, no remap rules
  etc('plugin.config', '')
  etc('logging.yaml', 'logging:\n  formats: []\n  logs: []\n')
  etc('ip_allow.yaml', IP_ALLOW)
  etc('records.config', records(dir, port, ctx, setup))
  if (tls !== undefined) etc('ssl_multicert.config', `dest_ip=* ssl_cert_name=${basename(tls.cert)} ssl_key_name=${basename(tls.key)}\n`)
  for (const [name, text] of Object.entries(setup.files ?? {})) etc(name, text)
  return file
}

/**
 * ATS binds its event threads itself (hwloc; with affinity 0 to the whole
 * machine), which undoes the taskset of the prefix: put every thread back on
 * the proxy CPU once it listens (the threads exist by then).
 */
async function repin (peer: RunningPeer, cpu: number | undefined): Promise<void> {
  if (cpu === undefined) return
  for (const pid of peer.tree()) {
    const r = await runCaptured(['taskset', '-a', '-pc', String(cpu), String(pid)], 10_000)
    if (r.code !== 0) throw new Error(`ats: could not pin pid ${pid} to CPU ${cpu}: ${r.stderr.trim()}`)
  }
}

/** `withTls`: on an ssl port with the run's certificate (tls-peers.ts makes it ats-tls). */
export function atsPeer (name: string, withTls: boolean): Peer {
  return {
    name,
    direct: false,
    ...(withTls ? { tls: true } : {}),
    async start (ctx) {
      const tls = withTls ? ctx.tls : undefined
      if (withTls && tls === undefined) throw new Error(`${name}: no TLS files in the run`)
      return await startAts(ctx, name, tls === undefined ? {} : { tls })
    }
  }
}

/** traffic_server on a fresh port in a private runroot, pinned to the proxy CPU. */
export async function startAts (ctx: PeerContext, name: string, setup: AtsSetup): Promise<RunningPeer> {
  const port = await freePort()
  const { dir, cleanup } = workDir(name)
  let file: string
  try {
    file = writeConfig(dir, port, ctx, setup)
  } catch (err) {
    cleanup()
    throw err
  }
  // Its own diagnostics (start-up notes, warnings) go to the work dir: keep them with the peer log.
  const keepDiags = (): void => {
    const diags = join(dir, 'log', 'diags.log')
    if (existsSync(diags)) appendFileSync(join(ctx.logDir, `peer-${name}.log`), `--- ${diags}\n${readFileSync(diags, 'utf8')}`)
    cleanup()
  }
  const argv = ['env', `TS_RUNROOT=${file}`, 'traffic_server', `--run-root=${file}`]
  const running = await startProcess(launch(ctx, name), argv, port, keepDiags)
  try {
    await repin(running, ctx.proxyCpu)
  } catch (err) {
    await running.stop()
    throw err
  }
  return running
}

export const ats = atsPeer('ats', false)
