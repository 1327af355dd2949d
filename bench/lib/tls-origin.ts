/**
 * The terminate mode's TLS origin (issue 14): bench/c/origin.c has no TLS
 * server, so HAProxy sits in front of it, in TCP mode with `bind … ssl crt`,
 * one frontend per origin port (echo, sink, source: no SNI inspection, so
 * `direct` pays the same origin work as every peer), one thread, no log,
 * pinned to the load CPU beside origin.c and loadgen. Its certificate, for
 * echo.test, sink.test and source.test, is signed by the run's bench CA:
 * the proxies that re-originate TLS verify it against that CA and the
 * client's SNI. loadgen and the peers see only its ports.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { haproxyTcpHead } from './haproxy-head.js'
import { freePort, startProcess, workDir } from './process-peer.js'
import type { OriginPorts } from './types.js'

export interface TlsOrigin {
  /** The TLS ports, each in front of the plain port of the same kind. */
  readonly ports: OriginPorts
  readonly pid: number | undefined
  stop (): Promise<void>
}

const KINDS = ['echo', 'sink', 'source'] as const

/** HAProxy's config: a TLS frontend per kind on `tls`, each to origin.c's port of that kind on `plain`. */
export function tlsOriginConfig (tls: OriginPorts, plain: OriginPorts, pem: string, dir: string, maxconn: number): string {
  return [
    ...haproxyTcpHead({ threads: 1, maxconn, dir }),
    ...KINDS.flatMap(k => [
      `frontend ${k}`,
      `    bind 127.0.0.1:${tls[k]} ssl crt ${pem}`,
      `    maxconn ${maxconn}`,
      `    default_backend ${k}`,
      `backend ${k}`,
      `    server s0 127.0.0.1:${plain[k]}`
    ]),
    ''
  ].join('\n')
}

/**
 * Start HAProxy with `cert`/`key` in front of `plain`; `prefix` pins it
 * (the load CPU) and raises its fd limit. Ready when the echo port accepts.
 */
export async function startTlsOrigin (prefix: readonly string[], logDir: string, root: string, plain: OriginPorts,
  cert: string, key: string, maxconn: number): Promise<TlsOrigin> {
  const ports = { echo: await freePort(), sink: await freePort(), source: await freePort() }
  const { dir, cleanup } = workDir('tls-origin')
  const pem = join(dir, 'origin.pem') // HAProxy's crt: the certificate and its key in one file
  writeFileSync(pem, readFileSync(cert, 'utf8') + readFileSync(key, 'utf8'), { mode: 0o600 })
  const file = join(dir, 'haproxy.cfg')
  writeFileSync(file, tlsOriginConfig(ports, plain, pem, dir, maxconn))
  const running = await startProcess({ name: 'tls-origin', prefix, logDir, cwd: root }, ['haproxy', '-db', '-f', file], ports.echo, cleanup)
  return { ports, pid: running.pid, stop: async () => await running.stop() }
}
