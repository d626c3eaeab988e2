/*
 * test_split.c: unit tests of the SSE and NDJSON splitters (src/genai/split.c).
 *
 * Each fixture is an input stream with the events expected from it, written
 * by hand: data (or none), event, id, and the raw bytes of each event (from
 * the end of the one before to just past its blank line).  Every fixture is
 * fed whole, byte by byte, and cut at random 200 times (fixed seed), half of
 * those runs with a callback that stops feeding at each event so that the
 * caller resumes past ev->end.  Every run must give the expected events and
 * ranges, the counters and the finish result, and the bytes of the ranges
 * (copied out of the pieces as fed) plus what follows the last event must
 * be the input.  Each piece is a fresh allocation freed right after it is
 * fed, so reads past a piece or kept pointers into it show up under ASan.
 *
 * One allowance: an SSE blank line ending in a CRLF whose LF comes in the
 * next piece ends before that LF (split.h); the LF then starts the next
 * range.  The ranges are compared with such an LF moved back, and only where
 * the event ended exactly at the end of a piece.  Output is TAP
 * (CMOCKA_MESSAGE_OUTPUT=TAP).
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
#include "genai/split.h"

#define TAP_T_IN(s)       (s), sizeof(s) - 1
#define TAP_T_MAX_EV      16
#define TAP_T_MAX_DATA    256
#define TAP_T_MAX_IN      1024
#define TAP_T_SPLITS      200
#define TAP_T_STOP_RC     5

#define TAP_T_EXPECT(c, how, what, got, want)                                                 \
    do {                                                                                      \
        uint64_t  got_ = (uint64_t) (got);                                                    \
                                                                                              \
        if (got_ != (uint64_t) (want)) {                                                      \
            fail_msg("%s, %s: %s is %llu, expected %llu", (c)->name, how, what,               \
                     (unsigned long long) got_, (unsigned long long) (want));                 \
        }                                                                                     \
    } while (0)

typedef struct tap_t_ev_s {
    const char  *data;            /* NULL: no data */
    const char  *event;
    const char  *id;
    const char  *raw;             /* the event's bytes in the input */
    size_t       rawlen;
} tap_t_ev_t;

typedef struct tap_t_case_s {
    const char  *name;
    const char  *in;
    size_t       len;
    size_t       max;
    int          finish;          /* what *_finish returns */
    uint64_t     events;          /* events with data (SSE) or lines (NDJSON) */
    uint64_t     oversized;
    tap_t_ev_t   ev[TAP_T_MAX_EV];   /* up to the first with raw == NULL */
} tap_t_case_t;

typedef struct tap_t_got_s {
    int          has_data;
    size_t       len;
    char         data[TAP_T_MAX_DATA];
    char         event[64];
    char         id[128];
    size_t       end;             /* in the input */
    int          at_piece_end;    /* ended at the last byte of a piece */
} tap_t_got_t;

typedef struct tap_t_rec_s {
    const char   *piece;          /* what is being fed */
    size_t        plen;
    size_t        pos;            /* bytes of piece copied into recon */
    char          recon[TAP_T_MAX_IN];
    size_t        rlen;
    int           stop;           /* return TAP_T_STOP_RC from each callback */
    int           called;
    int           in_finish;
    unsigned      n;
    tap_t_got_t   got[TAP_T_MAX_EV];
} tap_t_rec_t;

/* How a run cuts its input. */
typedef struct tap_t_cut_s {
    size_t        fixed;          /* piece size; 0: see rng */
    uint64_t     *rng;            /* random sizes up to bound; NULL: whole */
    size_t        bound;
    int           stop;
} tap_t_cut_t;


