/*
 * test_metrics.c: unit tests of the metric registry (src/telemetry/metrics.c).
 *
 * A small registry (a counter with three labels, two gauges, a histogram,
 * a counter with no series) is read out and compared byte for byte: the
 * Prometheus 0.0.4 text (names from OpenTelemetry names and units, _total,
 * cumulative buckets with observations on and between bounds, +Inf equal to
 * _count, escapes, absent labels, HELP and TYPE of empty families) and the
 * OpenMetrics text (TYPE/UNIT/HELP, counter families without _total,
 * canonical le values, "# EOF").  The 0.0.4 text also goes through
 * `promtool check metrics` when /usr/bin/promtool exists.  The cardinality
 * cap folds values into "other" and counts each folded recording in
 * infertap.metrics.label_overflow; values are cut and repaired as UTF-8.
 * The OTLP message is packed with protobuf-c, unpacked and checked point by
 * point, cumulative and delta (differences, interval sum/min/max, start
 * times, unchanged series left out, gauges always sent).  tap_metric_clear()
 * removes a family's series from both read-outs, from the cap and from the
 * delta state, and repeated clear and set cycles from the collect callback
 * keep tap_mreg_bytes() flat.  tap_metric_set_histogram() reads out like
 * observations, cumulative and delta (differences, resets, interval min and
 * max when known).  A loop times tap_metric_observe() and prints the cost as
 * a TAP comment.
 *
 * `test_metrics --write DIR` only writes DIR/metrics_cumulative.bin and
 * DIR/metrics_delta.bin, two ExportMetricsServiceRequest bodies that
 * tests/integration/otlp_decode.mjs decodes with the official decoder.
 * Output is TAP (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>

#include "tap_core.h"
#include "telemetry/metrics.h"
#include "telemetry/pb.h"

#define TAP_T_T0         UINT64_C(1700000000000000000)
#define TAP_T_SEC        UINT64_C(1000000000)
#define TAP_T_PROMTOOL   "/usr/bin/promtool"

#define TAP_T_CUMULATIVE                                                                      \
    OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_CUMULATIVE
#define TAP_T_DELTA                                                                           \
    OPENTELEMETRY__PROTO__METRICS__V1__AGGREGATION_TEMPORALITY__AGGREGATION_TEMPORALITY_DELTA
#define TAP_T_AS_INT     OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_INT
#define TAP_T_AS_DOUBLE  OPENTELEMETRY__PROTO__METRICS__V1__NUMBER_DATA_POINT__VALUE_AS_DOUBLE
#define TAP_T_DATA(c)    OPENTELEMETRY__PROTO__METRICS__V1__METRIC__DATA_##c
#define TAP_T_MREQ_INIT                                                                       \
    OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_SERVICE_REQUEST__INIT

/* The small registry and its families. */
typedef struct tap_t_reg_s {
    tap_mreg_t  *r;
    tap_mfam_t  *requests;
    tap_mfam_t  *active;
    tap_mfam_t  *duration;
    tap_mfam_t  *body;
    tap_mfam_t  *errors;
} tap_t_reg_t;

/* An unpacked request and the one ScopeMetrics in it. */
typedef struct tap_t_msg_s {
    tap_pb_mreq_t      *req;
    tap_pb_smetrics_t  *sm;
    size_t              npoints;
} tap_t_msg_t;


static const char *const  tap_t_req_labels[] = {
    "gen_ai.operation.name", "gen_ai.request.model", "server.address",
};

static const char *const  tap_t_op_labels[] = { "gen_ai.operation.name" };

static const double  tap_t_bounds[] = { 0.1, 0.5, 1.0, 2.5 };

static const tap_mfam_def_t  tap_t_requests = {
    .name = "infertap.requests", .unit = "{request}", .help = "Requests completed.",
    .kind = TAP_METRIC_COUNTER, .integer = 1, .labels = tap_t_req_labels, .nlabels = 3,
};

static const tap_mfam_def_t  tap_t_active = {
    .name = "infertap.requests.active", .unit = "{request}", .help = "Requests in flight.",
    .kind = TAP_METRIC_GAUGE, .integer = 1,
};

static const tap_mfam_def_t  tap_t_duration = {
    .name = "gen_ai.client.operation.duration", .unit = "s",
    .help = "GenAI operation duration.", .kind = TAP_METRIC_HISTOGRAM,
    .bounds = tap_t_bounds, .nbounds = 4, .labels = tap_t_op_labels, .nlabels = 1,
};

static const tap_mfam_def_t  tap_t_body = {
    .name = "http.client.response.body.size", .unit = "By",
    .help = "Body bytes, \"last\" one \\ with a\nnewline.", .kind = TAP_METRIC_GAUGE,
};

static const tap_mfam_def_t  tap_t_errors = {
    .name = "infertap.upstream.errors", .unit = "{error}", .help = "Upstream errors.",
    .kind = TAP_METRIC_COUNTER, .integer = 1, .labels = tap_t_op_labels, .nlabels = 1,
};

static const char *const  tap_t_chat[] = { "chat", "m\"1\\x\ny", "10.0.0.1" };
static const char *const  tap_t_embed[] = { "embeddings", NULL, "" };
static const char *const  tap_t_op_chat[] = { "chat" };

static const char  tap_t_prom[] =
    "# HELP infertap_requests_total Requests completed.\n"
    "# TYPE infertap_requests_total counter\n"
    "infertap_requests_total{gen_ai_operation_name=\"chat\","
    "gen_ai_request_model=\"m\\\"1\\\\x\\ny\","
    "server_address=\"10.0.0.1\"} 3\n"
    "infertap_requests_total{gen_ai_operation_name=\"embeddings\"} 1\n"
    "# HELP infertap_requests_active Requests in flight.\n"
    "# TYPE infertap_requests_active gauge\n"
    "infertap_requests_active 4\n"
    "# HELP gen_ai_client_operation_duration_seconds GenAI operation duration.\n"
    "# TYPE gen_ai_client_operation_duration_seconds histogram\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",le=\"0.1\"} 2\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",le=\"0.5\"} 3\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",le=\"1\"} 4\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",le=\"2.5\"} 4\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\","
    "le=\"+Inf\"} 5\n"
    "gen_ai_client_operation_duration_seconds_sum{gen_ai_operation_name=\"chat\"} 4.45\n"
    "gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name=\"chat\"} 5\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"0.1\"} 0\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"0.5\"} 0\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"1\"} 1\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"2.5\"} 1\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"+Inf\"} 1\n"
    "gen_ai_client_operation_duration_seconds_sum 0.7\n"
    "gen_ai_client_operation_duration_seconds_count 1\n"
    "# HELP http_client_response_body_size_bytes Body bytes, \"last\" one \\\\ with a\\nnewline.\n"
    "# TYPE http_client_response_body_size_bytes gauge\n"
    "http_client_response_body_size_bytes 1234.5\n"
    "# HELP infertap_upstream_errors_total Upstream errors.\n"
    "# TYPE infertap_upstream_errors_total counter\n"
    "# HELP infertap_metrics_label_overflow_total Recordings with a label value beyond the "
    "cardinality cap, folded into \"other\".\n"
    "# TYPE infertap_metrics_label_overflow_total counter\n";

static const char  tap_t_om[] =
    "# TYPE infertap_requests counter\n"
    "# HELP infertap_requests Requests completed.\n"
    "infertap_requests_total{gen_ai_operation_name=\"chat\","
    "gen_ai_request_model=\"m\\\"1\\\\x\\ny\","
    "server_address=\"10.0.0.1\"} 3\n"
    "infertap_requests_total{gen_ai_operation_name=\"embeddings\"} 1\n"
    "# TYPE infertap_requests_active gauge\n"
    "# HELP infertap_requests_active Requests in flight.\n"
    "infertap_requests_active 4\n"
    "# TYPE gen_ai_client_operation_duration_seconds histogram\n"
    "# UNIT gen_ai_client_operation_duration_seconds seconds\n"
    "# HELP gen_ai_client_operation_duration_seconds GenAI operation duration.\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",le=\"0.1\"} 2\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",le=\"0.5\"} 3\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",le=\"1.0\"} 4\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\",le=\"2.5\"} 4\n"
    "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\","
    "le=\"+Inf\"} 5\n"
    "gen_ai_client_operation_duration_seconds_sum{gen_ai_operation_name=\"chat\"} 4.45\n"
    "gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name=\"chat\"} 5\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"0.1\"} 0\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"0.5\"} 0\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"1.0\"} 1\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"2.5\"} 1\n"
    "gen_ai_client_operation_duration_seconds_bucket{le=\"+Inf\"} 1\n"
    "gen_ai_client_operation_duration_seconds_sum 0.7\n"
    "gen_ai_client_operation_duration_seconds_count 1\n"
    "# TYPE http_client_response_body_size_bytes gauge\n"
    "# UNIT http_client_response_body_size_bytes bytes\n"
    "# HELP http_client_response_body_size_bytes "
    "Body bytes, \\\"last\\\" one \\\\ with a\\nnewline.\n"
    "http_client_response_body_size_bytes 1234.5\n"
    "# TYPE infertap_upstream_errors counter\n"
    "# HELP infertap_upstream_errors Upstream errors.\n"
    "# TYPE infertap_metrics_label_overflow counter\n"
    "# HELP infertap_metrics_label_overflow Recordings with a label value beyond the "
    "cardinality cap, folded into \\\"other\\\".\n"
    "# EOF\n";


