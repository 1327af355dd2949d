/**
 * Real clients through Sluice: curl (-x, HTTPS_PROXY, -p), undici's
 * ProxyAgent and EnvHttpProxyAgent, and http-proxy-agent (plain-HTTP
 * proxying, which Sluice refuses by design with 405 + Allow: CONNECT).
 *
 * `localhost` is resolved by Sluice through a stub DNS server only, never
 * the machine's resolver; every tunnel ends in a local origin.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { get, type IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { HttpProxyAgent } from 'http-proxy-agent'
import { EnvHttpProxyAgent, ProxyAgent, request, type Dispatcher } from 'undici'
import { CURL_TIMEOUT_MS as CLIENT_TIMEOUT_MS, curlEnv as childEnv, curl as runCurl, needCurl } from '../helpers/curl.js'
import { startDnsStubRetrying as startStub, type DnsStub } from '../helpers/dns-stub.js'
import { startHttpOrigin, startHttpsOrigin } from '../helpers/origin.js'
import { LOOPBACK_ALLOWED, startSluice, type LogRecord, type Sluice } from '../helpers/sluice.js'

/** curl with `env` as its whole environment; any failure (--fail-with-body) fails the test. */
async function curl (args: readonly string[], env: NodeJS.ProcessEnv): Promise<{ body: string, codes: string }> {
  const r = await runCurl(['--fail-with-body', ...args], { env })
  if (r.exit !== 0) throw new Error(`curl exited ${r.exit}: ${r.stderr}\n${r.stdout}`)
  return { body: r.body, codes: r.codes }
}

