/**
 * Proxy authentication end to end: real sockets, real clients (curl,
 * undici's ProxyAgent) and a raw client for exact bytes.
 *
 * - 407 challenges (Proxy-Authenticate, Proxy-Status) that keep the
 *   connection open for a retry on the same socket, bounded by max_attempts
 * - wrong, unknown and malformed credentials; UTF-8 and ':' in passwords
 * - per-user and per-@group rules; a trusted client address needing none
 * - auth.required: false; lock-out (429 + Retry-After) and its expiry
 * - users-file reload invalidating cached verifications
 * - no password or credential ever in a log line
 *
 * Users files are written to a temp dir (absolute paths: startSluice parses
 * its YAML as 'test.yaml'); hashes are made here at bcrypt cost 4 plus one
 * scrypt hash. `localhost` resolves through the stub DNS server only.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ProxyAgent, request as undiciRequest, type Dispatcher } from 'undici'
import { parseConfig } from '../../src/index.js'
import { hashPassword } from '../../src/auth/hash.js'
import { authFixtures, SLOW_HASH } from '../helpers/auth-fixtures.js'
import type { ClientResponse as Response } from '../helpers/connect-client.js'
import { curl, needCurl } from '../helpers/curl.js'
import { startDnsStubRetrying as startStub, type DnsStub } from '../helpers/dns-stub.js'
import { startEchoServer, startHttpOrigin, startHttpsOrigin } from '../helpers/origin.js'
import { startSluice, type LogRecord, type Sluice } from '../helpers/sluice.js'

/** Bound on one client run or one wait; a failure bound, not synchronisation. */
const WAIT_MS = 5000

// ------------------------------------------------------------------ users

const PW = {
  alice: 'alice-pw',
  bob: 'bob-pw',
  carol: 'carol-scrypt-pw',
  jurgen: '\u043f\u0430\u0440\u043e\u043b\u044c\u2713', // пароль✓
  dave: 'pa:ss:word',
  slowpoke: 'slowpoke-pw'
} as const
const JURGEN = 'j\u00fcrgen' // jürgen

/**
 * Users files in a temp dir, tracked raw clients, and `SECRETS`: every
 * password and credential used in this file (`basic` and `bcryptLine` record
 * theirs), none of which may reach a log line.
 */
const {
  secrets: SECRETS, basic, bcryptLine, usersFile, open, connectOnce, closeClients
} = authFixtures('sluice-auth-')
/** Every Sluice started here, for the final log scan. */
const INSTANCES: Sluice[] = []

let scryptCarol: string

before(async () => {
  scryptCarol = await hashPassword(PW.carol, 'scrypt')
  SECRETS.add(PW.carol)
})

/** auth with the users file `users` and `lockout`, and one rule letting `allowed` (YAML list items) reach loopback. */
function usersRule (users: string, lockout = '{ failures: 0 }', allowed = 'alice'): string {
  return `auth:
  users_file: ${JSON.stringify(users)}
  lockout: ${lockout}
rules:
  - { name: users, action: allow, users: [${allowed}], ips: [127.0.0.0/8] }
`
}

async function start (yaml: string): Promise<Sluice> {
  const s = await startSluice(yaml)
  INSTANCES.push(s)
  return s
}

// ------------------------------------------------------------------ raw client

const CHALLENGE = 'Basic realm="Sluice", charset="UTF-8"'

function assertAuthError (r: Response, code: 'ERR_AUTH_REQUIRED' | 'ERR_AUTH_FAILED', detail?: RegExp): void {
  assert.equal(r.status, 407, r.statusLine)
  assert.equal(r.statusLine, 'HTTP/1.1 407 Proxy Authentication Required')
  assert.equal(r.headers['proxy-authenticate'], CHALLENGE)
  const ps = r.headers['proxy-status'] ?? ''
  assert.ok(ps.startsWith(`sluice; error=http_request_denied; details="${code}: `), ps)
  if (detail !== undefined) assert.match(ps, detail)
  assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8')
  assert.equal(r.headers['content-length'], String(Buffer.byteLength(r.body)))
  assert.match(r.body, /^407 Proxy Authentication Required\n/)
}

const isClosed = (r: LogRecord): boolean => r.msg === 'tunnel closed'

// ================================================================== main suite

