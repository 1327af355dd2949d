/*
 * Provenance: copied verbatim into Sluice's bench/c/ from the team's shared
 * CONNECT-proxy perf harness (shared/perf/origin.c), which carries no license
 * or attribution header; maintained here from now on. Built by bench/run.ts
 * (cc -O2 -Wall ... -lm) into bench/.build/.
 *
 * origin.c - the far end of a CONNECT tunnel, for the proxy perf harness.
 *
 * One single-threaded epoll process, one listening port per mode:
 *
 *   --echo PORT    echo back everything received; close on client EOF.
 *   --sink PORT    read and discard, counting bytes.  On client EOF write the
 *                  count as an 8-byte big-endian integer, then close.
 *                  If a connection starts with the line "PUT <n>\n", the count
 *                  (of payload bytes after that line) is written as soon as n
 *                  bytes have arrived, so the client does not depend on the
 *                  proxy propagating a half-close; reading continues to EOF.
 *   --source PORT  read a request line "GET <n>\n", send n bytes of a fixed
 *                  pattern (byte i = i % 251), then shutdown(SHUT_WR) and
 *                  close once the client closes.  With --source-bytes N the
 *                  N bytes are sent on connect without a request line.
 *
 * Other flags: --host ADDR (default 127.0.0.1; loopback only unless
 * --allow-nonloopback), --backlog N (default 4096), --quiet.
 *
 * --tls-hello: a connection (any port) whose first byte is 0x16 starts with
 * a TLS ClientHello (SNI-routing proxies replay it to the origin): the
 * origin consumes exactly the ClientHello (TLS handshake records until the
 * handshake message of type 1 is complete, possibly fragmented over several
 * records and TCP segments), answers with one record 0x16 0x03 0x03 + length
 * + "ok <kind>\n" (so the client knows the route and that the upstream
 * connection is up), then the port behaves as above.  Connections that do
 * not start with 0x16 are unaffected.
 *
 * Prints "READY echo=P sink=P source=P" on stdout once listening.
 * SIGUSR1 prints counters to stderr; SIGTERM/SIGINT exit.
 *
 * Build: gcc -O2 -Wall -o origin origin.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { K_ECHO = 0, K_SINK = 1, K_SOURCE = 2 };
static const char *kind_name[] = {"echo", "sink", "source"};

enum {
    ST_HELLO = 100,   /* --tls-hello: consuming the ClientHello     */
    /* echo */
    ST_ECHO = 0,      /* reading, echoing                          */
    ST_ECHO_FLUSH,    /* pending output, EPOLLIN disabled           */
    /* sink */
    ST_SINK_SNIFF,    /* first bytes: is it "PUT "?                 */
    ST_SINK_LINE,     /* reading "PUT <n>\n"                        */
    ST_SINK_COUNT,    /* counting payload                           */
    ST_SINK_REPLY,    /* writing 8-byte count (EPOLLOUT)            */
    /* source */
    ST_SRC_LINE,      /* reading "GET <n>\n"                        */
    ST_SRC_SEND,      /* sending                                    */
    ST_SRC_DRAIN,     /* sent everything + FIN; wait for client EOF */
};

typedef struct conn {
    int fd;
    int kind;
    int listener;      /* 1 for listening sockets */
    int state;
    uint32_t events;   /* events currently registered */
    char line[80];
    int linelen;
    /* echo */
    char *pend;
    size_t pendlen, pendoff;
    /* sink */
    uint64_t count, expect;
    int has_expect, replied, close_after_reply;
    unsigned char reply[8];
    int replyoff;
    /* source */
    uint64_t remaining, sent;
    /* --tls-hello */
    unsigned char rec_hdr[5], hs_hdr[4];
    int rec_have, hs_have;
    uint32_t rec_left;
    uint64_t hs_seen;
} conn_t;

#define RBUF_SZ (256 * 1024)
#define PAT_SZ (251 * 1024) /* multiple of 251 so the pattern wraps cleanly */
static char rbuf[RBUF_SZ];
static char pattern[PAT_SZ];
static int epfd;
static int quiet;
static uint64_t source_on_connect; /* 0 = need "GET n\n" */
static int tls_hello;              /* --tls-hello */
static volatile sig_atomic_t want_stats, want_exit;

