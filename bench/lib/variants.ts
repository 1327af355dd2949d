/**
 * Sluice with one feature switched on, measured in the same run as plain
 * `sluice` (rate scenario only) to show what the feature costs:
 *
 * sluice+auth    proxy authentication (bcrypt users file, cache_ttl 1h);
 *                loadgen sends Basic credentials on every CONNECT
 * sluice+name    control for bigacl: plain policy, but the CONNECT names
 *                origin.sluice-bench.test, which a loopback DNS stub
 *                resolves to 127.0.0.1 (cached by Sluice after one query)
 * sluice+bigacl  sluice+name plus 10,000 `*.suffix` deny hosts and 10,000
 *                deny /24s ahead of the allow rule. A name target makes
 *                both lists count: host rules never match an IP literal
 *                (Sluice skips them), the CIDRs are judged with the address
 * sluice+hello   control for guard: sluice+name, and each tunnel's payload
 *                starts with a TLS ClientHello naming the CONNECT host
 *                (loadgen --tunnel-hello), echoed back with it
 * sluice+guard   sluice+hello with `tunnel_checks: { sni_match, tls_only }`:
 *                Sluice reads and judges every tunnel's hello (issue 14)
 * sluice+chain   every tunnel through a second Sluice (the parent, pinned
 *                to the load CPU, its CPU reported apart)
 * sluice+logs    --log-level info: one `tunnel closed` JSON line per tunnel
 *                (to the peer's log file), as Sluice runs by default
 * sluice+metrics SLUICE_METRICS=1: Prometheus metrics counted (issue 15; the
 *                bar is ≤ 3 % of plain Sluice's tunnels/s), never scraped
 * sluice-w2      --workers 2 --scheduling rr, unpinned: needs both CPUs
 * sluice-w2-os   --workers 2 --scheduling os (the default), unpinned
 *
 * Each start checks that the feature bites (407, 403, a guarded tunnel closed) and that the
 * measured path gets its 200, so a misconfigured variant fails loudly
 * instead of measuring plain Sluice under another name.
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { startDnsStubRetrying, type DnsStub } from '../../test/helpers/dns-stub.js'
import { basicAuth, expectClosedAfter, expectReplies, type Expectation } from './connect-check.js'
import { launch, sluiceArgv } from './peers.js'
import { freePort, startProcess, workDir } from './process-peer.js'
import {
  ACL_SIZE, aclCidr, aclDomain, AUTH_PASS, AUTH_USER, LOOPBACK_RULE, ORIGIN_NAME,
  usersFileLine, writeSluiceConfig, type ConfigParts
} from './sluice-config.js'
import type { Peer, PeerContext, RunningPeer, Scenario } from './types.js'

const RATE_ONLY: ReadonlySet<Scenario> = new Set(['rate'])

let stub: Promise<DnsStub> | undefined

/** The loopback DNS stub for the name-target variants: ORIGIN_NAME → 127.0.0.1 (TTL 1 h), nothing else. */
async function dnsStub (): Promise<DnsStub> {
  stub ??= startDnsStubRetrying({ [ORIGIN_NAME]: { A: ['127.0.0.1'], ttl: 3600 } })
  return await stub
}

/** Queries the stub has answered so far (0 when it never ran). */
export async function dnsQueries (): Promise<number> {
  return stub === undefined ? 0 : (await stub).queries.length
}

/** Close what the variants started for the whole run (the DNS stub). */
export async function stopVariantServices (): Promise<void> {
  if (stub !== undefined) await (await stub).close()
}

const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

interface SluiceSpec {
  readonly config: (dir: string, ctx: PeerContext) => Promise<ConfigParts | undefined>
  readonly extraArgs?: readonly string[]
  readonly prefix?: (ctx: PeerContext) => readonly string[]
  /** Processes the tree must reach before measuring (cluster: primary + workers). */
  readonly processes?: number
  readonly loadgenArgs?: readonly string[]
  readonly checks: (ctx: PeerContext) => readonly Expectation[]
  /** More checks on the started peer (a feature that bites after the 200). */
  readonly bites?: (name: string, port: number, ctx: PeerContext, peer: RunningPeer) => Promise<void>
}

/** Start Sluice with a generated config (or bench/policy.yaml when `config` gives none); run the checks. */
async function startSluice (name: string, ctx: PeerContext, spec: SluiceSpec): Promise<RunningPeer> {
  const { dir, cleanup } = workDir(name)
  let running: RunningPeer | undefined
  try {
    const parts = await spec.config(dir, ctx)
    const config = parts === undefined ? join(ctx.root, 'bench', 'policy.yaml') : writeSluiceConfig(ctx.root, dir, parts)
    const port = await freePort()
    const prefix = spec.prefix?.(ctx) ?? ctx.prefix
    running = await startProcess(launch(ctx, name, prefix), sluiceArgv(ctx, config, port, spec.extraArgs), port, cleanup)
    const want = spec.processes ?? 1
    for (let i = 0; i < 200 && running.tree().length < want; i++) await sleep(50)
    if (running.tree().length < want) throw new Error(`${name}: ${running.tree().length} of ${want} processes after 10 s`)
    if (want > 1) await sleep(500) // let the last worker finish its own start
    await expectReplies(name, port, spec.checks(ctx))
    await spec.bites?.(name, port, ctx, running)
    return spec.loadgenArgs === undefined ? running : { ...running, loadgenArgs: spec.loadgenArgs }
  } catch (err) {
    await running?.stop()
    cleanup()
    throw err
  }
}

