/**
 * Parent proxies, piece by piece: loading a parent (URL forms, credentials
 * from the URL, an environment variable or a file), routes and their
 * config problems, NO_PROXY against undici's EnvHttpProxyAgent (the real
 * one, used as an oracle), the CONNECT reply reader, and passive health.
 */
import { describe, it, test, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import type { Socket } from 'node:net'
import pino from 'pino'
import { EnvHttpProxyAgent, type Dispatcher } from 'undici'
import { loadParent, type ParentSpec } from '../../src/upstream/parent.js'
import { noProxyMatcher } from '../../src/upstream/routing.js'
import { parseHead, readConnectReply, ReplyError, type ConnectReply } from '../../src/upstream/connect-response.js'
import { ParentHealth } from '../../src/upstream/health.js'
import { ConfigError, parseConfig, type Config } from '../../src/config/load.js'
import { recordSink } from '../helpers/sluice.js'

const basic = (userPass: string): string => 'Basic ' + Buffer.from(userPass, 'utf8').toString('base64')

const dir = mkdtempSync(join(tmpdir(), 'sluice-parents-unit-'))
after(() => rmSync(dir, { recursive: true, force: true }))
const configFile = join(dir, 'sluice.yaml')

function load (spec: ParentSpec, env: NodeJS.ProcessEnv = {}): ReturnType<typeof loadParent> {
  return loadParent('p', spec, configFile, env)
}

function loadError (spec: ParentSpec, env: NodeJS.ProcessEnv = {}): Error {
  try {
    load(spec, env)
  } catch (err) {
    assert.ok(err instanceof Error)
    return err
  }
  assert.fail(`expected ${JSON.stringify(spec)} to be refused`)
}

// ------------------------------------------------------------ loadParent

describe('loadParent', () => {
  it('reads host and port from an http URL, with no credentials', () => {
    const p = load({ url: 'http://proxy.test:8080' })
    assert.equal(p.name, 'p')
    assert.equal(p.tls, false)
    assert.equal(p.host, 'proxy.test')
    assert.equal(p.port, 8080)
    assert.equal(p.authority, 'proxy.test:8080')
    assert.equal(p.authorization, undefined)
    assert.equal(p.tlsOptions, undefined)
  })

  it('defaults the port to 3128 for http and 443 for https', () => {
    assert.equal(load({ url: 'http://proxy.test' }).port, 3128)
    assert.equal(load({ url: 'http://proxy.test' }).authority, 'proxy.test:3128')
    const s = load({ url: 'https://proxy.test' })
    assert.equal(s.tls, true)
    assert.equal(s.port, 443)
    assert.equal(s.authority, 'proxy.test:443')
  })

  it('keeps an explicit :80 on an http URL (WHATWG URL drops the default port; 80 is not 3128)', () => {
    // new URL('http://h:80').port === '' — the parent listens on 80, not 3128.
    assert.equal(load({ url: 'http://127.0.0.1:80' }).port, 80)
    assert.equal(load({ url: 'http://127.0.0.1:80' }).authority, '127.0.0.1:80')
  })

  it('keeps an explicit :443 on an https URL and :3128 on http', () => {
    assert.equal(load({ url: 'https://proxy.test:443' }).port, 443)
    assert.equal(load({ url: 'http://proxy.test:3128' }).port, 3128)
    assert.equal(load({ url: 'https://proxy.test:80' }).port, 80)
  })

  it('takes an IPv6 literal parent without brackets in host and with them in authority', () => {
    const p = load({ url: 'https://[::1]:8443' })
    assert.equal(p.host, '::1')
    assert.equal(p.port, 8443)
    assert.equal(p.authority, '[::1]:8443')
  })

  it('lower-cases the host name', () => {
    assert.equal(load({ url: 'http://Proxy.Corp.TEST:3128' }).host, 'proxy.corp.test')
  })

  it('builds Basic credentials from the URL', () => {
    assert.equal(load({ url: 'http://user:pass@proxy.test:3128' }).authorization, basic('user:pass'))
  })

  it('percent-decodes user and password, including %40 (@) and %3A (:)', () => {
    const p = load({ url: 'http://svc%40corp:p%40ss%3Aw0rd%2F%25@proxy.test:3128' })
    assert.equal(p.authorization, basic('svc@corp:p@ss:w0rd/%'))
  })

  it('decodes UTF-8 percent-encoding in credentials', () => {
    assert.equal(load({ url: 'http://j%C3%BCrgen:gr%C3%BC%C3%9F@proxy.test:1' }).authorization, basic('jürgen:grüß'))
  })

  it('a user name alone gives an empty password', () => {
    assert.equal(load({ url: 'http://svc@proxy.test:3128' }).authorization, basic('svc:'))
  })

  it('takes the user name from `username` when the URL has none', () => {
    assert.equal(load({ url: 'http://:pw@proxy.test:1', username: 'svc' }).authorization, basic('svc:pw'))
  })

  it('a bad % escape in the password is a clear error that does not show the password', () => {
    const err = loadError({ url: 'http://svc:Sup3rS3cret%zz@proxy.test:3128' })
    assert.match(err.message, /password in the URL is not valid percent-encoding/)
    assert.ok(!err.message.includes('Sup3rS3cret'), err.message)
  })

  it('a bad % escape in the user name is a clear error', () => {
    const err = loadError({ url: 'http://sv%E0%A4c:pw@proxy.test:3128' })
    assert.match(err.message, /user name in the URL is not valid percent-encoding/)
  })

  it('refuses a user name containing ":" (RFC 7617 §2: the parent would split it at the colon)', () => {
    // 'a%3Ab:c' would be sent as base64("a:b:c"): the parent reads user "a", password "b:c".
    assert.throws(() => load({ url: 'http://a%3Ab:c@proxy.test:3128' }), /user/)
    assert.throws(() => load({ url: 'http://proxy.test:3128', username: 'a:b', password_env: 'PW' }, { PW: 'c' }), /user/)
  })

  it('password_env reads the password from the given environment', () => {
    const p = load({ url: 'http://proxy.test:3128', username: 'svc', password_env: 'CORP_PW' }, { CORP_PW: 's3cr:et@x' })
    assert.equal(p.authorization, basic('svc:s3cr:et@x'))
  })

  it('password_env wins over a password in the URL', () => {
    const p = load({ url: 'http://svc:old@proxy.test:3128', password_env: 'CORP_PW' }, { CORP_PW: 'new' })
    assert.equal(p.authorization, basic('svc:new'))
  })

  it('password_env that is not set is an error naming the variable', () => {
    const err = loadError({ url: 'http://proxy.test:3128', username: 'svc', password_env: 'CORP_PW_UNSET' }, {})
    assert.match(err.message, /password_env: environment variable CORP_PW_UNSET is not set/)
  })

  it('password_file is read relative to the config file, one trailing newline stripped', () => {
    writeFileSync(join(dir, 'corp.pass'), 'file:pw@1\n')
    assert.equal(load({ url: 'http://proxy.test:1', username: 'svc', password_file: 'corp.pass' }).authorization, basic('svc:file:pw@1'))
    writeFileSync(join(dir, 'crlf.pass'), 'pw2\r\n')
    assert.equal(load({ url: 'http://proxy.test:1', username: 'svc', password_file: 'crlf.pass' }).authorization, basic('svc:pw2'))
    writeFileSync(join(dir, 'bare.pass'), 'pw3')
    assert.equal(load({ url: 'http://proxy.test:1', username: 'svc', password_file: 'bare.pass' }).authorization, basic('svc:pw3'))
  })

  it('a missing password_file is an error', () => {
    assert.throws(() => load({ url: 'http://proxy.test:1', username: 'svc', password_file: 'missing.pass' }), /missing\.pass/)
  })

  it('refuses a path, a query or a fragment', () => {
    for (const url of ['http://proxy.test:3128/x', 'http://proxy.test:3128/?a=1', 'http://proxy.test:3128?a=1', 'http://proxy.test:3128#frag', 'https://proxy.test/proxy.pac']) {
      assert.match(loadError({ url }).message, /url: a parent URL has no path, query or fragment/, url)
    }
    assert.equal(load({ url: 'http://proxy.test:3128/' }).port, 3128)
  })

  it('refuses schemes other than http and https, and non-URLs', () => {
    assert.match(loadError({ url: 'socks5://proxy.test:1080' }).message, /url: scheme must be http or https, got socks5:/)
    assert.match(loadError({ url: 'ftp://proxy.test' }).message, /scheme must be http or https/)
    assert.match(loadError({ url: 'not a url' }).message, /url: expected http:\/\/\[user:pass@\]host:port/)
    assert.match(loadError({ url: 'http://proxy.test:99999' }).message, /url: expected/)
  })

  it('no error message shows the password', () => {
    const secret = 'Sup3rS3cret'
    for (const url of [`http://u:${secret}@proxy.test:1/x`, `socks5://u:${secret}@proxy.test:1`, `http://u:${secret}@proxy.test:999999`, `http://u:${secret}%@proxy.test:1`]) {
      assert.ok(!loadError({ url }).message.includes(secret), url)
    }
  })

  it('https parents read ca_file, cert_file and key_file relative to the config file, and keep servername', () => {
    writeFileSync(join(dir, 'ca.pem'), 'CA-PEM')
    writeFileSync(join(dir, 'client.pem'), 'CERT-PEM')
    writeFileSync(join(dir, 'client.key'), 'KEY-PEM')
    const p = load({ url: 'https://10.1.2.3:8443', ca_file: 'ca.pem', cert_file: 'client.pem', key_file: 'client.key', servername: 'proxy.corp.test' })
    assert.deepEqual(p.tlsOptions, { ca: 'CA-PEM', cert: 'CERT-PEM', key: 'KEY-PEM', servername: 'proxy.corp.test' })
    assert.deepEqual(load({ url: 'https://proxy.test' }).tlsOptions, {})
    // An absolute path is used as it is.
    assert.equal(load({ url: 'https://proxy.test', ca_file: join(dir, 'ca.pem') }).tlsOptions?.ca, 'CA-PEM')
  })
})

// ------------------------------------------------------------ NO_PROXY

/**
 * undici's own decision, as an oracle: build an EnvHttpProxyAgent and see
 * which of its inner agents a request is dispatched to (the inner agents
 * are stubbed, nothing is sent). `host` is given as Sluice passes it to the
 * matcher: target.host, IPv6 without brackets.
 */
function undiciBypasses (noProxy: string, host: string, port: number): boolean {
  const agent = new EnvHttpProxyAgent({ httpProxy: 'http://127.0.0.1:9', httpsProxy: 'http://127.0.0.1:9', noProxy })
  const inner = new Map(Object.getOwnPropertySymbols(agent).map(s => [s.description, (agent as unknown as Record<symbol, Dispatcher>)[s]]))
  let chosen: string | undefined
  for (const name of ['no proxy agent', 'http proxy agent', 'https proxy agent']) {
    const d = inner.get(name)
    assert.ok(d !== undefined, `undici internals changed: no ${name}`)
    Object.defineProperty(d, 'dispatch', { value: () => { chosen ??= name; return true } })
  }
  const h = host.includes(':') ? `[${host}]` : host
  agent.dispatch({ origin: `https://${h}:${port}`, path: '/', method: 'GET' }, {
    onError () {}, onConnect () {}, onHeaders () { return true }, onData () { return true }, onComplete () {}
  } as unknown as Dispatcher.DispatchHandler)
  assert.ok(chosen !== undefined, 'undici dispatched nowhere')
  return chosen === 'no proxy agent'
}

describe('noProxyMatcher agrees with undici EnvHttpProxyAgent', () => {
  // [NO_PROXY, host, port, goes direct per undici]
  const cases: Array<[string, string, number, boolean, string]> = [
    ['*', 'anything.example', 443, true, '`*` alone matches everything'],
    ['example.com', 'example.com', 443, true, 'exact host'],
    ['example.com', 'notexample.com', 443, false, 'no partial-label match'],
    ['example.com', 'example.org', 443, false, 'other host'],
    ['EXAMPLE.com', 'example.com', 443, true, 'entries are lower-cased'],
    ['.example.com', 'a.example.com', 443, true, '.suffix matches a sub-domain'],
    ['*.example.com', 'a.b.example.com', 443, true, '*.suffix matches a deeper sub-domain'],
    ['example.com:8443', 'example.com', 8443, true, 'host:port, same port'],
    ['example.com:8443', 'example.com', 443, false, 'host:port, other port'],
    ['.example.com:8443', 'a.example.com', 443, false, '.suffix:port, other port'],
    ['a.test, b.test  c.test,,d.test\te.test', 'c.test', 443, true, 'commas, spaces and tabs separate entries'],
    ['a.test, b.test  c.test,,d.test\te.test', 'e.test', 443, true, 'the last entry after a tab'],
    ['a.test, b.test  c.test,,d.test', 'f.test', 443, false, 'a name not in the list'],
    ['', 'example.com', 443, false, 'empty NO_PROXY matches nothing'],
    ['127.0.0.1', '127.0.0.1', 443, true, 'IPv4 literal'],
    ['10.0.0.0/8', '10.1.2.3', 443, false, 'CIDR is not understood'],
    // Where Sluice and undici differ (see the report):
    ['example.com', 'sub.example.com', 443, true, 'a bare host also matches its sub-domains'],
    ['.example.com', 'example.com', 443, true, '.suffix also matches the domain itself'],
    ['*.example.com', 'example.com', 443, true, '*.suffix also matches the domain itself'],
    ['*example.com', 'badexample.com', 443, false, '`*` without a dot is not a wildcard'],
    ['a.test,*', 'x.test', 443, false, '`*` is only special as the whole value'],
    ['[::1]', '::1', 443, true, 'a bracketed IPv6 entry matches the IPv6 target']
  ]
  for (const [noProxy, host, port, direct, what] of cases) {
    it(`${what}: NO_PROXY=${JSON.stringify(noProxy)} ${host}:${port} → ${direct ? 'direct' : 'proxy'}`, () => {
      assert.equal(undiciBypasses(noProxy, host, port), direct, 'oracle check: undici itself')
      assert.equal(noProxyMatcher(noProxy)(host, port), direct)
    })
  }
})

// ------------------------------------------------------------ routing config

function problemsOf (text: string, file = 'routes.yaml'): readonly string[] {
  try {
    parseConfig(text, file)
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return err.problems
  }
  assert.fail('expected a ConfigError')
}

const PARENTS = `
version: 1
parents:
  a: { url: "http://127.0.0.1:3128" }
  b: { url: "http://127.0.0.1:3129" }
`

describe('routing config', () => {
  it('compiles parents, routes, chains and direct; every parent is its own route', () => {
    const c = parseConfig(`${PARENTS}
routes:
  both: [a, b, direct]
  chained: [[a, b], direct]
default_route: both
rules:
  - { name: r, action: allow, hosts: [x.test], via: chained }
`, 'ok.yaml')
    assert.deepEqual([...c.routing.routes.keys()].sort(), ['a', 'b', 'both', 'chained', 'direct'])
    assert.equal(c.routing.defaultRoute.name, 'both')
    const both = c.routing.routes.get('both')
    assert.deepEqual(both?.choices.map(ch => ch.kind === 'direct' ? 'direct' : ch.hops.map(h => h.name).join('>')), ['a', 'b', 'direct'])
    const chained = c.routing.routes.get('chained')
    assert.deepEqual(chained?.choices.map(ch => ch.kind === 'direct' ? 'direct' : ch.hops.map(h => h.name).join('>')), ['a>b', 'direct'])
    const a = c.routing.routes.get('a')
    assert.deepEqual(a?.choices.map(ch => ch.kind === 'chain' ? ch.hops.map(h => h.authority) : 'direct'), [['127.0.0.1:3128']])
    assert.equal(c.routing.routes.get('direct')?.choices[0]?.kind, 'direct')
    assert.equal(c.policy.rules[0]?.via, 'chained')
    assert.equal(c.policy.rules[0]?.viaParent, true)
  })

  it('default_route defaults to direct and parent_backoff to 10 s', () => {
    const c = parseConfig(PARENTS, 'd.yaml')
    assert.equal(c.routing.defaultRoute.name, 'direct')
    assert.equal(c.parentBackoffMs, 10_000)
    assert.equal(parseConfig(`${PARENTS}parent_backoff: 250ms\n`, 'd.yaml').parentBackoffMs, 250)
  })

  it('an unknown parent in a route is a problem at its path', () => {
    assert.deepEqual(problemsOf(`${PARENTS}routes:\n  r: [a, nope]\n`), ["routes.yaml: routes.r[1]: unknown parent 'nope'"])
  })

  it('an unknown parent inside a chain is a problem at its path', () => {
    assert.deepEqual(problemsOf(`${PARENTS}routes:\n  r: [[a, nope]]\n`), ["routes.yaml: routes.r[0][1]: unknown parent 'nope'"])
  })

  it("'direct' inside a chain is a problem that says so", () => {
    const p = problemsOf(`${PARENTS}routes:\n  r: [[a, direct]]\n`)
    assert.equal(p.length, 1)
    assert.match(p[0] ?? '', /^routes\.yaml: routes\.r\[0\]\[1\]: unknown parent 'direct' \('direct' cannot be part of a chain\)$/)
  })

  it('an unknown via is a problem naming the rule', () => {
    assert.deepEqual(problemsOf(`${PARENTS}rules:\n  - { action: allow, ports: [443], via: nowhere }\n`), ["routes.yaml: rules[0].via: unknown route or parent 'nowhere'"])
  })

  it('an unknown default_route is a problem', () => {
    assert.deepEqual(problemsOf(`${PARENTS}default_route: nowhere\n`), ["routes.yaml: default_route: unknown route or parent 'nowhere'"])
  })

  it("'direct' as a parent name is reserved", () => {
    assert.deepEqual(problemsOf('version: 1\nparents:\n  direct: { url: "http://127.0.0.1:3128" }\n'), ["routes.yaml: parents.direct: 'direct' is reserved"])
  })

  it('a route named like a parent (or direct) is a problem', () => {
    assert.deepEqual(problemsOf(`${PARENTS}routes:\n  a: [b]\n`), ["routes.yaml: routes.a: a parent or 'direct' already has this name"])
    assert.deepEqual(problemsOf(`${PARENTS}routes:\n  direct: [a]\n`), ["routes.yaml: routes.direct: a parent or 'direct' already has this name"])
  })

  it('every routing problem is listed at once, parent URL problems included, without the password', () => {
    const p = problemsOf(`
version: 1
parents:
  a: { url: "http://svc:Sup3rS3cret@127.0.0.1:3128/path" }
  b: { url: "http://127.0.0.1:3129", password_env: SLUICE_TEST_SURELY_UNSET_VAR }
  c: { url: "http://127.0.0.1:3130" }
routes:
  r: [[c, direct], ghost]
default_route: ghost
rules:
  - { action: allow, ports: [443], via: nowhere }
`)
    assert.deepEqual(p, [
      'routes.yaml: parents.a: url: a parent URL has no path, query or fragment',
      'routes.yaml: parents.b: password_env: environment variable SLUICE_TEST_SURELY_UNSET_VAR is not set',
      "routes.yaml: routes.r[0][1]: unknown parent 'direct' ('direct' cannot be part of a chain)",
      "routes.yaml: routes.r[1]: unknown parent 'ghost'",
      "routes.yaml: default_route: unknown route or parent 'ghost'",
      "routes.yaml: rules[0].via: unknown route or parent 'nowhere'"
    ])
    assert.ok(!p.join('\n').includes('Sup3rS3cret'))
  })

  it('a parent that failed to load is not also called unknown where a route uses it', () => {
    // The real problem is the unset variable; "unknown parent 'b'" would send the reader looking for a typo.
    const p = problemsOf(`
version: 1
parents:
  b: { url: "http://127.0.0.1:3129", password_env: SLUICE_TEST_SURELY_UNSET_VAR }
routes:
  r: [b]
default_route: b
`)
    assert.deepEqual(p, ['routes.yaml: parents.b: password_env: environment variable SLUICE_TEST_SURELY_UNSET_VAR is not set'])
  })

  it('reference typos are reported together with schema problems', () => {
    const p = problemsOf(`${PARENTS}default_route: ghost\nrules:\n  - { action: allow, ports: [99999], via: nowhere }\n`)
    assert.ok(p.includes("routes.yaml: default_route: unknown route or parent 'ghost'"), p.join('\n'))
    assert.ok(p.includes("routes.yaml: rules[0].via: unknown route or parent 'nowhere'"), p.join('\n'))
    assert.ok(p.some(x => x.startsWith('routes.yaml:8: rules[0].ports[0]:')), p.join('\n'))
  })

  it('unknown keys in a parent are refused', () => {
    const p = problemsOf('version: 1\nparents:\n  a: { url: "http://127.0.0.1:1", password: hunter2 }\n')
    assert.equal(p.length, 1)
    assert.match(p[0] ?? '', /parents\.a: unknown key 'password'/)
  })
})

// ------------------------------------------------------------ --parent and the environment

function routeOf (c: Config, host: string, port: number): string {
  return c.routing.noProxy?.(host, port) === true ? 'direct' : c.routing.defaultRoute.name
}

describe('--parent and parents_from_env', () => {
  it('--parent adds a parent named cli that becomes the default route; via rules keep theirs', () => {
    const c = parseConfig(`${PARENTS}default_route: a\nrules:\n  - { name: r, action: allow, hosts: [x.test], via: b }\n`, 'p.yaml', { parentUrl: 'http://u%40x:p%3Aw@10.9.8.7:8080' })
    assert.equal(c.routing.defaultRoute.name, 'cli')
    const cli = c.routing.parents.get('cli')
    assert.equal(cli?.authority, '10.9.8.7:8080')
    assert.equal(cli?.authorization, basic('u@x:p:w'))
    assert.equal(c.policy.rules[0]?.via, 'b')
  })

  it('a bad --parent URL is a config problem', () => {
    assert.throws(() => parseConfig('version: 1\n', 'p.yaml', { parentUrl: 'socks5://10.0.0.1:1080' }), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.deepEqual(err.problems, ['p.yaml: --parent: url: scheme must be http or https, got socks5:'])
      return true
    })
  })

  it('parents_from_env takes HTTPS_PROXY as the default route and NO_PROXY for direct targets', () => {
    const c = parseConfig('version: 1\nparents_from_env: true\n', 'e.yaml', { env: { HTTPS_PROXY: 'http://10.0.0.1:3128', NO_PROXY: 'internal.test,.corp.test' } })
    assert.equal(c.routing.defaultRoute.name, 'env')
    assert.equal(c.routing.parents.get('env')?.authority, '10.0.0.1:3128')
    assert.equal(routeOf(c, 'example.com', 443), 'env')
    assert.equal(routeOf(c, 'internal.test', 443), 'direct')
    assert.equal(routeOf(c, 'git.corp.test', 443), 'direct')
  })

  it('parents_from_env falls back to HTTP_PROXY, and ignores an empty value', () => {
    assert.equal(parseConfig('version: 1\nparents_from_env: true\n', 'e.yaml', { env: { HTTP_PROXY: 'http://10.0.0.2:3128' } }).routing.parents.get('env')?.authority, '10.0.0.2:3128')
    const c = parseConfig('version: 1\nparents_from_env: true\n', 'e.yaml', { env: { HTTPS_PROXY: '' } })
    assert.equal(c.routing.defaultRoute.name, 'direct')
    assert.equal(c.routing.parents.has('env'), false)
  })

  it('without parents_from_env the environment is ignored', () => {
    const c = parseConfig('version: 1\n', 'e.yaml', { env: { HTTPS_PROXY: 'http://10.0.0.1:3128', NO_PROXY: '*' } })
    assert.equal(c.routing.defaultRoute.name, 'direct')
    assert.equal(c.routing.noProxy, undefined)
  })

  it('NO_PROXY only applies to the environment default, not to --parent', () => {
    const c = parseConfig('version: 1\nparents_from_env: true\n', 'e.yaml', { parentUrl: 'http://10.0.0.9:3128', env: { HTTPS_PROXY: 'http://10.0.0.1:3128', NO_PROXY: '*' } })
    assert.equal(c.routing.defaultRoute.name, 'cli')
    assert.equal(routeOf(c, 'example.com', 443), 'cli')
  })

  it('lower-case https_proxy / no_proxy win over upper-case, as undici reads them', () => {
    const c = parseConfig('version: 1\nparents_from_env: true\n', 'e.yaml', {
      env: { https_proxy: 'http://10.0.0.1:1111', HTTPS_PROXY: 'http://10.0.0.2:2222', no_proxy: 'lower.test', NO_PROXY: 'upper.test' }
    })
    assert.equal(c.routing.parents.get('env')?.authority, '10.0.0.1:1111')
    assert.equal(routeOf(c, 'lower.test', 443), 'direct')
    assert.equal(routeOf(c, 'upper.test', 443), 'env')
  })

  it('a bad HTTPS_PROXY is a config problem', () => {
    assert.throws(() => parseConfig('version: 1\nparents_from_env: true\n', 'e.yaml', { env: { HTTPS_PROXY: 'http://10.0.0.1:3128/pac' } }), (err: unknown) => {
      assert.ok(err instanceof ConfigError)
      assert.deepEqual(err.problems, ['e.yaml: parents_from_env (HTTPS_PROXY): url: a parent URL has no path, query or fragment'])
      return true
    })
  })
})

