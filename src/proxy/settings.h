/*
 * settings.h: the proxy's resolved, read-only view of the configuration.
 *
 * The data path never reads tap_conf_t directly: tap_psettings_from_conf()
 * (settings.c) resolves it once at start-up into this flat struct (socket
 * addresses, durations in milliseconds, limits as integers).  This keeps the
 * hot path free of parsing and lets the fuzz targets and tests build a
 * settings struct without a configuration file.
 */

#ifndef TAP_PROXY_SETTINGS_H
#define TAP_PROXY_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "filter.h"
#include "telemetry/telemetry.h"

struct tap_conf_s;

typedef enum {
    TAP_BALANCE_ROUND_ROBIN = 0,
    TAP_BALANCE_LEAST_REQUEST,
} tap_balance_e;

typedef struct tap_paddr_s {
    struct sockaddr_storage  ss;
    socklen_t                len;
    char                     text[80];     /* "host:port", for logs and metrics */
    unsigned                 https:1;      /* upstreams: speak TLS */
    char                     host[256];    /* upstreams: name for SNI and verification */
} tap_paddr_t;

typedef struct tap_psettings_s {
    tap_paddr_t   *listen;
    size_t         nlisten;
    tap_paddr_t    admin;
    unsigned       has_admin:1;
    const char    *admin_token;            /* NULL: the admin endpoints are open */
    unsigned       workers;                /* 0: one per core */
    char          *access_log;             /* "-", a path, or NULL for off */
    char          *request_id_header;      /* lowercase-insensitive name */

    tap_paddr_t   *servers;
    size_t         nservers;
    tap_balance_e  balance;
    unsigned       retries;

    unsigned       pool_max_idle;
    int64_t        pool_idle_timeout_ms;
    unsigned       health_fails;
    int64_t        health_backoff_ms;
    int64_t        health_backoff_max_ms;
    int64_t        health_interval_ms;     /* active checks */
    int64_t        health_timeout_ms;
    const char    *health_path;

    int64_t        connect_ms;
    int64_t        response_header_ms;
    int64_t        stream_idle_ms;
    int64_t        client_header_ms;
    int64_t        client_body_ms;
    int64_t        keepalive_ms;
    int64_t        drain_ms;

    size_t         max_header_bytes;
    unsigned       max_headers;
    uint64_t       max_body_bytes;
    unsigned       max_connections;        /* 0: unlimited */

    const char    *tls_cert;               /* listener TLS: NULL for plain HTTP */
    const char    *tls_key;
    unsigned       tls13_only:1;
    unsigned       up_verify:1;            /* https upstreams */
    const char    *up_ca_file;             /* NULL: the system's trust store */
    const char    *up_sni;                 /* NULL: each server's host */
    const char    *up_cert;                /* client certificate (mutual TLS) */
    const char    *up_key;

    tap_fconf_t    fconf;                  /* filters, routes, scores */
    unsigned       has_fconf:1;

    unsigned       max_series;             /* latency series per worker (GET /stats) */
    int            sampler;                /* head sampler, tap_conf_sampler_e */
    double         sample_ratio;
    tap_tsettings_t  tel;                  /* metrics, spans, logs, exporters */
    unsigned       has_tel:1;              /* an admin server or an OTLP endpoint wants them */
} tap_psettings_t;


/* Fills s with defaults (no listeners, no servers). */
void tap_psettings_defaults(tap_psettings_t *s);

/* Resolves cf into s.  Returns TAP_OK, or TAP_ERROR with an allocated message
 * in *err (the caller frees it).  s owns its arrays: tap_psettings_cleanup(). */
int tap_psettings_from_conf(tap_psettings_t *s, const struct tap_conf_s *cf, char **err);

void tap_psettings_cleanup(tap_psettings_t *s);

/* Parses "host:port" / "[v6]:port" / ":port" (numeric hosts and "localhost")
 * into a.  Returns TAP_OK or TAP_ERROR. */
int tap_paddr_parse(tap_paddr_t *a, const char *text, const char *default_host);

#endif /* TAP_PROXY_SETTINGS_H */
