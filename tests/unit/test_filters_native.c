/*
 * test_filters_native.c: unit tests of the native protocol filters (filters/ollama.c, tgi.c,
 * llamacpp.c, kserve.c) driven through the real chain (src/filter.h).
 *
 * Each case is a recorded request body and response under tests/data/filters/ (from the
 * simulator, or written after the servers' documented shapes where the simulator is narrower:
 * Ollama thinking and logprobs, embeddings and mid-stream errors, TGI special tokens and
 * errors, llama.cpp's current logprob shape and errors, KServe versioned paths, logits and
 * errors).  The request is fed in pieces and the response whole, byte by byte and in 100
 * random splits; every run must give the same record, and the record must hold the model,
 * stream flag, token counts, finish reason, the completion hash (XXH3-64 of the known text),
 * the logprob sums computed by hand from the fixture and the sampling parameters.  Further
 * tests cover which paths each filter claims, the lenient framing of streams sent with a JSON
 * content type, the prompt hashes and request bodies of unexpected shape.  Output is TAP
 * (CMOCKA_MESSAGE_OUTPUT=TAP).
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

#include <cmocka.h>

#include "tap_core.h"
#include "filter.h"

#define TAP_T_SPLITS    100
#define TAP_T_CAPTURE   (1 << 20)
#define TAP_T_U         TAP_GEN_UNSET

/* How the response body is handed to the chain. */
typedef enum {
    TAP_T_WHOLE = 0,
    TAP_T_BYTES,
    TAP_T_RANDOM,
} tap_t_split_e;

/* A recorded exchange and what the record must say about it. */
typedef struct tap_t_case_s {
    const char       *name;            /* fixtures NAME_req.json and NAME_resp.EXT */
    const char       *resp_ext;
    const char       *path;
    const char       *ctype;
    int               status;

    const char       *provider;
    const char       *operation;
    const char       *model;
    const char       *response_model;
    const char       *response_id;
    int               stream;
    const char       *text;            /* NULL: no completion hash */
    const char       *finish;          /* NULL: none */
    const char       *error;           /* NULL: none */
    int64_t           prompt_tokens;
    int64_t           completion_tokens;
    int64_t           cached_tokens;
    int               usage_reported;
    uint64_t          token_events;
    uint64_t          counted_tokens;
    uint64_t          lp_count;
    double            lp_sum;          /* hand-computed from the fixture */
    double            score;           /* NAN: none */

    double            temperature;     /* NAN: not set */
    double            top_p;
    double            top_k;
    int64_t           seed;
    int64_t           max_tokens;
    int64_t           top_logprobs;
    int               logprobs;
} tap_t_case_t;

/* The parts of a record that must not depend on how the bytes were split. */
typedef struct tap_t_snap_s {
    char              model[TAP_GEN_STR];
    char              response_model[TAP_GEN_STR];
    char              response_id[TAP_GEN_STR];
    char              finish[TAP_GEN_MAX_CHOICES][24];
    char              error[64];
    const char       *provider;
    const char       *operation;
    int               stream;
    unsigned          nchoices;
    int64_t           prompt_tokens, completion_tokens, cached_tokens;
    int               usage_reported;
    uint64_t          token_events, counted_tokens, completion_chars;
    uint64_t          prompt_hash, prefix_hash, params_hash, completion_hash;
    unsigned          has_prompt_hash, has_prefix_hash, has_params_hash, has_completion_hash;
    double            lp_sum, lp_min, score;
    uint64_t          lp_count;
    tap_gen_parse_e   req_parse, resp_parse;
} tap_t_snap_t;


