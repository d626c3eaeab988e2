/*
 * test_hist.c: unit tests of the latency histograms (src/stats/hist.c).
 *
 * Percentiles are checked against the exact percentile of the sorted
 * samples, with the definition hist.h states (nearest rank: the value of rank
 * ceil(p * n / 100), at least 1), on uniform, log-uniform, log-normal and
 * Pareto samples of 1 us .. 1 h (200,000 each, fixed seeds): the relative
 * error must be at most 1/128 (the documented bound, so below 1 %) for p50,
 * p90, p95, p99, p99.9 and a few more, and count, min, max and the sum must
 * be exact.  Every bucket's midpoint is checked against the bound directly,
 * value by value below 2^14 and around every power of two above.  Merging
 * shards that got the samples at random gives the same buckets and answers
 * as one histogram fed everything; the 128-bit sum carries.  The windowed
 * recorder is compared with a model of the documented windows (last 60..70 s,
 * last 5..6 min, all) over random recording times with gaps, and on a fixed
 * example.  Memory: 1 us .. 1 h allocates at most TAP_HIST_ROWS_1US_1H rows.
 * Output is TAP (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tap_core.h"
#include "stats/hist.h"

#define TAP_T_N         200000
#define TAP_T_LO        UINT64_C(1000)                  /* 1 us */
#define TAP_T_HI        UINT64_C(3600000000000)         /* 1 h */
#define TAP_T_BOUND     (1.0 / 128)
#define TAP_T_SEC       UINT64_C(1000000000)
#define TAP_T_SHARDS    7

typedef uint64_t (*tap_t_draw_cb)(uint64_t *rng);

typedef struct tap_t_dist_s {
    const char     *name;
    tap_t_draw_cb   draw;
    uint64_t        seed;
} tap_t_dist_t;

/* One recording of the window model. */
typedef struct tap_t_rec_s {
    uint64_t  t;
    uint64_t  v;
} tap_t_rec_t;


static const double  tap_t_ps[] = {
    50, 90, 95, 99, 99.9, 0.1, 1, 10, 25, 75, 99.99
};


/* splitmix64 */
static uint64_t
tap_t_rand(uint64_t *s)
{
    uint64_t  z;

    z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}


/* Uniform in (0, 1). */
static double
tap_t_unit(uint64_t *s)
{
    return ((double) (tap_t_rand(s) >> 11) + 0.5) / 9007199254740992.0;
}


static uint64_t
tap_t_draw_uniform(uint64_t *s)
{
    return TAP_T_LO + tap_t_rand(s) % (TAP_T_HI - TAP_T_LO + 1);
}


static uint64_t
tap_t_draw_loguniform(uint64_t *s)
{
    double  x;

    x = exp(log((double) TAP_T_LO) + tap_t_unit(s) * log((double) TAP_T_HI / TAP_T_LO));
    return x < TAP_T_LO ? TAP_T_LO : x > TAP_T_HI ? TAP_T_HI : (uint64_t) x;
}


/* Median 5 ms, sigma 2.5 (Box-Muller); draws outside 1 us .. 1 h are drawn again. */
static uint64_t
tap_t_draw_lognormal(uint64_t *s)
{
    double  z, x;

    do {
        z = sqrt(-2.0 * log(tap_t_unit(s))) * cos(2.0 * M_PI * tap_t_unit(s));
        x = exp(log(5e6) + 2.5 * z);
    } while (x < (double) TAP_T_LO || x > (double) TAP_T_HI);

    return (uint64_t) x;
}


/* Pareto, x_m = 1 us, alpha = 0.6: a tail reaching the hour. */
static uint64_t
tap_t_draw_pareto(uint64_t *s)
{
    double  x;

    do {
        x = (double) TAP_T_LO / pow(tap_t_unit(s), 1.0 / 0.6);
    } while (x > (double) TAP_T_HI);

    return (uint64_t) x;
}


