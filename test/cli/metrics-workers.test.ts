/**
 * `sluice serve --workers 2` with metrics on (issue 15: "With --workers
 * the numbers are aggregated across workers, and the primary serves one
 * /metrics for all of them"). The admin listener that serves /metrics is
 * not in this tree yet, so test/fixtures/metrics-primary.ts stands in for
 * it: the real CLI (src/, through tsx; workers forked by the real primary),
 * with clusterMetrics() answered on stdin. `--scheduling rr` deals the
 * tunnels to both workers, so the sums are sums of two.
 */
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { CLUSTER_WORKERS } from '../../src/observability/cluster-metrics.js'
import { M, METRIC_NAMES, OK } from '../../src/observability/metrics.js'
import { killCliChildren, serveCli, type LogLine, type Served } from '../helpers/cli.js'
import { declared, sample } from '../helpers/metrics.js'
import { closedPort } from '../helpers/net.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, finish, roundTrip } from '../helpers/raw.js'

const PRIMARY = fileURLToPath(new URL('../fixtures/metrics-primary.ts', import.meta.url))
const CONFIG = fileURLToPath(new URL('../fixtures/loopback.yaml', import.meta.url))

let echo: Awaited<ReturnType<typeof startEchoServer>>
before(async () => { echo = await startEchoServer() })
after(async () => {
  killCliChildren()
  await echo?.close()
})

/** Once `n` lines match `pred` (bounded): all of them. */
async function lines (s: Served, pred: (l: LogLine) => boolean, n: number): Promise<LogLine[]> {
  await s.waitForLog(() => s.logs.filter(pred).length >= n)
  return s.logs.filter(pred)
}

/** Ask the primary for the merged text (the stand-in for GET /metrics). */
async function scrape (s: Served): Promise<string> {
  const before = s.logs.filter(l => l.msg.startsWith('cluster metrics')).length
  s.child.stdin.write('metrics\n')
  const [answer] = (await lines(s, l => l.msg.startsWith('cluster metrics'), before + 1)).slice(before)
  assert.equal(answer?.msg, 'cluster metrics', JSON.stringify(answer))
  assert.match(String(answer['contentType']), /^text\/plain; version=0\.0\.4/)
  return String(answer['body'])
}

describe('sluice serve --workers 2, SLUICE_METRICS=1', { timeout: 60_000 }, () => {
  it('the primary merges both workers\' numbers into one text', async () => {
    const s = await serveCli(['--config', CONFIG, '--workers', '2', '--scheduling', 'rr', '--log-level', 'info'], '127.0.0.1', {
      entry: ['--import', 'tsx', PRIMARY],
      env: { ...process.env, SLUICE_METRICS: '1' }
    })
    await lines(s, l => l.msg === 'sluice listening', 2)

    const payload = 'counted twice over'
    for (let i = 0; i < 4; i++) {
      const res = await connectVia(s.port, `127.0.0.1:${echo.port}`)
      assert.equal(res.status, 200)
      assert.equal(await roundTrip(res.socket, payload), payload)
      await finish(res.socket)
      await lines(s, l => l.msg === 'tunnel closed', i + 1)
    }
    const refused = await connectVia(s.port, `127.0.0.1:${await closedPort()}`)
    assert.equal(refused.status, 502)
    refused.socket.destroy()
    const closedLines = await lines(s, l => l.msg === 'tunnel closed', 5)
    assert.equal(new Set(closedLines.map(l => l['worker'])).size, 2, 'both workers had tunnels')

    const body = await scrape(s)
    assert.equal(sample(body, CLUSTER_WORKERS, { answered: 'true' }), 2)
    assert.equal(sample(body, CLUSTER_WORKERS, { answered: 'false' }), 0)
    assert.equal(sample(body, M.tunnels, { code: OK, rule: 'test-loopback' }), 4)
    assert.equal(sample(body, M.tunnels, { code: 'ERR_UPSTREAM_REFUSED', rule: 'test-loopback' }), 1)
    assert.equal(sample(body, M.bytes, { direction: 'up' }), 4 * payload.length)
    assert.equal(sample(body, `${M.established}_count`), 4)
    assert.equal(sample(body, M.tunnelsOpen), 0)
    // Both workers run the same file: one hash, 1 (max), not 2 (a sum).
    const hash = s.logs.find(l => l.msg === 'sluice listening')?.['hash']
    assert.equal(sample(body, M.configInfo, { hash: String(hash) }), 1)
    // What a dashboard may query is there, merged or not.
    const names = declared(body)
    for (const name of METRIC_NAMES) assert.ok(names.has(name), `${name} in the merged text`)

    // A second scrape sees a tunnel opened since.
    const res = await connectVia(s.port, `127.0.0.1:${echo.port}`)
    assert.equal(res.status, 200)
    await finish(res.socket)
    await lines(s, l => l.msg === 'tunnel closed', 6)
    assert.equal(sample(await scrape(s), M.tunnels, { code: OK, rule: 'test-loopback' }), 5)

    s.child.stdin.end()
    s.child.kill('SIGTERM')
    assert.equal((await s.exited(10_000)).code, 0)
  })
})
