/**
 * TCP keepalive on both legs of an established tunnel (README "Dead
 * peers"), turned on by the registry's sweep rather than at accept and
 * dial (issue 12: 8 setsockopt calls per tunnel otherwise). The kernel's
 * own view is read with `ss -o`, which shows a `timer:(keepalive,…)` for a
 * socket with SO_KEEPALIVE on.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, it } from 'node:test'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, roundTrip } from '../helpers/raw.js'
import { sluiceFor } from '../helpers/sluice.js'
import { within } from '../helpers/wait.js'

const run = promisify(execFile)

/** `ss` lines of established TCP sockets matching `filter`, with their timers. */
async function sockets (filter: string): Promise<string[]> {
  const { stdout } = await run('ss', ['-tnoH', 'state', 'established', filter], { timeout: 5000 })
  return stdout.split('\n').filter(l => l.trim() !== '')
}

const keepalive = (line: string): boolean => line.includes('timer:(keepalive')

describe('TCP keepalive on tunnels', { timeout: 30_000 }, () => {
  it('is on for the client leg and the target leg once the sweep has seen the tunnel, and not on the client\'s own socket', async (t) => {
    const echo = await startEchoServer()
    t.after(async () => { await echo.close() })
    // Keepalive 1 s: the registry sweeps every 250 ms.
    const s = await sluiceFor(t, undefined, { keepAliveMs: 1000 })
    const res = await connectVia(s.port, `127.0.0.1:${echo.port}`)
    assert.equal(res.status, 200)
    t.after(() => { res.socket.destroy() })
    assert.equal(await roundTrip(res.socket, 'ping'), 'ping')
    const clientPort = res.socket.localPort ?? 0

    // Sluice's side of the client leg (source port = the proxy's), its upstream to the echo server, and the client's own socket.
    const proxySide = `( sport = :${s.port} and dport = :${clientPort} )`
    const upstream = `( dport = :${echo.port} )`
    const clientSide = `( sport = :${clientPort} )`
    let last: string[] = []
    // Bounded: 300 looks at most, each an `ss` run; the sweep arms it within 250 ms.
    const armed = await within((async () => {
      for (let i = 0; i < 300; i++) {
        const [a, b] = await Promise.all([sockets(proxySide), sockets(upstream)])
        last = [...a, ...b]
        if (a.length === 1 && b.length === 1 && last.every(keepalive)) return true
      }
      return false
    })(), 'keepalive armed', 20_000)
    assert.ok(armed, `expected a keepalive timer on both of Sluice's sockets: ${JSON.stringify(last)}`)
    // The control: the client never asked for keepalive, so ss shows no such timer on its socket.
    const own = await sockets(clientSide)
    assert.equal(own.length, 1, JSON.stringify(own))
    assert.ok(!own.some(keepalive), `the client's own socket has no keepalive: ${JSON.stringify(own)}`)
  })
})
