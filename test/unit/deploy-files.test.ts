/**
 * docker/'s deploy files (issue 15: compose, Kubernetes, systemd) against the
 * code. No Docker or Kubernetes engine runs here, so this is what checks them:
 * the configs they ship load with the real loader and no warning; every port
 * they name is the config's; probe and scrape paths answer on a real admin
 * listener; the CLI arguments parse with the real parser; the stop timeouts
 * cover timeouts.drain_delay + drain; the Kubernetes preStop is a real
 * `sluice drain` command line, at the admin port with the config's token,
 * returning before drain_delay is over; every metric the dashboard queries is one a scrape
 * declares. squid's config is parsed by squid, and the unit by
 * `systemd-analyze verify`, when they are installed.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { basename, dirname, join, posix } from 'node:path'
import { promisify } from 'node:util'
import { before, describe, it } from 'node:test'
import { request } from 'undici'
import { parse } from 'yaml'
import { parseCli } from '../../src/cli/args.js'
import { ConfigStatus } from '../../src/admin/config-view.js'
import { createAdminServer } from '../../src/admin/server.js'
import { DEFAULT_CONFIG_PATH, loadConfig, validateText } from '../../src/config/load.js'
import { createLogger } from '../../src/observability/log.js'
import { Metrics } from '../../src/observability/metrics.js'
import { METRIC_NAMES } from '../../src/observability/proxy-metrics.js'
import { declared } from '../helpers/metrics.js'
import {
  DOCKER, at, dashboardExprs, durationMs, list, loadShipped, named, parseUnit, ports, promqlMetrics, str, unitValue, yamlFile,
  type Node, type Shipped
} from '../helpers/deploy-files.js'

const run = promisify(execFile)

/**
 * What a supervisor must wait beyond drain_delay + drain before it kills:
 * past the drain deadline Sluice closes what is left and waits up to 5 s for
 * it to go (server/proxy.ts close()).
 */
const FORCED_CLOSE_MS = 5000

/**
 * What a preStop's `sluice drain` takes before the drain starts: node
 * loading the CLI and one POST /drain. terminationGracePeriodSeconds counts
 * from the hook's start (issue 15), so it covers this too.
 */
const HOOK_START_MS = 2000

/** How long after its drain starts a config may still be running: drain_delay, the drain, the forced close. */
const stopMs = (c: { readonly timeouts: { readonly drain: number, readonly drain_delay: number } }): number => c.timeouts.drain_delay + c.timeouts.drain + FORCED_CLOSE_MS

/** The config a `serve` command line names (parsed by the CLI's own parser). */
function serveConfig (args: readonly string[]): string {
  const cmd = parseCli(args)
  assert.equal(cmd.command, 'serve', `${args.join(' ')} is not a serve command`)
  assert.ok(cmd.command === 'serve' && cmd.config !== undefined, `${args.join(' ')} names no --config`)
  return cmd.config
}

/** Every path a deploy file probes or scrapes, GET on a real admin listener serving `shipped`: all must be 200. */
async function askAdmin (shipped: Shipped, paths: readonly string[]): Promise<Map<string, number>> {
  const metrics = new Metrics()
  const server = createAdminServer({
    log: createLogger({ level: 'silent' }),
    config: () => shipped.config,
    readiness: () => 'ready',
    tunnels: { list: async () => [], close: async () => false },
    status: new ConfigStatus(),
    metrics: async () => await metrics.render(),
    listen: { host: '127.0.0.1', port: 0 }
  })
  const { port } = await server.listen()
  try {
    const out = new Map<string, number>()
    for (const path of paths) {
      const res = await request(`http://127.0.0.1:${port}${path}`, { headers: { authorization: `Bearer ${shipped.token}` } })
      await res.body.text()
      out.set(path, res.statusCode)
    }
    return out
  } finally {
    await server.close()
    metrics.close()
  }
}

let compose: Shipped
let k8s: Shipped
let composeFile: Node
let k8sConfigMap: Node
let deployment: Node
let container: Node

before(async () => {
  composeFile = await yamlFile('compose.yaml')
  compose = await loadShipped(await readFile(join(DOCKER, 'sluice.yaml'), 'utf8'), 'sluice.yaml')
  k8sConfigMap = await yamlFile('k8s/configmap.yaml')
  k8s = await loadShipped(str(k8sConfigMap, 'data', 'sluice.yaml'), 'sluice.yaml')
  deployment = await yamlFile('k8s/deployment.yaml')
  container = named(list(deployment, 'spec', 'template', 'spec', 'containers'), 'sluice')
})

