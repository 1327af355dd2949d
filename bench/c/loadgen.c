/*
 * Provenance: copied verbatim into Sluice's bench/c/ from the team's shared
 * CONNECT-proxy perf harness (shared/perf/loadgen.c), which carries no license
 * or attribution header; maintained here from now on. Built by bench/run.ts
 * (bench/lib/build.ts: cc -O2 -Wall ... with tls-client.c, -lm -lssl
 * -lcrypto) into bench/.build/.
 * Local changes since the copy: --connect-host NAME (a reserved name in the
 * CONNECT line, for proxies whose name rules should be exercised); --tls
 * (issue 13, below; the TLS code is in tls-client.c); --tunnel-hello NAME
 * (issue 14: rate mode starts each tunnel's payload with the canned
 * ClientHello below, server_name NAME, for proxies that judge a tunnel's
 * first bytes; the echo port returns hello and payload, both compared);
 * --tls-sni NAME (issue 14, below: real TLS per connection, SNI by origin
 * port, no CONNECT, for `kind: terminate` listeners).
 *
 * loadgen.c - load generator for HTTP CONNECT forward proxies.
 *
 * A proxy is anything on HOST:PORT that answers "CONNECT host:port HTTP/1.1"
 * with a 2xx... more precisely with status 200, then relays bytes both ways.
 * The far end is ./origin (echo / sink / source ports).
 *
 * Modes (single thread, epoll, non-blocking):
 *   rate   C workers loop: connect, CONNECT to echo, expect 200, send a
 *          payload (64 B), read it back, close.  Runs --warmup then
 *          --duration seconds; reports tunnels/s, errors by kind and
 *          latency percentiles of CONNECT->200 and of the full cycle.
 *   bulk   N tunnels; upload --bytes to the sink ("PUT n\n" + n bytes, the
 *          sink answers with an 8-byte count) and/or download --bytes from
 *          the source ("GET n\n").  Reports MB/s (1 MB = 1e6 bytes) and
 *          verifies byte counts.
 *   hold   open K tunnels to echo (each verified with a 16-byte ping),
 *          print an "established" JSON event, keep them idle until SIGUSR1 /
 *          SIGTERM / a line or EOF on stdin (--stdin) / --hold-s timeout,
 *          then ping every tunnel again (alive check) and close.
 *   probe  a few one-shot behaviour checks (early data, half-close,
 *          refused port, EOF propagation); informational.
 *
 * --direct skips the proxy and talks to the origin ports straight (floor).
 *
 * TLS to the proxy (--tls; rate, bulk and hold): each connection does a TLS
 * 1.3 handshake with the proxy (an HTTPS proxy), then sends the CONNECT and
 * everything after it inside TLS; the origin leg stays plain TCP.  Still one
 * thread and one epoll loop: the handshake is a state of its own, and every
 * read and write goes through conn_send/conn_recv, which turn OpenSSL's
 * WANT_READ/WANT_WRITE into EAGAIN.  --tls-ca FILE verifies the proxy's
 * certificate (for --tls-servername NAME, also sent as SNI, else for the
 * proxy's IP).  --tls-resume: each client slot offers the session of its
 * previous connection (the newest ticket it got, or the one it resumed with),
 * so rate mode measures resumed handshakes; the JSON line counts full and
 * resumed handshakes.
 *
 * SNI mode (--sni NAME): no CONNECT.  Each connection starts with a canned
 * TLS 1.3 ClientHello (record 0x16 0x03 0x01, handshake type 1, random,
 * session id, cipher suites, null compression, extensions server_name,
 * supported_groups, signature_algorithms, supported_versions,
 * psk_key_exchange_modes, key_share with a 32-byte x25519 share, optional
 * padding (21) up to --sni-pad bytes) whose server_name selects the origin
 * port: --sni for echo, --sni-sink / --sni-source (default: the --sni name
 * with a leading "echo." replaced by "sink." / "source.").  The origin (run
 * with --tls-hello) consumes the ClientHello and answers with one TLS record
 * whose body is "ok <kind>\n"; that record plays the part of the "200" (its
 * arrival ends the "connect" latency, the kind proves the route), then the
 * mode runs as with CONNECT.  --sni-split tcp|records sends the ClientHello
 * in two writes --sni-gap-ms apart (default 5), cut in the middle of the
 * server_name: "tcp" = one record in two TCP writes, "records" = the
 * handshake message fragmented over two TLS records (one per write).
 * TLS routed by SNI (--tls-sni NAME; issue 14, a `kind: terminate` listener or
 * any peer routing real TLS by its server_name): no CONNECT and no canned
 * hello.  Each connection does a real TLS 1.3 handshake (tls-client.c) whose
 * SNI names the origin port (NAME for echo, --sni-sink / --sni-source, or
 * NAME with "echo." replaced as for --sni), to the proxy or, with --direct,
 * to the origin ports (then TLS ports: haproxy in front of ./origin); --tls-ca
 * verifies each certificate for that name.  Then the mode runs inside TLS as
 * with --tls.  A handshake can complete before the proxy reached the
 * upstream (a proxy that finishes the client's handshake first), so rate's
 * "connect" latency is taken at the first echoed byte: connect + handshake
 * → first echo, comparable across peers.
 * Output: human-readable lines, then one JSON line (starting with '{').
 * hold additionally prints {"event":"established",...} when established.
 *
 * Build: gcc -O2 -Wall -o loadgen loadgen.c tls-client.c -lm -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "tls-client.h"

/* ------------------------------------------------------------------ */
/* options                                                             */

enum { M_RATE, M_BULK, M_HOLD, M_PROBE };
static const char *mode_name[] = {"rate", "bulk", "hold", "probe"};

static struct {
    int mode;
    char proxy_host[64];
    int proxy_port;
    int direct;
    char origin_host[64];
    char connect_host[128]; /* name in the CONNECT line instead of origin_host ("" = origin_host) */
    int echo_port, sink_port, source_port, closed_port, stall_port;
    char auth_line[512]; /* "Proxy-Authorization: Basic ...\r\n" or "" */
    const char *label;
    int timeout_ms;
    int allow_nonlo;
    /* rate */
    int conc;
    double duration, warmup;
    int payload;
    /* bulk */
    uint64_t bytes;
    int streams;
    int dir_up, dir_down;
    double bulk_timeout;
    int verify_data;
    /* hold */
    int k, ramp;
    double hold_s, establish_s;
    int use_stdin, verify_alive;
    /* SNI mode */
    int sni;
    char sni_echo[256], sni_sink[256], sni_source[256], sni_closed[256], sni_unknown[256];
    int sni_pad, sni_split, sni_gap_ms;
    /* rate: the canned ClientHello (server_name tunnel_hello) first in each tunnel */
    char tunnel_hello[256];
    /* TLS to the proxy */
    int tls, tls_resume;
    const char *tls_ca, *tls_servername;
    /* TLS routed by SNI: a real handshake per connection, the name by origin port (sni_echo/sink/source) */
    int tls_sni;
} O = {
    .proxy_host = "127.0.0.1",
    .proxy_port = 0,
    .origin_host = "127.0.0.1",
    .echo_port = 20001,
    .sink_port = 20002,
    .source_port = 20003,
    .closed_port = 20999,
    .stall_port = 20998,
    .label = "",
    .timeout_ms = 5000,
    .conc = 50,
    .duration = 10,
    .warmup = 0,
    .payload = 64,
    .bytes = 1ULL << 30,
    .streams = 1,
    .dir_up = 1,
    .dir_down = 1,
    .bulk_timeout = 120,
    .k = 5000,
    .ramp = 100,
    .hold_s = 60,
    .establish_s = 120,
    .verify_alive = 1,
    .sni_closed = "closed.test",
    .sni_unknown = "unknown-name.invalid",
    .sni_gap_ms = 5,
};

/* The CONNECT target name: --connect-host, else the origin address. */
static const char *connect_host(void) { return O.connect_host[0] ? O.connect_host : O.origin_host; }

/* ------------------------------------------------------------------ */
/* small utilities                                                     */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

static const char *errname(int e) {
    const char *n = strerrorname_np(e);
    return n ? n : "EUNKNOWN";
}

/* error kinds */
#define MAX_ERRK 64
static struct {
    char name[48];
    uint64_t n;
} errk[MAX_ERRK];
static int nerrk;
static uint64_t err_total;

static void err_count(const char *name) {
    err_total++;
    for (int i = 0; i < nerrk; i++)
        if (!strcmp(errk[i].name, name)) {
            errk[i].n++;
            return;
        }
    if (nerrk < MAX_ERRK) {
        snprintf(errk[nerrk].name, sizeof errk[nerrk].name, "%s", name);
        errk[nerrk++].n = 1;
    }
}

static void errors_reset(void) {
    nerrk = 0;
    err_total = 0;
}

/* latency samples (milliseconds) */
typedef struct {
    double *v;
    size_t n, cap;
    int sorted;
} samples_t;

static void sample_add(samples_t *s, double x) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) die("out of memory");
    }
    s->v[s->n++] = x;
    s->sorted = 0;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(samples_t *s, double p) {
    if (!s->n) return NAN;
    if (!s->sorted) {
        qsort(s->v, s->n, sizeof *s->v, cmp_d);
        s->sorted = 1;
    }
    size_t idx = (size_t)ceil(p / 100.0 * (double)s->n);
    if (idx < 1) idx = 1;
    if (idx > s->n) idx = s->n;
    return s->v[idx - 1];
}

static double mean(samples_t *s) {
    double t = 0;
    for (size_t i = 0; i < s->n; i++) t += s->v[i];
    return s->n ? t / (double)s->n : NAN;
}

static void jnum(FILE *f, double x) {
    if (isnan(x) || isinf(x))
        fprintf(f, "null");
    else
        fprintf(f, "%.4f", x);
}

static void json_lat(FILE *f, const char *name, samples_t *s) {
    fprintf(f, "\"%s\":{\"n\":%zu,\"p50\":", name, s->n);
    jnum(f, pct(s, 50));
    fprintf(f, ",\"p90\":");
    jnum(f, pct(s, 90));
    fprintf(f, ",\"p99\":");
    jnum(f, pct(s, 99));
    fprintf(f, ",\"max\":");
    jnum(f, pct(s, 100));
    fprintf(f, ",\"mean\":");
    jnum(f, mean(s));
    fprintf(f, "}");
}

static void json_errors(FILE *f) {
    fprintf(f, "\"errors\":{");
    for (int i = 0; i < nerrk; i++) fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", errk[i].name, errk[i].n);
    fprintf(f, "},\"error_total\":%" PRIu64, err_total);
}

/* TLS handshakes completed so far (every phase, warm-up too), by kind. */
static uint64_t tls_full, tls_resumed_n;

