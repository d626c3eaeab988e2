/*
 * series.c: latency percentiles per series (see series.h).
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "tap_core.h"
#include "stats/series.h"

static const char *const  tap_lat_names[TAP_LAT_N] = {
    "e2e_ms", "ttft_ms", "tpot_ms", "upstream_ms", "overhead_ms",
};

static const char *const  tap_win_names[] = { "1m", "5m", "all" };
static const tap_win_e    tap_win_order[] = { TAP_WIN_1M, TAP_WIN_5M, TAP_WIN_ALL };


int
tap_lstats_init(tap_lstats_t *s, unsigned capacity)
{
    unsigned  size;

    memset(s, 0, sizeof(*s));
    for (size = 16; size < capacity * 2; size <<= 1) {
        /* a power of two, at most half full */
    }
    s->capacity = capacity;
    s->mask = size - 1;
    s->series = calloc(capacity + 1, sizeof(tap_lseries_t));
    s->index = calloc(size, sizeof(unsigned));
    if (s->series == NULL || s->index == NULL) {
        tap_lstats_cleanup(s);
        return TAP_ERROR;
    }
    return TAP_OK;
}


void
tap_lstats_cleanup(tap_lstats_t *s)
{
    unsigned  i, k, n;

    if (s->series != NULL) {
        n = atomic_load_explicit(&s->n, memory_order_acquire);
        for (i = 0; i < n; i++) {
            for (k = 0; k < TAP_LAT_N; k++) {
                tap_whist_cleanup(&s->series[i].h[k]);
            }
        }
        if (s->other_on) {
            for (k = 0; k < TAP_LAT_N; k++) {
                tap_whist_cleanup(&s->series[s->capacity].h[k]);
            }
        }
    }
    free(s->series);
    free(s->index);
    memset(s, 0, sizeof(*s));
}


static void
tap_lseries_setup(tap_lseries_t *ls, uint64_t hash, const char *model, const char *upstream,
    const char *route, const char *status)
{
    unsigned  k;

    ls->hash = hash;
    tap_cpystr(ls->model, model, sizeof(ls->model) - 1);
    tap_cpystr(ls->upstream, upstream, sizeof(ls->upstream) - 1);
    tap_cpystr(ls->route, route, sizeof(ls->route) - 1);
    tap_cpystr(ls->status, status, sizeof(ls->status) - 1);
    for (k = 0; k < TAP_LAT_N; k++) {
        tap_whist_init(&ls->h[k]);
    }
}


/* The series of a key: found, created, or the catch-all. */
static tap_lseries_t *
tap_lstats_get(tap_lstats_t *s, const char *model, const char *upstream, const char *route,
    const char *status)
{
    tap_lseries_t  *ls;
    char            key[4 * TAP_LSERIES_STR];
    uint64_t        hash;
    unsigned        i, n, slot;
    size_t          len;

    /* the fields NUL-separated: "a" + "bc" and "ab" + "c" differ */
    len = tap_cpystr(key, model, TAP_LSERIES_STR - 1) + 1;
    len += tap_cpystr(key + len, upstream, TAP_LSERIES_STR - 1) + 1;
    len += tap_cpystr(key + len, route, TAP_LSERIES_STR - 1) + 1;
    len += tap_cpystr(key + len, status, 7);
    hash = XXH3_64bits(key, len);

    for (i = (unsigned) hash & s->mask; s->index[i] != 0; i = (i + 1) & s->mask) {
        ls = &s->series[s->index[i] - 1];
        if (ls->hash == hash && strcmp(ls->model, model) == 0
            && strcmp(ls->upstream, upstream) == 0 && strcmp(ls->route, route) == 0
            && strcmp(ls->status, status) == 0)
        {
            return ls;
        }
    }
    slot = i;

    n = atomic_load_explicit(&s->n, memory_order_relaxed);
    if (n == s->capacity) {
        ls = &s->series[s->capacity];
        if (!s->other_on) {
            tap_lseries_setup(ls, 0, "other", "other", "other", "other");
            s->other_on = 1;
        }
        atomic_store_explicit(&s->folded,
            atomic_load_explicit(&s->folded, memory_order_relaxed) + 1, memory_order_relaxed);
        return ls;
    }

    ls = &s->series[n];
    tap_lseries_setup(ls, hash, model, upstream, route, status);
    s->index[slot] = n + 1;
    atomic_store_explicit(&s->n, n + 1, memory_order_release);
    return ls;
}


