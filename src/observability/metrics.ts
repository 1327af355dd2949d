/**
 * Prometheus metrics (issue 15), through prom-client, in a registry of their
 * own per `Metrics` object: injected (`createProxy({ metrics })`), never
 * the global registry. Names and their meaning are in METRIC_NAMES and
 * README's "Metrics" table.
 *
 * Cost: nothing per chunk. A tunnel is counted once, when it closes
 * (`tunnelClosed`, from the listener's `onClosed`), from the counters it
 * keeps anyway; its bytes appear then, not while it runs. What every tunnel
 * touches is counted by fast-metrics.ts, not by prom-client's own classes. Everything that
 * only describes the present (open tunnels, relay buffers, parent state,
 * event-loop lag) is read when scraped. Without metrics the proxy calls
 * NOOP_METRICS (observability/proxy-metrics.ts), whose methods do nothing.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks'
import { Counter, Gauge, Registry } from 'prom-client'
import type { AuthFailure } from '../auth/authenticator.js'
import type { ErrorCode } from '../errors.js'
import { relayBufferBytes } from '../tunnel/relay.js'
import type { Tunnel } from '../tunnel/tunnel.js'
import { M, OK, type MetricSources, type ProxyMetrics, type ReloadResult, type Rendered } from './proxy-metrics.js'
import { lagMs, RESOLUTION_MS } from './stats.js'
import { FastCounter, FastHistogram } from './fast-metrics.js'

export { M, METRIC_NAMES, NOOP_METRICS, OK, type MetricSources, type ProxyMetrics, type ReloadResult, type Rendered } from './proxy-metrics.js'

/** Seconds: from loopback (≈1 ms) to a slow parent chain (30 s). */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
/** Seconds: a 64-byte echo to a day-long stream. */
const DURATION_BUCKETS = [0.01, 0.1, 1, 10, 60, 300, 900, 3600, 14_400, 86_400]

/**
 * The reload metrics. Every Metrics has them; a --workers primary counts
 * each cluster attempt once in these alone (cli/cluster.ts, merged into its
 * `/metrics`), and its workers leave theirs uncounted (issue 15: one attempt,
 * one line, and the metrics show the same).
 */
export class ReloadMetrics {
  private readonly reloads: Counter<'result'>
  private readonly lastSuccess: Gauge
  private readonly lastTime: Gauge

  constructor (registers: Registry[]) {
    this.reloads = new Counter({ name: M.reloads, help: 'Reload attempts, by result: applied, unchanged, rejected', labelNames: ['result'], registers })
    this.lastSuccess = new Gauge({ name: M.lastReloadSuccess, help: 'Whether the last reload attempt (or the start) succeeded: 1 applied or unchanged, 0 rejected', aggregator: 'min', registers })
    this.lastTime = new Gauge({ name: M.lastReloadTime, help: 'Unix time of the last reload attempt (or the start)', aggregator: 'max', registers })
    this.lastSuccess.set(1)
    this.lastTime.set(Date.now() / 1000)
  }

  reloaded (result: ReloadResult): void {
    this.reloads.inc({ result: result === 'reloaded' ? 'applied' : result })
    this.lastSuccess.set(result === 'rejected' ? 0 : 1)
    this.lastTime.set(Date.now() / 1000)
  }
}

const NO_SOURCES: MetricSources = { tunnels: () => 0, parents: () => [] }

/**
 * Under `--workers` the primary merges every worker's numbers
 * (observability/cluster-metrics.ts): each metric's `aggregator` says how;
 * counters and histograms are summed.
 */
export class Metrics implements ProxyMetrics {
  readonly registry = new Registry()
  private src: MetricSources = NO_SOURCES
  private readonly lag: IntervalHistogram
  private readonly tunnels: FastCounter<'listener' | 'code' | 'rule'>
  private readonly bytes: FastCounter<'listener' | 'direction'>
  private readonly connect: FastHistogram
  private readonly established: FastHistogram
  private readonly duration: FastHistogram
  private readonly lookups: Counter<'code'>
  private readonly cacheHits: Counter
  private readonly authOk: Counter
  private readonly authBad: Counter<'reason'>
  private readonly lockouts: Counter
  private readonly authNo: Counter<'reason'>
  private readonly failovers: Counter<'choice'>
  private readonly configInfo: Gauge<'hash'>
  private readonly reloads: ReloadMetrics
  /** Read at scrape time only (their collect()). */
  private readonly scraped: readonly Gauge[]

