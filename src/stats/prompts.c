/*
 * prompts.c: the prompt table (prompts.h): Space-Saving heavy hitters keyed
 * by prompt or prefix hash, with running statistics per entry, rankings,
 * anomaly checks and the JSON of GET /stats/prompts.
 *
 * Storage.  One array of `capacity` entries, allocated at create and never
 * grown; entries [0, size) are in use, and a full table recycles entries in
 * place.  Three index structures over it, also allocated at create:
 *   - an open-addressing index (linear probing, a power of two of slots at
 *     least twice the capacity, so at most half full) of entry numbers, the
 *     home slot taken from the high bits of hash x 2^64/phi; removal shifts
 *     the following slots back (no tombstones), so a lookup stays O(1)
 *     expected whatever the churn;
 *   - a binary min-heap of entry numbers ordered by (count, seq), each entry
 *     knowing its position: the eviction victim is the root, found in O(1),
 *     and an update re-sifts one entry in O(log m).  seq (the observation
 *     number of the last update) breaks ties, so among the smallest counts
 *     the least recently updated goes first, and the order never depends on
 *     memory layout;
 *   - a ranking scratch array of entry pointers for the JSON writer.
 * tap_prompts_rank() selects with a bounded heap in the caller's array
 * (O(size log limit)), then sorts it in place: no allocation.
 *
 * Distinct completions.  The HyperLogLog registers share their bytes with
 * the exact hashes (a union): the ninth distinct hash folds the eight into
 * the registers.  Hashes are remixed (splitmix64's finalizer) before use,
 * so even a poor completion hash spreads over the registers.
 */

#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>

#include "tap_core.h"
#include "stats/prompts.h"

#define TAP_PROMPTS_EMPTY     UINT32_MAX       /* a free index slot */
#define TAP_PROMPTS_PHI       UINT64_C(0x9e3779b97f4a7c15)
#define TAP_PROMPT_NEW_EST    (-2)             /* this hash made the set an estimate */
#define TAP_PROMPT_EST        (-1)             /* estimated: novelty unknown */

struct tap_prompts_s {
    tap_prompts_conf_t     conf;
    tap_prompt_t          *entries;
    size_t                 size;
    uint32_t              *index;
    unsigned               index_bits;
    size_t                 index_mask;
    uint32_t              *heap;               /* entry numbers, min (count, seq) at 0 */
    const tap_prompt_t   **scratch;            /* capacity pointers, for the JSON writer */
    size_t                 allocated;          /* bytes, everything above */
    tap_prompts_totals_t   totals;
};

/* A ranking key: entries with `has` rank before those without. */
typedef struct tap_prompts_key_s {
    int         has;
    double      value;
} tap_prompts_key_t;

/* A JSON writer that remembers a failed append. */
typedef struct tap_pjw_s {
    struct evbuffer  *out;
    int               failed;
} tap_pjw_t;


static void tap_pjw_printf(tap_pjw_t *w, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));


const char *const  tap_prompts_by_names[TAP_PROMPTS_BY_N] = {
    "count", "tokens", "latency", "variance", "diversity",
};

const char *const  tap_prompt_anomaly_names[TAP_PROMPT_ANOMALY_N] = {
    "e2e", "ttft", "output_tokens", "nondeterministic",
};


/*
 * Running statistics
 */

void
tap_prompt_stat_add(tap_prompt_stat_t *s, double x)
{
    double  d;

    s->n++;
    d = x - s->mean;
    s->mean += d / (double) s->n;
    s->m2 += d * (x - s->mean);
}


double
tap_prompt_stat_var(const tap_prompt_stat_t *s)
{
    if (s->n < 2) {
        return 0.0;
    }
    return s->m2 > 0.0 ? s->m2 / (double) (s->n - 1) : 0.0;
}


double
tap_prompt_stat_stddev(const tap_prompt_stat_t *s)
{
    return sqrt(tap_prompt_stat_var(s));
}


/*
 * Distinct completions
 */

static uint64_t
tap_prompt_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}


