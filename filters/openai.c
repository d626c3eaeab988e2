/*
 * openai.c: the OpenAI API, as vLLM, llama.cpp's and Ollama's OpenAI
 * endpoints and every OpenAI-compatible server speak it.
 *
 * Endpoints: chat completions, (legacy) completions and embeddings, under
 * /v1/ or any prefix ending in /v1/.  Streams are SSE with one
 * "chat.completion.chunk" (or "text_completion") object per event and a
 * final "[DONE]".
 *
 * Usage injection: a streaming request that did not ask for usage is sent
 * upstream with stream_options.include_usage set, so token counts come from
 * the server; the extra usage-only chunk (empty choices, a usage object) is
 * then removed from what the client receives.  The body is edited in place,
 * byte for byte: everything the client wrote is kept, only the option is
 * inserted or its value replaced.
 */

#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "filters/filters.h"
#include "genai/json-simd.h"

typedef enum {
    TAP_OAI_CHAT = 0,
    TAP_OAI_COMPLETIONS,
    TAP_OAI_EMBEDDINGS,
} tap_oai_op_e;

typedef struct {
    tap_oai_op_e  op;
} tap_oai_t;

typedef struct {
    const char    *suffix;
    size_t         len;
    tap_oai_op_e   op;
    const char    *operation;
} tap_oai_path_t;

static const tap_oai_path_t  tap_oai_paths[] = {
    { "/v1/chat/completions", 20, TAP_OAI_CHAT, "chat" },
    { "/v1/completions", 15, TAP_OAI_COMPLETIONS, "text_completion" },
    { "/v1/embeddings", 14, TAP_OAI_EMBEDDINGS, "embeddings" },
};


/* The endpoint the request's path ends with, or NULL. */
static const tap_oai_path_t *
tap_oai_path(const tap_fx_t *fx)
{
    size_t  i;

    for (i = 0; i < TAP_NELEMS(tap_oai_paths); i++) {
        if (fx->path_len >= tap_oai_paths[i].len
            && memcmp(fx->path + fx->path_len - tap_oai_paths[i].len, tap_oai_paths[i].suffix,
                   tap_oai_paths[i].len) == 0)
        {
            return &tap_oai_paths[i];
        }
    }
    return NULL;
}


static int
tap_oai_match(tap_fx_t *fx)
{
    return strcmp(fx->method, "POST") == 0 && tap_oai_path(fx) != NULL;
}


static void
tap_oai_request_head(tap_fx_t *fx, void *st)
{
    tap_oai_t             *o = st;
    const tap_oai_path_t  *ep = tap_oai_path(fx);

    o->op = ep->op;
    fx->gen->operation = ep->operation;
    fx->gen->provider = "openai";
    fx->want_hold = fx->fc->inject_usage && o->op != TAP_OAI_EMBEDDINGS;
}


/* --- usage injection ------------------------------------------------------------------------ */


static size_t
tap_oai_ws(const char *b, size_t len, size_t i)
{
    while (i < len && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n')) {
        i++;
    }
    return i;
}


/* Skips the string starting at b[i] == '"'; returns the index past it, or 0. */
static size_t
tap_oai_skip_string(const char *b, size_t len, size_t i)
{
    for (i++; i < len; i++) {
        if (b[i] == '\\') {
            i++;
        } else if (b[i] == '"') {
            return i + 1;
        }
    }
    return 0;
}


/* Skips one value (already known to be valid JSON); returns the index past it, or 0. */
static size_t
tap_oai_skip_value(const char *b, size_t len, size_t i)
{
    unsigned  depth = 0;

    do {
        if (i >= len) {
            return 0;
        }
        switch (b[i]) {
        case '"':
            i = tap_oai_skip_string(b, len, i);
            if (i == 0) {
                return 0;
            }
            continue;
        case '{':
        case '[':
            depth++;
            i++;
            continue;
        case '}':
        case ']':
            depth--;
            i++;
            continue;
        default:
            if (depth == 0) {
                while (i < len && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' '
                       && b[i] != '\t' && b[i] != '\r' && b[i] != '\n')
                {
                    i++;
                }
                return i;
            }
            i++;
        }
    } while (depth > 0);
    return i;
}


/*
 * Does the JSON string at b[s, e) (quotes included) decode to name?  Only
 * escapes of ASCII characters can match.
 */
