/**
 * One CONNECT over a raw socket, for the variants' positive controls: does
 * the feature really bite (a 407 without credentials, a 403 for a listed
 * name) and does the measured path still get its 200? With `tls`, the
 * CONNECT goes inside TLS (an HTTPS proxy, issue 13), the proxy's
 * certificate verified as loadgen will.
 */
import { readFileSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import type { TlsFiles } from './types.js'

export interface ConnectReply {
  readonly status: number | undefined
  /** The response head (status line and headers), or what arrived before an error. */
  readonly head: string
}

/** A plain socket, or TLS 1.3 verified against the run's CA; `ready` is the event after which to write. */
function open (port: number, tls: TlsFiles | undefined): { s: Socket, ready: string } {
  if (tls === undefined) return { s: connect({ host: '127.0.0.1', port }), ready: 'connect' }
  const s = tlsConnect({ host: '127.0.0.1', port, ca: readFileSync(tls.ca), servername: tls.servername, minVersion: 'TLSv1.3' })
  return { s, ready: 'secureConnect' }
}

/** Send `CONNECT target` with `headers` to 127.0.0.1:port; resolve with the reply head (bounded by `timeoutMs`). */
export async function connectOnce (port: number, target: string, headers: readonly string[] = [], timeoutMs = 5000, tls?: TlsFiles): Promise<ConnectReply> {
  return await new Promise((resolve) => {
    const { s, ready } = open(port, tls)
    let text = ''
    let settled = false
    const done = (): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      s.destroy()
      const end = text.indexOf('\r\n\r\n')
      const head = end < 0 ? text : text.slice(0, end)
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(head)
      resolve({ status: m === null ? undefined : Number(m[1]), head })
    }
    const timer = setTimeout(done, timeoutMs)
    s.setEncoding('latin1')
    s.on(ready, () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n${headers.map(h => h + '\r\n').join('')}\r\n`))
    s.on('data', (d: string) => {
      text += d
      if (text.includes('\r\n\r\n') || text.length > 65_536) done()
    })
    s.on('error', (err: Error) => { if (text === '') text = `(${err.message})`; done() })
    s.on('close', done)
  })
}

export function basicAuth (user: string, pass: string): string {
  return `Proxy-Authorization: Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`
}

export interface Expectation {
  readonly what: string
  readonly target: string
  readonly headers?: readonly string[]
  readonly status: number
  /** Text the reply head must contain too (e.g. the denying rule's name). */
  readonly contains?: string
}

/** Check each expectation in order (inside TLS with `tls`); throws naming the first that failed. */
export async function expectReplies (peer: string, port: number, list: readonly Expectation[], tls?: TlsFiles): Promise<void> {
  for (const e of list) {
    const r = await connectOnce(port, e.target, e.headers, 5000, tls)
    if (r.status !== e.status || (e.contains !== undefined && !r.head.includes(e.contains))) {
      const first = r.head.split('\r\n').filter(l => /^HTTP\/|^proxy-status|^\(/i.test(l)).join(' | ')
      throw new Error(`${peer} check "${e.what}": wanted ${e.status}${e.contains === undefined ? '' : ` mentioning ${e.contains}`}, got ${first === '' ? 'no reply' : first}`)
    }
  }
}

/**
 * A feature that bites after the 200 (the domain-fronting guard, issue 14):
 * CONNECT `target` (an echo port), send `bytes`, and expect the tunnel to be
 * closed with nothing echoed; throws otherwise.
 */
export async function expectClosedAfter (peer: string, port: number, target: string, bytes: Buffer, what: string, timeoutMs = 5000): Promise<void> {
  const got = await new Promise<{ status: number | undefined, after: Buffer, closed: boolean }>((resolve) => {
    const s = connect({ host: '127.0.0.1', port })
    let buf = Buffer.alloc(0)
    let settled = false
    const done = (closed: boolean): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      s.destroy()
      const end = buf.indexOf('\r\n\r\n')
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf.subarray(0, Math.max(end, 0)).toString('latin1'))
      resolve({ status: m === null ? undefined : Number(m[1]), after: end < 0 ? Buffer.alloc(0) : buf.subarray(end + 4), closed })
    }
    const timer = setTimeout(() => done(false), timeoutMs)
    s.on('connect', () => s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`))
    s.on('data', (d: Buffer) => {
      const first = !buf.includes('\r\n\r\n')
      buf = Buffer.concat([buf, d])
      if (first && buf.includes('\r\n\r\n')) s.write(bytes)
      if (buf.length > 65_536) done(false)
    })
    s.on('error', () => done(true))
    s.on('close', () => done(true))
  })
  if (got.status !== 200 || !got.closed || got.after.includes(bytes)) {
    throw new Error(`${peer} check "${what}": wanted a 200 and then a close with nothing echoed, got status ${String(got.status)}, ${got.closed ? 'closed' : 'still open'}, ${got.after.length} bytes after the head`)
  }
}
