/*
 * test_filters_openai.c: the filter chain (src/filter.c) with the openai
 * filter (filters/openai.c).
 *
 * Recorded-shape requests and responses of chat completions, completions
 * and embeddings, plain and streamed (vLLM's and OpenAI's shapes: role
 * chunk, content deltas, logprobs, finish chunk, usage chunk, [DONE]), each
 * fed whole, byte by byte and in random splits: every way gives the same
 * record.  The stream's completion hash equals the plain answer's.
 * Usage injection edits the request body byte for byte, and removing the
 * usage event leaves exactly the bytes of every other event, whatever the
 * splits and line endings.  Output is TAP (CMOCKA_MESSAGE_OUTPUT=TAP).
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

#include "filter.h"
#include "filters/filters.h"
#include "genai/json-simd.h"

#define TAP_T_SPLITS  150

#define TAP_T_CHAT_REQ \
    "{\"model\":\"sim-model\",\"stream\":true,\"max_tokens\":3,\"temperature\":0," \
    "\"logprobs\":true,\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"}," \
    "{\"role\":\"user\",\"content\":\"Name a colour\"}]}"

#define TAP_T_CHUNK(delta, lp, fin) \
    "data: {\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\",\"created\":1," \
    "\"model\":\"sim-model\",\"choices\":[{\"index\":0,\"delta\":" delta ",\"logprobs\":" lp \
    ",\"finish_reason\":" fin "}]}\n\n"

#define TAP_T_USAGE \
    "data: {\"id\":\"chatcmpl-7\",\"object\":\"chat.completion.chunk\",\"created\":1," \
    "\"model\":\"sim-model\",\"choices\":[],\"usage\":{\"prompt_tokens\":12," \
    "\"completion_tokens\":3,\"total_tokens\":15," \
    "\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n"

static const char  tap_t_chat_stream_body[] =
    TAP_T_CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null", "null")
    ": keep-alive\n\n"
    TAP_T_CHUNK("{\"content\":\"Deep\"}",
        "{\"content\":[{\"token\":\"Deep\",\"logprob\":-0.1,\"top_logprobs\":[]}]}", "null")
    TAP_T_CHUNK("{\"content\":\" sea\"}",
        "{\"content\":[{\"token\":\" sea\",\"logprob\":-0.2,\"top_logprobs\":[]}]}", "null")
    TAP_T_CHUNK("{\"content\":\" blue\"}",
        "{\"content\":[{\"token\":\" blue\",\"logprob\":-0.3,\"top_logprobs\":[]}]}", "null")
    TAP_T_CHUNK("{}", "null", "\"length\"");
static const char  tap_t_usage_body[] = TAP_T_USAGE;
static const char  tap_t_done_body[] = "data: [DONE]\n\n";

static const char  tap_t_chat_plain[] =
    "{\"id\":\"chatcmpl-8\",\"object\":\"chat.completion\",\"created\":1,\"model\":\"sim-model\","
    "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Deep sea blue\"},"
    "\"logprobs\":{\"content\":[{\"token\":\"Deep\",\"logprob\":-0.1},{\"token\":\" sea\","
    "\"logprob\":-0.2},{\"token\":\" blue\",\"logprob\":-0.3}]},\"finish_reason\":\"length\"}],"
    "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}";

/* what one run through the chain gave */
typedef struct {
    char      model[TAP_GEN_STR];
    char      rmodel[TAP_GEN_STR];
    char      rid[TAP_GEN_STR];
    char      finish[64];
    char      error[64];
    int64_t   pt, ct, cached;
    int       estimated, stream;
    uint64_t  prompt, params, completion;
    unsigned  has_completion:1;
    double    mean, min, ppl;
    uint64_t  lp_count;
    uint64_t  events, chars;
    int       resp_parse, req_parse;
    char     *out;                     /* bytes handed to the client (strip) */
    size_t    out_len;
} tap_t_result_t;

static tap_fconf_t  tap_t_fc;


