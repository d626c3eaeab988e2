/*
 * spans.c: the spans and the log record of one finished exchange.
 *
 * Each exchange is one hop in the caller's trace:
 *
 *   caller's span (traceparent in, when any)
 *     SERVER  "{method} {path}"   infertap's hop: first request byte to last response byte
 *       CLIENT  "{operation} {model}"   the call to the model server, named and attributed
 *                                       per the GenAI semantic conventions (v1.41.1); the
 *                                       traceparent sent upstream names it, so the model
 *                                       server's own spans nest under it
 *
 * An exchange that never reached an upstream (rejected, no server) has the
 * SERVER span only.  The SERVER span is named "{method} {path}" only when a
 * protocol filter recognised the path (a known API endpoint, so a bounded
 * set), else "{method}", as the HTTP conventions ask when no route is known.
 * Status: ERROR with error.type on failure, else unset.  The CLIENT span
 * carries infertap's own analysis under "infertap." and an event at the first
 * token.  The log record mirrors the access-log line, field for field, tied
 * to the SERVER span.
 */

#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap_core.h"
#include "proxy/trace.h"
#include "telemetry/telemetry.h"

#define TAP_SPAN_KIND(k)    OPENTELEMETRY__PROTO__TRACE__V1__SPAN__SPAN_KIND__SPAN_KIND_##k
#define TAP_STATUS_ERROR    OPENTELEMETRY__PROTO__TRACE__V1__STATUS__STATUS_CODE__STATUS_CODE_ERROR
#define TAP_SEV(s)          OPENTELEMETRY__PROTO__LOGS__V1__SEVERITY_NUMBER__SEVERITY_NUMBER_##s

/* Span.flags: the W3C trace flags, plus "has_is_remote" and "is_remote" (bits 8 and 9). */
/* the attributes fields of Span and LogRecord, encoded in wire mode (pb.h) */
#define TAP_SPAN_ATTRIBUTES        9
#define TAP_LOG_ATTRIBUTES         6

#define TAP_SPAN_FLAGS_HAS_REMOTE  0x100
#define TAP_SPAN_FLAGS_REMOTE      0x200


static ProtobufCBinaryData
tap_span_bytes(tap_arena_t *a, const uint8_t *p, size_t n)
{
    ProtobufCBinaryData  b;

    b.data = tap_arena_alloc(a, n);
    b.len = b.data != NULL ? n : 0;
    if (b.data != NULL) {
        memcpy(b.data, p, n);
    }
    return b;
}


static tap_pb_span_t *
tap_span_new(tap_arena_t *a, const tap_exchange_t *ex, const uint8_t *id, const uint8_t *parent,
    int kind, int64_t start, int64_t end)
{
    tap_pb_span_t  *sp = TAP_ARENA_NEW(a, tap_pb_span_t);

    if (sp == NULL) {
        return NULL;
    }
    opentelemetry__proto__trace__v1__span__init(sp);
    sp->has_trace_id = sp->has_span_id = 1;
    sp->trace_id = tap_span_bytes(a, ex->trace_id, 16);
    sp->span_id = tap_span_bytes(a, id, 8);
    if (parent != NULL) {
        sp->has_parent_span_id = 1;
        sp->parent_span_id = tap_span_bytes(a, parent, 8);
    }
    sp->has_kind = 1;
    sp->kind = kind;
    sp->has_start_time_unix_nano = sp->has_end_time_unix_nano = 1;
    sp->start_time_unix_nano = tap_trec_wall(ex, start);
    sp->end_time_unix_nano = tap_trec_wall(ex, end > start ? end : start);
    return sp;
}


static void
tap_span_status(tap_arena_t *a, tap_pb_span_t *sp, const char *err)
{
    tap_pb_status_t  *st;

    if (err == NULL || (st = TAP_ARENA_NEW(a, tap_pb_status_t)) == NULL) {
        return;
    }
    opentelemetry__proto__trace__v1__status__init(st);
    st->has_code = 1;
    st->code = TAP_STATUS_ERROR;
    sp->status = st;
}


