/**
 * The header timeout (`timeouts.header`) of the explicit-proxy listener
 * (server/connect-listener.ts), for every connection still reading a head.
 */
import type { Socket } from 'node:net'

/** What the sweep needs of a connection reading a head (connect-listener.ts's HeadReader). */
export interface HeadTimed {
  readonly socket: Socket
  /** Date.now() when this head was awaited from: the accept, or the 407. */
  readonly since: number
  /** Stop reading the head. */
  detach (): void
  /** No complete head within `timeoutMs`: answer and close. */
  timedOut (timeoutMs: number): void
}

/**
 * `timeouts.header` for every connection still reading a head, on one
 * shared sweep (as the registry sweeps tunnels, server/registry.ts), not a
 * timer per socket. Precise to a quarter of the timeout, at most 1 s. The
 * timer runs while any connection reads, and stops at the first sweep that
 * finds none, so a burst of short-lived connections does not start and stop
 * it for each.
 */
export class HeadTimeouts {
  private readonly readers = new Set<HeadTimed>()
  private timer: NodeJS.Timeout | undefined
  private readonly timeoutMs: number
  private readonly everyMs: number

  constructor (timeoutMs: number) {
    this.timeoutMs = timeoutMs
    this.everyMs = Math.max(10, Math.min(1000, Math.floor(timeoutMs / 4)))
  }

  /** @internal */
  add (r: HeadTimed): void {
    this.readers.add(r)
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), this.everyMs)
      this.timer.unref()
    }
  }

  /** @internal */
  delete (r: HeadTimed): void {
    this.readers.delete(r)
  }

  /** Connections reading a head now (tests). */
  get size (): number { return this.readers.size }

  private sweep (): void {
    if (this.readers.size === 0) {
      clearInterval(this.timer)
      this.timer = undefined
      return
    }
    const due = Date.now() - this.timeoutMs
    for (const r of this.readers) {
      // Closed without an 'error' or 'end' we heard (destroyed by us): nothing to answer.
      if (r.socket.destroyed) { r.detach(); continue }
      if (r.since <= due) r.timedOut(this.timeoutMs)
    }
  }
}
