/**
 * What metrics add per tunnel (issue 15: "counting must not slow the hot
 * path measurably"): Metrics.tunnelClosed, called once per tunnel at its
 * close, against NOOP_METRICS, what the proxy calls when nothing counts.
 * The tunnel is a stand-in with the getters tunnelClosed reads: building a
 * real one needs sockets. Plain Sluice costs about 290 µs of CPU per
 * tunnel (README, Benchmarks), so 1 µs here is about 0.3 %.
 */
import { bench, group } from 'mitata'
import { Metrics, NOOP_METRICS } from '../../src/observability/metrics.js'
import type { Tunnel } from '../../src/tunnel/tunnel.js'

const metrics = new Metrics()
const established = {
  code: undefined,
  decision: { rule: 'bench-loopback' },
  establishedMs: 0.42,
  startedAt: performance.now(),
  bytesUp: 64,
  bytesDown: 64
} as unknown as Tunnel
const refused = { ...established, code: 'ERR_POLICY_DENIED', establishedMs: undefined, bytesUp: 0, bytesDown: 0 } as unknown as Tunnel

group('metrics per tunnel (at close)', () => {
  bench('Metrics: established tunnel', () => metrics.tunnelClosed(established, '127.0.0.1:3128'))
  bench('Metrics: refused tunnel', () => metrics.tunnelClosed(refused, '127.0.0.1:3128'))
  bench('NOOP_METRICS', () => NOOP_METRICS.tunnelClosed(established, '127.0.0.1:3128'))
})
