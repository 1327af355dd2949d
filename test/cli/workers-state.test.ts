/**
 * State shared across `--workers` (issue 15): failed logins are counted for
 * all workers by the primary, so a brute-forcer gets `auth.lockout.failures`
 * guesses in all, not that many per worker; and a parent one worker finds
 * dead is skipped by the others without being tried. The built binary with
 * two workers and round-robin scheduling, so consecutive connections land
 * on alternate workers; raw CONNECTs; port 0.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import bcrypt from 'bcryptjs'
import { assertBuilt, killCliChildren, serveCli } from '../helpers/cli.js'
import { startEchoServer } from '../helpers/origin.js'
import { listenOn } from '../helpers/net.js'
import { connectVia, roundTrip } from '../helpers/raw.js'

let dir = ''
let echo: Awaited<ReturnType<typeof startEchoServer>>
/** A dead parent that can count: it accepts each connection and destroys it at once (a real socket, no reply). */
let dead: Server | undefined
let deadAccepts = 0

before(async () => {
  assertBuilt()
  dir = await mkdtemp(join(tmpdir(), 'sluice-workers-state-'))
  echo = await startEchoServer()
  await writeFile(join(dir, 'users'), `alice:${bcrypt.hashSync('right', 4)}\n`)
  await writeFile(join(dir, 'sluice.yaml'), `version: 1
listen: 127.0.0.1:0
auth:
  users_file: users
  lockout: { failures: 3, window: 1m, duration: 1m }
rules:
  - { name: loopback, action: allow, users: [alice], ips: [127.0.0.0/8] }
`)
  dead = createServer((socket) => { deadAccepts++; socket.destroy() })
  const deadPort = await listenOn(dead, '127.0.0.1')
  // The dead parent first, then direct: a tunnel works either way, and the parent is tried only while not marked down.
  await writeFile(join(dir, 'parents.yaml'), `version: 1
listen: 127.0.0.1:0
parents:
  dead: { url: 'http://127.0.0.1:${deadPort}' }
routes:
  dead-or-direct: [dead, direct]
rules:
  - { name: loopback, action: allow, ips: [127.0.0.0/8], via: dead-or-direct }
`)
})
after(async () => {
  killCliChildren()
  await echo?.close()
  dead?.close()
  await rm(dir, { recursive: true, force: true })
})

const WRONG = `Proxy-Authorization: Basic ${Buffer.from('alice:wrong').toString('base64')}\r\n`

describe('sluice serve --workers 2: state shared through the primary', { timeout: 60_000 }, () => {
  it('auth.lockout counts failures across workers: the third locks the client out on both', async () => {
    const s = await serveCli(['--config', join(dir, 'sluice.yaml'), '--workers', '2', '--scheduling', 'rr', '--log-level', 'info'])
    await s.waitForLog(l => l.msg === 'sluice listening' && s.logs.filter(x => x.msg === 'sluice listening').length === 2)
    const workers = new Set<unknown>()
    for (let i = 0; i < 3; i++) {
      const r = await connectVia(s.port, `127.0.0.1:${echo.port}`, { headers: WRONG })
      assert.equal(r.status, 407, `guess ${i + 1}`)
      r.socket.destroy()
      const line = await s.waitForLog(l => l.msg === 'tunnel closed' && l['client'] === r.client)
      assert.equal(line['code'], 'ERR_AUTH_FAILED')
      workers.add(line['worker'])
    }
    assert.equal(workers.size, 2, 'the guesses went to both workers')
    // Each worker knows: the one that counted the third failure, and the other from the primary.
    await s.waitForLog(() => s.logs.filter(l => l.msg === 'client locked out for every worker').length === 2)
    for (let i = 0; i < 2; i++) {
      const r = await connectVia(s.port, `127.0.0.1:${echo.port}`, { headers: WRONG })
      assert.equal(r.status, 429, `attempt ${i + 4}`)
      assert.match(r.headers['proxy-status'] ?? '', /ERR_AUTH_LOCKED/)
      r.socket.destroy()
    }
    s.child.kill('SIGTERM')
    await s.exited()
  })

  it('parent health: a parent one worker finds dead is skipped by the other without a try, and logged down once', async () => {
    const s = await serveCli(['--config', join(dir, 'parents.yaml'), '--workers', '2', '--scheduling', 'rr', '--log-level', 'info'])
    await s.waitForLog(() => s.logs.filter(x => x.msg === 'sluice listening').length === 2)
    const workers = new Set<unknown>()
    // Bounded: round-robin alternates, so two tunnels normally reach both workers.
    for (let i = 0; i < 10 && workers.size < 2; i++) {
      const r = await connectVia(s.port, `127.0.0.1:${echo.port}`)
      assert.equal(r.status, 200, `tunnel ${i + 1}`)
      assert.equal(await roundTrip(r.socket, 'ping'), 'ping')
      r.socket.destroy()
      const line = await s.waitForLog(l => l.msg === 'tunnel closed' && l['client'] === r.client)
      workers.add(line['worker'])
      // Once the parent was tried, the cluster's verdict is out before the next tunnel (with sharing off, the worker's own line).
      if (deadAccepts > 0) await s.waitForLog(l => l.msg === 'parent marked down')
    }
    assert.equal(workers.size, 2, 'tunnels went to both workers')
    assert.equal(deadAccepts, 1, 'the dead parent was tried once in all, not once per worker')
    assert.equal(s.logs.filter(l => l.msg === 'parent marked down').length, 1, 'one "parent marked down" line for the cluster')
    s.child.kill('SIGTERM')
    await s.exited()
  })
})