/* The small registry, recorded into (max_label_values 8, start T0). */
static void
tap_t_reg_build(tap_t_reg_t *t)
{
    t->r = tap_mreg_new(8, TAP_T_T0);
    assert_non_null(t->r);
    t->requests = tap_mreg_add(t->r, &tap_t_requests);
    t->active = tap_mreg_add(t->r, &tap_t_active);
    t->duration = tap_mreg_add(t->r, &tap_t_duration);
    t->body = tap_mreg_add(t->r, &tap_t_body);
    t->errors = tap_mreg_add(t->r, &tap_t_errors);
    assert_non_null(t->requests);
    assert_non_null(t->active);
    assert_non_null(t->duration);
    assert_non_null(t->body);
    assert_non_null(t->errors);

    tap_metric_add(t->requests, tap_t_chat, 2);
    tap_metric_add(t->requests, tap_t_embed, 1);
    tap_metric_add(t->requests, tap_t_chat, 1);
    tap_metric_set(t->active, NULL, 4);
    /* on a bound (its bucket), between bounds, beyond the last, below the first */
    tap_metric_observe(t->duration, tap_t_op_chat, 0.1);
    tap_metric_observe(t->duration, tap_t_op_chat, 0.3);
    tap_metric_observe(t->duration, tap_t_op_chat, 1.0);
    tap_metric_observe(t->duration, tap_t_op_chat, 3.0);
    tap_metric_observe(t->duration, tap_t_op_chat, 0.05);
    tap_metric_observe(t->duration, NULL, 0.7);
    tap_metric_set(t->body, NULL, 1234.5);
}


/* The text read-out of r, NUL-terminated; the caller frees it. */
static char *
tap_t_text(tap_mreg_t *r, int om)
{
    struct evbuffer  *out;
    char             *s;
    size_t            len;

    out = evbuffer_new();
    assert_non_null(out);
    tap_mreg_prometheus(r, out, om);
    len = evbuffer_get_length(out);
    s = malloc(len + 1);
    assert_non_null(s);
    assert_int_equal(evbuffer_remove(out, s, len), (int) len);
    s[len] = '\0';
    evbuffer_free(out);
    return s;
}


/*
 * Runs promtool check metrics on text: its exit code, or -1 when promtool
 * is not installed.  What promtool says goes to stderr.
 */
static int
tap_t_promtool(const char *text)
{
    FILE  *p;
    int    st;

    if (access(TAP_T_PROMTOOL, X_OK) != 0) {
        return -1;
    }
    p = popen(TAP_T_PROMTOOL " check metrics 1>&2", "w");
    assert_non_null(p);
    assert_int_equal(fwrite(text, 1, strlen(text), p), strlen(text));
    st = pclose(p);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}


/* Exports r, packs the request, unpacks it; the arena is reset. */
static void
tap_t_export(tap_mreg_t *r, tap_arena_t *a, uint64_t now_ns, int delta, tap_t_msg_t *m)
{
    tap_pb_mreq_t       req = TAP_T_MREQ_INIT;
    tap_pb_rmetrics_t  *rm, *rmp[1];
    tap_pb_resource_t  *res;
    uint8_t            *buf;
    size_t              len;

    res = tap_pb_resource(a, "infertap", NULL, 0);
    assert_non_null(res);
    rm = tap_mreg_otlp(r, a, res, now_ns, delta, &m->npoints);
    assert_non_null(rm);
    rmp[0] = rm;
    req.resource_metrics = rmp;
    req.n_resource_metrics = 1;

    len = protobuf_c_message_get_packed_size(&req.base);
    buf = malloc(len);
    assert_non_null(buf);
    assert_int_equal(protobuf_c_message_pack(&req.base, buf), len);
    tap_arena_reset(a);

    m->req = opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__unpack(
        NULL, len, buf);
    free(buf);
    assert_non_null(m->req);
    assert_int_equal(m->req->n_resource_metrics, 1);
    assert_non_null(m->req->resource_metrics[0]->resource);
    assert_int_equal(m->req->resource_metrics[0]->n_scope_metrics, 1);
    m->sm = m->req->resource_metrics[0]->scope_metrics[0];
    assert_non_null(m->sm->scope);
    assert_string_equal(m->sm->scope->name, "infertap");
}


static void
tap_t_msg_free(tap_t_msg_t *m)
{
    opentelemetry__proto__collector__metrics__v1__export_metrics_service_request__free_unpacked(
        m->req, NULL);
}


static const tap_pb_metric_t *
tap_t_metric(const tap_t_msg_t *m, size_t i, const char *name)
{
    assert_true(i < m->sm->n_metrics);
    assert_string_equal(m->sm->metrics[i]->name, name);
    return m->sm->metrics[i];
}


/* The string value of attribute i, checking its key. */
static const char *
tap_t_attr(tap_pb_kv_t **kv, size_t n, size_t i, const char *key)
{
    assert_true(i < n);
    assert_string_equal(kv[i]->key, key);
    assert_non_null(kv[i]->value);
    assert_int_equal(kv[i]->value->value_case, TAP_PB_ANY(STRING_VALUE));
    return kv[i]->value->string_value;
}


static void
tap_t_buckets(const tap_pb_hdp_t *p, const uint64_t *want)
{
    size_t    i;
    uint64_t  total;

    assert_int_equal(p->n_bucket_counts, TAP_NELEMS(tap_t_bounds) + 1);
    assert_int_equal(p->n_explicit_bounds, TAP_NELEMS(tap_t_bounds));
    total = 0;
    for (i = 0; i < p->n_bucket_counts; i++) {
        assert_int_equal(p->bucket_counts[i], want[i]);
        total += p->bucket_counts[i];
    }
    for (i = 0; i < p->n_explicit_bounds; i++) {
        assert_true(p->explicit_bounds[i] == tap_t_bounds[i]);
    }
    assert_true(p->has_count);
    assert_int_equal(p->count, total);
}


/*
 * Tests
 */

static void
test_prometheus_text(void **state)
{
    tap_t_reg_t  t;
    char        *s;

    tap_t_reg_build(&t);
    s = tap_t_text(t.r, 0);
    assert_string_equal(s, tap_t_prom);
    free(s);

    /* a second read gives the same text */
    s = tap_t_text(t.r, 0);
    assert_string_equal(s, tap_t_prom);
    free(s);
    tap_mreg_free(t.r);
}


static void
test_promtool(void **state)
{
    tap_t_reg_t  t;
    char        *s;
    int          rc;

    tap_t_reg_build(&t);
    s = tap_t_text(t.r, 0);
    rc = tap_t_promtool(s);
    free(s);
    tap_mreg_free(t.r);
    if (rc < 0) {
        skip();
    }
    assert_int_equal(rc, 0);
}


static void
test_openmetrics_text(void **state)
{
    tap_t_reg_t  t;
    char        *s;

    tap_t_reg_build(&t);
    s = tap_t_text(t.r, 1);
    assert_string_equal(s, tap_t_om);
    free(s);
    tap_mreg_free(t.r);
}


/* Names from OpenTelemetry names and UCUM units, one family each. */
static void
test_names(void **state)
{
    static const struct {
        const char         *name;
        const char         *unit;
        tap_metric_kind_e   kind;
        const char         *prom;
        const char         *om_unit;   /* NULL: no UNIT line */
    } cases[] = {
        { "a.b", "ms", TAP_METRIC_GAUGE, "a_b_milliseconds", "milliseconds" },
        { "net.io", "By/s", TAP_METRIC_GAUGE, "net_io_bytes_per_second", "bytes_per_second" },
        { "tokens", "{token}", TAP_METRIC_COUNTER, "tokens_total", NULL },
        { "rate", "{token}/s", TAP_METRIC_GAUGE, "rate_per_second", "per_second" },
        { "load", "1", TAP_METRIC_GAUGE, "load", NULL },
        { "cpu.time_seconds", "s", TAP_METRIC_COUNTER, "cpu_time_seconds_total", "seconds" },
        { "hits_total", "", TAP_METRIC_COUNTER, "hits_total", NULL },
        { "9lives--x..y", NULL, TAP_METRIC_GAUGE, "_9lives_x_y", NULL },
        { "ns:sub.name", "KiBy", TAP_METRIC_GAUGE, "ns:sub_name_kibibytes", "kibibytes" },
        { "odd", "{a}x{b}", TAP_METRIC_GAUGE, "odd_x", "x" },
    };
    tap_mfam_def_t  def;
    tap_mreg_t     *r;
    char           *s, want[256];
    size_t          i;

    for (i = 0; i < TAP_NELEMS(cases); i++) {
        def = (tap_mfam_def_t) {
            .name = cases[i].name, .unit = cases[i].unit, .help = "h", .kind = cases[i].kind,
        };
        r = tap_mreg_new(4, 0);
        assert_non_null(r);
        assert_non_null(tap_mreg_add(r, &def));

        s = tap_t_text(r, 0);
        snprintf(want, sizeof(want), "# HELP %s h\n", cases[i].prom);
        if (strncmp(s, want, strlen(want)) != 0) {
            fail_msg("%s [%s]: got %s", cases[i].name, cases[i].unit ? cases[i].unit : "", s);
        }
        free(s);

        s = tap_t_text(r, 1);
        if (cases[i].om_unit != NULL) {
            snprintf(want, sizeof(want), "\n# UNIT %.*s %s\n",
                     (int) (strlen(cases[i].prom)
                            - (cases[i].kind == TAP_METRIC_COUNTER ? 6 : 0)),
                     cases[i].prom, cases[i].om_unit);
            if (strstr(s, want) == NULL) {
                fail_msg("%s: no %s in %s", cases[i].name, want, s);
            }
        } else {
            assert_null(strstr(s, "# UNIT"));
        }
        free(s);
        tap_mreg_free(r);
    }
}


