/**
 * The three scenarios, each one loadgen run (or two) against one peer, with
 * the proxy's CPU time and memory read from /proc around it.
 *
 * bulk  one tunnel; upload N bytes to the sink, then download N bytes from
 *       the source (separate runs, so each direction has its own CPU reading)
 * rate  C workers loop connect → CONNECT → 200 → 64-byte echo → close
 *       (TLS peers: a full TLS handshake first; `resume`: a resumed one)
 * hold  K idle tunnels: PSS/RSS delta per tunnel, then every tunnel pinged
 */
import { createInterface } from 'node:readline'
import { runLoadgen, loadgenArgv, logLine, lastJson, num, obj, type LoadgenEnv } from './loadgen.js'
import { spawnTracked, stopChild, waitExit } from './children.js'
import { cpuSeconds, foreignPercent, foreignTicks, memory } from './proc.js'
import type { BulkResult, HoldResult, RateResult, RunningPeer } from './types.js'

const GiB = 1024 ** 3
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

interface Measured<T> {
  readonly res: T
  readonly cpu: number | undefined
  readonly otherPct: number
  /** CPU seconds per process of the tree: the root first, then the others, busiest first. */
  readonly byProcess: readonly number[]
  readonly aux: number | undefined
}

function perProcess (pids: readonly number[]): Map<number, number> {
  return new Map(pids.map(p => [p, cpuSeconds([p])]))
}

/**
 * Run `fn`; also the proxy tree's CPU seconds meanwhile (undefined for
 * direct), per process, its helpers' (aux) and other processes' CPU %.
 * Processes that start during `fn` count from zero; ones that end are lost.
 */
async function measured<T> (peer: RunningPeer, fn: () => Promise<T>): Promise<Measured<T>> {
  const pids = peer.pid === undefined ? [] : peer.tree()
  const c0 = perProcess(pids)
  const aux0 = peer.aux === undefined ? [] : peer.aux()
  const a0 = cpuSeconds(aux0)
  const f0 = foreignTicks()
  const t0 = performance.now()
  const res = await fn()
  const f1 = foreignTicks()
  const wallS = (performance.now() - t0) / 1000
  const c1 = perProcess([...new Set([...pids, ...peer.tree()])])
  const delta = [...c1].map(([p, v]) => [p, v - (c0.get(p) ?? 0)] as const)
  const root = delta.filter(([p]) => p === peer.pid).map(([, v]) => v)
  const rest = delta.filter(([p]) => p !== peer.pid).map(([, v]) => v).sort((a, b) => b - a)
  const aux = peer.aux === undefined ? undefined : cpuSeconds([...new Set([...aux0, ...peer.aux()])]) - a0
  return {
    res,
    cpu: peer.pid === undefined ? undefined : delta.reduce((t, [, v]) => t + v, 0),
    otherPct: foreignPercent(f0, f1, wallS),
    byProcess: [...root, ...rest],
    aux
  }
}

/**
 * The machine may be shared. While other processes used more than
 * `thresholdPct` of a CPU during a measurement, wait a little and measure
 * again (at most `retries` times); keep the least disturbed attempt.
 */
export async function leastDisturbed<T extends { readonly otherCpuPct?: number }> (
  fn: () => Promise<T>, thresholdPct: number, retries: number, log: (s: string) => void, what: string
): Promise<T & { attempts: number }> {
  let best: T | undefined
  let attempt = 0
  for (; attempt <= retries; attempt++) {
    const r = await fn()
    if (best === undefined || (r.otherCpuPct ?? 0) < (best.otherCpuPct ?? 0)) best = r
    if ((r.otherCpuPct ?? 0) <= thresholdPct) break
    if (attempt < retries) {
      log(`${what}: other processes used ${Math.round(r.otherCpuPct ?? 0)}% of a CPU meanwhile; measuring again`)
      await sleep(1000)
    }
  }
  return { ...(best as T), attempts: Math.min(attempt + 1, retries + 1) }
}

export async function bulk (lg: LoadgenEnv, peer: RunningPeer, label: string, bytes: number): Promise<BulkResult> {
  const timeoutS = 120
  const out: Record<string, number | undefined> = {}
  let cpu: number | undefined = 0
  let other = 0
  const notes: string[] = []
  for (const dir of ['up', 'down'] as const) {
    const extra = [...(peer.loadgenArgs ?? []), '--dir', dir, '--bytes', String(bytes), '--streams', '1', '--bulk-timeout', String(timeoutS)]
    const { res: r, cpu: c, otherPct } = await measured(peer, async () => await runLoadgen(lg, 'bulk', peer.port, `${label}-${dir}`, extra, (timeoutS + 30) * 1000))
    other = Math.max(other, otherPct)
    const part = obj(r.json?.[dir])
    if (part['verified'] === true) out[dir] = num(part['mb_per_s'])
    else notes.push(`${dir}: not verified (${r.timedOut ? 'timed out' : JSON.stringify(part['errors'] ?? r.code)})`)
    cpu = cpu === undefined || c === undefined ? undefined : cpu + c
  }
  const ok = out['up'] !== undefined && out['down'] !== undefined
  return {
    ok,
    ...(out['up'] === undefined ? {} : { upMBps: out['up'] }),
    ...(out['down'] === undefined ? {} : { downMBps: out['down'] }),
    ...(cpu === undefined || !ok ? {} : { cpuSPerGiB: cpu / (2 * bytes / GiB) }),
    otherCpuPct: other,
    ...(notes.length === 0 ? {} : { note: notes.join('; ') })
  }
}

