/** `--peers` and `--variants` → the peers to run, in order; versions of the external ones. */
import { execFileSync } from 'node:child_process'
import { which } from './proc.js'
import { UsageError, type Mode } from './options.js'
import { direct, nodeHttp, nodeNet, sluice, squid, tinyproxy } from './peers.js'
import type { Peer } from './types.js'
import { ats } from './ats.js'
import { TLS_PEERS } from './tls-peers.js'
import { SNI_PEERS } from './sni-peers.js'
import { TERMINATE_PEERS } from './terminate-peers.js'
import { VARIANT_GROUPS, VARIANT_PEERS } from './variants.js'

const ALL: ReadonlyMap<string, Peer> = new Map([direct, sluice, nodeNet, nodeHttp, squid, tinyproxy, ats, ...TLS_PEERS, ...SNI_PEERS, ...TERMINATE_PEERS, ...VARIANT_PEERS].map(p => [p.name, p]))

interface External {
  /** The command that must be on PATH, and how it tells its version. */
  readonly bin: string
  readonly versionArgs: readonly string[]
  /** The report's name for it. */
  readonly label: string
  /** What its version output must show for this peer to run, and why it is skipped otherwise. */
  readonly needs?: { readonly pattern: RegExp, readonly why: string }
  /** A detail for the report read from the version output (the TLS library). */
  readonly detail?: (versionText: string) => string | undefined
}

const SQUID_TLS = /--with-(openssl|gnutls)\b/

/** The optional C peers. */
const EXTERNAL: ReadonlyMap<string, External> = new Map<string, External>([
  ['squid', { bin: 'squid', versionArgs: ['-v'], label: 'squid' }],
  ['squid-tls', {
    bin: 'squid',
    versionArgs: ['-v'],
    label: 'squid',
    needs: { pattern: SQUID_TLS, why: 'squid built without TLS (no --with-openssl or --with-gnutls in squid -v)' },
    detail: (text) => { const m = SQUID_TLS.exec(text); return m === null ? undefined : `https_port with ${m[1] === 'gnutls' ? 'GnuTLS' : 'OpenSSL'}` }
  }],
  ['tinyproxy', { bin: 'tinyproxy', versionArgs: ['-v'], label: 'tinyproxy' }],
  ['ats', { bin: 'traffic_server', versionArgs: ['--version'], label: 'Apache Traffic Server' }],
  ['ats-tls', { bin: 'traffic_server', versionArgs: ['--version'], label: 'Apache Traffic Server' }],
  ['ats-terminate', { bin: 'traffic_server', versionArgs: ['--version'], label: 'Apache Traffic Server' }],
  ['haproxy-sni', { bin: 'haproxy', versionArgs: ['-v'], label: 'HAProxy' }],
  ['sniproxy', { bin: 'sniproxy', versionArgs: ['-V'], label: 'sniproxy' }]
])

function versionText (ext: External): string | undefined {
  try {
    return execFileSync(ext.bin, ext.versionArgs, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] })
  } catch {
    return undefined
  }
}

/** Why an external peer cannot run here, or undefined when it can. */
function unavailable (ext: External): string | undefined {
  if (which(ext.bin) === undefined) return `${ext.bin} not installed`
  if (ext.needs !== undefined && !ext.needs.pattern.test(versionText(ext) ?? '')) return ext.needs.why
  return undefined
}

/** Why `peer` cannot run in `mode`, or undefined when it can. */
function modeMismatch (peer: Peer, mode: Mode): string | undefined {
  const name = peer.name
  if (mode === 'sni') return peer.sni === true ? undefined : `${name} is not an SNI listener (--sni runs direct, ${SNI_PEERS.map(p => p.name).join(', ')})`
  if (mode === 'terminate') {
    const ok = [...ALL.values()].filter(p => p.terminate === true).map(p => p.name)
    return peer.terminate === true ? undefined : `${name} does not run with --terminate (it runs direct, ${ok.join(', ')})`
  }
  if (peer.sni === true) return `${name} is an SNI listener: run it with --sni`
  if (peer.terminate === true) return `${name} runs with --terminate only`
  return undefined
}

const list = (text: string): string[] => [...new Set(text.split(',').map(s => s.trim()).filter(s => s !== ''))]

/**
 * `--peers direct,sluice,squid` → peers, in that order; `--variants
 * auth,workers` inserts those groups' peers right after `sluice` (which it
 * then requires). Unknown names are an error; squid/tinyproxy/ats whose
 * command is not on PATH (or squid-tls on a squid without TLS) are skipped,
 * noted in `skipped` as "name (why)". With mode `sni` (--sni) only direct
 * and the SNI listeners may be named, and they only then; likewise with
 * `terminate` (--terminate) direct and the peers marked `terminate`.
 */
export function selectPeers (peerList: string, variantList = '', mode: Mode = 'connect'): { peers: Peer[], skipped: string[] } {
  const names = list(peerList)
  const extra: string[] = []
  for (const v of list(variantList)) {
    const group = VARIANT_GROUPS[v]
    if (group === undefined) throw new UsageError(`unknown variant '${v}' (known: ${Object.keys(VARIANT_GROUPS).join(', ')})`)
    extra.push(...group.filter(n => !names.includes(n) && !extra.includes(n)))
  }
  if (extra.length > 0) {
    const at = names.indexOf('sluice')
    if (at < 0) throw new UsageError('--variants are compared with plain sluice: name sluice in --peers too')
    names.splice(at + 1, 0, ...extra)
  }
  const peers: Peer[] = []
  const skipped: string[] = []
  for (const name of names) {
    const peer = ALL.get(name)
    if (peer === undefined) throw new UsageError(`unknown peer '${name}' (known: ${[...ALL.keys()].join(', ')})`)
    // direct runs in every mode; the others speak CONNECT, a bare ClientHello or TLS routed by its SNI.
    const why = peer.direct ? undefined : modeMismatch(peer, mode)
    if (why !== undefined) throw new UsageError(why)
    const ext = EXTERNAL.get(name)
    const missing = ext === undefined ? undefined : unavailable(ext)
    if (missing !== undefined) { skipped.push(`${name} (${missing})`); continue }
    peers.push(peer)
  }
  return { peers, skipped }
}

/** "squid 5.7", "tinyproxy 1.11.1", "Apache Traffic Server 9.2.9" (+ a detail) for the report; undefined for the others or on failure. */
export function externalVersion (name: string): string | undefined {
  const ext = EXTERNAL.get(name)
  const out = ext === undefined ? undefined : versionText(ext)
  if (ext === undefined || out === undefined) return undefined
  const m = /(\d+\.\d+(?:\.\d+)?)/.exec(out)
  if (m === null) return undefined
  const detail = ext.detail?.(out)
  return `${ext.label} ${m[1] ?? ''}${detail === undefined ? '' : ` (${detail})`}`
}
