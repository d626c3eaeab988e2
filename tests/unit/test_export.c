/*
 * test_export.c: unit tests of the OTLP/HTTP exporters (src/telemetry/export.c).
 *
 * Each test runs an in-process collector: an evhttp server on 127.0.0.1, port 0, on the same
 * event_base as the exporter, answering each request as the test planned it (status,
 * Retry-After, a delay before the answer, a close without an answer, a partial_success body,
 * maybe gzip-encoded).  The collector records what arrived: body, headers, path, the client's
 * port (keep-alive) and the arrival time.  A test queues bodies, runs the loop until the exporter
 * is idle and then checks both sides: what the collector saw and the exporter's counters.
 *
 * Covered: a body arrives intact, plain and gzip (inflated back to the packed bytes), with its
 * content type, encoding, Host, User-Agent and a configured header, over one kept-alive
 * connection; 503 then 200 is retried; Retry-After in seconds sets the wait (about 1 s,
 * measured); an HTTP-date Retry-After on a 429 (a future date capped at backoff_max_ms, a past
 * one meaning now); 400 fails at once; a closed port is tried max_attempts times; a collector
 * slower than timeout_ms and one that closes without answering are retried; a full queue drops
 * and counts; partial_success counts rejected items (plain and gzip responses); freeing the
 * exporter with bodies queued and one in flight releases everything (run under ASan); https
 * with a certificate made here, trusted through ca_file, refused without it, accepted with
 * verification off; and the errors tap_exporter_new() reports.  Output is TAP
 * (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/util.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <zlib.h>

#include "tap_core.h"
#include "version.h"
#include "telemetry/export.h"
#include "telemetry/pb.h"

#define TAP_T_MAX_PLANS    8
#define TAP_T_MAX_REQS     16
#define TAP_T_MAX_DELAYED  8
#define TAP_T_MAX_SPANS    32

typedef struct tap_t_plan_s {
    int           status;              /* 0: close the connection without an answer */
    const char   *retry_after;
    int           delay_ms;            /* before answering */
    int64_t       rejected;            /* > 0: a partial_success with this count */
    int           gzip;                /* gzip-encode the response body */
} tap_t_plan_t;

typedef struct tap_t_col_s  tap_t_col_t;

typedef struct tap_t_delayed_s {
    tap_t_col_t            *col;
    struct event           *ev;
    struct evhttp_request  *req;
    const tap_t_plan_t     *plan;
} tap_t_delayed_t;

struct tap_t_col_s {
    struct event_base   *base;
    struct evhttp       *http;
    SSL_CTX             *tls;          /* https collector */
    int                  port;
    tap_signal_e         signal;       /* for the partial_success type */
    tap_t_plan_t         plans[TAP_T_MAX_PLANS];
    size_t               nplans;       /* requests past the plans get a plain 200 */
    size_t               nreq;
    int64_t              at_ms[TAP_T_MAX_REQS];     /* arrival, monotonic */
    int                  peer[TAP_T_MAX_REQS];      /* client port */
    tap_t_delayed_t      delayed[TAP_T_MAX_DELAYED];
    size_t               ndelayed;
    uint8_t             *body;         /* of the last request */
    size_t               body_len;
    char                 path[64];
    char                 ctype[64];
    char                 cenc[32];
    char                 agent[64];
    char                 auth[64];
    char                 host[64];
};

typedef struct tap_t_fix_s {
    struct event_base   *base;
    tap_t_col_t          col;
} tap_t_fix_t;

/* a request body: up to TAP_T_MAX_SPANS spans in automatic storage */
typedef struct tap_t_msg_s {
    tap_pb_treq_t        req;
    tap_pb_rspans_t      rs;
    tap_pb_rspans_t     *rsp[1];
    tap_pb_sspans_t      ss;
    tap_pb_sspans_t     *ssp[1];
    tap_pb_span_t        span[TAP_T_MAX_SPANS];
    tap_pb_span_t       *spanp[TAP_T_MAX_SPANS];
    uint8_t              ids[TAP_T_MAX_SPANS][24];
    char                 names[TAP_T_MAX_SPANS][32];
} tap_t_msg_t;


static char *const  tap_t_headers[] = { "Authorization", "Bearer s3cret" };


static int64_t
tap_t_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static tap_export_conf_t
tap_t_conf(void)
{
    tap_export_conf_t  c;

    memset(&c, 0, sizeof(c));
    c.headers = tap_t_headers;
    c.nheaders = 2;
    c.timeout_ms = 2000;
    c.max_queue = 1000;
    c.max_attempts = 5;
    c.backoff_ms = 20;
    c.backoff_max_ms = 200;
    c.verify = 1;
    return c;
}


