/*
 * series.h: latency percentiles per series, recorded by the workers.
 *
 * A series is one (model, upstream, route, status class) combination; for
 * each it keeps five windowed histograms (hist.h): end to end, TTFT, TPOT,
 * upstream time and proxy overhead.  Each worker owns a tap_lstats_t and
 * records into it without a lock; the control thread reads every worker's
 * series at once (/stats), merging the shards of equal keys.
 *
 * Bounds: a worker keeps at most `capacity` series; an exchange whose key
 * does not fit is recorded in one catch-all series whose fields all read
 * "other" (and counted).  The series array is allocated at init but only
 * touched as series appear; a series holds 5 x 14 histograms whose rows are
 * allocated as values need them (hist.h: at most 16.5 KiB per histogram for
 * values within 1 us .. 1 h, typically a few rows).
 *
 * Publication: a series is fully initialised before the worker stores the
 * new count with release; the reader loads the count with acquire and reads
 * only the series below it.  Key strings never change after publication.
 * Route is the request path when a protocol filter understood the request
 * (a known API endpoint, so a bounded set), else "-".
 */

#ifndef TAP_STATS_SERIES_H
#define TAP_STATS_SERIES_H

#include <stdint.h>

#include <event2/buffer.h>

#include "exchange.h"
#include "stats/hist.h"

#define TAP_LSERIES_STR   96

typedef enum {
    TAP_LAT_E2E = 0,
    TAP_LAT_TTFT,
    TAP_LAT_TPOT,
    TAP_LAT_UPSTREAM,
    TAP_LAT_OVERHEAD,
    TAP_LAT_N,
} tap_lat_e;

typedef struct tap_lseries_s {
    uint64_t      hash;
    char          model[TAP_LSERIES_STR];
    char          upstream[TAP_LSERIES_STR];
    char          route[TAP_LSERIES_STR];
    char          status[8];           /* "2xx", ..., "none" */
    tap_whist_t   h[TAP_LAT_N];
} tap_lseries_t;

typedef struct tap_lstats_s {
    tap_lseries_t  *series;            /* capacity + 1 (the last: "other") */
    unsigned       *index;             /* open addressing, writer only: series + 1, 0 free */
    unsigned        capacity;
    unsigned        mask;
    _Atomic(unsigned)  n;              /* published series */
    unsigned        other_on:1;        /* the catch-all series is initialised */
    _Atomic(uint64_t)  folded;         /* exchanges recorded in "other" */
} tap_lstats_t;

int tap_lstats_init(tap_lstats_t *s, unsigned capacity);
void tap_lstats_cleanup(tap_lstats_t *s);

/* Worker: records one finished exchange at now_ns (monotonic). */
void tap_lstats_record(tap_lstats_t *s, const tap_exchange_t *ex, uint64_t now_ns);

/* The windows tap_lstats_each() merges, in this order. */
#define TAP_LSTATS_WINS  3                 /* TAP_WIN_1M, TAP_WIN_5M, TAP_WIN_ALL */

/*
 * Reader: calls fn once per distinct key over all shards (the catch-all
 * "other" last), with h[w][figure] the histograms of window w (1m, 5m, all)
 * merged over the shards; fn must not keep them.  Returns TAP_OK, or
 * TAP_ERROR when out of memory (some histograms may then be short).
 */
typedef void (*tap_lstats_each_pt)(void *arg, const tap_lseries_t *key,
    tap_hist_t (*h)[TAP_LAT_N]);

int tap_lstats_each(tap_lstats_t *const *shards, unsigned nshards, uint64_t now_ns,
    tap_lstats_each_pt fn, void *arg);

/*
 * Reader: GET /stats.  Merges the shards' series of equal keys and writes
 * one JSON object: per series its key and, per figure (e2e_ms, ttft_ms,
 * tpot_ms, upstream_ms, overhead_ms) and window (1m, 5m, all): count, min,
 * max, mean, p50, p90, p95, p99, p999 in milliseconds.  Returns TAP_OK or
 * TAP_ERROR (out of memory).
 */
int tap_lstats_json(tap_lstats_t *const *shards, unsigned nshards, uint64_t now_ns,
    struct evbuffer *out);

#endif /* TAP_STATS_SERIES_H */