static const tap_t_case_t  tap_t_sse_cases[] = {
    { "lf", TAP_T_IN("data: hello\n\ndata: world\n\n"), 1024, 0, 2, 0, {
        { "hello", "", "", TAP_T_IN("data: hello\n\n") },
        { "world", "", "", TAP_T_IN("data: world\n\n") },
    } },
    { "crlf", TAP_T_IN("data: a\r\n\r\ndata: b\r\n\r\n"), 1024, 0, 2, 0, {
        { "a", "", "", TAP_T_IN("data: a\r\n\r\n") },
        { "b", "", "", TAP_T_IN("data: b\r\n\r\n") },
    } },
    { "cr", TAP_T_IN("data: a\r\rdata: b\r\r"), 1024, 0, 2, 0, {
        { "a", "", "", TAP_T_IN("data: a\r\r") },
        { "b", "", "", TAP_T_IN("data: b\r\r") },
    } },
    { "mixed endings", TAP_T_IN("data: a\r\ndata: b\rdata: c\n\r\n"), 1024, 0, 1, 0, {
        { "a\nb\nc", "", "", TAP_T_IN("data: a\r\ndata: b\rdata: c\n\r\n") },
    } },
    { "no space, two spaces", TAP_T_IN("data:x\n\ndata:  y\n\n"), 1024, 0, 2, 0, {
        { "x", "", "", TAP_T_IN("data:x\n\n") },
        { " y", "", "", TAP_T_IN("data:  y\n\n") },
    } },
    { "multi-line", TAP_T_IN("data: {\"a\":\ndata: 1}\n\ndata: x\r\ndata:\r\ndata: z\r\n\r\n"),
      1024, 0, 2, 0, {
        { "{\"a\":\n1}", "", "", TAP_T_IN("data: {\"a\":\ndata: 1}\n\n") },
        { "x\n\nz", "", "", TAP_T_IN("data: x\r\ndata:\r\ndata: z\r\n\r\n") },
    } },
    { "comments", TAP_T_IN(": ping\n\n: keep-alive\ndata: x\n: mid\n\n:\n\n"), 1024, 0, 1, 0, {
        { NULL, "", "", TAP_T_IN(": ping\n\n") },
        { "x", "", "", TAP_T_IN(": keep-alive\ndata: x\n: mid\n\n") },
        { NULL, "", "", TAP_T_IN(":\n\n") },
    } },
    { "event and id",
      TAP_T_IN("event: delta\nid: 7\ndata: d1\n\ndata: d2\n\nid\ndata: d3\n\nevent: e\n\n"),
      1024, 0, 3, 0, {
        { "d1", "delta", "7", TAP_T_IN("event: delta\nid: 7\ndata: d1\n\n") },
        { "d2", "", "7", TAP_T_IN("data: d2\n\n") },
        { "d3", "", "", TAP_T_IN("id\ndata: d3\n\n") },
        { NULL, "e", "", TAP_T_IN("event: e\n\n") },
    } },
    { "id with NUL", TAP_T_IN("id: 1\ndata: a\n\nid: x\0y\ndata: b\n\n"), 1024, 0, 2, 0, {
        { "a", "", "1", TAP_T_IN("id: 1\ndata: a\n\n") },
        { "b", "", "1", TAP_T_IN("id: x\0y\ndata: b\n\n") },
    } },
    { "done", TAP_T_IN("data: {\"x\":1}\n\ndata: [DONE]\n\n"), 1024, 0, 2, 0, {
        { "{\"x\":1}", "", "", TAP_T_IN("data: {\"x\":1}\n\n") },
        { "[DONE]", "", "", TAP_T_IN("data: [DONE]\n\n") },
    } },
    { "bom", TAP_T_IN("\xef\xbb\xbf" "data: a\n\n\xef\xbb\xbf" "data: b\n\n"), 1024, 0, 1, 0, {
        { "a", "", "", TAP_T_IN("\xef\xbb\xbf" "data: a\n\n") },
        { NULL, "", "", TAP_T_IN("\xef\xbb\xbf" "data: b\n\n") },
    } },
    { "bom blank", TAP_T_IN("\xef\xbb\xbf\r\ndata: z\n\n"), 1024, 0, 1, 0, {
        { NULL, "", "", TAP_T_IN("\xef\xbb\xbf\r\n") },
        { "z", "", "", TAP_T_IN("data: z\n\n") },
    } },
    { "bom only", TAP_T_IN("\xef\xbb\xbf"), 1024, 0, 0, 0, { { 0 } } },
    { "cut mid-event", TAP_T_IN("data: a\n\ndata: b"), 1024, 1, 1, 0, {
        { "a", "", "", TAP_T_IN("data: a\n\n") },
    } },
    { "cut after data line", TAP_T_IN("data: a\n\nevent: x\ndata: b\n"), 1024, 1, 1, 0, {
        { "a", "", "", TAP_T_IN("data: a\n\n") },
    } },
    { "cut in comment", TAP_T_IN("data: a\n\n: x"), 1024, 1, 1, 0, {
        { "a", "", "", TAP_T_IN("data: a\n\n") },
    } },
    { "trailing spaces", TAP_T_IN("data: a\n\n  "), 1024, 0, 1, 0, {
        { "a", "", "", TAP_T_IN("data: a\n\n") },
    } },
    { "empty data", TAP_T_IN("data:\n\ndata\n\ndata:\ndata:\n\n"), 1024, 0, 3, 0, {
        { "", "", "", TAP_T_IN("data:\n\n") },
        { "", "", "", TAP_T_IN("data\n\n") },
        { "\n", "", "", TAP_T_IN("data:\ndata:\n\n") },
    } },
    { "fields", TAP_T_IN("retry: 100\nfoo: bar\ndata : no\ndata: a:b\n\n"), 1024, 0, 1, 0, {
        { "a:b", "", "", TAP_T_IN("retry: 100\nfoo: bar\ndata : no\ndata: a:b\n\n") },
    } },
    { "blank lines", TAP_T_IN("\n\r\n\rdata: q\n\n"), 1024, 0, 1, 0, {
        { NULL, "", "", TAP_T_IN("\n") },
        { NULL, "", "", TAP_T_IN("\r\n") },
        { NULL, "", "", TAP_T_IN("\r") },
        { "q", "", "", TAP_T_IN("data: q\n\n") },
    } },
    { "oversized", TAP_T_IN("data: 0123456789\n\ndata: 0123456789A\n\n"
                            "data: 0123456\r\ndata: 0123456\r\n\r\n"
                            "event: big\n: 0123456789ABCDEF\ndata: x\n\n"
                            "id: 9\ndata: ok\n\n"), 16, 0, 2, 3, {
        { "0123456789", "", "", TAP_T_IN("data: 0123456789\n\n") },
        { NULL, "", "", TAP_T_IN("data: 0123456789A\n\n") },
        { NULL, "", "", TAP_T_IN("data: 0123456\r\ndata: 0123456\r\n\r\n") },
        { NULL, "big", "", TAP_T_IN("event: big\n: 0123456789ABCDEF\ndata: x\n\n") },
        { "ok", "", "9", TAP_T_IN("id: 9\ndata: ok\n\n") },
    } },
    { "oversized then cut", TAP_T_IN("data: a\n\ndata: 0123456789ABCDEF"), 16, 1, 1, 1, {
        { "a", "", "", TAP_T_IN("data: a\n\n") },
    } },
    /* 8 bytes of data ("0123456\n") and a line of 8 are 16: the limit */
    { "max fits exactly", TAP_T_IN("data: 0123456\ndata: 01\n\n"), 16, 0, 1, 0, {
        { "0123456\n01", "", "", TAP_T_IN("data: 0123456\ndata: 01\n\n") },
    } },
    { "max one over", TAP_T_IN("data: 0123456\ndata: 012\n\ndata: 0123456789\n\n"), 16, 0, 1, 1, {
        { NULL, "", "", TAP_T_IN("data: 0123456\ndata: 012\n\n") },
        { "0123456789", "", "", TAP_T_IN("data: 0123456789\n\n") },
    } },
};

