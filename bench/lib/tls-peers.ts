/**
 * HTTPS proxies (issue 13): TLS from the client, then CONNECT inside it.
 * Each gets the run's certificate (tls-certs.ts), is checked with one
 * CONNECT inside TLS before it is measured (a peer that quietly answers in
 * plain text fails loudly instead), and hands loadgen `--tls` with the CA
 * and name to verify.
 *
 * node-tls    bench/peers/node-tls.mjs: a bare tls.createServer CONNECT
 *             proxy, Node's own floor for an HTTPS proxy
 * sluice-tls  Sluice with a TLS listener in its config file; not with
 *             --listen, which would replace it with one plain listener
 * ats-tls     Apache Traffic Server on an `ssl` port (ats.ts)
 * squid-tls   squid's `https_port`; Debian builds squid with GnuTLS,
 *             which (squid 5.7) does not resume sessions
 */
import { copyFileSync } from 'node:fs'
import { join } from 'node:path'
import { atsPeer } from './ats.js'
import { expectReplies } from './connect-check.js'
import { chownTo, launch, sluiceConfigArgv, squidUser, writeSquidConf } from './peers.js'
import { freePort, startProcess, workDir } from './process-peer.js'
import { LOOPBACK_RULE, writeSluiceConfig } from './sluice-config.js'
import { tlsLoadgenArgs } from './tls-certs.js'
import type { Peer, PeerContext, RunningPeer, TlsFiles } from './types.js'
import { NODE_FLAGS } from '../../src/cli/node-flags.js'

function filesOf (ctx: PeerContext, name: string): TlsFiles {
  if (ctx.tls === undefined) throw new Error(`${name}: the run made no TLS files`)
  return ctx.tls
}

/** `peer` as an HTTPS proxy: checked with a CONNECT inside TLS, then loadgen speaks TLS to it. */
function httpsProxy (peer: Peer): Peer {
  return {
    ...peer,
    tls: true,
    async start (ctx) {
      const tls = filesOf(ctx, peer.name)
      const running = await peer.start(ctx)
      try {
        await expectReplies(peer.name, running.port ?? 0, [{ what: 'CONNECT inside TLS', target: `127.0.0.1:${ctx.origin.echo}`, status: 200 }], tls)
      } catch (err) {
        await running.stop()
        throw err
      }
      const ready: RunningPeer = { ...running, loadgenArgs: [...(running.loadgenArgs ?? []), ...tlsLoadgenArgs(tls)] }
      return ready
    }
  }
}

export const nodeTls = httpsProxy({
  name: 'node-tls',
  direct: false,
  async start (ctx) {
    const tls = filesOf(ctx, 'node-tls')
    const port = await freePort()
    const script = join(ctx.root, 'bench', 'peers', 'node-tls.mjs')
    return await startProcess(launch(ctx, 'node-tls'), [process.execPath, ...NODE_FLAGS, script, String(port), tls.cert, tls.key], port)
  }
})

export const sluiceTls = httpsProxy({
  name: 'sluice-tls',
  direct: false,
  async start (ctx) {
    const tls = filesOf(ctx, 'sluice-tls')
    const port = await freePort()
    const { dir, cleanup } = workDir('sluice-tls')
    const listen = [{ address: `127.0.0.1:${port}`, tls: { cert_file: tls.cert, key_file: tls.key } }]
    const config = writeSluiceConfig(ctx.root, dir, { listen, rules: [LOOPBACK_RULE] })
    return await startProcess(launch(ctx, 'sluice-tls'), sluiceConfigArgv(ctx, config), port, cleanup)
  }
})

export const atsTls = httpsProxy(atsPeer('ats-tls', true))

export const squidTls = httpsProxy({
  name: 'squid-tls',
  direct: false,
  async start (ctx) {
    const tls = filesOf(ctx, 'squid-tls')
    const port = await freePort()
    const { dir, cleanup } = workDir('squid-tls')
    // Its own copies, owned by the user squid drops to (as root).
    const cert = join(dir, 'proxy.pem')
    const key = join(dir, 'proxy.key')
    copyFileSync(tls.cert, cert)
    copyFileSync(tls.key, key)
    for (const f of [cert, key]) chownTo(f, squidUser())
    const conf = writeSquidConf(ctx, dir, `https_port 127.0.0.1:${port} tls-cert=${cert} tls-key=${key}`)
    return await startProcess(launch(ctx, 'squid-tls'), ['squid', '-N', '-f', conf], port, cleanup)
  }
})

export const TLS_PEERS: readonly Peer[] = [nodeTls, sluiceTls, atsTls, squidTls]
