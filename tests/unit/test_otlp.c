/*
 * test_otlp.c: unit tests of infertap's OTLP protobuf subset (the .proto files in proto/,
 * compiled by protoc-c).
 *
 * Builds one request of each signal the way an exporter will: an ExportTraceServiceRequest with
 * one GenAI client span (ids, kind, times, typed attributes, an event, an error status), an
 * ExportMetricsServiceRequest with a cumulative monotonic Sum and a Histogram whose points carry
 * sum/min/max with explicit presence, and an ExportLogsServiceRequest with one event record tied
 * to the span.  Each is packed once into a buffer of get_packed_size() bytes, unpacked again and
 * compared field by field; the histogram checks the packed encoding of bucket_counts and
 * explicit_bounds byte by byte, since that is where proto2 and proto3 would differ.
 *
 * The messages are built in automatic storage: nothing here is allocated but the packed buffers
 * and what protobuf-c's unpack returns.  The encoded bodies are written to otlp_traces.bin,
 * otlp_metrics.bin and otlp_logs.bin ($TAP_BUILDDIR/tests/unit, else the working directory).
 * `test_otlp --write DIR` only writes them to DIR: tests/integration/otlp_decode.mjs decodes that
 * output with the decoder generated from the official .proto files.  Output is TAP
 * (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "otlp_collector_logs.pb-c.h"
#include "otlp_collector_metrics.pb-c.h"
#include "otlp_collector_trace.pb-c.h"
#include "telemetry/pb.h"
#include "telemetry/telemetry.h"

/* the generated names are long; the test spells each type once here */
typedef Opentelemetry__Proto__Common__V1__AnyValue                       tap_t_any_t;
typedef Opentelemetry__Proto__Common__V1__ArrayValue                     tap_t_array_t;
typedef Opentelemetry__Proto__Common__V1__KeyValue                       tap_t_kv_t;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope           tap_t_scope_t;
typedef Opentelemetry__Proto__Resource__V1__Resource                     tap_t_resource_t;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans                   tap_t_rspans_t;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans                      tap_t_sspans_t;
typedef Opentelemetry__Proto__Trace__V1__Span                            tap_t_span_t;
typedef Opentelemetry__Proto__Trace__V1__Span__Event                     tap_t_event_t;
typedef Opentelemetry__Proto__Trace__V1__Status                          tap_t_status_t;
typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics               tap_t_rmetrics_t;
typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics                  tap_t_smetrics_t;
typedef Opentelemetry__Proto__Metrics__V1__Metric                        tap_t_metric_t;
typedef Opentelemetry__Proto__Metrics__V1__Sum                           tap_t_sum_t;
typedef Opentelemetry__Proto__Metrics__V1__Histogram                     tap_t_hist_t;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint               tap_t_ndp_t;
typedef Opentelemetry__Proto__Metrics__V1__HistogramDataPoint            tap_t_hdp_t;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs                     tap_t_rlogs_t;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs                        tap_t_slogs_t;
typedef Opentelemetry__Proto__Logs__V1__LogRecord                        tap_t_log_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest     tap_t_treq_t;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest tap_t_mreq_t;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest       tap_t_lreq_t;

#define TAP_T_ANY(c)    OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##c
#define TAP_T_CUMULATIVE                                                                      \
    OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE

#define TAP_T_T0        UINT64_C(1700000000000000000)
#define TAP_T_NBOUNDS   4

/* One attribute: the pair and its value live together. */
typedef struct tap_t_attr_s {
    tap_t_kv_t   kv;
    tap_t_any_t  v;
} tap_t_attr_t;

/* Everything one ExportTraceServiceRequest points to. */
typedef struct tap_t_trace_s {
    tap_t_treq_t     req;
    tap_t_rspans_t   rs, *rsp[1];
    tap_t_resource_t res;
    tap_t_attr_t     res_attr[1];
    tap_t_kv_t      *res_attrp[1];
    tap_t_sspans_t   ss, *ssp[1];
    tap_t_scope_t    scope;
    tap_t_span_t     span, *spanp[1];
    tap_t_attr_t     attr[6];
    tap_t_kv_t      *attrp[6];
    tap_t_array_t    reasons;
    tap_t_any_t      reason, *reasonp[1];
    tap_t_event_t    ev, *evp[1];
    tap_t_attr_t     ev_attr[2];
    tap_t_kv_t      *ev_attrp[2];
    tap_t_status_t   status;
} tap_t_trace_t;

/* Everything one ExportMetricsServiceRequest points to: a Sum and a two-point Histogram. */
typedef struct tap_t_metrics_s {
    tap_t_mreq_t      req;
    tap_t_rmetrics_t  rm, *rmp[1];
    tap_t_resource_t  res;
    tap_t_attr_t      res_attr[1];
    tap_t_kv_t       *res_attrp[1];
    tap_t_smetrics_t  sm, *smp[1];
    tap_t_scope_t     scope;
    tap_t_metric_t    m[2], *mp[2];
    tap_t_sum_t       sum;
    tap_t_ndp_t       ndp, *ndpp[1];
    tap_t_attr_t      ndp_attr[1];
    tap_t_kv_t       *ndp_attrp[1];
    tap_t_hist_t      hist;
    tap_t_hdp_t       hdp[2], *hdpp[2];
    tap_t_attr_t      hdp_attr[1];
    tap_t_kv_t       *hdp_attrp[1];
    uint64_t          counts[2][TAP_T_NBOUNDS + 1];
} tap_t_metrics_t;

/* Everything one ExportLogsServiceRequest points to. */
typedef struct tap_t_logs_s {
    tap_t_lreq_t      req;
    tap_t_rlogs_t     rl, *rlp[1];
    tap_t_resource_t  res;
    tap_t_attr_t      res_attr[1];
    tap_t_kv_t       *res_attrp[1];
    tap_t_slogs_t     sl, *slp[1];
    tap_t_scope_t     scope;
    tap_t_log_t       log, *logp[1];
    tap_t_any_t       body;
    tap_t_attr_t      attr[2];
    tap_t_kv_t       *attrp[2];
} tap_t_logs_t;

/* An encoded body. */
typedef struct tap_t_buf_s {
    uint8_t  *data;
    size_t    len;
} tap_t_buf_t;


static const uint8_t  tap_t_trace_id[16] = {
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
    0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
};

static const uint8_t  tap_t_span_id[8] = {
    0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7,
};

static const uint8_t  tap_t_parent_id[8] = {
    0x53, 0x99, 0x5c, 0x3f, 0x42, 0xcd, 0x8a, 0xd8,
};

static const double  tap_t_bounds[TAP_T_NBOUNDS] = { 0.1, 0.5, 1.0, 2.5 };


static tap_t_kv_t *
tap_t_attr(tap_t_attr_t *a, const char *key)
{
    *a = (tap_t_attr_t) {
        .kv = OPENTELEMETRY__PROTO__COMMON__V1__KEY_VALUE__INIT,
        .v = OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT,
    };
    a->kv.key = (char *) key;
    a->kv.value = &a->v;
    return &a->kv;
}


static tap_t_kv_t *
tap_t_attr_str(tap_t_attr_t *a, const char *key, const char *s)
{
    tap_t_kv_t  *kv;

    kv = tap_t_attr(a, key);
    a->v.value_case = TAP_T_ANY(STRING_VALUE);
    a->v.string_value = (char *) s;
    return kv;
}