describe('the shipped configs', () => {
  it('docker/sluice.yaml and the ConfigMap\'s config load with no problem and no warning', () => {
    assert.deepEqual(compose.config.warnings, [])
    assert.deepEqual(k8s.config.warnings, [])
    assert.ok(compose.config.admin !== undefined && k8s.config.admin !== undefined, 'both have an admin listener')
  })
})

describe('docker/compose.yaml', () => {
  const sluice = (): Node => at(composeFile, 'services', 'sluice')

  it('runs docker/Dockerfile with --config at the path docker/sluice.yaml is mounted on', () => {
    assert.equal(str(sluice(), 'build', 'dockerfile'), 'docker/Dockerfile')
    assert.ok(existsSync(join(DOCKER, 'Dockerfile')))
    const config = serveConfig(list(sluice(), 'command').map(String))
    assert.ok(list(sluice(), 'volumes').includes(`./sluice.yaml:${config}:ro`), `sluice.yaml is not mounted at ${config}`)
    // admin.token_file is relative to the config: the secret must land beside it.
    const secret = list(sluice(), 'secrets')[0]
    assert.equal(str(secret, 'target'), posix.join(posix.dirname(config), 'admin.token'))
    assert.equal(str(at(composeFile, 'secrets'), str(secret, 'source'), 'file'), './admin.token')
  })

  it('publishes the proxy listener\'s port, not the admin port', () => {
    const published = list(sluice(), 'ports').map(p => Number(String(p).split(':').at(-1)))
    assert.deepEqual(published, ports(compose.config).listen)
    assert.ok(!published.includes(ports(compose.config).admin ?? 0))
  })

  it('gives the drain time to finish before Docker kills Sluice', () => {
    const grace = durationMs(str(sluice(), 'stop_grace_period'))
    assert.ok(grace > stopMs(compose.config), `stop_grace_period ${grace} ms <= drain_delay + drain + ${FORCED_CLOSE_MS} ms = ${stopMs(compose.config)} ms`)
  })

  it('points Prometheus at the admin port with the token Sluice reads', async () => {
    const prom = await yamlFile('prometheus/prometheus.yml')
    const job = named(list(prom, 'scrape_configs').map(j => ({ ...(j as object), name: (j as { job_name: string }).job_name })), 'sluice')
    assert.deepEqual(list(job, 'static_configs', 0, 'targets'), [`sluice:${ports(compose.config).admin ?? 0}`])
    const secret = str(job, 'authorization', 'credentials_file')
    assert.ok(list(at(composeFile, 'services', 'prometheus'), 'secrets').includes(basename(secret)))
    assert.equal(dirname(secret), '/run/secrets')
  })

  it('the parent route goes to the squid service, on the port squid.conf listens on', async () => {
    const parent = new URL(str(at(await yamlFile('sluice.yaml'), 'parents', 'corp'), 'url'))
    assert.ok(at(composeFile, 'services', parent.hostname) !== undefined)
    const squidConf = await readFile(join(DOCKER, 'squid/squid.conf'), 'utf8')
    assert.match(squidConf, new RegExp(`^http_port ${parent.port}$`, 'm'))
    assert.ok(compose.config.routing.routes.has('corp'))
  })

  it('squid.conf parses (squid -k parse)', { skip: existsSync('/usr/sbin/squid') ? false : 'squid is not installed (apt-get install squid)' }, async () => {
    await run('/usr/sbin/squid', ['-k', 'parse', '-f', join(DOCKER, 'squid/squid.conf')], { timeout: 30_000 })
  })

  it('Grafana reads the dashboard directory and the datasource the panels name, on Prometheus\' port', async () => {
    const grafana = at(composeFile, 'services', 'grafana')
    const provider = list(await yamlFile('grafana/provisioning/dashboards/sluice.yaml'), 'providers')[0]
    assert.ok(list(grafana, 'volumes').includes(`./grafana/dashboards:${str(provider, 'options', 'path')}:ro`))
    const ds = list(await yamlFile('grafana/provisioning/datasources/prometheus.yaml'), 'datasources')[0]
    assert.equal(str(ds, 'url'), 'http://prometheus:9090')
    assert.ok(list(at(composeFile, 'services', 'prometheus'), 'ports').includes('9091:9090'))
    const dashboard = JSON.parse(await readFile(join(DOCKER, 'grafana/dashboards/sluice.json'), 'utf8')) as Node
    for (const p of list(dashboard, 'panels')) assert.equal(str(p, 'datasource', 'uid'), str(ds, 'uid'))
  })
})