static int
tap_t_setup(void **state)
{
    char  *filters = "openai,ollama,tgi,llamacpp,kserve";
    char  *err = NULL;

    TAP_UNUSED(state);
    assert_int_equal(tap_fconf_build(&tap_t_fc, &filters, 1, NULL, 0, NULL, 0, 1 << 20, 1, &err),
        TAP_OK);
    return 0;
}


static int
tap_t_teardown(void **state)
{
    TAP_UNUSED(state);
    tap_fconf_cleanup(&tap_t_fc);
    return 0;
}


static void
tap_t_out(void *ctx, const char *p, size_t len)
{
    tap_t_result_t  *r = ctx;

    r->out = realloc(r->out, r->out_len + len + 1);
    assert_non_null(r->out);
    memcpy(r->out + r->out_len, p, len);
    r->out_len += len;
    r->out[r->out_len] = '\0';
}


/* Piece lengths: 0 = whole, 1 = byte by byte, else random with seed. */
static size_t
tap_t_piece(unsigned mode, unsigned *seed, size_t left)
{
    if (mode == 0) {
        return left;
    }
    if (mode == 1) {
        return 1;
    }
    *seed = *seed * 1103515245u + 12345u;
    return TAP_MIN(left, 1 + (*seed >> 16) % 97);
}


/*
 * One exchange through the chain: path, request body (held when held != 0,
 * so that usage may be injected), response content type and body.
 */
static void
tap_t_run(tap_t_result_t *r, const char *path, const char *req, int held, const char *ctype,
    const char *resp, size_t resp_len, unsigned mode, unsigned seed)
{
    tap_exchange_t  ex;
    tap_fx_t       *fx;
    size_t          off, n, rlen = strlen(req);
    double          mean, min, ppl;

    memset(r, 0, sizeof(*r));
    tap_exchange_init(&ex);
    ex.t0 = 1;
    ex.t_req = 2;
    fx = tap_fx_begin(&tap_t_fc, &ex, "POST", path, strlen(path));
    assert_non_null(fx);
    if (held) {
        assert_true(fx->want_hold);
        fx->can_rewrite = 1;
        tap_fx_request_end(fx, req, rlen);
    } else {
        for (off = 0; off < rlen; off += n) {
            n = tap_t_piece(mode, &seed, rlen - off);
            tap_fx_request_data(fx, req + off, n);
        }
        assert_int_equal(tap_fx_request_end(fx, NULL, 0), 0);
    }
    tap_fx_response_head(fx, 200, ctype, strlen(ctype), 0, 1);
    for (off = 0; off < resp_len; off += n) {
        n = tap_t_piece(mode, &seed, resp_len - off);
        tap_fx_response_data(fx, resp + off, n, fx->strip ? tap_t_out : NULL, r);
    }
    tap_fx_complete(fx, 0, tap_t_out, r);

    snprintf(r->model, sizeof(r->model), "%s", ex.gen.model);
    snprintf(r->rmodel, sizeof(r->rmodel), "%s", ex.gen.response_model);
    snprintf(r->rid, sizeof(r->rid), "%s", ex.gen.response_id);
    snprintf(r->error, sizeof(r->error), "%s", ex.gen.error_type);
    if (tap_gen_finish_reasons(&ex.gen, r->finish, sizeof(r->finish)) == NULL) {
        r->finish[0] = '\0';
    }
    r->pt = ex.gen.prompt_tokens;
    r->ct = ex.gen.completion_tokens;
    r->cached = ex.gen.cached_tokens;
    r->estimated = ex.gen.tokens_estimated;
    r->stream = ex.gen.stream;
    r->prompt = ex.gen.prompt_hash;
    r->params = ex.gen.params_hash;
    r->completion = ex.gen.completion_hash;
    r->has_completion = ex.gen.has_completion_hash;
    r->lp_count = ex.gen.lp_count;
    if (tap_gen_confidence(&ex.gen, &mean, &min, &ppl)) {
        r->mean = mean;
        r->min = min;
        r->ppl = ppl;
    }
    r->events = ex.gen.token_events;
    r->chars = ex.gen.completion_chars;
    r->resp_parse = ex.gen.resp_parse;
    r->req_parse = ex.gen.req_parse;
    tap_fx_free(fx);
    tap_gen_cleanup(&ex.gen);
}


