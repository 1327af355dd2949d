/**
 * Scale-out, proven with a real HAProxy (issue 15): HAProxy in TCP mode with
 * `send-proxy-v2` in front of two Sluice instances (the built CLI), health
 * checks `GET /readyz` on their admin ports every 200 ms (fall 2, rise 2).
 * Clients connect from 127.0.0.2, so the address Sluice sees is not HAProxy's
 * own 127.0.0.1.
 *
 *   1. curl's tunnels succeed, and the log and `clients:` rules see 127.0.0.2;
 *   2. SIGKILL one instance under a stream of tunnels: after HAProxy marks it
 *      down every tunnel succeeds; the failures in between are counted;
 *   3. a rolling restart (SIGTERM, exit, start, then the other) under a
 *      stream of tunnels: none fails, and a tunnel held open across the
 *      SIGTERM keeps working until its client closes it.
 *
 * The measured figures go to stdout (`scale figures`) and README
 * "Behind a load balancer". HAProxy missing: fails under CI, skipped elsewhere.
 * Runs against dist/: `npm run test:scale` builds first.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:net'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import { assertBuilt, killCliChildren, type LogLine, type Served } from '../helpers/cli.js'
import { runCurl, curlEnv } from '../helpers/curl.js'
import { haproxyMissing, startHaproxy, type Haproxy } from '../helpers/haproxy.js'
import { closedPort } from '../helpers/net.js'
import { startEchoServer, startHttpOrigin } from '../helpers/origin.js'
import { finish, readHead, roundTrip } from '../helpers/raw.js'
import { instanceSpecs, readyz, startInstance, type InstanceSpec } from './instances.js'
import { startStream } from './stream.js'

const CLIENT = '127.0.0.2'
/** Not allowed by the policy: the same rule denies it, so the rule decides on the real address. */
const OTHER_CLIENT = '127.0.0.3'
const INTER_MS = 200

const missing = haproxyMissing()
if (missing !== undefined && process.env['CI'] !== undefined && process.env['CI'] !== '') {
  throw new Error(`the scale test needs HAProxy under CI: ${missing}`)
}

const closedLines = (s: Served, client: string): LogLine[] =>
  s.logs.filter(l => l.msg === 'tunnel closed' && String(l['client']).startsWith(`${client}:`))

