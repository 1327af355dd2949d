/**
 * Answers that used to go missing (issue 11, finding 7):
 * - on shutdown, a connection mid-way through its request head (or idle
 *   between requests) got a bare FIN; it now gets 503 ERR_SHUTTING_DOWN;
 * - near the descriptor limit, libuv accepted and closed connections with
 *   no response and no log line; Sluice now stops listening before that
 *   (the kernel refuses new clients), logs it once with counts, and listens
 *   again when descriptors free up.
 * Real sockets on 127.0.0.1; the descriptor limit is given to createProxy.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { createProxy, parseConfig } from '../../src/index.js'
import { openFds, RESERVE } from '../../src/server/accept-guard.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, rawConnect, readHead } from '../helpers/raw.js'
import { captureLogs, LOOPBACK_ALLOWED, startSluice } from '../helpers/sluice.js'
import { parseProxyStatus } from '../helpers/proxy-status.js'
import { within } from '../helpers/wait.js'

let echo: Awaited<ReturnType<typeof startEchoServer>>
before(async () => { echo = await startEchoServer() })
after(async () => { await echo.close() })

describe('shutdown answers requests in flight', () => {
  it('a half-sent head, an idle connection and a fresh one each get 503 ERR_SHUTTING_DOWN, logged', async () => {
    const s = await startSluice(LOOPBACK_ALLOWED)
    const half = await rawConnect(s.port)
    half.write('CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:4')
    const fresh = await rawConnect(s.port)
    // An open tunnel keeps draining meanwhile.
    const tunnel = await connectVia(s.port, `127.0.0.1:${echo.port}`)
    assert.equal(tunnel.status, 200)
    // Both waiting connections are accepted before the shutdown starts.
    await within((async () => { while (await s.proxy.connections() < 3) await new Promise(resolve => setImmediate(resolve)) })(), 'accepted')
    const closing = s.proxy.close(5000)
    for (const c of [half, fresh]) {
      const res = await readHead(c)
      assert.equal(res.status, 503, res.statusLine)
      const ps = parseProxyStatus(res.headers['proxy-status'] ?? '')
      assert.match(ps.params['details'] ?? '', /^ERR_SHUTTING_DOWN: /)
      assert.equal(res.headers['retry-after'], '5')
      c.destroy()
    }
    const refused = await s.waitForLogs(l => l.msg === 'request refused' && l['code'] === 'ERR_SHUTTING_DOWN', 2)
    assert.equal(refused.length, 2)
    tunnel.socket.end()
    await within(closing, 'shutdown')
  })
})

describe('accepting pauses before descriptors run out', () => {
  it('pauses (kernel refuses new clients), logs once with counts, and resumes when tunnels close', async () => {
    const { logger, logs, waitForLog } = captureLogs()
    const config = parseConfig(`version: 1\n${LOOPBACK_ALLOWED}`, 'fds.yaml')
    // Room for a few tunnels above what is open now: the guard pauses RESERVE short of the limit.
    const proxy = createProxy({ config, logger, listen: [{ host: '127.0.0.1', port: 0 }], fdLimit: openFds() + RESERVE + 12 })
    const [addr] = await proxy.listen()
    const port = addr?.port ?? 0
    const tunnels: Socket[] = []
    try {
      const warned = logs.find(l => l.msg.startsWith('limits.max_tunnels needs more file descriptors'))
      assert.ok(warned !== undefined, 'the start-up line says max_tunnels does not fit')
      for (let i = 0; i < 20 && !logs.some(l => l.msg === 'accepting paused: file descriptors nearly exhausted'); i++) {
        const t = await connectVia(port, `127.0.0.1:${echo.port}`)
        assert.equal(t.status, 200)
        tunnels.push(t.socket)
      }
      const paused = await waitForLog(l => l.msg === 'accepting paused: file descriptors nearly exhausted')
      assert.equal(paused['level'], 'warn')
      assert.equal(typeof paused['fds_in_use'], 'number')
      assert.equal(typeof paused['fd_limit'], 'number')
      // Refused by the kernel, not accepted and dropped in silence.
      const refused = connect(port, '127.0.0.1')
      const [err] = await once(refused, 'error') as [NodeJS.ErrnoException]
      assert.equal(err.code, 'ECONNREFUSED')
      assert.equal(logs.filter(l => l.msg === 'accepting paused: file descriptors nearly exhausted').length, 1, 'logged once')
      // Tunnels close → descriptors free → listening again on the same port.
      const closedAll = tunnels.splice(0).map(async t => { t.destroy(); await once(t, 'close') })
      await Promise.all(closedAll)
      const resumed = await waitForLog(l => l.msg === 'accepting resumed')
      assert.equal(typeof resumed['paused_ms'], 'number')
      const again = await connectVia(port, `127.0.0.1:${echo.port}`)
      assert.equal(again.status, 200)
      again.socket.destroy()
    } finally {
      for (const t of tunnels) t.destroy()
      await proxy.close(0)
    }
  })
})
