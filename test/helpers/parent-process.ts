/**
 * A parent proxy in a child process, so a test can kill it (SIGKILL, SIGSTOP)
 * the way a real parent dies: the kernel, not the test, then closes its
 * sockets (a FIN, or a RST where bytes were left unread).
 *
 * A minimal CONNECT proxy in plain JavaScript (no build, no tsx): it reads
 * the request head, dials only loopback (`*.test` and `127.0.0.1` mean
 * 127.0.0.1; anything else gets 403), answers 200 and splices. It prints
 * its port, then a line `tunnel` for every tunnel it opened.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { within } from './wait.js'

const SCRIPT = `
const net = require('node:net')
const server = net.createServer({ allowHalfOpen: true }, (c) => {
  c.on('error', () => {})
  let buf = Buffer.alloc(0)
  const onData = (d) => {
    buf = Buffer.concat([buf, d])
    const end = buf.indexOf('\\r\\n\\r\\n')
    if (end < 0) { if (buf.length > 65536) c.destroy(); return }
    c.off('data', onData)
    const m = /^CONNECT ([^\\s:]+):(\\d{1,5}) HTTP\\/1\\.[01]\\r\\n/.exec(buf.toString('latin1'))
    const host = m === null ? '' : (m[1].endsWith('.test') ? '127.0.0.1' : m[1])
    if (host !== '127.0.0.1') { c.end('HTTP/1.1 403 Forbidden\\r\\nContent-Length: 0\\r\\n\\r\\n'); return }
    const up = net.connect({ host, port: Number(m[2]), allowHalfOpen: true })
    up.on('error', () => c.destroy())
    c.on('close', () => up.destroy())
    up.on('connect', () => {
      c.write('HTTP/1.1 200 Connection established\\r\\n\\r\\n')
      const rest = buf.subarray(end + 4)
      if (rest.length > 0) up.write(rest)
      c.pipe(up)
      up.pipe(c)
      process.stdout.write('tunnel\\n')
    })
  }
  c.on('data', onData)
})
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'))
`

export interface ParentProcess {
  readonly port: number
  readonly pid: number
  /** Resolves once the parent has reported `n` tunnels. */
  tunnels (n: number): Promise<void>
  /** Send `signal`; for SIGKILL, resolves once the process has exited. */
  kill (signal: NodeJS.Signals): Promise<void>
  /** Kill it if it still runs, and wait for its exit. */
  close (): Promise<void>
}

export async function startParentProcess (): Promise<ParentProcess> {
  const child: ChildProcess = spawn(process.execPath, ['-e', SCRIPT], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = once(child, 'exit').then(() => {})
  if (child.stdout === null || child.pid === undefined) throw new Error('parent process did not start')
  const pid = child.pid
  const lines = createInterface({ input: child.stdout })
  let tunnels = 0
  const waiters = new Set<() => void>()
  let onPort: ((port: number) => void) | undefined
  const port = new Promise<number>((resolve) => { onPort = resolve })
  lines.on('line', (line) => {
    if (line === 'tunnel') tunnels++
    else onPort?.(Number(line))
    for (const w of [...waiters]) w()
  })
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await within(exited, 'parent process exits')
  }
  try {
    const p = await within(Promise.race([port, exited.then(() => { throw new Error('parent process exited before listening') })]), 'parent process listens')
    return {
      port: p,
      pid,
      async tunnels (n) {
        await within(new Promise<void>((resolve) => {
          const check = (): void => { if (tunnels >= n) { waiters.delete(check); resolve() } }
          waiters.add(check)
          check()
        }), `parent reports ${n} tunnel(s)`)
      },
      async kill (signal) {
        child.kill(signal)
        if (signal === 'SIGKILL') await within(exited, 'parent process exits')
      },
      close
    }
  } catch (err) {
    await close()
    throw err
  }
}
