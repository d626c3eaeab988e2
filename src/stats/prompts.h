/*
 * prompts.h: the prompt table, bounded statistics per prompt hash (or per
 * prefix hash, the template), its rankings and its anomaly checks.
 *
 * A table keeps at most `capacity` entries whatever the traffic: all memory
 * is allocated by tap_prompts_create() and nothing is allocated afterwards.
 * It belongs to one thread (the control thread): nothing here takes a lock.
 *
 * Heavy hitters (Space-Saving, Metwally, Agrawal and El Abbadi, 2005).  A
 * key already in the table has its count incremented.  A new key takes a
 * free entry while there is one (count 1, error 0); once the table is full
 * it replaces the entry with the smallest count `min` (among equal counts,
 * the one updated least recently), inheriting count = min + 1 and recording
 * error = min.  The guarantee, with m = capacity entries after N keyed
 * observations:
 *   - every key whose true frequency is > N/m is in the table;
 *   - each entry's count overestimates the key's true count by at most its
 *     recorded error: true <= count <= true + error, and error <= N/m;
 *   - while no more than m distinct keys were seen, every count is exact
 *     (error 0) and the ranking by count is exact.
 * The counts of all entries add up to N, hence min <= N/m.
 *
 * Statistics restart on replacement.  Everything but count and error (first
 * and last seen, errors, the means and variances, confidence, completions,
 * the nondeterminism state) describes only the exchanges seen since the key
 * (last) entered the table; `count` alone carries the inherited estimate.
 *
 * What one exchange contributes (tap_prompts_observe()):
 *   - count, last_seen (wall clock of the request's first byte), and errors
 *     when it failed (ex->error set or status >= 500);
 *   - for an exchange that did not fail, a sample to each figure it knows:
 *     e2e latency (last_byte - t0, ms), TTFT (ms), prompt and output tokens,
 *     confidence (mean token logprob, tap_gen_confidence()), and its
 *     completion hash to the distinct completions.  Failed exchanges (cut
 *     streams, timeouts) would otherwise skew the means and count their
 *     partial completions as distinct ones.
 * Means and variances use Welford's running update; the stddev reported is
 * the sample one (n - 1 denominator, 0 below two samples).
 *
 * Distinct completions: exact up to TAP_PROMPT_EXACT (8) hashes, which are
 * stored; the ninth distinct one turns the set into a HyperLogLog of
 * TAP_PROMPT_HLL (128) one-byte registers (the 8 hashes are folded in), with
 * linear counting below 2.5 x 128.  Its relative standard error is
 * 1.04 / sqrt(128) = 9.2% (measured over 1,000 sets each of 20 to 100,000
 * distinct hashes: 7% to 10% rms); the errors have a longer tail than a
 * normal one: about 95% of estimates fall within 2 standard errors (18%)
 * and 99% within 3 (28%).  An estimate is never below 9.
 *
 * Anomalies, evaluated by tap_prompts_observe() for an exchange that did not
 * fail, against the entry's statistics BEFORE this exchange's sample is
 * added (the sample is added afterwards, flagged or not):
 *   - resource: its e2e latency, TTFT or output tokens lies more than k
 *     sample standard deviations from its prompt's running mean, once that
 *     figure has at least `min_samples` samples.  The distance must also
 *     exceed `tolerance` x |mean|, so a prompt with constant figures (stddev
 *     0) or almost constant ones is not flagged for a tiny difference.
 *   - nondeterminism: the exchange was sent with temperature 0 or with a
 *     seed, and its completion hash is a new distinct one for a prompt that
 *     already yielded another completion under such settings with the same
 *     params hash (a different max_tokens or seed legitimately changes the
 *     output, so deterministic samples whose params hash differs from the
 *     first deterministic sample's are not compared).  The exchange flagged
 *     is the one bringing the new completion.  Novelty is known only while
 *     the completions are exact (up to 8): after that nothing more is
 *     flagged for this prompt (it has been flagged before).
 * The table counts the exchanges flagged, per kind.
 *
 * Memory (64-bit): tap_prompt_t is 384 bytes; per entry the table also
 * keeps two index slots of 4 bytes (the index has a power of two of slots,
 * 2 to 4 per entry; exactly 2 for a power-of-two capacity), a heap slot
 * (4 bytes) and a ranking slot (8 bytes): 404 bytes per entry, plus a
 * 160-byte header.  Defaults: 4,096 entries (prompt table) = 1,654,944
 * bytes (1.58 MiB); 512 entries (prefix table) = 207,008 bytes (202 KiB).
 * tap_prompts_bytes() gives the exact figure for any capacity.
 */

