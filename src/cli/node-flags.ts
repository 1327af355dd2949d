/**
 * V8 flags Sluice runs with: `npm start`, the `sluice` bin's shebang, the
 * Docker image and the bench all use these (test/unit/node-flags.test.ts
 * keeps them in step). Workers under --workers inherit them (cluster passes
 * process.execArgv on).
 *
 * --max-semi-space-size=4 (MiB): a burst of CONNECTs leaves V8's young
 * generation grown to Node 20's default maximum, and that memory stays
 * resident behind every idle tunnel. Capped at 4 MiB, `npm run bench`'s
 * hold scenario went from 7.5 to 6.3 KiB per idle tunnel with no change in
 * tunnels/s (issue 6).
 */
export const NODE_FLAGS: readonly string[] = Object.freeze(['--max-semi-space-size=4'])
