/*
 * export.c: OTLP/HTTP exporters (export.h).
 *
 * One exporter posts the bodies of one signal to one URL.  Bodies wait in a
 * FIFO bounded in items; the head is the body being sent or waiting for its
 * next attempt, so one request at most is in flight and bodies go out in the
 * order they came.  Every send starts from one timer (e->timer): a new body
 * arms it with no delay, a retry with its backoff.  Callbacks of libevent
 * therefore never send nor free anything themselves: they record the outcome
 * and arm the timer, and a tap_exporter_send() from anywhere never re-enters
 * the HTTP client.
 *
 * The connection is libevent's evhttp client over a socket or an OpenSSL
 * bufferevent, kept alive between requests.  libevent 2.1 reconnects a reset
 * connection with the same bufferevent, which does not work for a TLS one
 * (the SSL object keeps the old session's state), so a connection that saw
 * an error or a close (its close callback ran) is marked stale and replaced
 * by a new one on the next send.  A host name is resolved with an evdns base
 * of the exporter's own; address literals need none.
 *
 * Each request has a deadline of timeout_ms from the send, connect and TLS
 * handshake included, kept by e->deadline; evhttp's own timeouts (inactivity,
 * the same value) only back it up.  At the deadline the connection is freed,
 * which drops the request without calling its callbacks.
 *
 * Outcomes follow the OTLP/HTTP specification: 2xx is success, and a
 * partial_success in the (maybe gzip-encoded) response counts its rejected
 * items; 429, 502, 503, 504 and transport errors (refused, reset, timeout, a
 * close without an answer) are retried after an exponential backoff with full
 * jitter, or after exactly Retry-After (delta seconds or HTTP-date) when the
 * response has one, both capped at backoff_max_ms; any other status, and a
 * response over TAP_EXPORT_MAX_RESPONSE, fails at once.  The jitter comes
 * from a xoshiro256** generator per exporter, seeded once at creation.
 *
 * A body is shared by the exporters it is fanned out to (reference counted)
 * and is handed to libevent by reference, never copied: the request's buffer
 * holds one more reference until libevent lets go of it.
 */

#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/ssl.h>
#include <zlib.h>

#include "tap_core.h"
#include "tlsctx.h"
#include "version.h"
#include "proxy/trace.h"
#include "telemetry/export.h"
#include "telemetry/pb.h"

#define TAP_EXPORT_MAX_RESPONSE  (4 * 1024 * 1024)   /* OTLP's recommended response limit */
#define TAP_EXPORT_MAX_HEADERS   (64 * 1024)

typedef enum {
    TAP_EXPORT_DONE = 0,               /* 2xx: exported, maybe partly rejected */
    TAP_EXPORT_RETRY,                  /* retryable: another attempt if any is left */
    TAP_EXPORT_FAIL,                   /* refused for good */
} tap_export_outcome_e;

typedef struct tap_export_item_s  tap_export_item_t;

struct tap_export_item_s {
    tap_export_item_t  *next;
    tap_body_t         *body;
    unsigned            sends;         /* requests made with this body so far */
};

struct tap_exporter_s {
    struct event_base         *base;
    tap_signal_e               signal;
    tap_export_conf_t          conf;
    char                      *url;
    char                      *host;           /* to connect to (no IPv6 brackets) */
    char                      *host_header;    /* host[:port] as the Host header */
    char                      *target;         /* path[?query] */
    int                        port;
    SSL_CTX                   *ssl_ctx;        /* https only */
    struct evdns_base         *dns;            /* a host name only */
    struct evhttp_connection  *conn;
    struct evhttp_request     *req;            /* in flight, or NULL */
    struct event              *timer;          /* the next send */
    struct event              *deadline;       /* the request in flight times out */
    tap_export_item_t         *head;           /* being sent, or waiting to be resent */
    tap_export_item_t         *tail;
    tap_rng_t                  rng;            /* backoff jitter */
    tap_export_stats_t         stats;
    char                       user_agent[64];
    unsigned                   conn_stale:1;   /* replace conn before the next send */
    unsigned                   too_long:1;     /* the response went over its limit */
    unsigned                   user_host:1;    /* conf.headers has a Host */
    unsigned                   user_agent_set:1;  /* conf.headers has a User-Agent */
    unsigned                   failing:1;      /* the last finished body failed (logged) */
};