static int
tap_oai_key_is(const char *b, size_t s, size_t e, const char *name)
{
    size_t    i = s + 1, k = 0;
    unsigned  c, d, j;

    while (i < e - 1) {
        c = (unsigned char) b[i++];
        if (c == '\\') {
            if (i >= e - 1) {
                return 0;
            }
            c = (unsigned char) b[i++];
            if (c == 'u') {
                if (i + 4 > e - 1) {
                    return 0;
                }
                for (d = 0, j = 0; j < 4; j++) {
                    c = (unsigned char) b[i + j];
                    d = d * 16 + (c >= '0' && c <= '9' ? c - '0'
                                  : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10
                                  : 256);
                }
                if (d > 0x7f) {
                    return 0;
                }
                c = d;
                i += 4;
            } else if (c != '"' && c != '\\' && c != '/') {
                return 0;
            }
        }
        if (name[k] == '\0' || (unsigned char) name[k] != c) {
            return 0;
        }
        k++;
    }
    return name[k] == '\0';
}


/*
 * Finds member `name` of the object whose '{' is at b[i]: *vs, *ve get its
 * value's span (the last one when repeated).  Returns 1 when found, 0 when
 * not, -1 on a shape it cannot follow.
 */
static int
tap_oai_member(const char *b, size_t len, size_t i, const char *name, size_t *vs, size_t *ve)
{
    size_t  ks, ke, s, e;
    int     found = 0;

    i = tap_oai_ws(b, len, i + 1);
    if (i < len && b[i] == '}') {
        return 0;
    }
    for ( ;; ) {
        if (i >= len || b[i] != '"') {
            return -1;
        }
        ks = i;
        ke = tap_oai_skip_string(b, len, i);
        if (ke == 0) {
            return -1;
        }
        i = tap_oai_ws(b, len, ke);
        if (i >= len || b[i] != ':') {
            return -1;
        }
        s = tap_oai_ws(b, len, i + 1);
        e = tap_oai_skip_value(b, len, s);
        if (e == 0) {
            return -1;
        }
        if (tap_oai_key_is(b, ks, ke, name)) {
            *vs = s;
            *ve = e;
            found = 1;
        }
        i = tap_oai_ws(b, len, e);
        if (i < len && b[i] == ',') {
            i = tap_oai_ws(b, len, i + 1);
            continue;
        }
        if (i < len && b[i] == '}') {
            return found;
        }
        return -1;
    }
}


/* b with [at, at + cut) replaced by ins; malloc'd. */
static char *
tap_oai_splice(const char *b, size_t len, size_t at, size_t cut, const char *ins, size_t *outlen)
{
    size_t  n = strlen(ins);
    char   *o;

    o = malloc(len - cut + n);
    if (o == NULL) {
        return NULL;
    }
    memcpy(o, b, at);
    memcpy(o + at, ins, n);
    memcpy(o + at + n, b + at + cut, len - at - cut);
    *outlen = len - cut + n;
    return o;
}


char *
tap_openai_inject_usage(const char *b, size_t len, size_t *outlen)
{
    size_t  top, vs, ve, us, ue, k;
    int     rc;

    top = tap_oai_ws(b, len, 0);
    if (top >= len || b[top] != '{') {
        return NULL;
    }
    rc = tap_oai_member(b, len, top, "stream_options", &vs, &ve);
    if (rc < 0) {
        return NULL;
    }
    if (rc == 0) {
        return tap_oai_splice(b, len, top + 1, 0, "\"stream_options\":{\"include_usage\":true},",
            outlen);
    }
    if (b[vs] != '{') {
        return tap_oai_splice(b, len, vs, ve - vs, "{\"include_usage\":true}", outlen);
    }
    rc = tap_oai_member(b, len, vs, "include_usage", &us, &ue);
    if (rc < 0) {
        return NULL;
    }
    if (rc == 1) {
        return tap_oai_splice(b, len, us, ue - us, "true", outlen);
    }
    k = tap_oai_ws(b, len, vs + 1);
    return tap_oai_splice(b, len, vs + 1, 0,
        b[k] == '}' ? "\"include_usage\":true" : "\"include_usage\":true,", outlen);
}


/* --- request -------------------------------------------------------------------------------- */


