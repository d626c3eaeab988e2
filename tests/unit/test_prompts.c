/*
 * test_prompts.c: unit tests of the prompt table (src/stats/prompts.c).
 *
 * Ranking is exact while the distinct prompts fit (counts, order, ties by
 * hash), for every `by`.  Past the capacity, Zipf streams check the
 * Space-Saving guarantee entry by entry against true counts: every key
 * more frequent than N/m is present, true <= count <= true + error, error
 * <= N/m, counts add up to N, and the index still finds every entry.
 * Welford's figures are compared with a two-pass mean and variance.  The
 * distinct completions are exact up to 8; beyond, the HyperLogLog estimate
 * is checked at 1,000 and 10,000 over many salts against its stated error.
 * Both anomaly kinds are provoked (and not raised on constant figures,
 * under the tolerance, before min_samples, for failures, across params).
 * The JSON is parsed with cJSON and checked field by field, the query
 * parser is fed good and bad strings, and a default table takes 1,000,000
 * distinct prompts without allocating (its own counter and glibc's
 * mallinfo2).  Output is TAP (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <inttypes.h>
#include <malloc.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <cjson/cJSON.h>
#include <xxhash.h>

#include "tap_core.h"
#include "exchange.h"
#include "stats/prompts.h"

#define TAP_T_WALL0    INT64_C(1767323045678000000)    /* 2026-01-02T03:04:05.678Z */
#define TAP_T_MS       INT64_C(1000000)

/* What one test exchange carries; negative numbers are "unknown". */
typedef struct tap_t_ex_s {
    uint64_t     prompt;
    double       e2e_ms;
    double       ttft_ms;
    int64_t      ptok;
    int64_t      otok;
    uint64_t     completion;           /* 0: none */
    double       temperature;          /* NAN: unset */
    int64_t      seed;
    uint64_t     params;               /* 0: none */
    int          status;
    const char  *error;
    const char  *model;
    double       logprob;              /* NAN: none */
} tap_t_ex_t;


static uint64_t
tap_t_rand(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}


static double
tap_t_unif(uint64_t *s)
{
    return (double) (tap_t_rand(s) >> 11) / 9007199254740992.0;
}


static tap_t_ex_t
tap_t_default(uint64_t prompt)
{
    tap_t_ex_t  d = {
        .prompt = prompt, .e2e_ms = -1, .ttft_ms = -1, .ptok = -1, .otok = -1,
        .temperature = NAN, .seed = TAP_GEN_UNSET, .status = 200, .model = "m",
        .logprob = NAN,
    };

    return d;
}


static void
tap_t_build(tap_exchange_t *ex, const tap_t_ex_t *d, int64_t i)
{
    tap_exchange_init(ex);
    ex->status = d->status;
    ex->error = d->error;
    ex->wall_t0_ns = TAP_T_WALL0 + i * TAP_T_MS;
    ex->t0 = 1000 * TAP_T_MS + i;
    if (d->e2e_ms >= 0) {
        ex->last_byte = ex->t0 + (int64_t) llround(d->e2e_ms * 1e6);
    }
    ex->ttft_ms = d->ttft_ms;
    snprintf(ex->gen.model, sizeof(ex->gen.model), "%s", d->model);
    ex->gen.prompt_hash = d->prompt;
    ex->gen.has_prompt_hash = 1;
    ex->gen.prefix_hash = d->prompt >> 4;
    ex->gen.has_prefix_hash = 1;
    ex->gen.prompt_tokens = d->ptok;
    ex->gen.completion_tokens = d->otok;
    if (d->completion != 0) {
        ex->gen.completion_hash = d->completion;
        ex->gen.has_completion_hash = 1;
    }
    if (d->params != 0) {
        ex->gen.params_hash = d->params;
        ex->gen.has_params_hash = 1;
    }
    ex->gen.temperature = d->temperature;
    ex->gen.seed = d->seed;
    if (!isnan(d->logprob)) {
        ex->gen.lp_sum = d->logprob * 4;
        ex->gen.lp_min = d->logprob;
        ex->gen.lp_count = 4;
    }
}


static const tap_prompt_t *
tap_t_observe(tap_prompts_t *t, const tap_t_ex_t *d, tap_prompt_anomaly_t *anom)
{
    static int64_t   i;
    tap_exchange_t   ex;

    tap_t_build(&ex, d, i++);
    return tap_prompts_observe(t, &ex, anom);
}


/* Observes one bare exchange for prompt. */
static void
tap_t_hit(tap_prompts_t *t, uint64_t prompt)
{
    tap_t_ex_t  d = tap_t_default(prompt);

    assert_non_null(tap_t_observe(t, &d, NULL));
}


static tap_prompts_t *
tap_t_table(size_t capacity)
{
    tap_prompts_conf_t   conf;
    tap_prompts_t       *t;

    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PROMPT);
    conf.capacity = capacity;
    t = tap_prompts_create(&conf);
    assert_non_null(t);
    return t;
}


static uint64_t
tap_t_key(uint64_t i)
{
    return XXH3_64bits_withSeed(&i, sizeof(i), 7);
}


/*
 * Tests
 */

