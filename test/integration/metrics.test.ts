/**
 * Metrics through a running proxy (issue 15): real tunnels on loopback
 * (raw CONNECTs to a local echo origin), a policy refusal, a refused dial,
 * Basic-auth failures up to a lock-out, and a route failing over from a
 * dead parent; each scrape is compared with what the log lines say.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import bcrypt from 'bcryptjs'
import { M, Metrics, OK } from '../../src/observability/metrics.js'
import { sample } from '../helpers/metrics.js'
import { closedPort } from '../helpers/net.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, finish, roundTrip } from '../helpers/raw.js'
import { sluiceFor, type LogRecord } from '../helpers/sluice.js'

let echo: Awaited<ReturnType<typeof startEchoServer>>
let dir = ''
const made: Metrics[] = []
function metrics (): Metrics {
  const m = new Metrics()
  made.push(m)
  return m
}

before(async () => {
  echo = await startEchoServer()
  dir = await mkdtemp(join(tmpdir(), 'sluice-metrics-it-'))
})
after(async () => {
  for (const m of made) m.close()
  await echo?.close()
  await rm(dir, { recursive: true, force: true })
})

const closed = (r: LogRecord): boolean => r.msg === 'tunnel closed'
const LISTEN = 'listen: [{ address: "127.0.0.1:3128", name: main }]\n'
const LOOPBACK_RULE = '  - { name: test-loopback, action: allow, ips: [127.0.0.0/8] }\n'

describe('metrics of a running proxy', () => {
  it('tunnels by listener, code and rule, with their bytes and times; open tunnels while one runs', async (t) => {
    const m = metrics()
    const s = await sluiceFor(t, `${LISTEN}rules:\n  - { name: no-smtp, action: deny, ports: [25] }\n${LOOPBACK_RULE}`, { metrics: m })
    const refusedPort = await closedPort()

    const open = await connectVia(s.port, `127.0.0.1:${echo.port}`)
    assert.equal(open.status, 200)
    const payload = 'hello, metrics'
    assert.equal(await roundTrip(open.socket, payload), payload)
    let body = (await m.render()).body
    assert.equal(sample(body, M.tunnelsOpen), 1)
    assert.equal(sample(body, M.tunnels, { code: OK }), undefined, 'counted when it closes')
    await finish(open.socket)
    const [ok] = await s.waitForLogs(closed, 1)

    const denied = await connectVia(s.port, '127.0.0.1:25')
    assert.equal(denied.status, 403)
    const refused = await connectVia(s.port, `127.0.0.1:${refusedPort}`)
    assert.equal(refused.status, 502)
    denied.socket.destroy()
    refused.socket.destroy()
    await s.waitForLogs(closed, 3)

    body = (await m.render()).body
    assert.equal(sample(body, M.tunnels, { listener: 'main', code: OK, rule: 'test-loopback' }), 1)
    assert.equal(sample(body, M.tunnels, { listener: 'main', code: 'ERR_POLICY_DENIED', rule: 'no-smtp' }), 1)
    assert.equal(sample(body, M.tunnels, { listener: 'main', code: 'ERR_UPSTREAM_REFUSED', rule: 'test-loopback' }), 1)
    assert.equal(sample(body, M.tunnelsOpen), 0)
    // The bytes the log line reports for the tunnel.
    assert.equal(ok?.['bytes_up'], payload.length)
    assert.equal(sample(body, M.bytes, { listener: 'main', direction: 'up' }), payload.length)
    assert.equal(sample(body, M.bytes, { listener: 'main', direction: 'down' }), payload.length)
    // One established tunnel; the refused dial is no connect time.
    assert.equal(sample(body, `${M.established}_count`), 1)
    assert.equal(sample(body, `${M.duration}_count`), 1)
    assert.equal(sample(body, `${M.connect}_count`), 1)
    const connectMs = Number(ok?.['connect_ms'])
    assert.ok(Math.abs((sample(body, `${M.established}_sum`) ?? 0) * 1000 - connectMs) < 0.1, `time to 200 ${connectMs} ms as logged`)
    assert.ok((sample(body, `${M.duration}_sum`) ?? 0) >= (sample(body, `${M.established}_sum`) ?? 0))
    assert.ok((sample(body, `${M.connect}_sum`) ?? 0) <= (sample(body, `${M.established}_sum`) ?? 0))
  })

  it('auth: successes, failures by reason, a lock-out and the requests it refuses', async (t) => {
    const users = join(dir, 'users.htpasswd')
    await writeFile(users, `alice:${bcrypt.hashSync('alice-pw', 4)}\n`)
    const m = metrics()
    const s = await sluiceFor(t, `${LISTEN}auth:
  users_file: ${users}
  lockout: { failures: 2, window: 1m, duration: 1m }
rules:
  - { name: users-loopback, action: allow, users: [alice], ips: [127.0.0.0/8] }
`, { metrics: m })
    const basic = (user: string, pw: string): string => `Proxy-Authorization: Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}\r\n`
    const target = `127.0.0.1:${echo.port}`

    const ok = await connectVia(s.port, target, { headers: basic('alice', 'alice-pw') })
    assert.equal(ok.status, 200)
    await finish(ok.socket)
    for (const expected of [407, 407, 429]) {
      const res = await connectVia(s.port, target, { headers: basic('alice', 'wrong') })
      assert.equal(res.status, expected)
      res.socket.destroy()
    }
    await s.waitForLogs(closed, 4)

    const body = (await m.render()).body
    assert.equal(sample(body, M.authSuccesses), 1)
    assert.equal(sample(body, M.authFailures, { reason: 'bad_password' }), 2)
    assert.equal(sample(body, M.authLockouts), 1)
    assert.equal(sample(body, M.authRefused, { reason: 'locked' }), 1)
    assert.equal(sample(body, M.tunnels, { code: OK, rule: 'users-loopback' }), 1)
    assert.equal(sample(body, M.tunnels, { code: 'ERR_AUTH_FAILED' }), 2)
    assert.equal(sample(body, M.tunnels, { code: 'ERR_AUTH_LOCKED' }), 1)
  })

  it('parents: a dead one is down and its failure a failover; the config hash is labelled', async (t) => {
    const dead = await closedPort()
    const m = metrics()
    const s = await sluiceFor(t, `${LISTEN}parents:
  dead: { url: "http://127.0.0.1:${dead}" }
routes:
  dead-or-direct: [dead, direct]
rules:
  - { name: test-loopback, action: allow, ips: [127.0.0.0/8], via: dead-or-direct }
`, { metrics: m })
    let body = (await m.render()).body
    assert.equal(sample(body, M.parentUp, { parent: 'dead' }), 1, 'up until it fails')
    const res = await connectVia(s.port, `127.0.0.1:${echo.port}`)
    assert.equal(res.status, 200)
    await finish(res.socket)
    const [line] = await s.waitForLogs(closed, 1)
    assert.deepEqual(line?.['failed_choices'], ['dead: ERR_PARENT_REFUSED'])

    body = (await m.render()).body
    assert.equal(sample(body, M.parentUp, { parent: 'dead' }), 0)
    assert.equal(sample(body, M.failovers, { choice: 'dead' }), 1)
    assert.equal(sample(body, M.tunnels, { code: OK, rule: 'test-loopback' }), 1)
    const hash = s.logs.find(r => r.msg === 'sluice listening')?.['hash']
    assert.equal(typeof hash, 'string')
    assert.equal(sample(body, M.configInfo, { hash: String(hash) }), 1)
  })
})
