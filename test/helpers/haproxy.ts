/**
 * A real HAProxy (Debian package `haproxy`) in TCP mode in front of Sluice
 * instances (issue 15), with a private config in a temporary directory:
 * loopback only, `send-proxy-v2` to every backend, health checks with
 * `option httpchk GET /readyz` on each backend's admin port, and a stats
 * socket the test reads server states from. Runs in the foreground (`-db`).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const HAPROXY = '/usr/sbin/haproxy'

/** Why HAProxy cannot run here, or undefined when it can. */
export function haproxyMissing (): string | undefined {
  return existsSync(HAPROXY) ? undefined : `${HAPROXY} not found (apt-get install haproxy)`
}

export interface Backend {
  readonly name: string
  /** Sluice's proxy listener (PROXY protocol from 127.0.0.1). */
  readonly port: number
  /** Sluice's admin listener: where /readyz is checked. */
  readonly adminPort: number
}

export interface HaproxyOptions {
  readonly port: number
  readonly backends: readonly Backend[]
  /** Health-check interval (ms); `fall` and `rise` are 2. */
  readonly interMs: number
  /** `option redispatch 1`: every retry of a failed connect goes to another server. */
  readonly redispatch: boolean
}

/**
 * The configuration: the same as README "Behind a load balancer" shows,
 * with loopback addresses and the test's ports.
 */
export function haproxyConfig (opts: HaproxyOptions, statsSocket: string): string {
  return [
    'global',
    `  stats socket ${statsSocket} level admin`,
    '',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  retries 3',
    // A refused connect (an instance that is gone) is tried again on another one.
    ...(opts.redispatch ? ['  option redispatch 1'] : []),
    '',
    'frontend sluice',
    `  bind 127.0.0.1:${opts.port}`,
    '  default_backend sluice',
    '',
    'backend sluice',
    '  balance roundrobin',
    '  option httpchk GET /readyz',
    '  http-check expect status 200',
    `  default-server send-proxy-v2 check inter ${opts.interMs}ms fall 2 rise 2`,
    ...opts.backends.map(b => `  server ${b.name} 127.0.0.1:${b.port} check port ${b.adminPort}`),
    ''
  ].join('\n')
}

export interface Haproxy {
  readonly port: number
  readonly dir: string
  readonly config: string
  /** stdout and stderr so far. */
  output (): string
  /** A command on the stats socket (`show stat`, …): its whole answer. */
  command (cmd: string): Promise<string>
  /** Server name → status (`UP`, `DOWN`, `UP 1/2`, `DOWN 1/2`, `MAINT`, …) from `show stat`. */
  states (): Promise<Record<string, string>>
  /** Poll `show stat` (bounded: at most `attempts` × 20 ms) until `server` is exactly `status`. */
  waitFor (server: string, status: 'UP' | 'DOWN', attempts?: number): Promise<void>
  close (): Promise<void>
}

const pause = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

async function ask (socket: string, cmd: string): Promise<string> {
  return await new Promise((resolve, reject) => {
    const s = connect(socket)
    let text = ''
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`stats socket: no answer to ${cmd} within 5 s`)) }, 5000)
    s.setEncoding('utf8')
    s.on('data', (d: string) => { text += d })
    s.once('error', (err) => { clearTimeout(timer); reject(err) })
    s.once('end', () => { clearTimeout(timer); resolve(text) })
    s.end(`${cmd}\n`)
  })
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

export async function startHaproxy (opts: HaproxyOptions): Promise<Haproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-haproxy-'))
  const statsSocket = join(dir, 'stats.sock')
  const config = haproxyConfig(opts, statsSocket)
  const file = join(dir, 'haproxy.cfg')
  writeFileSync(file, config)
  const child = spawn(HAPROXY, ['-f', file, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (s: string) => { output += s })
  child.stderr.setEncoding('utf8').on('data', (s: string) => { output += s })
  child.on('error', (err) => { output += String(err) })
  const command = async (cmd: string): Promise<string> => await ask(statsSocket, cmd)

  async function states (): Promise<Record<string, string>> {
    const lines = (await command('show stat')).split('\n').filter(l => l !== '')
    const header = (lines[0] ?? '').replace(/^# /, '').split(',')
    const [px, sv, st] = ['pxname', 'svname', 'status'].map(h => header.indexOf(h))
    const out: Record<string, string> = {}
    for (const l of lines.slice(1)) {
      const f = l.split(',')
      if (f[px ?? -1] === 'sluice' && !['FRONTEND', 'BACKEND'].includes(f[sv ?? -1] ?? '')) out[f[sv ?? -1] ?? ''] = f[st ?? -1] ?? ''
    }
    return out
  }

  // Up: the stats socket answers (the frontend is bound before it does).
  let up = false
  for (let i = 0; i < 250 && !up; i++) {
    if (child.exitCode !== null || child.signalCode !== null) break
    up = await command('show info').then(t => t.includes('Name: HAProxy'), () => false)
    if (!up) await pause(20)
  }
  if (!up) {
    await stop(child)
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`haproxy did not start:\n${output}\n${config}`)
  }

  let closing: Promise<void> | undefined
  return {
    port: opts.port,
    dir,
    config,
    output: () => output,
    command,
    states,
    async waitFor (server, status, attempts = 250) {
      let last: Record<string, string> = {}
      for (let i = 0; i < attempts; i++) {
        last = await states()
        if (last[server] === status) return
        await pause(20)
      }
      throw new Error(`haproxy: ${server} not ${status} after ${attempts} polls; states ${JSON.stringify(last)}\n${output}`)
    },
    close () {
      closing ??= (async () => {
        await stop(child)
        rmSync(dir, { recursive: true, force: true })
      })()
      return closing
    }
  }
}