#ifndef TAP_STATS_PROMPTS_H
#define TAP_STATS_PROMPTS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "exchange.h"

#define TAP_PROMPTS_CAPACITY         4096      /* default, prompt table */
#define TAP_PROMPTS_PREFIX_CAPACITY  512       /* default, prefix (template) table */
#define TAP_PROMPTS_MAX_CAPACITY     (1u << 24)
#define TAP_PROMPTS_K                3.0       /* default: standard deviations */
#define TAP_PROMPTS_MIN_SAMPLES      5         /* default: samples before any resource flag */
#define TAP_PROMPTS_TOLERANCE        0.01      /* default: relative to the mean */
#define TAP_PROMPTS_LIMIT            20        /* default limit of a ranking query */

#define TAP_PROMPT_MODEL             64        /* bytes of model name kept, NUL included */
#define TAP_PROMPT_EXACT             8         /* completion hashes kept exactly */
#define TAP_PROMPT_HLL_BITS          7
#define TAP_PROMPT_HLL               (1 << TAP_PROMPT_HLL_BITS)   /* HyperLogLog registers */

/* Anomaly flags (tap_prompt_anomaly_t.flags): bit i is anomaly kind i. */
#define TAP_PROMPT_ANOM_E2E          0x01      /* e2e latency */
#define TAP_PROMPT_ANOM_TTFT         0x02
#define TAP_PROMPT_ANOM_OUTPUT       0x04      /* output tokens */
#define TAP_PROMPT_ANOM_RESOURCE     0x07      /* any of the three above */
#define TAP_PROMPT_ANOM_NONDET       0x08      /* nondeterministic completion */

typedef enum {
    TAP_PROMPTS_KEY_PROMPT = 0,        /* gen.prompt_hash */
    TAP_PROMPTS_KEY_PREFIX,            /* gen.prefix_hash: template ranking */
} tap_prompts_key_e;

typedef enum {
    TAP_PROMPTS_BY_COUNT = 0,          /* count */
    TAP_PROMPTS_BY_TOKENS,             /* (mean prompt + mean output tokens) x count */
    TAP_PROMPTS_BY_LATENCY,            /* mean e2e latency */
    TAP_PROMPTS_BY_VARIANCE,           /* coefficient of variation of e2e: stddev / mean */
    TAP_PROMPTS_BY_DIVERSITY,          /* distinct completions */
    TAP_PROMPTS_BY_N,
} tap_prompts_by_e;

/* Anomaly kinds, the indexes of tap_prompts_totals_t.anomalies. */
typedef enum {
    TAP_PROMPT_ANOMALY_E2E = 0,
    TAP_PROMPT_ANOMALY_TTFT,
    TAP_PROMPT_ANOMALY_OUTPUT,
    TAP_PROMPT_ANOMALY_NONDET,
    TAP_PROMPT_ANOMALY_N,
} tap_prompt_anomaly_e;

/* The names of the rankings ("count", ...) and of the anomaly kinds ("e2e", ...). */
extern const char *const  tap_prompts_by_names[TAP_PROMPTS_BY_N];
extern const char *const  tap_prompt_anomaly_names[TAP_PROMPT_ANOMALY_N];

