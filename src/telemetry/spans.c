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
 *
 * Encoding.  Each span and log record is written straight into the protobuf
 * wire format (pb.h, wire mode): its own fields in field number order, as
 * protobuf-c packed them, then its attributes.  A message built for
 * protobuf-c and packed cost more than all the attributes: sizing, then
 * packing, a dozen optional fields through descriptor tables.
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

/* Field numbers (proto/otlp_trace.proto, otlp_logs.proto, otlp_common.proto). */
#define TAP_SPAN_TRACE_ID          1
#define TAP_SPAN_SPAN_ID           2
#define TAP_SPAN_PARENT_SPAN_ID    4
#define TAP_SPAN_NAME              5
#define TAP_SPAN_KIND_FIELD        6
#define TAP_SPAN_START             7
#define TAP_SPAN_END               8
#define TAP_SPAN_ATTRIBUTES        9
#define TAP_SPAN_EVENTS            11
#define TAP_SPAN_STATUS            15
#define TAP_SPAN_FLAGS             16
#define TAP_EVENT_TIME             1
#define TAP_EVENT_NAME             2
#define TAP_EVENT_ATTRIBUTES       3
#define TAP_STATUS_CODE            3
#define TAP_LOG_TIME               1
#define TAP_LOG_SEVERITY_NUMBER    2
#define TAP_LOG_SEVERITY_TEXT      3
#define TAP_LOG_BODY               5
#define TAP_LOG_ATTRIBUTES         6
#define TAP_LOG_FLAGS              8
#define TAP_LOG_TRACE_ID           9
#define TAP_LOG_SPAN_ID            10
#define TAP_LOG_OBSERVED_TIME      11

/* Span.flags: the W3C trace flags, plus "has_is_remote" and "is_remote" (bits 8 and 9). */
#define TAP_SPAN_FLAGS_HAS_REMOTE  0x100
#define TAP_SPAN_FLAGS_REMOTE      0x200


/* "a b", or "a" when b is NULL, in buf of size bytes, cut as snprintf would; returns the length. */
static size_t
tap_span_name(char *buf, size_t size, const char *a, const char *b)
{
    size_t  n;

    n = tap_cpystr(buf, a, size - 1);
    if (b != NULL && n < size - 1) {
        buf[n++] = ' ';
        n += tap_cpystr(buf + n, b, size - 1 - n);
    }
    return n;
}


/*
 * Starts a span in at (wire mode): every field but its attributes, which
 * follow.  events: its Event messages, already encoded; err: the status is
 * ERROR when not NULL.
 */
