/*
 * metrics.c: the metric registry (metrics.h) and its read-outs: Prometheus
 * text 0.0.4, OpenMetrics 1.0.0 text and OTLP ResourceMetrics.
 *
 * Storage.  A family keeps its series in an open-addressing table (linear
 * probing, at most half full) keyed by a 64-bit hash of the label values:
 * XXH3-64 of each value, chained through the seed.  Recording into a known
 * series costs one strnlen, one XXH3 and one memcmp per label, one probe
 * and no allocation.  A series is one malloc'd block holding its numbers,
 * for histograms two bucket arrays (now, and as last sent by a delta export)
 * and the copied label values; series are also linked in creation order,
 * which is the order of every read-out.  tap_metric_clear() frees a
 * family's series and empties its series and value tables, keeping each
 * table for the next series unless it has over eight slots per entry it
 * lost (then it is freed and grows again from the start): a family
 * refreshed at each read holds what its largest recent refresh needed, not
 * what all of them together did.
 *
 * The slow path.  A recording that misses the table (a new series, a value
 * to cut or to repair, a value beyond the cap) normalizes the values first
 * (metrics.h: cut on a character boundary, '?' for bytes that are not UTF-8,
 * since Prometheus and OTLP receivers reject a whole scrape or export for
 * one bad string), then applies the cap and looks up again.  The cap keeps,
 * per family and label, the set of distinct values seen (an open-addressing
 * table of pointers into the series that brought them); a value that finds
 * its set full is replaced with "other" and the recording counts one in the
 * registry's own counter family, which is exempt from the cap (its values
 * are the registry's family names) and read out after the declared ones.
 * A value that is "other" already goes to that series and takes no place.
 *
 * Numbers.  Sample values are printed as integers when they are integral
 * and below 1e15, otherwise in the shortest form that reads back as the same
 * double, spelled as Go's strconv.FormatFloat(v, 'g', -1, 64) does (the
 * Prometheus client's choice: exponent below 1e-4 and from 1e6); OpenMetrics
 * le values use that form always, with ".0" added to plain integers (its
 * canonical numbers: "1.0", "0.25", "1e+06", "+Inf").
 *
 * Delta.  An OTLP export with delta temporality sends, per series, the
 * change since the previous delta export: counters and bucket counts as
 * differences, histogram sums, min and max as kept since that export (so
 * the sum carries no cancellation error).  Series that did not change are
 * left out; gauges are always sent as they are.  What was sent is recorded
 * only once the whole message was built.  A histogram set from outside
 * (tap_metric_set_histogram) keeps the same state: each set adds its change
 * to the interval sum, and a set that lowers the count or a bucket is a
 * reset, after which the whole new state is the change (the base of the
 * next delta becomes zero).  Its interval min (max) is known only when a set
 * moved the cumulative one, or when it was known and equals the cumulative
 * one still; otherwise it is NaN and the point goes out without it.
 */

#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <xxhash.h>

#include "tap_core.h"
#include "telemetry/metrics.h"
#include "telemetry/pb.h"

#define TAP_MTAB_MIN       16          /* first size of the series and value tables */
#define TAP_MHASH_SEED     UINT64_C(0x9e3779b97f4a7c15)
#define TAP_MHASH_ABSENT   UINT64_C(0xa0761d6478bd642f)
#define TAP_MNUM_LEN       40          /* a formatted double, NUL included */

#define TAP_MTEMP(c)                                                                          \
    OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_##c


struct tap_mser_s {
    tap_mser_t   *next;                /* creation order */
    uint64_t      hash;
    const char   *v[TAP_METRIC_MAX_LABELS];        /* NULL: label absent */
    size_t        len[TAP_METRIC_MAX_LABELS];
    double        value;               /* counters and gauges */
    double        sent;                /* delta: the value at the last delta export */
    uint64_t      count;               /* histograms, since start */
    double        sum, min, max;
    uint64_t      sent_count;          /* histograms, delta: at the last delta export */
    double        isum, imin, imax;    /* histograms, since the last delta export; NaN: unknown */
    uint64_t     *buckets;             /* nbounds + 1, per bucket (not cumulative) */
    uint64_t     *sent_buckets;
};

/* One distinct value of one label. */
typedef struct tap_mval_s {
    uint64_t     hash;
    const char  *s;                    /* in the series that brought it */
    size_t       len;
} tap_mval_t;

typedef struct tap_mvset_s {
    tap_mval_t  *tab;
    size_t       mask;
    size_t       n;
} tap_mvset_t;

struct tap_mfam_s {
    tap_mreg_t            *reg;
    const tap_mfam_def_t  *def;
    char                  *prom;       /* 0.0.4 family name; counters end in _total */
    size_t                 omlen;      /* OpenMetrics family name: the first omlen bytes */
    char                  *unit;       /* the unit word of the name, or NULL */
    char                  *lnames[TAP_METRIC_MAX_LABELS];
    tap_mser_t           **tab;
    size_t                 mask;
    size_t                 n;
    tap_mser_t            *head;
    tap_mser_t           **tail;
    tap_mser_t            *last[2];    /* found last: the same values again skip the hash */
    unsigned               lastw;      /* the entry of last replaced next */
    tap_mvset_t            vals[TAP_METRIC_MAX_LABELS];
    unsigned               uncapped:1;
};

struct tap_mreg_s {
    unsigned       max_values;
    uint64_t       start_ns;
    uint64_t       last_ns;            /* the previous delta export (start before) */
    void         (*on_collect)(tap_mreg_t *r, void *arg);
    void          *collect_arg;
    tap_mfam_t   **fams;               /* declaration order */
    size_t         nfams;
    size_t         cap;
    tap_mfam_t    *overflow;           /* read out after fams */
    size_t         bytes;              /* series and their tables (tap_mreg_bytes) */
};

typedef struct tap_munit_s {
    const char  *ucum;
    const char  *word;
} tap_munit_t;


static const tap_munit_t  tap_munits[] = {
    { "d", "days" }, { "h", "hours" }, { "min", "minutes" }, { "s", "seconds" },
    { "ms", "milliseconds" }, { "us", "microseconds" }, { "ns", "nanoseconds" },
    { "By", "bytes" }, { "KiBy", "kibibytes" }, { "MiBy", "mebibytes" },
    { "GiBy", "gibibytes" }, { "TiBy", "tebibytes" }, { "KBy", "kilobytes" },
    { "MBy", "megabytes" }, { "GBy", "gigabytes" }, { "TBy", "terabytes" },
    { "m", "meters" }, { "V", "volts" }, { "A", "amperes" }, { "J", "joules" },
    { "W", "watts" }, { "g", "grams" }, { "Cel", "celsius" }, { "Hz", "hertz" },
    { "%", "percent" }, { "1", "" },
};

