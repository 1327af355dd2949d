/** `--peers` and `--variants` → the peers to run, in order; versions of the external ones. */
import { execFileSync } from 'node:child_process'
import { which } from './proc.js'
import { UsageError } from './options.js'
import { direct, nodeHttp, nodeNet, sluice, squid, tinyproxy } from './peers.js'
import type { Peer } from './types.js'
import { ats } from './ats.js'
import { VARIANT_GROUPS, VARIANT_PEERS } from './variants.js'

const ALL: ReadonlyMap<string, Peer> = new Map([direct, sluice, nodeNet, nodeHttp, squid, tinyproxy, ats, ...VARIANT_PEERS].map(p => [p.name, p]))

/** The optional C peers: the command that must be on PATH, how it tells its version, the report's name for it. */
const EXTERNAL: ReadonlyMap<string, { readonly bin: string, readonly versionArgs: readonly string[], readonly label: string }> = new Map([
  ['squid', { bin: 'squid', versionArgs: ['-v'], label: 'squid' }],
  ['tinyproxy', { bin: 'tinyproxy', versionArgs: ['-v'], label: 'tinyproxy' }],
  ['ats', { bin: 'traffic_server', versionArgs: ['--version'], label: 'Apache Traffic Server' }]
])

const list = (text: string): string[] => [...new Set(text.split(',').map(s => s.trim()).filter(s => s !== ''))]

/**
 * `--peers direct,sluice,squid` → peers, in that order; `--variants
 * auth,workers` inserts those groups' peers right after `sluice` (which it
 * then requires). Unknown names are an error; squid/tinyproxy/ats whose
 * command is not on PATH are skipped (noted in `skipped`).
 */
export function selectPeers (peerList: string, variantList = ''): { peers: Peer[], skipped: string[] } {
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
    const bin = EXTERNAL.get(name)?.bin
    if (bin !== undefined && which(bin) === undefined) { skipped.push(name); continue }
    peers.push(peer)
  }
  return { peers, skipped }
}

/** "squid 5.7", "tinyproxy 1.11.1", "Apache Traffic Server 9.2.9" for the report; undefined for the others or on failure. */
export function externalVersion (name: string): string | undefined {
  const ext = EXTERNAL.get(name)
  if (ext === undefined) return undefined
  try {
    const out = execFileSync(ext.bin, ext.versionArgs, { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'pipe'] })
    const m = /(\d+\.\d+(?:\.\d+)?)/.exec(out)
    return m === null ? undefined : `${ext.label} ${m[1] ?? ''}`
  } catch {
    return undefined
  }
}
