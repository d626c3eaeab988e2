/*
 * telemetry.h: from finished exchanges to metrics, spans and logs.
 *
 * Workers hand each finished exchange to the telemetry side through a ring
 * of their own (single producer, single consumer, no lock): the worker copies
 * the record into a free slot, or drops it and counts the drop when the ring
 * is full.  It never waits.  Everything else runs on the control thread
 * (the one that runs the admin server), which drains the rings every few
 * milliseconds and, per exchange:
 *
 *   - updates the metric registry (metrics.h): GenAI histograms, infertap's
 *     own; metrics and logs are never sampled;
 *   - counts it in the prompt and template tables (stats/prompts.h), which
 *     flag anomalies: a resource use far from the prompt's own mean, or a
 *     deterministic request with a new distinct completion;
 *   - decides tail sampling: the head sampler's decision (made on the worker,
 *     carried in the traceparent sent upstream) or a tail rule (error, slow,
 *     many tokens, anomaly) keeps the exchange's spans;
 *   - builds the SERVER and CLIENT spans and the log record into the current
 *     batches, which are packed (and gzip-compressed) once when full or when
 *     their delay expires, and handed to every exporter of the signal
 *     (export.h): each endpoint has its own bounded queue.
 *
 * Metrics are exported every metrics_interval and read by the admin server's
 * /metrics, from the same registry.
 */

#ifndef TAP_TELEMETRY_H
#define TAP_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "exchange.h"
#include "telemetry/export.h"
#include "telemetry/metrics.h"
#include "stats/prompts.h"

#define TAP_TREC_PATH_MAX  256

struct tap_alog_s;

/* The resolved telemetry settings (from tap_conf_t, see settings.c). */
typedef struct tap_tsettings_s {
    const char        *service_name;
    char *const       *resource;           /* key, value, key, value... */
    size_t             nresource;
    char             **urls[TAP_SIGNAL_N]; /* full URLs per signal */
    size_t             nurls[TAP_SIGNAL_N];
    tap_export_conf_t  export;
    unsigned           gzip:1;
    unsigned           delta:1;            /* OTLP metric temporality */
    int64_t            metrics_interval_ms;
    int64_t            traces_delay_ms;
    unsigned           traces_max_queue;
    unsigned           traces_max_batch;
    int64_t            logs_delay_ms;
    unsigned           logs_max_queue;
    unsigned           logs_max_batch;
    unsigned           queue_size;         /* per worker ring, rounded up to a power of 2 */
    unsigned           max_label_values;
    unsigned           tail_errors:1;
    unsigned           tail_anomalies:1;
    int64_t            tail_slower_than_ms;  /* 0: off */
    int64_t            tail_min_tokens;      /* 0: off */
    unsigned           analysis:1;           /* prompt tables and anomalies */
    unsigned           prompt_capacity;      /* prompt table entries */
    unsigned           prefix_capacity;      /* template (prefix) table entries */
    double             anomaly_k;            /* standard deviations */
    unsigned           anomaly_min_samples;
} tap_tsettings_t;

/* One finished exchange, as the telemetry side keeps it. */
typedef struct tap_trec_s {
    tap_exchange_t  ex;                /* ex.path points into path; gen.text[] are NULL */
    char            path[TAP_TREC_PATH_MAX];
} tap_trec_t;

/* A worker's ring. */
typedef struct tap_tring_s {
    tap_trec_t  *slots;
    uint64_t     mask;
    uint64_t     head __attribute__((aligned(64)));   /* next slot to fill: worker */
    uint64_t     tail __attribute__((aligned(64)));   /* next slot to read: control thread */
    uint64_t     dropped __attribute__((aligned(64))); /* worker: full ring */
} tap_tring_t;

/* The recommended bucket bounds, in seconds, shared with the proxy's latency families. */
extern const double  tap_b_duration[14];
extern const double  tap_b_ttft[16];
extern const double  tap_b_tpot[13];
extern const double  tap_b_overhead[13];

/* Copies ex into the ring.  TAP_OK, or TAP_DECLINED when full (counted). */
int tap_tring_push(tap_tring_t *r, const tap_exchange_t *ex);

typedef struct tap_tel_s  tap_tel_t;

/*
 * A new telemetry hub on the control thread's base, with one ring per
 * worker.  ts must outlive it.  Returns NULL with an allocated message in
 * *err.
 */
tap_tel_t *tap_tel_new(struct event_base *base, const tap_tsettings_t *ts, unsigned nrings,
    char **err);
tap_tring_t *tap_tel_ring(tap_tel_t *t, unsigned i);
tap_mreg_t *tap_tel_registry(tap_tel_t *t);

/*
 * The access log: with it set, the hub writes each exchange's line (after the
 * analysis, so that the line carries its anomaly flag); a worker writes the
 * line itself only when its ring is full.  tap_tel_access_log_dropped: lines
 * lost by the hub's buffer (full, or a write error).
 */
int tap_tel_access_log(tap_tel_t *t, struct tap_alog_s *log);
uint64_t tap_tel_access_log_dropped(tap_tel_t *t);

/* fn runs before every read of the registry, to copy in values kept elsewhere. */
void tap_tel_on_collect_hook(tap_tel_t *t, void (*fn)(tap_mreg_t *r, void *arg), void *arg);

/* Reads the rings now (the timer does it every few milliseconds). */
void tap_tel_drain(tap_tel_t *t);

/* /metrics: drains, then writes Prometheus text (or OpenMetrics). */
void tap_tel_prometheus(tap_tel_t *t, struct evbuffer *out, int openmetrics);

/*
 * Last drain, flush of every batch and one last metric export, then runs
 * the base until the exporters are idle or timeout_ms passed; then frees.
 */
void tap_tel_shutdown(tap_tel_t *t, int64_t timeout_ms);

/*
 * /stats/prompts and /stats/templates: drains, then writes the ranking the
 * query asks for.  Returns TAP_OK, or TAP_ERROR with a static message in
 * *err for a bad query.
 */
int tap_tel_prompts_json(tap_tel_t *t, int templates, const char *query, size_t len,
    struct evbuffer *out, const char **err);

/* One item of a batch: a span or a log record, encoded (spans.c). */
typedef struct tap_tel_item_s {
    const uint8_t  *data;
    size_t          len;
} tap_tel_item_t;

/* The spans (up to two) and the log record of one exchange (spans.c); an may be NULL.
 * They return how many items they wrote to out. */
size_t tap_tel_spans(tap_arena_t *a, const tap_trec_t *r, const tap_prompt_anomaly_t *an,
    const tap_prompt_t *prompt, tap_tel_item_t *out);
size_t tap_tel_log(tap_arena_t *a, const tap_trec_t *r, const tap_prompt_anomaly_t *an,
    tap_tel_item_t *out);

/*
 * The error.type of an exchange, or NULL when it succeeded: infertap's own
 * error, else the status (5xx; 4xx too for the client side: the CLIENT span
 * and the GenAI metrics), else (client side) the model server's error object.
 */
const char *tap_tel_error_type(const tap_exchange_t *ex, int client, char *buf, size_t size);

/* An upstream's "host:port" or "[v6]:port" into host and port ("" when not of that form). */
void tap_tel_split_addr(const char *up, char *host, size_t hsize, char *port, size_t psize);

/* Realtime nanoseconds of a monotonic stamp of the exchange (0 stays 0). */
static inline uint64_t
tap_trec_wall(const tap_exchange_t *ex, int64_t mono)
{
    if (mono == 0) {
        return 0;
    }
    return (uint64_t) (ex->wall_t0_ns + (mono - ex->t0));
}

#endif /* TAP_TELEMETRY_H */
