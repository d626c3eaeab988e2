/*
 * split.c: the SSE and NDJSON splitters declared in split.h.
 *
 * Both run on the worker thread for every piece of a streamed response, so
 * they are built to touch each byte once: line ends are found with memchr
 * (for SSE, the next LF and the next CR are each looked up once and reused
 * until passed, so CR-only and LF-only streams both stay linear), and a line
 * that lies whole inside the fed piece is parsed where it is.  Only what
 * must outlive the piece is copied into the splitter's buffer: an unfinished
 * line, and the data of an event that is still open when the piece ends.
 * An event whose data is one line inside one piece is even dispatched with
 * `data` pointing into that piece.  Either way `data` is valid only during
 * the callback.
 *
 * The buffer grows geometrically up to `max` and is kept across events, so
 * the steady state allocates nothing.  Whether an event is oversized depends
 * only on its bytes, never on where the pieces were cut: an SSE event
 * overflows when the data joined so far (one '\n' after each data line) plus
 * the raw length of one of its lines (without the line ending) exceeds
 * `max`; an NDJSON line when its bytes before the LF exceed `max`.  It is
 * counted in `oversized` as soon as it overflows, so that a stream cut
 * inside one still counts it.  A failed allocation is handled the same way.
 *
 * SSE follows the WHATWG HTML "event stream interpretation", with these
 * choices: the callback runs at every blank line, data or not, so that
 * callers can account for every byte; `end` of a blank line that ends with
 * a CR which is the last byte of the piece is just past that CR, and the LF
 * that may follow in the next piece is swallowed there (after_cr); while an
 * oversized event is being skipped, all its lines are dropped until its
 * blank line; "event" and "id" values longer than their fields are
 * truncated; "retry" is ignored.
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "tap_core.h"
#include "genai/split.h"

#define TAP_SPLIT_MIN_CAP  256

/* One tap_sse_feed() call: the piece and the data kept in it. */
typedef struct tap_sse_run_s {
    tap_sse_cb    cb;
    void         *ctx;
    const char   *zc;          /* the open event's one data line, in the piece */
    size_t        zc_len;
} tap_sse_run_t;


/*
 * Makes room for `need` bytes in *buf.  Grows by doubling, but never past
 * max (need is at most max).  Returns TAP_OK, or TAP_ERROR when out of memory
 * (*buf is then unchanged).
 */
static int
tap_split_reserve(char **buf, size_t *cap, size_t max, size_t need)
{
    size_t  ncap;
    char   *nb;

    if (need <= *cap) {
        return TAP_OK;
    }

    ncap = *cap ? *cap : TAP_SPLIT_MIN_CAP;
    while (ncap < need) {
        ncap *= 2;
    }
    if (ncap > max && need <= max) {
        ncap = max;
    }

    nb = realloc(*buf, ncap);
    if (nb == NULL) {
        return TAP_ERROR;
    }
    *buf = nb;
    *cap = ncap;
    return TAP_OK;
}


void
tap_sse_init(tap_sse_t *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    s->max = max;
    s->first = 1;
}


void
tap_sse_cleanup(tap_sse_t *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}


/* The current event overflowed: drop what it has and skip to its end. */
static void
tap_sse_overflow(tap_sse_t *s, tap_sse_run_t *r, int in_line)
{
    s->skipping = 1;
    s->first = 0;
    s->has_data = 0;
    s->data_len = 0;
    s->line = 0;
    /* while skipping, len only says whether the current line has bytes */
    s->len = in_line ? 1 : 0;
    r->zc = NULL;
    s->oversized++;
}


/* Bytes of joined data the open event holds, counting each data line's '\n'. */
static size_t
tap_sse_data_size(const tap_sse_t *s, const tap_sse_run_t *r)
{
    return r->zc != NULL ? r->zc_len + 1 : s->data_len;
}


/*
 * Copies data that points into the piece into buf, before the piece goes
 * away or more data is joined to it.  Returns TAP_OK, or TAP_ERROR when the
 * event had to be dropped (out of memory).
 */
