/*
 * settings.c: tap_conf_t resolved into the proxy's tap_psettings_t.
 *
 * Done once at start-up: addresses are parsed into socket addresses (an
 * upstream host name is resolved here, the only blocking lookup, before any
 * worker runs), durations stay in milliseconds, limits become integers.
 * Only http:// upstreams without a path prefix are accepted for now; the
 * error says so rather than silently ignoring part of a URL.
 */

#include "config.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "tap_core.h"
#include "proxy/settings.h"


void
tap_psettings_defaults(tap_psettings_t *s)
{
    *s = (tap_psettings_t) { 0 };
    s->request_id_header = "x-request-id";
    s->balance = TAP_BALANCE_ROUND_ROBIN;
    s->retries = 1;
    s->pool_max_idle = 32;
    s->pool_idle_timeout_ms = 60000;
    s->health_fails = 3;
    s->health_backoff_ms = 5000;
    s->health_backoff_max_ms = 60000;
    s->health_interval_ms = 5000;
    s->health_timeout_ms = 2000;
    s->health_path = "/health";
    s->up_verify = 1;
    s->connect_ms = 2000;
    s->response_header_ms = 300000;
    s->stream_idle_ms = 120000;
    s->client_header_ms = 10000;
    s->client_body_ms = 60000;
    s->keepalive_ms = 75000;
    s->drain_ms = 30000;
    s->max_header_bytes = 32768;
    s->max_headers = 128;
    s->max_body_bytes = 16 * 1024 * 1024;
    s->max_connections = 10000;
    s->sampler = TAP_CONF_SAMPLER_PARENTBASED_ALWAYS_ON;
    s->sample_ratio = 1.0;
    s->max_series = 64;
}


static void
tap_paddr_text(tap_paddr_t *a)
{
    char  host[INET6_ADDRSTRLEN];

    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6  *s6 = (const struct sockaddr_in6 *) &a->ss;

        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        snprintf(a->text, sizeof(a->text), "[%s]:%u", host, (unsigned) ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in  *s4 = (const struct sockaddr_in *) &a->ss;

        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        snprintf(a->text, sizeof(a->text), "%s:%u", host, (unsigned) ntohs(s4->sin_port));
    }
}


int
tap_paddr_parse(tap_paddr_t *a, const char *text, const char *default_host)
{
    char  buf[300];

    memset(a, 0, sizeof(*a));
    if (text[0] == ':' && default_host != NULL) {
        snprintf(buf, sizeof(buf), "%s%s", default_host, text);
        text = buf;
    }
    if (tap_parse_addr(text, &a->ss, &a->len) != TAP_OK) {
        return TAP_ERROR;
    }
    tap_paddr_text(a);
    return TAP_OK;
}


