// A bare Node CONNECT proxy on http.Server (issue 12): the 'connect' event,
// net.connect and pipe both ways, as ../shared/perf's naive.js. No policy,
// no limits, no logs.
// usage: node node-http.mjs PORT
import http from 'node:http'
import net from 'node:net'

const port = Number(process.argv[2])
const server = http.createServer({ noDelay: true }, (_req, res) => { res.writeHead(405, { connection: 'close' }).end() })
server.on('connect', (req, client, head) => {
  const i = req.url.lastIndexOf(':')
  const upstream = net.connect({ host: req.url.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(req.url.slice(i + 1)), noDelay: true }, () => {
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
    if (head.length > 0) upstream.write(head)
    upstream.pipe(client)
    client.pipe(upstream)
  })
  upstream.on('error', () => { client.destroy(); upstream.destroy() })
  client.on('error', () => upstream.destroy())
  client.on('close', () => upstream.destroy())
})
server.listen(port, '127.0.0.1', () => console.log(`bare http.Server CONNECT proxy on 127.0.0.1:${port}`))
