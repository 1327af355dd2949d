/**
 * What the reloader (config/reloader.ts) knows of a watched file between
 * looks: its identity (device and inode) and a digest of its content, so
 * that a file replaced by rename, changed in place, or put back as it was
 * is told apart by what it holds, not by the watcher's event.
 */
import { readFileSync, statSync } from 'node:fs'
import { createHash } from 'node:crypto'

/** One file as last seen: `dev:ino:sha256` of what the path names, or 'missing'. */
export type Seen = string

/** What stat says of a file at a look, and whether that is enough to know it is unchanged since. */
export interface Looked { readonly stat: string, readonly seen: Seen, readonly settled: boolean }

/**
 * A file modified this recently may be modified again within the same
 * timestamp (Linux stamps files with a clock that ticks every few ms): its
 * stat cannot vouch for its content, so the next look reads it again, as
 * git does for a "racily clean" file.
 */
const RACY_NS = 50_000_000n

/**
 * The same on a filesystem that keeps whole seconds (ext3, HFS+, some NFS
 * servers) or two (FAT): times that are whole milliseconds are taken as
 * coarse. A fine one lands on a whole millisecond once in a million looks,
 * and then only costs a read.
 */
const RACY_COARSE_NS = 2_100_000_000n

/** How long after its last change a file's stat can vouch for its content. */
export function racyWindow (mtimeNs: bigint, ctimeNs: bigint): bigint {
  return mtimeNs % 1_000_000n === 0n && ctimeNs % 1_000_000n === 0n ? RACY_COARSE_NS : RACY_NS
}

/**
 * Each file's identity and content, read now (sync: config files are small,
 * and this runs once per debounced change). A file whose stat is what the
 * last look saw, and was already old then, is not read and hashed again:
 * for a 20,000-rule file each read and hash held the event loop ~5 ms, and
 * a reload looked twice (issue 15).
 */
export function look (files: Iterable<string>, cache?: Map<string, Looked>): Map<string, Seen> {
  const out = new Map<string, Seen>()
  for (const f of files) {
    try {
      const st = statSync(f, { bigint: true }) // follows symlinks: a swapped ..data link shows as a new inode
      const stat = `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`
      const before = cache?.get(f)
      if (before !== undefined && before.settled && before.stat === stat) {
        out.set(f, before.seen)
        continue
      }
      const text = readFileSync(f)
      const seen = text.length === 0 ? `${st.dev}:${st.ino}:empty` : `${st.dev}:${st.ino}:${createHash('sha256').update(text).digest('hex')}`
      out.set(f, seen)
      const changed = st.mtimeNs > st.ctimeNs ? st.mtimeNs : st.ctimeNs
      cache?.set(f, { stat, seen, settled: BigInt(Date.now()) * 1_000_000n - changed > racyWindow(st.mtimeNs, st.ctimeNs) })
    } catch {
      out.set(f, 'missing')
      cache?.delete(f)
    }
  }
  return out
}

export const identity = (seen: Seen | undefined): string | undefined => seen?.split(':').slice(0, 2).join(':')

export function sameLook (a: ReadonlyMap<string, Seen>, b: ReadonlyMap<string, Seen>, part: (s: Seen | undefined) => string | undefined = (s) => s): boolean {
  if (a.size !== b.size) return false
  for (const [f, s] of a) if (part(b.get(f)) !== part(s)) return false
  return true
}

/** What a file holds, whichever inode holds it: the same bytes renamed into place again are not new. */
export const content = (seen: Seen | undefined): string | undefined => seen?.split(':').slice(2).join(':') ?? seen
