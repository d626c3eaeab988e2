/*
 * tls.c: TLS on both sides, through libevent's OpenSSL bufferevents.
 *
 * Two SSL_CTX objects are built at start-up and shared by the workers
 * (SSL_new() on a shared context is thread-safe): one for the listener when
 * tls.cert is set, one for https:// upstreams.  Upstream connections verify
 * the server's certificate by default, against upstream_tls.ca_file or the
 * system's trust store, and check that it names the host of the upstream
 * URL (or upstream_tls.sni): a DNS name through SSL_set1_host(), an address
 * literal through the certificate's IP SANs.  The same name goes out as SNI
 * unless it is an address, which SNI cannot carry.
 *
 * A peer that closes without close_notify is treated as an EOF, not as an
 * error (dirty shutdown), as almost every HTTP peer does it.  The client
 * context and connecting bufferevent are shared with the OTLP exporters
 * (src/tlsctx.c).
 */

#include "config.h"

#include <stdio.h>
#include <string.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "tap_core.h"
#include "tlsctx.h"
#include "proxy/proxy-int.h"


static SSL_CTX *
tap_tls_server_ctx(const tap_psettings_t *ps, char **err)
{
    SSL_CTX  *ctx;

    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        *err = tap_tls_errstr("cannot create a TLS context", NULL);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, ps->tls13_only ? TLS1_3_VERSION : TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (tap_tls_load_pair(ctx, ps->tls_cert, ps->tls_key, err) != TAP_OK) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}


int
tap_tls_init(tap_proxy_t *px, char **err)
{
    const tap_psettings_t  *ps = px->ps;
    size_t                  i;

    *err = NULL;
    if (ps->tls_cert != NULL) {
        px->tls_server = tap_tls_server_ctx(ps, err);
        if (px->tls_server == NULL) {
            return TAP_ERROR;
        }
    }
    for (i = 0; i < ps->nservers; i++) {
        if (ps->servers[i].https) {
            px->tls_client = tap_tls_client_ctx(ps->up_verify, ps->up_ca_file,
                "upstream_tls.ca_file: cannot load", ps->up_cert, ps->up_key, err);
            return px->tls_client != NULL ? TAP_OK : TAP_ERROR;
        }
    }
    return TAP_OK;
}


void
tap_tls_cleanup(tap_proxy_t *px)
{
    SSL_CTX_free(px->tls_server);
    SSL_CTX_free(px->tls_client);
    px->tls_server = NULL;
    px->tls_client = NULL;
}


struct bufferevent *
tap_tls_accept_bev(tap_proxy_t *px, struct event_base *base, evutil_socket_t fd)
{
    struct bufferevent  *bev;
    SSL                 *ssl;

    if (px->tls_server == NULL) {
        return bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    }
    ssl = SSL_new(px->tls_server);
    if (ssl == NULL) {
        ERR_clear_error();
        return NULL;
    }
    bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
        BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}


struct bufferevent *
tap_tls_connect_bev(tap_proxy_t *px, struct event_base *base, unsigned server)
{
    const tap_psettings_t  *ps = px->ps;
    const tap_paddr_t      *a = &ps->servers[server];
    const char             *name;

    if (!a->https) {
        return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }

    name = ps->up_sni != NULL ? ps->up_sni : a->host;
    return tap_tls_client_bev(base, px->tls_client, name, ps->up_verify, BEV_OPT_CLOSE_ON_FREE);
}


int
tap_tls_failed(struct bufferevent *bev)
{
    unsigned long  e;
    int            any = 0;

    if (bufferevent_openssl_get_ssl(bev) == NULL) {
        return 0;
    }
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        any = 1;
    }
    return any;
}
