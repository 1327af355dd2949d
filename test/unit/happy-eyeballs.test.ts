/**
 * RFC 8305 racing on real loopback sockets: a dial whose tunnel was
 * cancelled before the race started (the client sent FIN while DNS was in
 * flight) must not connect at all.
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { race } from '../../src/upstream/happy-eyeballs.js'
import { listenOn } from '../helpers/net.js'
import { within } from '../helpers/wait.js'

describe('race', () => {
  let accepted = 0
  const server = createServer((s) => { accepted++; s.destroy() })
  let port = 0
  before(async () => { port = await listenOn(server, '127.0.0.1') })
  after(() => { server.close() })

  it('rejects at once, without dialing, when the signal is already aborted', async () => {
    const ac = new AbortController()
    ac.abort(new Error('client went away'))
    const dial = race(['127.0.0.1'], { port, attemptDelayMs: 250, timeoutMs: 2000, keepAliveMs: 0, signal: ac.signal })
    dial.then(r => r.socket.destroy(), () => {})
    await within(assert.rejects(dial, { code: 'ERR_UPSTREAM_FAILED' }), 'race settles')
    assert.equal(accepted, 0)
  })

  it('connects when the signal is not aborted', async () => {
    const { socket, address } = await within(race(['127.0.0.1'], { port, attemptDelayMs: 250, timeoutMs: 2000, keepAliveMs: 0, signal: new AbortController().signal }), 'race settles')
    assert.equal(address, '127.0.0.1')
    socket.destroy()
  })
})
