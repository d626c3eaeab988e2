/*
 * hist.c: log-linear latency histograms and the windowed recorder (hist.h).
 *
 * Buckets.  A value v below 64 is bucket v of row 0.  Otherwise, with e the
 * index of its top bit (6..63), it goes to row e - 5, sub-bucket
 * (v >> (e - 6)) - 64: the six bits after the top bit.  Row r >= 1 thus
 * holds [2^(r+5), 2^(r+6)) in 64 buckets of width w = 2^(r-1), bucket j
 * starting at (64 + j) w.  Rows 0 and 1 are exact.
 *
 * Error bound.  The answer for a percentile is the midpoint lo + (w - 1) / 2
 * of the bucket holding the exact sample answer x, so |answer - x| <= w / 2
 * while x >= 64 w: a relative error of at most 1/128 (0.78 %), whatever the
 * value.  Clamping to [min, max] only brings the answer closer to x, which
 * lies in that interval.  Counters are uint64_t so that a since-start
 * histogram never wraps; uint32_t would halve the memory but wrap after
 * 4.3e9 values in one bucket.
 *
 * Concurrency.  Each histogram has one writer, so every update is a relaxed
 * load and a relaxed store, never a read-modify-write; the count is stored
 * last, with release, and readers load it first, with acquire.  Rows are
 * zeroed by calloc before their pointer is published with release.  The sum
 * has 128 bits (a since-start sum of nanoseconds passes 2^64 after 584 years
 * of summed latency: a week at 1000 requests of 30 s per second); its high
 * word changes only on a carry, inside a sequence count (odd while it
 * changes) that readers check around their loads, the seqlock with fences of
 * Boehm's "Can seqlocks get along with programming language memory models?"
 * (2012).  Every access to shared memory is atomic, so ThreadSanitizer has
 * nothing to report; it does not model the fences, which guard only the
 * pairing of the two words.
 *
 * Windows.  A slot remembers the start of its period.  The writer finds the
 * slot of now by period number modulo the ring size; when the slot's start
 * is not the current period, it resets the slot's histogram (keeping its
 * rows) and publishes the new start with release.  A reader merges a slot
 * when its start (acquire) is recent enough; a reset that runs meanwhile
 * only makes the reader see fewer values.
 */

#include "config.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "tap_core.h"
#include "stats/hist.h"

#define TAP_HIST_RLX   memory_order_relaxed
#define TAP_HIST_ACQ   memory_order_acquire
#define TAP_HIST_REL   memory_order_release

#define TAP_HIST_LOAD(a)        atomic_load_explicit(a, TAP_HIST_RLX)
#define TAP_HIST_STORE(a, v)    atomic_store_explicit(a, v, TAP_HIST_RLX)


static void tap_hist_index(uint64_t v, unsigned *r, unsigned *j);
static uint64_t tap_hist_lo(unsigned r, unsigned j);
static uint64_t tap_hist_width(unsigned r);
static tap_hist_row_t *tap_hist_row(tap_hist_t *h, unsigned r);
static void tap_hist_sum_add(tap_hist_t *h, uint64_t hi, uint64_t lo);
static void tap_hist_sum_read(const tap_hist_t *h, uint64_t *hi, uint64_t *lo);
static void tap_whist_slot(tap_whist_slot_t *s, uint64_t start);
static int tap_whist_merge_ring(const tap_whist_slot_t *ring, size_t n, uint64_t len,
    uint64_t now_ns, uint64_t span, tap_hist_t *out);


/* The row and sub-bucket of v. */
static void
tap_hist_index(uint64_t v, unsigned *r, unsigned *j)
{
    unsigned  e;

    if (v < TAP_HIST_SUB) {
        *r = 0;
        *j = (unsigned) v;
        return;
    }

    e = 63 - (unsigned) __builtin_clzll(v);
    *r = e - TAP_HIST_SUB_BITS + 1;
    *j = (unsigned) (v >> (e - TAP_HIST_SUB_BITS)) - TAP_HIST_SUB;
}


