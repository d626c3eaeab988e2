/*
 * conf.c: the configuration table and the layers that fill it.
 *
 * Every key lives in one static table (tap_conf_items) giving its dotted name, its type, where it
 * sits in tap_conf_t, its default as text and a description; defaults, the YAML file, the
 * environment and flags all go through the same setter, so a default is parsed exactly like a
 * user's value and `infertap -T` prints the same table the parser uses.  Adding a key is one line
 * here plus a field in conf.h.  Values are checked as they are set (so a file error names its
 * line); what depends on several keys is checked afterwards by tap_conf_check().  Each item
 * remembers the layer and place it was last set from: that gives messages their "FILE:LINE" and
 * lets repeated flags build a list while a lower layer's list is replaced.  The YAML reader uses
 * libyaml's event API, so nesting depth and memory stay bounded by the key length, not the file.
 * The value parsers (durations, sizes, addresses, URLs, key=value lists) come last; they are
 * exported because the proxy and the simulator read the same notations.
 */

#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <yaml.h>

#include "conf.h"
#include "filter.h"
#include "proxy/headers.h"

#define TAP_CONF_KEY_MAX 128

#define TAP_CONF_O(f) offsetof(tap_conf_t, f)

#define TAP_CONF_I_STR(k, f, d, chk, desc)                                                         \
    {                                                                                              \
        k, TAP_CONF_STR, TAP_CONF_O(f), d, desc, 0, 0, NULL, chk                                   \
    }
#define TAP_CONF_I_INT(k, f, d, lo, hi, desc)                                                      \
    {                                                                                              \
        k, TAP_CONF_INT, TAP_CONF_O(f), d, desc, lo, hi, NULL, NULL                                \
    }
#define TAP_CONF_I_DBL(k, f, d, lo, hi, desc)                                                      \
    {                                                                                              \
        k, TAP_CONF_DOUBLE, TAP_CONF_O(f), d, desc, lo, hi, NULL, NULL                             \
    }
#define TAP_CONF_I_BOOL(k, f, d, desc)                                                             \
    {                                                                                              \
        k, TAP_CONF_BOOL, TAP_CONF_O(f), d, desc, 0, 0, NULL, NULL                                 \
    }
#define TAP_CONF_I_DUR(k, f, d, lo, desc)                                                          \
    {                                                                                              \
        k, TAP_CONF_DURATION, TAP_CONF_O(f), d, desc, lo, 0, NULL, NULL                            \
    }
#define TAP_CONF_I_SIZE(k, f, d, lo, desc)                                                         \
    {                                                                                              \
        k, TAP_CONF_SIZE, TAP_CONF_O(f), d, desc, lo, 0, NULL, NULL                                \
    }
#define TAP_CONF_I_ENUM(k, f, d, w, desc)                                                          \
    {                                                                                              \
        k, TAP_CONF_ENUM, TAP_CONF_O(f), d, desc, 0, 0, w, NULL                                    \
    }
#define TAP_CONF_I_LIST(k, f, d, chk, desc)                                                        \
    {                                                                                              \
        k, TAP_CONF_LIST, TAP_CONF_O(f), d, desc, 0, 0, NULL, chk                                  \
    }

typedef enum {
    TAP_CONF_STR = 0,
    TAP_CONF_INT,
    TAP_CONF_BOOL,
    TAP_CONF_DURATION,
    TAP_CONF_SIZE,
    TAP_CONF_ENUM,
    TAP_CONF_LIST,
    TAP_CONF_DOUBLE,
} tap_conf_type_e;

/* Checks one string or list element; returns TAP_OK or TAP_ERROR with *msg allocated. */
typedef int (*tap_conf_check_cb)(const char *value, char **msg);

typedef struct tap_conf_item_s {
    const char *key;
    tap_conf_type_e type;
    size_t offset;
    const char *def; /* default, as it would be written in the file */
    const char *desc;
    double min;               /* INT, DOUBLE; DURATION and SIZE: lower bound */
    double max;               /* INT, DOUBLE */
    const char *const *words; /* ENUM: NULL-terminated, index = stored value */
    tap_conf_check_cb check;  /* STR, LIST: optional */
} tap_conf_item_t;

typedef struct tap_conf_otel_s {
    const char *var;
    const char *key;
    unsigned ms : 1; /* a bare number of milliseconds */
} tap_conf_otel_t;

static char *tap_conf_strdup(const char *s);
static char *tap_conf_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void tap_conf_list_add(tap_conf_list_t *l, const char *s);
static int tap_conf_check_addr(const char *v, char **msg);
static int tap_conf_check_admin(const char *v, char **msg);
static int tap_conf_check_url(const char *v, char **msg);
static int tap_conf_check_url_opt(const char *v, char **msg);
static int tap_conf_check_pairs(const char *v, char **msg);
static int tap_conf_check_token(const char *v, char **msg);
static int tap_conf_check_path(const char *v, char **msg);
static int tap_conf_check_filters(const char *v, char **msg);
static int tap_conf_check_route(const char *v, char **msg);
static int tap_conf_check_score(const char *v, char **msg);
static int tap_conf_check_nonempty(const char *v, char **msg);

static const char *const tap_conf_w_level[] = {"error", "warn", "info", "debug", NULL};
static const char *const tap_conf_w_balance[] = {"round_robin", "least_request", NULL};
static const char *const tap_conf_w_tls[] = {"1.2", "1.3", NULL};
static const char *const tap_conf_w_compression[] = {"none", "gzip", NULL};
static const char *const tap_conf_w_temporality[] = {"cumulative", "delta", "lowmemory", NULL};
static const char *const tap_conf_w_sampler[] = {"always_on",
                                                 "always_off",
                                                 "traceidratio",
                                                 "parentbased_always_on",
                                                 "parentbased_always_off",
                                                 "parentbased_traceidratio",
                                                 NULL};