/* the denominators of "x/y" units */
static const tap_munit_t  tap_munits_per[] = {
    { "s", "second" }, { "m", "minute" }, { "h", "hour" }, { "d", "day" },
    { "w", "week" }, { "mo", "month" }, { "y", "year" },
};

static const char *const  tap_mreg_overflow_labels[] = { "metric" };

static const tap_mfam_def_t  tap_mreg_overflow_def = {
    .name = "infertap.metrics.label_overflow",
    .unit = "{recording}",
    .help = "Recordings with a label value beyond the cardinality cap, folded into \"other\".",
    .kind = TAP_METRIC_COUNTER,
    .integer = 1,
    .labels = tap_mreg_overflow_labels,
    .nlabels = 1,
};


/*
 * Naming
 */

/*
 * Appends the Prometheus form of s[0..n) to dst at *len: characters outside
 * [a-zA-Z0-9_] (and ':' when colon is set) become '_', runs of '_' collapse,
 * and a leading digit gets a '_' before it.  dst must have room for 2n more.
 */
static void
tap_mname_append(char *dst, size_t *len, const char *s, size_t n, int colon)
{
    size_t  i, l;
    char    c;

    l = *len;
    for (i = 0; i < n; i++) {
        c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_' || (colon && c == ':')))
        {
            c = '_';
        }
        if (l == 0 && c >= '0' && c <= '9') {
            dst[l++] = '_';
        }
        if (c == '_' && l > 0 && dst[l - 1] == '_') {
            continue;
        }
        dst[l++] = c;
    }
    dst[l] = '\0';
    *len = l;
}


/* Whether name[0..len) is word or ends with "_" word. */
static int
tap_mname_ends(const char *name, size_t len, const char *word)
{
    size_t  wl = strlen(word);

    return wl > 0 && len >= wl && memcmp(name + len - wl, word, wl) == 0
           && (len == wl || name[len - wl - 1] == '_');
}


static const char *
tap_munit_find(const tap_munit_t *t, size_t n, const char *s, size_t len)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (strlen(t[i].ucum) == len && memcmp(t[i].ucum, s, len) == 0) {
            return t[i].word;
        }
    }
    return NULL;
}


/*
 * The word a UCUM unit adds to a Prometheus name: annotations ({...}) are
 * dropped, known units spelled out ("s" -> "seconds", "By/s" ->
 * "bytes_per_second"), others sanitized.  Returns a malloc'd string, or NULL
 * when the unit adds nothing or, with *failed set, when out of memory.
 */
static char *
tap_munit_word(const char *unit, int *failed)
{
    char        *u, *w, *slash;
    const char  *known;
    size_t       i, n, ul, wl;
    int          depth;

    *failed = 0;
    if (unit == NULL || *unit == '\0') {
        return NULL;
    }

    n = strlen(unit);
    u = malloc(n + 1);
    w = malloc(2 * n + 32);
    if (u == NULL || w == NULL) {
        *failed = 1;
        free(w);
        w = NULL;
        goto done;
    }

    for (i = 0, ul = 0, depth = 0; i < n; i++) {
        if (unit[i] == '{') {
            depth++;
        } else if (unit[i] == '}' && depth > 0) {
            depth--;
        } else if (depth == 0) {
            u[ul++] = unit[i];
        }
    }
    u[ul] = '\0';

    wl = 0;
    w[0] = '\0';
    slash = strchr(u, '/');
    n = slash != NULL ? (size_t) (slash - u) : ul;
    known = tap_munit_find(tap_munits, TAP_NELEMS(tap_munits), u, n);
    if (known != NULL) {
        tap_mname_append(w, &wl, known, strlen(known), 0);
    } else {
        tap_mname_append(w, &wl, u, n, 0);
    }

    if (slash != NULL && slash[1] != '\0') {
        if (wl > 0) {
            tap_mname_append(w, &wl, "_", 1, 0);
        }
        tap_mname_append(w, &wl, "per_", 4, 0);
        n = strlen(slash + 1);
        known = tap_munit_find(tap_munits_per, TAP_NELEMS(tap_munits_per), slash + 1, n);
        if (known != NULL) {
            tap_mname_append(w, &wl, known, strlen(known), 0);
        } else {
            tap_mname_append(w, &wl, slash + 1, n, 0);
        }
    }

    /* no '_' at either end: the word is appended after one */
    while (wl > 0 && w[wl - 1] == '_') {
        w[--wl] = '\0';
    }
    if (w[0] == '_') {
        memmove(w, w + 1, wl--);
    }

done:

    free(u);
    if (w != NULL && w[0] == '\0') {
        free(w);
        w = NULL;
    }
    return w;
}


/*
 * Families
 */

static void
tap_mfam_free(tap_mfam_t *f)
{
    tap_mser_t  *s, *next;
    size_t       i;

    if (f == NULL) {
        return;
    }
    for (s = f->head; s != NULL; s = next) {
        next = s->next;
        free(s);
    }
    for (i = 0; i < TAP_METRIC_MAX_LABELS; i++) {
        free(f->lnames[i]);
        free(f->vals[i].tab);
    }
    free(f->tab);
    free(f->prom);
    free(f->unit);
    free(f);
}


static int
tap_mfam_def_valid(const tap_mfam_def_t *def)
{
    size_t  i;

    if (def->name == NULL || def->name[0] == '\0' || def->help == NULL
        || (def->kind != TAP_METRIC_COUNTER && def->kind != TAP_METRIC_GAUGE
            && def->kind != TAP_METRIC_HISTOGRAM)
        || def->nlabels > TAP_METRIC_MAX_LABELS
        || (def->nlabels > 0 && def->labels == NULL))
    {
        return 0;
    }
    for (i = 0; i < def->nlabels; i++) {
        if (def->labels[i] == NULL || def->labels[i][0] == '\0') {
            return 0;
        }
    }
    if (def->kind != TAP_METRIC_HISTOGRAM) {
        return 1;
    }
    if (def->nbounds > TAP_METRIC_MAX_BOUNDS || (def->nbounds > 0 && def->bounds == NULL)) {
        return 0;
    }
    for (i = 0; i < def->nbounds; i++) {
        if (!isfinite(def->bounds[i]) || (i > 0 && !(def->bounds[i] > def->bounds[i - 1]))) {
            return 0;
        }
    }
    return 1;
}