/* The smallest value of bucket j of row r. */
static uint64_t
tap_hist_lo(unsigned r, unsigned j)
{
    if (r == 0) {
        return j;
    }

    return (uint64_t) (TAP_HIST_SUB + j) << (r - 1);
}


/* The width of a bucket of row r. */
static uint64_t
tap_hist_width(unsigned r)
{
    return r == 0 ? 1 : UINT64_C(1) << (r - 1);
}


/* Writer: row r of h, allocated and published on first use; NULL when out of memory. */
static tap_hist_row_t *
tap_hist_row(tap_hist_t *h, unsigned r)
{
    tap_hist_row_t  *row;

    /* relaxed: only this thread stores the pointer */
    row = atomic_load_explicit(&h->rows[r], TAP_HIST_RLX);
    if (row != NULL) {
        return row;
    }

    row = calloc(1, sizeof(tap_hist_row_t));
    if (row == NULL) {
        return NULL;
    }

    atomic_store_explicit(&h->rows[r], row, TAP_HIST_REL);
    return row;
}


/* Writer: sum += hi * 2^64 + lo. */
static void
tap_hist_sum_add(tap_hist_t *h, uint64_t hi, uint64_t lo)
{
    uint64_t  old, nlo, seq;

    old = TAP_HIST_LOAD(&h->sum_lo);
    nlo = old + lo;
    if (nlo < old) {
        hi++;
    }

    if (hi == 0) {
        TAP_HIST_STORE(&h->sum_lo, nlo);
        return;
    }

    seq = TAP_HIST_LOAD(&h->sum_seq);
    TAP_HIST_STORE(&h->sum_seq, seq + 1);
    atomic_thread_fence(TAP_HIST_REL);
    TAP_HIST_STORE(&h->sum_hi, TAP_HIST_LOAD(&h->sum_hi) + hi);
    TAP_HIST_STORE(&h->sum_lo, nlo);
    atomic_store_explicit(&h->sum_seq, seq + 2, TAP_HIST_REL);
}


/* Reader: the two words of the sum, from one moment. */
static void
tap_hist_sum_read(const tap_hist_t *h, uint64_t *hi, uint64_t *lo)
{
    uint64_t  s1, s2;

    do {
        s1 = atomic_load_explicit(&h->sum_seq, TAP_HIST_ACQ);
        *hi = TAP_HIST_LOAD(&h->sum_hi);
        *lo = TAP_HIST_LOAD(&h->sum_lo);
        atomic_thread_fence(TAP_HIST_ACQ);
        s2 = TAP_HIST_LOAD(&h->sum_seq);
    } while (s1 != s2 || (s1 & 1));
}


void
tap_hist_init(tap_hist_t *h)
{
    size_t  r;

    for (r = 0; r < TAP_HIST_ROWS; r++) {
        atomic_init(&h->rows[r], NULL);
    }

    atomic_init(&h->count, 0);
    atomic_init(&h->min, UINT64_MAX);
    atomic_init(&h->max, 0);
    atomic_init(&h->sum_lo, 0);
    atomic_init(&h->sum_hi, 0);
    atomic_init(&h->sum_seq, 0);
}


void
tap_hist_cleanup(tap_hist_t *h)
{
    size_t  r;

    for (r = 0; r < TAP_HIST_ROWS; r++) {
        free(atomic_load_explicit(&h->rows[r], TAP_HIST_ACQ));
    }

    tap_hist_init(h);
}


