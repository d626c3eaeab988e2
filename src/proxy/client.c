/*
 * client.c: the upstream half of a transaction: the request head sent
 * upstream, streaming the body, reading and relaying the response.
 *
 * The upstream head is written for the connection (tap_rd_write(), io.c)
 * when the connection can take it, once per attempt (a retry builds it
 * again, from the parsed request, which stays until the response ends; its
 * default Host is then the server actually used).  Hop-by-hop headers and
 * those named in Connection are dropped; framing is regenerated from what was
 * parsed (Content-Length: N, or Transfer-Encoding: chunked with infertap's
 * own chunking); Expect is
 * answered by infertap (it sends 100 Continue when the head goes upstream),
 * so it is not forwarded.  X-Forwarded-For is appended to, X-Forwarded-Proto
 * and X-Forwarded-Host are added when absent (a proxy in front of infertap
 * keeps its values), the request id and traceparent are set.
 *
 * The response head goes to the client as soon as it is parsed, with its
 * framing regenerated: Content-Length when the upstream gave one, otherwise
 * chunked for HTTP/1.1 clients and close-delimited for HTTP/1.0 ones.  Body
 * bytes are copied once, from the parser's view of the read buffer into the
 * worker's write buffer, which is sent at the end of each read, so an SSE
 * event reaches the client in the read that brought it.  Each direction
 * has backpressure in the style of libevent's le-proxy sample: when the
 * output toward one side holds more than TAP_PROXY_HIGH_WATER bytes the
 * other side stops being read, and its write callback (low water mark)
 * resumes it, so memory per connection stays bounded.
 *
 * Retries happen only when no byte of the request can have been used by a
 * server: a failed connect (the body is still buffered, nothing was
 * written), or a reused pooled connection that closes before any response
 * byte when the request has no body (then the next attempt uses a fresh
 * connection).  Anything else fails the transaction: 502 before the
 * response head, a truncated response after it.
 */

#include "config.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "tap_core.h"
#include "proxy/proxy-int.h"


typedef enum {
    TAP_UFAIL_CONNECT = 0,
    TAP_UFAIL_CONNECT_TIMEOUT,
    TAP_UFAIL_TLS,
    TAP_UFAIL_RESET,
    TAP_UFAIL_BAD,
    TAP_UFAIL_HEADER_TIMEOUT,
} tap_ufail_e;


static void tap_uconn_on_read(struct bufferevent *bev, void *arg);
static void tap_uconn_on_write(struct bufferevent *bev, void *arg);
static void tap_uconn_on_event(struct bufferevent *bev, short what, void *arg);
static void tap_txn_rs_first_byte(void *ctx);
static int tap_txn_rs_head(void *ctx);
static int tap_txn_rs_body(void *ctx, const char *p, size_t len);
static void tap_txn_upstream_failed(tap_txn_t *t, tap_ufail_e kind);


static const tap_respp_cbs_t  tap_txn_rs_cbs = {
    .on_first_byte = tap_txn_rs_first_byte,
    .on_head = tap_txn_rs_head,
    .on_body = tap_txn_rs_body,
    .on_done = NULL,
};


