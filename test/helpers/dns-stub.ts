/**
 * A stub DNS server on loopback, so tests can produce DNS outcomes
 * (NXDOMAIN, NODATA, SERVFAIL, REFUSED, timeouts, names resolving to
 * 127.0.0.1) without touching the machine's resolver. Point a c-ares
 * resolver at it with `resolver.setServers([stub.address])`.
 *
 * Answers over UDP and over TCP (2-byte length prefix) on the same port, in
 * case c-ares falls back to TCP (truncation, or `tcp` forced).
 *
 * A record can also make the server misbehave, for the DNS faults of
 * issue 11: answer late (`delayMs`), or answer a transport with garbage, an
 * empty truncated (TC) reply, or (TCP) a reply cut off mid-message.
 */
import { once } from 'node:events'
import { createSocket, type RemoteInfo, type Socket as DgramSocket } from 'node:dgram'
import { createServer, type Server, type Socket } from 'node:net'
import * as packet from 'dns-packet'

/** What the stub answers for one name. */
export interface StubRecord {
  /** IPv4 addresses answered for A questions. */
  A?: string[]
  /** IPv6 addresses answered for AAAA questions. */
  AAAA?: string[]
  /** Answer every question for this name with this rcode (and no data). */
  rcode?: 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED'
  /** Never answer: the client times out. */
  drop?: boolean
  /** TTL of the answers in seconds (default 60). */
  ttl?: number
  /** Answer this many ms late: a slow server (the answer itself is right). */
  delayMs?: number
  /**
   * How a UDP question is answered (default `answer`): `garbage` is the
   * query's id followed by bytes that are not DNS; `truncated` is an empty
   * reply with TC set, which tells the client to ask again over TCP
   * (RFC 1035 §4.2.1, RFC 7766).
   */
  udp?: 'answer' | 'garbage' | 'truncated'
  /**
   * How a TCP question is answered (default `answer`): `garbage` and
   * `truncated` as for UDP; `cut` sends a length prefix for the whole
   * answer, half of the answer, then closes the connection.
   */
  tcp?: 'answer' | 'garbage' | 'truncated' | 'cut'
}

export type Transport = 'udp' | 'tcp'

/** A running stub DNS server. */
export interface DnsStub {
  /** `'127.0.0.1:PORT'`, ready for `Resolver#setServers`. */
  readonly address: string
  readonly port: number
  /** Every question received (UDP and TCP), name lower-cased without trailing dot. */
  readonly queries: Array<{ name: string, type: string, transport: Transport }>
  /** Add or replace the record for `name` (case-insensitive, trailing dot ignored). */
  set (name: string, rec: StubRecord): void
  /** Stop both listeners and destroy open TCP connections. */
  close (): Promise<void>
}

const RCODES = { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3, REFUSED: 5 } as const
/** Bound on a TCP connection's buffered, not yet complete, input. */
const MAX_TCP_BUFFER = 64 * 1024
/** DNS header flags: QR (a response), RD and RA, rcode 0. */
const RESPONSE_FLAGS = Buffer.from([0x81, 0x80])
/** What follows the header in a `garbage` reply: counts and names that do not add up. */
const GARBAGE = Buffer.from('\x00\x01\x00\x07\xff\xff\x00\x00GARBAGE\xc0\xff\xc0\x0c', 'latin1')

/** What one question gets: the reply bytes, how to send them, and when. */
interface Reply {
  readonly bytes: Buffer
  readonly cut: boolean
  readonly delayMs: number
}

function normalise (name: string): string {
  return name.toLowerCase().replace(/\.+$/, '')
}

/**
 * Start a stub DNS server on 127.0.0.1, port 0.
 * A name with no record gets NXDOMAIN; a record without data for the asked
 * type gets NOERROR with no answers (NODATA); `drop` gets no reply at all.
 */
