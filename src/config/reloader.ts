/**
 * Hot reload: on SIGHUP (the caller) or when the file changes on disk, read
 * and validate the file; only a valid file replaces the running config.
 * An invalid one is logged with every problem and the old config keeps
 * serving. The directory is watched, not the file, because editors and
 * config managers replace files by rename.
 */
import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import type { Logger } from 'pino'
import { ConfigError, loadConfig, type Config, type LoadOptions } from './load.js'

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
}

export interface Reloader {
  /** Reload now; resolves true when a new config was applied. */
  reload (why: string): Promise<boolean>
  close (): void
}

export function createReloader (opts: ReloaderOptions): Reloader {
  const watchers: FSWatcher[] = []
  let timer: NodeJS.Timeout | undefined
  let running: Promise<boolean> = Promise.resolve(false)

  async function doReload (why: string): Promise<boolean> {
    let next: Config
    try {
      next = await loadConfig(opts.file, opts.loadOptions)
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [String(err)]
      opts.log.error({ config: opts.file, why, problems }, 'reload rejected: keeping the running configuration')
      return false
    }
    if (next.hash === opts.currentHash()) return false
    opts.apply(next)
    if (opts.watch !== false) rewatch(next.files)
    return true
  }

  const reloader: Reloader = {
    async reload (why) {
      // Serialise: a reload never races another.
      running = running.then(async () => await doReload(why), async () => await doReload(why))
      return await running
    },
    close () {
      clearTimeout(timer)
      unwatch()
    }
  }

  function unwatch (): void {
    for (const w of watchers.splice(0)) w.close()
  }

  function rewatch (files: readonly string[]): void {
    unwatch()
    const byDir = new Map<string, Set<string>>()
    for (const f of files) {
      const names = byDir.get(dirname(f)) ?? new Set<string>()
      names.add(basename(f))
      byDir.set(dirname(f), names)
    }
    for (const [dir, names] of byDir) {
      const w = watch(dir, (_event, changed) => {
        if (changed !== null && !names.has(changed)) return
        clearTimeout(timer)
        timer = setTimeout(() => {
          reloader.reload('file changed').catch((err: unknown) => opts.log.error({ err }, 'reload failed'))
        }, opts.debounceMs ?? 100)
      })
      w.on('error', (err) => opts.log.warn({ err, dir }, 'cannot watch config files; SIGHUP still reloads'))
      watchers.push(w)
    }
  }

  if (opts.watch !== false) rewatch(opts.watchFiles ?? [opts.file])
  return reloader
}