const char *const  tap_signal_names[TAP_SIGNAL_N] = { "traces", "metrics", "logs" };

/* headers that frame the request: the exporter owns them */
static const char *const  tap_export_reserved[] = {
    "content-length", "transfer-encoding", "connection", "content-type", "content-encoding",
};

static const ProtobufCMessageDescriptor *const  tap_export_resp_desc[TAP_SIGNAL_N] = {
    &opentelemetry__proto__collector__trace__v1__export_trace_service_response__descriptor,
    &opentelemetry__proto__collector__metrics__v1__export_metrics_service_response__descriptor,
    &opentelemetry__proto__collector__logs__v1__export_logs_service_response__descriptor,
};


static void tap_export_on_timer(evutil_socket_t fd, short what, void *arg);
static void tap_export_on_deadline(evutil_socket_t fd, short what, void *arg);


tap_body_t *
tap_body_new(size_t cap)
{
    tap_body_t  *b;

    b = malloc(sizeof(tap_body_t) + (cap ? cap : 1));
    if (b == NULL) {
        return NULL;
    }
    b->refs = 1;
    b->items = 0;
    b->gzip = 0;
    b->len = 0;
    b->data = b->mem;
    b->spare = NULL;
    b->cap = cap;
    return b;
}


int
tap_body_grow(tap_body_t **bp, size_t cap)
{
    tap_body_t  *b;

    if (cap <= (*bp)->cap) {
        return TAP_OK;
    }
    b = realloc(*bp, sizeof(tap_body_t) + cap);
    if (b == NULL) {
        return TAP_ERROR;
    }
    b->data = b->mem;
    b->cap = cap;
    *bp = b;
    return TAP_OK;
}


tap_body_t *
tap_body_pack(const ProtobufCMessage *msg, unsigned items, int gzip)
{
    tap_body_t  *b;
    uint8_t     *raw;
    size_t       len;

    len = protobuf_c_message_get_packed_size(msg);

    if (!gzip) {
        b = tap_body_new(len);
        if (b != NULL) {
            b->len = protobuf_c_message_pack(msg, b->data);
            b->items = items;
        }
        return b;
    }

    raw = malloc(len ? len : 1);
    if (raw == NULL) {
        return NULL;
    }
    len = protobuf_c_message_pack(msg, raw);
    b = tap_body_gzip(raw, len, items);
    free(raw);
    return b;
}


tap_body_t *
tap_body_gzip(const uint8_t *data, size_t len, unsigned items)
{
    tap_body_t  *b = NULL, *nb;
    z_stream     zs;
    size_t       bound;

    /* level 1: OTLP bodies are repetitive (attribute keys, ids), so the fastest level
     * already shrinks them several times, at a fraction of the default level's CPU */
    memset(&zs, 0, sizeof(zs));
    if (deflateInit2(&zs, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY)
        != Z_OK)
    {
        return NULL;
    }

    bound = deflateBound(&zs, (uLong) len);
    b = tap_body_new(bound);
    if (b == NULL) {
        goto failed;
    }
    zs.next_in = (Bytef *) data;
    zs.avail_in = (uInt) len;
    zs.next_out = b->data;
    zs.avail_out = (uInt) bound;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        goto failed;
    }
    b->len = zs.total_out;
    deflateEnd(&zs);

    /* the body may wait in queues for a while: give back what the bound overshot */
    nb = realloc(b, sizeof(tap_body_t) + b->len);
    if (nb != NULL) {
        b = nb;
        b->data = b->mem;
        b->cap = b->len;
    }
    b->items = items;
    b->gzip = 1;
    return b;

failed:

    deflateEnd(&zs);
    free(b);
    return NULL;
}


void
tap_body_ref(tap_body_t *b)
{
    b->refs++;
}


void
tap_body_unref(tap_body_t *b)
{
    if (b != NULL && --b->refs == 0) {
        if (b->spare != NULL && *b->spare == NULL) {
            *b->spare = b;
        } else {
            free(b);
        }
    }
}


