/**
 * Self-test of the test helpers: the DNS stub against a real c-ares
 * resolver, the HTTPS origin against undici, and the echo and greeting
 * servers against raw sockets, half-close included.
 */
import assert from 'node:assert/strict'
import { promises as dns } from 'node:dns'
import { once } from 'node:events'
import { connect } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { after, before, describe, it } from 'node:test'
import { Agent, request } from 'undici'
import { startDnsStub, type DnsStub } from '../helpers/dns-stub.js'
import { startEchoServer, startGreetingServer, startHttpsOrigin } from '../helpers/origin.js'
import { readAll, readBytes } from '../helpers/raw.js'
import { makeCert } from '../helpers/tls.js'
import { within } from '../helpers/wait.js'

describe('dns stub', () => {
  let stub: DnsStub
  let resolver: dns.Resolver

  before(async () => {
    stub = await startDnsStub({
      'both.test': { A: ['127.0.0.1'], AAAA: ['::1'] },
      'V4only.Test.': { A: ['127.0.0.1', '127.0.0.2'], ttl: 5 },
      'servfail.test': { rcode: 'SERVFAIL' },
      'refused.test': { rcode: 'REFUSED' },
      'nx-explicit.test': { rcode: 'NXDOMAIN' },
      'drop.test': { drop: true }
    })
    resolver = new dns.Resolver({ timeout: 200, tries: 1 })
    resolver.setServers([stub.address])
  })

  after(async () => {
    resolver.cancel()
    await stub.close()
  })

  it('listens on loopback with a setServers-ready address', () => {
    assert.equal(stub.address, `127.0.0.1:${stub.port}`)
  })

  it('answers A and AAAA', async () => {
    assert.deepEqual(await resolver.resolve4('both.test'), ['127.0.0.1'])
    assert.deepEqual(await resolver.resolve6('both.test'), ['::1'])
  })

  it('matches names case-insensitively and ignores a trailing dot, with TTLs', async () => {
    assert.deepEqual(await resolver.resolve4('v4only.TEST', { ttl: true }), [
      { address: '127.0.0.1', ttl: 5 },
      { address: '127.0.0.2', ttl: 5 }
    ])
  })

  it('gives NODATA (ENODATA) for a name without data of the asked type', async () => {
    await assert.rejects(resolver.resolve6('v4only.test'), { code: 'ENODATA' })
  })

  it('gives NXDOMAIN (ENOTFOUND) for unknown names and explicit NXDOMAIN', async () => {
    await assert.rejects(resolver.resolve4('nope.test'), { code: 'ENOTFOUND' })
    await assert.rejects(resolver.resolve4('nx-explicit.test'), { code: 'ENOTFOUND' })
  })

  it('gives ESERVFAIL and EREFUSED', async () => {
    await assert.rejects(resolver.resolve4('servfail.test'), { code: 'ESERVFAIL' })
    await assert.rejects(resolver.resolve4('refused.test'), { code: 'EREFUSED' })
  })

  it('never answers a dropped name (ETIMEOUT)', async () => {
    await assert.rejects(resolver.resolve4('drop.test'), { code: 'ETIMEOUT' })
  })

  it('picks up records added with set()', async () => {
    await assert.rejects(resolver.resolve4('late.test'), { code: 'ENOTFOUND' })
    stub.set('LATE.test', { A: ['127.0.0.3'] })
    assert.deepEqual(await resolver.resolve4('late.test'), ['127.0.0.3'])
  })

  it('records every query', () => {
    assert.ok(stub.queries.some((q) => q.name === 'both.test' && q.type === 'AAAA'))
    assert.ok(stub.queries.some((q) => q.name === 'v4only.test' && q.type === 'A'))
    assert.ok(stub.queries.some((q) => q.name === 'drop.test' && q.type === 'A'))
  })

  it('answers over TCP with a length prefix', async () => {
    const dnsPacket = await import('dns-packet')
    const socket = connect(stub.port, '127.0.0.1')
    await once(socket, 'connect')
    const query = dnsPacket.streamEncode({ type: 'query', id: 42, questions: [{ type: 'A', name: 'both.test' }] })
    socket.end(query)
    const reply = await readAll(socket)
    socket.destroy()
    const res = dnsPacket.streamDecode(reply)
    assert.equal(res.id, 42)
    assert.deepEqual(res.answers?.map((a) => 'data' in a ? a.data : undefined), ['127.0.0.1'])
  })
})

