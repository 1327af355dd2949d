/**
 * `limits.max_tunnels_per_user` (issue 15): an authenticated user has at
 * most this many tunnels open; one more is `429` with `Retry-After` and
 * `ERR_USER_LIMIT`, and is not dialed. Other users, and the same user once a
 * tunnel closed, are not affected. Real Basic auth over raw sockets, a local
 * echo origin, port 0.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import { authFixtures } from '../helpers/auth-fixtures.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia, type Connected } from '../helpers/raw.js'
import { startSluice, type Sluice } from '../helpers/sluice.js'
import { assertNothingOpen } from '../helpers/wait.js'

const { basic, bcryptLine, usersFile } = authFixtures('sluice-user-limits-')

let echo: Awaited<ReturnType<typeof startEchoServer>>
let s: Sluice

const setUp = async (): Promise<void> => {
  echo = await startEchoServer()
  const users = await usersFile('users', [bcryptLine('alice', 'a-secret'), bcryptLine('bob', 'b-secret')])
  s = await startSluice(`auth: { users_file: ${users} }
limits: { max_tunnels_per_user: 1 }
rules:
  - { name: loopback, action: allow, ips: [127.0.0.0/8] }
`)
}

const as = async (user: string, password: string): Promise<Connected> =>
  await connectVia(s.port, `127.0.0.1:${echo.port}`, { headers: `Proxy-Authorization: ${basic(user, password)}\r\n` })

async function closeTunnel (c: Connected): Promise<void> {
  const closed = s.waitForLog(r => r['msg'] === 'tunnel closed' && r['client'] === c.client)
  c.socket.end()
  c.socket.resume()
  await closed
}

describe('limits.max_tunnels_per_user: 1', { timeout: 30_000 }, () => {
  before(setUp)
  after(async () => {
    await s.close()
    await echo.close()
  })

  it('a second tunnel for the same user is 429 ERR_USER_LIMIT with Retry-After and not dialed; another user is not limited', async () => {
    const first = await as('alice', 'a-secret')
    assert.equal(first.status, 200)
    const dialed = echo.accepted()
    const second = await as('alice', 'a-secret')
    assert.equal(second.status, 429)
    assert.equal(second.headers['retry-after'], '1')
    assert.match(second.headers['proxy-status'] ?? '', /ERR_USER_LIMIT/)
    const line = await s.waitForLog(r => r['msg'] === 'tunnel closed' && r['client'] === second.client)
    assert.deepEqual([line['code'], line['user']], ['ERR_USER_LIMIT', 'alice'])
    assert.equal(echo.accepted(), dialed, 'the refused CONNECT was not dialed')
    const bob = await as('bob', 'b-secret')
    assert.equal(bob.status, 200)
    await closeTunnel(bob)
    // Once alice's tunnel is closed, she may open another.
    await closeTunnel(first)
    const again = await as('alice', 'a-secret')
    assert.equal(again.status, 200)
    await closeTunnel(again)
    second.socket.destroy()
    await once(second.socket, 'close')
  })

  it('leaves no tunnels or connections behind', async () => {
    await assertNothingOpen(s)
  })
})
