/*
 * server.c: downstream (client) connections and the life of a transaction.
 *
 * A connection reads into its bufferevent and feeds the request parser one
 * contiguous piece of the input at a time.  The parser stops twice per
 * request: after the head (so the head is forwarded before any body byte is
 * looked at, and a bodiless request is known complete before an upstream is
 * chosen) and after the message (so a pipelined request waits in the input
 * buffer until the current response is complete; its bytes are parsed later
 * from a deferred event, never recursively).  While a request is in flight
 * the connection keeps reading, bounded by a read high-water mark, so a
 * client that goes away is noticed at once and its upstream is closed.
 *
 * One timer per connection follows its phase: keep-alive idle, request head
 * (slowloris: 408), request body (idle between reads: 408), linger.  Errors
 * infertap answers itself are OpenAI-shaped JSON.  After a local 4xx the
 * connection is closed gracefully: the response is flushed, the write side
 * shut down, and unread input drained for a bounded time so the client
 * reads the answer instead of a reset.
 *
 * Objects are never freed inside their own callbacks: a connection is
 * "busy" while one of its handlers runs and is destroyed when the outermost
 * handler returns (dead flag), in the manner of h2o and Redis.
 */

#include "config.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "tap_core.h"
#include "proxy/proxy-int.h"


static void tap_dconn_on_read(struct bufferevent *bev, void *arg);
static void tap_dconn_on_write(struct bufferevent *bev, void *arg);
static void tap_dconn_on_event(struct bufferevent *bev, short what, void *arg);
static void tap_dconn_on_timer(evutil_socket_t fd, short what, void *arg);
static void tap_dconn_on_resume(evutil_socket_t fd, short what, void *arg);
static void tap_dconn_rq_begin(void *ctx);
static int tap_dconn_rq_head(void *ctx);
static int tap_dconn_rq_body(void *ctx, const char *p, size_t len);
static void tap_dconn_destroy(tap_dconn_t *dc);
static void tap_dconn_close_graceful(tap_dconn_t *dc);


static const tap_reqp_cbs_t  tap_dconn_rq_cbs = {
    .on_begin = tap_dconn_rq_begin,
    .on_head = tap_dconn_rq_head,
    .on_body = tap_dconn_rq_body,
    .on_done = NULL,
};


static void
tap_dconn_set_phase(tap_dconn_t *dc, tap_dphase_e phase)
{
    const tap_psettings_t  *ps = dc->w->ps;
    int64_t                 ms = 0;

    dc->phase = phase;
    switch (phase) {
    case TAP_DPHASE_IDLE:
        ms = ps->keepalive_ms;
        break;
    case TAP_DPHASE_HEADER:
        ms = ps->client_header_ms;
        break;
    case TAP_DPHASE_BODY:
        ms = ps->client_body_ms;
        break;
    case TAP_DPHASE_LINGER:
        ms = TAP_PROXY_LINGER_MS;
        break;
    case TAP_DPHASE_NONE:
        break;
    }
    tap_lazy_set(&dc->timer, ms);
}