describe('tls', () => {
  it('makes a cert with the requested SANs, trusted through ca', async () => {
    const a = await makeCert()
    assert.equal(await makeCert(), a, 'memoised')
    const custom = await makeCert({ names: ['origin.test'], ips: ['127.0.0.1'] })
    assert.notEqual(custom.cert, a.cert)
    assert.equal(custom.ca, a.ca, 'one CA per process')

    const { createServer } = await import('node:tls')
    const server = createServer({ key: custom.key, cert: custom.cert }, (s) => s.end('ok'))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const { port } = server.address() as { port: number }
    try {
      for (const servername of ['origin.test', undefined]) {
        const c = tlsConnect({ port, host: '127.0.0.1', ca: custom.ca, ...(servername === undefined ? {} : { servername }) })
        await once(c, 'secureConnect')
        assert.equal(c.authorized, true)
        c.destroy()
      }
      const bad = tlsConnect({ port, host: '127.0.0.1', ca: custom.ca, servername: 'localhost' })
      const [err] = await once(bad, 'error') as [NodeJS.ErrnoException]
      assert.equal(err.code, 'ERR_TLS_CERT_ALTNAME_INVALID')
      bad.destroy()
    } finally {
      server.close()
      await once(server, 'close')
    }
  })
})

describe('https origin', () => {
  it('answers undici over TLS, by name and by 127.0.0.1', async () => {
    const origin = await startHttpsOrigin()
    const agent = new Agent({ connect: { ca: origin.ca } })
    try {
      assert.equal(origin.url, `https://localhost:${origin.port}/`)
      const res = await request(`${origin.url}some/path?q=1`, { dispatcher: agent, method: 'POST', body: 'x' })
      assert.equal(res.statusCode, 200)
      assert.match(String(res.headers['content-type']), /^text\/plain/)
      assert.equal(await res.body.text(), 'hello from origin POST /some/path?q=1')

      const byIp = await request(`https://127.0.0.1:${origin.port}/`, { dispatcher: agent })
      assert.equal(await byIp.body.text(), 'hello from origin GET /')
    } finally {
      await agent.close()
      await origin.close()
    }
  })

  it('close() ends kept-alive connections', async () => {
    const origin = await startHttpsOrigin()
    // The client would keep the connection for a minute, the server for its
    // default 5 s keepAliveTimeout: only close() can end it within the bound
    // (destroying it, or Node's own server.close() closing idle connections).
    const agent = new Agent({ connect: { ca: origin.ca }, keepAliveTimeout: 60_000, keepAliveMaxTimeout: 60_000 })
    try {
      const res = await request(origin.url, { dispatcher: agent })
      await res.body.text()
      assert.equal(origin.connections(), 1, 'the connection is kept alive')
      const disconnected = once(agent, 'disconnect')
      await within(origin.close(), 'close() with a kept-alive connection open', 2000)
      assert.equal(origin.connections(), 0)
      await within(disconnected, 'the client sees its kept-alive connection closed', 2000)
    } finally {
      await agent.close()
    }
  })
})

describe('echo server', () => {
  it('echoes and honours half-close', async () => {
    const echo = await startEchoServer()
    try {
      const socket = connect({ port: echo.port, host: echo.host, allowHalfOpen: true })
      await once(socket, 'connect')
      assert.equal(new URL(echo.url).host, `127.0.0.1:${echo.port}`)
      socket.write('ping')
      assert.equal((await readBytes(socket, 4)).toString(), 'ping')
      // Half-close: we can still receive what was sent before our FIN.
      const rest = readAll(socket)
      socket.end('after')
      assert.equal((await rest).toString(), 'after')
      assert.equal(echo.accepted(), 1)
      socket.destroy()
      await once(socket, 'close')
    } finally {
      await echo.close()
    }
    assert.equal(echo.connections(), 0)
  })

  it('close() destroys open connections', async () => {
    const echo = await startEchoServer()
    const socket = connect(echo.port, echo.host)
    socket.on('error', () => {})
    await once(socket, 'connect')
    socket.write('x')
    await readBytes(socket, 1)
    assert.equal(echo.connections(), 1)
    const closed = once(socket, 'close')
    await echo.close()
    await closed
    assert.equal(echo.connections(), 0)
  })
})

describe('greeting server', () => {
  it('speaks first, then echoes', async () => {
    const server = await startGreetingServer('220 hello\r\n')
    try {
      const socket = connect(server.port, server.host)
      assert.equal((await readBytes(socket, 11)).toString(), '220 hello\r\n')
      const rest = readAll(socket)
      socket.end('QUIT\r\n')
      assert.equal((await rest).toString(), 'QUIT\r\n')
      socket.destroy()
    } finally {
      await server.close()
    }
  })
})
