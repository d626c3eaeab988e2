/*
 * llamacpp.c: the native completion API of llama.cpp's server as a protocol
 * filter.
 *
 * Endpoint: POST /completion (also spelled /completions); the OpenAI-style
 * /v1/... endpoints belong to the openai filter.  The request has "prompt"
 * (a string, token ids, or a list of either: several prompts give several
 * answers, told apart by "index"), "stream" (default false), temperature,
 * top_p, top_k, seed, n_predict (max_tokens), n_probs (top_logprobs) and the
 * penalties; stop, min_p, typical_p, repeat_penalty, grammar, json_schema
 * and the mirostat settings go into the params hash as one extra object.
 *
 * Streams are Server-Sent Events; each event carries "content" (one token's
 * text, sometimes empty while a multi-byte character is incomplete), and the
 * last one has "stop": true with the usage (tokens_evaluated,
 * tokens_predicted, tokens_cached), "model" and why it stopped: "stop_type"
 * (eos, word, limit) in current servers, stopped_eos/stopped_word/
 * stopped_limit flags in older ones, mapped to "stop" and "length".  The
 * timings block gives the same counts and is used only when they are
 * missing.  A plain answer is that last object with the whole content (a
 * list of such objects for several prompts).
 *
 * Token probabilities (n_probs > 0) come in "completion_probabilities", one
 * entry per generated token, in three generations of shape: current servers
 * give the chosen token's "logprob" (or its "prob" with post_sampling_probs),
 * older ones only a candidate list "probs": [{tok_str, prob}] in which the
 * chosen token is the candidate whose tok_str equals the entry's "content"
 * (an entry where none does is counted but has no probability).
 * Errors are {"error": {"code": 400, "message": "...", "type": "..."}}.
 */

#include "config.h"

#include <string.h>

#include "filters.h"

/* Usage summed over the answers to several prompts (the filter's state). */
typedef struct tap_llamacpp_usage_s {
    int64_t    prompt;
    int64_t    completion;
    int64_t    cached;
    unsigned   has_prompt:1;
    unsigned   has_completion:1;
    unsigned   has_cached:1;
} tap_llamacpp_usage_t;


static int tap_llamacpp_match(tap_fx_t *fx);
static void tap_llamacpp_request_body(tap_fx_t *fx, void *st, const char *body, size_t len,
    cJSON  *json);
static void tap_llamacpp_response_head(tap_fx_t *fx, void *st);
static int tap_llamacpp_response_event(tap_fx_t *fx, void *st, const tap_fevent_t *ev);


const tap_filter_t  tap_filter_llamacpp = {
    .name = "llamacpp",
    .protocol = 1,
    .state_size = sizeof(tap_llamacpp_usage_t),
    .match = tap_llamacpp_match,
    .request_body = tap_llamacpp_request_body,
    .response_head = tap_llamacpp_response_head,
    .response_event = tap_llamacpp_response_event,
};

/* Parameters that shape the output but have no field of their own in tap_gen_t. */
static const char  *tap_llamacpp_extra_params[] = {
    "stop", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "dry_multiplier",
    "xtc_probability", "mirostat", "mirostat_tau", "mirostat_eta", "grammar", "json_schema",
    "logit_bias", "ignore_eos", "samplers", NULL
};


static int
tap_llamacpp_match(tap_fx_t *fx)
{
    if (fx->method == NULL || strcmp(fx->method, "POST") != 0) {
        return 0;
    }
    if (!(fx->path_len == sizeof("/completion") - 1
          && memcmp(fx->path, "/completion", fx->path_len) == 0)
        && !(fx->path_len == sizeof("/completions") - 1
             && memcmp(fx->path, "/completions", fx->path_len) == 0))
    {
        return 0;
    }
    fx->gen->provider = tap_filter_llamacpp.name;
    fx->gen->operation = "text_completion";
    return 1;
}