void
tap_dconn_accept(tap_worker_t *w, evutil_socket_t fd, const struct sockaddr *sa)
{
    tap_proxy_t  *px = w->px;
    tap_dconn_t  *dc;
    unsigned      n;
    int           one = 1;

    n = __atomic_add_fetch(&px->nconns, 1, __ATOMIC_RELAXED);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    dc = calloc(1, sizeof(*dc));
    if (dc == NULL) {
        goto failed;
    }
    dc->w = w;
    dc->bev = tap_tls_accept_bev(w->px, w->base, fd);
    dc->timer.ev = evtimer_new(w->base, tap_dconn_on_timer, dc);
    dc->utimer.ev = evtimer_new(w->base, tap_uconn_on_utimer, dc);
    dc->resume_ev = event_new(w->base, -1, 0, tap_dconn_on_resume, dc);
    if (dc->bev == NULL || dc->timer.ev == NULL || dc->utimer.ev == NULL
        || dc->resume_ev == NULL)
    {
        goto failed;
    }
    fd = -1;

    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, dc->ip, sizeof(dc->ip));
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, dc->ip,
            sizeof(dc->ip));
    } else {
        strcpy(dc->ip, "unix");
    }

    tap_reqp_init(&dc->rp, &tap_dconn_rq_cbs, dc, w->ps->max_header_bytes, w->ps->max_headers,
        w->ps->max_body_bytes);
    tap_respp_init(&dc->rsp, NULL, NULL, 0);       /* the header list, for its rid */
    tap_hlist_set_rid(&dc->rp.hl, w->ps->request_id_header);
    tap_hlist_set_rid(&dc->rsp.hl, w->ps->request_id_header);

    dc->next = w->conns;
    if (w->conns != NULL) {
        w->conns->prev = dc;
    }
    w->conns = dc;
    w->nconns++;
    TAP_STAT_ADD(w->st.active_conns, 1);
    TAP_STAT_ADD(w->st.accepted, 1);

    bufferevent_setcb(dc->bev, tap_dconn_on_read, tap_dconn_on_write, tap_dconn_on_event, dc);
    tap_rd_init(&dc->rd, dc->bev);
    tap_rd_set_high(&dc->rd, w->ps->max_header_bytes + 16384);
    bufferevent_setwatermark(dc->bev, EV_WRITE, TAP_PROXY_LOW_WATER, 0);
    bufferevent_disable(dc->bev, EV_WRITE);          /* see tap_rd_send() */
    tap_rd_enable(&dc->rd);

    if (px->ps->max_connections > 0 && n > px->ps->max_connections) {
        static const char  busy[] =
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            "Content-Length: 107\r\nConnection: close\r\n\r\n"
            "{\"error\":{\"message\":\"too many connections\",\"type\":\"infertap_error\","
            "\"code\":\"too_many_connections\"}}\n";

        TAP_STAT_ADD(w->st.limits[TAP_LIMIT_MAX_CONNECTIONS], 1);
        tap_rd_write(&dc->rd, busy, sizeof(busy) - 1);
        tap_dconn_close_graceful(dc);
        return;
    }

    tap_dconn_set_phase(dc, TAP_DPHASE_HEADER);
    return;

failed:

    __atomic_sub_fetch(&px->nconns, 1, __ATOMIC_RELAXED);
    if (dc != NULL) {
        if (dc->bev != NULL) {
            bufferevent_free(dc->bev);
        }
        if (dc->timer.ev != NULL) {
            event_free(dc->timer.ev);
        }
        if (dc->utimer.ev != NULL) {
            event_free(dc->utimer.ev);
        }
        if (dc->resume_ev != NULL) {
            event_free(dc->resume_ev);
        }
        free(dc);
    }
    if (fd >= 0) {
        evutil_closesocket(fd);
    }
}


static void
tap_dconn_destroy(tap_dconn_t *dc)
{
    tap_worker_t  *w = dc->w;

    if (dc->busy > 0) {
        dc->dead = 1;
        return;
    }
    if (dc->txn != NULL) {
        tap_dconn_kill(dc, "connection_closed");
        return;
    }

    if (dc->prev != NULL) {
        dc->prev->next = dc->next;
    } else {
        w->conns = dc->next;
    }
    if (dc->next != NULL) {
        dc->next->prev = dc->prev;
    }
    w->nconns--;
    TAP_STAT_ADD(w->st.active_conns, -1);
    __atomic_sub_fetch(&w->px->nconns, 1, __ATOMIC_RELAXED);

    tap_rd_stop(&dc->rd);
    bufferevent_free(dc->bev);
    event_free(dc->timer.ev);
    event_free(dc->utimer.ev);
    event_free(dc->resume_ev);
    tap_reqp_cleanup(&dc->rp);
    tap_respp_cleanup(&dc->rsp);
    free(dc);

    tap_worker_conn_gone(w);
}


static inline void
tap_dconn_enter(tap_dconn_t *dc)
{
    dc->busy++;
}