static const tap_t_case_t  tap_t_ndjson_cases[] = {
    { "lf", TAP_T_IN("{\"a\":1}\n{\"b\":2}\n"), 1024, 0, 2, 0, {
        { "{\"a\":1}", "", "", TAP_T_IN("{\"a\":1}\n") },
        { "{\"b\":2}", "", "", TAP_T_IN("{\"b\":2}\n") },
    } },
    { "crlf", TAP_T_IN("{\"a\":1}\r\n{\"b\":2}\r\n"), 1024, 0, 2, 0, {
        { "{\"a\":1}", "", "", TAP_T_IN("{\"a\":1}\r\n") },
        { "{\"b\":2}", "", "", TAP_T_IN("{\"b\":2}\r\n") },
    } },
    { "blank lines", TAP_T_IN("\n  \n{\"a\":1}\n\t\r\n\n{\"b\":2}\n\n"), 1024, 0, 2, 0, {
        { "{\"a\":1}", "", "", TAP_T_IN("\n  \n{\"a\":1}\n") },
        { "{\"b\":2}", "", "", TAP_T_IN("\t\r\n\n{\"b\":2}\n") },
    } },
    { "last line without LF", TAP_T_IN("{\"a\":1}\n{\"done\":true}"), 1024, 1, 2, 0, {
        { "{\"a\":1}", "", "", TAP_T_IN("{\"a\":1}\n") },
        { "{\"done\":true}", "", "", TAP_T_IN("{\"done\":true}") },
    } },
    { "last line CR", TAP_T_IN("{}\r\n{\"x\":1}\r"), 1024, 1, 2, 0, {
        { "{}", "", "", TAP_T_IN("{}\r\n") },
        { "{\"x\":1}", "", "", TAP_T_IN("{\"x\":1}\r") },
    } },
    { "last line blank", TAP_T_IN("{}\n \t"), 1024, 0, 1, 0, {
        { "{}", "", "", TAP_T_IN("{}\n") },
    } },
    { "only CRs", TAP_T_IN("a\r\r\n\r\n"), 1024, 0, 1, 0, {
        { "a\r", "", "", TAP_T_IN("a\r\r\n") },
    } },
    { "oversized", TAP_T_IN("12345678\n123456789\n{}\n"), 8, 0, 2, 1, {
        { "12345678", "", "", TAP_T_IN("12345678\n") },
        { "{}", "", "", TAP_T_IN("123456789\n{}\n") },
    } },
    { "oversized last line", TAP_T_IN("{}\n123456789"), 8, 0, 1, 1, {
        { "{}", "", "", TAP_T_IN("{}\n") },
    } },
};


