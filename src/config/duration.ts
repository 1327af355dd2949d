/** Durations in config: a number of milliseconds or `500ms`, `30s`, `10m`, `1h`, `1d`. */
const UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/**
 * Milliseconds, or undefined. Past 2^53 a count of milliseconds is no longer
 * exact (and http.createServer refuses such a timeout at start-up), so it is
 * not a duration (issue 11, found by test/unit/config.fuzz.test.ts).
 */
export function parseDuration (value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/.exec(value.trim())
  if (m === null) return undefined
  const ms = Math.round(Number(m[1]) * (UNITS[m[2] ?? ''] ?? NaN))
  return Number.isSafeInteger(ms) ? ms : undefined
}