static const tap_t_dist_t  tap_t_dists[] = {
    { "uniform", tap_t_draw_uniform, 1 },
    { "log-uniform", tap_t_draw_loguniform, 2 },
    { "log-normal", tap_t_draw_lognormal, 3 },
    { "pareto", tap_t_draw_pareto, 4 },
};


static int
tap_t_cmp(const void *a, const void *b)
{
    uint64_t  x = *(const uint64_t *) a, y = *(const uint64_t *) b;

    return x < y ? -1 : x > y;
}


/* The exact nearest-rank percentile of n sorted values (hist.h's definition). */
static uint64_t
tap_t_exact(const uint64_t *sorted, size_t n, double p)
{
    double  d;
    size_t  rank;

    if (!(p > 0.0)) {
        return sorted[0];
    }

    if (p >= 100.0) {
        return sorted[n - 1];
    }

    d = ceil(p * (double) n / 100.0);
    rank = d < 1.0 ? 1 : d >= (double) n ? n : (size_t) d;
    return sorted[rank - 1];
}


static double
tap_t_relerr(uint64_t got, uint64_t exact)
{
    double  d;

    d = (double) got - (double) exact;
    return fabs(d) / (double) exact;
}


/* The percentiles of h against the exact ones of sorted; returns the worst error. */
static double
tap_t_check_percentiles(const tap_hist_t *h, const uint64_t *sorted, size_t n, const char *what)
{
    uint64_t  got, exact;
    double    err, worst;
    size_t    i;

    worst = 0.0;
    for (i = 0; i < TAP_NELEMS(tap_t_ps); i++) {
        got = tap_hist_percentile(h, tap_t_ps[i]);
        exact = tap_t_exact(sorted, n, tap_t_ps[i]);
        err = tap_t_relerr(got, exact);
        if (err > TAP_T_BOUND || err > 0.01) {
            fail_msg("%s: p%g = %llu, exact %llu: relative error %g", what, tap_t_ps[i],
                     (unsigned long long) got, (unsigned long long) exact, err);
        }

        worst = TAP_MAX(worst, err);
    }

    assert_int_equal(tap_hist_percentile(h, 0), sorted[0]);
    assert_int_equal(tap_hist_percentile(h, 100), sorted[n - 1]);
    return worst;
}


/* Samples of each distribution: percentiles, count, min, max, sum, mean. */
static void
test_hist_percentiles(void **state)
{
    const tap_t_dist_t  *d;
    tap_hist_t           h;
    uint64_t            *v, rng, sum;
    double               worst;
    size_t               i, k;

    v = malloc(TAP_T_N * sizeof(uint64_t));
    assert_non_null(v);

    for (k = 0; k < TAP_NELEMS(tap_t_dists); k++) {
        d = &tap_t_dists[k];
        rng = d->seed;
        sum = 0;
        tap_hist_init(&h);

        for (i = 0; i < TAP_T_N; i++) {
            v[i] = d->draw(&rng);
            sum += v[i];
            assert_int_equal(tap_hist_record(&h, v[i]), TAP_OK);
        }

        qsort(v, TAP_T_N, sizeof(uint64_t), tap_t_cmp);

        assert_int_equal(tap_hist_count(&h), TAP_T_N);
        assert_int_equal(tap_hist_min(&h), v[0]);
        assert_int_equal(tap_hist_max(&h), v[TAP_T_N - 1]);
        assert_true(tap_hist_sum(&h) == (double) sum);
        assert_true(fabs(tap_hist_mean(&h) - (double) sum / TAP_T_N)
                    <= 1e-12 * ((double) sum / TAP_T_N));

        worst = tap_t_check_percentiles(&h, v, TAP_T_N, d->name);
        printf("# %s: %u samples %llu..%llu ns, worst relative error %.4f %%, %zu rows\n",
               d->name, TAP_T_N, (unsigned long long) v[0],
               (unsigned long long) v[TAP_T_N - 1], worst * 100, tap_hist_rows(&h));

        tap_hist_cleanup(&h);
    }

    free(v);
}