static struct {
    uint64_t accepted[3], closed[3], bytes_in[3], bytes_out[3], errors;
} st;

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void on_signal(int sig) {
    if (sig == SIGUSR1)
        want_stats = 1;
    else
        want_exit = 1;
}

static void set_events(conn_t *c, uint32_t ev) {
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0) die("epoll_ctl mod");
    c->events = ev;
}

static void conn_close(conn_t *c) {
    close(c->fd); /* also removes it from epoll */
    st.closed[c->kind]++;
    free(c->pend);
    free(c);
}

/* Write as much of buf as possible. Returns bytes written, or -1 on a fatal
 * error (EAGAIN gives a short count, possibly 0). */
static ssize_t write_some(int fd, const char *buf, size_t len) {
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        return -1;
    }
    return (ssize_t)off;
}

/* Accumulate a '\n'-terminated line from data; returns index just past the
 * '\n' within data when complete, 0 if more data is needed, -1 if too long. */
static ssize_t take_line(conn_t *c, const char *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (c->linelen >= (int)sizeof(c->line) - 1) return -1;
        c->line[c->linelen++] = data[i];
        if (data[i] == '\n') {
            c->line[c->linelen] = 0;
            return (ssize_t)(i + 1);
        }
    }
    return 0;
}

static int parse_count(const char *line, const char *verb, uint64_t *out) {
    size_t vl = strlen(verb);
    if (strncmp(line, verb, vl) != 0) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(line + vl, &end, 10);
    if (errno || end == line + vl) return -1;
    while (*end == '\r' || *end == '\n' || *end == ' ') end++;
    if (*end) return -1;
    *out = v;
    return 0;
}

/* ---------------- echo ---------------- */

static void echo_flush(conn_t *c) {
    ssize_t n = write_some(c->fd, c->pend + c->pendoff, c->pendlen - c->pendoff);
    if (n < 0) {
        st.errors++;
        conn_close(c);
        return;
    }
    st.bytes_out[K_ECHO] += (uint64_t)n;
    c->pendoff += (size_t)n;
    if (c->pendoff < c->pendlen) return; /* still EPOLLOUT */
    free(c->pend);
    c->pend = NULL;
    c->pendlen = c->pendoff = 0;
    c->state = ST_ECHO;
    set_events(c, EPOLLIN | EPOLLRDHUP);
}

static void echo_read(conn_t *c) {
    for (int iter = 0; iter < 16; iter++) {
        ssize_t n = recv(c->fd, rbuf, RBUF_SZ, 0);
        if (n == 0) { /* EOF */
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            st.errors++;
            conn_close(c);
            return;
        }
        st.bytes_in[K_ECHO] += (uint64_t)n;
        ssize_t w = write_some(c->fd, rbuf, (size_t)n);
        if (w < 0) {
            st.errors++;
            conn_close(c);
            return;
        }
        st.bytes_out[K_ECHO] += (uint64_t)w;
        if (w < n) { /* peer not reading fast enough: buffer and stop reading */
            c->pendlen = (size_t)(n - w);
            c->pend = malloc(c->pendlen);
            if (!c->pend) die("malloc");
            memcpy(c->pend, rbuf + w, c->pendlen);
            c->pendoff = 0;
            c->state = ST_ECHO_FLUSH;
            set_events(c, EPOLLOUT);
            return;
        }
        if (n < RBUF_SZ) return;
    }
}

/* ---------------- sink ---------------- */

static void sink_send_reply(conn_t *c) {
    ssize_t n = write_some(c->fd, (char *)c->reply + c->replyoff, 8 - c->replyoff);
    if (n < 0) {
        st.errors++;
        conn_close(c);
        return;
    }
    st.bytes_out[K_SINK] += (uint64_t)n;
    c->replyoff += (int)n;
    if (c->replyoff < 8) {
        c->state = ST_SINK_REPLY;
        set_events(c, EPOLLOUT);
        return;
    }
    c->replied = 1;
    if (c->close_after_reply) {
        conn_close(c);
        return;
    }
    c->state = ST_SINK_COUNT;
    set_events(c, EPOLLIN | EPOLLRDHUP);
}