/* Fills m with an ExportTraceServiceRequest of n spans. */
static void
tap_t_msg(tap_t_msg_t *m, unsigned n)
{
    static const tap_pb_treq_t    treq =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    static const tap_pb_rspans_t  rs = OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
    static const tap_pb_sspans_t  ss = OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
    static const tap_pb_span_t    span = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
    unsigned                      i, j;

    assert_true(n <= TAP_T_MAX_SPANS);
    m->req = treq;
    m->rs = rs;
    m->ss = ss;
    m->rsp[0] = &m->rs;
    m->ssp[0] = &m->ss;
    m->req.n_resource_spans = 1;
    m->req.resource_spans = m->rsp;
    m->rs.n_scope_spans = 1;
    m->rs.scope_spans = m->ssp;
    m->ss.n_spans = n;
    m->ss.spans = m->spanp;
    for (i = 0; i < n; i++) {
        m->span[i] = span;
        m->spanp[i] = &m->span[i];
        for (j = 0; j < 24; j++) {
            m->ids[i][j] = (uint8_t) (i * 31 + j * 7 + 1);
        }
        snprintf(m->names[i], sizeof(m->names[i]), "chat model-%u", i);
        m->span[i].name = m->names[i];
        m->span[i].has_trace_id = 1;
        m->span[i].trace_id.len = 16;
        m->span[i].trace_id.data = m->ids[i];
        m->span[i].has_span_id = 1;
        m->span[i].span_id.len = 8;
        m->span[i].span_id.data = m->ids[i] + 16;
        m->span[i].has_start_time_unix_nano = 1;
        m->span[i].start_time_unix_nano = 1700000000000000000ull + i;
    }
}


static tap_body_t *
tap_t_body(unsigned n, int gzip)
{
    tap_t_msg_t  m;
    tap_body_t  *b;

    tap_t_msg(&m, n);
    b = tap_body_pack(&m.req.base, n, gzip);
    assert_non_null(b);
    return b;
}


/* Inflates a gzip stream; returns a malloc'd buffer. */
static uint8_t *
tap_t_gunzip(const uint8_t *in, size_t len, size_t *out_len)
{
    z_stream   zs;
    uint8_t   *out;
    size_t     cap = 1 << 20;

    out = malloc(cap);
    assert_non_null(out);
    memset(&zs, 0, sizeof(zs));
    assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = (Bytef *) in;
    zs.avail_in = (uInt) len;
    zs.next_out = out;
    zs.avail_out = (uInt) cap;
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    inflateEnd(&zs);
    return out;
}


static void
tap_t_copy_header(char *dst, size_t size, struct evkeyvalq *h, const char *name)
{
    const char  *v = evhttp_find_header(h, name);

    snprintf(dst, size, "%s", v != NULL ? v : "");
}


/* The response body a plan asks for: a partial_success of the collector's signal. */
static tap_body_t *
tap_t_response(tap_t_col_t *col, const tap_t_plan_t *p)
{
    tap_pb_tresp_t  tr =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
    tap_pb_mresp_t  mr =
        OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_SERVICE_RESPONSE__INIT;
    tap_pb_lresp_t  lr =
        OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_RESPONSE__INIT;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess      tp =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
    Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsPartialSuccess  mp =
        OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_PARTIAL_SUCCESS__INIT;
    Opentelemetry__Proto__Collector__Logs__V1__ExportLogsPartialSuccess        lp =
        OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_PARTIAL_SUCCESS__INIT;

    switch (col->signal) {
    case TAP_SIGNAL_TRACES:
        tp.has_rejected_spans = 1;
        tp.rejected_spans = p->rejected;
        tp.error_message = "spans too old";
        tr.partial_success = &tp;
        return tap_body_pack(&tr.base, 0, p->gzip);
    case TAP_SIGNAL_METRICS:
        mp.has_rejected_data_points = 1;
        mp.rejected_data_points = p->rejected;
        mp.error_message = "points too old";
        mr.partial_success = &mp;
        return tap_body_pack(&mr.base, 0, p->gzip);
    default:
        lp.has_rejected_log_records = 1;
        lp.rejected_log_records = p->rejected;
        lp.error_message = "records too old";
        lr.partial_success = &lp;
        return tap_body_pack(&lr.base, 0, p->gzip);
    }
}


