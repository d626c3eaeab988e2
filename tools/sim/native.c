/*
 * native.c: the native APIs of other model servers: Ollama (/api/chat,
 * /api/generate, NDJSON streams, streaming by default), TGI (/generate,
 * /generate_stream), llama.cpp (/completion) and KServe v2 inference
 * (/v2/models/{name}/infer, a 3-class classifier).
 *
 * Generation reuses job.c and gen.c, so the same prompt and seed produce the
 * same words whatever the protocol; only the framing differs.  Durations
 * reported in bodies are measured from the start of the job.
 */

#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "job.h"

static void tap_sim_ollama_full(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_ollama_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i,
    const tap_sim_tok_t *t);
static void tap_sim_ollama_tail(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_ollama_broken(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_tgi_full(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_tgi_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i,
    const tap_sim_tok_t *t);
static void tap_sim_tgi_broken(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_llama_full(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_llama_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i,
    const tap_sim_tok_t *t);
static void tap_sim_llama_tail(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_llama_broken(tap_sim_job_t *j, tap_sim_sb_t *sb);
static unsigned tap_sim_ollama_shows(const tap_sim_job_t *j);
static unsigned tap_sim_tgi_shows(const tap_sim_job_t *j);
static unsigned tap_sim_llama_shows(const tap_sim_job_t *j);

/* Ollama chat and generate differ only in the field carrying text. */
static const tap_sim_api_t  tap_sim_ollama_chat_api = {
    .name = "ollama_chat",
    .finish_stop = "stop",
    .finish_length = "length",
    .stream_ctype = "application/x-ndjson",
    .full = tap_sim_ollama_full,
    .token = tap_sim_ollama_token,
    .tail = tap_sim_ollama_tail,
    .broken = tap_sim_ollama_broken,
    .shows = tap_sim_ollama_shows,
};

static const tap_sim_api_t  tap_sim_ollama_gen_api = {
    .name = "ollama_generate",
    .finish_stop = "stop",
    .finish_length = "length",
    .stream_ctype = "application/x-ndjson",
    .full = tap_sim_ollama_full,
    .token = tap_sim_ollama_token,
    .tail = tap_sim_ollama_tail,
    .broken = tap_sim_ollama_broken,
    .shows = tap_sim_ollama_shows,
};

static const tap_sim_api_t  tap_sim_tgi_api = {
    .name = "tgi",
    .finish_stop = "eos_token",
    .finish_length = "length",
    .stream_ctype = "text/event-stream",
    .full = tap_sim_tgi_full,
    .token = tap_sim_tgi_token,
    .tail = NULL,
    .broken = tap_sim_tgi_broken,
    .shows = tap_sim_tgi_shows,
};

static const tap_sim_api_t  tap_sim_llama_api = {
    .name = "llamacpp",
    .finish_stop = "eos",
    .finish_length = "limit",
    .stream_ctype = "text/event-stream",
    .full = tap_sim_llama_full,
    .token = tap_sim_llama_token,
    .tail = tap_sim_llama_tail,
    .broken = tap_sim_llama_broken,
    .shows = tap_sim_llama_shows,
};


static uint64_t
tap_sim_elapsed_ns(const tap_sim_job_t *j)
{
    return (tap_sim_now_us() - j->t0_us) * 1000;
}


/* ---- Ollama ---------------------------------------------------------- */

static void
tap_sim_ollama_head(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, "{\"model\":");
    tap_sim_add_model(sb, j);
    tap_sim_sb_adds(sb, ",\"created_at\":");
    tap_sim_add_rfc3339(sb);
}


static void
tap_sim_ollama_text_open(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    if (j->api == &tap_sim_ollama_chat_api) {
        tap_sim_sb_adds(sb, ",\"message\":{\"role\":\"assistant\",\"content\":\"");
    } else {
        tap_sim_sb_adds(sb, ",\"response\":\"");
    }
}


static void
tap_sim_ollama_text_close(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, j->api == &tap_sim_ollama_chat_api ? "\"}" : "\"");
}


static void
tap_sim_ollama_done(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    uint64_t  total, prompt;

    total = tap_sim_elapsed_ns(j);
    prompt = TAP_MIN(j->ttft_us * 1000, total);
    tap_sim_sb_adds(sb, ",\"done_reason\":");
    tap_sim_sb_adds(sb, j->finish_length ? "\"length\"" : "\"stop\"");
    tap_sim_sb_adds(sb, ",\"done\":true,\"total_duration\":");
    tap_sim_sb_add_u64(sb, total);
    tap_sim_sb_adds(sb, ",\"load_duration\":0,\"prompt_eval_count\":");
    tap_sim_sb_add_u64(sb, j->prompt_tokens);
    tap_sim_sb_adds(sb, ",\"prompt_eval_duration\":");
    tap_sim_sb_add_u64(sb, prompt);
    tap_sim_sb_adds(sb, ",\"eval_count\":");
    tap_sim_sb_add_u64(sb, j->ntok);
    tap_sim_sb_adds(sb, ",\"eval_duration\":");
    tap_sim_sb_add_u64(sb, total - prompt);
    tap_sim_sb_addc(sb, '}');
}


static void
tap_sim_ollama_full(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_ollama_head(j, sb);
    tap_sim_ollama_text_open(j, sb);
    tap_sim_job_text(j, sb);
    tap_sim_ollama_text_close(j, sb);
    tap_sim_ollama_done(j, sb);
}


static void
tap_sim_ollama_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t)
{
    tap_sim_ollama_head(j, sb);
    tap_sim_ollama_text_open(j, sb);
    tap_sim_tok_text(sb, i, t);
    tap_sim_ollama_text_close(j, sb);
    tap_sim_sb_adds(sb, ",\"done\":false}\n");
}


static void
tap_sim_ollama_tail(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_ollama_head(j, sb);
    tap_sim_ollama_text_open(j, sb);
    tap_sim_ollama_text_close(j, sb);
    tap_sim_ollama_done(j, sb);
    tap_sim_sb_addc(sb, '\n');
}


static void
tap_sim_ollama_broken(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, "{\"model\":\"broken\",\"created_at\":\n");
}