/* evbuffer_add_reference() cleanup: libevent is done with the body's bytes. */
static void
tap_export_on_body_freed(const void *data, size_t len, void *arg)
{
    TAP_UNUSED(data);
    TAP_UNUSED(len);
    tap_body_unref(arg);
}


static struct timeval
tap_export_tv(int64_t ms)
{
    struct timeval  tv;

    if (ms < 0) {
        ms = 0;
    }
    tv.tv_sec = (time_t) (ms / 1000);
    tv.tv_usec = (suseconds_t) ((ms % 1000) * 1000);
    return tv;
}


/*
 * The wait before resending a body sent `sends` times: backoff_ms doubled
 * per failed send up to backoff_max_ms, then a uniform draw in [0, that]
 * ("full jitter").
 */
static int64_t
tap_export_backoff(tap_exporter_t *e, unsigned sends)
{
    int64_t   wait = TAP_MAX(e->conf.backoff_ms, 0);
    int64_t   cap = TAP_MAX(e->conf.backoff_max_ms, wait);
    unsigned  i;

    for (i = 1; i < sends && wait < cap; i++) {
        wait *= 2;
    }
    wait = TAP_MIN(wait, cap);
    if (wait <= 0) {
        return 0;
    }
    return (int64_t) (tap_rng_next(&e->rng) % ((uint64_t) wait + 1));
}


/*
 * Retry-After (RFC 9110 10.2.3): delay seconds or an HTTP-date, in any of
 * the three date forms a recipient must accept.  Returns the wait in ms,
 * capped at backoff_max_ms, or -1 when v is absent or not understood.
 */
int64_t
tap_export_parse_retry_after(const char *v, int64_t cap_ms, time_t now)
{
    static const char *const  fmts[] = {
        "%a, %d %b %Y %H:%M:%S GMT",       /* IMF-fixdate */
        "%A, %d-%b-%y %H:%M:%S GMT",       /* RFC 850 */
        "%a %b %e %H:%M:%S %Y",            /* asctime() */
    };
    const char                *end;
    struct tm                  tm;
    int64_t                    secs = -1, cap = TAP_MAX(cap_ms, 0);
    time_t                     t;
    size_t                     i;

    if (v == NULL) {
        return -1;
    }
    while (*v == ' ' || *v == '\t') {
        v++;
    }

    if (isdigit((unsigned char) *v)) {
        secs = 0;
        for (end = v; isdigit((unsigned char) *end); end++) {
            if (secs < 1000000000) {
                secs = secs * 10 + (*end - '0');
            }
        }
        while (*end == ' ' || *end == '\t') {
            end++;
        }
        if (*end != '\0') {
            return -1;
        }

    } else {
        for (i = 0; i < TAP_NELEMS(fmts) && secs < 0; i++) {
            memset(&tm, 0, sizeof(tm));
            end = strptime(v, fmts[i], &tm);
            if (end == NULL) {
                continue;
            }
            while (*end == ' ' || *end == '\t') {
                end++;
            }
            if (*end != '\0' || (t = timegm(&tm)) == (time_t) -1) {
                continue;
            }
            t -= now;
            secs = t <= 0 ? 0 : TAP_MIN((int64_t) t, 1000000000);
        }
    }

    return secs < 0 ? -1 : TAP_MIN(secs * 1000, cap);
}


/* Inflates a gzip (or zlib) response into a malloc'd buffer of at most max bytes, or NULL. */
static uint8_t *
tap_export_inflate(const uint8_t *in, size_t len, size_t max, size_t *out_len)
{
    z_stream   zs;
    uint8_t   *out = NULL, *n;
    size_t     cap = 0;
    int        rc;

    memset(&zs, 0, sizeof(zs));
    if (inflateInit2(&zs, 15 + 32) != Z_OK) {
        return NULL;
    }
    zs.next_in = (Bytef *) in;
    zs.avail_in = (uInt) len;

    do {
        if (zs.total_out == cap) {
            if (cap >= max) {
                goto failed;
            }
            cap = cap ? TAP_MIN(cap * 2, max) : TAP_MIN(TAP_MAX(len * 4, 256), max);
            n = realloc(out, cap);
            if (n == NULL) {
                goto failed;
            }
            out = n;
        }
        zs.next_out = out + zs.total_out;
        zs.avail_out = (uInt) (cap - zs.total_out);
        rc = inflate(&zs, Z_NO_FLUSH);
    } while (rc == Z_OK);

    if (rc != Z_STREAM_END) {
        goto failed;
    }
    *out_len = zs.total_out;
    inflateEnd(&zs);
    return out;

failed:

    inflateEnd(&zs);
    free(out);
    return NULL;
}