static const tap_conf_item_t tap_conf_items[] = {
    TAP_CONF_I_LIST(
        "listen", listen, "127.0.0.1:8080", tap_conf_check_addr,
        "addresses the proxy listens on: IPv4:port, [IPv6]:port, localhost:port, *:port"),
    TAP_CONF_I_STR("admin", admin, "127.0.0.1:9901", tap_conf_check_admin,
                   "address of the admin server (/healthz, /readyz, /metrics); off: none"),
    TAP_CONF_I_STR("admin_token", admin_token, "", NULL,
                   "when set, admin requests but /healthz and /readyz need 'Authorization: Bearer <token>'"),
    TAP_CONF_I_INT(
        "workers", workers, "0", 0, 1024,
        "worker threads, each with its own listener and upstream pools; 0: one per core"),
    TAP_CONF_I_STR("access_log", access_log, "-", tap_conf_check_nonempty,
                   "JSON access log, one line per exchange: - (stdout), a file path, or off"),
    TAP_CONF_I_ENUM("error_log.level", error_log.level, "info", tap_conf_w_level,
                    "least severe message written to the error log (stderr)"),
    TAP_CONF_I_LIST(
        "upstreams", upstreams, "", tap_conf_check_url,
        "model servers, as http:// or https:// URLs; a path is prepended to request paths"),
    TAP_CONF_I_ENUM("balance", balance, "least_request", tap_conf_w_balance,
                    "how a request picks among healthy upstreams"),
    TAP_CONF_I_INT("pool.max_idle", pool.max_idle, "32", 0, 65536,
                   "idle keep-alive connections kept per upstream and worker"),
    TAP_CONF_I_DUR("pool.idle_timeout", pool.idle_timeout, "60s", 1,
                   "idle upstream connections are closed after this long"),
    TAP_CONF_I_DUR("health.interval", health.interval, "5s", 1,
                   "time between active health checks of each upstream"),
    TAP_CONF_I_STR("health.path", health.path, "/health", tap_conf_check_path,
                   "path requested by health checks; a 5xx or no answer fails, any other status passes"),
    TAP_CONF_I_DUR("health.timeout", health.timeout, "2s", 1,
                   "a health check not answered within this long fails"),
    TAP_CONF_I_INT("health.fails", health.fails, "3", 1, 1000,
                   "consecutive failures (checks or requests) that eject an upstream"),
    TAP_CONF_I_DUR("health.backoff", health.backoff, "5s", 1,
                   "first wait before an ejected upstream is checked again; doubles each failure"),
    TAP_CONF_I_DUR("health.backoff_max", health.backoff_max, "60s", 1,
                   "longest wait between checks of an ejected upstream"),
    TAP_CONF_I_INT(
        "retries", retries, "1", 0, 10,
        "times a request is sent to another upstream when connecting fails (never after a "
        "byte of the response)"),
    TAP_CONF_I_DUR("timeouts.connect", timeouts.connect, "2s", 1,
                   "connecting to an upstream, TLS handshake included"),
    TAP_CONF_I_DUR(
        "timeouts.response_header", timeouts.response_header, "300s", 1,
        "from the end of the request to the upstream's response head (model servers queue)"),
    TAP_CONF_I_DUR("timeouts.stream_idle", timeouts.stream_idle, "120s", 1,
                   "longest silence between two reads of an upstream response body"),
    TAP_CONF_I_DUR("timeouts.client_header", timeouts.client_header, "10s", 1,
                   "a client has this long to send a complete request head"),
    TAP_CONF_I_DUR("timeouts.client_body", timeouts.client_body, "60s", 1,
                   "longest silence between two reads of a request body"),
    TAP_CONF_I_DUR("timeouts.keepalive", timeouts.keepalive, "75s", 0,
                   "idle client connections are closed after this long; 0: no keep-alive"),
    TAP_CONF_I_DUR(
        "timeouts.drain", timeouts.drain, "30s", 0,
        "on SIGTERM, how long exchanges in flight may finish before connections are closed"),
    TAP_CONF_I_SIZE("limits.max_header_bytes", limits.max_header_bytes, "32KiB", 1024,
                    "largest request or response head; a larger request head gets 431"),
    TAP_CONF_I_SIZE("limits.max_body_bytes", limits.max_body_bytes, "16MiB", 0,
                    "largest request body forwarded; a larger one gets 413; 0: no limit"),
    TAP_CONF_I_INT("limits.max_connections", limits.max_connections, "10000", 1, 1000000,
                   "client connections accepted at once, over all workers"),
    TAP_CONF_I_SIZE(
        "limits.capture_bytes", limits.capture_bytes, "4MiB", 0,
        "bytes of each request and response body copied for parsing; the rest is only forwarded"),
    TAP_CONF_I_STR(
        "filters", filters, "openai,ollama,tgi,llamacpp,kserve", tap_conf_check_filters,
        "filters run over every request, in order, comma-separated; routes can differ; off: none"),
    TAP_CONF_I_LIST(
        "routes", routes, "", tap_conf_check_route,
        "'/path/prefix = filter,filter': requests under the longest matching prefix run these "
        "filters instead"),
    TAP_CONF_I_LIST(
        "scores", scores, "", tap_conf_check_score,
        "'/path/prefix-or-model = /json/pointer': a classifier's score in plain JSON answers, "
        "recorded as confidence"),
    TAP_CONF_I_BOOL(
        "inject_usage", inject_usage, "true",
        "ask OpenAI streams for usage (stream_options.include_usage) and remove the extra usage "
        "event from what the client receives"),
    TAP_CONF_I_STR("tls.cert", tls.cert, "", NULL,
                   "PEM certificate chain for TLS on the listeners; needs tls.key"),
    TAP_CONF_I_STR("tls.key", tls.key, "", NULL, "PEM private key of tls.cert"),
    TAP_CONF_I_ENUM("tls.min_version", tls.min_version, "1.2", tap_conf_w_tls,
                    "oldest TLS version the listeners accept"),
    TAP_CONF_I_STR("upstream_tls.ca_file", upstream_tls.ca_file, "", NULL,
                   "PEM file of CAs trusted for https:// upstreams; empty: the system's"),
    TAP_CONF_I_BOOL("upstream_tls.verify", upstream_tls.verify, "true",
                    "verify the certificate and name of https:// upstreams"),
    TAP_CONF_I_STR(
        "upstream_tls.sni", upstream_tls.sni, "", NULL,
        "server name sent to and verified against https:// upstreams; empty: the URL's host"),
    TAP_CONF_I_STR(
        "upstream_tls.cert", upstream_tls.cert, "", NULL,
        "PEM client certificate presented to upstreams (mutual TLS); needs upstream_tls.key"),
    TAP_CONF_I_STR("upstream_tls.key", upstream_tls.key, "", NULL,
                   "PEM private key of upstream_tls.cert"),
    TAP_CONF_I_STR("request_id_header", request_id_header, "x-request-id", tap_conf_check_token,
                   "header carrying the request id; kept when the client sends one, else added"),
    TAP_CONF_I_STR("service_name", service_name, "infertap", tap_conf_check_nonempty,
                   "service.name of the exported telemetry (OTEL_SERVICE_NAME)"),
    TAP_CONF_I_STR(
        "resource_attributes", resource_attributes, "", tap_conf_check_pairs,
        "more resource attributes, k=v,k2=v2 percent-encoded (OTEL_RESOURCE_ATTRIBUTES)"),
    TAP_CONF_I_LIST(
        "otlp.endpoint", otlp.endpoint, "", tap_conf_check_url,
        "OTLP/HTTP collectors; /v1/traces, /v1/metrics, /v1/logs are appended; empty: no "
        "export (OTEL_EXPORTER_OTLP_ENDPOINT)"),
    TAP_CONF_I_STR("otlp.traces_endpoint", otlp.traces_endpoint, "", tap_conf_check_url_opt,
                   "full URL for spans, used instead of the otlp.endpoint ones"),
    TAP_CONF_I_STR("otlp.metrics_endpoint", otlp.metrics_endpoint, "", tap_conf_check_url_opt,
                   "full URL for metrics, used instead of the otlp.endpoint ones"),
    TAP_CONF_I_STR("otlp.logs_endpoint", otlp.logs_endpoint, "", tap_conf_check_url_opt,
                   "full URL for logs, used instead of the otlp.endpoint ones"),
    TAP_CONF_I_STR(
        "otlp.headers", otlp.headers, "", tap_conf_check_pairs,
        "headers sent with every export, k=v,k2=v2 percent-encoded (OTEL_EXPORTER_OTLP_HEADERS)"),
    TAP_CONF_I_ENUM("otlp.compression", otlp.compression, "none", tap_conf_w_compression,
                    "compression of export requests: gzip for a collector across a network "
                    "(OTEL_EXPORTER_OTLP_COMPRESSION)"),
    TAP_CONF_I_DUR("otlp.timeout", otlp.timeout, "10s", 1,
                   "an export request not answered within this long fails"),
    TAP_CONF_I_DUR("otlp.metrics_interval", otlp.metrics_interval, "60s", 1,
                   "time between two metric exports (OTEL_METRIC_EXPORT_INTERVAL)"),
    TAP_CONF_I_DUR("otlp.traces_batch.delay", otlp.traces_batch.delay, "5s", 1,
                   "longest wait before queued spans are exported (OTEL_BSP_SCHEDULE_DELAY)"),
    TAP_CONF_I_INT(
        "otlp.traces_batch.max_queue", otlp.traces_batch.max_queue, "2048", 1, 1048576,
        "spans queued for export; more are dropped and counted (OTEL_BSP_MAX_QUEUE_SIZE)"),
    TAP_CONF_I_INT("otlp.traces_batch.max_batch", otlp.traces_batch.max_batch, "512", 1, 1048576,
                   "most spans in one export request (OTEL_BSP_MAX_EXPORT_BATCH_SIZE)"),
    TAP_CONF_I_DUR(
        "otlp.logs_batch.delay", otlp.logs_batch.delay, "1s", 1,
        "longest wait before queued log records are exported (OTEL_BLRP_SCHEDULE_DELAY)"),
    TAP_CONF_I_INT("otlp.logs_batch.max_queue", otlp.logs_batch.max_queue, "2048", 1, 1048576,
                   "log records queued for export; more are dropped and counted "
                   "(OTEL_BLRP_MAX_QUEUE_SIZE)"),
    TAP_CONF_I_INT("otlp.logs_batch.max_batch", otlp.logs_batch.max_batch, "512", 1, 1048576,
                   "most log records in one export request (OTEL_BLRP_MAX_EXPORT_BATCH_SIZE)"),
    TAP_CONF_I_ENUM("otlp.metrics_temporality", otlp.metrics_temporality, "cumulative",
                    tap_conf_w_temporality,
                    "temporality of exported counters and histograms "
                    "(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE)"),
    TAP_CONF_I_INT("otlp.retry.max_attempts", otlp.retry.max_attempts, "5", 1, 100,
                   "sends of one export request, the first included, on 429, 502, 503, 504 "
                   "and connection errors"),
    TAP_CONF_I_DUR("otlp.retry.backoff", otlp.retry.backoff, "1s", 1,
                   "first wait before an export is retried; doubles each time, with jitter"),
    TAP_CONF_I_DUR("otlp.retry.backoff_max", otlp.retry.backoff_max, "30s", 1,
                   "longest wait before a retry, a collector's Retry-After included"),
    TAP_CONF_I_STR("otlp.tls.ca_file", otlp.tls.ca_file, "", NULL,
                   "PEM file of CAs trusted for https:// collectors; empty: the system's "
                   "(OTEL_EXPORTER_OTLP_CERTIFICATE)"),
    TAP_CONF_I_BOOL("otlp.tls.verify", otlp.tls.verify, "true",
                    "verify the certificate and name of https:// collectors"),
    TAP_CONF_I_STR("otlp.tls.cert", otlp.tls.cert, "", NULL,
                   "PEM client certificate presented to collectors "
                   "(OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE); needs otlp.tls.key"),
    TAP_CONF_I_STR("otlp.tls.key", otlp.tls.key, "", NULL,
                   "PEM private key of otlp.tls.cert (OTEL_EXPORTER_OTLP_CLIENT_KEY)"),
    TAP_CONF_I_INT("telemetry.queue_size", telemetry.queue_size, "1024", 16, 1048576,
                   "finished exchanges each worker may have waiting for the telemetry thread; "
                   "more are dropped and counted"),
    TAP_CONF_I_INT("metrics.max_label_values", metrics.max_label_values, "100", 1, 100000,
                   "distinct values of one label of one metric; more fold into 'other'"),
    TAP_CONF_I_BOOL("analysis.enabled", analysis.enabled, "true",
                    "latency percentiles (GET /stats), prompt and template tables, anomalies"),
    TAP_CONF_I_INT("analysis.prompt_table_size", analysis.prompt_table_size, "4096", 1,
                   1048576, "prompts tracked by hash (GET /stats/prompts); the least counted "
                   "makes room for a new one (Space-Saving)"),
    TAP_CONF_I_INT("analysis.template_table_size", analysis.template_table_size, "512", 1,
                   1048576, "templates (prompt prefixes) tracked by hash (GET /stats/templates)"),
    TAP_CONF_I_DBL("analysis.anomaly_k", analysis.anomaly_k, "3", 0.1, 1000.0,
                   "an exchange whose latency, TTFT or output tokens lies more than this many "
                   "standard deviations from its prompt's mean is flagged"),
    TAP_CONF_I_INT("analysis.anomaly_min_samples", analysis.anomaly_min_samples, "5", 2, 1000000,
                   "samples a prompt needs before its exchanges can be flagged"),
    TAP_CONF_I_INT("analysis.max_series", analysis.max_series, "64", 1, 65536,
                   "latency series (model x upstream x route x status class) each worker "
                   "keeps for GET /stats; more fold into one 'other' series"),
    TAP_CONF_I_ENUM("sampling.sampler", sampling.sampler, "parentbased_always_on",
                    tap_conf_w_sampler, "head sampler of spans (OTEL_TRACES_SAMPLER)"),
    TAP_CONF_I_DBL(
        "sampling.ratio", sampling.ratio, "1.0", 0.0, 1.0,
        "fraction of traces kept by the traceidratio samplers (OTEL_TRACES_SAMPLER_ARG)"),
    TAP_CONF_I_BOOL("sampling.tail.errors", sampling.tail.errors, "true",
                    "keep the spans of failed exchanges (5xx, errors) whatever the head sampler said"),
    TAP_CONF_I_DUR("sampling.tail.slower_than", sampling.tail.slower_than, "0", 0,
                   "keep the spans of exchanges that took at least this long; 0: off"),
    TAP_CONF_I_INT("sampling.tail.min_tokens", sampling.tail.min_tokens, "0", 0, 2147483647,
                   "keep the spans of exchanges with at least this many tokens (prompt and "
                   "completion); 0: off"),
    TAP_CONF_I_BOOL("sampling.tail.anomalies", sampling.tail.anomalies, "true",
                    "keep the spans of exchanges the analysis flags as anomalous"),
};

