/**
 * Hot reload: on SIGHUP (the caller) or when a watched file changes on disk,
 * read and validate the file; only a valid file replaces the running config.
 * An invalid one is logged with every problem and the old config keeps
 * serving.
 *
 * A change is applied only when it is complete (issue 11, finding 4: a file
 * rewritten in place was loaded half-written, and the valid prefix let
 * anonymous clients through). Validation cannot catch a prefix that is
 * itself valid, so the watcher tells the two ways a file changes apart:
 *
 * - replaced: the path now names a different file (device and inode, after
 *   following symlinks) and no write to it was seen. A rename into place
 *   (editors, config managers, `mv`) and a Kubernetes ConfigMap update (a
 *   symlinked directory swapped by rename) look like this, and the new file
 *   was complete before it got the name: it is loaded at once.
 * - changed in place: the same file with new content (or a write event on
 *   the name, or an empty file). It is loaded only once its content has stayed
 *   the same for `reload_settle`; every further change restarts the wait.
 *
 * fs.watch's 'rename'/'change' event names alone differ between editors and
 * platforms, so they only ever make the watcher more careful: identity and
 * content decide. SIGHUP and reload() load at once: the operator says the
 * file is complete. The directory is watched, not the file, because a
 * rename replaces the file a watch would be attached to, and any event in
 * the directory (a ConfigMap's `..data` swap names no watched file) leads to
 * a look at the watched files.
 */
import { watch, readFileSync, statSync, type FSWatcher } from 'node:fs'
import { createHash } from 'node:crypto'
import { basename, dirname, join } from 'node:path'
import type { Logger } from 'pino'
import { ConfigError, loadConfigOffThread, type Config, type LoadOptions } from './load.js'
import { stopValidator } from './validate-worker.js'
import { DEFAULT_RELOAD_SETTLE_MS } from './schema.js'
import type { ReloadResult } from '../observability/proxy-metrics.js'

export interface ReloaderOptions {
  /** The config file to load. */
  readonly file: string
  /** Passed to every load, e.g. a --parent given on the command line. */
  readonly loadOptions?: LoadOptions
  /** Files whose change triggers a reload (the config, users and groups files). */
  readonly watchFiles?: readonly string[]
  readonly log: Logger
  /** Current config's hash, so an unchanged file is not "reloaded". */
  readonly currentHash: () => string
  readonly apply: (config: Config) => void
  /** Watch the file for changes (default true). */
  readonly watch?: boolean
  /** Coalesce bursts of change events (ms). */
  readonly debounceMs?: number
  /**
   * How long a file changed in place must stay unchanged before it is
   * loaded (ms): the running config's `reload_settle`, asked at each change.
   */
  readonly settleMs?: () => number
  /** How each attempt ended (the metrics' last reload result, issue 15). */
  readonly onResult?: (result: ReloadResult) => void
}

export interface Reloader {
  /** Reload now; resolves true when a new config was applied. */
  reload (why: string): Promise<boolean>
  close (): void
}

/** One file as last seen: `dev:ino:sha256` of what the path names, or 'missing'. */
type Seen = string

/** Each file's identity and content, read now (sync: config files are small, and this runs once per debounced change). */
function look (files: Iterable<string>): Map<string, Seen> {
  const out = new Map<string, Seen>()
  for (const f of files) {
    try {
      const st = statSync(f) // follows symlinks: a swapped ..data link shows as a new inode
      const text = readFileSync(f)
      out.set(f, text.length === 0 ? `${st.dev}:${st.ino}:empty` : `${st.dev}:${st.ino}:${createHash('sha256').update(text).digest('hex')}`)
    } catch {
      out.set(f, 'missing')
    }
  }
  return out
}

const identity = (seen: Seen | undefined): string | undefined => seen?.split(':').slice(0, 2).join(':')

function sameLook (a: ReadonlyMap<string, Seen>, b: ReadonlyMap<string, Seen>): boolean {
  if (a.size !== b.size) return false
  for (const [f, s] of a) if (b.get(f) !== s) return false
  return true
}

