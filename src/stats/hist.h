/*
 * hist.h: latency histograms with a bounded relative error, mergeable and
 * readable while their writer keeps recording, and a windowed recorder
 * (since start, last minute, last five minutes) built from them.
 *
 * Values are uint64_t: nanoseconds for latencies, but any unsigned quantity
 * works.  The layout is log-linear (HDR-style): values below 64 are counted
 * exactly (row 0, and row 1 = [64, 128)); row r >= 1 covers [2^(r+5), 2^(r+6))
 * with 64 sub-buckets of width 2^(r-1); rows 0..58 cover all of uint64_t.
 *
 * Error bound.  A percentile answer is the midpoint of the bucket that holds
 * the exact answer, clamped to [min, max].  A bucket of width w in row r >= 2
 * starts at 64 w or above and its midpoint is at most w/2 from any of its
 * values, so the relative error is at most 1/128 (0.78 %) for every value,
 * and 0 below 128.  That meets the 1 % target over 1 us .. 1 h and beyond;
 * 128 sub-buckets would give 0.39 % for twice the memory.
 *
 * Percentile definition (nearest rank): tap_hist_percentile(h, p) answers
 * the value of rank ceil(p * count / 100), computed in double, at least 1:
 * the smallest recorded value x with at least p % of the values <= x.  p <= 0
 * answers min, p >= 100 max, both exact.  count, min, max and the sum (128
 * bits) are exact; the mean is sum / count in double.
 *
 * Memory.  A tap_hist_t is 520 bytes plus its rows, allocated on first use:
 * 64 uint64_t counters, TAP_HIST_ROW_BYTES = 512 bytes each.  Values from
 * 1 us to 1 h (1e3 .. 3.6e12 ns) use rows 4..36: at most 33 rows, 16,896
 * bytes.  The whole uint64_t range uses all 59 rows: 30,208 bytes.  Rows are
 * kept until cleanup, so a histogram never holds more than the rows its
 * values ever touched.  A tap_whist_t holds 14 histograms: at most
 * 14 x 16,896 = 236,544 bytes of rows for values in 1 us .. 1 h, and at most
 * 14 x 30,208 = 422,912 bytes for any values, plus its own 7,384 bytes.
 *
 * Threads.  A histogram has one writer thread (record, reset, and being the
 * destination of a merge) and any number of reader threads (merge from it,
 * percentile, count, min, max, mean, next), with no lock: counters are read
 * and written with relaxed atomic loads and stores (the single writer never
 * needs a read-modify-write), a new row is published with a release store of
 * its pointer, and the count is stored last with release, so a reader that
 * sees count n (acquire) sees the buckets, min, max and sum of the first n
 * values.  A reader may be a few values behind, and a reader of a window
 * slot being reset may see partial counts; it never races.  cleanup frees
 * rows and must run only when no other thread uses the histogram any more
 * (after the writers were joined).
 *
 * Windows.  Time is the caller's: monotonic nanoseconds, passed to every
 * call.  A tap_whist_t keeps one since-start histogram, a ring of 7 slots of
 * 10 s and a ring of 6 slots of 1 min; a slot holds the values recorded in
 * one period aligned on a multiple of its length.  With P the start of the
 * 10 s period holding now, TAP_WIN_1M merges the slots that started at
 * P - 60 s or later: the 6 complete periods before P and the current one,
 * so it covers [P - 60 s, now], between 60 and 70 s.  With Q the start of the
 * minute holding now, TAP_WIN_5M covers [Q - 5 min, now]: between 5 and
 * 6 min.  Slots newer than the reader's now (a writer whose clock is ahead)
 * are included.  A writer that enters a new period zeroes the slot it
 * reuses (its counters with relaxed stores, then the period start with a
 * release store).
 */

#ifndef TAP_STATS_HIST_H
#define TAP_STATS_HIST_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define TAP_HIST_SUB_BITS    6
#define TAP_HIST_SUB         64                  /* linear sub-buckets per row */
#define TAP_HIST_ROWS        59                  /* rows 0..58 cover uint64_t */
#define TAP_HIST_ROW_BYTES   (TAP_HIST_SUB * sizeof(uint64_t))
#define TAP_HIST_ROWS_1US_1H 33                  /* rows used by 1e3 .. 3.6e12 */

#define TAP_WHIST_SEC        UINT64_C(1000000000)
#define TAP_WHIST_SHORT_NS   (10 * TAP_WHIST_SEC)   /* slot length, last minute */
#define TAP_WHIST_SHORT_N    7
#define TAP_WHIST_LONG_NS    (60 * TAP_WHIST_SEC)   /* slot length, last 5 minutes */
#define TAP_WHIST_LONG_N     6
#define TAP_WHIST_HISTS      (1 + TAP_WHIST_SHORT_N + TAP_WHIST_LONG_N)

