/**
 * Sluice instances for the scale-out test (issue 15): the built CLI, each
 * with a config of its own in a temporary directory, on ports picked up
 * front so a restarted instance comes back where HAProxy's server line says.
 */
import { once } from 'node:events'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { serveCli, type Served } from '../helpers/cli.js'

export interface InstanceSpec {
  readonly name: string
  readonly port: number
  readonly adminPort: number
  readonly file: string
}

/** The address HAProxy connects from: a rule for it comes first and denies, so an allow proves Sluice saw the real client. */
export const BALANCER = '127.0.0.1'

/** Longer than HAProxy takes to see /readyz 503 (fall 2 × inter 200 ms, and a check's own time). */
export const DRAIN_DELAY = '1s'

/**
 * A listener that believes PROXY headers from HAProxy only, an admin
 * listener for its /readyz checks, a drain longer than any test step, and
 * a policy that allows `client` alone to reach `origins` (ports on 127.0.0.1).
 */
export function instanceConfig (spec: Omit<InstanceSpec, 'file'>, client: string, origins: readonly number[]): string {
  return `version: 1
listen:
  - address: 127.0.0.1:${spec.port}
    name: ${spec.name}
    proxy_protocol: { from: [${BALANCER}/32] }
admin:
  listen: 127.0.0.1:${spec.adminPort}
timeouts:
  drain: 60s
  drain_delay: ${DRAIN_DELAY}
rules:
  - name: balancer-itself
    action: deny
    clients: [${BALANCER}/32]
  - name: real-client
    action: allow
    clients: [${client}/32]
    ips: [127.0.0.1/32]
    ports: [${origins.join(', ')}]
`
}

/**
 * A free loopback port below the kernel's ephemeral range. A port from
 * that range (port 0) may be taken, while its instance is down, as the
 * local port of one of the thousands of connections HAProxy and Sluice
 * make meanwhile; the restart would then fail with EADDRINUSE.
 */
async function fixedPort (): Promise<number> {
  const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0])
  const top = Number.isInteger(low) && low > 11_000 ? low : 32_768
  for (let i = 0; i < 50; i++) {
    const port = 10_000 + Math.floor(Math.random() * (top - 10_000))
    const server = createServer()
    const free = await new Promise<boolean>((resolve) => {
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => resolve(true))
    })
    if (!free) continue
    const closed = once(server, 'close')
    server.close()
    await closed
    return port
  }
  throw new Error('no free port below the ephemeral range after 50 tries')
}

export async function instanceSpecs (dir: string, names: readonly string[], client: string, origins: readonly number[]): Promise<InstanceSpec[]> {
  const specs: InstanceSpec[] = []
  for (const name of names) {
    const spec = { name, port: await fixedPort(), adminPort: await fixedPort() }
    const file = join(dir, `${name}.yaml`)
    writeFileSync(file, instanceConfig(spec, client, origins))
    specs.push({ ...spec, file })
  }
  return specs
}

/** Start (or start again) an instance; resolves once it listens. */
export async function startInstance (spec: InstanceSpec): Promise<Served> {
  const s = await serveCli(['--config', spec.file])
  if (s.port !== spec.port) throw new Error(`${spec.name} listens on ${s.port}, not ${spec.port}`)
  return s
}

/** `GET /readyz` on an instance's admin port: the status, or 0 when nothing answers. */
export async function readyz (spec: InstanceSpec): Promise<number> {
  try {
    const r = await fetch(`http://127.0.0.1:${spec.adminPort}/readyz`, { signal: AbortSignal.timeout(2000) })
    await r.arrayBuffer()
    return r.status
  } catch {
    return 0
  }
}
