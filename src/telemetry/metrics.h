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
 * Series are created on first use and never removed.  Cardinality is capped
 * per family and label: a value beyond max_label_values distinct values of
 * that label is folded into "other", and each fold is counted (the registry's
 * own family infertap.metrics.label_overflow, by metric).  Values come from
 * traffic (model names, upstream addresses) and must never carry content.
 *
 * The registry belongs to one thread (the control thread): nothing here takes
 * a lock.  Values other threads keep (worker counters) are copied in with
 * tap_metric_set() just before a read, by the registry's collect callback.
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
