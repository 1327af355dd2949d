/**
 * The reloader's look at its files (src/config/file-look.ts): identity and
 * content, with a cache keyed by stat that must never hide a change.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { content, identity, look, racyWindow, type Looked } from '../../src/config/file-look.js'

const dir = mkdtempSync(join(tmpdir(), 'sluice-look-'))
after(() => { rmSync(dir, { recursive: true, force: true }) })

describe('look', () => {
  it('an unchanged file looks the same, with or without the cache', () => {
    const f = join(dir, 'a.yaml')
    writeFileSync(f, 'version: 1\n')
    const cache = new Map<string, Looked>()
    const first = look([f], cache).get(f)
    assert.equal(look([f], cache).get(f), first)
    assert.equal(look([f]).get(f), first)
  })

  it('a rewrite of the same size right after a look is seen, cache or not (the stat may not have changed)', () => {
    const f = join(dir, 'b.yaml')
    const cache = new Map<string, Looked>()
    writeFileSync(f, 'rules: [a]\n')
    const before = look([f], cache).get(f)
    writeFileSync(f, 'rules: [b]\n')
    const now = look([f], cache).get(f)
    assert.notEqual(content(now), content(before))
    assert.equal(identity(now), identity(before), 'written in place: the same inode')
  })

  it('the same bytes renamed into place: a new identity, the same content', () => {
    const f = join(dir, 'c.yaml')
    const cache = new Map<string, Looked>()
    writeFileSync(f, 'version: 1\n')
    const before = look([f], cache).get(f)
    writeFileSync(`${f}.tmp`, 'version: 1\n')
    renameSync(`${f}.tmp`, f)
    const now = look([f], cache).get(f)
    assert.notEqual(identity(now), identity(before))
    assert.equal(content(now), content(before))
  })

  it('a missing file, and an empty one', () => {
    const cache = new Map<string, Looked>()
    const gone = join(dir, 'none.yaml')
    assert.equal(look([gone], cache).get(gone), 'missing')
    const empty = join(dir, 'empty.yaml')
    writeFileSync(empty, '')
    assert.ok(look([empty], cache).get(empty)?.endsWith(':empty'))
  })

  it('a filesystem that keeps whole seconds (or milliseconds) is trusted only 2.1 s after a change, a fine one after 50 ms', () => {
    assert.equal(racyWindow(1_765_000_000_000_000_000n, 1_765_000_000_000_000_000n), 2_100_000_000n)
    assert.equal(racyWindow(1_765_000_000_123_000_000n, 1_765_000_000_123_000_000n), 2_100_000_000n)
    assert.equal(racyWindow(1_765_000_000_123_456_789n, 1_765_000_000_123_000_000n), 50_000_000n)
  })
})