/* done_reason always; Ollama has no log-probabilities. */
static unsigned
tap_sim_ollama_shows(const tap_sim_job_t *j)
{
    return TAP_SIM_SHOWS_FINISH;
}


static void
tap_sim_ollama(tap_sim_req_t *r, int chat)
{
    tap_sim_params_t   p;
    tap_sim_sb_t      *sb = &r->w->prompt;
    json_t            *root, *prompt, *opts;
    long long          np;
    int                stream;

    root = tap_sim_body_json(r);
    if (root == NULL) {
        return;
    }

    tap_sim_params_init(&p, chat ? &tap_sim_ollama_chat_api : &tap_sim_ollama_gen_api);
    tap_sim_sb_reset(sb);
    if (chat) {
        if (!json_object_get(root, "messages")) {
            tap_sim_bad(r, "'messages' is required");
            goto done;
        }
        if (tap_sim_chat_prompt(r, json_object_get(root, "messages"), sb, &p.prompt_tokens)
            != TAP_OK)
        {
            goto done;
        }

    } else {
        prompt = json_object_get(root, "prompt");
        if (!json_is_string(prompt)) {
            tap_sim_bad(r, "'prompt' must be a string");
            goto done;
        }
        tap_sim_sb_add(sb, json_string_value(prompt), json_string_length(prompt));
        p.prompt_tokens = tap_sim_count_words(sb->p, sb->len);
    }

    stream = 1;
    opts = NULL;
    np = -1;
    if (tap_sim_opt_str(r, root, "model", &p.model, &p.model_len) != TAP_OK
        || tap_sim_opt_bool(r, root, "stream", &stream) != TAP_OK
        || tap_sim_opt_obj(r, root, "options", &opts) != TAP_OK
        || (opts != NULL
            && (tap_sim_opt_int(r, opts, "num_predict", -(1LL << 40), 1LL << 40, &np) != TAP_OK
                || tap_sim_opt_int(r, opts, "seed", -(1LL << 62), 1LL << 62, &p.seed)
                   != TAP_OK
                || tap_sim_opt_num(r, opts, "temperature", 0, 100, &p.temperature) != TAP_OK)))
    {
        goto done;
    }

    p.has_seed = opts != NULL && json_is_integer(json_object_get(opts, "seed"));
    p.max_tokens = np > 0 ? np : -1;
    p.stream = stream;
    p.prompt = sb->p;
    p.prompt_len = sb->len;
    tap_sim_job_start(r, &p);

done:

    json_decref(root);
}


void
tap_sim_ollama_chat(tap_sim_req_t *r)
{
    tap_sim_ollama(r, 1);
}


void
tap_sim_ollama_generate(tap_sim_req_t *r)
{
    tap_sim_ollama(r, 0);
}


/* ---- TGI ------------------------------------------------------------- */

