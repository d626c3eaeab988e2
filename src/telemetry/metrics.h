/*
 * metrics.h: infertap's metric registry, one source for Prometheus and OTLP.
 *
 * A family is declared once with its OpenTelemetry name ("gen_ai.client.
 * operation.duration"), UCUM unit, description, instrument kind and label
 * names.  Its Prometheus name follows the OpenTelemetry compatibility rules:
 * characters outside [a-zA-Z0-9_:] become '_', repeated '_' collapse, the
 * unit becomes a word suffix ("s" -> "_seconds", "{token}" -> nothing) and
 * monotonic counters end in "_total".  Label names get the same sanitizing.
 *
 * Series are created on first use and removed only by tap_metric_clear(),
 * which empties a whole family (one refreshed at each read).  Cardinality
 * is capped per family and label: a value beyond max_label_values distinct
 * values of that label is folded into "other", and each fold is counted (the
 * registry's own family infertap.metrics.label_overflow, by metric).  Values come from
 * traffic (model names, upstream addresses) and must never carry content.
 *
 * The registry belongs to one thread (the control thread): nothing here takes
 * a lock.  Values other threads keep (worker counters) are copied in with
 * tap_metric_set() or tap_metric_set_histogram() just before a read, by the
 * registry's collect callback.
 *
 * Temporality: values are kept cumulative since start.  Prometheus always
 * reads them so; an OTLP export with delta temporality sends the change since
 * the previous OTLP export (start time = the previous export time) and keeps
 * what it sent per series to compute the next.
 */

#ifndef TAP_TELEMETRY_METRICS_H
#define TAP_TELEMETRY_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

#include "telemetry/pb.h"

#define TAP_METRIC_MAX_LABELS   8
#define TAP_METRIC_MAX_BOUNDS   32
#define TAP_METRIC_VALUE_MAX    128    /* bytes of a label value kept; longer ones are cut */
#define TAP_METRIC_OTHER        "other"  /* the value that replaces one beyond the cap */

typedef enum {
    TAP_METRIC_COUNTER = 0,            /* monotonic sum */
    TAP_METRIC_GAUGE,                  /* last value */
    TAP_METRIC_HISTOGRAM,              /* explicit buckets, with sum, count, min, max */
} tap_metric_kind_e;

typedef struct tap_mreg_s  tap_mreg_t;
typedef struct tap_mfam_s  tap_mfam_t;
typedef struct tap_mser_s  tap_mser_t;

typedef struct tap_mfam_def_s {
    const char          *name;         /* OpenTelemetry name, e.g. "gen_ai.client.token.usage" */
    const char          *unit;         /* UCUM: "s", "{token}", "By", "1", "" */
    const char          *help;         /* one sentence */
    tap_metric_kind_e    kind;
    unsigned             integer:1;    /* counters and gauges: as_int points; histograms: int values */
    const double        *bounds;       /* histograms: increasing explicit bounds */
    size_t               nbounds;      /* <= TAP_METRIC_MAX_BOUNDS */
    const char *const   *labels;       /* OpenTelemetry attribute names, e.g. "gen_ai.token.type" */
    size_t               nlabels;      /* <= TAP_METRIC_MAX_LABELS */
} tap_mfam_def_t;

/*
 * A new registry.  max_label_values caps the distinct values of each label of
 * each family (>= 1).  start_ns: the process start, realtime nanoseconds
 * (the start time of cumulative points).
 */
tap_mreg_t *tap_mreg_new(unsigned max_label_values, uint64_t start_ns);
void tap_mreg_free(tap_mreg_t *r);

/* Called at the start of every read (Prometheus or OTLP), to copy values in. */
void tap_mreg_on_collect(tap_mreg_t *r, void (*fn)(tap_mreg_t *r, void *arg), void *arg);

/*
 * Declares a family; def and everything it points to must outlive the
 * registry (static tables).  Families are read out in declaration order.
 * Returns NULL when out of memory or when the definition is invalid.
 */
tap_mfam_t *tap_mreg_add(tap_mreg_t *r, const tap_mfam_def_t *def);