static void
tap_t_same(const tap_t_result_t *a, const tap_t_result_t *b)
{
    assert_string_equal(a->model, b->model);
    assert_string_equal(a->rmodel, b->rmodel);
    assert_string_equal(a->rid, b->rid);
    assert_string_equal(a->finish, b->finish);
    assert_string_equal(a->error, b->error);
    assert_int_equal(a->pt, b->pt);
    assert_int_equal(a->ct, b->ct);
    assert_int_equal(a->cached, b->cached);
    assert_int_equal(a->estimated, b->estimated);
    assert_int_equal(a->prompt, b->prompt);
    assert_int_equal(a->params, b->params);
    assert_int_equal(a->completion, b->completion);
    assert_int_equal(a->lp_count, b->lp_count);
    assert_true(a->mean == b->mean && a->min == b->min);
    assert_int_equal(a->events, b->events);
    assert_int_equal(a->chars, b->chars);
    assert_int_equal(a->resp_parse, b->resp_parse);
    assert_int_equal(a->out_len, b->out_len);
    if (a->out_len > 0) {
        assert_memory_equal(a->out, b->out, a->out_len);
    }
}


/* Runs a case in every split mode and checks they all agree with the whole run. */
static void
tap_t_all_splits(tap_t_result_t *whole, const char *path, const char *req, int held,
    const char *ctype, const char *resp)
{
    tap_t_result_t  r;
    unsigned        i;

    tap_t_run(whole, path, req, held, ctype, resp, strlen(resp), 0, 0);
    tap_t_run(&r, path, req, held, ctype, resp, strlen(resp), 1, 0);
    tap_t_same(whole, &r);
    free(r.out);
    for (i = 0; i < TAP_T_SPLITS; i++) {
        tap_t_run(&r, path, req, held, ctype, resp, strlen(resp), 2, i + 1);
        tap_t_same(whole, &r);
        free(r.out);
    }
}


static char *
tap_t_concat(const char *a, const char *b, const char *c)
{
    size_t  la = strlen(a), lb = strlen(b), lc = strlen(c);
    char   *s = malloc(la + lb + lc + 1);

    assert_non_null(s);
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc + 1);
    return s;
}


static void
test_chat_stream(void **state)
{
    tap_t_result_t  r;
    char           *resp;

    TAP_UNUSED(state);
    resp = tap_t_concat(tap_t_chat_stream_body, tap_t_usage_body, tap_t_done_body);
    tap_t_all_splits(&r, "/v1/chat/completions", TAP_T_CHAT_REQ, 0, "text/event-stream", resp);

    assert_string_equal(r.model, "sim-model");
    assert_string_equal(r.rmodel, "sim-model");
    assert_string_equal(r.rid, "chatcmpl-7");
    assert_string_equal(r.finish, "length");
    assert_int_equal(r.stream, 1);
    assert_int_equal(r.pt, 12);
    assert_int_equal(r.ct, 3);
    assert_int_equal(r.cached, 8);
    assert_int_equal(r.estimated, 0);
    assert_true(r.has_completion);
    assert_int_equal(r.completion, XXH3_64bits("Deep sea blue", 13));
    assert_int_equal(r.lp_count, 3);
    assert_true(fabs(r.mean - -0.2) < 1e-12);
    assert_true(fabs(r.min - -0.3) < 1e-12);
    assert_true(fabs(r.ppl - exp(0.2)) < 1e-12);
    assert_int_equal(r.events, 3);
    assert_int_equal(r.resp_parse, TAP_GEN_PARSE_OK);
    assert_int_equal(r.req_parse, TAP_GEN_PARSE_OK);
    free(resp);
}


