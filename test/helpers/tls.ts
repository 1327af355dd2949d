/**
 * TLS material generated inside the test run (never committed): a throwaway
 * CA and a leaf certificate it signs, both EC P-256 / SHA-256.
 */
import { generate } from 'selfsigned'

/** PEM key and certificate for a server, and the PEM CA a client must trust. */
export interface TestCert {
  /** Leaf private key (PKCS#8 PEM). */
  key: string
  /** Leaf certificate (PEM), signed by `ca`. */
  cert: string
  /** CA certificate (PEM) to trust, e.g. `tls.connect({ ca })`. */
  ca: string
}

/** Options for {@link makeCert}. */
export interface CertOptions {
  /** DNS subject alternative names (default `['localhost']`). */
  names?: string[]
  /** IP subject alternative names (default `['127.0.0.1', '::1']`). */
  ips?: string[]
}

interface CaPair { key: string, cert: string }

let caPromise: Promise<CaPair> | undefined
const certs = new Map<string, Promise<TestCert>>()

/** One throwaway CA per process. */
function testCa (): Promise<CaPair> {
  caPromise ??= generate([{ name: 'commonName', value: 'Sluice Test CA' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true }
    ]
  }).then((pems) => ({ key: pems.private, cert: pems.cert }))
  caPromise.catch(() => { caPromise = undefined })
  return caPromise
}

/**
 * A server certificate for the given SANs, signed by a per-process test CA.
 * Memoised by options: calls with the same names and IPs share one result.
 */
export async function makeCert (opts?: CertOptions): Promise<TestCert> {
  const names = opts?.names ?? ['localhost']
  const ips = opts?.ips ?? ['127.0.0.1', '::1']
  const cacheKey = JSON.stringify([names, ips])
  let pending = certs.get(cacheKey)
  if (pending === undefined) {
    pending = (async () => {
      const ca = await testCa()
      const pems = await generate([{ name: 'commonName', value: names[0] ?? ips[0] ?? 'localhost' }], {
        keyType: 'ec',
        curve: 'P-256',
        algorithm: 'sha256',
        ca,
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, critical: true },
          { name: 'extKeyUsage', serverAuth: true },
          {
            name: 'subjectAltName',
            altNames: [
              ...names.map((value) => ({ type: 2 as const, value })),
              ...ips.map((ip) => ({ type: 7 as const, ip }))
            ]
          }
        ]
      })
      return { key: pems.private, cert: pems.cert, ca: ca.cert }
    })()
    // A failed generation is not cached, so a later call can retry.
    pending.catch(() => certs.delete(cacheKey))
    certs.set(cacheKey, pending)
  }
  return pending
}

/** Options for {@link makeClientCert}. */
export interface ClientCertOptions {
  /** Subject CN. */
  readonly cn: string
  /** An rfc822Name SAN. */
  readonly email?: string
  /** A URI SAN. */
  readonly uri?: string
  /** Signed by a CA the proxy does not trust (a second throwaway CA). */
  readonly untrusted?: boolean
  /** Valid from two years ago until yesterday. */
  readonly expired?: boolean
}

let otherCa: Promise<CaPair> | undefined

/** The CA that signs client certificates, as `client_ca_file` content (the same per-process test CA). */
export async function clientCa (): Promise<string> {
  return (await testCa()).cert
}

/** A client certificate (extKeyUsage clientAuth) for mutual TLS tests, signed by the test CA unless `untrusted`. */
export async function makeClientCert (opts: ClientCertOptions): Promise<{ key: string, cert: string }> {
  const ca = opts.untrusted === true
    ? await (otherCa ??= makeCa('Untrusted Test CA'))
    : await testCa()
  const altNames = [
    ...(opts.email === undefined ? [] : [{ type: 1 as const, value: opts.email }]),
    ...(opts.uri === undefined ? [] : [{ type: 6 as const, value: opts.uri }])
  ]
  const pems = await leaf(ca, opts.cn, { clientAuth: true }, altNames, opts.expired === true)
  return { key: pems.private, cert: pems.cert }
}

/** A CA of its own (issue 14: Sluice's CA for a terminate listener, beside the origins' test CA). */
export async function makeCa (cn: string): Promise<CaPair> {
  const p = await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [{ name: 'basicConstraints', cA: true, critical: true }, { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true }]
  })
  return { key: p.private, cert: p.cert }
}

/** The per-process test CA itself, to sign more certificates with {@link makeServerCertFrom}. */
export async function testCaPair (): Promise<CaPair> {
  return await testCa()
}

/** A server certificate for `names` signed by `ca`; `expired`: valid from two years ago until yesterday. */
export async function makeServerCertFrom (ca: CaPair, names: string[], opts: { expired?: boolean } = {}): Promise<TestCert> {
  const pems = await leaf(ca, names[0] ?? 'localhost', { serverAuth: true }, names.map((value) => ({ type: 2 as const, value })), opts.expired === true)
  return { key: pems.private, cert: pems.cert, ca: ca.cert }
}

type AltName = { type: 1 | 2 | 6, value: string }

/** A leaf signed by `ca` for `usage`; `expired`: valid from two years ago until yesterday. */
async function leaf (ca: CaPair, cn: string, usage: { serverAuth?: true, clientAuth?: true }, altNames: AltName[], expired: boolean): Promise<{ private: string, cert: string }> {
  const day = 24 * 3600 * 1000
  const now = Date.now()
  return await generate([{ name: 'commonName', value: cn }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    ca,
    ...(expired ? { notBeforeDate: new Date(now - 730 * day), notAfterDate: new Date(now - day) } : {}),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, critical: true },
      { name: 'extKeyUsage', ...usage },
      ...(altNames.length === 0 ? [] : [{ name: 'subjectAltName' as const, altNames }])
    ]
  })
}
