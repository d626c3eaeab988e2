/*
 * ollama.c: the Ollama native API as a protocol filter.
 *
 * Endpoints: POST /api/chat ("messages", answer in message.content),
 * POST /api/generate ("prompt" and "system", answer in "response"), and the
 * embedding endpoints /api/embed ("input") and the older /api/embeddings
 * ("prompt").  Ollama streams by default: a request without "stream" is a
 * stream, sent as NDJSON (one JSON object per line) whose last object has
 * "done": true with done_reason, prompt_eval_count and eval_count.  A plain
 * answer is that same last object with the whole text.
 *
 * Sampling parameters sit in "options" (temperature, top_p, top_k, seed,
 * num_predict as max_tokens, the penalties); the other output-shaping ones
 * (stop, min_p, typical_p, repeat_*, mirostat*, and the top-level "format"
 * and "think") go into the params hash as one extra object.  Since 0.12
 * Ollama can return per-token "logprobs" (top-level "logprobs": true); each
 * entry's logprob feeds the confidence figures.
 *
 * Each streamed object that carries text, thinking, tool calls or logprobs
 * counts as one token event (as many tokens as it has logprob entries, at
 * least one).  Errors are {"error": "message"}, as a whole body or as a
 * line in the middle of a stream; they carry no type, so the type recorded
 * is "error".
 */

#include "config.h"

#include <string.h>

#include "filters.h"

typedef enum {
    TAP_OLLAMA_NONE = 0,
    TAP_OLLAMA_CHAT,
    TAP_OLLAMA_GENERATE,
    TAP_OLLAMA_EMBED,                  /* /api/embed: "input" */
    TAP_OLLAMA_EMBEDDINGS,             /* /api/embeddings: "prompt" */
} tap_ollama_kind_e;


static int tap_ollama_match(tap_fx_t *fx);
static void tap_ollama_request_body(tap_fx_t *fx, void *st, const char *body, size_t len,
    cJSON  *json);
static void tap_ollama_response_head(tap_fx_t *fx, void *st);
static int tap_ollama_response_event(tap_fx_t *fx, void *st, const tap_fevent_t *ev);


const tap_filter_t  tap_filter_ollama = {
    .name = "ollama",
    .protocol = 1,
    .state_size = 0,
    .match = tap_ollama_match,
    .request_body = tap_ollama_request_body,
    .response_head = tap_ollama_response_head,
    .response_event = tap_ollama_response_event,
};

/* Options that shape the output but have no field of their own in tap_gen_t. */
static const char  *tap_ollama_extra_options[] = {
    "stop", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "mirostat",
    "mirostat_tau", "mirostat_eta", NULL
};


static int
tap_ollama_path_is(const tap_fx_t *fx, const char *p)
{
    size_t  n = strlen(p);

    return fx->path_len == n && memcmp(fx->path, p, n) == 0;
}


static tap_ollama_kind_e
tap_ollama_kind(const tap_fx_t *fx)
{
    if (fx->method == NULL || strcmp(fx->method, "POST") != 0) {
        return TAP_OLLAMA_NONE;
    }
    if (tap_ollama_path_is(fx, "/api/chat")) {
        return TAP_OLLAMA_CHAT;
    }
    if (tap_ollama_path_is(fx, "/api/generate")) {
        return TAP_OLLAMA_GENERATE;
    }
    if (tap_ollama_path_is(fx, "/api/embed")) {
        return TAP_OLLAMA_EMBED;
    }
    if (tap_ollama_path_is(fx, "/api/embeddings")) {
        return TAP_OLLAMA_EMBEDDINGS;
    }
    return TAP_OLLAMA_NONE;
}


static int
tap_ollama_match(tap_fx_t *fx)
{
    switch (tap_ollama_kind(fx)) {
    case TAP_OLLAMA_CHAT:
        fx->gen->operation = "chat";
        break;
    case TAP_OLLAMA_GENERATE:
        fx->gen->operation = "text_completion";
        break;
    case TAP_OLLAMA_EMBED:
    case TAP_OLLAMA_EMBEDDINGS:
        fx->gen->operation = "embeddings";
        break;
    default:
        return 0;
    }
    fx->gen->provider = tap_filter_ollama.name;
    return 1;
}


/*
 * Reads "options" into g and copies the options without a field of their
 * own into extra.  Returns -1 when options is present but not an object.
 */
