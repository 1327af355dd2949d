/** `sluice serve`: load, listen, reload on SIGHUP / file change, drain on SIGTERM/SIGINT. */
import type { LogLevel } from '../observability/log.js'
import { createLogger } from '../observability/log.js'
import { loadConfig } from '../config/load.js'
import { createReloader, type Reloader } from '../config/reloader.js'
import { createProxy } from '../server/proxy.js'

export interface ServeOptions {
  readonly config?: string
  readonly listen?: { host: string, port: number }
  readonly parent?: string
  readonly logLevel: LogLevel
  readonly pretty: boolean
}

export async function serve (opts: ServeOptions): Promise<number> {
  const loadOptions = opts.parent === undefined ? {} : { parentUrl: opts.parent }
  const config = await loadConfig(opts.config, loadOptions)
  const logger = createLogger({ level: opts.logLevel, pretty: opts.pretty })
  const proxy = createProxy({ config, logger, ...(opts.listen === undefined ? {} : { listen: [opts.listen] }) })
  let current = config
  let reloader: Reloader | undefined
  let stopping = false

  return await new Promise<number>((resolve) => {
    const onHup = (): void => {
      reloader?.reload('SIGHUP').catch((err: unknown) => logger.error({ err }, 'reload failed'))
    }
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now')
        process.exit(1)
      }
      stopping = true
      logger.info({ signal }, 'signal received: graceful shutdown')
      reloader?.close()
      process.off('SIGHUP', onHup)
      proxy.close().then(() => resolve(0), (err: unknown) => { logger.error({ err }, 'shutdown failed'); resolve(1) })
    }
    // Handlers go in before listening: a supervisor may signal as soon as
    // the port is open, and Node's default action would kill us mid-start.
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
    process.on('SIGHUP', onHup)

    proxy.listen().then(() => {
      if (stopping) return
      reloader = createReloader({
        file: config.file,
        loadOptions,
        watchFiles: config.files,
        log: logger,
        currentHash: () => current.hash,
        apply: (next) => { current = next; proxy.reload(next) }
      })
    }, (err: unknown) => {
      logger.fatal({ err }, 'cannot listen')
      resolve(1)
    })
  })
}