/* The GenAI and infertap attributes of the CLIENT span. */
static void
tap_span_genai(tap_attrs_t *at, const tap_exchange_t *ex)
{
    const tap_gen_t  *g = &ex->gen;
    const char       *reasons[TAP_GEN_MAX_CHOICES];
    double            mean, min, ppl;
    unsigned          i, n;

    tap_attr_str(at, "gen_ai.operation.name", g->operation);
    tap_attr_str(at, "gen_ai.provider.name", g->provider);
    if (g->model[0]) {
        tap_attr_str(at, "gen_ai.request.model", g->model);
    }
    if (g->stream == 1) {
        tap_attr_bool(at, "gen_ai.request.stream", 1);
    }
    if (g->max_tokens >= 0) {
        tap_attr_int(at, "gen_ai.request.max_tokens", g->max_tokens);
    }
    if (!isnan(g->temperature)) {
        tap_attr_double(at, "gen_ai.request.temperature", g->temperature);
    }
    if (!isnan(g->top_p)) {
        tap_attr_double(at, "gen_ai.request.top_p", g->top_p);
    }
    if (!isnan(g->top_k)) {
        tap_attr_double(at, "gen_ai.request.top_k", g->top_k);
    }
    if (!isnan(g->frequency_penalty)) {
        tap_attr_double(at, "gen_ai.request.frequency_penalty", g->frequency_penalty);
    }
    if (!isnan(g->presence_penalty)) {
        tap_attr_double(at, "gen_ai.request.presence_penalty", g->presence_penalty);
    }
    if (g->seed != TAP_GEN_UNSET) {
        tap_attr_int(at, "gen_ai.request.seed", g->seed);
    }
    if (g->n >= 0 && g->n != 1) {
        tap_attr_int(at, "gen_ai.request.choice.count", g->n);
    }
    if (g->response_id[0]) {
        tap_attr_str(at, "gen_ai.response.id", g->response_id);
    }
    if (g->response_model[0]) {
        tap_attr_str(at, "gen_ai.response.model", g->response_model);
    }
    for (i = 0, n = 0; i < g->nchoices && i < TAP_GEN_MAX_CHOICES; i++) {
        reasons[n++] = g->finish_reasons[i][0] ? g->finish_reasons[i] : "error";
    }
    if (n > 0) {
        tap_attr_strs(at, "gen_ai.response.finish_reasons", reasons, n);
    }
    if (g->prompt_tokens >= 0) {
        tap_attr_int(at, "gen_ai.usage.input_tokens", g->prompt_tokens);
    }
    if (g->completion_tokens >= 0) {
        tap_attr_int(at, "gen_ai.usage.output_tokens", g->completion_tokens);
    }
    if (g->cached_tokens >= 0) {
        tap_attr_int(at, "gen_ai.usage.cache_read.input_tokens", g->cached_tokens);
    }
    if (g->stream == 1 && ex->ttft_ms >= 0) {
        tap_attr_double(at, "gen_ai.response.time_to_first_chunk", ex->ttft_ms / 1e3);
    }

    if (g->has_prompt_hash) {
        tap_attr_hex64(at, "infertap.prompt_hash", g->prompt_hash);
    }
    if (g->has_params_hash) {
        tap_attr_hex64(at, "infertap.params_hash", g->params_hash);
    }
    if (g->has_prefix_hash) {
        tap_attr_hex64(at, "infertap.prefix_hash", g->prefix_hash);
    }
    if (g->has_completion_hash) {
        tap_attr_hex64(at, "infertap.completion_hash", g->completion_hash);
    }
    if (ex->ttft_ms >= 0) {
        tap_attr_double(at, "infertap.ttft_ms", ex->ttft_ms);
    }
    if (ex->tpot_ms >= 0) {
        tap_attr_double(at, "infertap.tpot_ms", ex->tpot_ms);
    }
    if (ex->itl_max_ms >= 0) {
        tap_attr_double(at, "infertap.itl_max_ms", ex->itl_max_ms);
    }
    if (g->tokens_estimated >= 0) {
        tap_attr_bool(at, "infertap.tokens_estimated", g->tokens_estimated);
    }
    if (tap_gen_confidence(g, &mean, &min, &ppl)) {
        tap_attr_double(at, "infertap.confidence.mean_logprob", mean);
        tap_attr_double(at, "infertap.confidence.min_logprob", min);
        tap_attr_double(at, "infertap.confidence.perplexity", ppl);
        tap_attr_int(at, "infertap.confidence.tokens", (int64_t) g->lp_count);
    }
    if (!isnan(g->score)) {
        tap_attr_double(at, "infertap.confidence.score", g->score);
    }
    if (g->resp_parse > TAP_GEN_PARSE_OK) {
        tap_attr_str(at, "infertap.response_parse", tap_gen_parse_names[g->resp_parse]);
    }
}