static inline void
tap_dconn_leave(tap_dconn_t *dc)
{
    if (--dc->busy == 0 && dc->dead) {
        dc->dead = 0;
        tap_dconn_destroy(dc);
    }
}


/* Ends the connection after what is queued has been written: shut the
 * write side down, then read and discard until EOF or the linger timer. */
static void
tap_dconn_close_graceful(tap_dconn_t *dc)
{
    if (dc->closing) {
        return;
    }
    dc->closing = 1;
    tap_dconn_set_phase(dc, TAP_DPHASE_LINGER);
    event_del(dc->resume_ev);
    bufferevent_setwatermark(dc->bev, EV_WRITE, 0, 0);
    tap_rd_set_high(&dc->rd, 0);
    tap_rd_enable(&dc->rd);
    bufferevent_enable(dc->bev, EV_WRITE);
    if (evbuffer_get_length(tap_rd_output(&dc->rd)) == 0) {
        shutdown(bufferevent_getfd(dc->bev), SHUT_WR);
        dc->shut = 1;
    }
}


void
tap_dconn_close_idle(tap_dconn_t *dc)
{
    if (dc->txn == NULL && !dc->closing) {
        tap_dconn_destroy(dc);
    }
}


void
tap_dconn_read_unblock(tap_dconn_t *dc)
{
    if (dc->read_blocked && !dc->closing) {
        dc->read_blocked = 0;
        tap_rd_enable(&dc->rd);
        if (tap_rd_pending(&dc->rd) > 0) {
            event_active(dc->resume_ev, 0, 0);
        }
    }
}


/* --- transactions --------------------------------------------------------------------------- */


static void
tap_txn_free(tap_txn_t *t)
{
    if (t->ubody != NULL) {
        evbuffer_free(t->ubody);
    }
    free(t);
}


static tap_txn_t *
tap_txn_create(tap_dconn_t *dc)
{
    tap_worker_t     *w = dc->w;
    tap_txn_t        *t;
    struct evbuffer  *ubody;

    t = w->spare;
    if (t != NULL) {
        w->spare = t->next;
        w->nspare--;
        ubody = t->ubody;
        memset(t, 0, sizeof(*t));
        t->ubody = ubody;

    } else {
        t = calloc(1, sizeof(*t));
        if (t == NULL) {
            return NULL;
        }
        t->ubody = evbuffer_new();
        if (t->ubody == NULL) {
            tap_txn_free(t);
            return NULL;
        }
    }
    t->dc = dc;
    t->server = -1;
    tap_exchange_init(&t->ex);
    t->ex.t0 = dc->in_process ? dc->now : tap_now_ns();
    t->ex.wall_t0_ns = tap_wall_ns(t->ex.t0);
    strcpy(t->ex.method, "-");
    dc->txn = t;
    dc->nreq++;
    return t;
}


/* Writes the record and frees the transaction, or keeps it as a spare. */
static void
tap_txn_finish(tap_txn_t *t)
{
    tap_dconn_t   *dc = t->dc;
    tap_worker_t  *w = dc->w;
    unsigned       cls;

    tap_lazy_set(&dc->utimer, 0);
    if (t->ex.last_byte == 0) {
        t->ex.last_byte = tap_now_ns();
    }
    if (t->fx != NULL) {
        tap_txn_analyse_request(t);
        tap_txn_analyse_end(t, t->resp_started && !t->resp_done);
        if (t->ex.analysed) {
            TAP_STAT_ADD(w->st.parse[0][t->ex.gen.req_parse], 1);
            TAP_STAT_ADD(w->st.parse[1][t->ex.gen.resp_parse], 1);
        }
    }
    cls = (t->ex.status >= 100 && t->ex.status < 600) ? (unsigned) t->ex.status / 100 : 0;
    TAP_STAT_ADD(w->st.requests[cls], 1);
    tap_lstats_record(&w->lat, &t->ex, (uint64_t) t->ex.last_byte);
    /* the telemetry hub writes the access-log line; the worker does when there
     * is no hub or its ring is full */
    if ((w->tring == NULL || tap_tring_push(w->tring, &t->ex) != TAP_OK)
        && tap_alog_write(&w->log, &t->ex) != TAP_OK)
    {
        TAP_STAT_ADD(w->st.limits[TAP_LIMIT_ACCESS_LOG], 1);
    }

    dc->txn = NULL;
    tap_fx_free(t->fx);
    tap_gen_cleanup(&t->ex.gen);
    if (t->path != t->path_buf) {
        free(t->path);
    }

    /* kept, buffers and all, for the worker's next request */
    if (w->nspare < TAP_TXN_SPARES) {
        evbuffer_drain(t->ubody, evbuffer_get_length(t->ubody));
        t->next = w->spare;
        w->spare = t;
        w->nspare++;
        return;
    }
    tap_txn_free(t);
}