static void
test_create(void **state)
{
    tap_prompts_conf_t   conf;
    tap_prompts_t       *t;

    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PROMPT);
    assert_int_equal(conf.capacity, 4096);
    assert_true(conf.k == 3.0);
    assert_int_equal(conf.min_samples, 5);
    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PREFIX);
    assert_int_equal(conf.capacity, 512);

    t = tap_prompts_create(NULL);
    assert_non_null(t);
    assert_int_equal(tap_prompts_capacity(t), 4096);
    assert_int_equal(tap_prompts_size(t), 0);
    assert_int_equal(tap_prompts_allocated(t), tap_prompts_bytes(4096));
    print_message("# tap_prompt_t %zu bytes; table of 4096: %zu bytes; of 512: %zu bytes\n",
        sizeof(tap_prompt_t), tap_prompts_bytes(4096), tap_prompts_bytes(512));
    tap_prompts_destroy(t);
    tap_prompts_destroy(NULL);

    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PROMPT);
    conf.capacity = 0;
    assert_null(tap_prompts_create(&conf));
    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PROMPT);
    conf.k = 0;
    assert_null(tap_prompts_create(&conf));
    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PROMPT);
    conf.k = NAN;
    assert_null(tap_prompts_create(&conf));
    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PROMPT);
    conf.min_samples = 1;
    assert_null(tap_prompts_create(&conf));
    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PROMPT);
    conf.tolerance = -0.5;
    assert_null(tap_prompts_create(&conf));

    /* a capacity of one works */
    t = tap_t_table(1);
    tap_t_hit(t, 1);
    tap_t_hit(t, 2);
    tap_t_hit(t, 2);
    assert_null(tap_prompts_lookup(t, 1));
    assert_int_equal(tap_prompts_lookup(t, 2)->count, 3);
    assert_int_equal(tap_prompts_lookup(t, 2)->error, 1);
    tap_prompts_destroy(t);
}


/* 40 prompts, prompt i seen (i % 7) + 1 times, in a shuffled order. */
static void
test_rank_exact(void **state)
{
    const tap_prompt_t  *out[64];
    tap_prompts_t       *t;
    uint64_t             keys[40], stream[40 * 7], s = 11, tmp;
    size_t               n, i, j, len;

    t = tap_t_table(64);
    len = 0;
    for (i = 0; i < 40; i++) {
        keys[i] = tap_t_key(i);
        for (j = 0; j < (i % 7) + 1; j++) {
            stream[len++] = keys[i];
        }
    }
    for (i = len - 1; i > 0; i--) {
        j = tap_t_rand(&s) % (i + 1);
        tmp = stream[i];
        stream[i] = stream[j];
        stream[j] = tmp;
    }
    for (i = 0; i < len; i++) {
        tap_t_hit(t, stream[i]);
    }

    assert_int_equal(tap_prompts_size(t), 40);
    assert_int_equal(tap_prompts_totals(t)->observations, len);
    assert_int_equal(tap_prompts_totals(t)->evictions, 0);

    n = tap_prompts_rank(t, TAP_PROMPTS_BY_COUNT, 64, out);
    assert_int_equal(n, 40);
    for (i = 0; i < n; i++) {
        assert_int_equal(out[i]->error, 0);
        for (j = 0; j < 40 && keys[j] != out[i]->hash; j++) {
            /* find it */
        }
        assert_true(j < 40);
        assert_int_equal(out[i]->count, (j % 7) + 1);
        if (i > 0) {
            assert_true(out[i - 1]->count > out[i]->count
                        || (out[i - 1]->count == out[i]->count
                            && out[i - 1]->hash < out[i]->hash));
        }
    }

    /* a shorter limit gives the same head */
    n = tap_prompts_rank(t, TAP_PROMPTS_BY_COUNT, 5, out + 40);
    assert_int_equal(n, 5);
    for (i = 0; i < 5; i++) {
        assert_ptr_equal(out[40 + i], out[i]);
    }
    assert_int_equal(tap_prompts_rank(t, TAP_PROMPTS_BY_COUNT, 0, out), 0);

    tap_prompts_destroy(t);
}


/* The other rankings on a small crafted table. */
static void
test_rank_by(void **state)
{
    const tap_prompt_t  *out[8];
    tap_prompts_t       *t;
    tap_t_ex_t           d;
    int                  i;

    t = tap_t_table(8);

    /* A: 4 x (10 + 10 tokens, 100 ms), 1 completion */
    for (i = 0; i < 4; i++) {
        d = tap_t_default(0xa);
        d.ptok = 10;
        d.otok = 10;
        d.e2e_ms = 100;
        d.completion = 1;
        tap_t_observe(t, &d, NULL);
    }
    /* B: 2 x (100 + 50 tokens, 200 and 400 ms: cv 0.47), 2 completions */
    for (i = 0; i < 2; i++) {
        d = tap_t_default(0xb);
        d.ptok = 100;
        d.otok = 50;
        d.e2e_ms = 200 + 200 * i;
        d.completion = 1 + i;
        tap_t_observe(t, &d, NULL);
    }
    /* C: 1 x, nothing known */
    d = tap_t_default(0xc);
    tap_t_observe(t, &d, NULL);
    /* D: 3 x (1000 ms, 1010, 990: small cv), 3 completions, no tokens */
    for (i = 0; i < 3; i++) {
        d = tap_t_default(0xd);
        d.e2e_ms = 1000 + (i == 1 ? 10 : i == 2 ? -10 : 0);
        d.completion = 7 + i;
        tap_t_observe(t, &d, NULL);
    }

    assert_int_equal(tap_prompts_rank(t, TAP_PROMPTS_BY_COUNT, 8, out), 4);
    assert_true(out[0]->hash == 0xa && out[1]->hash == 0xd && out[2]->hash == 0xb
                && out[3]->hash == 0xc);

    /* tokens: B 300, A 80, then D and C (none; D has the larger count) */
    assert_int_equal(tap_prompts_rank(t, TAP_PROMPTS_BY_TOKENS, 8, out), 4);
    assert_true(out[0]->hash == 0xb && out[1]->hash == 0xa && out[2]->hash == 0xd
                && out[3]->hash == 0xc);

    assert_int_equal(tap_prompts_rank(t, TAP_PROMPTS_BY_LATENCY, 8, out), 4);
    assert_true(out[0]->hash == 0xd && out[1]->hash == 0xb && out[2]->hash == 0xa
                && out[3]->hash == 0xc);

    /* variance (cv): B, D, A (cv 0), C (none) */
    assert_int_equal(tap_prompts_rank(t, TAP_PROMPTS_BY_VARIANCE, 8, out), 4);
    assert_true(out[0]->hash == 0xb && out[1]->hash == 0xd && out[2]->hash == 0xa
                && out[3]->hash == 0xc);

    assert_int_equal(tap_prompts_rank(t, TAP_PROMPTS_BY_DIVERSITY, 8, out), 4);
    assert_true(out[0]->hash == 0xd && out[1]->hash == 0xb && out[2]->hash == 0xa
                && out[3]->hash == 0xc);

    assert_int_equal(tap_prompts_rank(t, TAP_PROMPTS_BY_LATENCY, 2, out), 2);
    assert_true(out[0]->hash == 0xd && out[1]->hash == 0xb);

    tap_prompts_destroy(t);
}