/* v's bucket contains v and its midpoint is within the bound of v. */
static void
tap_t_check_bucket(uint64_t v)
{
    tap_hist_bucket_t  b;
    tap_hist_t         h;
    uint64_t           mid;
    size_t             it;

    tap_hist_init(&h);
    assert_int_equal(tap_hist_record(&h, v), TAP_OK);

    it = 0;
    assert_int_equal(tap_hist_next(&h, &it, &b), TAP_OK);
    assert_true(b.lo <= v && v <= b.hi);
    assert_int_equal(b.count, 1);

    mid = b.lo + (b.hi - b.lo) / 2;
    if (v < 128) {
        assert_int_equal(mid, v);
    } else if (tap_t_relerr(mid, v) > TAP_T_BOUND) {
        fail_msg("%llu: bucket %llu..%llu", (unsigned long long) v, (unsigned long long) b.lo,
                 (unsigned long long) b.hi);
    }

    assert_int_equal(tap_hist_next(&h, &it, &b), TAP_DECLINED);
    tap_hist_cleanup(&h);
}


static void
test_hist_buckets(void **state)
{
    uint64_t  v, rng;
    unsigned  e, k;

    for (v = 0; v < (1 << 14); v++) {
        tap_t_check_bucket(v);
    }

    rng = 5;
    for (e = 14; e < 64; e++) {
        v = UINT64_C(1) << e;
        tap_t_check_bucket(v - 1);
        tap_t_check_bucket(v);
        tap_t_check_bucket(v + 1);
        for (k = 0; k < 200; k++) {
            tap_t_check_bucket(v + tap_t_rand(&rng) % v);
        }
    }

    tap_t_check_bucket(UINT64_MAX);
}


/* Two histograms have the same buckets, figures and answers. */
static void
tap_t_assert_same(const tap_hist_t *a, const tap_hist_t *b)
{
    tap_hist_bucket_t  ba, bb;
    size_t             ia, ib;
    double             p;
    int                ra;

    ia = ib = 0;
    do {
        ra = tap_hist_next(a, &ia, &ba);
        assert_int_equal(tap_hist_next(b, &ib, &bb), ra);
        if (ra == TAP_OK) {
            assert_int_equal(ba.lo, bb.lo);
            assert_int_equal(ba.hi, bb.hi);
            assert_int_equal(ba.count, bb.count);
        }
    } while (ra == TAP_OK);

    assert_int_equal(tap_hist_count(a), tap_hist_count(b));
    assert_int_equal(tap_hist_min(a), tap_hist_min(b));
    assert_int_equal(tap_hist_max(a), tap_hist_max(b));
    assert_true(tap_hist_sum(a) == tap_hist_sum(b));

    for (p = 0; p <= 100; p += 0.5) {
        assert_int_equal(tap_hist_percentile(a, p), tap_hist_percentile(b, p));
    }

    assert_int_equal(tap_hist_percentile(a, 99.9), tap_hist_percentile(b, 99.9));
    assert_int_equal(tap_hist_percentile(a, 99.99), tap_hist_percentile(b, 99.99));
}