static void
tap_t_answer(tap_t_col_t *col, struct evhttp_request *req, const tap_t_plan_t *p)
{
    struct evkeyvalq  *h = evhttp_request_get_output_headers(req);
    struct evbuffer   *out;
    tap_body_t        *b;

    if (p->status == 0) {
        evhttp_connection_free(evhttp_request_get_connection(req));
        return;
    }
    out = evbuffer_new();
    assert_non_null(out);
    evhttp_add_header(h, "Content-Type", "application/x-protobuf");
    if (p->retry_after != NULL) {
        evhttp_add_header(h, "Retry-After", p->retry_after);
    }
    if (p->rejected > 0) {
        b = tap_t_response(col, p);
        assert_non_null(b);
        evbuffer_add(out, b->data, b->len);
        if (p->gzip) {
            evhttp_add_header(h, "Content-Encoding", "gzip");
        }
        tap_body_unref(b);
    }
    evhttp_send_reply(req, p->status, "Planned", out);
    evbuffer_free(out);
}


static void
tap_t_on_delayed(evutil_socket_t fd, short what, void *arg)
{
    tap_t_delayed_t  *d = arg;

    TAP_UNUSED(fd);
    TAP_UNUSED(what);
    tap_t_answer(d->col, d->req, d->plan);
    event_free(d->ev);
    d->ev = NULL;
}


static void
tap_t_on_request(struct evhttp_request *req, void *arg)
{
    static const tap_t_plan_t  ok = { 200, NULL, 0, 0, 0 };
    tap_t_col_t               *col = arg;
    struct evkeyvalq          *h = evhttp_request_get_input_headers(req);
    struct evbuffer           *in = evhttp_request_get_input_buffer(req);
    const tap_t_plan_t        *p = col->nreq < col->nplans ? &col->plans[col->nreq] : &ok;
    tap_t_delayed_t           *d;
    struct timeval             tv;
    char                      *peer;
    ev_uint16_t                port;

    assert_true(col->nreq < TAP_T_MAX_REQS);
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &peer, &port);
    col->peer[col->nreq] = port;
    col->at_ms[col->nreq] = tap_t_now_ms();
    col->nreq++;

    free(col->body);
    col->body_len = evbuffer_get_length(in);
    col->body = malloc(col->body_len + 1);
    assert_non_null(col->body);
    evbuffer_remove(in, col->body, col->body_len);
    snprintf(col->path, sizeof(col->path), "%s", evhttp_request_get_uri(req));
    tap_t_copy_header(col->ctype, sizeof(col->ctype), h, "Content-Type");
    tap_t_copy_header(col->cenc, sizeof(col->cenc), h, "Content-Encoding");
    tap_t_copy_header(col->agent, sizeof(col->agent), h, "User-Agent");
    tap_t_copy_header(col->auth, sizeof(col->auth), h, "Authorization");
    tap_t_copy_header(col->host, sizeof(col->host), h, "Host");

    if (p->delay_ms <= 0) {
        tap_t_answer(col, req, p);
        return;
    }
    assert_true(col->ndelayed < TAP_T_MAX_DELAYED);
    d = &col->delayed[col->ndelayed++];
    d->col = col;
    d->req = req;
    d->plan = p;
    d->ev = evtimer_new(col->base, tap_t_on_delayed, d);
    assert_non_null(d->ev);
    tv.tv_sec = p->delay_ms / 1000;
    tv.tv_usec = (p->delay_ms % 1000) * 1000;
    evtimer_add(d->ev, &tv);
}


static struct bufferevent *
tap_t_on_tls_bev(struct event_base *base, void *arg)
{
    tap_t_col_t  *col = arg;

    return bufferevent_openssl_socket_new(base, -1, SSL_new(col->tls), BUFFEREVENT_SSL_ACCEPTING,
        BEV_OPT_CLOSE_ON_FREE);
}


/* Starts the collector on 127.0.0.1, a free port; https with tls. */
static void
tap_t_col_start(tap_t_col_t *col, struct event_base *base, SSL_CTX *tls)
{
    struct evhttp_bound_socket  *bs;
    struct sockaddr_in           sin;
    socklen_t                    len = sizeof(sin);

    col->base = base;
    col->tls = tls;
    col->http = evhttp_new(base);
    assert_non_null(col->http);
    evhttp_set_gencb(col->http, tap_t_on_request, col);
    if (tls != NULL) {
        evhttp_set_bevcb(col->http, tap_t_on_tls_bev, col);
    }
    bs = evhttp_bind_socket_with_handle(col->http, "127.0.0.1", 0);
    assert_non_null(bs);
    assert_int_equal(getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *) &sin, &len),
        0);
    col->port = ntohs(sin.sin_port);
}