static void
tap_oai_request_body(tap_fx_t *fx, void *st, const char *body, size_t len, cJSON *json)
{
    tap_oai_t  *o = st;
    tap_gen_t  *g = fx->gen;
    cJSON      *v, *so;
    char       *nb;
    size_t      nlen;
    int64_t     i64;
    int         rc = 0;

    if (json == NULL) {
        return;
    }

    tap_gen_copy(g->model, tap_json_get(json, "model"));
    v = tap_json_get(json, "stream");
    g->stream = tap_json_is_true(v) ? 1 : 0;
    so = tap_json_get(json, "stream_options");
    if (g->stream == 1) {
        g->include_usage = tap_json_is_true(tap_json_get(so, "include_usage")) ? 1 : 0;
    }
    if (tap_gen_integer(tap_json_get(json, "max_completion_tokens"), &i64) == 0
        || tap_gen_integer(tap_json_get(json, "max_tokens"), &i64) == 0)
    {
        g->max_tokens = i64;
    }
    tap_gen_number(tap_json_get(json, "temperature"), &g->temperature);
    tap_gen_number(tap_json_get(json, "top_p"), &g->top_p);
    tap_gen_number(tap_json_get(json, "top_k"), &g->top_k);
    tap_gen_number(tap_json_get(json, "frequency_penalty"), &g->frequency_penalty);
    tap_gen_number(tap_json_get(json, "presence_penalty"), &g->presence_penalty);
    tap_gen_integer(tap_json_get(json, "seed"), &g->seed);
    tap_gen_integer(tap_json_get(json, "n"), &g->n);
    v = tap_json_get(json, "logprobs");
    if (tap_json_is_bool(v)) {
        g->logprobs = tap_json_is_true(v);
    } else if (tap_gen_integer(v, &i64) == 0) {
        g->logprobs = 1;                 /* completions: the number of alternatives */
        g->top_logprobs = i64;
    }
    tap_gen_integer(tap_json_get(json, "top_logprobs"), &g->top_logprobs);
    v = tap_json_get(json, "tools");
    if (tap_json_is_array(v)) {
        g->ntools = (unsigned) tap_json_size(v);
    }
    tap_gen_hash_params(g, tap_json_get(json, "stop"));

    switch (o->op) {
    case TAP_OAI_CHAT:
        rc = tap_gen_hash_chat(g, tap_json_get(json, "messages"));
        break;
    case TAP_OAI_COMPLETIONS:
        rc = tap_gen_hash_prompt(g, tap_json_get(json, "prompt"), NULL);
        break;
    case TAP_OAI_EMBEDDINGS:
        g->stream = 0;
        rc = tap_gen_hash_prompt(g, tap_json_get(json, "input"), NULL);
        break;
    }
    if (rc != 0) {
        g->req_parse = TAP_GEN_PARSE_UNEXPECTED;
    }

    if (fx->can_rewrite && g->stream == 1 && g->include_usage == 0) {
        nb = tap_openai_inject_usage(body, len, &nlen);
        if (nb != NULL) {
            tap_fx_replace_body(fx, nb, nlen);
            fx->usage_injected = 1;
        }
    }
}


/* --- response ------------------------------------------------------------------------------- */


/* Adds the logprobs of one choice; returns how many tokens they cover. */
static uint64_t
tap_oai_logprobs(tap_gen_t *g, cJSON *lp)
{
    cJSON     *list, *e;
    size_t     i;
    uint64_t   n = 0;
    double     v;

    list = tap_json_get(lp, "content");          /* chat */
    if (tap_json_is_array(list)) {
        tap_json_foreach(list, i, e) {
            if (tap_gen_number(tap_json_get(e, "logprob"), &v) == 0) {
                tap_gen_logprob(g, v);
                n++;
            }
        }
        return n;
    }
    list = tap_json_get(lp, "token_logprobs");   /* completions */
    if (tap_json_is_array(list)) {
        tap_json_foreach(list, i, e) {
            if (tap_gen_number(e, &v) == 0) {
                tap_gen_logprob(g, v);
                n++;
            }
        }
    }
    return n;
}


/* Text of a choice's tool calls: arguments count as generated tokens. */
static int
tap_oai_tool_text(cJSON *calls)
{
    cJSON   *c, *a;
    size_t   i;

    tap_json_foreach(calls, i, c) {
        a = tap_json_get(tap_json_get(c, "function"), "arguments");
        if (tap_json_is_string(a) && tap_json_strlen(a) > 0) {
            return 1;
        }
    }
    return 0;
}


/* A string member of a tree into *s, as the chunk reader gives it. */
static void
tap_oai_str(cJSON *obj, const char *name, tap_jstr_t *s)
{
    cJSON  *v = tap_json_get(obj, name);

    if (tap_json_is_string(v)) {
        s->s = tap_json_string(v);
        s->len = tap_json_strlen(v);
    }
}