/* Writes the request head for the upstream attempt under way to rd's connection. */
void
tap_txn_build_head(tap_txn_t *t, tap_rd_t *rd)
{
    tap_dconn_t            *dc = t->dc;
    const tap_psettings_t  *ps = dc->w->ps;
    tap_hlist_t            *hl = &dc->rp.hl;
    tap_hbuf_t              hb;
    const char             *name, *v;
    size_t                  vlen;
    unsigned                i, nxff = 0;
    int                     host = -1, ts = -1;
    char                    tp[TAP_TRACEPARENT_LEN + 1];

    hb.rd = rd;
    hb.len = 0;
    tap_hbuf_str(&hb, llhttp_method_name((llhttp_method_t) llhttp_get_method(&dc->rp.parser)));
    tap_hbuf_lit(&hb, " ");
    tap_hbuf_add(&hb, hl->buf + hl->uoff, hl->ulen);
    tap_hbuf_lit(&hb, " HTTP/1.1\r\n");

    for (i = 0; i < hl->n; i++) {
        switch (hl->h[i].id) {
        case TAP_H_EXPECT:
        case TAP_H_TRACEPARENT:
        case TAP_H_X_FORWARDED_FOR:
        case TAP_H_REQUEST_ID:
            continue;                  /* answered or rewritten below */
        case TAP_H_TRACESTATE:
            ts = ts == -1 ? (int) i : -2;
            continue;
        case TAP_H_HOST:
            host = (int) i;
            if (dc->rp.alen > 0) {
                continue;              /* the absolute-form target's authority wins */
            }
            break;
        }
        if (tap_hlist_is_hop(hl, i)) {
            continue;
        }
        tap_hbuf_header(&hb, tap_hlist_name(hl, i), hl->h[i].nlen, tap_hlist_value(hl, i),
            hl->h[i].vlen);
    }

    if (dc->rp.alen > 0) {
        tap_hbuf_header(&hb, "Host", 4, hl->buf + dc->rp.aoff, dc->rp.alen);
    } else if (host < 0) {
        name = ps->servers[t->server >= 0 ? t->server : 0].text;
        tap_hbuf_header(&hb, "Host", 4, name, strlen(name));
    }

    tap_hbuf_lit(&hb, "X-Forwarded-For: ");
    for (i = 0; i < hl->n; i++) {
        if (hl->h[i].id == TAP_H_X_FORWARDED_FOR) {
            v = tap_hlist_value(hl, i);
            vlen = hl->h[i].vlen;
            tap_trim(&v, &vlen);
            if (vlen > 0) {
                tap_hbuf_add(&hb, v, vlen);
                tap_hbuf_lit(&hb, ", ");
                nxff++;
            }
        }
    }
    tap_hbuf_str(&hb, dc->ip);
    tap_hbuf_lit(&hb, "\r\n");
    if (tap_hlist_find_id(hl, TAP_H_X_FORWARDED_PROTO, 0) < 0) {
        if (t->dc->w->px->tls_server != NULL) {
            tap_hbuf_lit(&hb, "X-Forwarded-Proto: https\r\n");
        } else {
            tap_hbuf_lit(&hb, "X-Forwarded-Proto: http\r\n");
        }
    }
    if (tap_hlist_find_id(hl, TAP_H_X_FORWARDED_HOST, 0) < 0) {
        if (dc->rp.alen > 0) {
            tap_hbuf_header(&hb, "X-Forwarded-Host", 16, hl->buf + dc->rp.aoff, dc->rp.alen);
        } else if (host >= 0) {
            tap_hbuf_header(&hb, "X-Forwarded-Host", 16, tap_hlist_value(hl, (unsigned) host),
                hl->h[host].vlen);
        }
    }

    tap_hbuf_header(&hb, ps->request_id_header, strlen(ps->request_id_header), t->ex.request_id,
        strlen(t->ex.request_id));
    tap_traceparent_format(tp, t->ex.trace_id, t->ex.client_span_id, t->ex.trace_flags);
    tap_hbuf_header(&hb, "traceparent", 11, tp, TAP_TRACEPARENT_LEN);
    if (ts >= 0 && t->ex.has_parent
        && tap_tracestate_check(tap_hlist_value(hl, (unsigned) ts), hl->h[ts].vlen) == TAP_OK)
    {
        tap_hbuf_header(&hb, "tracestate", 10, tap_hlist_value(hl, (unsigned) ts),
            hl->h[ts].vlen);
    }

    if (dc->rp.chunked) {
        tap_hbuf_lit(&hb, "Transfer-Encoding: chunked\r\n");
    } else if (dc->rp.has_cl) {
        tap_hbuf_lit(&hb, "Content-Length: ");
        tap_hbuf_u64(&hb, t->rewritten ? t->body_len : dc->rp.content_length);
        tap_hbuf_lit(&hb, "\r\n");
    }
    tap_hbuf_lit(&hb, "\r\n");
    tap_hbuf_flush(&hb);
    TAP_UNUSED(nxff);
}


static void
tap_txn_set_uphase(tap_txn_t *t, tap_uphase_e phase)
{
    const tap_psettings_t  *ps = t->dc->w->ps;
    int64_t                 ms = 0;

    t->uphase = phase;
    if (phase == TAP_UPHASE_CONNECT) {
        ms = ps->connect_ms;
    } else if (phase == TAP_UPHASE_HEADER) {
        ms = ps->response_header_ms;
    }
    tap_lazy_set(&t->dc->utimer, ms);
}


