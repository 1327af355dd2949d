/** Config problems, all of them, each as `file: path: what was expected`. */
/** Raised for an unreadable or invalid file; `problems` lists each one. */
export class ConfigError extends Error {
  readonly problems: readonly string[]
  constructor (file: string, problems: readonly string[]) {
    super(`${file}: invalid configuration\n` + problems.map(p => `  ${p}`).join('\n'))
    this.name = 'ConfigError'
    this.problems = problems
  }
}