static void
tap_t_col_stop(tap_t_col_t *col)
{
    size_t  i;

    /* a request whose connection went away is the collector's to free */
    for (i = 0; i < col->ndelayed; i++) {
        if (col->delayed[i].ev != NULL) {
            event_free(col->delayed[i].ev);
            if (evhttp_request_get_connection(col->delayed[i].req) == NULL) {
                evhttp_request_free(col->delayed[i].req);
            }
        }
    }
    if (col->http != NULL) {
        evhttp_free(col->http);
    }
    free(col->body);
    memset(col, 0, sizeof(*col));
}


static int
tap_t_setup(void **state)
{
    tap_t_fix_t  *f = calloc(1, sizeof(tap_t_fix_t));

    assert_non_null(f);
    f->base = event_base_new();
    assert_non_null(f->base);
    tap_t_col_start(&f->col, f->base, NULL);
    *state = f;
    return 0;
}


static int
tap_t_teardown(void **state)
{
    tap_t_fix_t  *f = *state;

    tap_t_col_stop(&f->col);
    event_base_free(f->base);
    free(f);
    return 0;
}


static void
tap_t_on_guard(evutil_socket_t fd, short what, void *arg)
{
    TAP_UNUSED(fd);
    TAP_UNUSED(what);
    *(int *) arg = 1;
}


/* Runs the loop until e is idle, or for at most max_ms (then fails). */
static void
tap_t_run(struct event_base *base, tap_exporter_t *e, int max_ms)
{
    struct event    *guard;
    struct timeval   tv = { max_ms / 1000, (max_ms % 1000) * 1000 };
    int              late = 0;

    guard = evtimer_new(base, tap_t_on_guard, &late);
    assert_non_null(guard);
    evtimer_add(guard, &tv);
    while (tap_exporter_busy(e) && !late) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(guard);
    assert_false(late);
}


/* Runs the loop for ms milliseconds whatever happens. */
static void
tap_t_run_for(struct event_base *base, int ms)
{
    struct event    *guard;
    struct timeval   tv = { ms / 1000, (ms % 1000) * 1000 };
    int              late = 0;

    guard = evtimer_new(base, tap_t_on_guard, &late);
    assert_non_null(guard);
    evtimer_add(guard, &tv);
    while (!late) {
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(guard);
}


static tap_exporter_t *
tap_t_exporter(tap_t_fix_t *f, tap_signal_e sig, const tap_export_conf_t *conf)
{
    static const char *const  paths[] = { "/v1/traces", "/v1/metrics", "/v1/logs" };
    tap_exporter_t           *e;
    char                      url[128];
    char                     *err = NULL;

    snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", f->col.tls ? "https" : "http", f->col.port,
        paths[sig]);
    f->col.signal = sig;
    e = tap_exporter_new(f->base, sig, url, conf, &err);
    if (e == NULL) {
        fail_msg("tap_exporter_new: %s", err ? err : "(no message)");
    }
    assert_string_equal(tap_exporter_url(e), url);
    assert_int_equal(tap_exporter_signal(e), sig);
    return e;
}


/* Queues b on e and lets go of the test's reference. */
static int
tap_t_send(tap_exporter_t *e, tap_body_t *b)
{
    int  rc = tap_exporter_send(e, b);

    tap_body_unref(b);
    return rc;
}


static void
test_plain_body(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;
    tap_body_t         *b;
    char                host[64];
    tap_t_msg_t         m;
    uint8_t            *raw;
    size_t              len;

    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    b = tap_t_body(3, 0);
    assert_false(b->gzip);

    /* the same bytes protobuf-c packs */
    tap_t_msg(&m, 3);
    len = protobuf_c_message_get_packed_size(&m.req.base);
    raw = malloc(len);
    assert_non_null(raw);
    assert_int_equal(protobuf_c_message_pack(&m.req.base, raw), len);
    assert_int_equal(b->len, len);
    assert_memory_equal(b->data, raw, len);

    tap_body_ref(b);
    assert_int_equal(tap_t_send(e, b), TAP_OK);
    assert_true(tap_exporter_busy(e));
    tap_exporter_stats(e, &st);
    assert_int_equal(st.queued, 3);
    tap_t_run(f->base, e, 3000);

    assert_int_equal(f->col.nreq, 1);
    assert_int_equal(f->col.body_len, len);
    assert_memory_equal(f->col.body, raw, len);
    assert_string_equal(f->col.path, "/v1/traces");
    assert_string_equal(f->col.ctype, "application/x-protobuf");
    assert_string_equal(f->col.cenc, "");
    assert_string_equal(f->col.agent, "infertap/" TAP_VERSION);
    assert_string_equal(f->col.auth, "Bearer s3cret");
    snprintf(host, sizeof(host), "127.0.0.1:%d", f->col.port);
    assert_string_equal(f->col.host, host);

    /* a second body goes over the same connection */
    assert_int_equal(tap_t_send(e, b), TAP_OK);
    tap_t_run(f->base, e, 3000);
    assert_int_equal(f->col.nreq, 2);
    assert_int_equal(f->col.peer[1], f->col.peer[0]);

    tap_exporter_stats(e, &st);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.exported, 6);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retried, 0);
    assert_int_equal(st.failed + st.dropped + st.rejected, 0);
    assert_false(tap_exporter_busy(e));

    tap_exporter_free(e);
    free(raw);
}