#define TAP_CHUNK_LINE    (2 * sizeof(size_t) + 2)   /* "<hex>\r\n" at most */

/* Writes the line "<n in hex>\r\n" that opens a chunk so that it ends at
 * end; returns where it starts (at most 2 * sizeof(size_t) + 2 bytes back).
 * No printf: this runs once per streamed event. */
static char *
tap_chunk_line(char *end, size_t n)
{
    static const char  hex[] = "0123456789abcdef";

    *--end = '\n';
    *--end = '\r';
    do {
        *--end = hex[n & 0xf];
        n >>= 4;
    } while (n != 0);
    return end;
}


/*
 * Sends p[0, n) on rd's connection as one chunk, size line, data and CRLF
 * in one piece of the write buffer, or through the output evbuffer when
 * that has no room.
 */
static void
tap_chunk_write(tap_rd_t *rd, const char *p, size_t n)
{
    char              line[TAP_CHUNK_LINE], *l, *s;
    size_t            ll;
    struct evbuffer  *out;

    l = tap_chunk_line(line + sizeof(line), n);
    ll = (size_t) (line + sizeof(line) - l);
    s = tap_rd_space(rd, ll + n + 2);
    if (s != NULL) {
        memcpy(s, l, ll);
        memcpy(s + ll, p, n);
        s[ll + n] = '\r';
        s[ll + n + 1] = '\n';
        tap_rd_wrote(ll + n + 2);
        return;
    }
    out = tap_rd_output(rd);
    evbuffer_add(out, l, ll);
    evbuffer_add(out, p, n);
    evbuffer_add(out, "\r\n", 2);
}


static void
tap_txn_attach(tap_txn_t *t, tap_uconn_t *uc)
{
    tap_dconn_t  *dc = t->dc;

    t->uc = uc;
    uc->txn = t;
    bufferevent_setcb(uc->bev, tap_uconn_on_read, tap_uconn_on_write, tap_uconn_on_event, uc);
    bufferevent_setwatermark(uc->bev, EV_WRITE, TAP_PROXY_LOW_WATER, 0);
    bufferevent_disable(uc->bev, EV_WRITE);          /* see tap_rd_send() */
    tap_rd_enable(&uc->rd);
    tap_respp_init(&dc->rsp, &tap_txn_rs_cbs, t, t->head_req);
}


/* The connection can take the request (now: since when): send the head and
 * what we have of the body. */