/* Sample values: integers as integers, others shortest and exact, Go's spelling. */
static void
test_numbers(void **state)
{
    static const char *const  labels[] = { "case" };
    static const tap_mfam_def_t  def = {
        .name = "n", .help = "Numbers.", .kind = TAP_METRIC_GAUGE, .labels = labels, .nlabels = 1,
    };
    static const struct {
        double       v;
        const char  *text;
    } cases[] = {
        { 0.1, "0.1" }, { 1e6, "1000000" }, { -2.5, "-2.5" }, { 1e15, "1e+15" },
        { 1.5e-5, "1.5e-05" }, { 123456.789, "123456.789" }, { 1234567.891, "1.234567891e+06" },
        { 0.30000000000000004, "0.30000000000000004" }, { INFINITY, "+Inf" },
        { -INFINITY, "-Inf" }, { -0.0, "0" }, { 9007199254740993.0, "9.007199254740992e+15" },
        { 5e-324, "5e-324" }, { 1.7976931348623157e308, "1.7976931348623157e+308" },
        { 0.0001, "0.0001" },
    };
    tap_mreg_t  *r;
    tap_mfam_t  *f;
    char        *s, *p, *end, want[128], name[16];
    const char  *v[1];
    size_t       i;
    unsigned     k;
    double       d;

    r = tap_mreg_new(1000, 0);
    f = tap_mreg_add(r, &def);
    assert_non_null(f);
    for (i = 0; i < TAP_NELEMS(cases); i++) {
        snprintf(name, sizeof(name), "c%zu", i);
        v[0] = name;
        tap_metric_set(f, v, cases[i].v);
    }
    /* NaN is ignored: the series keeps its value */
    v[0] = "c0";
    tap_metric_set(f, v, NAN);

    s = tap_t_text(r, 0);
    for (i = 0; i < TAP_NELEMS(cases); i++) {
        snprintf(want, sizeof(want), "\nn{case=\"c%zu\"} %s\n", i, cases[i].text);
        if (strstr(s, want) == NULL) {
            fail_msg("%g: want %s in %s", cases[i].v, cases[i].text, s);
        }
    }
    free(s);
    tap_mreg_free(r);

    /* random doubles read back exactly */
    r = tap_mreg_new(1000, 0);
    f = tap_mreg_add(r, &def);
    srand(7);
    for (k = 0; k < 200; k++) {
        d = ldexp((double) rand() / RAND_MAX + 0.5, rand() % 200 - 100) * (k % 2 ? -1 : 1);
        snprintf(name, sizeof(name), "r%u", k);
        v[0] = name;
        tap_metric_set(f, v, d);
        s = tap_t_text(r, 0);
        snprintf(want, sizeof(want), "\nn{case=\"r%u\"} ", k);
        p = strstr(s, want);
        assert_non_null(p);
        assert_true(strtod(p + strlen(want), &end) == d);
        assert_int_equal(*end, '\n');
        free(s);
    }
    tap_mreg_free(r);
}


/* The cap folds values into "other", counted once per folded recording. */
static void
test_cap(void **state)
{
    static const char *const  labels[] = { "model", "op" };
    static const tap_mfam_def_t  def = {
        .name = "test.capped", .unit = "{request}", .help = "Capped.",
        .kind = TAP_METRIC_COUNTER, .labels = labels, .nlabels = 2,
    };
    static const struct {
        const char  *model;
        const char  *op;
    } rec[] = {
        { "a", "x" }, { "b", "x" }, { "c", "x" },      /* c folds */
        { "c", "y" },                                  /* c folds, y is new */
        { "a", "z" },                                  /* z folds */
        { "a", "x" },
        { "d", "w" },                                  /* both fold: one recording */
        { NULL, "x" },                                 /* absent: no value, no fold */
        { "other", "x" },                              /* "other" itself: no fold */
        { "other", "q" },                              /* no fold for model, q folds */
    };
    static const char  want[] =
        "# HELP test_capped_total Capped.\n"
        "# TYPE test_capped_total counter\n"
        "test_capped_total{model=\"a\",op=\"x\"} 2\n"
        "test_capped_total{model=\"b\",op=\"x\"} 1\n"
        "test_capped_total{model=\"other\",op=\"x\"} 2\n"
        "test_capped_total{model=\"other\",op=\"y\"} 1\n"
        "test_capped_total{model=\"a\",op=\"other\"} 1\n"
        "test_capped_total{model=\"other\",op=\"other\"} 2\n"
        "test_capped_total{op=\"x\"} 1\n"
        "# HELP infertap_metrics_label_overflow_total Recordings with a label value beyond the "
        "cardinality cap, folded into \"other\".\n"
        "# TYPE infertap_metrics_label_overflow_total counter\n"
        "infertap_metrics_label_overflow_total{metric=\"test.capped\"} 5\n";
    tap_mreg_t         *r;
    tap_mfam_t         *f;
    tap_arena_t         a;
    tap_t_msg_t         m;
    const tap_pb_ndp_t *p;
    const char         *v[2];
    char               *s;
    size_t              i;
    int                 rc;

    r = tap_mreg_new(2, TAP_T_T0);
    f = tap_mreg_add(r, &def);
    assert_non_null(f);
    for (i = 0; i < TAP_NELEMS(rec); i++) {
        v[0] = rec[i].model;
        v[1] = rec[i].op;
        tap_metric_add(f, v, 1);
    }

    s = tap_t_text(r, 0);
    assert_string_equal(s, want);
    rc = tap_t_promtool(s);
    assert_true(rc == 0 || rc == -1);
    free(s);

    /* the overflow family goes out over OTLP like any other */
    tap_arena_init(&a);
    tap_t_export(r, &a, TAP_T_T0 + TAP_T_SEC, 0, &m);
    assert_int_equal(m.sm->n_metrics, 2);
    assert_int_equal(m.npoints, 8);
    tap_t_metric(&m, 1, "infertap.metrics.label_overflow");
    assert_int_equal(m.sm->metrics[1]->data_case, TAP_T_DATA(SUM));
    assert_string_equal(m.sm->metrics[1]->unit, "{recording}");
    p = m.sm->metrics[1]->sum->data_points[0];
    assert_string_equal(tap_t_attr(p->attributes, p->n_attributes, 0, "metric"), "test.capped");
    assert_int_equal(p->value_case, TAP_T_AS_INT);
    assert_int_equal(p->as_int, 5);
    tap_t_msg_free(&m);
    tap_arena_free(&a);
    tap_mreg_free(r);
}


/*
 * A series kept by tap_metric_observe_keep() takes tap_metric_observe_at()
 * as the lookup would take tap_metric_observe(); a folded recording keeps
 * none, so each one goes through the lookup and is counted.
 */
static void
test_observe_keep(void **state)
{
    static const double  bounds[] = { 1, 2, 4 };
    static const char *const  labels[] = { "model" };
    static const tap_mfam_def_t  def = {
        .name = "test.kept", .unit = "s", .help = "Kept.", .kind = TAP_METRIC_HISTOGRAM,
        .bounds = bounds, .nbounds = TAP_NELEMS(bounds), .labels = labels, .nlabels = 1,
    };
    static const double  xs[] = { 0.5, 1, 3, 9, 2 };
    tap_mreg_t  *r1, *r2;
    tap_mfam_t  *f1, *f2;
    tap_mser_t  *s, *o;
    const char  *v[1];
    char        *t1, *t2;
    size_t       i;

    r1 = tap_mreg_new(1, TAP_T_T0);
    r2 = tap_mreg_new(1, TAP_T_T0);
    f1 = tap_mreg_add(r1, &def);
    f2 = tap_mreg_add(r2, &def);
    assert_non_null(f1);
    assert_non_null(f2);

    assert_null(tap_metric_observe_keep(f1, NULL, NAN));
    v[0] = "a";
    s = tap_metric_observe_keep(f1, v, xs[0]);
    assert_non_null(s);
    tap_metric_observe(f2, v, xs[0]);
    v[0] = "b";                                /* beyond the cap of 1 */
    assert_null(tap_metric_observe_keep(f1, v, xs[0]));
    tap_metric_observe(f2, v, xs[0]);
    for (i = 1; i < TAP_NELEMS(xs); i++) {
        tap_metric_observe_at(f1, s, xs[i]);
        v[0] = "a";
        tap_metric_observe(f2, v, xs[i]);
        v[0] = "b";
        o = tap_metric_observe_keep(f1, v, xs[i]);
        assert_null(o);
        tap_metric_observe(f2, v, xs[i]);
    }
    tap_metric_observe_at(f1, s, NAN);

    t1 = tap_t_text(r1, 0);
    t2 = tap_t_text(r2, 0);
    assert_string_equal(t1, t2);
    assert_non_null(strstr(t1, "infertap_metrics_label_overflow_total{metric=\"test.kept\"} 5\n"));
    free(t1);
    free(t2);
    tap_mreg_free(r1);
    tap_mreg_free(r2);
}


/* Values are cut to TAP_METRIC_VALUE_MAX bytes on a character boundary and repaired. */
static void
test_values(void **state)
{
    static const char *const  labels[] = { "v" };
    static const tap_mfam_def_t  def = {
        .name = "vals", .help = "Values.", .kind = TAP_METRIC_GAUGE, .labels = labels,
        .nlabels = 1,
    };
    char         big[400], cut[400], *s, want[600];
    const char  *v[1];
    tap_mreg_t  *r;
    tap_mfam_t  *f;
    size_t       i;

    r = tap_mreg_new(100, 0);
    f = tap_mreg_add(r, &def);
    assert_non_null(f);

    /* 150 two-byte characters: 64 of them fit */
    big[0] = '\0';
    for (i = 0; i < 150; i++) {
        strcat(big, "\xc3\xa9");
    }
    v[0] = big;
    tap_metric_set(f, v, 1);
    tap_metric_set(f, v, 2);           /* the same series again */
    memcpy(cut, big, 128);
    cut[128] = '\0';
    snprintf(want, sizeof(want), "vals{v=\"%s\"} 2\n", cut);

    /* 127 ASCII bytes and a two-byte character: the character does not fit */
    memset(big, 'a', 127);
    memcpy(big + 127, "\xc3\xa9", 3);
    tap_metric_set(f, v, 3);
    v[0] = "\xff\xfe" "ab";
    tap_metric_set(f, v, 4);
    v[0] = "a\xc3";                    /* cut sequence */
    tap_metric_set(f, v, 5);
    v[0] = "\xed\xa0\x80";             /* a surrogate */
    tap_metric_set(f, v, 6);
    v[0] = "\xe0\x80\xaf";             /* overlong */
    tap_metric_set(f, v, 7);
    v[0] = "\xf0\x9f\x98\x80 ok";      /* 4 bytes, valid */
    tap_metric_set(f, v, 8);

    s = tap_t_text(r, 0);
    assert_non_null(strstr(s, want));
    memset(cut, 'a', 127);
    cut[127] = '\0';
    snprintf(want, sizeof(want), "vals{v=\"%s\"} 3\n", cut);
    assert_non_null(strstr(s, want));
    assert_non_null(strstr(s, "vals{v=\"??ab\"} 4\n"));
    assert_non_null(strstr(s, "vals{v=\"a?\"} 5\n"));
    /* the surrogate and the overlong form both become "???": one series */
    assert_non_null(strstr(s, "vals{v=\"???\"} 7\n"));
    assert_null(strstr(s, "} 6\n"));
    assert_non_null(strstr(s, "vals{v=\"\xf0\x9f\x98\x80 ok\"} 8\n"));
    free(s);
    tap_mreg_free(r);
}