static void json_tls(FILE *f) {
    fprintf(f, ",\"tls\":true,\"tls_resume\":%s,\"tls_handshakes\":{\"full\":%" PRIu64 ",\"resumed\":%" PRIu64 "}",
            O.tls_resume ? "true" : "false", tls_full, tls_resumed_n);
}

static void json_common(FILE *f) {
    fprintf(f, "\"mode\":\"%s\",\"label\":\"%s\",\"direct\":%s", mode_name[O.mode], O.label,
            O.direct ? "true" : "false");
    if (!O.direct) fprintf(f, ",\"proxy\":\"%s:%d\"", O.proxy_host, O.proxy_port);
    if (O.sni)
        fprintf(f, ",\"sni\":\"%s\",\"sni_split\":\"%s\",\"sni_pad\":%d", O.sni_echo,
                O.sni_split == 1 ? "tcp" : O.sni_split == 2 ? "records" : "none", O.sni_pad);
    if (O.tunnel_hello[0]) fprintf(f, ",\"tunnel_hello\":\"%s\"", O.tunnel_hello);
    if (O.tls_sni)
        fprintf(f, ",\"tls_sni\":\"%s\",\"connect_ms_is\":\"handshake_to_first_echo\"", O.sni_echo);
    if (O.tls || O.tls_sni) json_tls(f);
}

static double self_cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec * 1e-6;
}

static void print_errors_human(void) {
    if (!err_total) {
        printf("  errors: none\n");
        return;
    }
    printf("  errors: %" PRIu64 " (", err_total);
    for (int i = 0; i < nerrk; i++) printf("%s%s=%" PRIu64, i ? ", " : "", errk[i].name, errk[i].n);
    printf(")\n");
}


/* ------------------------------------------------------------------ */
/* SNI mode: canned TLS 1.3 ClientHello                                */

enum { SPLIT_NONE = 0, SPLIT_TCP = 1, SPLIT_RECORDS = 2 };
#define HELLO_MAX 20000

typedef struct {
    unsigned char b[HELLO_MAX + 64];
    int len;      /* bytes on the wire (all records) */
    int split_at; /* first write = b[0..split_at) when split, else len */
} hello_t;

static hello_t hello_echo, hello_sink, hello_source, hello_closed, hello_unknown, hello_nosni, hello_tunnel;

static int put16(unsigned char *p, int v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
    return 2;
}

/* name NULL or "" = no server_name extension */
static void build_hello(hello_t *h, const char *name, int pad, int split) {
    static unsigned char hs[HELLO_MAX];
    int n = 0, name_mid = -1;
    hs[n++] = 1; /* ClientHello */
    n += 3;      /* length, below */
    hs[n++] = 3; /* legacy_version TLS 1.2 */
    hs[n++] = 3;
    for (int i = 0; i < 32; i++) hs[n++] = (unsigned char)(i * 37 + 11); /* random */
    hs[n++] = 32;                                                          /* legacy_session_id */
    for (int i = 0; i < 32; i++) hs[n++] = (unsigned char)(0xa0 + i);
    static const int cs[] = {0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8};
    int ncs = (int)(sizeof cs / sizeof cs[0]);
    n += put16(hs + n, 2 * ncs);
    for (int i = 0; i < ncs; i++) n += put16(hs + n, cs[i]);
    hs[n++] = 1; /* compression methods: null */
    hs[n++] = 0;
    int ext_len_at = n;
    n += 2;
    int ext0 = n;
    if (name && *name) { /* server_name (0) */
        int nl = (int)strlen(name);
        n += put16(hs + n, 0);
        n += put16(hs + n, nl + 5);
        n += put16(hs + n, nl + 3);
        hs[n++] = 0; /* host_name */
        n += put16(hs + n, nl);
        memcpy(hs + n, name, (size_t)nl);
        name_mid = n + nl / 2;
        n += nl;
    }
    /* supported_groups (10): x25519, secp256r1 */
    n += put16(hs + n, 10);
    n += put16(hs + n, 6);
    n += put16(hs + n, 4);
    n += put16(hs + n, 0x001d);
    n += put16(hs + n, 0x0017);
    /* signature_algorithms (13) */
    static const int sa[] = {0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601};
    int nsa = (int)(sizeof sa / sizeof sa[0]);
    n += put16(hs + n, 13);
    n += put16(hs + n, 2 + 2 * nsa);
    n += put16(hs + n, 2 * nsa);
    for (int i = 0; i < nsa; i++) n += put16(hs + n, sa[i]);
    /* supported_versions (43): TLS 1.3 */
    n += put16(hs + n, 43);
    n += put16(hs + n, 3);
    hs[n++] = 2;
    n += put16(hs + n, 0x0304);
    /* psk_key_exchange_modes (45): psk_dhe_ke */
    n += put16(hs + n, 45);
    n += put16(hs + n, 2);
    hs[n++] = 1;
    hs[n++] = 1;
    /* key_share (51): one x25519 share, 32 bytes */
    n += put16(hs + n, 51);
    n += put16(hs + n, 2 + 4 + 32);
    n += put16(hs + n, 4 + 32);
    n += put16(hs + n, 0x001d);
    n += put16(hs + n, 32);
    for (int i = 0; i < 32; i++) hs[n++] = (unsigned char)(0x40 + i * 3);
    /* padding (21) up to pad bytes on the wire (one 5-byte record header) */
    int hdrs = split == SPLIT_RECORDS ? 10 : 5;
    if (pad > 0 && hdrs + n + 4 < pad) {
        int pl = pad - (hdrs + n + 4);
        if (n + 4 + pl > HELLO_MAX) pl = HELLO_MAX - n - 4;
        n += put16(hs + n, 21);
        n += put16(hs + n, pl);
        memset(hs + n, 0, (size_t)pl);
        n += pl;
    }
    put16(hs + ext_len_at, n - ext0);
    int body = n - 4;
    hs[1] = (unsigned char)(body >> 16);
    hs[2] = (unsigned char)(body >> 8);
    hs[3] = (unsigned char)body;
    int cut = name_mid > 0 ? name_mid : n / 2; /* where the split falls: mid-name */
    int o = 0;
    if (split == SPLIT_RECORDS) {
        int parts[2][2] = {{0, cut}, {cut, n}};
        for (int r = 0; r < 2; r++) {
            int len = parts[r][1] - parts[r][0];
            h->b[o++] = 0x16;
            h->b[o++] = 3;
            h->b[o++] = 1;
            o += put16(h->b + o, len);
            memcpy(h->b + o, hs + parts[r][0], (size_t)len);
            o += len;
            if (r == 0) h->split_at = o;
        }
    } else {
        if (n > 16384) die("ClientHello of %d bytes does not fit one record; use --sni-split records or less --sni-pad", n);
        h->b[o++] = 0x16;
        h->b[o++] = 3;
        h->b[o++] = 1;
        o += put16(h->b + o, n);
        memcpy(h->b + o, hs, (size_t)n);
        o += n;
        h->split_at = split == SPLIT_TCP ? 5 + cut : o;
    }
    h->len = o;
}

static const char *sni_kind_of_port(int port) {
    if (port == O.echo_port) return "echo";
    if (port == O.sink_port) return "sink";
    if (port == O.source_port) return "source";
    return "?";
}

/* --tls-sni: the server_name for a connection to `port`. */
static const char *name_for_port(int port) {
    if (port == O.sink_port) return O.sni_sink;
    if (port == O.source_port) return O.sni_source;
    return O.sni_echo;
}

static hello_t *hello_for_port(int port) {
    if (port == O.sink_port) return &hello_sink;
    if (port == O.source_port) return &hello_source;
    if (port == O.closed_port) return &hello_closed;
    return &hello_echo;
}

/* SNI reply record "ok <kind>\n": 1 = complete (*reclen set), 0 = need more,
 * -1 = not a TLS record / wrong kind (*why set) */
static int sni_reply_check(const char *h, int len, int port, int *reclen, const char **why) {
    if (len < 1) return 0;
    if ((unsigned char)h[0] != 0x16 && (unsigned char)h[0] != 0x17) {
        *why = (unsigned char)h[0] == 0x15 ? "tls_alert" : "bad_response";
        return -1;
    }
    if (len < 5) return 0;
    int rl = ((unsigned char)h[3] << 8) | (unsigned char)h[4];
    if (len < 5 + rl) return 0;
    *reclen = 5 + rl;
    char want[32];
    int wl = snprintf(want, sizeof want, "ok %s\n", sni_kind_of_port(port));
    if (rl != wl || memcmp(h + 5, want, (size_t)wl) != 0) {
        *why = "wrong_route";
        return -1;
    }
    return 1;
}

/* ------------------------------------------------------------------ */
/* connections                                                         */

enum {
    ST_FREE = 0,
    ST_BACKOFF,     /* rate: waiting before reconnecting after an error */
    ST_CONNECTING,  /* TCP connect in progress                          */
    ST_TLS,         /* --tls: handshake with the proxy in progress      */
    ST_SEND_REQ,    /* writing the CONNECT request                      */
    ST_READ_HEAD,   /* reading the proxy's response head                */
    ST_ECHO_SEND,   /* writing payload / ping                           */
    ST_ECHO_RECV,   /* reading it back                                  */
    ST_HOLD_IDLE,   /* hold: established, idle                          */
    ST_BULK_WAIT,   /* bulk: established, waiting for the other streams */
    ST_UP,          /* bulk: sending "PUT n\n" + data, awaiting count   */
    ST_DOWN,        /* bulk: sending "GET n\n", reading n bytes         */
    ST_SNI_GAP,     /* SNI split: first part sent, waiting --sni-gap-ms  */
};

static const char *phase_of(int st) {
    switch (st) {
    case ST_CONNECTING: return "connect";
    case ST_TLS: return "tls";
    case ST_SEND_REQ: return O.sni ? "hello" : "request";
    case ST_SNI_GAP: return "hello";
    case ST_READ_HEAD: return "head";
    case ST_ECHO_SEND:
    case ST_ECHO_RECV: return "echo";
    case ST_HOLD_IDLE: return "idle";
    case ST_BULK_WAIT: return "bulkwait";
    case ST_UP: return "upload";
    case ST_DOWN: return "download";
    default: return "other";
    }
}

#define HEAD_MAX 4096
#define SMALL_MAX 4096

typedef struct conn {
    int fd;
    int id;
    int state;
    int target_port;
    uint32_t events;
    double t_start, t_head, t_done, deadline, t_progress;
    char head[HEAD_MAX];
    int headlen;
    char *leftover; /* bytes received after the head (points into head) */
    int leftlen;
    char small[SMALL_MAX]; /* outgoing small message: request / payload / prefix */
    int smalllen, smalloff;
    uint64_t cycle;
    uint64_t to_send, sent, to_recv, recvd;
    unsigned char reply[8];
    int replylen;
    int ok;
    int verify_phase; /* hold: 1 when this echo is the alive check */
    const hello_t *hello; /* SNI mode: the ClientHello being sent */
    int hoff, hend;
    double t_resume;      /* SNI split: when to send the second part */
    SSL *ssl;             /* --tls: this connection's TLS to the proxy */
    SSL_SESSION *session; /* --tls-resume: the slot's session, offered on its next connection */
} conn_t;

