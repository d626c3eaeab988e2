/*
 * export.h: OTLP/HTTP exporters.
 *
 * An exporter sends the request bodies of one signal to one URL.  It owns a
 * bounded queue of bodies, one keep-alive HTTP/1.1 connection (libevent's
 * evhttp client; https:// through OpenSSL with verification), and sends one
 * body at a time.  Everything runs on the control thread's event_base; no
 * call here blocks.
 *
 * Outcomes, per OTLP/HTTP: 2xx is success (a partial_success in the response
 * counts its rejected items); 429, 502, 503, 504, a connection error, a
 * timeout or a connection closed without an answer are retried with
 * exponential backoff and full jitter, Retry-After (seconds or HTTP-date)
 * taking precedence, up to max_attempts; anything else fails at once.  A body
 * that cannot be queued (queue full, in items) is dropped and counted.  Fan
 * out to several endpoints by giving each the same body: each exporter has
 * its own queue, so a dead endpoint only fills its own.
 */

#ifndef TAP_TELEMETRY_EXPORT_H
#define TAP_TELEMETRY_EXPORT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <protobuf-c/protobuf-c.h>

typedef enum {
    TAP_SIGNAL_TRACES = 0,
    TAP_SIGNAL_METRICS,
    TAP_SIGNAL_LOGS,
    TAP_SIGNAL_N,
} tap_signal_e;

extern const char *const  tap_signal_names[TAP_SIGNAL_N];   /* "traces", "metrics", "logs" */

/*
 * A request body, shared by the exporters it is fanned out to: len bytes at
 * data, inside mem.  A body with a home (spare) goes back there when its last
 * reference goes, if the slot is empty, to be filled again: a steady stream
 * of batches then reuses two buffers instead of asking for fresh pages each
 * time.
 */
typedef struct tap_body_s  tap_body_t;

struct tap_body_s {
    unsigned      refs;
    unsigned      items;               /* spans, data points or log records inside */
    unsigned      gzip:1;              /* data is gzip-compressed */
    size_t        len;
    uint8_t      *data;
    tap_body_t  **spare;               /* where to wait for reuse, or NULL */
    size_t        cap;                 /* bytes in mem */
    uint8_t       mem[];
};

/* An empty body (data at mem, len 0) with room for cap bytes, or NULL. */
tap_body_t *tap_body_new(size_t cap);
/*
 * Makes room for cap bytes in all, data at mem; *b must hold the only
 * reference.  Returns TAP_OK or TAP_ERROR.
 */
int tap_body_grow(tap_body_t **b, size_t cap);
/*
 * Packs msg (an Export*ServiceRequest), gzip-compressed when gzip is set.
 * Returns a body holding one reference, or NULL when out of memory.
 */
tap_body_t *tap_body_pack(const ProtobufCMessage *msg, unsigned items, int gzip);
/* A new body holding data[0..len) gzip-compressed, or NULL. */
tap_body_t *tap_body_gzip(const uint8_t *data, size_t len, unsigned items);
void tap_body_ref(tap_body_t *b);
void tap_body_unref(tap_body_t *b);

typedef struct tap_export_conf_s {
    char *const   *headers;            /* name, value, name, value... sent with every request */
    size_t         nheaders;           /* entries in headers (2 per header) */
    int64_t        timeout_ms;         /* one request, connect included */
    unsigned       max_queue;          /* items queued (waiting or being sent) at most */
    unsigned       max_attempts;       /* sends of one body, first included */
    int64_t        backoff_ms;         /* first retry wait */
    int64_t        backoff_max_ms;     /* longest retry wait (Retry-After included) */
    const char    *ca_file;            /* https: PEM CAs; NULL: the system's */
    unsigned       verify:1;           /* https: verify certificate and host name */
    const char    *cert;               /* https: client certificate (mutual TLS), or NULL */
    const char    *key;
} tap_export_conf_t;

/* Counters of one exporter, in items (spans, points, records). */
typedef struct tap_export_stats_s {
    uint64_t  queued;                  /* now waiting or in flight (a gauge) */
    uint64_t  exported;                /* accepted by the endpoint */
    uint64_t  rejected;                /* refused in a partial success */
    uint64_t  dropped;                 /* never sent: queue full, or shut down */
    uint64_t  failed;                  /* sent and refused, or out of attempts */
    uint64_t  retried;                 /* resends (in items) */
    uint64_t  requests;                /* HTTP requests sent */
} tap_export_stats_t;

typedef struct tap_exporter_s  tap_exporter_t;

/*
 * A new exporter for url (http:// or https://, path included, used as is).
 * conf is copied; the strings it points to must outlive the exporter.
 * Returns NULL with an allocated message in *err.
 */
tap_exporter_t *tap_exporter_new(struct event_base *base, tap_signal_e signal, const char *url,
    const tap_export_conf_t *conf, char **err);

/* Queues b (taking a reference).  TAP_OK, or TAP_DECLINED when dropped (counted). */
int tap_exporter_send(tap_exporter_t *e, tap_body_t *b);

const char *tap_exporter_url(const tap_exporter_t *e);
tap_signal_e tap_exporter_signal(const tap_exporter_t *e);
void tap_exporter_stats(const tap_exporter_t *e, tap_export_stats_t *out);

/* 1 while bodies are queued or in flight. */
int tap_exporter_busy(const tap_exporter_t *e);

/* Drops what is queued (counted as dropped), cancels the request in flight, frees. */
void tap_exporter_free(tap_exporter_t *e);

/*
 * The parsers of what a collector sends back (exported for tests and the
 * fuzz target).  tap_export_parse_retry_after: a Retry-After value, delay
 * seconds or an HTTP-date (against now), as milliseconds capped at cap_ms,
 * or -1 when absent or not understood.  tap_export_parse_response: the
 * items an Export*ServiceResponse (gzip-compressed when gzip is set)
 * reports as rejected in its partial_success; 0 when there are none or the
 * body cannot be read.
 */
int64_t tap_export_parse_retry_after(const char *v, int64_t cap_ms, time_t now);
uint64_t tap_export_parse_response(tap_signal_e signal, const uint8_t *data, size_t len,
    int gzip);

#endif /* TAP_TELEMETRY_EXPORT_H */