/* Many series: the table grows and every series keeps its own value. */
static void
test_many_series(void **state)
{
    static const char *const  labels[] = { "id", "kind" };
    static const tap_mfam_def_t  def = {
        .name = "many", .help = "Many.", .kind = TAP_METRIC_COUNTER, .integer = 1,
        .labels = labels, .nlabels = 2,
    };
    tap_mreg_t          *r;
    tap_mfam_t          *f;
    tap_arena_t          a;
    tap_t_msg_t          m;
    const tap_pb_ndp_t  *p;
    const char          *v[2];
    char                 id[32];
    unsigned             i, round;

    r = tap_mreg_new(100000, 0);
    f = tap_mreg_add(r, &def);
    for (round = 0; round < 2; round++) {
        for (i = 0; i < 20000; i++) {
            snprintf(id, sizeof(id), "id-%u", i);
            v[0] = id;
            v[1] = i % 3 ? "k" : NULL;
            tap_metric_add(f, v, i);
        }
    }

    tap_arena_init(&a);
    tap_t_export(r, &a, 1, 0, &m);
    assert_int_equal(m.npoints, 20000);
    assert_int_equal(m.sm->metrics[0]->sum->n_data_points, 20000);
    for (i = 0; i < 20000; i++) {
        p = m.sm->metrics[0]->sum->data_points[i];
        snprintf(id, sizeof(id), "id-%u", i);
        assert_string_equal(tap_t_attr(p->attributes, p->n_attributes, 0, "id"), id);
        assert_int_equal(p->n_attributes, i % 3 ? 2 : 1);
        assert_int_equal(p->as_int, 2 * i);
    }
    tap_t_msg_free(&m);
    tap_arena_free(&a);
    tap_mreg_free(r);
}


static void
test_otlp_cumulative(void **state)
{
    static const uint64_t  chat[] = { 2, 1, 1, 0, 1 };
    static const uint64_t  none[] = { 0, 0, 1, 0, 0 };
    tap_t_reg_t            t;
    tap_arena_t            a;
    tap_t_msg_t            m;
    const tap_pb_metric_t *mt;
    const tap_pb_ndp_t    *p;
    const tap_pb_hdp_t    *h;

    tap_t_reg_build(&t);
    tap_arena_init(&a);
    tap_t_export(t.r, &a, TAP_T_T0 + 60 * TAP_T_SEC, 0, &m);

    /* the counter without series is left out */
    assert_int_equal(m.sm->n_metrics, 4);
    assert_int_equal(m.npoints, 6);

    mt = tap_t_metric(&m, 0, "infertap.requests");
    assert_string_equal(mt->description, "Requests completed.");
    assert_string_equal(mt->unit, "{request}");
    assert_int_equal(mt->data_case, TAP_T_DATA(SUM));
    assert_true(mt->sum->has_is_monotonic && mt->sum->is_monotonic);
    assert_int_equal(mt->sum->aggregation_temporality, TAP_T_CUMULATIVE);
    assert_int_equal(mt->sum->n_data_points, 2);
    p = mt->sum->data_points[0];
    assert_int_equal(p->value_case, TAP_T_AS_INT);
    assert_int_equal(p->as_int, 3);
    assert_true(p->has_start_time_unix_nano && p->start_time_unix_nano == TAP_T_T0);
    assert_true(p->has_time_unix_nano && p->time_unix_nano == TAP_T_T0 + 60 * TAP_T_SEC);
    assert_int_equal(p->n_attributes, 3);
    assert_string_equal(tap_t_attr(p->attributes, 3, 0, "gen_ai.operation.name"), "chat");
    assert_string_equal(tap_t_attr(p->attributes, 3, 1, "gen_ai.request.model"), "m\"1\\x\ny");
    assert_string_equal(tap_t_attr(p->attributes, 3, 2, "server.address"), "10.0.0.1");
    p = mt->sum->data_points[1];
    assert_int_equal(p->as_int, 1);
    assert_int_equal(p->n_attributes, 1);
    assert_string_equal(tap_t_attr(p->attributes, 1, 0, "gen_ai.operation.name"), "embeddings");

    mt = tap_t_metric(&m, 1, "infertap.requests.active");
    assert_int_equal(mt->data_case, TAP_T_DATA(GAUGE));
    assert_int_equal(mt->gauge->n_data_points, 1);
    p = mt->gauge->data_points[0];
    assert_int_equal(p->value_case, TAP_T_AS_INT);
    assert_int_equal(p->as_int, 4);
    assert_int_equal(p->n_attributes, 0);
    assert_false(p->has_start_time_unix_nano);
    assert_true(p->time_unix_nano == TAP_T_T0 + 60 * TAP_T_SEC);

    mt = tap_t_metric(&m, 2, "gen_ai.client.operation.duration");
    assert_string_equal(mt->unit, "s");
    assert_int_equal(mt->data_case, TAP_T_DATA(HISTOGRAM));
    assert_int_equal(mt->histogram->aggregation_temporality, TAP_T_CUMULATIVE);
    assert_int_equal(mt->histogram->n_data_points, 2);
    h = mt->histogram->data_points[0];
    tap_t_buckets(h, chat);
    assert_int_equal(h->count, 5);
    assert_true(h->has_sum && h->sum == 0.1 + 0.3 + 1.0 + 3.0 + 0.05);
    assert_true(h->has_min && h->min == 0.05);
    assert_true(h->has_max && h->max == 3.0);
    assert_true(h->start_time_unix_nano == TAP_T_T0);
    assert_true(h->time_unix_nano == TAP_T_T0 + 60 * TAP_T_SEC);
    assert_string_equal(tap_t_attr(h->attributes, h->n_attributes, 0, "gen_ai.operation.name"),
                        "chat");
    h = mt->histogram->data_points[1];
    tap_t_buckets(h, none);
    assert_int_equal(h->n_attributes, 0);
    assert_true(h->sum == 0.7 && h->min == 0.7 && h->max == 0.7);

    mt = tap_t_metric(&m, 3, "http.client.response.body.size");
    assert_int_equal(mt->data_case, TAP_T_DATA(GAUGE));
    p = mt->gauge->data_points[0];
    assert_int_equal(p->value_case, TAP_T_AS_DOUBLE);
    assert_true(p->as_double == 1234.5);
    tap_t_msg_free(&m);

    /* cumulative again: the same values, from the same start */
    tap_t_export(t.r, &a, TAP_T_T0 + 120 * TAP_T_SEC, 0, &m);
    assert_int_equal(m.npoints, 6);
    p = m.sm->metrics[0]->sum->data_points[0];
    assert_int_equal(p->as_int, 3);
    assert_true(p->start_time_unix_nano == TAP_T_T0);
    tap_t_msg_free(&m);

    tap_arena_free(&a);
    tap_mreg_free(t.r);
}


