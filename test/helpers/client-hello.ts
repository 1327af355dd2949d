/**
 * ClientHellos for the tests of tls/client-hello.ts (issue 14): captured
 * from real clients (node:tls, openssl s_client, curl) by a plain TCP
 * server that records the first bytes and never answers, and built or
 * re-framed here: a hello split over several records, padded past 16 KiB,
 * or with one extension changed. The framing code here is independent of
 * the parser under test, so the two can check each other.
 */
import { spawn } from 'node:child_process'
import { createServer, type Socket } from 'node:net'
import { connect as tlsConnect } from 'node:tls'
import { HelloReader, type HelloResult } from '../../src/tls/client-hello.js'
import { curlEnv } from './curl.js'
import { listenOn } from './net.js'

/** Bound on one capture; a failure bound, not synchronisation. */
const CAPTURE_TIMEOUT_MS = 10_000

/** Whether `bytes` holds whole handshake records carrying one whole handshake message (framing only). */
export function recordsComplete (bytes: Buffer): boolean {
  let at = 0
  let have = 0
  let need = -1
  const header: number[] = []
  while (bytes.length - at >= 5) {
    const length = bytes.readUInt16BE(at + 3)
    if (bytes.length - at - 5 < length) return false
    for (let i = at + 5; i < at + 5 + length && header.length < 4; i++) header.push(bytes[i] ?? 0)
    have += length
    at += 5 + length
    if (need < 0 && header.length === 4) need = 4 + ((header[1] ?? 0) << 16 | (header[2] ?? 0) << 8 | (header[3] ?? 0))
    if (need >= 0 && have >= need) return true
  }
  return false
}

/**
 * Start a TCP server on 127.0.0.1, run `start(port, fail)` (which starts a
 * client, calls `fail` if it ends early, and returns how to stop it), and
 * resolve with what the client sent once it amounts to whole records
 * carrying one whole message. Never answers.
 */
export async function capture (start: (port: number, fail: (err: Error) => void) => () => void): Promise<Buffer> {
  const server = createServer()
  const port = await listenOn(server, '127.0.0.1')
  let stop: (() => void) | undefined
  try {
    return await new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no whole ClientHello arrived')), CAPTURE_TIMEOUT_MS)
      server.once('connection', (socket: Socket) => {
        const chunks: Buffer[] = []
        socket.on('error', () => {})
        socket.on('data', (chunk: Buffer) => {
          chunks.push(chunk)
          const all = Buffer.concat(chunks)
          if (!recordsComplete(all)) return
          clearTimeout(timer)
          socket.destroy()
          resolve(all)
        })
      })
      stop = start(port, (err) => { clearTimeout(timer); reject(err) })
    })
  } finally {
    stop?.()
    server.close()
  }
}

/** node:tls's hello: `servername` undefined sends no SNI (connecting to an IP address). */
export async function nodeHello (servername: string | undefined, alpn: readonly string[] = ['h2', 'http/1.1']): Promise<Buffer> {
  return await capture((port) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ...(servername === undefined ? {} : { servername }), ALPNProtocols: [...alpn] })
    socket.on('error', () => {})
    return () => socket.destroy()
  })
}

/** What a program needs to run here; undefined when it is installed. */
async function missing (command: string, args: readonly string[]): Promise<string | undefined> {
  return await new Promise((resolve) => {
    const child = spawn(command, args, { stdio: 'ignore' })
    child.on('error', (err: Error & { code?: string }) => resolve(err.code === 'ENOENT' ? `${command} is not installed` : String(err)))
    child.on('exit', () => resolve(undefined))
  })
}

export const OPENSSL_MISSING = await missing('openssl', ['version'])
export const CURL_MISSING = await missing('curl', ['--version'])

/** Run `command`; `fail` if it cannot start or exits before the capture is done (its stderr says why). */
function spawned (fail: (err: Error) => void, command: string, args: readonly string[], env?: NodeJS.ProcessEnv): () => void {
  const child = spawn(command, args, { stdio: ['pipe', 'ignore', 'pipe'], ...(env === undefined ? {} : { env }) })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  child.on('error', fail)
  child.on('exit', (code, signal) => fail(new Error(`${command} exited (${code ?? signal ?? ''}) before its ClientHello arrived: ${stderr}`)))
  return () => {
    child.removeAllListeners('exit')
    if (child.exitCode === null && child.signalCode === null) child.kill()
  }
}