static tap_t_kv_t *
tap_t_attr_int(tap_t_attr_t *a, const char *key, int64_t i)
{
    tap_t_kv_t  *kv;

    kv = tap_t_attr(a, key);
    a->v.value_case = TAP_T_ANY(INT_VALUE);
    a->v.int_value = i;
    return kv;
}


static void
tap_t_resource(tap_t_resource_t *res, tap_t_attr_t *attr, tap_t_kv_t **attrp,
    tap_t_scope_t *scope)
{
    *res = (tap_t_resource_t) OPENTELEMETRY__PROTO__RESOURCE__V1__RESOURCE__INIT;
    attrp[0] = tap_t_attr_str(&attr[0], "service.name", "infertap");
    res->n_attributes = 1;
    res->attributes = attrp;

    *scope = (tap_t_scope_t) OPENTELEMETRY__PROTO__COMMON__V1__INSTRUMENTATION_SCOPE__INIT;
    scope->name = "infertap";
    scope->version = "0.1.0";
}


/*
 * Fill t with a request holding one CLIENT span for a chat call that ended in an upstream
 * timeout.  Everything points into t.
 */
static void
tap_t_trace_build(tap_t_trace_t *t)
{
    tap_t_span_t  *s;
    tap_t_attr_t  *a;

    memset(t, 0, sizeof(*t));
    t->req = (tap_t_treq_t)
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST__INIT;
    t->rs = (tap_t_rspans_t) OPENTELEMETRY__PROTO__TRACE__V1__RESOURCE_SPANS__INIT;
    t->ss = (tap_t_sspans_t) OPENTELEMETRY__PROTO__TRACE__V1__SCOPE_SPANS__INIT;
    t->span = (tap_t_span_t) OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT;
    t->ev = (tap_t_event_t) OPENTELEMETRY__PROTO__TRACE__V1__SPAN__EVENT__INIT;
    t->status = (tap_t_status_t) OPENTELEMETRY__PROTO__TRACE__V1__STATUS__INIT;
    t->reasons = (tap_t_array_t) OPENTELEMETRY__PROTO__COMMON__V1__ARRAY_VALUE__INIT;
    t->reason = (tap_t_any_t) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;

    tap_t_resource(&t->res, t->res_attr, t->res_attrp, &t->scope);

    s = &t->span;
    s->has_trace_id = 1;
    s->trace_id.data = (uint8_t *) tap_t_trace_id;
    s->trace_id.len = sizeof(tap_t_trace_id);
    s->has_span_id = 1;
    s->span_id.data = (uint8_t *) tap_t_span_id;
    s->span_id.len = sizeof(tap_t_span_id);
    s->has_parent_span_id = 1;
    s->parent_span_id.data = (uint8_t *) tap_t_parent_id;
    s->parent_span_id.len = sizeof(tap_t_parent_id);
    s->has_flags = 1;
    s->flags = 0x101;                  /* sampled; parent remoteness known: local */
    s->name = "chat sim-model";
    s->has_kind = 1;
    s->kind = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT;
    s->has_start_time_unix_nano = 1;
    s->start_time_unix_nano = TAP_T_T0;
    s->has_end_time_unix_nano = 1;
    s->end_time_unix_nano = TAP_T_T0 + 250000000;

    a = t->attr;
    t->attrp[0] = tap_t_attr_str(&a[0], "gen_ai.operation.name", "chat");
    t->attrp[1] = tap_t_attr_int(&a[1], "server.port", 8000);
    t->attrp[2] = tap_t_attr_int(&a[2], "gen_ai.usage.input_tokens", INT64_C(5000000000));
    t->attrp[3] = tap_t_attr(&a[3], "gen_ai.request.temperature");
    a[3].v.value_case = TAP_T_ANY(DOUBLE_VALUE);
    a[3].v.double_value = 0.7;
    t->attrp[4] = tap_t_attr(&a[4], "gen_ai.request.stream");
    a[4].v.value_case = TAP_T_ANY(BOOL_VALUE);
    a[4].v.bool_value = 1;
    t->attrp[5] = tap_t_attr(&a[5], "gen_ai.response.finish_reasons");
    a[5].v.value_case = TAP_T_ANY(ARRAY_VALUE);
    a[5].v.array_value = &t->reasons;
    t->reason.value_case = TAP_T_ANY(STRING_VALUE);
    t->reason.string_value = "length";
    t->reasonp[0] = &t->reason;
    t->reasons.n_values = 1;
    t->reasons.values = t->reasonp;
    s->n_attributes = 6;
    s->attributes = t->attrp;

    t->ev.has_time_unix_nano = 1;
    t->ev.time_unix_nano = TAP_T_T0 + 200000000;
    t->ev.name = "exception";
    t->ev_attrp[0] = tap_t_attr_str(&t->ev_attr[0], "exception.type", "timeout");
    t->ev_attrp[1] = tap_t_attr_str(&t->ev_attr[1], "exception.message",
                                    "no response within 200ms");
    t->ev.n_attributes = 2;
    t->ev.attributes = t->ev_attrp;
    t->evp[0] = &t->ev;
    s->n_events = 1;
    s->events = t->evp;

    t->status.has_code = 1;
    t->status.code = OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR;
    t->status.message = "upstream timed out";
    s->status = &t->status;

    t->spanp[0] = s;
    t->ss.scope = &t->scope;
    t->ss.n_spans = 1;
    t->ss.spans = t->spanp;
    t->ssp[0] = &t->ss;
    t->rs.resource = &t->res;
    t->rs.n_scope_spans = 1;
    t->rs.scope_spans = t->ssp;
    t->rs.schema_url = "https://opentelemetry.io/schemas/1.41.0";
    t->rsp[0] = &t->rs;
    t->req.n_resource_spans = 1;
    t->req.resource_spans = t->rsp;
}


/*
 * Fill m with a request holding a cumulative monotonic Sum with one integer point and a
 * cumulative Histogram with two points: one with sum, min and max, and one for an interval with
 * no observations, where sum is present and 0.0 and min and max are absent.
 */
