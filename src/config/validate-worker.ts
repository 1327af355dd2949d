/**
 * config/load.ts validateText (YAML + schema) in a worker thread, for
 * reloads (issue 11, finding 6): parsing a 20,000-rule file is ~1 s of CPU
 * that would otherwise stall every open tunnel. The worker also compiles
 * every rule once (a rule that cannot compile rejects the reload here) and
 * builds the rule index and, with `admin:`, the PAC table. The validated
 * file comes back in one message: its settings as plain data, its rules
 * packed as one JSON text (policy/rule-source.ts), the PAC table as
 * another, and the index as typed arrays
 * (policy/rule-index.ts), so the event loop receives a few objects, not
 * one per rule (issue 15: those were what stalled tunnels during a reload).
 *
 * This module is both the caller's side (validateInWorker) and the
 * worker's entry: the worker runs it with `isMainThread` false.
 */
import { createHash } from 'node:crypto'
import { setPriority } from 'node:os'
import { isMainThread, parentPort, Worker } from 'node:worker_threads'
import type { RuleIndexWire } from '../policy/rule-index.js'
import type { PackedRules } from '../policy/rule-source.js'
import type { SluiceFile } from './schema.js'
import { ConfigError } from './errors.js'

type Message =
  | { readonly kind: 'file', readonly f: SluiceFile, readonly rules: PackedRules, readonly index?: RuleIndexWire, readonly pac?: string, readonly sha256?: string }
  | { readonly kind: 'error', readonly problems?: readonly string[], readonly error?: string }

/**
 * This module as a worker. Run from source under tsx (the tests), a worker
 * does not inherit tsx's loader on Node 20, so it registers it first; tsx
 * is a devDependency and is looked up only then. From dist/ it is plain JS.
 */
function startWorker (): Worker {
  const self = new URL(import.meta.url)
  if (!self.pathname.endsWith('.ts')) return new Worker(self)
  const tsx = import.meta.resolve('tsx/esm/api')
  return new Worker(`import(${JSON.stringify(tsx)}).then(m => { m.register(); return import(${JSON.stringify(self.href)}) })`, { eval: true })
}

/**
 * One worker, started on the first reload and kept (unref'd) for the next:
 * terminating a worker joins its thread, and the main thread then waits
 * while a heap that held a 20,000-rule document is torn down (~50 ms).
 */
let worker: Worker | undefined
let nextId = 0
const waiting = new Map<number, { file: string, worker: Worker, resolve: (v: Validated) => void, reject: (err: Error) => void }>()

/** A file validated by the worker, with the sha256 (hex) of its bytes when it was sent bytes. */
export interface Validated {
  /** Everything but the rules (`f.rules` is empty). */
  readonly f: SluiceFile
  /** The rules, packed (policy/rule-source.ts RuleSource.unpack). */
  readonly rules: PackedRules
  /** The rule index the worker built (policy/compile.ts lazyPolicy); none for a small policy. */
  readonly index?: RuleIndexWire
  /** With `admin:`, the PAC table (admin/pac.ts pacTable) as JSON text: the event loop parses it at the first /proxy.pac. */
  readonly pac?: string
  readonly sha256?: string
}

function validator (): Worker {
  if (worker !== undefined) return worker
  const w = startWorker()
  w.on('message', (m: Message & { id: number }) => {
    const job = waiting.get(m.id)
    if (job === undefined) return
    waiting.delete(m.id)
    if (m.kind === 'file') {
      job.resolve({ f: m.f, rules: m.rules, ...(m.index === undefined ? {} : { index: m.index }), ...(m.pac === undefined ? {} : { pac: m.pac }), ...(m.sha256 === undefined ? {} : { sha256: m.sha256 }) })
    } else {
      job.reject(new ConfigError(job.file, [...(m.problems ?? [`${job.file}: ${m.error ?? 'validation failed'}`])]))
    }
  })
  const fail = (err: Error): void => {
    if (worker === w) worker = undefined
    // Only this worker's jobs: a worker stopped by stopValidator exits (code 1) after a new one may have taken a job.
    for (const [id, job] of waiting) {
      if (job.worker !== w) continue
      waiting.delete(id)
      job.reject(err)
    }
  }
  w.on('error', fail)
  w.on('exit', (code) => fail(new Error(`config validation worker exited with ${code}`)))
  // After the listeners: adding a 'message' listener refs the worker's port again.
  w.unref()
  worker = w
  return w
}

/** From this many rules a reloader warms the worker at start (config/reloader.ts). */
export const WARM_RULES = 1000

