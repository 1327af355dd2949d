/**
 * The policy over real sockets: what a client sees (status line, Proxy-Status
 * error type and details) and what Sluice logs, for rule denies, the
 * special-purpose guard after DNS, names resolving to a mix of refused and
 * allowed addresses, report mode, the loop guard and `listeners:`.
 *
 * DNS answers come only from the stub. Report mode needs a target that is
 * not special-purpose (else the guard, always enforced, refuses it), so those
 * tests inject a `dial` that runs the address stage (req.directAddresses())
 * and then carries 93.184.216.34:443 to the local echo server: Sluice's
 * policy sees the public address, no packet leaves the host.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { connect } from 'node:net'
import { after, before, describe, it, type TestContext } from 'node:test'
import { startDnsStubRetrying as startStub, type DnsStub } from '../helpers/dns-stub.js'
import { startEchoServer } from '../helpers/origin.js'
import { connectVia as rawConnectVia, rawConnect, roundTrip, type RawResponse } from '../helpers/raw.js'
import { expectErrorAnswer } from '../helpers/refusal.js'
import { sluiceFor, startSluice, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { parseConfig, ConfigError } from '../../src/index.js'
import type { dialRoute } from '../../src/upstream/route.js'

// ---------------------------------------------------------------- helpers

/** CONNECT `authority` through `port` on a fresh connection (destroyed after the test); returns the parsed head. */
async function connectVia (port: number, authority: string, t: TestContext): Promise<RawResponse> {
  const socket = await rawConnect(port)
  t.after(() => { socket.destroy() })
  return await rawConnectVia(port, authority, { socket })
}

/** A tunnel through `port` to the echo server that carries `payload` both ways. */
async function echoTunnel (port: number, payload: string, t: TestContext): Promise<RawResponse> {
  const res = await connectVia(port, `127.0.0.1:${echo.port}`, t)
  assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
  assert.equal(await roundTrip(res.socket, payload), payload)
  return res
}

/** The 'tunnel closed' record of an echo tunnel through `s` that carried `payload` and was closed by us. */
async function closedEchoTunnel (s: Sluice, payload: string, t: TestContext): Promise<LogRecord> {
  const res = await echoTunnel(s.port, payload, t)
  res.socket.end()
  return await s.waitForLog(isClosed)
}

/** A refused CONNECT: exact status line, Proxy-Status, and the connection closes after the body. */
async function assertRefused (res: RawResponse, status: string, proxyStatus: string): Promise<void> {
  assert.equal(res.statusLine, status)
  assert.equal(res.headers['proxy-status'], proxyStatus)
  // Our FIN ends Sluice's lingering close at once (else it waits up to 2 s for it).
  await expectErrorAnswer(res, { halfClose: true })
}

/** A dial request as the injected `dial` saw it once the address stage had passed. */
interface Dialed {
  readonly authority: string
  readonly addresses: readonly string[]
}

/**
 * Carries every dial to the echo server, recording what Sluice asked for.
 * It first awaits the policy-checked addresses, so the address stage (and
 * its refusals) runs as for a real direct dial; `dialed` names the first one.
 */
function redirectDial (echoPort: () => number, seen: Dialed[]): typeof dialRoute {
  return async (req) => {
    const addresses = await req.directAddresses()
    seen.push({ authority: req.target.authority, addresses })
    const socket = connect({ host: '127.0.0.1', port: echoPort(), allowHalfOpen: true })
    await once(socket, 'connect')
    const first = addresses[0] ?? '?'
    return { socket, dialed: { address: first, port: req.target.port }, hops: [] }
  }
}

const isClosed = (r: LogRecord): boolean => r.msg === 'tunnel closed'

// ---------------------------------------------------------------- tests

let stub: DnsStub
let echo: Awaited<ReturnType<typeof startEchoServer>>

before(async () => {
  stub = await startStub({
    'loopback.test': { A: ['127.0.0.1'] },
    'mixed.test': { A: ['10.0.0.1', '127.0.0.1'] },
    'public.test': { A: ['93.184.216.34'] }
  })
  echo = await startEchoServer()
})

after(async () => {
  await echo.close()
  await stub.close()
})

/** `dns:` line pointing Sluice at the stub. */
const dnsLine = (): string => `dns: { servers: ["${stub.address}"], negative_ttl: 0 }`

