/*
 * tlsctx.c: the OpenSSL pieces shared by infertap's TLS clients (tlsctx.h).
 */

#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tap_core.h"
#include "tlsctx.h"


char *
tap_tls_errstr(const char *what, const char *file)
{
    char           buf[256], *s = NULL;
    unsigned long  e;

    e = ERR_peek_last_error();
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
    } else {
        snprintf(buf, sizeof(buf), "unknown error");
    }
    ERR_clear_error();
    if (asprintf(&s, "%s%s%s: %s", what, file ? " " : "", file ? file : "", buf) < 0) {
        s = NULL;
    }
    return s;
}


int
tap_tls_load_pair(SSL_CTX *ctx, const char *cert, const char *key, char **err)
{
    if (key == NULL) {
        key = cert;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        *err = tap_tls_errstr("cannot load the certificate", cert);
        return TAP_ERROR;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        *err = tap_tls_errstr("cannot load the private key", key);
        return TAP_ERROR;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *err = tap_tls_errstr("the private key does not match the certificate", key);
        return TAP_ERROR;
    }
    return TAP_OK;
}


SSL_CTX *
tap_tls_client_ctx(int verify, const char *ca_file, const char *ca_what, const char *cert,
    const char *key, char **err)
{
    SSL_CTX  *ctx;

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        *err = tap_tls_errstr("cannot create a TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (ca_file != NULL) {
            if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
                *err = tap_tls_errstr(ca_what, ca_file);
                goto failed;
            }
        } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            *err = tap_tls_errstr("cannot load the system's trusted certificates", NULL);
            goto failed;
        }
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }

    if (cert != NULL && tap_tls_load_pair(ctx, cert, key, err) != TAP_OK) {
        goto failed;
    }
    return ctx;

failed:

    SSL_CTX_free(ctx);
    return NULL;
}


struct bufferevent *
tap_tls_client_bev(struct event_base *base, SSL_CTX *ctx, const char *name, int verify,
    int options)
{
    struct bufferevent  *bev;
    unsigned char        addr[sizeof(struct in6_addr)];
    int                  literal;
    SSL                 *ssl;

    ssl = SSL_new(ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    literal = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;
    if (!literal) {
        SSL_set_tlsext_host_name(ssl, name);
    }
    if (verify) {
        if (literal) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name);
        } else {
            SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
            SSL_set1_host(ssl, name);
        }
    }

    bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, options);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}
