/**
 * The proxy's own listening endpoints, so a CONNECT back to Sluice itself
 * is refused instead of looping until file descriptors run out.
 */
import { networkInterfaces } from 'node:os'
import type { AddressInfo } from 'node:net'
import { toIpKey } from './ip.js'

function key (address: string, port: number): string {
  const b = toIpKey(address)
  return b === undefined ? `${address}|${port}` : `${b.bytes.join('.')}|${port}`
}

/** Build a predicate `(ip, port) → is this one of our own listeners?`. */
export function selfMatcher (listening: readonly AddressInfo[]): (address: string, port: number) => boolean {
  const self = new Set<string>()
  const loopbackPorts = new Set<number>()
  for (const l of listening) {
    if (l.address === '0.0.0.0' || l.address === '::') {
      // A wildcard listener answers on every local address.
      for (const list of Object.values(networkInterfaces())) {
        for (const i of list ?? []) self.add(key(i.address, l.port))
      }
      loopbackPorts.add(l.port)
    } else {
      self.add(key(l.address, l.port))
    }
  }
  const ports = new Set(listening.map(l => l.port))
  return (address, port) => {
    // Every key in `self` has a listening port: most targets end here, unparsed.
    if (!ports.has(port)) return false
    if (self.has(key(address, port))) return true
    const u = toIpKey(address)
    if (u === undefined) return false
    // Linux connects to 0.0.0.0 / :: as to this host itself.
    if (u.bytes.every(b => b === 0)) return true
    if (!loopbackPorts.has(port)) return false
    return u.v4 ? u.bytes[0] === 127 : u.bytes.every((b, i) => b === (i === 15 ? 1 : 0))
  }
}
