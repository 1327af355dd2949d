/**
 * docs/benchmarks-terminate.md (`--terminate --update-docs`, issue 14): the
 * terminate run's results (report.ts's resultsMarkdown, with
 * terminate-summary.ts's section) and what that mode measures and how its
 * peers and its TLS origin are set up, beside the other modes' pages.
 */
import { resultsMarkdown, type ReportBody, type RunInfo } from './report.js'
import type { Options } from './options.js'

export function terminateDocsFile (info: RunInfo, o: Options, body: ReportBody): string {
  return `<!-- Written by \`node --import tsx bench/run.ts --terminate --update-docs\`; rerun it rather than editing by hand. -->
# Benchmarks: TLS termination (kind: terminate, routed by SNI, no CONNECT)

The CONNECT results are in [benchmarks.md](benchmarks.md), the HTTPS proxies' in
[benchmarks-tls.md](benchmarks-tls.md), the SNI passthrough's in
[benchmarks-sni.md](benchmarks-sni.md).

How many TLS handshakes per second a \`kind: terminate\` listener (README
"Routing TLS without CONNECT") completes, each one terminated and opened
anew to a verified upstream, how fast it relays the plaintext between the
two TLS legs, what it costs in CPU per connection and in memory per idle
connection, side by side with Apache Traffic Server doing the same work and
with Sluice's own SNI passthrough of the same TLS, on one machine over
loopback only. Issue 14 sets no bar for \`terminate\`: "measure handshakes/s
and bulk against ATS … if it can be set up; else against Sluice's own
passthrough. State which." The summary below states which.

## Latest results

${resultsMarkdown(info, o, body, '###')}
## What is measured

- Every connection is a real TLS 1.3 handshake from the C load generator
  (\`--tls-sni\`, OpenSSL, X25519, ALPN http/1.1) whose SNI, \`echo.test\`,
  \`sink.test\` or \`source.test\`, picks one of the origin's ports through each
  peer's fixed table (IP literals: no DNS). The client verifies the
  certificate it is shown for that name against the run's bench CA, and
  sends no \`CONNECT\`. \`direct\` does the same handshake straight to the TLS
  origin.
- **The origin is HAProxy with TLS in front of origin.c**: HAProxy in TCP
  mode, one frontend per port (\`bind 127.0.0.1:PORT ssl crt …\`, no SNI
  inspection), one thread, pinned to the load CPU with origin.c and loadgen;
  its certificate (ECDSA P-256, for the three names) is signed by the bench
  CA, against which every proxy verifies it for the client's SNI.
- **rate**: connections/s, each connect → full handshake → 64-byte echo →
  close, so one handshake per connection: **handshakes/s**. Its latency, in
  place of CONNECT→200, runs from the connect through the handshake to the
  **first echoed byte**: a proxy may finish the client's handshake before it
  reached the upstream (ATS does; Sluice completes the upstream's first), so
  only the echo shows the whole path. Proxy CPU µs per connection is the
  proxy's CPU over the run divided by the connections completed.
- **bulk**: one connection, N bytes up to the sink, then N down from the
  source, through both TLS legs. **hold**: PSS per idle connection (each a
  client TLS session and an upstream one), then every connection pinged.
  No resumption: each connection is a full handshake.

## Peers

- **sluice-terminate**: Sluice (\`dist/cli.js\`, npm start's Node flags,
  \`--log-level warn\`) with one listener \`{ kind: terminate, tls: { cert_file,
  key_file } (a leaf for the three names from the bench CA), upstream_tls: {
  ca_file: <bench CA> }, target_port: <echo port>, map: { echo.test:
  127.0.0.1:…, sink.test: …, source.test: … } }\` and bench/policy.yaml's one
  rule allowing 127.0.0.0/8 by address (a mapped name is judged as its target).
- **ats-terminate**: Apache Traffic Server 9.2 (set up as the CONNECT page's
  ats, one net thread) with an \`ssl\` port showing the same leaf
  (ssl_multicert.config) and sni.yaml \`partial_blind_route: 127.0.0.1:PORT\`
  per name with \`client_sni_policy: server_name\` (the client's SNI goes
  upstream and is verified), \`proxy.config.ssl.client.CA.cert.filename\` = the
  bench CA, \`ssl.client.verify.server.policy ENFORCED\`, \`…properties ALL\`.
  \`partial_blind_route\` terminates and re-encrypts to the upstream, the same
  work as Sluice's; \`forward_route\` would forward plaintext to it, so it is not
  used. Runs only when \`traffic_server\` is installed.
- **sluice-sni**: Sluice's \`kind: sni\` passthrough with the same table: the
  client's TLS goes through untouched to the TLS origin (one handshake per
  connection, done by loadgen and HAProxy, none by the proxy): the reference
  for what terminating adds.

The setup mirrors the CONNECT page's: proxy pinned to one CPU, load
generator, origins and driver to the other, repetitions interleaved,
re-measured when other processes used the CPUs (see
[benchmarks.md](benchmarks.md), "Method and caveats"). Every handshake on
the load CPU (loadgen's and HAProxy's) is shared by all peers alike.

## Running

\`\`\`
npm run bench -- --terminate                # direct, sluice-terminate, sluice-sni, ats-terminate
npm run bench -- --terminate --quick
npm run bench -- --mode terminate --peers direct,sluice-terminate --skip hold
\`\`\`
`
}