/*
 * A new family for def with its Prometheus names, or NULL when def is
 * invalid (metrics.h; also two labels with the same Prometheus name, or a
 * histogram label named "le") or when out of memory.
 */
static tap_mfam_t *
tap_mfam_new(tap_mreg_t *r, const tap_mfam_def_t *def)
{
    tap_mfam_t  *f;
    size_t       i, j, len, n;
    int          failed;

    if (!tap_mfam_def_valid(def) || (f = calloc(1, sizeof(tap_mfam_t))) == NULL) {
        return NULL;
    }
    f->reg = r;
    f->def = def;
    f->tail = &f->head;

    f->unit = tap_munit_word(def->unit, &failed);
    n = strlen(def->name);
    f->prom = malloc(2 * n + (f->unit != NULL ? strlen(f->unit) : 0) + 16);
    if (failed || f->prom == NULL) {
        goto failed;
    }

    len = 0;
    tap_mname_append(f->prom, &len, def->name, n, 1);
    if (def->kind == TAP_METRIC_COUNTER && len > 6 && tap_mname_ends(f->prom, len, "total")) {
        len -= 6;
        f->prom[len] = '\0';
    }
    if (f->unit != NULL && !tap_mname_ends(f->prom, len, f->unit)) {
        tap_mname_append(f->prom, &len, "_", 1, 1);
        tap_mname_append(f->prom, &len, f->unit, strlen(f->unit), 1);
    }
    if (len == 0 || strcmp(f->prom, "_") == 0) {
        goto failed;
    }
    f->omlen = len;
    if (def->kind == TAP_METRIC_COUNTER) {
        tap_mname_append(f->prom, &len, "_total", 6, 1);
    }

    for (i = 0; i < def->nlabels; i++) {
        n = strlen(def->labels[i]);
        f->lnames[i] = malloc(2 * n + 2);
        if (f->lnames[i] == NULL) {
            goto failed;
        }
        len = 0;
        tap_mname_append(f->lnames[i], &len, def->labels[i], n, 0);
        if (strcmp(f->lnames[i], "_") == 0
            || (def->kind == TAP_METRIC_HISTOGRAM && strcmp(f->lnames[i], "le") == 0))
        {
            goto failed;
        }
        for (j = 0; j < i; j++) {
            if (strcmp(f->lnames[i], f->lnames[j]) == 0) {
                goto failed;
            }
        }
    }

    return f;

failed:

    tap_mfam_free(f);
    return NULL;
}


/* Whether the names of f and g clash (the same OpenTelemetry or Prometheus name). */
static int
tap_mfam_clash(const tap_mfam_t *f, const tap_mfam_t *g)
{
    return strcmp(f->def->name, g->def->name) == 0
           || strcmp(f->prom, g->prom) == 0
           || (f->omlen == g->omlen && memcmp(f->prom, g->prom, f->omlen) == 0)
           || (strlen(f->prom) == g->omlen && memcmp(f->prom, g->prom, g->omlen) == 0)
           || (strlen(g->prom) == f->omlen && memcmp(g->prom, f->prom, f->omlen) == 0);
}


/*
 * Series
 */

static uint64_t
tap_mser_hash(size_t n, const char *const *v, const size_t *len)
{
    uint64_t  h;
    size_t    i;

    h = TAP_MHASH_SEED;
    for (i = 0; i < n; i++) {
        if (v[i] != NULL) {
            h = XXH3_64bits_withSeed(v[i], len[i], h);
        } else {
            h = (h ^ TAP_MHASH_ABSENT) * TAP_MHASH_SEED;
        }
    }
    return h;
}


/* Does the series s hold exactly these values? */
static int
tap_mser_same(const tap_mfam_t *f, const tap_mser_t *s, const char *const *v, const size_t *len)
{
    size_t  k;

    for (k = 0; k < f->def->nlabels; k++) {
        if ((s->v[k] == NULL) != (v[k] == NULL)
            || (v[k] != NULL && (s->len[k] != len[k] || memcmp(s->v[k], v[k], len[k]) != 0)))
        {
            return 0;
        }
    }
    return 1;
}


static tap_mser_t *
tap_mser_find(const tap_mfam_t *f, uint64_t h, const char *const *v, const size_t *len)
{
    tap_mser_t  *s;
    size_t       i;

    if (f->tab == NULL) {
        return NULL;
    }
    for (i = h & f->mask; (s = f->tab[i]) != NULL; i = (i + 1) & f->mask) {
        if (s->hash == h && tap_mser_same(f, s, v, len)) {
            return s;
        }
    }
    return NULL;
}


/* Doubles the series table (or makes the first).  Returns TAP_OK or TAP_ERROR. */
static int
tap_mser_grow(tap_mfam_t *f)
{
    tap_mser_t  **tab, *s;
    size_t        cap, mask, i;

    cap = f->tab != NULL ? 2 * (f->mask + 1) : TAP_MTAB_MIN;
    tab = calloc(cap, sizeof(tap_mser_t *));
    if (tab == NULL) {
        return TAP_ERROR;
    }
    mask = cap - 1;
    for (s = f->head; s != NULL; s = s->next) {
        for (i = s->hash & mask; tab[i] != NULL; i = (i + 1) & mask) {
            /* probe */
        }
        tab[i] = s;
    }
    if (f->tab != NULL) {
        f->reg->bytes -= (f->mask + 1) * sizeof(tap_mser_t *);
    }
    f->reg->bytes += cap * sizeof(tap_mser_t *);
    free(f->tab);
    f->tab = tab;
    f->mask = mask;
    return TAP_OK;
}


/* The size of the block of a series with these values (tap_mser_new). */
static size_t
tap_mser_size(const tap_mfam_t *f, const char *const *v, const size_t *len)
{
    size_t  size, nb, i;

    nb = f->def->kind == TAP_METRIC_HISTOGRAM ? f->def->nbounds + 1 : 0;
    size = sizeof(tap_mser_t) + 2 * nb * sizeof(uint64_t);
    for (i = 0; i < f->def->nlabels; i++) {
        size += v[i] != NULL ? len[i] + 1 : 0;
    }
    return size;
}


