/**
 * Two network namespaces joined by a veth pair, made (and always removed)
 * by a test, for faults loopback cannot show: a peer that vanishes without
 * a FIN or a RST, because its link went down (issue 11, "a client
 * disappears without a FIN").
 *
 * Nothing is added to the host's own namespace: the veth pair is created
 * with both ends already inside the new namespaces, and the private
 * addresses (10.200.0.1 and .2, a /30) exist only there. Needs root and
 * iproute2; `netnsUnavailable()` says why not, for a skip.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { promisify } from 'node:util'
import { within } from './wait.js'

const run = promisify(execFile)

/** `ip ARGS`; rejects with its stderr. */
async function ip (...args: string[]): Promise<void> {
  try {
    await run('ip', args, { timeout: 10_000 })
  } catch (err) {
    const e = err as { stderr?: string, message: string }
    throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`)
  }
}

/** Why namespaces cannot be used here, or undefined when they can. */
export async function netnsUnavailable (): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'network namespaces are Linux only'
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root'
  const probe = `sluice-probe-${process.pid}`
  try {
    await ip('netns', 'add', probe)
  } catch (err) {
    return `cannot create a network namespace: ${(err as Error).message}`
  }
  await ip('netns', 'del', probe).catch(() => {})
  return undefined
}

export interface NetnsPair {
  /** Namespace names. */
  readonly a: string
  readonly b: string
  /** The addresses of the two ends. */
  readonly addressA: string
  readonly addressB: string
  /** Take B's end of the link down: from A, B is gone without a word. */
  linkDownB (): Promise<void>
  /** `command args` inside namespace `ns`, stdout as lines, stdin a pipe. */
  spawnIn (ns: string, command: string, args: readonly string[], opts?: { cwd?: string }): ChildProcess
  /** Delete both namespaces (and so the veth pair). */
  destroy (): Promise<void>
}

/** Make the pair: namespaces `sluice-TAG-PID-a` / `-b`, veth between them, lo up in both. */
export async function createNetnsPair (tag: string): Promise<NetnsPair> {
  const a = `sluice-${tag}-${process.pid}-a`
  const b = `sluice-${tag}-${process.pid}-b`
  // Interface names are at most 15 bytes; they only exist inside the namespaces.
  const va = 'slc-a'
  const vb = 'slc-b'
  const addressA = '10.200.0.1'
  const addressB = '10.200.0.2'
  let made = false
  const destroy = async (): Promise<void> => {
    await ip('netns', 'del', a).catch(() => {})
    await ip('netns', 'del', b).catch(() => {})
  }
  try {
    await ip('netns', 'add', a)
    await ip('netns', 'add', b)
    await ip('link', 'add', va, 'netns', a, 'type', 'veth', 'peer', 'name', vb, 'netns', b)
    await ip('-n', a, 'addr', 'add', `${addressA}/30`, 'dev', va)
    await ip('-n', b, 'addr', 'add', `${addressB}/30`, 'dev', vb)
    for (const [ns, dev] of [[a, va], [b, vb], [a, 'lo'], [b, 'lo']] as const) await ip('-n', ns, 'link', 'set', dev, 'up')
    made = true
  } finally {
    if (!made) await destroy()
  }
  return {
    a,
    b,
    addressA,
    addressB,
    async linkDownB () { await ip('-n', b, 'link', 'set', vb, 'down') },
    spawnIn (ns, command, args, opts = {}) {
      return spawn('ip', ['netns', 'exec', ns, command, ...args], { stdio: ['pipe', 'pipe', 'inherit'], ...(opts.cwd === undefined ? {} : { cwd: opts.cwd }) })
    },
    destroy
  }
}

/** A child speaking JSON lines on stdout, answering one line per command on stdin. */
export interface LineChild {
  /** The next JSON line (bounded wait). */
  next (what: string, timeoutMs?: number): Promise<Record<string, unknown>>
  /** Write `command`, resolve with its one-line answer. */
  ask (command: string, timeoutMs?: number): Promise<Record<string, unknown>>
  /** SIGKILL it (if still running) and wait for its exit. */
  kill (): Promise<void>
}

export function lineChild (child: ChildProcess): LineChild {
  const queue: Array<Record<string, unknown>> = []
  const waiters = new Set<() => void>()
  const exited = once(child, 'exit').then(() => {})
  let ended = false
  if (child.stdout === null || child.stdin === null) throw new Error('child needs stdin and stdout pipes')
  const stdin = child.stdin
  stdin.on('error', () => {})
  createInterface({ input: child.stdout }).on('line', (line) => {
    let v: unknown
    try { v = JSON.parse(line) } catch { v = { raw: line } }
    queue.push(typeof v === 'object' && v !== null ? v as Record<string, unknown> : { value: v })
    for (const w of [...waiters]) w()
  })
  exited.then(() => { ended = true; for (const w of [...waiters]) w() }, () => {})
  const next = async (what: string, timeoutMs = 10_000): Promise<Record<string, unknown>> =>
    await within(new Promise((resolve, reject) => {
      const check = (): void => {
        const v = queue.shift()
        if (v !== undefined) { waiters.delete(check); resolve(v); return }
        if (ended) { waiters.delete(check); reject(new Error(`child exited while waiting for ${what}`)) }
      }
      waiters.add(check)
      check()
    }), what, timeoutMs)
  return {
    next,
    async ask (command, timeoutMs) {
      stdin.write(`${command}\n`)
      return await next(`answer to ${command}`, timeoutMs)
    },
    async kill () {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await within(exited, 'child exits')
    }
  }
}