static void
tap_prompt_hll_add(uint8_t *reg, uint64_t hash)
{
    uint64_t  x, w;
    unsigned  j;
    uint8_t   rank;

    x = tap_prompt_mix(hash);
    j = (unsigned) (x >> (64 - TAP_PROMPT_HLL_BITS));
    /* the guard bit bounds the rank at 64 - bits + 1 */
    w = (x << TAP_PROMPT_HLL_BITS) | (UINT64_C(1) << (TAP_PROMPT_HLL_BITS - 1));
    rank = (uint8_t) (__builtin_clzll(w) + 1);
    if (rank > reg[j]) {
        reg[j] = rank;
    }
}


/* The HyperLogLog estimate, with linear counting in the small range. */
static double
tap_prompt_hll_estimate(const uint8_t *reg)
{
    double    m, sum, e;
    unsigned  j, zeros;

    m = TAP_PROMPT_HLL;
    sum = 0.0;
    zeros = 0;
    for (j = 0; j < TAP_PROMPT_HLL; j++) {
        sum += ldexp(1.0, -(int) reg[j]);
        zeros += reg[j] == 0;
    }

    e = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
    if (e <= 2.5 * m && zeros > 0) {
        e = m * log(m / (double) zeros);
    }
    return e;
}


uint64_t
tap_prompt_distinct(const tap_prompt_t *p, int *exact)
{
    double  e;

    if (exact != NULL) {
        *exact = !p->estimated;
    }
    if (!p->estimated) {
        return p->nexact;
    }

    /* more than TAP_PROMPT_EXACT were seen for sure */
    e = round(tap_prompt_hll_estimate(p->completions.hll));
    return e > TAP_PROMPT_EXACT ? (uint64_t) e : TAP_PROMPT_EXACT + 1;
}


/*
 * Adds a completion hash to p's set.  Returns its position in the exact
 * set, TAP_PROMPT_NEW_EST when it was the ninth distinct one (the set is an
 * estimate now), or TAP_PROMPT_EST when the set was an estimate already.
 */
static int
tap_prompt_completion_add(tap_prompt_t *p, uint64_t hash)
{
    uint64_t  exact[TAP_PROMPT_EXACT];
    unsigned  i;

    if (p->estimated) {
        tap_prompt_hll_add(p->completions.hll, hash);
        return TAP_PROMPT_EST;
    }

    for (i = 0; i < p->nexact; i++) {
        if (p->completions.exact[i] == hash) {
            return (int) i;
        }
    }

    if (p->nexact < TAP_PROMPT_EXACT) {
        p->completions.exact[p->nexact] = hash;
        return (int) p->nexact++;
    }

    memcpy(exact, p->completions.exact, sizeof(exact));
    memset(p->completions.hll, 0, sizeof(p->completions.hll));
    for (i = 0; i < TAP_PROMPT_EXACT; i++) {
        tap_prompt_hll_add(p->completions.hll, exact[i]);
    }
    tap_prompt_hll_add(p->completions.hll, hash);
    p->estimated = 1;
    p->nexact = 0;
    return TAP_PROMPT_NEW_EST;
}


/*
 * The index
 */

static size_t
tap_prompts_home(const tap_prompts_t *t, uint64_t hash)
{
    return (size_t) ((hash * TAP_PROMPTS_PHI) >> (64 - t->index_bits));
}


/* The slot holding hash, or the free slot where it would go. */
static size_t
tap_prompts_find(const tap_prompts_t *t, uint64_t hash)
{
    size_t  i;

    for (i = tap_prompts_home(t, hash); t->index[i] != TAP_PROMPTS_EMPTY;
         i = (i + 1) & t->index_mask)
    {
        if (t->entries[t->index[i]].hash == hash) {
            break;
        }
    }
    return i;
}


/* Empties slot i and shifts back the slots after it that would no longer
 * be reachable from their home slot (Knuth's algorithm R). */
static void
tap_prompts_index_remove(tap_prompts_t *t, size_t i)
{
    size_t  j, k;

    for ( ;; ) {
        t->index[i] = TAP_PROMPTS_EMPTY;
        j = i;
        for ( ;; ) {
            j = (j + 1) & t->index_mask;
            if (t->index[j] == TAP_PROMPTS_EMPTY) {
                return;
            }
            k = tap_prompts_home(t, t->entries[t->index[j]].hash);
            /* stays when its home is cyclically in (i, j] */
            if (i <= j ? (i < k && k <= j) : (i < k || k <= j)) {
                continue;
            }
            break;
        }
        t->index[i] = t->index[j];
        i = j;
    }
}


/*
 * The heap
 */

