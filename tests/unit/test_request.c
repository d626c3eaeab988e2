/*
 * test_request.c: unit tests of the downstream request parser (src/proxy/request.c).
 *
 * Table-driven: every request smuggling and framing shape the proxy must refuse is fed to
 * tap_reqp_t the way src/proxy/server.c drives it (pause at the head, resume, feed an empty
 * piece for bodiless requests, tap_reqp_next() between pipelined messages), and must end in the
 * listed status; every well-formed request must be accepted with the listed fields.  Each input
 * is fed whole, one byte at a time and in 7-byte pieces, and the outcome must not depend on how
 * the bytes were split.  Output is TAP (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tap_core.h"
#include "proxy/request.h"

#define TAP_T_MAX_MSGS   8
#define TAP_T_MAX_BODY   256

/* What one message looked like when its head was accepted. */
typedef struct tap_t_msg_s {
    int        method;
    int        minor;
    char       url[64];
    unsigned   nheaders;
    int        has_cl;
    uint64_t   cl;
    int        chunked;
    int        expect;
    int        keepalive;
    int        complete;
    char       body[TAP_T_MAX_BODY];
    size_t     body_len;
} tap_t_msg_t;

/* The outcome of a whole input. */
typedef struct tap_t_run_s {
    tap_reqp_t    rp;
    tap_t_msg_t   msg[TAP_T_MAX_MSGS];
    int           nmsg;               /* heads accepted */
    int           ndone;              /* messages complete */
    int           nbegin;
    int           err_status;
    const char   *err_code;
    const char   *err_msg;
} tap_t_run_t;

/* One table row: an input, the limits, and what must come out. */
typedef struct tap_t_case_s {
    const char  *name;
    const char  *in;
    int          status;              /* 0: accepted */
    int          nmsg;                /* complete messages expected (accepted rows) */
    size_t       max_head;            /* 0: 32 KiB */
    unsigned     max_headers;         /* 0: 128 */
    uint64_t     max_body;            /* 0: 16 MiB */
} tap_t_case_t;


/* Parser callbacks. */

static void
tap_t_on_begin(void *ctx)
{
    tap_t_run_t  *r = ctx;

    r->nbegin++;
}


static int
tap_t_on_head(void *ctx)
{
    tap_t_run_t  *r = ctx;
    tap_reqp_t   *rp = &r->rp;
    tap_t_msg_t  *m;

    if (r->nmsg >= TAP_T_MAX_MSGS) {
        tap_reqp_fail(rp, 400, "test", "too many messages for the test");
        return TAP_ERROR;
    }
    m = &r->msg[r->nmsg++];
    m->method = llhttp_get_method(&rp->parser);
    m->minor = llhttp_get_http_minor(&rp->parser);
    snprintf(m->url, sizeof(m->url), "%.*s", (int) rp->hl.ulen, rp->hl.buf + rp->hl.uoff);
    m->nheaders = rp->hl.n;
    m->has_cl = rp->has_cl;
    m->cl = rp->content_length;
    m->chunked = rp->chunked;
    m->expect = rp->expect_continue;
    return TAP_OK;
}


static int
tap_t_on_body(void *ctx, const char *p, size_t len)
{
    tap_t_run_t  *r = ctx;
    tap_t_msg_t  *m = &r->msg[r->nmsg - 1];

    if (m->body_len + len <= TAP_T_MAX_BODY) {
        memcpy(m->body + m->body_len, p, len);
    }
    m->body_len += len;
    return TAP_OK;
}


static int
tap_t_on_done(void *ctx)
{
    tap_t_run_t  *r = ctx;

    r->ndone++;
    return TAP_OK;
}


static const tap_reqp_cbs_t  tap_t_cbs = {
    .on_begin = tap_t_on_begin,
    .on_head = tap_t_on_head,
    .on_body = tap_t_on_body,
    .on_done = tap_t_on_done,
};


/* Feeds in[0..len) in pieces of at most piece bytes (0: all at once) the
 * way tap_dconn_process() does; the parser is cleaned up before returning. */