/*
 * The OpenTelemetry SDK variables, applied in this order: OTEL_RESOURCE_ATTRIBUTES comes before
 * OTEL_SERVICE_NAME so that the latter wins over a service.name inside the former.
 */
static const tap_conf_otel_t tap_conf_otel_vars[] = {
    {"OTEL_EXPORTER_OTLP_ENDPOINT", "otlp.endpoint", 0},
    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otlp.traces_endpoint", 0},
    {"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "otlp.metrics_endpoint", 0},
    {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "otlp.logs_endpoint", 0},
    {"OTEL_EXPORTER_OTLP_HEADERS", "otlp.headers", 0},
    {"OTEL_EXPORTER_OTLP_COMPRESSION", "otlp.compression", 0},
    {"OTEL_EXPORTER_OTLP_TIMEOUT", "otlp.timeout", 1},
    {"OTEL_RESOURCE_ATTRIBUTES", "resource_attributes", 0},
    {"OTEL_SERVICE_NAME", "service_name", 0},
    {"OTEL_TRACES_SAMPLER", "sampling.sampler", 0},
    {"OTEL_TRACES_SAMPLER_ARG", "sampling.ratio", 0},
    {"OTEL_METRIC_EXPORT_INTERVAL", "otlp.metrics_interval", 1},
    {"OTEL_BSP_SCHEDULE_DELAY", "otlp.traces_batch.delay", 1},
    {"OTEL_BSP_MAX_QUEUE_SIZE", "otlp.traces_batch.max_queue", 0},
    {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "otlp.traces_batch.max_batch", 0},
    {"OTEL_BLRP_SCHEDULE_DELAY", "otlp.logs_batch.delay", 1},
    {"OTEL_BLRP_MAX_QUEUE_SIZE", "otlp.logs_batch.max_queue", 0},
    {"OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "otlp.logs_batch.max_batch", 0},
    {"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "otlp.metrics_temporality", 0},
    {"OTEL_EXPORTER_OTLP_CERTIFICATE", "otlp.tls.ca_file", 0},
    {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "otlp.tls.cert", 0},
    {"OTEL_EXPORTER_OTLP_CLIENT_KEY", "otlp.tls.key", 0},
};

_Static_assert(TAP_NELEMS(tap_conf_items) <= TAP_CONF_MAX_ITEMS, "raise TAP_CONF_MAX_ITEMS");

/* Memory and messages. */

static char *
tap_conf_strdup(const char *s)
{
    char *p;

    p = strdup(s);
    if (p == NULL) {
        abort(); /* start-up only: nothing sensible to do */
    }

    return p;
}

static char *
tap_conf_fmt(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        abort();
    }

    return s;
}

static void
tap_conf_list_add(tap_conf_list_t *l, const char *s)
{
    char **items;

    items = realloc(l->items, (l->n + 1) * sizeof(char *));
    if (items == NULL) {
        abort();
    }
    l->items = items;
    l->items[l->n++] = tap_conf_strdup(s);
}

void
tap_conf_list_free(tap_conf_list_t *l)
{
    size_t i;

    if (l == NULL) {
        return;
    }
    for (i = 0; i < l->n; i++) {
        free(l->items[i]);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* Items. */

static const tap_conf_item_t *
tap_conf_find(const char *key)
{
    size_t i;

    for (i = 0; i < TAP_NELEMS(tap_conf_items); i++) {
        if (strcmp(tap_conf_items[i].key, key) == 0) {
            return &tap_conf_items[i];
        }
    }

    return NULL;
}

/* Whether key names a section ("timeouts" for "timeouts.connect"). */
static int
tap_conf_is_section(const char *key)
{
    size_t i, len;

    len = strlen(key);
    for (i = 0; i < TAP_NELEMS(tap_conf_items); i++) {
        if (strncmp(tap_conf_items[i].key, key, len) == 0 && tap_conf_items[i].key[len] == '.') {
            return 1;
        }
    }

    return 0;
}

static size_t
tap_conf_index(const tap_conf_item_t *it)
{
    return (size_t)(it - tap_conf_items);
}

static void *
tap_conf_field(const tap_conf_t *cf, const tap_conf_item_t *it)
{
    return (char *)cf + it->offset;
}

static int
tap_conf_parse_int(const tap_conf_item_t *it, const char *s, int *v, char **msg)
{
    char *end;
    long long n;

    errno = 0;
    n = strtoll(s, &end, 10);
    if (*s == '\0' || isspace((unsigned char)*s) || *end != '\0' || errno == ERANGE) {
        *msg = tap_conf_fmt("invalid integer '%s'", s);
        return TAP_ERROR;
    }
    if ((double)n < it->min || (double)n > it->max) {
        *msg = tap_conf_fmt("%s out of range %.0f..%.0f", s, it->min, it->max);
        return TAP_ERROR;
    }
    *v = (int)n;

    return TAP_OK;
}

static int
tap_conf_parse_double(const tap_conf_item_t *it, const char *s, double *v, char **msg)
{
    char *end;
    double d;

    errno = 0;
    d = strtod(s, &end);
    if (*s == '\0' || isspace((unsigned char)*s) || *end != '\0' || errno == ERANGE || d != d) {
        *msg = tap_conf_fmt("invalid number '%s'", s);
        return TAP_ERROR;
    }
    if (d < it->min || d > it->max) {
        *msg = tap_conf_fmt("%s out of range %g..%g", s, it->min, it->max);
        return TAP_ERROR;
    }
    *v = d;

    return TAP_OK;
}

static int
tap_conf_parse_enum(const tap_conf_item_t *it, const char *s, int *v, char **msg)
{
    size_t i, len;
    char *expected, *p;

    for (i = 0; it->words[i] != NULL; i++) {
        if (strcmp(it->words[i], s) == 0) {
            *v = (int)i;
            return TAP_OK;
        }
    }

    for (len = 1, i = 0; it->words[i] != NULL; i++) {
        len += strlen(it->words[i]) + 1;
    }
    expected = malloc(len);
    if (expected == NULL) {
        abort();
    }
    for (p = expected, i = 0; it->words[i] != NULL; i++) {
        p += sprintf(p, "%s%s", i ? "|" : "", it->words[i]);
    }
    *msg = tap_conf_fmt("invalid value '%s' (expected %s)", s, expected);
    free(expected);

    return TAP_ERROR;
}

/*
 * Set one item from text.  For a list, value is one element appended after the list is emptied
 * when replace is set; value NULL only empties it.  Returns TAP_OK, or TAP_ERROR with *msg set to
 * the reason (without the key) and the field unchanged.
 */
static int
tap_conf_item_set(tap_conf_t *cf, const tap_conf_item_t *it, const char *value, int replace,
                  char **msg)
{
    void *f;
    uint64_t u;
    double d;
    int i;

    f = tap_conf_field(cf, it);

    switch (it->type) {

    case TAP_CONF_STR:
        if (it->check != NULL && it->check(value, msg) != TAP_OK) {
            return TAP_ERROR;
        }
        free(*(char **)f);
        *(char **)f = tap_conf_strdup(value);
        return TAP_OK;

    case TAP_CONF_LIST:
        if (value != NULL) {
            if (*value == '\0') {
                *msg = tap_conf_fmt("empty list element");
                return TAP_ERROR;
            }
            if (it->check != NULL && it->check(value, msg) != TAP_OK) {
                return TAP_ERROR;
            }
        }
        if (replace) {
            tap_conf_list_free(f);
        }
        if (value != NULL) {
            tap_conf_list_add(f, value);
        }
        return TAP_OK;

    case TAP_CONF_INT:
        if (tap_conf_parse_int(it, value, &i, msg) != TAP_OK) {
            return TAP_ERROR;
        }
        *(int *)f = i;
        return TAP_OK;

    case TAP_CONF_DOUBLE:
        if (tap_conf_parse_double(it, value, &d, msg) != TAP_OK) {
            return TAP_ERROR;
        }
        *(double *)f = d;
        return TAP_OK;

    case TAP_CONF_BOOL:
        if (tap_parse_bool(value, &i) != TAP_OK) {
            *msg = tap_conf_fmt("invalid boolean '%s' (expected true|false|on|off|yes|no)", value);
            return TAP_ERROR;
        }
        *(int *)f = i;
        return TAP_OK;

    case TAP_CONF_ENUM:
        if (tap_conf_parse_enum(it, value, &i, msg) != TAP_OK) {
            return TAP_ERROR;
        }
        *(int *)f = i;
        return TAP_OK;

    case TAP_CONF_DURATION:
        if (tap_parse_duration(value, &u) != TAP_OK) {
            *msg = tap_conf_fmt("invalid duration '%s' (e.g. 250ms, 2s, 1m, 1h)", value);
            return TAP_ERROR;
        }
        if ((double)u < it->min) {
            *msg = tap_conf_fmt("duration '%s' is below %.0fms", value, it->min);
            return TAP_ERROR;
        }
        *(uint64_t *)f = u;
        return TAP_OK;

    case TAP_CONF_SIZE:
        if (tap_parse_size(value, &u) != TAP_OK) {
            *msg = tap_conf_fmt("invalid size '%s' (e.g. 512, 64KiB, 4MiB, 1GiB)", value);
            return TAP_ERROR;
        }
        if ((double)u < it->min) {
            *msg = tap_conf_fmt("size '%s' is below %.0f bytes", value, it->min);
            return TAP_ERROR;
        }
        *(uint64_t *)f = u;
        return TAP_OK;
    }

    *msg = tap_conf_fmt("internal error: bad item type");
    return TAP_ERROR;
}

static void
tap_conf_mark(tap_conf_t *cf, const tap_conf_item_t *it, unsigned layer, unsigned line,
              const char *var)
{
    tap_conf_origin_t *o;

    o = &cf->origin[tap_conf_index(it)];
    o->layer = layer;
    o->file = layer == TAP_CONF_LAYER_FILE && cf->files.n ? (unsigned)cf->files.n - 1 : 0;
    o->line = line;
    o->var = var;
}

/* Lifecycle. */

void
tap_conf_init(tap_conf_t *cf)
{
    const tap_conf_item_t *it;
    char *msg;
    size_t i;

    memset(cf, 0, sizeof(*cf));

    for (i = 0; i < TAP_NELEMS(tap_conf_items); i++) {
        it = &tap_conf_items[i];
        msg = NULL;
        if (it->type == TAP_CONF_LIST && it->def[0] == '\0') {
            continue;
        }
        if (tap_conf_item_set(cf, it, it->def, 1, &msg) != TAP_OK) {
            /* a default that does not parse is a bug in the table, caught by every test run */
            fprintf(stderr, "infertap: bad default of '%s': %s\n", it->key, msg);
            abort();
        }
    }
}

void
tap_conf_cleanup(tap_conf_t *cf)
{
    const tap_conf_item_t *it;
    size_t i;

    if (cf == NULL) {
        return;
    }

    for (i = 0; i < TAP_NELEMS(tap_conf_items); i++) {
        it = &tap_conf_items[i];
        if (it->type == TAP_CONF_STR) {
            free(*(char **)tap_conf_field(cf, it));
        } else if (it->type == TAP_CONF_LIST) {
            tap_conf_list_free(tap_conf_field(cf, it));
        }
    }
    tap_conf_list_free(&cf->files);
    memset(cf, 0, sizeof(*cf));
}

/* Flags. */

int
tap_conf_set_layer(tap_conf_t *cf, const char *key, const char *value, tap_conf_layer_e layer,
                   char **err)
{
    const tap_conf_item_t *it;
    char *msg;
    int replace;

    msg = NULL;
    it = tap_conf_find(key);
    if (it == NULL) {
        *err = tap_conf_fmt("key '%s': unknown key", key);
        return TAP_ERROR;
    }

    replace = cf->origin[tap_conf_index(it)].layer != (unsigned)layer;
    if (tap_conf_item_set(cf, it, value, replace, &msg) != TAP_OK) {
        *err = tap_conf_fmt("key '%s': %s", key, msg);
        free(msg);
        return TAP_ERROR;
    }
    tap_conf_mark(cf, it, layer, 0, NULL);

    return TAP_OK;
}

int
tap_conf_set(tap_conf_t *cf, const char *key, const char *value, char **err)
{
    return tap_conf_set_layer(cf, key, value, TAP_CONF_LAYER_FLAGS, err);
}

/* YAML. */

typedef struct tap_conf_yaml_s {
    tap_conf_t *cf;
    const char *name;
    yaml_parser_t parser;
    char key[TAP_CONF_KEY_MAX];
    unsigned char seen[TAP_NELEMS(tap_conf_items)];
    char **err;
} tap_conf_yaml_t;

static unsigned
tap_conf_yaml_line(const yaml_event_t *ev)
{
    return (unsigned)ev->start_mark.line + 1;
}

/* Next event; on a syntax error sets the message and returns TAP_ERROR. */
static int
tap_conf_yaml_next(tap_conf_yaml_t *y, yaml_event_t *ev)
{
    if (yaml_parser_parse(&y->parser, ev)) {
        return TAP_OK;
    }

    if (y->parser.context != NULL) {
        *y->err = tap_conf_fmt("%s:%u: syntax error: %s (%s that starts on line %u)", y->name,
                               (unsigned)y->parser.problem_mark.line + 1,
                               y->parser.problem ? y->parser.problem : "invalid YAML",
                               y->parser.context, (unsigned)y->parser.context_mark.line + 1);
    } else {
        *y->err = tap_conf_fmt("%s:%u: syntax error: %s", y->name,
                               (unsigned)y->parser.problem_mark.line + 1,
                               y->parser.problem ? y->parser.problem : "invalid YAML");
    }
    return TAP_ERROR;
}

static int
tap_conf_yaml_is_null(const yaml_event_t *ev)
{
    const char *v;

    if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return 0;
    }
    v = (const char *)ev->data.scalar.value;

    return *v == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

/* The list after `key:`, whose SEQUENCE_START has been read. */
static int
tap_conf_yaml_list(tap_conf_yaml_t *y, const tap_conf_item_t *it)
{
    yaml_event_t ev;
    char *msg;
    int rc;

    tap_conf_item_set(y->cf, it, NULL, 1, &msg);

    for (;;) {
        if (tap_conf_yaml_next(y, &ev) != TAP_OK) {
            return TAP_ERROR;
        }
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return TAP_OK;
        }
        rc = TAP_ERROR;
        msg = NULL;
        if (ev.type != YAML_SCALAR_EVENT) {
            *y->err = tap_conf_fmt("%s:%u: key '%s': list elements must be plain values", y->name,
                                   tap_conf_yaml_line(&ev), y->key);
        } else if (tap_conf_item_set(y->cf, it, (const char *)ev.data.scalar.value, 0, &msg) !=
                   TAP_OK) {
            *y->err =
                tap_conf_fmt("%s:%u: key '%s': %s", y->name, tap_conf_yaml_line(&ev), y->key, msg);
        } else {
            rc = TAP_OK;
        }
        free(msg);
        yaml_event_delete(&ev);
        if (rc != TAP_OK) {
            return TAP_ERROR;
        }
    }
}

/*
 * The value of y->key (whose key scalar is on line kline), the event just read.  Consumes a
 * nested mapping or sequence whole.
 */
static int tap_conf_yaml_mapping(tap_conf_yaml_t *y);

static int
tap_conf_yaml_value(tap_conf_yaml_t *y, yaml_event_t *ev, unsigned kline)
{
    const tap_conf_item_t *it;
    const char *v;
    char *msg;
    int rc;

    msg = NULL;
    it = tap_conf_find(y->key);

    if (it == NULL && !tap_conf_is_section(y->key)) {
        *y->err = tap_conf_fmt("%s:%u: key '%s': unknown key", y->name, kline, y->key);
        return TAP_ERROR;
    }

    if (it == NULL) {
        if (ev->type == YAML_MAPPING_START_EVENT) {
            return tap_conf_yaml_mapping(y);
        }
        if (ev->type == YAML_SCALAR_EVENT && tap_conf_yaml_is_null(ev)) {
            return TAP_OK; /* an empty section */
        }
        *y->err = tap_conf_fmt("%s:%u: key '%s': is a section, expected a mapping", y->name, kline,
                               y->key);
        return TAP_ERROR;
    }

    if (y->seen[tap_conf_index(it)]) {
        *y->err = tap_conf_fmt("%s:%u: key '%s': given twice", y->name, kline, y->key);
        return TAP_ERROR;
    }
    y->seen[tap_conf_index(it)] = 1;
    tap_conf_mark(y->cf, it, TAP_CONF_LAYER_FILE, kline, NULL);

    if (ev->type == YAML_SEQUENCE_START_EVENT && it->type == TAP_CONF_LIST) {
        return tap_conf_yaml_list(y, it);
    }
    if (ev->type != YAML_SCALAR_EVENT) {
        *y->err = tap_conf_fmt("%s:%u: key '%s': expected %s", y->name, tap_conf_yaml_line(ev),
                               y->key, it->type == TAP_CONF_LIST ? "a list" : "a single value");
        return TAP_ERROR;
    }

    v = (const char *)ev->data.scalar.value;
    if (tap_conf_yaml_is_null(ev)) {
        if (it->type != TAP_CONF_STR && it->type != TAP_CONF_LIST) {
            *y->err = tap_conf_fmt("%s:%u: key '%s': missing value", y->name, kline, y->key);
            return TAP_ERROR;
        }
        v = it->type == TAP_CONF_STR ? "" : NULL;
    }

    rc = tap_conf_item_set(y->cf, it, v, 1, &msg);
    if (rc != TAP_OK) {
        *y->err = tap_conf_fmt("%s:%u: key '%s': %s", y->name, tap_conf_yaml_line(ev), y->key, msg);
        free(msg);
    }

    return rc;
}

/* The pairs of a mapping whose MAPPING_START has been read, under the prefix y->key. */
static int
tap_conf_yaml_mapping(tap_conf_yaml_t *y)
{
    yaml_event_t ev, val;
    size_t plen, klen;
    unsigned kline;
    int rc;

    plen = strlen(y->key);

    for (;;) {
        if (tap_conf_yaml_next(y, &ev) != TAP_OK) {
            return TAP_ERROR;
        }
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }

        kline = tap_conf_yaml_line(&ev);
        if (ev.type != YAML_SCALAR_EVENT || ev.data.scalar.length == 0) {
            *y->err = tap_conf_fmt("%s:%u: keys must be plain names", y->name, kline);
            yaml_event_delete(&ev);
            return TAP_ERROR;
        }
        klen = ev.data.scalar.length;
        if (plen + 1 + klen >= sizeof(y->key)) {
            *y->err = tap_conf_fmt("%s:%u: key '%.*s...': unknown key", y->name, kline, (int)plen,
                                   y->key);
            yaml_event_delete(&ev);
            return TAP_ERROR;
        }
        if (plen > 0) {
            y->key[plen] = '.';
            memcpy(y->key + plen + 1, ev.data.scalar.value, klen + 1);
        } else {
            memcpy(y->key, ev.data.scalar.value, klen + 1);
        }
        yaml_event_delete(&ev);

        if (tap_conf_yaml_next(y, &val) != TAP_OK) {
            return TAP_ERROR;
        }
        if (val.type == YAML_ALIAS_EVENT) {
            *y->err = tap_conf_fmt("%s:%u: key '%s': aliases are not supported", y->name,
                                   tap_conf_yaml_line(&val), y->key);
            rc = TAP_ERROR;
        } else {
            rc = tap_conf_yaml_value(y, &val, kline);
        }
        yaml_event_delete(&val);
        if (rc != TAP_OK) {
            return TAP_ERROR;
        }
        y->key[plen] = '\0';
    }

    return TAP_OK;
}

int
tap_conf_load_buffer(tap_conf_t *cf, const char *name, const char *buf, size_t len, char **err)
{
    tap_conf_yaml_t *y;
    yaml_event_t ev;
    int rc, docs;

    rc = TAP_ERROR;
    y = calloc(1, sizeof(*y));
    if (y == NULL) {
        abort();
    }
    y->cf = cf;
    y->name = name;
    y->err = err;
    tap_conf_list_add(&cf->files, name);

    if (!yaml_parser_initialize(&y->parser)) {
        *err = tap_conf_fmt("%s: cannot initialise the YAML parser", name);
        goto done;
    }
    yaml_parser_set_input_string(&y->parser, (const unsigned char *)buf, len);

    for (docs = 0;;) {
        if (tap_conf_yaml_next(y, &ev) != TAP_OK) {
            goto done;
        }
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            *err = tap_conf_fmt("%s:%u: only one YAML document is allowed", name,
                                tap_conf_yaml_line(&ev));
            yaml_event_delete(&ev);
            goto done;
        }
        if (ev.type == YAML_MAPPING_START_EVENT) {
            yaml_event_delete(&ev);
            y->key[0] = '\0';
            if (tap_conf_yaml_mapping(y) != TAP_OK) {
                goto done;
            }
            continue;
        }
        if (ev.type == YAML_SCALAR_EVENT && tap_conf_yaml_is_null(&ev)) {
            yaml_event_delete(&ev); /* an empty document */
            continue;
        }
        if (ev.type == YAML_SCALAR_EVENT || ev.type == YAML_SEQUENCE_START_EVENT ||
            ev.type == YAML_ALIAS_EVENT) {
            *err = tap_conf_fmt("%s:%u: the top level must be a mapping of keys", name,
                                tap_conf_yaml_line(&ev));
            yaml_event_delete(&ev);
            goto done;
        }
        yaml_event_delete(&ev);
    }

    rc = TAP_OK;

done:

    yaml_parser_delete(&y->parser);
    free(y);
    return rc;
}

int
tap_conf_load_file(tap_conf_t *cf, const char *path, char **err)
{
    FILE *fp;
    char *buf;
    size_t len, cap, n;
    int rc;

    rc = TAP_ERROR;
    buf = NULL;
    fp = fopen(path, "r");
    if (fp == NULL) {
        *err = tap_conf_fmt("%s: cannot open: %s", path, strerror(errno));
        goto done;
    }

    for (len = 0, cap = 0;;) {
        if (len == cap) {
            if (cap >= 16 * 1024 * 1024) {
                *err = tap_conf_fmt("%s: larger than 16MiB", path);
                goto done;
            }
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            if (buf == NULL) {
                abort();
            }
        }
        n = fread(buf + len, 1, cap - len, fp);
        len += n;
        if (n == 0) {
            break;
        }
    }
    if (ferror(fp)) {
        *err = tap_conf_fmt("%s: cannot read: %s", path, strerror(errno));
        goto done;
    }

    rc = tap_conf_load_buffer(cf, path, buf, len, err);

done:

    if (fp != NULL) {
        fclose(fp);
    }
    free(buf);
    return rc;
}

/* Environment. */

static int
tap_conf_env_apply(tap_conf_t *cf, const tap_conf_item_t *it, const char *var, const char *v,
                   const char *static_var, char **err)
{
    const char *p, *e;
    char *msg, *elem;
    int rc;

    msg = NULL;
    rc = TAP_OK;

    if (it->type != TAP_CONF_LIST) {
        rc = tap_conf_item_set(cf, it, v, 1, &msg);
    } else {
        tap_conf_item_set(cf, it, NULL, 1, &msg);
        for (p = v; rc == TAP_OK; p = e + 1) {
            e = strchr(p, ',');
            if (e == NULL) {
                e = p + strlen(p);
            }
            while (p < e && isspace((unsigned char)*p)) {
                p++;
            }
            elem = tap_conf_fmt("%.*s", (int)(e - p), p);
            for (size_t n = strlen(elem); n > 0 && isspace((unsigned char)elem[n - 1]); n--) {
                elem[n - 1] = '\0';
            }
            rc = tap_conf_item_set(cf, it, elem, 0, &msg);
            free(elem);
            if (*e == '\0') {
                break;
            }
        }
    }

    if (rc != TAP_OK) {
        *err = tap_conf_fmt("%s: key '%s': %s", var, it->key, msg);
        free(msg);
        return TAP_ERROR;
    }
    tap_conf_mark(cf, it, TAP_CONF_LAYER_ENV, 0, static_var);

    return TAP_OK;
}

static void
tap_conf_env_name(const char *key, char *buf, size_t size)
{
    size_t i;

    i = (size_t)snprintf(buf, size, "INFERTAP_");
    for (; *key != '\0' && i + 1 < size; key++, i++) {
        buf[i] = *key == '.' ? '_' : (char)toupper((unsigned char)*key);
    }
    buf[i] = '\0';
}

/* service.name from OTEL_RESOURCE_ATTRIBUTES, which OTEL_SERVICE_NAME (applied next) overrides. */
static int
tap_conf_env_resource(tap_conf_t *cf, const char *v, char **err)
{
    tap_conf_list_t pairs = {NULL, 0};
    char *msg;
    size_t i;
    int rc;

    msg = NULL;
    rc = TAP_OK;
    if (tap_conf_parse_pairs(v, &pairs, &msg) != TAP_OK) {
        *err = tap_conf_fmt("OTEL_RESOURCE_ATTRIBUTES: key 'resource_attributes': %s", msg);
        free(msg);
        tap_conf_list_free(&pairs);
        return TAP_ERROR;
    }
    for (i = 0; i + 1 < pairs.n; i += 2) {
        if (strcmp(pairs.items[i], "service.name") == 0 && pairs.items[i + 1][0] != '\0') {
            rc = tap_conf_env_apply(cf, tap_conf_find("service_name"), "OTEL_RESOURCE_ATTRIBUTES",
                                    pairs.items[i + 1], "OTEL_RESOURCE_ATTRIBUTES", err);
        }
    }
    tap_conf_list_free(&pairs);

    return rc;
}

int
tap_conf_load_env(tap_conf_t *cf, char **err)
{
    const tap_conf_otel_t *o;
    const char *v;
    char name[TAP_CONF_KEY_MAX + 16], *ms;
    size_t i;
    int rc;

    /* The SDK specification treats an empty variable as unset; so does every variable here. */
    for (i = 0; i < TAP_NELEMS(tap_conf_otel_vars); i++) {
        o = &tap_conf_otel_vars[i];
        v = getenv(o->var);
        if (v == NULL || *v == '\0') {
            continue;
        }
        if (strcmp(o->var, "OTEL_RESOURCE_ATTRIBUTES") == 0 &&
            tap_conf_env_resource(cf, v, err) != TAP_OK) {
            return TAP_ERROR;
        }
        if (o->ms) {
            if (strspn(v, "0123456789") != strlen(v) || strlen(v) > 15) {
                *err = tap_conf_fmt("%s: invalid number of milliseconds '%s'", o->var, v);
                return TAP_ERROR;
            }
            ms = tap_conf_fmt("%sms", v);
            rc = tap_conf_env_apply(cf, tap_conf_find(o->key), o->var, ms, o->var, err);
            free(ms);
        } else {
            rc = tap_conf_env_apply(cf, tap_conf_find(o->key), o->var, v, o->var, err);
        }
        if (rc != TAP_OK) {
            return TAP_ERROR;
        }
    }

    for (i = 0; i < TAP_NELEMS(tap_conf_items); i++) {
        tap_conf_env_name(tap_conf_items[i].key, name, sizeof(name));
        v = getenv(name);
        if (v == NULL || *v == '\0') {
            continue;
        }
        if (tap_conf_env_apply(cf, &tap_conf_items[i], name, v, NULL, err) != TAP_OK) {
            return TAP_ERROR;
        }
    }

    return TAP_OK;
}

/* Checks, listing, comparison. */

const char *
tap_conf_origin(const tap_conf_t *cf, const char *key, char *buf, size_t size)
{
    const tap_conf_item_t *it;
    const tap_conf_origin_t *o;

    it = tap_conf_find(key);
    if (it == NULL || size == 0) {
        return NULL;
    }
    o = &cf->origin[tap_conf_index(it)];

    switch (o->layer) {
    case TAP_CONF_LAYER_FILE:
        snprintf(buf, size, "%s:%u", o->file < cf->files.n ? cf->files.items[o->file] : "(file)",
                 o->line);
        break;
    case TAP_CONF_LAYER_ENV:
        if (o->var != NULL) {
            snprintf(buf, size, "%s", o->var);
        } else {
            tap_conf_env_name(key, buf, size);
        }
        break;
    case TAP_CONF_LAYER_FLAGS:
        snprintf(buf, size, "command line");
        break;
    default:
        snprintf(buf, size, "default");
        break;
    }

    return buf;
}

static char *
tap_conf_check_err(const tap_conf_t *cf, const char *key, const char *reason)
{
    char where[512];

    return tap_conf_fmt("%s: key '%s': %s", tap_conf_origin(cf, key, where, sizeof(where)), key,
                        reason);
}

int
tap_conf_check(const tap_conf_t *cf, char **err)
{
    if (cf->listen.n == 0) {
        *err = tap_conf_check_err(cf, "listen", "at least one address is needed");
        return TAP_ERROR;
    }
    if (cf->tls.cert[0] != '\0' && cf->tls.key[0] == '\0') {
        *err = tap_conf_check_err(cf, "tls.cert", "tls.cert is set but tls.key is not");
        return TAP_ERROR;
    }
    if (cf->tls.key[0] != '\0' && cf->tls.cert[0] == '\0') {
        *err = tap_conf_check_err(cf, "tls.key", "tls.key is set but tls.cert is not");
        return TAP_ERROR;
    }
    if (cf->upstream_tls.cert[0] != '\0' && cf->upstream_tls.key[0] == '\0') {
        *err = tap_conf_check_err(cf, "upstream_tls.cert",
                                  "upstream_tls.cert is set but upstream_tls.key is not");
        return TAP_ERROR;
    }
    if (cf->upstream_tls.key[0] != '\0' && cf->upstream_tls.cert[0] == '\0') {
        *err = tap_conf_check_err(cf, "upstream_tls.key",
                                  "upstream_tls.key is set but upstream_tls.cert is not");
        return TAP_ERROR;
    }
    if (tap_hid_of(cf->request_id_header, strlen(cf->request_id_header)) != TAP_H_OTHER) {
        *err = tap_conf_check_err(cf, "request_id_header",
                                  "names a header infertap reads or rewrites itself");
        return TAP_ERROR;
    }
    if (cf->health.backoff > cf->health.backoff_max) {
        *err = tap_conf_check_err(cf, "health.backoff", "is longer than health.backoff_max");
        return TAP_ERROR;
    }
    if (cf->otlp.traces_batch.max_batch > cf->otlp.traces_batch.max_queue) {
        *err = tap_conf_check_err(cf, "otlp.traces_batch.max_batch",
                                  "is larger than otlp.traces_batch.max_queue");
        return TAP_ERROR;
    }

    return TAP_OK;
}

static const char *
tap_conf_type_name(tap_conf_type_e t)
{
    static const char *const names[] = {"string", "integer", "boolean", "duration",
                                        "size",   "enum",    "list",    "number"};

    return names[t];
}

void
tap_conf_print_items(FILE *out)
{
    const tap_conf_item_t *it;
    char env[TAP_CONF_KEY_MAX + 16];
    size_t i, w;

    for (i = 0; i < TAP_NELEMS(tap_conf_items); i++) {
        it = &tap_conf_items[i];
        tap_conf_env_name(it->key, env, sizeof(env));
        fprintf(out, "%s  %s", it->key, tap_conf_type_name(it->type));
        if (it->type == TAP_CONF_INT) {
            fprintf(out, " %.0f..%.0f", it->min, it->max);
        } else if (it->type == TAP_CONF_DOUBLE) {
            fprintf(out, " %g..%g", it->min, it->max);
        } else if (it->type == TAP_CONF_ENUM) {
            for (w = 0; it->words[w] != NULL; w++) {
                fprintf(out, "%c%s", w ? '|' : ' ', it->words[w]);
            }
        }
        fprintf(out, "  default %s%s%s  %s\n    %s\n", it->def[0] ? "" : "\"", it->def,
                it->def[0] ? "" : "\"", env, it->desc);
    }
}

const char *
tap_conf_diff(const tap_conf_t *a, const tap_conf_t *b)
{
    const tap_conf_item_t *it;
    const tap_conf_list_t *la, *lb;
    const void *fa, *fb;
    size_t i, j;

    for (i = 0; i < TAP_NELEMS(tap_conf_items); i++) {
        it = &tap_conf_items[i];
        fa = tap_conf_field(a, it);
        fb = tap_conf_field(b, it);

        switch (it->type) {
        case TAP_CONF_STR:
            if (strcmp(*(char *const *)fa, *(char *const *)fb) != 0) {
                return it->key;
            }
            break;
        case TAP_CONF_LIST:
            la = fa;
            lb = fb;
            if (la->n != lb->n) {
                return it->key;
            }
            for (j = 0; j < la->n; j++) {
                if (strcmp(la->items[j], lb->items[j]) != 0) {
                    return it->key;
                }
            }
            break;
        case TAP_CONF_INT:
        case TAP_CONF_BOOL:
        case TAP_CONF_ENUM:
            if (*(const int *)fa != *(const int *)fb) {
                return it->key;
            }
            break;
        case TAP_CONF_DURATION:
        case TAP_CONF_SIZE:
            if (*(const uint64_t *)fa != *(const uint64_t *)fb) {
                return it->key;
            }
            break;
        case TAP_CONF_DOUBLE:
            if (*(const double *)fa != *(const double *)fb) {
                return it->key;
            }
            break;
        }
    }

    return NULL;
}

/* Value parsers. */

int
tap_parse_duration(const char *s, uint64_t *ms)
{
    const char *p;
    uint64_t total, whole, mult, fnum, fden, v;
    int digits;

    if (*s == '\0') {
        return TAP_ERROR;
    }

    for (p = s, total = 0; *p != '\0';) {
        for (whole = 0, digits = 0; isdigit((unsigned char)*p); p++, digits++) {
            if (whole > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
                return TAP_ERROR;
            }
            whole = whole * 10 + (uint64_t)(*p - '0');
        }
        fnum = 0;
        fden = 1;
        if (*p == '.') {
            for (p++; isdigit((unsigned char)*p); p++, digits++) {
                if (fden < 1000000000) { /* finer than a nanosecond is noise */
                    fnum = fnum * 10 + (uint64_t)(*p - '0');
                    fden *= 10;
                }
            }
        }
        if (digits == 0) {
            return TAP_ERROR;
        }

        if (strncmp(p, "ms", 2) == 0) {
            mult = 1;
            p += 2;
        } else if (*p == 's') {
            mult = 1000;
            p++;
        } else if (*p == 'm') {
            mult = 60 * 1000;
            p++;
        } else if (*p == 'h') {
            mult = 3600 * 1000;
            p++;
        } else if (*p == '\0' && total == 0 && p == s + strspn(s, "0123456789.")) {
            mult = 1000; /* a bare number: seconds */
        } else {
            return TAP_ERROR;
        }

        if (whole > UINT64_MAX / mult) {
            return TAP_ERROR;
        }
        v = whole * mult + fnum * mult / fden;
        if (v < whole * mult || total > UINT64_MAX - v) {
            return TAP_ERROR;
        }
        total += v;
    }

    *ms = total;
    return TAP_OK;
}

int
tap_parse_size(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"", 1},
        {"b", 1},
        {"k", 1000ULL},
        {"kb", 1000ULL},
        {"ki", 1ULL << 10},
        {"kib", 1ULL << 10},
        {"m", 1000000ULL},
        {"mb", 1000000ULL},
        {"mi", 1ULL << 20},
        {"mib", 1ULL << 20},
        {"g", 1000000000ULL},
        {"gb", 1000000000ULL},
        {"gi", 1ULL << 30},
        {"gib", 1ULL << 30},
        {"t", 1000000000000ULL},
        {"tb", 1000000000000ULL},
        {"ti", 1ULL << 40},
        {"tib", 1ULL << 40},
    };
    const char *p;
    uint64_t n;
    size_t i;

    for (p = s, n = 0; isdigit((unsigned char)*p); p++) {
        if (n > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) {
            return TAP_ERROR;
        }
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (p == s) {
        return TAP_ERROR;
    }

    for (i = 0; i < TAP_NELEMS(units); i++) {
        if (strcasecmp(p, units[i].suffix) == 0) {
            if (n > UINT64_MAX / units[i].mult) {
                return TAP_ERROR;
            }
            *bytes = n * units[i].mult;
            return TAP_OK;
        }
    }

    return TAP_ERROR;
}