uint64_t
tap_export_parse_response(tap_signal_e signal, const uint8_t *data, size_t len, int gzip)
{
    ProtobufCMessage        *msg;
    const tap_pb_tresp_t    *tr;
    const tap_pb_mresp_t    *mr;
    const tap_pb_lresp_t    *lr;
    uint8_t                 *plain = NULL;
    int64_t                  n = 0;

    if (len == 0 || (unsigned) signal >= TAP_SIGNAL_N) {
        return 0;
    }
    if (gzip) {
        plain = tap_export_inflate(data, len, TAP_EXPORT_MAX_RESPONSE, &len);
        if (plain == NULL) {
            return 0;
        }
        data = plain;
    }

    msg = protobuf_c_message_unpack(tap_export_resp_desc[signal], NULL, len, data);
    if (msg != NULL) {
        switch (signal) {
        case TAP_SIGNAL_TRACES:
            tr = (const tap_pb_tresp_t *) msg;
            if (tr->partial_success != NULL && tr->partial_success->has_rejected_spans) {
                n = tr->partial_success->rejected_spans;
            }
            break;
        case TAP_SIGNAL_METRICS:
            mr = (const tap_pb_mresp_t *) msg;
            if (mr->partial_success != NULL && mr->partial_success->has_rejected_data_points) {
                n = mr->partial_success->rejected_data_points;
            }
            break;
        default:
            lr = (const tap_pb_lresp_t *) msg;
            if (lr->partial_success != NULL && lr->partial_success->has_rejected_log_records) {
                n = lr->partial_success->rejected_log_records;
            }
            break;
        }
        protobuf_c_message_free_unpacked(msg, NULL);
    }
    free(plain);
    return n > 0 ? (uint64_t) n : 0;
}


/*
 * The items a 2xx response says were rejected (partial_success), 0 when the
 * body is empty or cannot be read: the status already said success.
 */
static uint64_t
tap_export_rejected(tap_exporter_t *e, struct evhttp_request *req)
{
    struct evbuffer  *in = evhttp_request_get_input_buffer(req);
    const char       *ce;
    uint8_t          *data;
    size_t            len = evbuffer_get_length(in);

    if (len == 0 || (data = evbuffer_pullup(in, -1)) == NULL) {
        return 0;
    }
    ce = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Encoding");
    return tap_export_parse_response(e->signal, data, len,
        ce != NULL && strcasecmp(ce, "gzip") == 0);
}


/* Arms the send timer; the timer is idle whenever this is called. */
static void
tap_export_schedule(tap_exporter_t *e, int64_t ms)
{
    struct timeval  tv = tap_export_tv(ms);

    evtimer_add(e->timer, &tv);
}


static void
tap_export_drop_conn(tap_exporter_t *e)
{
    if (e->conn != NULL) {
        evhttp_connection_set_closecb(e->conn, NULL, NULL);
        evhttp_connection_free(e->conn);
        e->conn = NULL;
    }
    e->conn_stale = 0;
    e->req = NULL;
}


/*
 * The head body's request ended.  A retryable outcome with attempts left
 * waits wait_ms (or the backoff when -1) and goes again; anything else
 * takes the body off the queue, counts it and moves on to the next.
 */