export function createReloader (opts: ReloaderOptions): Reloader {
  const watchers: FSWatcher[] = []
  let watched: readonly string[] = opts.watchFiles ?? [opts.file]
  let debounce: NodeJS.Timeout | undefined
  let running: Promise<boolean> = Promise.resolve(false)
  /** What each watched file held when it was last read for a load (or at start). */
  let lastRead = look(watched)
  /** Files a 'change' (write) event named since the last look. */
  const written = new Set<string>()
  /** While a change settles: the timer and what the files held when it was armed. */
  let settle: { timer: NodeJS.Timeout, seen: Map<string, Seen> } | undefined
  let closed = false

  async function doReload (why: string): Promise<boolean> {
    const before = look(watched)
    let next: Config
    try {
      // YAML and schema in a worker thread, the policy compiled in slices:
      // a 20,000-rule reload does not stall open tunnels (issue 11, finding 6).
      next = await loadConfigOffThread(opts.file, opts.loadOptions)
    } catch (err) {
      lastRead = before
      const problems = err instanceof ConfigError ? err.problems : [String(err)]
      opts.log.error({ config: opts.file, why, problems }, 'reload rejected: keeping the running configuration')
      opts.onResult?.('rejected')
      return false
    }
    // Taken before the load: a change racing it is seen as a change, never missed.
    lastRead = before
    if (next.hash === opts.currentHash()) {
      opts.onResult?.('unchanged')
      return false
    }
    opts.apply(next)
    opts.onResult?.('applied')
    // A new set of files (say another users file) needs new watches; the same set keeps its own.
    const same = next.files.length === watched.length && next.files.every(f => watched.includes(f))
    if (opts.watch !== false && !closed && !same) rewatch(next.files)
    return true
  }

  const reloader: Reloader = {
    async reload (why) {
      // Serialise: a reload never races another.
      running = running.then(async () => await doReload(why), async () => await doReload(why))
      return await running
    },
    close () {
      closed = true
      clearTimeout(debounce)
      debounce = undefined
      clearTimeout(settle?.timer)
      settle = undefined
      unwatch()
      stopValidator().catch(() => {})
    }
  }

  const reloadLogged = (why: string): void => {
    reloader.reload(why).catch((err: unknown) => opts.log.error({ err }, 'reload failed'))
  }

  /** (Re)start the settle wait from what the files hold now. */
  function armSettle (now: Map<string, Seen>, changed: readonly string[]): void {
    const ms = opts.settleMs?.() ?? DEFAULT_RELOAD_SETTLE_MS
    if (settle === undefined) {
      opts.log.info({ config: opts.file, files: changed, settle_ms: ms }, 'configuration changed in place: waiting for it to settle')
    }
    clearTimeout(settle?.timer)
    settle = { seen: now, timer: setTimeout(settled, ms) }
  }

  function settled (): void {
    const armed = settle
    if (armed === undefined || closed) return
    const now = look(watched)
    if (!sameLook(now, armed.seen)) {
      // Changed without an event we saw (or one still queued): wait again.
      armSettle(now, [...now.keys()].filter(f => now.get(f) !== armed.seen.get(f)))
      return
    }
    settle = undefined
    reloadLogged('file changed in place (settled)')
  }

  /** After a burst of events: which watched files changed, and how. */
  function examine (): void {
    if (closed) return
    const now = look(watched)
    const replaced: string[] = []
    const inPlace: string[] = []
    for (const f of watched) {
      const was = lastRead.get(f)
      const is = now.get(f)
      if (is === was && !written.has(f)) continue
      const newFile = is !== 'missing' && identity(is) !== identity(was) && !(is?.endsWith(':empty') ?? false)
      if (is !== was && newFile && was !== undefined && !written.has(f)) replaced.push(f)
      else if (is !== was || settle !== undefined) inPlace.push(f)
      // else: a write event that left the content as it was read: nothing to do.
    }
    written.clear()
    if (inPlace.length > 0 || (settle !== undefined && replaced.length > 0)) {
      // A change in place (or a replacement while one settles) waits for stillness.
      armSettle(now, [...inPlace, ...replaced])
    } else if (replaced.length > 0) {
      reloadLogged('file replaced')
    }
  }

  function unwatch (): void {
    for (const w of watchers.splice(0)) w.close()
  }

  function rewatch (files: readonly string[]): void {
    unwatch()
    // A file new to the set (say a users file the new config names) starts from what it holds now.
    for (const f of files) if (!lastRead.has(f)) lastRead.set(f, look([f]).get(f) ?? 'missing')
    watched = files
    const byDir = new Map<string, Set<string>>()
    for (const f of files) {
      const names = byDir.get(dirname(f)) ?? new Set<string>()
      names.add(basename(f))
      byDir.set(dirname(f), names)
    }
    for (const [dir, names] of byDir) {
      const w = watch(dir, (event, changed) => {
        if (event === 'change' && changed !== null && names.has(changed)) written.add(join(dir, changed))
        // At most one look per debounceMs, however busy the directory: a later
        // event does not postpone it (settling is what waits for quiet).
        debounce ??= setTimeout(() => { debounce = undefined; examine() }, opts.debounceMs ?? 100)
      })
      w.on('error', (err) => opts.log.warn({ err, dir }, 'cannot watch config files; SIGHUP still reloads'))
      watchers.push(w)
    }
  }

  if (opts.watch !== false) rewatch(watched)
  return reloader
}