static void sink_reply(conn_t *c, int then_close) {
    uint64_t v = c->count;
    for (int i = 7; i >= 0; i--) {
        c->reply[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
    c->replyoff = 0;
    c->close_after_reply = then_close;
    sink_send_reply(c);
}

/* returns 1 if the connection was closed or is now replying */
static int sink_count(conn_t *c, size_t n) {
    c->count += n;
    if (c->has_expect && !c->replied && c->count >= c->expect) {
        sink_reply(c, 0);
        return 1;
    }
    return 0;
}

static void sink_read(conn_t *c) {
    for (int iter = 0; iter < 64; iter++) {
        ssize_t n = recv(c->fd, rbuf, RBUF_SZ, 0);
        if (n == 0) {
            if (c->state == ST_SINK_SNIFF) /* fewer than 4 bytes, raw */
                c->count += (uint64_t)c->linelen;
            if (c->replied)
                conn_close(c);
            else
                sink_reply(c, 1);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            st.errors++;
            conn_close(c);
            return;
        }
        st.bytes_in[K_SINK] += (uint64_t)n;
        size_t off = 0;
        if (c->state == ST_SINK_SNIFF) {
            while (off < (size_t)n && c->linelen < 4) c->line[c->linelen++] = rbuf[off++];
            if (c->linelen < 4) continue;
            if (memcmp(c->line, "PUT ", 4) == 0) {
                c->state = ST_SINK_LINE;
            } else {
                c->state = ST_SINK_COUNT;
                c->linelen = 0;
                if (sink_count(c, 4)) return;
            }
        }
        if (c->state == ST_SINK_LINE) {
            ssize_t used = take_line(c, rbuf + off, (size_t)n - off);
            if (used < 0) {
                st.errors++;
                conn_close(c);
                return;
            }
            if (used == 0) continue;
            off += (size_t)used;
            if (parse_count(c->line, "PUT ", &c->expect) < 0) {
                st.errors++;
                conn_close(c);
                return;
            }
            c->has_expect = 1;
            c->state = ST_SINK_COUNT;
        }
        if (sink_count(c, (size_t)n - off)) return;
        if (n < RBUF_SZ) return;
    }
}

/* ---------------- source ---------------- */

static void source_send(conn_t *c) {
    for (int iter = 0; iter < 64 && c->remaining > 0; iter++) {
        size_t off = (size_t)(c->sent % 251);
        size_t chunk = PAT_SZ - off;
        if (chunk > c->remaining) chunk = (size_t)c->remaining;
        ssize_t n = send(c->fd, pattern + off, chunk, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            st.errors++;
            conn_close(c);
            return;
        }
        c->remaining -= (uint64_t)n;
        c->sent += (uint64_t)n;
        st.bytes_out[K_SOURCE] += (uint64_t)n;
    }
    if (c->remaining > 0) {
        c->state = ST_SRC_SEND;
        set_events(c, EPOLLOUT);
        return;
    }
    /* all sent: FIN, then wait for the client to close */
    shutdown(c->fd, SHUT_WR);
    c->state = ST_SRC_DRAIN;
    set_events(c, EPOLLIN | EPOLLRDHUP);
}

static void source_read(conn_t *c) {
    for (int iter = 0; iter < 16; iter++) {
        ssize_t n = recv(c->fd, rbuf, RBUF_SZ, 0);
        if (n == 0) {
            conn_close(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (c->state != ST_SRC_DRAIN) st.errors++;
            conn_close(c);
            return;
        }
        st.bytes_in[K_SOURCE] += (uint64_t)n;
        if (c->state != ST_SRC_LINE) continue; /* discard */
        ssize_t used = take_line(c, rbuf, (size_t)n);
        if (used < 0) {
            st.errors++;
            conn_close(c);
            return;
        }
        if (used == 0) continue;
        if (parse_count(c->line, "GET ", &c->remaining) < 0) {
            static const char bad[] = "ERR expected \"GET <nbytes>\\n\"\n";
            (void)!write(c->fd, bad, sizeof bad - 1);
            st.errors++;
            conn_close(c);
            return;
        }
        source_send(c);
        return;
    }
}

/* ---------------- --tls-hello ---------------- */

static void start_kind(conn_t *c) {
    uint32_t ev = EPOLLIN | EPOLLRDHUP;
    switch (c->kind) {
    case K_ECHO: c->state = ST_ECHO; break;
    case K_SINK: c->state = ST_SINK_SNIFF; break;
    case K_SOURCE:
        c->state = ST_SRC_LINE;
        if (source_on_connect) {
            c->remaining = source_on_connect;
            c->state = ST_SRC_SEND;
            ev = EPOLLOUT;
        }
        break;
    }
    set_events(c, ev);
}

/* Peek at what arrived, account for the bytes that belong to the
 * ClientHello (never more), consume exactly those. */
static void hello_read(conn_t *c) {
    ssize_t n = recv(c->fd, rbuf, RBUF_SZ, MSG_PEEK);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        conn_close(c);
        return;
    }
    if (n < 0) return;
    if (c->rec_have == 0 && c->hs_seen == 0 && (unsigned char)rbuf[0] != 0x16) { /* not TLS */
        start_kind(c);
        return;
    }
    size_t i = 0;
    int done = 0;
    while (i < (size_t)n && !done) {
        if (c->rec_have < 5) {
            c->rec_hdr[c->rec_have++] = (unsigned char)rbuf[i++];
            if (c->rec_have == 5) {
                c->rec_left = ((uint32_t)c->rec_hdr[3] << 8) | c->rec_hdr[4];
                if (c->rec_hdr[0] != 0x16 || c->rec_hdr[1] != 3 || c->rec_left == 0 || c->rec_left > 16384 + 2048) {
                    st.errors++;
                    conn_close(c);
                    return;
                }
            }
            continue;
        }
        size_t take = (size_t)n - i;
        if (take > c->rec_left) take = c->rec_left;
        for (size_t k = 0; k < take && c->hs_have < 4; k++) c->hs_hdr[c->hs_have++] = (unsigned char)rbuf[i + k];
        c->hs_seen += take;
        c->rec_left -= (uint32_t)take;
        i += take;
        if (c->rec_left == 0) {
            c->rec_have = 0;
            if (c->hs_have == 4) {
                if (c->hs_hdr[0] != 1) {
                    st.errors++;
                    conn_close(c);
                    return;
                }
                uint64_t want = 4 + (((uint64_t)c->hs_hdr[1] << 16) | ((uint64_t)c->hs_hdr[2] << 8) | c->hs_hdr[3]);
                if (c->hs_seen >= want) done = 1;
            }
        }
    }
    ssize_t got = recv(c->fd, rbuf, i, 0); /* consume exactly the hello bytes */
    if (got != (ssize_t)i) {
        st.errors++;
        conn_close(c);
        return;
    }
    st.bytes_in[c->kind] += (uint64_t)i;
    if (!done) return;
    char msg[32];
    int ml = snprintf(msg + 5, sizeof msg - 5, "ok %s\n", kind_name[c->kind]);
    msg[0] = 0x16;
    msg[1] = 3;
    msg[2] = 3;
    msg[3] = 0;
    msg[4] = (char)ml;
    if (write_some(c->fd, msg, (size_t)(5 + ml)) != 5 + ml) { /* a fresh socket takes 13 bytes */
        st.errors++;
        conn_close(c);
        return;
    }
    st.bytes_out[c->kind] += (uint64_t)(5 + ml);
    start_kind(c);
}

/* ---------------- plumbing ---------------- */

static void do_accept(conn_t *l) {
    for (int i = 0; i < 256; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            if (errno == EMFILE || errno == ENFILE) {
                static int warned;
                if (!warned++) fprintf(stderr, "origin: accept: %s\n", strerror(errno));
                return;
            }
            if (errno == ECONNABORTED) continue;
            die("accept4");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = calloc(1, sizeof *c);
        if (!c) die("calloc");
        c->fd = fd;
        c->kind = l->kind;
        st.accepted[c->kind]++;
        uint32_t ev = EPOLLIN | EPOLLRDHUP;
        if (tls_hello) {
            c->state = ST_HELLO;
        } else switch (c->kind) {
        case K_ECHO: c->state = ST_ECHO; break;
        case K_SINK: c->state = ST_SINK_SNIFF; break;
        case K_SOURCE:
            c->state = ST_SRC_LINE;
            if (source_on_connect) {
                c->remaining = source_on_connect;
                c->state = ST_SRC_SEND;
                ev = EPOLLOUT;
            }
            break;
        }
        c->events = ev;
        struct epoll_event e = {.events = ev, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl add");
    }
}

static void on_event(conn_t *c, uint32_t ev) {
    if (c->listener) {
        do_accept(c);
        return;
    }
    switch (c->state) {
    case ST_HELLO:
        hello_read(c);
        return;
    case ST_ECHO:
        echo_read(c);
        return;
    case ST_ECHO_FLUSH:
        if (ev & (EPOLLERR | EPOLLHUP)) {
            conn_close(c);
            return;
        }
        echo_flush(c);
        return;
    case ST_SINK_SNIFF:
    case ST_SINK_LINE:
    case ST_SINK_COUNT:
        sink_read(c);
        return;
    case ST_SINK_REPLY:
        if (ev & (EPOLLERR | EPOLLHUP)) {
            conn_close(c);
            return;
        }
        sink_send_reply(c);
        return;
    case ST_SRC_LINE:
    case ST_SRC_DRAIN:
        source_read(c);
        return;
    case ST_SRC_SEND:
        if (ev & (EPOLLERR | EPOLLHUP)) {
            st.errors++;
            conn_close(c);
            return;
        }
        source_send(c);
        return;
    }
}

static int is_loopback(const char *host) {
    struct in_addr a;
    if (inet_pton(AF_INET, host, &a) != 1) return 0;
    return (ntohl(a.s_addr) >> 24) == 127;
}

static void add_listener(const char *host, int port, int kind, int backlog) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "origin: bad --host %s\n", host);
        exit(2);
    }
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "origin: bind %s:%d (%s): %s\n", host, port, kind_name[kind], strerror(errno));
        exit(1);
    }
    if (listen(fd, backlog) < 0) die("listen");
    conn_t *c = calloc(1, sizeof *c);
    c->fd = fd;
    c->kind = kind;
    c->listener = 1;
    c->events = EPOLLIN;
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0) die("epoll_ctl listener");
}