/* Shards fed at random, merged, equal one histogram fed everything. */
static void
test_hist_merge(void **state)
{
    tap_hist_t  all, merged, empty, shard[TAP_T_SHARDS];
    uint64_t    rng, v;
    size_t      i, k;

    tap_hist_init(&all);
    tap_hist_init(&merged);
    for (k = 0; k < TAP_T_SHARDS; k++) {
        tap_hist_init(&shard[k]);
    }

    rng = 11;
    for (i = 0; i < TAP_T_N; i++) {
        v = tap_t_dists[i % TAP_NELEMS(tap_t_dists)].draw(&rng);
        assert_int_equal(tap_hist_record(&all, v), TAP_OK);
        assert_int_equal(tap_hist_record(&shard[tap_t_rand(&rng) % TAP_T_SHARDS], v), TAP_OK);
    }

    /* an empty histogram merges as nothing */
    tap_hist_init(&empty);
    assert_int_equal(tap_hist_merge(&merged, &empty), TAP_OK);
    assert_int_equal(tap_hist_count(&merged), 0);
    assert_int_equal(tap_hist_rows(&merged), 0);

    for (k = 0; k < TAP_T_SHARDS; k++) {
        assert_int_equal(tap_hist_merge(&merged, &shard[k]), TAP_OK);
    }

    tap_t_assert_same(&merged, &all);

    /* merging into a shard that already has values is the same sum */
    for (k = 1; k < TAP_T_SHARDS; k++) {
        assert_int_equal(tap_hist_merge(&shard[0], &shard[k]), TAP_OK);
    }

    tap_t_assert_same(&shard[0], &all);

    tap_hist_cleanup(&all);
    tap_hist_cleanup(&merged);
    for (k = 0; k < TAP_T_SHARDS; k++) {
        tap_hist_cleanup(&shard[k]);
    }
}


/* The sum has 128 bits: it carries, and merges carry. */
static void
test_hist_sum_carry(void **state)
{
    tap_hist_t  a, b;
    size_t      i;

    tap_hist_init(&a);
    tap_hist_init(&b);

    for (i = 0; i < 4; i++) {
        assert_int_equal(tap_hist_record(&a, UINT64_C(1) << 63), TAP_OK);
    }

    assert_true(tap_hist_sum(&a) == ldexp(1, 65));
    assert_true(tap_hist_mean(&a) == ldexp(1, 63));

    assert_int_equal(tap_hist_record(&b, UINT64_MAX), TAP_OK);
    assert_int_equal(tap_hist_record(&b, 1), TAP_OK);
    assert_true(tap_hist_sum(&b) == ldexp(1, 64));
    assert_int_equal(tap_hist_percentile(&b, 100), UINT64_MAX);
    assert_int_equal(tap_hist_percentile(&b, 50), 1);

    assert_int_equal(tap_hist_merge(&a, &b), TAP_OK);
    assert_int_equal(tap_hist_merge(&a, &b), TAP_OK);
    assert_true(tap_hist_sum(&a) == ldexp(1, 65) + ldexp(1, 65));
    assert_int_equal(tap_hist_count(&a), 8);
    assert_int_equal(tap_hist_min(&a), 1);
    assert_int_equal(tap_hist_max(&a), UINT64_MAX);

    tap_hist_reset(&a);
    assert_true(tap_hist_sum(&a) == 0.0);
    assert_int_equal(tap_hist_count(&a), 0);
    assert_int_equal(tap_hist_percentile(&a, 50), 0);
    assert_true(tap_hist_mean(&a) == 0.0);

    tap_hist_cleanup(&a);
    tap_hist_cleanup(&b);
}


/* Whether a recording at t is in window win read at now (hist.h's definitions). */
static int
tap_t_in_window(uint64_t t, uint64_t now, tap_win_e win)
{
    uint64_t  len, span, period;

    switch (win) {
    case TAP_WIN_1M:
        len = 10 * TAP_T_SEC;
        span = 60 * TAP_T_SEC;
        break;
    case TAP_WIN_5M:
        len = 60 * TAP_T_SEC;
        span = 300 * TAP_T_SEC;
        break;
    default:
        return 1;
    }

    period = now - now % len;
    return t - t % len + span >= period;
}