/*
 * A Zipf(s) stream of n observations over nkeys keys through a table of m
 * entries, checked against the true counts.
 */
static void
tap_t_zipf(size_t m, size_t nkeys, double zs, size_t n, uint64_t seed)
{
    const tap_prompt_t  **out;
    tap_prompts_t        *t;
    const tap_prompt_t   *p;
    double               *cdf, u, bound;
    uint64_t             *truth, *keys, sum, s = seed;
    size_t                i, lo, hi, mid, heavy;

    cdf = malloc(nkeys * sizeof(double));
    truth = calloc(nkeys, sizeof(uint64_t));
    keys = malloc(nkeys * sizeof(uint64_t));
    out = malloc(m * sizeof(*out));
    assert_true(cdf != NULL && truth != NULL && keys != NULL && out != NULL);

    for (i = 0, u = 0; i < nkeys; i++) {
        u += 1.0 / pow((double) (i + 1), zs);
        cdf[i] = u;
        keys[i] = tap_t_key(i + seed * nkeys);
    }
    for (i = 0; i < nkeys; i++) {
        cdf[i] /= u;
    }

    t = tap_t_table(m);
    for (i = 0; i < n; i++) {
        u = tap_t_unif(&s);
        lo = 0;
        hi = nkeys - 1;
        while (lo < hi) {
            mid = (lo + hi) / 2;
            if (cdf[mid] < u) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        truth[lo]++;
        tap_t_hit(t, keys[lo]);
    }

    bound = (double) n / (double) m;
    assert_int_equal(tap_prompts_size(t), m);
    assert_true(tap_prompts_totals(t)->evictions > 0);

    heavy = 0;
    for (i = 0; i < nkeys; i++) {
        p = tap_prompts_lookup(t, keys[i]);
        if ((double) truth[i] > bound) {
            heavy++;
            assert_non_null(p);
        }
        if (p == NULL) {
            continue;
        }
        assert_true(p->count >= truth[i]);
        assert_true(p->count <= truth[i] + p->error);
        assert_true((double) p->error <= bound);
    }
    assert_true(heavy > 0);

    /* counts add up to N; every ranked entry is found by the index */
    assert_int_equal(tap_prompts_rank(t, TAP_PROMPTS_BY_COUNT, m, out), m);
    for (i = 0, sum = 0; i < m; i++) {
        sum += out[i]->count;
        assert_ptr_equal(tap_prompts_lookup(t, out[i]->hash), out[i]);
    }
    assert_int_equal(sum, n);
    print_message("# zipf s=%.2f m=%zu keys=%zu N=%zu: %zu keys above N/m, %" PRIu64
        " evictions, top count %" PRIu64 " (error %" PRIu64 ")\n", zs, m, nkeys, n, heavy,
        tap_prompts_totals(t)->evictions, out[0]->count, out[0]->error);

    tap_prompts_destroy(t);
    free(out);
    free(keys);
    free(truth);
    free(cdf);
}


static void
test_heavy_hitters(void **state)
{
    tap_t_zipf(100, 10000, 1.0, 200000, 1);
    tap_t_zipf(100, 100000, 0.8, 300000, 2);
    tap_t_zipf(4096, 200000, 1.1, 1000000, 3);
}


static void
tap_t_near(double got, double want, double rel)
{
    if (!(fabs(got - want) <= rel * fabs(want) + 1e-300)) {
        fail_msg("%.17g is not within %g of %.17g", got, rel, want);
    }
}


static void
test_welford(void **state)
{
    tap_prompt_stat_t   st = { 0 };
    tap_prompts_t      *t;
    const tap_prompt_t *p;
    tap_t_ex_t          d;
    tap_exchange_t      ex;
    double              x[2000], e2e[2000], mean, var, me, ve;
    uint64_t            s = 5;
    size_t              i, n = 2000;

    /* values with a large offset: the one-pass sum of squares would lose them */
    for (i = 0, mean = 0; i < n; i++) {
        x[i] = 1e6 + 1000.0 * tap_t_unif(&s) + (i % 3);
        mean += x[i];
        tap_prompt_stat_add(&st, x[i]);
    }
    mean /= (double) n;
    for (i = 0, var = 0; i < n; i++) {
        var += (x[i] - mean) * (x[i] - mean);
    }
    var /= (double) (n - 1);
    assert_int_equal(st.n, n);
    tap_t_near(st.mean, mean, 1e-9);
    tap_t_near(tap_prompt_stat_var(&st), var, 1e-9);
    tap_t_near(tap_prompt_stat_stddev(&st), sqrt(var), 1e-9);

    /* through the table: e2e in ms from the nanosecond clocks */
    t = tap_t_table(4);
    for (i = 0, me = 0; i < n; i++) {
        d = tap_t_default(42);
        d.e2e_ms = 50 + 5000 * tap_t_unif(&s);
        d.ptok = (int64_t) (tap_t_rand(&s) % 1000);
        tap_t_build(&ex, &d, (int64_t) i);
        e2e[i] = (double) (ex.last_byte - ex.t0) / 1e6;
        me += e2e[i];
        p = tap_prompts_observe(t, &ex, NULL);
        assert_non_null(p);
    }
    me /= (double) n;
    for (i = 0, ve = 0; i < n; i++) {
        ve += (e2e[i] - me) * (e2e[i] - me);
    }
    ve /= (double) (n - 1);
    p = tap_prompts_lookup(t, 42);
    assert_int_equal(p->e2e.n, n);
    tap_t_near(p->e2e.mean, me, 1e-9);
    tap_t_near(tap_prompt_stat_var(&p->e2e), ve, 1e-9);
    assert_int_equal(p->ttft.n, 0);
    assert_int_equal(p->prompt_tokens.n, n);

    /* below two samples the variance is 0 */
    st = (tap_prompt_stat_t) { 0 };
    assert_true(tap_prompt_stat_var(&st) == 0.0);
    tap_prompt_stat_add(&st, 3);
    assert_true(tap_prompt_stat_var(&st) == 0.0 && st.mean == 3.0);

    tap_prompts_destroy(t);
}


/* The distinct-completion estimate of `n` distinct hashes (salted). */
static double
tap_t_distinct(tap_prompts_t *t, uint64_t prompt, size_t n, uint64_t salt)
{
    const tap_prompt_t  *p = NULL;
    tap_t_ex_t           d;
    size_t               i;
    uint64_t             v[2];
    int                  exact;

    for (i = 0; i < n; i++) {
        d = tap_t_default(prompt);
        v[0] = i;
        v[1] = salt;
        d.completion = XXH3_64bits(v, sizeof(v));
        p = tap_t_observe(t, &d, NULL);
    }
    assert_non_null(p);
    return (double) tap_prompt_distinct(p, &exact);
}


static void
test_distinct(void **state)
{
    static const size_t   sizes[] = { 1000, 10000 };
    const tap_prompt_t   *p;
    tap_prompts_t        *t;
    tap_t_ex_t            d;
    double                e, rel, sq, worst, se;
    uint64_t              salt;
    size_t                i, k, in2, in3, trials = 100;
    int                   exact;

    t = tap_t_table(16);

    /* exact up to 8, repeats included */
    for (i = 0; i < 8; i++) {
        d = tap_t_default(1);
        d.completion = 100 + i;
        p = tap_t_observe(t, &d, NULL);
        p = tap_t_observe(t, &d, NULL);
        assert_int_equal(tap_prompt_distinct(p, &exact), i + 1);
        assert_true(exact);
    }
    d.completion = 100;
    p = tap_t_observe(t, &d, NULL);
    assert_int_equal(tap_prompt_distinct(p, &exact), 8);
    assert_true(exact);

    /* the ninth: an estimate, at least 9 */
    d.completion = 200;
    p = tap_t_observe(t, &d, NULL);
    e = (double) tap_prompt_distinct(p, &exact);
    assert_false(exact);
    assert_true(e >= 9 && e <= 11);

    /* failures and exchanges without a completion hash add nothing */
    d = tap_t_default(2);
    d.completion = 5;
    tap_t_observe(t, &d, NULL);
    d.completion = 6;
    d.status = 502;
    tap_t_observe(t, &d, NULL);
    d.status = 200;
    d.error = "upstream_reset";
    tap_t_observe(t, &d, NULL);
    d = tap_t_default(2);
    p = tap_t_observe(t, &d, NULL);
    assert_int_equal(tap_prompt_distinct(p, NULL), 1);
    assert_int_equal(p->errors, 2);
    assert_int_equal(p->count, 4);

    /*
     * The estimate against its stated error (prompts.h): relative standard
     * error 1.04/sqrt(128) = 9.2%, 95% of estimates within 2 standard
     * errors and 99% within 3.  Over 100 salted sets of each size: the rms
     * error at most 1.25 standard errors, at least 90 within 2 and at least
     * 98 within 3.
     */
    se = 1.04 / sqrt((double) TAP_PROMPT_HLL);
    for (k = 0; k < TAP_NELEMS(sizes); k++) {
        sq = 0;
        worst = 0;
        in2 = 0;
        in3 = 0;
        for (salt = 1; salt <= trials; salt++) {
            e = tap_t_distinct(t, 1000 + salt + 1000 * k, sizes[k], salt + 1000 * k);
            rel = (e - (double) sizes[k]) / (double) sizes[k];
            sq += rel * rel;
            worst = fabs(rel) > worst ? fabs(rel) : worst;
            in2 += fabs(rel) <= 2 * se;
            in3 += fabs(rel) <= 3 * se;
        }
        print_message("# distinct %zu: rms relative error %.3f, worst %.3f, %zu within 2 se,"
            " %zu within 3 se, over %zu sets (stated standard error %.3f)\n", sizes[k],
            sqrt(sq / (double) trials), worst, in2, in3, trials, se);
        assert_true(sqrt(sq / (double) trials) <= 1.25 * se);
        assert_true(in2 >= 90);
        assert_true(in3 >= 98);
    }

    tap_prompts_destroy(t);
}


static void
test_anomaly_resource(void **state)
{
    tap_prompt_anomaly_t   a;
    tap_prompts_conf_t     conf;
    tap_prompts_t         *t;
    tap_t_ex_t             d;
    int                    i;

    t = tap_t_table(16);

    /* constant figures: never flagged, nor within the 1% tolerance */
    for (i = 0; i < 10; i++) {
        d = tap_t_default(1);
        d.e2e_ms = 100;
        d.ttft_ms = 20;
        d.otok = 50;
        tap_t_observe(t, &d, &a);
        assert_int_equal(a.flags, 0);
        assert_null(a.reason);
    }
    d.e2e_ms = 100.5;
    d.ttft_ms = 20.1;
    d.otok = 50;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);

    /* stddev almost 0 now: 2% off is beyond the tolerance and the stddevs */
    d.e2e_ms = 102;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_E2E);
    assert_string_equal(a.reason, "e2e");
    assert_non_null(strstr(a.detail, "e2e 102"));

    /* each figure on its own */
    d.e2e_ms = 100;
    d.ttft_ms = 500;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_TTFT);
    assert_string_equal(a.reason, "ttft");
    d.ttft_ms = 20;
    d.otok = 4000;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_OUTPUT);
    assert_string_equal(a.reason, "output_tokens");
    d.e2e_ms = 9000;
    d.ttft_ms = 3000;
    d.otok = 4000;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_RESOURCE);
    assert_string_equal(a.reason, "e2e");

    /* a failure is counted, not checked */
    d.e2e_ms = 90000;
    d.status = 504;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);

    assert_int_equal(tap_prompts_totals(t)->anomalies[TAP_PROMPT_ANOMALY_E2E], 2);
    assert_int_equal(tap_prompts_totals(t)->anomalies[TAP_PROMPT_ANOMALY_TTFT], 2);
    assert_int_equal(tap_prompts_totals(t)->anomalies[TAP_PROMPT_ANOMALY_OUTPUT], 2);
    assert_int_equal(tap_prompts_totals(t)->anomalies[TAP_PROMPT_ANOMALY_NONDET], 0);

    /* nothing before min_samples (5): wild values on samples 1..5 */
    for (i = 0; i < 5; i++) {
        d = tap_t_default(2);
        d.e2e_ms = i == 4 ? 1e6 : 10 + i;
        tap_t_observe(t, &d, &a);
        assert_int_equal(a.flags, 0);
    }

    /*
     * Against the statistics before the sample: 10 x {90, 110} (mean 100,
     * stddev 10.54), then 132: 3.04 stddevs before it is added, 2.09 after.
     */
    for (i = 0; i < 10; i++) {
        d = tap_t_default(3);
        d.e2e_ms = i % 2 ? 110 : 90;
        tap_t_observe(t, &d, &a);
        assert_int_equal(a.flags, 0);
    }
    d.e2e_ms = 132;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_E2E);
    tap_prompts_destroy(t);

    /* k and min_samples are settings */
    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PROMPT);
    conf.k = 4;
    conf.min_samples = 20;
    t = tap_prompts_create(&conf);
    assert_non_null(t);
    for (i = 0; i < 20; i++) {
        d = tap_t_default(3);
        d.e2e_ms = i % 2 ? 110 : 90;
        tap_t_observe(t, &d, &a);
    }
    d.e2e_ms = 135;             /* 3.41 stddevs */
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);
    d.e2e_ms = 160;             /* 4.64 stddevs of the 21 before */
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_E2E);
    tap_prompts_destroy(t);
}