/* Resolves an upstream URL into a socket address. */
static int
tap_psettings_server(tap_paddr_t *a, const char *url, char **err)
{
    tap_url_t         u;
    struct addrinfo   hints, *res = NULL;
    char              port[8];
    int               rc;

    memset(a, 0, sizeof(*a));
    if (tap_parse_url(url, &u) != TAP_OK) {
        goto bad;
    }
    if (u.path[0] != '\0') {
        if (asprintf(err, "upstream %s: a path prefix is not supported yet", url) < 0) {
            *err = NULL;
        }
        return TAP_ERROR;
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(port, sizeof(port), "%u", (unsigned) u.port);
    rc = getaddrinfo(u.host, port, &hints, &res);
    if (rc != 0 || res == NULL || res->ai_addrlen > sizeof(a->ss)) {
        if (asprintf(err, "upstream %s: cannot resolve %s: %s", url, u.host,
                rc ? gai_strerror(rc) : "no address") < 0)
        {
            *err = NULL;
        }
        if (res != NULL) {
            freeaddrinfo(res);
        }
        return TAP_ERROR;
    }
    memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
    a->len = res->ai_addrlen;
    freeaddrinfo(res);
    tap_paddr_text(a);
    a->https = u.https;
    snprintf(a->host, sizeof(a->host), "%s", u.host);
    return TAP_OK;

bad:

    if (asprintf(err, "upstream %s: not a valid http:// or https:// URL", url) < 0) {
        *err = NULL;
    }
    return TAP_ERROR;
}


/* "" means unset in tap_conf_t, NULL here. */
static const char *
tap_opt(const char *v)
{
    return v[0] != '\0' ? v : NULL;
}


/* The URLs of one signal: its own endpoint when set, else one per base endpoint. */
static int
tap_psettings_urls(tap_tsettings_t *ts, tap_signal_e sig, const char *own,
    const tap_conf_list_t *bases)
{
    size_t  i, n;
    char  **urls;

    n = own[0] != '\0' ? 1 : bases->n;
    urls = calloc(n ? n : 1, sizeof(char *));
    if (urls == NULL) {
        return TAP_ERROR;
    }
    ts->urls[sig] = urls;
    for (i = 0; i < n; i++) {
        urls[i] = own[0] != '\0' ? strdup(own)
                  : tap_conf_otlp_signal_url(bases->items[i], tap_signal_names[sig]);
        if (urls[i] == NULL) {
            return TAP_ERROR;
        }
        ts->nurls[sig] = i + 1;
    }
    return TAP_OK;
}


/* The telemetry settings: exporters, batches, sampling. */
static int
tap_psettings_tel(tap_psettings_t *s, const struct tap_conf_s *cf, char **err)
{
    tap_tsettings_t  *ts = &s->tel;
    tap_conf_list_t   pairs = { 0 };
    unsigned          q;

    s->max_series = cf->analysis.enabled ? (unsigned) cf->analysis.max_series : 0;
    s->sampler = cf->sampling.sampler;
    s->sample_ratio = cf->sampling.ratio;

    ts->service_name = cf->service_name;
    if (tap_conf_parse_pairs(cf->resource_attributes, &pairs, err) != TAP_OK) {
        return TAP_ERROR;
    }
    ts->resource = pairs.items;
    ts->nresource = pairs.n;
    pairs = (tap_conf_list_t) { 0 };
    if (tap_conf_parse_pairs(cf->otlp.headers, &pairs, err) != TAP_OK) {
        return TAP_ERROR;
    }
    ts->export.headers = pairs.items;
    ts->export.nheaders = pairs.n;

    if (tap_psettings_urls(ts, TAP_SIGNAL_TRACES, cf->otlp.traces_endpoint,
            &cf->otlp.endpoint) != TAP_OK
        || tap_psettings_urls(ts, TAP_SIGNAL_METRICS, cf->otlp.metrics_endpoint,
            &cf->otlp.endpoint) != TAP_OK
        || tap_psettings_urls(ts, TAP_SIGNAL_LOGS, cf->otlp.logs_endpoint,
            &cf->otlp.endpoint) != TAP_OK)
    {
        *err = strdup("out of memory");
        return TAP_ERROR;
    }

    ts->export.timeout_ms = (int64_t) cf->otlp.timeout;
    ts->export.max_attempts = (unsigned) cf->otlp.retry.max_attempts;
    ts->export.backoff_ms = (int64_t) cf->otlp.retry.backoff;
    ts->export.backoff_max_ms = (int64_t) TAP_MAX(cf->otlp.retry.backoff_max,
        cf->otlp.retry.backoff);
    ts->export.ca_file = tap_opt(cf->otlp.tls.ca_file);
    ts->export.verify = cf->otlp.tls.verify != 0;
    ts->export.cert = tap_opt(cf->otlp.tls.cert);
    ts->export.key = tap_opt(cf->otlp.tls.key);
    ts->gzip = cf->otlp.compression == TAP_CONF_COMPRESSION_GZIP;
    ts->delta = cf->otlp.metrics_temporality != TAP_CONF_TEMPORALITY_CUMULATIVE;
    ts->metrics_interval_ms = (int64_t) TAP_MAX(cf->otlp.metrics_interval, 10);
    ts->traces_delay_ms = (int64_t) TAP_MAX(cf->otlp.traces_batch.delay, 1);
    ts->traces_max_queue = (unsigned) cf->otlp.traces_batch.max_queue;
    ts->traces_max_batch = (unsigned) TAP_MIN(cf->otlp.traces_batch.max_batch,
        cf->otlp.traces_batch.max_queue);
    ts->logs_delay_ms = (int64_t) TAP_MAX(cf->otlp.logs_batch.delay, 1);
    ts->logs_max_queue = (unsigned) cf->otlp.logs_batch.max_queue;
    ts->logs_max_batch = (unsigned) TAP_MIN(cf->otlp.logs_batch.max_batch,
        cf->otlp.logs_batch.max_queue);
    for (q = 16; q < (unsigned) cf->telemetry.queue_size; q <<= 1) {
        /* a power of two */
    }
    ts->queue_size = q;
    ts->max_label_values = (unsigned) cf->metrics.max_label_values;
    ts->tail_errors = cf->sampling.tail.errors != 0;
    ts->tail_anomalies = cf->sampling.tail.anomalies != 0;
    ts->tail_slower_than_ms = (int64_t) cf->sampling.tail.slower_than;
    ts->tail_min_tokens = cf->sampling.tail.min_tokens;
    ts->analysis = cf->analysis.enabled != 0;
    ts->prompt_capacity = (unsigned) cf->analysis.prompt_table_size;
    ts->prefix_capacity = (unsigned) cf->analysis.template_table_size;
    ts->anomaly_k = cf->analysis.anomaly_k;
    ts->anomaly_min_samples = (unsigned) cf->analysis.anomaly_min_samples;

    s->has_tel = s->has_admin || ts->nurls[TAP_SIGNAL_TRACES] > 0
                 || ts->nurls[TAP_SIGNAL_METRICS] > 0 || ts->nurls[TAP_SIGNAL_LOGS] > 0;
    return TAP_OK;
}


static void
tap_psettings_tel_cleanup(tap_tsettings_t *ts)
{
    tap_conf_list_t  l;
    size_t           i, k;

    l = (tap_conf_list_t) { (char **) ts->resource, ts->nresource };
    tap_conf_list_free(&l);
    l = (tap_conf_list_t) { (char **) ts->export.headers, ts->export.nheaders };
    tap_conf_list_free(&l);
    for (i = 0; i < TAP_SIGNAL_N; i++) {
        for (k = 0; k < ts->nurls[i]; k++) {
            free(ts->urls[i][k]);
        }
        free(ts->urls[i]);
    }
    *ts = (tap_tsettings_t) { 0 };
}


int
tap_psettings_from_conf(tap_psettings_t *s, const struct tap_conf_s *cf, char **err)
{
    size_t  i;
    char   *filters;

    tap_psettings_defaults(s);
    *err = NULL;

    s->nlisten = cf->listen.n;
    s->listen = calloc(s->nlisten ? s->nlisten : 1, sizeof(tap_paddr_t));
    s->nservers = cf->upstreams.n;
    s->servers = calloc(s->nservers ? s->nservers : 1, sizeof(tap_paddr_t));
    if (s->listen == NULL || s->servers == NULL) {
        *err = strdup("out of memory");
        goto failed;
    }

    for (i = 0; i < cf->listen.n; i++) {
        if (tap_paddr_parse(&s->listen[i], cf->listen.items[i], NULL) != TAP_OK) {
            if (asprintf(err, "listen %s: not a valid address", cf->listen.items[i]) < 0) {
                *err = NULL;
            }
            goto failed;
        }
    }
    if (cf->admin[0] != '\0' && strcmp(cf->admin, "off") != 0) {
        if (tap_paddr_parse(&s->admin, cf->admin, NULL) != TAP_OK) {
            if (asprintf(err, "admin %s: not a valid address", cf->admin) < 0) {
                *err = NULL;
            }
            goto failed;
        }
        s->has_admin = 1;
    }
    for (i = 0; i < cf->upstreams.n; i++) {
        if (tap_psettings_server(&s->servers[i], cf->upstreams.items[i], err) != TAP_OK) {
            goto failed;
        }
    }

    s->workers = cf->workers > 0 ? (unsigned) cf->workers : 0;
    s->access_log = (cf->access_log[0] == '\0' || strcmp(cf->access_log, "off") == 0)
        ? NULL : cf->access_log;
    if (cf->request_id_header[0] != '\0') {
        s->request_id_header = cf->request_id_header;
    }
    s->balance = cf->balance == TAP_CONF_BALANCE_LEAST_REQUEST
        ? TAP_BALANCE_LEAST_REQUEST : TAP_BALANCE_ROUND_ROBIN;
    s->retries = cf->retries > 0 ? (unsigned) cf->retries : 0;
    s->pool_max_idle = cf->pool.max_idle > 0 ? (unsigned) cf->pool.max_idle : 0;
    s->pool_idle_timeout_ms = (int64_t) cf->pool.idle_timeout;
    s->health_fails = cf->health.fails > 0 ? (unsigned) cf->health.fails : 0;
    s->health_backoff_ms = (int64_t) cf->health.backoff;
    s->health_backoff_max_ms = (int64_t) TAP_MAX(cf->health.backoff_max, cf->health.backoff);
    s->health_interval_ms = (int64_t) cf->health.interval;
    s->health_timeout_ms = (int64_t) cf->health.timeout;
    s->health_path = cf->health.path[0] != '\0' ? cf->health.path : "/health";
    s->connect_ms = (int64_t) cf->timeouts.connect;
    s->response_header_ms = (int64_t) cf->timeouts.response_header;
    s->stream_idle_ms = (int64_t) cf->timeouts.stream_idle;
    s->client_header_ms = (int64_t) cf->timeouts.client_header;
    s->client_body_ms = (int64_t) cf->timeouts.client_body;
    s->keepalive_ms = (int64_t) cf->timeouts.keepalive;
    s->drain_ms = (int64_t) cf->timeouts.drain;
    s->max_header_bytes = (size_t) cf->limits.max_header_bytes;
    s->max_body_bytes = cf->limits.max_body_bytes;
    s->max_connections = cf->limits.max_connections > 0 ? (unsigned) cf->limits.max_connections
        : 0;

    s->admin_token = tap_opt(cf->admin_token);
    s->tls_cert = tap_opt(cf->tls.cert);
    s->tls_key = tap_opt(cf->tls.key);
    s->tls13_only = cf->tls.min_version == TAP_CONF_TLS_1_3;
    s->up_verify = cf->upstream_tls.verify != 0;
    s->up_ca_file = tap_opt(cf->upstream_tls.ca_file);
    s->up_sni = tap_opt(cf->upstream_tls.sni);
    s->up_cert = tap_opt(cf->upstream_tls.cert);
    s->up_key = tap_opt(cf->upstream_tls.key);

    filters = strcmp(cf->filters, "off") == 0 ? NULL : cf->filters;
    if (tap_fconf_build(&s->fconf, &filters, filters != NULL, cf->routes.items, cf->routes.n,
            cf->scores.items, cf->scores.n, (size_t) cf->limits.capture_bytes, cf->inject_usage,
            err) != TAP_OK)
    {
        goto failed;
    }
    s->has_fconf = 1;
    if (tap_psettings_tel(s, cf, err) != TAP_OK) {
        goto failed;
    }
    return TAP_OK;

failed:

    if (*err == NULL) {
        *err = strdup("invalid configuration");
    }
    tap_psettings_cleanup(s);
    return TAP_ERROR;
}


void
tap_psettings_cleanup(tap_psettings_t *s)
{
    if (s == NULL) {
        return;
    }
    free(s->listen);
    free(s->servers);
    if (s->has_fconf) {
        tap_fconf_cleanup(&s->fconf);
        s->has_fconf = 0;
    }
    tap_psettings_tel_cleanup(&s->tel);
    s->listen = NULL;
    s->servers = NULL;
    s->nlisten = s->nservers = 0;
}
