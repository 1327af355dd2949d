/**
 * Every way Sluice is started passes the same V8 flags (src/cli/node-flags.ts):
 * npm start, the bin's shebang, the Docker entrypoint. The bench imports them.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { NODE_FLAGS } from '../../src/cli/node-flags.js'

const root = new URL('../../', import.meta.url)
const read = (path: string): string => readFileSync(new URL(path, root), 'utf8')

describe('node flags', () => {
  const flags = NODE_FLAGS.join(' ')

  it('npm start runs node with them', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> }
    assert.match(pkg.scripts['start'] ?? '', new RegExp(`^node ${flags} dist/cli\\.js `))
  })

  it('the bin shebang passes them', () => {
    assert.equal(read('src/cli.ts').split('\n')[0], `#!/usr/bin/env -S node ${flags}`)
  })

  it('the Docker entrypoint passes them', () => {
    const entry = read('docker/Dockerfile').split('\n').find(l => l.startsWith('ENTRYPOINT'))
    assert.equal(entry, `ENTRYPOINT ${JSON.stringify(['node', ...NODE_FLAGS, 'dist/cli.js']).replaceAll(',', ', ')}`)
  })
})