static const tap_t_case_t  tap_t_cases[] = {
    { "ollama_chat_stream", "ndjson", "/api/chat", "application/x-ndjson", 200,
      "ollama", "chat", "m", "m", "", 1, "tells south last score copper", "stop", NULL,
      5, 5, TAP_T_U, 1, 5, 0, 0, 0.0, NAN,
      0.5, 0.9, 40, 7, TAP_T_U, TAP_T_U, TAP_T_U },

    { "ollama_chat", "json", "/api/chat", "application/json; charset=utf-8", 200,
      "ollama", "chat", "m", "m", "", 0, "voyage also and healthy", "length", NULL,
      2, 4, TAP_T_U, 1, 0, 0, 0, 0.0, NAN,
      0.5, NAN, NAN, 3, 4, TAP_T_U, TAP_T_U },

    { "ollama_generate_stream", "ndjson", "/api/generate", "application/x-ndjson", 200,
      "ollama", "text_completion", "m", "m", "", 1, "index rain still moves warm", "length",
      NULL, 1, 5, TAP_T_U, 1, 5, 0, 0, 0.0, NAN,
      NAN, NAN, NAN, TAP_T_U, 5, TAP_T_U, TAP_T_U },

    { "ollama_generate", "json", "/api/generate", "application/json", 200,
      "ollama", "text_completion", "m", "m", "", 0, "index rain still moves warm", "stop", NULL,
      1, 5, TAP_T_U, 1, 0, 0, 0, 0.0, NAN,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, TAP_T_U, TAP_T_U },

    /* thinking and logprobs (Ollama 0.12): -0.5 - 0.25 - 0.125 - 1.0 - 2.0 */
    { "ollama_chat_think", "ndjson", "/api/chat", "application/x-ndjson", 200,
      "ollama", "chat", "qwen3:0.6b", "qwen3:0.6b", "", 1, "Hi! \xc3\xa9t\xc3\xa9", "stop", NULL,
      12, 6, TAP_T_U, 1, 5, 5, 5, -3.875, NAN,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, 2, 1 },

    { "ollama_embed", "json", "/api/embed", "application/json", 200,
      "ollama", "embeddings", "all-minilm", "all-minilm", "", 0, NULL, NULL, NULL,
      8, 0, TAP_T_U, 1, 0, 0, 0, 0.0, NAN,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, TAP_T_U, TAP_T_U },

    /* an error line in the middle of a stream; prompt estimated from 20 chars */
    { "ollama_error", "ndjson", "/api/generate", "application/x-ndjson", 200,
      "ollama", "text_completion", "llama3.2", "llama3.2", "", 1, "The sky", NULL, "error",
      5, 2, TAP_T_U, 0, 2, 0, 0, 0.0, NAN,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, TAP_T_U, TAP_T_U },

    /* -0.501526 - 0.906396 - 0.961349 - 0.427698; no prefill: prompt estimated from "hi" */
    { "tgi_generate", "json", "/generate", "application/json", 200,
      "tgi", "text_completion", "", "", "", 0, "road while reply over", "length", NULL,
      1, 4, TAP_T_U, 1, 0, 4, 4, -2.796969, NAN,
      0.7, NAN, 10, 5, 4, TAP_T_U, 1 },

    /* -0.637728 - 0.841854 - 1.476944 - 0.484963 */
    { "tgi_generate_stream", "sse", "/generate_stream", "text/event-stream", 200,
      "tgi", "text_completion", "", "", "", 1, "index rain still moves", "length", NULL,
      1, 4, TAP_T_U, 1, 4, 4, 4, -3.441489, NAN,
      NAN, NAN, NAN, TAP_T_U, 4, TAP_T_U, 1 },

    /* the special end token counts but adds no text: -0.25 - 0.5 - 0.125 */
    { "tgi_eos", "sse", "/generate_stream", "text/event-stream", 200,
      "tgi", "text_completion", "", "", "", 1, " Hello!", "stop", NULL,
      9, 3, TAP_T_U, 1, 3, 3, 3, -0.875, NAN,
      NAN, 0.9, NAN, TAP_T_U, 20, 2, TAP_T_U },

    { "tgi_error", "json", "/generate", "application/json", 422,
      "tgi", "text_completion", "", "", "", 0, NULL, NULL, "validation",
      1, TAP_T_U, TAP_T_U, 0, 0, 0, 0, 0.0, NAN,
      NAN, NAN, NAN, TAP_T_U, 100000, TAP_T_U, TAP_T_U },

    /* chosen-token probabilities from the candidate lists (log of each, summed below) */
    { "llamacpp_stream", "sse", "/completion", "text/event-stream", 200,
      "llamacpp", "text_completion", "", "sim-model", "", 1, "market data those letter map",
      "length", NULL, 1, 5, TAP_T_U, 1, 5, 5, 5, 0.0, NAN,
      0.8, 0.95, 40, 1, 5, 2, 1 },

    { "llamacpp", "json", "/completion", "application/json", 200,
      "llamacpp", "text_completion", "", "sim-model", "", 0, "index rain still moves warm",
      "stop", NULL, 1, 5, TAP_T_U, 1, 0, 5, 5, 0.0, NAN,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, 1, 1 },

    /* current llama.cpp: "logprob" per token, token-id prompt, stop word: -0.25 - 0.5 */
    { "llamacpp_logprob", "sse", "/completions", "text/event-stream", 200,
      "llamacpp", "text_completion", "", "mistral-7b-instruct", "", 1, " Paris.", "stop", NULL,
      3, 3, 5, 1, 2, 2, 2, -0.75, NAN,
      NAN, NAN, NAN, TAP_T_U, 8, 2, 1 },

    { "llamacpp_error", "json", "/completion", "application/json", 400,
      "llamacpp", "text_completion", "", "", "", 0, NULL, NULL, "invalid_request_error",
      1, TAP_T_U, TAP_T_U, 0, 0, 0, 0, 0.0, NAN,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, TAP_T_U, TAP_T_U },

    { "kserve", "json", "/v2/models/m/infer", "application/json", 200,
      "kserve", "infer", "m", "m", "70f8d27637f5d2b3", 0, NULL, NULL, NULL,
      TAP_T_U, TAP_T_U, TAP_T_U, 0, 0, 0, 0, 0.0, 0.521589,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, TAP_T_U, TAP_T_U },

    /* a [2, 3] tensor: the largest of all rows, not of the last one */
    { "kserve_nested", "json", "/v2/models/b/infer", "application/json", 200,
      "kserve", "infer", "b", "b", "x1", 0, NULL, NULL, NULL,
      TAP_T_U, TAP_T_U, TAP_T_U, 0, 0, 0, 0, 0.0, 0.85,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, TAP_T_U, TAP_T_U },

    /* logits are not probabilities: no score */
    { "kserve_logits", "json", "/v2/models/bert-sst2/versions/3/infer", "application/json", 200,
      "kserve", "infer", "bert-sst2", "bert-sst2", "42", 0, NULL, NULL, NULL,
      TAP_T_U, TAP_T_U, TAP_T_U, 0, 0, 0, 0, 0.0, NAN,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, TAP_T_U, TAP_T_U },

    { "kserve_error", "json", "/v2/models/nope/infer", "application/json", 404,
      "kserve", "infer", "nope", "", "", 0, NULL, NULL, "error",
      TAP_T_U, TAP_T_U, TAP_T_U, 0, 0, 0, 0, 0.0, NAN,
      NAN, NAN, NAN, TAP_T_U, TAP_T_U, TAP_T_U, TAP_T_U },
};