static int
tap_prompts_heap_less(const tap_prompts_t *t, uint32_t a, uint32_t b)
{
    const tap_prompt_t  *pa = &t->entries[a], *pb = &t->entries[b];

    return pa->count < pb->count || (pa->count == pb->count && pa->seq < pb->seq);
}


static void
tap_prompts_heap_set(tap_prompts_t *t, size_t pos, uint32_t e)
{
    t->heap[pos] = e;
    t->entries[e].heap = (uint32_t) pos;
}


/* Restores the heap order around pos after its entry's key changed. */
static void
tap_prompts_heap_fix(tap_prompts_t *t, size_t pos)
{
    uint32_t  e;
    size_t    parent, child;

    e = t->heap[pos];
    while (pos > 0) {
        parent = (pos - 1) / 2;
        if (!tap_prompts_heap_less(t, e, t->heap[parent])) {
            break;
        }
        tap_prompts_heap_set(t, pos, t->heap[parent]);
        pos = parent;
    }

    for ( ;; ) {
        child = 2 * pos + 1;
        if (child >= t->size) {
            break;
        }
        if (child + 1 < t->size && tap_prompts_heap_less(t, t->heap[child + 1], t->heap[child])) {
            child++;
        }
        if (!tap_prompts_heap_less(t, t->heap[child], e)) {
            break;
        }
        tap_prompts_heap_set(t, pos, t->heap[child]);
        pos = child;
    }
    tap_prompts_heap_set(t, pos, e);
}


/*
 * The table
 */

void
tap_prompts_conf_init(tap_prompts_conf_t *conf, tap_prompts_key_e key)
{
    conf->key = key;
    conf->capacity = key == TAP_PROMPTS_KEY_PREFIX ? TAP_PROMPTS_PREFIX_CAPACITY
                                                   : TAP_PROMPTS_CAPACITY;
    conf->k = TAP_PROMPTS_K;
    conf->min_samples = TAP_PROMPTS_MIN_SAMPLES;
    conf->tolerance = TAP_PROMPTS_TOLERANCE;
}


static unsigned
tap_prompts_index_bits(size_t capacity)
{
    unsigned  bits = 1;

    while (((size_t) 1 << bits) < 2 * capacity) {
        bits++;
    }
    return bits;
}


size_t
tap_prompts_bytes(size_t capacity)
{
    return sizeof(tap_prompts_t) + capacity * sizeof(tap_prompt_t)
           + ((size_t) 1 << tap_prompts_index_bits(capacity)) * sizeof(uint32_t)
           + capacity * sizeof(uint32_t) + capacity * sizeof(tap_prompt_t *);
}


tap_prompts_t *
tap_prompts_create(const tap_prompts_conf_t *conf)
{
    tap_prompts_conf_t   def;
    tap_prompts_t       *t;
    size_t               nslots;

    if (conf == NULL) {
        tap_prompts_conf_init(&def, TAP_PROMPTS_KEY_PROMPT);
        conf = &def;
    }
    if ((conf->key != TAP_PROMPTS_KEY_PROMPT && conf->key != TAP_PROMPTS_KEY_PREFIX)
        || conf->capacity < 1 || conf->capacity > TAP_PROMPTS_MAX_CAPACITY
        || !(conf->k > 0.0) || !isfinite(conf->k) || conf->min_samples < 2
        || !(conf->tolerance >= 0.0) || !isfinite(conf->tolerance))
    {
        return NULL;
    }

    t = calloc(1, sizeof(*t));
    if (t == NULL) {
        return NULL;
    }
    t->conf = *conf;
    t->index_bits = tap_prompts_index_bits(conf->capacity);
    nslots = (size_t) 1 << t->index_bits;
    t->index_mask = nslots - 1;

    t->entries = calloc(conf->capacity, sizeof(tap_prompt_t));
    t->index = malloc(nslots * sizeof(uint32_t));
    t->heap = malloc(conf->capacity * sizeof(uint32_t));
    t->scratch = malloc(conf->capacity * sizeof(tap_prompt_t *));
    if (t->entries == NULL || t->index == NULL || t->heap == NULL || t->scratch == NULL) {
        goto failed;
    }
    memset(t->index, 0xff, nslots * sizeof(uint32_t));     /* TAP_PROMPTS_EMPTY */
    t->allocated = tap_prompts_bytes(conf->capacity);

    return t;

failed:

    tap_prompts_destroy(t);
    return NULL;
}


