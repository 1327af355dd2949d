/**
 * observability/fast-metrics.ts (issue 15): the hot-path counter and
 * histogram render, and aggregate across workers, exactly as prom-client's
 * own Counter and Histogram do for the same observations.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AggregatorRegistry, Counter, Histogram, Registry } from 'prom-client'
import { FastCounter, FastHistogram } from '../../src/observability/fast-metrics.js'

const BUCKETS = [0.001, 0.01, 0.1, 1, 10]
const VALUES = [0, 0.0005, 0.001, 0.002, 0.05, 0.1, 0.7, 3, 10, 11, 1e6]

describe('fast metrics', () => {
  it('a histogram renders as prom-client\'s does: cumulative buckets with le, +Inf, _sum, _count', async () => {
    const theirs = new Registry()
    const ours = new Registry()
    const h = new Histogram({ name: 'x_seconds', help: 'h', buckets: BUCKETS, registers: [theirs] })
    const f = new FastHistogram({ name: 'x_seconds', help: 'h', buckets: BUCKETS, registers: [ours] })
    for (const v of VALUES) { h.observe(v); f.observe(v) }
    assert.equal(await ours.metrics(), await theirs.metrics())
    f.reset()
    h.reset()
    h.zero({})
    assert.equal(await ours.metrics(), await theirs.metrics())
  })

  it('a labelled counter renders as prom-client\'s does, series in the order first seen', async () => {
    const theirs = new Registry()
    const ours = new Registry()
    const c = new Counter({ name: 'y_total', help: 'c', labelNames: ['listener', 'code', 'rule'], registers: [theirs] })
    const f = new FastCounter({ name: 'y_total', help: 'c', labelNames: ['listener', 'code', 'rule'], registers: [ours] })
    const seen: Array<[string, string, string, number]> = [['main', 'OK', 'bench', 1], ['main', 'ERR_POLICY_DENIED', 'default', 1], ['main', 'OK', 'bench', 3], ['sni', 'OK', '', 2]]
    for (const [listener, code, rule, by] of seen) { c.inc({ listener, code, rule }, by); f.inc([listener, code, rule], by) }
    assert.equal(await ours.metrics(), await theirs.metrics())
  })

  it('--workers: the primary\'s aggregate of two workers is the same as for prom-client\'s own', async () => {
    const worker = async (fast: boolean, values: readonly number[]): Promise<object[]> => {
      const r = new Registry()
      if (fast) {
        const f = new FastHistogram({ name: 'z_seconds', help: 'h', buckets: BUCKETS, registers: [r] })
        const c = new FastCounter({ name: 'z_total', help: 'c', labelNames: ['code'], registers: [r] })
        for (const v of values) { f.observe(v); c.inc([v > 1 ? 'slow' : 'ok']) }
      } else {
        const h = new Histogram({ name: 'z_seconds', help: 'h', buckets: BUCKETS, registers: [r] })
        const c = new Counter({ name: 'z_total', help: 'c', labelNames: ['code'], registers: [r] })
        for (const v of values) { h.observe(v); c.inc({ code: v > 1 ? 'slow' : 'ok' }) }
      }
      return await r.getMetricsAsJSON()
    }
    const text = async (fast: boolean): Promise<string> => await AggregatorRegistry.aggregate([await worker(fast, VALUES.slice(0, 5)), await worker(fast, VALUES.slice(5))] as never).metrics()
    assert.equal(await text(true), await text(false))
  })
})
