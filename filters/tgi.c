/*
 * tgi.c: Hugging Face Text Generation Inference's native API as a protocol
 * filter.
 *
 * Endpoints: POST /generate (one JSON answer) and POST /generate_stream
 * (Server-Sent Events); the endpoint, not a body field, says whether the
 * answer streams.  The request is {"inputs": "...", "parameters": {...}};
 * temperature, top_p, top_k, seed, max_new_tokens (max_tokens),
 * frequency_penalty and top_n_tokens (top_logprobs) have fields of their
 * own, "details" is recorded as the logprobs flag (details are what carry
 * them), and the other output-shaping parameters (stop, repetition_penalty,
 * do_sample, typical_p, best_of, grammar, ...) go into the params hash as one
 * extra object.
 *
 * A streamed event carries one token {id, text, logprob, special}; the last
 * one adds the whole generated_text and details {finish_reason,
 * generated_tokens, seed}.  Only token texts feed the completion hash, and
 * special tokens (an end-of-sequence "</s>") are left out as TGI leaves them
 * out of generated_text, so a stream and the same answer sent whole hash
 * alike.  A whole answer gives generated_text and, with details, the token
 * list (logprobs), generated_tokens and, with decoder_input_details, the
 * prefill tokens whose count is the prompt length.  Finish reasons are mapped
 * to the common vocabulary: eos_token and stop_sequence are "stop", length
 * stays "length".  Errors are {"error": "...", "error_type": "validation"}.
 */

#include "config.h"

#include <string.h>

#include "filters.h"


static int tap_tgi_match(tap_fx_t *fx);
static void tap_tgi_request_body(tap_fx_t *fx, void *st, const char *body, size_t len,
    cJSON  *json);
static void tap_tgi_response_head(tap_fx_t *fx, void *st);
static int tap_tgi_response_event(tap_fx_t *fx, void *st, const tap_fevent_t *ev);


const tap_filter_t  tap_filter_tgi = {
    .name = "tgi",
    .protocol = 1,
    .state_size = 0,
    .match = tap_tgi_match,
    .request_body = tap_tgi_request_body,
    .response_head = tap_tgi_response_head,
    .response_event = tap_tgi_response_event,
};

/* Parameters that shape the output but have no field of their own in tap_gen_t. */
static const char  *tap_tgi_extra_params[] = {
    "stop", "repetition_penalty", "do_sample", "typical_p", "best_of", "truncate",
    "watermark", "return_full_text", "decoder_input_details", "grammar", "adapter_id", NULL
};


/* Returns 1 for /generate_stream, 0 for /generate, -1 for anything else. */
static int
tap_tgi_endpoint(const tap_fx_t *fx)
{
    if (fx->method == NULL || strcmp(fx->method, "POST") != 0) {
        return -1;
    }
    if (fx->path_len == sizeof("/generate") - 1
        && memcmp(fx->path, "/generate", fx->path_len) == 0)
    {
        return 0;
    }
    if (fx->path_len == sizeof("/generate_stream") - 1
        && memcmp(fx->path, "/generate_stream", fx->path_len) == 0)
    {
        return 1;
    }
    return -1;
}


static int
tap_tgi_match(tap_fx_t *fx)
{
    if (tap_tgi_endpoint(fx) < 0) {
        return 0;
    }
    fx->gen->provider = tap_filter_tgi.name;
    fx->gen->operation = "text_completion";
    return 1;
}


/* Reads "parameters"; returns -1 when it is present but not an object. */
static int
tap_tgi_params(tap_gen_t *g, cJSON *params)
{
    const char  **k;
    cJSON        *extra, *v;
    double        d;
    int64_t       i;

    if (params != NULL && !tap_json_is_null(params) && !tap_json_is_object(params)) {
        tap_gen_hash_params(g, NULL);
        return -1;
    }

    if (tap_gen_number(tap_json_get(params, "temperature"), &d) == 0) {
        g->temperature = d;
    }
    if (tap_gen_number(tap_json_get(params, "top_p"), &d) == 0) {
        g->top_p = d;
    }
    if (tap_gen_number(tap_json_get(params, "top_k"), &d) == 0) {
        g->top_k = d;
    }
    if (tap_gen_number(tap_json_get(params, "frequency_penalty"), &d) == 0) {
        g->frequency_penalty = d;
    }
    if (tap_gen_integer(tap_json_get(params, "seed"), &i) == 0) {
        g->seed = i;
    }
    if (tap_gen_integer(tap_json_get(params, "max_new_tokens"), &i) == 0) {
        g->max_tokens = i;
    }
    if (tap_gen_integer(tap_json_get(params, "top_n_tokens"), &i) == 0) {
        g->top_logprobs = i;
    }
    v = tap_json_get(params, "details");
    if (tap_json_is_bool(v)) {
        g->logprobs = tap_json_is_true(v);
    }

    extra = cJSON_CreateObject();
    for (k = tap_tgi_extra_params; extra != NULL && *k != NULL; k++) {
        v = tap_json_get(params, *k);
        if (v != NULL) {
            cJSON_AddItemReferenceToObject(extra, *k, v);
        }
    }
    tap_gen_hash_params(g, tap_json_size(extra) > 0 ? extra : NULL);
    cJSON_Delete(extra);
    return 0;
}