static void
tap_sim_tgi_tok(tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t)
{
    tap_sim_sb_adds(sb, "{\"id\":");
    tap_sim_sb_add_u64(sb, t->id);
    tap_sim_sb_adds(sb, ",\"text\":\"");
    tap_sim_tok_text(sb, i, t);
    tap_sim_sb_adds(sb, "\",\"logprob\":");
    tap_sim_sb_add_lp(sb, t->logprob);
    tap_sim_sb_adds(sb, ",\"special\":false}");
}


static void
tap_sim_tgi_details_head(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, "{\"finish_reason\":");
    tap_sim_sb_adds(sb, j->finish_length ? "\"length\"" : "\"eos_token\"");
    tap_sim_sb_adds(sb, ",\"generated_tokens\":");
    tap_sim_sb_add_u64(sb, j->ntok);
    tap_sim_sb_adds(sb, ",\"seed\":");
    if (j->has_seed) {
        tap_sim_sb_add_i64(sb, j->seed);
    } else {
        tap_sim_sb_adds(sb, "null");
    }
}


static void
tap_sim_tgi_full(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_tok_t  t;
    unsigned       i;

    tap_sim_sb_adds(sb, "{\"generated_text\":\"");
    tap_sim_job_text(j, sb);
    tap_sim_sb_addc(sb, '"');
    if (j->details) {
        tap_sim_sb_adds(sb, ",\"details\":");
        tap_sim_tgi_details_head(j, sb);
        tap_sim_sb_adds(sb, ",\"prefill\":[],\"tokens\":[");
        for (i = 0; i < j->ntok; i++) {
            if (i > 0) {
                tap_sim_sb_addc(sb, ',');
            }
            tap_sim_gen_token(&j->gen, i, &t);
            tap_sim_tgi_tok(sb, i, &t);
        }
        tap_sim_sb_adds(sb, "]}");
    }
    tap_sim_sb_addc(sb, '}');
}


static void
tap_sim_tgi_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t)
{
    tap_sim_sb_adds(sb, "data:{\"index\":");
    tap_sim_sb_add_u64(sb, i);
    tap_sim_sb_adds(sb, ",\"token\":");
    tap_sim_tgi_tok(sb, i, t);
    if (i + 1 < j->ntok) {
        tap_sim_sb_adds(sb, ",\"generated_text\":null,\"details\":null}\n\n");
        return;
    }

    tap_sim_sb_adds(sb, ",\"generated_text\":\"");
    tap_sim_job_text(j, sb);
    tap_sim_sb_adds(sb, "\",\"details\":");
    tap_sim_tgi_details_head(j, sb);
    tap_sim_sb_adds(sb, "}}\n\n");
}


static void
tap_sim_tgi_broken(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, "data:{\"index\":-1,\"token\":{\"id\":\n\n");
}


/* A stream shows every token and the final details; a plain body only with details. */
static unsigned
tap_sim_tgi_shows(const tap_sim_job_t *j)
{
    return j->stream || j->details ? TAP_SIM_SHOWS_FINISH | TAP_SIM_SHOWS_LOGPROBS : 0;
}


void
tap_sim_tgi_generate(tap_sim_req_t *r, int stream)
{
    tap_sim_params_t   p;
    tap_sim_sb_t      *sb = &r->w->prompt;
    json_t            *root, *inputs, *params;
    int                details;

    root = tap_sim_body_json(r);
    if (root == NULL) {
        return;
    }

    tap_sim_params_init(&p, &tap_sim_tgi_api);
    tap_sim_sb_reset(sb);
    inputs = json_object_get(root, "inputs");
    if (!json_is_string(inputs)) {
        tap_sim_bad(r, "'inputs' must be a string");
        goto done;
    }
    tap_sim_sb_add(sb, json_string_value(inputs), json_string_length(inputs));
    p.prompt_tokens = tap_sim_count_words(sb->p, sb->len);

    params = NULL;
    details = 0;
    if (tap_sim_opt_obj(r, root, "parameters", &params) != TAP_OK
        || (params != NULL
            && (tap_sim_opt_int(r, params, "max_new_tokens", 1, 1LL << 40, &p.max_tokens)
                != TAP_OK
                || tap_sim_opt_int(r, params, "seed", 0, 1LL << 62, &p.seed) != TAP_OK
                || tap_sim_opt_num(r, params, "temperature", 0, 100, &p.temperature) != TAP_OK
                || tap_sim_opt_bool(r, params, "details", &details) != TAP_OK)))
    {
        goto done;
    }

    p.has_seed = params != NULL && json_is_integer(json_object_get(params, "seed"));
    p.details = details;
    p.stream = stream;
    p.prompt = sb->p;
    p.prompt_len = sb->len;
    tap_sim_job_start(r, &p);

done:

    json_decref(root);
}


/* ---- llama.cpp ------------------------------------------------------- */