static int epfd;
static conn_t *conns;
static int nconns;
static struct sockaddr_in proxy_sa, origin_sa;
static double now;
static int sigfd = -1;
static volatile int stop_requested; /* SIGINT/SIGTERM in rate/bulk */
static int release_requested;       /* hold */

#define TAG_SIG ((void *)1)
#define TAG_STDIN ((void *)2)

#define BIG_SZ (251 * 1024)
static char bigbuf[BIG_SZ];  /* upload pattern */
static char rbuf[256 * 1024]; /* scratch for downloads */

static void set_events(conn_t *c, uint32_t ev) {
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl mod: %s", strerror(errno));
    c->events = ev;
}

/* Close the connection; `orderly`: a TLS one says close_notify first. */
static void conn_close_how(conn_t *c, int orderly) {
    if (c->ssl) tls_close(c->ssl, orderly, &c->session);
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->events = 0;
}

/* The end of a successful exchange. */
static void conn_close(conn_t *c) { conn_close_how(c, 1); }

/* send()/recv() on the connection: through TLS with --tls (same contract:
 * >0, 0 = EOF on recv, -1 with errno; EAGAIN whichever way TLS waits). */
static ssize_t conn_send(conn_t *c, const void *buf, size_t len) {
    return c->ssl ? tls_send(c->ssl, buf, len) : send(c->fd, buf, len, MSG_NOSIGNAL);
}

static ssize_t conn_recv(conn_t *c, void *buf, size_t len, int flags) {
    return c->ssl ? tls_recv(c->ssl, buf, len, flags & MSG_PEEK) : recv(c->fd, buf, len, flags);
}

/* Bytes TLS has already decrypted: the socket will not signal them again. */
static int conn_pending(const conn_t *c) { return c->ssl ? tls_pending(c->ssl) : 0; }

static void mode_failed(conn_t *c, int connect_err);
static void mode_tunnel_ready(conn_t *c);
static void mode_echo_done(conn_t *c);

/* Close after an error of kind "<phase>_<what>" and let the mode react. */
static void fail(conn_t *c, const char *what) {
    char k[64];
    snprintf(k, sizeof k, "%s_%s", c->verify_phase ? "verify" : phase_of(c->state), what);
    int connect_err = c->state == ST_CONNECTING;
    err_count(k);
    conn_close_how(c, 0);
    mode_failed(c, connect_err);
}

static void fail_errno(conn_t *c, int e) {
    if (c->ssl && e == EPROTO) { /* conn_send/conn_recv: TLS said why */
        char k[48];
        snprintf(k, sizeof k, "tls_%s", tls_error_kind());
        fail(c, k);
        return;
    }
    fail(c, e == EPIPE || e == ECONNRESET ? "reset" : errname(e));
}

/* send c->small[smalloff..smalllen); 1 = done, 0 = EAGAIN, -1 = failed */
static int send_small(conn_t *c) {
    while (c->smalloff < c->smalllen) {
        ssize_t n = conn_send(c, c->small + c->smalloff, (size_t)(c->smalllen - c->smalloff));
        if (n > 0) {
            c->smalloff += (int)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        fail_errno(c, n < 0 ? errno : EPIPE);
        return -1;
    }
    return 1;
}

static void tunnel_ready(conn_t *c) {
    c->t_head = now;
    mode_tunnel_ready(c);
}

/* SNI mode: send c->hello->b[hoff..hend); then the gap or the reply wait.
 * 1 = all sent, 0 = waiting (EAGAIN or gap), -1 = failed */
static int send_hello(conn_t *c) {
    while (c->hoff < c->hend) {
        ssize_t n = send(c->fd, c->hello->b + c->hoff, (size_t)(c->hend - c->hoff), MSG_NOSIGNAL);
        if (n > 0) {
            c->hoff += (int)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, EPOLLOUT);
            return 0;
        }
        fail_errno(c, n < 0 ? errno : EPIPE);
        return -1;
    }
    if (c->hend < c->hello->len) { /* split: pause, then the rest */
        c->state = ST_SNI_GAP;
        c->hend = c->hello->len;
        c->t_resume = now_s() + O.sni_gap_ms / 1000.0;
        set_events(c, EPOLLRDHUP);
        return 0;
    }
    c->state = ST_READ_HEAD;
    set_events(c, EPOLLIN | EPOLLRDHUP);
    return 1;
}

static void send_connect(conn_t *c);

/* --tls: one step of the handshake; when it is done, the CONNECT inside it. */
static void tls_step(conn_t *c) {
    switch (tls_handshake(c->ssl)) {
    case TLS_DONE:
        if (tls_resumed(c->ssl)) tls_resumed_n++;
        else tls_full++;
        if (O.tls_sni) { /* routed by the name: the tunnel is up */
            c->headlen = 0;
            c->leftover = NULL;
            c->leftlen = 0;
            tunnel_ready(c);
            return;
        }
        send_connect(c);
        return;
    case TLS_WANT_READ: set_events(c, EPOLLIN | EPOLLRDHUP); return;
    case TLS_WANT_WRITE: set_events(c, EPOLLOUT); return;
    default: fail(c, tls_error_kind());
    }
}

static void on_connected(conn_t *c) {
    if (O.tls_sni) {
        c->ssl = tls_open(c->fd, c->session, name_for_port(c->target_port));
        c->state = ST_TLS;
        tls_step(c);
        return;
    }
    if (O.sni) {
        c->hello = hello_for_port(c->target_port);
        c->hoff = 0;
        c->hend = c->hello->split_at;
        c->headlen = 0;
        c->leftover = NULL;
        c->leftlen = 0;
        c->state = ST_SEND_REQ;
        send_hello(c);
        return;
    }
    if (O.direct) {
        c->headlen = 0;
        c->leftover = NULL;
        c->leftlen = 0;
        tunnel_ready(c);
        return;
    }
    if (O.tls) {
        c->ssl = tls_open(c->fd, c->session, NULL);
        c->state = ST_TLS;
        tls_step(c);
        return;
    }
    send_connect(c);
}

/* Write the CONNECT request, then wait for the proxy's response head. */
static void send_connect(conn_t *c) {
    c->smalllen = snprintf(c->small, SMALL_MAX, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", connect_host(),
                           c->target_port, connect_host(), c->target_port, O.auth_line);
    c->smalloff = 0;
    c->headlen = 0;
    c->state = ST_SEND_REQ;
    int r = send_small(c);
    if (r < 0) return;
    if (r == 0) {
        set_events(c, EPOLLOUT);
        return;
    }
    c->state = ST_READ_HEAD;
    set_events(c, EPOLLIN | EPOLLRDHUP);
}