static void
tap_t_metrics_build(tap_t_metrics_t *m)
{
    size_t  i;

    memset(m, 0, sizeof(*m));
    m->req = (tap_t_mreq_t)
        OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_SERVICE_REQUEST__INIT;
    m->rm = (tap_t_rmetrics_t) OPENTELEMETRY__PROTO__METRICS__V1__RESOURCE_METRICS__INIT;
    m->sm = (tap_t_smetrics_t) OPENTELEMETRY__PROTO__METRICS__V1__SCOPE_METRICS__INIT;
    m->m[0] = (tap_t_metric_t) OPENTELEMETRY__PROTO__METRICS__V1__METRIC__INIT;
    m->m[1] = (tap_t_metric_t) OPENTELEMETRY__PROTO__METRICS__V1__METRIC__INIT;
    m->sum = (tap_t_sum_t) OPENTELEMETRY__PROTO__METRICS__V1__SUM__INIT;
    m->ndp = (tap_t_ndp_t) OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__INIT;
    m->hist = (tap_t_hist_t) OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM__INIT;
    m->hdp[0] = (tap_t_hdp_t) OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT__INIT;
    m->hdp[1] = (tap_t_hdp_t) OPENTELEMETRY__PROTO__METRICS__V1__HISTOGRAM_DATA_POINT__INIT;

    tap_t_resource(&m->res, m->res_attr, m->res_attrp, &m->scope);

    m->ndp_attrp[0] = tap_t_attr_int(&m->ndp_attr[0], "http.response.status_code", 200);
    m->ndp.n_attributes = 1;
    m->ndp.attributes = m->ndp_attrp;
    m->ndp.has_start_time_unix_nano = 1;
    m->ndp.start_time_unix_nano = TAP_T_T0;
    m->ndp.has_time_unix_nano = 1;
    m->ndp.time_unix_nano = TAP_T_T0 + UINT64_C(60000000000);
    m->ndp.value_case = OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT;
    m->ndp.as_int = 17;
    m->ndpp[0] = &m->ndp;
    m->sum.n_data_points = 1;
    m->sum.data_points = m->ndpp;
    m->sum.has_aggregation_temporality = 1;
    m->sum.aggregation_temporality = TAP_T_CUMULATIVE;
    m->sum.has_is_monotonic = 1;
    m->sum.is_monotonic = 1;
    m->m[0].name = "infertap.requests";
    m->m[0].description = "Requests completed.";
    m->m[0].unit = "{request}";
    m->m[0].data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM;
    m->m[0].sum = &m->sum;

    m->hdp_attrp[0] = tap_t_attr_str(&m->hdp_attr[0], "gen_ai.operation.name", "chat");
    for (i = 0; i < 2; i++) {
        m->hdp[i].n_attributes = 1;
        m->hdp[i].attributes = m->hdp_attrp;
        m->hdp[i].has_start_time_unix_nano = 1;
        m->hdp[i].start_time_unix_nano = TAP_T_T0;
        m->hdp[i].has_time_unix_nano = 1;
        m->hdp[i].time_unix_nano = TAP_T_T0 + UINT64_C(60000000000) * (i + 1);
        m->hdp[i].n_bucket_counts = TAP_T_NBOUNDS + 1;
        m->hdp[i].bucket_counts = m->counts[i];
        m->hdp[i].n_explicit_bounds = TAP_T_NBOUNDS;
        m->hdp[i].explicit_bounds = (double *) tap_t_bounds;
        m->hdp[i].has_count = 1;
        m->hdp[i].has_sum = 1;
        m->hdpp[i] = &m->hdp[i];
    }

    /* observations 0.05, 0.3, 0.6, 0.9 and 1.9; bucket i is (bounds[i-1], bounds[i]] */
    m->counts[0][0] = 1;
    m->counts[0][1] = 1;
    m->counts[0][2] = 2;
    m->counts[0][3] = 1;
    m->counts[0][4] = 0;
    m->hdp[0].count = 5;
    m->hdp[0].sum = 3.75;
    m->hdp[0].has_min = 1;
    m->hdp[0].min = 0.05;
    m->hdp[0].has_max = 1;
    m->hdp[0].max = 1.9;

    m->hdp[1].count = 0;
    m->hdp[1].sum = 0.0;

    m->hist.n_data_points = 2;
    m->hist.data_points = m->hdpp;
    m->hist.has_aggregation_temporality = 1;
    m->hist.aggregation_temporality = TAP_T_CUMULATIVE;
    m->m[1].name = "gen_ai.client.operation.duration";
    m->m[1].description = "GenAI operation duration.";
    m->m[1].unit = "s";
    m->m[1].data_case = OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM;
    m->m[1].histogram = &m->hist;

    m->mp[0] = &m->m[0];
    m->mp[1] = &m->m[1];
    m->sm.scope = &m->scope;
    m->sm.n_metrics = 2;
    m->sm.metrics = m->mp;
    m->smp[0] = &m->sm;
    m->rm.resource = &m->res;
    m->rm.n_scope_metrics = 1;
    m->rm.scope_metrics = m->smp;
    m->rmp[0] = &m->rm;
    m->req.n_resource_metrics = 1;
    m->req.resource_metrics = m->rmp;
}


/* Fill l with a request holding one event record tied to the span of tap_t_trace_build(). */
static void
tap_t_logs_build(tap_t_logs_t *l)
{
    tap_t_log_t  *r;

    memset(l, 0, sizeof(*l));
    l->req = (tap_t_lreq_t)
        OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_REQUEST__INIT;
    l->rl = (tap_t_rlogs_t) OPENTELEMETRY__PROTO__LOGS__V1__RESOURCE_LOGS__INIT;
    l->sl = (tap_t_slogs_t) OPENTELEMETRY__PROTO__LOGS__V1__SCOPE_LOGS__INIT;
    l->log = (tap_t_log_t) OPENTELEMETRY__PROTO__LOGS__V1__LOG_RECORD__INIT;
    l->body = (tap_t_any_t) OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__INIT;

    tap_t_resource(&l->res, l->res_attr, l->res_attrp, &l->scope);

    r = &l->log;
    r->has_time_unix_nano = 1;
    r->time_unix_nano = TAP_T_T0 + 200000000;
    r->has_observed_time_unix_nano = 1;
    r->observed_time_unix_nano = TAP_T_T0 + 250000000;
    r->has_severity_number = 1;
    r->severity_number = OPENTELEMETRY__PROTO__LOGS__V1__SEVERITY_NUMBER__SEVERITY_NUMBER_WARN;
    r->severity_text = "WARN";
    l->body.value_case = TAP_T_ANY(STRING_VALUE);
    l->body.string_value = "upstream timed out after 200ms";
    r->body = &l->body;
    l->attrp[0] = tap_t_attr_str(&l->attr[0], "error.type", "timeout");
    l->attrp[1] = tap_t_attr_int(&l->attr[1], "server.port", 8000);
    r->n_attributes = 2;
    r->attributes = l->attrp;
    r->has_flags = 1;
    r->flags = 0x01;
    r->has_trace_id = 1;
    r->trace_id.data = (uint8_t *) tap_t_trace_id;
    r->trace_id.len = sizeof(tap_t_trace_id);
    r->has_span_id = 1;
    r->span_id.data = (uint8_t *) tap_t_span_id;
    r->span_id.len = sizeof(tap_t_span_id);
    r->event_name = "gen_ai.client.inference.operation.details";

    l->logp[0] = r;
    l->sl.scope = &l->scope;
    l->sl.n_log_records = 1;
    l->sl.log_records = l->logp;
    l->slp[0] = &l->sl;
    l->rl.resource = &l->res;
    l->rl.n_scope_logs = 1;
    l->rl.scope_logs = l->slp;
    l->rlp[0] = &l->rl;
    l->req.n_resource_logs = 1;
    l->req.resource_logs = l->rlp;
}


/*
 * Pack msg into a new buffer of exactly get_packed_size() bytes.  The caller frees b->data.
 * Returns 0, or -1 when allocation fails or pack() disagrees with get_packed_size().
 */
static int
tap_t_pack(const ProtobufCMessage *msg, tap_t_buf_t *b)
{
    b->len = protobuf_c_message_get_packed_size(msg);
    b->data = malloc(b->len ? b->len : 1);
    if (b->data == NULL) {
        return -1;
    }

    if (protobuf_c_message_pack(msg, b->data) != b->len) {
        free(b->data);
        b->data = NULL;
        return -1;
    }

    return 0;
}


