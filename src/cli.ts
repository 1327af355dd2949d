#!/usr/bin/env node
/**
 * The `sluice` binary: argv, config, start, signals. No proxy logic here.
 */
import { readFileSync } from 'node:fs'
import { parseCli, UsageError, USAGE } from './cli/args.js'
import { ConfigError, loadConfig } from './config/load.js'
import { createLogger } from './observability/log.js'
import { createProxy } from './server/proxy.js'

function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }
  return pkg.version ?? '0.0.0'
}

async function main (argv: readonly string[]): Promise<number> {
  let opts
  try {
    opts = parseCli(argv)
  } catch (err) {
    if (!(err instanceof UsageError)) throw err
    process.stderr.write(`sluice: ${err.message}\n\n${USAGE}\n`)
    return 2
  }
  if (opts.command === 'help') { process.stdout.write(USAGE + '\n'); return 0 }
  if (opts.command === 'version') { process.stdout.write(version() + '\n'); return 0 }

  let config
  try {
    config = await loadConfig(opts.config)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(`sluice: ${err.message}\n`)
    return 2
  }
  const logger = createLogger({ level: opts.logLevel, pretty: opts.pretty })
  const proxy = createProxy({ config, logger, ...(opts.listen === undefined ? {} : { listen: [opts.listen] }) })
  try {
    await proxy.listen()
  } catch (err) {
    logger.fatal({ err }, 'cannot listen')
    return 1
  }

  return await new Promise<number>((resolve) => {
    let stopping = false
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting now')
        process.exit(1)
      }
      stopping = true
      logger.info({ signal }, 'signal received: graceful shutdown')
      proxy.close().then(() => resolve(0), (err: unknown) => { logger.error({ err }, 'shutdown failed'); resolve(1) })
    }
    process.on('SIGTERM', onSignal)
    process.on('SIGINT', onSignal)
  })
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err: unknown) => {
  process.stderr.write(`sluice: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