  constructor () {
    const registers = [this.registry]
    // The loop's delay, as the `stats` line measures it (observability/stats.ts).
    this.lag = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
    this.lag.enable()
    const self = (): Metrics => this
    this.tunnels = new FastCounter({ name: M.tunnels, help: 'Tunnels (CONNECTs and connections of tcp/sni/terminate listeners), counted when they close, by listener, result (code: OK or the error code) and deciding rule ("" when none decided)', labelNames: ['listener', 'code', 'rule'], registers })
    const open = new Gauge({ name: M.tunnelsOpen, help: 'Tunnels open now: admitted and not yet closed (authenticating, dialing or relaying)', registers, collect () { this.set(self().src.tunnels()) } })
    this.bytes = new FastCounter({ name: M.bytes, help: 'Tunnel payload bytes, counted when the tunnel closes: up = client to upstream, down = upstream to client', labelNames: ['listener', 'direction'], registers })
    this.connect = new FastHistogram({ name: M.connect, help: 'Time to reach a usable upstream: from the start of the dial to the connected socket (a parent chain: its CONNECTs answered 200)', buckets: LATENCY_BUCKETS, registers })
    this.established = new FastHistogram({ name: M.established, help: 'Time from the request (read in full) to the tunnel established: the 200, or the start of relaying on tcp/sni/terminate listeners', buckets: LATENCY_BUCKETS, registers })
    this.duration = new FastHistogram({ name: M.duration, help: 'Lifetime of established tunnels, from the request to the close', buckets: DURATION_BUCKETS, registers })
    this.lookups = new Counter({ name: M.dnsLookups, help: 'DNS lookups made by the resolver (a burst for one name makes one), by result', labelNames: ['code'], registers })
    this.cacheHits = new Counter({ name: M.dnsCacheHits, help: 'Answers from the resolver cache, positive or negative', registers })
    this.authOk = new Counter({ name: M.authSuccesses, help: 'Basic credentials accepted', registers })
    this.authBad = new Counter({ name: M.authFailures, help: 'Basic credentials rejected, by reason', labelNames: ['reason'], registers })
    this.lockouts = new Counter({ name: M.authLockouts, help: 'Clients locked out after repeated failed logins', registers })
    this.authNo = new Counter({ name: M.authRefused, help: 'Credentials not checked: the client is locked out (locked) or too many checks wait (busy)', labelNames: ['reason'], registers })
    const parentUp = new Gauge({
      name: M.parentUp,
      help: 'Parent proxy state: 1 up, 0 marked down after a failure (under --workers the state is shared through the primary, and 0 when any worker has it down)',
      labelNames: ['parent'],
      aggregator: 'min',
      registers,
      collect () {
        this.reset()
        for (const [parent, up] of self().src.parents()) this.set({ parent }, up ? 1 : 0)
      }
    })
    this.failovers = new Counter({ name: M.failovers, help: 'Route choices that failed and were passed over for the next one, by the choice that failed', labelNames: ['choice'], registers })
    this.configInfo = new Gauge({ name: M.configInfo, help: 'The configuration in use: 1, with its sha256 as the hash label', labelNames: ['hash'], aggregator: 'max', registers })
    this.reloads = new ReloadMetrics(registers)
    const loopLag = new Gauge({
      name: M.loopLag,
      help: 'Event-loop delay beyond the 10 ms sampling period since the previous scrape, by quantile (1 = the worst)',
      labelNames: ['quantile'],
      aggregator: 'max',
      registers,
      collect () {
        const h = self().lag
        this.set({ quantile: '0.5' }, lagMs(h.percentile(50)) / 1000)
        this.set({ quantile: '0.99' }, lagMs(h.percentile(99)) / 1000)
        this.set({ quantile: '1' }, lagMs(h.count === 0 ? 0 : h.max) / 1000)
        h.reset()
      }
    })
    const relay = new Gauge({ name: M.relayBuffers, help: 'Bytes of read buffers the relay holds for open tunnels', registers, collect () { this.set(relayBufferBytes()) } })
    this.scraped = [open, parentUp, loopLag, relay]
  }

  tunnelClosed (t: Tunnel, listener: string): void {
    this.tunnels.inc([listener, t.code ?? OK, t.decision?.rule ?? ''])
    const established = t.establishedMs
    if (established === undefined) return
    this.established.observe(established / 1000)
    this.duration.observe((performance.now() - t.startedAt) / 1000)
    const up = t.bytesUp
    const down = t.bytesDown
    if (up > 0) this.bytes.inc([listener, 'up'], up)
    if (down > 0) this.bytes.inc([listener, 'down'], down)
  }

  upstreamConnected (ms: number): void { this.connect.observe(ms / 1000) }
  dnsLookup (code: ErrorCode | typeof OK): void { this.lookups.inc({ code }) }
  dnsCacheHit (): void { this.cacheHits.inc() }
  authSucceeded (): void { this.authOk.inc() }
  authFailed (reason: AuthFailure): void { this.authBad.inc({ reason }) }
  authLockedOut (): void { this.lockouts.inc() }
  authRefused (reason: 'locked' | 'busy'): void { this.authNo.inc({ reason }) }
  failover (choice: string): void { this.failovers.inc({ choice }) }

  configApplied (hash: string): void {
    this.configInfo.reset()
    this.configInfo.set({ hash }, 1)
  }

  reloaded (result: ReloadResult): void { this.reloads.reloaded(result) }

  sources (s: MetricSources): void { this.src = s }

  /** The text a `/metrics` endpoint serves. */
  async render (): Promise<Rendered> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }

  /** Stop the event-loop monitor. */
  close (): void { this.lag.disable() }
}
