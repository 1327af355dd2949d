import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { ERRORS, ProxyError, toProxyError, type ErrorCode } from '../../src/errors.js'
import { errorResponse, proxyStatus } from '../../src/tunnel/respond.js'

const codes = Object.keys(ERRORS) as ErrorCode[]

test('every code is documented in README with its status and Proxy-Status type, and nothing else is', async () => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
  const rows = new Map<string, { status: number, type: string }>()
  for (const m of readme.matchAll(/^\| (\d{3}) \| `(ERR_[A-Z_]+)` \| `([a-z_]+)`/gm)) {
    rows.set(m[2] ?? '', { status: Number(m[1]), type: m[3] ?? '' })
  }
  for (const code of codes) {
    const row = rows.get(code)
    assert.ok(row, `${code} missing from README's status table`)
    assert.equal(row.status, ERRORS[code].status, `${code} status`)
    assert.equal(row.type, ERRORS[code].type, `${code} Proxy-Status type`)
  }
  assert.deepEqual([...rows.keys()].sort(), [...codes].sort())
})

test('statuses are standard (RFC 9110) and errors are 4xx/5xx', () => {
  for (const code of codes) {
    assert.ok([400, 403, 405, 407, 408, 421, 429, 431, 500, 502, 503, 504].includes(ERRORS[code].status), code)
  }
})

test('ProxyError carries code, status, type and detail', () => {
  const e = new ProxyError('ERR_DNS_NXDOMAIN', { detail: 'nope.example', params: { rcode: 'NXDOMAIN' } })
  assert.equal(e.code, 'ERR_DNS_NXDOMAIN')
  assert.equal(e.status, 502)
  assert.equal(e.type, 'dns_error')
  assert.equal(e.message, 'name does not exist: nope.example')
  assert.equal(proxyStatus(e), 'sluice; error=dns_error; rcode="NXDOMAIN"; details="ERR_DNS_NXDOMAIN: name does not exist: nope.example"')
})

test('Proxy-Status details are a valid sf-string whatever the input', () => {
  const e = new ProxyError('ERR_BAD_TARGET', { detail: 'a"b\\c\r\nd\u00e9' })
  assert.equal(proxyStatus(e), 'sluice; error=http_request_error; details="ERR_BAD_TARGET: request target must be authority-form host:port: a\\"b\\\\c??d?"')
})

test('errorResponse is a complete HTTP/1.1 response with Content-Length', () => {
  const res = errorResponse(new ProxyError('ERR_TOO_MANY_TUNNELS', { headers: { 'Retry-After': '1' } }))
  const [head, body] = res.split('\r\n\r\n')
  assert.match(head ?? '', /^HTTP\/1\.1 503 Service Unavailable\r\n/)
  assert.match(head ?? '', /\r\nRetry-After: 1(\r\n|$)/)
  assert.match(head ?? '', /\r\nConnection: close(\r\n|$)/)
  assert.match(head ?? '', new RegExp(`\r\nContent-Length: ${Buffer.byteLength(body ?? '')}(\r\n|$)`))
})

test('unknown errors become ERR_INTERNAL keeping the cause', () => {
  const cause = new Error('boom')
  const e = toProxyError(cause)
  assert.equal(e.code, 'ERR_INTERNAL')
  assert.equal(e.cause, cause)
})