void
tap_txn_spares_free(tap_worker_t *w)
{
    tap_txn_t  *t;

    while ((t = w->spare) != NULL) {
        w->spare = t->next;
        tap_txn_free(t);
    }
    w->nspare = 0;
}


void
tap_txn_complete(tap_txn_t *t)
{
    tap_dconn_t  *dc = t->dc;
    int           keep;

    t->resp_done = 1;
    if (t->ex.last_byte == 0) {
        t->ex.last_byte = tap_now_ns();
    }
    tap_txn_upstream_drop(t);

    keep = !t->resp_close && t->req_done && tap_reqp_keepalive(&dc->rp) && !dc->w->draining
        && !dc->closing;
    tap_txn_finish(t);

    if (!keep) {
        tap_dconn_close_graceful(dc);
        return;
    }

    tap_reqp_next(&dc->rp);
    dc->rp_paused = 0;
    tap_dconn_set_phase(dc, TAP_DPHASE_IDLE);
    if (tap_rd_pending(&dc->rd) > 0) {
        event_active(dc->resume_ev, 0, 0);
    }
}


void
tap_txn_truncate(tap_txn_t *t, const char *why)
{
    tap_dconn_t  *dc = t->dc;

    if (t->ex.error == NULL) {
        t->ex.error = why;
    }
    t->resp_close = 1;
    tap_txn_upstream_drop(t);
    tap_txn_finish(t);
    tap_dconn_close_graceful(dc);
}


void
tap_dconn_kill(tap_dconn_t *dc, const char *why)
{
    tap_txn_t  *t = dc->txn;

    if (t != NULL) {
        if (t->ex.error == NULL) {
            t->ex.error = why;
        }
        if (!t->resp_started && t->ex.status == 0) {
            t->ex.status = 499;
        }
        tap_txn_upstream_drop(t);
        tap_txn_finish(t);
    }
    tap_dconn_destroy(dc);
}


static const char *
tap_status_reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 417: return "Expectation Failed";
    case 431: return "Request Header Fields Too Large";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Error";
    }
}


void
tap_txn_respond_error(tap_txn_t *t, int status, const char *code, const char *msg)
{
    tap_dconn_t      *dc = t->dc;
    struct evbuffer  *out = tap_rd_output(&dc->rd);
    char              body[512];
    int               blen;
    size_t            i, j;
    char              esc[256];

    if (t->resp_started) {
        tap_txn_truncate(t, code);
        return;
    }
    tap_txn_upstream_drop(t);

    /* the message comes from this file or from llhttp: escape anyway */
    for (i = 0, j = 0; msg[i] != '\0' && j + 2 < sizeof(esc); i++) {
        if (msg[i] == '"' || msg[i] == '\\') {
            esc[j++] = '\\';
        }
        esc[j++] = ((unsigned char) msg[i] < 0x20) ? ' ' : msg[i];
    }
    esc[j] = '\0';
    blen = snprintf(body, sizeof(body),
        "{\"error\":{\"message\":\"%s\",\"type\":\"infertap_error\",\"code\":\"%s\"}}\n", esc,
        code);

    t->ex.status = status;
    if (t->ex.error == NULL) {
        t->ex.error = code;
    }
    if (!t->req_done || status < 500 || dc->w->draining) {
        t->resp_close = 1;
    }
    evbuffer_add_printf(out,
        "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", status,
        tap_status_reason(status), blen);
    if (t->ex.request_id[0] != '\0') {
        evbuffer_add_printf(out, "%s: %s\r\n", dc->w->ps->request_id_header, t->ex.request_id);
    }
    evbuffer_add_printf(out, "%s\r\n%s", t->resp_close ? "Connection: close\r\n" : "", body);
    tap_rd_send(&dc->rd);
    t->resp_started = 1;
    t->ex.bytes_out = (uint64_t) blen;
    tap_txn_complete(t);
}