int
tap_parse_bool(const char *s, int *v)
{
    static const char *const yes[] = {"true", "on", "yes", "1"};
    static const char *const no[] = {"false", "off", "no", "0"};
    size_t i;

    for (i = 0; i < TAP_NELEMS(yes); i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *v = 1;
            return TAP_OK;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *v = 0;
            return TAP_OK;
        }
    }

    return TAP_ERROR;
}

/* A port of 1 to 5 digits, at most 65535; s need not be NUL-terminated. */
static int
tap_conf_parse_port(const char *s, size_t len, unsigned *port)
{
    unsigned n;
    size_t i;

    if (len == 0 || len > 5) {
        return TAP_ERROR;
    }
    for (i = 0, n = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) {
            return TAP_ERROR;
        }
        n = n * 10 + (unsigned)(s[i] - '0');
    }
    if (n > 65535) {
        return TAP_ERROR;
    }
    *port = n;

    return TAP_OK;
}

int
tap_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    struct sockaddr_in *sin;
    struct sockaddr_in6 *sin6;
    const char *colon, *end;
    char host[INET6_ADDRSTRLEN];
    size_t hlen;
    unsigned port;

    memset(ss, 0, sizeof(*ss));

    if (*s == '[') {
        end = strchr(s, ']');
        if (end == NULL || end[1] != ':') {
            return TAP_ERROR;
        }
        hlen = (size_t)(end - s - 1);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL) {
            return TAP_ERROR; /* none, or an IPv6 address without brackets */
        }
        hlen = (size_t)(colon - s);
    }
    if (hlen >= sizeof(host) ||
        tap_conf_parse_port(colon + 1, strlen(colon + 1), &port) != TAP_OK) {
        return TAP_ERROR;
    }
    memcpy(host, *s == '[' ? s + 1 : s, hlen);
    host[hlen] = '\0';

    if (*s == '[') {
        sin6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1) {
            return TAP_ERROR;
        }
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*sin6);
        return TAP_OK;
    }

    sin = (struct sockaddr_in *)ss;
    if (hlen == 0 || strcmp(host, "*") == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_ANY);
    } else if (strcasecmp(host, "localhost") == 0) {
        sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1) {
        return TAP_ERROR;
    }
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    *len = sizeof(*sin);

    return TAP_OK;
}

