/**
 * The soak's mixed load: paced loops, each doing one kind of request over and
 * over until stopped, and checking every answer. Rates are modest on purpose
 * (the soak looks for leaks over time, not for the proxy's limits) and fixed,
 * so two runs are comparable:
 *
 * | loop | how many | each | pause |
 * |---|---|---|---|
 * | churn | 4 | CONNECT echo → 64 B round trip → close | 40 ms |
 * | bulk up / bulk down | 1 / 1 | 4 MiB through echo (checked by hash) / 8 MiB from the source | 250 ms |
 * | auth | 2 | as churn, from 127.0.0.2 with the cost-4 bcrypt user | 100 ms |
 * | bad password | 1 | from one of 127.0.1.1-20: 407, or 429 once locked out | 200 ms |
 * | denials | 1 | in turn: 403 (port rule), 403 (host rule), 407 (no credentials), 400, 405 | 100 ms |
 * | long | 16 | a tunnel held 10-40 s, 16 B round trip every second | – |
 */
import { createHash } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { setTimeout as sleep } from 'node:timers/promises'
import { ask, connectHead, drain, finish, SoakError, type Answer } from './soak-client.js'
import { SOURCE_BYTES } from './soak-origin.js'

export const SOAK_USER = 'soak'
export const SOAK_PASSWORD = 'soak-Secret-4'
/** Anonymous clients come from here; the `public` rule names it. */
export const ANON_ADDRESS = '127.0.0.1'
/** Authenticated clients (and anonymous probes that must get 407) come from here. */
export const AUTH_ADDRESS = '127.0.0.2'
/** Denied by the `no-discard` rule. */
export const DENIED_PORT = 9
/** Denied by the `blocked` rule, before any DNS. */
export const DENIED_HOST = 'blocked.soak.test'

export interface Targets { readonly proxy: number, readonly echo: number, readonly source: number }

/** What the load did, since the start or since the last `take()`. */
export class Tally {
  readonly ok = new Map<string, number>()
  readonly unexpected = new Map<string, number>()
  /** The first few unexpected outcomes, for the report. */
  readonly samples: string[] = []
  tunnels = 0
  denials = 0
  bytes = 0

  record (kind: string, err?: unknown): void {
    if (err === undefined) {
      this.ok.set(kind, (this.ok.get(kind) ?? 0) + 1)
      return
    }
    this.unexpected.set(kind, (this.unexpected.get(kind) ?? 0) + 1)
    const text = err instanceof Error ? `${err.name === 'SoakError' ? '' : `${(err as Error & { code?: string }).code ?? err.name}: `}${err.message}` : String(err)
    if (this.samples.length < 20) this.samples.push(`${kind}: ${text}`)
  }

  /** Counters since the previous call. */
  take (): { tunnels: number, denials: number, bytes: number } {
    const out = { tunnels: this.tunnels, denials: this.denials, bytes: this.bytes }
    this.tunnels = 0
    this.denials = 0
    this.bytes = 0
    return out
  }

  unexpectedTotal (): number {
    let n = 0
    for (const v of this.unexpected.values()) n += v
    return n
  }
}

async function expect (port: number, head: string, want: readonly number[], tally: Tally, localAddress?: string): Promise<Answer> {
  const a = await ask(port, head, localAddress)
  if (!want.includes(a.status)) {
    a.socket.destroy()
    throw new SoakError(`answered ${a.status}, expected ${want.join(' or ')}`)
  }
  if (a.status === 200) tally.tunnels++
  else {
    tally.denials++
    a.socket.destroy()
  }
  return a
}

const PING = Buffer.alloc(64, 'p')

async function echoRoundTrip (a: Answer, payload: Buffer): Promise<void> {
  a.socket.write(payload)
  const n = await drain(a.socket, a.rest, payload.length)
  if (n !== payload.length) throw new SoakError(`echo returned ${n} of ${payload.length} bytes`)
}

const UPLOAD = 4 * 1024 * 1024
const BLOCK = Buffer.from(Array.from({ length: 64 * 1024 }, (_, i) => (i * 31 + 7) & 255))

/** 4 MiB through the echo server, written with backpressure while the echo is read; both ends hashed. */
async function bulkUp (t: Targets, tally: Tally): Promise<void> {
  const a = await expect(t.proxy, connectHead(`127.0.0.1:${t.echo}`), [200], tally)
  const sent = createHash('sha1')
  const got = createHash('sha1')
  const reading = drain(a.socket, a.rest, UPLOAD, (b) => got.update(b))
  for (let off = 0; off < UPLOAD; off += BLOCK.length) {
    sent.update(BLOCK)
    if (!a.socket.write(BLOCK)) {
      await new Promise<void>((resolve, reject) => {
        a.socket.once('drain', resolve)
        a.socket.once('close', () => reject(new SoakError('closed while uploading')))
      })
    }
  }
  await reading
  if (sent.digest('hex') !== got.digest('hex')) throw new SoakError('echoed bytes differ from those sent')
  tally.bytes += 2 * UPLOAD
  await finish(a.socket)
}

