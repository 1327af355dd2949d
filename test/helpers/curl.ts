/**
 * curl as a real client, run in a clean environment: no `*_proxy` variable
 * from ours (only what a test passes), and `-q` first so no ~/.curlrc is
 * read. When curl is not installed, tests needing it fail under CI
 * (process.env.CI) and are skipped elsewhere.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import type { TestContext } from 'node:test'
import { promisify } from 'node:util'

const execFileP = promisify(execFile)

/** Bound on one curl run; a failure bound, not synchronisation. */
export const CURL_TIMEOUT_MS = 10_000

/** curl's version line, or undefined when curl is not installed. */
async function curlVersion (): Promise<string | undefined> {
  try {
    const { stdout } = await execFileP('curl', ['--version'], { timeout: CURL_TIMEOUT_MS })
    return stdout.split('\n')[0]
  } catch (err) {
    if ((err as { code?: unknown }).code === 'ENOENT') return undefined
    throw err
  }
}

/** curl's version line, or undefined when curl is not installed. */
export const CURL = await curlVersion()

/** True when curl can run; otherwise fails the test in CI and skips it elsewhere. */
export function needCurl (t: TestContext): boolean {
  if (CURL !== undefined) return true
  if (process.env['CI'] !== undefined && process.env['CI'] !== '') assert.fail('curl is not installed, and CI requires it')
  t.skip('curl is not installed')
  return false
}

/** A copy of our environment without any proxy variable (http_proxy, HTTPS_PROXY, all_proxy, no_proxy, …), plus `extra`. */
export function curlEnv (extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^(?:https?|all|no|ftp)_proxy$/i.test(k) && v !== undefined) env[k] = v
  }
  return { ...env, ...extra }
}

export interface CurlOptions {
  /** curl's whole environment (default {@link curlEnv}()). */
  readonly env?: NodeJS.ProcessEnv
  /** Kill it after this long (default {@link CURL_TIMEOUT_MS}). */
  readonly timeoutMs?: number
}

export interface CurlRun {
  /** curl's exit code (0 on success). */
  readonly exit: number
  readonly stdout: string
  readonly stderr: string
}

/** Run `curl -q ARGS`; resolves with its exit code and output, rejects if it could not run or was killed. */
export async function runCurl (args: readonly string[], opts: CurlOptions = {}): Promise<CurlRun> {
  try {
    const { stdout, stderr } = await execFileP('curl', ['-q', ...args], { env: opts.env ?? curlEnv(), timeout: opts.timeoutMs ?? CURL_TIMEOUT_MS })
    return { exit: 0, stdout, stderr }
  } catch (err) {
    const e = err as { stdout?: string, stderr?: string, code?: unknown }
    if (typeof e.code !== 'number') throw err
    return { exit: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' }
  }
}

export interface CurlResult extends CurlRun {
  /** The body written to stdout. */
  readonly body: string
  /** `%{http_code} %{http_connect}`: the final status, then the CONNECT status (000 when there was none). */
  readonly codes: string
}

/** `curl -q -sS --max-time 5 ARGS` → body, `%{http_code} %{http_connect}`, exit code. */
export async function curl (args: readonly string[], opts: CurlOptions = {}): Promise<CurlResult> {
  const r = await runCurl(['-sS', '--max-time', '5', ...args, '-w', '\n%{http_code} %{http_connect}'], opts)
  const nl = r.stdout.lastIndexOf('\n')
  return { ...r, body: r.stdout.slice(0, nl), codes: r.stdout.slice(nl + 1) }
}