int
tap_parse_url(const char *s, tap_url_t *u)
{
    struct in6_addr a6;
    const char *p, *auth, *aend, *hend, *c;
    size_t hlen, plen;
    unsigned port;

    memset(u, 0, sizeof(*u));

    if (strncasecmp(s, "http://", 7) == 0) {
        auth = s + 7;
    } else if (strncasecmp(s, "https://", 8) == 0) {
        auth = s + 8;
        u->https = 1;
    } else {
        return TAP_ERROR;
    }
    if (strpbrk(s, "?#@ \t\r\n") != NULL) {
        return TAP_ERROR; /* no query, fragment, user info or blanks */
    }
    aend = auth + strcspn(auth, "/");

    if (*auth == '[') {
        hend = memchr(auth, ']', (size_t)(aend - auth));
        if (hend == NULL) {
            return TAP_ERROR;
        }
        hlen = (size_t)(hend - auth - 1);
        if (hlen == 0 || hlen >= INET6_ADDRSTRLEN) {
            return TAP_ERROR;
        }
        memcpy(u->host, auth + 1, hlen);
        u->host[hlen] = '\0';
        if (inet_pton(AF_INET6, u->host, &a6) != 1) {
            return TAP_ERROR;
        }
        u->ipv6 = 1;
        hend++;
    } else {
        hend = memchr(auth, ':', (size_t)(aend - auth));
        if (hend == NULL) {
            hend = aend;
        }
        hlen = (size_t)(hend - auth);
        if (hlen == 0 || hlen >= sizeof(u->host)) {
            return TAP_ERROR;
        }
        for (c = auth; c < hend; c++) {
            if (!isalnum((unsigned char)*c) && *c != '-' && *c != '.' && *c != '_') {
                return TAP_ERROR;
            }
        }
        memcpy(u->host, auth, hlen);
        u->host[hlen] = '\0';
    }

    if (hend < aend) {
        if (*hend != ':' ||
            tap_conf_parse_port(hend + 1, (size_t)(aend - hend - 1), &port) != TAP_OK ||
            port == 0) {
            return TAP_ERROR;
        }
        u->port = (uint16_t)port;
    } else {
        u->port = u->https ? 443 : 80;
    }

    for (p = aend, plen = strlen(p); plen > 0 && p[plen - 1] == '/'; plen--) {
        /* a trailing slash adds nothing to a prefix */
    }
    if (plen >= sizeof(u->path)) {
        return TAP_ERROR;
    }
    for (c = p; c < p + plen; c++) {
        if ((unsigned char)*c < 0x21 || *c == 0x7f) {
            return TAP_ERROR;
        }
    }
    memcpy(u->path, p, plen);
    u->path[plen] = '\0';

    snprintf(u->authority, sizeof(u->authority), "%s%s%s", u->ipv6 ? "[" : "", u->host,
             u->ipv6 ? "]" : "");
    if (u->port != (u->https ? 443 : 80)) {
        hlen = strlen(u->authority);
        snprintf(u->authority + hlen, sizeof(u->authority) - hlen, ":%u", (unsigned)u->port);
    }

    return TAP_OK;
}