static void
test_otlp_delta(void **state)
{
    static const uint64_t  chat[] = { 2, 1, 1, 0, 1 };
    static const uint64_t  chat2[] = { 0, 2, 0, 0, 0 };
    static const char *const  gen[] = { "generate" };
    tap_t_reg_t            t;
    tap_arena_t            a;
    tap_t_msg_t            m;
    const tap_pb_metric_t *mt;
    const tap_pb_ndp_t    *p;
    const tap_pb_hdp_t    *h;
    uint64_t               t1, t2, t3;
    size_t                 np;

    tap_t_reg_build(&t);
    tap_arena_init(&a);
    t1 = TAP_T_T0 + 10 * TAP_T_SEC;
    t2 = TAP_T_T0 + 20 * TAP_T_SEC;
    t3 = TAP_T_T0 + 30 * TAP_T_SEC;

    /* the first delta export: everything since start */
    tap_t_export(t.r, &a, t1, 1, &m);
    assert_int_equal(m.npoints, 6);
    mt = tap_t_metric(&m, 0, "infertap.requests");
    assert_int_equal(mt->sum->aggregation_temporality, TAP_T_DELTA);
    assert_true(mt->sum->is_monotonic);
    assert_int_equal(mt->sum->data_points[0]->as_int, 3);
    assert_true(mt->sum->data_points[0]->start_time_unix_nano == TAP_T_T0);
    mt = tap_t_metric(&m, 2, "gen_ai.client.operation.duration");
    assert_int_equal(mt->histogram->aggregation_temporality, TAP_T_DELTA);
    tap_t_buckets(mt->histogram->data_points[0], chat);
    assert_true(mt->histogram->data_points[0]->min == 0.05);
    tap_t_msg_free(&m);

    /* changes: chat +2, a new series, two observations, gauges moved */
    tap_metric_add(t.requests, tap_t_chat, 2);
    tap_metric_add(t.errors, gen, 1);
    tap_metric_observe(t.duration, tap_t_op_chat, 0.2);
    tap_metric_observe(t.duration, tap_t_op_chat, 0.4);
    tap_metric_set(t.active, NULL, 2);

    tap_t_export(t.r, &a, t2, 1, &m);
    /* requests (1 changed series), active, duration (1), body, errors (1) */
    assert_int_equal(m.sm->n_metrics, 5);
    assert_int_equal(m.npoints, 5);
    mt = tap_t_metric(&m, 0, "infertap.requests");
    assert_int_equal(mt->sum->n_data_points, 1);
    p = mt->sum->data_points[0];
    assert_int_equal(p->as_int, 2);
    assert_string_equal(tap_t_attr(p->attributes, p->n_attributes, 0, "gen_ai.operation.name"),
                        "chat");
    assert_true(p->start_time_unix_nano == t1 && p->time_unix_nano == t2);
    mt = tap_t_metric(&m, 1, "infertap.requests.active");
    assert_int_equal(mt->gauge->data_points[0]->as_int, 2);
    mt = tap_t_metric(&m, 2, "gen_ai.client.operation.duration");
    assert_int_equal(mt->histogram->n_data_points, 1);
    h = mt->histogram->data_points[0];
    tap_t_buckets(h, chat2);
    assert_int_equal(h->count, 2);
    assert_true(h->sum == 0.2 + 0.4);
    assert_true(h->has_min && h->min == 0.2);
    assert_true(h->has_max && h->max == 0.4);
    assert_true(h->start_time_unix_nano == t1 && h->time_unix_nano == t2);
    tap_t_metric(&m, 3, "http.client.response.body.size");
    mt = tap_t_metric(&m, 4, "infertap.upstream.errors");
    assert_int_equal(mt->sum->data_points[0]->as_int, 1);
    tap_t_msg_free(&m);

    /* nothing changed: the gauges only; a counter set lower was reset */
    tap_t_export(t.r, &a, t3, 1, &m);
    assert_int_equal(m.sm->n_metrics, 2);
    assert_int_equal(m.npoints, 2);
    tap_t_metric(&m, 0, "infertap.requests.active");
    tap_t_metric(&m, 1, "http.client.response.body.size");
    assert_true(m.sm->metrics[1]->gauge->data_points[0]->as_double == 1234.5);
    tap_t_msg_free(&m);

    tap_metric_set(t.errors, gen, 7);
    tap_t_export(t.r, &a, t3 + TAP_T_SEC, 1, &m);
    mt = tap_t_metric(&m, 2, "infertap.upstream.errors");
    assert_int_equal(mt->sum->data_points[0]->as_int, 6);
    assert_true(mt->sum->data_points[0]->start_time_unix_nano == t3);
    tap_t_msg_free(&m);
    tap_metric_set(t.errors, gen, 3);
    tap_t_export(t.r, &a, t3 + 2 * TAP_T_SEC, 1, &m);
    assert_int_equal(m.sm->metrics[2]->sum->data_points[0]->as_int, 3);
    tap_t_msg_free(&m);

    /* cumulative reads in between do not disturb the delta base */
    tap_metric_observe(t.duration, tap_t_op_chat, 2.0);
    tap_t_export(t.r, &a, t3 + 3 * TAP_T_SEC, 0, &m);
    assert_int_equal(m.sm->metrics[2]->histogram->data_points[0]->count, 8);
    tap_t_msg_free(&m);
    tap_t_export(t.r, &a, t3 + 4 * TAP_T_SEC, 1, &m);
    h = m.sm->metrics[1]->histogram->data_points[0];
    assert_int_equal(h->count, 1);
    assert_true(h->sum == 2.0 && h->min == 2.0 && h->max == 2.0);
    assert_true(h->start_time_unix_nano == t3 + 2 * TAP_T_SEC);
    tap_t_msg_free(&m);

    tap_arena_free(&a);
    tap_mreg_free(t.r);

    /* a registry without any point gives no message */
    t.r = tap_mreg_new(4, 0);
    assert_non_null(tap_mreg_add(t.r, &tap_t_errors));
    tap_arena_init(&a);
    assert_null(tap_mreg_otlp(t.r, &a, NULL, 1, 0, &np));
    assert_int_equal(np, 0);
    tap_arena_free(&a);
    tap_mreg_free(t.r);
}


static void
tap_t_collect(tap_mreg_t *r, void *arg)
{
    tap_t_reg_t  *t = arg;

    tap_metric_set(t->active, NULL, 42);
    tap_metric_add(t->errors, tap_t_op_chat, 1);
}


/* The collect callback runs before every read. */
static void
test_collect(void **state)
{
    tap_t_reg_t  t;
    tap_arena_t  a;
    tap_t_msg_t  m;
    char        *s;

    tap_t_reg_build(&t);
    tap_mreg_on_collect(t.r, tap_t_collect, &t);
    s = tap_t_text(t.r, 0);
    assert_non_null(strstr(s, "\ninfertap_requests_active 42\n"));
    assert_non_null(strstr(s,
        "\ninfertap_upstream_errors_total{gen_ai_operation_name=\"chat\"} 1\n"));
    free(s);
    tap_arena_init(&a);
    tap_t_export(t.r, &a, TAP_T_T0 + 1, 0, &m);
    assert_int_equal(m.npoints, 7);
    assert_int_equal(m.sm->metrics[4]->sum->data_points[0]->as_int, 2);
    tap_t_msg_free(&m);
    tap_arena_free(&a);
    tap_mreg_free(t.r);
}


/* Invalid definitions and name clashes are refused; wrong calls are ignored. */
static void
test_invalid(void **state)
{
    static const double       down[] = { 1.0, 0.5 };
    static const double       nan[] = { 0.5, NAN };
    static const char *const  nine[] = { "a", "b", "c", "d", "e", "f", "g", "h", "i" };
    static const char *const  le[] = { "le" };
    static const char *const  same[] = { "a.b", "a_b" };
    static const char *const  empty[] = { "" };
    static const tap_mfam_def_t  neg = {
        .name = "neg", .help = "h", .kind = TAP_METRIC_COUNTER,
    };
    static const tap_mfam_def_t  neg2 = {
        .name = "neg2", .help = "h", .kind = TAP_METRIC_COUNTER,
    };
    tap_mfam_def_t            d, hd, xd, cd;
    tap_mreg_t               *r;
    tap_mfam_t               *f;
    char                     *s;

    r = tap_mreg_new(4, 0);
    assert_non_null(r);
    d = (tap_mfam_def_t) { .name = "h", .help = "h", .kind = TAP_METRIC_HISTOGRAM };
    d.bounds = down;
    d.nbounds = 2;
    assert_null(tap_mreg_add(r, &d));
    d.bounds = nan;
    assert_null(tap_mreg_add(r, &d));
    d.bounds = NULL;
    assert_null(tap_mreg_add(r, &d));
    d.nbounds = TAP_METRIC_MAX_BOUNDS + 1;
    assert_null(tap_mreg_add(r, &d));
    d.nbounds = 0;
    d.labels = le;
    d.nlabels = 1;
    assert_null(tap_mreg_add(r, &d));
    d.labels = same;
    d.nlabels = 2;
    assert_null(tap_mreg_add(r, &d));
    d.labels = empty;
    d.nlabels = 1;
    assert_null(tap_mreg_add(r, &d));
    d.labels = nine;
    d.nlabels = 9;
    assert_null(tap_mreg_add(r, &d));
    d.labels = NULL;
    d.nlabels = 1;
    assert_null(tap_mreg_add(r, &d));
    d.nlabels = 0;
    d.help = NULL;
    assert_null(tap_mreg_add(r, &d));
    d.help = "h";
    d.name = "";
    assert_null(tap_mreg_add(r, &d));
    d.name = "..";
    assert_null(tap_mreg_add(r, &d));

    /* with no bounds: one bucket, +Inf (registered definitions must stay put) */
    d.name = "h";
    hd = d;
    f = tap_mreg_add(r, &hd);
    assert_non_null(f);
    tap_metric_observe(f, NULL, 3);
    assert_null(tap_mreg_add(r, &d));                  /* same name */
    d = (tap_mfam_def_t) { .name = "h", .help = "h", .kind = TAP_METRIC_GAUGE };
    assert_null(tap_mreg_add(r, &d));
    d.name = "infertap.metrics.label_overflow";
    assert_null(tap_mreg_add(r, &d));
    xd = (tap_mfam_def_t) { .name = "x", .help = "h", .kind = TAP_METRIC_COUNTER, .unit = "s" };
    assert_non_null(tap_mreg_add(r, &xd));
    d = (tap_mfam_def_t) { .name = "x_seconds", .help = "h", .kind = TAP_METRIC_GAUGE };
    assert_null(tap_mreg_add(r, &d));                  /* the OpenMetrics family of x */
    d.name = "x.seconds.total";
    assert_null(tap_mreg_add(r, &d));                  /* the 0.0.4 family of x */
    cd = (tap_mfam_def_t) { .name = "x.seconds.count", .help = "h", .kind = TAP_METRIC_GAUGE };
    assert_non_null(tap_mreg_add(r, &cd));

    /* calls that do not fit the family change nothing */
    tap_metric_add(f, NULL, 1);
    tap_metric_set(f, NULL, 1);
    tap_metric_observe(f, NULL, NAN);
    tap_metric_add(NULL, NULL, 1);
    tap_metric_add(tap_mreg_add(r, &neg), NULL, -1);
    tap_metric_set(tap_mreg_add(r, &neg2), NULL, -1);
    s = tap_t_text(r, 0);
    assert_non_null(strstr(s, "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 3\nh_count 1\n"));
    assert_non_null(strstr(s, "# TYPE neg_total counter\n# HELP neg2_total"));
    assert_non_null(strstr(s, "# TYPE neg2_total counter\n# HELP infertap_metrics"));
    free(s);
    tap_mreg_free(r);
    tap_mreg_free(NULL);
}


/* A gauge family refreshed at each read: "the top prompts now". */
typedef struct tap_t_top_s {
    tap_mfam_t  *f;
    unsigned     cycle;
    unsigned     n;
} tap_t_top_t;


