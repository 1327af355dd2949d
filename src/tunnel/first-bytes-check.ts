/**
 * The CONNECT domain-fronting guard (issue 14, third part): after the 200,
 * a tunnel whose verdict carries checks (`tunnel_checks`, or the allowing
 * rule's `sni_match` / `tls_only`, compiled at load: policy/compile.ts)
 * reads its client's first bytes with the ClientHello reader the sni
 * listener uses (tls/client-hello.ts, same cap), before any of them goes
 * upstream:
 *
 * - `sni_match`: a ClientHello must name the CONNECT target's host
 *   (normalised as targets are; an IP-literal target passes a hello without
 *   SNI, and a name target refuses one: nothing could be compared, and a
 *   server's default certificate is how fronting hides). A refusal is
 *   ERR_SNI_MISMATCH with an access_denied alert. Bytes that are not TLS at
 *   all pass unchecked: SSH, SMTP… are not fronted.
 * - `tls_only`: bytes that are not a TLS ClientHello (plain text, SSLv2)
 *   are ERR_TLS_ONLY, closed without an alert (the peer speaks no TLS).
 * - Either way a hello the reader refuses is ERR_SNI_MALFORMED (or
 *   ERR_SNI_TOO_LARGE), with decode_error; a client that sends nothing
 *   whole within `timeouts.header` is ERR_SNI_TIMEOUT, on the listener's
 *   head sweep (server/head-timeouts.ts: no timer per tunnel).
 *
 * Meanwhile upstream → client already flows (Relay with `client` false),
 * so a server that speaks first (an SMTP or SSH banner) is heard and the
 * client can answer it. The client is read by the relay's own half with
 * this check as its gate (Relay.gateClient), so passing costs no switch of
 * read path; a client the relay pipes (TLS) is read with 'data'. When the
 * bytes pass, exactly the bytes read go upstream first and the relay takes
 * the client over (Tunnel.relayClient).
 * A refusal is on the tunnel's one log line: its `code`, and `sni`, `alpn`,
 * `ech` when a hello was read. A tunnel without checks never comes here.
 */
import type { Socket } from 'node:net'
import { ProxyError, type ErrorCode } from '../errors.js'
import type { Target } from '../connect/target.js'
import { normaliseHost } from '../net/host.js'
import { canonicalIp } from '../net/ip.js'
import { TunnelCheck } from '../policy/compile.js'
import type { HeadTimed, HeadTimeouts } from '../server/head-timeouts.js'
import { alertRecord, type Alert } from '../tls/alerts.js'
import { DEFAULT_MAX_HELLO_BYTES, HelloReader, type ClientHello, type HelloResult } from '../tls/client-hello.js'
import type { Gate } from './relay.js'
import type { Tunnel } from './tunnel.js'

const kCheck = Symbol('sluice.firstBytes')
type Checked = Socket & { [kCheck]?: FirstBytesCheck | undefined }

// Shared listeners, `this` = the socket (as tunnel-setup.ts's): no closure per tunnel.
function onCheckData (this: Checked, chunk: Buffer): void { this[kCheck]?.data(chunk) }
function onCheckEnd (this: Checked): void { this[kCheck]?.end() }

/**
 * Judge the client's first bytes of `tunnel` (just established, its relay
 * running upstream → client only) by `checks` (TunnelCheck bits), starting
 * with `head`, the bytes that came with the CONNECT.
 */
export function checkFirstBytes (tunnel: Tunnel, checks: number, head: Buffer, sweep: HeadTimeouts): void {
  new FirstBytesCheck(tunnel, checks, sweep).start(head)
}

/** Does the hello's server_name name the CONNECT target's host? */
export function sniNames (target: Target, sni: string | undefined): boolean {
  if (sni === undefined) return target.kind !== 'name'
  if (sni === target.host) return true
  // The reader lower-cases; a trailing dot, IDN or an IP spelling is normalised as the target was.
  if (sni.includes(':')) return canonicalIp(sni) === target.host
  const h = normaliseHost(sni)
  return h.kind !== 'invalid' && h.host === target.host
}

class FirstBytesCheck implements HeadTimed, Gate {
  readonly since = Date.now()
  /** The relay reads the client for us (tunnel/relay.ts gateClient), rather than 'data'. */
  private inPlace = false
  private passed = false
  private refused = false
  readonly socket: Checked
  private readonly tunnel: Tunnel
  private readonly checks: number
  private readonly sweep: HeadTimeouts
  private readonly reader = new HelloReader(DEFAULT_MAX_HELLO_BYTES)

  constructor (tunnel: Tunnel, checks: number, sweep: HeadTimeouts) {
    this.tunnel = tunnel
    this.socket = tunnel.downstream
    this.checks = checks
    this.sweep = sweep
  }

