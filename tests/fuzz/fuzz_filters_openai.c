/*
 * fuzz_filters_openai.c: libFuzzer harness for the openai filter
 * (filters/openai.c) run through the chain (src/filter.c): the request
 * extractor, usage injection, the response extractor and the removal of the
 * usage event.
 *
 * Input: byte 0 picks the endpoint (low 2 bits), whether the body is held so
 * usage may be injected (bit 2), the response framing (bit 3) and the piece
 * size (high 4 bits + 1); bytes 1-2 are a big-endian split point: that many
 * of the following bytes are the request body, the rest the response body.
 * Each input runs twice, fed whole and in pieces; both runs must give the
 * same record and hand the client the same bytes.  An injected body must
 * still be JSON with stream_options.include_usage true, and when no event
 * was removed the client must get exactly the upstream's bytes.  A third
 * run reads every stream chunk as a tree (tap_openai_reader off): the chunk
 * reader must leave the same record as the tree.
 */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap_core.h"
#include "filter.h"
#include "filters/filters.h"

#define TAP_FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)

typedef struct {
    char      *out;
    size_t     len, cap;
} tap_fuzz_out_t;

typedef struct {
    int64_t    pt, ct;
    uint64_t   prompt, params, completion, lp_count, events;
    unsigned   has_completion;
    int        req_parse, resp_parse, injected;
    uint64_t   chars, counted;
    unsigned   nchoices;
    char       model[TAP_GEN_STR];
    char       response_id[TAP_GEN_STR];
    char       response_model[TAP_GEN_STR];
    char       finish[TAP_GEN_MAX_CHOICES][24];
    char       error[64];
} tap_fuzz_rec_t;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char  *tap_fuzz_paths[4] = {
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/openai/v1/chat/completions",
};

static tap_fconf_t  tap_fuzz_fc;
static int          tap_fuzz_ready;


static void
tap_fuzz_write(void *ctx, const char *p, size_t len)
{
    tap_fuzz_out_t  *o = ctx;

    if (len == 0) {
        return;
    }
    if (o->len + len > o->cap) {
        o->cap = (o->len + len) * 2;
        o->out = realloc(o->out, o->cap);
        TAP_FUZZ_CHECK(o->out != NULL);
    }
    memcpy(o->out + o->len, p, len);
    o->len += len;
}


