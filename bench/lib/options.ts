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
                        sluice+hello, sluice+guard, sluice+chain, sluice+logs, sluice+metrics, sluice-w2, sluice-w2-os; these run the rate test only)
                        HTTPS proxies (TLS 1.3 from loadgen, then CONNECT inside): node-tls (bare
                        Node tls.Server), sluice-tls (a TLS listener), ats-tls (an ssl port),
                        squid-tls (https_port, when squid is built with TLS)
                        SNI passthrough listeners (no CONNECT; --sni only, beside direct):
                        sluice-sni (a kind: sni listener), node-sni (a bare Node SNI
                        passthrough), haproxy-sni, sniproxy
                        TLS termination (no CONNECT; --terminate only, beside direct):
                        sluice-terminate (a kind: terminate listener), ats-terminate
                        (ATS sni.yaml partial_blind_route), sluice-sni (passthrough)
  --mode MODE           connect (default), tls (as --tls), sni (as --sni) or
                        terminate (as --terminate)
  --tls                 the HTTPS proxies: --peers defaults to node-tls,sluice-tls,ats-tls,squid-tls.
                        Their rate test does a full handshake per tunnel, and a second one,
                        "resume", offers each client's previous session (TLS 1.3 ticket);
                        certificates (ECDSA P-256) are made per run with the openssl CLI
  --sni                 SNI passthrough listeners (issue 14): each connection sends a TLS 1.3
                        ClientHello (echo.test, sink.test, source.test) instead of a CONNECT;
                        --peers defaults to direct,sluice-sni,node-sni,haproxy-sni,sniproxy.
                        Also the split scenario: a short rate test per peer with the hello
                        cut mid server_name into two TCP writes (tcp) and two TLS records
                        (records), each passed or failed
  --terminate           TLS termination + re-origination (issue 14): each connection does a
                        full TLS 1.3 handshake (SNI echo.test, sink.test or source.test, the
                        certificate verified) to the peer, no CONNECT; the origin is HAProxy
                        with TLS (one thread, load CPU) in front of the C origin;
                        --peers defaults to direct,sluice-terminate,sluice-sni,ats-terminate.
                        rate counts full handshakes/s; its latency is connect + handshake
                        -> first echoed byte
  --sni-split MODE      --sni: send every hello (all scenarios) in two writes: tcp or records
  --sni-gap-ms N        --sni: pause between the two writes (default 5)
  --sni-pad N           --sni: pad the ClientHello to about N bytes (default: unpadded, ~200);
                        past 16000 it needs two records: --sni-split records --skip split
  --variants LIST       add variant groups right after sluice: auth, bigacl (with its
                        control sluice+name), guard (with its control sluice+hello), chain, logs (--log-level info),
                        metrics (SLUICE_METRICS=1), workers
                        (sluice-w2: --scheduling rr, sluice-w2-os: --scheduling os)
  --skip LIST           scenarios to leave out: bulk, rate, resume, hold, split
  --reps N              repetitions, interleaved, order rotated each (default 3)
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
  --update-docs         also write docs/benchmarks.md and its charts (docs/benchmarks/*.svg);
                        --tls: docs/benchmarks-tls.md, --sni: docs/benchmarks-sni.md,
                        --terminate: docs/benchmarks-terminate.md
  -h, --help            this text`

/** A bad command line (exit 2). */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** --tls without --peers. */
export const TLS_PEER_NAMES = 'node-tls,sluice-tls,ats-tls,squid-tls'
/** --sni without --peers. */
export const SNI_PEER_NAMES = 'direct,sluice-sni,node-sni,haproxy-sni,sniproxy'
/** --terminate without --peers. */
export const TERMINATE_PEER_NAMES = 'direct,sluice-terminate,sluice-sni,ats-terminate'

const SCENARIOS = ['bulk', 'rate', 'resume', 'hold', 'split'] as const
const MODES = ['connect', 'tls', 'sni', 'terminate'] as const
export type Mode = typeof MODES[number]
/** How loadgen sends the ClientHello (--sni): one write, or two cut mid server_name. */
export type SniSplit = 'none' | 'tcp' | 'records'
const SPLITS: readonly SniSplit[] = ['none', 'tcp', 'records']

export interface Options {
  readonly quick: boolean
  readonly mode: Mode
  /** mode tls: the HTTPS proxies (issue 13). */
  readonly tls: boolean
  /** mode sni: SNI passthrough listeners (issue 14). */
  readonly sni: boolean
  /** mode terminate: TLS termination + re-origination, routed by SNI (issue 14). */
  readonly terminate: boolean
  readonly sniSplit: SniSplit
  readonly sniGapMs: number
  /** 0: unpadded. */
  readonly sniPad: number
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

/** --mode, or its shorthands --tls, --sni and --terminate; conflicting ones are an error. */
function modeOf (mode: string | undefined, tls: boolean, sni: boolean, terminate: boolean): Mode {
  if (mode !== undefined && !(MODES as readonly string[]).includes(mode)) throw new UsageError(`--mode must be ${MODES.join(', ')}, got '${mode}'`)
  const asked = new Set<Mode>([...(mode === undefined ? [] : [mode as Mode]), ...(tls ? ['tls' as const] : []), ...(sni ? ['sni' as const] : []),
    ...(terminate ? ['terminate' as const] : [])])
  if (asked.size > 1) throw new UsageError(`choose one mode: ${[...asked].join(' or ')}`)
  return [...asked][0] ?? 'connect'
}

export function parseOptions (argv: readonly string[]): Options {
  const { values: v } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      quick: { type: 'boolean' },
      mode: { type: 'string' },
      tls: { type: 'boolean' },
      sni: { type: 'boolean' },
      terminate: { type: 'boolean' },
      'sni-split': { type: 'string' },
      'sni-gap-ms': { type: 'string' },
      'sni-pad': { type: 'string' },
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
  const mode = modeOf(v.mode, v.tls === true, v.sni === true, v.terminate === true)
  // split is a scenario of the SNI mode only; resume of the HTTPS proxies (the terminate mode measures full handshakes).
  const scenarios = new Set<Scenario>(SCENARIOS.filter(s => !skip.has(s) && (s !== 'split' || mode === 'sni') && (s !== 'resume' || mode !== 'terminate')))
  const sniSplit = (v['sni-split'] ?? 'none') as SniSplit
  if (!SPLITS.includes(sniSplit)) throw new UsageError(`--sni-split must be tcp or records, got '${String(v['sni-split'])}'`)
  if (mode !== 'sni' && (v['sni-split'] !== undefined || v['sni-gap-ms'] !== undefined || v['sni-pad'] !== undefined)) {
    throw new UsageError('--sni-split, --sni-gap-ms and --sni-pad need --sni')
  }
  const bulkBytes = parseSize(v.bulk ?? (quick ? '256m' : '2g'))
  if (bulkBytes < 1 || bulkBytes > 64 * 1024 ** 3) throw new UsageError('--bulk must be 1 byte to 64 GiB')
  const seconds = Number(v.seconds ?? (quick ? 3 : 10))
  if (!(seconds > 0 && seconds <= 600)) throw new UsageError('--seconds must be in (0, 600]')
  const sniPad = int(v['sni-pad'], 'sni-pad', 0, 0, 20_000)
  // One TLS record carries at most 16 KiB: loadgen refuses a bigger hello in one (the split scenario's tcp run too).
  if (sniPad > 16_000 && (sniSplit !== 'records' || scenarios.has('split'))) throw new UsageError('--sni-pad past 16000 needs --sni-split records --skip split')
  if ((mode === 'sni' || mode === 'terminate') && v.variants !== undefined) throw new UsageError(`--variants: not with --${mode} (they are CONNECT variants)`)
  return {
    quick,
    mode,
    tls: mode === 'tls',
    sni: mode === 'sni',
    terminate: mode === 'terminate',
    sniSplit,
    sniGapMs: int(v['sni-gap-ms'], 'sni-gap-ms', 5, 0, 10_000),
    sniPad,
    peers: v.peers ?? { connect: 'direct,sluice', tls: TLS_PEER_NAMES, sni: SNI_PEER_NAMES, terminate: TERMINATE_PEER_NAMES }[mode],
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