/* A window read at now against the model: count, min, max, sum, percentiles. */
static void
tap_t_check_window(const tap_whist_t *w, const tap_t_rec_t *rec, size_t n, uint64_t now,
    tap_win_e win)
{
    tap_hist_t  h;
    uint64_t   *v, sum;
    size_t      i, m;

    v = malloc((n + 1) * sizeof(uint64_t));
    assert_non_null(v);

    m = 0;
    sum = 0;
    for (i = 0; i < n; i++) {
        if (tap_t_in_window(rec[i].t, now, win)) {
            v[m++] = rec[i].v;
            sum += rec[i].v;
        }
    }

    tap_hist_init(&h);
    assert_int_equal(tap_whist_read(w, now, win, &h), TAP_OK);
    if (tap_hist_count(&h) != m) {
        fail_msg("window %d at %.1f s: %llu values, expected %zu", (int) win,
                 (double) now / TAP_T_SEC, (unsigned long long) tap_hist_count(&h), m);
    }

    if (m > 0) {
        qsort(v, m, sizeof(uint64_t), tap_t_cmp);
        assert_int_equal(tap_hist_min(&h), v[0]);
        assert_int_equal(tap_hist_max(&h), v[m - 1]);
        assert_true(tap_hist_sum(&h) == (double) sum);
        tap_t_check_percentiles(&h, v, m, "window");
    }

    tap_hist_cleanup(&h);
    free(v);
}


/* The documented example: one value a second for 10 minutes. */
static void
test_whist_example(void **state)
{
    tap_whist_t  w;
    tap_hist_t   h;
    uint64_t     t;

    tap_whist_init(&w);
    for (t = 0; t < 600; t++) {
        assert_int_equal(tap_whist_record(&w, t * TAP_T_SEC, (t + 1) * 1000), TAP_OK);
    }

    tap_hist_init(&h);

    /* at 599.5 s: 1m from 530 s (70 values), 5m from 240 s (360), all 600 */
    assert_int_equal(tap_whist_read(&w, 599 * TAP_T_SEC + TAP_T_SEC / 2, TAP_WIN_1M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 70);
    assert_int_equal(tap_hist_min(&h), 531000);
    assert_int_equal(tap_hist_max(&h), 600000);
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 599 * TAP_T_SEC + TAP_T_SEC / 2, TAP_WIN_5M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 360);
    assert_int_equal(tap_hist_min(&h), 241000);
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 599 * TAP_T_SEC, TAP_WIN_ALL, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 600);

    /* at 605 s: 1m from 540 s (60 values), 5m from 300 s (300) */
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 605 * TAP_T_SEC, TAP_WIN_1M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 60);
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 605 * TAP_T_SEC, TAP_WIN_5M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 300);

    /* until 660 s the last 10 s slot (590 s) is in: 70 s after it started */
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 660 * TAP_T_SEC - 1, TAP_WIN_1M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 10);
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 660 * TAP_T_SEC, TAP_WIN_1M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 0);

    /* until 900 s the last minute slot (540 s) is in: 6 min after it started */
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 900 * TAP_T_SEC - 1, TAP_WIN_5M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 60);
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 900 * TAP_T_SEC, TAP_WIN_5M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 0);
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 3600 * TAP_T_SEC, TAP_WIN_ALL, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 600);

    /* a recording at 700 s reuses the slots of 560 s and 300 s, which are reset */
    assert_int_equal(tap_whist_record(&w, 700 * TAP_T_SEC, 7), TAP_OK);
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 700 * TAP_T_SEC, TAP_WIN_1M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 1);
    assert_int_equal(tap_hist_percentile(&h, 50), 7);
    tap_hist_reset(&h);
    assert_int_equal(tap_whist_read(&w, 700 * TAP_T_SEC, TAP_WIN_5M, &h), TAP_OK);
    assert_int_equal(tap_hist_count(&h), 241);            /* 360..599 s and 700 s */

    tap_hist_cleanup(&h);
    tap_whist_cleanup(&w);
}


