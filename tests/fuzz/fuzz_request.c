/*
 * fuzz_request.c: libFuzzer harness for infertap's downstream request path.
 *
 * The input is fed to tap_reqp_t the way tap_dconn_process() in
 * src/proxy/server.c drives it: the parser pauses at each valid head
 * (TAP_AGAIN, then llhttp_resume()), a bodiless request is finished with an
 * empty feed, and tap_reqp_next() re-arms it between pipelined requests
 * until one is not keep-alive.  At each head the checks the proxy runs on
 * what was parsed are run too: header lookups, hop-by-hop rules,
 * traceparent (whose formatting must parse back to the same ids) and
 * tracestate.
 *
 * The first byte picks the limits (bit 7: tiny ones, so that 413 and 431
 * are reached) and seeds the piece sizes.  The rest is fed once in one
 * piece and once in pieces of 1 to 64 bytes; both runs must accept the same
 * heads and complete the same messages with the same bodies, and fail or
 * not together.  Any broken invariant aborts: consumed <= len, an accepted
 * head never has both chunked and Content-Length framing (nor a second
 * Host, nor a framing header spelled with '_'), a Content-Length body
 * delivers exactly that many bytes, a refusal carries a known status.
 * Leaks are left to LeakSanitizer.
 */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tap_core.h"
#include "proxy/headers.h"
#include "proxy/request.h"
#include "proxy/trace.h"

#define TAP_FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)

typedef struct tap_fuzz_rq_s {
    tap_reqp_t  rp;
    uint64_t    max_body;
    unsigned    heads;            /* heads accepted */
    unsigned    done;             /* messages complete */
    unsigned    begins;
    unsigned    in_msg:1;         /* between on_head and on_done */
    uint64_t    body;             /* body bytes of the current message */
    uint64_t    msg_hash;         /* the current message */
    uint64_t    hash;             /* every complete message */
} tap_fuzz_rq_t;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static uint64_t
tap_fuzz_hash(uint64_t h, const void *p, size_t len)
{
    const uint8_t  *b = p;
    size_t          i;

    for (i = 0; i < len; i++) {
        h = (h ^ b[i]) * 0x100000001b3ULL;
    }
    return h;
}


/* The traceparent and tracestate checks of tap_txn_trace() and
 * tap_txn_build_head(), with what their results promise. */
static void
tap_fuzz_trace(const tap_hlist_t *hl)
{
    tap_traceparent_t  tp, tp2;
    const char        *v;
    size_t             vlen;
    char               out[TAP_TRACEPARENT_LEN + 1];
    int                h;

    h = tap_hlist_find(hl, "traceparent", 0);
    if (h >= 0 && tap_hlist_count(hl, "traceparent") == 1) {
        v = tap_hlist_value(hl, (unsigned) h);
        vlen = hl->h[h].vlen;
        if (tap_traceparent_parse(&tp, v, vlen) == TAP_OK) {
            tap_trim(&v, &vlen);
            TAP_FUZZ_CHECK(vlen >= TAP_TRACEPARENT_LEN);
            TAP_FUZZ_CHECK(!(v[0] == 'f' && v[1] == 'f'));
            tap_traceparent_format(out, tp.trace_id, tp.parent_id, tp.flags);
            TAP_FUZZ_CHECK(strlen(out) == TAP_TRACEPARENT_LEN);
            TAP_FUZZ_CHECK(memcmp(out + 2, v + 2, TAP_TRACEPARENT_LEN - 2) == 0);
            if (v[0] == '0' && v[1] == '0') {
                TAP_FUZZ_CHECK(vlen == TAP_TRACEPARENT_LEN);
            }
            TAP_FUZZ_CHECK(tap_traceparent_parse(&tp2, out, TAP_TRACEPARENT_LEN) == TAP_OK);
            TAP_FUZZ_CHECK(memcmp(&tp, &tp2, sizeof(tp)) == 0);
        }
    }

    h = -1;
    while ((h = tap_hlist_find(hl, "tracestate", (unsigned) (h + 1))) >= 0) {
        if (tap_tracestate_check(tap_hlist_value(hl, (unsigned) h), hl->h[h].vlen) == TAP_OK) {
            TAP_FUZZ_CHECK(hl->h[h].vlen <= TAP_TRACESTATE_MAX_LEN);
        }
    }
}


/* Non-zero if name is framing_name with some '-' spelled '_'. */
static int
tap_fuzz_underscore(const char *name, size_t len, const char *framing)
{
    size_t  i;
    int     us = 0;

    if (strlen(framing) != len) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (name[i] == '_' && framing[i] == '-') {
            us = 1;
        } else if ((name[i] | 0x20) != framing[i]) {
            return 0;
        }
    }
    return us;
}


static void
tap_fuzz_on_begin(void *ctx)
{
    tap_fuzz_rq_t  *f = ctx;

    TAP_FUZZ_CHECK(!f->in_msg);
    f->begins++;
}