export async function startDnsStub (records?: Record<string, StubRecord>): Promise<DnsStub> {
  const table = new Map<string, StubRecord>()
  for (const [name, rec] of Object.entries(records ?? {})) table.set(normalise(name), rec)
  const queries: Array<{ name: string, type: string, transport: Transport }> = []
  /** Replies waiting for their `delayMs`, cleared by close(). */
  const timers = new Set<NodeJS.Timeout>()

  /** Send `reply` now, or after its delay. */
  function later (reply: Reply, send: () => void): void {
    if (reply.delayMs <= 0) { send(); return }
    const timer = setTimeout(() => { timers.delete(timer); send() }, reply.delayMs)
    timers.add(timer)
  }

  /** The reply to `msg` received over `transport`, or undefined to stay silent. */
  function answer (msg: Buffer, transport: Transport): Reply | undefined {
    let query: packet.DecodedPacket
    try {
      query = packet.decode(msg)
    } catch {
      return undefined
    }
    if (query.type === 'response') return undefined
    const questions = query.questions ?? []
    const answers: packet.Answer[] = []
    let rcode: number = RCODES.NOERROR
    let drop = false
    let mode: NonNullable<StubRecord['tcp']> = 'answer'
    let delayMs = 0
    for (const q of questions) {
      const name = normalise(q.name)
      queries.push({ name, type: q.type, transport })
      const rec = table.get(name)
      if (rec?.delayMs !== undefined) delayMs = Math.max(delayMs, rec.delayMs)
      const how = transport === 'udp' ? rec?.udp : rec?.tcp
      if (how !== undefined && how !== 'answer') mode = how
      if (rec === undefined) {
        rcode = RCODES.NXDOMAIN
        continue
      }
      if (rec.drop === true) {
        drop = true
        continue
      }
      if (rec.rcode !== undefined) {
        rcode = RCODES[rec.rcode]
        continue
      }
      const ttl = rec.ttl ?? 60
      if (q.type === 'A') {
        for (const data of rec.A ?? []) answers.push({ type: 'A', name: q.name, ttl, data })
      } else if (q.type === 'AAAA') {
        for (const data of rec.AAAA ?? []) answers.push({ type: 'AAAA', name: q.name, ttl, data })
      }
    }
    if (drop) return undefined
    const id = msg.subarray(0, 2)
    if (mode === 'garbage') return { bytes: Buffer.concat([id, RESPONSE_FLAGS, GARBAGE]), cut: false, delayMs }
    // Echo RD, set AA + RA; the rcode lives in the low 4 bits of the flags.
    const flags = ((query.flags ?? 0) & packet.RECURSION_DESIRED) |
      packet.AUTHORITATIVE_ANSWER | packet.RECURSION_AVAILABLE | rcode |
      (mode === 'truncated' ? packet.TRUNCATED_RESPONSE : 0)
    const bytes = packet.encode({
      type: 'response',
      id: query.id ?? 0,
      flags,
      questions, // echoed as asked (case preserved, for 0x20 checks)
      answers: rcode === RCODES.NOERROR && mode !== 'truncated' ? answers : []
    })
    return { bytes, cut: mode === 'cut', delayMs }
  }

  const sockets = new Set<Socket>()
  function onTcp (socket: Socket): void {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let buf = Buffer.alloc(0)
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      // Each iteration consumes at least 2 bytes, so this ends.
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0)
        if (buf.length < 2 + len) break
        const reply = answer(buf.subarray(2, 2 + len), 'tcp')
        buf = buf.subarray(2 + len)
        if (reply !== undefined) {
          later(reply, () => {
            if (socket.destroyed) return
            const prefix = Buffer.alloc(2)
            prefix.writeUInt16BE(reply.bytes.length)
            // `cut`: the prefix promises the whole answer; half of it comes, then FIN.
            if (reply.cut) socket.end(Buffer.concat([prefix, reply.bytes.subarray(0, reply.bytes.length >> 1)]))
            else socket.write(Buffer.concat([prefix, reply.bytes]))
          })
        }
      }
      if (buf.length > MAX_TCP_BUFFER) socket.destroy()
    })
  }

  // UDP and TCP must share one port number; the kernel hands out ephemeral
  // ports per protocol, so the one UDP got may be taken for TCP. Retry a
  // bounded number of times with a fresh pair.
  let udp: DgramSocket | undefined
  let tcp: Server | undefined
  let stopped = false
  let port = 0
  let lastError: unknown
  for (let attempt = 0; attempt < 20 && tcp === undefined; attempt++) {
    const u = createSocket('udp4')
    u.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const reply = answer(msg, 'udp')
      if (reply !== undefined) later(reply, () => { if (!stopped) u.send(reply.bytes, rinfo.port, rinfo.address) })
    })
    u.on('error', () => {}) // e.g. ICMP unreachable after the client went away
    u.bind(0, '127.0.0.1')
    await once(u, 'listening')
    const p = u.address().port
    const t = createServer(onTcp)
    t.listen(p, '127.0.0.1')
    try {
      await once(t, 'listening')
      udp = u
      tcp = t
      port = p
    } catch (err) {
      lastError = err
      const closed = once(u, 'close')
      u.close()
      await closed
    }
  }
  if (udp === undefined || tcp === undefined) throw lastError
  const udpSocket = udp
  const tcpServer = tcp

  let closed: Promise<void> | undefined
  return {
    address: `127.0.0.1:${port}`,
    port,
    queries,
    set (name: string, rec: StubRecord): void {
      table.set(normalise(name), rec)
    },
    close (): Promise<void> {
      closed ??= (async () => {
        stopped = true
        for (const t of timers) clearTimeout(t)
        timers.clear()
        for (const s of sockets) s.destroy()
        const tcpClosed = once(tcpServer, 'close')
        tcpServer.close()
        const udpClosed = once(udpSocket, 'close')
        udpSocket.close()
        await Promise.all([tcpClosed, udpClosed])
      })()
      return closed
    }
  }
}

/**
 * {@link startDnsStub}, tried again (bounded) when it fails with
 * EADDRINUSE: it binds UDP port 0 and then TCP on the same number, which
 * another socket on the machine may hold; it cleans up before throwing, so
 * a fresh try is safe.
 */
export async function startDnsStubRetrying (records?: Record<string, StubRecord>, attempts = 10): Promise<DnsStub> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startDnsStub(records)
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'EADDRINUSE' || attempt >= attempts) throw err
    }
  }
}
