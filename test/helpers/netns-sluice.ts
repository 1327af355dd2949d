/**
 * A program, not a module: Sluice and an echo target in one process, for
 * a test to run inside a network namespace (test/helpers/netns.ts) and
 * drive over stdin/stdout, one JSON line per answer.
 *
 *   node --import tsx test/helpers/netns-sluice.ts LISTEN_HOST IDLE
 *
 * Prints `{"event":"ready","port":…,"echo":…}` once listening (Sluice on
 * LISTEN_HOST, port 0; the echo target on 127.0.0.1 of the namespace), then
 * answers commands:
 *
 * - `state`         → `{"registry":N,"connections":N,"echo":N}`
 * - `push N`        → the echo target writes N bytes into every open tunnel
 *                     (toward the client): `{"pushed":N}`
 * - `closed MS`     → the first `tunnel closed` record, waited for at most
 *                     MS ms, with `at` (ms since `mark`): `{"record":…,"at":…}`
 * - `mark`          → starts the clock for `closed`: `{"marked":true}`
 * - `quit`          → closes everything and exits: `{"bye":true}`
 */
import { createServer, type Socket } from 'node:net'
import { createInterface } from 'node:readline'
import { startSluice, LOOPBACK_ALLOWED } from './sluice.js'
import { listenOn } from './net.js'

const [listenHost = '127.0.0.1', idle = '1h'] = process.argv.slice(2)

const held = new Set<Socket>()
const echo = createServer({ allowHalfOpen: true }, (c: Socket) => {
  held.add(c)
  c.on('close', () => held.delete(c))
  c.on('error', () => {})
  c.pipe(c)
})
const echoPort = await listenOn(echo, '127.0.0.1')
const s = await startSluice(`timeouts: { idle: ${idle} }\n${LOOPBACK_ALLOWED}`, { listenHost })

const say = (v: unknown): void => { process.stdout.write(`${JSON.stringify(v)}\n`) }
let markedAt = performance.now()

say({ event: 'ready', port: s.port, echo: echoPort })

for await (const line of createInterface({ input: process.stdin })) {
  const [cmd, arg] = line.trim().split(/\s+/)
  if (cmd === 'state') {
    say({ registry: s.proxy.registry.size, connections: await s.proxy.connections(), echo: held.size })
  } else if (cmd === 'push') {
    const n = Number(arg)
    for (const c of held) c.write(Buffer.alloc(n, 0x61))
    say({ pushed: n })
  } else if (cmd === 'mark') {
    markedAt = performance.now()
    say({ marked: true })
  } else if (cmd === 'closed') {
    try {
      const record = await s.waitForLog(r => r.msg === 'tunnel closed', Number(arg))
      say({ record, at: Math.round(performance.now() - markedAt) })
    } catch (err) {
      say({ error: (err as Error).message.split('\n')[0], at: Math.round(performance.now() - markedAt) })
    }
  } else if (cmd === 'quit') {
    for (const c of held) c.destroy()
    await s.close()
    echo.close()
    say({ bye: true })
    break
  } else {
    say({ error: `unknown command ${JSON.stringify(line)}` })
  }
}