/*
 * Recording.  values: one per label, in the family's label order; a NULL or
 * "" value leaves that label out of the series (OTLP attribute absent,
 * Prometheus label absent); values may be NULL when every label is absent.
 * A value is copied, cut to TAP_METRIC_VALUE_MAX bytes on a character
 * boundary, with each byte that is not well-formed UTF-8 replaced by '?'.
 * Each returns quietly when out of memory, and ignores a call that does not
 * fit the family: tap_metric_add() and tap_metric_set() on counters and
 * gauges (on a gauge, add moves the value either way), observe on
 * histograms; a NaN anywhere, and a negative value for a counter.  The
 * overflow count is one per recording that had at least one value folded.
 */
void tap_metric_add(tap_mfam_t *f, const char *const *values, double v);      /* counter += v */
void tap_metric_set(tap_mfam_t *f, const char *const *values, double v);      /* gauge, or a counter's cumulative value */
void tap_metric_observe(tap_mfam_t *f, const char *const *values, double v);  /* histogram */

/*
 * For a caller that records the same label values into a histogram again
 * and again (the telemetry hub, per exchange): tap_metric_observe_keep()
 * records like tap_metric_observe() and returns the series v went to, which
 * tap_metric_observe_at() records into again without looking the values up.
 * It returns NULL when v was ignored, when out of memory, and when a value
 * was folded into "other": each such recording must go through the lookup,
 * which counts it in infertap.metrics.label_overflow.  A series stays valid
 * until tap_metric_clear() of its family.  tap_metric_observe_at() ignores a
 * NaN v, like tap_metric_observe().
 */
tap_mser_t *tap_metric_observe_keep(tap_mfam_t *f, const char *const *values, double v);
void tap_metric_observe_at(tap_mfam_t *f, tap_mser_t *s, double v);

/*
 * A histogram's cumulative state, kept elsewhere (latency shards of the
 * workers, merged), copied in like tap_metric_set() does for a counter.
 * counts: one per bucket, nbounds + 1 of them, per bucket (not cumulative;
 * bucket i holds (bounds[i-1], bounds[i]], the last one what is above the
 * last bound); count: their sum; sum, min and max of the values counted
 * (min and max are ignored when count is 0).  Ignored: a call on a family
 * that is not a histogram, counts NULL, counts that do not add up to count,
 * a NaN sum, and when count > 0 a NaN min or max or min > max.
 * With delta temporality the series goes out as observed ones do: the change
 * since the previous OTLP export, left out when the count did not move.  A
 * count or a bucket lower than the previous set is a reset: the whole new
 * state is the change.  The interval's min (max) is sent when known: when a
 * set since the previous export lowered (raised) the cumulative one.
 */
void tap_metric_set_histogram(tap_mfam_t *f, const char *const *values, const uint64_t *counts,
    uint64_t count, double sum, double min, double max);

/*
 * Removes every series of a family, for one refreshed completely at each
 * read ("the top 10 prompts now"): series that are not set again are gone
 * from both read-outs instead of keeping a stale value.  The family's
 * distinct label values are forgotten too (the cap counts afresh), and so is
 * what delta exports sent of those series: a series set again after a clear
 * is new (a counter's next delta point is its whole value; its start time is
 * still the registry's start).  Recordings folded before stay counted in
 * infertap.metrics.label_overflow.  Meant for the collect callback, before
 * the values are set again; the memory of the series is freed and that of
 * the tables reused, so repeated clear and set cycles do not grow it.
 */
void tap_metric_clear(tap_mfam_t *f);

/*
 * Bytes the registry holds for series: the series, their lookup tables and
 * the tables of distinct label values (what grows with traffic; families
 * and their names are not counted).
 */
size_t tap_mreg_bytes(const tap_mreg_t *r);

/*
 * The Prometheus text format 0.0.4 (openmetrics = 0), or OpenMetrics 1.0.0
 * text ending in "# EOF" (openmetrics = 1).  Families with no series yet are
 * still announced (HELP, TYPE).
 */
void tap_mreg_prometheus(tap_mreg_t *r, struct evbuffer *out, int openmetrics);

/*
 * One ResourceMetrics with one ScopeMetrics holding every family that has a
 * series, built in arena a; now_ns: realtime of this export.  *npoints gets
 * the number of data points.  Returns NULL when out of memory or when there
 * is no point at all.  With delta set the registry remembers what it sent,
 * so call it once per export interval (not per endpoint).
 */
tap_pb_rmetrics_t *tap_mreg_otlp(tap_mreg_t *r, tap_arena_t *a, tap_pb_resource_t *res,
    uint64_t now_ns, int delta, size_t *npoints);

#endif /* TAP_TELEMETRY_METRICS_H */
