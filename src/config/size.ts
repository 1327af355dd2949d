/**
 * Sizes in config (issue 15, `limits.max_bytes_per_user.bytes`): a number of
 * bytes or a string such as `64KiB`, `500MB`, `10GiB`. Binary units (KiB,
 * MiB, GiB, TiB: powers of 1024) and decimal ones (kB, MB, GB, TB: powers of
 * 1000) are both accepted, spelled as here, because operators copy either
 * from their billing or their disk tools; `B` is bytes.
 */
const UNITS: Readonly<Record<string, number>> = {
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
  kB: 1000,
  KB: 1000,
  MB: 1000 ** 2,
  GB: 1000 ** 3,
  TB: 1000 ** 4
}

/** Bytes, or undefined. Like durations, a count past 2^53 is not exact, so it is not a size. */
export function parseSize (value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined
  const m = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB|kB|KB|MB|GB|TB)$/.exec(value.trim())
  if (m === null) return undefined
  const bytes = Math.round(Number(m[1]) * (UNITS[m[2] ?? ''] ?? NaN))
  return Number.isSafeInteger(bytes) ? bytes : undefined
}
