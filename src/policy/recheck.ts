/** Re-judge a decision against another policy (reload with revoke_on_reload). */
import type { CompiledPolicy } from './compile.js'
import { decideAddress, decideRequest, type RequestFacts } from './decide.js'

/**
 * Would `policy` still allow what `facts` describe, dialed at `dialed`
 * (`ip:port` / `[v6]:port` for direct tunnels, or a parent's address, in
 * which case only the request stage applies)?
 */
export function stillAllowed (policy: CompiledPolicy, facts: RequestFacts, dialed: string | undefined, viaParent: boolean): boolean {
  const early = decideRequest(policy, facts)
  if (early !== undefined && !early.allow) return false
  if (viaParent) return early !== undefined || !facts.isName
  const m = dialed === undefined ? null : /^\[?([^\]]*?)\]?:\d+$/.exec(dialed)
  return m?.[1] === undefined ? early !== undefined : decideAddress(policy, facts, m[1]).allow
}
