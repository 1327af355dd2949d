// The floor of a Node HTTPS proxy (issue 13): node-net.mjs behind a bare
// tls.createServer. TLS from the client, the request line read by hand
// inside it, net.connect to the target, pipe both ways. No policy, no
// limits, no logs: what Node's TLS and sockets cost per tunnel.
// usage: node node-tls.mjs PORT CERT_FILE KEY_FILE
import net from 'node:net'
import tls from 'node:tls'
import { readFileSync } from 'node:fs'

const [port, certFile, keyFile] = process.argv.slice(2)
const HEAD_END = Buffer.from('\r\n\r\n')
const OK = Buffer.from('HTTP/1.1 200 Connection Established\r\n\r\n')
const options = { cert: readFileSync(certFile), key: readFileSync(keyFile), noDelay: true }

tls.createServer(options, (client) => {
  let buf = Buffer.alloc(0)
  client.on('error', () => client.destroy())
  const onData = (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
    const end = buf.indexOf(HEAD_END)
    if (end < 0) { if (buf.length > 16384) client.destroy(); return }
    client.off('data', onData)
    client.pause()
    const line = buf.subarray(0, buf.indexOf('\r\n')).toString('latin1').split(' ')
    const authority = line[1] ?? ''
    const i = authority.lastIndexOf(':')
    const host = authority.slice(0, i).replace(/^\[|\]$/g, '')
    const early = buf.subarray(end + 4)
    const upstream = net.connect({ host, port: Number(authority.slice(i + 1)), noDelay: true }, () => {
      client.write(OK)
      if (early.length > 0) upstream.write(early)
      upstream.pipe(client)
      client.pipe(upstream)
      client.resume()
    })
    upstream.on('error', () => { client.destroy(); upstream.destroy() })
    client.on('close', () => upstream.destroy())
  }
  client.on('data', onData)
}).listen(Number(port), '127.0.0.1', () => console.log(`bare tls.Server CONNECT proxy on 127.0.0.1:${port}`))