void
tap_prompts_destroy(tap_prompts_t *t)
{
    if (t == NULL) {
        return;
    }
    free(t->entries);
    free(t->index);
    free(t->heap);
    free(t->scratch);
    free(t);
}


size_t
tap_prompts_allocated(const tap_prompts_t *t)
{
    return t->allocated;
}


size_t
tap_prompts_size(const tap_prompts_t *t)
{
    return t->size;
}


size_t
tap_prompts_capacity(const tap_prompts_t *t)
{
    return t->conf.capacity;
}


const tap_prompts_totals_t *
tap_prompts_totals(const tap_prompts_t *t)
{
    return &t->totals;
}


const tap_prompt_t *
tap_prompts_lookup(const tap_prompts_t *t, uint64_t hash)
{
    size_t  i;

    i = tap_prompts_find(t, hash);
    return t->index[i] == TAP_PROMPTS_EMPTY ? NULL : &t->entries[t->index[i]];
}


/*
 * Copies a model name into dst[TAP_PROMPT_MODEL], cut on a character
 * boundary; bytes that are not UTF-8 become '?', so the JSON stays valid.
 */
static void
tap_prompt_copy_model(char *dst, const char *src)
{
    const unsigned char  *s = (const unsigned char *) src;
    size_t                i, o, n, k;
    unsigned char         c;

    i = 0;
    o = 0;
    while (s[i] != '\0') {
        c = s[i];
        n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
            : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        for (k = 1; k < n; k++) {
            if ((s[i + k] & 0xc0) != 0x80) {
                n = 0;                                   /* cut short (NUL included) */
                break;
            }
        }
        /* overlong 3- and 4-byte forms, surrogates, beyond U+10FFFF */
        if ((n == 3 && ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f)))
            || (n == 4 && ((c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f))))
        {
            n = 0;
        }
        if (o + (n == 0 ? 1 : n) > TAP_PROMPT_MODEL - 1) {
            break;
        }
        if (n == 0) {
            dst[o++] = '?';
            i++;
            continue;
        }
        memcpy(dst + o, s + i, n);
        o += n;
        i += n;
    }
    dst[o] = '\0';
}


/*
 * Returns the entry for hash, taking a free one or replacing the one with
 * the smallest count.  A new entry has its statistics cleared, count = the
 * count inherited (0 or the victim's) and error = the same; the caller
 * increments the count and re-sifts the heap.
 */
static tap_prompt_t *
tap_prompts_enter(tap_prompts_t *t, uint64_t hash, size_t slot, const tap_exchange_t *ex)
{
    tap_prompt_t  *p;
    uint32_t       e, pos;
    uint64_t       min;

    if (t->size < t->conf.capacity) {
        e = (uint32_t) t->size++;
        pos = e;
        min = 0;
        t->heap[pos] = e;
    } else {
        e = t->heap[0];
        pos = 0;
        min = t->entries[e].count;
        tap_prompts_index_remove(t, tap_prompts_find(t, t->entries[e].hash));
        slot = tap_prompts_find(t, hash);                /* the removal may move it */
        t->totals.evictions++;
    }

    p = &t->entries[e];
    memset(p, 0, sizeof(*p));
    p->hash = hash;
    p->count = min;
    p->error = min;
    p->heap = pos;
    p->first_seen = ex->wall_t0_ns;
    tap_prompt_copy_model(p->model, ex->gen.model);
    t->index[slot] = e;
    return p;
}


/*
 * Flags x for one resource figure when the entry has enough samples of it
 * and x lies further than k stddevs and than tolerance x |mean| from the
 * mean (the statistics before x is added).
 */
static void
tap_prompts_check(const tap_prompts_t *t, const tap_prompt_stat_t *s, double x,
    tap_prompt_anomaly_e kind, tap_prompt_anomaly_t *anom)
{
    double  sd, dev;

    if (s->n < t->conf.min_samples) {
        return;
    }
    sd = tap_prompt_stat_stddev(s);
    dev = fabs(x - s->mean);
    if (!(dev > t->conf.k * sd) || !(dev > t->conf.tolerance * fabs(s->mean))) {
        return;
    }

    if (anom->flags == 0) {
        anom->reason = tap_prompt_anomaly_names[kind];
        snprintf(anom->detail, sizeof(anom->detail),
            "%s %.6g is %.3g stddev from the mean %.6g (stddev %.6g, %" PRIu64 " samples)",
            tap_prompt_anomaly_names[kind], x, sd > 0.0 ? dev / sd : INFINITY, s->mean, sd,
            s->n);
    }
    anom->flags |= 1u << kind;                           /* TAP_PROMPT_ANOM_* */
}