// ------------------------------------------------------------ the CONNECT reply

/** A stream that stands in for the parent socket; each write is one 'data' chunk. */
function fakeSocket (): { socket: Socket, stream: PassThrough } {
  const stream = new PassThrough()
  return { socket: stream as unknown as Socket, stream }
}

async function replyFrom (chunks: ReadonlyArray<string | Buffer>, timeoutMs = 1000): Promise<{ reply: ConnectReply, stream: PassThrough }> {
  const { socket, stream } = fakeSocket()
  const pending = readConnectReply(socket, timeoutMs)
  for (const c of chunks) stream.write(c)
  return { reply: await pending, stream }
}

async function replyError (chunks: ReadonlyArray<string | Buffer>, opts: { end?: boolean, timeoutMs?: number } = {}): Promise<ReplyError> {
  const { socket, stream } = fakeSocket()
  const pending = readConnectReply(socket, opts.timeoutMs ?? 1000)
  for (const c of chunks) stream.write(c)
  if (opts.end === true) stream.end()
  try {
    await pending
  } catch (err) {
    assert.ok(err instanceof ReplyError, `expected a ReplyError, got ${String(err)}`)
    return err
  }
  assert.fail('expected the reply to be refused')
}

const REPLY = 'HTTP/1.1 200 Connection established\r\nVia: 1.1 parent\r\nX-A: 1\r\nX-A: 2\r\n\r\n'

