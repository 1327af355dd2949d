/**
 * The listener kinds in the config (issue 13): what each kind requires and
 * refuses, and TLS files checked at load, so a bad certificate never
 * reaches a running listener (a reload with one is refused).
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import { makeCert } from '../helpers/tls.js'
import { toIpKey } from '../../src/net/ip.js'

let dir = ''
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sluice-listeners-config-'))
  const a = await makeCert({ names: ['a.test'] })
  const b = await makeCert({ names: ['b.test'] })
  await writeFile(join(dir, 'a.pem'), a.cert)
  await writeFile(join(dir, 'a.key'), a.key)
  await writeFile(join(dir, 'b.key'), b.key)
  await writeFile(join(dir, 'junk.pem'), 'not a certificate\n')
})
after(async () => { await rm(dir, { recursive: true, force: true }) })

/** Problems parseConfig reports for `listen` (file in the temp dir, so relative paths resolve there). */
function problems (listen: string, extra = ''): string[] {
  try {
    parseConfig(`version: 1\nlisten:\n${listen}\n${extra}`, join(dir, 'x.yaml'))
    return []
  } catch (err) {
    if (err instanceof ConfigError) return err.problems.map(p => p.replace(join(dir, 'x.yaml'), 'x.yaml').replace(dir, 'DIR'))
    throw err
  }
}