const tap_prompt_t *
tap_prompts_observe(tap_prompts_t *t, const tap_exchange_t *ex, tap_prompt_anomaly_t *anom)
{
    tap_prompt_anomaly_t   none;
    tap_prompt_t          *p;
    const tap_gen_t       *g = &ex->gen;
    uint64_t               hash, params;
    size_t                 slot, i;
    double                 e2e, conf;
    int                    failed, has_e2e, has_conf, det, pos;

    if (anom == NULL) {
        anom = &none;
    }
    anom->flags = 0;
    anom->reason = NULL;
    anom->detail[0] = '\0';

    if (t->conf.key == TAP_PROMPTS_KEY_PROMPT ? !g->has_prompt_hash : !g->has_prefix_hash) {
        t->totals.unkeyed++;
        return NULL;
    }
    hash = t->conf.key == TAP_PROMPTS_KEY_PROMPT ? g->prompt_hash : g->prefix_hash;

    t->totals.observations++;
    slot = tap_prompts_find(t, hash);
    if (t->index[slot] != TAP_PROMPTS_EMPTY) {
        p = &t->entries[t->index[slot]];
    } else {
        p = tap_prompts_enter(t, hash, slot, ex);
    }

    p->count++;
    p->seq = t->totals.observations;
    p->last_seen = ex->wall_t0_ns;
    tap_prompts_heap_fix(t, p->heap);

    failed = ex->error != NULL || ex->status >= 500;
    if (failed) {
        p->errors++;
        return p;
    }

    has_e2e = ex->t0 > 0 && ex->last_byte >= ex->t0;
    e2e = has_e2e ? (double) (ex->last_byte - ex->t0) / 1e6 : 0.0;
    has_conf = tap_gen_confidence(g, &conf, NULL, NULL) && isfinite(conf);

    /* resource anomalies, against the statistics before this sample */
    if (has_e2e) {
        tap_prompts_check(t, &p->e2e, e2e, TAP_PROMPT_ANOMALY_E2E, anom);
    }
    if (ex->ttft_ms >= 0.0 && isfinite(ex->ttft_ms)) {
        tap_prompts_check(t, &p->ttft, ex->ttft_ms, TAP_PROMPT_ANOMALY_TTFT, anom);
    }
    if (g->completion_tokens >= 0) {
        tap_prompts_check(t, &p->output_tokens, (double) g->completion_tokens,
            TAP_PROMPT_ANOMALY_OUTPUT, anom);
    }

    if (has_e2e) {
        tap_prompt_stat_add(&p->e2e, e2e);
    }
    if (ex->ttft_ms >= 0.0 && isfinite(ex->ttft_ms)) {
        tap_prompt_stat_add(&p->ttft, ex->ttft_ms);
    }
    if (g->prompt_tokens >= 0) {
        tap_prompt_stat_add(&p->prompt_tokens, (double) g->prompt_tokens);
    }
    if (g->completion_tokens >= 0) {
        tap_prompt_stat_add(&p->output_tokens, (double) g->completion_tokens);
    }
    if (has_conf) {
        tap_prompt_stat_add(&p->confidence, conf);
    }

    /* completions, and nondeterminism among comparable deterministic samples */
    if (g->has_completion_hash) {
        det = g->temperature == 0.0 || g->seed != TAP_GEN_UNSET;
        params = g->has_params_hash ? g->params_hash : 0;
        if (det && !p->has_det) {
            p->has_det = 1;
            p->det_params = params;
        }
        det = det && p->det_params == params;

        pos = tap_prompt_completion_add(p, g->completion_hash);
        if (det && pos >= 0) {
            if (p->det_mask != 0 && !(p->det_mask & (1u << pos))) {
                anom->flags |= TAP_PROMPT_ANOM_NONDET;
            }
            p->det_mask |= (uint8_t) (1u << pos);
        } else if (det && pos == TAP_PROMPT_NEW_EST && p->det_mask != 0) {
            /* the ninth distinct one: new for sure */
            anom->flags |= TAP_PROMPT_ANOM_NONDET;
        }
        if (p->estimated) {
            p->det_mask = 0;                             /* novelty is unknown from now on */
        }
        if ((anom->flags & TAP_PROMPT_ANOM_NONDET) && anom->reason == NULL) {
            anom->reason = tap_prompt_anomaly_names[TAP_PROMPT_ANOMALY_NONDET];
            snprintf(anom->detail, sizeof(anom->detail),
                "completion %016" PRIx64 " differs from earlier ones under temperature 0"
                " or a seed (%" PRIu64 " distinct)",
                g->completion_hash, tap_prompt_distinct(p, NULL));
        }
    }

    for (i = 0; i < TAP_PROMPT_ANOMALY_N; i++) {
        if (anom->flags & (1u << i)) {
            t->totals.anomalies[i]++;
        }
    }
    return p;
}