void
tap_hist_reset(tap_hist_t *h)
{
    tap_hist_row_t  *row;
    uint64_t         seq;
    size_t           r, j;

    TAP_HIST_STORE(&h->count, 0);

    for (r = 0; r < TAP_HIST_ROWS; r++) {
        row = TAP_HIST_LOAD(&h->rows[r]);
        if (row == NULL) {
            continue;
        }

        for (j = 0; j < TAP_HIST_SUB; j++) {
            TAP_HIST_STORE(&row->n[j], 0);
        }
    }

    TAP_HIST_STORE(&h->min, UINT64_MAX);
    TAP_HIST_STORE(&h->max, 0);

    seq = TAP_HIST_LOAD(&h->sum_seq);
    TAP_HIST_STORE(&h->sum_seq, seq + 1);
    atomic_thread_fence(TAP_HIST_REL);
    TAP_HIST_STORE(&h->sum_hi, 0);
    TAP_HIST_STORE(&h->sum_lo, 0);
    atomic_store_explicit(&h->sum_seq, seq + 2, TAP_HIST_REL);
}


int
tap_hist_record(tap_hist_t *h, uint64_t v)
{
    tap_hist_row_t  *row;
    unsigned         r, j;

    tap_hist_index(v, &r, &j);
    row = tap_hist_row(h, r);
    if (row == NULL) {
        return TAP_ERROR;
    }

    TAP_HIST_STORE(&row->n[j], TAP_HIST_LOAD(&row->n[j]) + 1);

    if (v < TAP_HIST_LOAD(&h->min)) {
        TAP_HIST_STORE(&h->min, v);
    }

    if (v > TAP_HIST_LOAD(&h->max)) {
        TAP_HIST_STORE(&h->max, v);
    }

    tap_hist_sum_add(h, 0, v);

    /* last, with release: a reader that sees the count sees all of the above */
    atomic_store_explicit(&h->count, TAP_HIST_LOAD(&h->count) + 1, TAP_HIST_REL);
    return TAP_OK;
}


int
tap_hist_merge(tap_hist_t *dst, const tap_hist_t *src)
{
    tap_hist_row_t  *srows[TAP_HIST_ROWS], *drow;
    uint64_t         n, c, mn, mx, hi, lo;
    size_t           r, j;

    n = atomic_load_explicit(&src->count, TAP_HIST_ACQ);
    mn = TAP_HIST_LOAD(&src->min);
    mx = TAP_HIST_LOAD(&src->max);
    if (n == 0 || mn > mx) {
        return TAP_OK;                  /* empty, or a window slot being reset */
    }

    /* allocate first, so that running out of memory leaves dst as it was */
    for (r = 0; r < TAP_HIST_ROWS; r++) {
        srows[r] = atomic_load_explicit(&src->rows[r], TAP_HIST_ACQ);
        if (srows[r] != NULL && tap_hist_row(dst, (unsigned) r) == NULL) {
            return TAP_ERROR;
        }
    }

    tap_hist_sum_read(src, &hi, &lo);

    for (r = 0; r < TAP_HIST_ROWS; r++) {
        if (srows[r] == NULL) {
            continue;
        }

        drow = TAP_HIST_LOAD(&dst->rows[r]);
        for (j = 0; j < TAP_HIST_SUB; j++) {
            c = TAP_HIST_LOAD(&srows[r]->n[j]);
            if (c != 0) {
                TAP_HIST_STORE(&drow->n[j], TAP_HIST_LOAD(&drow->n[j]) + c);
            }
        }
    }

    if (mn < TAP_HIST_LOAD(&dst->min)) {
        TAP_HIST_STORE(&dst->min, mn);
    }

    if (mx > TAP_HIST_LOAD(&dst->max)) {
        TAP_HIST_STORE(&dst->max, mx);
    }

    tap_hist_sum_add(dst, hi, lo);

    /*
     * n and not the sum of the buckets read: those may hold a few values
     * more (recorded meanwhile), so a rank <= n is always found.
     */
    atomic_store_explicit(&dst->count, TAP_HIST_LOAD(&dst->count) + n, TAP_HIST_REL);
    return TAP_OK;
}


