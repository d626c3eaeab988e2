/*
 * admin.c: the admin listener: /healthz, /readyz, /metrics, /stats,
 * /stats/prompts and /stats/templates.
 *
 * It runs on the control thread's event_base (the thread that called
 * tap_proxy_run(), never a worker), with libevent's evhttp: the admin side
 * is low-volume and off the data path, so a small generic server is enough.
 * /metrics renders the telemetry hub's metric registry (src/telemetry/), the
 * same series OTLP exports, as Prometheus text or OpenMetrics.  The proxy's
 * own families are declared here; their values are the workers' counters,
 * read with relaxed atomic loads and summed just before each read, so
 * reading them never stops a worker.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "tap_core.h"
#include "proxy/proxy-int.h"


static const char *const  tap_limit_names[TAP_LIMIT_N] = {
    [TAP_LIMIT_CONNECT_TIMEOUT] = "connect_timeout",
    [TAP_LIMIT_RESPONSE_HEADER_TIMEOUT] = "response_header_timeout",
    [TAP_LIMIT_STREAM_IDLE_TIMEOUT] = "stream_idle_timeout",
    [TAP_LIMIT_CLIENT_HEADER_TIMEOUT] = "client_header_timeout",
    [TAP_LIMIT_CLIENT_BODY_TIMEOUT] = "client_body_timeout",
    [TAP_LIMIT_KEEPALIVE_TIMEOUT] = "keepalive_timeout",
    [TAP_LIMIT_MAX_HEADER_BYTES] = "max_header_bytes",
    [TAP_LIMIT_MAX_BODY_BYTES] = "max_body_bytes",
    [TAP_LIMIT_MAX_CONNECTIONS] = "max_connections",
    [TAP_LIMIT_ACCESS_LOG] = "access_log_dropped",
};


static void
tap_admin_reply(struct evhttp_request *req, int code, const char *reason, const char *ctype,
    struct evbuffer *body)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
    evhttp_send_reply(req, code, reason, body);
}


static int
tap_admin_ready(tap_proxy_t *px)
{
    int64_t  now_ms = tap_coarse_ns() / 1000000;
    size_t   i;

    if (__atomic_load_n(&px->draining, __ATOMIC_RELAXED)) {
        return 0;
    }
    for (i = 0; i < px->ps->nservers; i++) {
        if (tap_health_up(px, (unsigned) i, now_ms)) {
            return 1;
        }
    }
    return 0;
}


/* The proxy's own families; their values live in the workers' counters. */

static const char *const  tap_l_code[] = { "code" };
static const char *const  tap_l_upstream[] = { "upstream" };
static const char *const  tap_l_limit[] = { "limit" };
static const char *const  tap_l_parse[] = { "side", "outcome" };

static const tap_mfam_def_t  tap_d_requests = {
    "infertap.requests", "", "Requests answered, by status class.", TAP_METRIC_COUNTER, 1,
    NULL, 0, tap_l_code, 1,
};
static const tap_mfam_def_t  tap_d_active = {
    "infertap.active_connections", "", "Open client connections.", TAP_METRIC_GAUGE, 1,
    NULL, 0, NULL, 0,
};
static const tap_mfam_def_t  tap_d_accepted = {
    "infertap.connections_accepted", "", "Client connections accepted.", TAP_METRIC_COUNTER, 1,
    NULL, 0, NULL, 0,
};
static const tap_mfam_def_t  tap_d_healthy = {
    "infertap.upstream.healthy", "", "1 when the upstream server is not ejected.",
    TAP_METRIC_GAUGE, 1, NULL, 0, tap_l_upstream, 1,
};
static const tap_mfam_def_t  tap_d_limits = {
    "infertap.limits_hit", "", "Times a configured limit or timeout was hit.",
    TAP_METRIC_COUNTER, 1, NULL, 0, tap_l_limit, 1,
};
static const tap_mfam_def_t  tap_d_retries = {
    "infertap.upstream.retries", "", "Requests retried on another attempt.",
    TAP_METRIC_COUNTER, 1, NULL, 0, NULL, 0,
};
static const tap_mfam_def_t  tap_d_parsed = {
    "infertap.bodies_parsed", "", "Bodies of exchanges a protocol filter read, by side and "
    "outcome.", TAP_METRIC_COUNTER, 1, NULL, 0, tap_l_parse, 2,
};

/* The /stats series, read by Prometheus and OTLP too: one family per figure. */
static const char *const  tap_l_series[] = { "model", "upstream", "route", "status" };

#define TAP_LAT_FAM(n, h, b)                                                                   \
    { n, "s", h, TAP_METRIC_HISTOGRAM, 0, b, TAP_NELEMS(b), tap_l_series, 4 }