/* A number member of a tree into *n, as the chunk reader gives it. */
static void
tap_oai_num(cJSON *obj, const char *name, tap_jnum_t *n)
{
    cJSON  *v = tap_json_get(obj, name);

    n->set = tap_json_is_number(v);
    n->value = n->set ? v->valuedouble : 0.0;
}


/* A usage object, read by the chunk reader or from a tree: its integer counts. */
static void
tap_oai_usage(tap_gen_t *g, const tap_jnum_t *prompt, const tap_jnum_t *completion,
    const tap_jnum_t *cached)
{
    int64_t  pt = TAP_GEN_UNSET, ct = TAP_GEN_UNSET, ca = TAP_GEN_UNSET;

    if (prompt->set) {
        tap_gen_integer_of(prompt->value, &pt);
    }
    if (completion->set) {
        tap_gen_integer_of(completion->value, &ct);
    }
    if (cached->set) {
        tap_gen_integer_of(cached->value, &ca);
    }
    tap_gen_usage(g, pt, ct, ca);
}


/* A choice of a tree read as the chunk reader reads one; m is its delta (or message). */
static void
tap_oai_choice_read(cJSON *c, cJSON *m, tap_json_choice_t *ch)
{
    cJSON  *v;

    memset(ch, 0, sizeof(*ch));
    if (!tap_json_is_object(c)) {
        return;
    }
    ch->is_object = 1;
    v = tap_json_get(c, "index");
    if (tap_json_is_number(v)) {
        ch->has_index = 1;
        ch->index = v->valuedouble;
    }
    if (tap_json_is_object(m)) {
        ch->has_message = 1;
        tap_oai_str(m, "content", &ch->content);
        tap_oai_str(m, "reasoning_content", &ch->reasoning_content);
        tap_oai_str(m, "reasoning", &ch->reasoning);
    }
    tap_oai_str(c, "text", &ch->text);
    tap_oai_str(c, "finish_reason", &ch->finish_reason);
}


/* The choice's number: its index when that is a sane integer, else its place pos. */
static unsigned
tap_oai_choice_index(const tap_json_choice_t *ch, size_t pos)
{
    int64_t  idx;

    if (ch->has_index && tap_gen_integer_of(ch->index, &idx) == 0 && idx >= 0 && idx < 1 << 20) {
        return (unsigned) idx;
    }
    return (unsigned) pos;
}


/*
 * The generated text, reasoning and finish reason of a choice, read by the
 * chunk reader or from a tree, at place pos; *tokens set when it carries text.
 */
static void
tap_oai_choice_take(tap_gen_t *g, const tap_json_choice_t *ch, size_t pos, int *tokens)
{
    const tap_jstr_t  *r;
    unsigned           ci = tap_oai_choice_index(ch, pos);

    if (ch->has_message) {
        if (ch->content.s != NULL) {
            tap_gen_text(g, ci, ch->content.s, ch->content.len);
            *tokens |= ch->content.len > 0;
        }
        r = ch->reasoning_content.s != NULL ? &ch->reasoning_content : &ch->reasoning;
        if (r->s != NULL && r->len > 0) {
            g->completion_chars += r->len;
            *tokens = 1;
        }
    } else if (ch->text.s != NULL) {                  /* completions */
        tap_gen_text(g, ci, ch->text.s, ch->text.len);
        *tokens |= ch->text.len > 0;
    }
    if (ch->finish_reason.s != NULL) {
        tap_gen_finish_reason(g, ci, ch->finish_reason.s, ch->finish_reason.len);
    }
}


static void
tap_oai_choice(tap_fx_t *fx, cJSON *c, size_t pos, int whole, int *tokens, uint64_t *counted)
{
    tap_gen_t          *g = fx->gen;
    tap_json_choice_t   ch;
    cJSON              *m;

    m = tap_json_get(c, whole ? "message" : "delta");
    tap_oai_choice_read(c, m, &ch);
    tap_oai_choice_take(g, &ch, pos, tokens);
    if (ch.has_message && tap_oai_tool_text(tap_json_get(m, "tool_calls"))) {
        *tokens = 1;
    }
    *counted += tap_oai_logprobs(g, tap_json_get(c, "logprobs"));
}


/*
 * A stream chunk or a whole answer read without a tree (tap_json_chunk()):
 * the usual one, with content, finish reasons and usage, takes a third of
 * the time of a tree.  The reader leaves to the tree what it does not read
 * (errors, logprobs, tool calls); what it does read goes through the same
 * steps as in tap_oai_response_event() below.  Tests and the fuzz target
 * turn it off to hold it to the tree.
 */
