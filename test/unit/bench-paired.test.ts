/**
 * bench/lib/table.ts pairedRatio: the variants' "÷" (issue 14/15 bars) is
 * the median of per-repetition ratios, so a slow stretch of a shared host
 * that hits a whole repetition does not decide a bar.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { pairedRatio } from '../../bench/lib/table.js'
import type { RepResult } from '../../bench/lib/types.js'

const rate = (rep: number, tunnelsPerS: number): RepResult => ({ rep, rate: { tunnelsPerS } as RepResult['rate'] & object })
const tps = (r: RepResult): number | undefined => r.rate?.tunnelsPerS

describe('pairedRatio', () => {
  it('pairs by repetition: two slow repetitions do not skew the ratio as a ratio of medians does', () => {
    // The base's median is 3,400 (from fast reps), the variant's 2,100 (slow ones), yet each pair is 0.97–1.00.
    const base = [rate(1, 3500), rate(2, 2150), rate(3, 2200), rate(4, 3400), rate(5, 3450)]
    const variant = [rate(1, 3400), rate(2, 2100), rate(3, 2150), rate(4, 3300), rate(5, 3450)]
    const q = pairedRatio(variant, base, tps)
    assert.ok(q !== undefined && q > 0.97 && q <= 1, String(q))
  })

  it('skips repetitions either side lacks, and is undefined without a pair', () => {
    assert.equal(pairedRatio([rate(1, 100), rate(3, 300)], [rate(1, 200), rate(2, 50)], tps), 0.5)
    assert.equal(pairedRatio([rate(1, 100)], [rate(2, 100)], tps), undefined)
    assert.equal(pairedRatio([rate(1, 100)], [rate(1, 0)], tps), undefined)
  })
})