static const tap_mfam_def_t  tap_d_lat[TAP_LAT_N] = {
    TAP_LAT_FAM("infertap.latency.e2e", "End to end, first request byte to last response byte, "
        "per /stats series.", tap_b_duration),
    TAP_LAT_FAM("infertap.latency.ttft", "Time to first token, per /stats series.", tap_b_ttft),
    TAP_LAT_FAM("infertap.latency.tpot", "Time per output token, per /stats series.",
        tap_b_tpot),
    TAP_LAT_FAM("infertap.latency.upstream", "Upstream time, per /stats series.",
        tap_b_duration),
    TAP_LAT_FAM("infertap.latency.overhead", "Time inside infertap, per /stats series.",
        tap_b_overhead),
};

typedef struct tap_admin_fams_s {
    tap_mfam_t  *requests;
    tap_mfam_t  *active;
    tap_mfam_t  *accepted;
    tap_mfam_t  *healthy;
    tap_mfam_t  *limits;
    tap_mfam_t  *retries;
    tap_mfam_t  *parsed;
    tap_mfam_t  *lat[TAP_LAT_N];
} tap_admin_fams_t;


/*
 * One merged /stats series into the latency families: each histogram bucket
 * goes to the explicit bucket of its midpoint, so a count can land one
 * bucket off when a value lies within 1/128 of a bound.
 */
static void
tap_admin_collect_series(void *arg, const tap_lseries_t *key, tap_hist_t (*wh)[TAP_LAT_N])
{
    tap_hist_t         *h = wh[TAP_LSTATS_WINS - 1];           /* since start */
    tap_admin_fams_t   *f = arg;
    tap_hist_bucket_t   b;
    const char         *v[4];
    uint64_t            counts[TAP_METRIC_MAX_BOUNDS + 1];
    const double       *bounds;
    double              mid;
    size_t              it, nb, i;
    unsigned            k;

    v[0] = key->model;
    v[1] = key->upstream;
    v[2] = key->route;
    v[3] = key->status;
    for (k = 0; k < TAP_LAT_N; k++) {
        if (tap_hist_count(&h[k]) == 0) {
            continue;
        }
        bounds = tap_d_lat[k].bounds;
        nb = tap_d_lat[k].nbounds;
        memset(counts, 0, sizeof(counts));
        for (it = 0; tap_hist_next(&h[k], &it, &b) == TAP_OK; ) {
            mid = ((double) b.lo + (double) b.hi) / 2e9;
            for (i = 0; i < nb && mid > bounds[i]; i++) {
                /* the first bound at or above the midpoint */
            }
            counts[i] += b.count;
        }
        tap_metric_set_histogram(f->lat[k], v, counts, tap_hist_count(&h[k]),
            tap_hist_sum(&h[k]) / 1e9, (double) tap_hist_min(&h[k]) / 1e9,
            (double) tap_hist_max(&h[k]) / 1e9);
    }
}