/* Write len bytes to dir/name.  Returns 0, or -1 with a message on stderr. */
static int
tap_t_write_file(const char *dir, const char *name, const tap_t_buf_t *b)
{
    char   path[4096];
    FILE  *f;
    int    rc;

    rc = -1;
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int) sizeof(path)) {
        fprintf(stderr, "test_otlp: path too long: %s/%s\n", dir, name);
        return -1;
    }

    f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        return -1;
    }

    if (fwrite(b->data, 1, b->len, f) == b->len) {
        rc = 0;
    }

    if (fclose(f) != 0 || rc != 0) {
        perror(path);
        rc = -1;
    }

    return rc;
}


/* Build and pack the three requests and write them to dir.  Returns 0 or -1. */
static int
tap_t_write_all(const char *dir)
{
    tap_t_trace_t    *t;
    tap_t_metrics_t  *m;
    tap_t_logs_t     *l;
    tap_t_buf_t       b[3] = { { NULL, 0 }, { NULL, 0 }, { NULL, 0 } };
    int               rc;
    size_t            i;

    rc = -1;
    t = malloc(sizeof(*t));
    m = malloc(sizeof(*m));
    l = malloc(sizeof(*l));
    if (t == NULL || m == NULL || l == NULL) {
        goto done;
    }

    tap_t_trace_build(t);
    tap_t_metrics_build(m);
    tap_t_logs_build(l);

    if (tap_t_pack(&t->req.base, &b[0]) != 0
        || tap_t_pack(&m->req.base, &b[1]) != 0
        || tap_t_pack(&l->req.base, &b[2]) != 0
        || tap_t_write_file(dir, "otlp_traces.bin", &b[0]) != 0
        || tap_t_write_file(dir, "otlp_metrics.bin", &b[1]) != 0
        || tap_t_write_file(dir, "otlp_logs.bin", &b[2]) != 0)
    {
        goto done;
    }

    rc = 0;

done:

    for (i = 0; i < 3; i++) {
        free(b[i].data);
    }
    free(t);
    free(m);
    free(l);
    return rc;
}


static void
tap_t_check_bytes(const ProtobufCBinaryData *got, const uint8_t *want, size_t len)
{
    assert_int_equal(got->len, len);
    assert_memory_equal(got->data, want, len);
}


static const tap_t_any_t *
tap_t_check_key(tap_t_kv_t *const *kv, size_t n, size_t i, const char *key)
{
    assert_true(i < n);
    assert_non_null(kv[i]);
    assert_string_equal(kv[i]->key, key);
    assert_non_null(kv[i]->value);
    return kv[i]->value;
}


static void
tap_t_check_resource(const tap_t_resource_t *res, const tap_t_scope_t *scope)
{
    const tap_t_any_t  *v;

    assert_non_null(res);
    v = tap_t_check_key(res->attributes, res->n_attributes, 0, "service.name");
    assert_int_equal(v->value_case, TAP_T_ANY(STRING_VALUE));
    assert_string_equal(v->string_value, "infertap");

    assert_non_null(scope);
    assert_string_equal(scope->name, "infertap");
    assert_string_equal(scope->version, "0.1.0");
    assert_int_equal(scope->n_attributes, 0);
    assert_false(scope->has_dropped_attributes_count);
}


static void
test_trace_roundtrip(void **state)
{
    tap_t_trace_t       *t;
    tap_t_buf_t          b;
    tap_t_treq_t        *req;
    const tap_t_span_t  *s;
    const tap_t_any_t   *v;

    t = malloc(sizeof(*t));
    assert_non_null(t);
    tap_t_trace_build(t);
    assert_int_equal(tap_t_pack(&t->req.base, &b), 0);

    req = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
        NULL, b.len, b.data);
    assert_non_null(req);
    assert_int_equal(req->n_resource_spans, 1);
    assert_string_equal(req->resource_spans[0]->schema_url,
                        "https://opentelemetry.io/schemas/1.41.0");
    assert_int_equal(req->resource_spans[0]->n_scope_spans, 1);
    tap_t_check_resource(req->resource_spans[0]->resource,
                         req->resource_spans[0]->scope_spans[0]->scope);
    assert_int_equal(req->resource_spans[0]->scope_spans[0]->n_spans, 1);
    s = req->resource_spans[0]->scope_spans[0]->spans[0];

    tap_t_check_bytes(&s->trace_id, tap_t_trace_id, 16);
    tap_t_check_bytes(&s->span_id, tap_t_span_id, 8);
    tap_t_check_bytes(&s->parent_span_id, tap_t_parent_id, 8);
    assert_true(s->has_flags);
    assert_int_equal(s->flags, 0x101);
    assert_null(s->trace_state);
    assert_string_equal(s->name, "chat sim-model");
    assert_true(s->has_kind);
    assert_int_equal(s->kind, OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_CLIENT);
    assert_true(s->start_time_unix_nano == TAP_T_T0);
    assert_true(s->end_time_unix_nano == TAP_T_T0 + 250000000);
    assert_false(s->has_dropped_attributes_count);

    assert_int_equal(s->n_attributes, 6);
    v = tap_t_check_key(s->attributes, s->n_attributes, 0, "gen_ai.operation.name");
    assert_int_equal(v->value_case, TAP_T_ANY(STRING_VALUE));
    assert_string_equal(v->string_value, "chat");
    v = tap_t_check_key(s->attributes, s->n_attributes, 1, "server.port");
    assert_int_equal(v->value_case, TAP_T_ANY(INT_VALUE));
    assert_true(v->int_value == 8000);
    v = tap_t_check_key(s->attributes, s->n_attributes, 2, "gen_ai.usage.input_tokens");
    assert_int_equal(v->value_case, TAP_T_ANY(INT_VALUE));
    assert_true(v->int_value == INT64_C(5000000000));
    v = tap_t_check_key(s->attributes, s->n_attributes, 3, "gen_ai.request.temperature");
    assert_int_equal(v->value_case, TAP_T_ANY(DOUBLE_VALUE));
    assert_true(v->double_value == 0.7);
    v = tap_t_check_key(s->attributes, s->n_attributes, 4, "gen_ai.request.stream");
    assert_int_equal(v->value_case, TAP_T_ANY(BOOL_VALUE));
    assert_true(v->bool_value);
    v = tap_t_check_key(s->attributes, s->n_attributes, 5, "gen_ai.response.finish_reasons");
    assert_int_equal(v->value_case, TAP_T_ANY(ARRAY_VALUE));
    assert_int_equal(v->array_value->n_values, 1);
    assert_int_equal(v->array_value->values[0]->value_case, TAP_T_ANY(STRING_VALUE));
    assert_string_equal(v->array_value->values[0]->string_value, "length");

    assert_int_equal(s->n_events, 1);
    assert_true(s->events[0]->time_unix_nano == TAP_T_T0 + 200000000);
    assert_string_equal(s->events[0]->name, "exception");
    v = tap_t_check_key(s->events[0]->attributes, s->events[0]->n_attributes, 0,
                        "exception.type");
    assert_string_equal(v->string_value, "timeout");
    v = tap_t_check_key(s->events[0]->attributes, s->events[0]->n_attributes, 1,
                        "exception.message");
    assert_string_equal(v->string_value, "no response within 200ms");
    assert_int_equal(s->n_links, 0);

    assert_non_null(s->status);
    assert_true(s->status->has_code);
    assert_int_equal(s->status->code,
                     OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR);
    assert_string_equal(s->status->message, "upstream timed out");

    opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(req,
        NULL);
    free(b.data);
    free(t);
}