#define TAP_T_NCASES  (sizeof(tap_t_cases) / sizeof(tap_t_cases[0]))

/* The llama.cpp fixtures give probabilities: their logprob sums are computed here. */
static const double  tap_t_llamacpp_stream_probs[] = {
    0.355973, 0.989812, 0.791206, 0.260577, 0.544811
};
static const double  tap_t_llamacpp_probs[] = {
    0.528492, 0.430911, 0.228334, 0.615720, 0.531122
};

static const tap_fconf_t  *tap_t_fc;


static char *
tap_t_read(const char *name, size_t *len)
{
    const char  *dir;
    char         path[1024];
    FILE        *f;
    char        *buf;
    long         n;

    dir = getenv("TAP_TEST_DATA");
    snprintf(path, sizeof(path), "%s/filters/%s", dir != NULL ? dir : "tests/data", name);
    f = fopen(path, "rb");
    if (f == NULL) {
        fail_msg("cannot open %s", path);
    }
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    buf = malloc((size_t) n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t) n, f), (size_t) n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t) n;
    return buf;
}


static void
tap_t_snap(tap_t_snap_t *s, const tap_gen_t *g)
{
    memset(s, 0, sizeof(*s));
    memcpy(s->model, g->model, sizeof(s->model));
    memcpy(s->response_model, g->response_model, sizeof(s->response_model));
    memcpy(s->response_id, g->response_id, sizeof(s->response_id));
    memcpy(s->finish, g->finish_reasons, sizeof(s->finish));
    memcpy(s->error, g->error_type, sizeof(s->error));
    s->provider = g->provider;
    s->operation = g->operation;
    s->stream = g->stream;
    s->nchoices = g->nchoices;
    s->prompt_tokens = g->prompt_tokens;
    s->completion_tokens = g->completion_tokens;
    s->cached_tokens = g->cached_tokens;
    s->usage_reported = g->usage_reported;
    s->token_events = g->token_events;
    s->counted_tokens = g->counted_tokens;
    s->completion_chars = g->completion_chars;
    s->prompt_hash = g->prompt_hash;
    s->prefix_hash = g->prefix_hash;
    s->params_hash = g->params_hash;
    s->completion_hash = g->completion_hash;
    s->has_prompt_hash = g->has_prompt_hash;
    s->has_prefix_hash = g->has_prefix_hash;
    s->has_params_hash = g->has_params_hash;
    s->has_completion_hash = g->has_completion_hash;
    s->lp_sum = g->lp_sum;
    s->lp_min = g->lp_min;
    s->lp_count = g->lp_count;
    s->score = g->score;
    s->req_parse = g->req_parse;
    s->resp_parse = g->resp_parse;
}


/* Doubles equal, NAN equal to NAN. */
static void
tap_t_same_double(double a, double b)
{
    if (isnan(a) || isnan(b)) {
        assert_true(isnan(a) && isnan(b));
    } else {
        assert_true(a == b);
    }
}