static uint64_t
tap_t_rand(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}


/* Copies the bytes of the piece up to end into recon, and records an event. */
static tap_t_got_t *
tap_t_record(tap_t_rec_t *rec, size_t end)
{
    tap_t_got_t  *g;

    if (rec->in_finish) {
        assert_int_equal(end, 0);
    } else {
        assert_true(end >= rec->pos && end <= rec->plen);
        assert_true(rec->rlen + end - rec->pos <= sizeof(rec->recon));
        memcpy(rec->recon + rec->rlen, rec->piece + rec->pos, end - rec->pos);
        rec->rlen += end - rec->pos;
        rec->pos = end;
    }

    assert_true(rec->n < TAP_T_MAX_EV);
    g = &rec->got[rec->n++];
    memset(g, 0, sizeof(*g));
    g->end = rec->rlen;
    g->at_piece_end = !rec->in_finish && end == rec->plen;
    rec->called = 1;
    return g;
}


static int
tap_t_on_event(void *ctx, const tap_sse_event_t *ev)
{
    tap_t_rec_t  *rec = ctx;
    tap_t_got_t  *g;

    g = tap_t_record(rec, ev->end);
    if (ev->data != NULL) {
        assert_true(ev->len < TAP_T_MAX_DATA);
        g->has_data = 1;
        g->len = ev->len;
        memcpy(g->data, ev->data, ev->len);
    }
    assert_true(strlen(ev->event) < sizeof(g->event));
    assert_true(strlen(ev->id) < sizeof(g->id));
    strcpy(g->event, ev->event);
    strcpy(g->id, ev->id);
    return rec->stop ? TAP_T_STOP_RC : 0;
}


static int
tap_t_on_line(void *ctx, const tap_ndjson_line_t *line)
{
    tap_t_rec_t  *rec = ctx;
    tap_t_got_t  *g;

    g = tap_t_record(rec, line->end);
    assert_non_null(line->data);
    assert_true(line->len > 0 && line->len < TAP_T_MAX_DATA);
    g->has_data = 1;
    g->len = line->len;
    memcpy(g->data, line->data, line->len);
    return rec->stop && !rec->in_finish ? TAP_T_STOP_RC : 0;
}