/** Share of TLS handshakes that resumed, % (undefined without TLS). */
function resumedPct (j: Record<string, unknown>): number | undefined {
  const hs = obj(j['tls_handshakes'])
  const full = num(hs['full'])
  const resumed = num(hs['resumed'])
  if (full === undefined || resumed === undefined || full + resumed === 0) return undefined
  return resumed / (full + resumed) * 100
}

/** `more`: extra loadgen arguments (--tls-resume). */
export async function rate (lg: LoadgenEnv, peer: RunningPeer, label: string, clients: number, seconds: number, warmupS: number, more: readonly string[] = []): Promise<RateResult> {
  const extra = [...(peer.loadgenArgs ?? []), ...more, '-c', String(clients), '-d', String(seconds), '--warmup', String(warmupS), '--payload', '64']
  const { res: r, cpu, otherPct, byProcess, aux } = await measured(peer, async () => await runLoadgen(lg, 'rate', peer.port, label, extra, (seconds + warmupS + 30) * 1000))
  const j = r.json ?? {}
  const tps = num(j['tunnels_per_s'])
  const cycles = (num(j['completed']) ?? 0) + (num(j['completed_warmup']) ?? 0)
  const errors = num(j['error_total'])
  const ok = r.code === 0 && tps !== undefined
  return {
    ok,
    ...(tps === undefined ? {} : { tunnelsPerS: tps }),
    ...optional('connectP50Ms', num(obj(j['connect_ms'])['p50'])),
    ...optional('connectP99Ms', num(obj(j['connect_ms'])['p99'])),
    ...optional('cycleP99Ms', num(obj(j['cycle_ms'])['p99'])),
    ...optional('errors', errors),
    ...(cpu === undefined || cycles === 0 ? {} : { cpuUsPerTunnel: cpu / cycles * 1e6 }),
    ...(byProcess.length < 2 || cycles === 0 ? {} : { cpuByProcessUs: byProcess.map(c => c / cycles * 1e6) }),
    ...(aux === undefined || cycles === 0 ? {} : { auxCpuUsPerTunnel: aux / cycles * 1e6 }),
    ...optional('loadgenCpuUsPerTunnel', num(j['loadgen_cpu_s']) === undefined || cycles === 0 ? undefined : (num(j['loadgen_cpu_s']) ?? 0) / cycles * 1e6),
    otherCpuPct: otherPct,
    ...optional('tlsResumedPct', resumedPct(j)),
    ...(errors !== undefined && errors > 0 ? { note: `errors ${JSON.stringify(j['errors'])}` } : {}),
    ...(ok ? {} : { note: `loadgen exit ${String(r.code)}${r.timedOut ? ' (timed out)' : ''}` })
  }
}

function optional<K extends string> (key: K, v: number | undefined): Partial<Record<K, number>> {
  return v === undefined ? {} : { [key]: v } as Record<K, number>
}

/**
 * Open `k` tunnels through the proxy to the echo port and keep them idle;
 * after `settleMs`, read the proxy's memory; then release: loadgen pings
 * every tunnel once more (alive check) and closes them.
 */
export async function hold (lg: LoadgenEnv, peer: RunningPeer, label: string, k: number, settleMs: number): Promise<HoldResult> {
  if (peer.pid === undefined) return { ok: true, note: 'no proxy' }
  // Warm-up: one-time allocations (first tunnel, parser pools) are not charged to the measured ones.
  const args = peer.loadgenArgs ?? []
  await runLoadgen(lg, 'hold', peer.port, `${label}-warm`, [...args, '-k', '100', '--hold-s', '0'], 60_000)
  await sleep(settleMs / 2)
  const m0 = memory(peer.tree())

  const argv = loadgenArgv(lg, 'hold', peer.port, label, [...args, '-k', String(k), '--ramp', '100', '--stdin', '--hold-s', '300', '--establish-s', '120'])
  logLine(lg, '$ ' + argv.join(' '))
  const child = spawnTracked(argv, { stdio: ['pipe', 'pipe', 'pipe'] })
  let text = ''
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { text += s })
  const rl = createInterface({ input: child.stdout as NodeJS.ReadableStream })
  const established = new Promise<Record<string, unknown> | undefined>((resolve) => {
    rl.on('line', (line) => {
      text += line + '\n'
      if (line.startsWith('{"event":"established"')) resolve(lastJson(line))
    })
    rl.once('close', () => resolve(undefined))
    setTimeout(() => resolve(undefined), 150_000).unref()
  })
  const closed = new Promise<void>((resolve) => rl.once('close', resolve))
  let est: Record<string, unknown> | undefined
  let m1 = m0
  try {
    est = await established
    if (est !== undefined) {
      await sleep(settleMs)
      m1 = memory(peer.tree())
    }
    child.stdin?.end('release\n')
    if (!(await waitExit(child, 60_000))) await stopChild(child, 1000)
    await Promise.race([closed, sleep(2000)])
  } finally {
    await stopChild(child, 1000)
  }
  logLine(lg, text)
  const final = lastJson(text) ?? {}
  const n = num(est?.['established']) ?? 0
  const alive = num(final['alive_after'])
  const ok = est !== undefined && n === k && alive === n
  return {
    ok,
    established: n,
    ...optional('aliveAfter', alive),
    ...optional('setupS', num(est?.['seconds'])),
    ...(n > 0 ? { pssKiBPerTunnel: (m1.pssKiB - m0.pssKiB) / n, rssKiBPerTunnel: (m1.rssKiB - m0.rssKiB) / n } : {}),
    ...(ok ? {} : { note: `established ${n}/${k}, alive after ${String(alive)}, errors ${JSON.stringify(final['errors'] ?? est?.['failed'])}` })
  }
}