static int
tap_sse_keep(tap_sse_t *s, tap_sse_run_t *r)
{
    if (r->zc == NULL) {
        return TAP_OK;
    }

    if (tap_split_reserve(&s->buf, &s->cap, s->max, r->zc_len + 1) != TAP_OK) {
        tap_sse_overflow(s, r, 0);
        return TAP_ERROR;
    }
    memcpy(s->buf, r->zc, r->zc_len);
    s->buf[r->zc_len] = '\n';
    s->data_len = s->len = s->line = r->zc_len + 1;
    r->zc = NULL;
    return TAP_OK;
}


/* A blank line: hands the event to the callback and resets it. */
static int
tap_sse_dispatch(tap_sse_t *s, tap_sse_run_t *r, size_t end)
{
    tap_sse_event_t  ev;
    int              rc;

    ev.data = NULL;
    ev.len = 0;
    ev.event = s->event;
    ev.id = s->id;
    ev.end = end;

    if (s->skipping) {
        /* counted in oversized when it overflowed */

    } else if (r->zc != NULL) {
        ev.data = r->zc;
        ev.len = r->zc_len;
        s->events++;

    } else if (s->has_data) {
        ev.data = s->buf;
        ev.len = s->data_len - 1;        /* the last line's '\n' */
        s->events++;
    }

    rc = r->cb != NULL ? r->cb(r->ctx, &ev) : 0;

    /* id is the last event id: it persists */
    s->event[0] = '\0';
    s->has_data = 0;
    s->skipping = 0;
    s->data_len = s->len = s->line = 0;
    r->zc = NULL;
    return rc;
}


/* Copies a field value into a NUL-terminated field, truncating it. */
static void
tap_sse_set(char *dst, size_t size, const char *v, size_t vlen)
{
    vlen = TAP_MIN(vlen, size - 1);
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}


/*
 * One complete line l of n bytes (without its ending), not part of a
 * skipped event.  in_piece: l lies in the fed piece (else it is the pending
 * line at buf + line).  Returns the callback's value, or 0.
 */
static int
tap_sse_line(tap_sse_t *s, tap_sse_run_t *r, const char *l, size_t n, int in_piece, size_t end)
{
    const char  *colon, *v;
    size_t       name, vlen;

    if (s->first) {
        s->first = 0;
        if (n >= 3 && memcmp(l, "\xef\xbb\xbf", 3) == 0) {
            l += 3;
            n -= 3;
        }
    }

    if (n == 0) {
        return tap_sse_dispatch(s, r, end);
    }
    if (l[0] == ':') {
        return 0;                         /* comment */
    }

    colon = memchr(l, ':', n);
    if (colon != NULL) {
        name = (size_t) (colon - l);
        v = colon + 1;
        vlen = n - name - 1;
        if (vlen > 0 && v[0] == ' ') {
            v++;
            vlen--;
        }
    } else {
        name = n;
        v = l + n;
        vlen = 0;
    }

    switch (name) {
    case 4:
        if (memcmp(l, "data", 4) != 0) {
            break;
        }
        if (in_piece && !s->has_data) {
            r->zc = v;
            r->zc_len = vlen;
            s->has_data = 1;
            break;
        }
        if (tap_sse_keep(s, r) != TAP_OK) {
            break;
        }
        /*
         * When the line is in buf, v + vlen == buf + len, and data_len + vlen
         * + 1 <= len: no realloc can move v.
         */
        if (tap_split_reserve(&s->buf, &s->cap, s->max, s->data_len + vlen + 1) != TAP_OK) {
            tap_sse_overflow(s, r, 0);
            break;
        }
        memmove(s->buf + s->data_len, v, vlen);
        s->data_len += vlen;
        s->buf[s->data_len++] = '\n';
        s->len = s->line = s->data_len;   /* the line is consumed */
        s->has_data = 1;
        break;

    case 5:
        if (memcmp(l, "event", 5) == 0) {
            tap_sse_set(s->event, sizeof(s->event), v, vlen);
        }
        break;

    case 2:
        if (l[0] == 'i' && l[1] == 'd' && memchr(v, '\0', vlen) == NULL) {
            tap_sse_set(s->id, sizeof(s->id), v, vlen);
        }
        break;

    default:
        break;                            /* retry and unknown fields */
    }

    return 0;
}