/*
 * Rankings
 */

static tap_prompts_key_t
tap_prompts_key(const tap_prompt_t *p, tap_prompts_by_e by)
{
    tap_prompts_key_t  k = { 1, 0.0 };

    switch (by) {
    case TAP_PROMPTS_BY_COUNT:
        k.value = (double) p->count;
        break;
    case TAP_PROMPTS_BY_TOKENS:
        k.has = p->prompt_tokens.n > 0 || p->output_tokens.n > 0;
        k.value = ((p->prompt_tokens.n > 0 ? p->prompt_tokens.mean : 0.0)
                   + (p->output_tokens.n > 0 ? p->output_tokens.mean : 0.0))
                  * (double) p->count;
        break;
    case TAP_PROMPTS_BY_LATENCY:
        k.has = p->e2e.n > 0;
        k.value = p->e2e.mean;
        break;
    case TAP_PROMPTS_BY_VARIANCE:
        k.has = p->e2e.n >= 2 && p->e2e.mean > 0.0;
        k.value = k.has ? tap_prompt_stat_stddev(&p->e2e) / p->e2e.mean : 0.0;
        break;
    case TAP_PROMPTS_BY_DIVERSITY:
        k.value = (double) tap_prompt_distinct(p, NULL);
        break;
    default:
        k.has = 0;
        break;
    }
    return k;
}


/* Whether a ranks before b. */
static int
tap_prompts_better(const tap_prompt_t *a, const tap_prompt_t *b, tap_prompts_by_e by)
{
    tap_prompts_key_t  ka, kb;

    ka = tap_prompts_key(a, by);
    kb = tap_prompts_key(b, by);
    if (ka.has != kb.has) {
        return ka.has > kb.has;
    }
    if (ka.has && ka.value != kb.value) {
        return ka.value > kb.value;
    }
    if (a->count != b->count) {
        return a->count > b->count;
    }
    return a->hash < b->hash;
}


/* Sifts h[pos] down a heap of n whose root is the entry that ranks last. */
static void
tap_prompts_rank_down(const tap_prompt_t **h, size_t n, size_t pos, tap_prompts_by_e by)
{
    const tap_prompt_t  *e;
    size_t               child;

    e = h[pos];
    for ( ;; ) {
        child = 2 * pos + 1;
        if (child >= n) {
            break;
        }
        if (child + 1 < n && tap_prompts_better(h[child], h[child + 1], by)) {
            child++;
        }
        if (!tap_prompts_better(e, h[child], by)) {
            break;
        }
        h[pos] = h[child];
        pos = child;
    }
    h[pos] = e;
}


size_t
tap_prompts_rank(const tap_prompts_t *t, tap_prompts_by_e by, size_t limit,
    const tap_prompt_t **out)
{
    const tap_prompt_t  *p, *tmp;
    size_t               i, n, pos, parent;

    n = 0;
    for (i = 0; i < t->size && limit > 0; i++) {
        p = &t->entries[i];
        if (n < limit) {
            /* sift up: the root must rank last */
            pos = n++;
            while (pos > 0) {
                parent = (pos - 1) / 2;
                if (!tap_prompts_better(out[parent], p, by)) {
                    break;
                }
                out[pos] = out[parent];
                pos = parent;
            }
            out[pos] = p;
        } else if (tap_prompts_better(p, out[0], by)) {
            out[0] = p;
            tap_prompts_rank_down(out, n, 0, by);
        }
    }

    /* heap sort: the last-ranked goes to the end each time */
    for (i = n; i > 1; i--) {
        tmp = out[0];
        out[0] = out[i - 1];
        out[i - 1] = tmp;
        tap_prompts_rank_down(out, i - 1, 0, by);
    }
    return n;
}


