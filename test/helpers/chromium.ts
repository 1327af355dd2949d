/**
 * Headless Chromium as a real client (Debian's `chromium` package, which
 * .ci/run installs), trusting the test CA. Chromium on Linux verifies
 * certificates with NSS and reads the user's NSS database in
 * $HOME/.pki/nssdb, so each run gets a temp HOME whose database holds the
 * test CA (certutil, from libnss3-tools), and a new empty profile.
 * The flags are those known to work headless as root on these machines
 * (no sandbox, no GPU, no background traffic to hosts it cannot reach).
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { promisify } from 'node:util'

const execFileP = promisify(execFile)

export const CHROMIUM = '/usr/bin/chromium'
export const CERTUTIL = '/usr/bin/certutil'

/** Bound on one Chromium run (it starts slowly on a busy machine); a failure bound, not synchronisation. */
export const CHROMIUM_TIMEOUT_MS = 60_000

/** True when Chromium and certutil are installed; otherwise fails the test in CI and skips it elsewhere, saying what is missing. */
export function needChromium (t: TestContext): boolean {
  const missing = [CHROMIUM, CERTUTIL].filter(p => !existsSync(p))
  if (missing.length === 0) return true
  const why = `${missing.join(' and ')} not installed (Debian packages chromium, libnss3-tools; .ci/run installs them)`
  if (process.env['CI'] !== undefined && process.env['CI'] !== '') assert.fail(`${why}, and CI requires them`)
  t.skip(why)
  return false
}

/** A HOME under `dir` whose NSS database trusts `caFile` to identify servers (certutil trust flags `C,,`). */
export async function homeTrusting (dir: string, caFile: string): Promise<string> {
  const home = join(dir, 'home')
  const db = join(home, '.pki', 'nssdb')
  await mkdir(db, { recursive: true })
  await execFileP(CERTUTIL, ['-d', `sql:${db}`, '-N', '--empty-password'])
  await execFileP(CERTUTIL, ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'sluice-test', '-i', caFile])
  return home
}

export interface DumpDomOptions {
  /** `--proxy-server` (e.g. `https://localhost:PORT`). */
  readonly proxy: string
  /** HOME, from {@link homeTrusting}. */
  readonly home: string
  /** A new, empty directory for the profile. */
  readonly profile: string
}

/** `chromium --headless --dump-dom URL` through `proxy`; resolves with the DOM it printed, rejects with its stderr if it failed. */
export async function dumpDom (url: string, opts: DumpDomOptions): Promise<string> {
  const args = [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    `--user-data-dir=${opts.profile}`,
    `--proxy-server=${opts.proxy}`,
    // Chromium sends loopback destinations direct, whatever the proxy, unless told not to.
    '--proxy-bypass-list=<-loopback>',
    '--dump-dom', url
  ]
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: opts.home }
  const { stdout } = await execFileP(CHROMIUM, args, { env, timeout: CHROMIUM_TIMEOUT_MS, maxBuffer: 1 << 20 })
  return stdout
}