describe('readConnectReply and parseHead', () => {
  it('reads a 200 with headers and hands back the bytes after the head', async () => {
    const { reply } = await replyFrom([REPLY + 'SERVER-FIRST'])
    assert.equal(reply.status, 200)
    assert.equal(reply.reason, 'Connection established')
    assert.deepEqual(reply.headers, { via: '1.1 parent', 'x-a': '1, 2' })
    assert.equal(reply.rest.toString('latin1'), 'SERVER-FIRST')
  })

  it('reads a reply split into 1-byte chunks; later bytes stay in the socket', async () => {
    const bytes = Buffer.from(REPLY + 'TAIL', 'latin1')
    const { socket, stream } = fakeSocket()
    const pending = readConnectReply(socket, 1000)
    for (let i = 0; i < bytes.length; i++) stream.write(bytes.subarray(i, i + 1))
    const reply = await pending
    assert.equal(reply.status, 200)
    assert.deepEqual(reply.headers, { via: '1.1 parent', 'x-a': '1, 2' })
    assert.equal(reply.rest.length, 0)
    // Nothing was consumed beyond the head: the socket is paused with the rest unread.
    assert.equal(stream.isPaused(), true)
    assert.equal(Buffer.concat([reply.rest, stream.read() as Buffer]).toString('latin1'), 'TAIL')
    assert.equal(stream.listenerCount('data'), 0)
    assert.equal(stream.listenerCount('end'), 0)
    assert.equal(stream.listenerCount('error'), 0)
  })

  it('reads the same reply split in two at every position', async () => {
    const bytes = Buffer.from(REPLY + 'REST', 'latin1')
    for (let i = 1; i < bytes.length; i++) {
      const { reply, stream } = await replyFrom([bytes.subarray(0, i), bytes.subarray(i)])
      assert.equal(reply.status, 200, `split at ${i}`)
      assert.deepEqual(reply.headers, { via: '1.1 parent', 'x-a': '1, 2' }, `split at ${i}`)
      const left = stream.read() as Buffer | null
      assert.equal(Buffer.concat([reply.rest, left ?? Buffer.alloc(0)]).toString('latin1'), 'REST', `split at ${i}`)
    }
  })

  it('refuses a head over 16 KiB that never ends', async () => {
    const filler = `X-Fill: ${'a'.repeat(1000)}\r\n`
    const err = await replyError(['HTTP/1.1 200 OK\r\n', ...Array.from({ length: 17 }, () => filler)])
    assert.equal(err.kind, 'too_large')
  })

  it('refuses a head over 16 KiB even when it arrives complete in one chunk', async () => {
    const big = `HTTP/1.1 200 OK\r\nX-Fill: ${'a'.repeat(20 * 1024)}\r\n\r\n`
    const err = await replyError([big])
    assert.equal(err.kind, 'too_large')
  })

  it('refuses bare LF line endings', async () => {
    assert.equal((await replyError(['HTTP/1.1 200 OK\nVia: x\r\n\r\n'])).kind, 'malformed')
    assert.equal((await replyError(['HTTP/1.1 200 OK\r\nVia: x\nX-B: y\r\n\r\n'])).kind, 'malformed')
    assert.throws(() => parseHead('HTTP/1.1 200 OK\r\nA: 1\nB: 2'), ReplyError)
  })

  it('refuses obs-fold (a header line starting with whitespace)', async () => {
    assert.equal((await replyError(['HTTP/1.1 200 OK\r\nVia: x\r\n  continued\r\n\r\n'])).kind, 'malformed')
    assert.throws(() => parseHead('HTTP/1.1 200 OK\r\nVia: x\r\n\tcontinued'), /bad header line/)
  })

  it('refuses a bad status line', () => {
    for (const line of ['HTTP/2 200 OK', 'HTTP/1.1 20 OK', 'HTTP/1.1 2000 OK', 'http/1.1 200 OK', 'SSH-2.0-OpenSSH_9.2', 'HTTP/1.1  200 OK', '']) {
      assert.throws(() => parseHead(line), (err: unknown) => err instanceof ReplyError && err.kind === 'malformed', JSON.stringify(line))
    }
  })

  it('accepts HTTP/1.0 and a status line without a reason phrase', () => {
    assert.deepEqual(parseHead('HTTP/1.0 200 OK'), { status: 200, reason: 'OK', headers: {} })
    assert.deepEqual(parseHead('HTTP/1.1 407'), { status: 407, reason: '', headers: {} })
  })

  it('a non-HTTP first line is malformed as soon as the line is complete, not a timeout', async () => {
    // An SSH server (a mistyped parent port) sends its banner and waits.
    const err = await replyError(['SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n'], { timeoutMs: 400 })
    assert.equal(err.kind, 'malformed')
  })

  it('a head ended by bare LFs (no CRLFCRLF will ever come) is malformed at once, not a timeout', async () => {
    const err = await replyError(['HTTP/1.1 200 Connection established\nVia: old-proxy\n\n'], { timeoutMs: 400 })
    assert.equal(err.kind, 'malformed')
  })

  it('a close before any reply, or in the middle of it, is "closed"', async () => {
    const before = await replyError([], { end: true })
    assert.equal(before.kind, 'closed')
    assert.match(before.message, /before replying/)
    const mid = await replyError(['HTTP/1.1 200 Con'], { end: true })
    assert.equal(mid.kind, 'closed')
    assert.match(mid.message, /in the middle of its reply/)
  })

  it('no reply within the time allowed is "timeout"', async () => {
    const err = await replyError(['HTTP/1.1 200 OK\r\n'], { timeoutMs: 50 })
    assert.equal(err.kind, 'timeout')
  })

  it('a socket error is passed on as it is', async () => {
    const { socket, stream } = fakeSocket()
    const pending = readConnectReply(socket, 1000)
    const boom = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })
    stream.destroy(boom)
    await assert.rejects(pending, (err: unknown) => err === boom)
  })
})