static void
test_chat_plain_equals_stream(void **state)
{
    tap_t_result_t  s, p;
    char           *resp, *req;

    TAP_UNUSED(state);
    resp = tap_t_concat(tap_t_chat_stream_body, tap_t_usage_body, tap_t_done_body);
    tap_t_run(&s, "/v1/chat/completions", TAP_T_CHAT_REQ, 0, "text/event-stream", resp,
        strlen(resp), 0, 0);
    /* the same request without "stream": same prompt and params hashes */
    req = strdup(TAP_T_CHAT_REQ);
    memcpy(strstr(req, "\"stream\":true"), "\"stream\":   0", 13);
    tap_t_all_splits(&p, "/v1/chat/completions", req, 0, "application/json", tap_t_chat_plain);

    assert_int_equal(p.stream, 0);
    assert_int_equal(p.prompt, s.prompt);
    assert_int_equal(p.params, s.params);
    assert_int_equal(p.completion, s.completion);
    assert_int_equal(p.ct, 3);
    assert_int_equal(p.pt, 12);
    assert_true(fabs(p.mean - s.mean) < 1e-12);
    assert_int_equal(p.events, 0);
    assert_string_equal(p.finish, "length");
    free(resp);
    free(req);
}


static void
test_prompt_hash_key_order_and_escapes(void **state)
{
    tap_t_result_t  a, b, c;
    const char     *r1 = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xc3\xa9 /x\"}]}";
    const char     *r2 = "{ \"messages\" : [ { \"content\" : \"caf\\u00e9 \\/x\", \"role\" : "
                         "\"\\u0075ser\" } ], \"model\" : \"m\" }";
    const char     *r3 = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"cafe /x\"}]}";

    TAP_UNUSED(state);
    tap_t_run(&a, "/v1/chat/completions", r1, 0, "application/json", "{}", 2, 0, 0);
    tap_t_run(&b, "/v1/chat/completions", r2, 0, "application/json", "{}", 2, 0, 0);
    tap_t_run(&c, "/v1/chat/completions", r3, 0, "application/json", "{}", 2, 0, 0);
    assert_int_equal(a.prompt, b.prompt);
    assert_int_not_equal(a.prompt, c.prompt);
}


static void
test_completions(void **state)
{
    tap_t_result_t  r, p;
    const char     *req = "{\"model\":\"m\",\"prompt\":\"Once\",\"max_tokens\":2,\"logprobs\":1,"
                          "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    const char     *resp =
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":"
        "[{\"index\":0,\"text\":\"upon\",\"logprobs\":{\"tokens\":[\"upon\"],"
        "\"token_logprobs\":[-0.5],\"top_logprobs\":[{\"upon\":-0.5}]},\"finish_reason\":null}]}"
        "\r\n\r\n"
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":"
        "[{\"index\":0,\"text\":\" a\",\"logprobs\":{\"tokens\":[\" a\"],"
        "\"token_logprobs\":[-1.5],\"top_logprobs\":[{\" a\":-1.5}]},\"finish_reason\":\"length\"}]}"
        "\r\n\r\n"
        "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[],"
        "\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\r\n\r\n"
        "data: [DONE]\r\n\r\n";
    const char     *plain =
        "{\"id\":\"cmpl-2\",\"object\":\"text_completion\",\"model\":\"m\",\"choices\":[{\"index\":0,"
        "\"text\":\"upon a\",\"logprobs\":{\"tokens\":[\"upon\",\" a\"],\"token_logprobs\":"
        "[-0.5,-1.5]},\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":1,"
        "\"completion_tokens\":2,\"total_tokens\":3}}";

    TAP_UNUSED(state);
    tap_t_all_splits(&r, "/v1/completions", req, 0, "text/event-stream; charset=utf-8", resp);
    assert_int_equal(r.ct, 2);
    assert_int_equal(r.pt, 1);
    assert_int_equal(r.completion, XXH3_64bits("upon a", 6));
    assert_int_equal(r.lp_count, 2);
    assert_true(fabs(r.mean - -1.0) < 1e-12);
    assert_true(fabs(r.ppl - exp(1.0)) < 1e-12);
    assert_string_equal(r.finish, "length");

    tap_t_all_splits(&p, "/v1/completions", req, 0, "application/json", plain);
    assert_int_equal(p.completion, r.completion);
    assert_true(fabs(p.mean - r.mean) < 1e-12);
}