/* Random times with gaps, read at random moments, against the model. */
static void
test_whist_model(void **state)
{
    static const tap_win_e  wins[] = { TAP_WIN_1M, TAP_WIN_5M, TAP_WIN_ALL };
    tap_t_rec_t            *rec;
    tap_whist_t             w;
    uint64_t                rng, t, now;
    size_t                  n, k, i;

    rec = malloc(20000 * sizeof(tap_t_rec_t));
    assert_non_null(rec);

    tap_whist_init(&w);
    rng = 21;
    t = 5 * TAP_T_SEC;
    n = 0;
    for (k = 0; k < 400; k++) {
        /* a burst of recordings over up to 3 s, then a gap up to 8 min */
        for (i = tap_t_rand(&rng) % 50; i > 0; i--) {
            t += tap_t_rand(&rng) % (60 * 1000 * 1000);
            rec[n].t = t;
            rec[n].v = tap_t_draw_loguniform(&rng);
            assert_int_equal(tap_whist_record(&w, rec[n].t, rec[n].v), TAP_OK);
            n++;
        }

        now = t + (k % 5 == 0 ? 0 : tap_t_rand(&rng) % (400 * TAP_T_SEC));
        for (i = 0; i < TAP_NELEMS(wins); i++) {
            tap_t_check_window(&w, rec, n, now, wins[i]);
        }

        t = now + tap_t_rand(&rng) % (120 * TAP_T_SEC);
    }

    printf("# %zu recordings over %.0f s, read at 400 moments\n", n, (double) t / TAP_T_SEC);
    tap_whist_cleanup(&w);
    free(rec);
}


/* Memory: 1 us .. 1 h takes at most TAP_HIST_ROWS_1US_1H rows; the range takes them all. */
static void
test_hist_memory(void **state)
{
    tap_whist_t  w;
    tap_hist_t   h;
    uint64_t     rng, v;
    size_t       i;

    tap_hist_init(&h);
    assert_int_equal(tap_hist_rows(&h), 0);

    assert_int_equal(tap_hist_record(&h, TAP_T_LO), TAP_OK);
    assert_int_equal(tap_hist_record(&h, TAP_T_HI), TAP_OK);
    rng = 31;
    for (i = 0; i < TAP_T_N; i++) {
        assert_int_equal(tap_hist_record(&h, tap_t_draw_loguniform(&rng)), TAP_OK);
    }

    assert_int_equal(tap_hist_rows(&h), TAP_HIST_ROWS_1US_1H);
    assert_true(tap_hist_rows(&h) * TAP_HIST_ROW_BYTES <= 16896);
    printf("# 1 us .. 1 h: %zu rows, %zu bytes of rows, %zu bytes of struct\n",
           tap_hist_rows(&h), tap_hist_rows(&h) * TAP_HIST_ROW_BYTES, sizeof(tap_hist_t));

    for (v = 1; v != 0; v <<= 1) {
        assert_int_equal(tap_hist_record(&h, v - 1), TAP_OK);
    }

    assert_int_equal(tap_hist_record(&h, UINT64_MAX), TAP_OK);
    assert_int_equal(tap_hist_rows(&h), TAP_HIST_ROWS);
    tap_hist_cleanup(&h);

    /* a recorder over 20 min of 1 us .. 1 h values: 14 histograms of <= 33 rows */
    tap_whist_init(&w);
    for (i = 0; i < 1200 * 10; i++) {
        v = i % 2 ? TAP_T_LO : TAP_T_HI;
        assert_int_equal(tap_whist_record(&w, i * (TAP_T_SEC / 10), i % 4 ? v
                                          : tap_t_draw_loguniform(&rng)), TAP_OK);
    }

    assert_true(tap_whist_rows(&w) <= TAP_WHIST_HISTS * TAP_HIST_ROWS_1US_1H);
    printf("# recorder over 20 min: %zu rows (bound %d), %zu bytes of struct\n",
           tap_whist_rows(&w), TAP_WHIST_HISTS * TAP_HIST_ROWS_1US_1H, sizeof(tap_whist_t));
    tap_whist_cleanup(&w);
    assert_int_equal(tap_whist_rows(&w), 0);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_hist_percentiles),
        cmocka_unit_test(test_hist_buckets),
        cmocka_unit_test(test_hist_merge),
        cmocka_unit_test(test_hist_sum_carry),
        cmocka_unit_test(test_whist_example),
        cmocka_unit_test(test_whist_model),
        cmocka_unit_test(test_hist_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
