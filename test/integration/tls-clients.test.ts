/**
 * Real clients of an HTTPS proxy listener (issue 13: "Must work with real
 * clients, each in a test"): curl, undici's ProxyAgent, Python requests,
 * openssl s_client and headless Chromium, each speaking TLS to Sluice,
 * CONNECT inside it, and reaching an HTTPS origin (or an echo server) on
 * loopback. Every client trusts the proxy through the test CA, given the way
 * that client takes it; the proxy's certificate and the origin's come from
 * the same CA. `localhost` is resolved by Sluice through a stub DNS server
 * only. Each case waits for its tunnel's `tunnel closed` line.
 */
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it, type TestContext } from 'node:test'
import { promisify } from 'node:util'
import { ProxyAgent, request } from 'undici'
import { dumpDom, homeTrusting, needChromium } from '../helpers/chromium.js'
import { CURL, curl, curlEnv, needCurl } from '../helpers/curl.js'
import { startDnsStubRetrying, type DnsStub } from '../helpers/dns-stub.js'
import { startEchoServer, startHttpsOrigin } from '../helpers/origin.js'
import { startSluice, type LogRecord, type Sluice } from '../helpers/sluice.js'
import { makeClientCert } from '../helpers/tls.js'
import { writeListenerFiles, type ListenerFiles } from '../helpers/tls-listener.js'
import { within } from '../helpers/wait.js'

const execFileP = promisify(execFile)

let dir = ''
let files: ListenerFiles
let stub: DnsStub
let origin: Awaited<ReturnType<typeof startHttpsOrigin>>
let echo: Awaited<ReturnType<typeof startEchoServer>>
let sluice: Sluice
/** alice's client certificate and key, as PEM files. */
const alice = { cert: '', key: '' }

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-tls-clients-'))
  files = await writeListenerFiles(dir)
  const a = await makeClientCert({ cn: 'alice' })
  alice.cert = join(dir, 'alice.pem')
  alice.key = join(dir, 'alice.key')
  await writeFile(alice.cert, a.cert)
  await writeFile(alice.key, a.key)
  stub = await startDnsStubRetrying({ localhost: { A: ['127.0.0.1'] } })
  origin = await startHttpsOrigin()
  echo = await startEchoServer()
  const tls = `cert_file: ${files.cert}, key_file: ${files.key}`
  sluice = await startSluice(`
listen:
  - { address: 127.0.0.1:0, name: remote, tls: { ${tls} } }
  - { address: 127.0.0.1:0, name: mtls, tls: { ${tls}, client_ca_file: ${files.clientCa} } }
dns:
  servers: ["${stub.address}"]
rules:
  - name: loopback
    action: allow
    ips: [127.0.0.0/8]
`)
})

after(async () => {
  await sluice?.close()
  await Promise.allSettled([origin?.close(), echo?.close(), stub?.close()])
  await rm(dir, { recursive: true, force: true })
})

const isClosed = (r: LogRecord): boolean => r.msg === 'tunnel closed'

/** Run `client`, which opens at least one tunnel to `target`; resolves with the first new `tunnel closed` line for it. */
async function tunnelOf (target: string, client: () => Promise<void>): Promise<LogRecord> {
  const seen = new Set(sluice.logs.filter(isClosed))
  await client()
  const rec = await sluice.waitForLog(r => isClosed(r) && !seen.has(r) && r['target'] === target, 10_000)
  assert.deepEqual([rec['status'], rec['code'], rec['rule'], rec['dialed']], [200, undefined, 'loopback', target.replace('localhost', '127.0.0.1')])
  assert.ok(Number(rec['bytes_up']) > 0 && Number(rec['bytes_down']) > 0, JSON.stringify(rec))
  return rec
}

/** `pred`, for records logged after the first `mark` ones. */
const since = (mark: number, pred: (r: LogRecord) => boolean) => (r: LogRecord): boolean => pred(r) && sluice.logs.indexOf(r) >= mark