/* The anomaly event of the CLIENT span: its kind and numbers. */
static tap_pb_event_t *
tap_span_anomaly_event(tap_arena_t *a, const tap_exchange_t *ex, const tap_prompt_anomaly_t *an)
{
    tap_pb_event_t  *ev = TAP_ARENA_NEW(a, tap_pb_event_t);
    tap_attrs_t      at;

    if (ev == NULL) {
        return NULL;
    }
    opentelemetry__proto__trace__v1__span__event__init(ev);
    ev->has_time_unix_nano = 1;
    ev->time_unix_nano = tap_trec_wall(ex, ex->last_byte ? ex->last_byte : ex->t0);
    ev->name = "infertap.anomaly";
    tap_attrs_init(&at, a);
    tap_attr_str(&at, "infertap.anomaly.kind", an->reason);
    if (an->detail[0] != '\0') {
        tap_attr_str(&at, "infertap.anomaly.detail", an->detail);
    }
    ev->attributes = at.kv;
    ev->n_attributes = at.n;
    return ev;
}


size_t
tap_tel_spans(tap_arena_t *a, const tap_trec_t *r, const tap_prompt_anomaly_t *an,
    const tap_prompt_t *prompt, tap_tel_item_t *out)
{
    const tap_exchange_t  *ex = &r->ex;
    tap_pb_span_t         *srv, *cli;
    tap_pb_event_t        *evp, **evs;
    tap_attrs_t            at;
    char                   name[TAP_TREC_PATH_MAX + TAP_GEN_STR], ebuf[16], host[80], port[8];
    const char            *err;
    int64_t                end = ex->last_byte ? ex->last_byte : ex->t0;
    unsigned               flags;

    flags = ex->trace_flags | TAP_SPAN_FLAGS_HAS_REMOTE;

    /* SERVER */
    srv = tap_span_new(a, ex, ex->span_id, ex->has_parent ? ex->parent_span_id : NULL,
        TAP_SPAN_KIND(SERVER), ex->t0, end);
    if (srv == NULL) {
        return 0;
    }
    srv->has_flags = 1;
    srv->flags = flags | (ex->has_parent ? TAP_SPAN_FLAGS_REMOTE : 0);
    if (ex->analysed && ex->gen.operation != NULL) {
        snprintf(name, sizeof(name), "%s %s", ex->method, r->path);
    } else {
        snprintf(name, sizeof(name), "%s", ex->method);
    }
    srv->name = tap_arena_strdup(a, name);
    tap_attrs_init_wire(&at, a, TAP_SPAN_ATTRIBUTES);
    tap_attr_str(&at, "http.request.method", ex->method);
    tap_attr_str(&at, "url.path", r->path);
    if (ex->status > 0) {
        tap_attr_int(&at, "http.response.status_code", ex->status);
    }
    tap_attr_str(&at, "infertap.request_id", ex->request_id);
    err = tap_tel_error_type(ex, 0, ebuf, sizeof(ebuf));
    if (err != NULL) {
        tap_attr_str(&at, "error.type", err);
    }
    tap_span_status(a, srv, err);
    out[0] = (tap_tel_item_t) { &srv->base, at.wire, at.wlen };

    if (ex->upstream_start == 0) {
        return 1;
    }

    /* CLIENT */
    cli = tap_span_new(a, ex, ex->client_span_id, ex->span_id, TAP_SPAN_KIND(CLIENT),
        ex->upstream_start, end);
    if (cli == NULL) {
        return 1;
    }
    cli->has_flags = 1;
    cli->flags = flags;
    tap_attrs_init_wire(&at, a, TAP_SPAN_ATTRIBUTES);
    if (ex->analysed && ex->gen.operation != NULL) {
        if (ex->gen.model[0]) {
            snprintf(name, sizeof(name), "%s %s", ex->gen.operation, ex->gen.model);
        } else {
            snprintf(name, sizeof(name), "%s", ex->gen.operation);
        }
        tap_span_genai(&at, ex);
    } else {
        snprintf(name, sizeof(name), "%s", ex->method);
    }
    cli->name = tap_arena_strdup(a, name);

    tap_tel_split_addr(ex->upstream, host, sizeof(host), port, sizeof(port));
    if (host[0] != '\0') {
        tap_attr_str(&at, "server.address", host);
        tap_attr_int(&at, "server.port", strtol(port, NULL, 10));
    }
    tap_attr_str(&at, "http.request.method", ex->method);
    if (ex->status > 0) {
        tap_attr_int(&at, "http.response.status_code", ex->status);
    }
    if (ex->retries > 0) {
        tap_attr_int(&at, "infertap.retries", ex->retries);
    }
    if (ex->anomaly) {
        tap_attr_bool(&at, "infertap.anomaly", 1);
    }
    if (an != NULL && an->reason != NULL) {
        tap_attr_str(&at, "infertap.anomaly.kind", an->reason);
    }
    if (prompt != NULL) {
        int  exact;

        tap_attr_int(&at, "infertap.prompt.count", (int64_t) prompt->count);
        tap_attr_int(&at, "infertap.prompt.distinct_completions",
            (int64_t) tap_prompt_distinct(prompt, &exact));
        if (prompt->e2e.n > 1) {
            tap_attr_double(&at, "infertap.prompt.e2e_ms.mean", prompt->e2e.mean);
            tap_attr_double(&at, "infertap.prompt.e2e_ms.stddev",
                tap_prompt_stat_stddev(&prompt->e2e));
        }
    }
    err = tap_tel_error_type(ex, 1, ebuf, sizeof(ebuf));
    if (err != NULL) {
        tap_attr_str(&at, "error.type", err);
    }
    tap_span_status(a, cli, err);

    evs = tap_arena_alloc(a, 2 * sizeof(tap_pb_event_t *));
    if (evs != NULL) {
        if (ex->gen.first_token > 0 && (evp = TAP_ARENA_NEW(a, tap_pb_event_t)) != NULL) {
            opentelemetry__proto__trace__v1__span__event__init(evp);
            evp->has_time_unix_nano = 1;
            evp->time_unix_nano = tap_trec_wall(ex, ex->gen.first_token);
            evp->name = "infertap.first_token";
            evs[cli->n_events++] = evp;
        }
        if (an != NULL && an->reason != NULL
            && (evp = tap_span_anomaly_event(a, ex, an)) != NULL)
        {
            evs[cli->n_events++] = evp;
        }
        cli->events = evs;
    }
    out[1] = (tap_tel_item_t) { &cli->base, at.wire, at.wlen };
    return 2;
}