// ------------------------------------------------------------ ParentHealth

function healthWithLogs (baseMs: number, maxMs?: number): { health: ParentHealth, logs: Array<Record<string, unknown>> } {
  const logs: Array<Record<string, unknown>> = []
  const log = pino({ level: 'debug' }, recordSink(logs))
  return { health: maxMs === undefined ? new ParentHealth(log, baseMs) : new ParentHealth(log, baseMs, maxMs), logs }
}

/** pino's write to a Writable is synchronous per record; read them after a tick. */
async function flushed (): Promise<void> { await new Promise(resolve => setImmediate(resolve)) }

test('ParentHealth: a failure marks the parent down for the backoff, logged once', async () => {
  const { health, logs } = healthWithLogs(1000)
  assert.equal(health.isDown('a', 0), false)
  health.failed('a', 'ERR_PARENT_REFUSED', 10_000)
  assert.equal(health.isDown('a', 10_000), true)
  assert.equal(health.isDown('a', 10_999), true)
  assert.equal(health.isDown('a', 11_000), false)
  assert.equal(health.isDown('b', 10_000), false)
  assert.deepEqual(health.down(10_500), ['a'])
  assert.deepEqual(health.down(11_000), [])
  await flushed()
  const down = logs.filter(l => l['msg'] === 'parent marked down')
  assert.equal(down.length, 1)
  assert.equal(down[0]?.['level'], 40)
  assert.equal(down[0]?.['parent'], 'a')
  assert.equal(down[0]?.['reason'], 'ERR_PARENT_REFUSED')
  assert.equal(down[0]?.['failures'], 1)
  assert.equal(down[0]?.['backoff_ms'], 1000)
})