describe('rule denies', () => {
  let s: Sluice
  before(async () => {
    s = await startSluice(`
${dnsLine()}
rules:
  - name: no-echo-port
    action: deny
    ports: [${echo.port}]
  - name: test-loopback
    action: allow
    ips: [127.0.0.0/8]
`)
  })
  after(async () => { await s.close() })

  it('a deny rule answers 403 http_request_denied naming the rule, and nothing is dialed', async (t) => {
    const before = echo.accepted()
    const res = await connectVia(s.port, `127.0.0.1:${echo.port}`, t)
    await assertRefused(res, 'HTTP/1.1 403 Forbidden',
      `sluice; error=http_request_denied; details="ERR_POLICY_DENIED: denied by policy: 127.0.0.1:${echo.port} (rule no-echo-port: denied by rule)"`)
    const closed = await s.waitForLog(r => isClosed(r) && r['target'] === `127.0.0.1:${echo.port}`)
    assert.equal(closed['status'], 403)
    assert.equal(closed['code'], 'ERR_POLICY_DENIED')
    assert.equal(closed['rule'], 'no-echo-port')
    assert.equal(closed['close'], 'rejected')
    assert.equal(echo.accepted(), before)
  })

  it('a name denied before DNS is never resolved', async (t) => {
    const asked = stub.queries.length
    const res = await connectVia(s.port, `Loopback.Test.:${echo.port}`, t)
    await assertRefused(res, 'HTTP/1.1 403 Forbidden',
      `sluice; error=http_request_denied; details="ERR_POLICY_DENIED: denied by policy: loopback.test:${echo.port} (rule no-echo-port: denied by rule)"`)
    assert.equal(stub.queries.length, asked, 'no DNS question for a request-stage deny')
  })
})

describe('the special-purpose guard after DNS', () => {
  it('a name resolving to 127.0.0.1 under "allow port 443" is refused: 403 destination_ip_prohibited', async (t) => {
    const s = await sluiceFor(t, `
${dnsLine()}
rules:
  - name: https
    action: allow
    ports: [443]
`)
    const res = await connectVia(s.port, 'loopback.test:443', t)
    // Had 127.0.0.1:443 been dialed, the answer would be a 502 (nothing listens there).
    await assertRefused(res, 'HTTP/1.1 403 Forbidden',
      'sluice; error=destination_ip_prohibited; details="ERR_DESTINATION_PROHIBITED: destination address not allowed: loopback.test:443 ' +
      '(rule special-purpose-guard: 127.0.0.1 is special-purpose (loopback 127.0.0.0/8); allow it with a rule listing it under ips)"')
    const closed = await s.waitForLog(isClosed)
    assert.equal(closed['code'], 'ERR_DESTINATION_PROHIBITED')
    assert.equal(closed['rule'], 'special-purpose-guard')
    assert.equal(closed['dialed'], undefined)
    const refused = await s.waitForLog(r => r.msg === 'address refused')
    assert.equal(refused['address'], '127.0.0.1')
    assert.equal(refused['rule'], 'special-purpose-guard')
  })

  it('a name resolving to a private and an allowed loopback address dials only the allowed one', async (t) => {
    const s = await sluiceFor(t, `
${dnsLine()}
rules:
  - name: only-127-0-0-1
    action: allow
    ips: [127.0.0.1/32]
`)
    const before = echo.accepted()
    const res = await connectVia(s.port, `mixed.test:${echo.port}`, t)
    assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
    assert.equal(await roundTrip(res.socket, 'through the allowed address'), 'through the allowed address')
    assert.equal(echo.accepted(), before + 1)
    res.socket.end()
    const closed = await s.waitForLog(isClosed)
    assert.equal(closed['status'], 200)
    assert.equal(closed['dialed'], `127.0.0.1:${echo.port}`)
    assert.equal(closed['rule'], 'only-127-0-0-1')
    assert.equal(closed['target'], `mixed.test:${echo.port}`)
    // 10.0.0.1 was judged and refused (no rule lists it), so it was never raced.
    const refused = s.logs.filter(r => r.msg === 'address refused')
    assert.deepEqual(refused.map(r => [r['address'], r['rule']]), [['10.0.0.1', 'default']])
  })
})