static void
test_gzip_body(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;
    tap_body_t         *b;
    tap_t_msg_t         m;
    uint8_t            *raw, *plain;
    size_t              len, plen;

    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    b = tap_t_body(TAP_T_MAX_SPANS, 1);
    assert_true(b->gzip);
    assert_true(b->len > 18 && b->data[0] == 0x1f && b->data[1] == 0x8b);

    tap_t_msg(&m, TAP_T_MAX_SPANS);
    len = protobuf_c_message_get_packed_size(&m.req.base);
    raw = malloc(len);
    assert_non_null(raw);
    protobuf_c_message_pack(&m.req.base, raw);
    assert_true(b->len < len);

    assert_int_equal(tap_t_send(e, b), TAP_OK);
    tap_t_run(f->base, e, 3000);

    assert_int_equal(f->col.nreq, 1);
    assert_string_equal(f->col.cenc, "gzip");
    assert_string_equal(f->col.ctype, "application/x-protobuf");
    plain = tap_t_gunzip(f->col.body, f->col.body_len, &plen);
    assert_int_equal(plen, len);
    assert_memory_equal(plain, raw, len);

    tap_exporter_stats(e, &st);
    assert_int_equal(st.exported, TAP_T_MAX_SPANS);
    tap_exporter_free(e);
    free(plain);
    free(raw);
}


static void
test_retry_503(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;

    f->col.plans[0] = (tap_t_plan_t) { .status = 503 };
    f->col.plans[1] = (tap_t_plan_t) { .status = 503 };
    f->col.nplans = 2;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    assert_int_equal(tap_t_send(e, tap_t_body(4, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);

    assert_int_equal(f->col.nreq, 3);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.retried, 8);
    assert_int_equal(st.exported, 4);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.queued, 0);
    tap_exporter_free(e);
}


static void
test_retry_after_seconds(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;
    int64_t             gap;

    conf.backoff_max_ms = 5000;
    f->col.plans[0] = (tap_t_plan_t) { .status = 503, .retry_after = "1" };
    f->col.nplans = 1;
    e = tap_t_exporter(f, TAP_SIGNAL_METRICS, &conf);
    assert_int_equal(tap_t_send(e, tap_t_body(2, 0)), TAP_OK);
    tap_t_run(f->base, e, 4000);

    assert_int_equal(f->col.nreq, 2);
    gap = f->col.at_ms[1] - f->col.at_ms[0];
    assert_in_range(gap, 950, 1500);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.exported, 2);
    tap_exporter_free(e);
}