static void
tap_span_begin(tap_attrs_t *at, const tap_exchange_t *ex, const uint8_t *id,
    const uint8_t *parent, int kind, int64_t start, int64_t end, const char *name, size_t nlen,
    const tap_attrs_t *events, size_t nevents, const char *err, uint32_t flags)
{
    static const uint8_t  status_error[] = { TAP_STATUS_CODE << 3, TAP_STATUS_ERROR };
    size_t                i;

    tap_wire_bytes(at, TAP_SPAN_TRACE_ID, ex->trace_id, 16);
    tap_wire_bytes(at, TAP_SPAN_SPAN_ID, id, 8);
    if (parent != NULL) {
        tap_wire_bytes(at, TAP_SPAN_PARENT_SPAN_ID, parent, 8);
    }
    tap_wire_bytes(at, TAP_SPAN_NAME, name, nlen);
    tap_wire_varint(at, TAP_SPAN_KIND_FIELD, (uint64_t) kind);
    tap_wire_fixed64(at, TAP_SPAN_START, tap_trec_wall(ex, start));
    tap_wire_fixed64(at, TAP_SPAN_END, tap_trec_wall(ex, end > start ? end : start));
    for (i = 0; i < nevents; i++) {
        tap_wire_bytes(at, TAP_SPAN_EVENTS, events[i].wire, events[i].wlen);
    }
    if (err != NULL) {
        tap_wire_bytes(at, TAP_SPAN_STATUS, status_error, sizeof(status_error));
    }
    tap_wire_fixed32(at, TAP_SPAN_FLAGS, flags);
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


/* An Event of the CLIENT span, encoded in ev; an: the anomaly event's kind and numbers. */
static void
tap_span_event(tap_attrs_t *ev, tap_arena_t *a, const tap_exchange_t *ex, int64_t t,
    const char *name, const tap_prompt_anomaly_t *an)
{
    tap_attrs_init_wire(ev, a, TAP_EVENT_ATTRIBUTES);
    tap_wire_fixed64(ev, TAP_EVENT_TIME, tap_trec_wall(ex, t));
    tap_wire_bytes(ev, TAP_EVENT_NAME, name, strlen(name));
    if (an != NULL) {
        tap_attr_str(ev, "infertap.anomaly.kind", an->reason);
        if (an->detail[0] != '\0') {
            tap_attr_str(ev, "infertap.anomaly.detail", an->detail);
        }
    }
}


size_t
tap_tel_spans(tap_arena_t *a, const tap_trec_t *r, const tap_prompt_anomaly_t *an,
    const tap_prompt_t *prompt, tap_tel_item_t *out)
{
    const tap_exchange_t  *ex = &r->ex;
    tap_attrs_t            at, ev[2];
    char                   name[TAP_TREC_PATH_MAX + TAP_GEN_STR], ebuf[16], host[80], port[8];
    const char            *err;
    int64_t                end = ex->last_byte ? ex->last_byte : ex->t0;
    uint32_t               flags;
    size_t                 nlen, nev;

    flags = ex->trace_flags | TAP_SPAN_FLAGS_HAS_REMOTE;

    /* SERVER */
    nlen = tap_span_name(name, sizeof(name), ex->method,
        ex->analysed && ex->gen.operation != NULL ? r->path : NULL);
    err = tap_tel_error_type(ex, 0, ebuf, sizeof(ebuf));
    tap_attrs_init_wire(&at, a, TAP_SPAN_ATTRIBUTES);
    tap_span_begin(&at, ex, ex->span_id, ex->has_parent ? ex->parent_span_id : NULL,
        TAP_SPAN_KIND(SERVER), ex->t0, end, name, nlen, NULL, 0, err,
        flags | (ex->has_parent ? TAP_SPAN_FLAGS_REMOTE : 0));
    tap_attr_str(&at, "http.request.method", ex->method);
    tap_attr_str(&at, "url.path", r->path);
    if (ex->status > 0) {
        tap_attr_int(&at, "http.response.status_code", ex->status);
    }
    tap_attr_str(&at, "infertap.request_id", ex->request_id);
    if (err != NULL) {
        tap_attr_str(&at, "error.type", err);
    }
    out[0] = (tap_tel_item_t) { at.wire, at.wlen };

    if (ex->upstream_start == 0) {
        return 1;
    }

    /* CLIENT */
    if (ex->analysed && ex->gen.operation != NULL) {
        nlen = tap_span_name(name, sizeof(name), ex->gen.operation,
            ex->gen.model[0] ? ex->gen.model : NULL);
    } else {
        nlen = tap_span_name(name, sizeof(name), ex->method, NULL);
    }
    nev = 0;
    if (ex->gen.first_token > 0) {
        tap_span_event(&ev[nev++], a, ex, ex->gen.first_token, "infertap.first_token", NULL);
    }
    if (an != NULL && an->reason != NULL) {
        tap_span_event(&ev[nev++], a, ex, ex->last_byte ? ex->last_byte : ex->t0,
            "infertap.anomaly", an);
    }
    err = tap_tel_error_type(ex, 1, ebuf, sizeof(ebuf));
    tap_attrs_init_wire(&at, a, TAP_SPAN_ATTRIBUTES);
    tap_span_begin(&at, ex, ex->client_span_id, ex->span_id, TAP_SPAN_KIND(CLIENT),
        ex->upstream_start, end, name, nlen, ev, nev, err, flags);

    if (ex->analysed && ex->gen.operation != NULL) {
        tap_span_genai(&at, ex);
    }
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
    if (err != NULL) {
        tap_attr_str(&at, "error.type", err);
    }
    out[1] = (tap_tel_item_t) { at.wire, at.wlen };
    return 2;
}


/* Writes the decimal digits of i at p; returns the end. */
static char *
tap_span_int(char *p, int i)
{
    char          tmp[12];
    size_t        n = 0;
    unsigned int  u = i < 0 ? 0u - (unsigned int) i : (unsigned int) i;

    do {
        tmp[n++] = (char) ('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (i < 0) {
        *p++ = '-';
    }
    while (n > 0) {
        *p++ = tmp[--n];
    }
    return p;
}


size_t
tap_tel_log(tap_arena_t *a, const tap_trec_t *r, const tap_prompt_anomaly_t *an,
    tap_tel_item_t *out)
{
    const tap_exchange_t  *ex = &r->ex;
    const tap_gen_t       *g = &ex->gen;
    tap_attrs_t            at;
    char                   line[TAP_TREC_PATH_MAX + 64], reasons[TAP_GEN_MAX_CHOICES * 25];
    const char            *sevtext;
    int64_t                end, dur_ns, up_ns;
    uint64_t               t;
    double                 mean, min, ppl;
    size_t                 n;
    int                    sev;

    end = ex->last_byte ? ex->last_byte : ex->t0;
    dur_ns = end > ex->t0 ? end - ex->t0 : 0;
    up_ns = (ex->upstream_start && end > ex->upstream_start) ? end - ex->upstream_start : 0;

    if (ex->error != NULL || ex->status >= 500 || ex->status == 0) {
        sev = TAP_SEV(ERROR);
        sevtext = "ERROR";
    } else if (ex->status >= 400) {
        sev = TAP_SEV(WARN);
        sevtext = "WARN";
    } else {
        sev = TAP_SEV(INFO);
        sevtext = "INFO";
    }

    /* "{method} {path} {status}": line has room for the longest method and path */
    n = tap_span_name(line, sizeof(line) - 16, ex->method, r->path);
    line[n++] = ' ';
    n = (size_t) (tap_span_int(line + n, ex->status) - line);

    t = tap_trec_wall(ex, end);
    tap_attrs_init_wire(&at, a, TAP_LOG_ATTRIBUTES);
    tap_wire_fixed64(&at, TAP_LOG_TIME, t);
    tap_wire_varint(&at, TAP_LOG_SEVERITY_NUMBER, (uint64_t) sev);
    tap_wire_bytes(&at, TAP_LOG_SEVERITY_TEXT, sevtext, strlen(sevtext));
    tap_wire_any_str(&at, TAP_LOG_BODY, line, n);
    tap_wire_fixed32(&at, TAP_LOG_FLAGS, ex->trace_flags);
    tap_wire_bytes(&at, TAP_LOG_TRACE_ID, ex->trace_id, 16);
    tap_wire_bytes(&at, TAP_LOG_SPAN_ID, ex->span_id, 8);
    tap_wire_fixed64(&at, TAP_LOG_OBSERVED_TIME, t);
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
    out[0] = (tap_tel_item_t) { at.wire, at.wlen };
    return 1;
}