/*
 * Find the first field number fn, wire type 2 in a packed message and return its payload
 * length, or -1.  Only walks the top level, which is all a data point needs.
 */
static long
tap_t_find_len_field(const uint8_t *p, size_t len, unsigned fn)
{
    size_t    i, n;
    uint64_t  key, v;
    unsigned  shift;

    i = 0;
    while (i < len) {
        key = 0;
        for (shift = 0; i < len; shift += 7) {
            key |= (uint64_t) (p[i] & 0x7f) << shift;
            if ((p[i++] & 0x80) == 0) {
                break;
            }
        }

        switch (key & 7) {
        case 0:
            while (i < len && (p[i++] & 0x80)) {
                /* skip varint */
            }
            break;
        case 1:
            i += 8;
            break;
        case 5:
            i += 4;
            break;
        case 2:
            v = 0;
            for (shift = 0; i < len; shift += 7) {
                v |= (uint64_t) (p[i] & 0x7f) << shift;
                if ((p[i++] & 0x80) == 0) {
                    break;
                }
            }
            n = (size_t) v;
            if ((key >> 3) == fn) {
                return (long) n;
            }
            i += n;
            break;
        default:
            return -1;
        }
    }

    return -1;
}


static void
test_metrics_roundtrip(void **state)
{
    tap_t_metrics_t       *m;
    tap_t_buf_t            b;
    tap_t_mreq_t          *req;
    const tap_t_smetrics_t *sm;
    const tap_t_metric_t  *mt;
    const tap_t_hdp_t     *h;
    const tap_t_any_t     *v;
    size_t                 i;

    m = malloc(sizeof(*m));
    assert_non_null(m);
    tap_t_metrics_build(m);
    assert_int_equal(tap_t_pack(&m->req.base, &b), 0);

    req = opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
        NULL, b.len, b.data);
    assert_non_null(req);
    assert_int_equal(req->n_resource_metrics, 1);
    assert_int_equal(req->resource_metrics[0]->n_scope_metrics, 1);
    sm = req->resource_metrics[0]->scope_metrics[0];
    tap_t_check_resource(req->resource_metrics[0]->resource, sm->scope);
    assert_int_equal(sm->n_metrics, 2);

    mt = sm->metrics[0];
    assert_string_equal(mt->name, "infertap.requests");
    assert_string_equal(mt->description, "Requests completed.");
    assert_string_equal(mt->unit, "{request}");
    assert_int_equal(mt->data_case, OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_SUM);
    assert_true(mt->sum->has_aggregation_temporality);
    assert_int_equal(mt->sum->aggregation_temporality, TAP_T_CUMULATIVE);
    assert_true(mt->sum->has_is_monotonic);
    assert_true(mt->sum->is_monotonic);
    assert_int_equal(mt->sum->n_data_points, 1);
    assert_int_equal(mt->sum->data_points[0]->value_case,
                     OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT);
    assert_true(mt->sum->data_points[0]->as_int == 17);
    assert_true(mt->sum->data_points[0]->start_time_unix_nano == TAP_T_T0);
    assert_true(mt->sum->data_points[0]->time_unix_nano == TAP_T_T0 + UINT64_C(60000000000));
    v = tap_t_check_key(mt->sum->data_points[0]->attributes,
                        mt->sum->data_points[0]->n_attributes, 0, "http.response.status_code");
    assert_true(v->int_value == 200);

    mt = sm->metrics[1];
    assert_string_equal(mt->name, "gen_ai.client.operation.duration");
    assert_string_equal(mt->unit, "s");
    assert_int_equal(mt->data_case, OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_HISTOGRAM);
    assert_int_equal(mt->histogram->aggregation_temporality, TAP_T_CUMULATIVE);
    assert_int_equal(mt->histogram->n_data_points, 2);

    h = mt->histogram->data_points[0];
    assert_true(h->has_count && h->count == 5);
    assert_true(h->has_sum && h->sum == 3.75);
    assert_true(h->has_min && h->min == 0.05);
    assert_true(h->has_max && h->max == 1.9);
    assert_int_equal(h->n_explicit_bounds, TAP_T_NBOUNDS);
    assert_memory_equal(h->explicit_bounds, tap_t_bounds, sizeof(tap_t_bounds));
    assert_int_equal(h->n_bucket_counts, TAP_T_NBOUNDS + 1);
    for (i = 0; i < TAP_T_NBOUNDS + 1; i++) {
        assert_true(h->bucket_counts[i] == m->counts[0][i]);
    }
    v = tap_t_check_key(h->attributes, h->n_attributes, 0, "gen_ai.operation.name");
    assert_string_equal(v->string_value, "chat");

    /* explicit presence: a sum of 0.0 is sent, an unset min or max is not */
    h = mt->histogram->data_points[1];
    assert_true(h->has_count && h->count == 0);
    assert_true(h->has_sum && h->sum == 0.0);
    assert_false(h->has_min);
    assert_false(h->has_max);
    assert_int_equal(h->n_bucket_counts, TAP_T_NBOUNDS + 1);

    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(
        req, NULL);
    free(b.data);
    free(m);
}


/*
 * bucket_counts (6) and explicit_bounds (7) are each one length-delimited field of 8-byte
 * values, as proto3 packs them; and clearing has_sum drops field 5 entirely.
 */
static void
test_histogram_packed(void **state)
{
    tap_t_metrics_t  *m;
    tap_t_buf_t       b;
    tap_t_hdp_t      *h;
    size_t            with_sum;

    m = malloc(sizeof(*m));
    assert_non_null(m);
    tap_t_metrics_build(m);
    h = &m->hdp[0];

    assert_int_equal(tap_t_pack(&h->base, &b), 0);
    assert_int_equal(tap_t_find_len_field(b.data, b.len, 6), 8 * (TAP_T_NBOUNDS + 1));
    assert_int_equal(tap_t_find_len_field(b.data, b.len, 7), 8 * TAP_T_NBOUNDS);
    assert_int_equal(tap_t_find_len_field(b.data, b.len, 5), -1);   /* sum is a plain double */
    with_sum = b.len;
    free(b.data);

    h->has_sum = 0;
    assert_int_equal(tap_t_pack(&h->base, &b), 0);
    assert_int_equal(b.len, with_sum - 9);                          /* tag + 8 bytes */
    free(b.data);

    free(m);
}


