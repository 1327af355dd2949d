/**
 * Certificates for the TLS peers (issue 13), made at bench time with the
 * `openssl` CLI into the run's directory (bench/results/ is not committed):
 * an ECDSA P-256 CA, and a P-256 leaf it signs for localhost and
 * 127.0.0.1, as the reference figures used. Valid for two days.
 * The terminate mode (issue 14) asks for leaves for the origin's names
 * instead (echo.test, sink.test, source.test): one the proxies show their
 * clients, and one the TLS origin shows the proxies (makeLeaf).
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { runCaptured } from './children.js'
import type { TlsFiles } from './types.js'

export const SERVERNAME = 'localhost'

/** What a leaf is valid for. */
export interface LeafNames {
  readonly dns: readonly string[]
  readonly ips?: readonly string[]
}

const LOCALHOST: LeafNames = { dns: [SERVERNAME], ips: ['127.0.0.1'] }

function leafExtensions (names: LeafNames): string {
  const san = [...names.dns.map(n => `DNS:${n}`), ...(names.ips ?? []).map(a => `IP:${a}`)].join(', ')
  return [
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    'extendedKeyUsage = serverAuth',
    `subjectAltName = ${san}`,
    ''
  ].join('\n')
}

async function openssl (args: readonly string[]): Promise<void> {
  const r = await runCaptured(['openssl', ...args], 30_000)
  if (r.code !== 0) throw new Error(`openssl ${args.slice(0, 2).join(' ')} failed (exit ${String(r.code)}): ${r.stderr.trim()}`)
}

const p256Key = async (file: string): Promise<void> => { await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file]) }

/** DIR/BASE.pem and DIR/BASE.key: a leaf for `names`, signed by DIR/ca.pem (made by makeBenchCerts). */
export async function makeLeaf (dir: string, base: string, names: LeafNames): Promise<{ cert: string, key: string }> {
  const f = (name: string): string => join(dir, name)
  await p256Key(f(`${base}.key`))
  await openssl(['req', '-new', '-key', f(`${base}.key`), '-subj', `/CN=${names.dns[0] ?? SERVERNAME}`, '-out', f(`${base}.csr`)])
  writeFileSync(f(`${base}.ext`), leafExtensions(names))
  await openssl(['x509', '-req', '-in', f(`${base}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '2', '-sha256', '-extfile', f(`${base}.ext`), '-out', f(`${base}.pem`)])
  return { cert: f(`${base}.pem`), key: f(`${base}.key`) }
}

/** A CA and the proxy's leaf (for localhost and 127.0.0.1 unless `names` says otherwise) in `dir` (created if missing). */
export async function makeBenchCerts (dir: string, names: LeafNames = LOCALHOST): Promise<TlsFiles> {
  mkdirSync(dir, { recursive: true })
  const f = (name: string): string => join(dir, name)
  await p256Key(f('ca.key'))
  await openssl(['req', '-x509', '-new', '-key', f('ca.key'), '-sha256', '-days', '2', '-subj', '/CN=Sluice bench CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', f('ca.pem')])
  const leaf = await makeLeaf(dir, 'proxy', names)
  return { ca: f('ca.pem'), ...leaf, servername: names.dns[0] ?? SERVERNAME }
}

/** loadgen's arguments for a TLS peer: TLS 1.3 to the proxy, its certificate verified. */
export function tlsLoadgenArgs (certs: TlsFiles): string[] {
  return ['--tls', '--tls-ca', certs.ca, '--tls-servername', certs.servername]
}