/* Fills method and path from what was parsed, if not done yet. */
static void
tap_txn_fill_request(tap_txn_t *t)
{
    tap_reqp_t  *rp = &t->dc->rp;
    const char  *url, *q;
    size_t       len;

    if (t->path != NULL || rp->hl.ulen == 0) {
        return;
    }
    tap_cpystr(t->ex.method, llhttp_method_name((llhttp_method_t) llhttp_get_method(&rp->parser)),
        sizeof(t->ex.method) - 1);
    url = rp->hl.buf + rp->hl.uoff;
    q = memchr(url, '?', rp->hl.ulen);
    len = q != NULL ? (size_t) (q - url) : rp->hl.ulen;
    len = TAP_MIN(len, 2048);
    t->path = len < sizeof(t->path_buf) ? t->path_buf : malloc(len + 1);
    if (t->path != NULL) {
        memcpy(t->path, url, len);
        t->path[len] = '\0';
        t->ex.path = t->path;
        t->ex.path_len = len;
    }
}


/* Takes the caller's request id when it is sane, else makes one. */
static void
tap_txn_request_id(tap_txn_t *t)
{
    tap_reqp_t  *rp = &t->dc->rp;
    const char  *v;
    size_t       vlen, i;
    uint8_t      rnd[16];
    int          h;

    h = tap_hlist_find_id(&rp->hl, TAP_H_REQUEST_ID, 0);
    if (h >= 0 && tap_hlist_count_id(&rp->hl, TAP_H_REQUEST_ID) == 1) {
        v = tap_hlist_value(&rp->hl, (unsigned) h);
        vlen = rp->hl.h[h].vlen;
        tap_trim(&v, &vlen);
        for (i = 0; i < vlen; i++) {
            if (v[i] <= 0x20 || v[i] >= 0x7f || v[i] == '"' || v[i] == '\\') {
                break;
            }
        }
        if (vlen > 0 && vlen <= TAP_EX_REQID_MAX && i == vlen) {
            memcpy(t->ex.request_id, v, vlen);
            t->ex.request_id[vlen] = '\0';
            return;
        }
    }
    tap_rng_bytes(&t->dc->w->rng, rnd, sizeof(rnd));
    tap_hex_encode(t->ex.request_id, rnd, sizeof(rnd));
}


static void
tap_txn_trace(tap_txn_t *t)
{
    tap_reqp_t             *rp = &t->dc->rp;
    tap_worker_t           *w = t->dc->w;
    tap_traceparent_t       tp;
    int                     h;

    tp.flags = 0;
    h = tap_hlist_find_id(&rp->hl, TAP_H_TRACEPARENT, 0);
    if (h >= 0 && tap_hlist_count_id(&rp->hl, TAP_H_TRACEPARENT) == 1
        && tap_traceparent_parse(&tp, tap_hlist_value(&rp->hl, (unsigned) h),
               rp->hl.h[h].vlen) == TAP_OK)
    {
        memcpy(t->ex.trace_id, tp.trace_id, 16);
        memcpy(t->ex.parent_span_id, tp.parent_id, 8);
        t->ex.has_parent = 1;
    } else {
        tap_rng_bytes(&w->rng, t->ex.trace_id, 16);
    }
    t->ex.trace_flags = (uint8_t) tap_sample_head(w->ps->sampler, w->ps->sample_ratio,
        t->ex.has_parent, tp.flags, t->ex.trace_id);
    tap_rng_bytes(&w->rng, t->ex.span_id, 8);
    tap_rng_bytes(&w->rng, t->ex.client_span_id, 8);
}