const echo = (ctx: PeerContext): string => `127.0.0.1:${ctx.origin.echo}`
const tunnelOk = (ctx: PeerContext, headers?: readonly string[]): Expectation =>
  ({ what: 'the measured tunnel', target: echo(ctx), status: 200, ...(headers === undefined ? {} : { headers }) })
const nameOk = (ctx: PeerContext): Expectation =>
  ({ what: `the measured tunnel to ${ORIGIN_NAME}`, target: `${ORIGIN_NAME}:${ctx.origin.echo}`, status: 200 })

function variant (name: string, describe: string, start: (ctx: PeerContext) => Promise<RunningPeer>, control?: string): Peer {
  return { name, direct: false, scenarios: RATE_ONLY, variantOf: 'sluice', describe, start, ...(control === undefined ? {} : { control }) }
}

const auth = variant('sluice+auth', `proxy authentication: bcrypt users file (\`sluice passwd\`, cost 10), \`cache_ttl: 1h\`, one rule \`users: [${AUTH_USER}]\` + loopback \`ips\`; loadgen sends Basic credentials on every CONNECT`,
  async (ctx) => await startSluice('sluice+auth', ctx, {
    async config (dir) {
      const usersFile = join(dir, 'users.htpasswd')
      writeFileSync(usersFile, (await usersFileLine(ctx.root)) + '\n')
      return { auth: { users_file: usersFile, cache_ttl: '1h' }, rules: [{ ...LOOPBACK_RULE, name: 'bench-auth', users: [AUTH_USER] }] }
    },
    loadgenArgs: ['--auth', `${AUTH_USER}:${AUTH_PASS}`],
    checks: (c) => [
      { what: 'no credentials', target: echo(c), status: 407, contains: 'ERR_AUTH_REQUIRED' },
      { what: 'wrong password', target: echo(c), headers: [basicAuth(AUTH_USER, 'wrong')], status: 407, contains: 'ERR_AUTH_FAILED' },
      tunnelOk(c, [basicAuth(AUTH_USER, AUTH_PASS)])
    ]
  }))

const nameTarget = variant('sluice+name', `control for bigacl: bench/policy.yaml's rule, CONNECT to \`${ORIGIN_NAME}\` (a loopback DNS stub answers 127.0.0.1; Sluice caches it)`,
  async (ctx) => await startSluice('sluice+name', ctx, {
    config: async () => ({ dns: { servers: [(await dnsStub()).address] }, rules: [LOOPBACK_RULE] }),
    loadgenArgs: ['--connect-host', ORIGIN_NAME],
    checks: (c) => [nameOk(c)]
  }))

const bigacl = variant('sluice+bigacl', `${ACL_SIZE.toLocaleString('en-US')} \`*.suffix\` deny hosts (\`*.${aclDomain(42)}\`…) and ${ACL_SIZE.toLocaleString('en-US')} deny /24s in 10.0.0.0/8 ahead of the allow rule, none matching; CONNECT to \`${ORIGIN_NAME}\` as in sluice+name, so the host list is consulted (before DNS and again per address) and the CIDR list per address`,
  async (ctx) => await startSluice('sluice+bigacl', ctx, {
    config: async () => ({
      dns: { servers: [(await dnsStub()).address] },
      rules: [
        { name: 'bigacl-hosts', action: 'deny', hosts: Array.from({ length: ACL_SIZE }, (_, i) => `*.${aclDomain(i)}`) },
        { name: 'bigacl-cidrs', action: 'deny', ips: Array.from({ length: ACL_SIZE }, (_, i) => aclCidr(i)) },
        LOOPBACK_RULE
      ]
    }),
    loadgenArgs: ['--connect-host', ORIGIN_NAME],
    checks: (c) => [
      { what: 'a listed domain', target: `www.${aclDomain(42)}:443`, status: 403, contains: 'bigacl-hosts' },
      { what: 'a listed network', target: '10.0.42.7:443', status: 403, contains: 'bigacl-cidrs' },
      nameOk(c)
    ]
  }), 'sluice+name')

