/**
 * Interop with a real squid as the parent: curl → Sluice → squid (Basic
 * auth, a password with `@` and `:` percent-encoded in the parent URL) →
 * a local HTTPS origin reached by IP literal (its certificate has IP SAN
 * 127.0.0.1). Everything stays on loopback; squid's DNS points at
 * 127.0.0.1 and no name is ever looked up.
 *
 * squid missing: the suite fails under CI (process.env.CI) and is skipped
 * with a message otherwise.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { runCurl } from '../helpers/curl.js'
import { closedPort } from '../helpers/net.js'
import { startHttpsOrigin } from '../helpers/origin.js'
import { sluiceFor, type Sluice } from '../helpers/sluice.js'
import { squidMissing, startSquid, type Squid } from '../helpers/squid.js'

const USER = 'svc-egress'
const PASSWORD = 'p@ss:w0rd'
const ENCODED = 'p%40ss%3Aw0rd'

const missing = squidMissing()
if (missing !== undefined && process.env['CI'] !== undefined) {
  throw new Error(`squid interop tests need squid under CI: ${missing}`)
}

interface CurlResult {
  readonly exitCode: number
  /** The final transfer's status (000 when the CONNECT failed). */
  readonly httpCode: string
  /** The CONNECT response status curl saw. */
  readonly connectCode: string
  readonly body: string
  /** Every header block curl saw, CONNECT response first. */
  readonly headers: string
  readonly stderr: string
}

let tmp: string
let origin: Awaited<ReturnType<typeof startHttpsOrigin>>
let squidRunning: Squid | undefined
let caFile: string

/** The squid started in before(). */
function sq (): Squid {
  if (squidRunning === undefined) throw new Error('squid is not running')
  return squidRunning
}

/** curl through Sluice to the origin by IP literal; no proxy from the environment, no ~/.curlrc. */
async function curl (sluice: Sluice, path = '/hello'): Promise<CurlResult> {
  const headersFile = join(tmp, `headers-${Math.random().toString(36).slice(2)}`)
  const bodyFile = join(tmp, `body-${Math.random().toString(36).slice(2)}`)
  const args = ['-sS', '-p', '-x', sluice.url, '--cacert', caFile, '--max-time', '10', '-D', headersFile, '-o', bodyFile,
    '-w', '%{http_code} %{http_connect}', `https://127.0.0.1:${origin.port}${path}`]
  const env: NodeJS.ProcessEnv = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: tmp }
  const r = await runCurl(args, { env, timeoutMs: 15_000 })
  const [httpCode = '', connectCode = ''] = r.stdout.trim().split(' ')
  const readOr = (f: string): string => { try { return readFileSync(f, 'utf8') } catch { return '' } }
  return { exitCode: r.exit, httpCode, connectCode, body: readOr(bodyFile), headers: readOr(headersFile), stderr: r.stderr }
}

/** The Proxy-Status value of the first (CONNECT) response curl saw. */
function proxyStatus (headers: string): string {
  const m = /^proxy-status:\s*(.*?)\r?$/im.exec(headers)
  return m?.[1] ?? ''
}

async function sluiceWith (t: TestContext, parents: string, defaultRoute: string, routes = ''): Promise<Sluice> {
  const s = await sluiceFor(t, `
parents:
${parents}
${routes}
default_route: ${defaultRoute}
rules:
  - { name: origin, action: allow, ips: [127.0.0.0/8], ports: [${origin.port}] }
`)
  return s
}

const squidParent = (password = ENCODED): string => `  squid: { url: "http://${USER}:${password}@${sq().authority}" }`