static void
tap_sim_llama_probs(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t)
{
    tap_sim_tok_t  alt;
    int            k;

    tap_sim_sb_adds(sb, "{\"content\":\"");
    tap_sim_tok_text(sb, i, t);
    tap_sim_sb_adds(sb, "\",\"probs\":[");
    for (k = 0; k < j->top_n; k++) {
        if (k == 0) {
            alt = *t;
        } else {
            tap_sim_gen_alt(&j->gen, i, t, (unsigned) k, &alt);
            tap_sim_sb_addc(sb, ',');
        }
        tap_sim_sb_adds(sb, "{\"tok_str\":\"");
        tap_sim_tok_text(sb, i, &alt);
        tap_sim_sb_adds(sb, "\",\"prob\":");
        tap_sim_sb_add_lp(sb, exp(alt.logprob));
        tap_sim_sb_addc(sb, '}');
    }
    tap_sim_sb_adds(sb, "]}");
}


static void
tap_sim_llama_final(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    double  total_ms, prompt_ms, pred_ms;

    total_ms = (double) (tap_sim_now_us() - j->t0_us) / 1000.0;
    prompt_ms = TAP_MIN((double) j->ttft_us / 1000.0, total_ms);
    pred_ms = total_ms - prompt_ms;
    tap_sim_sb_adds(sb, ",\"stop\":true,\"model\":");
    tap_sim_add_model(sb, j);
    tap_sim_sb_addf(sb, ",\"tokens_predicted\":%u,\"tokens_evaluated\":%u,\"stop_type\":\"%s\","
                    "\"timings\":{\"prompt_n\":%u,\"prompt_ms\":%.3f,"
                    "\"prompt_per_second\":%.3f,\"predicted_n\":%u,\"predicted_ms\":%.3f,"
                    "\"predicted_per_second\":%.3f}}",
                    j->ntok, j->prompt_tokens, j->finish_length ? "limit" : "eos",
                    j->prompt_tokens, prompt_ms,
                    prompt_ms > 0 ? j->prompt_tokens * 1000.0 / prompt_ms : 0.0,
                    j->ntok, pred_ms, pred_ms > 0 ? j->ntok * 1000.0 / pred_ms : 0.0);
}


static void
tap_sim_llama_full(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_tok_t  t;
    unsigned       i;

    tap_sim_sb_adds(sb, "{\"content\":\"");
    tap_sim_job_text(j, sb);
    tap_sim_sb_addc(sb, '"');
    if (j->top_n > 0) {
        tap_sim_sb_adds(sb, ",\"completion_probabilities\":[");
        for (i = 0; i < j->ntok; i++) {
            if (i > 0) {
                tap_sim_sb_addc(sb, ',');
            }
            tap_sim_gen_token(&j->gen, i, &t);
            tap_sim_llama_probs(j, sb, i, &t);
        }
        tap_sim_sb_addc(sb, ']');
    }
    tap_sim_llama_final(j, sb);
}


static void
tap_sim_llama_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t)
{
    tap_sim_sb_adds(sb, "data: {\"content\":\"");
    tap_sim_tok_text(sb, i, t);
    tap_sim_sb_adds(sb, "\",\"stop\":false");
    if (j->top_n > 0) {
        tap_sim_sb_adds(sb, ",\"completion_probabilities\":[");
        tap_sim_llama_probs(j, sb, i, t);
        tap_sim_sb_addc(sb, ']');
    }
    tap_sim_sb_adds(sb, "}\n\n");
}


static void
tap_sim_llama_tail(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, "data: {\"content\":\"\"");
    tap_sim_llama_final(j, sb);
    tap_sim_sb_adds(sb, "\n\n");
}


static void
tap_sim_llama_broken(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, "data: {\"content\":\n\n");
}


/* stop_type always; probabilities with n_probs > 0. */
static unsigned
tap_sim_llama_shows(const tap_sim_job_t *j)
{
    return TAP_SIM_SHOWS_FINISH | (j->top_n > 0 ? TAP_SIM_SHOWS_PROBS : 0);
}