static const char *const  tap_t_prompt_labels[] = { "prompt" };

static const tap_mfam_def_t  tap_t_top = {
    .name = "infertap.prompt.top", .unit = "{request}", .help = "Top prompts.",
    .kind = TAP_METRIC_GAUGE, .integer = 1, .labels = tap_t_prompt_labels, .nlabels = 1,
};

static const tap_mfam_def_t  tap_t_hits = {
    .name = "infertap.prompt.hits", .unit = "{request}", .help = "Hits.",
    .kind = TAP_METRIC_COUNTER, .integer = 1, .labels = tap_t_prompt_labels, .nlabels = 1,
};


/* Sets n series with fresh fixed-width values "pCCCCC-I" = cycle * 10 + i. */
static void
tap_t_top_collect(tap_mreg_t *r, void *arg)
{
    tap_t_top_t  *t = arg;
    char          name[32];
    const char   *v[1];
    unsigned      i;

    tap_metric_clear(t->f);
    for (i = 0; i < t->n; i++) {
        snprintf(name, sizeof(name), "p%05u-%u", t->cycle, i);
        v[0] = name;
        tap_metric_set(t->f, v, t->cycle * 10 + i);
    }
}


/* Clear removes every series, the label values and the delta state. */
static void
test_clear(void **state)
{
    static const char *const  a[] = { "a" }, *const b[] = { "b" }, *const c[] = { "c" };
    static const char *const  d[] = { "d" }, *const e[] = { "e" };
    static const char  want[] =
        "# HELP infertap_prompt_top Top prompts.\n"
        "# TYPE infertap_prompt_top gauge\n"
        "infertap_prompt_top{prompt=\"d\"} 4\n"
        "infertap_prompt_top{prompt=\"e\"} 5\n"
        "# HELP infertap_prompt_hits_total Hits.\n"
        "# TYPE infertap_prompt_hits_total counter\n"
        "# HELP infertap_metrics_label_overflow_total Recordings with a label value beyond the "
        "cardinality cap, folded into \"other\".\n"
        "# TYPE infertap_metrics_label_overflow_total counter\n";
    tap_mreg_t             *r;
    tap_mfam_t             *f, *hits;
    tap_arena_t             ar;
    tap_t_msg_t             m;
    const tap_pb_metric_t  *mt;
    const tap_pb_ndp_t     *p;
    char                   *s;
    size_t                  np, empty;
    int                     delta;

    r = tap_mreg_new(3, TAP_T_T0);
    assert_non_null(r);
    assert_int_equal(tap_mreg_bytes(r), 0);
    f = tap_mreg_add(r, &tap_t_top);
    hits = tap_mreg_add(r, &tap_t_hits);
    assert_non_null(f);
    assert_non_null(hits);
    tap_arena_init(&ar);

    /* 3 series (the cap is full), clear, 2 others: neither folds */
    for (delta = 0; delta < 2; delta++) {
        tap_metric_set(f, a, 1);
        tap_metric_set(f, b, 2);
        tap_metric_set(f, c, 3);
        assert_true(tap_mreg_bytes(r) > 0);
        tap_metric_clear(f);
        tap_metric_set(f, d, 4);
        tap_metric_set(f, e, 5);

        s = tap_t_text(r, 0);
        assert_string_equal(s, want);
        free(s);

        tap_t_export(r, &ar, TAP_T_T0 + (1 + delta) * TAP_T_SEC, delta, &m);
        assert_int_equal(m.sm->n_metrics, 1);
        assert_int_equal(m.npoints, 2);
        mt = tap_t_metric(&m, 0, "infertap.prompt.top");
        assert_int_equal(mt->gauge->n_data_points, 2);
        p = mt->gauge->data_points[0];
        assert_string_equal(tap_t_attr(p->attributes, p->n_attributes, 0, "prompt"), "d");
        assert_int_equal(p->as_int, 4);
        p = mt->gauge->data_points[1];
        assert_string_equal(tap_t_attr(p->attributes, p->n_attributes, 0, "prompt"), "e");
        assert_int_equal(p->as_int, 5);
        tap_t_msg_free(&m);
        tap_metric_clear(f);
        if (delta == 0) {
            empty = tap_mreg_bytes(r);
            assert_true(empty > 0);        /* the tables are kept */
        }
        assert_int_equal(tap_mreg_bytes(r), empty);
    }

    /* a cleared family without series: announced, and no OTLP metric */
    s = tap_t_text(r, 1);
    assert_non_null(strstr(s, "# HELP infertap_prompt_top Top prompts.\n"
                              "# TYPE infertap_prompt_hits counter\n"));
    free(s);
    assert_null(tap_mreg_otlp(r, &ar, NULL, TAP_T_T0 + 3 * TAP_T_SEC, 0, &np));
    assert_int_equal(np, 0);
    tap_arena_reset(&ar);

    /* a counter set again after a clear: its next delta point is its whole value */
    tap_metric_set(hits, a, 5);
    tap_t_export(r, &ar, TAP_T_T0 + 4 * TAP_T_SEC, 1, &m);
    assert_int_equal(tap_t_metric(&m, 0, "infertap.prompt.hits")->sum->data_points[0]->as_int,
                     5);
    tap_t_msg_free(&m);
    tap_metric_clear(hits);
    tap_metric_set(hits, a, 7);
    tap_t_export(r, &ar, TAP_T_T0 + 5 * TAP_T_SEC, 1, &m);
    p = tap_t_metric(&m, 0, "infertap.prompt.hits")->sum->data_points[0];
    assert_int_equal(p->as_int, 7);
    assert_true(p->start_time_unix_nano == TAP_T_T0 + 4 * TAP_T_SEC);
    tap_t_msg_free(&m);
    tap_t_export(r, &ar, TAP_T_T0 + 6 * TAP_T_SEC, 0, &m);
    p = tap_t_metric(&m, 0, "infertap.prompt.hits")->sum->data_points[0];
    assert_int_equal(p->as_int, 7);
    assert_true(p->start_time_unix_nano == TAP_T_T0);
    tap_t_msg_free(&m);

    /* everything cleared: only the empty tables are left, the same for both */
    tap_metric_clear(hits);
    assert_int_equal(tap_mreg_bytes(r), 2 * empty);

    tap_metric_clear(NULL);
    assert_int_equal(tap_mreg_bytes(NULL), 0);
    tap_arena_free(&ar);
    tap_mreg_free(r);
}


/*
 * 10,000 clear and set cycles from the collect callback, with fresh values
 * and a cap of 4: nothing folds, every read shows the cycle's series only,
 * and the bytes held stay those of the first cycle.  A peak of 1000 series
 * is given back after the next clear.
 */
static void
test_clear_cycles(void **state)
{
    tap_mreg_t   *r, *fresh;
    tap_t_top_t   t;
    tap_arena_t   a;
    tap_t_msg_t   m;
    char         *s, want[160];
    size_t        first, peak;

    r = tap_mreg_new(4, TAP_T_T0);
    assert_non_null(r);
    t.f = tap_mreg_add(r, &tap_t_top);
    assert_non_null(t.f);
    t.n = 2;
    tap_mreg_on_collect(r, tap_t_top_collect, &t);
    tap_arena_init(&a);

    first = 0;
    for (t.cycle = 0; t.cycle < 10000; t.cycle++) {
        if (t.cycle % 100 == 99) {
            tap_t_export(r, &a, TAP_T_T0 + t.cycle, t.cycle % 200 == 99, &m);
            assert_int_equal(m.sm->n_metrics, 1);
            assert_int_equal(m.npoints, 2);
            snprintf(want, sizeof(want), "p%05u-1", t.cycle);
            assert_string_equal(tap_t_attr(m.sm->metrics[0]->gauge->data_points[1]->attributes,
                                           1, 0, "prompt"), want);
            tap_t_msg_free(&m);
        } else {
            s = tap_t_text(r, 0);
            snprintf(want, sizeof(want), "\ninfertap_prompt_top{prompt=\"p%05u-0\"} %u\n"
                     "infertap_prompt_top{prompt=\"p%05u-1\"} %u\n# HELP",
                     t.cycle, t.cycle * 10, t.cycle, t.cycle * 10 + 1);
            if (strstr(s, want) == NULL) {
                fail_msg("cycle %u: no %s in %s", t.cycle, want, s);
            }
            assert_null(strstr(s, "prompt=\"other\""));
            assert_null(strstr(s, "label_overflow_total{"));
            free(s);
        }
        if (t.cycle == 0) {
            first = tap_mreg_bytes(r);
            assert_true(first > 0);
        }
        assert_int_equal(tap_mreg_bytes(r), first);
    }

    tap_arena_free(&a);
    tap_mreg_free(r);

    /* a peak: kept once (the next refresh may need as much), then given back */
    fresh = tap_mreg_new(4000, TAP_T_T0);
    r = tap_mreg_new(4000, TAP_T_T0);
    assert_non_null(fresh);
    assert_non_null(r);
    t.f = tap_mreg_add(fresh, &tap_t_top);
    t.cycle = 3;
    tap_t_top_collect(fresh, &t);

    t.f = tap_mreg_add(r, &tap_t_top);
    tap_mreg_on_collect(r, tap_t_top_collect, &t);
    t.n = 1000;
    free(tap_t_text(r, 0));
    peak = tap_mreg_bytes(r);
    t.n = 2;
    free(tap_t_text(r, 0));
    assert_true(tap_mreg_bytes(r) > tap_mreg_bytes(fresh));
    free(tap_t_text(r, 0));
    assert_int_equal(tap_mreg_bytes(r), tap_mreg_bytes(fresh));
    assert_true(tap_mreg_bytes(r) * 20 < peak);
    tap_mreg_free(fresh);
    tap_mreg_free(r);
}