describe('real clients through sluice', () => {
  let stub: DnsStub
  let origin: Awaited<ReturnType<typeof startHttpsOrigin>>
  let httpOrigin: Awaited<ReturnType<typeof startHttpOrigin>>
  let sluice: Sluice
  let dir: string
  let caFile: string
  const dispatchers: Dispatcher[] = []

  before(async () => {
    stub = await startStub({ localhost: { A: ['127.0.0.1'] } })
    origin = await startHttpsOrigin()
    httpOrigin = await startHttpOrigin()
    sluice = await startSluice(`${LOOPBACK_ALLOWED}\ndns:\n  servers: ["${stub.address}"]\n`)
    dir = await mkdtemp(join(tmpdir(), 'sluice-clients-'))
    caFile = join(dir, 'ca.pem')
    await writeFile(caFile, origin.ca)
  })

  after(async () => {
    await Promise.allSettled(dispatchers.map(async d => await d.destroy()))
    await sluice?.close()
    await Promise.allSettled([origin?.close(), httpOrigin?.close(), stub?.close()])
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  })

  const isClosed = (r: LogRecord): boolean => r.msg === 'tunnel closed'

  /** Run `fn`, which opens exactly one tunnel to `localhost:port`, and check its 'tunnel closed' record. */
  async function oneTunnel (port: number, fn: () => Promise<void>): Promise<LogRecord> {
    const before = sluice.logs.filter(isClosed).length
    const queriesBefore = stub.queries.length
    await fn()
    const records = await sluice.waitForLogs(isClosed, before + 1)
    const rec = records[before]
    assert.ok(rec !== undefined)
    assert.equal(rec['status'], 200)
    assert.equal(rec['code'], undefined)
    assert.equal(rec['target'], `localhost:${port}`)
    assert.equal(rec['dialed'], `127.0.0.1:${port}`)
    assert.equal(rec['rule'], 'test-loopback')
    assert.equal(typeof rec['bytes_up'], 'number')
    assert.equal(typeof rec['bytes_down'], 'number')
    assert.ok((rec['bytes_up'] as number) > 0, `bytes_up ${String(rec['bytes_up'])}`)
    assert.ok((rec['bytes_down'] as number) > 0, `bytes_down ${String(rec['bytes_down'])}`)
    // The name went to the stub (or was still cached from an earlier case), nowhere else.
    assert.ok(stub.queries.slice(queriesBefore).every(q => q.name === 'localhost'))
    return rec
  }

  it('the stub, not the machine, resolves localhost', async (t) => {
    if (!needCurl(t)) return
    const queriesBefore = stub.queries.length
    await oneTunnel(origin.port, async () => {
      const { body, codes } = await curl(['-x', sluice.url, '--cacert', caFile, `https://localhost:${origin.port}/first`], childEnv())
      assert.equal(body, 'hello from origin GET /first')
      assert.equal(codes, '200 200')
    })
    assert.ok(stub.queries.slice(queriesBefore).some(q => q.name === 'localhost' && q.type === 'A'),
      `stub queries: ${JSON.stringify(stub.queries)}`)
  })

  it('curl -x http://127.0.0.1:PORT --cacert … https://localhost:PORT/hello', async (t) => {
    if (!needCurl(t)) return
    await oneTunnel(origin.port, async () => {
      const { body, codes } = await curl(['-x', sluice.url, '--cacert', caFile, `https://localhost:${origin.port}/hello`], childEnv())
      assert.equal(body, 'hello from origin GET /hello')
      assert.equal(codes, '200 200', 'origin status, then the CONNECT status')
    })
  })

  it('curl with HTTPS_PROXY in its environment', async (t) => {
    if (!needCurl(t)) return
    await oneTunnel(origin.port, async () => {
      const env = childEnv({ HTTPS_PROXY: sluice.url, NO_PROXY: '' })
      const { body, codes } = await curl(['--cacert', caFile, `https://localhost:${origin.port}/hello`], env)
      assert.equal(body, 'hello from origin GET /hello')
      assert.equal(codes, '200 200', 'curl went through the proxy (a CONNECT status is present)')
    })
  })

  it('curl -p (proxytunnel) with an http:// URL', async (t) => {
    if (!needCurl(t)) return
    const requestsBefore = httpOrigin.requests()
    await oneTunnel(httpOrigin.port, async () => {
      const { body, codes } = await curl(['-p', '-x', sluice.url, `http://localhost:${httpOrigin.port}/hello`], childEnv())
      assert.equal(body, 'hello from origin GET /hello')
      assert.equal(codes, '200 200')
    })
    assert.equal(httpOrigin.requests(), requestsBefore + 1)
  })

  /** GET https://localhost:PORT/hello with `dispatcher`, in exactly one tunnel. */
  async function viaUndici (dispatcher: Dispatcher): Promise<void> {
    dispatchers.push(dispatcher)
    await oneTunnel(origin.port, async () => {
      const res = await request(`https://localhost:${origin.port}/hello`, { dispatcher, headersTimeout: CLIENT_TIMEOUT_MS, bodyTimeout: CLIENT_TIMEOUT_MS })
      assert.equal(res.statusCode, 200)
      assert.equal(await res.body.text(), 'hello from origin GET /hello')
      // The pooled connection keeps the tunnel open until the agent closes.
      await dispatcher.close()
    })
  }

  it('undici ProxyAgent', async () => {
    await viaUndici(new ProxyAgent({ uri: sluice.url, requestTls: { ca: origin.ca } }))
  })

  it('undici EnvHttpProxyAgent', async () => {
    await viaUndici(new EnvHttpProxyAgent({ httpsProxy: sluice.url, noProxy: '', requestTls: { ca: origin.ca } }))
  })

  it('http-proxy-agent (plain-HTTP proxying) gets 405 with Allow: CONNECT', async () => {
    const agent = new HttpProxyAgent(sluice.url)
    const requestsBefore = httpOrigin.requests()
    const closedBefore = sluice.logs.filter(isClosed).length
    try {
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = get(`http://127.0.0.1:${httpOrigin.port}/`, { agent, timeout: CLIENT_TIMEOUT_MS }, resolve)
        req.on('timeout', () => req.destroy(new Error('no response')))
        req.on('error', reject)
      })
      const chunks: Buffer[] = []
      for await (const c of res) chunks.push(c as Buffer)
      const body = Buffer.concat(chunks).toString('utf8')
      assert.equal(res.statusCode, 405)
      assert.equal(res.statusMessage, 'Method Not Allowed')
      assert.equal(res.headers.allow, 'CONNECT')
      assert.equal(res.headers.connection, 'close')
      assert.equal(res.headers['content-type'], 'text/plain; charset=utf-8')
      assert.match(String(res.headers['proxy-status']), /^sluice; error=http_request_denied; details="ERR_METHOD_NOT_ALLOWED: /)
      assert.equal(res.headers['content-length'], String(Buffer.byteLength(body)))
      assert.match(body, /^405 Method Not Allowed\n/)
    } finally {
      agent.destroy()
    }
    const refused = await sluice.waitForLog(r => r.msg === 'request refused' && r['method'] === 'GET')
    assert.equal(refused['status'], 405)
    assert.equal(refused['code'], 'ERR_METHOD_NOT_ALLOWED')
    assert.equal(httpOrigin.requests(), requestsBefore, 'the origin was never contacted')
    assert.equal(sluice.logs.filter(isClosed).length, closedBefore, 'no tunnel was made')
  })
})
