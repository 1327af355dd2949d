/**
 * The admin listener (issue 15), in-process beside a real Sluice, over real
 * HTTP on 127.0.0.1:0: every endpoint, the bearer token, /readyz during a
 * drain, /tunnels with a real tunnel and DELETE closing it. The PAC file is
 * in admin-pac.test.ts. No sleeps: waits are on log lines and responses.
 */
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { ConfigStatus, type ConfigView } from '../../src/admin/config-view.js'
import type { TunnelInfo } from '../../src/admin/tunnels.js'
import { loadConfig, parseConfig } from '../../src/config/load.js'
import { createReloader } from '../../src/config/reloader.js'
import { adminFor, ask, askJson } from '../helpers/admin.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, ending, rawConnect, roundTrip } from '../helpers/raw.js'
import { captureLogs, LOOPBACK_ALLOWED, sluiceFor } from '../helpers/sluice.js'
import { within } from '../helpers/wait.js'

const ADMIN = `version: 1\nadmin: { listen: 127.0.0.1:0 }\n${LOOPBACK_ALLOWED}`
let echo: Awaited<ReturnType<typeof startEchoServer>>
let dir = ''

before(async () => {
  echo = await startEchoServer()
  dir = await mkdtemp(join(tmpdir(), 'sluice-admin-'))
})
after(async () => {
  await echo.close()
  await rm(dir, { recursive: true, force: true })
})

/** A tunnel to the echo server through `port`, one round trip done; destroyed after the test. */
async function tunnel (t: TestContext, port: number): Promise<{ socket: Awaited<ReturnType<typeof rawConnect>>, client: string }> {
  const socket = await rawConnect(port)
  t.after(() => { socket.destroy() })
  const res = await connectVia(port, `127.0.0.1:${echo.port}`, { socket })
  assert.equal(res.status, 200)
  assert.equal(await roundTrip(socket, 'ping'), 'ping')
  return { socket, client: res.client }
}

