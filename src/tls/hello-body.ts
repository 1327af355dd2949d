/**
 * The ClientHello message itself, once hello-records.ts has gathered it
 * (RFC 8446 §4.1.2; TLS 1.2's is the same, RFC 5246 §7.4.1.2):
 *
 *   uint8 msg_type = 1; uint24 length;
 *   uint16 legacy_version;                          major byte 3
 *   opaque random[32];
 *   opaque legacy_session_id<0..32>;
 *   CipherSuite cipher_suites<2..2^16-2>;           an even length
 *   opaque legacy_compression_methods<1..2^8-1>;
 *   Extension extensions<0..2^16-1>;                absent in some TLS 1.2 hellos
 *
 * Every vector must fit, the extensions must end exactly where the message
 * does (nothing after them), no extension type may appear twice (RFC 8446
 * §4.2), and pre_shared_key must be the last (RFC 8446 §4.2.11), as a TLS
 * server requires: a hello a server would refuse is not routed. Only
 * server_name, ALPN and supported_versions are read (hello-extensions.ts);
 * encrypted_client_hello is noted; the rest are skipped by their length.
 */
import { alpnOf, serverNameOf, versionsOf } from './hello-extensions.js'
import { malformed, type HelloError, type HelloResult } from './hello-result.js'

const SERVER_NAME = 0
const ALPN = 16
const PRE_SHARED_KEY = 41
const SUPPORTED_VERSIONS = 43
/** draft-ietf-tls-esni: encrypted_client_hello. */
const ENCRYPTED_CLIENT_HELLO = 0xfe0d

/**
 * Which extension types this hello has shown, as `seen[type] === stamp`:
 * a duplicate check in one pass over any number of extensions, with no
 * clearing per hello (parsing is synchronous, so one table serves all).
 */
const seen = new Uint16Array(65536)
let stamp = 0

function nextStamp (): number {
  if (stamp === 0xffff) {
    seen.fill(0)
    stamp = 0
  }
  return ++stamp
}

function u16 (b: Buffer, at: number): number {
  return ((b[at] as number) << 8) | (b[at + 1] as number)
}

/**
 * Parse the ClientHello at `m[start, end)` (the whole handshake message,
 * header included; an offset, not a subarray, which would cost an object).
 * `length` and `records` describe the records it came in, for the result.
 */
export function parseBody (m: Buffer, start: number, end: number, length: number, records: number): HelloResult {
  let p = start + 4
  if (end - p < 2 + 32 + 1) return malformed('the ClientHello ends inside its version or random')
  const legacyVersion = u16(m, p)
  if (legacyVersion >> 8 !== 3) return malformed(`legacy_version 0x${legacyVersion.toString(16)} is not TLS 1.x`)
  p += 2 + 32
  const sessionId = m[p] as number
  if (sessionId > 32) return malformed(`a legacy_session_id of ${sessionId} bytes, over 32`)
  p += 1 + sessionId
  if (end - p < 2) return malformed('the ClientHello ends inside legacy_session_id')
  const suites = u16(m, p)
  if (suites < 2 || suites % 2 !== 0) return malformed(`cipher_suites of ${suites} bytes: must be a non-zero even length`)
  p += 2 + suites
  if (end - p < 1) return malformed('the ClientHello ends inside cipher_suites')
  const compression = m[p] as number
  if (compression < 1) return malformed('legacy_compression_methods is empty')
  p += 1 + compression
  if (p > end) return malformed('the ClientHello ends inside legacy_compression_methods')
  if (p === end) {
    // No extensions at all (TLS 1.2 allows it): no SNI, no ALPN.
    return { kind: 'hello', serverName: undefined, alpn: [], echOffered: false, legacyVersion, supportedVersions: undefined, length, records }
  }
  if (end - p < 2) return malformed('one byte after legacy_compression_methods: no room for an extensions length')
  const extensions = u16(m, p)
  p += 2
  if (p + extensions !== end) {
    return malformed(p + extensions > end
      ? 'the extensions run past the end of the ClientHello'
      : `${end - p - extensions} bytes after the extensions, inside the ClientHello`)
  }
  return readExtensions(m, p, end, legacyVersion, length, records)
}

function readExtensions (m: Buffer, p: number, end: number, legacyVersion: number, length: number, records: number): HelloResult {
  let serverName: string | undefined
  let alpn: readonly string[] = []
  let supportedVersions: readonly number[] | undefined
  let echOffered = false
  let last = -1
  const mark = nextStamp()
  // Each turn moves p on by at least 4.
  while (p < end) {
    if (end - p < 4) return malformed('the ClientHello ends inside an extension header')
    const type = u16(m, p)
    const size = u16(m, p + 2)
    p += 4
    if (size > end - p) return malformed(`extension ${type} runs past the end of the ClientHello`)
    if (seen[type] === mark) return malformed(`extension ${type} appears twice (RFC 8446 §4.2)`)
    seen[type] = mark
    if (last === PRE_SHARED_KEY) return malformed('pre_shared_key is not the last extension (RFC 8446 §4.2.11)')
    last = type
    let err: HelloError | undefined
    switch (type) {
      case SERVER_NAME: {
        const name = serverNameOf(m, p, size)
        if (typeof name !== 'string') err = name
        else serverName = name
        break
      }
      case ALPN: {
        const names = alpnOf(m, p, size)
        if (!Array.isArray(names)) err = names
        else alpn = names
        break
      }
      case SUPPORTED_VERSIONS: {
        const versions = versionsOf(m, p, size)
        if (!Array.isArray(versions)) err = versions
        else supportedVersions = versions
        break
      }
      case ENCRYPTED_CLIENT_HELLO:
        echOffered = true
        break
    }
    if (err !== undefined) return err
    p += size
  }
  return { kind: 'hello', serverName, alpn, echOffered, legacyVersion, supportedVersions, length, records }
}
