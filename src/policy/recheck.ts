/** Re-judge an open tunnel against another policy (reload with revoke_on_reload, issue 3). */
import type { Endpoint } from '../net/ip.js'
import type { CompiledPolicy } from './compile.js'
import type { RequestFacts } from './decide.js'
import { Decision } from './evaluate.js'

/**
 * Would `policy` still allow what `facts` describe, dialed at `dialed`?
 * The same Decision as a new CONNECT: stage 1, then stage 2 on what was
 * actually dialed. Through a parent, a name was never resolved here, so it
 * stands or falls by stage 1; an IP literal is judged as itself.
 */
export function stillAllowed (policy: CompiledPolicy, facts: RequestFacts, dialed: Endpoint | undefined, viaParent: boolean): boolean {
  const d = new Decision(policy, facts)
  if (d.refusal !== undefined) return false
  const address = viaParent ? (facts.isName ? undefined : facts.host) : dialed?.address
  if (address === undefined) return d.early !== undefined
  try {
    d.judge([address])
    return true
  } catch {
    return false
  }
}