/* Start a new connection on slot c towards the proxy (or origin if direct). */
static void conn_start(conn_t *c, int target_port) {
    c->target_port = target_port;
    c->t_start = now_s();
    c->deadline = c->t_start + O.timeout_ms / 1000.0;
    c->verify_phase = 0;
    c->ok = 0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->state = ST_CONNECTING;
        c->fd = -1;
        err_count(errno == EMFILE || errno == ENFILE ? "socket_EMFILE" : "socket_error");
        mode_failed(c, 1);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = ST_CONNECTING;
    struct sockaddr_in sa = O.direct ? origin_sa : proxy_sa;
    if (O.direct) sa.sin_port = htons((uint16_t)target_port);
    int r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    if (r < 0 && errno != EINPROGRESS) {
        int e = errno;
        /* register nothing; fail directly */
        fail_errno(c, e);
        return;
    }
    c->events = r == 0 ? (EPOLLIN | EPOLLRDHUP) : EPOLLOUT;
    struct epoll_event e = {.events = c->events, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl add: %s", strerror(errno));
    if (r == 0) on_connected(c);
}

static int parse_status(const char *h, int len) {
    /* "HTTP/1.x SSS" */
    if (len < 12 || memcmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ') return -1;
    int s = 0;
    for (int i = 9; i < 12; i++) {
        if (h[i] < '0' || h[i] > '9') return -1;
        s = s * 10 + (h[i] - '0');
    }
    return s;
}

static void read_head(conn_t *c) {
    for (;;) {
        int space = HEAD_MAX - 1 - c->headlen;
        if (space <= 0) {
            fail(c, "head_too_big");
            return;
        }
        ssize_t n = conn_recv(c, c->head + c->headlen, (size_t)space, 0);
        if (n == 0) {
            fail(c, c->headlen ? "eof_in_head" : "eof");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            fail_errno(c, errno);
            return;
        }
        int scan_from = c->headlen > 3 ? c->headlen - 3 : 0;
        c->headlen += (int)n;
        c->head[c->headlen] = 0;
        if (O.sni) {
            int reclen = 0;
            const char *why = "bad_response";
            int r = sni_reply_check(c->head, c->headlen, c->target_port, &reclen, &why);
            if (r < 0) {
                fail(c, why);
                return;
            }
            if (r == 0) continue;
            c->leftover = c->head + reclen;
            c->leftlen = c->headlen - reclen;
            tunnel_ready(c);
            return;
        }
        char *end = memmem(c->head + scan_from, (size_t)(c->headlen - scan_from), "\r\n\r\n", 4);
        if (!end) continue;
        int status = parse_status(c->head, c->headlen);
        if (status < 0) {
            fail(c, "bad_response");
            return;
        }
        if (status != 200) {
            char k[32];
            snprintf(k, sizeof k, "status_%d", status);
            fail(c, k);
            return;
        }
        c->leftover = end + 4;
        c->leftlen = (int)(c->head + c->headlen - c->leftover);
        tunnel_ready(c);
        return;
    }
}

/* ---- echo exchange (rate payload, hold ping) ---- */

/* rate mode's clock (set in run_rate; echo_recv samples --tls-sni latency against it) */
static double t_begin, t_measure, t_end;
static samples_t lat_connect;

/* `prefix` (--tunnel-hello): these bytes first, then the `len` payload bytes; all echoed. */
static void echo_start(conn_t *c, int len, const hello_t *prefix) {
    int at = 0;
    if (prefix) {
        memcpy(c->small, prefix->b, (size_t)prefix->len);
        at = prefix->len;
    }
    for (int i = 0; i < len; i++) c->small[at + i] = (char)('a' + (c->id * 7 + (int)c->cycle + i) % 26);
    len += at;
    c->smalllen = len;
    c->smalloff = 0;
    c->to_recv = (uint64_t)len;
    c->recvd = 0;
    c->state = ST_ECHO_SEND;
    c->deadline = now + O.timeout_ms / 1000.0;
    /* bytes that arrived with the head count as echoed data */
    if (c->leftlen > 0) {
        int take = c->leftlen > len ? len : c->leftlen;
        if (memcmp(c->leftover, c->small, (size_t)take) != 0) {
            fail(c, "unexpected_data");
            return;
        }
        c->recvd = (uint64_t)take;
        c->leftlen = 0;
    }
    int r = send_small(c);
    if (r < 0) return;
    if (r == 0) {
        set_events(c, EPOLLOUT);
        return;
    }
    c->state = ST_ECHO_RECV;
    if (c->recvd == c->to_recv) {
        mode_echo_done(c);
        return;
    }
    set_events(c, EPOLLIN | EPOLLRDHUP);
}

static void echo_recv(conn_t *c) {
    char buf[SMALL_MAX];
    for (;;) {
        size_t want = (size_t)(c->to_recv - c->recvd);
        ssize_t n = conn_recv(c, buf, want, 0);
        if (n == 0) {
            fail(c, "eof");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            fail_errno(c, errno);
            return;
        }
        if (memcmp(buf, c->small + c->recvd, (size_t)n) != 0) {
            fail(c, "mismatch");
            return;
        }
        /* --tls-sni: "connect" latency ends at the first echoed byte (see the header) */
        if (O.tls_sni && O.mode == M_RATE && c->recvd == 0 && now >= t_measure)
            sample_add(&lat_connect, (now - c->t_start) * 1e3);
        c->recvd += (uint64_t)n;
        if (c->recvd == c->to_recv) {
            mode_echo_done(c);
            return;
        }
    }
}

/* ------------------------------------------------------------------ */
/* rate mode                                                           */

static samples_t lat_cycle;
static uint64_t rate_completed, rate_completed_warm, rate_started;

static void rate_next(conn_t *c) {
    if (now >= t_end || stop_requested) {
        c->state = ST_FREE;
        return;
    }
    c->cycle++;
    rate_started++;
    conn_start(c, O.echo_port);
}

static void rate_failed(conn_t *c, int connect_err) {
    if (connect_err) { /* avoid a hot loop when the proxy refuses */
        c->state = ST_BACKOFF;
        c->deadline = now + 0.010;
        return;
    }
    rate_next(c);
}

static void rate_tunnel_ready(conn_t *c) {
    if (now >= t_measure && !O.tls_sni) sample_add(&lat_connect, (now - c->t_start) * 1e3);
    echo_start(c, O.payload, O.tunnel_hello[0] ? &hello_tunnel : NULL);
}

static void rate_echo_done(conn_t *c) {
    conn_close(c);
    if (now >= t_measure && now < t_end) {
        rate_completed++;
        sample_add(&lat_cycle, (now - c->t_start) * 1e3);
    } else if (now < t_measure) {
        rate_completed_warm++;
    }
    rate_next(c);
}

/* ------------------------------------------------------------------ */
/* hold mode                                                           */

enum { HP_OPEN, HP_HOLD, HP_VERIFY, HP_DONE };
static int hold_phase;
static int hold_opened, hold_pending, hold_est, hold_failed, hold_dropped, hold_alive, hold_verify_left;
static double hold_t_est, hold_t_release, hold_t_done;
static samples_t lat_hold_connect;

static void hold_fill(void) {
    while (hold_phase == HP_OPEN && hold_opened < O.k && hold_pending < O.ramp && !release_requested) {
        conn_t *c = &conns[hold_opened++];
        hold_pending++;
        conn_start(c, O.echo_port);
    }
}

static void hold_failed_cb(conn_t *c) {
    int was_idle = c->state == ST_HOLD_IDLE;
    c->state = ST_FREE;
    if (c->verify_phase) {
        hold_verify_left--; /* was idle and alive until the check */
    } else if (was_idle) {
        hold_dropped++; /* the proxy (or origin) closed an idle tunnel */
    } else {
        hold_pending--;
        hold_failed++;
    }
}

static void hold_tunnel_ready(conn_t *c) {
    sample_add(&lat_hold_connect, (now - c->t_start) * 1e3);
    echo_start(c, 16, NULL);
}

static void hold_echo_done(conn_t *c) {
    if (c->verify_phase) {
        hold_alive++;
        hold_verify_left--;
        conn_close(c);
        c->state = ST_FREE;
        return;
    }
    c->state = ST_HOLD_IDLE;
    c->deadline = 0;
    set_events(c, EPOLLIN | EPOLLRDHUP);
    hold_pending--;
    hold_est++;
}

static void hold_idle_event(conn_t *c) {
    char b[64];
    ssize_t n = conn_recv(c, b, sizeof b, 0);
    if (n == 0)
        fail(c, "eof");
    else if (n < 0 && errno != EAGAIN && errno != EINTR)
        fail_errno(c, errno);
    else if (n > 0)
        fail(c, "unexpected_data");
}

/* ------------------------------------------------------------------ */
/* bulk mode                                                           */

static int bulk_dir_up; /* current phase */
static int bulk_est, bulk_failed, bulk_done, bulk_started;
static double bulk_t_data, bulk_t_end;
static uint64_t bulk_bytes_ok;
static int bulk_bad_count;
static uint64_t bulk_verify_bad;

static void bulk_tunnel_ready(conn_t *c) {
    c->state = ST_BULK_WAIT;
    c->deadline = 0;
    set_events(c, EPOLLRDHUP);
    bulk_est++;
}

static void bulk_failed_cb(conn_t *c) {
    (void)c;
    c->state = ST_FREE;
    bulk_failed++;
}

static void bulk_finish_stream(conn_t *c) {
    c->t_done = now;
    c->ok = 1;
    bulk_done++;
    conn_close(c);
    c->state = ST_FREE;
}

static void up_io(conn_t *c) {
    /* prefix, then data */
    if (c->smalloff < c->smalllen) {
        int r = send_small(c);
        if (r < 0) return;
        if (r == 0) return;
    }
    int budget = 64;
    while (c->sent < c->to_send && budget-- > 0) {
        size_t off = (size_t)(c->sent % 251);
        size_t chunk = BIG_SZ - off;
        if (chunk > c->to_send - c->sent) chunk = (size_t)(c->to_send - c->sent);
        ssize_t n = conn_send(c, bigbuf + off, chunk);
        if (n > 0) {
            c->sent += (uint64_t)n;
            c->t_progress = now;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        fail_errno(c, n < 0 ? errno : EPIPE);
        return;
    }
    /* the 8-byte count reply */
    for (;;) {
        ssize_t n = conn_recv(c, c->reply + c->replylen, (size_t)(8 - c->replylen), 0);
        if (n == 0) {
            fail(c, "eof_before_count");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            fail_errno(c, errno);
            return;
        }
        c->replylen += (int)n;
        c->t_progress = now;
        if (c->replylen == 8) {
            uint64_t v = 0;
            for (int i = 0; i < 8; i++) v = (v << 8) | c->reply[i];
            if (v != c->to_send) {
                bulk_bad_count++;
                fprintf(stderr, "loadgen: stream %d: sink counted %" PRIu64 ", sent %" PRIu64 "\n", c->id, v,
                        c->to_send);
                fail(c, "count_mismatch");
                return;
            }
            bulk_bytes_ok += v;
            bulk_finish_stream(c);
            return;
        }
    }
    set_events(c, c->sent < c->to_send ? (EPOLLIN | EPOLLOUT | EPOLLRDHUP) : (EPOLLIN | EPOLLRDHUP));
}

/* bigbuf[i] == i % 251 and BIG_SZ is a multiple of 251 */
static int verify_pattern(const char *b, size_t n, uint64_t pos) {
    while (n > 0) {
        size_t off = (size_t)(pos % 251), chunk = BIG_SZ - off;
        if (chunk > n) chunk = n;
        if (memcmp(b, bigbuf + off, chunk) != 0) return 0;
        b += chunk;
        n -= chunk;
        pos += chunk;
    }
    return 1;
}

static void down_io(conn_t *c) {
    if (c->smalloff < c->smalllen) {
        int r = send_small(c);
        if (r < 0) return;
        if (r == 0) {
            set_events(c, EPOLLOUT | EPOLLIN | EPOLLRDHUP);
            return;
        }
        set_events(c, EPOLLIN | EPOLLRDHUP);
    }
    /* past the budget, still drain what TLS has decrypted: no event would come for it */
    for (int budget = 64; budget > 0 || conn_pending(c) > 0; budget--) {
        size_t want = sizeof rbuf;
        if (want > c->to_recv - c->recvd) want = (size_t)(c->to_recv - c->recvd);
        if (want == 0) break;
        ssize_t n = conn_recv(c, rbuf, want, 0);
        if (n == 0) {
            fail(c, "short_eof");
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            fail_errno(c, errno);
            return;
        }
        if (O.verify_data && !verify_pattern(rbuf, (size_t)n, c->recvd)) bulk_verify_bad++;
        c->recvd += (uint64_t)n;
        c->t_progress = now;
    }
    if (c->recvd == c->to_recv) {
        bulk_bytes_ok += c->recvd;
        bulk_finish_stream(c);
    }
}

static void bulk_start_data(conn_t *c, uint64_t nbytes) {
    c->to_send = c->to_recv = nbytes;
    c->sent = c->recvd = 0;
    c->t_progress = now;
    c->replylen = 0;
    c->smalloff = 0;
    c->smalllen = snprintf(c->small, SMALL_MAX, "%s %" PRIu64 "\n", bulk_dir_up ? "PUT" : "GET", nbytes);
    if (bulk_dir_up) {
        c->state = ST_UP;
        set_events(c, EPOLLIN | EPOLLOUT | EPOLLRDHUP);
        if (c->leftlen > 0) { /* nothing should precede the count */
            fail(c, "unexpected_data");
            return;
        }
    } else {
        c->state = ST_DOWN;
        if (c->leftlen > 0) {
            if (O.verify_data && !verify_pattern(c->leftover, (size_t)c->leftlen, 0)) bulk_verify_bad++;
            c->recvd = (uint64_t)c->leftlen;
            c->leftlen = 0;
        }
        set_events(c, EPOLLOUT | EPOLLIN | EPOLLRDHUP);
    }
}

/* ------------------------------------------------------------------ */
/* mode dispatch                                                       */

static void mode_failed(conn_t *c, int connect_err) {
    switch (O.mode) {
    case M_RATE: rate_failed(c, connect_err); break;
    case M_HOLD: hold_failed_cb(c); break;
    case M_BULK: bulk_failed_cb(c); break;
    default: c->state = ST_FREE;
    }
}

static void mode_tunnel_ready(conn_t *c) {
    switch (O.mode) {
    case M_RATE: rate_tunnel_ready(c); break;
    case M_HOLD: hold_tunnel_ready(c); break;
    case M_BULK: bulk_tunnel_ready(c); break;
    }
}

static void mode_echo_done(conn_t *c) {
    switch (O.mode) {
    case M_RATE: rate_echo_done(c); break;
    case M_HOLD: hold_echo_done(c); break;
    }
}

static void handle(conn_t *c, uint32_t ev) {
    switch (c->state) {
    case ST_CONNECTING: {
        int err = 0;
        socklen_t l = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0) err = errno;
        if (err) {
            fail_errno(c, err);
            return;
        }
        on_connected(c);
        return;
    }
    case ST_TLS: tls_step(c); return;
    case ST_SNI_GAP: {
        char b[16];
        ssize_t n = conn_recv(c, b, sizeof b, MSG_PEEK);
        if (n == 0) fail(c, "eof");
        else if (n > 0) fail(c, "unexpected_data");
        else if (errno != EAGAIN) fail_errno(c, errno);
        return;
    }
    case ST_SEND_REQ: {
        if (O.sni) {
            send_hello(c);
            return;
        }
        int r = send_small(c);
        if (r <= 0) return;
        c->state = ST_READ_HEAD;
        set_events(c, EPOLLIN | EPOLLRDHUP);
        return;
    }
    case ST_READ_HEAD: read_head(c); return;
    case ST_ECHO_SEND: {
        int r = send_small(c);
        if (r <= 0) return;
        c->state = ST_ECHO_RECV;
        set_events(c, EPOLLIN | EPOLLRDHUP);
        return;
    }
    case ST_ECHO_RECV: echo_recv(c); return;
    case ST_HOLD_IDLE: hold_idle_event(c); return;
    case ST_BULK_WAIT: {
        char b[16];
        ssize_t n = conn_recv(c, b, sizeof b, MSG_PEEK);
        if (n == 0) fail(c, "eof");
        else if (n > 0) fail(c, "unexpected_data");
        else if (errno != EAGAIN) fail_errno(c, errno);
        (void)ev;
        return;
    }
    case ST_UP: up_io(c); return;
    case ST_DOWN: down_io(c); return;
    default: return;
    }
}

/* deadlines: connect/head/echo timeouts, rate backoff */
static void sweep(void) {
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->state == ST_SNI_GAP && now >= c->t_resume && now < c->deadline) {
            c->state = ST_SEND_REQ;
            send_hello(c);
            continue;
        }
        if (c->state == ST_FREE || c->deadline == 0 || now < c->deadline) continue;
        if (c->state == ST_BACKOFF) {
            rate_next(c);
            continue;
        }
        fail(c, "timeout");
    }
}