/** `openssl s_client -servername NAME -alpn ALPN`'s hello; NAME undefined: `-noservername`. */
export async function opensslHello (servername: string | undefined, alpn: string): Promise<Buffer> {
  const name = servername === undefined ? ['-noservername'] : ['-servername', servername]
  return await capture((port, fail) => spawned(fail, 'openssl', ['s_client', '-connect', `127.0.0.1:${port}`, ...name, '-alpn', alpn]))
}

/** `curl --connect-to NAME:443:127.0.0.1:PORT https://NAME/`'s hello. */
export async function curlHello (name: string): Promise<Buffer> {
  return await capture((port, fail) => spawned(fail, 'curl', ['-q', '-sS', '--max-time', '5', '--connect-to', `${name}:443:127.0.0.1:${port}`, `https://${name}/`], curlEnv()))
}

// ------------------------------------------------------------ building and re-framing

/** The handshake message carried by `records` (whole records, any number). */
export function messageOf (records: Buffer): Buffer {
  const parts: Buffer[] = []
  for (let at = 0; at + 5 <= records.length; at += 5 + records.readUInt16BE(at + 3)) {
    parts.push(records.subarray(at + 5, at + 5 + records.readUInt16BE(at + 3)))
  }
  return Buffer.concat(parts)
}

/**
 * `message` framed as handshake records: fragments of the given sizes in
 * turn (the last size repeats), each at most 2^14 unless a test wants more.
 */
export function frame (message: Buffer, sizes: readonly number[] = [16384], version = 0x0301): Buffer {
  const out: Buffer[] = []
  let at = 0
  for (let i = 0; at < message.length; i++) {
    const size = Math.min(sizes[Math.min(i, sizes.length - 1)] ?? 16384, message.length - at)
    out.push(record(message.subarray(at, at + size), 0x16, version))
    at += size
  }
  return Buffer.concat(out)
}

/** One record of `type` carrying `fragment`. */
export function record (fragment: Buffer, type = 0x16, version = 0x0301): Buffer {
  const header = Buffer.alloc(5)
  header[0] = type
  header.writeUInt16BE(version, 1)
  header.writeUInt16BE(fragment.length, 3)
  return Buffer.concat([header, fragment])
}

export type Extension = readonly [type: number, data: Buffer]

/** A ClientHello message split into its fixed part (through compression methods) and its extensions. */
export interface HelloParts { readonly fixed: Buffer, readonly extensions: Extension[] }

export function partsOf (message: Buffer): HelloParts {
  let p = 4 + 2 + 32
  p += 1 + (message[p] ?? 0)
  p += 2 + message.readUInt16BE(p)
  p += 1 + (message[p] ?? 0)
  const fixed = message.subarray(4, p)
  const extensions: Extension[] = []
  if (p < message.length) {
    const end = p + 2 + message.readUInt16BE(p)
    for (p += 2; p < end; p += 4 + message.readUInt16BE(p + 2)) {
      extensions.push([message.readUInt16BE(p), message.subarray(p + 4, p + 4 + message.readUInt16BE(p + 2))])
    }
  }
  return { fixed, extensions }
}

/** A ClientHello message from its parts (`extensions` undefined: no extensions block at all). */
export function helloOf (fixed: Buffer, extensions: readonly Extension[] | undefined): Buffer {
  const body = extensions === undefined
    ? fixed
    : Buffer.concat([fixed, u16(extensions.reduce((n, [, d]) => n + 4 + d.length, 0)), ...extensions.flatMap(([t, d]) => [u16(t), u16(d.length), d])])
  const header = Buffer.from([1, 0, 0, 0])
  header.writeUIntBE(body.length, 1, 3)
  return Buffer.concat([header, body])
}

/** `message` with its extensions changed by `edit`. */
export function withExtensions (message: Buffer, edit: (extensions: Extension[]) => Extension[]): Buffer {
  const { fixed, extensions } = partsOf(message)
  return helloOf(fixed, edit(extensions))
}

