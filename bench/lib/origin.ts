/**
 * The C origin (bench/c/origin.c): echo, sink and source ports on 127.0.0.1,
 * pinned with the load generator. Ready when it prints its READY line.
 */
import { closeSync, openSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { join } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import { spawnTracked, stopChild } from './children.js'
import { freePort } from './process-peer.js'
import type { OriginPorts } from './types.js'

export interface Origin {
  readonly ports: OriginPorts
  readonly pid: number | undefined
  stop (): Promise<void>
}

async function firstLine (child: ChildProcess, timeoutMs: number): Promise<string | undefined> {
  if (child.stdout === null) return undefined
  const rl = createInterface({ input: child.stdout })
  try {
    return await new Promise<string | undefined>((resolve) => {
      const t = setTimeout(() => resolve(undefined), timeoutMs)
      rl.once('line', (l) => { clearTimeout(t); resolve(l) })
      rl.once('close', () => { clearTimeout(t); resolve(undefined) })
    })
  } finally {
    rl.close()
    child.stdout.resume() // keep draining whatever else it prints (nothing with --quiet)
  }
}

/** `extra`: more origin flags (`--tls-hello` in the SNI mode). */
export async function startOrigin (bin: string, prefix: readonly string[], logDir: string, extra: readonly string[] = []): Promise<Origin> {
  let lastError = ''
  for (let attempt = 0; attempt < 5; attempt++) {
    const ports = { echo: await freePort(), sink: await freePort(), source: await freePort() }
    const fd = openSync(join(logDir, 'origin.log'), 'a')
    let child: ChildProcess
    try {
      child = spawnTracked([...prefix, bin, '--echo', String(ports.echo), '--sink', String(ports.sink),
        '--source', String(ports.source), '--quiet', ...extra], { stdio: ['ignore', 'pipe', fd] })
    } finally {
      closeSync(fd)
    }
    const line = await firstLine(child, 10_000)
    if (line?.startsWith('READY') === true) {
      return { ports, pid: child.pid, stop: async () => await stopChild(child, 3000) }
    }
    lastError = line ?? 'no READY line within 10 s'
    await stopChild(child, 1000)
  }
  throw new Error(`origin failed to start: ${lastError} (see ${join(logDir, 'origin.log')})`)
}