describe('report mode', () => {
  it('file-level: a target the default denies goes through, logged once as "policy would deny (report mode)"', async (t) => {
    const seen: Dialed[] = []
    const s = await sluiceFor(t, `
mode: report
rules:
  - name: no-https
    action: deny
    ports: [443]
`, { dial: redirectDial(() => echo.port, seen) })
    const res = await connectVia(s.port, '93.184.216.34:443', t)
    assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
    assert.equal(await roundTrip(res.socket, 'reported, not enforced'), 'reported, not enforced')
    assert.deepEqual(seen, [{ authority: '93.184.216.34:443', addresses: ['93.184.216.34'] }])
    const would = s.logs.filter(r => r.msg === 'policy would deny (report mode)')
    assert.equal(would.length, 1, JSON.stringify(would))
    assert.equal(would[0]?.['rule'], 'no-https')
    assert.equal(would[0]?.['stage'], 'request')
    assert.equal(would[0]?.['target'], '93.184.216.34:443')
    assert.equal(would[0]?.['level'], 'warn')
    res.socket.end()
    const closed = await s.waitForLog(isClosed)
    assert.equal(closed['status'], 200)
    assert.equal(closed['rule'], 'no-https')
    assert.equal(closed['dialed'], '93.184.216.34:443')
  })

  it('rule-level: a report rule lets its target through while an enforce rule still denies', async (t) => {
    const seen: Dialed[] = []
    const s = await sluiceFor(t, `
${dnsLine()}
default: allow
rules:
  - name: watch-public
    action: deny
    mode: report
    hosts: [public.test]
  - name: no-8443
    action: deny
    ports: [8443]
`, { dial: redirectDial(() => echo.port, seen) })
    const port = s.port
    const ok = await connectVia(port, 'public.test:443', t)
    assert.equal(ok.statusLine, 'HTTP/1.1 200 Connection Established')
    assert.equal(await roundTrip(ok.socket, 'watched'), 'watched')
    const would = await s.waitForLog(r => r.msg === 'policy would deny (report mode)')
    assert.equal(would['rule'], 'watch-public')
    assert.equal(would['stage'], 'request')

    const denied = await connectVia(port, '93.184.216.34:8443', t)
    await assertRefused(denied, 'HTTP/1.1 403 Forbidden',
      'sluice; error=http_request_denied; details="ERR_POLICY_DENIED: denied by policy: 93.184.216.34:8443 (rule no-8443: denied by rule)"')
    assert.equal(seen.length, 1, 'only the reported target was dialed')
  })

  it('address stage: a report deny on ips is logged with the address', async (t) => {
    const seen: Dialed[] = []
    const s = await sluiceFor(t, `
${dnsLine()}
default: allow
rules:
  - name: watch-range
    action: deny
    mode: report
    ips: [93.184.216.0/24]
`, { dial: redirectDial(() => echo.port, seen) })
    const res = await connectVia(s.port, 'public.test:443', t)
    assert.equal(res.statusLine, 'HTTP/1.1 200 Connection Established')
    const would = await s.waitForLog(r => r.msg === 'policy would deny (report mode)')
    assert.equal(would['rule'], 'watch-range')
    assert.equal(would['stage'], 'address')
    assert.equal(would['address'], '93.184.216.34')
    assert.deepEqual(seen.map(r => r.addresses), [['93.184.216.34']])
  })

  it('the guard is still enforced in report mode: a name resolving to loopback is refused', async (t) => {
    const seen: Dialed[] = []
    const s = await sluiceFor(t, `
${dnsLine()}
mode: report
`, { dial: redirectDial(() => echo.port, seen) })
    const res = await connectVia(s.port, `loopback.test:${echo.port}`, t)
    assert.equal(res.statusLine, 'HTTP/1.1 403 Forbidden')
    assert.match(res.headers['proxy-status'] ?? '', /^sluice; error=destination_ip_prohibited; details="ERR_DESTINATION_PROHIBITED: .*rule special-purpose-guard/)
    res.socket.end()
    assert.deepEqual(seen, [], 'nothing dialed')
    // The default's deny was reported before DNS; the guard's refusal is not a report.
    const would = await s.waitForLog(r => r.msg === 'policy would deny (report mode)')
    assert.equal(would['rule'], 'default')
    const closed = await s.waitForLog(isClosed)
    assert.equal(closed['code'], 'ERR_DESTINATION_PROHIBITED')
  })
})

describe('loop guard', () => {
  let s: Sluice
  before(async () => {
    s = await startSluice(`
${dnsLine()}
rules:
  - name: test-loopback
    action: allow
    ips: [127.0.0.0/8, "::1/128"]
`)
  })
  after(async () => { await s.close() })

  const loopDetails = (authority: string, address: string): string =>
    `sluice; error=proxy_loop_detected; details="ERR_LOOP_DETECTED: target is this proxy: ${authority} resolves to this proxy's listener ${address}"`

  it('CONNECT to the proxy\'s own listener is 403 proxy_loop_detected', async (t) => {
    const res = await connectVia(s.port, `127.0.0.1:${s.port}`, t)
    await assertRefused(res, 'HTTP/1.1 403 Forbidden', loopDetails(`127.0.0.1:${s.port}`, '127.0.0.1'))
    const closed = await s.waitForLog(r => isClosed(r) && r['code'] === 'ERR_LOOP_DETECTED')
    assert.equal(closed['status'], 403)
  })

  for (const spelling of ['127.1', '2130706433', '0x7f.0.0.1', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]']) {
    it(`… also when spelled ${spelling}`, async (t) => {
      const res = await connectVia(s.port, `${spelling}:${s.port}`, t)
      res.socket.end()
      assert.equal(res.statusLine, 'HTTP/1.1 403 Forbidden')
      assert.match(res.headers['proxy-status'] ?? '', /^sluice; error=proxy_loop_detected; details="ERR_LOOP_DETECTED: /)
    })
  }

  it('… and for a name that resolves to it', async (t) => {
    const res = await connectVia(s.port, `loopback.test:${s.port}`, t)
    await assertRefused(res, 'HTTP/1.1 403 Forbidden', loopDetails(`loopback.test:${s.port}`, '127.0.0.1'))
  })

  it('… and for 0.0.0.0, which Linux connects to the loopback listener, when a rule unlocks 0.0.0.0/0', async (t) => {
    // An "internal proxy" policy that switches the guard off with ips: [0.0.0.0/0, ::/0].
    const open = await sluiceFor(t, `
rules:
  - name: anything
    action: allow
    ips: ["0.0.0.0/0", "::/0"]
`)
    for (const spelling of ['0.0.0.0', '0', '[::ffff:0.0.0.0]']) {
      const res = await connectVia(open.port, `${spelling}:${open.port}`, t)
      res.socket.destroy()
      assert.equal(res.statusLine, 'HTTP/1.1 403 Forbidden', `CONNECT ${spelling}:${open.port} reached the proxy itself: ${JSON.stringify(res.headers)}`)
      assert.match(res.headers['proxy-status'] ?? '', /error=proxy_loop_detected/)
    }
  })

  it('a different port on the same address is not a loop', async (t) => {
    await echoTunnel(s.port, 'not a loop', t)
  })
})

describe('listeners', () => {
  const denied = (): string =>
    `sluice; error=http_request_denied; details="ERR_POLICY_DENIED: denied by policy: 127.0.0.1:${echo.port} (rule default: no rule allows this target)"`

  it('a rule listing a named listen entry matches CONNECTs on that listener', async (t) => {
    const s = await sluiceFor(t, `
listen: [{ address: "127.0.0.1:0", name: office }]
rules:
  - name: office-loopback
    action: allow
    listeners: [office]
    ips: [127.0.0.0/8]
`)
    assert.equal((await closedEchoTunnel(s, 'named', t))['rule'], 'office-loopback')
  })

  it('without listen, the one listener is named "127.0.0.1:3128" (the default address), whatever port it is bound to', async (t) => {
    const s = await sluiceFor(t, `
rules:
  - name: default-listener
    action: allow
    listeners: ["127.0.0.1:3128"]
    ips: [127.0.0.0/8]
`)
    assert.notEqual(s.port, 3128)
    assert.equal((await closedEchoTunnel(s, 'default name', t))['rule'], 'default-listener')
  })

  it('a rule for another listener does not match', async (t) => {
    const s = await sluiceFor(t, `
listen:
  - { address: "127.0.0.1:0", name: office }
  - { address: "127.0.0.1:0", name: internal }
rules:
  - name: internal-only
    action: allow
    listeners: [internal]
    ips: [127.0.0.0/8]
`)
    // s.port is the first entry's listener: office.
    const res = await connectVia(s.port, `127.0.0.1:${echo.port}`, t)
    await assertRefused(res, 'HTTP/1.1 403 Forbidden', denied())
  })

  it('named listen entries: the same target is allowed on one listener and denied on the other', async (t) => {
    const s = await sluiceFor(t, `
listen:
  - { address: "127.0.0.1:0", name: internal }
  - { address: "127.0.0.1:0", name: guests }
rules:
  - name: internal-loopback
    action: allow
    listeners: [internal]
    ips: [127.0.0.0/8]
`)
    const [internal, guests] = s.proxy.addresses.map(a => a.port)
    assert.ok(internal !== undefined && guests !== undefined && internal !== guests)
    await echoTunnel(internal, 'inside', t)
    const no = await connectVia(guests, `127.0.0.1:${echo.port}`, t)
    await assertRefused(no, 'HTTP/1.1 403 Forbidden', denied())
  })

  it('a rule naming a listener that is not configured is a config error', () => {
    assert.throws(() => parseConfig(`version: 1
listen: [{ address: "127.0.0.1:0", name: office }]
rules:
  - name: typo
    action: allow
    listeners: [ofice]
`, 'listeners.yaml'), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.deepEqual(err.problems, ["listeners.yaml: rules[0].listeners[0]: no listener is named 'ofice' (listeners: office)"])
      return true
    })
  })
})