static void
test_anomaly_nondet(void **state)
{
    tap_prompt_anomaly_t   a;
    tap_prompts_t         *t;
    tap_t_ex_t             d;
    int                    i;

    t = tap_t_table(16);

    /* temperature 0: the same completion five times, then a new one */
    for (i = 0; i < 5; i++) {
        d = tap_t_default(1);
        d.temperature = 0;
        d.params = 77;
        d.completion = 1000;
        tap_t_observe(t, &d, &a);
        assert_int_equal(a.flags, 0);
    }
    d.completion = 1001;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_NONDET);
    assert_string_equal(a.reason, "nondeterministic");
    /* the same two again: not new */
    d.completion = 1000;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);
    d.completion = 1001;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);
    d.completion = 1002;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_NONDET);

    /* other params (e.g. another max_tokens): not compared */
    d.params = 78;
    d.completion = 1003;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);

    /* a failed one (a cut stream): not compared */
    d.params = 77;
    d.completion = 1004;
    d.error = "client_abort";
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);

    /* sampled (temperature 0.7, no seed): completions may differ */
    for (i = 0; i < 5; i++) {
        d = tap_t_default(2);
        d.temperature = 0.7;
        d.completion = 2000 + i;
        tap_t_observe(t, &d, &a);
        assert_int_equal(a.flags, 0);
    }
    /* unset temperature, no seed: the same */
    d = tap_t_default(2);
    d.completion = 2100;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);
    /* the first deterministic sample, after sampled ones: nothing to compare with */
    d.temperature = 0;
    d.completion = 2200;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);
    /* a sampled completion seen before is new among the deterministic ones */
    d.completion = 2001;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_NONDET);

    /* a fixed seed counts as deterministic */
    d = tap_t_default(3);
    d.temperature = 1.0;
    d.seed = 42;
    d.completion = 3000;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);
    d.completion = 3001;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_NONDET);

    /* the ninth distinct completion is new for sure; after that, unknown */
    for (i = 0; i < 6; i++) {
        d.completion = 3100 + i;
        tap_t_observe(t, &d, &a);
        assert_int_equal(a.flags, TAP_PROMPT_ANOM_NONDET);
    }
    assert_false(tap_prompts_lookup(t, 3)->estimated);
    d.completion = 3200;
    tap_t_observe(t, &d, &a);
    assert_true(tap_prompts_lookup(t, 3)->estimated);
    assert_int_equal(a.flags, TAP_PROMPT_ANOM_NONDET);
    d.completion = 3201;
    tap_t_observe(t, &d, &a);
    assert_int_equal(a.flags, 0);

    assert_int_equal(tap_prompts_totals(t)->anomalies[TAP_PROMPT_ANOMALY_NONDET],
        2 + 1 + 1 + 6 + 1);
    assert_int_equal(tap_prompts_totals(t)->anomalies[TAP_PROMPT_ANOMALY_E2E], 0);
    tap_prompts_destroy(t);
}


