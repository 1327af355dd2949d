/**
 * Bounded waits that are not sleeps: event-loop turns until a condition
 * holds, and a failure bound on a promise.
 */
import assert from 'node:assert/strict'
import { setImmediate as immediate } from 'node:timers/promises'
import type { Proxy } from '../../src/index.js'

/** Run `step` on setImmediate turns until it returns true, at most `max` turns; false if it never did. */
export async function pollImmediate (max: number, step: () => boolean | Promise<boolean>): Promise<boolean> {
  // A synchronous step is not awaited: each turn is exactly one setImmediate.
  const holds = async (): Promise<boolean> => { const r = step(); return typeof r === 'boolean' ? r : await r }
  for (let i = 0; i < max; i++) {
    if (await holds()) return true
    await immediate()
  }
  return await holds()
}

/** Reject with `timed out: ${what}` if `p` has not settled within `ms`: a failure bound, not synchronisation. */
export async function within<T> (p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return await Promise.race([p, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms) })])
    .finally(() => clearTimeout(timer))
}

/**
 * Wait until the proxy's open connection count drops to 0: sockets answered
 * by the HTTP layer (405/400/408/431) leave no log record, and their server
 * side closes as libuv runs its close callbacks, so the count gets a
 * bounded number of event-loop turns to get there. Resolves with the last count.
 */
export async function connectionsDrained (proxy: Pick<Proxy, 'connections'>, turns = 50): Promise<number> {
  let n = -1
  await pollImmediate(turns, async () => {
    n = await proxy.connections()
    return n === 0
  })
  return n
}

/**
 * After a group: no tunnel in the registry and no open client connection.
 * Callers have already waited for every `tunnel closed` record.
 */
export async function assertNothingOpen (s: { readonly proxy: Pick<Proxy, 'registry' | 'connections'> }): Promise<void> {
  assert.equal(s.proxy.registry.size, 0)
  assert.equal(await connectionsDrained(s.proxy), 0)
}
