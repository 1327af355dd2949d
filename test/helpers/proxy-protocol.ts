/**
 * PROXY protocol headers written by hand (docs/proxy-protocol.md), as a
 * balancer would send them: v1 lines and v2 binary headers with any
 * command, family, transport and TLVs, for the reader's tests and for raw
 * sockets in the integration tests.
 */
import { isIPv4 } from 'node:net'
import { parseIp } from '../../src/net/ip.js'

export const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex')

/** `PROXY TCP4 src dst sport dport\r\n` (TCP6 for IPv6 addresses). */
export function v1 (src: string, dst: string, sport: number, dport: number): Buffer {
  return Buffer.from(`PROXY ${isIPv4(src) ? 'TCP4' : 'TCP6'} ${src} ${dst} ${sport} ${dport}\r\n`, 'latin1')
}

export interface V2Options {
  /** 0 LOCAL, 1 PROXY (default). */
  readonly command?: number
  /** The version nibble (default 2). */
  readonly version?: number
  /** Overrides the family/transport byte. */
  readonly fam?: number
  readonly tlvs?: ReadonlyArray<readonly [number, Buffer]>
  /** Overrides the length field. */
  readonly length?: number
}

function addressBytes (ip: string): Buffer {
  const a = parseIp(ip)
  if (a === undefined) throw new Error(`not an IP: ${ip}`)
  return Buffer.from(a.toByteArray())
}

/** A v2 header for TCP from `src` to `dst` (family from the addresses); `src` undefined → no address block (UNSPEC). */
export function v2 (src: { address: string, port: number } | undefined, dst: { address: string, port: number } | undefined, opts: V2Options = {}): Buffer {
  let block = Buffer.alloc(0)
  let fam = 0x00
  if (src !== undefined && dst !== undefined) {
    const s = addressBytes(src.address)
    const d = addressBytes(dst.address)
    fam = s.length === 4 ? 0x11 : 0x21
    const ports = Buffer.alloc(4)
    ports.writeUInt16BE(src.port, 0)
    ports.writeUInt16BE(dst.port, 2)
    block = Buffer.concat([s, d, ports])
  }
  const tlvs = (opts.tlvs ?? []).map(([type, value]) => {
    const h = Buffer.alloc(3)
    h[0] = type
    h.writeUInt16BE(value.length, 1)
    return Buffer.concat([h, value])
  })
  const body = Buffer.concat([block, ...tlvs])
  const head = Buffer.alloc(4)
  head[0] = ((opts.version ?? 2) << 4) | (opts.command ?? 1)
  head[1] = opts.fam ?? fam
  head.writeUInt16BE(opts.length ?? body.length, 2)
  return Buffer.concat([SIGNATURE, head, body])
}
