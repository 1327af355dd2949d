/**
 * Where the proxy and the load side run: with taskset, the proxy on one CPU
 * and loadgen, the origin and this driver on another, so the client is not
 * the bottleneck of a single-threaded proxy; unpinned (with a warning) when
 * that cannot be done.
 */
import { runCaptured } from './children.js'
import { allowedCpus, which } from './proc.js'
import type { Options } from './options.js'

export interface Pinning {
  readonly proxy: string[]
  readonly load: string[]
  /** Every CPU this driver had before pinning itself (its children inherit its affinity). */
  readonly all: string[]
  readonly text: string
}

/** Pin decision: both CPUs must exist, differ, and taskset must be on PATH. */
export async function pinning (o: Pick<Options, 'pin' | 'proxyCpu' | 'loadCpu'>, log: (msg: string) => void): Promise<Pinning> {
  const none = { proxy: [], load: [], all: [] }
  if (!o.pin) return { ...none, text: 'none (--no-pin)' }
  const every = [...allowedCpus()].join(',')
  const why = which('taskset') === undefined
    ? 'taskset not found'
    : o.proxyCpu === o.loadCpu
      ? '--proxy-cpu equals --load-cpu'
      : !(allowedCpus().has(o.proxyCpu) && allowedCpus().has(o.loadCpu)) ? `CPU ${o.proxyCpu} or ${o.loadCpu} not available (allowed: ${[...allowedCpus()].join(',')})` : undefined
  if (why !== undefined) {
    log(`warning: not pinning: ${why}; proxy and load generator share the CPUs`)
    return { ...none, text: `none (${why})` }
  }
  // Keep this driver (and its /proc reads) off the proxy's CPU too.
  const self = await runCaptured(['taskset', '-a', '-pc', String(o.loadCpu), String(process.pid)], 10_000)
  if (self.code !== 0) log(`warning: could not pin the driver: ${self.stderr.trim()}`)
  return {
    proxy: ['taskset', '-c', String(o.proxyCpu)],
    load: ['taskset', '-c', String(o.loadCpu)],
    all: ['taskset', '-c', every],
    text: `proxy on CPU ${o.proxyCpu}; loadgen, origin and driver on CPU ${o.loadCpu} (taskset)`
  }
}