/* Space-Saving replacement: error = the victim's count; statistics restart. */
static void
test_eviction(void **state)
{
    const tap_prompt_t  *p;
    tap_prompts_t       *t;
    tap_t_ex_t           d;
    int                  i;

    t = tap_t_table(2);
    for (i = 0; i < 3; i++) {
        d = tap_t_default(1);
        d.e2e_ms = 100;
        d.completion = 9;
        tap_t_observe(t, &d, NULL);
    }
    for (i = 0; i < 2; i++) {
        d = tap_t_default(2);
        d.e2e_ms = 300;
        d.status = 500;
        tap_t_observe(t, &d, NULL);
    }

    /* 3 replaces 2 (count 2): count 3, error 2, no statistics from 2 */
    d = tap_t_default(3);
    d.e2e_ms = 700;
    d.model = "other-model";
    p = tap_t_observe(t, &d, NULL);
    assert_null(tap_prompts_lookup(t, 2));
    assert_ptr_equal(tap_prompts_lookup(t, 3), p);
    assert_int_equal(p->count, 3);
    assert_int_equal(p->error, 2);
    assert_int_equal(p->errors, 0);
    assert_int_equal(p->e2e.n, 1);
    assert_true(p->e2e.mean == 700.0);
    assert_string_equal(p->model, "other-model");
    assert_true(p->first_seen == p->last_seen);
    assert_int_equal(tap_prompts_totals(t)->evictions, 1);

    /* ties at the minimum: the least recently updated goes */
    tap_t_hit(t, 4);                   /* 1 (3) and 3 (3): 1 is older */
    assert_null(tap_prompts_lookup(t, 1));
    assert_int_equal(tap_prompts_lookup(t, 4)->count, 4);
    assert_int_equal(tap_prompts_lookup(t, 4)->error, 3);
    tap_prompts_destroy(t);
}