/*
 * Feeds c as cut says into an SSE (ndjson == 0) or NDJSON splitter and
 * records what comes out; checks the counters and the finish result.
 */
static void
tap_t_run(const tap_t_case_t *c, int ndjson, const tap_t_cut_t *cut, tap_t_rec_t *rec,
    const char *how)
{
    tap_sse_t     sse;
    tap_ndjson_t  nd;
    char         *piece;
    size_t        off, n, q, k;
    int           rc;

    memset(rec, 0, sizeof(*rec));
    rec->stop = cut->stop;
    assert_true(c->len <= sizeof(rec->recon));
    tap_sse_init(&sse, c->max);
    tap_ndjson_init(&nd, c->max);

    for (off = 0; off < c->len; off += n) {
        n = c->len - off;
        if (cut->fixed) {
            n = TAP_MIN(n, cut->fixed);
        } else if (cut->rng != NULL) {
            k = 1 + tap_t_rand(cut->rng) % cut->bound;
            n = TAP_MIN(n, k);
        }

        piece = malloc(n);
        assert_non_null(piece);
        memcpy(piece, c->in + off, n);

        for (q = 0;; q += rec->pos) {
            rec->piece = piece + q;
            rec->plen = n - q;
            rec->pos = 0;
            rec->called = 0;
            rc = ndjson ? tap_ndjson_feed(&nd, piece + q, n - q, tap_t_on_line, rec)
                        : tap_sse_feed(&sse, piece + q, n - q, tap_t_on_event, rec);
            if (rc == 0) {
                break;
            }
            /* stopped right after the event it reported */
            assert_int_equal(rc, TAP_T_STOP_RC);
            assert_true(rec->called);
        }

        memcpy(rec->recon + rec->rlen, rec->piece + rec->pos, rec->plen - rec->pos);
        rec->rlen += rec->plen - rec->pos;
        free(piece);

        if (!ndjson) {
            assert_true(sse.cap <= c->max);
        } else {
            assert_true(nd.cap <= c->max);
        }
    }

    rec->in_finish = 1;
    if (ndjson) {
        TAP_T_EXPECT(c, how, "finish", tap_ndjson_finish(&nd, tap_t_on_line, rec), c->finish);
        TAP_T_EXPECT(c, how, "lines", nd.lines, c->events);
        TAP_T_EXPECT(c, how, "oversized", nd.oversized, c->oversized);
        assert_int_equal(tap_ndjson_finish(&nd, tap_t_on_line, rec), 0);
    } else {
        TAP_T_EXPECT(c, how, "finish", tap_sse_finish(&sse), c->finish);
        TAP_T_EXPECT(c, how, "events", sse.events, c->events);
        TAP_T_EXPECT(c, how, "oversized", sse.oversized, c->oversized);
        assert_int_equal(tap_sse_finish(&sse), 0);
    }

    tap_sse_cleanup(&sse);
    tap_ndjson_cleanup(&nd);
}


