#!/usr/bin/env -S node --max-semi-space-size=4
/**
 * The `sluice` binary: argv → command. No proxy logic here.
 */
import { readFileSync } from 'node:fs'
import { parseCli, UsageError, USAGE, type Command } from './cli/args.js'
import { check, formatCheck } from './cli/check.js'
import cluster from 'node:cluster'
import { serve } from './cli/serve.js'
import { runPrimary } from './cli/cluster.js'
import { passwd } from './cli/passwd.js'
import { ConfigError, loadConfig } from './config/load.js'
import { isProxyError } from './errors.js'

function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }
  return pkg.version ?? '0.0.0'
}

async function validate (files: readonly string[]): Promise<number> {
  let bad = 0
  for (const file of files) {
    try {
      const c = await loadConfig(file)
      process.stdout.write(`${file}: ok (${c.policy.rules.length} rules, default ${c.policy.defaultAllow ? 'allow' : 'deny'}${c.policy.report ? ', report mode' : ''}, hash ${c.hash})\n`)
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      bad++
      process.stdout.write(err.problems.join('\n') + '\n')
    }
  }
  return bad === 0 ? 0 : 2
}

async function run (cmd: Command): Promise<number> {
  switch (cmd.command) {
    case 'help': process.stdout.write(USAGE + '\n'); return 0
    case 'version': process.stdout.write(version() + '\n'); return 0
    case 'validate': return await validate(cmd.files)
    case 'serve':
      // The primary of a cluster only supervises; workers (and a single process) serve.
      if (cmd.workers > 1 && cluster.isPrimary) return await runPrimary(cmd)
      return await serve(cmd)
    case 'passwd': return await passwd(cmd.name, cmd.scheme)
    case 'check': {
      const result = await check(await loadConfig(cmd.config, cmd.parent === undefined ? {} : { parentUrl: cmd.parent }), cmd)
      process.stdout.write(cmd.json ? JSON.stringify(result) + '\n' : formatCheck(result))
      return result.allowed ? 0 : 1
    }
  }
}

async function main (argv: readonly string[]): Promise<number> {
  try {
    return await run(parseCli(argv))
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`sluice: ${err.message}\n\n${USAGE}\n`)
      return 2
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`sluice: ${err.message}\n`)
      return 2
    }
    if (isProxyError(err)) {
      process.stderr.write(`sluice: ${err.code}: ${err.message}\n`)
      return 2
    }
    throw err
  }
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code }, (err: unknown) => {
  process.stderr.write(`sluice: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exitCode = 1
})
