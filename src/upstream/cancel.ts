/**
 * What a dial needs to hear that its client went away. An AbortSignal is
 * one; so is a Tunnel (tunnel/tunnel-setup.ts), which keeps its few listeners in
 * an array instead of building an AbortController per CONNECT: the
 * controller, its signal and an EventTarget listener cost 12–14 µs of CPU
 * per tunnel (issue 12's profile).
 */
export interface Cancellation {
  readonly aborted: boolean
  addEventListener: (type: 'abort', listener: () => void, options?: { readonly once?: boolean }) => void
  removeEventListener: (type: 'abort', listener: () => void) => void
}