describe('listener kinds in the config', () => {
  it('a plain entry and an object without kind are connect listeners', () => {
    const c = parseConfig('version: 1\nlisten: ["127.0.0.1:1", { address: "127.0.0.1:2" }]\n', join(dir, 'x.yaml'))
    assert.deepEqual(c.listen.map(l => [l.name, l.kind]), [['127.0.0.1:1', 'connect'], ['127.0.0.1:2', 'connect']])
  })

  it('a tcp listener needs a target, parsed like a CONNECT target, and may name a route', () => {
    const c = parseConfig('version: 1\nlisten:\n  - { address: "127.0.0.1:1", name: db, kind: tcp, target: "DB.Example.:5432", via: direct }\n', join(dir, 'x.yaml'))
    const l = c.listen[0]
    assert.deepEqual([l?.kind, l?.target?.authority, l?.via], ['tcp', 'db.example:5432', 'direct'])
    assert.deepEqual(problems('  - { address: "127.0.0.1:1", kind: tcp }'), ['x.yaml:3: listen[0].target: required: a tcp listener needs target: host:port'])
    assert.deepEqual(problems('  - { address: "127.0.0.1:1", kind: tcp, target: "db.example" }'), ['x.yaml: listen[0].target: port is missing: add one, e.g. db.example:443'])
    assert.deepEqual(problems('  - { address: "127.0.0.1:1", name: db, kind: tcp, target: "db.example:5432", via: nowhere }'),
      ["x.yaml: listen: listener 'db': via 'nowhere' is not a route or parent (routes: direct)"])
  })

  it('target and via belong to tcp listeners, tls to connect listeners', () => {
    assert.match(problems('  - { address: "127.0.0.1:1", target: "a.test:1" }').join('\n'), /only a tcp listener has target \(add kind: tcp\)/)
    assert.match(problems('  - { address: "127.0.0.1:1", via: direct }').join('\n'), /only a tcp, sni or terminate listener has via/)
    assert.match(problems('  - { address: "127.0.0.1:1", kind: tcp, target: "a.test:1", tls: { cert_file: a.pem, key_file: a.key } }').join('\n'), /only a connect or terminate listener has tls/)
  })

  it('an sni listener: target_port (default 443) and a map of names and *.suffix patterns to targets; neither elsewhere', () => {
    const c = parseConfig('version: 1\nlisten:\n  - { address: "127.0.0.1:1", name: s, kind: sni, map: { "Exact.Example": "10.0.0.1:8443", "*.corp.example": "db.corp.example:5432" } }\n', join(dir, 'x.yaml'))
    const l = c.listen[0]
    assert.equal(l?.targetPort, 443)
    assert.equal(l?.map?.exact.get('exact.example')?.target.authority, '10.0.0.1:8443')
    assert.deepEqual(l?.map?.suffixes.map(([s, t]) => [s, t.target.authority]), [['.corp.example', 'db.corp.example:5432']])
    assert.match(problems('  - { address: "127.0.0.1:1", target_port: 8443 }').join('\n'), /only a sni or terminate listener has target_port/)
    assert.match(problems('  - { address: "127.0.0.1:1", kind: sni, map: { "a.test": "nope" } }').join('\n'), /map\.a\.test: port is missing/)
    assert.match(problems('  - { address: "127.0.0.1:1", kind: sni, tls: { cert_file: a.pem, key_file: a.key } }').join('\n'), /only a connect or terminate listener has tls/)
    assert.match(problems('  - { address: "127.0.0.1:1", kind: sni, map: { "a.test": { target: "a.test:1" } } }').join('\n'), /only a terminate listener's map entries take/)
  })

  it('reads TLS files relative to the config, hashes and watches them, and names the SNI names of each certificate', () => {
    const c = parseConfig('version: 1\nlisten:\n  - { address: "127.0.0.1:1", tls: { cert_file: a.pem, key_file: a.key } }\n', join(dir, 'x.yaml'))
    const tls = c.listen[0]?.tls
    assert.ok(tls !== undefined)
    assert.deepEqual([tls.main.names, tls.minVersion, tls.clientCert, tls.identity], [['a.test'], 'TLSv1.2', 'none', 'cn'])
    assert.ok(c.files.includes(join(dir, 'a.pem')) && c.files.includes(join(dir, 'a.key')), JSON.stringify(c.files))
  })

  it('refuses a missing file, a file that is no certificate, and a key that is not the certificate\'s', () => {
    assert.match(problems('  - { address: "127.0.0.1:1", tls: { cert_file: nope.pem, key_file: a.key } }').join('\n'), /tls\.cert_file: cannot read DIR\/nope\.pem: ENOENT/)
    assert.match(problems('  - { address: "127.0.0.1:1", tls: { cert_file: junk.pem, key_file: a.key } }').join('\n'), /listen\[0\]\.tls: cannot use this certificate and key/)
    assert.match(problems('  - { address: "127.0.0.1:1", tls: { cert_file: a.pem, key_file: b.key } }').join('\n'), /listen\[0\]\.tls: cannot use this certificate and key: .*(key values mismatch|KEY_VALUES_MISMATCH)/i)
    assert.match(problems('  - { address: "127.0.0.1:1", tls: { cert_file: a.pem, key_file: a.key, client_ca_file: junk.pem } }').join('\n'), /client_ca_file: not a usable CA bundle/)
  })

  it('refuses a CA bundle joined without a newline, which OpenSSL would stop reading at the join', async () => {
    const { ca, cert } = await makeCert({ names: ['a.test'] })
    const listen = (file: string): string => `  - { address: "127.0.0.1:1", tls: { cert_file: a.pem, key_file: a.key, client_ca_file: ${file} } }`
    await writeFile(join(dir, 'joined.pem'), `${ca.trimEnd()}${cert}`)
    assert.match(problems(listen('joined.pem')).join('\n'), /client_ca_file: not a usable CA bundle: .*files joined without a newline/)
    // The same certificates a line apart, or CRLF-separated, are fine.
    await writeFile(join(dir, 'bundle.pem'), `${ca.trimEnd()}\n${cert}`)
    await writeFile(join(dir, 'bundle-crlf.pem'), `${ca.trimEnd().replace(/\r?\n/g, '\r\n')}\r\n${cert.replace(/\r?\n/g, '\r\n')}`)
    assert.deepEqual(problems(listen('bundle.pem')), [])
    assert.deepEqual(problems(listen('bundle-crlf.pem')), [])
  })
})

describe('sluice validate and client-certificate listeners', () => {
  const warnings = (listen: string, rules: string): readonly string[] =>
    parseConfig(`version: 1\nlisten:\n${listen}\n${rules}`, join(dir, 'x.yaml'), { lint: true }).warnings

  it('a listener beyond loopback that requires client certificates is not an open proxy, and users: rules can match its users', async () => {
    await writeFile(join(dir, 'ca.pem'), (await makeCert({ names: ['ca.test'] })).ca)
    const rules = 'rules: [{ name: staff, action: allow, users: [alice], ports: [443] }, { name: https, action: allow, ports: [443] }]'
    const mtls = '  - { address: "0.0.0.0:3129", name: remote, tls: { cert_file: a.pem, key_file: a.key, client_ca_file: ca.pem } }'
    assert.deepEqual(warnings(mtls, rules), [])
    // Without client certificates the same listener is open, and users: cannot match.
    const plain = warnings('  - { address: "0.0.0.0:3129", name: remote, tls: { cert_file: a.pem, key_file: a.key } }', rules)
    assert.equal(plain.length, 2, plain.join('\n'))
    assert.match(plain.join('\n'), /no request has a user/)
    assert.match(plain.join('\n'), /an open proxy/)
  })
})

describe('a parent\'s TLS files are part of the config (issue 13: a rotated client certificate is reloaded)', () => {
  it('ca_file, cert_file and key_file are watched and hashed; a password file is watched by nobody and hashed never', async () => {
    await writeFile(join(dir, 'pw'), 'hunter2\n')
    const first = await makeCert({ names: ['client.test'] })
    await writeFile(join(dir, 'p.pem'), first.cert)
    await writeFile(join(dir, 'p.key'), first.key)
    const yaml = 'version: 1\nparents: { corp: { url: "https://127.0.0.1:9", ca_file: p.pem, cert_file: p.pem, key_file: p.key, username: u, password_file: pw } }\n'
    const before = parseConfig(yaml, join(dir, 'x.yaml'))
    for (const f of ['p.pem', 'p.key']) assert.ok(before.files.includes(join(dir, f)), `${f} in ${JSON.stringify(before.files)}`)
    assert.ok(!before.files.includes(join(dir, 'pw')), 'the password file is not hashed into the logged config hash')
    const other = await makeCert({ names: ['rotated.test'] })
    await writeFile(join(dir, 'p.pem'), other.cert)
    await writeFile(join(dir, 'p.key'), other.key)
    const after = parseConfig(yaml, join(dir, 'x.yaml'))
    assert.notEqual(after.hash, before.hash, 'a new client certificate is a new config')
  })

  it('proxy_protocol: on every kind, a list of CIDRs compiled to a matcher of the connection\'s own address (issue 15)', () => {
    const c = parseConfig([
      'version: 1',
      'listen:',
      '  - { address: "127.0.0.1:1", name: c, proxy_protocol: { from: [127.0.0.1/32, "10.0.0.0/8", "2001:db8::/32"] } }',
      '  - { address: "127.0.0.1:2", name: t, kind: tcp, target: "a.test:1", proxy_protocol: { from: [10.1.2.3] } }',
      '  - { address: "127.0.0.1:3", name: s, kind: sni, proxy_protocol: { from: ["::1"] } }',
      '  - { address: "127.0.0.1:4", name: plain }',
      ''
    ].join('\n'), join(dir, 'x.yaml'))
    const [cl, t, s, plain] = c.listen
    assert.deepEqual(cl?.proxyProtocol?.from, ['127.0.0.1/32', '10.0.0.0/8', '2001:db8::/32'])
    const m = (l: (typeof c.listen)[number] | undefined, a: string): boolean | undefined => l?.proxyProtocol?.sources.match(toIpKey(a) ?? assert.fail(a))
    assert.deepEqual([m(cl, '127.0.0.1'), m(cl, '10.9.9.9'), m(cl, '::ffff:10.0.0.1'), m(cl, '2001:db8::5'), m(cl, '127.0.0.2')], [true, true, true, true, false])
    assert.deepEqual([m(t, '10.1.2.3'), m(t, '10.1.2.4'), m(s, '::1'), m(s, '127.0.0.1')], [true, false, true, false])
    assert.equal(plain?.proxyProtocol, undefined)
  })

  it('proxy_protocol: from is required, not empty, every entry an address or CIDR, no other keys', () => {
    assert.match(problems('  - { address: "127.0.0.1:1", proxy_protocol: {} }').join('\n'), /listen\[0\]\.proxy_protocol\.from/)
    assert.match(problems('  - { address: "127.0.0.1:1", proxy_protocol: { from: [] } }').join('\n'), /proxy_protocol\.from/)
    assert.match(problems('  - { address: "127.0.0.1:1", proxy_protocol: { from: [10.0.0.0/33] } }').join('\n'), /proxy_protocol\.from\[0\]: expected an IP address or CIDR/)
    assert.match(problems('  - { address: "127.0.0.1:1", proxy_protocol: { from: [lb.example] } }').join('\n'), /expected an IP address or CIDR/)
    assert.match(problems('  - { address: "127.0.0.1:1", proxy_protocol: { from: [10.0.0.1], versions: [1] } }').join('\n'), /unknown key 'versions'/)
  })
})