/*
 * Feeds one piece.  Returns 0 once all of it is consumed, or the first
 * non-zero value a callback returned: feeding then stops right after that
 * event, the bytes of the piece past ev->end are not consumed, and the
 * caller may feed them again (p + end) to go on.
 */
int
tap_sse_feed(tap_sse_t *s, const char *p, size_t len, tap_sse_cb cb, void *ctx)
{
    tap_sse_run_t  r;
    const char    *q;
    size_t         i, lf, cr, eol, end, n;
    int            rc;

    if (len == 0) {
        return 0;
    }

    r.cb = cb;
    r.ctx = ctx;
    r.zc = NULL;
    r.zc_len = 0;
    rc = 0;

    i = 0;
    if (s->after_cr) {
        s->after_cr = 0;
        if (p[0] == '\n') {
            i = 1;                        /* the LF of a CRLF cut in two */
        }
    }

    q = memchr(p + i, '\n', len - i);
    lf = q != NULL ? (size_t) (q - p) : len;
    q = memchr(p + i, '\r', len - i);
    cr = q != NULL ? (size_t) (q - p) : len;

    while (i < len) {
        if (lf < i) {
            q = memchr(p + i, '\n', len - i);
            lf = q != NULL ? (size_t) (q - p) : len;
        }
        if (cr < i) {
            q = memchr(p + i, '\r', len - i);
            cr = q != NULL ? (size_t) (q - p) : len;
        }
        eol = TAP_MIN(lf, cr);
        n = eol - i;

        if (eol == len) {
            /* an unfinished line: keep it for the next piece */
            if (s->skipping) {
                s->len = 1;
            } else if (tap_sse_keep(s, &r) != TAP_OK) {
                s->len = 1;
            } else if (s->len + n > s->max
                       || tap_split_reserve(&s->buf, &s->cap, s->max, s->len + n) != TAP_OK)
            {
                tap_sse_overflow(s, &r, 1);
            } else {
                memcpy(s->buf + s->len, p + i, n);
                s->len += n;
            }
            return 0;
        }

        end = eol + 1;
        if (p[eol] == '\r') {
            if (end == len) {
                s->after_cr = 1;
            } else if (p[end] == '\n') {
                end++;
            }
        }

        if (s->skipping) {
            if (n == 0 && s->len == 0) {
                rc = tap_sse_dispatch(s, &r, end);
            }
            s->len = 0;

        } else if (s->len > s->line) {
            /* the end of a line begun in an earlier piece */
            if (s->len + n > s->max
                || tap_split_reserve(&s->buf, &s->cap, s->max, s->len + n) != TAP_OK)
            {
                tap_sse_overflow(s, &r, 0);
            } else {
                memcpy(s->buf + s->len, p + i, n);
                s->len += n;
                rc = tap_sse_line(s, &r, s->buf + s->line, s->len - s->line, 0, end);
                s->len = s->line = s->data_len;
            }

        } else if (tap_sse_data_size(s, &r) + n > s->max) {
            tap_sse_overflow(s, &r, 0);

        } else {
            rc = tap_sse_line(s, &r, p + i, n, 1, end);
        }

        if (rc != 0) {
            return rc;                    /* dispatched: nothing points into p */
        }
        i = end;
    }

    if (r.zc != NULL) {
        (void) tap_sse_keep(s, &r);
    }
    return 0;
}


/* Non-zero if the n bytes at l are only spaces and tabs. */
static int
tap_split_blank(const char *l, size_t n, int cr)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (l[i] != ' ' && l[i] != '\t' && !(cr && l[i] == '\r')) {
            return 0;
        }
    }
    return 1;
}