uint64_t
tap_hist_percentile(const tap_hist_t *h, double p)
{
    tap_hist_row_t  *row;
    uint64_t         n, rank, cum, mn, mx, v;
    unsigned         r, j;
    double           d;

    n = atomic_load_explicit(&h->count, TAP_HIST_ACQ);
    if (n == 0) {
        return 0;
    }

    mn = TAP_HIST_LOAD(&h->min);
    mx = TAP_HIST_LOAD(&h->max);

    if (!(p > 0.0)) {
        return mn;
    }

    if (p >= 100.0) {
        return mx;
    }

    d = ceil(p * (double) n / 100.0);
    rank = d < 1.0 ? 1 : d >= (double) n ? n : (uint64_t) d;

    cum = 0;
    for (r = 0; r < TAP_HIST_ROWS; r++) {
        row = atomic_load_explicit(&h->rows[r], TAP_HIST_ACQ);
        if (row == NULL) {
            continue;
        }

        for (j = 0; j < TAP_HIST_SUB; j++) {
            cum += TAP_HIST_LOAD(&row->n[j]);
            if (cum < rank) {
                continue;
            }

            v = tap_hist_lo(r, j) + (tap_hist_width(r) - 1) / 2;
            return v < mn ? mn : v > mx ? mx : v;
        }
    }

    return mx;
}


uint64_t
tap_hist_count(const tap_hist_t *h)
{
    return atomic_load_explicit(&h->count, TAP_HIST_ACQ);
}


uint64_t
tap_hist_min(const tap_hist_t *h)
{
    return tap_hist_count(h) == 0 ? 0 : TAP_HIST_LOAD(&h->min);
}


uint64_t
tap_hist_max(const tap_hist_t *h)
{
    return tap_hist_count(h) == 0 ? 0 : TAP_HIST_LOAD(&h->max);
}


double
tap_hist_sum(const tap_hist_t *h)
{
    uint64_t  hi, lo;

    tap_hist_sum_read(h, &hi, &lo);
    return ldexp((double) hi, 64) + (double) lo;
}


double
tap_hist_mean(const tap_hist_t *h)
{
    uint64_t  n;

    n = tap_hist_count(h);
    return n == 0 ? 0.0 : tap_hist_sum(h) / (double) n;
}


size_t
tap_hist_rows(const tap_hist_t *h)
{
    size_t  r, n;

    n = 0;
    for (r = 0; r < TAP_HIST_ROWS; r++) {
        n += atomic_load_explicit(&h->rows[r], TAP_HIST_ACQ) != NULL;
    }

    return n;
}


int
tap_hist_next(const tap_hist_t *h, size_t *it, tap_hist_bucket_t *b)
{
    tap_hist_row_t  *row;
    uint64_t         c;
    size_t           i;
    unsigned         r, j;

    for (i = *it; i < (size_t) TAP_HIST_ROWS * TAP_HIST_SUB; i++) {
        r = (unsigned) (i / TAP_HIST_SUB);
        j = (unsigned) (i % TAP_HIST_SUB);

        row = atomic_load_explicit(&h->rows[r], TAP_HIST_ACQ);
        if (row == NULL) {
            i += TAP_HIST_SUB - 1 - j;               /* to the next row */
            continue;
        }

        c = TAP_HIST_LOAD(&row->n[j]);
        if (c == 0) {
            continue;
        }

        b->lo = tap_hist_lo(r, j);
        b->hi = b->lo + (tap_hist_width(r) - 1);
        b->count = c;
        *it = i + 1;
        return TAP_OK;
    }

    *it = i;
    return TAP_DECLINED;
}


void
tap_whist_init(tap_whist_t *w)
{
    size_t  i;

    tap_hist_init(&w->all);

    for (i = 0; i < TAP_WHIST_SHORT_N; i++) {
        atomic_init(&w->shrt[i].start, UINT64_MAX);
        tap_hist_init(&w->shrt[i].h);
    }

    for (i = 0; i < TAP_WHIST_LONG_N; i++) {
        atomic_init(&w->lng[i].start, UINT64_MAX);
        tap_hist_init(&w->lng[i].h);
    }
}


