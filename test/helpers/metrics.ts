/**
 * Reading Prometheus text (what Metrics.render() and clusterMetrics()
 * serve) in tests: samples by name and labels, and the declared names.
 */

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

/** Every sample line of `text`. */
export function samples (text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const m = LINE.exec(line)
    if (m === null) throw new Error(`not a Prometheus sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(LABEL)) labels[l[1] as string] = (l[2] as string).replace(/\\(.)/g, (_, c: string) => c === 'n' ? '\n' : c)
    out.push({ name: m[1] as string, labels, value: Number(m[3]) })
  }
  return out
}

/**
 * The value of the one sample named `name` whose labels include `labels`;
 * undefined when there is none, an error when several match.
 */
export function sample (text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  const found = samples(text).filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}: ${JSON.stringify(found)}`)
  return found[0]?.value
}

/** The sum of every sample named `name` whose labels include `labels` (0 when none). */
export function total (text: string, name: string, labels: Readonly<Record<string, string>> = {}): number {
  return samples(text)
    .filter(s => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
    .reduce((a, s) => a + s.value, 0)
}

/** Names declared by `# TYPE` lines, with their types. */
export function declared (text: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) out.set(m[1] as string, m[2] as string)
  return out
}