async function bulkDown (t: Targets, tally: Tally): Promise<void> {
  const a = await expect(t.proxy, connectHead(`127.0.0.1:${t.source}`), [200], tally)
  const n = await drain(a.socket, a.rest, undefined)
  if (n !== SOURCE_BYTES) throw new SoakError(`source sent ${n} of ${SOURCE_BYTES} bytes`)
  tally.bytes += n
  await finish(a.socket)
}

async function churn (t: Targets, tally: Tally): Promise<void> {
  const a = await expect(t.proxy, connectHead(`127.0.0.1:${t.echo}`), [200], tally, ANON_ADDRESS)
  await echoRoundTrip(a, PING)
  await finish(a.socket)
}

async function authOk (t: Targets, tally: Tally): Promise<void> {
  const head = connectHead(`127.0.0.1:${t.echo}`, { user: SOAK_USER, password: SOAK_PASSWORD })
  const a = await expect(t.proxy, head, [200], tally, AUTH_ADDRESS)
  await echoRoundTrip(a, PING)
  await finish(a.socket)
}

let badN = 0
async function authBad (t: Targets, tally: Tally): Promise<void> {
  // 20 addresses, one try each every 4 s: each is locked out after auth.lockout.failures.
  const from = `127.0.1.${1 + (badN++ % 20)}`
  await expect(t.proxy, connectHead(`127.0.0.1:${t.echo}`, { user: SOAK_USER, password: 'wrong' }), [407, 429], tally, from)
}

let denialN = 0
async function denial (t: Targets, tally: Tally): Promise<void> {
  const cases: Array<[string, number, string]> = [
    [connectHead(`127.0.0.1:${DENIED_PORT}`), 403, ANON_ADDRESS],
    [connectHead(`${DENIED_HOST}:443`), 403, ANON_ADDRESS],
    [connectHead(`127.0.0.1:${t.echo}`), 407, AUTH_ADDRESS],
    ['CONNECT no-port.soak.test HTTP/1.1\r\nHost: no-port.soak.test\r\n\r\n', 400, ANON_ADDRESS],
    ['GET http://127.0.0.1/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', 405, ANON_ADDRESS]
  ]
  const [head, status, from] = cases[denialN++ % cases.length] ?? cases[0] ?? ['', 0, '']
  await expect(t.proxy, head, [status], tally, from)
}

/** A tunnel held 10-40 s (less if the load stops), 16 bytes echoed every second. */
async function long (t: Targets, tally: Tally, stop: AbortSignal): Promise<void> {
  const a = await expect(t.proxy, connectHead(`127.0.0.1:${t.echo}`), [200], tally, ANON_ADDRESS)
  const until = Date.now() + 10_000 + Math.random() * 30_000
  let rest = a.rest
  for (let i = 0; i < 60 && Date.now() < until && !stop.aborted; i++) {
    await echoRoundTrip({ ...a, rest }, PING.subarray(0, 16))
    rest = Buffer.alloc(0)
    await sleep(1000, undefined, { signal: stop }).catch(() => {})
  }
  await finish(a.socket)
}

interface Loop { readonly kind: string, readonly copies: number, readonly pauseMs: number, readonly op: (t: Targets, tally: Tally, stop: AbortSignal) => Promise<void> }

const LOOPS: readonly Loop[] = [
  { kind: 'churn', copies: 4, pauseMs: 40, op: churn },
  { kind: 'bulk-up', copies: 1, pauseMs: 250, op: bulkUp },
  { kind: 'bulk-down', copies: 1, pauseMs: 250, op: bulkDown },
  { kind: 'auth', copies: 2, pauseMs: 100, op: authOk },
  { kind: 'bad-password', copies: 1, pauseMs: 200, op: authBad },
  { kind: 'denial', copies: 1, pauseMs: 100, op: denial },
  { kind: 'long', copies: 16, pauseMs: 0, op: long }
]

/** Run every loop until `stop` aborts; resolves when all have finished their current request. */
export async function runLoad (t: Targets, tally: Tally, stop: AbortSignal): Promise<void> {
  // Every loop's pause listens on `stop`: 26 listeners, not a leak.
  setMaxListeners(LOOPS.reduce((n, l) => n + l.copies, 0) * 2, stop)
  const one = async (l: Loop): Promise<void> => {
    while (!stop.aborted) {
      try {
        await l.op(t, tally, stop)
        tally.record(l.kind)
      } catch (err) {
        tally.record(l.kind, err)
      }
      if (l.pauseMs > 0) await sleep(l.pauseMs, undefined, { signal: stop }).catch(() => {})
    }
  }
  await Promise.all(LOOPS.flatMap(l => Array.from({ length: l.copies }, async () => await one(l))))
}
