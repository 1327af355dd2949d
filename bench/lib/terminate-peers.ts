/**
 * The terminate mode (issue 14, `--terminate`): TLS terminated by the
 * peer and opened anew to the origin, no CONNECT. loadgen (`--tls-sni`)
 * does a real TLS 1.3 handshake per connection whose SNI, echo.test,
 * sink.test or source.test, picks the origin port; the origin is HAProxy
 * with TLS in front of origin.c (tls-origin.ts), whose certificate for
 * those names the run's bench CA signed. Every peer's table is the same,
 * names → 127.0.0.1:PORT of the TLS origin (IP literals: no DNS), and every
 * peer verifies the origin's certificate against the bench CA for the
 * client's SNI. One thread each, no access log.
 *
 * direct            (peers.ts) loadgen's TLS straight to the TLS origin
 * sluice-terminate  a `kind: terminate` listener: `tls` = the proxy's leaf
 *                   for the three names, `upstream_tls.ca_file` = the
 *                   bench CA, `map` = the table; the policy allows
 *                   127.0.0.0/8 under `ips`
 * sluice-sni        (sni-peers.ts) Sluice's own passthrough of the same
 *                   end-to-end TLS: the reference when ATS cannot run
 * ats-terminate     ATS 9.2 with sni.yaml `partial_blind_route` per name
 *                   (terminates, re-encrypts to the upstream: the same
 *                   work as Sluice's; `forward_route` would forward
 *                   plaintext), `client_sni_policy: server_name` (the
 *                   client's SNI upstream, not the route's IP), the
 *                   proxy's leaf in ssl_multicert.config, and the upstream
 *                   verified: `ssl.client.CA.cert.*` = the bench CA,
 *                   `ssl.client.verify.server.policy ENFORCED`,
 *                   `…properties ALL` (signature and name)
 */
import { basename, dirname } from 'node:path'
import { startAts, type AtsRecord } from './ats.js'
import { launch, sluiceConfigArgv } from './peers.js'
import { freePort, startProcess, workDir } from './process-peer.js'
import { LOOPBACK_RULE, writeSluiceConfig, type Listener } from './sluice-config.js'
import { SNI_NAMES, sniRoutes } from './sni-peers.js'
import type { LeafNames } from './tls-certs.js'
import type { OriginPorts, Peer, PeerContext, TlsFiles } from './types.js'

/** The proxy's and the TLS origin's certificates are for these names. */
export const TERMINATE_NAMES: LeafNames = { dns: [SNI_NAMES.echo, SNI_NAMES.sink, SNI_NAMES.source] }

/** loadgen's arguments for every run of the terminate mode: a handshake per connection, SNI by origin port, verified. */
export function terminateLoadgenArgs (ca: string): string[] {
  return ['--tls-sni', SNI_NAMES.echo, '--sni-sink', SNI_NAMES.sink, '--sni-source', SNI_NAMES.source, '--tls-ca', ca]
}

function filesOf (ctx: PeerContext, name: string): TlsFiles {
  if (ctx.tls === undefined) throw new Error(`${name}: the run made no TLS files`)
  return ctx.tls
}

/** sluice-terminate's one listener. */
export function terminateListener (port: number, origin: OriginPorts, tls: TlsFiles): Listener {
  return {
    address: `127.0.0.1:${port}`,
    kind: 'terminate',
    tls: { cert_file: tls.cert, key_file: tls.key },
    upstream_tls: { ca_file: tls.ca },
    target_port: origin.echo,
    map: Object.fromEntries(sniRoutes(origin))
  }
}

export const sluiceTerminate: Peer = {
  name: 'sluice-terminate',
  direct: false,
  terminate: true,
  async start (ctx) {
    const tls = filesOf(ctx, 'sluice-terminate')
    const port = await freePort()
    const { dir, cleanup } = workDir('sluice-terminate')
    const config = writeSluiceConfig(ctx.root, dir, { listen: [terminateListener(port, ctx.origin, tls)], rules: [LOOPBACK_RULE] })
    return await startProcess(launch(ctx, 'sluice-terminate'), sluiceConfigArgv(ctx, config), port, cleanup)
  }
}

/** ATS's sni.yaml: a partial_blind_route per name, the client's SNI sent upstream. */
export function atsSniYaml (routes: ReadonlyArray<readonly [string, string]>): string {
  return ['sni:', ...routes.flatMap(([name, addr]) => [
    `  - fqdn: ${name}`,
    `    partial_blind_route: ${addr}`,
    '    client_sni_policy: server_name'
  ]), ''].join('\n')
}

/** The upstream leg's records: verify the origin against the bench CA, signature and name. */
export function atsUpstreamRecords (ca: string): AtsRecord[] {
  return [
    ['ssl.client.CA.cert.path', 'STRING', dirname(ca)],
    ['ssl.client.CA.cert.filename', 'STRING', basename(ca)],
    ['ssl.client.verify.server.policy', 'STRING', 'ENFORCED'],
    ['ssl.client.verify.server.properties', 'STRING', 'ALL']
  ]
}

export const atsTerminate: Peer = {
  name: 'ats-terminate',
  direct: false,
  terminate: true,
  async start (ctx) {
    const tls = filesOf(ctx, 'ats-terminate')
    return await startAts(ctx, 'ats-terminate', { tls, records: atsUpstreamRecords(tls.ca), files: { 'sni.yaml': atsSniYaml(sniRoutes(ctx.origin)) } })
  }
}

/** The terminate mode's peers besides direct (sluice-sni is also an SNI-mode peer). */
export const TERMINATE_PEERS: readonly Peer[] = [sluiceTerminate, atsTerminate]