static void
tap_t_run(tap_t_run_t *r, const tap_t_case_t *c, const char *in, size_t len, size_t piece)
{
    tap_reqp_t  *rp = &r->rp;
    tap_t_msg_t *m;
    size_t       off, n, used;
    int          rc, zero;

    memset(r, 0, sizeof(*r));
    tap_reqp_init(rp, &tap_t_cbs, r, c->max_head ? c->max_head : 32768,
        c->max_headers ? c->max_headers : 128, c->max_body ? c->max_body : 16 * 1024 * 1024);

    off = 0;
    zero = 0;
    while (off < len || zero) {
        n = len - off;
        if (piece > 0 && n > piece) {
            n = piece;
        }
        zero = 0;
        rc = tap_reqp_feed(rp, in + off, n, &used);
        assert_true(used <= n);
        off += used;
        if (rc == TAP_ERROR) {
            r->err_status = rp->err_status;
            r->err_code = rp->err_code;
            r->err_msg = rp->err_msg;
            assert_non_null(rp->err_code);
            assert_non_null(rp->err_msg);
            break;
        }
        if (rc == TAP_OK) {
            assert_int_equal(used, n);
            continue;
        }
        assert_int_equal(rc, TAP_AGAIN);

        if (!rp->done) {
            /* the head is complete */
            llhttp_resume(&rp->parser);
            if (!rp->chunked && !(rp->has_cl && rp->content_length > 0)) {
                rc = tap_reqp_feed(rp, "", 0, &used);
                assert_int_equal(rc, TAP_AGAIN);
                assert_true(rp->done);
            } else {
                zero = 1;
                continue;
            }
        }

        /* the message is complete */
        m = &r->msg[r->nmsg - 1];
        m->complete = 1;
        m->keepalive = tap_reqp_keepalive(rp);
        assert_int_equal(m->body_len, rp->body_bytes);
        if (rp->has_cl) {
            assert_int_equal(rp->body_bytes, rp->content_length);
        }
        if (!m->keepalive) {
            break;
        }
        tap_reqp_next(rp);
    }

    tap_reqp_cleanup(rp);
}


/* Runs len bytes of a case whole and split, checks the splits agree,
 * returns the whole run in r. */
static void
tap_t_check_len(tap_t_run_t *r, const tap_t_case_t *c, size_t len)
{
    static const size_t   pieces[] = { 1, 7 };
    tap_t_run_t          *s;
    size_t                i;
    int                   k;

    s = malloc(sizeof(*s));
    assert_non_null(s);

    tap_t_run(r, c, c->in, len, 0);
    for (i = 0; i < TAP_NELEMS(pieces); i++) {
        tap_t_run(s, c, c->in, len, pieces[i]);
        if (s->err_status != r->err_status || s->nmsg != r->nmsg || s->ndone != r->ndone) {
            fail_msg("%s: split by %zu: status %d (%s), %d heads, %d done; whole: status %d (%s),"
                " %d heads, %d done", c->name, pieces[i], s->err_status,
                s->err_msg ? s->err_msg : "-", s->nmsg, s->ndone, r->err_status,
                r->err_msg ? r->err_msg : "-", r->nmsg, r->ndone);
        }
        for (k = 0; k < r->nmsg; k++) {
            assert_string_equal(s->msg[k].url, r->msg[k].url);
            if (k >= r->ndone) {
                break;                  /* refused part way through its body */
            }
            assert_int_equal(s->msg[k].body_len, r->msg[k].body_len);
            assert_memory_equal(s->msg[k].body, r->msg[k].body,
                TAP_MIN(r->msg[k].body_len, TAP_T_MAX_BODY));
        }
    }

    free(s);
}


static void
tap_t_check(tap_t_run_t *r, const tap_t_case_t *c)
{
    tap_t_check_len(r, c, strlen(c->in));
}


/* Refused requests. */