static void usage(void) {
    fprintf(stderr,
            "usage: origin [--host 127.0.0.1] [--echo PORT] [--sink PORT] [--source PORT]\n"
            "              [--source-bytes N] [--backlog N] [--quiet] [--allow-nonloopback] [--tls-hello]\n");
    exit(2);
}

static void print_stats(void) {
    fprintf(stderr, "origin stats:");
    for (int k = 0; k < 3; k++)
        fprintf(stderr, " %s{acc=%" PRIu64 " closed=%" PRIu64 " in=%" PRIu64 " out=%" PRIu64 "}", kind_name[k],
                st.accepted[k], st.closed[k], st.bytes_in[k], st.bytes_out[k]);
    fprintf(stderr, " errors=%" PRIu64 "\n", st.errors);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port[3] = {0, 0, 0};
    int backlog = 4096, allow_nonlo = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
        if (!strcmp(a, "--echo")) port[K_ECHO] = atoi(NEXT());
        else if (!strcmp(a, "--sink")) port[K_SINK] = atoi(NEXT());
        else if (!strcmp(a, "--source")) port[K_SOURCE] = atoi(NEXT());
        else if (!strcmp(a, "--source-bytes")) source_on_connect = strtoull(NEXT(), NULL, 10);
        else if (!strcmp(a, "--host")) host = NEXT();
        else if (!strcmp(a, "--backlog")) backlog = atoi(NEXT());
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--tls-hello")) tls_hello = 1;
        else if (!strcmp(a, "--allow-nonloopback")) allow_nonlo = 1;
        else usage();
    }
    if (!port[0] && !port[1] && !port[2]) usage();
    if (!allow_nonlo && !is_loopback(host)) {
        fprintf(stderr, "origin: refusing non-loopback --host %s\n", host);
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (int i = 0; i < PAT_SZ; i++) pattern[i] = (char)(i % 251);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    for (int k = 0; k < 3; k++)
        if (port[k]) add_listener(host, port[k], k, backlog);
    printf("READY echo=%d sink=%d source=%d host=%s nofile=%llu\n", port[0], port[1], port[2], host,
           (unsigned long long)rl.rlim_cur);
    fflush(stdout);

    struct epoll_event evs[512];
    while (!want_exit) {
        int n = epoll_wait(epfd, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR) {
                if (want_stats) {
                    want_stats = 0;
                    print_stats();
                }
                continue;
            }
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
    }
    if (!quiet) print_stats();
    return 0;
}