int
tap_sse_finish(tap_sse_t *s)
{
    const char  *l;
    char        *buf;
    size_t       n, cap, max;
    uint64_t     events, oversized;
    int          cut;

    cut = s->skipping || s->has_data;
    if (!cut && s->len > s->line) {
        l = s->buf + s->line;
        n = s->len - s->line;
        if (s->first && n >= 3 && memcmp(l, "\xef\xbb\xbf", 3) == 0) {
            l += 3;
            n -= 3;
        }
        cut = !tap_split_blank(l, n, 0);
    }

    buf = s->buf;
    cap = s->cap;
    max = s->max;
    events = s->events;
    oversized = s->oversized;
    tap_sse_init(s, max);
    s->buf = buf;
    s->cap = cap;
    s->events = events;
    s->oversized = oversized;

    return cut;
}


void
tap_ndjson_init(tap_ndjson_t *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    s->max = max;
}


void
tap_ndjson_cleanup(tap_ndjson_t *s)
{
    free(s->buf);
    s->buf = NULL;
    s->len = s->cap = 0;
}


/* One line without its LF; drops a CR before it and skips blank lines. */
static int
tap_ndjson_line(tap_ndjson_t *s, const char *l, size_t n, size_t end, tap_ndjson_cb cb,
    void *ctx)
{
    tap_ndjson_line_t  line;

    if (n > 0 && l[n - 1] == '\r') {
        n--;
    }
    if (tap_split_blank(l, n, 1)) {
        return 0;
    }

    line.data = l;
    line.len = n;
    line.end = end;
    s->lines++;
    return cb != NULL ? cb(ctx, &line) : 0;
}


/*
 * Feeds one piece.  As tap_sse_feed(): a callback's non-zero value stops
 * feeding after that line, and the bytes past line->end are not consumed.
 */
int
tap_ndjson_feed(tap_ndjson_t *s, const char *p, size_t len, tap_ndjson_cb cb, void *ctx)
{
    const char  *q;
    size_t       i, e, n;
    int          rc;

    i = 0;
    while (i < len) {
        q = memchr(p + i, '\n', len - i);

        if (q == NULL) {
            n = len - i;
            if (s->skipping) {
                /* nothing to keep */
            } else if (s->len + n > s->max
                       || tap_split_reserve(&s->buf, &s->cap, s->max, s->len + n) != TAP_OK)
            {
                s->skipping = 1;
                s->len = 0;
                s->oversized++;
            } else {
                memcpy(s->buf + s->len, p + i, n);
                s->len += n;
            }
            return 0;
        }

        e = (size_t) (q - p);
        n = e - i;
        rc = 0;

        if (s->skipping) {
            s->skipping = 0;

        } else if (s->len + n > s->max) {
            s->len = 0;
            s->oversized++;

        } else if (s->len == 0) {
            rc = tap_ndjson_line(s, p + i, n, e + 1, cb, ctx);

        } else if (tap_split_reserve(&s->buf, &s->cap, s->max, s->len + n) != TAP_OK) {
            s->len = 0;
            s->oversized++;

        } else {
            memcpy(s->buf + s->len, p + i, n);
            rc = tap_ndjson_line(s, s->buf, s->len + n, e + 1, cb, ctx);
            s->len = 0;
        }

        if (rc != 0) {
            return rc;
        }
        i = e + 1;
    }

    return 0;
}


int
tap_ndjson_finish(tap_ndjson_t *s, tap_ndjson_cb cb, void *ctx)
{
    size_t  n;
    int     last;

    n = s->len;
    last = 0;
    if (!s->skipping && n > 0) {
        if (s->buf[n - 1] == '\r') {
            n--;
        }
        if (!tap_split_blank(s->buf, n, 1)) {
            last = 1;
            (void) tap_ndjson_line(s, s->buf, n, 0, cb, ctx);
        }
    }

    s->len = 0;
    s->skipping = 0;
    return last;
}
