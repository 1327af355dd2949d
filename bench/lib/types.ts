/**
 * The types the bench modules share: what a scenario returns, what a
 * repetition records, and what a peer is. In one module that imports
 * nothing, so the modules that produce and consume them do not import each
 * other (issue 10: peers.ts ↔ process-peer.ts and peers.ts → table.ts →
 * scenarios.ts → peers.ts were cycles).
 */

/** The origin's ports: echo, sink (upload) and source (download). */
export interface OriginPorts { readonly echo: number, readonly sink: number, readonly source: number }

/**
 * `resume`: the rate test again with TLS session resumption (TLS peers only).
 * `split`: SNI mode only, a short rate test with the ClientHello in two
 * writes (issue 14), passed or failed.
 */
export type Scenario = 'bulk' | 'rate' | 'resume' | 'hold' | 'split'

/** How a split ClientHello was cut: two TCP writes of one record, or two TLS records. */
export type SplitKind = 'tcp' | 'records'

export interface RepResult {
  readonly rep: number
  bulk?: BulkResult
  rate?: RateResult
  /** TLS peers: the rate test with resumed handshakes. */
  resume?: RateResult
  hold?: HoldResult
  /** SNI mode: the split-hello runs, by how the hello was cut. */
  split?: Partial<Record<SplitKind, SplitResult>>
  error?: string
  seconds?: number
}

export interface BulkResult {
  readonly upMBps?: number
  readonly downMBps?: number
  /** Proxy CPU seconds per GiB relayed, both directions together. */
  readonly cpuSPerGiB?: number
  /** Other processes' CPU during the runs (% of one CPU; the worse direction). */
  readonly otherCpuPct?: number
  readonly attempts?: number
  readonly ok: boolean
  readonly note?: string
}

export interface RateResult {
  readonly tunnelsPerS?: number
  readonly connectP50Ms?: number
  readonly connectP99Ms?: number
  readonly cycleP99Ms?: number
  readonly errors?: number
  readonly cpuUsPerTunnel?: number
  /** Multi-process proxies: µs/tunnel of the root process, then of each other process, busiest first. */
  readonly cpuByProcessUs?: readonly number[]
  /** CPU of the peer's helper processes (a parent proxy), µs/tunnel; not in cpuUsPerTunnel. */
  readonly auxCpuUsPerTunnel?: number
  /** loadgen's own CPU (it reports it), µs/tunnel: who else used the load CPU. */
  readonly loadgenCpuUsPerTunnel?: number
  readonly otherCpuPct?: number
  /** TLS peers: the share of handshakes that resumed a session, %. */
  readonly tlsResumedPct?: number
  readonly attempts?: number
  readonly ok: boolean
  readonly note?: string
}

export interface HoldResult {
  readonly established?: number
  readonly aliveAfter?: number
  readonly pssKiBPerTunnel?: number
  readonly rssKiBPerTunnel?: number
  readonly setupS?: number
  readonly ok: boolean
  readonly note?: string
}

/** A short rate run with a split ClientHello: passed when connections completed and none failed. */
export interface SplitResult {
  readonly passed: boolean
  readonly completed: number
  readonly errors: number
  readonly ok: boolean
  readonly note?: string
}

/** The run's TLS files (tls-certs.ts), for peers that speak TLS to their clients. */
export interface TlsFiles {
  /** The CA that signed `cert`: what clients verify with. */
  readonly ca: string
  /** The proxy's certificate and key (PEM). */
  readonly cert: string
  readonly key: string
  /** The name in SNI and in the certificate. */
  readonly servername: string
}

export interface PeerContext {
  readonly root: string
  /** argv prefix: fd limit + pin to the proxy CPU (may be empty). */
  readonly prefix: readonly string[]
  /** The CPU `prefix` pins to; undefined when not pinning. */
  readonly proxyCpu: number | undefined
  /** fd limit + every CPU (this driver is pinned, and children inherit that). */
  readonly unpinned: readonly string[]
  /** fd limit + pin to the load CPU, next to loadgen and the origin. */
  readonly loadSide: readonly string[]
  readonly logDir: string
  readonly origin: OriginPorts
  /** Largest number of tunnels a peer must hold at once. */
  readonly maxTunnels: number
  /** Present when a TLS peer runs. */
  readonly tls?: TlsFiles
}

export interface RunningPeer {
  readonly port: number | undefined
  readonly pid: number | undefined
  /** The measured proxy: its root process and every descendant (cluster workers too). */
  tree (): number[]
  alive (): boolean
  stop (): Promise<void>
  /** Extra loadgen arguments for every scenario (credentials, a CONNECT name). */
  readonly loadgenArgs?: readonly string[]
  /** Helper processes that are not the measured proxy (a parent); their CPU is reported apart. */
  aux? (): number[]
}

export interface Peer {
  readonly name: string
  readonly direct: boolean
  start (ctx: PeerContext): Promise<RunningPeer>
  /** The scenarios it takes part in (default: all selected; `resume` only with `tls`). */
  readonly scenarios?: ReadonlySet<Scenario>
  /** An HTTPS proxy: TLS from loadgen (issue 13), and the resume scenario runs. */
  readonly tls?: boolean
  /** An SNI passthrough listener (issue 14): runs only with --sni, where loadgen sends a ClientHello instead of a CONNECT. */
  readonly sni?: boolean
  /** Runs with --terminate (issue 14), where loadgen does a TLS handshake routed by its SNI instead of a CONNECT. */
  readonly terminate?: boolean
  /** A variant of this peer: compared with it in the variants table, not with direct. */
  readonly variantOf?: string
  /** Also compared with this control peer (same conditions minus the feature). */
  readonly control?: string
  /** What differs from the base, for the report. */
  readonly describe?: string
}
