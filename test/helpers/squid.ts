/**
 * A real squid (Debian package `squid`) as a parent proxy for interop tests,
 * with a private config in a temporary directory: loopback only, Basic auth
 * from an htpasswd file (bcrypt `$2y$`, written with bcryptjs), CONNECT
 * allowed for authenticated users, no cache, and DNS pointed at 127.0.0.1
 * so it can never send a packet off the machine.
 *
 * squid drops privileges to `proxy`; when the tests run as root the
 * directory and its files are handed to that user first.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { chownSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import bcrypt from 'bcryptjs'
import { closedPort } from './net.js'

export const SQUID = '/usr/sbin/squid'
export const NCSA_AUTH = '/usr/lib/squid/basic_ncsa_auth'

/** Why squid cannot run here, or undefined when it can. */
export function squidMissing (): string | undefined {
  for (const f of [SQUID, NCSA_AUTH]) if (!existsSync(f)) return `${f} not found (apt-get install squid)`
  return undefined
}

export interface Squid {
  readonly port: number
  /** `127.0.0.1:PORT` */
  readonly authority: string
  readonly dir: string
  /** access.log as it is now ('' before the first entry). */
  accessLog (): string
  /** Resolves with the access.log lines matching `pred` once there are `n` (bounded poll). */
  waitForAccess (pred: (line: string) => boolean, n?: number, timeoutMs?: number): Promise<string[]>
  cacheLog (): string
  /** SIGTERM, then SIGKILL if it has not exited within 5 s; removes the directory. */
  close (): Promise<void>
}

export interface SquidOptions {
  /** user → password for squid's Basic auth. */
  readonly users: Readonly<Record<string, string>>
}

async function accepts (port: number): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' })
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

const pause = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

function read (file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

/** The uid and gid squid switches to (`cache_effective_user proxy`). */
function proxyIds (): { uid: number, gid: number } {
  const uid = Number(execFileSync('id', ['-u', 'proxy'], { encoding: 'utf8' }).trim())
  const gid = Number(execFileSync('id', ['-g', 'proxy'], { encoding: 'utf8' }).trim())
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error('cannot find the proxy user')
  return { uid, gid }
}

function config (dir: string, port: number): string {
  return [
    `http_port 127.0.0.1:${port}`,
    'pid_filename none',
    'cache deny all',
    'cache_mem 8 MB',
    `access_log stdio:${join(dir, 'access.log')}`,
    `cache_log ${join(dir, 'cache.log')}`,
    'cache_store_log none',
    // Never a DNS packet off loopback (targets are IP literals anyway).
    'dns_nameservers 127.0.0.1',
    'visible_hostname sluice-test',
    'pinger_enable off',
    'icp_port 0',
    'htcp_port 0',
    'snmp_port 0',
    `auth_param basic program ${NCSA_AUTH} ${join(dir, 'passwd')}`,
    'auth_param basic realm sluice-test',
    'acl authed proxy_auth REQUIRED',
    'acl CONNECT method CONNECT',
    'http_access deny !authed',
    'http_access allow CONNECT',
    'http_access deny all',
    'shutdown_lifetime 0 seconds',
    ''
  ].join('\n')
}

async function stop (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = once(child, 'exit')
  child.kill('SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => { child.kill('SIGKILL'); resolve() }, 5000)
  })
  await Promise.race([exited, killed])
  clearTimeout(timer)
  if (child.exitCode === null && child.signalCode === null) await exited
}

export async function startSquid (opts: SquidOptions): Promise<Squid> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-squid-'))
  try {
    // basic_ncsa_auth on Debian 12 accepts bcrypt as htpasswd -B writes it ($2y$).
    const passwd = Object.entries(opts.users)
      .map(([user, pw]) => `${user}:${bcrypt.hashSync(pw, 5).replace(/^\$2[ab]\$/, '$2y$')}`)
      .join('\n') + '\n'
    writeFileSync(join(dir, 'passwd'), passwd)
    writeFileSync(join(dir, 'access.log'), '')
    writeFileSync(join(dir, 'cache.log'), '')
    const root = process.getuid?.() === 0
    const ids = root ? proxyIds() : undefined

    for (let attempt = 1; attempt <= 5; attempt++) {
      const port = await closedPort()
      writeFileSync(join(dir, 'squid.conf'), config(dir, port))
      if (ids !== undefined) {
        for (const f of ['', 'passwd', 'access.log', 'cache.log', 'squid.conf']) chownSync(join(dir, f), ids.uid, ids.gid)
        // Verify the hand-over: squid (as proxy) must be able to write its logs here.
        if (statSync(dir).uid !== ids.uid || statSync(join(dir, 'access.log')).uid !== ids.uid) throw new Error(`could not chown ${dir} to proxy`)
      }
      const child = spawn(SQUID, ['-N', '-f', join(dir, 'squid.conf')], { stdio: ['ignore', 'pipe', 'pipe'] })
      let output = ''
      child.stdout.on('data', (c: Buffer) => { output += c.toString() })
      child.stderr.on('data', (c: Buffer) => { output += c.toString() })
      child.on('error', (err) => { output += String(err) })

      // Wait until it accepts connections, or exits (e.g. the port was taken meanwhile).
      const deadline = Date.now() + 15_000
      let up = false
      for (let i = 0; i < 300 && Date.now() < deadline; i++) {
        if (child.exitCode !== null || child.signalCode !== null) break
        if (await accepts(port)) { up = true; break }
        await pause(50)
      }
      if (!up) {
        await stop(child)
        const log = read(join(dir, 'cache.log'))
        if (/bind|Address already in use/i.test(log + output) && attempt < 5) continue
        throw new Error(`squid did not start on 127.0.0.1:${port}:\n${output}\n${log}`)
      }

      const accessLog = (): string => read(join(dir, 'access.log'))
      let closing: Promise<void> | undefined
      return {
        port,
        authority: `127.0.0.1:${port}`,
        dir,
        accessLog,
        cacheLog: () => read(join(dir, 'cache.log')),
        async waitForAccess (pred, n = 1, timeoutMs = 5000) {
          const end = Date.now() + timeoutMs
          for (let i = 0; i < 1000; i++) {
            const lines = accessLog().split('\n').filter(l => l !== '' && pred(l))
            if (lines.length >= n) return lines
            if (Date.now() > end) break
            await pause(25)
          }
          throw new Error(`squid access.log: wanted ${n} matching line(s); have:\n${accessLog()}`)
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
    throw new Error('squid: no free port after 5 attempts')
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}
