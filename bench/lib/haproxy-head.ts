/**
 * The head every bench HAProxy config starts with (the SNI peer,
 * sni-peers.ts, and the TLS origin of the terminate mode, tls-origin.ts):
 * TCP mode, one pidfile, `maxconn` sized by the caller (2 × maxconn must stay
 * under the fd limit), and timeouts long enough for a bulk run.
 */
export function haproxyTcpHead (opts: { readonly threads: string | number, readonly maxconn: number, readonly dir: string }): string[] {
  return [
    'global',
    `    nbthread ${opts.threads}`,
    `    maxconn ${opts.maxconn}`,
    `    pidfile ${opts.dir}/haproxy.pid`,
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    '    timeout client 600s',
    '    timeout server 600s'
  ]
}
