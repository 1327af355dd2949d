/**
 * The admin listener from the built binary (issue 15): `sluice --config X`
 * serves /healthz and /readyz on the admin port; with `--workers 2` the
 * primary serves it, lists and closes the workers' tunnels over IPC, and
 * answers /readyz 503 from its first SIGTERM while a tunnel still drains.
 *
 * Runs against dist/, so `npm run test:cli` builds first.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { TunnelInfo } from '../../src/admin/tunnels.js'
import { ask, askJson } from '../helpers/admin.js'
import { assertBuilt, killCliChildren, serveCli, type Served } from '../helpers/cli.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, ending, rawConnect, roundTrip } from '../helpers/raw.js'
import { pollImmediate } from '../helpers/wait.js'

let dir = ''
let echo: Awaited<ReturnType<typeof startEchoServer>>

before(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'sluice-cli-admin-'))
  echo = await startEchoServer()
})
after(async () => {
  killCliChildren()
  await echo?.close()
  await rm(dir, { recursive: true, force: true })
})

async function configFile (name: string): Promise<string> {
  const file = join(dir, name)
  await writeFile(file, `version: 1
listen: 127.0.0.1:0
admin: { listen: 127.0.0.1:0 }
timeouts: { drain: 20s }
rules:
  - { name: loopback, action: allow, ips: [127.0.0.0/8] }
`)
  return file
}

/** `http://ADDRESS` of the admin listener, from its start-up line. */
async function adminUrl (s: Served): Promise<string> {
  const line = await s.waitForLog(l => l.msg === 'admin listening')
  return `http://${String(line['address'])}`
}

/** Ask `url` until it answers `status` (bounded: 100 asks, each a real round trip). */
async function answers (url: string, status: number): Promise<boolean> {
  return await pollImmediate(100, async () => (await ask(url)).status === status)
}

describe('sluice serve with admin:', { timeout: 60_000 }, () => {
  it('one process: /healthz and /readyz on the admin port, then a clean exit on SIGTERM', async () => {
    const s = await serveCli(['--config', await configFile('one.yaml')])
    const url = await adminUrl(s)
    const health = await ask(`${url}/healthz`)
    assert.deepEqual([health.status, health.text], [200, 'ok\n'])
    assert.equal((await ask(`${url}/readyz`)).status, 200)
    s.child.kill('SIGTERM')
    assert.equal((await s.exited()).code, 0)
  })

  it('--workers 2: the primary serves /readyz and /tunnels for both workers, DELETE reaches the right one, and /readyz is 503 while it drains', async () => {
    const s = await serveCli(['--config', await configFile('workers.yaml'), '--workers', '2'])
    const url = await adminUrl(s)
    assert.equal((await s.waitForLog(l => l.msg === 'admin listening'))['worker'], 'primary')
    await s.waitForLog(() => s.logs.filter(l => l.msg === 'sluice listening').length === 2)
    assert.ok(await answers(`${url}/readyz`, 200), '/readyz 200 once the workers listen')

    const socket = await rawConnect(s.port)
    socket.on('error', () => {})
    assert.equal((await connectVia(s.port, `127.0.0.1:${echo.port}`, { socket })).status, 200)
    assert.equal(await roundTrip(socket, 'ping'), 'ping')
    const { body } = await askJson<TunnelInfo[]>(`${url}/tunnels`)
    assert.equal(body.length, 1, JSON.stringify(body))
    const [info] = body
    assert.ok(info !== undefined)
    assert.match(info.id, /^w\d+-[0-9a-z]+$/)
    assert.equal(info.target, `127.0.0.1:${echo.port}`)
    assert.equal(info.id, `w${String(info.worker)}-${info.id.split('-')[1] ?? ''}`)

    const ends = ending(socket)
    const del = await ask(`${url}/tunnels/${info.id}`, { method: 'DELETE' })
    assert.equal(del.status, 200, del.text)
    const closed = await s.waitForLog(l => l.msg === 'tunnel closed' && l['target'] === `127.0.0.1:${echo.port}`)
    assert.equal(closed['close'], 'admin')
    assert.equal(closed['worker'], info.worker)
    assert.match(await ends, /^(eof|ECONNRESET)$/)
    assert.equal((await ask(`${url}/tunnels/${info.id}`, { method: 'DELETE' })).status, 404)

    // A tunnel held open through the drain: the primary says 503 from its first signal.
    const held = await rawConnect(s.port)
    held.on('error', () => {})
    assert.equal((await connectVia(s.port, `127.0.0.1:${echo.port}`, { socket: held })).status, 200)
    s.child.kill('SIGTERM')
    await s.waitForLog(l => l.msg === 'shutting down: draining tunnels' && l['tunnels'] === 1)
    const during = await ask(`${url}/readyz`)
    assert.deepEqual([during.status, during.text], [503, 'draining\n'])
    assert.equal(s.child.exitCode, null, 'still draining')
    held.end()
    assert.equal((await s.exited(20_000)).code, 0)
  })
})