static void setup_signals(void) {
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGINT);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGUSR1);
    sigaddset(&ss, SIGHUP);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    sigfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigfd < 0) die("signalfd: %s", strerror(errno));
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = TAG_SIG};
    epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &e);
    signal(SIGPIPE, SIG_IGN);
}

static void on_signal_fd(void) {
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        release_requested = 1;
        if (si.ssi_signo != SIGUSR1) stop_requested = 1;
    }
}

static int stdin_registered;
static void on_stdin(void) {
    char b[256];
    (void)!read(0, b, sizeof b); /* any line, or EOF, releases */
    release_requested = 1;
    epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);
    stdin_registered = 0;
}

/* one round of the event loop; max_wait in ms */
static void loop_once(int max_wait_ms) {
    static struct epoll_event evs[1024];
    static double last_sweep;
    int n = epoll_wait(epfd, evs, 1024, max_wait_ms);
    now = now_s();
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", strerror(errno));
    for (int i = 0; i < n; i++) {
        void *p = evs[i].data.ptr;
        if (p == TAG_SIG) {
            on_signal_fd();
            continue;
        }
        if (p == TAG_STDIN) {
            on_stdin();
            continue;
        }
        conn_t *c = p;
        if (c->fd < 0) continue;
        handle(c, evs[i].events);
        now = now_s();
    }
    if (now - last_sweep >= (O.sni_split ? 0.002 : 0.010)) {
        last_sweep = now;
        sweep();
    }
}

static void alloc_conns(int n) {
    nconns = n;
    conns = calloc((size_t)n, sizeof *conns);
    if (!conns) die("out of memory");
    for (int i = 0; i < n; i++) {
        conns[i].fd = -1;
        conns[i].id = i;
    }
}

static void close_all(void) {
    for (int i = 0; i < nconns; i++) {
        if (conns[i].fd >= 0) conn_close_how(&conns[i], 0);
        if (conns[i].session) tls_forget(&conns[i].session);
        conns[i].state = ST_FREE;
    }
}

/* ------------------------------------------------------------------ */
/* run modes                                                           */

static int run_rate(void) {
    alloc_conns(O.conc);
    now = t_begin = now_s();
    t_measure = t_begin + O.warmup;
    t_end = t_measure + O.duration;
    double cpu0 = self_cpu_s();
    for (int i = 0; i < O.conc; i++) {
        rate_started++;
        conn_start(&conns[i], O.echo_port);
    }
    int measuring = O.warmup <= 0;
    while (now < t_end && !stop_requested) {
        double left = t_end - now;
        loop_once(left < 0.005 ? 1 : 5);
        if (!measuring && now >= t_measure) {
            measuring = 1;
            /* errors during warmup are not reported by kind */
            errors_reset();
        }
    }
    double t_stop = now < t_end ? now : t_end;
    double secs = t_stop - t_measure;
    if (secs <= 0) secs = 1e-9;
    int inflight = 0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0) inflight++;
    close_all();
    double cpu = self_cpu_s() - cpu0;
    double tps = (double)rate_completed / secs;

    printf("rate %s%s: concurrency=%d duration=%.2fs warmup=%.1fs payload=%dB\n", O.direct ? "direct" : "via proxy ",
           O.direct ? "" : O.proxy_host, O.conc, secs, O.warmup, O.payload);
    printf("  tunnels/s: %.1f  (completed %" PRIu64 ", abandoned in flight %d)\n", tps, rate_completed, inflight);
    printf("  %s ms: p50=%.3f p90=%.3f p99=%.3f max=%.3f\n", O.tls_sni ? "handshake->first echo" : "CONNECT->200", pct(&lat_connect, 50), pct(&lat_connect, 90),
           pct(&lat_connect, 99), pct(&lat_connect, 100));
    printf("  full cycle ms:   p50=%.3f p90=%.3f p99=%.3f max=%.3f\n", pct(&lat_cycle, 50), pct(&lat_cycle, 90),
           pct(&lat_cycle, 99), pct(&lat_cycle, 100));
    print_errors_human();
    printf("  loadgen cpu: %.2fs\n", cpu);

    printf("{");
    json_common(stdout);
    printf(",\"concurrency\":%d,\"duration_s\":%.4f,\"warmup_s\":%.2f,\"payload\":%d,\"completed\":%" PRIu64
           ",\"completed_warmup\":%" PRIu64 ",\"tunnels_per_s\":%.2f,\"abandoned\":%d,",
           O.conc, secs, O.warmup, O.payload, rate_completed, rate_completed_warm, tps, inflight);
    json_lat(stdout, "connect_ms", &lat_connect);
    printf(",");
    json_lat(stdout, "cycle_ms", &lat_cycle);
    printf(",");
    json_errors(stdout);
    printf(",\"loadgen_cpu_s\":%.3f,\"interrupted\":%s}\n", cpu, stop_requested ? "true" : "false");
    fflush(stdout);
    return 0;
}

static void print_established(void) {
    printf("hold: established %d/%d tunnels in %.3fs (failed %d)\n", hold_est, O.k, hold_t_est - t_begin,
           hold_failed);
    print_errors_human();
    printf("{\"event\":\"established\",");
    json_common(stdout);
    printf(",\"k\":%d,\"established\":%d,\"failed\":%d,\"seconds\":%.4f,\"pid\":%d}\n", O.k, hold_est, hold_failed,
           hold_t_est - t_begin, (int)getpid());
    fflush(stdout);
}

static int run_hold(void) {
    alloc_conns(O.k);
    now = t_begin = now_s();
    double cpu0 = self_cpu_s();
    hold_phase = HP_OPEN;
    hold_fill();
    while (hold_phase == HP_OPEN) {
        loop_once(5);
        hold_fill();
        if (hold_est + hold_failed >= hold_opened && (hold_opened >= O.k || release_requested)) break;
        if (now - t_begin > O.establish_s) {
            fprintf(stderr, "loadgen: hold: establish phase exceeded %.0fs\n", O.establish_s);
            for (int i = 0; i < nconns; i++) {
                conn_t *c = &conns[i];
                if (c->state != ST_FREE && c->state != ST_HOLD_IDLE) fail(c, "establish_timeout");
            }
            break;
        }
    }
    hold_t_est = now;
    hold_phase = HP_HOLD;
    print_established();

    if (O.use_stdin) {
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = TAG_STDIN};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &e) == 0)
            stdin_registered = 1;
        else
            fprintf(stderr, "loadgen: stdin not pollable (%s); use a signal or --hold-s\n", strerror(errno));
    }
    double hold_until = now + O.hold_s;
    while (!release_requested && now < hold_until) loop_once(hold_until - now > 0.05 ? 50 : 1);
    hold_t_release = now;
    int est_at_release = hold_est - hold_dropped;

    /* alive check */
    hold_phase = HP_VERIFY;
    if (O.verify_alive) {
        for (int i = 0; i < nconns; i++) {
            conn_t *c = &conns[i];
            if (c->state != ST_HOLD_IDLE) continue;
            c->cycle++;
            hold_verify_left++;
            c->verify_phase = 1;
            c->leftlen = 0;
            echo_start(c, 16, NULL);
        }
        double vend = now + O.timeout_ms / 1000.0 + 1;
        while (hold_verify_left > 0 && now < vend) loop_once(5);
    }
    hold_t_done = now;
    close_all();
    double cpu = self_cpu_s() - cpu0;
    hold_phase = HP_DONE;

    printf("hold: held %.2fs; dropped during hold %d; alive at release %d/%d\n", hold_t_release - hold_t_est,
           hold_dropped, O.verify_alive ? hold_alive : -1, est_at_release);
    printf("  tunnel setup ms: p50=%.3f p99=%.3f max=%.3f\n", pct(&lat_hold_connect, 50), pct(&lat_hold_connect, 99),
           pct(&lat_hold_connect, 100));
    print_errors_human();
    printf("{");
    json_common(stdout);
    printf(",\"k\":%d,\"established\":%d,\"failed\":%d,\"establish_s\":%.4f,\"held_s\":%.3f,\"dropped\":%d,"
           "\"alive_after\":%d,\"verified\":%s,",
           O.k, hold_est, hold_failed, hold_t_est - t_begin, hold_t_release - hold_t_est, hold_dropped, hold_alive,
           O.verify_alive ? "true" : "false");
    json_lat(stdout, "setup_ms", &lat_hold_connect);
    printf(",");
    json_errors(stdout);
    printf(",\"loadgen_cpu_s\":%.3f}\n", cpu);
    fflush(stdout);
    return hold_est == O.k && (!O.verify_alive || hold_alive == hold_est) ? 0 : 1;
}

