/**
 * SNI passthrough listeners (issue 14, `--sni`): no CONNECT; loadgen sends a
 * TLS 1.3 ClientHello whose server_name picks the origin port (echo.test,
 * sink.test, source.test), the origin (`--tls-hello`) answers it with one
 * record, and the bytes after it are relayed as in the CONNECT mode. Every
 * peer gets the same fixed table, names → 127.0.0.1:PORT (IP literals: no
 * DNS anywhere), no fallback for other names, no access log, one thread.
 *
 * direct       (peers.ts) the same hello straight to the origin
 * sluice-sni   a `kind: sni` listener whose `map` is the table; the policy
 *              allows 127.0.0.0/8 by address (a mapped name is judged as
 *              its target)
 * node-sni     bench/peers/node-sni.mjs: reads the hello, dials, replays,
 *              pipes; Node's own floor per passthrough connection
 * haproxy-sni  HAProxy in TCP mode: `inspect-delay 5s`, accept once
 *              `req.ssl_hello_type 1`, one `use_backend` per name, one
 *              thread, no log, no default backend
 * sniproxy     sniproxy 0.6: one `tls` listener, a table of anchored names,
 *              resolver 127.0.0.1, no fallback, no access log
 *
 * sluice-sni also runs in the terminate mode (terminate-peers.ts), as
 * Sluice's own passthrough of real end-to-end TLS.
 */
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { haproxyTcpHead } from './haproxy-head.js'
import { launch, sluiceConfigArgv } from './peers.js'
import { freePort, startProcess, workDir } from './process-peer.js'
import { LOOPBACK_RULE, writeSluiceConfig } from './sluice-config.js'
import type { OriginPorts, Peer } from './types.js'
import { NODE_FLAGS } from '../../src/cli/node-flags.js'

/** The server_names loadgen sends (its defaults for `--sni echo.test`), by origin port. */
export const SNI_NAMES = { echo: 'echo.test', sink: 'sink.test', source: 'source.test' } as const

/** loadgen's arguments for the SNI mode (before any split or pad). */
export const SNI_LOADGEN_ARGS: readonly string[] = ['--sni', SNI_NAMES.echo, '--sni-sink', SNI_NAMES.sink, '--sni-source', SNI_NAMES.source]

/** name → 127.0.0.1:PORT for the origin's three ports. */
export function sniRoutes (o: OriginPorts): Array<[string, string]> {
  return [[SNI_NAMES.echo, `127.0.0.1:${o.echo}`], [SNI_NAMES.sink, `127.0.0.1:${o.sink}`], [SNI_NAMES.source, `127.0.0.1:${o.source}`]]
}

/** HAProxy's config: TCP mode, one thread, no log, a backend per name. */
export function haproxyConfig (port: number, dir: string, routes: ReadonlyArray<readonly [string, string]>, maxconn: number): string {
  return [
    ...haproxyTcpHead({ threads: process.env['HAPROXY_THREADS'] ?? '1', maxconn, dir }),
    'frontend sni',
    `    bind 127.0.0.1:${port}`,
    `    maxconn ${maxconn}`,
    // Wait (at most 5 s) until the buffer holds a whole ClientHello; no default_backend: an unknown name is not routed.
    '    tcp-request inspect-delay 5s',
    '    tcp-request content accept if { req.ssl_hello_type 1 }',
    ...routes.map(([name], i) => `    use_backend be${i} if { req.ssl_sni -i ${name} }`),
    ...routes.flatMap(([, addr], i) => [`backend be${i}`, `    server s0 ${addr}`]),
    ''
  ].join('\n')
}

/** sniproxy's config: one tls listener and its table (patterns are PCRE, so anchored, dots escaped). */
export function sniproxyConfig (port: number, dir: string, routes: ReadonlyArray<readonly [string, string]>): string {
  return [
    `user ${process.env['SNIPROXY_USER'] ?? 'nobody'}`,
    `pidfile ${dir}/sniproxy.pid`,
    'resolver {', '    nameserver 127.0.0.1', '    mode ipv4_only', '}',
    'error_log {', `    filename ${dir}/error.log`, '    priority notice', '}',
    `listener 127.0.0.1:${port} {`, '    protocol tls', '    table bench', '}',
    'table bench {',
    // The config reader takes `\\` for one backslash: the pattern is ^echo\.test$.
    ...routes.map(([name, addr]) => `    ^${name.replace(/\./g, '\\\\.')}$ ${addr}`),
    '}',
    ''
  ].join('\n')
}

export const sluiceSni: Peer = {
  name: 'sluice-sni',
  direct: false,
  sni: true,
  terminate: true,
  async start (ctx) {
    const port = await freePort()
    const { dir, cleanup } = workDir('sluice-sni')
    const listen = [{ address: `127.0.0.1:${port}`, kind: 'sni' as const, target_port: ctx.origin.echo, map: Object.fromEntries(sniRoutes(ctx.origin)) }]
    const config = writeSluiceConfig(ctx.root, dir, { listen, rules: [LOOPBACK_RULE] })
    return await startProcess(launch(ctx, 'sluice-sni'), sluiceConfigArgv(ctx, config), port, cleanup)
  }
}

export const nodeSni: Peer = {
  name: 'node-sni',
  direct: false,
  sni: true,
  async start (ctx) {
    const port = await freePort()
    const script = join(ctx.root, 'bench', 'peers', 'node-sni.mjs')
    const routes = sniRoutes(ctx.origin).map(([n, a]) => `${n}=${a}`)
    return await startProcess(launch(ctx, 'node-sni'), [process.execPath, ...NODE_FLAGS, script, String(port), ...routes], port)
  }
}

export const haproxySni: Peer = {
  name: 'haproxy-sni',
  direct: false,
  sni: true,
  async start (ctx) {
    const port = await freePort()
    const { dir, cleanup } = workDir('haproxy-sni')
    const file = join(dir, 'haproxy.cfg')
    // 2 × maxconn + a few descriptors must fit the 20,000 this machine allows (haproxy refuses to start otherwise).
    writeFileSync(file, haproxyConfig(port, dir, sniRoutes(ctx.origin), ctx.maxTunnels + 500))
    return await startProcess(launch(ctx, 'haproxy-sni'), ['haproxy', '-db', '-f', file], port, cleanup)
  }
}

export const sniproxy: Peer = {
  name: 'sniproxy',
  direct: false,
  sni: true,
  async start (ctx) {
    const port = await freePort()
    const { dir, cleanup } = workDir('sniproxy')
    const file = join(dir, 'sniproxy.conf')
    writeFileSync(file, sniproxyConfig(port, dir, sniRoutes(ctx.origin)))
    chmodSync(dir, 0o777) // as root it drops to nobody, which writes its error log here
    return await startProcess(launch(ctx, 'sniproxy'), ['sniproxy', '-f', '-c', file], port, cleanup)
  }
}

/** The SNI-mode peers besides direct (the terminate mode's are in terminate-peers.ts). */
export const SNI_PEERS: readonly Peer[] = [sluiceSni, nodeSni, haproxySni, sniproxy]