static void
tap_t_same(const tap_t_snap_t *a, const tap_t_snap_t *b)
{
    assert_memory_equal(a->model, b->model, sizeof(a->model));
    assert_memory_equal(a->response_model, b->response_model, sizeof(a->response_model));
    assert_memory_equal(a->response_id, b->response_id, sizeof(a->response_id));
    assert_memory_equal(a->finish, b->finish, sizeof(a->finish));
    assert_memory_equal(a->error, b->error, sizeof(a->error));
    assert_ptr_equal(a->provider, b->provider);
    assert_ptr_equal(a->operation, b->operation);
    assert_int_equal(a->stream, b->stream);
    assert_int_equal(a->nchoices, b->nchoices);
    assert_int_equal(a->prompt_tokens, b->prompt_tokens);
    assert_int_equal(a->completion_tokens, b->completion_tokens);
    assert_int_equal(a->cached_tokens, b->cached_tokens);
    assert_int_equal(a->usage_reported, b->usage_reported);
    assert_int_equal(a->token_events, b->token_events);
    assert_int_equal(a->counted_tokens, b->counted_tokens);
    assert_int_equal(a->completion_chars, b->completion_chars);
    assert_int_equal(a->has_prompt_hash, b->has_prompt_hash);
    assert_int_equal(a->has_prefix_hash, b->has_prefix_hash);
    assert_int_equal(a->has_params_hash, b->has_params_hash);
    assert_int_equal(a->has_completion_hash, b->has_completion_hash);
    assert_true(a->prompt_hash == b->prompt_hash);
    assert_true(a->prefix_hash == b->prefix_hash);
    assert_true(a->params_hash == b->params_hash);
    assert_true(a->completion_hash == b->completion_hash);
    tap_t_same_double(a->lp_sum, b->lp_sum);
    tap_t_same_double(a->lp_min, b->lp_min);
    tap_t_same_double(a->score, b->score);
    assert_int_equal(a->lp_count, b->lp_count);
    assert_int_equal(a->req_parse, b->req_parse);
    assert_int_equal(a->resp_parse, b->resp_parse);
}


/* Next piece length for a split mode; rnd is a small xorshift state. */
static size_t
tap_t_piece(tap_t_split_e mode, uint32_t *rnd, size_t left)
{
    size_t  n;

    switch (mode) {
    case TAP_T_WHOLE:
        return left;
    case TAP_T_BYTES:
        return 1;
    default:
        *rnd ^= *rnd << 13;
        *rnd ^= *rnd >> 17;
        *rnd ^= *rnd << 5;
        n = 1 + *rnd % 97;
        return n < left ? n : left;
    }
}


/*
 * Runs one exchange through the chain: the request fed with
 * tap_fx_request_data in pieces, the response as the mode says.  Fills ex
 * (whose gen the caller cleans up) and returns 0, or -1 when the chain
 * claimed nothing.
 */
static int
tap_t_run(tap_exchange_t *ex, const char *path, const char *req, size_t req_len,
    const char *ctype, int status, const char *resp, size_t resp_len, tap_t_split_e mode,
    uint32_t seed)
{
    tap_fx_t  *fx;
    uint32_t   rnd = seed | 1;
    size_t     off, n;

    tap_exchange_init(ex);
    fx = tap_fx_begin(tap_t_fc, ex, "POST", path, strlen(path));
    if (fx == NULL) {
        return -1;
    }
    for (off = 0; off < req_len; off += n) {
        n = tap_t_piece(mode, &rnd, req_len - off);
        tap_fx_request_data(fx, req + off, n);
    }
    assert_int_equal(tap_fx_request_end(fx, NULL, 0), 0);

    tap_fx_response_head(fx, status, ctype, ctype != NULL ? strlen(ctype) : 0, 0, 0);
    for (off = 0; off < resp_len; off += n) {
        n = tap_t_piece(mode, &rnd, resp_len - off);
        tap_fx_response_data(fx, resp + off, n, NULL, NULL);
    }
    tap_fx_complete(fx, 0, NULL, NULL);
    tap_fx_free(fx);
    return 0;
}


static double
tap_t_log_sum(const double *p, size_t n)
{
    double  s = 0.0;
    size_t  i;

    for (i = 0; i < n; i++) {
        s += log(p[i]);
    }
    return s;
}


static void
tap_t_check_double(double got, double want)
{
    if (isnan(want)) {
        assert_true(isnan(got));
    } else {
        assert_true(fabs(got - want) < 1e-9);
    }
}


