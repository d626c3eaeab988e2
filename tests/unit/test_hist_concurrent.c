/*
 * test_hist_concurrent.c: the histograms' threading contract (src/stats/
 * hist.h) under load, meant for ThreadSanitizer (build-tsan/ in tools/check)
 * but run in every build.
 *
 * Three writer threads each record into their own tap_whist_t for about a
 * second, on a clock running 100 times faster than the real one (so the
 * 10 s and 1 min slots are reset while the reader reads them), while the
 * test's own thread, the reader, keeps merging every shard's windows into
 * its histograms, as the control thread does.  The reader checks that the
 * since-start count never decreases and that every window's percentiles lie
 * within its [min, max]; after the writers are joined, the merged since-start
 * count and sum equal what the writers recorded, and the last minute holds
 * at most that.  Any data race is ThreadSanitizer's to report (exit status
 * 66, which the test driver counts as an error).
 * Output is TAP (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cmocka.h>

#include "tap_core.h"
#include "stats/hist.h"

#define TAP_T_WRITERS    3
#define TAP_T_RUN_NS     UINT64_C(1000000000)          /* real time the writers run */
#define TAP_T_SPEEDUP    100                           /* simulated ns per real ns */

typedef struct tap_t_shared_s {
    uint64_t             t0;                          /* real start, ns */
    atomic_int           stop;
} tap_t_shared_t;

typedef struct tap_t_writer_s {
    tap_t_shared_t      *sh;
    tap_whist_t          w;
    uint64_t             seed;
    uint64_t             recorded;                    /* read after join */
    uint64_t             sum_lo, sum_hi;              /* 128 bits, as the histogram's */
    int                  errors;
    pthread_t            tid;
} tap_t_writer_t;


static uint64_t
tap_t_mono(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}


/* The simulated monotonic clock both sides use. */
static uint64_t
tap_t_now(const tap_t_shared_t *sh)
{
    return (tap_t_mono() - sh->t0) * TAP_T_SPEEDUP;
}


/* xorshift64 */
static uint64_t
tap_t_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}


static void *
tap_t_writer(void *arg)
{
    tap_t_writer_t  *wr = arg;
    uint64_t         v, r;

    while (!atomic_load_explicit(&wr->sh->stop, memory_order_relaxed)) {
        r = tap_t_rand(&wr->seed);
        /* 1 us .. 1.6 days; one in 65536 is 2^62, so that the sum carries */
        v = (1000 + (r & 0xffff)) << ((r >> 16) % 32);
        if ((r >> 48) == 0) {
            v = UINT64_C(1) << 62;
        }
        if (tap_whist_record(&wr->w, tap_t_now(wr->sh), v) != TAP_OK) {
            wr->errors++;
        }

        wr->recorded++;
        wr->sum_lo += v;
        wr->sum_hi += wr->sum_lo < v;
    }

    return NULL;
}


/*
 * One window of every shard merged into h.  Returns the number of broken
 * invariants (min <= each percentile <= max); no assertion fails here, so
 * that the writers are always joined.
 */
static int
tap_t_read(tap_t_writer_t *wr, uint64_t now, tap_win_e win, tap_hist_t *h)
{
    static const double  ps[] = { 50, 90, 95, 99, 99.9 };
    uint64_t             mn, mx, v;
    size_t               i;
    int                  bad;

    bad = 0;
    tap_hist_reset(h);
    for (i = 0; i < TAP_T_WRITERS; i++) {
        bad += tap_whist_read(&wr[i].w, now, win, h) != TAP_OK;
    }

    if (tap_hist_count(h) == 0) {
        return bad;
    }

    mn = tap_hist_min(h);
    mx = tap_hist_max(h);
    bad += mn > mx;
    for (i = 0; i < TAP_NELEMS(ps); i++) {
        v = tap_hist_percentile(h, ps[i]);
        bad += v < mn || v > mx;
    }

    return bad;
}


static void
test_hist_concurrent(void **state)
{
    tap_t_writer_t  wr[TAP_T_WRITERS];
    tap_t_shared_t  sh;
    tap_hist_t      all, m1, m5;
    uint64_t        now, last, total, sum_lo, sum_hi, reads;
    size_t          i;
    int             bad, decreased, errors;

    sh.t0 = tap_t_mono();
    atomic_init(&sh.stop, 0);

    for (i = 0; i < TAP_T_WRITERS; i++) {
        wr[i].sh = &sh;
        wr[i].seed = 0x9e3779b97f4a7c15 * (i + 1);
        wr[i].recorded = wr[i].sum_lo = wr[i].sum_hi = 0;
        wr[i].errors = 0;
        tap_whist_init(&wr[i].w);
    }

    tap_hist_init(&all);
    tap_hist_init(&m1);
    tap_hist_init(&m5);

    for (i = 0; i < TAP_T_WRITERS; i++) {
        assert_int_equal(pthread_create(&wr[i].tid, NULL, tap_t_writer, &wr[i]), 0);
    }

    last = 0;
    reads = 0;
    bad = decreased = 0;
    do {
        now = tap_t_now(&sh);

        bad += tap_t_read(wr, now, TAP_WIN_ALL, &all);
        decreased += tap_hist_count(&all) < last;
        last = tap_hist_count(&all);

        bad += tap_t_read(wr, now, TAP_WIN_1M, &m1);
        bad += tap_t_read(wr, now, TAP_WIN_5M, &m5);
        reads++;
    } while (now < TAP_T_RUN_NS * TAP_T_SPEEDUP);

    atomic_store_explicit(&sh.stop, 1, memory_order_relaxed);
    total = sum_lo = sum_hi = 0;
    errors = 0;
    for (i = 0; i < TAP_T_WRITERS; i++) {
        errors += pthread_join(wr[i].tid, NULL) != 0;
        errors += wr[i].errors;
        total += wr[i].recorded;
        sum_lo += wr[i].sum_lo;
        sum_hi += wr[i].sum_hi + (sum_lo < wr[i].sum_lo);
    }

    assert_int_equal(errors, 0);
    assert_int_equal(decreased, 0);
    assert_int_equal(bad, 0);

    now = tap_t_now(&sh);
    assert_int_equal(tap_t_read(wr, now, TAP_WIN_ALL, &all), 0);
    assert_int_equal(tap_hist_count(&all), total);
    assert_true(tap_hist_sum(&all) == ldexp((double) sum_hi, 64) + (double) sum_lo);
    assert_int_equal(tap_t_read(wr, now, TAP_WIN_1M, &m1), 0);
    assert_true(tap_hist_count(&m1) > 0 && tap_hist_count(&m1) <= total);
    assert_int_equal(tap_t_read(wr, now, TAP_WIN_5M, &m5), 0);
    assert_true(tap_hist_count(&m1) <= tap_hist_count(&m5));

    printf("# %d writers: %llu values in %.0f simulated s (sum past 2^64 %llu times), "
           "%llu merged reads; last minute %llu, last 5 minutes %llu, p99 %llu ns\n",
           TAP_T_WRITERS, (unsigned long long) total, (double) now / 1e9,
           (unsigned long long) sum_hi, (unsigned long long) reads,
           (unsigned long long) tap_hist_count(&m1), (unsigned long long) tap_hist_count(&m5),
           (unsigned long long) tap_hist_percentile(&all, 99));

    tap_hist_cleanup(&all);
    tap_hist_cleanup(&m1);
    tap_hist_cleanup(&m5);
    for (i = 0; i < TAP_T_WRITERS; i++) {
        tap_whist_cleanup(&wr[i].w);
    }
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_hist_concurrent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
