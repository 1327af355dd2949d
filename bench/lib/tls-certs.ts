/**
 * Certificates for the TLS peers (issue 13), made at bench time with the
 * `openssl` CLI into the run's directory (bench/results/ is not committed):
 * an ECDSA P-256 CA, and a P-256 leaf it signs for localhost and
 * 127.0.0.1, as the reference figures used. Valid for two days.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { runCaptured } from './children.js'
import type { TlsFiles } from './types.js'

export const SERVERNAME = 'localhost'

const LEAF_EXTENSIONS = [
  'basicConstraints = critical, CA:FALSE',
  'keyUsage = critical, digitalSignature',
  'extendedKeyUsage = serverAuth',
  `subjectAltName = DNS:${SERVERNAME}, IP:127.0.0.1`,
  ''
].join('\n')

async function openssl (args: readonly string[]): Promise<void> {
  const r = await runCaptured(['openssl', ...args], 30_000)
  if (r.code !== 0) throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed (exit ${String(r.code)}): ${r.stderr.trim()}`)
}

const p256Key = async (file: string): Promise<void> => { await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]) }

/** A CA and a leaf in `dir` (created if missing). */
export async function makeBenchCerts (dir: string): Promise<TlsFiles> {
  mkdirSync(dir, { recursive: true })
  const f = (name: string): string => join(dir, name)
  await p256Key(f('ca.key'))
  await openssl(['req', '-x509', '-new', '-key', f('ca.key'), '-sha256', '-days', '2', '-subj', '/CN=Sluice bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', f('ca.pem')])
  await p256Key(f('proxy.key'))
  await openssl(['req', '-new', '-key', f('proxy.key'), '-subj', `/CN=${SERVERNAME}`, '-out', f('proxy.csr')])
  writeFileSync(f('proxy.ext'), LEAF_EXTENSIONS)
  await openssl(['x509', '-req', '-in', f('proxy.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-sha256', '-extfile', f('proxy.ext'), '-out', f('proxy.pem')])
  return { ca: f('ca.pem'), cert: f('proxy.pem'), key: f('proxy.key'), servername: SERVERNAME }
}

/** loadgen's arguments for a TLS peer: TLS 1.3 to the proxy, its certificate verified. */
export function tlsLoadgenArgs (certs: TlsFiles): string[] {
  return ['--tls', '--tls-ca', certs.ca, '--tls-servername', certs.servername]
}
