import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ConfigError, parseConfig } from '../../src/config/load.js'
import { parseDuration } from '../../src/config/duration.js'
import { decideRequest } from '../../src/policy/decide.js'

test('every problem is listed at once, with file and path', () => {
  const text = `
version: 1
bogus: 1
timeouts: { idle: soon }
rules:
  - action: allow
    ports: [443, 99999]
  - action: maybe
    ips: [10.0.0.0/33]
`
  assert.throws(() => parseConfig(text, 'policies/corp.yaml'), (err: unknown) => {
    assert.ok(err instanceof ConfigError)
    const p = err.problems.join('\n')
    assert.match(p, /policies\/corp\.yaml: \(top level\): unknown key 'bogus'/)
    assert.match(p, /policies\/corp\.yaml: timeouts\.idle: expected a duration/)
    assert.match(p, /policies\/corp\.yaml: rules\[0\]\.ports\[1\]: expected a port 1-65535 or a range like 8000-8080/)
    assert.match(p, /policies\/corp\.yaml: rules\[1\]\.action:/)
    assert.match(p, /policies\/corp\.yaml: rules\[1\]\.ips\[0\]: expected an IP address or CIDR/)
    assert.equal(err.problems.length, 5)
    return true
  })
})

test('YAML syntax errors and a missing version are reported', () => {
  assert.throws(() => parseConfig('version: 1\nrules: [\n', 'x.yaml'), /x\.yaml/)
  assert.throws(() => parseConfig('rules: []\n', 'x.yaml'), /version: expected version: 1/)
  assert.throws(() => parseConfig('version: 1\nversion: 1\n', 'x.yaml'), /x\.yaml/)
})

test('defaults fill in and the result is frozen', () => {
  const c = parseConfig('version: 1\n', 'min.yaml')
  assert.deepEqual(c.listen, [{ host: '127.0.0.1', port: 3128, name: '127.0.0.1:3128' }])
  assert.equal(c.timeouts.header, 30_000)
  assert.equal(c.timeouts.idle, 3_600_000)
  assert.equal(c.limits.max_header_size, 16_384)
  assert.equal(c.policy.defaultAllow, false)
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.timeouts) && Object.isFrozen(c.policy))
})

test('listen accepts IPv6, lists and named listeners', () => {
  const c = parseConfig('version: 1\nlisten: ["[::1]:3128", { address: "127.0.0.1:8080", name: office }]\n', 'l.yaml')
  assert.deepEqual(c.listen, [{ host: '::1', port: 3128, name: '[::1]:3128' }, { host: '127.0.0.1', port: 8080, name: 'office' }])
})

test('host patterns are normalised like targets: case, trailing dot, IDN', () => {
  const c = parseConfig('version: 1\nrules: [{ action: allow, hosts: ["Bücher.DE.", "*.Example.com"] }]\n', 'h.yaml')
  const f = { port: 443, isName: true, client: '127.0.0.1' }
  assert.equal(decideRequest(c.policy, { ...f, host: 'xn--bcher-kva.de' })?.allow, true)
  assert.equal(decideRequest(c.policy, { ...f, host: 'a.example.com' })?.allow, true)
  assert.equal(decideRequest(c.policy, { ...f, host: 'example.com' })?.allow, false)
  assert.throws(() => parseConfig('version: 1\nrules: [{ action: allow, hosts: ["a.*.com"] }]\n', 'h.yaml'), /rules\[0\]\.hosts\[0\]: expected a host name or \*\.suffix/)
})

test('durations', () => {
  assert.equal(parseDuration('500ms'), 500)
  assert.equal(parseDuration('30s'), 30_000)
  assert.equal(parseDuration('1.5m'), 90_000)
  assert.equal(parseDuration('1h'), 3_600_000)
  assert.equal(parseDuration(250), 250)
  assert.equal(parseDuration('soon'), undefined)
  assert.equal(parseDuration(-1), undefined)
})