/* Percent-decode [p, p + len) into a new string; NULL on a bad escape or a control character. */
static char *
tap_conf_pct_decode(const char *p, size_t len)
{
    char *out, *o;
    unsigned c;
    size_t i;

    out = malloc(len + 1);
    if (out == NULL) {
        abort();
    }
    for (i = 0, o = out; i < len; i++) {
        c = (unsigned char)p[i];
        if (c == '%') {
            if (i + 2 >= len || !isxdigit((unsigned char)p[i + 1]) ||
                !isxdigit((unsigned char)p[i + 2])) {
                goto failed;
            }
            c = (unsigned)(isdigit((unsigned char)p[i + 1]) ? p[i + 1] - '0'
                                                            : (tolower(p[i + 1]) - 'a' + 10)) *
                    16 +
                (unsigned)(isdigit((unsigned char)p[i + 2]) ? p[i + 2] - '0'
                                                            : (tolower(p[i + 2]) - 'a' + 10));
            i += 2;
        }
        if (c < 0x20 || c == 0x7f) {
            goto failed; /* would let a value inject a header line */
        }
        *o++ = (char)c;
    }
    *o = '\0';
    return out;

failed:

    free(out);
    return NULL;
}

int
tap_conf_parse_pairs(const char *s, tap_conf_list_t *out, char **err)
{
    const char *p, *e, *eq, *ks, *ke, *vs, *ve;
    char *k, *v;

    for (p = s;; p = e + 1) {
        e = p + strcspn(p, ",");
        for (ks = p; ks < e && (*ks == ' ' || *ks == '\t'); ks++) {
            /* skip blanks */
        }
        for (ve = e; ve > ks && (ve[-1] == ' ' || ve[-1] == '\t'); ve--) {
            /* skip blanks */
        }
        if (ks < ve) {
            eq = memchr(ks, '=', (size_t)(ve - ks));
            if (eq == NULL) {
                *err = tap_conf_fmt("'%.*s' has no '='", (int)(ve - ks), ks);
                return TAP_ERROR;
            }
            for (ke = eq; ke > ks && (ke[-1] == ' ' || ke[-1] == '\t'); ke--) {
                /* skip blanks */
            }
            for (vs = eq + 1; vs < ve && (*vs == ' ' || *vs == '\t'); vs++) {
                /* skip blanks */
            }
            k = tap_conf_pct_decode(ks, (size_t)(ke - ks));
            v = tap_conf_pct_decode(vs, (size_t)(ve - vs));
            if (k == NULL || v == NULL || *k == '\0') {
                *err = tap_conf_fmt("invalid pair '%.*s'", (int)(ve - ks), ks);
                free(k);
                free(v);
                return TAP_ERROR;
            }
            tap_conf_list_add(out, k);
            tap_conf_list_add(out, v);
            free(k);
            free(v);
        }
        if (*e == '\0') {
            break;
        }
    }

    return TAP_OK;
}