/* Compares what a run recorded with what the case expects. */
static void
tap_t_check(const tap_t_case_t *c, tap_t_rec_t *rec, const char *how)
{
    const tap_t_ev_t  *e;
    tap_t_got_t       *g;
    size_t             start, end;
    unsigned           i, n;

    /* the ranges and what follows them are the input, byte for byte */
    assert_int_equal(rec->rlen, c->len);
    assert_memory_equal(rec->recon, c->in, c->len);

    for (n = 0; n < TAP_T_MAX_EV && c->ev[n].raw != NULL; n++) {
        /* count */
    }
    if (rec->n != n) {
        fail_msg("%s, %s: %u events, expected %u", c->name, how, rec->n, n);
    }

    start = 0;
    for (i = 0; i < n; i++) {
        e = &c->ev[i];
        g = &rec->got[i];

        end = g->end;
        if (end > 0 && end < rec->rlen && rec->recon[end - 1] == '\r'
            && rec->recon[end] == '\n')
        {
            /* a CRLF blank line cut between its CR and its LF */
            if (!g->at_piece_end) {
                fail_msg("%s, %s: event %u ends between CR and LF inside a piece", c->name,
                         how, i);
            }
            end++;
        }
        if (end - start != e->rawlen || memcmp(rec->recon + start, e->raw, e->rawlen) != 0) {
            fail_msg("%s, %s: event %u: range [%zu, %zu), expected %zu bytes \"%.*s\"", c->name,
                     how, i, start, end, e->rawlen, (int) e->rawlen, e->raw);
        }
        start = end;
        g->end = end;
        g->at_piece_end = 0;          /* how it was cut; the rest must not depend on it */

        if ((e->data != NULL) != g->has_data) {
            fail_msg("%s, %s: event %u: data %s, expected %s", c->name, how, i,
                     g->has_data ? "present" : "NULL", e->data ? "present" : "NULL");
        }
        if (e->data != NULL) {
            if (g->len != strlen(e->data) || memcmp(g->data, e->data, g->len) != 0) {
                fail_msg("%s, %s: event %u: data \"%.*s\", expected \"%s\"", c->name, how, i,
                         (int) g->len, g->data, e->data);
            }
        }
        if (strcmp(g->event, e->event) != 0 || strcmp(g->id, e->id) != 0) {
            fail_msg("%s, %s: event %u: event \"%s\" id \"%s\", expected \"%s\" \"%s\"",
                     c->name, how, i, g->event, g->id, e->event, e->id);
        }
    }
}


static void
tap_t_cases(const tap_t_case_t *cases, size_t ncases, int ndjson)
{
    tap_t_rec_t  *rec, *ref;
    tap_t_cut_t   cut;
    uint64_t      rng;
    size_t        i, k;
    char          how[64];
    static const size_t  bounds[] = { 1, 2, 3, 5, 8, 13, 32, 1024 };

    rec = malloc(sizeof(*rec));
    ref = malloc(sizeof(*ref));
    assert_non_null(rec);
    assert_non_null(ref);

    for (i = 0; i < ncases; i++) {
        rng = 0x5eed5eed12345678ULL;

        memset(&cut, 0, sizeof(cut));
        tap_t_run(&cases[i], ndjson, &cut, ref, "whole");
        tap_t_check(&cases[i], ref, "whole");

        for (k = 0; k < 2 + TAP_T_SPLITS; k++) {
            memset(&cut, 0, sizeof(cut));
            if (k < 2) {
                cut.fixed = 1;
                cut.stop = (int) k;
                snprintf(how, sizeof(how), "byte by byte%s", k ? ", stopping" : "");
            } else {
                cut.rng = &rng;
                cut.bound = bounds[k % TAP_NELEMS(bounds)];
                cut.stop = (k / TAP_NELEMS(bounds)) & 1;
                snprintf(how, sizeof(how), "split %zu (up to %zu bytes%s)", k - 2, cut.bound,
                         cut.stop ? ", stopping" : "");
            }
            tap_t_run(&cases[i], ndjson, &cut, rec, how);
            tap_t_check(&cases[i], rec, how);

            /* the same events, and the same ranges once normalized */
            assert_int_equal(rec->n, ref->n);
            assert_memory_equal(rec->got, ref->got, rec->n * sizeof(rec->got[0]));
        }
    }

    free(rec);
    free(ref);
}


static void
test_sse_cases(void **state)
{
    tap_t_cases(tap_t_sse_cases, TAP_NELEMS(tap_t_sse_cases), 0);
}


static void
test_ndjson_cases(void **state)
{
    tap_t_cases(tap_t_ndjson_cases, TAP_NELEMS(tap_t_ndjson_cases), 1);
}


typedef struct tap_t_where_s {
    const char  *p;
    size_t       len;
    int          in_piece;
    unsigned     n;
} tap_t_where_t;


static int
tap_t_on_where(void *ctx, const tap_sse_event_t *ev)
{
    tap_t_where_t  *w = ctx;

    w->n++;
    w->in_piece = ev->data != NULL && ev->data >= w->p && ev->data < w->p + w->len;
    return 0;
}


