/**
 * "Did you mean …?" for typed names: config keys, CLI options and commands.
 * Edit distance with transpositions (optimal string alignment: insert,
 * delete, substitute or swap two neighbours, each cost 1), with a threshold
 * that grows with the word so `hoss` → `hosts` and `nmae` → `name` are
 * offered but `bogus` → `hosts` is not.
 */

/** Edit distance between `a` and `b`, a swap of two neighbours counting 1. */
export function levenshtein (a: string, b: string): number {
  if (a === b) return 0
  // Rows i-2, i-1 and i of the table.
  let before: number[] = []
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const cur = [i]
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (before[j - 2] ?? 0) + 1)
      cur.push(d)
    }
    before = prev
    prev = cur
  }
  return prev[b.length] ?? 0
}

/**
 * The candidate closest to `word`, if it is close enough to be a likely typo:
 * at most 1 edit for words of up to 4 characters, 2 up to 8, then 3. Case is
 * ignored (`Hosts` → `hosts`). Ties go to the earlier candidate.
 */
export function closest (word: string, candidates: Iterable<string>): string | undefined {
  const w = word.toLowerCase()
  const limit = w.length <= 4 ? 1 : w.length <= 8 ? 2 : 3
  let best: string | undefined
  let bestDistance = limit + 1
  for (const c of candidates) {
    const d = levenshtein(w, c.toLowerCase())
    if (d < bestDistance) { best = c; bestDistance = d }
  }
  return best
}

/** ` (did you mean 'hosts'?)`, or '' when nothing is close. */
export function didYouMean (word: string, candidates: Iterable<string>): string {
  const c = closest(word, candidates)
  return c === undefined ? '' : ` (did you mean '${c}'?)`
}