static void
test_logs_roundtrip(void **state)
{
    tap_t_logs_t       *l;
    tap_t_buf_t         b;
    tap_t_lreq_t       *req;
    const tap_t_log_t  *r;
    const tap_t_any_t  *v;

    l = malloc(sizeof(*l));
    assert_non_null(l);
    tap_t_logs_build(l);
    assert_int_equal(tap_t_pack(&l->req.base, &b), 0);

    req = opentelemetry__proto__collector__logs__v1__export_logs_service_request__unpack(
        NULL, b.len, b.data);
    assert_non_null(req);
    assert_int_equal(req->n_resource_logs, 1);
    assert_int_equal(req->resource_logs[0]->n_scope_logs, 1);
    tap_t_check_resource(req->resource_logs[0]->resource,
                         req->resource_logs[0]->scope_logs[0]->scope);
    assert_int_equal(req->resource_logs[0]->scope_logs[0]->n_log_records, 1);
    r = req->resource_logs[0]->scope_logs[0]->log_records[0];

    assert_true(r->time_unix_nano == TAP_T_T0 + 200000000);
    assert_true(r->observed_time_unix_nano == TAP_T_T0 + 250000000);
    assert_int_equal(r->severity_number,
                     OPENTELEMETRY__PROTO__LOGS__V1__SEVERITY_NUMBER__SEVERITY_NUMBER_WARN);
    assert_string_equal(r->severity_text, "WARN");
    assert_non_null(r->body);
    assert_int_equal(r->body->value_case, TAP_T_ANY(STRING_VALUE));
    assert_string_equal(r->body->string_value, "upstream timed out after 200ms");
    v = tap_t_check_key(r->attributes, r->n_attributes, 0, "error.type");
    assert_string_equal(v->string_value, "timeout");
    v = tap_t_check_key(r->attributes, r->n_attributes, 1, "server.port");
    assert_true(v->int_value == 8000);
    assert_int_equal(r->flags, 0x01);
    tap_t_check_bytes(&r->trace_id, tap_t_trace_id, 16);
    tap_t_check_bytes(&r->span_id, tap_t_span_id, 8);
    assert_string_equal(r->event_name, "gen_ai.client.inference.operation.details");

    opentelemetry__proto__collector__logs__v1__export_logs_service_request__free_unpacked(req,
        NULL);
    free(b.data);
    free(l);
}


/* An export response with a partial success round-trips; an empty body means full success. */
static void
test_response(void **state)
{
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse  resp =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_RESPONSE__INIT;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTracePartialSuccess   ps =
        OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_PARTIAL_SUCCESS__INIT;
    Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse *got;
    tap_t_buf_t                                                              b;

    got = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
        NULL, 0, (const uint8_t *) "");
    assert_non_null(got);
    assert_null(got->partial_success);
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(got,
        NULL);

    ps.has_rejected_spans = 1;
    ps.rejected_spans = 3;
    ps.error_message = "span too large";
    resp.partial_success = &ps;
    assert_int_equal(tap_t_pack(&resp.base, &b), 0);
    got = opentelemetry__proto__collector__trace__v1__export_trace_service_response__unpack(
        NULL, b.len, b.data);
    assert_non_null(got);
    assert_non_null(got->partial_success);
    assert_true(got->partial_success->rejected_spans == 3);
    assert_string_equal(got->partial_success->error_message, "span too large");
    opentelemetry__proto__collector__trace__v1__export_trace_service_response__free_unpacked(got,
        NULL);
    free(b.data);
}


/* The bodies land in $TAP_BUILDDIR/tests/unit (the working directory without it). */
static void
test_write(void **state)
{
    const char  *top;
    char         dir[4096];

    top = getenv("TAP_BUILDDIR");
    if (top != NULL && *top != '\0') {
        assert_true(snprintf(dir, sizeof(dir), "%s/tests/unit", top) < (int) sizeof(dir));
    } else {
        strcpy(dir, ".");
    }

    assert_int_equal(tap_t_write_all(dir), 0);
}


/* The same attributes, built by protobuf-c (message mode) and encoded directly (wire mode). */
static void
tap_t_attrs_fill(tap_attrs_t *at)
{
    static const char *const  two[] = { "stop", "length" };
    char                      big[300];

    memset(big, 'x', sizeof(big));
    tap_attr_str(at, "gen_ai.operation.name", "chat");
    tap_attr_str(at, "empty", "");
    tap_attr_strn(at, "cut", "abcdef", 3);
    tap_attr_strn(at, "nul.inside", "ab\0cd", 5);
    tap_attr_strn(at, "long.value.over.one.varint.byte", big, sizeof(big));
    tap_attr_int(at, "zero", 0);
    tap_attr_int(at, "small", 127);
    tap_attr_int(at, "two.bytes", 128);
    tap_attr_int(at, "negative", -1);
    tap_attr_int(at, "min", INT64_MIN);
    tap_attr_int(at, "max", INT64_MAX);
    tap_attr_double(at, "pi", 3.14159);
    tap_attr_double(at, "negative.zero", -0.0);
    tap_attr_double(at, "huge", 1e300);
    tap_attr_bool(at, "yes", 1);
    tap_attr_bool(at, "no", 0);
    tap_attr_strs(at, "gen_ai.response.finish_reasons", two, 2);
    tap_attr_strs(at, "none", two, 0);
    tap_attr_hex64(at, "infertap.prompt_hash", 0x0123456789abcdefULL);
}


static uint64_t
tap_t_varint(const uint8_t **p, const uint8_t *end)
{
    uint64_t  v = 0;
    unsigned  shift = 0;

    while (*p < end) {
        v |= (uint64_t) (**p & 0x7f) << shift;
        shift += 7;
        if ((*(*p)++ & 0x80) == 0) {
            return v;
        }
    }
    fail_msg("varint runs past the end");
    return 0;
}


/*
 * Wire mode against protobuf-c: every KeyValue byte for byte as protobuf-c
 * packs it, and a span followed by the encoded attributes unpacks with them.
 */
static void
test_attrs_wire(void **state)
{
    tap_arena_t     a;
    tap_attrs_t     msg, wire;
    tap_t_span_t    span = OPENTELEMETRY__PROTO__TRACE__V1__SPAN__INIT, *back;
    const uint8_t  *p, *end;
    uint8_t         kvbuf[1024], *packed;
    size_t          i, len, n;

    (void) state;
    tap_arena_init(&a);
    tap_attrs_init(&msg, &a);
    tap_attrs_init_wire(&wire, &a, 9);
    tap_t_attrs_fill(&msg);
    tap_t_attrs_fill(&wire);
    assert_false(a.failed);
    assert_int_equal(msg.n, wire.n);

    p = wire.wire;
    end = wire.wire + wire.wlen;
    for (i = 0; i < msg.n; i++) {
        assert_int_equal(tap_t_varint(&p, end), 9 << 3 | 2);
        len = (size_t) tap_t_varint(&p, end);
        assert_true(len <= (size_t) (end - p));
        assert_true(protobuf_c_message_get_packed_size(&msg.kv[i]->base) <= sizeof(kvbuf));
        n = protobuf_c_message_pack(&msg.kv[i]->base, kvbuf);
        assert_int_equal(len, n);
        assert_memory_equal(p, kvbuf, n);
        p += len;
    }
    assert_ptr_equal(p, end);

    span.name = "s";
    n = protobuf_c_message_get_packed_size(&span.base);
    packed = malloc(n + wire.wlen);
    assert_non_null(packed);
    protobuf_c_message_pack(&span.base, packed);
    memcpy(packed + n, wire.wire, wire.wlen);
    back = opentelemetry__proto__trace__v1__span__unpack(NULL, n + wire.wlen, packed);
    assert_non_null(back);
    assert_string_equal(back->name, "s");
    assert_int_equal(back->n_attributes, msg.n);
    for (i = 0; i < msg.n; i++) {
        assert_string_equal(back->attributes[i]->key, msg.kv[i]->key);
        assert_int_equal(back->attributes[i]->value->value_case, msg.kv[i]->value->value_case);
    }
    assert_string_equal(back->attributes[3]->value->string_value, "ab");
    assert_int_equal(back->attributes[9]->value->int_value, INT64_MIN);
    assert_int_equal(back->attributes[16]->value->array_value->n_values, 2);
    assert_string_equal(back->attributes[16]->value->array_value->values[1]->string_value,
        "length");
    opentelemetry__proto__trace__v1__span__free_unpacked(back, NULL);
    free(packed);
    tap_arena_free(&a);
}