int
tap_prompts_parse_query(const tap_prompts_t *t, const char *query, size_t len,
    tap_prompts_query_t *q, const char **err)
{
    const char  *p, *end, *amp, *eq, *v, *msg;
    size_t       klen, vlen, i;
    uint64_t     limit;
    unsigned     b;

    q->by = TAP_PROMPTS_BY_COUNT;
    q->limit = TAP_PROMPTS_LIMIT;
    msg = NULL;

    p = query;
    end = query == NULL ? NULL : query + len;
    while (p != NULL && p < end) {
        amp = memchr(p, '&', (size_t) (end - p));
        if (amp == NULL) {
            amp = end;
        }
        eq = memchr(p, '=', (size_t) (amp - p));
        klen = (size_t) ((eq != NULL ? eq : amp) - p);
        v = eq != NULL ? eq + 1 : NULL;
        vlen = v != NULL ? (size_t) (amp - v) : 0;

        if (klen == 2 && memcmp(p, "by", 2) == 0) {
            for (b = 0; b < TAP_PROMPTS_BY_N; b++) {
                if (v != NULL && strlen(tap_prompts_by_names[b]) == vlen
                    && memcmp(v, tap_prompts_by_names[b], vlen) == 0)
                {
                    break;
                }
            }
            if (b == TAP_PROMPTS_BY_N) {
                msg = "unknown 'by': expected count, tokens, latency, variance or diversity";
                goto failed;
            }
            q->by = (tap_prompts_by_e) b;

        } else if (klen == 5 && memcmp(p, "limit", 5) == 0) {
            limit = 0;
            for (i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9') {
                    break;
                }
                limit = limit > UINT32_MAX ? limit : limit * 10 + (uint64_t) (v[i] - '0');
            }
            if (v == NULL || vlen == 0 || i < vlen || limit == 0) {
                msg = "bad 'limit': expected an integer >= 1";
                goto failed;
            }
            q->limit = (size_t) TAP_MIN(limit, (uint64_t) t->conf.capacity);
        }

        p = amp + 1;
    }

    q->limit = TAP_MIN(q->limit, t->conf.capacity);
    return TAP_OK;

failed:

    if (err != NULL) {
        *err = msg;
    }
    return TAP_ERROR;
}


/*
 * JSON
 */

static void
tap_pjw_printf(tap_pjw_t *w, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    if (evbuffer_add_vprintf(w->out, fmt, ap) < 0) {
        w->failed = 1;
    }
    va_end(ap);
}


static void
tap_pjw_lit(tap_pjw_t *w, const char *s)
{
    if (evbuffer_add(w->out, s, strlen(s)) != 0) {
        w->failed = 1;
    }
}


/* A number, or null when it is not finite. */
static void
tap_pjw_double(tap_pjw_t *w, double v)
{
    if (isfinite(v)) {
        tap_pjw_printf(w, "%.10g", v);
    } else {
        tap_pjw_lit(w, "null");
    }
}


/* A string that is valid UTF-8 (the models are copied so). */
static void
tap_pjw_str(tap_pjw_t *w, const char *s)
{
    unsigned char  c;
    size_t         i, run;

    tap_pjw_lit(w, "\"");
    run = 0;
    for (i = 0; s[i] != '\0'; i++) {
        c = (unsigned char) s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            continue;
        }
        if (i > run && evbuffer_add(w->out, s + run, i - run) != 0) {
            w->failed = 1;
        }
        tap_pjw_printf(w, "\\u%04x", c);
        run = i + 1;
    }
    if (i > run && evbuffer_add(w->out, s + run, i - run) != 0) {
        w->failed = 1;
    }
    tap_pjw_lit(w, "\"");
}