static void
tap_export_finish(tap_exporter_t *e, tap_export_outcome_e oc, uint64_t rejected, int64_t wait_ms,
    const char *why)
{
    tap_export_item_t  *it = e->head;
    uint64_t            items = it->body->items;

    if (oc == TAP_EXPORT_RETRY && it->sends < TAP_MAX(e->conf.max_attempts, 1)) {
        tap_export_schedule(e, wait_ms >= 0 ? wait_ms : tap_export_backoff(e, it->sends));
        return;
    }

    if (oc == TAP_EXPORT_DONE) {
        rejected = TAP_MIN(rejected, items);
        e->stats.exported += items - rejected;
        e->stats.rejected += rejected;
        if (e->failing) {
            e->failing = 0;
            fprintf(stderr, "infertap: OTLP %s export to %s works again\n",
                tap_signal_names[e->signal], e->host_header);
        }
    } else {
        e->stats.failed += items;
        if (!e->failing) {
            e->failing = 1;
            fprintf(stderr, "infertap: OTLP %s export to %s failed: %s\n",
                tap_signal_names[e->signal], e->host_header, why);
        }
    }

    e->head = it->next;
    if (e->head == NULL) {
        e->tail = NULL;
    }
    e->stats.queued -= items;
    tap_body_unref(it->body);
    free(it);

    if (e->head != NULL) {
        tap_export_schedule(e, 0);
    }
}


/* evhttp close callback: the connection went down; do not reuse it. */
static void
tap_export_on_close(struct evhttp_connection *conn, void *arg)
{
    tap_exporter_t  *e = arg;

    TAP_UNUSED(conn);
    e->conn_stale = 1;
}


/* evhttp error callback; runs just before the response callback gets NULL. */
static void
tap_export_on_error(enum evhttp_request_error err, void *arg)
{
    tap_exporter_t  *e = arg;

    if (err == EVREQ_HTTP_DATA_TOO_LONG) {
        e->too_long = 1;
    }
}


/*
 * evhttp response callback: req is NULL, or has status 0, when the request
 * failed below HTTP.  May run from inside evhttp_make_request() (an
 * immediate connect failure): it only records and arms the timer.
 */
static void
tap_export_on_response(struct evhttp_request *req, void *arg)
{
    tap_exporter_t  *e = arg;
    char             why[32];
    int              status;

    e->req = NULL;
    evtimer_del(e->deadline);

    status = req != NULL ? evhttp_request_get_response_code(req) : 0;
    if (status == 0) {
        e->conn_stale = 1;
        if (e->too_long) {
            tap_export_finish(e, TAP_EXPORT_FAIL, 0, -1, "response too large");
        } else {
            tap_export_finish(e, TAP_EXPORT_RETRY, 0, -1, "connection failed");
        }
        return;
    }

    snprintf(why, sizeof(why), "status %d", status);
    if (status >= 200 && status < 300) {
        tap_export_finish(e, TAP_EXPORT_DONE, tap_export_rejected(e, req), -1, NULL);

    } else if (status == 429 || status == 502 || status == 503 || status == 504) {
        tap_export_finish(e, TAP_EXPORT_RETRY, 0,
            tap_export_parse_retry_after(evhttp_find_header(evhttp_request_get_input_headers(req),
                "Retry-After"), e->conf.backoff_max_ms, time(NULL)), why);

    } else {
        tap_export_finish(e, TAP_EXPORT_FAIL, 0, -1, why);
    }
}


/* The request in flight is late: drop it with its connection, then retry. */
static void
tap_export_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    tap_exporter_t  *e = arg;

    TAP_UNUSED(fd);
    TAP_UNUSED(what);
    if (e->req == NULL) {
        return;
    }
    tap_export_drop_conn(e);
    tap_export_finish(e, TAP_EXPORT_RETRY, 0, -1, "timed out");
}


