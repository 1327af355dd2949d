/**
 * `/tunnels` under --workers (issue 15): the primary serves the admin
 * listener, and the tunnels live in the workers. The primary asks every
 * worker over the cluster IPC channel (a message with a request id) and
 * waits a bounded time; a worker that does not answer in time is left out
 * of the list (and logged), never waited on forever. Ids are `wN-ID`, N the
 * worker, so `DELETE /tunnels/wN-ID` goes to the one worker that has it.
 */
import cluster, { type Worker } from 'node:cluster'
import type { Logger } from 'pino'
import type { TunnelFilter, TunnelInfo, TunnelSource } from './tunnels.js'

/** How long the primary waits for the workers' answers. */
export const IPC_WAIT_MS = 2000

interface AdminRequest {
  readonly sluice: 'admin'
  readonly id: number
  readonly op: 'list' | 'close'
  readonly filter?: TunnelFilter
  readonly tunnel?: string
}

interface AdminReply {
  readonly sluice: 'admin-reply'
  readonly id: number
  readonly tunnels?: TunnelInfo[]
  readonly closed?: boolean
}

const isReply = (m: unknown): m is AdminReply => typeof m === 'object' && m !== null && (m as { sluice?: unknown }).sluice === 'admin-reply'

/** In a worker: answer the primary's admin requests from `local`. True when `m` was one. */
export function answerAdminRequest (m: unknown, local: TunnelSource): boolean {
  if (typeof m !== 'object' || m === null || (m as { sluice?: unknown }).sluice !== 'admin') return false
  const req = m as AdminRequest
  const reply = (r: Omit<AdminReply, 'sluice' | 'id'>): void => { process.send?.({ sluice: 'admin-reply', id: req.id, ...r }) }
  if (req.op === 'list') local.list(req.filter ?? {}).then(tunnels => reply({ tunnels }), () => reply({ tunnels: [] }))
  else if (req.op === 'close' && typeof req.tunnel === 'string') local.close(req.tunnel).then(closed => reply({ closed }), () => reply({ closed: false }))
  return true
}

/** In the primary: every worker's tunnels, gathered over IPC. */
export function clusterTunnels (log: Logger, waitMs = IPC_WAIT_MS): TunnelSource {
  let nextId = 0
  const pending = new Map<number, (w: Worker, r: AdminReply) => void>()
  cluster.on('message', (w: Worker, m: unknown) => { if (isReply(m)) pending.get(m.id)?.(w, m) })

  /** Send `req` to `workers`; resolves with the replies that came within waitMs. */
  async function ask (workers: readonly Worker[], req: Omit<AdminRequest, 'sluice' | 'id'>): Promise<Array<{ worker: Worker, reply: AdminReply }>> {
    const id = ++nextId
    const got: Array<{ worker: Worker, reply: AdminReply }> = []
    return await new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        pending.delete(id)
        const missing = workers.filter(w => !got.some(g => g.worker === w)).map(w => w.id)
        if (missing.length > 0) log.warn({ workers: missing, wait_ms: waitMs }, 'admin: workers did not answer in time; left out')
        resolve(got)
      }
      const timer = setTimeout(done, waitMs)
      pending.set(id, (worker, reply) => {
        if (!workers.includes(worker) || got.some(g => g.worker === worker)) return
        got.push({ worker, reply })
        if (got.length === workers.length) done()
      })
      for (const w of workers) {
        // A worker whose channel is closing cannot answer: do not wait for it.
        if (w.isConnected()) w.send({ sluice: 'admin', id, ...req })
        else got.push({ worker: w, reply: { sluice: 'admin-reply', id } })
      }
      if (got.length === workers.length) done()
    })
  }

  const live = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)

  return {
    async list (filter) {
      const replies = await ask(live(), { op: 'list', filter })
      return replies
        .sort((a, b) => a.worker.id - b.worker.id)
        .flatMap(({ worker, reply }) => (reply.tunnels ?? []).map(t => ({ ...t, id: `w${worker.id}-${t.id}`, worker: worker.id })))
    },
    async close (id) {
      const m = /^w(\d+)-([0-9a-z]+)$/.exec(id)
      const worker = m === null ? undefined : cluster.workers?.[Number(m[1])]
      if (m === null || worker === undefined) return false
      const [answer] = await ask([worker], { op: 'close', tunnel: m[2] ?? '' })
      return answer?.reply.closed === true
    }
  }
}
