/**
 * Config problems, all of them, each as `file:LINE: path: what was expected`.
 * Raised for an unreadable or invalid file; `problems` lists each one.
 */
export class ConfigError extends Error {
  readonly problems: readonly string[]
  constructor (file: string, problems: readonly string[]) {
    // A problem may run over several lines (a YAML snippet with a caret): indent them all.
    super(`${file}: invalid configuration\n` + problems.map(p => `  ${p.replace(/\n/g, '\n  ')}`).join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }
}
