/*
 * openai.c: the OpenAI-compatible API as vLLM serves it: chat completions,
 * legacy completions, embeddings and the model list.
 *
 * Requests are validated with jansson; responses are written by hand into
 * the worker's scratch builder because they are on the benchmark path.
 * Streams follow vLLM: a role chunk, one chunk per token, a chunk carrying
 * finish_reason, an optional usage chunk, then "data: [DONE]".
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "gen.h"
#include "job.h"

static void tap_sim_chat_full(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_chat_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i,
    const tap_sim_tok_t *t);
static void tap_sim_chat_tail(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_cmpl_full(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_cmpl_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i,
    const tap_sim_tok_t *t);
static void tap_sim_cmpl_tail(tap_sim_job_t *j, tap_sim_sb_t *sb);
static void tap_sim_sse_broken(tap_sim_job_t *j, tap_sim_sb_t *sb);
static unsigned tap_sim_openai_shows(const tap_sim_job_t *j);

static const tap_sim_api_t  tap_sim_chat_api = {
    .name = "openai_chat",
    .finish_stop = "stop",
    .finish_length = "length",
    .stream_ctype = "text/event-stream",
    .full = tap_sim_chat_full,
    .token = tap_sim_chat_token,
    .tail = tap_sim_chat_tail,
    .broken = tap_sim_sse_broken,
    .shows = tap_sim_openai_shows,
};

static const tap_sim_api_t  tap_sim_cmpl_api = {
    .name = "openai_completions",
    .finish_stop = "stop",
    .finish_length = "length",
    .stream_ctype = "text/event-stream",
    .full = tap_sim_cmpl_full,
    .token = tap_sim_cmpl_token,
    .tail = tap_sim_cmpl_tail,
    .broken = tap_sim_sse_broken,
    .shows = tap_sim_openai_shows,
};


/* Both formats always carry finish_reason; logprobs only when asked for. */
static unsigned
tap_sim_openai_shows(const tap_sim_job_t *j)
{
    return TAP_SIM_SHOWS_FINISH | (j->top_n >= 0 ? TAP_SIM_SHOWS_LOGPROBS : 0);
}


static void
tap_sim_sse_broken(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_addf(sb, "data: {\"id\":\"%s\",\"choices\":[{\"delta\":{\"content\":\n\n", j->id);
}


static const char *
tap_sim_finish(const tap_sim_job_t *j)
{
    return j->finish_length ? "\"length\"" : "\"stop\"";
}


static void
tap_sim_usage(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, "\"usage\":{\"prompt_tokens\":");
    tap_sim_sb_add_u64(sb, j->prompt_tokens);
    tap_sim_sb_adds(sb, ",\"completion_tokens\":");
    tap_sim_sb_add_u64(sb, j->ntok);
    tap_sim_sb_adds(sb, ",\"total_tokens\":");
    tap_sim_sb_add_u64(sb, (unsigned long long) j->prompt_tokens + j->ntok);
    tap_sim_sb_addc(sb, '}');
}


/* {"id":"PREFIX<hex>","object":"OBJ","created":T,"model":M, */
static void
tap_sim_obj_head(tap_sim_job_t *j, tap_sim_sb_t *sb, const char *prefix, const char *obj)
{
    tap_sim_sb_adds(sb, "{\"id\":\"");
    tap_sim_sb_adds(sb, prefix);
    tap_sim_sb_adds(sb, j->id);
    tap_sim_sb_adds(sb, "\",\"object\":\"");
    tap_sim_sb_adds(sb, obj);
    tap_sim_sb_adds(sb, "\",\"created\":");
    tap_sim_sb_add_i64(sb, j->created);
    tap_sim_sb_adds(sb, ",\"model\":");
    tap_sim_add_model(sb, j);
    tap_sim_sb_addc(sb, ',');
}


