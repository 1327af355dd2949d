/**
 * Readings from /proc: CPU time and memory of a process tree, the fd limit,
 * CPU affinity, and which commands are on PATH. Linux only.
 */
import { execFileSync } from 'node:child_process'
import { accessSync, constants, readdirSync, readFileSync } from 'node:fs'
import { delimiter, join } from 'node:path'

function read (path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
}

let clkTck: number | undefined
/** Clock ticks per second for /proc/PID/stat times (getconf CLK_TCK, almost always 100). */
export function ticksPerSecond (): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8', timeout: 5000 }).trim())
    } catch {
      clkTck = 100
    }
    if (!Number.isFinite(clkTck) || clkTck <= 0) clkTck = 100
  }
  return clkTck
}

/** Fields after `(comm)` of /proc/PID/stat: [0] = state (field 3), [1] = ppid, [11] = utime, [12] = stime. */
function statFields (pid: number): string[] | undefined {
  const s = read(`/proc/${pid}/stat`)
  if (s === undefined) return undefined
  return s.slice(s.lastIndexOf(')') + 2).split(' ')
}

/** `root` and every descendant alive now (one scan of /proc). */
export function procTree (root: number): number[] {
  const kids = new Map<number, number[]>()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    const f = statFields(Number(d))
    const ppid = Number(f?.[1])
    if (!Number.isInteger(ppid)) continue
    const list = kids.get(ppid)
    if (list === undefined) kids.set(ppid, [Number(d)])
    else list.push(Number(d))
  }
  const out: number[] = []
  const todo = [root]
  for (let guard = 0; todo.length > 0 && guard < 100_000; guard++) {
    const p = todo.pop() as number
    if (read(`/proc/${p}/stat`) !== undefined) out.push(p)
    todo.push(...(kids.get(p) ?? []))
  }
  return out
}

/** utime + stime (all threads) of `pids`, in seconds. */
export function cpuSeconds (pids: readonly number[]): number {
  let ticks = 0
  for (const p of pids) {
    const f = statFields(p)
    if (f === undefined) continue
    ticks += Number(f[11] ?? 0) + Number(f[12] ?? 0)
  }
  return ticks / ticksPerSecond()
}

export interface Memory { readonly pssKiB: number, readonly rssKiB: number }

/** PSS and RSS from /proc/PID/smaps_rollup, summed over `pids`. */
export function memory (pids: readonly number[]): Memory {
  let pss = 0
  let rss = 0
  for (const p of pids) {
    const text = read(`/proc/${p}/smaps_rollup`) ?? ''
    for (const line of text.split('\n')) {
      const m = /^(Pss|Rss):\s+(\d+) kB/.exec(line)
      if (m?.[1] === 'Pss') pss += Number(m[2])
      else if (m?.[1] === 'Rss') rss += Number(m[2])
    }
  }
  return { pssKiB: pss, rssKiB: rss }
}

/** This process's RLIMIT_NOFILE (children inherit it). */
export function nofileLimit (): { soft: number, hard: number } {
  const line = (read('/proc/self/limits') ?? '').split('\n').find(l => l.startsWith('Max open files')) ?? ''
  const [soft, hard] = line.replace('Max open files', '').trim().split(/\s+/).map(v => v === 'unlimited' ? Infinity : Number(v))
  return { soft: soft ?? 1024, hard: hard ?? soft ?? 1024 }
}

/**
 * argv prefix that raises a child's soft fd limit to the hard one, when
 * they differ (nobody can go above the hard limit without privileges).
 */
export function nofileRaise (): string[] {
  const { soft, hard } = nofileLimit()
  if (!(hard > soft)) return []
  const target = Number.isFinite(hard) ? String(hard) : 'unlimited'
  return ['sh', '-c', `ulimit -n ${target} 2>/dev/null; exec "$@"`, 'sh']
}

/** CPUs this process may run on, from /proc/self/status Cpus_allowed_list ("0-1,4"). */
export function allowedCpus (): Set<number> {
  const line = (read('/proc/self/status') ?? '').split('\n').find(l => l.startsWith('Cpus_allowed_list:')) ?? ''
  const out = new Set<number>()
  for (const part of line.split(':')[1]?.trim().split(',') ?? []) {
    const [a, b] = part.split('-').map(Number)
    if (a === undefined || !Number.isInteger(a)) continue
    for (let c = a; c <= (b ?? a) && c < a + 4096; c++) out.add(c)
  }
  return out
}

/** Absolute path of `cmd` on PATH, or undefined. */
export function which (cmd: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue
    const full = join(dir, cmd)
    try {
      accessSync(full, constants.X_OK)
      return full
    } catch { /* next */ }
  }
  return undefined
}

export function cpuModel (): string {
  const line = (read('/proc/cpuinfo') ?? '').split('\n').find(l => l.startsWith('model name'))
  return line?.split(':')[1]?.trim() ?? 'unknown'
}

/**
 * CPU ticks (utime+stime) of every user-space process that is not this
 * driver or one of its descendants: load from other users of the machine.
 * A lower bound: processes that start and end within a window are missed.
 */
export function foreignTicks (): Map<number, number> {
  const parent = new Map<number, number>()
  const ticks = new Map<number, number>()
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    const f = statFields(Number(d))
    if (f === undefined) continue
    parent.set(Number(d), Number(f[1]))
    ticks.set(Number(d), Number(f[11] ?? 0) + Number(f[12] ?? 0))
  }
  const ours = (pid: number): boolean => {
    for (let p = pid, n = 0; p > 1 && n < 64; p = parent.get(p) ?? 0, n++) {
      if (p === process.pid) return true
      if (p === 2) return true // kernel threads: their work is partly ours (softirq) and not another user's
    }
    return false
  }
  for (const pid of [...ticks.keys()]) if (ours(pid)) ticks.delete(pid)
  return ticks
}

/** Other processes' CPU between two foreignTicks() snapshots, in % of one CPU. */
export function foreignPercent (before: ReadonlyMap<number, number>, after: ReadonlyMap<number, number>, wallS: number): number {
  let t = 0
  for (const [pid, v] of after) {
    const b = before.get(pid) ?? 0
    if (v >= b) t += v - b
  }
  return wallS > 0 ? 100 * t / ticksPerSecond() / wallS : 0
}