void
tap_whist_cleanup(tap_whist_t *w)
{
    size_t  i;

    tap_hist_cleanup(&w->all);

    for (i = 0; i < TAP_WHIST_SHORT_N; i++) {
        tap_hist_cleanup(&w->shrt[i].h);
    }

    for (i = 0; i < TAP_WHIST_LONG_N; i++) {
        tap_hist_cleanup(&w->lng[i].h);
    }

    tap_whist_init(w);
}


/* Writer: makes s the slot of the period that starts at start. */
static void
tap_whist_slot(tap_whist_slot_t *s, uint64_t start)
{
    if (TAP_HIST_LOAD(&s->start) == start) {
        return;
    }

    tap_hist_reset(&s->h);
    atomic_store_explicit(&s->start, start, TAP_HIST_REL);
}


int
tap_whist_record(tap_whist_t *w, uint64_t now_ns, uint64_t v)
{
    tap_whist_slot_t  *s, *l;
    int                rc;

    s = &w->shrt[(now_ns / TAP_WHIST_SHORT_NS) % TAP_WHIST_SHORT_N];
    l = &w->lng[(now_ns / TAP_WHIST_LONG_NS) % TAP_WHIST_LONG_N];
    tap_whist_slot(s, now_ns - now_ns % TAP_WHIST_SHORT_NS);
    tap_whist_slot(l, now_ns - now_ns % TAP_WHIST_LONG_NS);

    rc = tap_hist_record(&w->all, v);
    if (tap_hist_record(&s->h, v) != TAP_OK || tap_hist_record(&l->h, v) != TAP_OK) {
        rc = TAP_ERROR;
    }

    return rc;
}


/*
 * Reader: merges into out the slots of a ring of n slots of len ns that
 * started at most span ns before the period holding now_ns, or after it.
 */
static int
tap_whist_merge_ring(const tap_whist_slot_t *ring, size_t n, uint64_t len, uint64_t now_ns,
    uint64_t span, tap_hist_t *out)
{
    uint64_t  period, start;
    size_t    i;

    period = now_ns - now_ns % len;

    for (i = 0; i < n; i++) {
        start = atomic_load_explicit(&ring[i].start, TAP_HIST_ACQ);
        if (start == UINT64_MAX || start + span < period) {
            continue;
        }

        if (tap_hist_merge(out, &ring[i].h) != TAP_OK) {
            return TAP_ERROR;
        }
    }

    return TAP_OK;
}


int
tap_whist_read(const tap_whist_t *w, uint64_t now_ns, tap_win_e win, tap_hist_t *out)
{
    switch (win) {

    case TAP_WIN_1M:
        return tap_whist_merge_ring(w->shrt, TAP_WHIST_SHORT_N, TAP_WHIST_SHORT_NS, now_ns,
                                    60 * TAP_WHIST_SEC, out);

    case TAP_WIN_5M:
        return tap_whist_merge_ring(w->lng, TAP_WHIST_LONG_N, TAP_WHIST_LONG_NS, now_ns,
                                    300 * TAP_WHIST_SEC, out);

    case TAP_WIN_ALL:
        return tap_hist_merge(out, &w->all);
    }

    return TAP_ERROR;
}


size_t
tap_whist_rows(const tap_whist_t *w)
{
    size_t  i, n;

    n = tap_hist_rows(&w->all);

    for (i = 0; i < TAP_WHIST_SHORT_N; i++) {
        n += tap_hist_rows(&w->shrt[i].h);
    }

    for (i = 0; i < TAP_WHIST_LONG_N; i++) {
        n += tap_hist_rows(&w->lng[i].h);
    }

    return n;
}