static void
tap_sim_tok_entry(tap_sim_sb_t *sb, const char *text, size_t len, double lp, int bytes)
{
    tap_sim_sb_adds(sb, "{\"token\":");
    tap_sim_sb_add_jstr(sb, text, len);
    tap_sim_sb_adds(sb, ",\"logprob\":");
    tap_sim_sb_add_lp(sb, lp);
    if (bytes) {
        tap_sim_sb_adds(sb, ",\"bytes\":");
        tap_sim_sb_add_bytes_array(sb, text, len);
    }
}


/* One chat logprobs "content" entry for token i, top alternatives included. */
static void
tap_sim_chat_lp(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t)
{
    tap_sim_tok_t  alt;
    char           buf[64];
    size_t         n;
    int            k;

    n = (size_t) (i > 0) + t->len;
    buf[0] = ' ';
    memcpy(buf + (i > 0), t->text, t->len);
    tap_sim_tok_entry(sb, buf, n, t->logprob, 1);
    tap_sim_sb_adds(sb, ",\"top_logprobs\":[");
    for (k = 0; k < j->top_n; k++) {
        if (k > 0) {
            tap_sim_sb_addc(sb, ',');
        }
        if (k == 0) {
            tap_sim_tok_entry(sb, buf, n, t->logprob, 1);

        } else {
            tap_sim_gen_alt(&j->gen, i, t, (unsigned) k, &alt);
            n = (size_t) (i > 0) + alt.len;
            memcpy(buf + (i > 0), alt.text, alt.len);
            tap_sim_tok_entry(sb, buf, n, alt.logprob, 1);
            n = (size_t) (i > 0) + t->len;
            memcpy(buf + (i > 0), t->text, t->len);
        }
        tap_sim_sb_addc(sb, '}');
    }
    tap_sim_sb_adds(sb, "]}");
}


static void
tap_sim_chat_full(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_tok_t  t;
    unsigned       i;

    tap_sim_obj_head(j, sb, "chatcmpl-", "chat.completion");
    tap_sim_sb_adds(sb, "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                    "\"content\":\"");
    tap_sim_job_text(j, sb);
    tap_sim_sb_adds(sb, "\"},\"logprobs\":");
    if (j->top_n < 0) {
        tap_sim_sb_adds(sb, "null");

    } else {
        tap_sim_sb_adds(sb, "{\"content\":[");
        for (i = 0; i < j->ntok; i++) {
            if (i > 0) {
                tap_sim_sb_addc(sb, ',');
            }
            tap_sim_gen_token(&j->gen, i, &t);
            tap_sim_chat_lp(j, sb, i, &t);
        }
        tap_sim_sb_adds(sb, "]}");
    }
    tap_sim_sb_adds(sb, ",\"finish_reason\":");
    tap_sim_sb_adds(sb, tap_sim_finish(j));
    tap_sim_sb_adds(sb, "}],");
    tap_sim_usage(j, sb);
    tap_sim_sb_addc(sb, '}');
}