describe('proxy authentication', () => {
  let stub: DnsStub
  let echo: Awaited<ReturnType<typeof startEchoServer>>
  let https: Awaited<ReturnType<typeof startHttpsOrigin>>
  let http: Awaited<ReturnType<typeof startHttpOrigin>>
  let sluice: Sluice
  const dispatchers: Dispatcher[] = []
  let ECHO: string
  let HTTP: string

  before(async () => {
    stub = await startStub({ localhost: { A: ['127.0.0.1'] } })
    echo = await startEchoServer()
    https = await startHttpsOrigin()
    http = await startHttpOrigin()
    ECHO = `127.0.0.1:${echo.port}`
    HTTP = `127.0.0.1:${http.port}`
    const users = await usersFile('users.htpasswd', [
      bcryptLine('alice', PW.alice, 4, '$2y$'),
      bcryptLine('bob', PW.bob, 4, '$2b$'),
      `carol:${scryptCarol}`,
      bcryptLine(JURGEN, PW.jurgen, 4, '$2y$'),
      bcryptLine('dave', PW.dave, 4, '$2b$')
    ])
    sluice = await start(`
dns: { servers: ["${stub.address}"] }
auth:
  realm: Sluice
  users_file: ${JSON.stringify(users)}
  groups: { eng: [alice, "${JURGEN}", dave] }
  required: true
  max_attempts: 3
  lockout: { failures: 0 }
rules:
  - { name: ci, action: allow, clients: [127.0.0.2/32], ips: [127.0.0.0/8] }
  - { name: bob-only, action: allow, users: [bob], ips: [127.0.0.0/8], ports: [${echo.port}] }
  - { name: eng, action: allow, users: ["@eng"], ips: [127.0.0.0/8] }
`)
  })

  after(async () => {
    await Promise.allSettled(dispatchers.map(async d => await d.destroy()))
    closeClients()
    await sluice?.close()
    await Promise.allSettled([echo?.close(), https?.close(), http?.close(), stub?.close()])
  })

  /** The next 'tunnel closed' record after running `fn`. */
  async function closedAfter (fn: () => Promise<void>): Promise<LogRecord> {
    const n0 = sluice.logs.filter(isClosed).length
    await fn()
    const rec = (await sluice.waitForLogs(isClosed, n0 + 1, WAIT_MS))[n0]
    assert.ok(rec !== undefined)
    return rec
  }

  // -------------------------------------------------------------- curl

  it('curl --proxy-user alice:… -p through an http origin', async (t) => {
    if (!needCurl(t)) return
    const rec = await closedAfter(async () => {
      basic('alice', PW.alice)
      const r = await curl(['--proxy-user', `alice:${PW.alice}`, '-p', '-x', sluice.url, `http://${HTTP}/hello`])
      assert.equal(r.exit, 0)
      assert.equal(r.body, 'hello from origin GET /hello')
      assert.equal(r.codes, '200 200', 'origin status, then the CONNECT status')
    })
    assert.equal(rec['status'], 200)
    assert.equal(rec['user'], 'alice')
    assert.equal(rec['rule'], 'eng')
    assert.equal(rec['target'], HTTP)
  })

  it('curl without credentials gets the 407', async (t) => {
    if (!needCurl(t)) return
    const rec = await closedAfter(async () => {
      const r = await curl(['-p', '-x', sluice.url, `http://${HTTP}/hello`])
      assert.notEqual(r.exit, 0)
      assert.equal(r.codes.split(' ')[1], '407')
    })
    assert.equal(rec['status'], 407)
    assert.equal(rec['code'], 'ERR_AUTH_REQUIRED')
    assert.equal(rec['user'], undefined)
  })

  it('curl with a UTF-8 user and password (jürgen / пароль✓)', async (t) => {
    if (!needCurl(t)) return
    const rec = await closedAfter(async () => {
      basic(JURGEN, PW.jurgen)
      const r = await curl(['--proxy-user', `${JURGEN}:${PW.jurgen}`, '-p', '-x', sluice.url, `http://${HTTP}/utf8`])
      assert.equal(r.body, 'hello from origin GET /utf8')
      assert.equal(r.codes, '200 200')
    })
    assert.equal(rec['user'], JURGEN)
    assert.equal(rec['rule'], 'eng')
  })

  it('curl with colons in the password (dave:pa:ss:word)', async (t) => {
    if (!needCurl(t)) return
    const rec = await closedAfter(async () => {
      basic('dave', PW.dave)
      const r = await curl(['--proxy-user', `dave:${PW.dave}`, '-p', '-x', sluice.url, `http://${HTTP}/colon`])
      assert.equal(r.body, 'hello from origin GET /colon')
      assert.equal(r.codes, '200 200')
    })
    assert.equal(rec['user'], 'dave')
  })

  // -------------------------------------------------------------- undici

  async function viaUndici (opts: ProxyAgent.Options, path: string): Promise<LogRecord> {
    const dispatcher = new ProxyAgent({ ...opts, requestTls: { ca: https.ca } })
    dispatchers.push(dispatcher)
    return await closedAfter(async () => {
      const res = await undiciRequest(`https://localhost:${https.port}${path}`, { dispatcher, headersTimeout: WAIT_MS, bodyTimeout: WAIT_MS })
      assert.equal(res.statusCode, 200)
      assert.equal(await res.body.text(), `hello from origin GET ${path}`)
      await dispatcher.close()
    })
  }

  it('undici ProxyAgent with token: Basic …', async () => {
    const rec = await viaUndici({ uri: sluice.url, token: basic('alice', PW.alice) }, '/token')
    assert.equal(rec['status'], 200)
    assert.equal(rec['user'], 'alice')
    assert.equal(rec['target'], `localhost:${https.port}`)
    assert.equal(rec['dialed'], `127.0.0.1:${https.port}`)
    assert.ok(stub.queries.some(q => q.name === 'localhost'))
  })

  it('undici ProxyAgent with credentials in the proxy URL', async () => {
    basic('alice', PW.alice)
    const rec = await viaUndici({ uri: `http://alice:${encodeURIComponent(PW.alice)}@127.0.0.1:${sluice.port}` }, '/in-url')
    assert.equal(rec['status'], 200)
    assert.equal(rec['user'], 'alice')
  })

  it('undici ProxyAgent: UTF-8 and ":" in URL credentials', async () => {
    basic(JURGEN, PW.jurgen)
    const r1 = await viaUndici({ uri: `http://${encodeURIComponent(JURGEN)}:${encodeURIComponent(PW.jurgen)}@127.0.0.1:${sluice.port}` }, '/utf8')
    assert.equal(r1['user'], JURGEN)
    basic('dave', PW.dave)
    const r2 = await viaUndici({ uri: `http://dave:${encodeURIComponent(PW.dave)}@127.0.0.1:${sluice.port}` }, '/colon')
    assert.equal(r2['user'], 'dave')
  })

  // -------------------------------------------------------------- raw: challenge and retry

  it('407 without credentials keeps the connection open; the retry on the same socket gets 200', async () => {
    const c = await open(sluice.port)
    const n0 = sluice.logs.filter(isClosed).length
    const r1 = await c.connect(ECHO)
    assertAuthError(r1, 'ERR_AUTH_REQUIRED')
    assert.equal(r1.headers['connection'], 'keep-alive')
    assert.ok(!/close/i.test(r1.headers['connection'] ?? ''), 'no Connection: close')
    assert.match(r1.headers['proxy-status'] ?? '', /details="ERR_AUTH_REQUIRED: proxy authentication required: rule bob-only needs a user"$/)
    // The 407's tunnel record: challenged, not closed.
    const [challenged] = (await sluice.waitForLogs(isClosed, n0 + 1)).slice(n0)
    assert.equal(challenged?.['status'], 407)
    assert.equal(challenged?.['code'], 'ERR_AUTH_REQUIRED')
    assert.equal(challenged?.['close'], 'challenged')
    assert.equal(c.socket.destroyed, false)

    const r2 = await c.connect(ECHO, basic('alice', PW.alice))
    assert.equal(r2.statusLine, 'HTTP/1.1 200 Connection Established')
    assert.deepEqual(r2.headers, {})
    await c.echoes('ping through the retried tunnel\n')
    c.socket.end()
    await c.eof()
    const [done] = (await sluice.waitForLogs(isClosed, n0 + 2)).slice(n0 + 1)
    assert.equal(done?.['status'], 200)
    assert.equal(done?.['user'], 'alice')
    assert.equal(done?.['rule'], 'eng')
    assert.equal(done?.['bytes_up'], Buffer.byteLength('ping through the retried tunnel\n'))
  })

  it('after max_attempts (3) challenges on one connection the last 407 closes it', async () => {
    const c = await open(sluice.port)
    const r1 = await c.connect(ECHO)
    assertAuthError(r1, 'ERR_AUTH_REQUIRED')
    assert.equal(r1.headers['connection'], 'keep-alive')
    const r2 = await c.connect(ECHO, basic('alice', 'wrong-1'))
    assertAuthError(r2, 'ERR_AUTH_FAILED')
    assert.equal(r2.headers['connection'], 'keep-alive')
    const r3 = await c.connect(ECHO, basic('alice', 'wrong-2'))
    assertAuthError(r3, 'ERR_AUTH_FAILED')
    assert.equal(r3.headers['connection'], 'close')
    assert.equal((await c.eof()).length, 0, 'nothing after the last 407')
  })

  it('a retry pipelined right behind the challenged CONNECT is answered on the same socket', async () => {
    // CONNECT without credentials and, in the same write, the retry with them:
    // the second head arrives behind the first one's and must be parsed
    // once the 407 is out, on the same connection.
    const c = await open(sluice.port)
    c.socket.write(`CONNECT ${ECHO} HTTP/1.1\r\nHost: ${ECHO}\r\n\r\nCONNECT ${ECHO} HTTP/1.1\r\nHost: ${ECHO}\r\nProxy-Authorization: ${basic('alice', PW.alice)}\r\n\r\n`)
    assertAuthError(await c.response(), 'ERR_AUTH_REQUIRED')
    const r2 = await c.response()
    assert.equal(r2.statusLine, 'HTTP/1.1 200 Connection Established')
    await c.echoes('pipelined\n')
  })

  it('a wrong password → 407 ERR_AUTH_FAILED, same answer as an unknown user', async () => {
    const wrong = await connectOnce(sluice.port, ECHO, basic('alice', 'not-alice-pw'))
    assertAuthError(wrong, 'ERR_AUTH_FAILED', /details="ERR_AUTH_FAILED: proxy credentials rejected: unknown user or wrong password"$/)
    const unknown = await connectOnce(sluice.port, ECHO, basic('mallory', 'whatever-pw'))
    assertAuthError(unknown, 'ERR_AUTH_FAILED')
    assert.equal(unknown.headers['proxy-status'], wrong.headers['proxy-status'])
    assert.equal(unknown.body, wrong.body)
    const failed = await sluice.waitForLogs(r => r.msg === 'authentication failed', 1)
    const alice = failed.find(r => r['attempted_user'] === 'alice' && r['reason'] === 'bad_password')
    assert.ok(alice !== undefined, JSON.stringify(failed))
    assert.equal(typeof alice['tunnel'], 'string')
    assert.match(String(alice['client']), /^127\.0\.0\.1:\d+$/)
    const mallory = await sluice.waitForLog(r => r.msg === 'authentication failed' && r['attempted_user'] === 'mallory')
    assert.equal(mallory['reason'], 'unknown_user')
  })

  it('malformed credentials → 407 with the reason', async () => {
    const cases: Array<[string, RegExp, string]> = [
      ['Basic !!!', /malformed Basic credentials/, 'malformed'],
      ['Basic ' + Buffer.from('nocolon').toString('base64'), /malformed Basic credentials/, 'malformed'],
      ['Bearer x', /only the Basic scheme is supported/, 'not_basic']
    ]
    for (const [header, reason, logged] of cases) {
      const n0 = sluice.logs.filter(r => r.msg === 'authentication failed' && r['reason'] === logged).length
      const r = await connectOnce(sluice.port, ECHO, header)
      assertAuthError(r, 'ERR_AUTH_FAILED', reason)
      await sluice.waitForLogs(r => r.msg === 'authentication failed' && r['reason'] === logged, n0 + 1)
    }
  })

  // -------------------------------------------------------------- per-user and per-group rules

  it('bob is allowed only to his port; alice (@eng) anywhere on loopback', async () => {
    const c = await open(sluice.port)
    const r = await c.connect(ECHO, basic('bob', PW.bob))
    assert.equal(r.status, 200)
    await c.echoes('bob was here\n')
    c.close()
    const rec = await sluice.waitForLog(l => isClosed(l) && l['user'] === 'bob' && l['status'] === 200)
    assert.equal(rec['rule'], 'bob-only')

    const denied = await connectOnce(sluice.port, HTTP, basic('bob', PW.bob))
    assert.equal(denied.status, 403)
    assert.equal(denied.headers['proxy-status'], `sluice; error=http_request_denied; details="ERR_POLICY_DENIED: denied by policy: ${HTTP} (rule default: no rule allows this target)"`)
    assert.equal(denied.headers['proxy-authenticate'], undefined)
    assert.equal(denied.headers['connection'], 'close')
    const deniedRec = await sluice.waitForLog(l => isClosed(l) && l['user'] === 'bob' && l['status'] === 403)
    assert.equal(deniedRec['code'], 'ERR_POLICY_DENIED')

    const alice = await open(sluice.port)
    assert.equal((await alice.connect(HTTP, basic('alice', PW.alice))).status, 200)
    alice.close()
  })

  it('a user outside @eng → 403 ERR_POLICY_DENIED', async () => {
    const r = await connectOnce(sluice.port, HTTP, basic('carol', PW.carol))
    assert.equal(r.status, 403)
    assert.match(r.headers['proxy-status'] ?? '', /^sluice; error=http_request_denied; details="ERR_POLICY_DENIED: /)
    assert.equal(r.headers['proxy-authenticate'], undefined)
    const rec = await sluice.waitForLog(l => isClosed(l) && l['user'] === 'carol' && l['target'] === HTTP)
    assert.equal(rec['status'], 403)
    assert.equal(rec['rule'], 'default')
  })

  it('the trusted source 127.0.0.2 needs no credentials; 127.0.0.1 without them gets 407', async () => {
    const trusted = await open(sluice.port, '127.0.0.2')
    const r = await trusted.connect(ECHO)
    assert.equal(r.status, 200)
    await trusted.echoes('trusted\n')
    trusted.close()
    const rec = await sluice.waitForLog(l => isClosed(l) && String(l['client']).startsWith('127.0.0.2:'))
    assert.equal(rec['rule'], 'ci')
    assert.equal(rec['user'], undefined)

    const anonymous = await connectOnce(sluice.port, ECHO, undefined, '127.0.0.1')
    assertAuthError(anonymous, 'ERR_AUTH_REQUIRED')
  })

  it('an authenticated user on the trusted source is still named in the log', async () => {
    const c = await open(sluice.port, '127.0.0.2')
    assert.equal((await c.connect(ECHO, basic('bob', PW.bob))).status, 200)
    c.close()
    const rec = await sluice.waitForLog(l => isClosed(l) && String(l['client']).startsWith('127.0.0.2:') && l['user'] === 'bob')
    assert.equal(rec['rule'], 'ci')
  })
})

// ================================================================== required: false

describe('auth.required: false', () => {
  let echo: Awaited<ReturnType<typeof startEchoServer>>
  let other: Awaited<ReturnType<typeof startEchoServer>>
  let sluice: Sluice

  before(async () => {
    echo = await startEchoServer()
    other = await startEchoServer()
    const users = await usersFile('optional.htpasswd', [bcryptLine('alice', PW.alice)])
    sluice = await start(`
auth:
  users_file: ${JSON.stringify(users)}
  groups: { eng: [alice] }
  required: false
  lockout: { failures: 0 }
rules:
  - { name: eng-echo, action: allow, users: ["@eng"], ips: [127.0.0.0/8], ports: [${echo.port}] }
`)
  })

  after(async () => {
    closeClients()
    await sluice?.close()
    await Promise.allSettled([echo?.close(), other?.close()])
  })

  it('an anonymous request that only the default can decide gets 403, not 407', async () => {
    const r = await connectOnce(sluice.port, `127.0.0.1:${other.port}`)
    assert.equal(r.status, 403)
    assert.equal(r.headers['proxy-authenticate'], undefined)
    assert.match(r.headers['proxy-status'] ?? '', /details="ERR_POLICY_DENIED: denied by policy: 127\.0\.0\.1:\d+ \(rule default: /)
  })

  it('an anonymous request a users rule would allow still gets 407', async () => {
    const r = await connectOnce(sluice.port, `127.0.0.1:${echo.port}`)
    assertAuthError(r, 'ERR_AUTH_REQUIRED', /rule eng-echo needs a user/)
  })

  it('credentials still work', async () => {
    const c = await open(sluice.port)
    assert.equal((await c.connect(`127.0.0.1:${echo.port}`, basic('alice', PW.alice))).status, 200)
    await c.echoes('optional\n')
    c.close()
  })
})

// ================================================================== challenge decided after DNS

describe('a users rule behind an earlier `ips` rule still challenges', () => {
  let echo: Awaited<ReturnType<typeof startEchoServer>>
  let sluice: Sluice
  let TARGET: string
  let users: string
  // `intranet` has `ips`, so the request stage cannot decide and hands over to
  // the address stage; `eng` would allow the target with credentials.
  const yaml = (required: boolean): string => `version: 1
auth:
  users_file: ${JSON.stringify(users)}
  groups: { eng: [alice] }
  required: ${String(required)}
  lockout: { failures: 0 }
rules:
  - { name: intranet, action: allow, ips: [10.0.0.0/8] }
  - { name: eng, action: allow, users: ["@eng"], ips: [127.0.0.0/8] }
`

  before(async () => {
    echo = await startEchoServer()
    TARGET = `127.0.0.1:${echo.port}`
    users = await usersFile('behind-ips.htpasswd', [bcryptLine('alice', PW.alice)])
    sluice = await start(yaml(true))
  })

  after(async () => {
    closeClients()
    await sluice?.close()
    await echo?.close()
  })

  for (const required of [true, false]) {
    it(`required: ${String(required)}: anonymous → 407 (not 403), then alice → 200`, async () => {
      sluice.proxy.reload(parseConfig(yaml(required), 'test.yaml'))
      const c = await open(sluice.port)
      try {
        const r1 = await c.connect(TARGET)
        assert.equal(r1.status, 407, `got ${r1.statusLine}; Proxy-Status: ${r1.headers['proxy-status'] ?? ''}`)
        assertAuthError(r1, 'ERR_AUTH_REQUIRED')
        const r2 = await c.connect(TARGET, basic('alice', PW.alice))
        assert.equal(r2.status, 200)
        await c.echoes('behind ips\n')
      } finally {
        c.close()
      }
    })
  }

  it('the same target is allowed with credentials on a fresh connection (control)', async () => {
    const c = await open(sluice.port)
    assert.equal((await c.connect(TARGET, basic('alice', PW.alice))).status, 200)
    c.close()
  })
})

// ================================================================== a challenged connection is still timed

describe('a connection kept open after a 407', () => {
  let sluice: Sluice

  before(async () => {
    const users = await usersFile('timed.htpasswd', [bcryptLine('alice', PW.alice)])
    sluice = await start(`
timeouts: { header: 300ms }
${usersRule(users)}`)
  })

  after(async () => {
    closeClients()
    await sluice?.close()
  })

  for (const [name, next] of [['silent', ''], ['a partial head', 'CONNECT 127.0.0.1:9 HTTP/1.1\r\n']] as const) {
    it(`is still bound by timeouts.header (${name} after the challenge → 408, closed)`, async () => {
      const c = await open(sluice.port)
      const r1 = await c.connect('127.0.0.1:9')
      assertAuthError(r1, 'ERR_AUTH_REQUIRED')
      assert.equal(r1.headers['connection'], 'keep-alive')
      if (next !== '') c.socket.write(next)
      const r2 = await c.response()
      assert.equal(r2.statusLine, 'HTTP/1.1 408 Request Timeout')
      assert.match(r2.headers['proxy-status'] ?? '', /details="ERR_HEADERS_TIMEOUT: /)
      assert.equal(r2.headers['connection'], 'close')
      assert.equal((await c.eof()).length, 0)
    })
  }
})

// ================================================================== lock-out

describe('lock-out', () => {
  let echo: Awaited<ReturnType<typeof startEchoServer>>
  let sluice: Sluice
  let TARGET: string

  before(async () => {
    echo = await startEchoServer()
    TARGET = `127.0.0.1:${echo.port}`
    const users = await usersFile('lockout.htpasswd', [bcryptLine('alice', PW.alice)])
    sluice = await start(usersRule(users, '{ failures: 3, window: 1m, duration: 300ms }'))
  })

  after(async () => {
    closeClients()
    await sluice?.close()
    await echo?.close()
  })

  const isLockWarn = (r: LogRecord): boolean => r['level'] === 'warn' && r.msg.startsWith('client locked out')

  it('3 wrong passwords lock the client out (429 + Retry-After, even with the right password); it expires', async () => {
    assert.equal((await connectOnce(sluice.port, TARGET, basic('alice', 'guess-1'))).status, 407)
    assert.equal((await connectOnce(sluice.port, TARGET, basic('alice', 'guess-2'))).status, 407)
    const lockedAt = Date.now()
    const third = await connectOnce(sluice.port, TARGET, basic('alice', 'guess-3'))
    assertAuthError(third, 'ERR_AUTH_FAILED')

    const locked = await connectOnce(sluice.port, TARGET, basic('alice', PW.alice))
    assert.equal(locked.statusLine, 'HTTP/1.1 429 Too Many Requests')
    assert.equal(locked.headers['retry-after'], '1')
    assert.match(locked.headers['proxy-status'] ?? '', /^sluice; error=http_request_denied; details="ERR_AUTH_LOCKED: too many failed logins from this address/)
    assert.equal(locked.headers['proxy-authenticate'], undefined)
    assert.equal(locked.headers['connection'], 'close')

    const warn = await sluice.waitForLog(isLockWarn)
    assert.equal(warn['client'], '127.0.0.1')
    assert.equal(warn['failures'], 3)

    // Another address is not locked out.
    const elsewhere = await open(sluice.port, '127.0.0.2')
    assert.equal((await elsewhere.connect(TARGET, basic('alice', PW.alice))).status, 200)
    elsewhere.close()

    // Poll (each attempt a CONNECT round trip, bounded) until the lock-out expires.
    const failedBefore = sluice.logs.filter(r => r.msg === 'authentication failed').length
    let last: Response | undefined
    for (let i = 0; i < 2000 && Date.now() - lockedAt < WAIT_MS; i++) {
      last = await connectOnce(sluice.port, TARGET, basic('alice', PW.alice))
      if (last.status !== 429) break
      assert.equal(last.headers['retry-after'], '1')
    }
    assert.equal(last?.status, 200, `still ${String(last?.status)} after ${Date.now() - lockedAt} ms`)
    assert.ok(Date.now() - lockedAt >= 300, 'not before the lock-out duration')
    assert.equal(sluice.logs.filter(r => r.msg === 'authentication failed').length, failedBefore, 'locked attempts are not verified')
    assert.equal(sluice.logs.filter(isLockWarn).length, 1, 'one warning for the episode')

    // The expired lock-out starts a new count: two more failures do not lock.
    assert.equal((await connectOnce(sluice.port, TARGET, basic('alice', 'guess-4'))).status, 407)
    assert.equal((await connectOnce(sluice.port, TARGET, basic('alice', 'guess-5'))).status, 407)
    assert.equal((await connectOnce(sluice.port, TARGET, basic('alice', PW.alice))).status, 200)
    assert.equal(sluice.logs.filter(isLockWarn).length, 1)
  })
})

describe('lock-out and attempts in flight', () => {
  let echo: Awaited<ReturnType<typeof startEchoServer>>
  let sluice: Sluice
  let TARGET: string

  before(async () => {
    echo = await startEchoServer()
    TARGET = `127.0.0.1:${echo.port}`
    const users = await usersFile('inflight.htpasswd', [bcryptLine('alice', PW.alice), `slowpoke:${SLOW_HASH}`])
    sluice = await start(usersRule(users, '{ failures: 3, window: 1m, duration: 1m }', 'alice, slowpoke'))
  })

  after(async () => {
    closeClients()
    await sluice?.close()
    await echo?.close()
  })

  it('a check in flight holds one of the window\'s verdicts: the budget is never overspent, and its failure locks (issue 11)', async () => {
    const slowFailed = (r: LogRecord): boolean => r.msg === 'authentication failed' && r['attempted_user'] === 'slowpoke'
    const isLockWarn = (r: LogRecord): boolean => r.msg.startsWith('client locked out')
    // 1. A slow attempt: it reserves one of the 3 verdicts now; its hash check takes ~0.3 s.
    const slow = await open(sluice.port)
    slow.send(TARGET, basic('slowpoke', 'wrong-slow-guess'))
    // A round trip from another address: by then the slow CONNECT has been read.
    assertAuthError(await connectOnce(sluice.port, TARGET, undefined, '127.0.0.3'), 'ERR_AUTH_REQUIRED')
    // 2. Three instant failures (wrong scheme, no hashing), sent together: two are judged, the third finds the budget spent.
    const bursts = await Promise.all([1, 2, 3].map(async () => await connectOnce(sluice.port, TARGET, 'Bearer x')))
    assert.deepEqual(bursts.map(r => r.status).sort(), [407, 407, 429])
    const held = bursts.find(r => r.status === 429)
    assert.equal(held?.headers['retry-after'], '1', 'the budget is held by a check in flight, not a lock-out')
    assert.match(held?.headers['proxy-status'] ?? '', /details="ERR_AUTH_LOCKED: /)
    assert.equal(sluice.logs.filter(slowFailed).length, 0, 'setup: the slow attempt is still in flight')
    assert.equal(sluice.logs.filter(isLockWarn).length, 0, 'not locked out yet')
    // Even the right password is not judged while the budget is spent.
    assert.equal((await connectOnce(sluice.port, TARGET, basic('alice', PW.alice))).status, 429)
    // 3. The slow attempt fails: the third failure, so the lock-out begins.
    assertAuthError(await slow.response(), 'ERR_AUTH_FAILED')
    await sluice.waitForLog(slowFailed)
    await sluice.waitForLog(isLockWarn)
    const later = await connectOnce(sluice.port, TARGET, basic('alice', PW.alice))
    assert.equal(later.status, 429)
    assert.ok(Number(later.headers['retry-after']) > 1, 'the 1 m lock-out is in force')
  })
})

// ================================================================== reload

describe('users file reload', () => {
  let echo: Awaited<ReturnType<typeof startEchoServer>>
  let sluice: Sluice
  let TARGET: string
  const yaml = (users: string): string => `version: 1\n${usersRule(users)}`

  before(async () => {
    echo = await startEchoServer()
    TARGET = `127.0.0.1:${echo.port}`
    sluice = await start(yaml(await usersFile('reload-1.htpasswd', [bcryptLine('alice', 'old-password')])))
  })

  after(async () => {
    closeClients()
    await sluice?.close()
    await echo?.close()
  })

  it('a new users file: the old password stops working at once (cache invalidated), the new one works', async () => {
    // Twice: the second success comes from the verification cache.
    for (let i = 0; i < 2; i++) {
      const c = await open(sluice.port)
      assert.equal((await c.connect(TARGET, basic('alice', 'old-password'))).status, 200)
      c.close()
    }
    const next = await usersFile('reload-2.htpasswd', [bcryptLine('alice', 'new-password')])
    sluice.proxy.reload(parseConfig(yaml(next), 'test.yaml'))
    await sluice.waitForLog(r => r.msg === 'configuration reloaded')

    const old = await connectOnce(sluice.port, TARGET, basic('alice', 'old-password'))
    assertAuthError(old, 'ERR_AUTH_FAILED')
    const c = await open(sluice.port)
    assert.equal((await c.connect(TARGET, basic('alice', 'new-password'))).status, 200)
    await c.echoes('after reload\n')
    c.close()
    const failed = await sluice.waitForLog(r => r.msg === 'authentication failed' && r['attempted_user'] === 'alice')
    assert.equal(failed['reason'], 'bad_password')
  })

  it('a reload that rewrites the same users file path is picked up too', async () => {
    const path = await usersFile('reload-2.htpasswd', [bcryptLine('alice', 'third-password')])
    sluice.proxy.reload(parseConfig(yaml(path), 'test.yaml'))
    assertAuthError(await connectOnce(sluice.port, TARGET, basic('alice', 'new-password')), 'ERR_AUTH_FAILED')
    assert.equal((await connectOnce(sluice.port, TARGET, basic('alice', 'third-password'))).status, 200)
  })
})

// ================================================================== logs

it('no password or credential appears in any log line; no Proxy-Authorization value either', () => {
  assert.ok(SECRETS.size >= 10, `secrets tracked: ${SECRETS.size}`)
  let lines = 0
  for (const s of INSTANCES) {
    for (const rec of s.logs) {
      lines++
      const text = JSON.stringify(rec)
      for (const secret of SECRETS) assert.ok(!text.includes(secret), `log line contains a secret ${JSON.stringify(secret)}: ${text}`)
      assert.ok(!/basic [A-Za-z0-9+/=]{4,}/i.test(text), `log line contains a Basic credential: ${text}`)
      assert.ok(!/proxy-authorization/i.test(text), `log line mentions Proxy-Authorization: ${text}`)
    }
  }
  assert.ok(lines > 50, `log lines scanned: ${lines}`)
})