/* The record of the whole-body run against the case's expectations. */
static void
tap_t_check(const tap_t_case_t *c, const tap_gen_t *g)
{
    double  want, mean = NAN;

    assert_non_null(g->provider);
    assert_string_equal(g->provider, c->provider);
    assert_string_equal(g->operation, c->operation);
    assert_string_equal(g->model, c->model);
    assert_string_equal(g->response_model, c->response_model);
    assert_string_equal(g->response_id, c->response_id);
    assert_int_equal(g->stream, c->stream);
    assert_int_equal(g->req_parse, TAP_GEN_PARSE_OK);
    assert_int_equal(g->resp_parse, TAP_GEN_PARSE_OK);

    if (c->text != NULL) {
        assert_true(g->has_completion_hash);
        assert_true(g->completion_hash == XXH3_64bits(c->text, strlen(c->text)));
        assert_int_equal(g->completion_chars, strlen(c->text));
    } else {
        assert_false(g->has_completion_hash);
        assert_int_equal(g->completion_chars, 0);
    }
    assert_string_equal(g->finish_reasons[0], c->finish != NULL ? c->finish : "");
    assert_string_equal(g->error_type, c->error != NULL ? c->error : "");

    assert_int_equal(g->prompt_tokens, c->prompt_tokens);
    assert_int_equal(g->completion_tokens, c->completion_tokens);
    assert_int_equal(g->cached_tokens, c->cached_tokens);
    assert_int_equal(g->usage_reported, c->usage_reported);
    assert_int_equal(g->token_events, c->token_events);
    assert_int_equal(g->counted_tokens, c->counted_tokens);

    want = c->lp_sum;
    if (strcmp(c->name, "llamacpp_stream") == 0) {
        want = tap_t_log_sum(tap_t_llamacpp_stream_probs, 5);
    } else if (strcmp(c->name, "llamacpp") == 0) {
        want = tap_t_log_sum(tap_t_llamacpp_probs, 5);
    }
    assert_int_equal(g->lp_count, c->lp_count);
    if (c->lp_count > 0) {
        assert_true(fabs(g->lp_sum - want) < 1e-9);
        assert_int_equal(tap_gen_confidence(g, &mean, NULL, NULL), 1);
        assert_true(fabs(mean - want / (double) c->lp_count) < 1e-9);
    }
    tap_t_check_double(g->score, c->score);

    tap_t_check_double(g->temperature, c->temperature);
    tap_t_check_double(g->top_p, c->top_p);
    tap_t_check_double(g->top_k, c->top_k);
    assert_int_equal(g->seed, c->seed);
    assert_int_equal(g->max_tokens, c->max_tokens);
    assert_int_equal(g->top_logprobs, c->top_logprobs);
    assert_int_equal(g->logprobs, c->logprobs);

    assert_true(g->has_params_hash);
    assert_true(g->has_prompt_hash);
}


/* One case: whole, byte by byte, 100 random splits; all the same, and as expected. */
static void
tap_t_case(void **state)
{
    const tap_t_case_t  *c = *state;
    tap_exchange_t       ex;
    tap_t_snap_t         ref, s;
    char                 name[256];
    char                *req, *resp;
    size_t               req_len, resp_len;
    uint32_t             i;

    snprintf(name, sizeof(name), "%s_req.json", c->name);
    req = tap_t_read(name, &req_len);
    snprintf(name, sizeof(name), "%s_resp.%s", c->name, c->resp_ext);
    resp = tap_t_read(name, &resp_len);

    assert_int_equal(tap_t_run(&ex, c->path, req, req_len, c->ctype, c->status, resp, resp_len,
                               TAP_T_WHOLE, 0), 0);
    assert_true(ex.analysed);
    tap_t_check(c, &ex.gen);
    tap_t_snap(&ref, &ex.gen);
    tap_gen_cleanup(&ex.gen);

    assert_int_equal(tap_t_run(&ex, c->path, req, req_len, c->ctype, c->status, resp, resp_len,
                               TAP_T_BYTES, 0), 0);
    tap_t_snap(&s, &ex.gen);
    tap_gen_cleanup(&ex.gen);
    tap_t_same(&ref, &s);

    for (i = 0; i < TAP_T_SPLITS; i++) {
        assert_int_equal(tap_t_run(&ex, c->path, req, req_len, c->ctype, c->status, resp,
                                   resp_len, TAP_T_RANDOM, 0x9e3779b9u * (i + 1)), 0);
        tap_t_snap(&s, &ex.gen);
        tap_gen_cleanup(&ex.gen);
        tap_t_same(&ref, &s);
    }

    free(req);
    free(resp);
}


/* Runs case `name` with another content type; returns its snapshot. */
static void
tap_t_run_named(const char *name, const char *ctype, tap_t_snap_t *s)
{
    const tap_t_case_t  *c = NULL;
    tap_exchange_t       ex;
    char                 file[256];
    char                *req, *resp;
    size_t               i, req_len, resp_len;

    for (i = 0; i < TAP_T_NCASES; i++) {
        if (strcmp(tap_t_cases[i].name, name) == 0) {
            c = &tap_t_cases[i];
        }
    }
    assert_non_null(c);
    snprintf(file, sizeof(file), "%s_req.json", c->name);
    req = tap_t_read(file, &req_len);
    snprintf(file, sizeof(file), "%s_resp.%s", c->name, c->resp_ext);
    resp = tap_t_read(file, &resp_len);

    assert_int_equal(tap_t_run(&ex, c->path, req, req_len, ctype != NULL ? ctype : c->ctype,
                               c->status, resp, resp_len, TAP_T_RANDOM, 7), 0);
    tap_t_snap(s, &ex.gen);
    tap_gen_cleanup(&ex.gen);
    free(req);
    free(resp);
}


