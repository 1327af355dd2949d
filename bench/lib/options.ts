/** bench/run.ts command line → settings. */
import { parseArgs } from 'node:util'
import type { Scenario } from './types.js'

export const HELP = `Usage: node --import tsx bench/run.ts [options]     (npm run bench -- [options])

Measures Sluice against a no-proxy "direct" baseline (and squid, tinyproxy, ats
when installed and named in --peers) with the C load generator and origin in bench/c/.

  --quick               2 reps, 256 MiB bulk, 3 s rate, 2000 held tunnels (~30 s)
  --peers LIST          peers in order (default direct,sluice; also node-net and
                        node-http (bare Node CONNECT proxies: Node's own floor), squid, tinyproxy,
                        ats (Apache Traffic Server; ATS_NET_THREADS, default 1),
                        and Sluice's variants: sluice+auth, sluice+name, sluice+bigacl,
                        sluice+hello, sluice+guard, sluice+chain, sluice+logs, sluice-w2, sluice-w2-os; these run the rate test only)
                        HTTPS proxies (TLS 1.3 from loadgen, then CONNECT inside): node-tls (bare
                        Node tls.Server), sluice-tls (a TLS listener), ats-tls (an ssl port),
                        squid-tls (https_port, when squid is built with TLS)
  --tls                 the HTTPS proxies: --peers defaults to node-tls,sluice-tls,ats-tls,squid-tls.
                        Their rate test does a full handshake per tunnel, and a second one,
                        "resume", offers each client's previous session (TLS 1.3 ticket);
                        certificates (ECDSA P-256) are made per run with the openssl CLI
  --variants LIST       add variant groups right after sluice: auth, bigacl (with its
                        control sluice+name), guard (with its control sluice+hello), chain, logs (--log-level info), workers
                        (sluice-w2: --scheduling rr, sluice-w2-os: --scheduling os)
  --skip LIST           scenarios to leave out: bulk, rate, resume, hold
  --reps N              repetitions, interleaved A B A B (default 3)
  --bulk SIZE           bytes each way through one tunnel (default 2g; k/m/g suffixes)
  --clients N           rate: concurrent clients (default 50)
  --seconds S           rate: measured seconds (default 10)
  --hold N              hold: idle tunnels (default 9000)
  --proxy-cpu N         CPU for the proxy (default 0)
  --load-cpu N          CPU for loadgen, origin and this driver (default 1)
  --noise-threshold P   re-measure bulk/rate when other processes used more than
                        P % of a CPU meanwhile (default 20)
  --noise-retries N     at most N re-measurements each (default 2; --quick 1)
  --no-pin              do not pin with taskset
  --no-build            measure dist/ as it is (no npm run build)
  --update-docs         also write docs/benchmarks.md and its charts (docs/benchmarks/*.svg)
  -h, --help            this text`

/** A bad command line (exit 2). */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** --tls without --peers. */
export const TLS_PEER_NAMES = 'node-tls,sluice-tls,ats-tls,squid-tls'

const SCENARIOS = ['bulk', 'rate', 'resume', 'hold'] as const

export interface Options {
  readonly quick: boolean
  readonly tls: boolean
  readonly peers: string
  readonly variants: string
  readonly scenarios: ReadonlySet<Scenario>
  readonly reps: number
  readonly bulkBytes: number
  readonly rateClients: number
  readonly rateSeconds: number
  readonly rateWarmupS: number
  readonly hold: number
  readonly holdSettleMs: number
  readonly noiseThresholdPct: number
  readonly noiseRetries: number
  readonly proxyCpu: number
  readonly loadCpu: number
  readonly pin: boolean
  readonly build: boolean
  readonly updateDocs: boolean
  readonly help: boolean
}

export function parseSize (text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kmg]?)i?b?$/i.exec(text.trim())
  if (m === null) throw new UsageError(`bad size '${text}' (e.g. 256m, 2g)`)
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g']
  return Math.round(Number(m[1]) * mult)
}

function int (text: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback
  const v = Number(text)
  if (!Number.isInteger(v) || v < min || v > max) throw new UsageError(`--${name} must be an integer ${min}-${max}, got '${text}'`)
  return v
}

export function parseOptions (argv: readonly string[]): Options {
  const { values: v } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      quick: { type: 'boolean' },
      tls: { type: 'boolean' },
      peers: { type: 'string' },
      variants: { type: 'string' },
      skip: { type: 'string' },
      reps: { type: 'string' },
      bulk: { type: 'string' },
      clients: { type: 'string' },
      seconds: { type: 'string' },
      hold: { type: 'string' },
      'noise-threshold': { type: 'string' },
      'noise-retries': { type: 'string' },
      'proxy-cpu': { type: 'string' },
      'load-cpu': { type: 'string' },
      'no-pin': { type: 'boolean' },
      'no-build': { type: 'boolean' },
      'update-docs': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' }
    }
  })
  const quick = v.quick === true
  const skip = new Set((v.skip ?? '').split(',').map(s => s.trim()).filter(s => s !== ''))
  for (const s of skip) if (!(SCENARIOS as readonly string[]).includes(s)) throw new UsageError(`--skip: unknown scenario '${s}' (${SCENARIOS.join(', ')})`)
  const scenarios = new Set<Scenario>(SCENARIOS.filter(s => !skip.has(s)))
  const bulkBytes = parseSize(v.bulk ?? (quick ? '256m' : '2g'))
  if (bulkBytes < 1 || bulkBytes > 64 * 1024 ** 3) throw new UsageError('--bulk must be 1 byte to 64 GiB')
  const seconds = Number(v.seconds ?? (quick ? 3 : 10))
  if (!(seconds > 0 && seconds <= 600)) throw new UsageError('--seconds must be in (0, 600]')
  const tls = v.tls === true
  return {
    quick,
    tls,
    peers: v.peers ?? (tls ? TLS_PEER_NAMES : 'direct,sluice'),
    variants: v.variants ?? '',
    scenarios,
    reps: int(v.reps, 'reps', quick ? 2 : 3, 1, 20),
    bulkBytes,
    rateClients: int(v.clients, 'clients', 50, 1, 5000),
    rateSeconds: seconds,
    rateWarmupS: quick ? 0.5 : 1,
    hold: int(v.hold, 'hold', quick ? 2000 : 9000, 1, 100_000),
    holdSettleMs: quick ? 1500 : 2000,
    noiseThresholdPct: int(v['noise-threshold'], 'noise-threshold', 20, 0, 10_000),
    noiseRetries: int(v['noise-retries'], 'noise-retries', quick ? 1 : 2, 0, 10),
    proxyCpu: int(v['proxy-cpu'], 'proxy-cpu', 0, 0, 4095),
    loadCpu: int(v['load-cpu'], 'load-cpu', 1, 0, 4095),
    pin: v['no-pin'] !== true,
    build: v['no-build'] !== true,
    updateDocs: v['update-docs'] === true,
    help: v.help === true
  }
}