/** A bounded poll of /readyz until it answers `status`. */
async function readyzBecomes (spec: InstanceSpec, status: number): Promise<void> {
  let last = -1
  for (let i = 0; i < 100; i++) {
    last = await readyz(spec)
    if (last === status) return
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  assert.fail(`${spec.name}: /readyz ${last}, not ${status}`)
}

/** The measured figures, by HAProxy config; printed at the end. */
const figures: Record<string, Record<string, unknown>> = {}
after(() => { console.log(`scale figures ${JSON.stringify(figures)}`) })

// Without `option redispatch` zero failures in a rolling restart is Sluice's own doing (drain_delay); with it,
// HAProxy also moves a refused connect elsewhere, which is what a SIGKILL needs.
for (const redispatch of [false, true]) {
  describe(`scale-out behind HAProxy (send-proxy-v2, httpchk /readyz${redispatch ? ', option redispatch' : ''})`, { skip: missing }, () => {
    let dir: string
    let echo: Awaited<ReturnType<typeof startEchoServer>>
    let web: Awaited<ReturnType<typeof startHttpOrigin>>
    let specs: InstanceSpec[]
    const running = new Map<string, Served>()
    let haproxy: Haproxy
    const measured: Record<string, unknown> = figures[redispatch ? 'redispatch' : 'plain'] = {}

    const spec = (name: string): InstanceSpec => specs.find(s => s.name === name) ?? assert.fail(name)
    const served = (name: string): Served => running.get(name) ?? assert.fail(`${name} is not running`)
    const stream = (): ReturnType<typeof startStream> =>
      startStream({ port: haproxy.port, localAddress: CLIENT, target: `127.0.0.1:${echo.port}`, concurrency: 4, max: 20_000 })

    before(async () => {
      assertBuilt()
      dir = mkdtempSync(join(tmpdir(), 'sluice-scale-'))
      echo = await startEchoServer()
      web = await startHttpOrigin()
      specs = await instanceSpecs(dir, ['a', 'b'], CLIENT, [echo.port, web.port])
      for (const s of specs) running.set(s.name, await startInstance(s))
      haproxy = await startHaproxy({ port: await closedPort(), backends: specs, interMs: INTER_MS, redispatch })
      for (const s of specs) await haproxy.waitFor(s.name, 'UP')
    })

    after(async () => {
      killCliChildren()
      await haproxy?.close()
      await echo?.close()
      await web?.close()
      if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
    })

    it('1. curl tunnels through HAProxy; the log and clients: rules see the real client', async () => {
      const run = async (from: string): Promise<{ codes: string[], body: string, stderr: string }> => {
        const r = await runCurl(['-sS', '--max-time', '5', '-p', '-x', `http://127.0.0.1:${haproxy.port}`, '--interface', from,
          '-w', '\n%{http_code} %{http_connect} %{local_ip}:%{local_port}', web.url], { env: curlEnv() })
        const nl = r.stdout.lastIndexOf('\n')
        return { codes: r.stdout.slice(nl + 1).split(' '), body: r.stdout.slice(0, nl), stderr: r.stderr }
      }
      // Two in a row: round-robin sends one to each instance.
      const seen = new Set<string>()
      for (let i = 0; i < 2; i++) {
        const r = await run(CLIENT)
        assert.deepEqual(r.codes.slice(0, 2), ['200', '200'], r.stderr)
        assert.match(r.body, /hello/)
        const client = r.codes[2] ?? ''
        assert.match(client, /^127\.0\.0\.2:\d+$/)
        const [line, name] = await Promise.any(specs.map(async s => [await served(s.name).waitForLog(l => l.msg === 'tunnel closed' && l['client'] === client), s.name] as const))
        assert.equal(line['rule'], 'real-client', JSON.stringify(line))
        assert.equal(line['target'], `127.0.0.1:${web.port}`)
        seen.add(name)
      }
      assert.deepEqual([...seen].sort(), ['a', 'b'], 'one tunnel on each instance')

      // 127.0.0.3 is refused by the same policy: the rule matched on the address HAProxy passed on.
      const refused = await run(OTHER_CLIENT)
      assert.equal(refused.codes[1], '403', refused.stderr)
      const client = refused.codes[2] ?? ''
      const line = await Promise.any(specs.map(async s => await served(s.name).waitForLog(l => l.msg === 'tunnel closed' && l['client'] === client)))
      assert.equal(line['status'], 403)
      assert.equal(line['rule'], 'default', JSON.stringify(line))
      for (const s of specs) assert.equal(served(s.name).logs.filter(l => String(l['client']).startsWith('127.0.0.1:')).length, 0, 'no line names HAProxy as the client')
    })

    it('2. SIGKILL one instance under load: after HAProxy marks it down, every tunnel succeeds', async () => {
      const st = stream()
      try {
        await st.okInARow(100)
        const b = served('b')
        const killedAt = Date.now()
        b.child.kill('SIGKILL')
        assert.equal((await b.exited()).signal, 'SIGKILL')
        running.delete('b')
        await haproxy.waitFor('b', 'DOWN')
        const downAt = Date.now()
        const failedBeforeDown = st.failures.length
        await st.okInARow(300)
        await st.stop()
        measured['kill'] = { tunnels: st.ok() + st.failures.length, failed: st.failures.length, failed_before_down: failedBeforeDown, down_after_ms: downAt - killedAt, why: [...new Set(st.failures.map(f => f.why))] }
        assert.ok(st.failures.length <= 20, `failures during the kill are bounded: ${JSON.stringify(measured['kill'])}`)
        assert.equal(st.failures.filter(f => f.started > downAt).length, 0, `no tunnel started once HAProxy marked it down fails: ${JSON.stringify(measured['kill'])}`)
      } finally {
        await st.stop()
      }
      // Back for the next step.
      running.set('b', await startInstance(spec('b')))
      await haproxy.waitFor('b', 'UP')
    })

    it('3. rolling restart under load: zero failures, and a long tunnel lives through the drain', async () => {
      const st = stream()
      try {
        await st.okInARow(100)
        // A long tunnel; the instance holding it restarts first.
        const long = connect({ port: haproxy.port, host: '127.0.0.1', localAddress: CLIENT, allowHalfOpen: true })
        long.on('error', () => {})
        await once(long, 'connect')
        long.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`)
        assert.equal((await readHead(long)).status, 200)
        assert.equal(await roundTrip(long, 'long 1\n'), 'long 1\n')
        const longClient = `${CLIENT}:${long.localPort ?? 0}`
        const holders = await Promise.all(specs.map(async s => {
          const r = await fetch(`http://127.0.0.1:${s.adminPort}/tunnels`)
          return (await r.json() as Array<{ client: string }>).some(t => t.client === longClient) ? s.name : undefined
        }))
        const first = holders.find(h => h !== undefined) ?? assert.fail(`no instance lists ${longClient}`)
        const order = [first, first === 'a' ? 'b' : 'a']

        for (const name of order) {
          const s = served(name)
          s.child.kill('SIGTERM')
          await readyzBecomes(spec(name), 503)
          await haproxy.waitFor(name, 'DOWN')
          if (name === first) {
          // The drain (60 s) outlasts this step: the tunnel keeps working until its client closes it.
            assert.equal(await roundTrip(long, 'long 2\n'), 'long 2\n')
            await st.okInARow(50)
            assert.equal(await roundTrip(long, 'long 3\n'), 'long 3\n')
            await finish(long)
            const line = await s.waitForLog(l => l.msg === 'tunnel closed' && l['client'] === longClient)
            assert.equal(line['closed_by'], 'client', JSON.stringify(line))
            assert.notEqual(line['close'], 'shutdown', JSON.stringify(line))
          }
          assert.equal((await s.exited(10_000)).code, 0, 'a drained instance exits 0')
          running.delete(name)
          running.set(name, await startInstance(spec(name)))
          await haproxy.waitFor(name, 'UP')
          await st.okInARow(100)
        }
        await st.stop()
        const perInstance = Object.fromEntries(specs.map(x => [x.name, closedLines(served(x.name), CLIENT).length]))
        measured['rolling_restart'] = { tunnels: st.ok() + st.failures.length, failed: st.failures.length, after_restart: perInstance, why: [...new Set(st.failures.map(f => f.why))] }
        assert.equal(st.failures.length, 0, `no tunnel fails in a rolling restart: ${JSON.stringify(measured['rolling_restart'])}`)
        for (const x of specs) assert.ok((perInstance[x.name] ?? 0) > 0, `${x.name} serves again after its restart`)
      } finally {
        await st.stop()
      }
    })
  })
}