static const tap_t_case_t  tap_t_refused[] = {
    /* Content-Length and Transfer-Encoding */
    { "CL+TE",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\n", 400, 0, 0, 0, 0 },
    { "TE+CL",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"
      "0\r\n\r\n", 400, 0, 0, 0, 0 },
    { "CL+TE identity",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: identity\r\n\r\n"
      "hello", 400, 0, 0, 0, 0 },

    /* Content-Length */
    { "duplicate CL, equal",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
      400, 0, 0, 0, 0 },
    { "duplicate CL, different",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
      400, 0, 0, 0, 0 },
    { "CL list",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400, 0, 0, 0, 0 },
    { "CL sign",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400, 0, 0, 0, 0 },
    { "CL negative",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400, 0, 0, 0, 0 },
    { "CL hex",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello", 400, 0, 0, 0, 0 },
    { "CL trailing garbage",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5x\r\n\r\nhello", 400, 0, 0, 0, 0 },
    { "CL empty",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n", 400, 0, 0, 0, 0 },
    { "CL inner space",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n0123456789", 400, 0, 0, 0, 0 },
    { "CL overflow",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551616\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "CL absurd",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "CL uint64 max",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551615\r\n\r\n",
      400, 0, 0, 0, 0 },

    /* Transfer-Encoding */
    { "TE gzip, chunked",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "TE chunked, gzip",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "TE chunked, chunked",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "TE twice",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0, 0, 0, 0 },
    { "TE gzip then chunked",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"
      "\r\n0\r\n\r\n", 400, 0, 0, 0, 0 },
    { "TE empty",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n0\r\n\r\n", 400, 0, 0, 0, 0 },
    { "TE identity",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", 400, 0, 0, 0, 0 },
    { "TE xchunked",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "TE chunked with parameter",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "TE on HTTP/1.0",
      "POST / HTTP/1.0\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400, 0, 0, 0, 0 },

    /* chunk sizes */
    { "chunk size not hex",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "chunk size negative",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "chunk size 0x prefix",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "chunk size empty",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "chunk size overflow",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "fffffffffffffffff\r\nhello\r\n0\r\n\r\n", 400, 0, 0, 0, 0 },
    { "chunk size bare LF",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "chunk data not followed by CRLF",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "chunk data followed by LF",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "chunk data too long",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },

    /* obs-fold */
    { "obs-fold",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", 400, 0, 0, 0, 0 },
    { "obs-fold tab",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n", 400, 0, 0, 0, 0 },
    { "obs-fold on TE",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n chunked\r\n\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "obs-fold after an empty value",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A:\r\n\t two\r\n\r\n", 400, 0, 0, 0, 0 },
    { "obs-fold in a trailer",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: a\r\n b\r\n"
      "\r\n", 400, 0, 0, 0, 0 },
    { "obs-fold on CL",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n 6\r\n\r\nhello!", 400, 0, 0, 0, 0 },

    /* Host */
    { "missing Host",
      "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400, 0, 0, 0, 0 },
    { "duplicate Host",
      "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0, 0, 0, 0 },
    { "duplicate Host, other case",
      "GET / HTTP/1.1\r\nHost: a\r\nhOST: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "duplicate Host on HTTP/1.0",
      "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, 0, 0, 0, 0 },

    /* framing names with '_' */
    { "Content_Length",
      "POST / HTTP/1.1\r\nHost: a\r\nContent_Length: 5\r\n\r\nhello", 400, 0, 0, 0, 0 },
    { "content_length with CL",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\ncontent_length: 5\r\n\r\nhello",
      400, 0, 0, 0, 0 },
    { "Transfer_Encoding",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "TRANSFER_ENCODING with CL",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTRANSFER_ENCODING: chunked\r\n\r\n"
      "0\r\n\r\n", 400, 0, 0, 0, 0 },

    /* malformed heads */
    { "space inside a name",
      "GET / HTTP/1.1\r\nHost: a\r\nX-Fo o: bar\r\n\r\n", 400, 0, 0, 0, 0 },
    { "space inside Transfer-Encoding",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encodin g: chunked\r\n\r\n0\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "empty name",
      "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", 400, 0, 0, 0, 0 },
    { "space before colon",
      "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 400, 0, 0, 0, 0 },
    { "bare LF",
      "GET / HTTP/1.1\nHost: a\n\n", 400, 0, 0, 0, 0 },
    { "bare CR",
      "GET / HTTP/1.1\rHost: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "control character in value",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\001c\r\n\r\n", 400, 0, 0, 0, 0 },
    { "HTTP/2.0",
      "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "HTTP/1.2",
      "GET / HTTP/1.2\r\nHost: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "absolute-form target without a path",
      "GET http://a HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "absolute-form target with userinfo",
      "GET http://u:p@a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "absolute-form target with an empty authority",
      "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "target neither a path nor absolute-form",
      "GET ftp://a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "asterisk target with GET",
      "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "no target",
      "GET  HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, 0, 0, 0 },
    { "unknown method",
      "FOO / HTTP/1.1\r\nHost: a\r\n\r\n", 400, 0, 0, 0, 0 },

    /* limits */
    { "head over the limit",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "\r\n\r\n", 431, 0, 128, 0, 0 },
    { "long target",
      "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      " HTTP/1.1\r\nHost: a\r\n\r\n", 431, 0, 128, 0, 0 },
    { "whitespace padding over the limit",
      "GET / HTTP/1.1\r\nHost: a\r\nX-A:                                                      "
      "                                                                                      "
      "b\r\n\r\n", 431, 0, 128, 0, 0 },
    { "head one byte over the limit",
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 431, 0, 22, 0, 0 },
    { "trailers over the head limit",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
      "X-T: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n",
      431, 0, 64, 0, 0 },
    { "too many headers",
      "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 431, 0, 0, 4, 0 },
    { "CL over the body limit",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world", 413, 0, 0, 0, 10 },
    { "CL far over the body limit",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999\r\n\r\n", 413, 0, 0, 0, 0 },
    { "chunked over the body limit",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n"
      "5\r\nworld\r\n0\r\n\r\n", 413, 0, 0, 0, 10 },
    { "chunk size far over the body limit",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffff\r\n"
      "hello world", 413, 0, 0, 0, 10 },

    /* upgrades and tunnels */
    { "Upgrade websocket",
      "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
      400, 0, 0, 0, 0 },
    { "Upgrade h2c without Connection",
      "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n", 400, 0, 0, 0, 0 },
    { "CONNECT",
      "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405, 0, 0, 0, 0 },
    { "CONNECT without a target or version", "CONNECT \n\n", 400, 0, 0, 0, 0 },
    { "GET without a target", "GET \n\n", 400, 0, 0, 0, 0 },

    /* expectations */
    { "Expect other",
      "POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx",
      417, 0, 0, 0, 0 },
    { "Expect twice",
      "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nExpect: 100-continue\r\n"
      "Content-Length: 1\r\n\r\nx", 417, 0, 0, 0, 0 },

    /* a bad request after a good one: the first is still served */
    { "smuggled second request",
      "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 1, 0, 0, 0 },
};


static void
test_refused(void **state)
{
    const tap_t_case_t  *c;
    tap_t_run_t         *r;
    size_t               i;

    r = malloc(sizeof(*r));
    assert_non_null(r);
    for (i = 0; i < TAP_NELEMS(tap_t_refused); i++) {
        c = &tap_t_refused[i];
        tap_t_check(r, c);
        if (r->err_status != c->status || r->ndone != c->nmsg) {
            fail_msg("%s: status %d (%s), %d complete; expected %d, %d complete", c->name,
                r->err_status, r->err_msg ? r->err_msg : "-", r->ndone, c->status, c->nmsg);
        }
    }
    free(r);
}


/* NUL bytes, which the table's strings cannot hold. */
static void
test_refused_nul(void **state)
{
    static const char  value[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n";
    static const char  name[] = "GET / HTTP/1.1\r\nHost: a\r\nX\0A: b\r\n\r\n";
    static const char  url[] = "GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n";
    static const tap_t_case_t  cases[] = {
        { "NUL in value", value, 400, 0, 0, 0, 0 },
        { "NUL in name", name, 400, 0, 0, 0, 0 },
        { "NUL in target", url, 400, 0, 0, 0, 0 },
    };
    static const size_t  lens[] = { sizeof(value) - 1, sizeof(name) - 1, sizeof(url) - 1 };
    tap_t_run_t         *r;
    size_t               i;

    r = malloc(sizeof(*r));
    assert_non_null(r);
    for (i = 0; i < TAP_NELEMS(cases); i++) {
        tap_t_check_len(r, &cases[i], lens[i]);
        if (r->err_status != 400 || r->ndone != 0) {
            fail_msg("%s: status %d, %d complete", cases[i].name, r->err_status, r->ndone);
        }
    }
    free(r);
}


/* Accepted requests. */

static const tap_t_case_t  tap_t_accepted[] = {
    { "GET", "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", 0, 1, 0, 0, 0 },
    { "POST CL",
      "POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
      "Content-Length: 11\r\n\r\nhello world", 0, 1, 0, 0, 0 },
    { "POST CL 0", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", 0, 1, 0, 0, 0 },
    { "chunked with extensions and trailers",
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "6;name=value\r\nhello \r\n5;a;b=\"c\"\r\nworld\r\n0\r\nX-Checksum: 1234\r\nX-B: c\r\n\r\n",
      0, 1, 0, 0, 0 },
    { "TE Chunked, padded",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n", 0, 1, 0, 0, 0 },
    { "pipelined",
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
      "POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
      "POST /3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n"
      "GET /4 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 0, 4, 0, 0, 0 },
    { "HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0, 1, 0, 0, 0 },
    { "HTTP/1.0 keep-alive",
      "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n", 0, 2, 0, 0, 0 },
    { "Expect 100-continue",
      "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\nhello",
      0, 1, 0, 0, 0 },
    { "OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, 1, 0, 0, 0 },
    { "absolute-form target",
      "GET http://a:8000/v1/models?x=1 HTTP/1.1\r\nHost: b\r\n\r\n"
      "GET HTTPS://a/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, 2, 0, 0, 0 },
    { "HEAD", "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 1, 0, 0, 0 },
    { "X_Header with underscore",
      "GET / HTTP/1.1\r\nHost: a\r\nX_Custom_Header: 1\r\nContent_Type: x\r\n\r\n",
      0, 1, 0, 0, 0 },
    { "leading CRLF between requests",
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", 0, 2, 0, 0, 0 },
    { "head exactly at the limit",
      "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, 1, 23, 0, 0 },
    { "body exactly at the limit",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789"
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n", 0, 2, 0, 0, 10 },
    { "trailers after a body larger than the head limit",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "40\r\n0123456789012345678901234567890123456789012345678901234567890123\r\n"
      "0\r\nX-Trailer: yes\r\n\r\n", 0, 1, 64, 0, 0 },
};


static const tap_t_case_t *
tap_t_accepted_case(const char *name)
{
    size_t  i;

    for (i = 0; i < TAP_NELEMS(tap_t_accepted); i++) {
        if (strcmp(tap_t_accepted[i].name, name) == 0) {
            return &tap_t_accepted[i];
        }
    }
    fail_msg("no case %s", name);
    return NULL;
}


static void
test_accepted(void **state)
{
    const tap_t_case_t  *c;
    tap_t_run_t         *r;
    size_t               i;
    int                  k;

    r = malloc(sizeof(*r));
    assert_non_null(r);
    for (i = 0; i < TAP_NELEMS(tap_t_accepted); i++) {
        c = &tap_t_accepted[i];
        tap_t_check(r, c);
        if (r->err_status != 0 || r->ndone != c->nmsg || r->nmsg != c->nmsg) {
            fail_msg("%s: status %d (%s), %d heads, %d complete; expected %d complete", c->name,
                r->err_status, r->err_msg ? r->err_msg : "-", r->nmsg, r->ndone, c->nmsg);
        }
        for (k = 0; k < r->nmsg; k++) {
            assert_true(r->msg[k].complete);
            assert_false(r->msg[k].chunked && r->msg[k].has_cl);
        }
    }
    free(r);
}


static void
test_fields(void **state)
{
    tap_t_run_t  *r;
    tap_t_msg_t  *m;

    r = malloc(sizeof(*r));
    assert_non_null(r);

    tap_t_check(r, tap_t_accepted_case("GET"));
    m = &r->msg[0];
    assert_int_equal(m->method, HTTP_GET);
    assert_int_equal(m->minor, 1);
    assert_string_equal(m->url, "/v1/models?x=1");
    assert_int_equal(m->nheaders, 2);
    assert_false(m->has_cl);
    assert_false(m->chunked);
    assert_false(m->expect);
    assert_int_equal(m->body_len, 0);
    assert_true(m->keepalive);

    tap_t_check(r, tap_t_accepted_case("POST CL"));
    m = &r->msg[0];
    assert_int_equal(m->method, HTTP_POST);
    assert_string_equal(m->url, "/v1/chat/completions");
    assert_true(m->has_cl);
    assert_int_equal(m->cl, 11);
    assert_false(m->chunked);
    assert_int_equal(m->body_len, 11);
    assert_memory_equal(m->body, "hello world", 11);

    tap_t_check(r, tap_t_accepted_case("POST CL 0"));
    assert_true(r->msg[0].has_cl);
    assert_int_equal(r->msg[0].cl, 0);
    assert_int_equal(r->msg[0].body_len, 0);

    tap_t_check(r, tap_t_accepted_case("chunked with extensions and trailers"));
    m = &r->msg[0];
    assert_true(m->chunked);
    assert_false(m->has_cl);
    assert_int_equal(m->body_len, 11);
    assert_memory_equal(m->body, "hello world", 11);
    assert_true(m->keepalive);

    tap_t_check(r, tap_t_accepted_case("TE Chunked, padded"));
    assert_true(r->msg[0].chunked);
    assert_int_equal(r->msg[0].body_len, 5);

    tap_t_check(r, tap_t_accepted_case("pipelined"));
    assert_int_equal(r->nbegin, 4);
    assert_string_equal(r->msg[0].url, "/1");
    assert_int_equal(r->msg[0].method, HTTP_GET);
    assert_int_equal(r->msg[0].body_len, 0);
    assert_true(r->msg[0].keepalive);
    assert_string_equal(r->msg[1].url, "/2");
    assert_int_equal(r->msg[1].method, HTTP_POST);
    assert_int_equal(r->msg[1].cl, 3);
    assert_memory_equal(r->msg[1].body, "abc", 3);
    assert_string_equal(r->msg[2].url, "/3");
    assert_true(r->msg[2].chunked);
    assert_int_equal(r->msg[2].body_len, 2);
    assert_memory_equal(r->msg[2].body, "de", 2);
    assert_string_equal(r->msg[3].url, "/4");
    assert_false(r->msg[3].keepalive);

    tap_t_check(r, tap_t_accepted_case("HTTP/1.0 without Host"));
    assert_int_equal(r->msg[0].minor, 0);
    assert_false(r->msg[0].keepalive);

    tap_t_check(r, tap_t_accepted_case("HTTP/1.0 keep-alive"));
    assert_true(r->msg[0].keepalive);
    assert_false(r->msg[1].keepalive);

    tap_t_check(r, tap_t_accepted_case("Expect 100-continue"));
    m = &r->msg[0];
    assert_true(m->expect);
    assert_int_equal(m->cl, 5);
    assert_memory_equal(m->body, "hello", 5);

    tap_t_check(r, tap_t_accepted_case("OPTIONS *"));
    assert_int_equal(r->msg[0].method, HTTP_OPTIONS);
    assert_string_equal(r->msg[0].url, "*");

    tap_t_check(r, tap_t_accepted_case("HEAD"));
    assert_int_equal(r->msg[0].method, HTTP_HEAD);

    tap_t_check(r, tap_t_accepted_case("trailers after a body larger than the head limit"));
    assert_int_equal(r->msg[0].body_len, 64);

    free(r);
}


/* The error reported for a refused request names a code and a message. */
static void
test_error_fields(void **state)
{
    static const tap_t_case_t  cl_te = {
        "CL+TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
        "Transfer-Encoding: chunked\r\n\r\n", 400, 0, 0, 0, 0
    };
    static const tap_t_case_t  big = {
        "big", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", 413, 0, 0, 0, 10
    };
    static const tap_t_case_t  head = {
        "head", "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        " HTTP/1.1\r\n\r\n", 431, 0, 32, 0, 0
    };
    tap_t_run_t  *r;

    r = malloc(sizeof(*r));
    assert_non_null(r);

    tap_t_check(r, &cl_te);
    assert_int_equal(r->err_status, 400);
    assert_string_equal(r->err_code, "bad_request");

    tap_t_check(r, &big);
    assert_int_equal(r->err_status, 413);
    assert_string_equal(r->err_code, "payload_too_large");

    tap_t_check(r, &head);
    assert_int_equal(r->err_status, 431);
    assert_string_equal(r->err_code, "headers_too_large");

    free(r);
}


/* Each header's name is recognised once, whatever its case and however the
 * head is cut into reads; the request-id name is the configured one. */
static void
test_header_ids(void **state)
{
    static const char  in[] =
        "POST /v1/x HTTP/1.1\r\nhOsT: a\r\nCONTENT-LENGTH: 0\r\nX-Req: 7\r\n"
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
        "Tracestate: a=1\r\ntracestate: b=2\r\nX-Forwarded-For: 10.0.0.1\r\n"
        "Content-Type: application/json\r\nx-request-id: not-this-one\r\n"
        "Content-Typo: x\r\nHost-: y\r\n\r\n";
    static const struct {
        const char  *name;
        tap_hid_e    id;
    } want[] = {
        { "hOsT", TAP_H_HOST }, { "CONTENT-LENGTH", TAP_H_CONTENT_LENGTH },
        { "X-Req", TAP_H_REQUEST_ID }, { "traceparent", TAP_H_TRACEPARENT },
        { "Tracestate", TAP_H_TRACESTATE }, { "tracestate", TAP_H_TRACESTATE },
        { "X-Forwarded-For", TAP_H_X_FORWARDED_FOR }, { "Content-Type", TAP_H_CONTENT_TYPE },
        { "x-request-id", TAP_H_OTHER }, { "Content-Typo", TAP_H_OTHER },
        { "Host-", TAP_H_OTHER },
    };
    tap_t_run_t  *r;
    tap_reqp_t   *rp;
    size_t        used, step, off, k;
    unsigned      i;
    int           rc;

    for (step = 1; step <= sizeof(in); step += (step < 8 ? 1 : 37)) {
        r = calloc(1, sizeof(*r));
        assert_non_null(r);
        rp = &r->rp;
        tap_reqp_init(rp, &tap_t_cbs, r, 32768, 128, 1024);
        tap_hlist_set_rid(&rp->hl, "x-req");
        for (off = 0; off < sizeof(in) - 1; off += used) {
            k = TAP_MIN(step, sizeof(in) - 1 - off);
            rc = tap_reqp_feed(rp, in + off, k, &used);
            assert_true(rc == TAP_OK || rc == TAP_AGAIN);
            if (rc == TAP_AGAIN) {
                break;                 /* paused at the end of the head */
            }
        }
        assert_int_equal(rc, TAP_AGAIN);
        assert_int_equal(rp->hl.n, TAP_NELEMS(want));
        for (i = 0; i < rp->hl.n; i++) {
            assert_int_equal(rp->hl.h[i].nlen, strlen(want[i].name));
            assert_memory_equal(tap_hlist_name(&rp->hl, i), want[i].name, rp->hl.h[i].nlen);
            assert_int_equal(rp->hl.h[i].id, want[i].id);
        }
        assert_int_equal(tap_hlist_count_id(&rp->hl, TAP_H_TRACESTATE), 2);
        assert_int_equal(tap_hlist_find_id(&rp->hl, TAP_H_TRACESTATE, 5), 5);
        assert_int_equal(tap_hlist_find_id(&rp->hl, TAP_H_TRACESTATE, 6), -1);
        assert_int_equal(tap_hlist_count_id(&rp->hl, TAP_H_HOST), 1);
        assert_int_equal(tap_hlist_count_id(&rp->hl, TAP_H_EXPECT), 0);
        assert_int_equal(tap_hlist_find_id(&rp->hl, TAP_H_EXPECT, 0), -1);
        assert_true(tap_hlist_is_hop(&rp->hl, 1));  /* Content-Length is regenerated */
        assert_false(tap_hlist_is_hop(&rp->hl, 7));
        tap_reqp_cleanup(rp);
        free(r);
    }
}


/* The hop-by-hop rules on a parsed head. */
static void
test_hop_headers(void **state)
{
    static const char  in[] =
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret\r\nKeep-Alive: 5\r\n"
        "X-Secret: 1\r\nX-Public: 2\r\nTE: trailers\r\nProxy-Connection: x\r\n\r\n";
    static const tap_t_case_t  c = { "hop", in, 0, 1, 0, 0, 0 };
    tap_t_run_t  *r;
    tap_reqp_t   *rp;
    size_t        used;
    int           i;

    r = malloc(sizeof(*r));
    assert_non_null(r);
    memset(r, 0, sizeof(*r));
    rp = &r->rp;
    tap_reqp_init(rp, &tap_t_cbs, r, 32768, 128, 1024);
    assert_int_equal(tap_reqp_feed(rp, in, sizeof(in) - 1, &used), TAP_AGAIN);
    assert_int_equal(used, sizeof(in) - 1);
    assert_false(rp->done);

    assert_int_equal(rp->hl.n, 7);
    assert_int_equal(tap_hlist_find(&rp->hl, "x-public", 0), 4);
    assert_int_equal(tap_hlist_find(&rp->hl, "HOST", 0), 0);
    assert_int_equal(tap_hlist_find(&rp->hl, "host", 1), -1);
    assert_int_equal(tap_hlist_count(&rp->hl, "x-secret"), 1);
    assert_true(tap_hlist_is_hop(&rp->hl, 1));      /* Connection */
    assert_true(tap_hlist_is_hop(&rp->hl, 2));      /* Keep-Alive */
    assert_true(tap_hlist_is_hop(&rp->hl, 3));      /* listed in Connection */
    assert_false(tap_hlist_is_hop(&rp->hl, 4));
    assert_true(tap_hlist_is_hop(&rp->hl, 5));      /* TE */
    assert_true(tap_hlist_is_hop(&rp->hl, 6));
    assert_false(tap_hlist_is_hop(&rp->hl, 0));
    for (i = 0; i < (int) rp->hl.n; i++) {
        assert_true(rp->hl.h[i].nlen > 0);
    }
    assert_memory_equal(tap_hlist_value(&rp->hl, 1), "keep-alive, X-Secret", 20);

    llhttp_resume(&rp->parser);
    assert_int_equal(tap_reqp_feed(rp, "", 0, &used), TAP_AGAIN);
    assert_true(rp->done);
    tap_reqp_cleanup(rp);

    tap_t_check(r, &c);
    assert_int_equal(r->ndone, 1);
    free(r);
}


/* A piece boundary right before a value must not look like obs-fold, and a
 * fold right at a piece boundary must still be seen. */
static void
test_obs_fold_boundaries(void **state)
{
    static const char  good[] = "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n";
    static const char *const  bad[] = {
        "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  \r\n \t chunked\r\n\r\n",
    };
    tap_t_run_t  *r;
    size_t        cut, used, len, i;
    int           rc;
    tap_reqp_t   *rp;

    r = malloc(sizeof(*r));
    assert_non_null(r);

    for (cut = 1; cut < sizeof(good) - 1; cut++) {
        memset(r, 0, sizeof(*r));
        rp = &r->rp;
        tap_reqp_init(rp, &tap_t_cbs, r, 32768, 128, 1024);
        rc = tap_reqp_feed(rp, good, cut, &used);
        assert_int_equal(rc, TAP_OK);
        rc = tap_reqp_feed(rp, good + cut, sizeof(good) - 1 - cut, &used);
        assert_int_equal(rc, TAP_AGAIN);
        tap_reqp_cleanup(rp);
    }

    for (i = 0; i < TAP_NELEMS(bad); i++) {
        len = strlen(bad[i]);
        for (cut = 1; cut < len; cut++) {
            memset(r, 0, sizeof(*r));
            rp = &r->rp;
            tap_reqp_init(rp, &tap_t_cbs, r, 32768, 128, 1024);
            rc = tap_reqp_feed(rp, bad[i], cut, &used);
            if (rc == TAP_OK) {
                rc = tap_reqp_feed(rp, bad[i] + cut, len - cut, &used);
            }
            if (rc != TAP_ERROR || rp->err_status != 400) {
                fail_msg("obs-fold %zu cut at %zu: rc %d status %d", i, cut, rc, rp->err_status);
            }
            tap_reqp_cleanup(rp);
        }
    }

    free(r);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_refused_nul),
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_error_fields),
        cmocka_unit_test(test_header_ids),
        cmocka_unit_test(test_hop_headers),
        cmocka_unit_test(test_obs_fold_boundaries),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
