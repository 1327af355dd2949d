/**
 * The metrics every tunnel's close touches (issue 15: counting must not
 * slow the hot path measurably, ≤ 3 % of tunnels/s). prom-client's own
 * Counter and Histogram validate and hash a labels object on every call,
 * and a histogram keys its buckets by the bound turned into a string: with
 * three histograms and three counters per tunnel that was about 7 % of
 * tunnels/s in `npm run bench -- --variants metrics`. These two count in a
 * Map and a typed array, and give prom-client, at scrape time, what its own
 * Counter and Histogram give from `get()`: same names, labels, cumulative
 * `_bucket` series with `le`, `_sum` and `_count`, and the `sum` aggregator,
 * so the text format and the --workers aggregation are prom-client's.
 */
import type { Metric, Registry } from 'prom-client'

/** What prom-client's own metrics' get() gives (its text format and its cluster aggregator read this). */
export interface MetricJson {
  readonly name: string
  readonly help: string
  readonly type: 'counter' | 'histogram'
  readonly aggregator: 'sum'
  readonly values: ReadonlyArray<{ readonly metricName?: string, readonly labels: Readonly<Record<string, string | number>>, readonly value: number }>
}

interface Registered {
  readonly name: string
  readonly help: string
}

function register (metric: Registered, registers: readonly Registry[]): void {
  // prom-client registers anything with a name and get(): its own metrics are no more than that.
  for (const r of registers) r.registerMetric(metric as unknown as Metric)
}

/** A counter with a fixed list of label names; `inc` takes their values in that order. */
export class FastCounter<L extends string> implements Registered {
  readonly type = 'counter'
  readonly aggregator = 'sum'
  readonly name: string
  readonly help: string
  private readonly labelNames: readonly L[]
  /** By the label values joined with NUL (no label value holds one: names, codes, listener names). */
  private readonly series = new Map<string, { readonly labels: Record<L, string>, value: number }>()

  constructor (opts: { name: string, help: string, labelNames: readonly L[], registers: readonly Registry[] }) {
    this.name = opts.name
    this.help = opts.help
    this.labelNames = opts.labelNames
    register(this, opts.registers)
  }

  inc (values: readonly string[], by = 1): void {
    let key = values[0] ?? ''
    for (let i = 1; i < values.length; i++) key += '\0' + (values[i] as string)
    const s = this.series.get(key)
    if (s !== undefined) { s.value += by; return }
    const labels = {} as Record<L, string>
    this.labelNames.forEach((n, i) => { labels[n] = values[i] ?? '' })
    this.series.set(key, { labels, value: by })
  }

  async get (): Promise<MetricJson> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: [...this.series.values()].map(s => ({ labels: { ...s.labels }, value: s.value })) }
  }

  reset (): void { this.series.clear() }
}

/** A histogram without labels: per-bucket counts in a typed array. */
export class FastHistogram implements Registered {
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly name: string
  readonly help: string
  private readonly bounds: readonly number[]
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last slot is above every bound. */
  private readonly counts: Float64Array
  private sum = 0
  private count = 0

  constructor (opts: { name: string, help: string, buckets: readonly number[], registers: readonly Registry[] }) {
    this.name = opts.name
    this.help = opts.help
    this.bounds = [...opts.buckets].sort((a, b) => a - b)
    this.counts = new Float64Array(this.bounds.length + 1)
    register(this, opts.registers)
  }

  observe (v: number): void {
    const b = this.bounds
    let i = 0
    while (i < b.length && v > (b[i] as number)) i++
    this.counts[i] = (this.counts[i] as number) + 1
    this.sum += v
    this.count++
  }

  async get (): Promise<MetricJson> {
    const bucket = `${this.name}_bucket`
    const values: Array<MetricJson['values'][number]> = []
    let acc = 0
    this.bounds.forEach((le, i) => {
      acc += this.counts[i] as number
      values.push({ metricName: bucket, labels: { le }, value: acc })
    })
    values.push({ metricName: bucket, labels: { le: '+Inf' }, value: this.count })
    values.push({ metricName: `${this.name}_sum`, labels: {}, value: this.sum })
    values.push({ metricName: `${this.name}_count`, labels: {}, value: this.count })
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    this.counts.fill(0)
    this.sum = 0
    this.count = 0
  }
}
