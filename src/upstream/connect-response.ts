/**
 * Read a parent proxy's reply to our CONNECT: bounded, incremental, strict
 * (modelled on proxy-agents' parse-proxy-response.ts; docs/node-internals.md D7 lists
 * the hazards of hand-rolled readers: unbounded and quadratic buffering,
 * replies split across chunks). Bytes after the head belong to the tunnel
 * and are handed back, never dropped.
 */
import type { Socket } from 'node:net'

export interface ConnectReply {
  readonly status: number
  readonly reason: string
  /** Lower-case names; repeated headers joined with ", ". */
  readonly headers: Readonly<Record<string, string>>
  /** Bytes received after the head (the start of the tunnel, or a body). */
  readonly rest: Buffer
}

/** Why a reply could not be read. */
export class ReplyError extends Error {
  readonly kind: 'closed' | 'too_large' | 'malformed' | 'timeout'
  constructor (kind: ReplyError['kind'], message: string) {
    super(message)
    this.name = 'ReplyError'
    this.kind = kind
  }
}

const MAX_HEAD = 16 * 1024
const STATUS_LINE = /^HTTP\/1\.[01] (\d{3})(?: ([\x20-\x7e\t]*))?$/
const HEADER = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e\t\x80-\xff]*?)[ \t]*$/

export function parseHead (head: string): Omit<ConnectReply, 'rest'> {
  const lines = head.split('\r\n')
  const m = STATUS_LINE.exec(lines[0] ?? '')
  if (m === null) throw new ReplyError('malformed', `bad status line ${JSON.stringify((lines[0] ?? '').slice(0, 80))}`)
  const headers: Record<string, string> = {}
  for (const line of lines.slice(1)) {
    // obs-fold and bare LF are smuggling vectors: refuse them (RFC 9112 §5.2).
    const h = HEADER.exec(line)
    if (h === null) throw new ReplyError('malformed', `bad header line ${JSON.stringify(line.slice(0, 80))}`)
    const name = (h[1] ?? '').toLowerCase()
    headers[name] = headers[name] === undefined ? (h[2] ?? '') : `${headers[name]}, ${h[2] ?? ''}`
  }
  return { status: Number(m[1]), reason: m[2] ?? '', headers }
}

/**
 * Resolve with the reply head once `\r\n\r\n` arrives. Listeners are
 * removed before resolving; the socket is left paused.
 */
export async function readConnectReply (socket: Socket, timeoutMs: number): Promise<ConnectReply> {
  return await new Promise<ConnectReply>((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    // Where to resume the search for CRLFCRLF: only new bytes (and 3 before) are scanned.
    let scanFrom = 0
    const timer = setTimeout(() => done(new ReplyError('timeout', `no reply within ${timeoutMs} ms`)), timeoutMs)

    function done (err: Error | undefined, reply?: ConnectReply): void {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
      socket.off('error', onError)
      socket.pause()
      if (err !== undefined) reject(err)
      else if (reply !== undefined) resolve(reply)
    }
    function onData (chunk: Buffer): void {
      chunks.push(chunk)
      size += chunk.length
      const buf = chunks.length === 1 ? chunk : Buffer.concat(chunks, size)
      if (chunks.length > 1) { chunks.length = 0; chunks.push(buf) }
      // Fail fast on a peer that is not speaking HTTP (an SSH banner, TLS…)
      // or ends lines with bare LF, instead of waiting for the timeout.
      const probe = buf.subarray(0, 5).toString('latin1')
      if (!'HTTP/'.startsWith(probe)) { done(new ReplyError('malformed', `not an HTTP reply (starts with ${JSON.stringify(probe)})`)); return }
      const end = buf.indexOf('\r\n\r\n', Math.max(0, scanFrom - 3), 'latin1')
      const headEnd = end < 0 ? buf.length : end + 2
      for (let lf = buf.indexOf(10, Math.max(0, scanFrom - 1)); lf >= 0 && lf < headEnd; lf = buf.indexOf(10, lf + 1)) {
        if (lf === 0 || buf[lf - 1] !== 13) { done(new ReplyError('malformed', 'bare LF in the reply head')); return }
      }
      if (end > MAX_HEAD) { done(new ReplyError('too_large', `reply head over ${MAX_HEAD} bytes`)); return }
      if (end < 0) {
        scanFrom = buf.length
        // A CRLFCRLF starting at MAX_HEAD may still be arriving: only past
        // MAX_HEAD + 3 bytes can none start in bounds. Cutting off at
        // MAX_HEAD refused a head split inside its CRLFCRLF that is accepted
        // whole (found by test/unit/connect-response.fuzz.test.ts, issue 11).
        if (size > MAX_HEAD + 3) done(new ReplyError('too_large', `reply head over ${MAX_HEAD} bytes`))
        return
      }
      try {
        const head = parseHead(buf.subarray(0, end).toString('latin1'))
        done(undefined, { ...head, rest: buf.subarray(end + 4) })
      } catch (err) {
        done(err as Error)
      }
    }
    function onEnd (): void { done(new ReplyError('closed', size === 0 ? 'closed before replying' : 'closed in the middle of its reply')) }
    function onError (err: Error): void { done(err) }
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('close', onEnd)
    socket.once('error', onError)
    socket.resume()
  })
}