describe('admin listener: endpoints', () => {
  it('/healthz is 200 ok; unknown paths 404; a wrong method 405 with Allow', async (t) => {
    const s = await sluiceFor(t, ADMIN)
    const a = await adminFor(t, s, parseConfig(ADMIN, 'test.yaml'))
    const health = await ask(`${a.url}/healthz`)
    assert.equal(health.status, 200)
    assert.equal(health.text, 'ok\n')
    assert.equal((await ask(`${a.url}/healthz`, { method: 'HEAD' })).status, 200)
    assert.equal((await ask(`${a.url}/nope`)).status, 404)
    assert.equal((await ask(`${a.url}/tunnels/1/x`, { method: 'DELETE' })).status, 404)
    const post = await ask(`${a.url}/healthz`, { method: 'POST' })
    assert.equal(post.status, 405)
    assert.equal(post.headers['allow'], 'GET, HEAD')
    const get = await ask(`${a.url}/tunnels/abc`)
    assert.equal(get.status, 405)
    assert.equal(get.headers['allow'], 'DELETE')
    assert.equal((await ask(`${a.url}/tunnels`, { method: 'DELETE' })).headers['allow'], 'GET, HEAD')
  })

  it('/metrics: the provider\'s text and content type; 404 without a provider', async (t) => {
    const s = await sluiceFor(t, ADMIN)
    const config = parseConfig(ADMIN, 'test.yaml')
    assert.equal((await ask(`${(await adminFor(t, s, config)).url}/metrics`)).status, 404)
    const type = 'text/plain; version=0.0.4; charset=utf-8'
    const a = await adminFor(t, s, config, { metrics: async () => ({ contentType: type, body: 'sluice_tunnels_open 0\n' }) })
    const m = await ask(`${a.url}/metrics`)
    assert.equal(m.status, 200)
    assert.equal(m.headers['content-type'], type)
    assert.equal(m.text, 'sluice_tunnels_open 0\n')
  })

  it('/readyz: 200 while listening, 503 from the moment a drain starts, with a tunnel still open', async (t) => {
    const s = await sluiceFor(t, ADMIN)
    const a = await adminFor(t, s, parseConfig(ADMIN, 'test.yaml'))
    assert.deepEqual([(await ask(`${a.url}/readyz`)).status, (await ask(`${a.url}/readyz`)).text], [200, 'ready\n'])
    const { socket } = await tunnel(t, s.port)
    const closing = s.proxy.close(10_000)
    await s.waitForLog(r => r.msg === 'shutting down: draining tunnels')
    const during = await ask(`${a.url}/readyz`)
    assert.deepEqual([during.status, during.text], [503, 'draining\n'])
    assert.equal(s.proxy.registry.size, 1, 'the tunnel is still open: the drain has not ended')
    socket.end()
    await within(closing, 'the drain ends once the tunnel closes', 10_000)
    assert.equal((await ask(`${a.url}/readyz`)).status, 503)
  })

  it('timeouts.drain_delay: /readyz is 503 at once while new CONNECTs still get 200; then the listener closes (issue 15)', async (t) => {
    const yaml = `${ADMIN}\ntimeouts: { drain_delay: 2s }\n`
    const s = await sluiceFor(t, yaml)
    const a = await adminFor(t, s, parseConfig(yaml, 'test.yaml'))
    const closing = s.proxy.close(10_000)
    const notice = await s.waitForLog(r => r.msg === 'not ready: still accepting for drain_delay')
    assert.equal(notice['drain_delay_ms'], 2000)
    assert.deepEqual([(await ask(`${a.url}/readyz`)).status, (await ask(`${a.url}/readyz`)).text], [503, 'draining\n'])
    // What a balancer sent before its next check still gets through.
    const { socket } = await tunnel(t, s.port)
    assert.equal(s.logs.some(r => r.msg === 'shutting down: draining tunnels'), false, 'still within the delay')
    await s.waitForLog(r => r.msg === 'shutting down: draining tunnels', 5000)
    await assert.rejects(rawConnect(s.port), { code: 'ECONNREFUSED' })
    assert.equal(await roundTrip(socket, 'still'), 'still', 'the tunnel drains')
    socket.end()
    await within(closing, 'the drain ends once the tunnel closes', 10_000)
  })

  it('/tunnels lists a real tunnel, filters by user and target; DELETE closes it with close: "admin"', async (t) => {
    const s = await sluiceFor(t, ADMIN)
    const a = await adminFor(t, s, parseConfig(ADMIN, 'test.yaml'))
    const { socket, client } = await tunnel(t, s.port)
    const { status, body } = await askJson<TunnelInfo[]>(`${a.url}/tunnels`)
    assert.equal(status, 200)
    assert.equal(body.length, 1)
    const [info] = body
    assert.ok(info !== undefined)
    assert.equal(info.client, client)
    assert.equal(info.target, `127.0.0.1:${echo.port}`)
    assert.equal(info.dialed, `127.0.0.1:${echo.port}`)
    assert.equal(info.state, 'established')
    assert.equal(info.rule, 'test-loopback')
    assert.equal(info.route, 'direct')
    assert.equal(info.user, null)
    assert.deepEqual([info.bytes_up, info.bytes_down], [4, 4])
    assert.ok(info.age_ms >= 0)
    const count = async (q: string): Promise<number> => (await askJson<TunnelInfo[]>(`${a.url}/tunnels?${q}`)).body.length
    assert.equal(await count('user=alice'), 0)
    assert.equal(await count(`target=127.0.0.1:${echo.port}`), 1)
    assert.equal(await count('target=127.0.0.1'), 1)
    assert.equal(await count('target=127.0.0.1:1'), 0)
    assert.equal(await count('target=example.com'), 0)

    const ends = ending(socket)
    const del = await ask(`${a.url}/tunnels/${info.id}`, { method: 'DELETE' })
    assert.equal(del.status, 200)
    assert.deepEqual(JSON.parse(del.text), { closed: info.id })
    const line = await s.waitForLog(r => r.msg === 'tunnel closed' && r['tunnel'] === info.id)
    assert.equal(line['close'], 'admin')
    assert.equal(line['closed_by'], 'proxy')
    assert.match(await ends, /^(eof|ECONNRESET)$/, 'the client\'s connection is closed')
    assert.equal((await ask(`${a.url}/tunnels/${info.id}`, { method: 'DELETE' })).status, 404)
    assert.deepEqual((await askJson<TunnelInfo[]>(`${a.url}/tunnels`)).body, [])
  })
})