static void
tap_tgi_request_body(tap_fx_t *fx, void *st, const char *body, size_t len, cJSON *json)
{
    tap_gen_t  *g = fx->gen;
    int         rc;

    (void) st;
    (void) body;
    (void) len;

    g->stream = tap_tgi_endpoint(fx) == 1;
    if (json == NULL) {
        return;
    }

    /* TGI serves one model; a "model" field is only there when a router added it */
    tap_gen_copy(g->model, tap_json_get(json, "model"));

    rc = tap_tgi_params(g, tap_json_get(json, "parameters"));
    rc |= tap_gen_hash_prompt(g, tap_json_get(json, "inputs"), NULL);
    if (rc != 0) {
        g->req_parse = TAP_GEN_PARSE_UNEXPECTED;
    }
}


static void
tap_tgi_response_head(tap_fx_t *fx, void *st)
{
    (void) st;

    if (fx->gen->stream == 1 && fx->frame == TAP_FRAME_JSON
        && fx->status >= 200 && fx->status <= 299)
    {
        fx->frame = TAP_FRAME_SSE;
    }
}


static void
tap_tgi_finish_reason(tap_gen_t *g, cJSON *v)
{
    const char  *s;

    if (!tap_json_is_string(v)) {
        return;
    }
    s = tap_json_string(v);
    if (strcmp(s, "eos_token") == 0 || strcmp(s, "stop_sequence") == 0) {
        tap_gen_finish_reason(g, 0, "stop", 4);
    } else {
        tap_gen_finish_reason(g, 0, s, tap_json_strlen(v));
    }
}


/* One token object: its text (unless special) and logprob. */
static void
tap_tgi_token(tap_gen_t *g, cJSON *tok, int text)
{
    cJSON   *v;
    double   lp;

    v = tap_json_get(tok, "text");
    if (text && tap_json_is_string(v) && tap_json_strlen(v) > 0
        && !tap_json_is_true(tap_json_get(tok, "special")))
    {
        tap_gen_text(g, 0, tap_json_string(v), tap_json_strlen(v));
    }
    if (tap_gen_number(tap_json_get(tok, "logprob"), &lp) == 0) {
        tap_gen_logprob(g, lp);
    }
    g->counted_tokens++;
}


/* details: finish reason and usage (generated_tokens, prefill or input_length). */
static void
tap_tgi_details(tap_gen_t *g, cJSON *details)
{
    cJSON    *prefill;
    int64_t   prompt, completion;

    if (!tap_json_is_object(details)) {
        return;
    }
    tap_tgi_finish_reason(g, tap_json_get(details, "finish_reason"));

    prefill = tap_json_get(details, "prefill");
    if (tap_json_size(prefill) > 0) {
        prompt = (int64_t) tap_json_size(prefill);
    } else if (tap_gen_integer(tap_json_get(details, "input_length"), &prompt) != 0) {
        prompt = TAP_GEN_UNSET;
    }
    if (tap_gen_integer(tap_json_get(details, "generated_tokens"), &completion) != 0) {
        completion = TAP_GEN_UNSET;
    }
    if (prompt != TAP_GEN_UNSET || completion != TAP_GEN_UNSET) {
        tap_gen_usage(g, prompt, completion, TAP_GEN_UNSET);
    }
}


static int
tap_tgi_response_event(tap_fx_t *fx, void *st, const tap_fevent_t *ev)
{
    tap_gen_t  *g = fx->gen;
    cJSON      *j = tap_fev_json(ev), *v, *tok, *details;
    size_t      i;

    (void) st;

    /* the plain answer of the compatibility route is [ {...} ] */
    if (ev->whole && tap_json_is_array(j) && tap_json_size(j) == 1) {
        j = tap_json_at(j, 0);
    }
    if (!tap_json_is_object(j)) {
        return TAP_FEV_PASS;
    }
    v = tap_json_get(j, "error");
    if (v != NULL && !tap_json_is_null(v)) {
        v = tap_json_get(j, "error_type");
        if (tap_json_is_string(v) && tap_json_strlen(v) > 0) {
            tap_gen_error(g, tap_json_string(v), tap_json_strlen(v));
        } else {
            tap_gen_error(g, "error", 5);
        }
        return TAP_FEV_PASS;
    }
    tap_gen_copy(g->response_model, tap_json_get(j, "model"));
    details = tap_json_get(j, "details");

    if (ev->whole) {
        v = tap_json_get(j, "generated_text");
        if (tap_json_is_string(v) && tap_json_strlen(v) > 0) {
            tap_gen_text(g, 0, tap_json_string(v), tap_json_strlen(v));
        }
        tap_json_foreach(tap_json_get(details, "tokens"), i, tok) {
            if (tap_json_is_object(tok)) {
                tap_tgi_token(g, tok, 0);
            }
        }
        tap_tgi_details(g, details);
        return TAP_FEV_PASS;
    }

    tok = tap_json_get(j, "token");
    if (tap_json_is_object(tok)) {
        tap_tgi_token(g, tok, 1);
        tap_gen_tokens(g, ev->now, 1);
    }
    tap_tgi_details(g, details);
    return TAP_FEV_PASS;
}