static void
tap_t_json_stat(cJSON *e, const char *name, int known)
{
    cJSON   *o;

    o = tap_json_get(e, name);
    assert_true(cJSON_IsObject(o));
    if (known) {
        assert_true(cJSON_IsNumber(tap_json_get(o, "mean")));
        assert_true(cJSON_IsNumber(tap_json_get(o, "stddev")));
    } else {
        assert_true(cJSON_IsNull(tap_json_get(o, "mean")));
        assert_true(cJSON_IsNull(tap_json_get(o, "stddev")));
    }
}


static void
test_json(void **state)
{
    static const char   *fields[] = {
        "prompt_hash", "model", "count", "error_bound", "errors", "first_seen", "last_seen",
        "e2e_ms", "ttft_ms", "prompt_tokens", "output_tokens", "confidence",
        "distinct_completions", "distinct_exact",
    };
    tap_prompts_query_t  q;
    tap_prompts_conf_t   conf;
    struct evbuffer     *buf;
    tap_exchange_t       ex;
    tap_prompts_t       *t;
    tap_t_ex_t           d;
    cJSON               *root, *list, *e;
    size_t               i, len;
    char                *s, model[200];

    t = tap_t_table(8);
    for (i = 0; i < 3; i++) {
        d = tap_t_default(0x0123456789abcdefULL);
        d.model = "gpt \"4\"\n\\";
        d.e2e_ms = 100 + 10 * i;
        d.ttft_ms = 10;
        d.ptok = 12;
        d.otok = 30;
        d.completion = 5;
        d.logprob = -0.25;
        tap_t_build(&ex, &d, (int64_t) i);
        tap_prompts_observe(t, &ex, NULL);
    }
    /* a long model name with multi-byte characters: cut on a boundary */
    for (i = 0, len = 0; i < 40; i++) {
        memcpy(model + len, "\xc3\xa9", 2);
        len += 2;
    }
    model[len] = '\0';
    d = tap_t_default(2);
    d.model = model;
    tap_t_observe(t, &d, NULL);
    d = tap_t_default(3);
    d.model = "";
    d.status = 503;
    tap_t_observe(t, &d, NULL);

    buf = evbuffer_new();
    assert_non_null(buf);
    assert_int_equal(tap_prompts_parse_query(t, "by=latency&limit=50", 19, &q, NULL), TAP_OK);
    assert_int_equal(q.limit, 8);
    assert_int_equal(tap_prompts_json(t, &q, buf), TAP_OK);
    len = evbuffer_get_length(buf);
    s = (char *) evbuffer_pullup(buf, -1);
    root = tap_json_parse(s, len);
    if (root == NULL) {
        fail_msg("not JSON: %.*s", (int) len, s);
    }

    assert_string_equal(cJSON_GetStringValue(tap_json_get(root, "by")), "latency");
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(root, "limit")), 8);
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(root, "size")), 3);
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(root, "capacity")), 8);
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(root, "observations")), 5);
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(root, "evictions")), 0);
    assert_true(cJSON_IsObject(tap_json_get(root, "anomalies")));
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(tap_json_get(root, "anomalies"),
        "nondeterministic")), 0);
    list = tap_json_get(root, "prompts");
    assert_int_equal(tap_json_size(list), 3);

    for (i = 0; i < tap_json_size(list); i++) {
        e = tap_json_at(list, i);
        for (len = 0; len < TAP_NELEMS(fields); len++) {
            if (tap_json_get(e, fields[len]) == NULL) {
                fail_msg("entry %zu has no %s", i, fields[len]);
            }
        }
        assert_int_equal(strlen(cJSON_GetStringValue(tap_json_get(e, "prompt_hash"))), 16);
        assert_true(cJSON_IsBool(tap_json_get(e, "distinct_exact")));
    }

    e = tap_json_at(list, 0);
    assert_string_equal(cJSON_GetStringValue(tap_json_get(e, "prompt_hash")),
        "0123456789abcdef");
    assert_string_equal(cJSON_GetStringValue(tap_json_get(e, "model")), "gpt \"4\"\n\\");
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(e, "count")), 3);
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(e, "error_bound")), 0);
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(e, "errors")), 0);
    assert_string_equal(cJSON_GetStringValue(tap_json_get(e, "first_seen")),
        "2026-01-02T03:04:05.678Z");
    assert_true(strlen(cJSON_GetStringValue(tap_json_get(e, "last_seen"))) == 24);
    tap_t_json_stat(e, "e2e_ms", 1);
    tap_t_near(cJSON_GetNumberValue(tap_json_get(tap_json_get(e, "e2e_ms"), "mean")), 110,
        1e-9);
    tap_t_near(cJSON_GetNumberValue(tap_json_get(tap_json_get(e, "e2e_ms"), "stddev")), 10,
        1e-9);
    tap_t_json_stat(e, "ttft_ms", 1);
    tap_t_json_stat(e, "prompt_tokens", 1);
    tap_t_json_stat(e, "output_tokens", 1);
    tap_t_near(cJSON_GetNumberValue(tap_json_get(e, "confidence")), -0.25, 1e-12);
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(e, "distinct_completions")), 1);
    assert_true(cJSON_IsTrue(tap_json_get(e, "distinct_exact")));

    /* no samples: null figures; the long model cut to whole characters */
    for (i = 1; i < 3; i++) {
        e = tap_json_at(list, i);
        tap_t_json_stat(e, "e2e_ms", 0);
        tap_t_json_stat(e, "ttft_ms", 0);
        assert_true(cJSON_IsNull(tap_json_get(e, "confidence")));
        if (cJSON_GetNumberValue(tap_json_get(e, "errors")) == 1) {
            assert_true(cJSON_IsNull(tap_json_get(e, "model")));
        } else {
            s = (char *) cJSON_GetStringValue(tap_json_get(e, "model"));
            assert_int_equal(strlen(s), 62);
            assert_memory_equal(s, model, 62);
        }
    }
    cJSON_Delete(root);
    tap_prompts_destroy(t);

    /* a prefix table names its entries templates */
    tap_prompts_conf_init(&conf, TAP_PROMPTS_KEY_PREFIX);
    t = tap_prompts_create(&conf);
    assert_non_null(t);
    d = tap_t_default(0x50);
    tap_t_observe(t, &d, NULL);
    assert_non_null(tap_prompts_lookup(t, 0x5));
    evbuffer_drain(buf, evbuffer_get_length(buf));
    assert_int_equal(tap_prompts_parse_query(t, NULL, 0, &q, NULL), TAP_OK);
    assert_int_equal(tap_prompts_json(t, &q, buf), TAP_OK);
    root = tap_json_parse((char *) evbuffer_pullup(buf, -1), evbuffer_get_length(buf));
    assert_non_null(root);
    assert_string_equal(cJSON_GetStringValue(tap_json_get(root, "by")), "count");
    assert_int_equal(cJSON_GetNumberValue(tap_json_get(root, "limit")), 20);
    e = tap_json_at(tap_json_get(root, "templates"), 0);
    assert_string_equal(cJSON_GetStringValue(tap_json_get(e, "prefix_hash")),
        "0000000000000005");
    cJSON_Delete(root);
    tap_prompts_destroy(t);
    evbuffer_free(buf);
}


