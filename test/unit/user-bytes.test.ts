/**
 * `limits.max_bytes_per_user` (issue 15): the window arithmetic of
 * server/user-bytes.ts with an injected clock and limit, the size parser,
 * and the config keys' errors. The proxy-level behaviour (sweep, close,
 * 429) is test/integration/user-bytes.test.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { UserBytes, type ByteQuota } from '../../src/server/user-bytes.js'
import { parseSize } from '../../src/config/size.js'
import { ConfigError, parseConfig } from '../../src/config/load.js'

const HOUR = 3_600_000
/** 2024-01-01T00:00:00Z, a whole number of hours and days since the epoch. */
const T0 = Date.UTC(2024, 0, 1)

/** A UserBytes whose clock and limit the test moves. */
function rig (quota: ByteQuota | undefined, start = T0) {
  const state = { now: start, quota }
  const bytes = new UserBytes(() => state.quota, () => state.now)
  return { bytes, state }
}

describe('UserBytes: fixed windows aligned to the epoch', () => {
  it('counts a user up to the limit, then refuses with the seconds to the end of the window', () => {
    const { bytes, state } = rig({ bytes: 1000, period: HOUR }, T0 + 10 * 60_000 + 500)
    assert.equal(bytes.add('alice', 600), false)
    assert.equal(bytes.over('alice'), undefined)
    assert.equal(bytes.add('alice', 400), true, 'at the limit is over it')
    // 10 min 0.5 s into the hour: 49 min 59.5 s left, rounded up.
    assert.deepEqual(bytes.over('alice'), { used: 1000, limit: 1000, retryAfterS: 49 * 60 + 60 })
    assert.equal(bytes.over('bob'), undefined, 'per user')
    state.now = T0 + HOUR - 1
    assert.equal(bytes.over('alice')?.retryAfterS, 1, 'never 0')
  })

  it('a new window starts on the boundary, whenever the process started, and forgets the last', () => {
    const { bytes, state } = rig({ bytes: 1000, period: HOUR }, T0 + HOUR - 5)
    bytes.add('alice', 5000)
    assert.equal(bytes.over('alice')?.retryAfterS, 1)
    state.now = T0 + HOUR
    assert.equal(bytes.over('alice'), undefined)
    assert.equal(bytes.usedBy('alice'), 0)
    assert.equal(bytes.add('alice', 10), false)
    assert.equal(bytes.usedBy('alice'), 10)
  })

  it('a day is 00:00 to 24:00 UTC', () => {
    const { bytes } = rig({ bytes: 1, period: 24 * HOUR }, T0 + 18 * HOUR)
    bytes.add('alice', 1)
    assert.equal(bytes.over('alice')?.retryAfterS, 6 * 3600)
  })

  it('a reload\'s new limit applies to the next decision, and the counts carry over', () => {
    const { bytes, state } = rig({ bytes: 1000, period: HOUR })
    bytes.add('alice', 1500)
    state.quota = { bytes: 2000, period: HOUR }
    assert.equal(bytes.over('alice'), undefined)
    assert.equal(bytes.usedBy('alice'), 1500)
    state.quota = { bytes: 1000, period: HOUR }
    assert.equal(bytes.over('alice')?.used, 1500)
  })

  it('a new period keeps the counts and ends the window at its own next boundary', () => {
    const { bytes, state } = rig({ bytes: 1000, period: 24 * HOUR }, T0 + 90 * 60_000)
    bytes.add('alice', 1000)
    state.quota = { bytes: 1000, period: HOUR }
    assert.equal(bytes.over('alice')?.retryAfterS, 30 * 60)
    state.now = T0 + 2 * HOUR
    assert.equal(bytes.over('alice'), undefined)
  })

  it('without a limit nothing is counted, and removing it drops the counts', () => {
    const { bytes, state } = rig(undefined)
    assert.equal(bytes.on, false)
    assert.equal(bytes.add('alice', 5000), false)
    state.quota = { bytes: 1000, period: HOUR }
    assert.equal(bytes.on, true)
    assert.equal(bytes.usedBy('alice'), 0)
    bytes.add('alice', 5000)
    state.quota = undefined
    assert.equal(bytes.over('alice'), undefined)
    state.quota = { bytes: 1000, period: HOUR }
    assert.equal(bytes.usedBy('alice'), 0)
  })
})

describe('sizes', () => {
  const cases: ReadonlyArray<readonly [string | number, number | undefined]> = [
    [65536, 65536], ['64KiB', 65536], ['64 KiB', 65536], ['1.5MiB', 1.5 * 1024 ** 2], ['10GiB', 10 * 1024 ** 3], ['2TiB', 2 * 1024 ** 4],
    ['500MB', 500e6], ['1kB', 1000], ['1KB', 1000], ['3GB', 3e9], ['7B', 7], [0, 0],
    ['64kib', undefined], ['64K', undefined], ['-1KiB', undefined], ['KiB', undefined], [-1, undefined], [1.5, undefined], ['9999999999TiB', undefined]
  ]
  for (const [text, bytes] of cases) it(`${JSON.stringify(text)} → ${String(bytes)}`, () => assert.equal(parseSize(text), bytes))
})

describe('limits.max_bytes_per_user in the config', () => {
  const problems = (limits: string): readonly string[] => {
    try {
      parseConfig(`version: 1\nlimits:\n  max_bytes_per_user: ${limits}\n`, 'x.yaml')
    } catch (err) {
      assert.ok(err instanceof ConfigError, String(err))
      return err.problems
    }
    return []
  }

  it('is off by default, and a size and a duration when set', () => {
    assert.equal(parseConfig('version: 1\n', 'x.yaml').limits.max_bytes_per_user, undefined)
    assert.deepEqual(parseConfig('version: 1\nlimits: { max_bytes_per_user: { bytes: 10GiB, period: 1d } }\n', 'x.yaml').limits.max_bytes_per_user,
      { bytes: 10 * 1024 ** 3, period: 24 * HOUR })
  })

  it('names what is wrong', () => {
    assert.deepEqual(problems('{ bytes: 10 gigs, period: 1h }'), ["x.yaml:3: limits.max_bytes_per_user.bytes: expected a size like 64KiB, 500MB, 10GiB or a number of bytes, got a string '10 gigs'"])
    assert.deepEqual(problems('{ bytes: 0, period: 1h }'), ['x.yaml:3: limits.max_bytes_per_user.bytes: expected at least 1 byte, got 0'])
    assert.deepEqual(problems('{ bytes: 1GiB, period: 500ms }'), ['x.yaml:3: limits.max_bytes_per_user.period: expected at least 1s, got 500 ms'])
    assert.deepEqual(problems('{ bytes: 1GiB }'), ['x.yaml:3: limits.max_bytes_per_user.period: required: expected a duration like 500ms, 30s, 10m, 1h or a number of milliseconds'])
    assert.deepEqual(problems('{ bytes: 1GiB, period: 1h, per: user }'), ["x.yaml:3: limits.max_bytes_per_user: unknown key 'per'"])
  })
})
