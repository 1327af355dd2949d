/**
 * bench/lib/charts.ts (issue 12): the SVG is well-formed and standalone,
 * labels are escaped, bar lengths follow the values, and the run's charts
 * skip what did not run and take their numbers from table.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { barChart, benchCharts, type Chart } from '../../bench/lib/charts.js'
import { cell, summarize, type RepResult, type Scenario } from '../../bench/lib/table.js'
import type { BulkResult, RateResult } from '../../bench/lib/types.js'

/** A tiny XML check: every tag parses and balances, one <svg> root, `&` only in entities, no stray `<`. */
function assertWellFormed (xml: string): void {
  const stack: string[] = []
  let roots = 0
  const entity = /&(?![a-z]+;|#\d+;)/
  for (const [token] of xml.matchAll(/<[^>]*>|[^<]+/g)) {
    if (!token.startsWith('<')) {
      assert.ok(!entity.test(token), `bare & in text ${JSON.stringify(token)}`)
      assert.ok(stack.length > 0 || token.trim() === '', `text outside the root: ${JSON.stringify(token)}`)
      continue
    }
    const m = /^<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>$/.exec(token)
    assert.ok(m !== null, `not a tag: ${JSON.stringify(token)}`)
    const [, close, name = '', attrs = '', selfClose] = m
    assert.ok(!entity.test(attrs), `bare & in ${JSON.stringify(token)}`)
    if (close === '/') {
      assert.equal(stack.pop(), name, `</${name}> closes the wrong tag`)
    } else if (selfClose !== '/') {
      if (stack.length === 0) roots++
      stack.push(name)
    }
  }
  assert.deepEqual(stack, [], 'unclosed tags')
  assert.equal(roots, 1)
  assert.match(xml, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="\d+" height="\d+" viewBox="0 0 \d+ \d+"[^>]*>/)
  assert.match(xml, /<\/svg>\s*$/)
  assert.doesNotMatch(xml, /<script|@import|url\(|href=/i)
  assert.match(xml, /font-family="sans-serif"/)
}

/** The bars' widths in document order, with their fill. */
function bars (svg: string): Array<{ width: number, fill: string }> {
  return [...svg.matchAll(/<rect class="bar"[^>]*\swidth="([\d.]+)"[^>]*\sfill="([^"]+)"/g)].map(m => ({ width: Number(m[1]), fill: m[2] ?? '' }))
}

const s = (values: number[]): NonNullable<ReturnType<typeof summarize>> => {
  const out = summarize(values)
  assert.ok(out !== undefined)
  return out
}

describe('barChart', () => {
  const chart: Chart = {
    title: 'tunnels/s <higher> & better',
    note: 'Bars: median',
    series: [''],
    rows: [
      { peer: 'direct', bars: [s([20_000])] },
      { peer: 'node-net', bars: [s([10_000])] },
      { peer: 'sluice', bars: [s([14_000, 15_000, 16_000])] },
      { peer: 'a<&b', bars: [s([5000])] }
    ]
  }
  const svg = barChart(chart)

  it('is a well-formed standalone SVG', () => {
    assertWellFormed(svg)
    assert.match(svg, /<title>tunnels\/s &lt;higher&gt; &amp; better<\/title>/)
  })

  it('labels every peer with its value, min–max when there are several repetitions', () => {
    for (const label of ['>direct<', '>node-net<', '>sluice<', '>20,000<', '>10,000<', '>15,000 (14,000–16,000)<', '>5,000<']) {
      assert.ok(svg.includes(label), `missing ${label}`)
    }
  })

  it('escapes < and & in a label', () => {
    assert.ok(svg.includes('>a&lt;&amp;b<'))
    assert.ok(!svg.includes('a<&b'))
  })

  it('draws bars proportional to the medians, the longest for the largest', () => {
    const widths = bars(svg).map(b => b.width)
    assert.equal(widths.length, 4)
    assert.equal(Math.max(...widths), widths[0])
    const [direct = 0, nodeNet = 0, sluice = 0, small = 0] = widths
    assert.ok(Math.abs(direct / nodeNet - 2) < 0.01, `${direct} / ${nodeNet}`)
    assert.ok(Math.abs(sluice / direct - 0.75) < 0.01, `${sluice} / ${direct}`)
    assert.ok(Math.abs(small / direct - 0.25) < 0.01, `${small} / ${direct}`)
  })

  it('draws a min–max line only where the repetitions differ', () => {
    assert.equal([...svg.matchAll(/<path d="M[^"]*" stroke="#24292f"/g)].length, 1)
  })

  it('colours Sluice apart from the others', () => {
    const fills = bars(svg).map(b => b.fill)
    assert.equal(fills[0], fills[1])
    assert.notEqual(fills[2], fills[0])
  })
})

describe('benchCharts', () => {
  const rate = (tunnelsPerS: number, cpuUsPerTunnel?: number): RateResult => ({ ok: true, tunnelsPerS, ...(cpuUsPerTunnel === undefined ? {} : { cpuUsPerTunnel }) })
  const bulk = (upMBps: number, downMBps: number): BulkResult => ({ ok: true, upMBps, downMBps })
  const results = new Map<string, RepResult[]>([
    ['direct', [{ rep: 1, rate: rate(30_000), bulk: bulk(3000, 2800) }, { rep: 2, rate: rate(31_000), bulk: bulk(3100, 2900) }]],
    ['sluice', [{ rep: 1, rate: rate(12_000, 70), bulk: bulk(1500, 1400) }, { rep: 2, rate: rate(13_000, 65), bulk: bulk(1600, 1450) }]],
    ['sluice+auth', [{ rep: 1, rate: rate(11_000, 80) }, { rep: 2, error: 'boom' }]],
    ['squid', [{ rep: 1, error: 'did not start' }, { rep: 2, error: 'did not start' }]]
  ])
  const peers = ['direct', 'sluice', 'sluice+auth', 'squid']
  const charts = benchCharts(peers, results, new Set<Scenario>(['rate', 'bulk']))
  const byFile = new Map(charts.map(c => [c.file, c.svg]))

  it('draws one chart per scenario that ran, none for hold', () => {
    assert.deepEqual(charts.map(c => c.file), ['tunnels-per-s.svg', 'cpu-us-per-tunnel.svg', 'bulk-mb-s.svg'])
    for (const c of charts) assertWellFormed(c.svg)
    assert.deepEqual(benchCharts(peers, results, new Set<Scenario>(['hold'])), [])
  })

  it('shows only peers with a value: direct in tunnels/s, not in CPU; squid nowhere', () => {
    const tunnels = byFile.get('tunnels-per-s.svg') ?? ''
    const cpu = byFile.get('cpu-us-per-tunnel.svg') ?? ''
    assert.ok(tunnels.includes('>direct<'))
    assert.ok(!cpu.includes('>direct<'))
    assert.ok(cpu.includes('>sluice+auth<'))
    for (const svg of byFile.values()) assert.ok(!svg.includes('squid'))
    assert.equal(bars(tunnels).length, 3)
  })

  it('labels bars with the table\'s own cell text', () => {
    const tunnels = byFile.get('tunnels-per-s.svg') ?? ''
    assert.ok(tunnels.includes(`>${cell([12_000, 13_000])}<`))
    const up = byFile.get('bulk-mb-s.svg') ?? ''
    assert.ok(up.includes(`>upload ${cell([1500, 1600])}<`))
    assert.ok(up.includes(`>download ${cell([2800, 2900])}<`))
  })

  it('draws two bars per peer for bulk, upload first', () => {
    const b = bars(byFile.get('bulk-mb-s.svg') ?? '')
    assert.equal(b.length, 4)
    const [directUp, directDown, sluiceUp] = b.map(x => x.width)
    assert.ok(directUp !== undefined && directDown !== undefined && sluiceUp !== undefined)
    assert.ok(directUp > directDown && directUp > sluiceUp)
  })
})