/* Appends the KeyValues as a repeated field of number `field` would be packed. */
static size_t
tap_t_kvs_pack(uint8_t *p, unsigned field, tap_pb_kv_t **kv, size_t n)
{
    uint8_t  *start = p;
    size_t    i, len, v;

    for (i = 0; i < n; i++) {
        for (v = field << 3 | 2; v >= 0x80; v >>= 7) {
            *p++ = (uint8_t) (v | 0x80);
        }
        *p++ = (uint8_t) v;
        len = protobuf_c_message_get_packed_size(&kv[i]->base);
        for (v = len; v >= 0x80; v >>= 7) {
            *p++ = (uint8_t) (v | 0x80);
        }
        *p++ = (uint8_t) v;
        p += protobuf_c_message_pack(&kv[i]->base, p);
    }
    return (size_t) (p - start);
}


/*
 * An item is what protobuf-c packs of its message without the attributes,
 * followed by the attributes as protobuf-c packs them: the bytes the spans
 * and log records had when protobuf-c packed their other fields.
 */
static void
tap_t_item_check(const tap_tel_item_t *it, int log, const char *name)
{
    tap_t_span_t  *sp = NULL;
    tap_pb_log_t  *lr = NULL;
    uint8_t       *want;
    size_t         n, na;

    want = malloc(2 * it->len + 64);
    assert_non_null(want);
    if (!log) {
        sp = opentelemetry__proto__trace__v1__span__unpack(NULL, it->len, it->data);
        assert_non_null(sp);
        assert_string_equal(sp->name, name);
        na = sp->n_attributes;
        sp->n_attributes = 0;
        n = protobuf_c_message_pack(&sp->base, want);
        n += tap_t_kvs_pack(want + n, 9, sp->attributes, na);
        sp->n_attributes = na;
    } else {
        lr = opentelemetry__proto__logs__v1__log_record__unpack(NULL, it->len, it->data);
        assert_non_null(lr);
        assert_string_equal(lr->body->string_value, name);
        na = lr->n_attributes;
        lr->n_attributes = 0;
        n = protobuf_c_message_pack(&lr->base, want);
        n += tap_t_kvs_pack(want + n, 6, lr->attributes, na);
        lr->n_attributes = na;
    }
    assert_true(na > 3);
    assert_int_equal(n, it->len);
    assert_memory_equal(want, it->data, n);
    if (sp != NULL) {
        opentelemetry__proto__trace__v1__span__free_unpacked(sp, NULL);
    }
    if (lr != NULL) {
        opentelemetry__proto__logs__v1__log_record__free_unpacked(lr, NULL);
    }
    free(want);
}


/* The spans and log record of two exchanges, one that failed, with events and a parent. */
static void
test_tel_items(void **state)
{
    static tap_trec_t     r;
    tap_prompt_anomaly_t  an = { 1, "e2e", "e2e_ms 900 mean 100" };
    tap_tel_item_t        items[2];
    tap_arena_t           a;
    tap_t_span_t         *sp;
    size_t                n;

    (void) state;
    tap_arena_init(&a);
    tap_exchange_init(&r.ex);
    memcpy(r.ex.trace_id, tap_t_trace_id, 16);
    memcpy(r.ex.span_id, tap_t_span_id, 8);
    memcpy(r.ex.client_span_id, tap_t_parent_id, 8);
    r.ex.trace_flags = 1;
    strcpy(r.ex.request_id, "req-1");
    strcpy(r.ex.method, "POST");
    strcpy(r.path, "/v1/chat/completions");
    r.ex.path = r.path;
    r.ex.path_len = strlen(r.path);
    r.ex.status = 200;
    r.ex.bytes_in = 120;
    r.ex.bytes_out = 4000;
    strcpy(r.ex.upstream, "10.0.0.7:8000");
    r.ex.wall_t0_ns = INT64_C(1700000000000000000);
    r.ex.t0 = 1000;
    r.ex.t_req = 2000;
    r.ex.upstream_start = 3000;
    r.ex.upstream_first_byte = 500000;
    r.ex.last_byte = 9000000;
    r.ex.analysed = 1;
    r.ex.ttft_ms = 12.5;
    r.ex.tpot_ms = 3.25;
    r.ex.gen.operation = "chat";
    r.ex.gen.provider = "openai";
    strcpy(r.ex.gen.model, "sim-model");
    strcpy(r.ex.gen.response_model, "sim-model-v2");
    strcpy(r.ex.gen.response_id, "chatcmpl-1");
    r.ex.gen.stream = 1;
    r.ex.gen.max_tokens = 16;
    r.ex.gen.temperature = 0.5;
    r.ex.gen.prompt_tokens = 14;
    r.ex.gen.completion_tokens = 12;
    r.ex.gen.nchoices = 1;
    strcpy(r.ex.gen.finish_reasons[0], "stop");
    r.ex.gen.prompt_hash = UINT64_C(0x0123456789abcdef);
    r.ex.gen.has_prompt_hash = 1;
    r.ex.gen.first_token = 400000;

    n = tap_tel_spans(&a, &r, &an, NULL, items);
    assert_int_equal(n, 2);
    assert_false(a.failed);
    tap_t_item_check(&items[0], 0, "POST /v1/chat/completions");
    tap_t_item_check(&items[1], 0, "chat sim-model");
    sp = opentelemetry__proto__trace__v1__span__unpack(NULL, items[1].len, items[1].data);
    assert_non_null(sp);
    assert_int_equal(sp->n_events, 2);
    assert_string_equal(sp->events[1]->name, "infertap.anomaly");
    assert_int_equal(sp->events[1]->n_attributes, 2);
    assert_null(sp->status);
    assert_int_equal(sp->flags, 0x101);
    opentelemetry__proto__trace__v1__span__free_unpacked(sp, NULL);
    n = tap_tel_log(&a, &r, &an, items);
    assert_int_equal(n, 1);
    tap_t_item_check(&items[0], 1, "POST /v1/chat/completions 200");
    tap_arena_reset(&a);

    /* failed, under a remote parent */
    r.ex.status = 502;
    r.ex.error = "upstream_reset";
    r.ex.has_parent = 1;
    memcpy(r.ex.parent_span_id, tap_t_parent_id, 8);
    r.ex.analysed = 0;
    r.ex.gen.first_token = 0;
    n = tap_tel_spans(&a, &r, NULL, NULL, items);
    assert_int_equal(n, 2);
    tap_t_item_check(&items[0], 0, "POST");
    tap_t_item_check(&items[1], 0, "POST");
    sp = opentelemetry__proto__trace__v1__span__unpack(NULL, items[0].len, items[0].data);
    assert_non_null(sp);
    assert_non_null(sp->status);
    assert_int_equal(sp->status->code, 2);
    assert_int_equal(sp->flags, 0x301);
    assert_int_equal(sp->parent_span_id.len, 8);
    opentelemetry__proto__trace__v1__span__free_unpacked(sp, NULL);
    n = tap_tel_log(&a, &r, NULL, items);
    tap_t_item_check(&items[0], 1, "POST /v1/chat/completions 502");
    tap_arena_free(&a);
}

