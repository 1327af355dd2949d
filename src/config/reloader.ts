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
import { watch, type FSWatcher } from 'node:fs'
import { content, identity, look, sameLook, type Looked, type Seen } from './file-look.js'
import { basename, dirname, join } from 'node:path'
import type { Logger } from 'pino'
import { ConfigError, loadConfigOffThread, type Config, type LoadOptions } from './load.js'
import { stopValidator, warmValidator, WARM_RULES } from './validate-worker.js'
import { DEFAULT_RELOAD_SETTLE_MS } from './schema.js'
import { summarise, type WorkerCounts, type WorkersHeard, type WorkersSummary } from './cluster-outcome.js'

export interface ReloaderOptions {
  /** The config file to load. */
  readonly file: string
  /** Passed to every load, e.g. a --parent given on the command line. */
  readonly loadOptions?: LoadOptions
  /** Files whose change triggers a reload (the config, users and groups files). */
  readonly watchFiles?: readonly string[]
  readonly log: Logger
  /** Rules in the running policy: from WARM_RULES up, the validation worker starts now, not at the first reload. */
  readonly rules?: number
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
  /** Told how every attempt ended, after its log line. */
  readonly onOutcome?: (o: ReloadOutcome) => void
  /**
   * A --workers worker's: its lines go at debug, for the primary logs the
   * cluster's one line per attempt (issue 15).
   */
  readonly quiet?: boolean
  /**
   * A --workers primary's (cli/cluster-reload.ts): started as each attempt
   * starts, it has every worker reload too and resolves (never rejects, within
   * its own time bound) with their answers. The attempt's one line waits for
   * it and counts them; it is a warning when a worker ends on another hash.
   * A primary has no proxy whose apply logs `configuration reloaded`, so with
   * this the reloader logs that line too.
   */
  readonly workers?: (why: string) => Promise<WorkersHeard>
}

/** How a reload attempt ended (issue 15): one log line each, and what /config and the metrics show. */
export interface ReloadOutcome {
  readonly result: 'reloaded' | 'unchanged' | 'rejected'
  /** When it ended (ms since the epoch). */
  readonly at: number
  readonly why: string
  /** The running config's hash after the attempt, and before it when it changed. */
  readonly hash: string
  readonly previousHash?: string
  readonly problems?: readonly string[]
  /** Under --workers, the primary's: how the workers' reloads ended. */
  readonly workers?: WorkerCounts
}

export interface Reloader {
  /** Reload now; resolves true when a new config was applied. */
  reload (why: string): Promise<boolean>
  /** Reload now; resolves with how the attempt ended (a --workers worker answers the primary with it). */
  attempt (why: string): Promise<ReloadOutcome>
  close (): void
}