static int
tap_ollama_options(tap_gen_t *g, cJSON *opts, cJSON *extra)
{
    const char  **k;
    cJSON        *v;
    double        d;
    int64_t       i;

    if (opts == NULL || tap_json_is_null(opts)) {
        return 0;
    }
    if (!tap_json_is_object(opts)) {
        return -1;
    }

    if (tap_gen_number(tap_json_get(opts, "temperature"), &d) == 0) {
        g->temperature = d;
    }
    if (tap_gen_number(tap_json_get(opts, "top_p"), &d) == 0) {
        g->top_p = d;
    }
    if (tap_gen_number(tap_json_get(opts, "top_k"), &d) == 0) {
        g->top_k = d;
    }
    if (tap_gen_number(tap_json_get(opts, "frequency_penalty"), &d) == 0) {
        g->frequency_penalty = d;
    }
    if (tap_gen_number(tap_json_get(opts, "presence_penalty"), &d) == 0) {
        g->presence_penalty = d;
    }
    if (tap_gen_integer(tap_json_get(opts, "seed"), &i) == 0) {
        g->seed = i;
    }
    /* -1 (no limit) and -2 (fill the context) are not limits */
    if (tap_gen_integer(tap_json_get(opts, "num_predict"), &i) == 0 && i >= 0) {
        g->max_tokens = i;
    }

    for (k = tap_ollama_extra_options; *k != NULL; k++) {
        v = tap_json_get(opts, *k);
        if (v != NULL) {
            cJSON_AddItemReferenceToObject(extra, *k, v);
        }
    }
    return 0;
}


static void
tap_ollama_request_body(tap_fx_t *fx, void *st, const char *body, size_t len, cJSON *json)
{
    tap_ollama_kind_e   kind = tap_ollama_kind(fx);
    tap_gen_t          *g = fx->gen;
    cJSON              *extra, *v, *system;
    int64_t             i;
    int                 rc;

    (void) st;
    (void) body;
    (void) len;

    if (json == NULL) {
        return;
    }

    tap_gen_copy(g->model, tap_json_get(json, "model"));

    v = tap_json_get(json, "stream");
    if (kind == TAP_OLLAMA_EMBED || kind == TAP_OLLAMA_EMBEDDINGS) {
        g->stream = 0;
    } else if (tap_json_is_bool(v)) {
        g->stream = tap_json_is_true(v);
    } else {
        g->stream = 1;                  /* Ollama's default */
    }

    v = tap_json_get(json, "logprobs");
    if (tap_json_is_bool(v)) {
        g->logprobs = tap_json_is_true(v);
    }
    if (tap_gen_integer(tap_json_get(json, "top_logprobs"), &i) == 0) {
        g->top_logprobs = i;
    }
    v = tap_json_get(json, "tools");
    if (tap_json_is_array(v)) {
        g->ntools = (unsigned) tap_json_size(v);
    }

    rc = 0;
    extra = cJSON_CreateObject();
    if (extra != NULL) {
        rc = tap_ollama_options(g, tap_json_get(json, "options"), extra);
        if ((v = tap_json_get(json, "format")) != NULL) {
            cJSON_AddItemReferenceToObject(extra, "format", v);
        }
        if ((v = tap_json_get(json, "think")) != NULL) {
            cJSON_AddItemReferenceToObject(extra, "think", v);
        }
        tap_gen_hash_params(g, tap_json_size(extra) > 0 ? extra : NULL);
        cJSON_Delete(extra);
    }

    switch (kind) {
    case TAP_OLLAMA_CHAT:
        rc |= tap_gen_hash_chat(g, tap_json_get(json, "messages"));
        break;

    case TAP_OLLAMA_GENERATE:
        /* no prompt at all only loads the model: nothing to hash */
        v = tap_json_get(json, "prompt");
        system = tap_json_get(json, "system");
        if (v != NULL) {
            rc |= tap_gen_hash_prompt(g, v, tap_json_is_string(system) ? system : NULL);
        }
        break;

    case TAP_OLLAMA_EMBED:
        rc |= tap_gen_hash_prompt(g, tap_json_get(json, "input"), NULL);
        break;

    case TAP_OLLAMA_EMBEDDINGS:
        rc |= tap_gen_hash_prompt(g, tap_json_get(json, "prompt"), NULL);
        break;

    default:
        break;
    }

    if (rc != 0) {
        g->req_parse = TAP_GEN_PARSE_UNEXPECTED;
    }
}