/* A new series holding copies of the values, linked in; NULL when out of memory. */
static tap_mser_t *
tap_mser_new(tap_mfam_t *f, uint64_t h, const char *const *v, const size_t *len)
{
    tap_mser_t  *s;
    size_t       size, nb, i;
    char        *p;

    if ((f->tab == NULL || 2 * (f->n + 1) > f->mask + 1) && tap_mser_grow(f) != TAP_OK) {
        return NULL;
    }

    nb = f->def->kind == TAP_METRIC_HISTOGRAM ? f->def->nbounds + 1 : 0;
    size = tap_mser_size(f, v, len);
    s = calloc(1, size);
    if (s == NULL) {
        return NULL;
    }
    f->reg->bytes += size;

    s->hash = h;
    s->buckets = (uint64_t *) (s + 1);
    s->sent_buckets = s->buckets + nb;
    p = (char *) (s->sent_buckets + nb);
    for (i = 0; i < f->def->nlabels; i++) {
        if (v[i] != NULL) {
            memcpy(p, v[i], len[i]);
            p[len[i]] = '\0';
            s->v[i] = p;
            s->len[i] = len[i];
            p += len[i] + 1;
        }
    }
    s->min = s->imin = INFINITY;
    s->max = s->imax = -INFINITY;

    for (i = h & f->mask; f->tab[i] != NULL; i = (i + 1) & f->mask) {
        /* probe */
    }
    f->tab[i] = s;
    f->n++;
    *f->tail = s;
    f->tail = &s->next;
    return s;
}


/*
 * Copies s to dst (TAP_METRIC_VALUE_MAX + 1 bytes) as a label value: at most
 * TAP_METRIC_VALUE_MAX bytes cut on a character boundary, each byte outside
 * a well-formed UTF-8 sequence replaced by '?'.  Returns the length.
 */
static size_t
tap_mval_clean(char *dst, const char *s)
{
    const unsigned char  *p;
    size_t                len, n, k;
    unsigned              c;
    int                   ok;

    p = (const unsigned char *) s;
    len = 0;
    while (*p != '\0') {
        c = p[0];
        n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
            : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        ok = n > 0;
        for (k = 1; ok && k < n; k++) {
            ok = (p[k] & 0xc0) == 0x80;        /* a NUL ends the loop here */
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if (ok && ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] >= 0xa0)
                   || (c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] >= 0x90)))
        {
            ok = 0;
        }
        if (!ok) {
            n = 1;
        }
        if (len + n > TAP_METRIC_VALUE_MAX) {
            break;
        }
        if (ok) {
            memcpy(dst + len, p, n);
        } else {
            dst[len] = '?';
        }
        len += n;
        p += n;
    }
    dst[len] = '\0';
    return len;
}


static int
tap_mvset_has(const tap_mvset_t *vs, uint64_t h, const char *s, size_t len)
{
    const tap_mval_t  *e;
    size_t             i;

    if (vs->tab == NULL) {
        return 0;
    }
    for (i = h & vs->mask; (e = &vs->tab[i])->s != NULL; i = (i + 1) & vs->mask) {
        if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0) {
            return 1;
        }
    }
    return 0;
}


/* Adds a value known to be new; s must live as long as its series. */
static void
tap_mvset_add(tap_mreg_t *r, tap_mvset_t *vs, uint64_t h, const char *s, size_t len)
{
    tap_mval_t  *tab;
    size_t       cap, mask, i, j;

    if (vs->tab == NULL || 2 * (vs->n + 1) > vs->mask + 1) {
        cap = vs->tab != NULL ? 2 * (vs->mask + 1) : TAP_MTAB_MIN;
        tab = calloc(cap, sizeof(tap_mval_t));
        if (tab == NULL) {
            return;                    /* the cap may let one more value in */
        }
        mask = cap - 1;
        for (j = 0; vs->tab != NULL && j <= vs->mask; j++) {
            if (vs->tab[j].s != NULL) {
                for (i = vs->tab[j].hash & mask; tab[i].s != NULL; i = (i + 1) & mask) {
                    /* probe */
                }
                tab[i] = vs->tab[j];
            }
        }
        if (vs->tab != NULL) {
            r->bytes -= (vs->mask + 1) * sizeof(tap_mval_t);
        }
        r->bytes += cap * sizeof(tap_mval_t);
        free(vs->tab);
        vs->tab = tab;
        vs->mask = mask;
    }
    for (i = h & vs->mask; vs->tab[i].s != NULL; i = (i + 1) & vs->mask) {
        /* probe */
    }
    vs->tab[i] = (tap_mval_t) { h, s, len };
    vs->n++;
}


/*
 * The slow path of tap_mser_get(): v (nlabels entries, NULL for absent) is
 * normalized, capped, looked up and created when missing.
 */
static tap_mser_t *
tap_mser_get_slow(tap_mfam_t *f, const char **v, int *folded_out)
{
    char         buf[TAP_METRIC_MAX_LABELS][TAP_METRIC_VALUE_MAX + 1];
    size_t       len[TAP_METRIC_MAX_LABELS] = { 0 };
    uint64_t     vh[TAP_METRIC_MAX_LABELS] = { 0 }, h;
    unsigned     fresh;
    tap_mser_t  *s;
    size_t       i, n;
    int          folded;
    const char  *name;

    n = f->def->nlabels;
    fresh = 0;
    folded = 0;
    for (i = 0; i < n; i++) {
        if (v[i] == NULL) {
            continue;
        }
        len[i] = tap_mval_clean(buf[i], v[i]);
        v[i] = buf[i];
        if (f->uncapped) {
            continue;
        }
        vh[i] = XXH3_64bits(v[i], len[i]);
        if ((len[i] == sizeof(TAP_METRIC_OTHER) - 1 && memcmp(v[i], TAP_METRIC_OTHER, len[i]) == 0)
            || tap_mvset_has(&f->vals[i], vh[i], v[i], len[i]))
        {
            continue;              /* "other" itself takes no place */
        }
        if (f->vals[i].n < f->reg->max_values) {
            fresh |= 1u << i;
        } else {
            v[i] = TAP_METRIC_OTHER;
            len[i] = sizeof(TAP_METRIC_OTHER) - 1;
            folded = 1;
        }
    }

    h = tap_mser_hash(n, v, len);
    s = tap_mser_find(f, h, v, len);
    if (s == NULL) {
        s = tap_mser_new(f, h, v, len);
        if (s == NULL) {
            return NULL;
        }
        for (i = 0; i < n; i++) {
            if (fresh & (1u << i)) {
                tap_mvset_add(f->reg, &f->vals[i], vh[i], s->v[i], s->len[i]);
            }
        }
    }

    if (folded) {
        name = f->def->name;
        tap_metric_add(f->reg->overflow, &name, 1.0);
    }
    *folded_out = folded;
    return s;
}


/*
 * The series of these label values, created on first use; NULL when out of
 * memory.  The fast path (values already normalized, series known) does not
 * allocate.  *folded: set when a value was folded into "other" (and counted).
 */