void
tap_lstats_record(tap_lstats_t *s, const tap_exchange_t *ex, uint64_t now_ns)
{
    static const char *const  classes[] = { "none", "1xx", "2xx", "3xx", "4xx", "5xx" };
    const tap_gen_t          *g = &ex->gen;
    tap_lseries_t            *ls;
    char                      route[TAP_LSERIES_STR], model[TAP_LSERIES_STR];
    int64_t                   end, dur, up;
    size_t                    len;
    unsigned                  cls;

    if (s->series == NULL) {
        return;
    }
    /* keys as stored (cut to TAP_LSERIES_STR - 1), so that lookups compare equal */
    tap_cpystr(model, g->model[0] ? g->model : g->response_model[0] ? g->response_model : "-",
        sizeof(model) - 1);
    if (ex->analysed && ex->path != NULL) {
        len = TAP_MIN(ex->path_len, sizeof(route) - 1);
        memcpy(route, ex->path, len);
        route[len] = '\0';
    } else {
        strcpy(route, "-");
    }
    cls = (ex->status >= 100 && ex->status < 600) ? (unsigned) ex->status / 100 : 0;
    ls = tap_lstats_get(s, model, ex->upstream[0] ? ex->upstream : "-", route, classes[cls]);

    end = ex->last_byte ? ex->last_byte : ex->t0;
    dur = end > ex->t0 ? end - ex->t0 : 0;
    up = (ex->upstream_start && end > ex->upstream_start) ? end - ex->upstream_start : 0;

    tap_whist_record(&ls->h[TAP_LAT_E2E], now_ns, (uint64_t) dur);
    tap_whist_record(&ls->h[TAP_LAT_OVERHEAD], now_ns, (uint64_t) (dur - up));
    if (ex->upstream_start) {
        tap_whist_record(&ls->h[TAP_LAT_UPSTREAM], now_ns, (uint64_t) up);
    }
    if (ex->ttft_ms >= 0) {
        tap_whist_record(&ls->h[TAP_LAT_TTFT], now_ns, (uint64_t) (ex->ttft_ms * 1e6));
    }
    if (ex->tpot_ms >= 0) {
        tap_whist_record(&ls->h[TAP_LAT_TPOT], now_ns, (uint64_t) (ex->tpot_ms * 1e6));
    }
}


static void
tap_lstats_json_str(struct evbuffer *out, const char *name, const char *v)
{
    const unsigned char  *p;

    evbuffer_add_printf(out, "\"%s\":\"", name);
    for (p = (const unsigned char *) v; *p; p++) {
        if (*p == '"' || *p == '\\') {
            evbuffer_add_printf(out, "\\%c", *p);
        } else if (*p < 0x20) {
            evbuffer_add_printf(out, "\\u%04x", *p);
        } else {
            evbuffer_add(out, p, 1);
        }
    }
    evbuffer_add(out, "\"", 1);
}


static void
tap_lstats_json_hist(struct evbuffer *out, const tap_hist_t *h)
{
    static const double       ps[] = { 50, 90, 95, 99, 99.9 };
    static const char *const  pn[] = { "p50", "p90", "p95", "p99", "p999" };
    size_t                    i;

    if (tap_hist_count(h) == 0) {
        evbuffer_add_printf(out, "{\"count\":0}");
        return;
    }
    evbuffer_add_printf(out, "{\"count\":%llu,\"min\":%.6f,\"max\":%.6f,\"mean\":%.6f",
        (unsigned long long) tap_hist_count(h), tap_hist_min(h) / 1e6, tap_hist_max(h) / 1e6,
        tap_hist_mean(h) / 1e6);
    for (i = 0; i < TAP_NELEMS(ps); i++) {
        evbuffer_add_printf(out, ",\"%s\":%.6f", pn[i], tap_hist_percentile(h, ps[i]) / 1e6);
    }
    evbuffer_add(out, "}", 1);
}


/* Two series of the same key. */
static int
tap_lstats_same(const tap_lseries_t *a, const tap_lseries_t *b)
{
    return a->hash == b->hash && strcmp(a->model, b->model) == 0
           && strcmp(a->upstream, b->upstream) == 0 && strcmp(a->route, b->route) == 0
           && strcmp(a->status, b->status) == 0;
}


/* The catch-all key, for tap_lstats_each(). */
static const tap_lseries_t  tap_lseries_other = {
    .model = "other", .upstream = "other", .route = "other", .status = "other",
};


/* Adds series o into the merged histograms h. */
static int
tap_lstats_add(const tap_lseries_t *o, uint64_t now_ns, tap_hist_t (*h)[TAP_LAT_N])
{
    unsigned  w, k;
    int       rc = TAP_OK;

    for (w = 0; w < TAP_LSTATS_WINS; w++) {
        for (k = 0; k < TAP_LAT_N; k++) {
            if (tap_whist_read(&o->h[k], now_ns, tap_win_order[w], &h[w][k]) != TAP_OK) {
                rc = TAP_ERROR;
            }
        }
    }
    return rc;
}