/*
 * Ollama labels its streams application/x-ndjson, but some front ends and
 * older builds say application/json; the request's "stream" decides.  Error
 * answers keep the chain's choice: they are one plain JSON object.
 */
static void
tap_ollama_response_head(tap_fx_t *fx, void *st)
{
    (void) st;

    if (fx->status < 200 || fx->status > 299) {
        return;
    }
    if (fx->gen->stream == 1 && fx->frame == TAP_FRAME_JSON) {
        fx->frame = TAP_FRAME_NDJSON;
    } else if (fx->gen->stream == 0 && fx->frame == TAP_FRAME_NDJSON) {
        fx->frame = TAP_FRAME_JSON;
    }
}


/* Feeds a "logprobs" array; returns the number of entries (tokens) it had. */
static uint64_t
tap_ollama_logprobs(tap_gen_t *g, cJSON *lps)
{
    cJSON     *e;
    size_t     i;
    double     lp;
    uint64_t   n = 0;

    if (!tap_json_is_array(lps)) {
        return 0;
    }
    tap_json_foreach(lps, i, e) {
        if (!tap_json_is_object(e)) {
            continue;
        }
        n++;
        if (tap_gen_number(tap_json_get(e, "logprob"), &lp) == 0) {
            tap_gen_logprob(g, lp);
        }
    }
    g->counted_tokens += n;
    return n;
}


static int
tap_ollama_response_event(tap_fx_t *fx, void *st, const tap_fevent_t *ev)
{
    tap_ollama_kind_e   kind = tap_ollama_kind(fx);
    tap_gen_t          *g = fx->gen;
    cJSON              *j = tap_fev_json(ev), *v, *msg, *other;
    const char         *text = NULL;
    size_t              len = 0;
    uint64_t            n;
    int64_t             prompt, completion;
    int                 busy = 0;

    (void) st;

    if (!tap_json_is_object(j)) {
        return TAP_FEV_PASS;
    }
    v = tap_json_get(j, "error");
    if (v != NULL && !tap_json_is_null(v)) {
        tap_gen_error(g, "error", 5);
        return TAP_FEV_PASS;
    }
    tap_gen_copy(g->response_model, tap_json_get(j, "model"));

    v = NULL;
    other = NULL;
    if (kind == TAP_OLLAMA_CHAT) {
        msg = tap_json_get(j, "message");
        v = tap_json_get(msg, "content");
        other = tap_json_get(msg, "thinking");
        if (tap_json_size(tap_json_get(msg, "tool_calls")) > 0) {
            busy = 1;
        }
    } else if (kind == TAP_OLLAMA_GENERATE) {
        v = tap_json_get(j, "response");
        other = tap_json_get(j, "thinking");
    }
    if (tap_json_is_string(v)) {
        text = tap_json_string(v);
        len = tap_json_strlen(v);
    }
    if (tap_json_is_string(other) && tap_json_strlen(other) > 0) {
        busy = 1;
    }

    if (len > 0) {
        tap_gen_text(g, 0, text, len);
    }
    n = tap_ollama_logprobs(g, tap_json_get(j, "logprobs"));
    if (!ev->whole && (len > 0 || busy || n > 0)) {
        tap_gen_tokens(g, ev->now, n > 0 ? n : 1);
    }

    if (kind == TAP_OLLAMA_EMBED || kind == TAP_OLLAMA_EMBEDDINGS) {
        if (tap_gen_integer(tap_json_get(j, "prompt_eval_count"), &prompt) == 0) {
            tap_gen_usage(g, prompt, 0, TAP_GEN_UNSET);
        }
        return TAP_FEV_PASS;
    }

    if (!tap_json_is_true(tap_json_get(j, "done"))) {
        return TAP_FEV_PASS;
    }
    v = tap_json_get(j, "done_reason");
    if (tap_json_is_string(v)) {
        tap_gen_finish_reason(g, 0, tap_json_string(v), tap_json_strlen(v));
    }
    /* prompt_eval_count is left out when the whole prompt came from the cache */
    if (tap_gen_integer(tap_json_get(j, "prompt_eval_count"), &prompt) != 0) {
        prompt = TAP_GEN_UNSET;
    }
    if (tap_gen_integer(tap_json_get(j, "eval_count"), &completion) != 0) {
        completion = TAP_GEN_UNSET;
    }
    if (prompt != TAP_GEN_UNSET || completion != TAP_GEN_UNSET) {
        tap_gen_usage(g, prompt, completion, TAP_GEN_UNSET);
    }
    return TAP_FEV_PASS;
}