char *
tap_conf_otlp_signal_url(const char *base, const char *signal)
{
    size_t len;

    len = strlen(base);
    return tap_conf_fmt("%s%sv1/%s", base, len > 0 && base[len - 1] == '/' ? "" : "/", signal);
}

/* Checks of single values, named in the table. */

static int
tap_conf_check_addr(const char *v, char **msg)
{
    struct sockaddr_storage ss;
    socklen_t len;

    if (tap_parse_addr(v, &ss, &len) != TAP_OK) {
        *msg = tap_conf_fmt("invalid address '%s' (expected IPv4:port, [IPv6]:port, "
                            "localhost:port or *:port)",
                            v);
        return TAP_ERROR;
    }

    return TAP_OK;
}

static int
tap_conf_check_admin(const char *v, char **msg)
{
    if (*v == '\0' || strcmp(v, "off") == 0) {
        return TAP_OK;
    }

    return tap_conf_check_addr(v, msg);
}

static int
tap_conf_check_url(const char *v, char **msg)
{
    tap_url_t u;

    if (tap_parse_url(v, &u) != TAP_OK) {
        *msg = tap_conf_fmt("invalid URL '%s' (expected http[s]://host[:port][/path])", v);
        return TAP_ERROR;
    }

    return TAP_OK;
}

