/**
 * `limits.max_bytes_per_user` (issue 15): an authenticated user may move so
 * many tunnel bytes (up and down) per fixed period; past it, an open tunnel
 * is closed at the registry's next sweep (`close: "quota"`, `code:
 * ERR_USER_BYTES`, status still 200) and a new
 * CONNECT is `429 ERR_USER_BYTES` with `Retry-After` to the end of the
 * window, and is not dialed. Other users are not affected; a reload's new
 * limit applies to the next CONNECT, and the counts survive it. Real Basic
 * auth over raw sockets, a local echo origin, port 0, a 64 KiB quota per
 * hour (windows aligned to the epoch: they end on the hour).
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import { parseConfig } from '../../src/index.js'
import { authFixtures } from '../helpers/auth-fixtures.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, readBytes, type Connected } from '../helpers/raw.js'
import { startSluice, type Sluice } from '../helpers/sluice.js'
import { assertNothingOpen } from '../helpers/wait.js'

const { basic, bcryptLine, usersFile } = authFixtures('sluice-user-bytes-')
const KIB = 1024
const HOUR_MS = 3_600_000

let echo: Awaited<ReturnType<typeof startEchoServer>>
let s: Sluice
let users: string

/** The config with `limits` as given (a YAML flow mapping, or none). */
const yaml = (limits: string | undefined): string => `version: 1
auth: { users_file: ${users} }
${limits === undefined ? '' : `limits: ${limits}\n`}rules:
  - { name: loopback, action: allow, ips: [127.0.0.0/8] }
`
const QUOTA = '{ max_bytes_per_user: { bytes: 64KiB, period: 1h } }'

const setUp = async (): Promise<void> => {
  echo = await startEchoServer()
  users = await usersFile('users', ['alice', 'bob', 'carol'].map(u => bcryptLine(u, `${u}-secret`)))
  s = await startSluice(yaml(QUOTA))
}

const as = async (user: string): Promise<Connected> =>
  await connectVia(s.port, `127.0.0.1:${echo.port}`, { headers: `Proxy-Authorization: ${basic(user, `${user}-secret`)}\r\n` })

const closedLine = async (c: Connected): Promise<Record<string, unknown>> =>
  await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['client'] === c.client)

/** Echo `n` bytes each way through an open tunnel, then close it; resolves with its log line. */
async function moveAndClose (c: Connected, n: number): Promise<Record<string, unknown>> {
  c.socket.write(Buffer.alloc(n, 0x61))
  await readBytes(c.socket, n, { have: c.rest })
  const line = closedLine(c)
  c.socket.end()
  c.socket.resume()
  return await line
}

/** A refusal: 429 ERR_USER_BYTES with Retry-After, logged with the user; the connection is closed after. */
async function assertRefused (c: Connected, user: string): Promise<number> {
  const expected = Math.ceil((Math.ceil(Date.now() / HOUR_MS) * HOUR_MS - Date.now()) / 1000)
  assert.equal(c.status, 429)
  const retryAfter = Number(c.headers['retry-after'])
  assert.ok(retryAfter >= 1 && retryAfter <= 3600, `Retry-After ${c.headers['retry-after']}`)
  assert.ok(Math.abs(retryAfter - expected) <= 2, `Retry-After ${retryAfter}: the seconds to the end of the hour (${expected})`)
  assert.match(c.headers['proxy-status'] ?? '', /^sluice; error=http_request_denied; details="ERR_USER_BYTES: /)
  const line = await closedLine(c)
  assert.deepEqual([line['status'], line['code'], line['user']], [429, 'ERR_USER_BYTES', user])
  c.socket.destroy()
  await once(c.socket, 'close')
  return retryAfter
}

describe('limits.max_bytes_per_user: 64KiB per 1h', { timeout: 30_000 }, () => {
  before(setUp)
  after(async () => {
    await s.close()
    await echo.close()
  })

  it('an open tunnel past the quota is closed at the next sweep (close "quota"); the next CONNECT is 429 ERR_USER_BYTES with Retry-After, not dialed; another user is not limited', async () => {
    const alice = await as('alice')
    assert.equal(alice.status, 200)
    // 48 KiB there and back: 96 KiB, past the quota, in a tunnel left open.
    const closed = closedLine(alice)
    alice.socket.write(Buffer.alloc(48 * KIB, 0x61))
    alice.socket.resume()
    const line = await closed
    assert.deepEqual([line['closed_by'], line['close'], line['code'], line['user'], line['status']], ['proxy', 'quota', 'ERR_USER_BYTES', 'alice', 200])
    assert.ok(Number(line['bytes_up']) + Number(line['bytes_down']) >= 64 * KIB, `${String(line['bytes_up'])} up, ${String(line['bytes_down'])} down`)

    const dialed = echo.accepted()
    await assertRefused(await as('alice'), 'alice')
    assert.equal(echo.accepted(), dialed, 'the refused CONNECT was not dialed')

    const bob = await as('bob')
    assert.equal(bob.status, 200)
    await moveAndClose(bob, 1 * KIB)
  })

  it('closed tunnels add up: 40 KiB in one, 24 KiB in another, and the third CONNECT is refused', async () => {
    const first = await as('carol')
    assert.equal(first.status, 200)
    assert.equal((await moveAndClose(first, 20 * KIB))['close'], 'fin')
    const second = await as('carol')
    assert.equal(second.status, 200)
    const line = await moveAndClose(second, 12 * KIB)
    assert.equal(Number(line['bytes_up']) + Number(line['bytes_down']), 24 * KIB)
    await assertRefused(await as('carol'), 'carol')
  })

  it('a reload\'s new limit applies to the next CONNECT and the counts survive it; removing the limit drops them', async () => {
    s.proxy.reload(parseConfig(yaml('{ max_bytes_per_user: { bytes: 1MiB, period: 1h } }'), 'larger.yaml'))
    const allowed = await as('alice')
    assert.equal(allowed.status, 200, 'under a larger limit alice may go on')
    await moveAndClose(allowed, 1 * KIB)

    s.proxy.reload(parseConfig(yaml(QUOTA), 'again.yaml'))
    await assertRefused(await as('alice'), 'alice')

    s.proxy.reload(parseConfig(yaml(undefined), 'none.yaml'))
    const unlimited = await as('alice')
    assert.equal(unlimited.status, 200)
    await moveAndClose(unlimited, 1 * KIB)
    s.proxy.reload(parseConfig(yaml(QUOTA), 'back.yaml'))
    const fresh = await as('alice')
    assert.equal(fresh.status, 200, 'the counts went with the limit')
    await moveAndClose(fresh, 1 * KIB)
  })

  it('leaves no tunnels or connections behind', async () => {
    await assertNothingOpen(s)
  })
})