/* The request head is valid and complete. */
static void
tap_txn_on_head(tap_txn_t *t)
{
    tap_reqp_t             *rp = &t->dc->rp;
    const tap_psettings_t  *ps = t->dc->w->ps;

    tap_txn_fill_request(t);
    tap_txn_request_id(t);
    tap_txn_trace(t);
    t->has_body = rp->chunked || (rp->has_cl && rp->content_length > 0);
    t->head_req = llhttp_get_method(&rp->parser) == HTTP_HEAD;
    t->expect_continue = rp->expect_continue && t->has_body;

    if (ps->fconf.nroutes > 0 && t->path != NULL) {
        t->fx = tap_fx_begin(&ps->fconf, &t->ex, t->ex.method, t->path, t->ex.path_len);
    }
    if (t->fx != NULL && t->fx->want_hold && rp->has_cl && !rp->chunked
        && rp->content_length > 0 && rp->content_length <= ps->fconf.capture)
    {
        /* small enough to wait for: the head goes once the body is in */
        t->held = 1;
        t->fx->can_rewrite = 1;
        if (t->expect_continue) {
            tap_rd_write(&t->dc->rd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
            tap_rd_send(&t->dc->rd);
            t->expect_continue = 0;
        }
        return;
    }
}


/*
 * The request is complete: the filters read its body.  A held body may come
 * back rewritten; its head is built only now.  Otherwise this runs after the
 * body went upstream, so the parsing never delays it.
 */
void
tap_txn_analyse_request(tap_txn_t *t)
{
    struct evbuffer  *b = t->ubody;
    size_t            len;

    if (!t->fx_req) {
        return;
    }
    t->fx_req = 0;
    if (!t->held) {
        tap_fx_request_end(t->fx, NULL, 0);
        return;
    }
    len = evbuffer_get_length(b);
    if (tap_fx_request_end(t->fx, (const char *) evbuffer_pullup(b, -1), len)) {
        evbuffer_drain(b, len);
        evbuffer_add(b, t->fx->new_body, t->fx->new_len);
        t->body_len = t->fx->new_len;
        t->rewritten = 1;
    }
}


/* The response is over (cut: before its end): the filters finish the record. */
void
tap_txn_analyse_end(tap_txn_t *t, int cut)
{
    if (t->fx_done) {
        return;
    }
    t->fx_done = 1;
    tap_fx_complete(t->fx, cut, tap_txn_client_write, t);
}


/* --- parsing -------------------------------------------------------------------------------- */


static void
tap_dconn_rq_begin(void *ctx)
{
    tap_dconn_t  *dc = ctx;

    if (dc->txn == NULL && tap_txn_create(dc) == NULL) {
        return;
    }
    if (dc->phase != TAP_DPHASE_HEADER) {
        tap_dconn_set_phase(dc, TAP_DPHASE_HEADER);
    }
}


static int
tap_dconn_rq_head(void *ctx)
{
    tap_dconn_t  *dc = ctx;

    return dc->txn != NULL ? TAP_OK : TAP_ERROR;
}


static int
tap_dconn_rq_body(void *ctx, const char *p, size_t len)
{
    tap_dconn_t  *dc = ctx;
    tap_txn_t    *t = dc->txn;

    t->ex.bytes_in += len;
    if (t->fx != NULL && !t->held) {
        tap_fx_request_data(t->fx, p, len);
    }
    return evbuffer_add(t->ubody, p, len) == 0 ? TAP_OK : TAP_ERROR;
}


/* The parser refused the request: answer it and close. */
static void
tap_dconn_reject(tap_dconn_t *dc)
{
    tap_reqp_t  *rp = &dc->rp;
    tap_txn_t   *t = dc->txn;

    if (t == NULL && (t = tap_txn_create(dc)) == NULL) {
        tap_dconn_destroy(dc);
        return;
    }
    if (rp->err_status == 431) {
        TAP_STAT_ADD(dc->w->st.limits[TAP_LIMIT_MAX_HEADER_BYTES], 1);
    } else if (rp->err_status == 413) {
        TAP_STAT_ADD(dc->w->st.limits[TAP_LIMIT_MAX_BODY_BYTES], 1);
    }
    tap_txn_fill_request(t);
    if (t->ex.request_id[0] == '\0') {
        tap_txn_request_id(t);
        tap_txn_trace(t);
    }
    t->resp_close = 1;
    tap_txn_respond_error(t, rp->err_status, rp->err_code, rp->err_msg);
}


/* The request is complete: stop parsing until its response is done. */
static void
tap_dconn_request_done(tap_dconn_t *dc)
{
    tap_txn_t  *t = dc->txn;

    dc->rp_paused = 1;
    t->req_done = 1;
    t->ex.t_req = dc->in_process ? dc->now : tap_now_ns();
    tap_dconn_set_phase(dc, TAP_DPHASE_NONE);
    if (t->fx != NULL) {
        t->fx_req = 1;
    }
}


static void
tap_dconn_process_input(tap_dconn_t *dc)
{
    struct evbuffer_iovec   v;
    tap_txn_t              *t;
    size_t                  used;
    int                     rc, zero = 0;

    while (!dc->dead && !dc->closing && !dc->rp_paused && !dc->read_blocked) {
        if (!tap_rd_peek(&dc->rd, &v)) {
            if (!zero) {
                break;
            }
            v.iov_base = (void *) "";
            v.iov_len = 0;
        }
        zero = 0;

        rc = tap_reqp_feed(&dc->rp, v.iov_base, v.iov_len, &used);
        if (used > 0) {
            tap_rd_drain(&dc->rd, used);
        }
        if (rc == TAP_ERROR) {
            tap_dconn_reject(dc);
            return;
        }
        t = dc->txn;
        if (rc == TAP_OK) {
            continue;
        }
        if (t == NULL) {
            tap_dconn_destroy(dc);
            return;
        }

        /* TAP_AGAIN: the head or the whole message is complete */
        if (!dc->rp.done) {
            llhttp_resume(&dc->rp.parser);
            tap_txn_on_head(t);
            if (!t->has_body) {
                rc = tap_reqp_feed(&dc->rp, "", 0, &used);
                if (rc != TAP_AGAIN || !dc->rp.done) {
                    tap_dconn_reject(dc);
                    return;
                }
                tap_dconn_request_done(dc);
            } else {
                tap_dconn_set_phase(dc, TAP_DPHASE_BODY);
                zero = 1;
            }
            if (!t->held) {
                tap_txn_upstream_start(t);
            }
            continue;
        }

        tap_dconn_request_done(dc);
        if (t->held) {
            tap_txn_analyse_request(t);
            tap_txn_upstream_start(t);     /* may finish t: the loop ends on rp_paused */
            continue;
        }
        tap_txn_flush_body(t);
    }

    t = dc->txn;
    if (t != NULL && !dc->closing && !dc->dead) {
        tap_txn_flush_body(t);
    }
}


/*
 * Parses what the client sent.  What this produces for the upstream (the
 * head, body bytes) is sent once at the end, so that a head and the body
 * that came in the same read leave in one write, as one segment.
 */
static void
tap_dconn_process(tap_dconn_t *dc)
{
    tap_txn_t  *t;

    dc->in_process = 1;
    dc->now = tap_now_ns();
    tap_dconn_process_input(dc);
    dc->in_process = 0;
    if (!dc->dead) {
        tap_rd_update(&dc->rd);        /* input may have dropped under its high mark */
    }

    t = dc->txn;
    if (!dc->dead && t != NULL && t->uc != NULL && t->uc->connected) {
        tap_rd_send(&t->uc->rd);
        /* reading may have stopped on bytes that are gone now */
        if (dc->read_blocked
            && evbuffer_get_length(bufferevent_get_output(t->uc->bev)) <= TAP_PROXY_LOW_WATER)
        {
            tap_dconn_read_unblock(dc);
        }
    }
    if (!dc->dead && (t = dc->txn) != NULL && t->fx_req) {
        tap_txn_analyse_request(t);
    }
}


/* --- callbacks ------------------------------------------------------------------------------ */


static void
tap_dconn_on_read(struct bufferevent *bev, void *arg)
{
    tap_dconn_t  *dc = arg;

    tap_dconn_enter(dc);
    if (dc->closing) {
        tap_rd_discard(&dc->rd);

    } else {
        if (dc->phase == TAP_DPHASE_IDLE) {
            tap_dconn_set_phase(dc, TAP_DPHASE_HEADER);
        } else if (dc->phase == TAP_DPHASE_BODY) {
            tap_dconn_set_phase(dc, TAP_DPHASE_BODY);
        }
        tap_dconn_process(dc);
    }
    tap_dconn_leave(dc);
}


static void
tap_dconn_on_resume(evutil_socket_t fd, short what, void *arg)
{
    tap_dconn_t  *dc = arg;

    tap_dconn_enter(dc);
    if (!dc->closing && dc->phase == TAP_DPHASE_IDLE
        && evbuffer_get_length(bufferevent_get_input(dc->bev)) > 0)
    {
        tap_dconn_set_phase(dc, TAP_DPHASE_HEADER);
    }
    tap_dconn_process(dc);
    tap_dconn_leave(dc);
}


static void
tap_dconn_on_write(struct bufferevent *bev, void *arg)
{
    tap_dconn_t  *dc = arg;

    tap_dconn_enter(dc);
    if (dc->closing) {
        if (!dc->shut && evbuffer_get_length(tap_rd_output(&dc->rd)) == 0) {
            shutdown(bufferevent_getfd(bev), SHUT_WR);
            dc->shut = 1;
        }
    } else {
        tap_rd_sent(&dc->rd);
        if (dc->txn != NULL) {
            tap_txn_client_drained(dc->txn);
        }
    }
    tap_dconn_leave(dc);
}


static void
tap_dconn_on_event(struct bufferevent *bev, short what, void *arg)
{
    tap_dconn_t  *dc = arg;

    if (what == BEV_EVENT_CONNECTED) {
        return;                        /* a TLS handshake completed */
    }
    tap_dconn_enter(dc);
    if (dc->txn != NULL && !dc->closing) {
        tap_dconn_kill(dc, "client_abort");
    } else {
        tap_dconn_destroy(dc);
    }
    tap_dconn_leave(dc);
}


static void
tap_dconn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    tap_dconn_t   *dc = arg;
    tap_worker_t  *w = dc->w;
    tap_txn_t     *t = dc->txn;

    if (!tap_lazy_fired(&dc->timer)) {
        return;
    }
    tap_dconn_enter(dc);
    switch (dc->phase) {
    case TAP_DPHASE_IDLE:
        TAP_STAT_ADD(w->st.limits[TAP_LIMIT_KEEPALIVE_TIMEOUT], 1);
        tap_dconn_destroy(dc);
        break;

    case TAP_DPHASE_HEADER:
        TAP_STAT_ADD(w->st.limits[TAP_LIMIT_CLIENT_HEADER_TIMEOUT], 1);
        if (t == NULL) {
            tap_dconn_destroy(dc);
            break;
        }
        tap_txn_fill_request(t);
        tap_txn_request_id(t);
        tap_txn_trace(t);
        tap_txn_respond_error(t, 408, "client_timeout", "timed out reading the request head");
        break;

    case TAP_DPHASE_BODY:
        TAP_STAT_ADD(w->st.limits[TAP_LIMIT_CLIENT_BODY_TIMEOUT], 1);
        if (t == NULL) {
            tap_dconn_destroy(dc);
            break;
        }
        tap_txn_respond_error(t, 408, "client_timeout", "timed out reading the request body");
        break;

    case TAP_DPHASE_LINGER:
    case TAP_DPHASE_NONE:
        tap_dconn_kill(dc, "client_timeout");
        break;
    }
    tap_dconn_leave(dc);
}