/* Running mean and variance (Welford). */
typedef struct tap_prompt_stat_s {
    uint64_t    n;
    double      mean;
    double      m2;                    /* sum of squared differences from the mean */
} tap_prompt_stat_t;

/* One entry.  Read-only outside prompts.c; see the top of this file for what
 * each figure covers. */
typedef struct tap_prompt_s {
    uint64_t           hash;           /* prompt or prefix hash */
    uint64_t           count;          /* Space-Saving count: true <= count <= true + error */
    uint64_t           error;          /* Space-Saving error: the count inherited on entry */
    uint64_t           errors;         /* failed exchanges since entry */
    uint64_t           seq;            /* the table's observation number at the last update */
    int64_t            first_seen;     /* wall clock ns, since entry */
    int64_t            last_seen;
    tap_prompt_stat_t  e2e;            /* ms */
    tap_prompt_stat_t  ttft;           /* ms */
    tap_prompt_stat_t  prompt_tokens;
    tap_prompt_stat_t  output_tokens;
    tap_prompt_stat_t  confidence;     /* mean token logprob; only its mean is reported */
    union {
        uint64_t       exact[TAP_PROMPT_EXACT];
        uint8_t        hll[TAP_PROMPT_HLL];
    } completions;
    uint64_t           det_params;     /* params hash of the first deterministic sample */
    uint32_t           heap;           /* position in the table's min-heap */
    uint8_t            nexact;         /* completions.exact in use */
    uint8_t            det_mask;       /* exact[i] seen under deterministic settings */
    unsigned           estimated:1;    /* completions.hll in use */
    unsigned           has_det:1;      /* det_params is set */
    char               model[TAP_PROMPT_MODEL];   /* "" unknown; cut on a UTF-8 boundary */
} tap_prompt_t;

typedef struct tap_prompts_conf_s {
    tap_prompts_key_e  key;
    size_t             capacity;       /* 1 .. TAP_PROMPTS_MAX_CAPACITY */
    double             k;              /* > 0 */
    unsigned           min_samples;    /* >= 2 */
    double             tolerance;      /* >= 0, relative */
} tap_prompts_conf_t;

typedef struct tap_prompts_totals_s {
    uint64_t    observations;          /* keyed exchanges counted (N) */
    uint64_t    unkeyed;               /* exchanges without the key's hash: not counted */
    uint64_t    evictions;             /* entries replaced */
    uint64_t    anomalies[TAP_PROMPT_ANOMALY_N];   /* exchanges flagged, per kind */
} tap_prompts_totals_t;

/* What tap_prompts_observe() found about one exchange. */
typedef struct tap_prompt_anomaly_s {
    unsigned     flags;                /* TAP_PROMPT_ANOM_*; 0: none */
    const char  *reason;               /* static: the first kind flagged ("e2e", "ttft",
                                          "output_tokens", "nondeterministic"); NULL: none */
    char         detail[160];          /* human-readable numbers for reason; "" when none */
} tap_prompt_anomaly_t;

typedef struct tap_prompts_query_s {
    tap_prompts_by_e   by;
    size_t             limit;
} tap_prompts_query_t;

typedef struct tap_prompts_s  tap_prompts_t;


/* Welford's update and read-outs; the stddev is the sample one (0 below n = 2). */
void tap_prompt_stat_add(tap_prompt_stat_t *s, double x);
double tap_prompt_stat_var(const tap_prompt_stat_t *s);
double tap_prompt_stat_stddev(const tap_prompt_stat_t *s);

/* Distinct completions of an entry: exact when *exact is set to 1, else the
 * HyperLogLog estimate (exact may be NULL). */
uint64_t tap_prompt_distinct(const tap_prompt_t *p, int *exact);

/* Fills conf with the defaults for a table keyed by `key`. */
void tap_prompts_conf_init(tap_prompts_conf_t *conf, tap_prompts_key_e key);

