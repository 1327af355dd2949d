/**
 * How long a reload of a 20,000-rule policy stalls open tunnels (issue 11,
 * finding 6): an in-process Sluice, one tunnel to a loopback echo server
 * pinged every 5 ms, and the policy reloaded (a) the old way, parsed and
 * compiled on the event loop (parseConfig), and (b) as a reload does now
 * (loadConfigOffThread: YAML, schema, a trial compile and the index in a
 * worker thread, each rule compiled at first use). Prints the worst ping round trip and the worst
 * event-loop delay during each. Loopback only; bounded; exits by itself.
 *
 * `--under-load` measures it as issue 15 asks instead: the built proxy in
 * its own process with `admin:` on, new CONNECTs at a steady rate and
 * pinged tunnels, reloads by rename and by SIGHUP, and the proxy's own
 * event-loop lag metric beside the clients' figures (bench/lib/reload-under-load.ts).
 * As `npm run bench` does, the proxy's event loop runs on one CPU and the
 * load on another; the proxy's other threads (the validation worker that
 * parses a reload) run beside the load, or with `--pin-whole` beside the
 * event loop, as on a machine with one CPU for the proxy.
 *
 *   node --import tsx --max-semi-space-size=4 bench/reload-stall.ts [RULES]
 *   npm run bench:reload -- --under-load [RULES] [--reps N] [--rate N] [--tunnels N]
 *       [--ping-ms N] [--window-ms N] [--cpu-prof DIR] [--no-build]
 *       [--no-pin | --pin-whole] [--proxy-cpu N] [--load-cpu N]
 */
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { createLogger, createProxy, parseConfig } from '../src/index.js'
import { loadConfigOffThread } from '../src/config/load.js'
import { stopValidator } from '../src/config/validate-worker.js'
import { bigPolicy, SMALL_POLICY } from './lib/reload-policy.js'

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    'under-load': { type: 'boolean', default: false },
    reps: { type: 'string', default: '3' },
    rate: { type: 'string', default: '200' },
    tunnels: { type: 'string', default: '8' },
    'ping-ms': { type: 'string', default: '5' },
    'window-ms': { type: 'string', default: '2000' },
    'cpu-prof': { type: 'string' },
    'no-build': { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
    'pin-whole': { type: 'boolean', default: false },
    'proxy-cpu': { type: 'string', default: '0' },
    'load-cpu': { type: 'string', default: '1' }
  }
})
/** A whole number ≥ 1, or exit 2 with a usage line. */
function count (name: string, text: string | undefined): number {
  const n = Number(text)
  if (Number.isInteger(n) && n >= 1) return n
  process.stderr.write(`bench:reload: ${name}: expected a whole number >= 1, got '${String(text)}'\n`)
  process.exit(2)
}
/** A CPU number, or exit 2 with a usage line. */
function cpu (name: string, text: string | undefined): number {
  const n = Number(text)
  if (Number.isInteger(n) && n >= 0 && n <= 4095) return n
  process.stderr.write(`bench:reload: ${name}: expected a CPU number, got '${String(text)}'\n`)
  process.exit(2)
}
const RULES = count('RULES', positionals[0] ?? '20000')

if (opt['under-load']) {
  const { summary, underLoad } = await import('./lib/reload-under-load.js')
  const cpuProf = opt['cpu-prof']
  try {
    const rows = await underLoad({
      rules: RULES,
      reps: count('--reps', opt.reps),
      connectsPerS: count('--rate', opt.rate),
      tunnels: count('--tunnels', opt.tunnels),
      pingMs: count('--ping-ms', opt['ping-ms']),
      windowMs: count('--window-ms', opt['window-ms']),
      ...(cpuProf === undefined ? {} : { cpuProfDir: resolve(cpuProf) }),
      build: !opt['no-build'],
      pin: { pin: !opt['no-pin'], whole: opt['pin-whole'], proxyCpu: cpu('--proxy-cpu', opt['proxy-cpu']), loadCpu: cpu('--load-cpu', opt['load-cpu']) }
    })
    console.log(`\n${summary(rows)}`)
  } catch (err) {
    process.stderr.write(`bench:reload: setup failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exitCode = 1
  }
} else {
  await inProcess()
}

async function inProcess (): Promise<void> {
  const PING_MS = 5

  const echo = createServer(s => s.pipe(s))
  echo.listen(0, '127.0.0.1')
  await once(echo, 'listening')
  const echoPort = (echo.address() as { port: number }).port

  const dir = await mkdtemp(join(tmpdir(), 'sluice-reload-stall-'))
  const file = join(dir, 'big.yaml')
  const small = SMALL_POLICY
  const big = bigPolicy(RULES)
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
}
