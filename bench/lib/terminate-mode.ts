/**
 * Setting up a terminate run (issue 14, `--terminate`): the bench CA with
 * the proxies' leaf and the TLS origin's leaf, both for echo.test,
 * sink.test and source.test, then HAProxy with TLS in front of the C
 * origin's plain ports (tls-origin.ts), and loadgen's arguments for every
 * run (terminate-peers.ts).
 */
import { join } from 'node:path'
import { which } from './proc.js'
import { makeBenchCerts, makeLeaf } from './tls-certs.js'
import { startTlsOrigin, type TlsOrigin } from './tls-origin.js'
import { TERMINATE_NAMES, terminateLoadgenArgs } from './terminate-peers.js'
import type { OriginPorts, TlsFiles } from './types.js'

export interface TerminateRun {
  /** The CA and the proxies' leaf (what loadgen verifies; what the proxies verify the origin with). */
  readonly tls: TlsFiles
  readonly origin: TlsOrigin
  /** loadgen's arguments for every run. */
  readonly common: readonly string[]
}

/** `prefix` pins the TLS origin to the load CPU; `maxconn`: the most connections it must hold. */
export async function startTerminateRun (runDir: string, root: string, plain: OriginPorts, prefix: readonly string[], maxconn: number,
  log: (s: string) => void): Promise<TerminateRun> {
  if (which('haproxy') === undefined) throw new Error('--terminate needs haproxy for its TLS origin (Debian: apt-get install haproxy)')
  const dir = join(runDir, 'tls')
  const tls = await makeBenchCerts(dir, TERMINATE_NAMES)
  const leaf = await makeLeaf(dir, 'origin', TERMINATE_NAMES)
  log(`TLS: a CA, the proxies' and the origin's certificates for ${TERMINATE_NAMES.dns.join(', ')} (ECDSA P-256) in ${dir}/`)
  const origin = await startTlsOrigin(prefix, runDir, root, plain, leaf.cert, leaf.key, maxconn)
  log(`TLS origin (HAProxy, TCP mode, ssl crt): echo ${origin.ports.echo}, sink ${origin.ports.sink}, source ${origin.ports.source}`)
  return { tls, origin, common: terminateLoadgenArgs(tls.ca) }
}