static int
tap_fuzz_on_head(void *ctx)
{
    tap_fuzz_rq_t  *f = ctx;
    tap_reqp_t     *rp = &f->rp;
    tap_hlist_t    *hl = &rp->hl;
    const char     *name, *v;
    size_t          nlen, vlen, k;
    unsigned        i, ncl, nte;
    int             method;

    TAP_FUZZ_CHECK(!f->in_msg);
    TAP_FUZZ_CHECK(rp->begun && !rp->in_head && !rp->done);
    TAP_FUZZ_CHECK(rp->err_status == 0);

    /* framing */
    ncl = tap_hlist_count(hl, "content-length");
    nte = tap_hlist_count(hl, "transfer-encoding");
    TAP_FUZZ_CHECK(!(rp->chunked && rp->has_cl));
    TAP_FUZZ_CHECK(ncl <= 1 && nte <= 1 && !(ncl && nte));
    TAP_FUZZ_CHECK(rp->has_cl == (ncl == 1));
    TAP_FUZZ_CHECK(rp->chunked == (nte == 1));
    if (rp->has_cl) {
        TAP_FUZZ_CHECK(rp->content_length <= f->max_body);
    }
    if (rp->chunked) {
        i = (unsigned) tap_hlist_find(hl, "transfer-encoding", 0);
        v = tap_hlist_value(hl, i);
        vlen = hl->h[i].vlen;
        tap_trim(&v, &vlen);
        TAP_FUZZ_CHECK(vlen == 7 && strncasecmp(v, "chunked", 7) == 0);
    }

    /* what the head may not carry */
    method = llhttp_get_method(&rp->parser);
    TAP_FUZZ_CHECK(method != HTTP_CONNECT);
    TAP_FUZZ_CHECK(tap_hlist_find(hl, "upgrade", 0) < 0);
    TAP_FUZZ_CHECK(llhttp_get_http_major(&rp->parser) == 1);
    TAP_FUZZ_CHECK(llhttp_get_http_minor(&rp->parser) <= 1);
    k = tap_hlist_count(hl, "host");
    TAP_FUZZ_CHECK(k <= 1);
    TAP_FUZZ_CHECK(k == 1 || llhttp_get_http_minor(&rp->parser) == 0);
    TAP_FUZZ_CHECK(hl->ulen > 0 && hl->uoff + (size_t) hl->ulen <= hl->len);
    TAP_FUZZ_CHECK(hl->buf[hl->uoff] == '/' || (hl->ulen == 1 && hl->buf[hl->uoff] == '*'));
    if (rp->expect_continue) {
        TAP_FUZZ_CHECK(tap_hlist_count(hl, "expect") == 1);
    }

    /* every header: in bounds, clean, hop rules, lookups */
    TAP_FUZZ_CHECK(hl->n <= hl->max_n && hl->len <= hl->limit);
    for (i = 0; i < hl->n; i++) {
        name = tap_hlist_name(hl, i);
        nlen = hl->h[i].nlen;
        v = tap_hlist_value(hl, i);
        vlen = hl->h[i].vlen;
        TAP_FUZZ_CHECK(nlen > 0);
        TAP_FUZZ_CHECK(hl->h[i].noff + (size_t) nlen <= hl->len);
        TAP_FUZZ_CHECK(hl->h[i].voff + (size_t) vlen <= hl->len);
        TAP_FUZZ_CHECK(memchr(name, ':', nlen) == NULL && memchr(name, ' ', nlen) == NULL);
        TAP_FUZZ_CHECK(memchr(v, '\r', vlen) == NULL && memchr(v, '\n', vlen) == NULL);
        TAP_FUZZ_CHECK(memchr(v, '\0', vlen) == NULL);
        TAP_FUZZ_CHECK(!tap_fuzz_underscore(name, nlen, "content-length"));
        TAP_FUZZ_CHECK(!tap_fuzz_underscore(name, nlen, "transfer-encoding"));

        k = (size_t) tap_hlist_is_hop(hl, i);
        if (tap_name_eq(name, nlen, "connection") || tap_name_eq(name, nlen, "content-length")
            || tap_name_eq(name, nlen, "transfer-encoding") || tap_name_eq(name, nlen, "te"))
        {
            TAP_FUZZ_CHECK(k);
        }
        if (tap_name_eq(name, nlen, "connection")) {
            (void) tap_token_list_has(v, vlen, "close", 5);
            (void) tap_token_list_has(v, vlen, "keep-alive", 10);
        }
        TAP_FUZZ_CHECK(memchr(name, '\0', nlen) == NULL);
    }
    tap_fuzz_trace(hl);

    f->heads++;
    f->in_msg = 1;
    f->body = 0;
    f->msg_hash = tap_fuzz_hash(0xcbf29ce484222325ULL, hl->buf + hl->uoff, hl->ulen);
    f->msg_hash = tap_fuzz_hash(f->msg_hash, &method, sizeof(method));
    k = (size_t) rp->has_cl << 1 | rp->chunked;
    f->msg_hash = tap_fuzz_hash(f->msg_hash, &k, sizeof(k));
    return TAP_OK;
}