/*
 * Creates a table (conf NULL: the prompt-table defaults), allocating all its
 * memory.  Returns NULL when a setting is out of range or memory runs out.
 * tap_prompts_destroy(NULL) does nothing.
 */
tap_prompts_t *tap_prompts_create(const tap_prompts_conf_t *conf);
void tap_prompts_destroy(tap_prompts_t *t);

/* Bytes a table of `capacity` entries allocates, header included. */
size_t tap_prompts_bytes(size_t capacity);

/* Bytes this table allocated (for tests: it never changes after create). */
size_t tap_prompts_allocated(const tap_prompts_t *t);

size_t tap_prompts_size(const tap_prompts_t *t);        /* entries in use */
size_t tap_prompts_capacity(const tap_prompts_t *t);
const tap_prompts_totals_t *tap_prompts_totals(const tap_prompts_t *t);

/*
 * Counts one finished exchange into its entry (see the top of this file),
 * after checking it for anomalies.  anom (may be NULL) receives the result;
 * its flags are 0 when the exchange has no key hash.  Returns the entry
 * (borrowed, valid until the next observe), or NULL when the exchange has
 * no key hash (counted in totals.unkeyed).
 */
const tap_prompt_t *tap_prompts_observe(tap_prompts_t *t, const tap_exchange_t *ex,
    tap_prompt_anomaly_t *anom);

/* The entry for a hash (borrowed, valid until the next observe), or NULL. */
const tap_prompt_t *tap_prompts_lookup(const tap_prompts_t *t, uint64_t hash);

/*
 * Writes to out[0..limit) the `limit` best entries by `by`, best first, and
 * returns how many it wrote (min(limit, size)).  Ties go to the larger
 * count, then to the smaller hash, so the order is deterministic.  Entries
 * without the ranked figure (no e2e sample, no token count) come after all
 * that have it.  Pointers are borrowed, valid until the next observe.
 * Costs O(size log limit) and no allocation.
 */
size_t tap_prompts_rank(const tap_prompts_t *t, tap_prompts_by_e by, size_t limit,
    const tap_prompt_t **out);

/*
 * Parses the query string of GET /stats/prompts ("by=latency&limit=5",
 * without the '?'; NULL or "" for the defaults) into q: by defaults to
 * count, limit to TAP_PROMPTS_LIMIT; limit must be a decimal integer >= 1,
 * and is capped at the table's capacity.  Other parameters are ignored.
 * Returns TAP_OK, or TAP_ERROR for an unknown `by` or a bad limit, with
 * *err (may be NULL) set to a static message for the 400 response.
 */
int tap_prompts_parse_query(const tap_prompts_t *t, const char *query, size_t len,
    tap_prompts_query_t *q, const char **err);

/*
 * Appends the ranking q as one JSON object to out:
 *   {"by":"count","limit":20,"size":..,"capacity":..,"observations":..,
 *    "unkeyed":..,"evictions":..,"anomalies":{"e2e":..,"ttft":..,
 *    "output_tokens":..,"nondeterministic":..},
 *    "prompts":[{"prompt_hash":"16 hex","model":..,"count":..,
 *      "error_bound":..,"errors":..,"first_seen":"RFC 3339 UTC, ms",
 *      "last_seen":..,"e2e_ms":{"mean":..,"stddev":..},"ttft_ms":{..},
 *      "prompt_tokens":{..},"output_tokens":{..},"confidence":mean|null,
 *      "distinct_completions":..,"distinct_exact":bool}, ...]}
 * A prefix table writes "templates" and "prefix_hash" instead.  A mean
 * without samples is null (and its stddev too), a model "" is null.
 * Returns TAP_OK, or TAP_ERROR when the buffer cannot grow.
 */
int tap_prompts_json(const tap_prompts_t *t, const tap_prompts_query_t *q,
    struct evbuffer *out);

#endif /* TAP_STATS_PROMPTS_H */
