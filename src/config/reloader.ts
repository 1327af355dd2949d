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
import { ConfigError, loadConfig, type Config } from './load.js'

export interface ReloaderOptions {
  readonly file: string
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
  let watcher: FSWatcher | undefined
  let timer: NodeJS.Timeout | undefined
  let running: Promise<boolean> = Promise.resolve(false)

  async function doReload (why: string): Promise<boolean> {
    let next: Config
    try {
      next = await loadConfig(opts.file)
    } catch (err) {
      const problems = err instanceof ConfigError ? err.problems : [String(err)]
      opts.log.error({ config: opts.file, why, problems }, 'reload rejected: keeping the running configuration')
      return false
    }
    if (next.hash === opts.currentHash()) return false
    opts.apply(next)
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
      watcher?.close()
      watcher = undefined
    }
  }

  if (opts.watch !== false) {
    const name = basename(opts.file)
    watcher = watch(dirname(opts.file), (_event, changed) => {
      if (changed !== null && changed !== name) return
      clearTimeout(timer)
      timer = setTimeout(() => {
        reloader.reload('file changed').catch((err: unknown) => opts.log.error({ err }, 'reload failed'))
      }, opts.debounceMs ?? 100)
    })
    watcher.on('error', (err) => opts.log.warn({ err, config: opts.file }, 'cannot watch the config file; SIGHUP still reloads'))
  }
  return reloader
}