void
tap_sim_llama_completion(tap_sim_req_t *r)
{
    tap_sim_params_t   p;
    tap_sim_sb_t      *sb = &r->w->prompt;
    json_t            *root, *prompt;
    long long          np, probs;
    int                stream;

    root = tap_sim_body_json(r);
    if (root == NULL) {
        return;
    }

    tap_sim_params_init(&p, &tap_sim_llama_api);
    tap_sim_sb_reset(sb);
    prompt = json_object_get(root, "prompt");
    if (prompt == NULL) {
        tap_sim_bad(r, "'prompt' is required");
        goto done;
    }
    if (tap_sim_prompt_value(r, prompt, "prompt", sb, &p.prompt_tokens) != TAP_OK) {
        goto done;
    }

    np = -1;
    probs = 0;
    stream = 0;
    if (tap_sim_opt_int(r, root, "n_predict", -(1LL << 40), 1LL << 40, &np) != TAP_OK
        || tap_sim_opt_int(r, root, "n_probs", 0, TAP_SIM_TOP_MAX, &probs) != TAP_OK
        || tap_sim_opt_int(r, root, "seed", -(1LL << 62), 1LL << 62, &p.seed) != TAP_OK
        || tap_sim_opt_num(r, root, "temperature", 0, 100, &p.temperature) != TAP_OK
        || tap_sim_opt_bool(r, root, "stream", &stream) != TAP_OK)
    {
        goto done;
    }

    /* llama.cpp's seed -1 means "random"; keep it deterministic here */
    p.has_seed = json_is_integer(json_object_get(root, "seed")) && p.seed >= 0;
    p.max_tokens = np > 0 ? np : -1;
    p.top_n = (int) probs;
    p.stream = stream;
    p.prompt = sb->p;
    p.prompt_len = sb->len;
    tap_sim_job_start(r, &p);

done:

    json_decref(root);
}


/* ---- KServe v2 ------------------------------------------------------- */

void
tap_sim_kserve_infer(tap_sim_req_t *r)
{
    tap_sim_shared_t   *sh = r->w->shared;
    tap_sim_sb_t       *sb = &r->w->sb;
    tap_sim_outcome_t   o;
    const char         *name, *id;
    size_t              name_len, i;
    json_t             *root, *inputs, *in;
    double              prob[TAP_SIM_CLASSES];
    uint64_t            h, n;
    char               *dump;
    int                 fail, drift, nondet;

    root = tap_sim_body_json(r);
    if (root == NULL) {
        return;
    }

    inputs = json_object_get(root, "inputs");
    if (!json_is_array(inputs) || json_array_size(inputs) == 0) {
        tap_sim_bad(r, "'inputs' must be a non-empty array");
        goto done;
    }

    h = tap_sim_mix64(sh->conf->seed);
    json_array_foreach(inputs, i, in) {
        if (!json_is_object(in) || !json_is_array(json_object_get(in, "data"))) {
            tap_sim_bad(r, "inputs[%zu] must be an object with a 'data' array", i);
            goto done;
        }
        dump = json_dumps(json_object_get(in, "data"), JSON_COMPACT | JSON_ENCODE_ANY);
        if (dump == NULL) {
            tap_sim_bad(r, "inputs[%zu].data cannot be encoded", i);
            goto done;
        }
        h = tap_sim_mix64(h ^ tap_sim_hash(dump, strlen(dump)));
        free(dump);
    }

    n = tap_sim_job_next_index(sh, &fail, &drift, &nondet);
    if (nondet) {
        h ^= tap_sim_mix64(n);
    }
    tap_sim_classify(h, drift ? sh->conf->drift_amount : 0.0, prob);

    /* "/v2/models/NAME/infer" */
    name = r->path + 11;
    name_len = r->path_len - 11 - 6;
    id = json_string_value(json_object_get(root, "id"));

    tap_sim_sb_reset(sb);
    tap_sim_sb_adds(sb, "{\"model_name\":");
    tap_sim_sb_add_jstr(sb, name, name_len);
    tap_sim_sb_adds(sb, ",\"model_version\":\"1\",\"id\":");
    if (id != NULL) {
        tap_sim_sb_add_jstr(sb, id, strlen(id));
    } else {
        tap_sim_sb_addf(sb, "\"%016llx\"", (unsigned long long) tap_sim_mix64(h ^ n));
    }
    tap_sim_sb_adds(sb, ",\"outputs\":[{\"name\":\"probabilities\",\"shape\":[1,");
    tap_sim_sb_add_u64(sb, TAP_SIM_CLASSES);
    tap_sim_sb_adds(sb, "],\"datatype\":\"FP32\",\"data\":[");
    for (i = 0; i < TAP_SIM_CLASSES; i++) {
        if (i > 0) {
            tap_sim_sb_addc(sb, ',');
        }
        tap_sim_sb_add_lp(sb, prob[i]);
    }
    tap_sim_sb_adds(sb, "]}]}");

    memset(&o, 0, sizeof(o));
    o.api = "kserve";
    o.model = name;
    o.model_len = name_len;
    o.n = 1;
    tap_sim_job_simple(r, fail, sb, &o);

done:

    json_decref(root);
}
