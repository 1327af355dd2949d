/**
 * An HTTPS proxy listener for tests (issue 13): its certificate, key and
 * client CA written as PEM files to a temp dir, and the `listen:` YAML
 * naming them; plus a node:tls client of it that can resume a session.
 */
import { once } from 'node:events'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls'
import { clientCa, makeCert, type TestCert } from './tls.js'
import { within } from './wait.js'

/** The PEM files a TLS listener's config names, and what a client must trust. */
export interface ListenerFiles {
  readonly cert: string
  readonly key: string
  readonly clientCa: string
  /** The CA that signed the listener's certificate (and every other test certificate): a PEM file. */
  readonly caFile: string
  /** The same, as PEM text. */
  readonly ca: string
  readonly server: TestCert
}

/** Write the listener's certificate (SANs localhost, 127.0.0.1, ::1), key, client CA and the test CA into `dir`. */
export async function writeListenerFiles (dir: string): Promise<ListenerFiles> {
  const server = await makeCert()
  const files = {
    cert: join(dir, 'proxy.pem'),
    key: join(dir, 'proxy.key'),
    clientCa: join(dir, 'clients-ca.pem'),
    caFile: join(dir, 'ca.pem')
  }
  await writeFile(files.cert, server.cert)
  await writeFile(files.key, server.key)
  await writeFile(files.clientCa, await clientCa())
  await writeFile(files.caFile, server.ca)
  return { ...files, ca: server.ca, server }
}

/** One `listen:` entry named `name` on 127.0.0.1:0 with `tls:` naming `files`; `tlsExtra` adds lines to `tls:`. */
export function tlsListenYaml (files: Pick<ListenerFiles, 'cert' | 'key'>, opts: { name?: string, tlsExtra?: readonly string[] } = {}): string {
  return [
    'listen:',
    '  - address: 127.0.0.1:0',
    `    name: ${opts.name ?? 'remote'}`,
    '    tls:',
    `      cert_file: ${files.cert}`,
    `      key_file: ${files.key}`,
    ...(opts.tlsExtra ?? []).map(l => `      ${l}`),
    ''
  ].join('\n')
}

/** A TLS client of the proxy and the session ticket it was given. */
export interface TlsClient {
  readonly socket: TLSSocket
  /**
   * The first session (ticket) the server sent, waited for (bounded) if it
   * has not come yet: TLS 1.3 sends it after the handshake, and OpenSSL
   * sends none on a resumed TLS 1.3 connection.
   */
  ticket (): Promise<Buffer>
}

/** Connect to the proxy on `port` trusting `ca`, SNI `localhost` unless told; resolves after the handshake. */
export async function tlsClient (port: number, ca: string, opts: Partial<ConnectionOptions> = {}): Promise<TlsClient> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['http/1.1'], ...opts })
  socket.on('error', () => {})
  // No timer until someone waits: most callers never ask.
  const session = new Promise<Buffer>(resolve => socket.once('session', resolve))
  await within(once(socket, 'secureConnect'), 'TLS handshake with the proxy')
  return { socket, ticket: async () => await within(session, 'a session ticket from the proxy') }
}