export function createReloader (opts: ReloaderOptions): Reloader {
  if ((opts.rules ?? 0) >= WARM_RULES) warmValidator()
  const watchers: FSWatcher[] = []
  let watched: readonly string[] = opts.watchFiles ?? [opts.file]
  let debounce: NodeJS.Timeout | undefined
  let running: Promise<ReloadOutcome | undefined> = Promise.resolve(undefined)
  /** The last look at each watched file (look()). */
  const looked = new Map<string, Looked>()
  /** What each watched file held when it was last read for a load (or at start). */
  let lastRead = look(watched, looked)
  /** Files a 'change' (write) event named since the last look. */
  const written = new Set<string>()
  /** While a change settles: the timer and what the files held when it was armed. */
  let settle: { timer: NodeJS.Timeout, seen: Map<string, Seen> } | undefined
  let closed = false
  /** What the files held at the last attempt: the watcher does not try the same content twice. */
  let lastTried: Map<string, Seen> | undefined

  /** The attempt's one line, then onOutcome; under --workers, once the workers have answered. */
  async function end (o: Omit<ReloadOutcome, 'at' | 'workers'>, heard?: Promise<WorkersHeard>): Promise<ReloadOutcome> {
    const summary = heard === undefined ? undefined : summarise(await heard.catch(() => ({ answers: [], silent: [] })), o.hash)
    const done: ReloadOutcome = { ...o, at: Date.now(), ...(summary === undefined ? {} : { workers: summary.counts }) }
    line(done, summary)
    opts.onOutcome?.(done)
    return done
  }

  function line (o: ReloadOutcome, summary: WorkersSummary | undefined): void {
    const mixed = summary !== undefined && summary.disagree.length > 0
    const level = opts.quiet === true ? 'debug' : o.result === 'rejected' ? 'error' : mixed ? 'warn' : 'info'
    const fields = {
      config: opts.file,
      why: o.why,
      hash: o.hash,
      ...(summary === undefined ? {} : { workers: summary.counts }),
      ...(mixed ? { disagree: summary.disagree } : {})
    }
    if (o.result === 'rejected') opts.log[level]({ ...fields, problems: o.problems }, 'reload rejected: keeping the running configuration')
    else if (o.result === 'unchanged') opts.log[level](fields, 'configuration unchanged')
    else if (opts.workers !== undefined) opts.log[level]({ ...fields, previous_hash: o.previousHash }, 'configuration reloaded')
  }

  /**
   * One attempt, one line (issue 15): `configuration reloaded` (the proxy's
   * apply logs it, with the old and new hash), `configuration unchanged`, or
   * `reload rejected`; under --workers, the primary's for the cluster
   * (`workers`). A watcher event about content already tried (an editor's
   * second event for one save) is no attempt at all; SIGHUP always is.
   */
  async function doReload (why: string, fromWatcher = false): Promise<ReloadOutcome | undefined> {
    const before = look(watched, looked)
    if (fromWatcher && lastTried !== undefined && sameLook(before, lastTried, content)) {
      lastRead = before
      return undefined
    }
    lastTried = before
    // Under --workers the workers load alongside this load, not after it.
    const heard = opts.workers?.(why)
    let next: Config
    try {
      // YAML, schema, a trial compile and the index in a worker thread, each rule compiled at first use:
      // a 20,000-rule reload does not stall open tunnels (issue 11, finding 6).
      next = await loadConfigOffThread(opts.file, opts.loadOptions)
    } catch (err) {
      lastRead = before
      const problems = err instanceof ConfigError ? err.problems : [String(err)]
      return await end({ result: 'rejected', why, hash: opts.currentHash(), problems }, heard)
    }
    // Taken before the load: a change racing it is seen as a change, never missed.
    lastRead = before
    const previousHash = opts.currentHash()
    if (next.hash === previousHash) return await end({ result: 'unchanged', why, hash: previousHash }, heard)
    opts.apply(next)
    // A new set of files (say another users file) needs new watches; the same set keeps its own.
    const same = next.files.length === watched.length && next.files.every(f => watched.includes(f))
    if (opts.watch !== false && !closed && !same) rewatch(next.files)
    return await end({ result: 'reloaded', why, hash: next.hash, previousHash }, heard)
  }

  /** Serialise: a reload never races another. */
  async function queue (why: string, fromWatcher: boolean): Promise<ReloadOutcome | undefined> {
    const attempt = running.then(async () => await doReload(why, fromWatcher), async () => await doReload(why, fromWatcher))
    running = attempt
    return await attempt
  }

  /** Not from the watcher, so always an attempt. */
  async function attempt (why: string): Promise<ReloadOutcome> {
    const o = await queue(why, false)
    if (o === undefined) throw new Error('reload: an attempt without an outcome')
    return o
  }

  const reloader: Reloader = {
    async reload (why) { return (await attempt(why)).result === 'reloaded' },
    attempt,
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
    queue(why, true).catch((err: unknown) => opts.log.error({ err }, 'reload failed'))
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
    const now = look(watched, looked)
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
    const now = look(watched, looked)
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
    for (const f of files) if (!lastRead.has(f)) lastRead.set(f, look([f], looked).get(f) ?? 'missing')
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