static tap_mser_t *
tap_mser_get(tap_mfam_t *f, const char *const *values, int *folded)
{
    const char  *v[TAP_METRIC_MAX_LABELS] = { NULL };
    size_t       len[TAP_METRIC_MAX_LABELS] = { 0 };
    size_t       i, n;
    int          slow;
    tap_mser_t  *s;

    n = f->def->nlabels;
    slow = 0;
    *folded = 0;
    for (i = 0; i < n; i++) {
        v[i] = values != NULL ? values[i] : NULL;
        if (v[i] != NULL && v[i][0] == '\0') {
            v[i] = NULL;
        }
        len[i] = v[i] != NULL ? strnlen(v[i], TAP_METRIC_VALUE_MAX + 1) : 0;
        if (len[i] > TAP_METRIC_VALUE_MAX) {
            slow = 1;
        }
    }

    if (!slow) {
        for (i = 0; i < TAP_NELEMS(f->last); i++) {
            if (f->last[i] != NULL && tap_mser_same(f, f->last[i], v, len)) {
                return f->last[i];
            }
        }
        s = tap_mser_find(f, tap_mser_hash(n, v, len), v, len);
        if (s != NULL) {
            f->last[f->lastw] = s;
            f->lastw = (f->lastw + 1) % TAP_NELEMS(f->last);
            return s;
        }
    }
    return tap_mser_get_slow(f, v, folded);
}


/*
 * Recording
 */

/* The series a counter or gauge value v goes to, or NULL when v does not fit the family. */
static tap_mser_t *
tap_metric_number_series(tap_mfam_t *f, const char *const *values, double v)
{
    int  folded;

    if (f == NULL || isnan(v) || f->def->kind == TAP_METRIC_HISTOGRAM
        || (f->def->kind == TAP_METRIC_COUNTER && v < 0.0))
    {
        return NULL;
    }
    return tap_mser_get(f, values, &folded);
}


void
tap_metric_add(tap_mfam_t *f, const char *const *values, double v)
{
    tap_mser_t  *s = tap_metric_number_series(f, values, v);

    if (s != NULL) {
        s->value += v;
    }
}


void
tap_metric_set(tap_mfam_t *f, const char *const *values, double v)
{
    tap_mser_t  *s = tap_metric_number_series(f, values, v);

    if (s != NULL) {
        s->value = v;
    }
}


