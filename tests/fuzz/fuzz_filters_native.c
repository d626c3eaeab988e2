/*
 * fuzz_filters_native.c: libFuzzer harness for the native protocol filters
 * (filters/ollama.c, tgi.c, llamacpp.c, kserve.c) run through the chain
 * (src/filter.c).
 *
 * Input: byte 0 picks the endpoint and response content type (low 4 bits,
 * tap_fuzz_targets[]) and the piece size (high 4 bits + 1); bytes 1-2 are a
 * big-endian split point: that many of the following bytes (at most what is
 * left) are the request body, the rest the response body.  Each input is run
 * twice, request and response fed whole, then fed in pieces; both runs must
 * leave the same record (all but the clock fields).  Any broken invariant
 * aborts: the filter meant for the path claims it, figures never exceed what
 * the bytes could hold, a completion hash only with text, a logprob minimum
 * only with logprobs.  Leaks are left to LeakSanitizer.
 */

#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap_core.h"
#include "filter.h"

#define TAP_FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)

typedef struct tap_fuzz_target_s {
    const char  *path;
    const char  *ctype;
    const char  *provider;
} tap_fuzz_target_t;

/* What two runs over the same bytes must agree on. */
typedef struct tap_fuzz_rec_s {
    char               model[TAP_GEN_STR];
    char               response_model[TAP_GEN_STR];
    char               response_id[TAP_GEN_STR];
    char               finish[TAP_GEN_MAX_CHOICES][24];
    char               error[64];
    int                stream;
    unsigned           nchoices;
    int64_t            prompt_tokens, completion_tokens, cached_tokens;
    uint64_t           token_events, counted_tokens, completion_chars, lp_count;
    uint64_t           prompt_hash, params_hash, completion_hash;
    unsigned           has_prompt_hash, has_completion_hash;
    double             lp_sum, score;
    tap_gen_parse_e    req_parse, resp_parse;
} tap_fuzz_rec_t;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const tap_fuzz_target_t  tap_fuzz_targets[16] = {
    { "/api/chat", "application/x-ndjson", "ollama" },
    { "/api/chat", "application/json", "ollama" },
    { "/api/generate", "application/x-ndjson", "ollama" },
    { "/api/generate", "application/json", "ollama" },
    { "/api/embed", "application/json", "ollama" },
    { "/api/embeddings", "application/json", "ollama" },
    { "/generate", "application/json", "tgi" },
    { "/generate_stream", "text/event-stream", "tgi" },
    { "/generate_stream", "application/json", "tgi" },
    { "/generate", "text/event-stream", "tgi" },
    { "/completion", "text/event-stream", "llamacpp" },
    { "/completion", "application/json", "llamacpp" },
    { "/completions", "text/event-stream", "llamacpp" },
    { "/v2/models/m/infer", "application/json", "kserve" },
    { "/v2/models/m/versions/2/infer", "application/json", "kserve" },
    { "/v2/models/m/infer", "text/event-stream", "kserve" },
};


static void
tap_fuzz_feed(tap_fx_t *fx, const uint8_t *p, size_t len, size_t piece, int response)
{
    size_t  off, n;

    for (off = 0; off < len; off += n) {
        n = len - off < piece ? len - off : piece;
        if (response) {
            tap_fx_response_data(fx, (const char *) p + off, n, NULL, NULL);
        } else {
            tap_fx_request_data(fx, (const char *) p + off, n);
        }
    }
}


