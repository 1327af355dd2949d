/**
 * docs/benchmarks-sni.md (`--sni --update-docs`, issue 14): the SNI
 * passthrough run's results (report.ts's resultsMarkdown) and what that mode
 * measures and how its peers are set up, beside the CONNECT and HTTPS-proxy
 * pages.
 */
import { resultsMarkdown, type ReportBody, type RunInfo } from './report.js'
import type { Options } from './options.js'
import { IDLE_KIB_BAR } from './sni-bar.js'

export function sniDocsFile (info: RunInfo, o: Options, body: ReportBody): string {
  return `<!-- Written by \`node --import tsx bench/run.ts --sni --update-docs\`; rerun it rather than editing by hand. -->
# Benchmarks: SNI passthrough (TLS routed by the ClientHello, no CONNECT)

The CONNECT results are in [benchmarks.md](benchmarks.md), the HTTPS proxies' in
[benchmarks-tls.md](benchmarks-tls.md).

How fast a \`kind: sni\` listener (README "Routing TLS without CONNECT")
relays, how quickly it reads a ClientHello, dials and replays it, how much
memory an idle passthrough connection costs, and whether a ClientHello split
across TCP writes or TLS records gets through, side by side with a bare Node
SNI passthrough, HAProxy and sniproxy, on one machine over loopback only.

## Latest results

${resultsMarkdown(info, o, body, '###')}
## What is measured

- Every connection starts with a canned TLS 1.3 ClientHello from the C load
  generator (\`--sni\`: server_name, supported_groups,
  signature_algorithms, supported_versions, psk_key_exchange_modes and a
  32-byte x25519 key share; \`--sni-pad N\` pads it) instead of a \`CONNECT\`.
  Its server_name, \`echo.test\`, \`sink.test\` or \`source.test\`, picks one
  of the origin's ports through each peer's fixed table (IP literals: no DNS).
  The origin (\`--tls-hello\`) reads the whole hello and answers with one TLS
  record, \`ok <port kind>\`: its arrival ends the **hello→reply** latency (the
  analogue of CONNECT→200) and proves the route; then the bytes after it are
  relayed as in the CONNECT mode. \`direct\` sends the same hello straight
  to the origin.
- **bulk**, **rate** (connections/s, ClientHello → reply → 64-byte echo →
  close) and **hold** (PSS per idle passthrough connection) as on the CONNECT
  page.
- **split**: a short rate run per peer with every hello cut in the middle of
  its server_name and sent in two writes \`--sni-gap-ms\` apart, first as one
  record in two TCP writes (\`tcp\`), then as two TLS records (\`records\`;
  post-quantum key shares make 1.2–2 KB hellos common, and some stacks
  fragment them). A peer passes when connections completed and none failed
  (a 1 s timeout per connection, so a peer that waits for a hello it cannot
  parse fails within the run). \`--sni-split tcp|records\` sends every hello
  of the run that way (all scenarios).
- When sluice-sni runs, the report judges issue 14's bar on the medians:
  bulk ≥ 1.0× haproxy-sni each way, connections/s ≥ 1.0× node-sni, ≤ ${IDLE_KIB_BAR}
  KiB per idle connection, and both split runs passing. haproxy-sni's and
  sniproxy's connections/s are shown beside it (the issue's moonshot, not
  judged).

## Peers

- **sluice-sni**: Sluice (\`dist/cli.js\`, npm start's Node flags, \`--log-level
  warn\`) with one listener \`{ kind: sni, target_port: <echo port>, map: {
  echo.test: 127.0.0.1:…, sink.test: …, source.test: … } }\` and
  bench/policy.yaml's one rule allowing 127.0.0.0/8 by address (a mapped
  name is judged as its target).
- **node-sni**: bench/peers/node-sni.mjs, a bare \`net.Server\` that reads the
  hello until it is complete (across segments and records), takes its
  server_name, dials the table's address, replays the bytes and pipes both
  ways: Node's own floor per passthrough connection, as node-net is for
  CONNECT.
- **haproxy-sni**: HAProxy in TCP mode, one thread, no log: \`tcp-request
  inspect-delay 5s\`, \`tcp-request content accept if { req.ssl_hello_type 1 }\`,
  one \`use_backend … if { req.ssl_sni -i NAME }\` per name, no default backend.
- **sniproxy**: sniproxy's one \`tls\` listener with a table of anchored names
  (\`^echo\\\\.test$ 127.0.0.1:PORT\`), resolver 127.0.0.1, no fallback, no
  access log (single-threaded, libev).

HAProxy and sniproxy (Debian packages) run only when installed. The setup
mirrors the CONNECT page's: proxy pinned to one CPU, load generator, origin
and driver to the other, repetitions interleaved, re-measured when other
processes used the CPUs (see [benchmarks.md](benchmarks.md), "Method and
caveats").

## Running

\`\`\`
npm run bench -- --sni                      # direct, sluice-sni, node-sni, haproxy-sni, sniproxy
npm run bench -- --sni --quick
npm run bench -- --sni --sni-split records --skip hold   # every hello in two TLS records
npm run bench -- --sni --sni-pad 1800       # a post-quantum-sized hello
\`\`\`
`
}