static void
tap_llamacpp_request_body(tap_fx_t *fx, void *st, const char *body, size_t len, cJSON *json)
{
    const char  **k;
    tap_gen_t    *g = fx->gen;
    cJSON        *extra, *v;
    double        d;
    int64_t       i;

    (void) st;
    (void) body;
    (void) len;

    if (json == NULL) {
        return;
    }

    /* the server runs one model; "model" is there when a router needs it */
    tap_gen_copy(g->model, tap_json_get(json, "model"));
    v = tap_json_get(json, "stream");
    g->stream = tap_json_is_true(v) ? 1 : 0;

    if (tap_gen_number(tap_json_get(json, "temperature"), &d) == 0) {
        g->temperature = d;
    }
    if (tap_gen_number(tap_json_get(json, "top_p"), &d) == 0) {
        g->top_p = d;
    }
    if (tap_gen_number(tap_json_get(json, "top_k"), &d) == 0) {
        g->top_k = d;
    }
    if (tap_gen_number(tap_json_get(json, "frequency_penalty"), &d) == 0) {
        g->frequency_penalty = d;
    }
    if (tap_gen_number(tap_json_get(json, "presence_penalty"), &d) == 0) {
        g->presence_penalty = d;
    }
    if (tap_gen_integer(tap_json_get(json, "seed"), &i) == 0) {
        g->seed = i;
    }
    /* n_predict -1 is "no limit" */
    if (tap_gen_integer(tap_json_get(json, "n_predict"), &i) == 0 && i >= 0) {
        g->max_tokens = i;
    }
    if (tap_gen_integer(tap_json_get(json, "n_probs"), &i) == 0) {
        g->top_logprobs = i;
        g->logprobs = i > 0;
    }

    extra = cJSON_CreateObject();
    for (k = tap_llamacpp_extra_params; extra != NULL && *k != NULL; k++) {
        v = tap_json_get(json, *k);
        if (v != NULL) {
            cJSON_AddItemReferenceToObject(extra, *k, v);
        }
    }
    tap_gen_hash_params(g, tap_json_size(extra) > 0 ? extra : NULL);
    cJSON_Delete(extra);

    if (tap_gen_hash_prompt(g, tap_json_get(json, "prompt"), NULL) != 0) {
        g->req_parse = TAP_GEN_PARSE_UNEXPECTED;
    }
}


static void
tap_llamacpp_response_head(tap_fx_t *fx, void *st)
{
    (void) st;

    if (fx->gen->stream == 1 && fx->frame == TAP_FRAME_JSON
        && fx->status >= 200 && fx->status <= 299)
    {
        fx->frame = TAP_FRAME_SSE;
    }
}


/*
 * Feeds "completion_probabilities"; returns the number of entries, that is
 * of tokens.
 */
static uint64_t
tap_llamacpp_probs(tap_gen_t *g, cJSON *cps)
{
    cJSON        *e, *c, *content;
    size_t        i, k;
    uint64_t      n = 0;
    double        v;

    tap_json_foreach(cps, i, e) {
        if (!tap_json_is_object(e)) {
            continue;
        }
        n++;
        if (tap_gen_number(tap_json_get(e, "logprob"), &v) == 0) {
            tap_gen_logprob(g, v);
            continue;
        }
        if (tap_gen_number(tap_json_get(e, "prob"), &v) == 0) {
            tap_gen_prob(g, v);
            continue;
        }
        content = tap_json_get(e, "content");
        if (!tap_json_is_string(content)) {
            continue;
        }
        tap_json_foreach(tap_json_get(e, "probs"), k, c) {
            if (cJSON_Compare(tap_json_get(c, "tok_str"), content, 1)) {
                if (tap_gen_number(tap_json_get(c, "prob"), &v) == 0) {
                    tap_gen_prob(g, v);
                }
                break;
            }
        }
    }
    g->counted_tokens += n;
    return n;
}


/* Why generation stopped, from stop_type or the older stopped_* flags. */
static void
tap_llamacpp_finish(tap_gen_t *g, unsigned choice, cJSON *j)
{
    cJSON       *v;
    const char  *s, *r = NULL;

    v = tap_json_get(j, "stop_type");
    if (tap_json_is_string(v)) {
        s = tap_json_string(v);
        if (strcmp(s, "eos") == 0 || strcmp(s, "word") == 0) {
            r = "stop";
        } else if (strcmp(s, "limit") == 0) {
            r = "length";
        } else if (strcmp(s, "none") != 0 && s[0] != '\0') {
            r = s;
        }
    } else if (tap_json_is_true(tap_json_get(j, "stopped_eos"))
               || tap_json_is_true(tap_json_get(j, "stopped_word")))
    {
        r = "stop";
    } else if (tap_json_is_true(tap_json_get(j, "stopped_limit"))) {
        r = "length";
    }
    if (r != NULL) {
        tap_gen_finish_reason(g, choice, r, strlen(r));
    }
}


