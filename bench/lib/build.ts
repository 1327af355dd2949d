/**
 * Build steps: the C origin and load generator (cc -O2 into bench/.build/;
 * loadgen with its TLS leg, tls-client.c, linked with OpenSSL), and Sluice
 * itself (`npm run build`) when dist/ is missing or older than src/.
 */
import { mkdirSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { runCaptured } from './children.js'

function mtimeMs (path: string): number | undefined {
  try {
    return statSync(path).mtimeMs
  } catch {
    return undefined
  }
}

/** Newest mtime of any file under `dir` (bounded walk). */
function newestUnder (dir: string): number {
  let newest = 0
  const todo = [dir]
  for (let n = 0; todo.length > 0 && n < 10_000; n++) {
    const d = todo.pop() as string
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name)
      if (e.isDirectory()) todo.push(p)
      else newest = Math.max(newest, mtimeMs(p) ?? 0)
    }
  }
  return newest
}

export interface CBinaries { readonly loadgen: string, readonly origin: string }

/** Each binary: the .c files it is compiled from, the headers they include (bench/c/), and its libraries. */
const PROGRAMS = {
  loadgen: { sources: ['loadgen.c', 'tls-client.c'], headers: ['tls-client.h'], libs: ['-lm', '-lssl', '-lcrypto'] },
  origin: { sources: ['origin.c'], headers: [], libs: ['-lm'] }
} as const

/** Compile bench/c/ → bench/.build/NAME when missing or older than any of its files. */
export async function buildC (benchDir: string, log: (s: string) => void): Promise<CBinaries> {
  const out = join(benchDir, '.build')
  mkdirSync(out, { recursive: true })
  const bins: Record<string, string> = {}
  for (const [name, p] of Object.entries(PROGRAMS)) {
    const sources = p.sources.map(f => join(benchDir, 'c', f))
    const files = [...sources, ...p.headers.map(f => join(benchDir, 'c', f))]
    const times = files.map(f => ({ f, t: mtimeMs(f) }))
    const missing = times.find(x => x.t === undefined)
    if (missing !== undefined) throw new Error(`missing ${missing.f}`)
    const bin = join(out, name)
    const binTime = mtimeMs(bin)
    if (binTime === undefined || times.some(x => (x.t ?? 0) > binTime)) {
      const argv = ['cc', '-O2', '-Wall', '-o', bin, ...sources, ...p.libs]
      log(`compiling ${name}: ${argv.join(' ')}`)
      const r = await runCaptured(argv, 120_000)
      const hint = name === 'loadgen' && /openssl\/ssl\.h|-lssl/.test(r.stderr) ? ' (OpenSSL headers missing? Debian: apt-get install libssl-dev)' : ''
      if (r.code !== 0) throw new Error(`cc failed for ${name}${hint} (exit ${String(r.code)}):\n${r.stderr}`)
      if (r.stderr.trim() !== '') log(r.stderr.trim())
    }
    bins[name] = bin
  }
  return { loadgen: bins['loadgen'] ?? '', origin: bins['origin'] ?? '' }
}

/**
 * `npm run build` when dist/cli.js is missing or older than any file in src/.
 * A failed build is fatal: measuring a stale dist/ would mislead.
 */
export async function buildSluice (root: string, log: (s: string) => void): Promise<void> {
  const cli = join(root, 'dist', 'cli.js')
  const built = mtimeMs(cli)
  const newestSrc = newestUnder(join(root, 'src'))
  if (built !== undefined && built >= newestSrc) return
  log(built === undefined ? 'dist/cli.js missing: npm run build' : 'src/ is newer than dist/cli.js: npm run build')
  const r = await runCaptured(['npm', 'run', 'build', '--silent'], 300_000, { cwd: root })
  if (r.code !== 0) {
    throw new Error(`npm run build failed (exit ${String(r.code)}); fix the build or pass --no-build to measure the existing dist/:\n${r.stdout}${r.stderr}`)
  }
}