static int
tap_fuzz_on_body(void *ctx, const char *p, size_t len)
{
    tap_fuzz_rq_t  *f = ctx;

    TAP_FUZZ_CHECK(f->in_msg);
    TAP_FUZZ_CHECK(f->rp.chunked || f->rp.has_cl);
    f->body += len;
    TAP_FUZZ_CHECK(f->body == f->rp.body_bytes);
    TAP_FUZZ_CHECK(f->body <= f->max_body);
    if (f->rp.has_cl) {
        TAP_FUZZ_CHECK(f->body <= f->rp.content_length);
    }
    f->msg_hash = tap_fuzz_hash(f->msg_hash, p, len);
    return TAP_OK;
}


static int
tap_fuzz_on_done(void *ctx)
{
    tap_fuzz_rq_t  *f = ctx;

    TAP_FUZZ_CHECK(f->in_msg);
    TAP_FUZZ_CHECK(f->body == f->rp.body_bytes);
    if (f->rp.has_cl) {
        TAP_FUZZ_CHECK(f->body == f->rp.content_length);
    }
    if (!f->rp.has_cl && !f->rp.chunked) {
        TAP_FUZZ_CHECK(f->body == 0);
    }
    f->in_msg = 0;
    f->done++;
    f->hash = tap_fuzz_hash(f->hash, &f->msg_hash, sizeof(f->msg_hash));
    return TAP_OK;
}


static const tap_reqp_cbs_t  tap_fuzz_cbs = {
    .on_begin = tap_fuzz_on_begin,
    .on_head = tap_fuzz_on_head,
    .on_body = tap_fuzz_on_body,
    .on_done = tap_fuzz_on_done,
};


/* Feeds data as tap_dconn_process() does; returns non-zero if the request
 * stream was refused. */
static int
tap_fuzz_run(tap_fuzz_rq_t *f, const uint8_t *data, size_t size, uint64_t seed, int small)
{
    tap_reqp_t  *rp = &f->rp;
    uint64_t     x = seed;
    size_t       off, n, used;
    int          rc, zero, failed;

    f->max_body = small ? 64 : 16 * 1024 * 1024;
    tap_reqp_init(rp, &tap_fuzz_cbs, f, small ? 256 : 32768, small ? 8 : 128, f->max_body);

    failed = 0;
    zero = 0;
    off = 0;
    while (off < size || zero) {
        n = size - off;
        if (seed != 0) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            n = TAP_MIN(n, 1 + (size_t) (x % 64));
        }
        zero = 0;

        used = (size_t) -1;
        rc = tap_reqp_feed(rp, (const char *) data + off, n, &used);
        TAP_FUZZ_CHECK(used <= n);
        off += used;

        if (rc == TAP_ERROR) {
            TAP_FUZZ_CHECK(used == 0);
            TAP_FUZZ_CHECK(rp->err_status == 400 || rp->err_status == 405
                || rp->err_status == 413 || rp->err_status == 417 || rp->err_status == 431
                || rp->err_status == 503);
            TAP_FUZZ_CHECK(rp->err_code != NULL && rp->err_msg != NULL);
            failed = 1;
            break;
        }
        if (rc == TAP_OK) {
            TAP_FUZZ_CHECK(used == n);
            continue;
        }
        TAP_FUZZ_CHECK(rc == TAP_AGAIN);
        TAP_FUZZ_CHECK(f->in_msg || rp->done);

        if (!rp->done) {
            /* the head is complete */
            TAP_FUZZ_CHECK(f->in_msg);
            llhttp_resume(&rp->parser);
            if (!rp->chunked && !(rp->has_cl && rp->content_length > 0)) {
                rc = tap_reqp_feed(rp, "", 0, &used);
                TAP_FUZZ_CHECK(rc == TAP_AGAIN && rp->done && used == 0);
            } else {
                zero = 1;
                continue;
            }
        }

        /* the message is complete */
        TAP_FUZZ_CHECK(!f->in_msg);
        if (!tap_reqp_keepalive(rp)) {
            break;
        }
        tap_reqp_next(rp);
        TAP_FUZZ_CHECK(!rp->done && !rp->begun && rp->hl.n == 0);
    }

    tap_reqp_cleanup(rp);
    return failed;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tap_fuzz_rq_t  *whole, *split;
    uint64_t        seed;
    int             small, f1, f2;

    if (size == 0) {
        return 0;
    }
    small = (data[0] & 0x80) != 0;
    seed = (data[0] & 0x7f) * 0x9e3779b97f4a7c15ULL + 1;
    data++;
    size--;

    whole = calloc(1, sizeof(*whole));
    split = calloc(1, sizeof(*split));
    if (whole == NULL || split == NULL) {
        goto done;
    }

    f1 = tap_fuzz_run(whole, data, size, 0, small);
    f2 = tap_fuzz_run(split, data, size, seed, small);

    /* how the bytes arrive must not change what is accepted */
    TAP_FUZZ_CHECK(f1 == f2);
    TAP_FUZZ_CHECK(whole->done == split->done);
    TAP_FUZZ_CHECK(whole->heads == split->heads);
    TAP_FUZZ_CHECK(whole->hash == split->hash);

done:

    free(whole);
    free(split);
    return 0;
}