describe('the Grafana dashboard', () => {
  it('queries only metrics a scrape declares, and every panel the issue asks for', async () => {
    const dashboard = JSON.parse(await readFile(join(DOCKER, 'grafana/dashboards/sluice.json'), 'utf8')) as Node
    const exprs = dashboardExprs(dashboard)
    const used = new Set(exprs.flatMap(promqlMetrics))
    const m = new Metrics()
    const scraped = declared((await m.render()).body)
    m.close()
    for (const name of used) {
      assert.ok(METRIC_NAMES.includes(name), `the dashboard queries ${name}, which is not in METRIC_NAMES`)
      assert.ok(scraped.has(name), `the dashboard queries ${name}, which /metrics does not declare`)
    }
    for (const name of ['sluice_tunnels_total', 'sluice_tunnels_open', 'sluice_tunnel_bytes_total', 'sluice_auth_failures_total', 'sluice_parent_up', 'sluice_event_loop_lag_seconds']) {
      assert.ok(used.has(name), `no panel shows ${name}`)
    }
    assert.ok(exprs.some(e => /histogram_quantile\(.*sluice_upstream_connect_seconds_bucket/.test(e)), 'no connect-time quantiles')
    assert.ok(exprs.some(e => /sum by \(code\) \(rate\(sluice_tunnels_total/.test(e)), 'no tunnels/s by result code')
  })
})

describe('docker/k8s', () => {
  const pod = (): Node => at(deployment, 'spec', 'template', 'spec')
  const containerPort = (ref: unknown): number => typeof ref === 'number' ? ref : Number(at(named(list(container, 'ports'), String(ref)), 'containerPort'))

  it('names the config\'s ports: proxy and admin', () => {
    assert.deepEqual([containerPort('proxy')], ports(k8s.config).listen)
    assert.equal(containerPort('admin'), ports(k8s.config).admin)
  })

  it('probes /readyz and /healthz on the admin port', () => {
    assert.equal(str(container, 'readinessProbe', 'httpGet', 'path'), '/readyz')
    assert.equal(str(container, 'livenessProbe', 'httpGet', 'path'), '/healthz')
    for (const probe of ['readinessProbe', 'livenessProbe']) assert.equal(containerPort(at(container, probe, 'httpGet', 'port')), ports(k8s.config).admin)
  })

  it('the preStop is `sluice drain` (a real command line) at the admin port, with the token beside the config', async () => {
    // The exec runs outside the ENTRYPOINT: node, then the CLI where the image has it.
    const command = list(container, 'lifecycle', 'preStop', 'exec', 'command').map(String)
    const dockerfile = await readFile(join(DOCKER, 'Dockerfile'), 'utf8')
    const workdir = [...dockerfile.matchAll(/^WORKDIR (\S+)$/gm)].at(-1)?.[1] ?? ''
    assert.match(dockerfile, /^ENTRYPOINT \["node", .*"dist\/cli\.js"\]$/m)
    assert.deepEqual(command.slice(0, 2), ['node', posix.join(workdir, 'dist/cli.js')])
    const cmd = parseCli(command.slice(2))
    assert.ok(cmd.command === 'drain', `${command.join(' ')} is not sluice drain`)
    const admin = new URL(cmd.admin)
    assert.equal(admin.hostname, '127.0.0.1', 'the hook runs in the pod: loopback reaches the admin listener on 0.0.0.0')
    assert.equal(Number(admin.port), ports(k8s.config).admin)
    // The token file the config reads (admin.token_file, relative to it) is the one the hook sends.
    const config = serveConfig(list(container, 'args').map(String))
    const tokenFile = str(parse(str(k8sConfigMap, 'data', 'sluice.yaml')) as Node, 'admin', 'token_file')
    assert.equal(cmd.tokenFile, posix.join(posix.dirname(config), tokenFile))
    assert.equal(k8s.config.admin?.tokenFrom, 'file')
  })

  it('the hook returns before Sluice can exit, and drain_delay outlasts the readiness probe', () => {
    const cmd = parseCli(list(container, 'lifecycle', 'preStop', 'exec', 'command').map(String).slice(2))
    assert.ok(cmd.command === 'drain')
    // Sluice exits no sooner than drain_delay after the hook's POST: a hook still waiting then
    // would be killed with the container (a FailedPreStopHook event on every busy stop).
    const delay = k8s.config.timeouts.drain_delay
    assert.ok(cmd.timeoutMs < delay, `the preStop's --timeout ${cmd.timeoutMs} ms >= timeouts.drain_delay ${delay} ms`)
    // Still accepting until a balancer that goes by the readiness probe alone has seen the 503.
    const probe = at(container, 'readinessProbe')
    const probeMs = Number(at(probe, 'periodSeconds')) * Number(at(probe, 'failureThreshold')) * 1000
    assert.ok(delay > probeMs, `timeouts.drain_delay ${delay} ms <= the readiness probe's ${probeMs} ms to fail`)
  })

  it('lets the hook\'s start, drain_delay, the drain and the forced close finish within terminationGracePeriodSeconds', () => {
    const grace = Number(at(pod(), 'terminationGracePeriodSeconds')) * 1000
    const need = HOOK_START_MS + stopMs(k8s.config)
    assert.ok(grace > need, `terminationGracePeriodSeconds ${grace} ms <= the hook's start ${HOOK_START_MS} ms + drain_delay + drain + ${FORCED_CLOSE_MS} ms = ${need} ms`)
  })

  it('runs --config from the ConfigMap, with the token beside it', () => {
    const config = serveConfig(list(container, 'args').map(String))
    const mount = list(container, 'volumeMounts').find(v => str(v, 'mountPath') === posix.dirname(config))
    assert.ok(mount !== undefined, `nothing is mounted at ${posix.dirname(config)}`)
    const sources = list(named(list(pod(), 'volumes'), str(mount, 'name')), 'projected', 'sources')
    const fromMap = at(sources.find(s => (s as { configMap?: unknown }).configMap !== undefined), 'configMap')
    assert.equal(str(fromMap, 'name'), str(k8sConfigMap, 'metadata', 'name'))
    assert.deepEqual(at(fromMap, 'items'), [{ key: 'sluice.yaml', path: posix.basename(config) }])
    const token = at(sources.find(s => (s as { secret?: unknown }).secret !== undefined), 'secret', 'items', 0, 'path')
    assert.equal(token, 'admin.token')
  })

  it('runs as non-root on a read-only root, with resources for the HPA', () => {
    assert.equal(at(pod(), 'securityContext', 'runAsNonRoot'), true)
    assert.equal(at(container, 'securityContext', 'readOnlyRootFilesystem'), true)
    assert.equal(at(container, 'securityContext', 'allowPrivilegeEscalation'), false)
    assert.deepEqual(at(container, 'securityContext', 'capabilities', 'drop'), ['ALL'])
    assert.ok(typeof at(container, 'resources', 'requests', 'cpu') === 'string', 'an HPA on CPU needs a CPU request')
  })

  it('Service, PDB and HPA point at the Deployment\'s pods', async () => {
    const podLabels = at(deployment, 'spec', 'template', 'metadata', 'labels')
    const service = await yamlFile('k8s/service.yaml')
    assert.deepEqual(at(service, 'spec', 'selector'), podLabels)
    const port = list(service, 'spec', 'ports')[0]
    assert.deepEqual([containerPort(at(port, 'targetPort'))], ports(k8s.config).listen)
    assert.deepEqual(at(await yamlFile('k8s/pdb.yaml'), 'spec', 'selector', 'matchLabels'), podLabels)
    const hpa = await yamlFile('k8s/hpa.yaml')
    assert.equal(str(hpa, 'spec', 'scaleTargetRef', 'name'), str(deployment, 'metadata', 'name'))
    assert.equal(str(hpa, 'spec', 'metrics', 0, 'resource', 'name'), 'cpu')
  })

  it('kustomization.yaml lists every manifest', async () => {
    const files = (await readdir(join(DOCKER, 'k8s'))).filter(f => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    assert.deepEqual([...list(await yamlFile('k8s/kustomization.yaml'), 'resources')].sort(), files.sort())
  })
})

describe('every probe and scrape path', () => {
  it('answers 200 on a real admin listener serving the shipped config', async () => {
    const healthcheck = list(at(composeFile, 'services', 'sluice'), 'healthcheck', 'test').join(' ')
    const url = /http:\/\/127\.0\.0\.1:(\d+)(\/[a-z.]+)/.exec(healthcheck)
    assert.ok(url !== null, 'compose\'s healthcheck asks no admin URL')
    assert.equal(Number(url[1]), ports(compose.config).admin)
    const prom = at(await yamlFile('prometheus/prometheus.yml'), 'scrape_configs', 0)
    const paths = [url[2] ?? '', str(prom, 'metrics_path'), ...['readinessProbe', 'livenessProbe'].map(p => str(container, p, 'httpGet', 'path'))]
    for (const [path, status] of await askAdmin(compose, paths)) assert.equal(status, 200, `${path} answered ${status}`)
  })
})

describe('docker/systemd/sluice.service', () => {
  const UNIT_PATH = join(DOCKER, 'systemd/sluice.service')
  let unit: ReturnType<typeof parseUnit>
  before(async () => { unit = parseUnit(await readFile(UNIT_PATH, 'utf8')) })
  const service = (key: string): string | undefined => unitValue(unit, 'Service', key)

  it('runs the CLI with --config, and reloads with SIGHUP', () => {
    const argv = (service('ExecStart') ?? '').split(/\s+/)
    const cli = argv.findIndex(a => a.endsWith('/dist/cli.js'))
    assert.ok(cli > 0, 'ExecStart runs dist/cli.js')
    assert.equal(serveConfig(argv.slice(cli + 1)), '/etc/sluice/sluice.yaml')
    assert.equal(service('ExecReload'), '/bin/kill -HUP $MAINPID')
  })

  it('TimeoutStopSec exceeds drain_delay + drain (+ the forced close) of every config it may run (policies/*.yaml, docker\'s)', async () => {
    const stops = [stopMs(compose.config), stopMs(k8s.config), stopMs(await loadConfig(DEFAULT_CONFIG_PATH))]
    const policies = dirname(DEFAULT_CONFIG_PATH)
    for (const f of (await readdir(policies)).filter(n => n.endsWith('.yaml'))) {
      stops.push(stopMs(validateText(await readFile(join(policies, f), 'utf8'), f).f))
    }
    const stop = durationMs(service('TimeoutStopSec') ?? '0')
    assert.ok(stop > Math.max(...stops), `TimeoutStopSec ${stop} ms <= a drain_delay + drain + ${FORCED_CLOSE_MS} ms of ${Math.max(...stops)} ms`)
  })

  it('is sandboxed, with no capabilities while every shipped listener is on a port >= 1024', () => {
    for (const [key, value] of [['DynamicUser', 'yes'], ['ProtectSystem', 'strict'], ['NoNewPrivileges', 'yes'], ['PrivateTmp', 'yes'], ['ProtectHome', 'yes']]) {
      assert.equal(service(key ?? ''), value, `${key ?? ''}=${value ?? ''}`)
    }
    assert.equal(service('CapabilityBoundingSet'), '')
    for (const c of [compose, k8s]) for (const p of ports(c.config).listen) assert.ok(p >= 1024, `port ${p} needs CAP_NET_BIND_SERVICE`)
    assert.ok(Number(service('LimitNOFILE')) >= 65_536)
  })

  const analyze = ['/usr/bin/systemd-analyze', '/bin/systemd-analyze'].find(existsSync)
  it('passes systemd-analyze verify', { skip: analyze === undefined ? 'systemd-analyze is not installed (apt-get install systemd): the unit is checked by the assertions above only' : false }, async (t) => {
    const node = (service('ExecStart') ?? '').split(' ')[0] ?? ''
    // verify also checks that ExecStart's binary exists, which is this machine's business, not the unit's.
    if (!existsSync(node)) { t.skip(`${node} does not exist here`); return }
    const { stderr } = await run(analyze ?? '', ['verify', UNIT_PATH], { timeout: 60_000 })
    // An unknown or misspelt key is only a warning (exit 0): any line about the unit fails.
    assert.equal(stderr.split('\n').filter(l => l.includes('sluice.service')).join('\n'), '')
  })
})