static void
tap_fuzz_run(const tap_fconf_t *fc, const tap_fuzz_target_t *t, const uint8_t *req,
    size_t req_len, const uint8_t *resp, size_t resp_len, size_t piece, tap_fuzz_rec_t *r)
{
    tap_exchange_t  ex;
    tap_gen_t      *g = &ex.gen;
    tap_fx_t       *fx;

    tap_exchange_init(&ex);
    fx = tap_fx_begin(fc, &ex, "POST", t->path, strlen(t->path));
    TAP_FUZZ_CHECK(fx != NULL);
    TAP_FUZZ_CHECK(g->provider != NULL && strcmp(g->provider, t->provider) == 0);

    tap_fuzz_feed(fx, req, req_len, piece, 0);
    TAP_FUZZ_CHECK(tap_fx_request_end(fx, NULL, 0) == 0);
    tap_fx_response_head(fx, 200, t->ctype, strlen(t->ctype), 0, 0);
    tap_fuzz_feed(fx, resp, resp_len, piece, 1);
    tap_fx_complete(fx, 0, NULL, NULL);
    tap_fx_free(fx);

    /* every figure is bounded by the bytes it came from */
    TAP_FUZZ_CHECK(g->completion_chars <= resp_len);
    TAP_FUZZ_CHECK(g->token_events <= resp_len);
    TAP_FUZZ_CHECK(g->counted_tokens <= resp_len);
    TAP_FUZZ_CHECK(g->lp_count <= g->counted_tokens);
    TAP_FUZZ_CHECK(!g->has_completion_hash || g->nchoices > 0);
    TAP_FUZZ_CHECK(g->lp_count > 0 || isnan(g->lp_min));
    TAP_FUZZ_CHECK(g->nchoices <= TAP_GEN_MAX_CHOICES);
    TAP_FUZZ_CHECK(g->model[TAP_GEN_STR - 1] == '\0');
    TAP_FUZZ_CHECK(g->stream == TAP_GEN_UNSET || g->stream == 0 || g->stream == 1);
    TAP_FUZZ_CHECK(strcmp(t->provider, "kserve") != 0 || g->completion_chars == 0);

    memset(r, 0, sizeof(*r));
    memcpy(r->model, g->model, sizeof(r->model));
    memcpy(r->response_model, g->response_model, sizeof(r->response_model));
    memcpy(r->response_id, g->response_id, sizeof(r->response_id));
    memcpy(r->finish, g->finish_reasons, sizeof(r->finish));
    memcpy(r->error, g->error_type, sizeof(r->error));
    r->stream = g->stream;
    r->nchoices = g->nchoices;
    r->prompt_tokens = g->prompt_tokens;
    r->completion_tokens = g->completion_tokens;
    r->cached_tokens = g->cached_tokens;
    r->token_events = g->token_events;
    r->counted_tokens = g->counted_tokens;
    r->completion_chars = g->completion_chars;
    r->lp_count = g->lp_count;
    r->prompt_hash = g->prompt_hash;
    r->params_hash = g->params_hash;
    r->completion_hash = g->completion_hash;
    r->has_prompt_hash = g->has_prompt_hash;
    r->has_completion_hash = g->has_completion_hash;
    r->lp_sum = g->lp_sum;
    r->score = g->score;
    r->req_parse = g->req_parse;
    r->resp_parse = g->resp_parse;

    tap_gen_cleanup(g);
}


/* Equal, NaN equal to NaN (memcmp would do, but not across padding). */
static int
tap_fuzz_same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const tap_fuzz_target_t  *t;
    tap_fuzz_rec_t            a, b;
    tap_fconf_t               fc;
    char                      list[] = "openai,ollama,tgi,llamacpp,kserve";
    char                     *filters[1] = { list };
    char                     *err = NULL;
    size_t                    split, piece;

    tap_json_init();

    if (size < 3) {
        return 0;
    }
    t = &tap_fuzz_targets[data[0] & 0x0f];
    piece = (size_t) (data[0] >> 4) + 1;
    split = ((size_t) data[1] << 8) | data[2];
    data += 3;
    size -= 3;
    if (split > size) {
        split = size;
    }

    if (tap_fconf_build(&fc, filters, 1, NULL, 0, NULL, 0, 1 << 16, 0, &err) != TAP_OK) {
        abort();
    }

    tap_fuzz_run(&fc, t, data, split, data + split, size - split, SIZE_MAX, &a);
    tap_fuzz_run(&fc, t, data, split, data + split, size - split, piece, &b);

    TAP_FUZZ_CHECK(memcmp(a.model, b.model, sizeof(a.model)) == 0);
    TAP_FUZZ_CHECK(memcmp(a.response_model, b.response_model, sizeof(a.response_model)) == 0);
    TAP_FUZZ_CHECK(memcmp(a.response_id, b.response_id, sizeof(a.response_id)) == 0);
    TAP_FUZZ_CHECK(memcmp(a.finish, b.finish, sizeof(a.finish)) == 0);
    TAP_FUZZ_CHECK(memcmp(a.error, b.error, sizeof(a.error)) == 0);
    TAP_FUZZ_CHECK(a.stream == b.stream && a.nchoices == b.nchoices);
    TAP_FUZZ_CHECK(a.prompt_tokens == b.prompt_tokens);
    TAP_FUZZ_CHECK(a.completion_tokens == b.completion_tokens);
    TAP_FUZZ_CHECK(a.cached_tokens == b.cached_tokens);
    TAP_FUZZ_CHECK(a.token_events == b.token_events && a.counted_tokens == b.counted_tokens);
    TAP_FUZZ_CHECK(a.completion_chars == b.completion_chars && a.lp_count == b.lp_count);
    TAP_FUZZ_CHECK(a.prompt_hash == b.prompt_hash && a.params_hash == b.params_hash);
    TAP_FUZZ_CHECK(a.completion_hash == b.completion_hash);
    TAP_FUZZ_CHECK(a.has_prompt_hash == b.has_prompt_hash);
    TAP_FUZZ_CHECK(a.has_completion_hash == b.has_completion_hash);
    TAP_FUZZ_CHECK(tap_fuzz_same_double(a.lp_sum, b.lp_sum));
    TAP_FUZZ_CHECK(tap_fuzz_same_double(a.score, b.score));
    TAP_FUZZ_CHECK(a.req_parse == b.req_parse && a.resp_parse == b.resp_parse);

    tap_fconf_cleanup(&fc);
    return 0;
}