size_t
tap_tel_log(tap_arena_t *a, const tap_trec_t *r, const tap_prompt_anomaly_t *an,
    tap_tel_item_t *out)
{
    const tap_exchange_t  *ex = &r->ex;
    const tap_gen_t       *g = &ex->gen;
    tap_pb_log_t          *lr = TAP_ARENA_NEW(a, tap_pb_log_t);
    tap_pb_any_t          *body = TAP_ARENA_NEW(a, tap_pb_any_t);
    tap_attrs_t            at;
    char                   line[TAP_TREC_PATH_MAX + 64], reasons[TAP_GEN_MAX_CHOICES * 25];
    int64_t                end, dur_ns, up_ns;
    double                 mean, min, ppl;

    if (lr == NULL || body == NULL) {
        return 0;
    }
    opentelemetry__proto__logs__v1__log_record__init(lr);
    opentelemetry__proto__common__v1__any_value__init(body);

    end = ex->last_byte ? ex->last_byte : ex->t0;
    dur_ns = end > ex->t0 ? end - ex->t0 : 0;
    up_ns = (ex->upstream_start && end > ex->upstream_start) ? end - ex->upstream_start : 0;

    lr->has_time_unix_nano = lr->has_observed_time_unix_nano = 1;
    lr->time_unix_nano = lr->observed_time_unix_nano = tap_trec_wall(ex, end);
    lr->has_trace_id = lr->has_span_id = lr->has_flags = 1;
    lr->trace_id = tap_span_bytes(a, ex->trace_id, 16);
    lr->span_id = tap_span_bytes(a, ex->span_id, 8);
    lr->flags = ex->trace_flags;
    lr->has_severity_number = 1;
    if (ex->error != NULL || ex->status >= 500 || ex->status == 0) {
        lr->severity_number = TAP_SEV(ERROR);
        lr->severity_text = "ERROR";
    } else if (ex->status >= 400) {
        lr->severity_number = TAP_SEV(WARN);
        lr->severity_text = "WARN";
    } else {
        lr->severity_number = TAP_SEV(INFO);
        lr->severity_text = "INFO";
    }
    snprintf(line, sizeof(line), "%s %s %d", ex->method, r->path, ex->status);
    body->value_case = TAP_PB_ANY(STRING_VALUE);
    body->string_value = tap_arena_strdup(a, line);
    lr->body = body;

    tap_attrs_init_wire(&at, a, TAP_LOG_ATTRIBUTES);
    tap_attr_str(&at, "request_id", ex->request_id);
    tap_attr_str(&at, "method", ex->method);
    tap_attr_str(&at, "path", r->path);
    tap_attr_int(&at, "status", ex->status > 0 ? ex->status : 0);
    if (ex->upstream[0]) {
        tap_attr_str(&at, "upstream", ex->upstream);
    }
    if (g->provider != NULL) {
        tap_attr_str(&at, "provider", g->provider);
    }
    if (g->operation != NULL) {
        tap_attr_str(&at, "operation", g->operation);
    }
    if (g->model[0] || g->response_model[0]) {
        tap_attr_str(&at, "model", g->model[0] ? g->model : g->response_model);
    }
    if (g->response_model[0]) {
        tap_attr_str(&at, "response_model", g->response_model);
    }
    if (g->response_id[0]) {
        tap_attr_str(&at, "response_id", g->response_id);
    }
    if (g->stream >= 0) {
        tap_attr_bool(&at, "stream", g->stream);
    }
    if (g->prompt_tokens >= 0) {
        tap_attr_int(&at, "prompt_tokens", g->prompt_tokens);
    }
    if (g->completion_tokens >= 0) {
        tap_attr_int(&at, "completion_tokens", g->completion_tokens);
    }
    if (g->cached_tokens >= 0) {
        tap_attr_int(&at, "cached_tokens", g->cached_tokens);
    }
    if (g->tokens_estimated >= 0) {
        tap_attr_bool(&at, "tokens_estimated", g->tokens_estimated);
    }
    if (ex->ttft_ms >= 0) {
        tap_attr_double(&at, "ttft_ms", ex->ttft_ms);
    }
    if (ex->tpot_ms >= 0) {
        tap_attr_double(&at, "tpot_ms", ex->tpot_ms);
    }
    if (ex->itl_max_ms >= 0) {
        tap_attr_double(&at, "itl_max_ms", ex->itl_max_ms);
    }
    tap_attr_double(&at, "duration_ms", (double) dur_ns / 1e6);
    if (ex->upstream_start) {
        tap_attr_double(&at, "upstream_ms", (double) up_ns / 1e6);
    }
    if (ex->upstream_first_byte > ex->upstream_start && ex->upstream_start > 0) {
        tap_attr_double(&at, "upstream_ttfb_ms",
            (double) (ex->upstream_first_byte - ex->upstream_start) / 1e6);
    }
    tap_attr_int(&at, "overhead_us", (dur_ns - up_ns) / 1000);
    if (g->has_prompt_hash) {
        tap_attr_hex64(&at, "prompt_hash", g->prompt_hash);
    }
    if (g->has_params_hash) {
        tap_attr_hex64(&at, "params_hash", g->params_hash);
    }
    if (g->has_prefix_hash) {
        tap_attr_hex64(&at, "prefix_hash", g->prefix_hash);
    }
    if (g->has_completion_hash) {
        tap_attr_hex64(&at, "completion_hash", g->completion_hash);
    }
    if (tap_gen_finish_reasons(g, reasons, sizeof(reasons)) != NULL) {
        tap_attr_str(&at, "finish_reason", reasons);
    }
    if (tap_gen_confidence(g, &mean, &min, &ppl)) {
        tap_attr_double(&at, "confidence.mean_logprob", mean);
        tap_attr_double(&at, "confidence.min_logprob", min);
        tap_attr_double(&at, "confidence.perplexity", ppl);
        tap_attr_int(&at, "confidence.tokens", (int64_t) g->lp_count);
    }
    if (!isnan(g->score)) {
        tap_attr_double(&at, "confidence.score", g->score);
    }
    if (g->req_parse != TAP_GEN_PARSE_NONE) {
        tap_attr_str(&at, "request_parse", tap_gen_parse_names[g->req_parse]);
    }
    if (g->resp_parse != TAP_GEN_PARSE_NONE) {
        tap_attr_str(&at, "response_parse", tap_gen_parse_names[g->resp_parse]);
    }
    if (g->error_type[0]) {
        tap_attr_str(&at, "upstream_error", g->error_type);
    }
    if (ex->error != NULL) {
        tap_attr_str(&at, "error", ex->error);
    }
    tap_attr_int(&at, "bytes_in", (int64_t) ex->bytes_in);
    tap_attr_int(&at, "bytes_out", (int64_t) ex->bytes_out);
    tap_attr_int(&at, "retries", ex->retries);
    if (an != NULL && an->reason != NULL) {
        tap_attr_str(&at, "anomaly", an->reason);
    }
    out[0] = (tap_tel_item_t) { &lr->base, at.wire, at.wlen };
    return 1;
}