/*
 * Streams labelled application/json (or with no content type) are read as
 * the request asked: NDJSON for Ollama, SSE for TGI and llama.cpp.
 */
static void
tap_t_lenient_framing(void **state)
{
    static const char  *names[] = {
        "ollama_chat_stream", "ollama_generate_stream", "tgi_generate_stream",
        "llamacpp_stream", "llamacpp_logprob", NULL
    };
    tap_t_snap_t        ref, s;
    const char        **n;

    (void) state;

    for (n = names; *n != NULL; n++) {
        tap_t_run_named(*n, NULL, &ref);
        tap_t_run_named(*n, "application/json", &s);
        tap_t_same(&ref, &s);
        tap_t_run_named(*n, "", &s);
        tap_t_same(&ref, &s);
    }

    /* and a plain Ollama answer labelled as a stream is read whole */
    tap_t_run_named("ollama_chat", NULL, &ref);
    tap_t_run_named("ollama_chat", "application/x-ndjson", &s);
    tap_t_same(&ref, &s);
}


/* Exactly the documented paths and POST; the provider and operation they give. */
static void
tap_t_match(void **state)
{
    static const struct {
        const char  *method;
        const char  *path;
        const char  *provider;         /* NULL: none of the native filters */
        const char  *operation;
        const char  *model;
    } m[] = {
        { "POST", "/api/chat", "ollama", "chat", "" },
        { "POST", "/api/generate", "ollama", "text_completion", "" },
        { "POST", "/api/embed", "ollama", "embeddings", "" },
        { "POST", "/api/embeddings", "ollama", "embeddings", "" },
        { "GET", "/api/chat", NULL, NULL, NULL },
        { "POST", "/api/chat/", NULL, NULL, NULL },
        { "POST", "/api/cha", NULL, NULL, NULL },
        { "POST", "/api/tags", NULL, NULL, NULL },
        { "POST", "/generate", "tgi", "text_completion", "" },
        { "POST", "/generate_stream", "tgi", "text_completion", "" },
        { "POST", "/generate_streams", NULL, NULL, NULL },
        { "POST", "/completion", "llamacpp", "text_completion", "" },
        { "POST", "/completions", "llamacpp", "text_completion", "" },
        { "POST", "/completionz", NULL, NULL, NULL },
        { "POST", "/v2/models/resnet/infer", "kserve", "infer", "resnet" },
        { "POST", "/v2/models/a.b-c_1/versions/7/infer", "kserve", "infer", "a.b-c_1" },
        { "POST", "/v2/models//infer", NULL, NULL, NULL },
        { "POST", "/v2/models/x/versions//infer", NULL, NULL, NULL },
        { "POST", "/v2/models/x/versions/1/infer/", NULL, NULL, NULL },
        { "POST", "/v2/models/x/inferx", NULL, NULL, NULL },
        { "POST", "/v2/models/x/ready", NULL, NULL, NULL },
        { "POST", "/v2/models/x/y/infer", NULL, NULL, NULL },
        { "GET", "/v2/models/x/infer", NULL, NULL, NULL },
    };
    tap_exchange_t  ex;
    tap_fx_t       *fx;
    size_t          i;

    (void) state;

    for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        tap_exchange_init(&ex);
        fx = tap_fx_begin(tap_t_fc, &ex, m[i].method, m[i].path, strlen(m[i].path));
        if (m[i].provider == NULL) {
            if (ex.gen.provider != NULL) {
                /* another protocol filter (openai) may claim it, never ours */
                assert_true(strcmp(ex.gen.provider, "ollama") != 0
                            && strcmp(ex.gen.provider, "tgi") != 0
                            && strcmp(ex.gen.provider, "llamacpp") != 0
                            && strcmp(ex.gen.provider, "kserve") != 0);
            }
        } else {
            assert_non_null(fx);
            assert_true(ex.analysed);
            assert_non_null(ex.gen.provider);
            assert_string_equal(ex.gen.provider, m[i].provider);
            assert_string_equal(ex.gen.operation, m[i].operation);
            assert_string_equal(ex.gen.model, m[i].model);
        }
        tap_fx_free(fx);
        tap_gen_cleanup(&ex.gen);
    }
}


/* Runs a request body only; returns the record in ex (caller cleans up). */
static void
tap_t_request(tap_exchange_t *ex, const char *path, const char *body)
{
    tap_fx_t  *fx;

    tap_exchange_init(ex);
    fx = tap_fx_begin(tap_t_fc, ex, "POST", path, strlen(path));
    assert_non_null(fx);
    tap_fx_request_data(fx, body, strlen(body));
    tap_fx_request_end(fx, NULL, 0);
    tap_fx_complete(fx, 0, NULL, NULL);
    tap_fx_free(fx);
}