test('ParentHealth: the backoff doubles per consecutive failure up to the 5 minute cap', async () => {
  const { health, logs } = healthWithLogs(60_000)
  let now = 0
  const backoffs: number[] = []
  for (let i = 0; i < 6; i++) {
    const entry = logs.length
    health.failed('a', 'ERR_PARENT_TIMEOUT', now)
    await flushed()
    const rec = logs[entry]
    backoffs.push(Number(rec?.['backoff_ms']))
    assert.equal(rec?.['failures'], i + 1)
    const b = backoffs[i] ?? 0
    // Down until exactly now + backoff: still down 1 ms before, up at it.
    assert.equal(health.isDown('a', now + b - 1), true)
    assert.equal(health.isDown('a', now + b), false)
    now += b
  }
  assert.deepEqual(backoffs, [60_000, 120_000, 240_000, 300_000, 300_000, 300_000])
})

test('ParentHealth: an explicit cap, and a base above 5 minutes is its own cap', async () => {
  const { health, logs } = healthWithLogs(100, 250)
  health.failed('a', 'x', 0)
  health.failed('a', 'x', 100)
  health.failed('a', 'x', 300)
  await flushed()
  assert.deepEqual(logs.map(l => l['backoff_ms']), [100, 200, 250])
  const big = healthWithLogs(600_000)
  big.health.failed('a', 'x', 0)
  big.health.failed('a', 'x', 600_000)
  await flushed()
  assert.deepEqual(big.logs.map(l => l['backoff_ms']), [600_000, 600_000])
})