typedef enum {
    TAP_WIN_ALL = 0,                   /* since start (since init) */
    TAP_WIN_1M,                        /* the last 60 .. 70 s */
    TAP_WIN_5M,                        /* the last 5 .. 6 min */
} tap_win_e;

typedef struct tap_hist_row_s {
    _Atomic(uint64_t)  n[TAP_HIST_SUB];
} tap_hist_row_t;

/* Embed it and use the functions below; the fields are private. */
typedef struct tap_hist_s {
    _Atomic(tap_hist_row_t *)  rows[TAP_HIST_ROWS];     /* NULL until first used */
    _Atomic(uint64_t)          count;
    _Atomic(uint64_t)          min;                     /* UINT64_MAX when empty */
    _Atomic(uint64_t)          max;
    _Atomic(uint64_t)          sum_lo;                  /* the sum, 128 bits */
    _Atomic(uint64_t)          sum_hi;
    _Atomic(uint64_t)          sum_seq;                 /* odd while sum_hi changes */
} tap_hist_t;

/* One bucket, for tap_hist_next(). */
typedef struct tap_hist_bucket_s {
    uint64_t  lo;                      /* its smallest value */
    uint64_t  hi;                      /* its largest value (inclusive) */
    uint64_t  count;
} tap_hist_bucket_t;

typedef struct tap_whist_slot_s {
    _Atomic(uint64_t)  start;          /* period start (ns); UINT64_MAX: never used */
    tap_hist_t         h;
} tap_whist_slot_t;

typedef struct tap_whist_s {
    tap_hist_t         all;
    tap_whist_slot_t   shrt[TAP_WHIST_SHORT_N];
    tap_whist_slot_t   lng[TAP_WHIST_LONG_N];
} tap_whist_t;


/* An empty histogram; allocates nothing. */
void tap_hist_init(tap_hist_t *h);

/* Frees the rows; no other thread may use h any more.  h is left empty, usable again. */
void tap_hist_cleanup(tap_hist_t *h);

/* Writer: empties h, keeping its rows. */
void tap_hist_reset(tap_hist_t *h);

/*
 * Writer: counts v.  Returns TAP_OK, or TAP_ERROR when the row v needs could
 * not be allocated (v is then not counted at all).
 */
int tap_hist_record(tap_hist_t *h, uint64_t v);

/*
 * Adds src into dst.  The caller is dst's writer; src may be written by its
 * own writer meanwhile (dst then gets a state src was in, give or take the
 * values being recorded).  Returns TAP_OK, or TAP_ERROR when a row of dst
 * could not be allocated (dst is then unchanged, apart from empty rows).
 */
int tap_hist_merge(tap_hist_t *dst, const tap_hist_t *src);

/*
 * Reader: the nearest-rank p-th percentile, p in [0, 100] (99.9 for p999),
 * as the midpoint of its bucket clamped to [min, max]; 0 when h is empty.
 */
uint64_t tap_hist_percentile(const tap_hist_t *h, double p);

/* Reader: exact figures; min and max are 0 and the mean 0.0 when h is empty. */
uint64_t tap_hist_count(const tap_hist_t *h);
uint64_t tap_hist_min(const tap_hist_t *h);
uint64_t tap_hist_max(const tap_hist_t *h);
double tap_hist_sum(const tap_hist_t *h);
double tap_hist_mean(const tap_hist_t *h);

/* Reader: rows allocated; the memory held is that times TAP_HIST_ROW_BYTES. */
size_t tap_hist_rows(const tap_hist_t *h);

/*
 * Reader: walks the non-empty buckets in increasing order.  Set *it to 0
 * before the first call.  Returns TAP_OK with *b filled, TAP_DECLINED when
 * there is no bucket left.
 */
int tap_hist_next(const tap_hist_t *h, size_t *it, tap_hist_bucket_t *b);


/* An empty recorder; allocates nothing. */
void tap_whist_init(tap_whist_t *w);

/* Frees every row; no other thread may use w any more. */
void tap_whist_cleanup(tap_whist_t *w);

/*
 * Writer: counts v at now_ns (monotonic) in the since-start histogram, the
 * current 10 s slot and the current 1 min slot.  Returns TAP_OK, or
 * TAP_ERROR when a row could not be allocated.
 */
int tap_whist_record(tap_whist_t *w, uint64_t now_ns, uint64_t v);

/*
 * Reader: adds the values of window win as seen at now_ns into out (call
 * tap_hist_reset(out) first for the window alone).  The caller is out's
 * writer.  Returns TAP_OK, or TAP_ERROR when out could not grow.
 */
int tap_whist_read(const tap_whist_t *w, uint64_t now_ns, tap_win_e win, tap_hist_t *out);

/* Reader: rows allocated by all 14 histograms of w. */
size_t tap_whist_rows(const tap_whist_t *w);


#endif /* TAP_STATS_HIST_H */