static void
test_query(void **state)
{
    static const struct {
        const char        *query;
        int                rc;
        tap_prompts_by_e   by;
        size_t             limit;
    } cases[] = {
        { "", TAP_OK, TAP_PROMPTS_BY_COUNT, 20 },
        { "by=count", TAP_OK, TAP_PROMPTS_BY_COUNT, 20 },
        { "by=tokens", TAP_OK, TAP_PROMPTS_BY_TOKENS, 20 },
        { "by=latency&limit=5", TAP_OK, TAP_PROMPTS_BY_LATENCY, 5 },
        { "limit=7&by=variance", TAP_OK, TAP_PROMPTS_BY_VARIANCE, 7 },
        { "by=diversity", TAP_OK, TAP_PROMPTS_BY_DIVERSITY, 20 },
        { "limit=100", TAP_OK, TAP_PROMPTS_BY_COUNT, 64 },
        { "limit=99999999999999999999999", TAP_OK, TAP_PROMPTS_BY_COUNT, 64 },
        { "limit=1", TAP_OK, TAP_PROMPTS_BY_COUNT, 1 },
        { "x=1&&by=latency&pretty", TAP_OK, TAP_PROMPTS_BY_LATENCY, 20 },
        { "by=count&by=tokens", TAP_OK, TAP_PROMPTS_BY_TOKENS, 20 },
        { "by=foo", TAP_ERROR, 0, 0 },
        { "by=", TAP_ERROR, 0, 0 },
        { "by", TAP_ERROR, 0, 0 },
        { "by=Count", TAP_ERROR, 0, 0 },
        { "by=counts", TAP_ERROR, 0, 0 },
        { "limit=0", TAP_ERROR, 0, 0 },
        { "limit=", TAP_ERROR, 0, 0 },
        { "limit", TAP_ERROR, 0, 0 },
        { "limit=-1", TAP_ERROR, 0, 0 },
        { "limit=+3", TAP_ERROR, 0, 0 },
        { "limit=5x", TAP_ERROR, 0, 0 },
        { "limit=1.5", TAP_ERROR, 0, 0 },
        { "by=count&limit=abc", TAP_ERROR, 0, 0 },
    };
    tap_prompts_query_t   q;
    tap_prompts_t        *t;
    const char           *err;
    size_t                i;

    t = tap_t_table(64);
    for (i = 0; i < TAP_NELEMS(cases); i++) {
        err = NULL;
        if (tap_prompts_parse_query(t, cases[i].query, strlen(cases[i].query), &q, &err)
            != cases[i].rc)
        {
            fail_msg("query \"%s\": not %d", cases[i].query, cases[i].rc);
        }
        if (cases[i].rc == TAP_OK) {
            assert_int_equal(q.by, cases[i].by);
            assert_int_equal(q.limit, cases[i].limit);
        } else {
            assert_non_null(err);
        }
    }

    /* the length is honoured: the bytes after it are not part of the query */
    assert_int_equal(tap_prompts_parse_query(t, "by=latency&limit=5", 10, &q, NULL), TAP_OK);
    assert_int_equal(q.by, TAP_PROMPTS_BY_LATENCY);
    assert_int_equal(q.limit, 20);
    assert_int_equal(tap_prompts_parse_query(t, "limit=5ZZ", 7, &q, NULL), TAP_OK);
    assert_int_equal(q.limit, 5);
    assert_int_equal(tap_prompts_parse_query(t, NULL, 0, &q, NULL), TAP_OK);
    tap_prompts_destroy(t);
}