/* A histogram series set from outside, and its Prometheus text. */
static void
test_set_histogram(void **state)
{
    static const uint64_t  c1[] = { 1, 2, 0, 3, 1 };
    static const uint64_t  zero[] = { 0, 0, 0, 0, 0 };
    static const uint64_t  bad[] = { 1, 2, 0, 3, 2 };
    static const uint64_t  one[] = { 4 };
    static const char *const  none[] = { "" };
    static const tap_mfam_def_t  nob = {
        .name = "h0", .unit = "s", .help = "No bounds.", .kind = TAP_METRIC_HISTOGRAM,
    };
    static const char  want[] =
        "# HELP gen_ai_client_operation_duration_seconds GenAI operation duration.\n"
        "# TYPE gen_ai_client_operation_duration_seconds histogram\n"
        "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\","
        "le=\"0.1\"} 1\n"
        "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\","
        "le=\"0.5\"} 3\n"
        "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\","
        "le=\"1\"} 3\n"
        "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\","
        "le=\"2.5\"} 6\n"
        "gen_ai_client_operation_duration_seconds_bucket{gen_ai_operation_name=\"chat\","
        "le=\"+Inf\"} 7\n"
        "gen_ai_client_operation_duration_seconds_sum{gen_ai_operation_name=\"chat\"} 12.5\n"
        "gen_ai_client_operation_duration_seconds_count{gen_ai_operation_name=\"chat\"} 7\n"
        "gen_ai_client_operation_duration_seconds_bucket{le=\"0.1\"} 0\n"
        "gen_ai_client_operation_duration_seconds_bucket{le=\"0.5\"} 0\n"
        "gen_ai_client_operation_duration_seconds_bucket{le=\"1\"} 0\n"
        "gen_ai_client_operation_duration_seconds_bucket{le=\"2.5\"} 0\n"
        "gen_ai_client_operation_duration_seconds_bucket{le=\"+Inf\"} 0\n"
        "gen_ai_client_operation_duration_seconds_sum 0\n"
        "gen_ai_client_operation_duration_seconds_count 0\n"
        "# HELP h0_seconds No bounds.\n"
        "# TYPE h0_seconds histogram\n"
        "h0_seconds_bucket{le=\"+Inf\"} 4\n"
        "h0_seconds_sum 2\n"
        "h0_seconds_count 4\n"
        "# HELP infertap_requests_active Requests in flight.\n"
        "# TYPE infertap_requests_active gauge\n"
        "# HELP infertap_metrics_label_overflow_total Recordings with a label value beyond the "
        "cardinality cap, folded into \"other\".\n"
        "# TYPE infertap_metrics_label_overflow_total counter\n";
    tap_mreg_t             *r;
    tap_mfam_t             *f, *f0, *g;
    tap_arena_t             a;
    tap_t_msg_t             m;
    const tap_pb_metric_t  *mt;
    const tap_pb_hdp_t     *h;
    char                   *s, *s2;
    int                     rc;

    r = tap_mreg_new(8, TAP_T_T0);
    assert_non_null(r);
    f = tap_mreg_add(r, &tap_t_duration);
    f0 = tap_mreg_add(r, &nob);
    g = tap_mreg_add(r, &tap_t_active);
    assert_non_null(f);
    assert_non_null(f0);
    assert_non_null(g);

    tap_metric_set_histogram(f, tap_t_op_chat, c1, 7, 12.5, 0.0625, 4.0);
    tap_metric_set_histogram(f, none, zero, 0, 0.0, NAN, NAN);    /* min, max unused */
    tap_metric_set_histogram(f0, NULL, one, 4, 2.0, 0.25, 1.0);
    s = tap_t_text(r, 0);
    assert_string_equal(s, want);
    rc = tap_t_promtool(s);
    assert_true(rc == 0 || rc == -1);

    /* calls that do not fit change nothing */
    tap_metric_set_histogram(f, tap_t_op_chat, bad, 7, 12.5, 0.0625, 4.0);   /* sum 8 */
    tap_metric_set_histogram(f, tap_t_op_chat, c1, 7, NAN, 0.0625, 4.0);
    tap_metric_set_histogram(f, tap_t_op_chat, c1, 7, 12.5, NAN, 4.0);
    tap_metric_set_histogram(f, tap_t_op_chat, c1, 7, 12.5, 0.0625, NAN);
    tap_metric_set_histogram(f, tap_t_op_chat, c1, 7, 12.5, 5.0, 4.0);
    tap_metric_set_histogram(f, tap_t_op_chat, NULL, 0, 0.0, 0.0, 0.0);
    tap_metric_set_histogram(g, NULL, c1, 7, 12.5, 0.0625, 4.0);
    tap_metric_set_histogram(NULL, NULL, c1, 7, 12.5, 0.0625, 4.0);
    s2 = tap_t_text(r, 0);
    assert_string_equal(s2, want);
    free(s2);
    free(s);

    /* OTLP, cumulative: as if observed */
    tap_arena_init(&a);
    tap_t_export(r, &a, TAP_T_T0 + 60 * TAP_T_SEC, 0, &m);
    assert_int_equal(m.sm->n_metrics, 2);
    assert_int_equal(m.npoints, 3);
    mt = tap_t_metric(&m, 0, "gen_ai.client.operation.duration");
    assert_int_equal(mt->histogram->aggregation_temporality, TAP_T_CUMULATIVE);
    assert_int_equal(mt->histogram->n_data_points, 2);
    h = mt->histogram->data_points[0];
    tap_t_buckets(h, c1);
    assert_int_equal(h->count, 7);
    assert_true(h->has_sum && h->sum == 12.5);
    assert_true(h->has_min && h->min == 0.0625);
    assert_true(h->has_max && h->max == 4.0);
    assert_true(h->start_time_unix_nano == TAP_T_T0);
    assert_true(h->time_unix_nano == TAP_T_T0 + 60 * TAP_T_SEC);
    assert_string_equal(tap_t_attr(h->attributes, h->n_attributes, 0, "gen_ai.operation.name"),
                        "chat");
    h = mt->histogram->data_points[1];
    tap_t_buckets(h, zero);
    assert_int_equal(h->n_attributes, 0);
    assert_true(h->has_sum && h->sum == 0.0);
    assert_false(h->has_min);
    assert_false(h->has_max);
    mt = tap_t_metric(&m, 1, "h0");
    h = mt->histogram->data_points[0];
    assert_int_equal(h->n_bucket_counts, 1);
    assert_int_equal(h->bucket_counts[0], 4);
    assert_int_equal(h->n_explicit_bounds, 0);
    assert_true(h->count == 4 && h->sum == 2.0 && h->min == 0.25 && h->max == 1.0);
    tap_t_msg_free(&m);

    tap_arena_free(&a);
    tap_mreg_free(r);
}


/* The latency shards of two workers, merged by the collect callback. */
typedef struct tap_t_shards_s {
    tap_mfam_t  *f;
    uint64_t     b[2][5];
    double       sum[2], min[2], max[2];
} tap_t_shards_t;


static void
tap_t_shards_collect(tap_mreg_t *r, void *arg)
{
    tap_t_shards_t  *t = arg;
    uint64_t         b[5], count;
    double           sum, min, max;
    size_t           i, k;

    count = 0;
    sum = 0.0;
    min = INFINITY;
    max = -INFINITY;
    for (i = 0; i < 5; i++) {
        b[i] = 0;
        for (k = 0; k < 2; k++) {
            b[i] += t->b[k][i];
        }
        count += b[i];
    }
    for (k = 0; k < 2; k++) {
        sum += t->sum[k];
        min = TAP_MIN(min, t->min[k]);
        max = TAP_MAX(max, t->max[k]);
    }
    tap_metric_set_histogram(t->f, tap_t_op_chat, b, count, sum, min, max);
}


/* Sets the shard k to these buckets, sum, min and max. */
static void
tap_t_shard(tap_t_shards_t *t, size_t k, const uint64_t *b, double sum, double min, double max)
{
    memcpy(t->b[k], b, sizeof(t->b[k]));
    t->sum[k] = sum;
    t->min[k] = min;
    t->max[k] = max;
}


/* Expects one delta histogram point: buckets, sum, and min and max (NaN: absent). */
static void
tap_t_delta_hist(tap_mreg_t *r, tap_arena_t *a, uint64_t now, uint64_t start,
    const uint64_t *want, double sum, double min, double max)
{
    tap_t_msg_t             m;
    const tap_pb_metric_t  *mt;
    const tap_pb_hdp_t     *h;

    tap_t_export(r, a, now, 1, &m);
    assert_int_equal(m.sm->n_metrics, 1);
    assert_int_equal(m.npoints, 1);
    mt = tap_t_metric(&m, 0, "gen_ai.client.operation.duration");
    assert_int_equal(mt->histogram->aggregation_temporality, TAP_T_DELTA);
    h = mt->histogram->data_points[0];
    tap_t_buckets(h, want);
    assert_true(h->has_sum && h->sum == sum);
    assert_int_equal(h->has_min, !isnan(min));
    assert_int_equal(h->has_max, !isnan(max));
    if (!isnan(min)) {
        assert_true(h->min == min);
    }
    if (!isnan(max)) {
        assert_true(h->max == max);
    }
    assert_true(h->start_time_unix_nano == start && h->time_unix_nano == now);
    tap_t_msg_free(&m);
}


/*
 * Delta exports of a histogram set from outside at each read: differences,
 * several sets in one interval, nothing sent when nothing moved, a count or
 * a bucket going down taken as a reset; the interval min and max sent when
 * a set moved them.
 */
