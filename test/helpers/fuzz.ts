/**
 * Shared settings for the fuzz targets (issue 11, "Fuzzing"): each property
 * has a small bounded run count so `npm test` stays within seconds, and
 * `FUZZ_RUNS` scales every count for a longer run (`npm run fuzz` sets it).
 * `FUZZ_SEED` replays the run fast-check reported as failing (its message
 * prints the seed and the counterexample path).
 */
import fc from 'fast-check'

/** The integer in `name`, if it is set to one ≥ 1. */
function positiveEnv (name: string): number | undefined {
  const v = process.env[name]
  if (v === undefined || v === '') return undefined
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(v)}`)
  return n
}

/** `FUZZ_RUNS` (default 1): the factor on every fuzz target's run count. */
export const FUZZ_SCALE = positiveEnv('FUZZ_RUNS') ?? 1

/** `base` runs, scaled by FUZZ_RUNS. */
export function runs (base: number): number {
  return base * FUZZ_SCALE
}

/** A test's timeout for `ms` at FUZZ_RUNS=1, scaled like its runs. */
export function fuzzTimeout (ms: number): number {
  return ms * FUZZ_SCALE
}

/** fast-check parameters for a property with `base` runs in `npm test`. */
export function fuzzParams<T> (base: number): fc.Parameters<T> {
  const seed = process.env['FUZZ_SEED']
  return {
    numRuns: runs(base),
    // The assertion that failed, not only the counterexample.
    includeErrorInReport: true,
    ...(seed === undefined || seed === '' ? {} : { seed: Number(seed) })
  }
}

/**
 * A few random byte edits of `bytes`: flip, insert, delete, duplicate a
 * slice, truncate. What a fuzzer does to a valid input to find the
 * nearly-valid ones a parser must still refuse cleanly.
 */
export function mutated (base: fc.Arbitrary<Uint8Array>, maxEdits = 4): fc.Arbitrary<Buffer> {
  const edit = fc.tuple(fc.constantFrom('flip', 'insert', 'delete', 'dup', 'truncate'), fc.nat(), fc.nat(), fc.integer({ min: 0, max: 255 }))
  return fc.tuple(base, fc.array(edit, { maxLength: maxEdits })).map(([b, edits]) => {
    let buf = Buffer.from(b)
    for (const [kind, i, j, byte] of edits) {
      const at = buf.length === 0 ? 0 : i % (buf.length + 1)
      switch (kind) {
        case 'flip':
          if (at < buf.length) buf[at] = byte
          break
        case 'insert':
          buf = Buffer.concat([buf.subarray(0, at), Buffer.from([byte]), buf.subarray(at)])
          break
        case 'delete':
          buf = Buffer.concat([buf.subarray(0, at), buf.subarray(at + 1)])
          break
        case 'dup': {
          const len = 1 + (j % 16)
          buf = Buffer.concat([buf.subarray(0, at + len), buf.subarray(at, at + len), buf.subarray(at + len)])
          break
        }
        case 'truncate':
          buf = buf.subarray(0, at)
          break
      }
    }
    return buf
  })
}

/** `bytes` cut into pieces at random points (each piece at least one byte). */
export function splits (bytes: Buffer): fc.Arbitrary<Buffer[]> {
  return fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, bytes.length - 1) }), { maxLength: 8 }).map(cuts => {
    const points = [0, ...cuts.filter(c => c < bytes.length).sort((a, b) => a - b), bytes.length]
    const out: Buffer[] = []
    for (let i = 1; i < points.length; i++) {
      const a = points[i - 1] ?? 0
      const b = points[i] ?? 0
      if (b > a) out.push(bytes.subarray(a, b))
    }
    return out
  })
}