test('ParentHealth: a huge failure count stays at the cap', async () => {
  const { health, logs } = healthWithLogs(1000)
  let now = 0
  for (let i = 0; i < 100; i++) { health.failed('a', 'x', now); now += 400_000 }
  await flushed()
  assert.equal(logs.at(-1)?.['backoff_ms'], 300_000)
  assert.equal(logs.at(-1)?.['failures'], 100)
})

test('ParentHealth: a failure while already down is the same outage: not logged again, backoff not stretched', async () => {
  const { health, logs } = healthWithLogs(1000)
  health.failed('a', 'x', 0)
  health.failed('a', 'x', 500)
  await flushed()
  assert.equal(logs.filter(l => l['msg'] === 'parent marked down').length, 1)
  assert.equal(health.isDown('a', 999), true)
  assert.equal(health.isDown('a', 1000), false)
  // The next failure after the backoff is the second in a row: the backoff doubles.
  health.failed('a', 'x', 1000)
  assert.equal(health.isDown('a', 2999), true)
  assert.equal(health.isDown('a', 3000), false)
})

test('ParentHealth: success logs "parent back up" once and resets the backoff', async () => {
  const { health, logs } = healthWithLogs(1000)
  health.succeeded('a') // never failed: nothing to say
  health.failed('a', 'x', 0)
  health.failed('a', 'x', 1000)
  health.succeeded('a')
  health.succeeded('a')
  assert.equal(health.isDown('a', 1500), false)
  health.failed('a', 'x', 5000)
  await flushed()
  const up = logs.filter(l => l['msg'] === 'parent back up')
  assert.equal(up.length, 1)
  assert.equal(up[0]?.['parent'], 'a')
  assert.equal(up[0]?.['after_failures'], 2)
  const down = logs.filter(l => l['msg'] === 'parent marked down')
  assert.deepEqual(down.map(l => [l['failures'], l['backoff_ms']]), [[1, 1000], [2, 2000], [1, 1000]])
})
