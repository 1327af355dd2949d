/**
 * `sluice drain` (issue 15: "a preStop that drains"): POST /drain on a
 * running Sluice's admin listener, which starts the drain its SIGTERM would
 * (cli/shutdown.ts), then ask /tunnels until none is open, the admin
 * listener is gone (Sluice has finished and exited) or `--timeout` passes.
 *
 * Exit 0 once the drain is started, whichever way the wait ends: the drain
 * is Sluice's and bounded by its own deadline; the wait only says when the
 * instance is empty. A Kubernetes preStop runs it, and the kubelet's SIGTERM
 * after it is then not a second signal. Exit 1 when the drain could not be
 * started (nothing listening, a refused token), 2 for bad usage.
 */
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import type { DrainStatus } from '../admin/server.js'
import { UsageError } from './args.js'

export interface DrainCommand {
  /** `http://host:port` of the admin listener, no trailing slash. */
  readonly admin: string
  readonly tokenFile?: string
  readonly tokenEnv?: string
  readonly timeoutMs: number
}

export interface DrainIo {
  readonly out: (line: string) => void
  readonly err: (line: string) => void
  readonly env: NodeJS.ProcessEnv
  /** Between two asks of /tunnels. */
  readonly pollMs?: number
}

/** Each admin request's own bound: /tunnels under --workers waits up to 2 s for the workers (admin/cluster.ts). */
const REQUEST_MS = 5000
const POLL_MS = 250

/** The bearer token as the admin config reads it (config/admin.ts): a file's first line, or a variable. */
async function token (cmd: DrainCommand, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  if (cmd.tokenFile !== undefined) {
    let text: string
    try {
      text = await readFile(cmd.tokenFile, 'utf8')
    } catch (err) {
      throw new UsageError(`cannot read --token-file ${cmd.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`)
    }
    const first = text.split(/\r?\n/)[0] ?? ''
    if (first === '') throw new UsageError(`--token-file ${cmd.tokenFile} is empty (the token is its first line)`)
    return first
  }
  if (cmd.tokenEnv !== undefined) {
    const value = env[cmd.tokenEnv]
    if (value === undefined || value === '') throw new UsageError(`--token-env: environment variable ${cmd.tokenEnv} is not set`)
    return value
  }
  return undefined
}

/** A connection the admin listener refused or dropped: Sluice is not (or no longer) there. */
function gone (err: unknown): boolean {
  const code = (err as { code?: unknown, cause?: { code?: unknown } }).code ?? (err as { cause?: { code?: unknown } }).cause?.code
  return code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE'
}

const reason = (err: unknown): string => {
  const e = err as { code?: unknown, message?: unknown }
  return typeof e.code === 'string' ? e.code : String(e.message ?? err)
}

export async function drain (cmd: DrainCommand, io: DrainIo): Promise<number> {
  const bearer = await token(cmd, io.env)
  const headers = bearer === undefined ? {} : { authorization: `Bearer ${bearer}` }
  const started = Date.now()
  const ask = async (method: 'POST' | 'GET', path: string, ms: number): Promise<{ status: number, text: string }> => {
    const res = await request(`${cmd.admin}${path}`, { method, headers, signal: AbortSignal.timeout(ms) })
    return { status: res.statusCode, text: await res.body.text() }
  }

  let answer
  try {
    answer = await ask('POST', '/drain', REQUEST_MS)
  } catch (err) {
    io.err(`sluice: cannot reach the admin listener at ${cmd.admin}: ${reason(err)}`)
    return 1
  }
  if (answer.status !== 202) {
    const why = answer.status === 401
      ? 'the token was refused or missing (--token-file, --token-env)'
      : answer.status === 404 ? 'no POST /drain there (not a Sluice admin listener, or an older one)' : answer.text.trim()
    io.err(`sluice: POST ${cmd.admin}/drain answered ${answer.status}: ${why}`)
    return 1
  }
  const status = JSON.parse(answer.text) as DrainStatus
  io.out(`draining since ${status.started_at} (by ${status.by}): accepting until ${status.accepting_until}, open tunnels closed at ${status.deadline}`)

  if (cmd.timeoutMs === 0) return 0

  // Bounded twice: by the deadline (each ask's own bound ends with it) and by a count of turns.
  const deadline = started + cmd.timeoutMs
  const pollMs = io.pollMs ?? POLL_MS
  const turns = Math.ceil(cmd.timeoutMs / pollMs) + 1
  let open = -1
  for (let turn = 0; turn < turns && Date.now() < deadline; turn++) {
    if (turn > 0) await sleep(Math.min(pollMs, Math.max(0, deadline - Date.now())))
    let list
    try {
      list = await ask('GET', '/tunnels', Math.max(1, Math.min(REQUEST_MS, deadline - Date.now())))
    } catch (err) {
      // Sluice exits once its drain is over, and its admin listener goes last.
      if (gone(err)) { io.out('drained: Sluice has closed its admin listener'); return 0 }
      if (Date.now() >= deadline) break
      io.err(`sluice: GET ${cmd.admin}/tunnels failed: ${reason(err)}`)
      continue
    }
    if (list.status !== 200) { io.err(`sluice: GET ${cmd.admin}/tunnels answered ${list.status}`); continue }
    open = (JSON.parse(list.text) as unknown[]).length
    if (open === 0) { io.out('drained: no tunnel open'); return 0 }
  }
  io.out(`stopped waiting after ${cmd.timeoutMs} ms: ${open < 0 ? 'an unknown number of' : open} tunnel${open === 1 ? '' : 's'} still open; Sluice's drain goes on until ${status.deadline}`)
  return 0
}