/* Sums the workers' counters (relaxed atomic loads: no worker ever waits) into the registry. */
static void
tap_admin_collect(tap_mreg_t *reg, void *arg)
{
    static const char *const  classes[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
    tap_proxy_t              *px = arg;
    tap_admin_fams_t         *f = px->fams;
    uint64_t                  req[6] = { 0 }, lim[TAP_LIMIT_N] = { 0 }, retries = 0;
    uint64_t                  accepted = 0, parse[2][TAP_GEN_PARSE_N] = { { 0 } };
    int64_t                   active = 0, now_ms = tap_coarse_ns() / 1000000;
    const char               *v[2];
    unsigned                  i, k;

    for (i = 0; i < px->nworkers; i++) {
        tap_wstats_t  *st = &px->workers[i].st;

        for (k = 0; k < 6; k++) {
            req[k] += TAP_STAT_GET(st->requests[k]);
        }
        for (k = 0; k < TAP_LIMIT_N; k++) {
            lim[k] += TAP_STAT_GET(st->limits[k]);
        }
        retries += TAP_STAT_GET(st->retries);
        for (k = 0; k < TAP_GEN_PARSE_N; k++) {
            parse[0][k] += TAP_STAT_GET(st->parse[0][k]);
            parse[1][k] += TAP_STAT_GET(st->parse[1][k]);
        }
        accepted += TAP_STAT_GET(st->accepted);
        active += (int64_t) TAP_STAT_GET(st->active_conns);
        lim[TAP_LIMIT_ACCESS_LOG] += TAP_STAT_GET(px->workers[i].log.dropped);
    }

    lim[TAP_LIMIT_ACCESS_LOG] += tap_tel_access_log_dropped(px->tel);
    for (k = 0; k < TAP_NELEMS(classes); k++) {
        v[0] = classes[k];
        tap_metric_set(f->requests, v, (double) req[k + 1]);
    }
    tap_metric_set(f->active, NULL, (double) (active < 0 ? 0 : active));
    tap_metric_set(f->accepted, NULL, (double) accepted);
    for (i = 0; i < px->ps->nservers; i++) {
        v[0] = px->ps->servers[i].text;
        tap_metric_set(f->healthy, v, tap_health_up(px, i, now_ms) ? 1 : 0);
    }
    for (k = 0; k < TAP_LIMIT_N; k++) {
        v[0] = tap_limit_names[k];
        tap_metric_set(f->limits, v, (double) lim[k]);
    }
    tap_metric_set(f->retries, NULL, (double) retries);
    if (px->ps->max_series > 0) {
        tap_lstats_t  *shards[px->nworkers ? px->nworkers : 1];

        for (i = 0; i < px->nworkers; i++) {
            shards[i] = &px->workers[i].lat;
        }
        tap_lstats_each(shards, px->nworkers, (uint64_t) tap_now_ns(), tap_admin_collect_series,
            f);
    }
    for (i = 0; i < 2; i++) {
        for (k = 1; k < TAP_GEN_PARSE_N; k++) {
            v[0] = i == 0 ? "request" : "response";
            v[1] = tap_gen_parse_names[k];
            tap_metric_set(f->parsed, v, (double) parse[i][k]);
        }
    }
}


int
tap_admin_metrics_init(tap_proxy_t *px)
{
    tap_mreg_t        *reg = tap_tel_registry(px->tel);
    tap_admin_fams_t  *f = calloc(1, sizeof(tap_admin_fams_t));
    unsigned           k;

    px->fams = f;
    if (f == NULL
        || (f->requests = tap_mreg_add(reg, &tap_d_requests)) == NULL
        || (f->active = tap_mreg_add(reg, &tap_d_active)) == NULL
        || (f->accepted = tap_mreg_add(reg, &tap_d_accepted)) == NULL
        || (f->healthy = tap_mreg_add(reg, &tap_d_healthy)) == NULL
        || (f->limits = tap_mreg_add(reg, &tap_d_limits)) == NULL
        || (f->retries = tap_mreg_add(reg, &tap_d_retries)) == NULL
        || (f->parsed = tap_mreg_add(reg, &tap_d_parsed)) == NULL)
    {
        return TAP_ERROR;
    }
    for (k = 0; k < TAP_LAT_N && px->ps->max_series > 0; k++) {
        f->lat[k] = tap_mreg_add(reg, &tap_d_lat[k]);
        if (f->lat[k] == NULL) {
            return TAP_ERROR;
        }
    }
    tap_tel_on_collect_hook(px->tel, tap_admin_collect, px);
    return TAP_OK;
}


void
tap_admin_metrics_cleanup(tap_proxy_t *px)
{
    free(px->fams);
    px->fams = NULL;
}


/* GET /stats: the workers' latency series, merged. */
static void
tap_admin_stats(tap_proxy_t *px, struct evbuffer *b)
{
    tap_lstats_t  *shards[px->nworkers ? px->nworkers : 1];
    unsigned       i;

    for (i = 0; i < px->nworkers; i++) {
        shards[i] = &px->workers[i].lat;
    }
    tap_lstats_json(shards, px->nworkers, (uint64_t) tap_now_ns(), b);
}


/*
 * OpenMetrics when the client prefers it: Prometheus lists
 * application/openmetrics-text first (with the higher q) when it can parse
 * it; anything else gets the Prometheus text format.
 */
static int
tap_admin_wants_openmetrics(struct evhttp_request *req)
{
    const char  *accept;

    accept = evhttp_find_header(evhttp_request_get_input_headers(req), "Accept");
    return accept != NULL && strstr(accept, "application/openmetrics-text") != NULL;
}


/* The request path (without its query) is exactly lit. */
#define TAP_ADMIN_IS(uri, plen, lit)                                                            \
    ((plen) == sizeof(lit) - 1 && memcmp(uri, lit, sizeof(lit) - 1) == 0)


/*
 * With admin_token set, every admin endpoint but the probes (/healthz,
 * /readyz, which orchestrators call without credentials) wants
 * "Authorization: Bearer <token>", compared in constant time.
 */
static int
tap_admin_allowed(tap_proxy_t *px, struct evhttp_request *req, const char *uri, size_t plen)
{
    const char  *token = px->ps->admin_token, *auth;
    size_t       tlen;

    if (token == NULL
        || TAP_ADMIN_IS(uri, plen, "/healthz")
        || TAP_ADMIN_IS(uri, plen, "/readyz"))
    {
        return 1;
    }
    auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    tlen = strlen(token);
    return auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0 && strlen(auth + 7) == tlen
           && CRYPTO_memcmp(auth + 7, token, tlen) == 0;
}


static void
tap_admin_on_request(struct evhttp_request *req, void *arg)
{
    tap_proxy_t      *px = arg;
    const char       *uri = evhttp_request_get_uri(req);
    struct evbuffer  *b = evbuffer_new();
    const char       *query, *err = NULL;
    size_t            plen;

    if (b == NULL) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    plen = strcspn(uri, "?");

    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET
        && evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
    {
        evbuffer_add_printf(b, "{\"error\":{\"message\":\"method not allowed\","
            "\"type\":\"infertap_error\",\"code\":\"method_not_allowed\"}}\n");
        tap_admin_reply(req, 405, "Method Not Allowed", "application/json", b);

    } else if (!tap_admin_allowed(px, req, uri, plen)) {
        evbuffer_add_printf(b, "{\"error\":{\"message\":\"admin_token required\","
            "\"type\":\"infertap_error\",\"code\":\"unauthorized\"}}\n");
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
            "Bearer realm=\"infertap\"");
        tap_admin_reply(req, 401, "Unauthorized", "application/json", b);

    } else if (TAP_ADMIN_IS(uri, plen, "/healthz")) {
        evbuffer_add(b, "ok\n", 3);
        tap_admin_reply(req, 200, "OK", "text/plain; charset=utf-8", b);

    } else if (TAP_ADMIN_IS(uri, plen, "/readyz")) {
        if (tap_admin_ready(px)) {
            evbuffer_add(b, "ready\n", 6);
            tap_admin_reply(req, 200, "OK", "text/plain; charset=utf-8", b);
        } else {
            evbuffer_add(b, "not ready\n", 10);
            tap_admin_reply(req, 503, "Service Unavailable", "text/plain; charset=utf-8", b);
        }

    } else if (TAP_ADMIN_IS(uri, plen, "/metrics")) {
        if (tap_admin_wants_openmetrics(req)) {
            tap_tel_prometheus(px->tel, b, 1);
            tap_admin_reply(req, 200, "OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8", b);
        } else {
            tap_tel_prometheus(px->tel, b, 0);
            tap_admin_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b);
        }

    } else if (TAP_ADMIN_IS(uri, plen, "/stats")) {
        tap_admin_stats(px, b);
        tap_admin_reply(req, 200, "OK", "application/json", b);

    } else if (TAP_ADMIN_IS(uri, plen, "/stats/prompts")
               || TAP_ADMIN_IS(uri, plen, "/stats/templates"))
    {
        query = uri[plen] == '?' ? uri + plen + 1 : "";
        if (tap_tel_prompts_json(px->tel, TAP_ADMIN_IS(uri, plen, "/stats/templates"), query,
                strlen(query), b, &err) == TAP_OK)
        {
            evbuffer_add(b, "\n", 1);
            tap_admin_reply(req, 200, "OK", "application/json", b);
        } else {
            evbuffer_drain(b, evbuffer_get_length(b));
            evbuffer_add_printf(b, "{\"error\":{\"message\":\"%s\","
                "\"type\":\"infertap_error\",\"code\":\"bad_request\"}}\n", err);
            tap_admin_reply(req, 400, "Bad Request", "application/json", b);
        }

    } else {
        evbuffer_add_printf(b, "{\"error\":{\"message\":\"not found\","
            "\"type\":\"infertap_error\",\"code\":\"not_found\"}}\n");
        tap_admin_reply(req, 404, "Not Found", "application/json", b);
    }
    evbuffer_free(b);
}


int
tap_admin_start(tap_proxy_t *px, struct evhttp **out)
{
    struct evhttp          *http;
    struct evconnlistener  *l;
    const tap_paddr_t      *a = &px->ps->admin;

    http = evhttp_new(px->base);
    if (http == NULL) {
        fprintf(stderr, "infertap: admin: out of memory\n");
        return TAP_ERROR;
    }
    l = evconnlistener_new_bind(px->base, NULL, NULL,
        LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1,
        (const struct sockaddr *) &a->ss, (int) a->len);
    if (l == NULL || evhttp_bind_listener(http, l) == NULL) {
        fprintf(stderr, "infertap: admin: cannot listen on %s\n", a->text);
        if (l != NULL) {
            evconnlistener_free(l);
        }
        evhttp_free(http);
        return TAP_ERROR;
    }
    evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST
        | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_timeout(http, 10);
    evhttp_set_gencb(http, tap_admin_on_request, px);
    *out = http;
    return TAP_OK;
}