static void
test_set_histogram_delta(void **state)
{
    static const uint64_t  w1[] = { 1, 2, 0, 3, 1 };
    static const uint64_t  w1b[] = { 0, 1, 0, 1, 0 };
    static const uint64_t  w3[] = { 0, 1, 0, 0, 0 };
    static const uint64_t  w4[] = { 0, 0, 0, 0, 2 };
    static const uint64_t  w5[] = { 1, 1, 0, 0, 1 };
    static const uint64_t  zero[] = { 0, 0, 0, 0, 0 };
    static const uint64_t  all[] = { 2, 4, 1, 4, 2 };
    tap_mreg_t             *r;
    tap_t_shards_t          t;
    tap_arena_t             a;
    tap_t_msg_t             m;
    size_t                  np;
    uint64_t                t1;

    r = tap_mreg_new(8, TAP_T_T0);
    assert_non_null(r);
    memset(&t, 0, sizeof(t));
    t.f = tap_mreg_add(r, &tap_t_duration);
    assert_non_null(t.f);
    t.min[0] = t.min[1] = INFINITY;
    t.max[0] = t.max[1] = -INFINITY;
    tap_mreg_on_collect(r, tap_t_shards_collect, &t);
    tap_arena_init(&a);
    t1 = TAP_T_T0 + TAP_T_SEC;

    /* the first export: everything since start */
    tap_t_shard(&t, 0, w1, 12.5, 0.0625, 4.0);
    tap_t_delta_hist(r, &a, t1, TAP_T_T0, w1, 12.5, 0.0625, 4.0);

    /* more, within the extremes: they are not known for the interval */
    tap_t_shard(&t, 1, w1b, 2.5, 0.25, 3.0);
    tap_t_delta_hist(r, &a, t1 + 1, t1, w1b, 2.5, NAN, NAN);

    /* a Prometheus read sets in between; the extremes moved, then stayed */
    tap_t_shard(&t, 1, (const uint64_t[]) { 0, 1, 1, 1, 1 }, 12.5, 0.25, 9.0);
    free(tap_t_text(r, 0));
    tap_t_shard(&t, 0, (const uint64_t[]) { 2, 2, 0, 3, 1 }, 12.5625, 0.03125, 4.0);
    free(tap_t_text(r, 0));
    tap_t_shard(&t, 0, (const uint64_t[]) { 2, 3, 0, 3, 1 }, 12.8125, 0.03125, 4.0);
    tap_t_delta_hist(r, &a, t1 + 2, t1 + 1, (const uint64_t[]) { 1, 1, 1, 0, 1 },
                     10.3125, 0.03125, 9.0);

    /* nothing moved: no point, no message */
    assert_null(tap_mreg_otlp(r, &a, NULL, t1 + 3, 1, &np));
    assert_int_equal(np, 0);
    tap_arena_reset(&a);

    /* the cumulative state is the merged one */
    tap_t_export(r, &a, t1 + 4, 0, &m);
    tap_t_buckets(m.sm->metrics[0]->histogram->data_points[0], all);
    assert_true(m.sm->metrics[0]->histogram->data_points[0]->sum == 12.8125 + 12.5);
    assert_true(m.sm->metrics[0]->histogram->data_points[0]->min == 0.03125);
    assert_true(m.sm->metrics[0]->histogram->data_points[0]->max == 9.0);
    tap_t_msg_free(&m);

    /* both workers restarted: the count went down, all of it is new */
    tap_t_shard(&t, 0, w3, 0.25, 0.25, 0.25);
    tap_t_shard(&t, 1, zero, 0.0, INFINITY, -INFINITY);
    tap_t_delta_hist(r, &a, t1 + 5, t1 + 2, w3, 0.25, 0.25, 0.25);

    /* down to nothing: a reset with nothing to send */
    tap_t_shard(&t, 0, zero, 0.0, INFINITY, -INFINITY);
    assert_null(tap_mreg_otlp(r, &a, NULL, t1 + 6, 1, &np));
    tap_arena_reset(&a);
    tap_t_shard(&t, 1, w4, 10.0, 4.0, 6.0);
    tap_t_delta_hist(r, &a, t1 + 7, t1 + 5, w4, 10.0, 4.0, 6.0);

    /* a higher count with one bucket lower is a reset too */
    tap_t_shard(&t, 1, w5, 7.0, 0.05, 5.0);
    tap_t_delta_hist(r, &a, t1 + 8, t1 + 7, w5, 7.0, 0.05, 5.0);

    tap_arena_free(&a);
    tap_mreg_free(r);
}

/* Registry stand-ins for the families infertap declares, to time recording. */
static void
test_observe_cost(void **state)
{
    static const double  bounds[] = {
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    };
    static const char *const  labels[] = {
        "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
        "server.address",
    };
    static const tap_mfam_def_t  def = {
        .name = "gen_ai.client.operation.duration", .unit = "s", .help = "Duration.",
        .kind = TAP_METRIC_HISTOGRAM, .bounds = bounds, .nbounds = TAP_NELEMS(bounds),
        .labels = labels, .nlabels = 4,
    };
    static const char *const  models[] = {
        "llama-3.1-8b-instruct", "qwen2.5-72b-instruct", "mistral-small-24b", "gpt-oss-20b",
    };
    const char       *v[4];
    tap_mreg_t       *r;
    tap_mfam_t       *f;
    struct timespec   t0, t1;
    double            ns;
    unsigned          i, n;

    r = tap_mreg_new(64, 0);
    f = tap_mreg_add(r, &def);
    assert_non_null(f);
    v[0] = "chat";
    v[1] = "openai";
    v[3] = "10.1.2.3:8000";
    n = 2000000;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < n; i++) {
        v[2] = models[i & 3];
        tap_metric_observe(f, v, (double) (i % 1000) * 0.013);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ns = ((double) (t1.tv_sec - t0.tv_sec) * 1e9 + (double) (t1.tv_nsec - t0.tv_nsec)) / n;
    printf("# tap_metric_observe: %.1f ns per call (4 labels, 14 bounds, 4 series)\n", ns);
    fflush(stdout);
    /* generous: sanitizer builds are many times slower */
    assert_true(ns < 20000.0);
    tap_mreg_free(r);
}


/*
 * The bodies for the official decoder
 */

static int
tap_t_write_file(const char *dir, const char *name, tap_pb_rmetrics_t *rm)
{
    tap_pb_mreq_t       req = TAP_T_MREQ_INIT;
    tap_pb_rmetrics_t  *rmp[1];
    uint8_t            *buf;
    size_t              len;
    char                path[4096];
    FILE               *f;
    int                 rc;

    if (rm == NULL
        || snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int) sizeof(path))
    {
        fprintf(stderr, "test_metrics: cannot build %s\n", name);
        return -1;
    }
    rmp[0] = rm;
    req.resource_metrics = rmp;
    req.n_resource_metrics = 1;
    len = protobuf_c_message_get_packed_size(&req.base);
    buf = malloc(len);
    if (buf == NULL || protobuf_c_message_pack(&req.base, buf) != len) {
        free(buf);
        return -1;
    }

    rc = -1;
    f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        free(buf);
        return -1;
    }
    if (fwrite(buf, 1, len, f) == len) {
        rc = 0;
    }
    if (fclose(f) != 0 || rc != 0) {
        perror(path);
        rc = -1;
    }
    free(buf);
    return rc;
}


/*
 * Writes the small registry's cumulative export at T0 + 60 s to
 * DIR/metrics_cumulative.bin, and to DIR/metrics_delta.bin the second of two
 * delta exports (at T0 + 10 s and T0 + 20 s) around the changes of
 * test_otlp_delta.  Returns 0 or -1.
 */
static int
tap_t_write_all(const char *dir)
{
    static const char *const  gen[] = { "generate" };
    tap_t_reg_t               t;
    tap_arena_t               a;
    tap_pb_resource_t        *res;
    size_t                    np;
    int                       rc;

    tap_t_reg_build(&t);
    tap_arena_init(&a);
    res = tap_pb_resource(&a, "infertap", NULL, 0);
    rc = tap_t_write_file(dir, "metrics_cumulative.bin",
                          tap_mreg_otlp(t.r, &a, res, TAP_T_T0 + 60 * TAP_T_SEC, 0, &np));
    tap_arena_reset(&a);

    res = tap_pb_resource(&a, "infertap", NULL, 0);
    if (rc == 0 && tap_mreg_otlp(t.r, &a, res, TAP_T_T0 + 10 * TAP_T_SEC, 1, &np) == NULL) {
        rc = -1;
    }
    tap_arena_reset(&a);
    tap_metric_add(t.requests, tap_t_chat, 2);
    tap_metric_add(t.errors, gen, 1);
    tap_metric_observe(t.duration, tap_t_op_chat, 0.2);
    tap_metric_observe(t.duration, tap_t_op_chat, 0.4);
    tap_metric_set(t.active, NULL, 2);
    res = tap_pb_resource(&a, "infertap", NULL, 0);
    if (rc == 0) {
        rc = tap_t_write_file(dir, "metrics_delta.bin",
                              tap_mreg_otlp(t.r, &a, res, TAP_T_T0 + 20 * TAP_T_SEC, 1, &np));
    }
    tap_arena_free(&a);
    tap_mreg_free(t.r);
    return rc;
}


static void
test_write(void **state)
{
    char  dir[] = "/tmp/test_metrics.XXXXXX";
    char  path[64];

    assert_non_null(mkdtemp(dir));
    assert_int_equal(tap_t_write_all(dir), 0);
    snprintf(path, sizeof(path), "%s/metrics_cumulative.bin", dir);
    assert_int_equal(access(path, R_OK), 0);
    assert_int_equal(unlink(path), 0);
    snprintf(path, sizeof(path), "%s/metrics_delta.bin", dir);
    assert_int_equal(access(path, R_OK), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}


int
main(int argc, char **argv)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_prometheus_text),
        cmocka_unit_test(test_promtool),
        cmocka_unit_test(test_openmetrics_text),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_many_series),
        cmocka_unit_test(test_otlp_cumulative),
        cmocka_unit_test(test_otlp_delta),
        cmocka_unit_test(test_collect),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_clear_cycles),
        cmocka_unit_test(test_set_histogram),
        cmocka_unit_test(test_set_histogram_delta),
        cmocka_unit_test(test_observe_cost),
        cmocka_unit_test(test_observe_keep),
        cmocka_unit_test(test_write),
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
