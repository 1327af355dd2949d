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
import { drain } from './cli/drain.js'
import { ConfigError, loadConfig, type Config } from './config/load.js'
import { isProxyError } from './errors.js'

function version (): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: string }
  return pkg.version ?? '0.0.0'
}

/**
 * `sluice validate [--strict] FILE...`: every problem of every file, and the
 * warnings of config/lint.ts as `warning: file:LINE: path: message` lines.
 * Needs no secrets: a parent's unset password_env or unreadable
 * password_file / key_file is a warning here (serve and check refuse it).
 * Exit 0 when every file is valid (warnings or not), 2 otherwise; with
 * --strict a file with warnings is not valid.
 */
async function validate (files: readonly string[], strict: boolean): Promise<number> {
  let bad = 0
  const out = (line: string): void => { process.stdout.write(line + '\n') }
  for (const file of files) {
    let c: Config
    try {
      c = await loadConfig(file, { secrets: 'warn', lint: true })
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err
      bad++
      out(err.problems.join('\n'))
      continue
    }
    for (const w of c.warnings) out(`warning: ${w}`)
    const n = c.warnings.length
    const warned = n === 0 ? '' : `, ${n} warning${n === 1 ? '' : 's'}`
    if (strict && n > 0) {
      bad++
      out(`${file}: invalid with --strict (${n} warning${n === 1 ? '' : 's'})`)
      continue
    }
    out(`${file}: ok (${c.policy.size} rule${c.policy.size === 1 ? '' : 's'}, default ${c.policy.defaultAllow ? 'allow' : 'deny'}${c.policy.report ? ', report mode' : ''}, hash ${c.hash}${warned})`)
  }
  return bad === 0 ? 0 : 2
}

async function run (cmd: Command): Promise<number> {
  switch (cmd.command) {
    case 'help': process.stdout.write(USAGE + '\n'); return 0
    case 'version': process.stdout.write(version() + '\n'); return 0
    case 'validate': return await validate(cmd.files, cmd.strict)
    case 'serve':
      // The primary of a cluster only supervises; workers (and a single process) serve.
      if (cmd.workers > 1 && cluster.isPrimary) return await runPrimary(cmd)
      return await serve(cmd)
    case 'passwd': return await passwd(cmd.name, cmd.scheme)
    case 'drain': return await drain(cmd, {
      out: (line) => { process.stdout.write(line + '\n') },
      err: (line) => { process.stderr.write(line + '\n') },
      env: process.env
    })
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
      // One line and where to look, not the whole help: the mistake stays on screen.
      process.stderr.write(`sluice: ${err.message}\nsee 'sluice --help'\n`)
      return 2
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`sluice: ${err.message}\n`)
      return 2
    }
    if (isProxyError(err) && err.code === 'ERR_BAD_TARGET') {
      // Say what to type, not "authority-form": `check localhost` → "add one, e.g. localhost:443".
      process.stderr.write(`sluice: ${err.code}: the target must be HOST:PORT: ${err.detail ?? err.message}\n`)
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