static void
tap_t_http_date(char *buf, size_t size, time_t t)
{
    struct tm  tm;

    gmtime_r(&t, &tm);
    strftime(buf, size, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}


static void
test_retry_after_date(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;
    char                future[64], past[64], asc[64];
    struct tm           tm;
    int64_t             gap;
    time_t              t, later;

    /*
     * Without Retry-After the wait would be 0 (backoff_ms 0).  A date 100 s
     * away waits backoff_max_ms exactly, in IMF-fixdate and in asctime()
     * form; a past date means now.
     */
    conf.backoff_ms = 0;
    conf.backoff_max_ms = 300;
    t = time(NULL);
    tap_t_http_date(future, sizeof(future), t + 100);
    tap_t_http_date(past, sizeof(past), t - 100);
    later = t + 100;
    gmtime_r(&later, &tm);
    strftime(asc, sizeof(asc), "%a %b %e %H:%M:%S %Y", &tm);
    f->col.plans[0] = (tap_t_plan_t) { .status = 429, .retry_after = future };
    f->col.plans[1] = (tap_t_plan_t) { .status = 429, .retry_after = past };
    f->col.plans[2] = (tap_t_plan_t) { .status = 503, .retry_after = asc };
    f->col.nplans = 3;
    e = tap_t_exporter(f, TAP_SIGNAL_LOGS, &conf);
    assert_int_equal(tap_t_send(e, tap_t_body(1, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);

    assert_int_equal(f->col.nreq, 4);
    gap = f->col.at_ms[1] - f->col.at_ms[0];
    assert_in_range(gap, 280, 900);
    gap = f->col.at_ms[2] - f->col.at_ms[1];
    assert_in_range(gap, 0, 150);
    gap = f->col.at_ms[3] - f->col.at_ms[2];
    assert_in_range(gap, 280, 900);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.retried, 3);
    assert_int_equal(st.exported, 1);
    tap_exporter_free(e);
}


static void
test_no_retry_400(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;

    f->col.plans[0] = (tap_t_plan_t) { .status = 400 };
    f->col.plans[1] = (tap_t_plan_t) { .status = 500 };
    f->col.nplans = 2;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    assert_int_equal(tap_t_send(e, tap_t_body(5, 0)), TAP_OK);
    assert_int_equal(tap_t_send(e, tap_t_body(2, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);

    /* each body was sent once: 400 and 500 are not retried */
    assert_int_equal(f->col.nreq, 2);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retried, 0);
    assert_int_equal(st.failed, 7);
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.queued, 0);
    tap_exporter_free(e);
}


static void
test_refused(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;
    int64_t             t0;

    /* nothing listens on the collector's port any more */
    tap_t_col_stop(&f->col);
    tap_t_col_start(&f->col, f->base, NULL);
    evhttp_free(f->col.http);
    f->col.http = NULL;

    conf.max_attempts = 3;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    t0 = tap_t_now_ms();
    assert_int_equal(tap_t_send(e, tap_t_body(2, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);

    tap_exporter_stats(e, &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.retried, 4);
    assert_int_equal(st.failed, 2);
    assert_int_equal(st.exported, 0);
    assert_int_equal(st.queued, 0);
    /* two waits of at most 20 and 40 ms */
    assert_true(tap_t_now_ms() - t0 < 1000);
    tap_exporter_free(e);
}


static void
test_timeout(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;
    int64_t             t0, took;

    conf.timeout_ms = 150;
    f->col.plans[0] = (tap_t_plan_t) { .status = 200, .delay_ms = 400 };
    f->col.nplans = 1;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    t0 = tap_t_now_ms();
    assert_int_equal(tap_t_send(e, tap_t_body(3, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);
    took = tap_t_now_ms() - t0;

    assert_int_equal(f->col.nreq, 2);
    assert_true(f->col.peer[1] != f->col.peer[0]);
    assert_in_range(took, 140, 550);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.retried, 3);
    assert_int_equal(st.exported, 3);
    assert_int_equal(st.failed, 0);
    tap_exporter_free(e);

    /* the late answer goes to a closed connection */
    tap_t_run_for(f->base, 300);
}


static void
test_close_without_answer(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;

    f->col.plans[0] = (tap_t_plan_t) { .status = 200 };
    f->col.plans[1] = (tap_t_plan_t) { .status = 0 };
    f->col.nplans = 2;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    assert_int_equal(tap_t_send(e, tap_t_body(1, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);
    assert_int_equal(tap_t_send(e, tap_t_body(2, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);

    /* the second body: the kept-alive connection closed on it, a new one took the retry */
    assert_int_equal(f->col.nreq, 3);
    assert_int_equal(f->col.peer[1], f->col.peer[0]);
    assert_true(f->col.peer[2] != f->col.peer[1]);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.requests, 3);
    assert_int_equal(st.retried, 2);
    assert_int_equal(st.exported, 3);
    tap_exporter_free(e);
}


static void
test_queue_full(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;
    char                date[64];

    /* the first answer comes after 50 ms; its retry waits 150 ms (a capped Retry-After) */
    conf.max_queue = 10;
    conf.backoff_max_ms = 150;
    tap_t_http_date(date, sizeof(date), time(NULL) + 100);
    f->col.plans[0] = (tap_t_plan_t) { .status = 503, .delay_ms = 50, .retry_after = date };
    f->col.nplans = 1;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    assert_int_equal(tap_t_send(e, tap_t_body(6, 0)), TAP_OK);
    assert_int_equal(tap_t_send(e, tap_t_body(6, 0)), TAP_DECLINED);
    assert_int_equal(tap_t_send(e, tap_t_body(4, 0)), TAP_OK);
    assert_int_equal(tap_t_send(e, tap_t_body(1, 0)), TAP_DECLINED);
    assert_int_equal(tap_t_send(e, tap_t_body(11, 0)), TAP_DECLINED);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.queued, 10);
    assert_int_equal(st.dropped, 18);

    /* still full while the first body waits for its retry */
    tap_t_run_for(f->base, 120);
    assert_int_equal(f->col.nreq, 1);
    assert_int_equal(tap_t_send(e, tap_t_body(1, 0)), TAP_DECLINED);

    tap_t_run(f->base, e, 3000);
    assert_int_equal(f->col.nreq, 3);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.exported, 10);
    assert_int_equal(st.dropped, 19);
    assert_int_equal(st.queued, 0);

    /* room again */
    assert_int_equal(tap_t_send(e, tap_t_body(10, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.exported, 20);
    tap_exporter_free(e);
}


static void
test_partial_success(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;
    tap_signal_e        sig;

    /* each signal's response type; metrics answers gzip-encoded */
    for (sig = TAP_SIGNAL_TRACES; sig < TAP_SIGNAL_N; sig++) {
        f->col.nreq = 0;
        f->col.plans[0] = (tap_t_plan_t) { .status = 200, .rejected = 3,
                                           .gzip = sig == TAP_SIGNAL_METRICS };
        f->col.plans[1] = (tap_t_plan_t) { .status = 200, .rejected = 50 };
        f->col.nplans = 2;
        e = tap_t_exporter(f, sig, &conf);
        assert_int_equal(tap_t_send(e, tap_t_body(5, 0)), TAP_OK);
        assert_int_equal(tap_t_send(e, tap_t_body(4, 0)), TAP_OK);
        assert_int_equal(tap_t_send(e, tap_t_body(2, 0)), TAP_OK);
        tap_t_run(f->base, e, 3000);

        /* no retry of a partial success; more rejected than sent counts what was sent */
        assert_int_equal(f->col.nreq, 3);
        tap_exporter_stats(e, &st);
        assert_int_equal(st.requests, 3);
        assert_int_equal(st.rejected, 3 + 4);
        assert_int_equal(st.exported, 2 + 0 + 2);
        assert_int_equal(st.failed, 0);
        tap_exporter_free(e);
    }
}


static void
test_free_pending(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_exporter_t     *e;
    tap_body_t         *b[3];
    int                 i;

    f->col.plans[0] = (tap_t_plan_t) { .status = 200, .delay_ms = 400 };
    f->col.nplans = 1;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    for (i = 0; i < 3; i++) {
        b[i] = tap_t_body(2, i == 1);
        assert_int_equal(tap_exporter_send(e, b[i]), TAP_OK);
        assert_int_equal(b[i]->refs, 2);
    }

    /* the first is in flight (the collector holds it), two wait */
    tap_t_run_for(f->base, 100);
    assert_int_equal(f->col.nreq, 1);
    assert_true(tap_exporter_busy(e));
    tap_exporter_free(e);

    /* once libevent has let the connection go, only the test's references are left */
    tap_t_run_for(f->base, 20);
    for (i = 0; i < 3; i++) {
        assert_int_equal(b[i]->refs, 1);
        tap_body_unref(b[i]);
    }

    /* an exporter waiting for a retry */
    f->col.nreq = 0;
    f->col.plans[0] = (tap_t_plan_t) { .status = 503, .retry_after = "10" };
    conf.backoff_max_ms = 60000;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    assert_int_equal(tap_t_send(e, tap_t_body(2, 0)), TAP_OK);
    tap_t_run_for(f->base, 100);
    assert_int_equal(f->col.nreq, 1);
    assert_true(tap_exporter_busy(e));
    tap_exporter_free(e);
    tap_exporter_free(NULL);
}


/* A self-signed certificate for 127.0.0.1 and otlp.test, written to path as PEM. */
static SSL_CTX *
tap_t_tls_server(const char *path)
{
    X509V3_CTX       v3;
    X509_EXTENSION  *ext;
    X509_NAME       *name;
    EVP_PKEY_CTX    *pc;
    EVP_PKEY        *key;
    SSL_CTX         *ctx;
    X509            *x;
    FILE            *fp;

    /* EVP_EC_gen() would be shorter, but OpenSSL 1.1.1 is supported */
    pc = EVP_PKEY_CTX_new_id(EVP_PKEY_EC, NULL);
    assert_non_null(pc);
    assert_int_equal(EVP_PKEY_keygen_init(pc), 1);
    assert_int_equal(EVP_PKEY_CTX_set_ec_paramgen_curve_nid(pc, NID_X9_62_prime256v1), 1);
    key = NULL;
    assert_int_equal(EVP_PKEY_keygen(pc, &key), 1);
    EVP_PKEY_CTX_free(pc);
    x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, key);
    name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *) "otlp.test",
        -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1,DNS:otlp.test");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    assert_non_null(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);

    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_X509(fp, x), 1);
    fclose(fp);

    ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(ctx);
    assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
    X509_free(x);
    EVP_PKEY_free(key);
    return ctx;
}


static void
test_https(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    tap_export_stats_t  st;
    tap_exporter_t     *e;
    SSL_CTX            *tls;
    char                ca[64];
    int                 fd;

    snprintf(ca, sizeof(ca), "/tmp/test_export_ca.XXXXXX");
    fd = mkstemp(ca);
    assert_true(fd >= 0);
    close(fd);
    tls = tap_t_tls_server(ca);
    tap_t_col_stop(&f->col);
    tap_t_col_start(&f->col, f->base, tls);

    /* trusted through ca_file, name checked against the IP address */
    conf.ca_file = ca;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    unlink(ca);                         /* read once, by tap_exporter_new() */
    assert_int_equal(tap_t_send(e, tap_t_body(3, 1)), TAP_OK);
    assert_int_equal(tap_t_send(e, tap_t_body(2, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.exported, 5);
    assert_int_equal(st.requests, 2);
    assert_int_equal(f->col.nreq, 2);
    assert_int_equal(f->col.peer[1], f->col.peer[0]);
    assert_string_equal(f->col.cenc, "");

    /* a TLS connection closed on a request: the retry needs a new one */
    f->col.plans[2] = (tap_t_plan_t) { .status = 0 };
    f->col.nplans = 3;
    assert_int_equal(tap_t_send(e, tap_t_body(4, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.exported, 9);
    assert_int_equal(st.retried, 4);
    assert_int_equal(f->col.nreq, 4);
    assert_int_equal(f->col.peer[2], f->col.peer[0]);
    assert_true(f->col.peer[3] != f->col.peer[2]);
    tap_exporter_free(e);
    f->col.nplans = 0;

    /* the system's CAs do not know this certificate: every attempt fails */
    f->col.nreq = 0;
    conf.ca_file = NULL;
    conf.max_attempts = 2;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    assert_int_equal(tap_t_send(e, tap_t_body(3, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.failed, 3);
    assert_int_equal(f->col.nreq, 0);
    tap_exporter_free(e);

    /* unless verification is off */
    conf.verify = 0;
    e = tap_t_exporter(f, TAP_SIGNAL_TRACES, &conf);
    assert_int_equal(tap_t_send(e, tap_t_body(3, 0)), TAP_OK);
    tap_t_run(f->base, e, 3000);
    tap_exporter_stats(e, &st);
    assert_int_equal(st.exported, 3);
    assert_int_equal(f->col.nreq, 1);
    tap_exporter_free(e);

    tap_t_col_stop(&f->col);
    SSL_CTX_free(tls);
}


static void
tap_t_new_fails(struct event_base *base, const char *url, const tap_export_conf_t *conf,
    const char *expect)
{
    tap_exporter_t  *e;
    char            *err = NULL;

    e = tap_exporter_new(base, TAP_SIGNAL_TRACES, url, conf, &err);
    assert_null(e);
    assert_non_null(err);
    if (strstr(err, expect) == NULL) {
        fail_msg("\"%s\" does not mention \"%s\"", err, expect);
    }
    free(err);
}


static void
test_new_errors(void **state)
{
    tap_t_fix_t        *f = *state;
    tap_export_conf_t   conf = tap_t_conf();
    char *const         crlf[] = { "X-Token", "a\r\nInjected: 1" };
    char *const         framing[] = { "Content-Length", "0" };

    tap_t_new_fails(f->base, "ftp://127.0.0.1/v1/traces", &conf, "ftp://127.0.0.1/v1/traces");
    tap_t_new_fails(f->base, "127.0.0.1:4318", &conf, "http://");
    tap_t_new_fails(f->base, "http:///v1/traces", &conf, "http://");

    conf.ca_file = "/nonexistent/ca.pem";
    tap_t_new_fails(f->base, "https://127.0.0.1:4318/v1/traces", &conf, "/nonexistent/ca.pem");
    conf.ca_file = NULL;
    conf.cert = "/nonexistent/client.pem";
    tap_t_new_fails(f->base, "https://127.0.0.1:4318/v1/traces", &conf, "/nonexistent/client.pem");
    conf.cert = NULL;

    conf.headers = crlf;
    tap_t_new_fails(f->base, "http://127.0.0.1:4318/v1/traces", &conf, "X-Token");
    conf.headers = framing;
    tap_t_new_fails(f->base, "http://127.0.0.1:4318/v1/traces", &conf, "Content-Length");
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_body, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_gzip_body, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_retry_503, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_seconds, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_date, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_no_retry_400, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_refused, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_timeout, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_close_without_answer, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_queue_full, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_partial_success, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_free_pending, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_https, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_new_errors, tap_t_setup, tap_t_teardown),
    };

    /* a collector closing on a request must not kill the test */
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
