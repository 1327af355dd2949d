/**
 * How long a reload of a 20,000-rule policy stalls open tunnels (issue 11,
 * finding 6): an in-process Sluice, one tunnel to a loopback echo server
 * pinged every 5 ms, and the policy reloaded (a) the old way, parsed and
 * compiled on the event loop (parseConfig), and (b) as a reload does now
 * (loadConfigOffThread: YAML and schema in a worker thread, the policy
 * compiled in slices). Prints the worst ping round trip and the worst
 * event-loop delay during each. Loopback only; bounded; exits by itself.
 *
 *   node --import tsx --max-semi-space-size=4 bench/reload-stall.ts [RULES]
 */
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { createLogger, createProxy, parseConfig } from '../src/index.js'
import { loadConfigOffThread } from '../src/config/load.js'
import { stopValidator } from '../src/config/validate-worker.js'

const RULES = Number(process.argv[2] ?? 20_000)
const PING_MS = 5

const echo = createServer(s => s.pipe(s))
echo.listen(0, '127.0.0.1')
await once(echo, 'listening')
const echoPort = (echo.address() as { port: number }).port

const dir = await mkdtemp(join(tmpdir(), 'sluice-reload-stall-'))
const file = join(dir, 'big.yaml')
const small = 'version: 1\nrules:\n  - { name: lo, action: allow, ips: [127.0.0.0/8] }\n'
const rules = Array.from({ length: RULES }, (_, i) => `  - { name: net-${i}, action: deny, ips: [10.${(i >> 8) & 255}.${i & 255}.0/24] }`).join('\n')
const big = `version: 1\nrules:\n${rules}\n  - { name: lo, action: allow, ips: [127.0.0.0/8] }\n`
await writeFile(file, big)

const proxy = createProxy({ config: parseConfig(small, 'small.yaml'), logger: createLogger({ level: 'silent' }), listen: [{ host: '127.0.0.1', port: 0 }] })
const [addr] = await proxy.listen()
const client: Socket = connect(addr?.port ?? 0, '127.0.0.1')
await once(client, 'connect')
client.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\n\r\n`)
await once(client, 'data')

/** Ping the tunnel every PING_MS while `work` runs; the worst round trip and loop delay. */
async function during (label: string, work: () => Promise<void>): Promise<void> {
  let worst = 0
  let sent = 0
  const state = { pinging: true }
  const loop = (async () => {
    while (state.pinging) {
      sent = performance.now()
      client.write('x')
      await once(client, 'data')
      worst = Math.max(worst, performance.now() - sent)
      await new Promise(resolve => setTimeout(resolve, PING_MS))
    }
  })()
  const h = monitorEventLoopDelay({ resolution: 1 })
  h.enable()
  const started = performance.now()
  await work()
  const took = performance.now() - started
  // One more timer turn, so a loop blocked until now is sampled.
  await new Promise(resolve => setTimeout(resolve, 5))
  h.disable()
  state.pinging = false
  await loop
  console.log(`${label}: reload took ${took.toFixed(0)} ms; worst tunnel ping ${worst.toFixed(1)} ms; worst event-loop delay ${(h.max / 1e6).toFixed(1)} ms`)
}

// The reload as it is first, before the old way's garbage (hundreds of MB) weighs on the collector.
for (let rep = 0; rep < 3; rep++) {
  await during(`off the loop (loadConfigOffThread), ${RULES} rules`, async () => { proxy.reload(await loadConfigOffThread(file)) })
  proxy.reload(parseConfig(small, 'small.yaml'))
}
for (let rep = 0; rep < 2; rep++) {
  await during(`on the event loop (parseConfig, as before issue 11), ${RULES} rules`, async () => { proxy.reload(parseConfig(big, file)) })
  proxy.reload(parseConfig(small, 'small.yaml'))
}

client.destroy()
await proxy.close(0)
echo.close()
await stopValidator()
await rm(dir, { recursive: true, force: true })