/* Adds v to histogram s of f. */
static void
tap_mser_observe(const tap_mfam_t *f, tap_mser_t *s, double v)
{
    const double  *bounds = f->def->bounds;
    size_t         lo, hi, mid;

    /* bucket i holds (bounds[i-1], bounds[i]]: the first bound >= v */
    lo = 0;
    hi = f->def->nbounds;
    while (lo < hi) {
        mid = (lo + hi) / 2;
        if (v <= bounds[mid]) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    s->buckets[lo]++;
    s->count++;
    s->sum += v;
    s->isum += v;
    s->min = TAP_MIN(s->min, v);
    s->max = TAP_MAX(s->max, v);
    /* v first: an unknown (NaN) interval extreme stays unknown */
    s->imin = TAP_MIN(v, s->imin);
    s->imax = TAP_MAX(v, s->imax);
}


void
tap_metric_observe(tap_mfam_t *f, const char *const *values, double v)
{
    tap_metric_observe_keep(f, values, v);
}


tap_mser_t *
tap_metric_observe_keep(tap_mfam_t *f, const char *const *values, double v)
{
    tap_mser_t  *s;
    int          folded;

    if (f == NULL || isnan(v) || f->def->kind != TAP_METRIC_HISTOGRAM) {
        return NULL;
    }
    s = tap_mser_get(f, values, &folded);
    if (s == NULL) {
        return NULL;
    }
    tap_mser_observe(f, s, v);
    return folded ? NULL : s;
}


void
tap_metric_observe_at(tap_mfam_t *f, tap_mser_t *s, double v)
{
    if (!isnan(v)) {
        tap_mser_observe(f, s, v);
    }
}


void
tap_metric_set_histogram(tap_mfam_t *f, const char *const *values, const uint64_t *counts,
    uint64_t count, double sum, double min, double max)
{
    tap_mser_t  *s;
    uint64_t     total;
    size_t       nb, b;
    int          reset, folded;

    if (f == NULL || f->def->kind != TAP_METRIC_HISTOGRAM || counts == NULL || isnan(sum)
        || (count > 0 && (isnan(min) || isnan(max) || min > max)))
    {
        return;
    }
    nb = f->def->nbounds + 1;
    total = 0;
    for (b = 0; b < nb; b++) {
        if (counts[b] > UINT64_MAX - total) {
            return;
        }
        total += counts[b];
    }
    if (total != count) {
        return;
    }
    s = tap_mser_get(f, values, &folded);
    if (s == NULL) {
        return;
    }
    if (count == 0) {
        min = INFINITY;
        max = -INFINITY;
    }

    reset = count < s->count;
    for (b = 0; b < nb && !reset; b++) {
        reset = counts[b] < s->buckets[b];
    }

    if (reset) {
        /* all of the new state is new since the previous delta export */
        memset(s->sent_buckets, 0, nb * sizeof(uint64_t));
        s->sent_count = 0;
        s->isum = sum;
        s->imin = min;
        s->imax = max;

    } else {
        s->isum += sum - s->sum;
        if (count > s->count) {
            /*
             * A new extreme came in since the previous set, so in this
             * interval; an unchanged one is the interval's only when the
             * interval had it already.
             */
            if (min < s->min) {
                s->imin = min;
            } else if (!(s->imin == min)) {
                s->imin = NAN;
            }
            if (max > s->max) {
                s->imax = max;
            } else if (!(s->imax == max)) {
                s->imax = NAN;
            }
        }
    }

    memcpy(s->buckets, counts, nb * sizeof(uint64_t));
    s->count = count;
    s->sum = sum;
    s->min = min;
    s->max = max;
}


void
tap_metric_clear(tap_mfam_t *f)
{
    tap_mser_t   *s, *next;
    tap_mvset_t  *vs;
    size_t        i, n, cap;

    if (f == NULL) {
        return;
    }

    n = f->n;
    for (s = f->head; s != NULL; s = next) {
        next = s->next;
        f->reg->bytes -= tap_mser_size(f, s->v, s->len);
        free(s);
    }
    f->head = NULL;
    f->tail = &f->head;
    f->last[0] = f->last[1] = NULL;
    f->n = 0;

    /* the tables: emptied, or freed when far larger than what they held */
    if (f->tab != NULL) {
        cap = f->mask + 1;
        if (cap > TAP_MTAB_MIN && cap > 8 * n) {
            f->reg->bytes -= cap * sizeof(tap_mser_t *);
            free(f->tab);
            f->tab = NULL;
            f->mask = 0;
        } else {
            memset(f->tab, 0, cap * sizeof(tap_mser_t *));
        }
    }
    for (i = 0; i < f->def->nlabels; i++) {
        vs = &f->vals[i];
        if (vs->tab != NULL) {
            cap = vs->mask + 1;
            if (cap > TAP_MTAB_MIN && cap > 8 * vs->n) {
                f->reg->bytes -= cap * sizeof(tap_mval_t);
                free(vs->tab);
                vs->tab = NULL;
                vs->mask = 0;
            } else {
                memset(vs->tab, 0, cap * sizeof(tap_mval_t));
            }
        }
        vs->n = 0;
    }
}


/*
 * The registry
 */

tap_mreg_t *
tap_mreg_new(unsigned max_label_values, uint64_t start_ns)
{
    tap_mreg_t  *r;

    r = calloc(1, sizeof(tap_mreg_t));
    if (r == NULL) {
        return NULL;
    }
    r->max_values = max_label_values > 0 ? max_label_values : 1;
    r->start_ns = start_ns;
    r->last_ns = start_ns;
    r->overflow = tap_mfam_new(r, &tap_mreg_overflow_def);
    if (r->overflow == NULL) {
        free(r);
        return NULL;
    }
    r->overflow->uncapped = 1;
    return r;
}


void
tap_mreg_free(tap_mreg_t *r)
{
    size_t  i;

    if (r == NULL) {
        return;
    }
    for (i = 0; i < r->nfams; i++) {
        tap_mfam_free(r->fams[i]);
    }
    free(r->fams);
    tap_mfam_free(r->overflow);
    free(r);
}


size_t
tap_mreg_bytes(const tap_mreg_t *r)
{
    return r != NULL ? r->bytes : 0;
}


void
tap_mreg_on_collect(tap_mreg_t *r, void (*fn)(tap_mreg_t *r, void *arg), void *arg)
{
    r->on_collect = fn;
    r->collect_arg = arg;
}


tap_mfam_t *
tap_mreg_add(tap_mreg_t *r, const tap_mfam_def_t *def)
{
    tap_mfam_t  *f, **fams;
    size_t       i, cap;

    if (r == NULL || def == NULL) {
        return NULL;
    }
    if (r->nfams == r->cap) {
        cap = r->cap ? 2 * r->cap : 16;
        fams = realloc(r->fams, cap * sizeof(tap_mfam_t *));
        if (fams == NULL) {
            return NULL;
        }
        r->fams = fams;
        r->cap = cap;
    }

    f = tap_mfam_new(r, def);
    if (f == NULL) {
        return NULL;
    }
    for (i = 0; i <= r->nfams; i++) {
        if (tap_mfam_clash(f, i < r->nfams ? r->fams[i] : r->overflow)) {
            tap_mfam_free(f);
            return NULL;
        }
    }
    r->fams[r->nfams++] = f;
    return f;
}


/* The i-th family to read out, i <= r->nfams. */
static tap_mfam_t *
tap_mreg_fam(tap_mreg_t *r, size_t i)
{
    return i < r->nfams ? r->fams[i] : r->overflow;
}


/*
 * Prometheus and OpenMetrics text
 */

/*
 * v in the shortest form that reads back as v, the way Go's
 * strconv.FormatFloat(v, 'g', -1, 64) writes it; with canonical set, plain
 * integers get ".0".  Otherwise integral values below 1e15 are written as
 * integers.  buf has TAP_MNUM_LEN bytes.
 */
static const char *
tap_mnum(char *buf, double v, int canonical)
{
    char    e[TAP_MNUM_LEN], *x;
    int     p, exp;
    size_t  len;

    if (isnan(v)) {
        return "NaN";
    }
    if (isinf(v)) {
        return v > 0 ? "+Inf" : "-Inf";
    }
    if (!canonical && v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, TAP_MNUM_LEN, "%lld", (long long) v);
        return buf;
    }

    for (p = 1; p < 17; p++) {
        snprintf(e, sizeof(e), "%.*e", p - 1, v);
        if (strtod(e, NULL) == v) {
            break;
        }
    }
    snprintf(e, sizeof(e), "%.*e", p - 1, v);
    x = strchr(e, 'e');
    exp = x != NULL ? atoi(x + 1) : 0;

    if (exp < -4 || exp >= 6) {
        memcpy(buf, e, strlen(e) + 1);
        return buf;
    }

    snprintf(buf, TAP_MNUM_LEN, "%.*f", p - 1 - exp > 0 ? p - 1 - exp : 0, v);
    len = strlen(buf);
    if (canonical && strchr(buf, '.') == NULL && len + 2 < TAP_MNUM_LEN) {
        memcpy(buf + len, ".0", 3);
    }
    return buf;
}


/* s escaped: '\\' and newline, and '"' when quote is set. */
static void
tap_mprom_escape(struct evbuffer *out, const char *s, size_t len, int quote)
{
    size_t  i, from;

    for (i = 0, from = 0; i < len; i++) {
        if (s[i] == '\\' || s[i] == '\n' || (quote && s[i] == '"')) {
            evbuffer_add(out, s + from, i - from);
            evbuffer_add(out, s[i] == '\\' ? "\\\\" : s[i] == '\n' ? "\\n" : "\\\"", 2);
            from = i + 1;
        }
    }
    evbuffer_add(out, s + from, len - from);
}


