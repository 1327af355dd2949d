/** Validated rules → matchers, once per load (never per request). */
import type { RuleSpec } from './schema.js'
import { compileCidrs, compileHosts, compilePorts, type CidrMatcher, type HostMatcher, type PortMatcher } from './match.js'

export interface CompiledRule {
  readonly name: string
  readonly allow: boolean
  readonly hosts?: HostMatcher
  readonly ports?: PortMatcher
  readonly ips?: CidrMatcher
  readonly clients?: CidrMatcher
}

export interface CompiledPolicy {
  readonly rules: readonly CompiledRule[]
  readonly defaultAllow: boolean
}

export function compilePolicy (rules: readonly RuleSpec[], defaultAction: 'allow' | 'deny'): CompiledPolicy {
  return Object.freeze({
    defaultAllow: defaultAction === 'allow',
    rules: Object.freeze(rules.map((r, i): CompiledRule => Object.freeze({
      // Rules without a name get a stable one from their position.
      name: r.name ?? `rule-${i + 1}`,
      allow: r.action === 'allow',
      ...(r.hosts === undefined ? {} : { hosts: compileHosts(r.hosts) }),
      ...(r.ports === undefined ? {} : { ports: compilePorts(r.ports) }),
      ...(r.ips === undefined ? {} : { ips: compileCidrs(r.ips) }),
      ...(r.clients === undefined ? {} : { clients: compileCidrs(r.clients) })
    })))
  })
}