/* The prompt hashes are the genai ones over the right request fields. */
static void
tap_t_prompt_hash(void **state)
{
    tap_exchange_t  ex;
    tap_gen_t       ref;
    XXH3_state_t   *h;
    cJSON          *j;
    uint64_t        a;

    (void) state;

    /* Ollama chat: the messages, with the model */
    tap_t_request(&ex, "/api/chat",
                  "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                  "{\"role\":\"user\",\"content\":\"hi\"}]}");
    j = cJSON_Parse("[{\"content\":\"s\",\"role\":\"system\"},{\"role\":\"user\",\"content\":\"hi\"}]");
    tap_gen_init(&ref);
    strcpy(ref.model, "m");
    assert_int_equal(tap_gen_hash_chat(&ref, j), 0);
    assert_true(ex.gen.has_prompt_hash && ex.gen.has_prefix_hash);
    assert_true(ex.gen.prompt_hash == ref.prompt_hash);
    assert_true(ex.gen.prefix_hash == ref.prefix_hash);
    assert_int_equal(ex.gen.nmessages, 2);
    assert_int_equal(ex.gen.stream, 1);
    cJSON_Delete(j);
    tap_gen_cleanup(&ref);
    tap_gen_cleanup(&ex.gen);

    /* Ollama generate: system + prompt share the chat's prefix */
    tap_t_request(&ex, "/api/generate", "{\"model\":\"m\",\"system\":\"s\",\"prompt\":\"hi\"}");
    assert_true(ex.gen.has_prefix_hash);
    j = cJSON_Parse("[{\"role\":\"system\",\"content\":\"s\"}]");
    tap_gen_init(&ref);
    strcpy(ref.model, "m");
    assert_int_equal(tap_gen_hash_chat(&ref, j), 0);
    assert_true(ex.gen.prefix_hash == ref.prompt_hash);
    cJSON_Delete(j);
    tap_gen_cleanup(&ref);
    tap_gen_cleanup(&ex.gen);

    /* TGI and llama.cpp: the same prompt string hashes alike (no model given) */
    tap_t_request(&ex, "/generate", "{\"inputs\":\"hello\"}");
    a = ex.gen.prompt_hash;
    assert_int_equal(ex.gen.stream, 0);
    tap_gen_cleanup(&ex.gen);
    tap_t_request(&ex, "/completion", "{\"prompt\":\"hello\",\"temperature\":0}");
    assert_true(ex.gen.prompt_hash == a);
    assert_int_equal(ex.gen.stream, 0);
    tap_gen_cleanup(&ex.gen);

    /* KServe: model then canonical inputs; key order and number spelling do not matter */
    tap_t_request(&ex, "/v2/models/clf/infer",
                  "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\","
                  "\"data\":[1,0.5]}]}");
    h = XXH3_createState();
    assert_non_null(h);
    XXH3_64bits_reset(h);
    tap_hash_field(h, 'M', "clf", 3);
    j = cJSON_Parse("[{\"data\":[1.0,0.5],\"datatype\":\"FP32\",\"name\":\"x\",\"shape\":[2]}]");
    tap_hash_json(h, j);
    assert_true(ex.gen.has_prompt_hash);
    assert_true(ex.gen.prompt_hash == XXH3_64bits_digest(h));
    cJSON_Delete(j);
    XXH3_freeState(h);
    tap_gen_cleanup(&ex.gen);

    /* another model name, same inputs: another hash */
    tap_t_request(&ex, "/v2/models/clf2/versions/1/infer",
                  "{\"inputs\":[{\"name\":\"x\",\"shape\":[2],\"datatype\":\"FP32\","
                  "\"data\":[1,0.5]}]}");
    assert_string_equal(ex.gen.model, "clf2");
    assert_true(ex.gen.prompt_hash != a);
    tap_gen_cleanup(&ex.gen);
}


/* Parameters: same values, any spelling, same params hash; extras count. */
static void
tap_t_params(void **state)
{
    tap_exchange_t  ex;
    uint64_t        a;

    (void) state;

    tap_t_request(&ex, "/api/generate",
                  "{\"model\":\"m\",\"prompt\":\"x\",\"options\":{\"temperature\":1,\"seed\":2}}");
    a = ex.gen.params_hash;
    tap_gen_cleanup(&ex.gen);
    tap_t_request(&ex, "/api/generate",
                  "{\"options\":{\"seed\":2.0,\"temperature\":1.0},\"prompt\":\"y\",\"model\":\"m\"}");
    assert_true(ex.gen.params_hash == a);
    tap_gen_cleanup(&ex.gen);
    tap_t_request(&ex, "/api/generate",
                  "{\"model\":\"m\",\"prompt\":\"x\",\"options\":{\"temperature\":1,\"seed\":2,"
                  "\"stop\":[\"\\n\"]}}");
    assert_true(ex.gen.params_hash != a);
    tap_gen_cleanup(&ex.gen);

    tap_t_request(&ex, "/generate",
                  "{\"inputs\":\"x\",\"parameters\":{\"temperature\":1,\"seed\":2}}");
    assert_true(ex.gen.params_hash == a);   /* same parameters, another protocol */
    tap_gen_cleanup(&ex.gen);
    tap_t_request(&ex, "/completion", "{\"prompt\":\"x\",\"temperature\":1,\"seed\":2}");
    assert_true(ex.gen.params_hash == a);
    tap_gen_cleanup(&ex.gen);
}


/* Bodies of a shape the filters do not expect are marked, never crash. */
static void
tap_t_unexpected(void **state)
{
    static const struct {
        const char       *path;
        const char       *body;
        tap_gen_parse_e   want;
    } u[] = {
        { "/api/chat", "{\"model\":\"m\",\"messages\":\"hi\"}", TAP_GEN_PARSE_UNEXPECTED },
        { "/api/chat", "{\"model\":\"m\",\"messages\":[1]}", TAP_GEN_PARSE_UNEXPECTED },
        { "/api/chat", "{\"model\":\"m\",\"messages\":[],\"options\":3}",
          TAP_GEN_PARSE_UNEXPECTED },
        { "/api/chat", "[1,2]", TAP_GEN_PARSE_UNEXPECTED },
        { "/api/chat", "\"x\"", TAP_GEN_PARSE_UNEXPECTED },
        { "/api/generate", "{\"model\":\"m\",\"prompt\":{}}", TAP_GEN_PARSE_UNEXPECTED },
        { "/api/generate", "{\"model\":\"m\"}", TAP_GEN_PARSE_OK },
        { "/api/embed", "{\"model\":\"m\"}", TAP_GEN_PARSE_UNEXPECTED },
        { "/generate", "{\"inputs\":3}", TAP_GEN_PARSE_UNEXPECTED },
        { "/generate", "{\"inputs\":\"x\",\"parameters\":[]}", TAP_GEN_PARSE_UNEXPECTED },
        { "/generate_stream", "{}", TAP_GEN_PARSE_UNEXPECTED },
        { "/completion", "{}", TAP_GEN_PARSE_UNEXPECTED },
        { "/completion", "{\"prompt\":[1,\"a\"]}", TAP_GEN_PARSE_UNEXPECTED },
        { "/completion", "{\"prompt\":[[1,2],[3]]}", TAP_GEN_PARSE_OK },
        { "/v2/models/m/infer", "{}", TAP_GEN_PARSE_UNEXPECTED },
        { "/v2/models/m/infer", "{\"inputs\":{}}", TAP_GEN_PARSE_UNEXPECTED },
        { "/v2/models/m/infer", "{\"inputs\":[]}", TAP_GEN_PARSE_OK },
        { "/api/chat", "{not json", TAP_GEN_PARSE_NOT_JSON },
    };
    tap_exchange_t  ex;
    size_t          i;

    (void) state;

    for (i = 0; i < sizeof(u) / sizeof(u[0]); i++) {
        tap_t_request(&ex, u[i].path, u[i].body);
        if (ex.gen.req_parse != u[i].want) {
            fail_msg("%s %s: req_parse %d, want %d", u[i].path, u[i].body,
                     (int) ex.gen.req_parse, (int) u[i].want);
        }
        tap_gen_cleanup(&ex.gen);
    }
}


int
main(void)
{
    struct CMUnitTest  tests[TAP_T_NCASES + 5];
    tap_fconf_t        fc;
    char              *filters[] = { "openai, ollama, tgi, llamacpp, kserve" };
    char              *err = NULL;
    size_t             i;
    int                rc;

    if (tap_fconf_build(&fc, filters, 1, NULL, 0, NULL, 0, TAP_T_CAPTURE, 0, &err) != TAP_OK) {
        fprintf(stderr, "tap_fconf_build: %s\n", err != NULL ? err : "?");
        free(err);
        return 1;
    }
    tap_t_fc = &fc;

    for (i = 0; i < TAP_T_NCASES; i++) {
        tests[i] = (struct CMUnitTest) {
            tap_t_cases[i].name, tap_t_case, NULL, NULL, (void *) &tap_t_cases[i]
        };
    }
    tests[i++] = (struct CMUnitTest) cmocka_unit_test(tap_t_lenient_framing);
    tests[i++] = (struct CMUnitTest) cmocka_unit_test(tap_t_match);
    tests[i++] = (struct CMUnitTest) cmocka_unit_test(tap_t_prompt_hash);
    tests[i++] = (struct CMUnitTest) cmocka_unit_test(tap_t_params);
    tests[i++] = (struct CMUnitTest) cmocka_unit_test(tap_t_unexpected);

    tap_json_init();
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    tap_fconf_cleanup(&fc);
    return rc;
}