export function u16 (n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

/** server_name extension data naming `names` (as host_name unless a type is given). */
export function sniData (...names: Array<string | readonly [number, string]>): Buffer {
  const list = Buffer.concat(names.map((n) => {
    const [type, name] = typeof n === 'string' ? [0, n] : n
    const bytes = Buffer.from(name, 'latin1')
    return Buffer.concat([Buffer.from([type]), u16(bytes.length), bytes])
  }))
  return Buffer.concat([u16(list.length), list])
}

export function alpnData (names: readonly string[]): Buffer {
  const list = Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([Buffer.byteLength(n, 'latin1')]), Buffer.from(n, 'latin1')])))
  return Buffer.concat([u16(list.length), list])
}

export function versionsData (versions: readonly number[]): Buffer {
  return Buffer.concat([Buffer.from([versions.length * 2]), ...versions.map(u16)])
}

/** A fixed part: legacy_version 0x0303, a random, a 32-byte session id, two suites, null compression. */
export function fixedPart (sessionId = 32, suites: readonly number[] = [0x1301, 0x1302]): Buffer {
  return Buffer.concat([u16(0x0303), Buffer.alloc(32, 0xab), Buffer.from([sessionId]), Buffer.alloc(sessionId, 0xcd),
    u16(suites.length * 2), ...suites.map(u16), Buffer.from([1, 0])])
}

/**
 * A hello shaped like a 2026 browser's, about 2 KB: GREASE, an
 * X25519MLKEM768 key share (1,216 bytes, group 0x11ec), an ECH extension,
 * padding. For the benchmark and for large-hello tests.
 */
export function browserLikeHello (name: string): Buffer {
  const keyShare = Buffer.concat([u16(0x1a1a), u16(1), Buffer.alloc(1), u16(0x11ec), u16(1216), Buffer.alloc(1216, 0x42), u16(0x001d), u16(32), Buffer.alloc(32, 0x43)])
  const suites = [0x2a2a, 0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014, 0x009c, 0x009d, 0x002f, 0x0035]
  return helloOf(fixedPart(32, suites), [
    [0x0a0a, Buffer.alloc(0)],
    [0, sniData(name)],
    [23, Buffer.alloc(0)],
    [0xff01, Buffer.from([0])],
    [10, Buffer.concat([u16(10), u16(0x1a1a), u16(0x11ec), u16(0x001d), u16(0x0017), u16(0x0018)])],
    [11, Buffer.from([1, 0])],
    [35, Buffer.alloc(0)],
    [16, alpnData(['h2', 'http/1.1'])],
    [5, Buffer.from([1, 0, 0, 0, 0])],
    [13, Buffer.concat([u16(16), ...[0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601].map(u16)])],
    [18, Buffer.alloc(0)],
    [51, Buffer.concat([u16(keyShare.length), keyShare])],
    [45, Buffer.from([1, 1])],
    [43, versionsData([0x3a3a, 0x0304, 0x0303])],
    [27, Buffer.from([2, 0, 2])],
    [17513, Buffer.concat([u16(3), Buffer.from([2]), Buffer.from('h2')])],
    [0xfe0d, Buffer.concat([Buffer.from([0, 0, 1, 0, 1, 0x8e]), u16(32), Buffer.alloc(32, 0x44), u16(208), Buffer.alloc(208, 0x45)])],
    [0x2a2a, Buffer.from([0])],
    [0x0015, Buffer.alloc(255)]
  ])
}

// ------------------------------------------------------------ feeding a reader

/** Fed to one HelloReader one byte at a time: the first answer, and how many bytes it took. */
export function byteByByte (bytes: Buffer, maxBytes?: number): { result: HelloResult, at: number } {
  const reader = new HelloReader(maxBytes)
  for (let i = 0; i < bytes.length; i++) {
    const result = reader.push(bytes.subarray(i, i + 1))
    if (result.kind !== 'incomplete') return { result, at: i + 1 }
  }
  return { result: reader.push(Buffer.alloc(0)), at: bytes.length }
}

/** Fed to one HelloReader in `pieces`, in turn: the last answer (earlier ones, once final, must repeat). */
export function inPieces (pieces: readonly Buffer[], maxBytes?: number): HelloResult {
  const reader = new HelloReader(maxBytes)
  let result: HelloResult = reader.push(Buffer.alloc(0))
  let final: HelloResult | undefined
  for (const piece of pieces) {
    result = reader.push(piece)
    if (final !== undefined && result !== final) throw new Error('a reader changed its answer')
    if (result.kind !== 'incomplete') final = result
  }
  return result
}