/* One data line inside one piece is handed over where it is; anything else is copied. */
static void
test_sse_zero_copy(void **state)
{
    static const char  one[] = "data: hello\n\n";
    static const char  two[] = "data: a\ndata: b\n\n";
    tap_sse_t          s;
    tap_t_where_t      w;

    tap_sse_init(&s, 1024);

    w.p = one;
    w.len = sizeof(one) - 1;
    w.n = 0;
    assert_int_equal(tap_sse_feed(&s, w.p, w.len, tap_t_on_where, &w), 0);
    assert_int_equal(w.n, 1);
    assert_true(w.in_piece);
    assert_null(s.buf);                  /* nothing was copied */

    w.p = two;
    w.len = sizeof(two) - 1;
    assert_int_equal(tap_sse_feed(&s, w.p, w.len, tap_t_on_where, &w), 0);
    assert_int_equal(w.n, 2);
    assert_false(w.in_piece);

    /* the data line in one piece, the blank line in the next */
    w.p = one;
    w.len = sizeof(one) - 2;
    assert_int_equal(tap_sse_feed(&s, w.p, w.len, tap_t_on_where, &w), 0);
    assert_int_equal(w.n, 2);
    w.p = one + w.len;
    w.len = 1;
    assert_int_equal(tap_sse_feed(&s, w.p, w.len, tap_t_on_where, &w), 0);
    assert_int_equal(w.n, 3);
    assert_false(w.in_piece);

    tap_sse_cleanup(&s);
}


static int
tap_t_on_count(void *ctx, const tap_sse_event_t *ev)
{
    uint64_t  *n = ctx;

    *n += ev->len;
    return 0;
}


static int
tap_t_on_count_line(void *ctx, const tap_ndjson_line_t *line)
{
    uint64_t  *n = ctx;

    *n += line->len;
    return 0;
}


/* Once the buffer has grown to the largest event, it is neither moved nor grown. */
static void
test_steady_state(void **state)
{
    tap_sse_t     s;
    tap_ndjson_t  nd;
    char         *in, *buf;
    size_t        len, off, n, cap, i, j;
    uint64_t      rng, total;
    int           pass;

    in = malloc(200 * 64);
    assert_non_null(in);
    len = 0;
    for (i = 0; i < 200; i++) {
        len += (size_t) sprintf(in + len, "data: {\"t\":\"%0*zu\"}\n\n", (int) (i % 40), i);
    }

    tap_sse_init(&s, 4096);
    tap_ndjson_init(&nd, 4096);
    buf = NULL;
    cap = 0;
    for (pass = 0; pass < 4; pass++) {
        rng = 42;
        total = 0;
        for (off = 0; off < len; off += n) {
            n = 1 + tap_t_rand(&rng) % 37;
            n = TAP_MIN(len - off, n);
            assert_int_equal(tap_sse_feed(&s, in + off, n, tap_t_on_count, &total), 0);
            assert_int_equal(tap_ndjson_feed(&nd, in + off, n, tap_t_on_count_line, &total), 0);
        }
        if (pass == 0) {
            buf = s.buf;
            cap = s.cap;
            assert_non_null(buf);
        }
        assert_ptr_equal(s.buf, buf);
        assert_int_equal(s.cap, cap);
        assert_true(cap <= 4096);
    }
    assert_int_equal(s.events, 4 * 200);
    assert_int_equal(nd.lines, 4 * 200);
    assert_int_equal(tap_sse_finish(&s), 0);
    assert_int_equal(tap_ndjson_finish(&nd, NULL, NULL), 0);

    /* max 0: every non-blank line overflows, blank lines still dispatch */
    tap_sse_cleanup(&s);
    tap_sse_init(&s, 0);
    for (j = 0; j < 2; j++) {
        assert_int_equal(tap_sse_feed(&s, "data: x\n\n\n", 10, NULL, NULL), 0);
    }
    assert_int_equal(s.events, 0);
    assert_int_equal(s.oversized, 2);
    assert_null(s.buf);

    tap_sse_cleanup(&s);
    tap_ndjson_cleanup(&nd);
    free(in);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_sse_cases),
        cmocka_unit_test(test_ndjson_cases),
        cmocka_unit_test(test_sse_zero_copy),
        cmocka_unit_test(test_steady_state),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