static int
tap_conf_check_url_opt(const char *v, char **msg)
{
    return *v == '\0' ? TAP_OK : tap_conf_check_url(v, msg);
}

static int
tap_conf_check_pairs(const char *v, char **msg)
{
    tap_conf_list_t l = {NULL, 0};
    int rc;

    rc = tap_conf_parse_pairs(v, &l, msg);
    tap_conf_list_free(&l);

    return rc;
}

static int
tap_conf_check_token(const char *v, char **msg)
{
    const char *p;

    for (p = v; *p != '\0'; p++) {
        if (!isalnum((unsigned char)*p) && strchr("!#$%&'*+-.^_`|~", *p) == NULL) {
            break;
        }
    }
    if (*v == '\0' || *p != '\0') {
        *msg = tap_conf_fmt("invalid header name '%s'", v);
        return TAP_ERROR;
    }

    return TAP_OK;
}

static int
tap_conf_check_path(const char *v, char **msg)
{
    const char *p;

    for (p = v; *p != '\0' && (unsigned char)*p > 0x20 && *p != 0x7f; p++) {
        /* printable, no blanks */
    }
    if (*v != '/' || *p != '\0') {
        *msg = tap_conf_fmt("invalid path '%s' (expected /something)", v);
        return TAP_ERROR;
    }

    return TAP_OK;
}

/* Filter settings are checked by building them, so -t says what the proxy would. */
static int
tap_conf_check_fconf(const char *filters, const char *route, const char *score, char **msg)
{
    tap_fconf_t fc;
    char *f = (char *)filters, *r = (char *)route, *sc = (char *)score;

    if (tap_fconf_build(&fc, &f, filters != NULL, &r, route != NULL, &sc, score != NULL, 0, 0,
                        msg) != TAP_OK) {
        return TAP_ERROR;
    }
    tap_fconf_cleanup(&fc);
    return TAP_OK;
}

static int
tap_conf_check_filters(const char *v, char **msg)
{
    return strcmp(v, "off") == 0 ? TAP_OK : tap_conf_check_fconf(v, NULL, NULL, msg);
}

static int
tap_conf_check_route(const char *v, char **msg)
{
    return tap_conf_check_fconf(NULL, v, NULL, msg);
}

static int
tap_conf_check_score(const char *v, char **msg)
{
    return tap_conf_check_fconf(NULL, NULL, v, msg);
}

static int
tap_conf_check_nonempty(const char *v, char **msg)
{
    if (*v == '\0') {
        *msg = tap_conf_fmt("must not be empty");
        return TAP_ERROR;
    }

    return TAP_OK;
}