/* protobuf-c packs m into exactly the len bytes at p. */
static void
tap_t_packs_to(const ProtobufCMessage *m, const uint8_t *p, size_t len)
{
    uint8_t  *want;

    assert_int_equal(protobuf_c_message_get_packed_size(m), len);
    want = malloc(len ? len : 1);
    assert_non_null(want);
    protobuf_c_message_pack(m, want);
    assert_memory_equal(want, p, len);
    free(want);
}


/*
 * A request framed in place (tap_pb_frame around items written by
 * tap_pb_item) is byte for byte what protobuf-c packs for the same
 * resource, scope and items, for traces and logs, with items short and long
 * enough for lengths of one, two and three varint bytes; and it decodes.
 */
static void
test_frame(void **state)
{
    static const size_t  lens[] = { 0, 1, 127, 128, 300, 16383, 16384, 70000 };
    char                *kv[] = { "deployment.environment", "test", "host.name", "h1" };
    tap_arena_t          a;
    tap_pb_resource_t   *res;
    tap_pb_scope_t      *scope;
    ProtobufCBinaryData  items[8];
    uint8_t             *rbuf, *sbuf, *body, *p, *q, *start;
    size_t               rlen, slen, room, ilen, wlen, i, k, m, n, v;

    (void) state;
    tap_arena_init(&a);
    res = tap_pb_resource(&a, "svc", kv, 4);
    scope = tap_pb_scope(&a);
    assert_non_null(res);
    assert_non_null(scope);
    rlen = protobuf_c_message_get_packed_size(&res->base);
    slen = protobuf_c_message_get_packed_size(&scope->base);
    rbuf = malloc(rlen);
    sbuf = malloc(slen);
    protobuf_c_message_pack(&res->base, rbuf);
    protobuf_c_message_pack(&scope->base, sbuf);

    for (n = 1; n <= 8; n++) {
        room = tap_pb_frame_room(rlen, slen);
        ilen = 0;
        for (i = 0; i < n; i++) {
            /* a Span whose name (field 5) has m letters: 1 + varint(m) + m bytes */
            m = lens[(i * 3 + n) % 8];
            items[i].data = malloc(m + 8);
            q = items[i].data;
            *q++ = 5 << 3 | 2;
            for (v = m; v >= 0x80; v >>= 7) {
                *q++ = (uint8_t) (v | 0x80);
            }
            *q++ = (uint8_t) v;
            for (k = 0; k < m; k++) {
                *q++ = (uint8_t) ('a' + (k + i) % 26);
            }
            items[i].len = (size_t) (q - items[i].data);
            ilen += tap_pb_item_len(items[i].len);
        }
        body = malloc(room + ilen);
        p = body + room;
        for (i = 0; i < n; i++) {
            p = tap_pb_item(p, items[i].data, items[i].len);
        }
        assert_ptr_equal(p, body + room + ilen);
        start = tap_pb_frame(body + room, ilen, rbuf, rlen, sbuf, slen);
        assert_true(start >= body);

        {
            tap_pb_treqp_t    req = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__EXPORT_TRACE_SERVICE_REQUEST_PACKED__INIT;
            tap_pb_rspansp_t  rs = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__RESOURCE_SPANS_PACKED__INIT, *rsp = &rs;
            tap_pb_sspansp_t  ss = OPENTELEMETRY__PROTO__COLLECTOR__TRACE__V1__SCOPE_SPANS_PACKED__INIT, *ssp = &ss;
            tap_pb_lreqp_t    lreq = OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_REQUEST_PACKED__INIT;
            tap_pb_rlogsp_t   rl = OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__RESOURCE_LOGS_PACKED__INIT, *rlp = &rl;
            tap_pb_slogsp_t   sl = OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__SCOPE_LOGS_PACKED__INIT, *slp = &sl;
            tap_pb_treq_t    *t;

            ss.scope = scope;
            ss.spans = items;
            ss.n_spans = n;
            rs.resource = res;
            rs.scope_spans = &ssp;
            rs.n_scope_spans = 1;
            req.resource_spans = &rsp;
            req.n_resource_spans = 1;
            wlen = (size_t) (body + room + ilen - start);
            tap_t_packs_to(&req.base, start, wlen);

            sl.scope = scope;
            sl.log_records = items;
            sl.n_log_records = n;
            rl.resource = res;
            rl.scope_logs = &slp;
            rl.n_scope_logs = 1;
            lreq.resource_logs = &rlp;
            lreq.n_resource_logs = 1;
            tap_t_packs_to(&lreq.base, start, wlen);

            /* the generic request reads it back: resource, scope, one span per item */
            t = opentelemetry__proto__collector__trace__v1__export_trace_service_request__unpack(
                NULL, wlen, start);
            assert_non_null(t);
            assert_int_equal(t->n_resource_spans, 1);
            assert_int_equal(t->resource_spans[0]->resource->n_attributes, res->n_attributes);
            assert_int_equal(t->resource_spans[0]->n_scope_spans, 1);
            assert_string_equal(t->resource_spans[0]->scope_spans[0]->scope->name, "infertap");
            assert_int_equal(t->resource_spans[0]->scope_spans[0]->n_spans, n);
            for (i = 0; i < n; i++) {
                assert_int_equal(strlen(t->resource_spans[0]->scope_spans[0]->spans[i]->name),
                    lens[(i * 3 + n) % 8]);
            }
            opentelemetry__proto__collector__trace__v1__export_trace_service_request__free_unpacked(
                t, NULL);
        }

        for (i = 0; i < n; i++) {
            free(items[i].data);
        }
        free(body);
    }
    free(rbuf);
    free(sbuf);
    tap_arena_free(&a);
}



int
main(int argc, char **argv)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_trace_roundtrip),
        cmocka_unit_test(test_metrics_roundtrip),
        cmocka_unit_test(test_histogram_packed),
        cmocka_unit_test(test_logs_roundtrip),
        cmocka_unit_test(test_response),
        cmocka_unit_test(test_write),
        cmocka_unit_test(test_attrs_wire),
        cmocka_unit_test(test_tel_items),
        cmocka_unit_test(test_frame),
    };

    if (argc == 3 && strcmp(argv[1], "--write") == 0) {
        return tap_t_write_all(argv[2]) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
    }

    if (argc != 1) {
        fprintf(stderr, "usage: %s [--write DIR]\n", argv[0]);
        return EXIT_FAILURE;
    }

    return cmocka_run_group_tests(tests, NULL, NULL);
}