/* one bulk direction; prints a human line, returns JSON fragment into buf */
static int bulk_phase(int up, char *jbuf, size_t jlen) {
    bulk_dir_up = up;
    bulk_est = bulk_failed = bulk_done = bulk_started = 0;
    bulk_bytes_ok = 0;
    bulk_bad_count = 0;
    bulk_verify_bad = 0;
    errors_reset();
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].state = ST_FREE;
        conns[i].ok = 0;
    }
    int port = up ? O.sink_port : O.source_port;
    now = t_begin = now_s();
    double cpu0 = self_cpu_s();
    for (int i = 0; i < O.streams; i++) conn_start(&conns[i], port);
    while (bulk_est + bulk_failed < O.streams && !stop_requested) loop_once(5);
    double t_setup = now - t_begin;
    int ok = bulk_failed == 0 && !stop_requested;
    if (ok) {
        bulk_t_data = now = now_s();
        uint64_t per = O.bytes / (uint64_t)O.streams;
        for (int i = 0; i < O.streams; i++) {
            uint64_t nb = per + (i == O.streams - 1 ? O.bytes - per * (uint64_t)O.streams : 0);
            bulk_start_data(&conns[i], nb);
        }
        double deadline = bulk_t_data + O.bulk_timeout;
        double stall = O.timeout_ms / 1000.0;
        while (bulk_done + bulk_failed < O.streams && now < deadline && !stop_requested) {
            loop_once(50);
            for (int i = 0; i < nconns; i++) /* no byte moved for --timeout-ms */
                if (conns[i].fd >= 0 && now - conns[i].t_progress > stall) fail(&conns[i], "stall");
        }
        if (bulk_done + bulk_failed < O.streams) {
            for (int i = 0; i < nconns; i++)
                if (conns[i].fd >= 0) fail(&conns[i], stop_requested ? "interrupted" : "timeout");
        }
        bulk_t_end = now;
        for (int i = 0; i < nconns; i++)
            if (conns[i].ok && conns[i].t_done > bulk_t_end) bulk_t_end = conns[i].t_done;
    } else {
        bulk_t_data = bulk_t_end = now;
    }
    close_all();
    double cpu = self_cpu_s() - cpu0;
    double secs = bulk_t_end - bulk_t_data;
    int verified = ok && bulk_done == O.streams && bulk_bytes_ok == O.bytes && !bulk_bad_count &&
                   (!O.verify_data || !bulk_verify_bad);
    double mbps = verified && secs > 0 ? (double)O.bytes / secs / 1e6 : 0;
    printf("bulk %-8s %s: %" PRIu64 " bytes over %d stream(s) in %.3fs = %.1f MB/s (%.1f MiB/s); setup %.3f ms; "
           "verified=%s\n",
           up ? "upload" : "download", O.direct ? "direct" : "via proxy", O.bytes, O.streams, secs, mbps,
           mbps * 1e6 / 1048576.0, t_setup * 1e3, verified ? "yes" : "NO");
    print_errors_human();
    int w = snprintf(jbuf, jlen,
                     "\"%s\":{\"bytes\":%" PRIu64 ",\"streams\":%d,\"seconds\":%.4f,\"mb_per_s\":%.2f,"
                     "\"setup_ms\":%.3f,\"verified\":%s,\"bytes_ok\":%" PRIu64 ",\"loadgen_cpu_s\":%.3f,\"errors\":{",
                     up ? "up" : "down", O.bytes, O.streams, secs, mbps, t_setup * 1e3, verified ? "true" : "false",
                     bulk_bytes_ok, cpu);
    for (int i = 0; i < nerrk && w < (int)jlen; i++)
        w += snprintf(jbuf + w, jlen - (size_t)w, "%s\"%s\":%" PRIu64, i ? "," : "", errk[i].name, errk[i].n);
    if (w < (int)jlen) snprintf(jbuf + w, jlen - (size_t)w, "}}");
    return verified;
}

static int run_bulk(void) {
    alloc_conns(O.streams);
    for (int i = 0; i < BIG_SZ; i++) bigbuf[i] = (char)(i % 251);
    char jup[2048] = "", jdown[2048] = "";
    int ok = 1;
    if (O.dir_up) ok &= bulk_phase(1, jup, sizeof jup);
    if (O.dir_down && !stop_requested) ok &= bulk_phase(0, jdown, sizeof jdown);
    printf("{");
    json_common(stdout);
    if (O.dir_up) printf(",%s", jup);
    if (O.dir_down && jdown[0]) printf(",%s", jdown);
    printf(",\"ok\":%s}\n", ok ? "true" : "false");
    fflush(stdout);
    return ok ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* probe mode: blocking one-shot checks                                */

static int probe_timeout_ms;

static int probe_connect(int port, const char *extra, int extralen, char *head, int *headlen, int *leftoff) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int tmo = probe_timeout_ms ? probe_timeout_ms : O.timeout_ms;
    struct timeval tv = {.tv_sec = tmo / 1000, .tv_usec = (tmo % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = O.direct ? origin_sa : proxy_sa;
    if (O.direct) sa.sin_port = htons((uint16_t)port);
    *headlen = 0;
    *leftoff = 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    if (O.sni) { /* ClientHello (+ extra in the same write), then the origin's reply record */
        const hello_t *h = hello_for_port(port);
        static char req[HELLO_MAX + SMALL_MAX + 128];
        int first = h->split_at < h->len ? h->split_at : 0;
        if (first > 0) {
            send(fd, h->b, (size_t)first, MSG_NOSIGNAL);
            usleep((useconds_t)O.sni_gap_ms * 1000);
        }
        int n = h->len - first;
        memcpy(req, h->b + first, (size_t)n);
        if (extralen) {
            memcpy(req + n, extra, (size_t)extralen);
            n += extralen;
        }
        send(fd, req, (size_t)n, MSG_NOSIGNAL);
        while (*headlen < HEAD_MAX - 1) {
            ssize_t r = recv(fd, head + *headlen, (size_t)(HEAD_MAX - 1 - *headlen), 0);
            if (r <= 0) break;
            *headlen += (int)r;
            head[*headlen] = 0;
            int reclen = 0;
            const char *why;
            int ok = sni_reply_check(head, *headlen, port, &reclen, &why);
            if (ok < 0) break;
            if (ok > 0) {
                *leftoff = reclen;
                break;
            }
        }
        return fd;
    }
    if (O.direct) {
        if (extralen) send(fd, extra, (size_t)extralen, MSG_NOSIGNAL);
        return fd;
    }
    char req[SMALL_MAX + 1024];
    int n = snprintf(req, sizeof req, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n%s\r\n", connect_host(), port,
                     connect_host(), port, O.auth_line);
    if (extralen) {
        memcpy(req + n, extra, (size_t)extralen);
        n += extralen;
    }
    send(fd, req, (size_t)n, MSG_NOSIGNAL);
    while (*headlen < HEAD_MAX - 1) {
        ssize_t r = recv(fd, head + *headlen, (size_t)(HEAD_MAX - 1 - *headlen), 0);
        if (r <= 0) break;
        *headlen += (int)r;
        head[*headlen] = 0;
        char *e = memmem(head, (size_t)*headlen, "\r\n\r\n", 4);
        if (e) {
            *leftoff = (int)(e + 4 - head);
            break;
        }
    }
    return fd;
}

static void json_str(FILE *f, const char *s, int len) {
    fputc('"', f);
    for (int i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\r')
            fprintf(f, "\\r");
        else if (ch == '\n')
            fprintf(f, "\\n");
        else if (ch < 0x20 || ch >= 0x7f)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static int recv_exact(int fd, char *b, int len, int *got) {
    *got = 0;
    while (*got < len) {
        ssize_t r = recv(fd, b + *got, (size_t)(len - *got), 0);
        if (r == 0) return 0;  /* EOF */
        if (r < 0) return -1;  /* timeout / error */
        *got += (int)r;
    }
    return 1;
}

/* bytes after the response head/reply record that already belong to the
 * tunnel; -1 when the tunnel was not set up */
static int probe_pre(const char *head, int hl, int lo) {
    if (O.sni) return lo > 0 ? hl - lo : -1;
    if (O.direct) return 0;
    return lo > 0 && parse_status(head, hl) == 200 ? hl - lo : -1;
}

/* SNI mode: what a ClientHello with this name (or none) gets: "eof",
 * "reset", "timeout", "routed:<kind>" or "data:<n>:<hex of first bytes>" */
static void probe_sni_outcome(const char *key, const hello_t *h) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sockaddr_in sa = O.direct ? origin_sa : proxy_sa;
    if (O.direct) sa.sin_port = htons((uint16_t)O.echo_port);
    char res[160] = "connect_failed";
    double t0 = now_s();
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        send(fd, h->b, (size_t)h->len, MSG_NOSIGNAL);
        char b[256];
        int got = 0;
        for (;;) {
            ssize_t r = recv(fd, b + got, sizeof b - (size_t)got, 0);
            if (r > 0) {
                got += (int)r;
                if (got >= 16 || got == (int)sizeof b) break;
                continue;
            }
            if (got > 0) break;
            snprintf(res, sizeof res, "%s", r == 0 ? "eof" : errno == ECONNRESET ? "reset" : "timeout");
            break;
        }
        if (got > 0) {
            if (got >= 5 && b[0] == 0x16 && got >= 5 + b[4] && !memcmp(b + 5, "ok ", 3))
                snprintf(res, sizeof res, "routed:%.*s", b[4] - 4, b + 8);
            else {
                int o = snprintf(res, sizeof res, "data:%d:", got);
                for (int i = 0; i < got && i < 12; i++) o += snprintf(res + o, sizeof res - (size_t)o, "%02x", (unsigned char)b[i]);
            }
        }
    }
    close(fd);
    printf(",\"%s\":\"%s\",\"%s_ms\":%.1f", key, res, key, (now_s() - t0) * 1e3);
}

static int run_probe(void) {
    char head[HEAD_MAX];
    int hl, lo;
    printf("{");
    json_common(stdout);

    /* 1. basic: response head as sent by the proxy */
    int fd = probe_connect(O.echo_port, NULL, 0, head, &hl, &lo);
    int basic_ok = 0;
    if (fd >= 0) {
        char msg[64], back[64];
        memset(msg, 'p', sizeof msg);
        int got = 0;
        send(fd, msg, sizeof msg, MSG_NOSIGNAL);
        int pre = probe_pre(head, hl, lo);
        if (pre < 0) pre = 64 + 1; /* failed */
        if (pre > 0 && pre <= 64) memcpy(back, head + lo, (size_t)pre);
        if (pre < 64) recv_exact(fd, back + pre, 64 - pre, &got);
        basic_ok = pre <= 64 && pre + got == 64 && !memcmp(msg, back, 64);
        close(fd);
    }
    printf(",\"basic_ok\":%s,\"response_head\":", basic_ok ? "true" : "false");
    if (O.sni && hl >= 5)
        json_str(stdout, head + 5, (lo ? lo : hl) - 5);
    else
        json_str(stdout, head, lo ? lo : hl);

    /* 2. early data: payload sent in the same write as the CONNECT request */
    {
        char msg[32], back[32];
        memset(msg, 'e', sizeof msg);
        int got = 0, ok = 0;
        fd = probe_connect(O.echo_port, msg, sizeof msg, head, &hl, &lo);
        if (fd >= 0) {
            int pre = probe_pre(head, hl, lo);
            if (pre < 0) pre = 32 + 1; /* failed */
            if (pre > 0 && pre <= 32) memcpy(back, head + lo, (size_t)pre);
            if (pre < 32) recv_exact(fd, back + pre, 32 - pre, &got);
            ok = pre <= 32 && pre + got == 32 && !memcmp(msg, back, 32);
            close(fd);
        }
        printf(",\"early_data_ok\":%s", ok ? "true" : "false");
    }

    /* 3. half-close: raw upload, shutdown(SHUT_WR), expect the 8-byte count */
    {
        const int N = 100000;
        const char *result = "connect_failed";
        fd = probe_connect(O.sink_port, NULL, 0, head, &hl, &lo);
        if (fd >= 0) {
            char *data = malloc((size_t)N);
            memset(data, 'h', (size_t)N);
            int sent = 0;
            while (sent < N) {
                ssize_t w = send(fd, data + sent, (size_t)(N - sent), MSG_NOSIGNAL);
                if (w <= 0) break;
                sent += (int)w;
            }
            free(data);
            shutdown(fd, SHUT_WR);
            unsigned char r[8];
            int got = 0;
            int rc = recv_exact(fd, (char *)r, 8, &got);
            if (rc == 1) {
                uint64_t v = 0;
                for (int i = 0; i < 8; i++) v = (v << 8) | r[i];
                result = v == (uint64_t)N ? "ok" : "wrong_count";
            } else {
                result = rc == 0 ? "eof_without_count" : "timeout_or_error";
            }
            close(fd);
        }
        printf(",\"half_close\":\"%s\"", result);
    }

    /* 4. EOF propagation: origin sends 1000 bytes and FIN */
    {
        const char *result = "connect_failed";
        fd = probe_connect(O.source_port, "GET 1000\n", 9, head, &hl, &lo);
        if (fd >= 0) {
            char b[2048];
            int total = probe_pre(head, hl, lo);
            if (total < 0) total = 1000000; /* tunnel failed: never "ok" */
            for (;;) {
                ssize_t r = recv(fd, b, sizeof b, 0);
                if (r == 0) {
                    result = total == 1000 ? "ok" : "short";
                    break;
                }
                if (r < 0) {
                    result = "no_eof";
                    break;
                }
                total += (int)r;
            }
            close(fd);
        }
        printf(",\"eof_propagation\":\"%s\"", result);
    }

    /* 5s. SNI mode: refused upstream, unknown name, no server_name */
    if (O.sni) {
        if (!O.direct) probe_sni_outcome("refused_target", &hello_closed);
        if (!O.direct) probe_sni_outcome("unknown_sni", &hello_unknown);
        if (!O.direct) probe_sni_outcome("no_sni", &hello_nosni);
        printf("}\n");
        fflush(stdout);
        return basic_ok ? 0 : 1;
    }

    /* 5. refused target port */
    if (!O.direct) {
        fd = probe_connect(O.closed_port, NULL, 0, head, &hl, &lo);
        int status = fd >= 0 ? parse_status(head, hl) : -1;
        if (fd >= 0) close(fd);
        printf(",\"refused_port_status\":%d", status);
    }

    /* 6. does the proxy answer 200 before its upstream TCP connect completed?
     * Target: a listener whose accept queue is full, so the kernel drops the
     * proxy's SYN (Linux).  A proxy that waits for the upstream connection
     * sends nothing for >1 s; an "optimistic" one answers 200 at once. */
    if (!O.direct) {
        const char *result = "setup_failed";
        int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), fill[3] = {-1, -1, -1};
        struct sockaddr_in sa = origin_sa;
        sa.sin_port = htons((uint16_t)O.stall_port);
        int one = 1;
        setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lfd, 0) == 0) {
            for (int i = 0; i < 3; i++) {
                fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
                (void)!connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
            }
            usleep(100000);
            probe_timeout_ms = 1500;
            double t0 = now_s();
            fd = probe_connect(O.stall_port, NULL, 0, head, &hl, &lo);
            double dt = now_s() - t0;
            probe_timeout_ms = 0;
            int status = fd >= 0 ? parse_status(head, hl) : -1;
            if (fd >= 0) close(fd);
            if (status == 200 && dt < 1.0)
                result = "yes";
            else if (status < 0 && dt >= 1.0)
                result = "no";
            else
                result = "unclear";
            printf(",\"stall_target_status\":%d,\"stall_target_ms\":%.1f", status, dt * 1e3);
        }
        printf(",\"optimistic_200\":\"%s\"", result);
        for (int i = 0; i < 3; i++)
            if (fill[i] >= 0) close(fill[i]);
        close(lfd);
    }
    printf("}\n");
    fflush(stdout);
    return basic_ok ? 0 : 1;
}