/**
 * Start the worker now, idle, with the parser loaded, rather than at the
 * first reload: for a large policy (cli/serve.ts, cli/cluster.ts) the first
 * reload otherwise also paid the thread's start and its imports, the
 * longest stall under load (issue 15, npm run bench:reload -- --under-load).
 */
export function warmValidator (): void {
  validator().postMessage({ id: 0, warm: true })
}

/**
 * Validate `text` off the event loop; throws ConfigError as validateText
 * does. Bytes are decoded and hashed by the worker: on the event loop,
 * decoding 1.3 MB took ~5 ms of a reload, and each sha256 of it ~3 (issue 15).
 */
export async function validateInWorker (text: string | Uint8Array, file: string): Promise<Validated> {
  const w = validator()
  const id = ++nextId
  // Held (ref'd) only while a validation is pending: an idle worker never keeps the process alive.
  w.ref()
  try {
    return await new Promise<Validated>((resolve, reject) => {
      waiting.set(id, { file, worker: w, resolve, reject })
      w.postMessage({ id, text, file })
    })
  } finally {
    if (waiting.size === 0) w.unref()
  }
}

/** Stop the worker when idle (a reloader closing); the next validation starts a new one. */
export async function stopValidator (): Promise<void> {
  const w = worker
  if (w === undefined || [...waiting.values()].some(j => j.worker === w)) return
  worker = undefined
  await w.terminate()
}

/**
 * The worker's nice value on Linux. Under load on a busy machine the
 * parse's CPU was taken from the event loop: with 2 CPUs shared, CONNECTs
 * queued behind a 20,000-rule reload for up to 1.8 s (issue 15, npm run
 * bench:reload -- --under-load). Lower priority, it gets what is left over:
 * an idle machine still gives it a whole CPU, a busy one a longer reload.
 */
export const WORKER_NICE = 10

if (!isMainThread && parentPort !== null) {
  const port = parentPort
  // Linux keeps a nice value per thread, and setpriority(pid 0) names the
  // calling thread: only this worker. Elsewhere it would be the whole process.
  if (process.platform === 'linux') {
    try { setPriority(WORKER_NICE) } catch { /* not allowed: run at the process's priority */ }
  }
  const send = (id: number, m: Message): void => port.postMessage({ ...m, id })
  port.on('message', (req: { id: number, text: string | Uint8Array, file: string } | { id: number, warm: true }) => {
    const modules = Promise.all([import('./load.js'), import('../policy/compile.js'), import('../policy/rule-source.js'), import('../admin/pac.js')])
    if ('warm' in req) { modules.catch(() => {}); return }
    const { id, text, file } = req
    modules.then(([{ validateText }, { checkCompiles }, { packRules }, { pacTable }]) => {
      try {
        // As readFile(file, 'utf8') would: a BOM is kept, invalid bytes become U+FFFD.
        const f = validateText(typeof text === 'string' ? text : Buffer.from(text.buffer, text.byteOffset, text.byteLength).toString('utf8'), file).f
        // Every rule compiled once here, and the index built: the event loop then does neither (policy/compile.ts lazyPolicy).
        const index = checkCompiles(f.rules)
        const sha256 = typeof text === 'string' ? undefined : createHash('sha256').update(text).digest('hex')
        const rules = packRules(f.rules)
        // One string, whatever the policy's size: a table of objects would be deserialised object by object.
        const pac = f.admin === undefined ? undefined : JSON.stringify(pacTable(f.rules, f.default, f.mode))
        port.postMessage({ kind: 'file', id, f: { ...f, rules: [] }, rules, ...(index === undefined ? {} : { index }), ...(pac === undefined ? {} : { pac }), ...(sha256 === undefined ? {} : { sha256 }) },
          // Moved, not copied: the typed arrays' memory changes hands.
          [rules.ends.buffer as ArrayBuffer, ...(index === undefined ? [] : transferables(index))])
      } catch (err) {
        send(id, err instanceof ConfigError ? { kind: 'error', problems: err.problems } : { kind: 'error', error: String(err) })
      }
    }, (err: unknown) => send(id, { kind: 'error', error: String(err) }))
  })
}

/** The buffers under an index's typed arrays, each once. */
function transferables (w: RuleIndexWire): ArrayBuffer[] {
  const tables = [w.exact, w.suffix, ...w.v4.map(([, t]) => t), ...w.v6.map(([, t]) => t)]
  const buffers = [w.always.buffer, w.alwaysOrIps.buffer, w.ipsNoUsers.buffer, ...tables.flatMap(t => [t.keyEnds.buffer, t.listEnds.buffer, t.rules.buffer])]
  return [...new Set(buffers)] as ArrayBuffer[]
}
