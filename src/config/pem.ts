/**
 * Checks on PEM files read at load (issues 13, 14), so a bad bundle is a
 * refused config rather than a silently empty trust store.
 */
import { X509Certificate } from 'node:crypto'

/**
 * createSecureContext takes a file without a certificate in it silently:
 * every block must parse. OpenSSL reads a block only when its BEGIN and END
 * lines stand alone, and stops at one that does not: files joined without a
 * newline between them (`-----END CERTIFICATE----------BEGIN …`) would
 * silently trust no CA from there on. Pushes a problem line; true if usable.
 */
export function checkCaBundle (ca: string, where: string, problems: string[]): boolean {
  const begins = ca.split('-----BEGIN CERTIFICATE-----').length - 1
  const blocks = ca.match(/^-----BEGIN CERTIFICATE-----\r?\n[\s\S]*?\n-----END CERTIFICATE-----[ \t\r]*$/gm) ?? []
  try {
    if (begins === 0) throw new Error('no PEM certificate in it')
    if (blocks.length !== begins) throw new Error('a BEGIN or END CERTIFICATE line does not stand on a line of its own (files joined without a newline?)')
    for (const b of blocks) new X509Certificate(b) // eslint-disable-line no-new
    return true
  } catch (err) {
    problems.push(`${where}: not a usable CA bundle: ${(err as Error).message}`)
    return false
  }
}