static void
test_embeddings(void **state)
{
    tap_t_result_t  r;
    const char     *req = "{\"model\":\"e\",\"input\":[\"a\",\"b\"]}";
    const char     *resp = "{\"object\":\"list\",\"data\":[{\"object\":\"embedding\",\"index\":0,"
                           "\"embedding\":[0.1]}],\"model\":\"e\",\"usage\":{\"prompt_tokens\":2,"
                           "\"total_tokens\":2}}";

    TAP_UNUSED(state);
    tap_t_all_splits(&r, "/v1/embeddings", req, 0, "application/json", resp);
    assert_int_equal(r.pt, 2);
    assert_int_equal(r.stream, 0);
    assert_false(r.has_completion);
    assert_string_equal(r.model, "e");
}


static void
test_error_mid_stream(void **state)
{
    tap_t_result_t  r;
    const char     *resp =
        TAP_T_CHUNK("{\"content\":\"Deep\"}", "null", "null")
        "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":503}}\n\n";

    TAP_UNUSED(state);
    tap_t_all_splits(&r, "/v1/chat/completions", TAP_T_CHAT_REQ, 0, "text/event-stream", resp);
    assert_string_equal(r.error, "server_error");
    assert_int_equal(r.completion, XXH3_64bits("Deep", 4));
    assert_int_equal(r.ct, 1);
    assert_int_equal(r.estimated, 1);     /* no usage: one event, prompt estimated */
}


static void
test_cut_stream(void **state)
{
    tap_t_result_t  r;
    char           *resp;

    TAP_UNUSED(state);
    resp = strdup(tap_t_chat_stream_body);
    resp[strlen(resp) - 40] = '\0';       /* in the middle of the finish chunk */
    tap_t_all_splits(&r, "/v1/chat/completions", TAP_T_CHAT_REQ, 0, "text/event-stream", resp);
    assert_int_equal(r.resp_parse, TAP_GEN_PARSE_CUT);
    assert_int_equal(r.completion, XXH3_64bits("Deep sea blue", 13));
    assert_int_equal(r.ct, 3);            /* from logprob entries */
    assert_int_equal(r.estimated, 1);     /* the prompt is estimated */
    assert_string_equal(r.finish, "");
    free(resp);
}


static void
test_not_json(void **state)
{
    tap_t_result_t  r;

    TAP_UNUSED(state);
    tap_t_run(&r, "/v1/chat/completions", "{\"model\":", 0, "application/json", "<html>", 6, 0, 0);
    assert_int_equal(r.req_parse, TAP_GEN_PARSE_NOT_JSON);
    assert_int_equal(r.resp_parse, TAP_GEN_PARSE_NOT_JSON);
    assert_string_equal(r.model, "");
}


/* --- usage injection ------------------------------------------------------------------------ */


static void
test_inject_usage_bytes(void **state)
{
    static const struct {
        const char  *in;
        const char  *out;
    } cases[] = {
        { "{\"stream\":true}",
          "{\"stream_options\":{\"include_usage\":true},\"stream\":true}" },
        { "  {\n  \"model\" : \"m\", \"stream\": true }\n",
          "  {\"stream_options\":{\"include_usage\":true},\n  \"model\" : \"m\", \"stream\": true }\n" },
        { "{\"stream\":true,\"stream_options\":{}}",
          "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}" },
        { "{\"stream\":true,\"stream_options\":{ }}",
          "{\"stream\":true,\"stream_options\":{\"include_usage\":true }}" },
        { "{\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":false}}",
          "{\"stream\":true,\"stream_options\":{\"include_usage\":true,"
          "\"continuous_usage_stats\":false}}" },
        { "{\"stream\":true,\"stream_options\":{\"include_usage\":false}}",
          "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}" },
        { "{\"stream\":true,\"stream_options\":{\"include_usage\" :  false , \"x\":[1,{\"}\":2}]}}",
          "{\"stream\":true,\"stream_options\":{\"include_usage\" :  true , \"x\":[1,{\"}\":2}]}}" },
        { "{\"stream\":true,\"stream_options\":null}",
          "{\"stream\":true,\"stream_options\":{\"include_usage\":true}}" },
        { "{\"stream\":true,\"stream\\u005foptions\":{\"include\\u005fusage\":null}}",
          "{\"stream\":true,\"stream\\u005foptions\":{\"include\\u005fusage\":true}}" },
        { "{\"messages\":[{\"content\":\"\\\"stream_options\\\": {}\"}],\"stream\":true}",
          "{\"stream_options\":{\"include_usage\":true},\"messages\":[{\"content\":"
          "\"\\\"stream_options\\\": {}\"}],\"stream\":true}" },
    };
    size_t   i, n;
    char    *o;

    TAP_UNUSED(state);
    for (i = 0; i < TAP_NELEMS(cases); i++) {
        o = tap_openai_inject_usage(cases[i].in, strlen(cases[i].in), &n);
        assert_non_null(o);
        assert_int_equal(n, strlen(cases[i].out));
        assert_memory_equal(o, cases[i].out, n);
        free(o);
    }
    assert_null(tap_openai_inject_usage("[1]", 3, &n));
}


