/**
 * The policy `npm run bench:reload` loads (issue 11, finding 6; issue 15):
 * `rules` deny rules, each with its own 10.x.y.0/24, ahead of one rule that
 * allows loopback (the echo origin). Every rule is passed over for a
 * loopback target, so a CONNECT meets all of them.
 */

/** `header`: what goes before `rules:` (version, listen, admin…). `gen` names the rules, so each generation hashes differently. */
export function bigPolicy (rules: number, gen = 0, header = 'version: 1\n'): string {
  const lines = Array.from({ length: rules }, (_, i) => `  - { name: net-g${gen}-${i}, action: deny, ips: [10.${(i >> 8) & 255}.${i & 255}.0/24] }`)
  return `${header}rules:\n${lines.join('\n')}\n  - { name: lo, action: allow, ips: [127.0.0.0/8] }\n`
}

/** The same allow rule alone: what the in-process mode swaps back between reloads. */
export const SMALL_POLICY = 'version: 1\nrules:\n  - { name: lo, action: allow, ips: [127.0.0.0/8] }\n'