/* A TLS bufferevent for a new connection: SNI and the name to verify. */
static int
tap_export_connect(tap_exporter_t *e)
{
    struct bufferevent  *bev;
    struct timeval       tv;

    if (e->ssl_ctx != NULL) {
        bev = tap_tls_client_bev(e->base, e->ssl_ctx, e->host, e->conf.verify,
            BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
    } else {
        bev = bufferevent_socket_new(e->base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (bev == NULL) {
        return TAP_ERROR;
    }
    e->conn = evhttp_connection_base_bufferevent_new(e->base, e->dns, bev, e->host,
        (ev_uint16_t) e->port);
    if (e->conn == NULL) {
        bufferevent_free(bev);
        return TAP_ERROR;
    }
    evhttp_connection_set_closecb(e->conn, tap_export_on_close, e);
    evhttp_connection_set_max_body_size(e->conn, TAP_EXPORT_MAX_RESPONSE);
    evhttp_connection_set_max_headers_size(e->conn, TAP_EXPORT_MAX_HEADERS);
    if (e->conf.timeout_ms > 0) {
        tv = tap_export_tv(e->conf.timeout_ms);
        evhttp_connection_set_timeout_tv(e->conn, &tv);
    }
    e->conn_stale = 0;
    return TAP_OK;
}


/* Builds the request for body b: headers, and the body by reference. */
static struct evhttp_request *
tap_export_request(tap_exporter_t *e, tap_body_t *b)
{
    struct evhttp_request  *req;
    struct evkeyvalq       *h;
    size_t                  i;

    req = evhttp_request_new(tap_export_on_response, e);
    if (req == NULL) {
        return NULL;
    }
    evhttp_request_set_error_cb(req, tap_export_on_error);
    h = evhttp_request_get_output_headers(req);
    if ((!e->user_host && evhttp_add_header(h, "Host", e->host_header) != 0)
        || (!e->user_agent_set && evhttp_add_header(h, "User-Agent", e->user_agent) != 0)
        || evhttp_add_header(h, "Content-Type", "application/x-protobuf") != 0
        || (b->gzip && evhttp_add_header(h, "Content-Encoding", "gzip") != 0))
    {
        goto failed;
    }
    for (i = 0; i + 1 < e->conf.nheaders; i += 2) {
        if (evhttp_add_header(h, e->conf.headers[i], e->conf.headers[i + 1]) != 0) {
            goto failed;
        }
    }

    if (b->len > 0) {
        tap_body_ref(b);
        if (evbuffer_add_reference(evhttp_request_get_output_buffer(req), b->data, b->len,
                tap_export_on_body_freed, b) != 0)
        {
            tap_body_unref(b);
            goto failed;
        }
    }
    return req;

failed:

    evhttp_request_free(req);
    return NULL;
}


/* The send timer: (re)sends the head body on a live or new connection. */
static void
tap_export_on_timer(evutil_socket_t fd, short what, void *arg)
{
    tap_exporter_t         *e = arg;
    tap_export_item_t      *it = e->head;
    struct evhttp_request  *req;
    struct timeval          tv;

    TAP_UNUSED(fd);
    TAP_UNUSED(what);
    if (it == NULL || e->req != NULL) {
        return;
    }

    if (e->conn != NULL && e->conn_stale) {
        tap_export_drop_conn(e);
    }
    req = NULL;
    if (e->conn != NULL || tap_export_connect(e) == TAP_OK) {
        req = tap_export_request(e, it->body);
    }
    if (req == NULL) {
        /* out of memory or TLS objects: spend an attempt so that it ends */
        it->sends++;
        tap_export_finish(e, TAP_EXPORT_RETRY, 0, -1, "cannot create a request");
        return;
    }

    if (it->sends > 0) {
        e->stats.retried += it->body->items;
    }
    it->sends++;
    e->stats.requests++;
    e->too_long = 0;
    e->req = req;

    /*
     * On a connect error detected at once, libevent calls the response
     * callback from in here (which clears e->req).  It returns -1 only when
     * out of memory, having freed req.
     */
    if (evhttp_make_request(e->conn, req, EVHTTP_REQ_POST, e->target) != 0) {
        e->req = NULL;
        e->conn_stale = 1;
        tap_export_finish(e, TAP_EXPORT_RETRY, 0, -1, "cannot send a request");
        return;
    }
    if (e->req != NULL && e->conf.timeout_ms > 0) {
        tv = tap_export_tv(e->conf.timeout_ms);
        evtimer_add(e->deadline, &tv);
    }
}


/* An allocated "what file: OpenSSL's reason" message. */
/* Checks the configured headers: a token name, no line break in the value, no framing header. */
static int
tap_export_check_headers(tap_exporter_t *e, char **err)
{
    const char  *name, *value, *p;
    size_t       i, j;

    if (e->conf.nheaders % 2 != 0) {
        *err = strdup("headers: a name without a value");
        return TAP_ERROR;
    }
    for (i = 0; i < e->conf.nheaders; i += 2) {
        name = e->conf.headers[i];
        value = e->conf.headers[i + 1];
        if (name == NULL || value == NULL || *name == '\0') {
            goto bad;
        }
        for (p = name; *p; p++) {
            if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 127
                || strchr("\"(),/:;<=>?@[\\]{}", *p) != NULL)
            {
                goto bad;
            }
        }
        if (strpbrk(value, "\r\n") != NULL) {
            goto bad;
        }
        for (j = 0; j < TAP_NELEMS(tap_export_reserved); j++) {
            if (strcasecmp(name, tap_export_reserved[j]) == 0) {
                if (asprintf(err, "headers: %s is set by the exporter", name) < 0) {
                    *err = NULL;
                }
                return TAP_ERROR;
            }
        }
        if (strcasecmp(name, "host") == 0) {
            e->user_host = 1;
        } else if (strcasecmp(name, "user-agent") == 0) {
            e->user_agent_set = 1;
        }
    }
    return TAP_OK;

bad:

    if (asprintf(err, "headers: invalid header \"%s\"", name ? name : "(null)") < 0) {
        *err = NULL;
    }
    return TAP_ERROR;
}


/* Splits url into what the exporter needs; fills *err on failure. */
static int
tap_export_parse_url(tap_exporter_t *e, const char *url, char **err)
{
    struct evhttp_uri  *u;
    const char         *scheme, *host, *path, *query;
    size_t              hlen;
    int                 https, port, n;

    u = evhttp_uri_parse(url);
    if (u == NULL) {
        goto bad;
    }
    scheme = evhttp_uri_get_scheme(u);
    host = evhttp_uri_get_host(u);
    if (scheme == NULL || host == NULL || *host == '\0') {
        goto bad;
    }
    if (strcasecmp(scheme, "https") == 0) {
        https = 1;
    } else if (strcasecmp(scheme, "http") == 0) {
        https = 0;
    } else {
        goto bad;
    }
    port = evhttp_uri_get_port(u);
    if (port == 0 || port > 65535) {
        goto bad;
    }
    e->port = port > 0 ? port : (https ? 443 : 80);

    hlen = strlen(host);
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') {
        e->host = strndup(host + 1, hlen - 2);
    } else {
        e->host = strdup(host);
    }
    if (port > 0 && port != (https ? 443 : 80)) {
        n = asprintf(&e->host_header, "%s:%d", host, port);
    } else {
        n = asprintf(&e->host_header, "%s", host);
    }
    if (n < 0) {
        e->host_header = NULL;
    }
    path = evhttp_uri_get_path(u);
    query = evhttp_uri_get_query(u);
    if (path == NULL || *path == '\0') {
        path = "/";
    }
    if (asprintf(&e->target, "%s%s%s", path, query ? "?" : "", query ? query : "") < 0) {
        e->target = NULL;
    }
    if (https && e->host != NULL) {
        if (e->conf.key != NULL && e->conf.cert == NULL) {
            *err = strdup("a client key needs a client certificate");
            evhttp_uri_free(u);
            return TAP_ERROR;
        }
        e->ssl_ctx = tap_tls_client_ctx(e->conf.verify, e->conf.ca_file,
            "cannot load the CA file", e->conf.cert, e->conf.key, err);
        if (e->ssl_ctx == NULL) {
            evhttp_uri_free(u);
            return TAP_ERROR;
        }
    }
    evhttp_uri_free(u);
    if (e->host == NULL || e->host_header == NULL || e->target == NULL) {
        *err = strdup("out of memory");
        return TAP_ERROR;
    }
    return TAP_OK;

bad:

    if (u != NULL) {
        evhttp_uri_free(u);
    }
    if (asprintf(err, "invalid OTLP endpoint \"%s\": an http:// or https:// URL is needed",
            url) < 0)
    {
        *err = NULL;
    }
    return TAP_ERROR;
}


tap_exporter_t *
tap_exporter_new(struct event_base *base, tap_signal_e signal, const char *url,
    const tap_export_conf_t *conf, char **err)
{
    tap_exporter_t  *e;
    unsigned char    addr[sizeof(struct in6_addr)];

    *err = NULL;
    if ((unsigned) signal >= TAP_SIGNAL_N) {
        *err = strdup("unknown OTLP signal");
        return NULL;
    }
    e = calloc(1, sizeof(tap_exporter_t));
    if (e == NULL) {
        *err = strdup("out of memory");
        return NULL;
    }
    e->base = base;
    e->signal = signal;
    e->conf = *conf;
    snprintf(e->user_agent, sizeof(e->user_agent), "infertap/%s", TAP_VERSION);
    tap_rng_seed(&e->rng);

    e->url = strdup(url);
    if (e->url == NULL) {
        *err = strdup("out of memory");
        goto failed;
    }
    if (tap_export_check_headers(e, err) != TAP_OK || tap_export_parse_url(e, url, err) != TAP_OK) {
        goto failed;
    }

    if (inet_pton(AF_INET, e->host, addr) != 1 && inet_pton(AF_INET6, e->host, addr) != 1) {
        /* resolving a name through getaddrinfo() would block the loop */
        e->dns = evdns_base_new(base,
            EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (e->dns == NULL) {
            if (asprintf(err, "%s: cannot set up a DNS resolver", url) < 0) {
                *err = NULL;
            }
            goto failed;
        }
    }

    e->timer = evtimer_new(base, tap_export_on_timer, e);
    e->deadline = evtimer_new(base, tap_export_on_deadline, e);
    if (e->timer == NULL || e->deadline == NULL) {
        *err = strdup("out of memory");
        goto failed;
    }
    return e;

failed:

    tap_exporter_free(e);
    return NULL;
}


int
tap_exporter_send(tap_exporter_t *e, tap_body_t *b)
{
    tap_export_item_t  *it;

    if (e->stats.queued + b->items > e->conf.max_queue
        || (it = malloc(sizeof(tap_export_item_t))) == NULL)
    {
        e->stats.dropped += b->items;
        return TAP_DECLINED;
    }
    tap_body_ref(b);
    it->next = NULL;
    it->body = b;
    it->sends = 0;
    if (e->tail != NULL) {
        e->tail->next = it;
    } else {
        e->head = it;
    }
    e->tail = it;
    e->stats.queued += b->items;

    /* a new head starts now; otherwise the head's end moves on to this one */
    if (e->head == it) {
        tap_export_schedule(e, 0);
    }
    return TAP_OK;
}


const char *
tap_exporter_url(const tap_exporter_t *e)
{
    return e->url;
}


tap_signal_e
tap_exporter_signal(const tap_exporter_t *e)
{
    return e->signal;
}


void
tap_exporter_stats(const tap_exporter_t *e, tap_export_stats_t *out)
{
    *out = e->stats;
}


int
tap_exporter_busy(const tap_exporter_t *e)
{
    return e->head != NULL;
}


void
tap_exporter_free(tap_exporter_t *e)
{
    tap_export_item_t  *it;

    if (e == NULL) {
        return;
    }

    /* freeing the connection drops the request in flight without a callback */
    tap_export_drop_conn(e);
    while ((it = e->head) != NULL) {
        e->head = it->next;
        e->stats.dropped += it->body->items;
        e->stats.queued -= it->body->items;
        tap_body_unref(it->body);
        free(it);
    }
    e->tail = NULL;

    if (e->timer != NULL) {
        event_free(e->timer);
    }
    if (e->deadline != NULL) {
        event_free(e->deadline);
    }
    if (e->dns != NULL) {
        /* fail (and so release) a lookup of a connection freed above */
        evdns_base_free(e->dns, 1);
    }
    SSL_CTX_free(e->ssl_ctx);
    free(e->url);
    free(e->host);
    free(e->host_header);
    free(e->target);
    free(e);
}