describe('Sluice → squid (real) → HTTPS origin', { skip: missing === undefined ? false : `squid not available: ${missing}` }, () => {
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'sluice-interop-'))
    origin = await startHttpsOrigin()
    caFile = join(tmp, 'ca.pem')
    writeFileSync(caFile, origin.ca)
    squidRunning = await startSquid({ users: { [USER]: PASSWORD } })
  })

  after(async () => {
    await squidRunning?.close()
    await origin?.close()
    rmSync(tmp, { recursive: true, force: true })
  })

  it('tunnels through squid with Basic auth (password with @ and :, percent-encoded in the URL)', async (t) => {
    const s = await sluiceWith(t, squidParent(), 'squid')
    const r = await curl(s, '/through-squid')
    assert.equal(r.exitCode, 0, r.stderr)
    assert.equal(r.connectCode, '200')
    assert.equal(r.httpCode, '200')
    assert.equal(r.body, 'hello from origin GET /through-squid')
    const rec = await s.waitForLog(l => l.msg === 'tunnel closed')
    assert.equal(rec['route'], 'squid')
    assert.deepEqual(rec['hops'], ['squid'])
    assert.equal(rec['dialed'], sq().authority)
    assert.equal(rec['target'], `127.0.0.1:${origin.port}`)
    // squid's side: an authenticated tunnel by our user to the origin.
    const [line] = await sq().waitForAccess(l => l.includes(`CONNECT 127.0.0.1:${origin.port}`) && l.includes('TCP_TUNNEL/200'))
    assert.match(line ?? '', new RegExp(`TCP_TUNNEL/200 \\d+ CONNECT 127\\.0\\.0\\.1:${origin.port} ${USER} HIER_DIRECT/127\\.0\\.0\\.1`))
    assert.ok(!JSON.stringify(s.logs).includes(PASSWORD))
  })

  it('wrong credentials: curl sees 502 with Proxy-Status ERR_PARENT_AUTH and received-status 407', async (t) => {
    const s = await sluiceWith(t, squidParent('wrong%40pw'), 'squid')
    const denials = sq().accessLog().split('\n').filter(l => l.includes('TCP_DENIED/407')).length
    const r = await curl(s)
    assert.notEqual(r.exitCode, 0)
    assert.equal(r.connectCode, '502')
    assert.match(r.headers, /^HTTP\/1\.1 502 Bad Gateway\r?$/m)
    const ps = proxyStatus(r.headers)
    assert.match(ps, /^sluice; error=http_request_denied; /)
    assert.match(ps, /; next-hop="squid"/)
    assert.match(ps, /; received-status="?407"?(;|$)/)
    assert.match(ps, /details="ERR_PARENT_AUTH: /)
    // squid's challenge is not passed on to the client.
    assert.doesNotMatch(r.headers, /^proxy-authenticate:/im)
    await sq().waitForAccess(l => l.includes('TCP_DENIED/407') && l.includes(`CONNECT 127.0.0.1:${origin.port}`), denials + 1)
    const rec = await s.waitForLog(l => l.msg === 'tunnel closed')
    assert.equal(rec['code'], 'ERR_PARENT_AUTH')
  })

  it('first parent down (closed port), squid second: fails over to squid', async (t) => {
    const dead = await closedPort()
    const s = await sluiceWith(t, `  dead: { url: "http://127.0.0.1:${dead}" }\n${squidParent()}`, 'r', 'routes:\n  r: [dead, squid]')
    const r = await curl(s, '/failover')
    assert.equal(r.exitCode, 0, r.stderr)
    assert.equal(r.body, 'hello from origin GET /failover')
    const rec = await s.waitForLog(l => l.msg === 'tunnel closed')
    assert.deepEqual(rec['failed_choices'], ['dead: ERR_PARENT_REFUSED'])
    assert.equal(rec['route'], 'r')
    assert.deepEqual(rec['hops'], ['squid'])
  })

  it('route [dead, direct] goes direct', async (t) => {
    const dead = await closedPort()
    const s = await sluiceWith(t, `  dead: { url: "http://127.0.0.1:${dead}" }`, 'r', 'routes:\n  r: [dead, direct]')
    const r = await curl(s, '/direct')
    assert.equal(r.exitCode, 0, r.stderr)
    assert.equal(r.body, 'hello from origin GET /direct')
    const rec = await s.waitForLog(l => l.msg === 'tunnel closed')
    assert.equal(rec['route'], 'r')
    assert.equal(rec['hops'], undefined)
    assert.equal(rec['dialed'], `127.0.0.1:${origin.port}`)
  })

  it('a route with only a dead parent: curl sees 502 ERR_PARENT_REFUSED', async (t) => {
    const dead = await closedPort()
    const s = await sluiceWith(t, `  dead: { url: "http://127.0.0.1:${dead}" }`, 'dead')
    const r = await curl(s)
    assert.notEqual(r.exitCode, 0)
    assert.equal(r.connectCode, '502')
    const ps = proxyStatus(r.headers)
    assert.match(ps, /^sluice; error=connection_refused; next-hop="dead"; details="ERR_PARENT_REFUSED: /)
  })
})
