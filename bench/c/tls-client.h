/*
 * tls-client.h - the load generator's TLS leg to the proxy (issue 13: an
 * HTTPS proxy is TLS from the client, then CONNECT inside it), or to a
 * listener routed by SNI (issue 14, --tls-sni: a name per connection).
 *
 * OpenSSL, TLS 1.3 only, non-blocking: every call returns at once and says
 * which way the socket must become ready before it is called again. Knows
 * nothing of loadgen's connections: it works on an SSL and its fd, and a
 * client slot's session for resumption.
 */
#ifndef LOADGEN_TLS_CLIENT_H
#define LOADGEN_TLS_CLIENT_H

#include <openssl/ssl.h>
#include <sys/types.h>

typedef struct {
    const char *ca_file;    /* verify the proxy's certificate against this CA (NULL: no verification) */
    const char *servername; /* SNI and the name checked in the certificate (NULL: none sent; the IP is checked) */
    const char *proxy_ip;   /* checked in the certificate when there is no servername */
    int resume;             /* offer sessions (tls_open) and keep them (tls_close) */
    int release_buffers;    /* free idle read/write buffers (hold mode: thousands of idle connections) */
} tls_options;

/* Outcomes of tls_handshake(). */
enum { TLS_DONE = 1, TLS_WANT_READ = 2, TLS_WANT_WRITE = 3, TLS_FAILED = -1 };

/* The client context; exits with a message on failure. Call once. */
void tls_init(const tls_options *o);

/* A client SSL on connected socket fd; with resume, offering `offer`
 * (the slot's session; NULL: a full handshake). `servername`: this
 * connection's SNI and the name its certificate must carry (NULL: the
 * options' servername, else the proxy's IP). */
SSL *tls_open(int fd, SSL_SESSION *offer, const char *servername);

/* One step of the handshake (SSL_connect). */
int tls_handshake(SSL *ssl);

/* Like send()/recv() on a non-blocking socket: >0 bytes, 0 = the proxy closed
 * (recv only), -1 with errno EAGAIN (try again when the fd is ready), or
 * another errno (EPROTO: a TLS error, see tls_error_kind). peek = MSG_PEEK. */
ssize_t tls_send(SSL *ssl, const void *buf, size_t len);
ssize_t tls_recv(SSL *ssl, void *buf, size_t len, int peek);

/* Decrypted bytes already buffered: no epoll event will announce them. */
int tls_pending(const SSL *ssl);

/* Whether the handshake resumed a session. */
int tls_resumed(const SSL *ssl);

/* Free the SSL; `orderly`: send close_notify first (a session ended without
 * it is marked not resumable by OpenSSL) and, with resume, keep the
 * connection's session in *slot (its newest ticket, else the one it
 * resumed). Does not close the fd. */
void tls_close(SSL *ssl, int orderly, SSL_SESSION **slot);

/* The kind of the last failure, for loadgen's error counts: "verify" (the
 * proxy's certificate), "alert" (the proxy's), "protocol", "eof" (closed
 * during the handshake), or an errno name. */
const char *tls_error_kind(void);

/* Slots' sessions, freed when no longer needed. */
void tls_forget(SSL_SESSION **slot);

#endif