  start (head: Buffer): void {
    if (head.length > 0 && this.judge(this.reader.push(head))) return
    // The client's FIN came while we dialed: what we have is all there is.
    if (this.socket.readableEnded) { this.end(); return }
    const s = this.socket
    s[kCheck] = this
    s.on('end', onCheckEnd)
    this.sweep.add(this)
    // Read in place by the relay's own client half (no 'data' events, no 64 KiB
    // buffer per read, no stop and restart of the reads when it passes), or,
    // where the relay pipes (a TLS client, SLUICE_RELAY=pipe), with 'data'.
    this.inPlace = this.tunnel.gateClient(this)
    if (!this.inPlace) s.on('data', onCheckData)
  }

  /** @internal The relay's gate (tunnel/relay.ts): a read, as a view valid during the call; false stops the reads. */
  feed (chunk: Buffer): boolean {
    // Refused (a timeout too): what still comes is never judged, nor relayed.
    if (this.refused) return false
    return !this.judge(this.reader.push(chunk)) || this.passed
  }

  /** @internal */
  detach (): void {
    const s = this.socket
    if (s[kCheck] !== this) return
    s[kCheck] = undefined
    s.removeListener('data', onCheckData)
    s.removeListener('end', onCheckEnd)
    this.sweep.delete(this)
  }

  /** @internal */
  data (chunk: Buffer): void {
    this.judge(this.reader.push(chunk))
  }

  /** @internal The client's FIN before an answer. */
  end (): void {
    this.detach()
    // Nothing sent at all: nothing to judge, and the FIN goes on (relayClient sees it).
    if (this.reader.bytes.length === 0) this.pass()
    else this.refuse('ERR_SNI_MALFORMED', 'the client closed before its ClientHello was complete', 'decode_error')
  }

  /** @internal */
  timedOut (ms: number): void {
    this.detach()
    // A start of TLS gets an alert; silence gets a close.
    this.refuse('ERR_SNI_TIMEOUT', `no whole ClientHello within ${ms} ms`, this.reader.bytes.length > 0 ? 'handshake_failure' : undefined)
  }

  /** True once decided (passed or refused). */
  private judge (r: HelloResult): boolean {
    if (r.kind === 'incomplete') return false
    this.detach()
    const tlsOnly = (this.checks & TunnelCheck.tlsOnly) !== 0
    if (r.kind === 'hello') {
      this.matched(r)
      return true
    }
    switch (r.code) {
      case 'NOT_TLS':
        if (tlsOnly) this.refuse('ERR_TLS_ONLY', r.detail, undefined)
        else this.pass()
        break
      case 'SSLV2':
        // An SSLv2-compatible hello has no extensions, so it cannot name a server.
        if (tlsOnly) this.refuse('ERR_TLS_ONLY', r.detail, undefined)
        else this.refuse('ERR_SNI_MISMATCH', `${r.detail} (no SNI); CONNECT named ${this.target()}`, 'access_denied')
        break
      case 'TOO_LARGE':
        this.refuse('ERR_SNI_TOO_LARGE', r.detail, 'decode_error')
        break
      default:
        this.refuse('ERR_SNI_MALFORMED', r.detail, 'decode_error')
    }
    return true
  }

  private matched (hello: ClientHello): void {
    const tunnel = this.tunnel
    tunnel.helloFacts({ sni: hello.serverName, alpn: hello.alpn, ech: hello.echOffered })
    const target = tunnel.target
    if ((this.checks & TunnelCheck.sniMatch) !== 0 && (target === undefined || !sniNames(target, hello.serverName))) {
      const sni = hello.serverName === undefined ? 'no SNI' : `SNI ${JSON.stringify(hello.serverName.slice(0, 253))}`
      this.refuse('ERR_SNI_MISMATCH', `${sni}, CONNECT named ${this.target()}`, 'access_denied')
      return
    }
    this.pass()
  }

  private target (): string {
    return this.tunnel.target?.host ?? '?'
  }

  private pass (): void {
    this.passed = true
    if (this.inPlace) {
      // The bytes may be a view of the relay's read buffer, which the next read reuses.
      this.tunnel.relayClient(Buffer.from(this.reader.bytes))
      return
    }
    // Nothing else reads the client now: what it sends next waits for the relay.
    this.socket.pause()
    this.tunnel.relayClient(this.reader.bytes)
  }

  private refuse (code: ErrorCode, detail: string, alert: Alert | undefined): void {
    this.refused = true
    this.tunnel.reject(new ProxyError(code, { detail }), alert === undefined ? undefined : alertRecord(alert))
  }
}