/* name{labels[,le="le"]} value\n; the braces only when there is a label. */
static void
tap_mprom_sample(struct evbuffer *out, const tap_mfam_t *f, const char *name,
    const char *suffix, const tap_mser_t *s, const char *le, const char *value)
{
    size_t  i;
    int     first;

    evbuffer_add(out, name, strlen(name));
    evbuffer_add(out, suffix, strlen(suffix));
    first = 1;
    for (i = 0; i < f->def->nlabels; i++) {
        if (s->v[i] == NULL) {
            continue;
        }
        evbuffer_add(out, first ? "{" : ",", 1);
        evbuffer_add(out, f->lnames[i], strlen(f->lnames[i]));
        evbuffer_add(out, "=\"", 2);
        tap_mprom_escape(out, s->v[i], s->len[i], 1);
        evbuffer_add(out, "\"", 1);
        first = 0;
    }
    if (le != NULL) {
        evbuffer_add(out, first ? "{le=\"" : ",le=\"", 5);
        evbuffer_add(out, le, strlen(le));
        evbuffer_add(out, "\"", 1);
        first = 0;
    }
    if (!first) {
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add(out, " ", 1);
    evbuffer_add(out, value, strlen(value));
    evbuffer_add(out, "\n", 1);
}


static void
tap_mprom_family(struct evbuffer *out, const tap_mfam_t *f, int om)
{
    static const char *const  types[] = { "counter", "gauge", "histogram" };
    const tap_mser_t         *s;
    const char               *type;
    char                      num[TAP_MNUM_LEN], le[TAP_MNUM_LEN];
    size_t                    namelen, b;
    uint64_t                  cum;

    type = types[f->def->kind];
    namelen = om ? f->omlen : strlen(f->prom);

    if (om) {
        evbuffer_add_printf(out, "# TYPE %.*s %s\n", (int) namelen, f->prom, type);
        if (f->unit != NULL && tap_mname_ends(f->prom, f->omlen, f->unit)) {
            evbuffer_add_printf(out, "# UNIT %.*s %s\n", (int) namelen, f->prom, f->unit);
        }
    }
    evbuffer_add_printf(out, "# HELP %.*s ", (int) namelen, f->prom);
    tap_mprom_escape(out, f->def->help, strlen(f->def->help), om);
    evbuffer_add(out, "\n", 1);
    if (!om) {
        evbuffer_add_printf(out, "# TYPE %.*s %s\n", (int) namelen, f->prom, type);
    }

    for (s = f->head; s != NULL; s = s->next) {
        if (f->def->kind != TAP_METRIC_HISTOGRAM) {
            tap_mprom_sample(out, f, f->prom, "", s, NULL, tap_mnum(num, s->value, 0));
            continue;
        }
        cum = 0;
        for (b = 0; b < f->def->nbounds; b++) {
            cum += s->buckets[b];
            snprintf(num, sizeof(num), "%llu", (unsigned long long) cum);
            tap_mprom_sample(out, f, f->prom, "_bucket", s, tap_mnum(le, f->def->bounds[b], om),
                             num);
        }
        snprintf(num, sizeof(num), "%llu", (unsigned long long) s->count);
        tap_mprom_sample(out, f, f->prom, "_bucket", s, "+Inf", num);
        tap_mprom_sample(out, f, f->prom, "_sum", s, NULL, tap_mnum(le, s->sum, 0));
        tap_mprom_sample(out, f, f->prom, "_count", s, NULL, num);
    }
}


void
tap_mreg_prometheus(tap_mreg_t *r, struct evbuffer *out, int openmetrics)
{
    size_t  i;

    if (r->on_collect != NULL) {
        r->on_collect(r, r->collect_arg);
    }
    for (i = 0; i <= r->nfams; i++) {
        tap_mprom_family(out, tap_mreg_fam(r, i), openmetrics);
    }
    if (openmetrics) {
        evbuffer_add(out, "# EOF\n", 6);
    }
}


/*
 * OTLP
 */

static int64_t
tap_mint(double v)
{
    if (v >= 9.2233720368547748e18) {
        return INT64_MAX;
    }
    if (v <= -9.2233720368547758e18) {
        return INT64_MIN;
    }
    return (int64_t) llround(v);
}


/* The attributes of s: its present labels under their OpenTelemetry names. */
static void
tap_motlp_attrs(tap_arena_t *a, const tap_mfam_t *f, const tap_mser_t *s,
    tap_pb_kv_t ***kv, size_t *n)
{
    tap_attrs_t  at;
    size_t       i;

    tap_attrs_init(&at, a);
    for (i = 0; i < f->def->nlabels; i++) {
        if (s->v[i] != NULL) {
            tap_attr_strn(&at, f->def->labels[i], s->v[i], s->len[i]);
        }
    }
    *kv = at.kv;
    *n = at.n;
}


/* A counter's or gauge's point for s, or NULL (delta: no change; or out of memory). */
static tap_pb_ndp_t *
tap_motlp_number(tap_arena_t *a, const tap_mfam_t *f, const tap_mser_t *s,
    uint64_t start_ns, uint64_t now_ns, int delta)
{
    tap_pb_ndp_t  *p;
    double         v;

    v = s->value;
    if (delta && f->def->kind == TAP_METRIC_COUNTER) {
        /* a cumulative value that went down was reset: all of it is new */
        v = s->value >= s->sent ? s->value - s->sent : s->value;
        if (v == 0.0) {
            return NULL;
        }
    }

    p = TAP_ARENA_NEW(a, tap_pb_ndp_t);
    if (p == NULL) {
        return NULL;
    }
    opentelemetry__proto__metrics__v1__number_data_point__init(p);
    tap_motlp_attrs(a, f, s, &p->attributes, &p->n_attributes);
    if (f->def->kind == TAP_METRIC_COUNTER) {
        p->has_start_time_unix_nano = 1;
        p->start_time_unix_nano = start_ns;
    }
    p->has_time_unix_nano = 1;
    p->time_unix_nano = now_ns;
    if (f->def->integer) {
        p->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
        p->as_int = tap_mint(v);
    } else {
        p->value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_DOUBLE;
        p->as_double = v;
    }
    return p;
}


/* A histogram's point for s, or NULL (delta: no observation; or out of memory). */
static tap_pb_hdp_t *
tap_motlp_hist(tap_arena_t *a, const tap_mfam_t *f, const tap_mser_t *s,
    uint64_t start_ns, uint64_t now_ns, int delta)
{
    tap_pb_hdp_t  *p;
    uint64_t       count;
    size_t         nb, b;

    count = delta ? s->count - s->sent_count : s->count;
    if (delta && count == 0) {
        return NULL;
    }

    nb = f->def->nbounds + 1;
    p = TAP_ARENA_NEW(a, tap_pb_hdp_t);
    if (p == NULL) {
        return NULL;
    }
    opentelemetry__proto__metrics__v1__histogram_data_point__init(p);
    p->bucket_counts = tap_arena_alloc(a, nb * sizeof(uint64_t));
    if (p->bucket_counts == NULL) {
        return NULL;
    }
    tap_motlp_attrs(a, f, s, &p->attributes, &p->n_attributes);
    p->has_start_time_unix_nano = 1;
    p->start_time_unix_nano = start_ns;
    p->has_time_unix_nano = 1;
    p->time_unix_nano = now_ns;
    p->has_count = 1;
    p->count = count;
    p->has_sum = 1;
    p->sum = delta ? s->isum : s->sum;
    for (b = 0; b < nb; b++) {
        p->bucket_counts[b] = s->buckets[b] - (delta ? s->sent_buckets[b] : 0);
    }
    p->n_bucket_counts = nb;
    p->explicit_bounds = (double *) f->def->bounds;     /* static, outlives the message */
    p->n_explicit_bounds = f->def->nbounds;
    if (count > 0) {
        /* an interval extreme of a histogram set from outside may be unknown */
        p->min = delta ? s->imin : s->min;
        p->has_min = !isnan(p->min);
        p->max = delta ? s->imax : s->max;
        p->has_max = !isnan(p->max);
    }
    return p;
}


/* The Metric of f, or NULL when it has no point (or out of memory); *np gets its points. */
static tap_pb_metric_t *
tap_motlp_metric(tap_arena_t *a, const tap_mfam_t *f, uint64_t start_ns, uint64_t now_ns,
    int delta, size_t *np)
{
    tap_pb_metric_t   *m;
    tap_pb_sum_t      *sum;
    tap_pb_gauge_t    *gauge;
    tap_pb_hist_t     *hist;
    tap_pb_ndp_t     **ndp;
    tap_pb_hdp_t     **hdp;
    const tap_mser_t  *s;
    size_t             n;
    int                temp;

    *np = 0;
    if (f->n == 0 || (m = TAP_ARENA_NEW(a, tap_pb_metric_t)) == NULL) {
        return NULL;
    }
    opentelemetry__proto__metrics__v1__metric__init(m);
    m->name = (char *) f->def->name;
    m->description = (char *) f->def->help;
    m->unit = f->def->unit != NULL && f->def->unit[0] != '\0' ? (char *) f->def->unit : NULL;
    temp = delta ? TAP_MTEMP(DELTA) : TAP_MTEMP(CUMULATIVE);

    n = 0;
    if (f->def->kind == TAP_METRIC_HISTOGRAM) {
        hist = TAP_ARENA_NEW(a, tap_pb_hist_t);
        hdp = tap_arena_alloc(a, f->n * sizeof(tap_pb_hdp_t *));
        if (hist == NULL || hdp == NULL) {
            return NULL;
        }
        for (s = f->head; s != NULL; s = s->next) {
            if ((hdp[n] = tap_motlp_hist(a, f, s, start_ns, now_ns, delta)) != NULL) {
                n++;
            }
        }
        opentelemetry__proto__metrics__v1__histogram__init(hist);
        hist->data_points = hdp;
        hist->n_data_points = n;
        hist->has_aggregation_temporality = 1;
        hist->aggregation_temporality = temp;
        m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM;
        m->histogram = hist;

    } else {
        ndp = tap_arena_alloc(a, f->n * sizeof(tap_pb_ndp_t *));
        if (ndp == NULL) {
            return NULL;
        }
        for (s = f->head; s != NULL; s = s->next) {
            if ((ndp[n] = tap_motlp_number(a, f, s, start_ns, now_ns, delta)) != NULL) {
                n++;
            }
        }
        if (f->def->kind == TAP_METRIC_COUNTER) {
            if ((sum = TAP_ARENA_NEW(a, tap_pb_sum_t)) == NULL) {
                return NULL;
            }
            opentelemetry__proto__metrics__v1__sum__init(sum);
            sum->data_points = ndp;
            sum->n_data_points = n;
            sum->has_aggregation_temporality = 1;
            sum->aggregation_temporality = temp;
            sum->has_is_monotonic = 1;
            sum->is_monotonic = 1;
            m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM;
            m->sum = sum;
        } else {
            if ((gauge = TAP_ARENA_NEW(a, tap_pb_gauge_t)) == NULL) {
                return NULL;
            }
            opentelemetry__proto__metrics__v1__gauge__init(gauge);
            gauge->data_points = ndp;
            gauge->n_data_points = n;
            m->data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_GAUGE;
            m->gauge = gauge;
        }
    }

    *np = n;
    return n > 0 ? m : NULL;
}


/* After a delta export was built: what it sent becomes the base of the next. */
static void
tap_motlp_commit(tap_mreg_t *r, uint64_t now_ns)
{
    tap_mfam_t  *f;
    tap_mser_t  *s;
    size_t       i, nb;

    for (i = 0; i <= r->nfams; i++) {
        f = tap_mreg_fam(r, i);
        nb = f->def->kind == TAP_METRIC_HISTOGRAM ? f->def->nbounds + 1 : 0;
        for (s = f->head; s != NULL; s = s->next) {
            s->sent = s->value;
            s->sent_count = s->count;
            if (nb > 0) {
                memcpy(s->sent_buckets, s->buckets, nb * sizeof(uint64_t));
            }
            s->isum = 0.0;
            s->imin = INFINITY;
            s->imax = -INFINITY;
        }
    }
    r->last_ns = now_ns;
}


tap_pb_rmetrics_t *
tap_mreg_otlp(tap_mreg_t *r, tap_arena_t *a, tap_pb_resource_t *res,
    uint64_t now_ns, int delta, size_t *npoints)
{
    tap_pb_rmetrics_t   *rm;
    tap_pb_smetrics_t   *sm, **smp;
    tap_pb_metric_t    **metrics;
    uint64_t             start_ns;
    size_t               i, n, np, total;

    *npoints = 0;
    if (r->on_collect != NULL) {
        r->on_collect(r, r->collect_arg);
    }

    rm = TAP_ARENA_NEW(a, tap_pb_rmetrics_t);
    sm = TAP_ARENA_NEW(a, tap_pb_smetrics_t);
    smp = tap_arena_alloc(a, sizeof(tap_pb_smetrics_t *));
    metrics = tap_arena_alloc(a, (r->nfams + 1) * sizeof(tap_pb_metric_t *));
    if (rm == NULL || sm == NULL || smp == NULL || metrics == NULL) {
        return NULL;
    }

    start_ns = delta ? r->last_ns : r->start_ns;
    n = 0;
    total = 0;
    for (i = 0; i <= r->nfams; i++) {
        metrics[n] = tap_motlp_metric(a, tap_mreg_fam(r, i), start_ns, now_ns, delta, &np);
        if (metrics[n] != NULL) {
            n++;
            total += np;
        }
    }

    opentelemetry__proto__metrics__v1__scope_metrics__init(sm);
    sm->scope = tap_pb_scope(a);
    sm->metrics = metrics;
    sm->n_metrics = n;
    smp[0] = sm;
    opentelemetry__proto__metrics__v1__resource_metrics__init(rm);
    rm->resource = res;
    rm->scope_metrics = smp;
    rm->n_scope_metrics = 1;

    if (a->failed || total == 0) {
        return NULL;
    }
    if (delta) {
        tap_motlp_commit(r, now_ns);
    }
    *npoints = total;
    return rm;
}