describe('admin listener: the bearer token', () => {
  const TOKEN = 'tok-3f9a1c-not-in-any-log'

  it('token_file: /config, /tunnels and /metrics need it (401 + WWW-Authenticate: Bearer); /healthz, /readyz, /proxy.pac do not', async (t) => {
    const file = join(dir, 'token.yaml')
    await writeFile(join(dir, 'admin.token'), `${TOKEN}\n`)
    const yaml = `${ADMIN.replace('admin: { listen: 127.0.0.1:0 }', 'admin: { listen: 127.0.0.1:0, token_file: admin.token, pac: { proxy: "p.example:3128" } }')}`
    const config = parseConfig(yaml, file)
    const s = await sluiceFor(t, yaml, { file })
    const a = await adminFor(t, s, config, { metrics: async () => ({ contentType: 'text/plain', body: 'x 1\n' }) })
    for (const path of ['/config', '/tunnels', '/metrics']) {
      const missing = await ask(a.url + path)
      assert.equal(missing.status, 401, `${path} without a token`)
      assert.equal(missing.headers['www-authenticate'], 'Bearer realm="sluice-admin"')
      const wrong = await ask(a.url + path, { token: TOKEN + 'x' })
      assert.equal(wrong.status, 401, `${path} with a wrong token`)
      assert.equal(wrong.headers['www-authenticate'], 'Bearer realm="sluice-admin", error="invalid_token"')
      assert.equal((await ask(a.url + path, { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` })).status, 401, `${path}: Basic is not Bearer`)
      assert.equal((await ask(a.url + path, { token: TOKEN })).status, 200, `${path} with the token`)
      assert.equal((await ask(a.url + path, { authorization: `bearer ${TOKEN}` })).status, 200, `${path}: the scheme is case-insensitive`)
    }
    for (const path of ['/healthz', '/readyz', '/proxy.pac']) assert.equal((await ask(a.url + path)).status, 200, path)
    // Never shown, never logged.
    const view = (await askJson<ConfigView>(`${a.url}/config`, TOKEN)).body
    assert.ok(!JSON.stringify(view).includes(TOKEN))
    assert.deepEqual(view.files.find(f => f.path === join(dir, 'admin.token')), { path: join(dir, 'admin.token'), secret: true })
    await a.waitForLog(r => r.msg === 'admin request refused: wrong token')
    assert.ok(!JSON.stringify([...a.logs, ...s.logs]).includes(TOKEN))
  })

  it('token_env: read from the environment; unset is a config problem', async (t) => {
    const yaml = ADMIN.replace('admin: { listen: 127.0.0.1:0 }', 'admin: { listen: 127.0.0.1:0, token_env: SLUICE_TEST_ADMIN_TOKEN }')
    const s = await sluiceFor(t, yaml, { overrides: { env: { SLUICE_TEST_ADMIN_TOKEN: TOKEN } } })
    const a = await adminFor(t, s, parseConfig(yaml, 'test.yaml', { env: { SLUICE_TEST_ADMIN_TOKEN: TOKEN } }))
    assert.equal((await ask(`${a.url}/tunnels`)).status, 401)
    assert.equal((await ask(`${a.url}/tunnels`, { token: TOKEN })).status, 200)
    assert.throws(() => parseConfig(yaml, 'test.yaml', { env: {} }), /admin\.token_env: environment variable SLUICE_TEST_ADMIN_TOKEN is not set/)
    assert.throws(() => parseConfig(yaml.replace('token_env: SLUICE_TEST_ADMIN_TOKEN', 'token_env: A, token_file: b'), 'test.yaml'), /token_file and token_env are alternatives/)
  })
})

describe('admin listener: /config', () => {
  it('each loaded file\'s sha256, the load time, and how the last reload ended (reloaded, unchanged, rejected)', async (t) => {
    const file = join(dir, 'config.yaml')
    await writeFile(file, ADMIN)
    const config = await loadConfig(file)
    const s = await sluiceFor(t, ADMIN)
    const status = new ConfigStatus()
    const a = await adminFor(t, s, config, { status })
    const sha = async (f: string): Promise<string> => createHash('sha256').update(await readFile(f)).digest('hex')
    let view = (await askJson<ConfigView>(`${a.url}/config`)).body
    assert.equal(view.config, file)
    assert.equal(view.hash, config.hash)
    assert.deepEqual(view.files, [{ path: file, sha256: await sha(file) }])
    assert.equal(view.last_reload, null)

    let current = config
    const reloader = createReloader({ file, log: captureLogs().logger, watch: false, currentHash: () => current.hash, apply: (c) => { current = c; a.setConfig(c) }, onOutcome: (r) => status.record(r) })
    t.after(() => reloader.close())
    const replace = async (text: string): Promise<void> => { await writeFile(`${file}.new`, text); await rename(`${file}.new`, file) }
    await replace(`${ADMIN}\n# changed\n`)
    assert.equal(await reloader.reload('test'), true)
    view = (await askJson<ConfigView>(`${a.url}/config`)).body
    assert.equal(view.last_reload?.result, 'reloaded')
    assert.equal(view.last_reload?.hash, current.hash)
    assert.equal(view.hash, current.hash)
    assert.deepEqual(view.files, [{ path: file, sha256: await sha(file) }])
    assert.equal(view.loaded_at, view.last_reload?.at)

    assert.equal(await reloader.reload('test'), false)
    assert.equal((await askJson<ConfigView>(`${a.url}/config`)).body.last_reload?.result, 'unchanged')

    await replace(`${ADMIN}\nlimits: { max_tunnels: 0 }\ntimeouts: { nope: 1 }\n`)
    assert.equal(await reloader.reload('test'), false)
    view = (await askJson<ConfigView>(`${a.url}/config`)).body
    assert.equal(view.last_reload?.result, 'rejected')
    assert.equal(view.last_reload?.problems, 2)
    assert.equal(view.hash, current.hash, 'the running config is the one shown')
  })
})
