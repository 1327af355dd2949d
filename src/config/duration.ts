/** Durations in config: a number of milliseconds or `500ms`, `30s`, `10m`, `1h`, `1d`. */
const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

export function parseDuration (value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) && value >= 0 ? value : undefined
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value.trim())
  if (m === null) return undefined
  const ms = Number(m[1]) * (UNITS[m[2] ?? ''] ?? NaN)
  return Number.isFinite(ms) ? Math.round(ms) : undefined
}