/* "2026-01-02T03:04:05.678Z", or null for an unknown (0) time. */
static void
tap_pjw_time(tap_pjw_t *w, int64_t ns)
{
    struct tm  tm;
    time_t     sec;
    int64_t    ms;

    ms = ns / 1000000;
    if (ns <= 0) {
        tap_pjw_lit(w, "null");
        return;
    }
    sec = (time_t) (ms / 1000);
    if (gmtime_r(&sec, &tm) == NULL) {
        tap_pjw_lit(w, "null");
        return;
    }
    tap_pjw_printf(w, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900,
        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}


/* "name":{"mean":..,"stddev":..} */
static void
tap_pjw_stat(tap_pjw_t *w, const char *name, const tap_prompt_stat_t *s)
{
    tap_pjw_printf(w, ",\"%s\":{\"mean\":", name);
    if (s->n == 0) {
        tap_pjw_lit(w, "null,\"stddev\":null}");
        return;
    }
    tap_pjw_double(w, s->mean);
    tap_pjw_lit(w, ",\"stddev\":");
    tap_pjw_double(w, tap_prompt_stat_stddev(s));
    tap_pjw_lit(w, "}");
}


static void
tap_pjw_entry(tap_pjw_t *w, const tap_prompt_t *p, const char *hash_name)
{
    uint64_t  distinct;
    int       exact;

    tap_pjw_printf(w, "{\"%s\":\"%016" PRIx64 "\",\"model\":", hash_name, p->hash);
    if (p->model[0] == '\0') {
        tap_pjw_lit(w, "null");
    } else {
        tap_pjw_str(w, p->model);
    }
    tap_pjw_printf(w, ",\"count\":%" PRIu64 ",\"error_bound\":%" PRIu64 ",\"errors\":%" PRIu64,
        p->count, p->error, p->errors);
    tap_pjw_lit(w, ",\"first_seen\":");
    tap_pjw_time(w, p->first_seen);
    tap_pjw_lit(w, ",\"last_seen\":");
    tap_pjw_time(w, p->last_seen);
    tap_pjw_stat(w, "e2e_ms", &p->e2e);
    tap_pjw_stat(w, "ttft_ms", &p->ttft);
    tap_pjw_stat(w, "prompt_tokens", &p->prompt_tokens);
    tap_pjw_stat(w, "output_tokens", &p->output_tokens);
    tap_pjw_lit(w, ",\"confidence\":");
    if (p->confidence.n == 0) {
        tap_pjw_lit(w, "null");
    } else {
        tap_pjw_double(w, p->confidence.mean);
    }
    distinct = tap_prompt_distinct(p, &exact);
    tap_pjw_printf(w, ",\"distinct_completions\":%" PRIu64 ",\"distinct_exact\":%s}", distinct,
        exact ? "true" : "false");
}


int
tap_prompts_json(const tap_prompts_t *t, const tap_prompts_query_t *q, struct evbuffer *out)
{
    tap_pjw_t    w = { out, 0 };
    size_t       n, i, limit;
    int          prefix;

    prefix = t->conf.key == TAP_PROMPTS_KEY_PREFIX;
    limit = TAP_MIN(q->limit, t->conf.capacity);
    n = q->by < TAP_PROMPTS_BY_N ? tap_prompts_rank(t, q->by, limit, t->scratch) : 0;

    tap_pjw_printf(&w,
        "{\"by\":\"%s\",\"limit\":%zu,\"size\":%zu,\"capacity\":%zu,\"observations\":%" PRIu64
        ",\"unkeyed\":%" PRIu64 ",\"evictions\":%" PRIu64 ",\"anomalies\":{",
        q->by < TAP_PROMPTS_BY_N ? tap_prompts_by_names[q->by] : "", limit, t->size,
        t->conf.capacity, t->totals.observations, t->totals.unkeyed, t->totals.evictions);
    for (i = 0; i < TAP_PROMPT_ANOMALY_N; i++) {
        tap_pjw_printf(&w, "%s\"%s\":%" PRIu64, i > 0 ? "," : "", tap_prompt_anomaly_names[i],
            t->totals.anomalies[i]);
    }
    tap_pjw_printf(&w, "},\"%s\":[", prefix ? "templates" : "prompts");
    for (i = 0; i < n; i++) {
        if (i > 0) {
            tap_pjw_lit(&w, ",");
        }
        tap_pjw_entry(&w, t->scratch[i], prefix ? "prefix_hash" : "prompt_hash");
    }
    tap_pjw_lit(&w, "]}");

    return w.failed ? TAP_ERROR : TAP_OK;
}
