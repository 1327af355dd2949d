/*
 * tls-client.c - the load generator's TLS leg to the proxy; see tls-client.h.
 *
 * Written for Sluice's bench (issue 13). Choices, and why:
 * - TLS 1.3 only (the figures are TLS 1.3), OpenSSL's default
 *   groups (X25519 first), and ALPN "http/1.1", which is what a client
 *   speaks inside an HTTPS proxy's TLS.
 * - Partial writes and a moving write buffer: bulk mode hands SSL_write
 *   large chunks of a static pattern and retries after EAGAIN from wherever
 *   its counter says, so the pointer may differ (the bytes do not).
 * - SSL_OP_IGNORE_UNEXPECTED_EOF: a proxy that closes without close_notify
 *   reads as EOF (as with plain TCP), not as a protocol error.
 * - Resumption: TLS 1.3 tickets arrive after the handshake; OpenSSL puts
 *   the newest in the connection's session. At an orderly close the client
 *   slot keeps that session and offers it on its next connection. No
 *   client session cache: with SSL_SESS_CACHE_CLIENT, OpenSSL marks a TLS
 *   1.3 session not resumable once used (single-use tickets,
 *   tls_finish_handshake), and a server that sends no new ticket after a
 *   resumption (Node's tls.Server) would then get a full handshake every
 *   other time, where the point is to measure resumed ones.
 */
#define _GNU_SOURCE
#include "tls-client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

static SSL_CTX *ctx;
static tls_options opts; /* a copy: the caller's may go */
static char last_kind[64] = "error";

static void tls_die(const char *what) {
    fprintf(stderr, "loadgen: %s: ", what);
    ERR_print_errors_fp(stderr);
    fprintf(stderr, "\n");
    exit(2);
}

static void set_verification(const tls_options *o) {
    if (o->ca_file == NULL) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        return;
    }
    if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) tls_die("--tls-ca: cannot load the CA file");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
}

void tls_init(const tls_options *o) {
    static const unsigned char alpn[] = "\x08http/1.1";
    opts = *o;
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) tls_die("SSL_CTX_new");
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1)
        tls_die("TLS 1.3 not available");
    long mode = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
    if (o->release_buffers) mode |= SSL_MODE_RELEASE_BUFFERS;
    SSL_CTX_set_mode(ctx, mode);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof alpn - 1) != 0) tls_die("ALPN");
    set_verification(o);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
}

/* The name, or IP address, the proxy's certificate must carry. */
static void expect_name(SSL *ssl, const char *name) {
    unsigned char addr[16];
    int ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) : SSL_set1_host(ssl, name);
    if (ok != 1) tls_die("the name to verify");
}

SSL *tls_open(int fd, SSL_SESSION *offer, const char *servername) {
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) tls_die("SSL_new");
    const char *sni = servername != NULL ? servername : opts.servername;
    const char *name = sni != NULL ? sni : opts.proxy_ip;
    if (sni != NULL) SSL_set_tlsext_host_name(ssl, sni);
    if (opts.ca_file != NULL) expect_name(ssl, name);
    if (opts.resume && offer != NULL) SSL_set_session(ssl, offer);
    SSL_set_connect_state(ssl);
    return ssl;
}

static const char *errno_kind(int e) {
    const char *n = strerrorname_np(e);
    return n != NULL ? n : "EUNKNOWN";
}

/* What OpenSSL's error queue says went wrong; the first of each kind also goes to stderr. */
static void note_ssl_error(void) {
    static int printed_verify, printed_alert, printed_other;
    unsigned long e = ERR_peek_last_error();
    int reason = ERR_GET_REASON(e);
    int *printed = &printed_other;
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        snprintf(last_kind, sizeof last_kind, "verify");
        printed = &printed_verify;
    } else if (reason >= SSL_AD_REASON_OFFSET) {
        snprintf(last_kind, sizeof last_kind, "alert");
        printed = &printed_alert;
    } else {
        snprintf(last_kind, sizeof last_kind, "protocol");
    }
    if (!*printed) {
        char text[256];
        ERR_error_string_n(e, text, sizeof text);
        fprintf(stderr, "loadgen: first TLS %s error: %s\n", last_kind, text);
        *printed = 1;
    }
    ERR_clear_error();
}

/* SSL_get_error → -1 with errno (EAGAIN, EPIPE, EPROTO, ...) or 0 for a clean EOF. */
static ssize_t io_result(SSL *ssl, int ret, int reading) {
    int saved = errno;
    switch (SSL_get_error(ssl, ret)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: errno = EAGAIN; return -1;
    case SSL_ERROR_ZERO_RETURN:
        if (reading) return 0;
        errno = EPIPE;
        return -1;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (saved == 0 && reading) return 0;
        errno = saved != 0 ? saved : EPIPE;
        snprintf(last_kind, sizeof last_kind, "%s", errno_kind(errno));
        return -1;
    default:
        note_ssl_error();
        errno = EPROTO;
        return -1;
    }
}

int tls_handshake(SSL *ssl) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_connect(ssl);
    if (r == 1) return TLS_DONE;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ) return TLS_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE) return TLS_WANT_WRITE;
    if (e == SSL_ERROR_SSL) note_ssl_error();
    else if (e == SSL_ERROR_SYSCALL && errno != 0) snprintf(last_kind, sizeof last_kind, "%s", errno_kind(errno));
    else snprintf(last_kind, sizeof last_kind, "eof"); /* the proxy closed during the handshake */
    ERR_clear_error();
    return TLS_FAILED;
}

ssize_t tls_send(SSL *ssl, const void *buf, size_t len) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    return r > 0 ? r : io_result(ssl, r, 0);
}

ssize_t tls_recv(SSL *ssl, void *buf, size_t len, int peek) {
    ERR_clear_error();
    errno = 0;
    int n = len > INT_MAX ? INT_MAX : (int)len;
    int r = peek ? SSL_peek(ssl, buf, n) : SSL_read(ssl, buf, n);
    return r > 0 ? r : io_result(ssl, r, 1);
}

int tls_pending(const SSL *ssl) { return SSL_pending(ssl); }

int tls_resumed(const SSL *ssl) { return SSL_session_reused(ssl); }

/* The connection's session (its newest ticket, or the one it resumed) replaces the slot's. */
static void keep_session(SSL *ssl, SSL_SESSION **slot) {
    SSL_SESSION *sess = SSL_get1_session(ssl);
    if (sess == NULL) return;
    if (!SSL_SESSION_is_resumable(sess)) { /* no ticket came */
        SSL_SESSION_free(sess);
        return;
    }
    if (*slot != NULL) SSL_SESSION_free(*slot);
    *slot = sess;
}

void tls_close(SSL *ssl, int orderly, SSL_SESSION **slot) {
    if (orderly && slot != NULL && opts.resume) keep_session(ssl, slot);
    if (orderly) {
        ERR_clear_error();
        (void)SSL_shutdown(ssl); /* sends close_notify; does not wait for the proxy's */
        ERR_clear_error();
    }
    SSL_free(ssl);
}

const char *tls_error_kind(void) { return last_kind; }

void tls_forget(SSL_SESSION **slot) {
    if (*slot != NULL) SSL_SESSION_free(*slot);
    *slot = NULL;
}