static void
tap_txn_on_connected(tap_txn_t *t, int64_t now)
{
    tap_uconn_t  *uc = t->uc;
    int           one = 1;

    if (!uc->connected) {
        uc->connected = 1;
        setsockopt(bufferevent_getfd(uc->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    t->ex.upstream_connect = now;
    tap_txn_set_uphase(t, TAP_UPHASE_NONE);
    tap_txn_build_head(t, &uc->rd);

    if (t->expect_continue && !t->req_done && !t->resp_started) {
        tap_rd_write(&t->dc->rd, "HTTP/1.1 100 Continue\r\n\r\n", 25);
        tap_rd_send(&t->dc->rd);
        t->expect_continue = 0;
    }
    tap_txn_flush_body(t);
    tap_dconn_read_unblock(t->dc);
}


void
tap_txn_upstream_start(tap_txn_t *t)
{
    tap_dconn_t            *dc = t->dc;
    tap_worker_t           *w = dc->w;
    const tap_psettings_t  *ps = w->ps;
    tap_uconn_t            *uc;
    int                     s;

    s = tap_upstream_pick(w, t->tried);
    if (s < 0) {
        tap_txn_respond_error(t, 503, "no_healthy_upstream", "no healthy upstream server");
        return;
    }
    t->server = s;
    if (s < 64) {
        t->tried |= 1ULL << s;
    }
    tap_cpystr(t->ex.upstream, ps->servers[s].text, sizeof(t->ex.upstream) - 1);
    t->ex.upstream_start = tap_now_ns();

    uc = t->fresh_only ? NULL : tap_upool_get(w, (unsigned) s);
    t->fresh_only = 0;
    if (uc != NULL) {
        tap_txn_attach(t, uc);
        tap_txn_on_connected(t, t->ex.upstream_start);
        return;
    }

    uc = calloc(1, sizeof(*uc));
    if (uc == NULL) {
        tap_txn_respond_error(t, 503, "out_of_memory", "out of memory");
        return;
    }
    uc->w = w;
    uc->server = (unsigned) s;
    w->pools[s].inflight++;
    uc->bev = tap_tls_connect_bev(w->px, w->base, (unsigned) s);
    if (uc->bev == NULL) {
        tap_uconn_close(uc);
        tap_txn_respond_error(t, 503, "out_of_memory", "out of memory");
        return;
    }
    tap_rd_init(&uc->rd, uc->bev);
    tap_txn_attach(t, uc);
    tap_txn_set_uphase(t, TAP_UPHASE_CONNECT);
    if (bufferevent_socket_connect(uc->bev, (struct sockaddr *) &ps->servers[s].ss,
            (int) ps->servers[s].len) != 0)
    {
        tap_txn_upstream_failed(t, TAP_UFAIL_CONNECT);
        return;
    }
    tap_rd_update(&uc->rd);            /* the socket exists now */
}


void
tap_txn_flush_body(tap_txn_t *t)
{
    tap_dconn_t      *dc = t->dc;
    tap_rd_t         *rd;
    struct evbuffer  *out;
    char              line[TAP_CHUNK_LINE], *l, *s;
    int               chunked = dc->rp.chunked;
    size_t            n, ll = 0, crlf = chunked ? 2 : 0;

    if (t->uc == NULL || !t->uc->connected) {
        /* a held body is bounded by the capture limit */
        if (!t->held && evbuffer_get_length(t->ubody) > TAP_PROXY_HIGH_WATER
            && !dc->read_blocked)
        {
            dc->read_blocked = 1;
            tap_rd_disable(&dc->rd);
        }
        return;
    }

    rd = &t->uc->rd;
    n = evbuffer_get_length(t->ubody);
    if (n > 0) {
        t->body_sent = 1;
        l = line + sizeof(line);
        if (chunked) {
            l = tap_chunk_line(l, n);
            ll = (size_t) (line + sizeof(line) - l);
        }
        /* a body that fits is copied once, next to the head */
        s = tap_rd_space(rd, ll + n + crlf);
        if (s != NULL) {
            memcpy(s, l, ll);
            evbuffer_remove(t->ubody, s + ll, n);
            memcpy(s + ll + n, "\r\n", crlf);
            tap_rd_wrote(ll + n + crlf);
        } else {
            out = tap_rd_output(rd);
            evbuffer_add(out, l, ll);
            evbuffer_add_buffer(out, t->ubody);
            evbuffer_add(out, "\r\n", crlf);
        }
    }
    if (t->req_done && !t->end_sent) {
        t->end_sent = 1;
        if (chunked) {
            tap_rd_write(rd, "0\r\n\r\n", 5);
        }
        if (!dc->rsp.got_head) {
            tap_txn_set_uphase(t, TAP_UPHASE_HEADER);
        }
    }
    if (!dc->in_process) {
        tap_rd_send(rd);               /* else tap_dconn_process() sends it */
    }
    if (evbuffer_get_length(bufferevent_get_output(t->uc->bev)) > TAP_PROXY_HIGH_WATER
        && !dc->read_blocked)
    {
        dc->read_blocked = 1;
        tap_rd_disable(&dc->rd);
    }
}


void
tap_txn_upstream_drop(tap_txn_t *t)
{
    tap_uconn_t  *uc = t->uc;
    tap_dconn_t  *dc = t->dc;
    int           reuse;

    tap_lazy_set(&dc->utimer, 0);
    t->uphase = TAP_UPHASE_NONE;
    if (uc == NULL) {
        return;
    }
    t->uc = NULL;
    uc->txn = NULL;

    /* reusable only after a complete exchange in both directions with
     * nothing left over and no one asking to close */
    reuse = uc->connected && t->resp_done && dc->rsp.done && t->end_sent
        && tap_respp_keepalive(&dc->rsp)
        && tap_rd_pending(&uc->rd) == 0;
    if (reuse) {
        tap_uconn_release(uc);
    } else {
        tap_uconn_close(uc);
    }
}


void
tap_txn_client_drained(tap_txn_t *t)
{
    if (t->uc != NULL && t->resp_started && !t->resp_done) {
        tap_rd_enable(&t->uc->rd);
    }
}


static void
tap_txn_upstream_failed(tap_txn_t *t, tap_ufail_e kind)
{
    tap_dconn_t            *dc = t->dc;
    tap_worker_t           *w = dc->w;
    int                     retry = 0, stale = 0, status = 502;
    const char             *code = "upstream_bad_response", *msg;

    msg = "the upstream server closed the connection before responding";
    switch (kind) {
    case TAP_UFAIL_CONNECT:
    case TAP_UFAIL_CONNECT_TIMEOUT:
    case TAP_UFAIL_TLS:
        tap_health_fail(w->px, (unsigned) t->server);
        retry = !t->body_sent;
        if (kind == TAP_UFAIL_CONNECT) {
            code = "upstream_connect_failed";
            msg = "cannot connect to the upstream server";
        } else if (kind == TAP_UFAIL_TLS) {
            code = "upstream_tls_failed";
            msg = "TLS handshake with the upstream server failed";
        } else {
            status = 504;
            code = "upstream_timeout";
            msg = "timed out connecting to the upstream server";
        }
        break;

    case TAP_UFAIL_RESET:
        if (t->uc != NULL && t->uc->reused && !t->has_body && !dc->rsp.any_byte) {
            /* a pooled connection the server had closed: not its fault */
            retry = stale = 1;
        } else {
            tap_health_fail(w->px, (unsigned) t->server);
        }
        break;

    case TAP_UFAIL_BAD:
        tap_health_fail(w->px, (unsigned) t->server);
        msg = "malformed response from the upstream server";
        break;

    case TAP_UFAIL_HEADER_TIMEOUT:
        tap_health_fail(w->px, (unsigned) t->server);
        status = 504;
        code = "upstream_timeout";
        msg = "timed out waiting for the upstream response";
        break;
    }

    if (t->uc != NULL) {
        tap_uconn_close(t->uc);
        t->uc = NULL;
    }
    tap_lazy_set(&dc->utimer, 0);
    t->uphase = TAP_UPHASE_NONE;

    if (retry && !t->resp_started && (stale || t->ex.retries < w->ps->retries)) {
        t->ex.retries++;
        TAP_STAT_ADD(w->st.retries, 1);
        t->fresh_only = stale;
        tap_txn_upstream_start(t);
        return;
    }
    tap_txn_respond_error(t, status, code, msg);
}


void
tap_uconn_on_utimer(evutil_socket_t fd, short what, void *arg)
{
    tap_dconn_t  *dc = arg;
    tap_txn_t    *t = dc->txn;

    if (!tap_lazy_fired(&dc->utimer) || t == NULL) {
        return;
    }
    if (t->uphase == TAP_UPHASE_CONNECT) {
        TAP_STAT_ADD(dc->w->st.limits[TAP_LIMIT_CONNECT_TIMEOUT], 1);
        tap_txn_upstream_failed(t, TAP_UFAIL_CONNECT_TIMEOUT);
    } else if (t->uphase == TAP_UPHASE_HEADER) {
        TAP_STAT_ADD(dc->w->st.limits[TAP_LIMIT_RESPONSE_HEADER_TIMEOUT], 1);
        tap_txn_upstream_failed(t, TAP_UFAIL_HEADER_TIMEOUT);
    }
}


/* --- response ------------------------------------------------------------------------------- */


static void
tap_txn_rs_first_byte(void *ctx)
{
    tap_txn_t  *t = ctx;

    t->ex.upstream_first_byte = t->uc->now;
}


/* Tells the filters about the response head: its type and coding. */
static void
tap_txn_analyse_head(tap_txn_t *t)
{
    tap_hlist_t  *hl = &t->dc->rsp.hl;
    const char   *ct = NULL, *ce;
    size_t        ctlen = 0, celen;
    int           h, encoded = 0;

    h = tap_hlist_find_id(hl, TAP_H_CONTENT_TYPE, 0);
    if (h >= 0) {
        ct = tap_hlist_value(hl, (unsigned) h);
        ctlen = hl->h[h].vlen;
        tap_trim(&ct, &ctlen);
    }
    h = tap_hlist_find_id(hl, TAP_H_CONTENT_ENCODING, 0);
    if (h >= 0) {
        ce = tap_hlist_value(hl, (unsigned) h);
        celen = hl->h[h].vlen;
        tap_trim(&ce, &celen);
        encoded = !(celen == 0 || tap_name_eq(ce, celen, "identity"));
    }
    tap_fx_response_head(t->fx, t->ex.status, ct, ctlen, encoded, t->resp_chunked);
}


static int
tap_txn_rs_head(void *ctx)
{
    tap_txn_t              *t = ctx;
    tap_dconn_t            *dc = t->dc;
    const tap_psettings_t  *ps = dc->w->ps;
    tap_respp_t            *rs = &dc->rsp;
    tap_hlist_t            *hl = &rs->hl;
    tap_hbuf_t              hb;
    const char             *v;
    size_t                  vlen, k;
    unsigned                i;
    int                     bodyless, http10, keep, cl;

    t->ex.status = rs->status;
    tap_health_ok(dc->w->px, (unsigned) t->server);
    tap_txn_set_uphase(t, TAP_UPHASE_NONE);
    if (ps->stream_idle_ms > 0) {
        tap_rd_set_timeout(&t->uc->rd, ps->stream_idle_ms);
    }

    hb.rd = &dc->rd;
    hb.len = 0;
    tap_hbuf_lit(&hb, "HTTP/1.1 ");
    tap_hbuf_u64(&hb, (uint64_t) rs->status);
    tap_hbuf_lit(&hb, " ");
    tap_hbuf_add(&hb, hl->buf + hl->uoff, hl->ulen);
    tap_hbuf_lit(&hb, "\r\n");

    for (i = 0; i < hl->n; i++) {
        if (hl->h[i].id == TAP_H_REQUEST_ID || tap_hlist_is_hop(hl, i)) {
            continue;
        }
        tap_hbuf_header(&hb, tap_hlist_name(hl, i), hl->h[i].nlen, tap_hlist_value(hl, i),
            hl->h[i].vlen);
    }
    tap_hbuf_header(&hb, ps->request_id_header, strlen(ps->request_id_header), t->ex.request_id,
        strlen(t->ex.request_id));

    http10 = llhttp_get_http_minor(&dc->rp.parser) == 0;
    bodyless = t->head_req || rs->status == 204 || rs->status == 304;
    if (!bodyless) {
        if (tap_respp_has_cl(rs)) {
            tap_hbuf_lit(&hb, "Content-Length: ");
            tap_hbuf_u64(&hb, rs->parser.content_length);
            tap_hbuf_lit(&hb, "\r\n");
        } else if (!http10) {
            t->resp_chunked = 1;
            tap_hbuf_lit(&hb, "Transfer-Encoding: chunked\r\n");
        } else {
            t->resp_close = 1;
        }
    } else if (rs->status != 204 && (cl = tap_hlist_find_id(hl, TAP_H_CONTENT_LENGTH, 0)) >= 0) {
        /* a HEAD or 304 answer describes the representation: keep it when
         * it is a plain number */
        v = tap_hlist_value(hl, (unsigned) cl);
        vlen = hl->h[cl].vlen;
        tap_trim(&v, &vlen);
        for (k = 0; k < vlen && v[k] >= '0' && v[k] <= '9'; k++) {
            /* digits only */
        }
        if (vlen > 0 && vlen < 20 && k == vlen) {
            tap_hbuf_header(&hb, "Content-Length", 14, v, vlen);
        }
    }

    keep = !t->resp_close && t->req_done && tap_reqp_keepalive(&dc->rp) && !dc->w->draining;
    if (!keep) {
        t->resp_close = 1;
        tap_hbuf_lit(&hb, "Connection: close\r\n");
    } else if (http10) {
        tap_hbuf_lit(&hb, "Connection: keep-alive\r\n");
    }
    tap_hbuf_lit(&hb, "\r\n");
    tap_hbuf_flush(&hb);
    t->resp_started = 1;

    if (t->fx != NULL && !bodyless) {
        tap_txn_analyse_head(t);
    }
    return TAP_OK;
}


/*
 * Body bytes go to the client as the parser hands them over, each span
 * re-chunked when the client gets chunked framing: a span is usually one
 * upstream chunk, one SSE event, and it lands in the write buffer with its
 * size line and CRLF, so the socket gets one piece per event.  They are sent
 * at the end of the read (tap_uconn_on_read).
 */
void
tap_txn_client_write(void *ctx, const char *p, size_t len)
{
    tap_txn_t  *t = ctx;

    t->ex.bytes_out += len;
    if (t->resp_chunked) {
        tap_chunk_write(&t->dc->rd, p, len);
    } else {
        tap_rd_write(&t->dc->rd, p, len);
    }
}


static int
tap_txn_rs_body(void *ctx, const char *p, size_t len)
{
    tap_txn_t  *t = ctx;

    if (t->fx == NULL) {
        tap_txn_client_write(t, p, len);
        return TAP_OK;
    }
    if (t->fx->strip) {
        tap_fx_response_data(t->fx, p, len, tap_txn_client_write, t);
        return TAP_OK;
    }
    tap_txn_client_write(t, p, len);
    tap_fx_response_data(t->fx, p, len, NULL, NULL);
    return TAP_OK;
}


static void
tap_txn_response_done(tap_txn_t *t)
{
    if (t->fx != NULL && t->fx->strip) {
        tap_txn_analyse_end(t, 0);     /* hands over the bytes it still holds */
    }
    if (t->resp_chunked) {
        tap_rd_write(&t->dc->rd, "0\r\n\r\n", 5);
    }
    tap_rd_send(&t->dc->rd);
    t->ex.last_byte = tap_now_ns();
    if (t->fx != NULL) {
        tap_txn_analyse_end(t, 0);
    }
    tap_txn_complete(t);
}


static void
tap_uconn_on_read(struct bufferevent *bev, void *arg)
{
    tap_uconn_t            *uc = arg;
    tap_txn_t              *t = uc->txn;
    tap_dconn_t            *dc = t->dc;
    struct evbuffer_iovec   v;
    size_t                  used;
    int                     rc;

    uc->now = tap_now_ns();
    if (t->fx != NULL) {
        t->fx->now = uc->now;          /* events are stamped with their read */
    }
    while (tap_rd_peek(&uc->rd, &v)) {
        rc = tap_respp_feed(&dc->rsp, v.iov_base, v.iov_len, &used);
        if (used > 0) {
            tap_rd_drain(&uc->rd, used);
        }
        if (rc == TAP_ERROR) {
            if (t->resp_started) {
                tap_txn_truncate(t, "upstream_bad_response");
            } else {
                tap_txn_upstream_failed(t, TAP_UFAIL_BAD);
            }
            return;
        }
        if (rc == TAP_AGAIN) {
            tap_txn_response_done(t);
            return;
        }
    }

    tap_rd_send(&dc->rd);
    if (evbuffer_get_length(bufferevent_get_output(dc->bev)) > TAP_PROXY_HIGH_WATER) {
        tap_rd_disable(&uc->rd);
    }
}


static void
tap_uconn_on_write(struct bufferevent *bev, void *arg)
{
    tap_uconn_t  *uc = arg;

    tap_rd_sent(&uc->rd);
    if (uc->txn != NULL) {
        tap_dconn_read_unblock(uc->txn->dc);
    }
}


static void
tap_uconn_on_event(struct bufferevent *bev, short what, void *arg)
{
    tap_uconn_t  *uc = arg;
    tap_txn_t    *t = uc->txn;
    tap_dconn_t  *dc = t->dc;

    if (what & BEV_EVENT_CONNECTED) {
        tap_txn_on_connected(t, tap_now_ns());
        return;
    }

    if (what & BEV_EVENT_TIMEOUT) {
        TAP_STAT_ADD(dc->w->st.limits[TAP_LIMIT_STREAM_IDLE_TIMEOUT], 1);
            tap_txn_truncate(t, "upstream_timeout");
        return;
    }

    /* EOF or error */
    if (!uc->connected) {
        tap_txn_upstream_failed(t, tap_tls_failed(bev) ? TAP_UFAIL_TLS : TAP_UFAIL_CONNECT);
        return;
    }
    if (!dc->rsp.got_head) {
        tap_txn_upstream_failed(t, dc->rsp.any_byte ? TAP_UFAIL_BAD : TAP_UFAIL_RESET);
        return;
    }
    if ((what & BEV_EVENT_EOF) && tap_respp_eof(&dc->rsp) == TAP_AGAIN) {
        tap_txn_response_done(t);
        return;
    }
    tap_txn_truncate(t, "upstream_reset");
}