int
tap_lstats_each(tap_lstats_t *const *shards, unsigned nshards, uint64_t now_ns,
    tap_lstats_each_pt fn, void *arg)
{
    const tap_lseries_t  *ls;
    tap_hist_t            h[TAP_LSTATS_WINS][TAP_LAT_N];
    unsigned              sh, i, s2, j, w, k, n, n2, dup, other = 0;
    int                   rc = TAP_OK;

    for (w = 0; w < TAP_LSTATS_WINS; w++) {
        for (k = 0; k < TAP_LAT_N; k++) {
            tap_hist_init(&h[w][k]);
        }
    }

    for (sh = 0; sh < nshards; sh++) {
        n = atomic_load_explicit(&shards[sh]->n, memory_order_acquire);
        other |= shards[sh]->other_on;
        for (i = 0; i < n; i++) {
            ls = &shards[sh]->series[i];
            /* a key seen in an earlier shard was reported there */
            for (dup = 0, s2 = 0; s2 < sh && !dup; s2++) {
                n2 = atomic_load_explicit(&shards[s2]->n, memory_order_acquire);
                for (j = 0; j < n2 && !dup; j++) {
                    dup = tap_lstats_same(&shards[s2]->series[j], ls);
                }
            }
            if (dup) {
                continue;
            }
            for (w = 0; w < TAP_LSTATS_WINS; w++) {
                for (k = 0; k < TAP_LAT_N; k++) {
                    tap_hist_reset(&h[w][k]);
                }
            }
            for (s2 = sh; s2 < nshards; s2++) {
                n2 = atomic_load_explicit(&shards[s2]->n, memory_order_acquire);
                for (j = (s2 == sh ? i : 0); j < n2; j++) {
                    if (tap_lstats_same(&shards[s2]->series[j], ls)
                        && tap_lstats_add(&shards[s2]->series[j], now_ns, h) != TAP_OK)
                    {
                        rc = TAP_ERROR;
                    }
                }
            }
            fn(arg, ls, h);
        }
    }

    if (other) {
        for (w = 0; w < TAP_LSTATS_WINS; w++) {
            for (k = 0; k < TAP_LAT_N; k++) {
                tap_hist_reset(&h[w][k]);
            }
        }
        for (sh = 0; sh < nshards; sh++) {
            if (shards[sh]->other_on
                && tap_lstats_add(&shards[sh]->series[shards[sh]->capacity], now_ns, h)
                   != TAP_OK)
            {
                rc = TAP_ERROR;
            }
        }
        fn(arg, &tap_lseries_other, h);
    }

    for (w = 0; w < TAP_LSTATS_WINS; w++) {
        for (k = 0; k < TAP_LAT_N; k++) {
            tap_hist_cleanup(&h[w][k]);
        }
    }
    return rc;
}


/* tap_lstats_each() callback of tap_lstats_json(): one series object. */
typedef struct tap_lstats_out_s {
    struct evbuffer  *out;
    unsigned          first:1;
} tap_lstats_out_t;


static void
tap_lstats_json_series(void *arg, const tap_lseries_t *ls, tap_hist_t (*h)[TAP_LAT_N])
{
    tap_lstats_out_t  *o = arg;
    struct evbuffer   *out = o->out;
    unsigned           w, k;

    evbuffer_add_printf(out, "%s{", o->first ? "" : ",");
    o->first = 0;
    tap_lstats_json_str(out, "model", ls->model);
    evbuffer_add(out, ",", 1);
    tap_lstats_json_str(out, "upstream", ls->upstream);
    evbuffer_add(out, ",", 1);
    tap_lstats_json_str(out, "route", ls->route);
    evbuffer_add(out, ",", 1);
    tap_lstats_json_str(out, "status", ls->status);
    for (k = 0; k < TAP_LAT_N; k++) {
        evbuffer_add_printf(out, ",\"%s\":{", tap_lat_names[k]);
        for (w = 0; w < TAP_LSTATS_WINS; w++) {
            evbuffer_add_printf(out, "%s\"%s\":", w ? "," : "", tap_win_names[w]);
            tap_lstats_json_hist(out, &h[w][k]);
        }
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, "}", 1);
}


int
tap_lstats_json(tap_lstats_t *const *shards, unsigned nshards, uint64_t now_ns,
    struct evbuffer *out)
{
    tap_lstats_out_t  o = { out, 1 };
    uint64_t          folded = 0;
    unsigned          sh;
    int               rc;

    evbuffer_add_printf(out, "{\"windows\":{\"1m\":\"the last 60-70 s\","
        "\"5m\":\"the last 5-6 min\",\"all\":\"since start\"},\"series\":[");
    rc = tap_lstats_each(shards, nshards, now_ns, tap_lstats_json_series, &o);
    for (sh = 0; sh < nshards; sh++) {
        folded += atomic_load_explicit(&shards[sh]->folded, memory_order_relaxed);
    }
    evbuffer_add_printf(out, "],\"folded\":%llu}\n", (unsigned long long) folded);
    return rc;
}