int  tap_openai_reader = 1;

static int
tap_oai_chunk(tap_fx_t *fx, const tap_fevent_t *ev, int *verdict)
{
    tap_gen_t                *g = fx->gen;
    tap_json_chunk_t          k;
    size_t                    i;
    int                       tokens = 0;

    if (tap_json_chunk(ev->data, ev->len, ev->whole ? "message" : "delta", &k) != 0) {
        return -1;
    }
    if (g->response_id[0] == '\0') {
        tap_gen_copy_str(g->response_id, k.id.s, k.id.len);
    }
    if (g->response_model[0] == '\0') {
        tap_gen_copy_str(g->response_model, k.model.s, k.model.len);
    }
    if (k.has_usage) {
        tap_oai_usage(g, &k.prompt_tokens, &k.completion_tokens, &k.cached_tokens);
    }
    for (i = 0; i < k.nchoices; i++) {
        tap_oai_choice_take(g, &k.choice[i], i, &tokens);
    }
    if (!ev->whole && tokens) {
        tap_gen_tokens(g, ev->now, 1);
    }

    /* the usage-only chunk asked for by injection */
    *verdict = k.has_usage && k.has_choices && k.nchoices == 0 && fx->usage_injected
               && !ev->whole ? TAP_FEV_DROP : TAP_FEV_PASS;
    return 0;
}


static int
tap_oai_response_event(tap_fx_t *fx, void *st, const tap_fevent_t *ev)
{
    tap_oai_t  *o = st;
    tap_gen_t  *g = fx->gen;
    cJSON      *j, *v, *u, *c;
    size_t      i;
    tap_jnum_t  pt, ct, cached;
    uint64_t    counted = 0;
    int         tokens = 0, usage_only, verdict;

    TAP_UNUSED(o);
    if (tap_openai_reader && tap_oai_chunk(fx, ev, &verdict) == 0) {
        tap_fev_valid(ev);
        return verdict;
    }
    j = tap_fev_json(ev);
    if (!tap_json_is_object(j)) {
        if (j != NULL) {
            g->resp_parse = TAP_GEN_PARSE_UNEXPECTED;
        }
        return TAP_FEV_PASS;
    }

    v = tap_json_get(j, "error");
    if (v != NULL && !tap_json_is_null(v)) {
        u = tap_json_get(v, "type");
        if (!tap_json_is_string(u)) {
            u = tap_json_get(v, "code");
        }
        if (tap_json_is_string(u)) {
            tap_gen_error(g, tap_json_string(u), tap_json_strlen(u));
        } else {
            tap_gen_error(g, "error", 5);
        }
        return TAP_FEV_PASS;
    }

    if (g->response_id[0] == '\0') {
        tap_gen_copy(g->response_id, tap_json_get(j, "id"));
    }
    if (g->response_model[0] == '\0') {
        tap_gen_copy(g->response_model, tap_json_get(j, "model"));
    }

    u = tap_json_get(j, "usage");
    if (tap_json_is_object(u)) {
        tap_oai_num(u, "prompt_tokens", &pt);
        tap_oai_num(u, "completion_tokens", &ct);
        tap_oai_num(tap_json_get(u, "prompt_tokens_details"), "cached_tokens", &cached);
        tap_oai_usage(g, &pt, &ct, &cached);
    }

    c = tap_json_get(j, "choices");
    if (tap_json_is_array(c)) {
        tap_json_foreach(c, i, v) {
            tap_oai_choice(fx, v, i, ev->whole, &tokens, &counted);
        }
    }
    g->counted_tokens += counted;
    if (!ev->whole && (tokens || counted > 0)) {
        tap_gen_tokens(g, ev->now, counted > 0 ? counted : 1);
    }

    usage_only = tap_json_is_object(u) && tap_json_is_array(c) && tap_json_size(c) == 0;
    if (usage_only && fx->usage_injected && !ev->whole) {
        return TAP_FEV_DROP;
    }
    return TAP_FEV_PASS;
}


const tap_filter_t  tap_filter_openai = {
    .name = "openai",
    .protocol = 1,
    .state_size = sizeof(tap_oai_t),
    .match = tap_oai_match,
    .request_head = tap_oai_request_head,
    .request_body = tap_oai_request_body,
    .response_event = tap_oai_response_event,
};