/* Exchanges without the key's hash are counted apart and change nothing. */
static void
test_unkeyed(void **state)
{
    tap_prompt_anomaly_t   a;
    tap_exchange_t         ex;
    tap_prompts_t         *t;

    t = tap_t_table(4);
    tap_exchange_init(&ex);
    assert_null(tap_prompts_observe(t, &ex, &a));
    assert_int_equal(a.flags, 0);
    assert_int_equal(tap_prompts_totals(t)->unkeyed, 1);
    assert_int_equal(tap_prompts_totals(t)->observations, 0);
    assert_int_equal(tap_prompts_size(t), 0);
    tap_prompts_destroy(t);
}


/* A million distinct prompts through a default table: nothing allocated. */
static void
test_flat_memory(void **state)
{
    struct mallinfo2   before, after;
    tap_exchange_t     ex;
    tap_prompts_t     *t;
    tap_t_ex_t         d;
    size_t             bytes;
    int64_t            i, n = 1000000;

    t = tap_prompts_create(NULL);
    assert_non_null(t);
    bytes = tap_prompts_allocated(t);
    assert_int_equal(bytes, tap_prompts_bytes(TAP_PROMPTS_CAPACITY));

    before = mallinfo2();
    for (i = 0; i < n; i++) {
        d = tap_t_default(tap_t_key((uint64_t) i));
        d.e2e_ms = 10;
        d.completion = (uint64_t) i + 1;
        tap_t_build(&ex, &d, i);
        assert_non_null(tap_prompts_observe(t, &ex, NULL));
    }
    after = mallinfo2();

    assert_int_equal(tap_prompts_allocated(t), bytes);
    assert_int_equal(after.uordblks, before.uordblks);
    assert_int_equal(after.hblkhd, before.hblkhd);
    assert_int_equal(tap_prompts_size(t), TAP_PROMPTS_CAPACITY);
    assert_int_equal(tap_prompts_totals(t)->evictions, n - TAP_PROMPTS_CAPACITY);
    assert_int_equal(tap_prompts_totals(t)->observations, n);
    /* the last ones are in (count 1 + an inherited error), the first ones are not */
    assert_non_null(tap_prompts_lookup(t, tap_t_key((uint64_t) n - 1)));
    assert_null(tap_prompts_lookup(t, tap_t_key(0)));
    print_message("# %" PRId64 " distinct prompts: table stays at %zu bytes\n", n, bytes);
    tap_prompts_destroy(t);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_rank_exact),
        cmocka_unit_test(test_rank_by),
        cmocka_unit_test(test_heavy_hitters),
        cmocka_unit_test(test_welford),
        cmocka_unit_test(test_distinct),
        cmocka_unit_test(test_anomaly_resource),
        cmocka_unit_test(test_anomaly_nondet),
        cmocka_unit_test(test_eviction),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_unkeyed),
        cmocka_unit_test(test_flat_memory),
    };

    tap_json_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
