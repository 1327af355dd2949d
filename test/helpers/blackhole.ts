/**
 * A loopback listener that never accepts: python3 binds, calls `listen(0)`
 * and never `accept()`s. One filler connection fills its accept queue;
 * after that Linux drops further SYNs, so a connect to it hangs (SYN_SENT)
 * until the client gives up: the connect-timeout trick. Node cannot do
 * this itself, as its servers accept at once.
 *
 * (test/integration/errors.test.ts has its own copy of this for 127.0.0.1,
 * port 0.)
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { within } from './wait.js'

export interface Blackhole {
  readonly host: string
  readonly port: number
  /** Kill python and destroy the filler connection. */
  close (): Promise<void>
}

/**
 * Start one on `host` (any 127/8 address works on Linux), port `port`
 * (0: any free one). Rejects when python3 is missing or the bind fails,
 * e.g. EADDRINUSE for a fixed port.
 */
export async function startBlackhole (host = '127.0.0.1', port = 0): Promise<Blackhole> {
  const child: ChildProcess = spawn('python3', ['-c', [
    'import socket, sys',
    's = socket.socket()',
    `s.bind((${JSON.stringify(host)}, ${port}))`,
    's.listen(0)',
    'print(s.getsockname()[1], flush=True)',
    'sys.stdin.read()'
  ].join('\n')], { stdio: ['pipe', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr?.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  let running = true
  // 'error' without 'exit' when python3 cannot be spawned at all.
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => { running = false; resolve() })
    child.once('error', (err) => { running = false; stderr += `${String(err)} (python3 is required: apt-get install python3)`; resolve() })
  })
  let filler: Socket | undefined
  const close = async (): Promise<void> => {
    filler?.destroy()
    if (running) {
      child.kill()
      await within(exited, 'python blackhole exits')
    }
  }
  try {
    if (child.stdout === null) throw new Error('no stdout pipe')
    const line = once(child.stdout, 'data') as Promise<[Buffer]>
    const first = await within(Promise.race([line, exited.then(() => { throw new Error(`python3 exited: ${stderr}`) })]), 'python blackhole starts')
    const bound = Number(first[0].toString().trim())
    assert.ok(Number.isInteger(bound) && bound > 0, `python printed ${JSON.stringify(first[0].toString())}`)
    const f = connect({ host, port: bound })
    filler = f
    f.on('error', () => {})
    await within(once(f, 'connect'), 'filler connection')
    return { host, port: bound, close }
  } catch (err) {
    await close()
    throw err
  }
}