/* ------------------------------------------------------------------ */
/* main                                                                */

/* Letters, digits, '-' and '.', ending in .test / .localhost (or "localhost"):
 * names reserved for testing that no public resolver answers (RFC 6761). */
static int reserved_name(const char *v) {
    size_t n = strlen(v);
    if (n == 0 || n > 100) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(v[i] == '-' || v[i] == '.' || (v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'z'))) return 0;
    if (!strcmp(v, "localhost")) return 1;
    return (n > 5 && !strcmp(v + n - 5, ".test")) || (n > 10 && !strcmp(v + n - 10, ".localhost"));
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen MODE [options]      MODE = rate | bulk | hold | probe\n"
            "  --proxy HOST:PORT     the proxy (loopback only unless --allow-nonloopback)\n"
            "  --direct              no proxy: connect to the origin ports straight\n"
            "  --origin-host H       CONNECT target / direct host (127.0.0.1)\n"
            "  --connect-host NAME   put NAME (under .test or .localhost) in the CONNECT line\n"
            "                        instead of --origin-host; the proxy must resolve it to\n"
            "                        the origin (e.g. through a loopback DNS stub)\n"
            "  --echo P --sink P --source P   origin ports (20001 20002 20003)\n"
            "  --auth USER:PASS      send Proxy-Authorization: Basic\n"
            "  --timeout-ms N        per-step timeout; bulk: max time without progress (5000)\n"
            "  --label S             copied into the JSON line\n"
            " rate:  -c/--concurrency N (50)  -d/--duration S (10)  --warmup S (0)  --payload B (64)\n"
            " bulk:  --bytes N[k|m|g] (1g)  --streams N (1)  --dir up|down|both (both)\n"
            "        --bulk-timeout S (120)  --verify-data\n"
            " hold:  -k N (5000)  --ramp N (100 in-flight setups)  --hold-s S (60)  --stdin\n"
            "        --establish-s S (120)  --no-verify\n"
            " probe: --closed-port P (20999, nothing listens)  --stall-port P (20998, probe listens\n"
            "        with a full accept queue to see whether 200 precedes the upstream connect)\n"
            " SNI mode (no CONNECT; a TLS 1.3 ClientHello selects the origin port; origin --tls-hello):\n"
            "  --sni NAME            server_name for the echo port (e.g. echo.test)\n"
            "  --sni-sink NAME --sni-source NAME   (default: NAME with 'echo.' -> 'sink.'/'source.')\n"
            "  --sni-closed NAME (closed.test) --sni-unknown NAME (unknown-name.invalid)   probe only\n"
            "  --sni-pad BYTES       pad the ClientHello to about BYTES on the wire (padding ext 21)\n"
            "  --sni-split tcp|records   two writes --sni-gap-ms apart (5), cut mid server_name;\n"
            "                        records = also two TLS records\n"
            " rate with CONNECT: --tunnel-hello NAME   each tunnel's payload starts with the canned\n"
            "                        ClientHello for NAME (for a proxy that checks a tunnel's SNI)\n"
            " TLS to the proxy (rate, bulk, hold; an HTTPS proxy: TLS 1.3, then CONNECT inside):\n"
            "  --tls                 speak TLS to the proxy\n"
            "  --tls-ca FILE         verify the proxy's certificate with this CA (default: no check)\n"
            "  --tls-servername NAME SNI, and the name the certificate must carry (default: none\n"
            "                        sent; the certificate must carry the proxy's IP)\n"
            "  --tls-resume          offer each client slot's previous session (resumed handshakes)\n"
            " TLS routed by SNI (rate, bulk, hold; no CONNECT: e.g. a kind: terminate listener):\n"
            "  --tls-sni NAME        a TLS 1.3 handshake per connection, SNI NAME for the echo port\n"
            "                        (--sni-sink/--sni-source as for --sni); with --direct, to the\n"
            "                        origin ports (TLS ones); --tls-ca verifies each name; rate's\n"
            "                        latency is connect + handshake -> first echoed byte\n");
    exit(2);
}

/* --tls goes with a proxy and CONNECT, in the event-loop modes. */
static void check_tls_options(void) {
    if (O.tls_sni) {
        if (O.tls || O.sni || O.tunnel_hello[0]) die("--tls-sni: not with --tls, --sni or --tunnel-hello");
        if (O.tls_servername) die("--tls-sni names each connection: not with --tls-servername");
        if (O.mode == M_PROBE) die("--tls-sni: rate, bulk and hold only");
        return;
    }
    if (!O.tls) {
        if (O.tls_resume || O.tls_ca || O.tls_servername) die("--tls-resume / --tls-ca / --tls-servername need --tls");
        return;
    }
    if (O.direct || O.sni) die("--tls is TLS to the proxy: not with --direct or --sni");
    if (O.mode == M_PROBE) die("--tls: rate, bulk and hold only");
    if (O.tls_servername && (strlen(O.tls_servername) == 0 || strlen(O.tls_servername) > 253))
        die("--tls-servername: 1-253 characters");
}