/*
 * Adds one final object's counts to the running sums (the timings block when
 * the counts are missing) and reports the sums.
 */
static void
tap_llamacpp_usage(tap_gen_t *g, tap_llamacpp_usage_t *u, cJSON *j)
{
    cJSON   *t = tap_json_get(j, "timings");
    int64_t   v;

    if ((tap_gen_integer(tap_json_get(j, "tokens_evaluated"), &v) == 0
         || tap_gen_integer(tap_json_get(t, "prompt_n"), &v) == 0) && v >= 0)
    {
        u->prompt += v;
        u->has_prompt = 1;
    }
    if ((tap_gen_integer(tap_json_get(j, "tokens_predicted"), &v) == 0
         || tap_gen_integer(tap_json_get(t, "predicted_n"), &v) == 0) && v >= 0)
    {
        u->completion += v;
        u->has_completion = 1;
    }
    if (tap_gen_integer(tap_json_get(j, "tokens_cached"), &v) == 0 && v >= 0) {
        u->cached += v;
        u->has_cached = 1;
    }
    if (u->has_prompt || u->has_completion) {
        tap_gen_usage(g, u->has_prompt ? u->prompt : TAP_GEN_UNSET,
                      u->has_completion ? u->completion : TAP_GEN_UNSET,
                      u->has_cached ? u->cached : TAP_GEN_UNSET);
    }
}


/*
 * One answer object (a streamed event or one element of a plain answer).
 * Returns 1 when it was an error.
 */
static int
tap_llamacpp_answer(tap_fx_t *fx, const tap_fevent_t *ev, cJSON *j, tap_llamacpp_usage_t *u)
{
    tap_gen_t  *g = fx->gen;
    cJSON      *v, *t;
    unsigned    choice = 0;
    uint64_t    n;
    int64_t     idx;
    size_t      len = 0;

    v = tap_json_get(j, "error");
    if (v != NULL && !tap_json_is_null(v)) {
        t = tap_json_get(v, "type");
        if (!tap_json_is_string(t) || tap_json_strlen(t) == 0) {
            t = tap_json_get(v, "code");
        }
        if (tap_json_is_string(t) && tap_json_strlen(t) > 0) {
            tap_gen_error(g, tap_json_string(t), tap_json_strlen(t));
        } else {
            tap_gen_error(g, "error", 5);
        }
        return 1;
    }

    if (tap_gen_integer(tap_json_get(j, "index"), &idx) == 0) {
        if (idx < 0 || idx >= TAP_GEN_MAX_CHOICES) {
            return 0;
        }
        choice = (unsigned) idx;
    }

    v = tap_json_get(j, "content");
    if (tap_json_is_string(v) && tap_json_strlen(v) > 0) {
        len = tap_json_strlen(v);
        tap_gen_text(g, choice, tap_json_string(v), len);
    }
    n = tap_llamacpp_probs(g, tap_json_get(j, "completion_probabilities"));
    if (!ev->whole) {
        if (n == 0) {
            n = tap_json_size(tap_json_get(j, "tokens"));
        }
        if (n == 0 && len > 0) {
            n = 1;
        }
        if (n > 0) {
            tap_gen_tokens(g, ev->now, n);
        }
    }

    if (ev->whole || tap_json_is_true(tap_json_get(j, "stop"))) {
        tap_gen_copy(g->response_model, tap_json_get(j, "model"));
        tap_llamacpp_finish(g, choice, j);
        tap_llamacpp_usage(g, u, j);
    }
    return 0;
}


static int
tap_llamacpp_response_event(tap_fx_t *fx, void *st, const tap_fevent_t *ev)
{
    cJSON   *j = tap_fev_json(ev), *e;
    size_t   i;

    if (ev->whole && tap_json_is_array(j)) {
        tap_json_foreach(j, i, e) {
            if (tap_json_is_object(e) && tap_llamacpp_answer(fx, ev, e, st)) {
                break;
            }
        }
    } else if (tap_json_is_object(j)) {
        tap_llamacpp_answer(fx, ev, j, st);
    }
    return TAP_FEV_PASS;
}
