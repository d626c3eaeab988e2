/*
 * tlsctx.h: the OpenSSL pieces shared by both TLS clients of infertap (the
 * proxy's https:// upstreams and the OTLP exporters): error strings, the
 * client context and a connecting bufferevent that checks the peer's name.
 */

#ifndef TAP_TLSCTX_H
#define TAP_TLSCTX_H

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

/* "what file: <OpenSSL's last error>" in an allocated string (file may be NULL). */
char *tap_tls_errstr(const char *what, const char *file);

/* Loads a PEM certificate chain and its key (key NULL: in the cert file). */
int tap_tls_load_pair(SSL_CTX *ctx, const char *cert, const char *key, char **err);

/*
 * A client context: TLS 1.2 or newer; with verify, the peer is checked
 * against ca_file (its load error says ca_what) or the system's trust store;
 * with cert, a client certificate is presented.  NULL with *err set.
 */
SSL_CTX *tap_tls_client_ctx(int verify, const char *ca_file, const char *ca_what,
    const char *cert, const char *key, char **err);

/*
 * A connecting TLS bufferevent for a server called name: SNI unless name is
 * an address literal; with verify, the certificate must name it (a DNS name
 * without partial wildcards, or an IP address).  Dirty shutdowns are EOFs.
 */
struct bufferevent *tap_tls_client_bev(struct event_base *base, SSL_CTX *ctx, const char *name,
    int verify, int options);

#endif /* TAP_TLSCTX_H */