static void
test_inject_and_strip(void **state)
{
    tap_t_result_t  r, plain;
    char           *resp, *want;

    TAP_UNUSED(state);
    /* the client did not ask for usage: the body gets it, the usage event goes */
    resp = tap_t_concat(tap_t_chat_stream_body, tap_t_usage_body, tap_t_done_body);
    want = tap_t_concat(tap_t_chat_stream_body, "", tap_t_done_body);
    tap_t_all_splits(&r, "/v1/chat/completions", TAP_T_CHAT_REQ, 1, "text/event-stream", resp);
    assert_int_equal(r.out_len, strlen(want));
    assert_memory_equal(r.out, want, r.out_len);
    assert_int_equal(r.pt, 12);
    assert_int_equal(r.ct, 3);
    assert_int_equal(r.estimated, 0);
    free(r.out);

    /* a client that asked for usage keeps the event */
    tap_t_run(&plain, "/v1/chat/completions",
        "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"messages\":[]}", 1, "text/event-stream", resp, strlen(resp), 0, 0);
    assert_int_equal(plain.out_len, 0);   /* nothing stripped: the proxy forwards itself */
    free(resp);
    free(want);
}


static void
test_strip_crlf_and_comments(void **state)
{
    tap_t_result_t  r;
    const char     *resp =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\r\n\r\n"
        ": ping\r\n\r\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\r\n\r\n"
        ": ping\r\n\r\n"
        "data: [DONE]\r\n\r\n";
    const char     *want =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\r\n\r\n"
        ": ping\r\n\r\n"
        ": ping\r\n\r\n"
        "data: [DONE]\r\n\r\n";

    TAP_UNUSED(state);
    tap_t_all_splits(&r, "/v1/chat/completions", TAP_T_CHAT_REQ, 1, "text/event-stream", resp);
    assert_int_equal(r.out_len, strlen(want));
    assert_memory_equal(r.out, want, r.out_len);
    assert_int_equal(r.ct, 1);
    free(r.out);
}


static void
test_strip_cut_stream_keeps_bytes(void **state)
{
    tap_t_result_t  r;
    const char     *resp =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"cont";

    TAP_UNUSED(state);
    tap_t_all_splits(&r, "/v1/chat/completions", TAP_T_CHAT_REQ, 1, "text/event-stream", resp);
    assert_int_equal(r.out_len, strlen(resp));
    assert_memory_equal(r.out, resp, r.out_len);
    assert_int_equal(r.resp_parse, TAP_GEN_PARSE_CUT);
    free(r.out);
}


/*
 * Stream chunks read without a tree (tap_json_chunk()): each one it takes
 * (1) or leaves to the tree (0), and either way the record is the one the
 * tree gives, in a stream, in a stream with usage injected (the usage-only
 * chunk removed) and as a whole answer.  Names and strings end at their
 * first U+0000 and the first of duplicate members counts, as in the tree.
 */
