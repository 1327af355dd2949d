/**
 * How a serving process's drain starts, in one place (issue 15, "a preStop
 * that drains"): an OS signal (SIGTERM/SIGINT), `POST /drain` on the admin
 * listener, or, in a --workers worker, the primary's request. Whichever
 * comes first starts the one drain; the others find it running.
 *
 * Only OS signals count towards "a second signal exits at once": an
 * operator who signals twice means it. A drain started another way
 * (a Kubernetes preStop running `sluice drain`, the primary forwarding its
 * own signal) makes the OS signal that follows the *first* one: the kubelet
 * sends SIGTERM as soon as the hook returns, and that must change nothing.
 */
import type { Logger } from 'pino'
import type { DrainStatus } from '../admin/server.js'

/** What started a drain: the OS signal's name, `admin` (POST /drain) or `primary` (a --workers worker). */
export type DrainCause = NodeJS.Signals | 'admin' | 'primary'

export interface ShutdownOptions {
  readonly log: Logger
  /** The drain's timings, read when it starts (the running config's timeouts). */
  readonly timeouts: () => { readonly drain: number, readonly drain_delay: number }
  /** Start the drain with these timings; called once. */
  readonly drain: (drainMs: number, delayMs: number) => void
  /** A second OS signal: stop now. */
  readonly exitNow: (signal: NodeJS.Signals) => void
  /** The log lines' messages when an OS signal starts the drain, and at the second one (the primary's speak of its workers). */
  readonly messages?: { readonly signal?: string, readonly second?: string }
  readonly now?: () => number
}

export interface Shutdown {
  /** An OS signal: starts the drain, changes nothing if another cause started it, or (the second one) exits now. */
  signal (signal: NodeJS.Signals): void
  /** POST /drain or the primary's request: starts the drain once; its status, the same on every call. */
  request (cause: 'admin' | 'primary', fields?: Record<string, unknown>): DrainStatus
  /** The running drain, if one started. */
  status (): DrainStatus | undefined
}

export function createShutdown (opts: ShutdownOptions): Shutdown {
  const { log } = opts
  const now = opts.now ?? Date.now
  let running: DrainStatus | undefined
  let signalled = false

  function start (cause: DrainCause, fields: Record<string, unknown>): DrainStatus {
    if (running !== undefined) return running
    const { drain, drain_delay: delay } = opts.timeouts()
    const at = now()
    running = Object.freeze({
      state: 'draining',
      by: cause,
      started_at: new Date(at).toISOString(),
      drain_delay_ms: delay,
      drain_ms: drain,
      // The listeners close here, and open tunnels are closed at the deadline (server/proxy.ts close()).
      accepting_until: new Date(at + delay).toISOString(),
      deadline: new Date(at + delay + drain).toISOString()
    })
    const signal = cause === 'admin' || cause === 'primary' ? {} : { signal: cause }
    log.info({ ...signal, ...fields, by: cause, drain_delay_ms: delay, drain_ms: drain }, cause === 'admin'
      ? 'drain asked for on the admin listener: graceful shutdown'
      : cause === 'primary' ? 'drain asked for by the primary: graceful shutdown' : (opts.messages?.signal ?? 'signal received: graceful shutdown'))
    opts.drain(drain, delay)
    return running
  }

  return {
    signal (signal) {
      if (signalled) {
        log.warn({ signal }, opts.messages?.second ?? 'second signal: exiting now')
        opts.exitNow(signal)
        return
      }
      signalled = true
      if (running === undefined) { start(signal, {}); return }
      // The kubelet's SIGTERM after a preStop's `sluice drain`, or Ctrl-C reaching a worker the primary already drains.
      log.info({ signal, by: running.by }, 'signal received: already draining')
    },
    request (cause, fields = {}) {
      return start(cause, fields)
    },
    status: () => running
  }
}
