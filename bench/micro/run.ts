/**
 * Micro-benchmarks (mitata) of Sluice's per-CONNECT pure functions (and the
 * per-connection ClientHello reader).
 *   node --import tsx bench/micro/run.ts [REGEX]   (REGEX filters benchmark names)
 */
import { run } from 'mitata'
import './target.bench.js'
import './decide.bench.js'
import './auth.bench.js'
import './client-hello.bench.js'
import './metrics.bench.js'

const pattern = process.argv[2]
await run({
  ...(pattern === undefined ? {} : { filter: new RegExp(pattern, 'i') }),
  colors: process.stdout.isTTY === true
})