static uint64_t parse_size(const char *s) {
    char *end;
    double v = strtod(s, &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1024 * 1024; break;
    case 'g': case 'G': v *= 1024.0 * 1024 * 1024; break;
    case 0: break;
    default: die("bad size %s", s);
    }
    return (uint64_t)v;
}

static void b64(const char *in, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)in[i] << 16;
        if (i + 1 < n) v |= (unsigned char)in[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)in[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = 0;
}

static int is_loopback(const char *host) {
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1) return 0;
    return (ntohl(a.s_addr) >> 24) == 127;
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    if (!strcmp(argv[1], "rate")) O.mode = M_RATE;
    else if (!strcmp(argv[1], "bulk")) O.mode = M_BULK;
    else if (!strcmp(argv[1], "hold")) O.mode = M_HOLD;
    else if (!strcmp(argv[1], "probe")) O.mode = M_PROBE;
    else usage();
    int have_proxy = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
        if (!strcmp(a, "--proxy")) {
            const char *v = NEXT();
            const char *colon = strrchr(v, ':');
            if (!colon || colon - v >= (int)sizeof O.proxy_host) die("bad --proxy %s", v);
            memcpy(O.proxy_host, v, (size_t)(colon - v));
            O.proxy_host[colon - v] = 0;
            O.proxy_port = atoi(colon + 1);
            have_proxy = 1;
        } else if (!strcmp(a, "--direct")) O.direct = 1;
        else if (!strcmp(a, "--origin-host")) snprintf(O.origin_host, sizeof O.origin_host, "%s", NEXT());
        else if (!strcmp(a, "--connect-host")) {
            const char *v = NEXT();
            if (!reserved_name(v)) die("--connect-host %s: need a name under .test or .localhost (RFC 6761)", v);
            snprintf(O.connect_host, sizeof O.connect_host, "%s", v);
        }
        else if (!strcmp(a, "--echo")) O.echo_port = atoi(NEXT());
        else if (!strcmp(a, "--sink")) O.sink_port = atoi(NEXT());
        else if (!strcmp(a, "--source")) O.source_port = atoi(NEXT());
        else if (!strcmp(a, "--closed-port")) O.closed_port = atoi(NEXT());
        else if (!strcmp(a, "--stall-port")) O.stall_port = atoi(NEXT());
        else if (!strcmp(a, "--auth")) {
            const char *v = NEXT();
            char enc[400];
            if (strlen(v) > 250) die("--auth too long");
            b64(v, enc);
            snprintf(O.auth_line, sizeof O.auth_line, "Proxy-Authorization: Basic %s\r\n", enc);
        } else if (!strcmp(a, "--timeout-ms")) O.timeout_ms = atoi(NEXT());
        else if (!strcmp(a, "--label")) O.label = NEXT();
        else if (!strcmp(a, "--allow-nonloopback")) O.allow_nonlo = 1;
        else if (!strcmp(a, "-c") || !strcmp(a, "--concurrency")) O.conc = atoi(NEXT());
        else if (!strcmp(a, "-d") || !strcmp(a, "--duration")) O.duration = atof(NEXT());
        else if (!strcmp(a, "--warmup")) O.warmup = atof(NEXT());
        else if (!strcmp(a, "--payload")) O.payload = atoi(NEXT());
        else if (!strcmp(a, "--bytes")) O.bytes = parse_size(NEXT());
        else if (!strcmp(a, "--streams")) O.streams = atoi(NEXT());
        else if (!strcmp(a, "--dir")) {
            const char *v = NEXT();
            O.dir_up = !strcmp(v, "up") || !strcmp(v, "both");
            O.dir_down = !strcmp(v, "down") || !strcmp(v, "both");
            if (!O.dir_up && !O.dir_down) die("bad --dir %s", v);
        } else if (!strcmp(a, "--bulk-timeout")) O.bulk_timeout = atof(NEXT());
        else if (!strcmp(a, "--verify-data")) O.verify_data = 1;
        else if (!strcmp(a, "-k")) O.k = atoi(NEXT());
        else if (!strcmp(a, "--ramp")) O.ramp = atoi(NEXT());
        else if (!strcmp(a, "--hold-s")) O.hold_s = atof(NEXT());
        else if (!strcmp(a, "--establish-s")) O.establish_s = atof(NEXT());
        else if (!strcmp(a, "--stdin")) O.use_stdin = 1;
        else if (!strcmp(a, "--no-verify")) O.verify_alive = 0;
        else if (!strcmp(a, "--sni")) {
            O.sni = 1;
            snprintf(O.sni_echo, sizeof O.sni_echo, "%s", NEXT());
        } else if (!strcmp(a, "--sni-sink")) snprintf(O.sni_sink, sizeof O.sni_sink, "%s", NEXT());
        else if (!strcmp(a, "--sni-source")) snprintf(O.sni_source, sizeof O.sni_source, "%s", NEXT());
        else if (!strcmp(a, "--sni-closed")) snprintf(O.sni_closed, sizeof O.sni_closed, "%s", NEXT());
        else if (!strcmp(a, "--sni-unknown")) snprintf(O.sni_unknown, sizeof O.sni_unknown, "%s", NEXT());
        else if (!strcmp(a, "--sni-pad")) O.sni_pad = atoi(NEXT());
        else if (!strcmp(a, "--sni-gap-ms")) O.sni_gap_ms = atoi(NEXT());
        else if (!strcmp(a, "--sni-split")) {
            const char *v = NEXT();
            if (!strcmp(v, "tcp")) O.sni_split = SPLIT_TCP;
            else if (!strcmp(v, "records")) O.sni_split = SPLIT_RECORDS;
            else if (!strcmp(v, "none")) O.sni_split = SPLIT_NONE;
            else die("bad --sni-split %s (tcp|records|none)", v);
        }
        else if (!strcmp(a, "--tunnel-hello")) snprintf(O.tunnel_hello, sizeof O.tunnel_hello, "%s", NEXT());
        else if (!strcmp(a, "--tls")) O.tls = 1;
        else if (!strcmp(a, "--tls-resume")) O.tls_resume = 1;
        else if (!strcmp(a, "--tls-ca")) O.tls_ca = NEXT();
        else if (!strcmp(a, "--tls-servername")) O.tls_servername = NEXT();
        else if (!strcmp(a, "--tls-sni")) {
            O.tls_sni = 1;
            snprintf(O.sni_echo, sizeof O.sni_echo, "%s", NEXT());
        }
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", a);
            usage();
        }
    }
    if (!O.direct && !have_proxy) die("need --proxy HOST:PORT or --direct");
    if (!O.allow_nonlo && ((!O.direct && !is_loopback(O.proxy_host)) || !is_loopback(O.origin_host)))
        die("refusing non-loopback addresses (use --allow-nonloopback)");
    if (O.conc < 1 || O.k < 1 || O.streams < 1 || O.ramp < 1) die("counts must be >= 1");
    if (O.payload < 1 || O.payload > SMALL_MAX) die("--payload must be 1..%d", SMALL_MAX);
    if (O.duration <= 0 || O.duration > 3600 || O.warmup < 0 || O.hold_s < 0 || O.hold_s > 86400)
        die("durations out of range");

    if (O.sni || O.tls_sni) {
        if (!O.sni_echo[0] || strlen(O.sni_echo) > 200) die("--sni / --tls-sni NAME: 1-200 characters");
        int is_echo = !strncmp(O.sni_echo, "echo.", 5);
        if (!O.sni_sink[0]) snprintf(O.sni_sink, sizeof O.sni_sink, "%s%.200s", is_echo ? "sink." : "", O.sni_echo + (is_echo ? 5 : 0));
        if (!O.sni_source[0]) snprintf(O.sni_source, sizeof O.sni_source, "%s%.200s", is_echo ? "source." : "", O.sni_echo + (is_echo ? 5 : 0));
    }
    if (O.sni) {
        if (O.sni_pad < 0 || O.sni_pad > HELLO_MAX) die("--sni-pad 0..%d", HELLO_MAX);
        if (O.sni_gap_ms < 0 || O.sni_gap_ms > 10000) die("--sni-gap-ms 0..10000");
        build_hello(&hello_echo, O.sni_echo, O.sni_pad, O.sni_split);
        build_hello(&hello_sink, O.sni_sink, O.sni_pad, O.sni_split);
        build_hello(&hello_source, O.sni_source, O.sni_pad, O.sni_split);
        build_hello(&hello_closed, O.sni_closed, O.sni_pad, SPLIT_NONE);
        build_hello(&hello_unknown, O.sni_unknown, O.sni_pad, SPLIT_NONE);
        build_hello(&hello_nosni, NULL, O.sni_pad, SPLIT_NONE);
    } else if (O.sni_split || O.sni_pad)
        die("--sni-split / --sni-pad need --sni NAME");
    if (O.tunnel_hello[0]) {
        if (O.sni || O.direct || O.mode != M_RATE) die("--tunnel-hello: rate mode through a CONNECT proxy only");
        if (strlen(O.tunnel_hello) > 200) die("--tunnel-hello NAME: 1-200 characters");
        build_hello(&hello_tunnel, O.tunnel_hello, 0, SPLIT_NONE);
        if (hello_tunnel.len + O.payload > SMALL_MAX) die("--tunnel-hello: hello + --payload over %d bytes", SMALL_MAX);
    }
    check_tls_options();

    memset(&proxy_sa, 0, sizeof proxy_sa);
    proxy_sa.sin_family = AF_INET;
    proxy_sa.sin_port = htons((uint16_t)O.proxy_port);
    if (!O.direct && inet_pton(AF_INET, O.proxy_host, &proxy_sa.sin_addr) != 1) die("bad proxy host (need IPv4)");
    memset(&origin_sa, 0, sizeof origin_sa);
    origin_sa.sin_family = AF_INET;
    if (inet_pton(AF_INET, O.origin_host, &origin_sa.sin_addr) != 1) die("bad origin host (need IPv4)");

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (O.mode == M_HOLD && (rlim_t)O.k + 64 > rl.rlim_cur)
        fprintf(stderr, "loadgen: warning: RLIMIT_NOFILE %llu < k=%d\n", (unsigned long long)rl.rlim_cur, O.k);

    signal(SIGPIPE, SIG_IGN);
    if (O.mode == M_PROBE) return run_probe();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1: %s", strerror(errno));
    setup_signals();
    if (O.tls || O.tls_sni) {
        tls_options t = {.ca_file = O.tls_ca, .servername = O.tls_servername, .proxy_ip = O.proxy_host,
                         .resume = O.tls_resume, .release_buffers = O.mode == M_HOLD};
        tls_init(&t);
    }
    switch (O.mode) {
    case M_RATE: return run_rate();
    case M_BULK: return run_bulk();
    case M_HOLD: return run_hold();
    }
    return 2;
}