static const struct {
    int          take;
    const char  *json;
} tap_t_chunks[] = {
    { 1, "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\","
         "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"logprobs\":null,"
         "\"finish_reason\":null}]}" },
    { 1, "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":\"hmm\"}}]}" },
    { 1, "{\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":7,\"reasoning\":\"ok\"}}]}" },
    { 1, "{\"choices\":[{\"index\":0,\"text\":\"ab\",\"finish_reason\":\"stop\"}]}" },
    { 1, "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"b\"},\"finish_reason\":\"length\"},"
         "{\"index\":0,\"delta\":{\"content\":\"a\"},\"finish_reason\":\"stop\"}]}" },
    { 1, "{\"choices\":[{\"index\":2.5,\"delta\":{\"content\":\"x\"}},{\"index\":-1,\"delta\":"
         "{\"content\":\"y\"}},{\"index\":\"1\",\"delta\":{\"content\":\"z\"}},"
         "{\"index\":1e300,\"finish_reason\":\"stop\"},{\"index\":3.0,\"finish_reason\":\"eos\"}]}" },
    { 1, "{\"id\":7,\"id\":\"second\",\"choices\":[{\"delta\":{\"content\":\"a\",\"content\":\"b\"},"
         "\"delta\":{\"content\":\"c\"}}],\"choices\":[{\"delta\":{\"content\":\"d\"}}]}" },
    { 1, "{\"id\":\"a\\u0000b\",\"model\":\"m\\u0000\",\"choices\":[{\"delta\":{\"cont\\u0000x\":\"z\","
         "\"content\":\"x\\u0000y\"},\"finish\\u0000_reason\":\"q\"}]}" },
    { 1, "{\"choices\":[1,null,[2],{\"delta\":{\"content\":\"q\"}}]}" },
    { 1, "{\"error\":null,\"usage\":null,\"choices\":[{\"delta\":{\"content\":\"\",\"tool_calls\":{}},"
         "\"logprobs\":[1]}]}" },
    { 1, "{\"choices\":[{\"delta\":\"x\",\"text\":\"t\"},{\"delta\":null,\"text\":5}]}" },
    { 1, "{\"choices\":{\"0\":{\"delta\":{\"content\":\"x\"}}},\"model\":[\"m\"]}" },
    { 1, " {\"choices\":[]} " },
    { 0, "{\"choices\":[{\"delta\":{\"content\":\"a\"},\"logprobs\":{\"content\":"
         "[{\"token\":\"a\",\"logprob\":-0.5}]}}]}" },
    { 1, "{\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}" },
    { 1, "{\"id\":\"u\",\"choices\":[{\"index\":0,\"message\":{\"content\":\"m\"},\"delta\":"
         "{\"content\":\"d\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,"
         "\"completion_tokens\":3,\"prompt_tokens_details\":{\"cached_tokens\":8}}}" },
    { 1, "{\"usage\":{\"prompt_tokens\":2.5,\"completion_tokens\":\"3\",\"prompt_tokens_details\":"
         "[1],\"prompt_tokens_details\":{\"cached_tokens\":4}},\"usage\":{\"prompt_tokens\":9}}" },
    { 1, "{\"usage\":{\"prompt_tokens\":1e300,\"completion_tokens\":-0.0,\"prompt_tokens_details\":"
         "{\"cached_tokens\":9007199254740993,\"cached_tokens\":1}},\"choices\":[]}" },
    { 1, "{\"usage\":[1],\"choices\":[]}" },
    { 0, "{\"error\":{\"type\":\"overloaded\",\"message\":\"busy\"}}" },
    { 0, "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{}\"}}]}}]}" },
    { 0, "{\"choices\":[{},{},{},{},{},{},{},{},{\"delta\":{\"content\":\"ninth\"}}]}" },
    { 0, "[{\"choices\":[]}]" },
    { 0, "{\"choices\":[{\"delta\":{\"content\":\"cut\"}}" },
    { 0, "{\"choices\":[{\"delta\":{\"content\":\"\xff\"}}]}" },
};