static void
tap_fuzz_run(const uint8_t *data, size_t size, unsigned sel, size_t split, size_t piece,
    tap_fuzz_rec_t *rec, tap_fuzz_out_t *o)
{
    tap_exchange_t   ex;
    tap_fx_t        *fx;
    const char      *path = tap_fuzz_paths[sel & 3];
    const char      *req = (const char *) data, *resp = (const char *) data + split;
    size_t           rlen = size - split, off, n;
    cJSON           *j;

    tap_exchange_init(&ex);
    ex.t_req = 1;
    fx = tap_fx_begin(&tap_fuzz_fc, &ex, "POST", path, strlen(path));
    TAP_FUZZ_CHECK(fx != NULL);
    TAP_FUZZ_CHECK(strcmp(ex.gen.provider, "openai") == 0);

    if ((sel & 4) && fx->want_hold) {
        fx->can_rewrite = 1;
        if (tap_fx_request_end(fx, req, split)) {
            /* the injected body is JSON asking for usage */
            j = tap_json_parse(fx->new_body, fx->new_len);
            TAP_FUZZ_CHECK(j != NULL);
            TAP_FUZZ_CHECK(cJSON_IsTrue(tap_json_get(tap_json_get(j, "stream_options"),
                "include_usage")));
            cJSON_Delete(j);
        }
    } else {
        for (off = 0; off < split; off += n) {
            n = TAP_MIN(piece, split - off);
            tap_fx_request_data(fx, req + off, n);
        }
        TAP_FUZZ_CHECK(tap_fx_request_end(fx, NULL, 0) == 0);
    }

    tap_fx_response_head(fx, 200, (sel & 8) ? "text/event-stream" : "application/json",
        (sel & 8) ? 17 : 16, 0, 1);
    for (off = 0; off < rlen; off += n) {
        n = TAP_MIN(piece, rlen - off);
        tap_fx_response_data(fx, resp + off, n, fx->strip ? tap_fuzz_write : NULL, o);
    }
    rec->injected = fx->usage_injected;
    tap_fx_complete(fx, 0, tap_fuzz_write, o);
    if (!fx->strip) {
        tap_fuzz_write(o, resp, rlen);     /* the proxy forwards these itself */
    }

    rec->pt = ex.gen.prompt_tokens;
    rec->ct = ex.gen.completion_tokens;
    rec->prompt = ex.gen.prompt_hash;
    rec->params = ex.gen.params_hash;
    rec->completion = ex.gen.completion_hash;
    rec->has_completion = ex.gen.has_completion_hash;
    rec->lp_count = ex.gen.lp_count;
    rec->events = ex.gen.token_events;
    rec->req_parse = ex.gen.req_parse;
    rec->resp_parse = ex.gen.resp_parse;
    rec->chars = ex.gen.completion_chars;
    rec->counted = ex.gen.counted_tokens;
    rec->nchoices = ex.gen.nchoices;
    memcpy(rec->model, ex.gen.model, sizeof(rec->model));
    memcpy(rec->response_id, ex.gen.response_id, sizeof(rec->response_id));
    memcpy(rec->response_model, ex.gen.response_model, sizeof(rec->response_model));
    memcpy(rec->finish, ex.gen.finish_reasons, sizeof(rec->finish));
    memcpy(rec->error, ex.gen.error_type, sizeof(rec->error));
    TAP_FUZZ_CHECK(o->len <= rlen);
    tap_fx_free(fx);
    tap_gen_cleanup(&ex.gen);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tap_fuzz_rec_t  a, b, c;
    tap_fuzz_out_t  oa = { 0 }, ob = { 0 }, oc = { 0 };
    char           *filters = "openai";
    char           *err = NULL;
    unsigned        sel;
    size_t          split, piece;

    tap_json_init();

    if (!tap_fuzz_ready) {
        TAP_FUZZ_CHECK(tap_fconf_build(&tap_fuzz_fc, &filters, 1, NULL, 0, NULL, 0, 1 << 16, 1,
            &err) == TAP_OK);
        tap_fuzz_ready = 1;
    }
    if (size < 3) {
        return 0;
    }
    sel = data[0];
    piece = (sel >> 4) + 1;
    split = ((size_t) data[1] << 8) | data[2];
    data += 3;
    size -= 3;
    split = TAP_MIN(split, size);

    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    memset(&c, 0, sizeof(c));
    tap_fuzz_run(data, size, sel, split, size + 1, &a, &oa);
    tap_fuzz_run(data, size, sel, split, piece, &b, &ob);
    tap_openai_reader = 0;
    tap_fuzz_run(data, size, sel, split, size + 1, &c, &oc);
    tap_openai_reader = 1;

    TAP_FUZZ_CHECK(memcmp(&a, &b, sizeof(a)) == 0);
    TAP_FUZZ_CHECK(memcmp(&a, &c, sizeof(a)) == 0);
    TAP_FUZZ_CHECK(oa.len == ob.len && (oa.len == 0 || memcmp(oa.out, ob.out, oa.len) == 0));
    TAP_FUZZ_CHECK(oa.len == oc.len && (oa.len == 0 || memcmp(oa.out, oc.out, oa.len) == 0));
    if (!a.injected || oa.len == size - split) {
        TAP_FUZZ_CHECK(oa.len == size - split
                       && (oa.len == 0 || memcmp(oa.out, data + split, oa.len) == 0));
    }
    free(oa.out);
    free(ob.out);
    free(oc.out);
    return 0;
}