/** sluice+name's setup, each tunnel's payload led by a ClientHello for the CONNECT host; `guard` turns the checks on. */
function helloVariant (name: string, describe: string, guard: boolean, control?: string): Peer {
  return variant(name, describe, async (ctx) => await startSluice(name, ctx, {
    config: async () => ({
      dns: { servers: [(await dnsStub()).address] },
      ...(guard ? { tunnel_checks: { sni_match: true, tls_only: true } } : {}),
      rules: [LOOPBACK_RULE]
    }),
    loadgenArgs: ['--connect-host', ORIGIN_NAME, '--tunnel-hello', ORIGIN_NAME],
    checks: (c) => [nameOk(c)],
    ...(guard
      ? {
          bites: async (peer, port, c) => {
            await expectClosedAfter(peer, port, `${ORIGIN_NAME}:${c.origin.echo}`, Buffer.from('plain bytes\n'), 'tls_only closes a plain tunnel')
          }
        }
      : {})
  }), control)
}

const hello = helloVariant('sluice+hello', `control for guard: sluice+name, and loadgen \`--tunnel-hello ${ORIGIN_NAME}\` puts a ~200-byte TLS 1.3 ClientHello naming the CONNECT host before each tunnel's payload (the echo returns both)`, false)
const guard = helloVariant('sluice+guard', 'sluice+hello with `tunnel_checks: { sni_match: true, tls_only: true }`: every tunnel\'s first bytes are read as a ClientHello and its SNI compared with the CONNECT host before they go upstream (issue 14)', true, 'sluice+hello')

const chain = variant('sluice+chain', 'every tunnel through a parent: `parents: { b: … }`, `default_route: b`; the parent is a plain Sluice pinned to the load CPU (with loadgen and the origin), its CPU reported apart',
  async (ctx) => {
    const parentPort = await freePort()
    const parent = await startProcess(launch(ctx, 'sluice+chain-parent', ctx.loadSide),
      sluiceArgv(ctx, join(ctx.root, 'bench', 'policy.yaml'), parentPort), parentPort)
    try {
      const a = await startSluice('sluice+chain', ctx, {
        config: async () => ({ parents: { b: { url: `http://127.0.0.1:${parentPort}` } }, default_route: 'b', rules: [LOOPBACK_RULE] }),
        checks: (c) => [tunnelOk(c)]
      })
      return {
        ...a,
        alive: () => a.alive() && parent.alive(),
        aux: () => parent.tree(),
        async stop () { await a.stop(); await parent.stop() }
      }
    } catch (err) {
      await parent.stop()
      throw err
    }
  })

const logs = variant('sluice+logs', '`--log-level info` (the default; the other Sluice peers run at `warn`): one `tunnel closed` JSON line per tunnel, written to the peer\'s log file',
  async (ctx) => await startSluice('sluice+logs', ctx, {
    config: async () => undefined,
    // After sluiceArgv's `--log-level warn`: the last one wins.
    extraArgs: ['--log-level', 'info'],
    checks: (c) => [tunnelOk(c)]
  }))

const metrics = variant('sluice+metrics', '`SLUICE_METRICS=1`: Prometheus metrics counted (issue 15): each tunnel counted at its close by listener, code and rule, with its bytes and three histograms; DNS, auth and failovers as they happen. Nothing scrapes during the run',
  async (ctx) => await startSluice('sluice+metrics', ctx, {
    config: async () => undefined,
    prefix: (c) => ['env', 'SLUICE_METRICS=1', ...c.prefix],
    checks: (c) => [tunnelOk(c)],
    // Until an admin listener serves /metrics to ask, check that the switch reached the proxy process.
    bites: async (name, _port, _ctx, peer) => {
      const environ = peer.pid === undefined ? '' : readFileSync(`/proc/${peer.pid}/environ`, 'latin1')
      if (!environ.split('\0').includes('SLUICE_METRICS=1')) throw new Error(`${name}: SLUICE_METRICS=1 is not in the proxy's environment`)
      await Promise.resolve()
    }
  }))

function workers (name: string, scheduling: 'rr' | 'os'): Peer {
  return variant(name, `\`--workers 2 --scheduling ${scheduling}\` (${scheduling === 'rr' ? 'the primary accepts and hands connections round-robin' : 'each worker accepts for itself; the default'}), not pinned: primary and workers float over both CPUs, which loadgen and the origin share; CPU is the whole process tree`,
    async (ctx) => await startSluice(name, ctx, {
      config: async () => undefined,
      // Explicit either way: the default changed from rr to os once already.
      extraArgs: ['--workers', '2', '--scheduling', scheduling],
      prefix: (c) => c.unpinned,
      processes: 3,
      checks: (c) => [tunnelOk(c)]
    }))
}

export const VARIANT_PEERS: readonly Peer[] = [auth, nameTarget, bigacl, hello, guard, chain, logs, metrics, workers('sluice-w2', 'rr'), workers('sluice-w2-os', 'os')]

/** `--variants` names → the peers each adds after `sluice`. */
export const VARIANT_GROUPS: Readonly<Record<string, readonly string[]>> = {
  auth: ['sluice+auth'],
  bigacl: ['sluice+name', 'sluice+bigacl'],
  guard: ['sluice+hello', 'sluice+guard'],
  chain: ['sluice+chain'],
  logs: ['sluice+logs'],
  metrics: ['sluice+metrics'],
  workers: ['sluice-w2', 'sluice-w2-os']
}