/* One exchange run with the chunk reader on and off: both give the same record and bytes. */
static void
tap_t_reader_agrees(int held, const char *ctype, const char *resp)
{
    tap_t_result_t  a, b;

    tap_t_run(&a, "/v1/chat/completions", TAP_T_CHAT_REQ, held, ctype, resp, strlen(resp), 0, 0);
    tap_openai_reader = 0;
    tap_t_run(&b, "/v1/chat/completions", TAP_T_CHAT_REQ, held, ctype, resp, strlen(resp), 0, 0);
    tap_openai_reader = 1;
    tap_t_same(&a, &b);
    free(a.out);
    free(b.out);
}


static void
test_chunk_reader(void **state)
{
    static const char  one[] = "data: {\"id\":\"a\\u0000b\",\"choices\":[{\"index\":1,"
        "\"delta\":{\"content\":\"x\"},\"finish_reason\":\"stop\"}]}\n\n";
    tap_json_chunk_t   k;
    tap_t_result_t     a;
    char               body[1024];
    size_t             i;

    TAP_UNUSED(state);
    for (i = 0; i < sizeof(tap_t_chunks) / sizeof(tap_t_chunks[0]); i++) {
        assert_int_equal(tap_json_chunk(tap_t_chunks[i].json, strlen(tap_t_chunks[i].json),
            "delta", &k) == 0, tap_t_chunks[i].take);
        snprintf(body, sizeof(body), "data: %s\n\ndata: [DONE]\n\n", tap_t_chunks[i].json);
        tap_t_reader_agrees(0, "text/event-stream", body);
        /* the same object as a whole answer, read from its message */
        tap_t_reader_agrees(0, "application/json", tap_t_chunks[i].json);
        /* and as the chunk of a stream that asked for usage */
        tap_t_reader_agrees(1, "text/event-stream", body);
    }

    /* what the reader took, seen through the record */
    tap_t_run(&a, "/v1/chat/completions", TAP_T_CHAT_REQ, 0, "text/event-stream", one,
        strlen(one), 0, 0);
    assert_string_equal(a.rid, "a");
    assert_string_equal(a.finish, "stop");
    assert_int_equal(a.events, 1);
    free(a.out);
}


static void
test_routes(void **state)
{
    tap_fconf_t      fc;
    tap_exchange_t   ex;
    tap_fx_t        *fx;
    char            *filters = "openai";
    char            *routes[] = { "/v1 = ", "/v1/chat = openai" };
    char            *bad[] = { "v1 = openai" };
    char            *err = NULL;

    TAP_UNUSED(state);
    assert_int_equal(tap_fconf_build(&fc, &filters, 1, routes, 2, NULL, 0, 1024, 1, &err),
        TAP_OK);
    tap_exchange_init(&ex);
    fx = tap_fx_begin(&fc, &ex, "POST", "/v1/chat/completions", 20);
    assert_non_null(fx);                  /* the longest prefix wins */
    tap_fx_free(fx);
    assert_null(tap_fx_begin(&fc, &ex, "POST", "/v1/completions", 15));
    assert_null(tap_fx_begin(&fc, &ex, "GET", "/v1/chat/completions", 20));
    tap_fconf_cleanup(&fc);

    assert_int_equal(tap_fconf_build(&fc, &filters, 1, bad, 1, NULL, 0, 1024, 1, &err),
        TAP_ERROR);
    assert_non_null(err);
    free(err);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_chat_stream),
        cmocka_unit_test(test_chat_plain_equals_stream),
        cmocka_unit_test(test_prompt_hash_key_order_and_escapes),
        cmocka_unit_test(test_completions),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_error_mid_stream),
        cmocka_unit_test(test_cut_stream),
        cmocka_unit_test(test_not_json),
        cmocka_unit_test(test_inject_usage_bytes),
        cmocka_unit_test(test_inject_and_strip),
        cmocka_unit_test(test_strip_crlf_and_comments),
        cmocka_unit_test(test_strip_cut_stream_keeps_bytes),
        cmocka_unit_test(test_chunk_reader),
        cmocka_unit_test(test_routes),
    };

    return cmocka_run_group_tests(tests, tap_t_setup, tap_t_teardown);
}