const proxyUrl = (listener: string): string => `https://localhost:${sluice.portOf(listener)}`
const originTarget = (): string => `localhost:${origin.port}`

/** curl ≥ 7.52 speaks TLS to a proxy (`https://` proxy URLs, --proxy-cacert). */
function needHttpsProxyCurl (t: TestContext): boolean {
  if (!needCurl(t)) return false
  const [major = 0, minor = 0] = (/^curl (\d+)\.(\d+)/.exec(CURL ?? '') ?? []).slice(1).map(Number)
  if (major > 7 || (major === 7 && minor >= 52)) return true
  t.skip(`${CURL ?? 'curl'} is older than 7.52, which has no https:// proxies`)
  return false
}

describe('curl', { timeout: 60_000 }, () => {
  it('curl -p --proxy https://localhost:PORT --proxy-cacert CA https://localhost:ORIGIN/', async (t) => {
    if (!needHttpsProxyCurl(t)) return
    await tunnelOf(originTarget(), async () => {
      const r = await curl(['-p', '--proxy', proxyUrl('remote'), '--proxy-cacert', files.caFile, '--cacert', files.caFile, `${origin.url}curl`])
      assert.equal(r.exit, 0, r.stderr)
      assert.deepEqual([r.body, r.codes], ['hello from origin GET /curl', '200 200'])
    })
  })

  it('curl refuses the proxy without --proxy-cacert: the proxy leg is verified on its own', async (t) => {
    if (!needHttpsProxyCurl(t)) return
    const mark = sluice.logs.length
    // --cacert is for the origin only.
    const r = await curl(['-p', '--proxy', proxyUrl('remote'), '--cacert', files.caFile, `${origin.url}curl`])
    assert.equal(r.exit, 60, `curl's "peer certificate cannot be authenticated": ${r.stderr}`)
    const rec = await sluice.waitForLog(since(mark, l => l.msg === 'tls handshake failed'))
    // The client's alert: it does not trust the proxy (not a client certificate refused).
    assert.deepEqual([rec['listener'], rec['code'], rec['tls_error']], ['remote', 'ERR_TLS_HANDSHAKE', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'])
  })

  it('curl --proxy-cert/--proxy-key: the client certificate\'s CN is the tunnel\'s user', async (t) => {
    if (!needHttpsProxyCurl(t)) return
    const rec = await tunnelOf(originTarget(), async () => {
      const r = await curl(['-p', '--proxy', proxyUrl('mtls'), '--proxy-cacert', files.caFile, '--proxy-cert', alice.cert, '--proxy-key', alice.key,
        '--cacert', files.caFile, `${origin.url}mtls`])
      assert.equal(r.exit, 0, r.stderr)
      assert.deepEqual([r.body, r.codes], ['hello from origin GET /mtls', '200 200'])
    })
    assert.equal(rec['user'], 'alice')
  })

  it('curl without a client certificate is refused in the handshake by a listener that requires one', async (t) => {
    if (!needHttpsProxyCurl(t)) return
    const mark = sluice.logs.length
    const r = await curl(['-p', '--proxy', proxyUrl('mtls'), '--proxy-cacert', files.caFile, '--cacert', files.caFile, `${origin.url}none`])
    assert.notEqual(r.exit, 0)
    assert.equal(r.codes, '000 000', 'no CONNECT answer, no response')
    const rec = await sluice.waitForLog(since(mark, l => l.msg === 'tls handshake failed'))
    assert.deepEqual([rec['listener'], rec['code']], ['mtls', 'ERR_TLS_CLIENT_CERT'])
  })
})

describe('undici', { timeout: 30_000 }, () => {
  it('ProxyAgent with an https:// proxy and proxyTls: { ca }', async () => {
    const agent = new ProxyAgent({ uri: proxyUrl('remote'), proxyTls: { ca: files.ca }, requestTls: { ca: origin.ca } })
    try {
      await tunnelOf(originTarget(), async () => {
        const res = await request(`${origin.url}undici`, { dispatcher: agent })
        assert.deepEqual([res.statusCode, await res.body.text()], [200, 'hello from origin GET /undici'])
      })
    } finally {
      await agent.close()
    }
  })
})

/**
 * Python requests (urllib3 2.x) through an https:// proxy. urllib3 verifies
 * the proxy's certificate with the same CA settings as the origin's
 * (connection.py, _connect_tls_proxy: ca_certs from requests' `verify`),
 * so `verify=` (or REQUESTS_CA_BUNDLE) must be a bundle holding both CAs;
 * it has no client certificate for the proxy (cert_file=None there).
 */
const PY_GET = `
import json, sys, requests
proxy, url, verify = sys.argv[1:4]
try:
    r = requests.get(url, proxies={'https': proxy}, verify=True if verify == '' else verify, timeout=5)
    print(json.dumps({'status': r.status_code, 'body': r.text}))
except requests.exceptions.RequestException as e:
    print(json.dumps({'error': type(e).__name__, 'message': str(e)}))
`

/** python3 with requests: their versions, or why not (asked once, not at module load: node:test would start the tests, then end the file, under a top-level await). */
let python: Promise<{ versions: string } | { missing: string }> | undefined

async function needRequests (t: TestContext): Promise<boolean> {
  python ??= execFileP('python3', ['-c', 'import requests, urllib3; print(requests.__version__, urllib3.__version__)'], { timeout: 10_000 })
    .then(({ stdout }) => ({ versions: stdout.trim() }), (err: Error) => ({ missing: err.message.split('\n')[0] ?? 'python3 failed' }))
  const p = await python
  if ('versions' in p) return true
  if (process.env['CI'] !== undefined && process.env['CI'] !== '') assert.fail(`python3 with requests is needed under CI: ${p.missing}`)
  t.skip(`python3 with requests is not available: ${p.missing}`)
  return false
}

/** requests.get(url) through `proxy`, `verify` = a CA bundle path ('' = requests' default); its JSON report. */
async function pyGet (proxy: string, url: string, verify: string, env: Record<string, string> = {}): Promise<{ status?: number, body?: string, error?: string, message?: string }> {
  const { stdout } = await execFileP('python3', ['-c', PY_GET, proxy, url, verify], { env: curlEnv(env), timeout: 20_000 })
  return JSON.parse(stdout) as { status?: number, body?: string }
}

describe('Python requests', { timeout: 60_000 }, () => {
  it('proxies={\'https\': \'https://localhost:PORT\'}, verify=CA bundle', async (t) => {
    if (!await needRequests(t)) return
    await tunnelOf(originTarget(), async () => {
      assert.deepEqual(await pyGet(proxyUrl('remote'), `${origin.url}python`, files.caFile), { status: 200, body: 'hello from origin GET /python' })
    })
  })

  it('REQUESTS_CA_BUNDLE does the same', async (t) => {
    if (!await needRequests(t)) return
    await tunnelOf(originTarget(), async () => {
      assert.deepEqual(await pyGet(proxyUrl('remote'), `${origin.url}env`, '', { REQUESTS_CA_BUNDLE: files.caFile }), { status: 200, body: 'hello from origin GET /env' })
    })
  })

  it('with its default CAs it refuses the proxy\'s certificate (the proxy leg is verified with `verify`)', async (t) => {
    if (!await needRequests(t)) return
    const mark = sluice.logs.length
    const r = await pyGet(proxyUrl('remote'), `${origin.url}default`, '')
    assert.equal(r.error, 'ProxyError', JSON.stringify(r))
    assert.match(r.message ?? '', /CERTIFICATE_VERIFY_FAILED/)
    const rec = await sluice.waitForLog(since(mark, l => l.msg === 'tls handshake failed'))
    assert.deepEqual([rec['listener'], rec['code'], rec['tls_error']], ['remote', 'ERR_TLS_HANDSHAKE', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA'])
  })
})

describe('openssl s_client', { timeout: 30_000 }, () => {
  /** `openssl s_client` to a listener, verifying it (a failed verification ends the handshake), SNI localhost. */
  function sClient (port: number, extra: readonly string[] = []): ReturnType<typeof spawn> {
    // -quiet implies -ign_eof; -no_ign_eof after it makes our closing stdin end the session.
    return spawn('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', files.caFile, '-servername', 'localhost',
      '-verify_return_error', '-verify_hostname', 'localhost', '-quiet', '-no_ign_eof', ...extra], { stdio: ['pipe', 'pipe', 'pipe'] })
  }

  /** Everything `child` writes to stdout until it holds `text` (bounded). */
  async function readUntil (child: ReturnType<typeof spawn>, text: string): Promise<string> {
    let out = ''
    let err = ''
    child.stderr?.on('data', (d: Buffer) => { err += d.toString('latin1') })
    return await within(new Promise<string>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        out += d.toString('latin1')
        if (out.includes(text)) { child.stdout?.off('data', onData); resolve(out) }
      }
      child.stdout?.on('data', onData)
      child.once('exit', (code) => { reject(new Error(`openssl exited ${String(code)} before ${JSON.stringify(text)}; stdout ${JSON.stringify(out)}; stderr ${err}`)) })
    }), `openssl s_client printing ${JSON.stringify(text)}`, 10_000)
  }

  for (const [listener, extra, user] of [['remote', [], undefined], ['mtls', ['-cert', 'ALICE_CERT', '-key', 'ALICE_KEY'], 'alice']] as const) {
    it(`writes a CONNECT inside TLS${user === undefined ? '' : ' with a client certificate'}, reads the 200 and echoes through the tunnel`, async () => {
      const rec = await tunnelOf(`127.0.0.1:${echo.port}`, async () => {
        const child = sClient(sluice.portOf(listener), extra.map(a => a === 'ALICE_CERT' ? alice.cert : a === 'ALICE_KEY' ? alice.key : a))
        try {
          child.stdin?.write(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\n`)
          assert.match(await readUntil(child, '\r\n\r\n'), /^HTTP\/1\.1 200 /)
          child.stdin?.write('ping through openssl\n')
          await readUntil(child, 'ping through openssl\n')
          const exited = once(child, 'exit')
          child.stdin?.end()
          assert.deepEqual(await within(exited, 'openssl s_client exits at the end of its input'), [0, null])
        } finally {
          child.kill()
        }
      })
      assert.equal(rec['user'], user)
    })
  }
})

describe('headless Chromium', { timeout: 120_000 }, () => {
  it('--proxy-server=https://localhost:PORT loads a page from the HTTPS origin, trusting the test CA through its NSS database', async (t) => {
    if (!needChromium(t)) return
    const home = await homeTrusting(dir, files.caFile)
    await tunnelOf(originTarget(), async () => {
      const dom = await dumpDom(`${origin.url}chromium`, { proxy: proxyUrl('remote'), home, profile: await mkdtemp(join(dir, 'profile-')) })
      assert.match(dom, /<pre[^>]*>hello from origin GET \/chromium<\/pre>/)
    })
  })

  it('without the CA in its NSS database it refuses the proxy, and Sluice logs the client\'s alert', async (t) => {
    if (!needChromium(t)) return
    const home = await mkdtemp(join(dir, 'home-bare-'))
    const mark = sluice.logs.length
    const dom = await dumpDom(`${origin.url}untrusted`, { proxy: proxyUrl('remote'), home, profile: await mkdtemp(join(dir, 'profile-')) })
    assert.doesNotMatch(dom, /hello from origin/)
    const rec = await sluice.waitForLog(since(mark, l => l.msg === 'tls handshake failed'))
    assert.deepEqual([rec['listener'], rec['code'], rec['tls_error']], ['remote', 'ERR_TLS_HANDSHAKE', 'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN'])
  })
})
