/**
 * `GET /config` (issue 15): which files the running configuration was read
 * from, each one's sha256, when it was loaded, and how the last reload
 * attempt ended. Secrets are never shown: no value from the files at all,
 * no digest of a file that holds a secret (config/load.ts LoadedFile), and
 * a rejected reload's problem count only (its lines, in the log, may quote
 * the file).
 */
import type { Config } from '../config/load.js'
import type { ReloadOutcome } from '../config/reloader.js'
import type { WorkerCounts } from '../config/cluster-outcome.js'

/** What happened to the configuration since start: fed by the reloader's onOutcome. */
export class ConfigStatus {
  /** When the running configuration was loaded (start, or the last reload that applied one). */
  loadedAt: Date
  /** The last reload attempt, whatever its result. */
  last: ReloadOutcome | undefined

  constructor (loadedAt = new Date()) {
    this.loadedAt = loadedAt
  }

  record (r: ReloadOutcome): void {
    this.last = r
    if (r.result === 'reloaded') this.loadedAt = new Date(r.at)
  }
}

export interface ConfigView {
  readonly config: string
  /** The hash `sluice listening` and `configuration reloaded` log. */
  readonly hash: string
  readonly loaded_at: string
  readonly files: ReadonlyArray<{ readonly path: string, readonly sha256?: string, readonly secret?: true }>
  readonly last_reload: {
    readonly at: string
    readonly why: string
    readonly result: ReloadOutcome['result']
    readonly hash?: string
    readonly problems?: number
    /** Under --workers: how the workers' reloads in that attempt ended, as its log line says. */
    readonly workers?: WorkerCounts
  } | null
}

export function configView (config: Config, status: ConfigStatus): ConfigView {
  const last = status.last
  return {
    config: config.file,
    hash: config.hash,
    loaded_at: status.loadedAt.toISOString(),
    files: config.loaded,
    last_reload: last === undefined
      ? null
      : {
          at: new Date(last.at).toISOString(),
          why: last.why,
          result: last.result,
          hash: last.hash,
          ...(last.problems === undefined ? {} : { problems: last.problems.length }),
          ...(last.workers === undefined ? {} : { workers: last.workers })
        }
  }
}