static void
tap_sim_chat_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t)
{
    if (i == 0) {
        tap_sim_sb_adds(sb, "data: ");
        tap_sim_obj_head(j, sb, "chatcmpl-", "chat.completion.chunk");
        tap_sim_sb_adds(sb, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                        "\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    }

    tap_sim_sb_adds(sb, "data: ");
    tap_sim_obj_head(j, sb, "chatcmpl-", "chat.completion.chunk");
    tap_sim_sb_adds(sb, "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
    tap_sim_tok_text(sb, i, t);
    tap_sim_sb_adds(sb, "\"},\"logprobs\":");
    if (j->top_n < 0) {
        tap_sim_sb_adds(sb, "null");
    } else {
        tap_sim_sb_adds(sb, "{\"content\":[");
        tap_sim_chat_lp(j, sb, i, t);
        tap_sim_sb_adds(sb, "]}");
    }
    tap_sim_sb_adds(sb, ",\"finish_reason\":null}]}\n\n");
}


static void
tap_sim_chat_tail(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, "data: ");
    tap_sim_obj_head(j, sb, "chatcmpl-", "chat.completion.chunk");
    tap_sim_sb_adds(sb, "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,"
                    "\"finish_reason\":");
    tap_sim_sb_adds(sb, tap_sim_finish(j));
    tap_sim_sb_adds(sb, "}]}\n\n");
    if (j->include_usage) {
        tap_sim_sb_adds(sb, "data: ");
        tap_sim_obj_head(j, sb, "chatcmpl-", "chat.completion.chunk");
        tap_sim_sb_adds(sb, "\"choices\":[],");
        tap_sim_usage(j, sb);
        tap_sim_sb_adds(sb, "}\n\n");
    }
    tap_sim_sb_adds(sb, "data: [DONE]\n\n");
}


/* Legacy logprobs for tokens [from, to): text offsets start at *offset. */
static void
tap_sim_cmpl_lp(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned from, unsigned to,
    size_t offset)
{
    tap_sim_tok_t  t, alt;
    char           buf[64];
    unsigned       i;
    int            k, n;

    tap_sim_sb_adds(sb, "{\"tokens\":[");
    for (i = from; i < to; i++) {
        tap_sim_gen_token(&j->gen, i, &t);
        if (i > from) {
            tap_sim_sb_addc(sb, ',');
        }
        buf[0] = ' ';
        memcpy(buf + (i > 0), t.text, t.len);
        tap_sim_sb_add_jstr(sb, buf, t.len + (i > 0));
    }
    tap_sim_sb_adds(sb, "],\"token_logprobs\":[");
    for (i = from; i < to; i++) {
        tap_sim_gen_token(&j->gen, i, &t);
        if (i > from) {
            tap_sim_sb_addc(sb, ',');
        }
        tap_sim_sb_add_lp(sb, t.logprob);
    }
    tap_sim_sb_adds(sb, "],\"top_logprobs\":[");
    n = TAP_MAX(j->top_n, 1);
    for (i = from; i < to; i++) {
        tap_sim_gen_token(&j->gen, i, &t);
        tap_sim_sb_adds(sb, i > from ? ",{" : "{");
        for (k = 0; k < n; k++) {
            if (k == 0) {
                alt = t;
            } else {
                tap_sim_gen_alt(&j->gen, i, &t, (unsigned) k, &alt);
                tap_sim_sb_addc(sb, ',');
            }
            buf[0] = ' ';
            memcpy(buf + (i > 0), alt.text, alt.len);
            tap_sim_sb_add_jstr(sb, buf, alt.len + (i > 0));
            tap_sim_sb_addc(sb, ':');
            tap_sim_sb_add_lp(sb, alt.logprob);
        }
        tap_sim_sb_addc(sb, '}');
    }
    tap_sim_sb_adds(sb, "],\"text_offset\":[");
    for (i = from; i < to; i++) {
        tap_sim_gen_token(&j->gen, i, &t);
        if (i > from) {
            tap_sim_sb_addc(sb, ',');
        }
        tap_sim_sb_add_u64(sb, offset);
        offset += t.len + (i > 0);
    }
    tap_sim_sb_adds(sb, "]}");
}


static void
tap_sim_cmpl_full(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_obj_head(j, sb, "cmpl-", "text_completion");
    tap_sim_sb_adds(sb, "\"choices\":[{\"index\":0,\"text\":\"");
    tap_sim_job_text(j, sb);
    tap_sim_sb_adds(sb, "\",\"logprobs\":");
    if (j->top_n < 0) {
        tap_sim_sb_adds(sb, "null");
    } else {
        tap_sim_cmpl_lp(j, sb, 0, j->ntok, 0);
    }
    tap_sim_sb_adds(sb, ",\"finish_reason\":");
    tap_sim_sb_adds(sb, tap_sim_finish(j));
    tap_sim_sb_adds(sb, "}],");
    tap_sim_usage(j, sb);
    tap_sim_sb_addc(sb, '}');
}


static void
tap_sim_cmpl_token(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t)
{
    tap_sim_tok_t  p;
    size_t         offset;
    unsigned       k;

    tap_sim_sb_adds(sb, "data: ");
    tap_sim_obj_head(j, sb, "cmpl-", "text_completion");
    tap_sim_sb_adds(sb, "\"choices\":[{\"index\":0,\"text\":\"");
    tap_sim_tok_text(sb, i, t);
    tap_sim_sb_adds(sb, "\",\"logprobs\":");
    if (j->top_n < 0) {
        tap_sim_sb_adds(sb, "null");
    } else {
        offset = 0;
        for (k = 0; k < i; k++) {
            tap_sim_gen_token(&j->gen, k, &p);
            offset += p.len + (k > 0);
        }
        tap_sim_cmpl_lp(j, sb, i, i + 1, offset);
    }
    tap_sim_sb_adds(sb, ",\"finish_reason\":null}]}\n\n");
}


static void
tap_sim_cmpl_tail(tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_sb_adds(sb, "data: ");
    tap_sim_obj_head(j, sb, "cmpl-", "text_completion");
    tap_sim_sb_adds(sb, "\"choices\":[{\"index\":0,\"text\":\"\",\"logprobs\":null,"
                    "\"finish_reason\":");
    tap_sim_sb_adds(sb, tap_sim_finish(j));
    tap_sim_sb_adds(sb, "}]}\n\n");
    if (j->include_usage) {
        tap_sim_sb_adds(sb, "data: ");
        tap_sim_obj_head(j, sb, "cmpl-", "text_completion");
        tap_sim_sb_adds(sb, "\"choices\":[],");
        tap_sim_usage(j, sb);
        tap_sim_sb_adds(sb, "}\n\n");
    }
    tap_sim_sb_adds(sb, "data: [DONE]\n\n");
}


/* Parameters common to chat and completions. */
static int
tap_sim_openai_common(tap_sim_req_t *r, json_t *root, tap_sim_params_t *p)
{
    json_t     *so;
    long long   n, mt;
    int         b;

    if (tap_sim_opt_str(r, root, "model", &p->model, &p->model_len) != TAP_OK) {
        return TAP_ERROR;
    }

    n = 1;
    if (tap_sim_opt_int(r, root, "n", 1, 1, &n) != TAP_OK) {
        return TAP_ERROR;
    }

    mt = -1;
    if (tap_sim_opt_int(r, root, "max_tokens", 1, 1LL << 40, &mt) != TAP_OK
        || tap_sim_opt_int(r, root, "max_completion_tokens", 1, 1LL << 40, &mt) != TAP_OK)
    {
        return TAP_ERROR;
    }
    p->max_tokens = mt;

    if (tap_sim_opt_int(r, root, "seed", -(1LL << 62), 1LL << 62, &p->seed) != TAP_OK
        || tap_sim_opt_num(r, root, "temperature", 0, 2, &p->temperature) != TAP_OK)
    {
        return TAP_ERROR;
    }
    p->has_seed = json_is_integer(json_object_get(root, "seed"));

    b = 0;
    if (tap_sim_opt_bool(r, root, "stream", &b) != TAP_OK) {
        return TAP_ERROR;
    }
    p->stream = b;

    so = NULL;
    b = 0;
    if (tap_sim_opt_obj(r, root, "stream_options", &so) != TAP_OK
        || (so != NULL && tap_sim_opt_bool(r, so, "include_usage", &b) != TAP_OK))
    {
        return TAP_ERROR;
    }
    p->include_usage = b;

    return TAP_OK;
}


/* "role\ncontent\n" per message; words of contents plus one per message. */
int
tap_sim_chat_prompt(tap_sim_req_t *r, json_t *msgs, tap_sim_sb_t *sb, unsigned *words)
{
    json_t      *m, *role, *content, *part, *text;
    size_t       i, k, start;

    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        tap_sim_bad(r, "'messages' must be a non-empty array");
        return TAP_ERROR;
    }

    json_array_foreach(msgs, i, m) {
        role = json_object_get(m, "role");
        if (!json_is_object(m) || !json_is_string(role)) {
            tap_sim_bad(r, "messages[%zu] must be an object with a string 'role'", i);
            return TAP_ERROR;
        }

        tap_sim_sb_add(sb, json_string_value(role), json_string_length(role));
        tap_sim_sb_addc(sb, '\n');
        *words += 1;

        content = json_object_get(m, "content");
        start = sb->len;
        if (json_is_string(content)) {
            tap_sim_sb_add(sb, json_string_value(content), json_string_length(content));

        } else if (json_is_array(content)) {
            json_array_foreach(content, k, part) {
                text = json_object_get(part, "text");
                if (!json_is_object(part) || !json_is_string(json_object_get(part, "type"))) {
                    tap_sim_bad(r, "messages[%zu].content[%zu] must be an object with 'type'",
                                i, k);
                    return TAP_ERROR;
                }
                if (json_is_string(text)) {
                    if (sb->len > start) {
                        tap_sim_sb_addc(sb, '\n');
                    }
                    tap_sim_sb_add(sb, json_string_value(text), json_string_length(text));
                }
            }

        } else if (content != NULL && !json_is_null(content)) {
            tap_sim_bad(r, "messages[%zu].content must be a string or an array", i);
            return TAP_ERROR;
        }

        *words += tap_sim_count_words(sb->p + start, sb->len - start);
        tap_sim_sb_addc(sb, '\n');
    }

    return TAP_OK;
}


void
tap_sim_openai_chat(tap_sim_req_t *r)
{
    tap_sim_params_t   p;
    tap_sim_sb_t      *sb = &r->w->prompt;
    json_t            *root;
    long long          top;
    int                lp;

    root = tap_sim_body_json(r);
    if (root == NULL) {
        return;
    }

    tap_sim_params_init(&p, &tap_sim_chat_api);
    tap_sim_sb_reset(sb);
    if (!json_object_get(root, "messages")) {
        tap_sim_bad(r, "'messages' is required");
        goto done;
    }
    if (tap_sim_chat_prompt(r, json_object_get(root, "messages"), sb, &p.prompt_tokens)
        != TAP_OK || tap_sim_openai_common(r, root, &p) != TAP_OK)
    {
        goto done;
    }

    lp = 0;
    top = 0;
    if (tap_sim_opt_bool(r, root, "logprobs", &lp) != TAP_OK
        || tap_sim_opt_int(r, root, "top_logprobs", 0, TAP_SIM_TOP_MAX, &top) != TAP_OK)
    {
        goto done;
    }
    p.top_n = lp ? (int) top : -1;
    p.prompt = sb->p;
    p.prompt_len = sb->len;
    tap_sim_job_start(r, &p);

done:

    json_decref(root);
}


void
tap_sim_openai_completions(tap_sim_req_t *r)
{
    tap_sim_params_t   p;
    tap_sim_sb_t      *sb = &r->w->prompt;
    json_t            *root, *prompt;
    long long          lp;

    root = tap_sim_body_json(r);
    if (root == NULL) {
        return;
    }

    tap_sim_params_init(&p, &tap_sim_cmpl_api);
    tap_sim_sb_reset(sb);
    prompt = json_object_get(root, "prompt");
    if (prompt == NULL) {
        tap_sim_bad(r, "'prompt' is required");
        goto done;
    }
    if (tap_sim_prompt_value(r, prompt, "prompt", sb, &p.prompt_tokens) != TAP_OK
        || tap_sim_openai_common(r, root, &p) != TAP_OK)
    {
        goto done;
    }

    lp = -1;
    if (tap_sim_opt_int(r, root, "logprobs", 0, TAP_SIM_TOP_MAX, &lp) != TAP_OK) {
        goto done;
    }
    p.top_n = (int) lp;
    p.prompt = sb->p;
    p.prompt_len = sb->len;
    tap_sim_job_start(r, &p);

done:

    json_decref(root);
}


void
tap_sim_openai_embeddings(tap_sim_req_t *r)
{
    tap_sim_sb_t       *sb = &r->w->sb, *ps = &r->w->prompt;
    tap_sim_outcome_t   o;
    const char         *model;
    size_t              model_len, i, n;
    json_t             *root, *input, *e;
    float               v[TAP_SIM_EMBED_DIM];
    unsigned            words, k;
    uint64_t            seed;
    int                 fail, drift, nondet, single;

    root = tap_sim_body_json(r);
    if (root == NULL) {
        return;
    }

    model = r->w->shared->conf->model;
    model_len = r->w->shared->model_len;
    input = json_object_get(root, "input");
    if (input == NULL) {
        tap_sim_bad(r, "'input' is required");
        goto done;
    }
    if (tap_sim_opt_str(r, root, "model", &model, &model_len) != TAP_OK) {
        goto done;
    }
    if (!json_is_string(input) && (!json_is_array(input) || json_array_size(input) == 0)) {
        tap_sim_bad(r, "'input' must be a string or a non-empty array");
        goto done;
    }

    /* an array of token ids is one input; otherwise each element is one */
    single = json_is_string(input) || json_is_integer(json_array_get(input, 0));
    n = single ? 1 : json_array_size(input);

    tap_sim_job_next_index(r->w->shared, &fail, &drift, &nondet);
    seed = tap_sim_mix64(r->w->shared->conf->seed);
    words = 0;
    tap_sim_sb_reset(sb);
    tap_sim_sb_adds(sb, "{\"object\":\"list\",\"data\":[");
    for (i = 0; i < n; i++) {
        e = single ? input : json_array_get(input, i);
        tap_sim_sb_reset(ps);
        if (tap_sim_prompt_value(r, e, "input", ps, &words) != TAP_OK) {
            goto done;
        }
        tap_sim_embed(tap_sim_hash(ps->p, ps->len) ^ seed, v);
        tap_sim_sb_adds(sb, i > 0 ? ",{" : "{");
        tap_sim_sb_adds(sb, "\"object\":\"embedding\",\"index\":");
        tap_sim_sb_add_u64(sb, i);
        tap_sim_sb_adds(sb, ",\"embedding\":[");
        for (k = 0; k < TAP_SIM_EMBED_DIM; k++) {
            if (k > 0) {
                tap_sim_sb_addc(sb, ',');
            }
            tap_sim_sb_add_lp(sb, v[k]);
        }
        tap_sim_sb_adds(sb, "]}");
    }
    tap_sim_sb_adds(sb, "],\"model\":");
    tap_sim_sb_add_jstr(sb, model, model_len);
    tap_sim_sb_adds(sb, ",\"usage\":{\"prompt_tokens\":");
    tap_sim_sb_add_u64(sb, words);
    tap_sim_sb_adds(sb, ",\"total_tokens\":");
    tap_sim_sb_add_u64(sb, words);
    tap_sim_sb_adds(sb, "}}");
    atomic_fetch_add(&r->w->shared->prompt_tokens, words);

    memset(&o, 0, sizeof(o));
    o.api = "openai_embeddings";
    o.model = model;
    o.model_len = model_len;
    o.prompt_tokens = words;
    o.n = (unsigned) n;
    tap_sim_job_simple(r, fail, sb, &o);

done:

    json_decref(root);
}


void
tap_sim_openai_models(tap_sim_req_t *r)
{
    tap_sim_shared_t  *sh = r->w->shared;
    tap_sim_sb_t      *sb = &r->w->sb;

    tap_sim_sb_reset(sb);
    tap_sim_sb_adds(sb, "{\"object\":\"list\",\"data\":[{\"id\":");
    tap_sim_sb_add_jstr(sb, sh->conf->model, sh->model_len);
    tap_sim_sb_adds(sb, ",\"object\":\"model\",\"created\":");
    tap_sim_sb_add_i64(sb, sh->started);
    tap_sim_sb_adds(sb, ",\"owned_by\":\"infertap-sim\",\"root\":");
    tap_sim_sb_add_jstr(sb, sh->conf->model, sh->model_len);
    tap_sim_sb_adds(sb, ",\"parent\":null}]}");
    tap_sim_req_json(r, 200, sb);
    tap_sim_req_finish(r);
}
