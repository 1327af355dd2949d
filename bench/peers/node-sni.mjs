// The floor of a Node SNI passthrough (issue 14), as node-net.mjs is the
// floor of a CONNECT proxy: a bare net.Server that reads the client's
// ClientHello until it is complete (across TCP segments and TLS records),
// takes its server_name, looks it up in a fixed table, dials, replays every
// byte read so far and pipes both ways. No policy, limits, alerts or logs:
// what Node itself costs per passthrough connection. A name that is not in
// the table, a hello without one, or anything that is not a TLS handshake
// is closed.
// usage: node node-sni.mjs PORT NAME=HOST:PORT...   (PORT 0: any free port)
import net from 'node:net'

const [portArg, ...routeArgs] = process.argv.slice(2)
const routes = new Map(routeArgs.map((r) => {
  const [name, target] = r.split('=')
  const i = target.lastIndexOf(':')
  return [name.toLowerCase(), { host: target.slice(0, i), port: Number(target.slice(i + 1)) }]
}))
/** A ClientHello larger than this (all records together) is refused. */
const MAX = 65536

/**
 * The handshake message carried by the TLS records in buf[0..), or
 * undefined while incomplete; null when it is not a handshake.
 * Record: type(1)=22 version(2) length(2); handshake: type(1)=1 length(3).
 */
function helloMessage (buf) {
  let parts
  let have = 0
  let need = -1
  for (let at = 0; at + 5 <= buf.length;) {
    if (buf[at] !== 22) return null
    const len = buf.readUInt16BE(at + 3)
    if (at + 5 + len > buf.length) return undefined
    const frag = buf.subarray(at + 5, at + 5 + len)
    at += 5 + len
    if (parts === undefined) parts = [frag]
    else parts.push(frag)
    have += len
    if (need < 0 && have >= 4) {
      const head = parts.length === 1 ? frag : Buffer.concat(parts)
      if (head[0] !== 1) return null
      need = 4 + head.readUIntBE(1, 3)
    }
    if (need >= 0 && have >= need) return (parts.length === 1 ? frag : Buffer.concat(parts)).subarray(0, need)
  }
  return undefined
}

/** The host_name in a ClientHello's server_name extension (RFC 6066 section 3), or undefined. */
function serverName (m) {
  let at = 4 + 2 + 32 // handshake header, legacy_version, random
  at += 1 + m[at] // session id
  at += 2 + m.readUInt16BE(at) // cipher suites
  at += 1 + m[at] // compression methods
  const end = Math.min(m.length, at + 2 + m.readUInt16BE(at))
  for (at += 2; at + 4 <= end;) {
    const type = m.readUInt16BE(at)
    const len = m.readUInt16BE(at + 2)
    at += 4
    if (type === 0) {
      // server_name_list length(2), then name_type(1)=0 length(2) name
      if (m[at + 2] !== 0) return undefined
      const n = m.readUInt16BE(at + 3)
      return m.toString('latin1', at + 5, at + 5 + n).toLowerCase()
    }
    at += len
  }
  return undefined
}

const server = net.createServer({ noDelay: true }, (client) => {
  let buf = Buffer.alloc(0)
  client.on('error', () => client.destroy())
  const onData = (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    let hello
    try {
      hello = helloMessage(buf)
      if (hello === undefined) { if (buf.length > MAX) client.destroy(); return }
    } catch { hello = null }
    let target
    try {
      target = hello === null ? undefined : routes.get(serverName(hello))
    } catch { target = undefined } // a hello too short for its own lengths
    client.off('data', onData)
    if (target === undefined) { client.destroy(); return }
    client.pause()
    const upstream = net.connect({ host: target.host, port: target.port, noDelay: true }, () => {
      upstream.write(buf)
      buf = undefined
      upstream.pipe(client)
      client.pipe(upstream)
      client.resume()
    })
    upstream.on('error', () => { client.destroy(); upstream.destroy() })
    client.on('close', () => upstream.destroy())
  }
  client.on('data', onData)
})
// PORT 0: the kernel picks one; the line says which (the tests read it).
server.listen(Number(portArg), '127.0.0.1', () => console.log(`bare net.Server SNI passthrough on 127.0.0.1:${server.address().port}, ${routes.size} names`))
