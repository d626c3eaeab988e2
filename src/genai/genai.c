/*
 * genai.c: the protocol-neutral record of one exchange's model traffic
 * (tap_gen_t), its hashes, token counts and confidence figures.
 *
 * Hashing.  Every hash is XXH3-64 over a byte stream made of self-delimiting
 * items, so that no two different inputs can produce the same stream:
 *   field        tag byte, 8-byte little-endian length, the bytes
 *   JSON value   tap_hash_json(): a type tag, then for objects and arrays an
 *                8-byte count and the members, for strings a length-prefixed
 *                field, for numbers the 8 bytes of the IEEE double
 *   marker       a lone tag byte (the end of a chat message)
 * The JSON form is canonical: object keys are sorted bytewise, strings are
 * hashed decoded (the parser has already undone the escapes, so "\u00e9"
 * and "é", "\/" and "/" are the same; a string ends at its first U+0000),
 * and every number is hashed as a double, so 1 and 1.0, -0.0 and 0.0 are
 * the same (integers beyond 2^53 lose their low bits: acceptable for token
 * ids and the like).
 *
 * Tags: 'M' model, 'R' role, 'N' name, 'C' message text, 'P' non-text part,
 * 'T' tool call, 'I' tool_call_id, 'E' end of message, 'S' prompt string,
 * 'K' prompt token ids, 'p'/'i' a real/integer sampling parameter, 'X'
 * extra parameters.  The chat and prompt APIs use different tags for their
 * text, so a completion prompt "hi" and a chat message "hi" hash apart.
 *
 * Completion hashes are fed as the text arrives (one XXH3 state per choice,
 * created on the first text of that choice); nothing is kept but the states.
 * Nothing here allocates except those states, the prompt hashing state and
 * the sort array of large objects; an allocation failure loses the figure
 * it was for and nothing else.
 */

#include "config.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#define XXH_STATIC_LINKING_ONLY        /* hashing states on the stack */
#include <xxhash.h>

#include "tap_core.h"
#include "genai/genai.h"

#define TAP_GEN_SORT_STACK   16        /* object keys sorted without malloc */
#define TAP_GEN_PTR_STACK    256       /* JSON pointer tokens decoded without malloc */

typedef struct tap_gen_key_s {
    const char  *key;
    size_t       len;
    cJSON       *value;
} tap_gen_key_t;


static void tap_hash_obj(XXH3_state_t *st, cJSON *obj);


/*
 * Init: integers TAP_GEN_UNSET and doubles NAN mean "not known"; counters,
 * flags and hashes start at 0.  lp_min is NAN until the first logprob
 * (tap_gen_confidence only reads it when lp_count > 0).  The clocks
 * first_token, last_token and max_gap are TAP_GEN_UNSET until set:
 * max_gap stays so until a second token event gives a gap.
 */
const char *const  tap_gen_parse_names[TAP_GEN_PARSE_N] = {
    NULL, "ok", "too_large", "compressed", "not_json", "cut", "unexpected",
};


void
tap_gen_init(tap_gen_t *g)
{
    memset(g, 0, sizeof(*g));

    g->stream = TAP_GEN_UNSET;
    g->include_usage = TAP_GEN_UNSET;
    g->max_tokens = TAP_GEN_UNSET;
    g->n = TAP_GEN_UNSET;
    g->seed = TAP_GEN_UNSET;
    g->top_logprobs = TAP_GEN_UNSET;
    g->logprobs = TAP_GEN_UNSET;
    g->temperature = NAN;
    g->top_p = NAN;
    g->top_k = NAN;
    g->frequency_penalty = NAN;
    g->presence_penalty = NAN;

    g->prompt_tokens = TAP_GEN_UNSET;
    g->completion_tokens = TAP_GEN_UNSET;
    g->cached_tokens = TAP_GEN_UNSET;
    g->tokens_estimated = TAP_GEN_UNSET;

    g->lp_min = NAN;
    g->score = NAN;

    g->first_token = TAP_GEN_UNSET;
    g->last_token = TAP_GEN_UNSET;
    g->max_gap = TAP_GEN_UNSET;

    g->req_parse = TAP_GEN_PARSE_NONE;
    g->resp_parse = TAP_GEN_PARSE_NONE;
}


/* text states given back on this thread, kept for its next exchanges */
#define TAP_GEN_SPARES  64

static __thread XXH3_state_t  *tap_gen_spare[TAP_GEN_SPARES];
static __thread unsigned       tap_gen_nspare;


static XXH3_state_t *
tap_gen_state_new(void)
{
    if (tap_gen_nspare > 0) {
        return tap_gen_spare[--tap_gen_nspare];
    }
    return XXH3_createState();
}


void
tap_gen_cleanup(tap_gen_t *g)
{
    unsigned  i;

    for (i = 0; i < TAP_GEN_MAX_CHOICES; i++) {
        if (g->text[i] != NULL && tap_gen_nspare < TAP_GEN_SPARES && !TAP_ASAN) {
            tap_gen_spare[tap_gen_nspare++] = g->text[i];
        } else {
            XXH3_freeState(g->text[i]);
        }
        g->text[i] = NULL;
    }
}


void
tap_gen_thread_done(void)
{
    while (tap_gen_nspare > 0) {
        XXH3_freeState(tap_gen_spare[--tap_gen_nspare]);
    }
}


/*
 * Copies s[0..len) into dst[size], stopping at an embedded NUL and, when the
 * text does not fit, cutting it before the UTF-8 sequence that would not fit
 * (valid UTF-8 stays valid).  dst is always NUL-terminated.
 */
static void
tap_gen_strlcpy(char *dst, size_t size, const char *s, size_t len)
{
    const char  *nul;
    size_t       n;

    if (s == NULL) {
        len = 0;
    }

    nul = len ? memchr(s, '\0', len) : NULL;
    if (nul != NULL) {
        len = (size_t) (nul - s);
    }

    n = len;
    if (n > size - 1) {
        n = size - 1;
        while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80) {
            n--;
        }
    }

    if (n) {
        memcpy(dst, s, n);
    }
    dst[n] = '\0';
}


void
tap_gen_copy(char *dst, cJSON *v)
{
    tap_gen_copy_str(dst, tap_json_string(v), tap_json_strlen(v));
}


void
tap_gen_copy_str(char *dst, const char *s, size_t len)
{
    if (s != NULL) {
        tap_gen_strlcpy(dst, TAP_GEN_STR, s, len);
    }
}


static void
tap_hash_tag(XXH3_state_t *st, char tag)
{
    XXH3_64bits_update(st, &tag, 1);
}


/* v's 8 bytes, little-endian, at b */
static void
tap_hash_le64(unsigned char *b, uint64_t v)
{
    int  i;

    for (i = 0; i < 8; i++) {
        b[i] = (unsigned char) (v >> (8 * i));
    }
}


/* The 8 bytes of v, little-endian, after a tag byte; s[0, len) after them (may be empty). */
#define TAP_HASH_INLINE  64            /* bytes hashed in one update with their header */

static void
tap_hash_head(XXH3_state_t *st, char tag, uint64_t v, const char *s, size_t len)
{
    unsigned char  b[9 + TAP_HASH_INLINE];

    b[0] = (unsigned char) tag;
    tap_hash_le64(b + 1, v);
    /* one call into the library for a short field, instead of three */
    if (len <= TAP_HASH_INLINE) {
        if (len) {
            memcpy(b + 9, s, len);
        }
        XXH3_64bits_update(st, b, 9 + len);
        return;
    }
    XXH3_64bits_update(st, b, 9);
    XXH3_64bits_update(st, s, len);
}


static void
tap_hash_u64(XXH3_state_t *st, uint64_t v)
{
    unsigned char  b[8];

    tap_hash_le64(b, v);
    XXH3_64bits_update(st, b, sizeof(b));
}


/* A double's 8 IEEE bytes as an integer, -0.0 as 0.0. */
static uint64_t
tap_hash_double_bits(double d)
{
    uint64_t  bits;

    if (d == 0) {
        d = 0;
    }
    memcpy(&bits, &d, sizeof(bits));
    return bits;
}


void
tap_hash_field(XXH3_state_t *st, char tag, const char *s, size_t len)
{
    tap_hash_head(st, tag, len, s, len);
}


/*
 * Canonical JSON: 'o' count then (key field 'k', value) by sorted key,
 * 'a' count then the elements, string field 's', 'n' double, 't', 'f', 'z'.
 * A NULL value hashes as null.  Recursion is bounded by the parser's
 * nesting limit (CJSON_NESTING_LIMIT).
 */
void
tap_hash_json(XXH3_state_t *st, cJSON *v)
{
    cJSON  *e;

    switch (v == NULL ? cJSON_NULL : v->type & 0xff) {

    case cJSON_Object:
        tap_hash_obj(st, v);
        break;

    case cJSON_Array:
        tap_hash_head(st, 'a', tap_json_size(v), NULL, 0);
        for (e = v->child; e != NULL; e = e->next) {
            tap_hash_json(st, e);
        }
        break;

    case cJSON_String:
        tap_hash_field(st, 's', tap_json_string(v), tap_json_strlen(v));
        break;

    case cJSON_Number:
        tap_hash_head(st, 'n', tap_hash_double_bits(v->valuedouble), NULL, 0);
        break;

    case cJSON_True:
        tap_hash_tag(st, 't');
        break;

    case cJSON_False:
        tap_hash_tag(st, 'f');
        break;

    default:
        tap_hash_tag(st, 'z');
        break;
    }
}


/* Bytewise key order; a key sorts before any longer key it starts. */
static int
tap_gen_key_cmp(const void *a, const void *b)
{
    const tap_gen_key_t  *x = a, *y = b;
    int                   c;

    c = memcmp(x->key, y->key, TAP_MIN(x->len, y->len));
    if (c != 0) {
        return c;
    }
    return x->len < y->len ? -1 : x->len > y->len;
}


static void
tap_gen_key_get(cJSON *member, tap_gen_key_t *k)
{
    k->key = member->string != NULL ? member->string : "";
    k->len = strlen(k->key);
    k->value = member;
}


static void
tap_hash_member(XXH3_state_t *st, const tap_gen_key_t *k)
{
    tap_hash_field(st, 'k', k->key, k->len);
    tap_hash_json(st, k->value);
}


/*
 * Objects: the keys are collected and sorted (on the stack for small
 * objects).  When the array for a large object cannot be allocated, the
 * members are hashed by repeated selection of the next larger key: slower
 * (quadratic) but the same bytes, so the hash never depends on memory.
 */
static void
tap_hash_obj(XXH3_state_t *st, cJSON *obj)
{
    tap_gen_key_t   stack[TAP_GEN_SORT_STACK], *keys, cur, best, prev;
    size_t          i, n;
    cJSON          *it;
    int             have_prev, have_best;

    n = tap_json_size(obj);
    tap_hash_head(st, 'o', n, NULL, 0);

    keys = n <= TAP_GEN_SORT_STACK ? stack : malloc(n * sizeof(*keys));

    if (keys != NULL) {
        i = 0;
        for (it = obj->child; it != NULL && i < n; it = it->next) {
            tap_gen_key_get(it, &keys[i++]);
        }
        n = i;
        qsort(keys, n, sizeof(*keys), tap_gen_key_cmp);
        for (i = 0; i < n; i++) {
            tap_hash_member(st, &keys[i]);
        }
        if (keys != stack) {
            free(keys);
        }
        return;
    }

    have_prev = 0;
    memset(&prev, 0, sizeof(prev));
    memset(&best, 0, sizeof(best));
    for (i = 0; i < n; i++) {
        have_best = 0;
        for (it = obj->child; it != NULL; it = it->next) {
            tap_gen_key_get(it, &cur);
            if ((!have_prev || tap_gen_key_cmp(&cur, &prev) > 0)
                && (!have_best || tap_gen_key_cmp(&cur, &best) < 0))
            {
                best = cur;
                have_best = 1;
            }
        }
        if (!have_best) {
            break;
        }
        tap_hash_member(st, &best);
        prev = best;
        have_prev = 1;
    }
}


/*
 * The text of a content part, or NULL when it is not a text part.  Text
 * parts are {"type":"text","text":"..."} (and the Responses API's
 * "input_text"/"output_text" with the same "text" member); a bare string in
 * a content array is taken as text too.
 */
static const char *
tap_gen_part_text(cJSON *part, size_t *len)
{
    const char  *type;
    cJSON       *text;

    if (tap_json_is_string(part)) {
        *len = tap_json_strlen(part);
        return tap_json_string(part);
    }

    type = tap_json_string(tap_json_get(part, "type"));
    text = tap_json_get(part, "text");
    if (type == NULL || !tap_json_is_string(text)
        || (strcmp(type, "text") != 0 && strcmp(type, "input_text") != 0
            && strcmp(type, "output_text") != 0))
    {
        return NULL;
    }

    *len = tap_json_strlen(text);
    return tap_json_string(text);
}


/*
 * Message content.  A string is one 'C' field.  An array of parts gives one
 * 'C' field with the text of all its text parts concatenated in order (so
 * the string "ab" and the parts "a" + "b" hash the same, and an array with
 * no text part gives an empty 'C'), then each non-text part, in order, as
 * 'P' + canonical JSON; where the text sat among the other parts is not
 * hashed.  null or absent: nothing.  Any other value: one 'P'.  Adds the
 * text bytes to *chars.
 */
static void
tap_gen_hash_content(XXH3_state_t *st, cJSON *content, uint64_t *chars)
{
    const char  *s;
    size_t       i, len, total;
    cJSON       *part;

    if (content == NULL || tap_json_is_null(content)) {
        return;
    }

    if (tap_json_is_string(content)) {
        len = tap_json_strlen(content);
        tap_hash_field(st, 'C', tap_json_string(content), len);
        *chars += len;
        return;
    }

    if (!tap_json_is_array(content)) {
        tap_hash_tag(st, 'P');
        tap_hash_json(st, content);
        return;
    }

    total = 0;
    tap_json_foreach(content, i, part) {
        if (tap_gen_part_text(part, &len) != NULL) {
            total += len;
        }
    }

    tap_hash_head(st, 'C', total, NULL, 0);
    tap_json_foreach(content, i, part) {
        s = tap_gen_part_text(part, &len);
        if (s != NULL && len) {
            XXH3_64bits_update(st, s, len);
        }
    }
    *chars += total;

    tap_json_foreach(content, i, part) {
        if (tap_gen_part_text(part, &len) == NULL) {
            tap_hash_tag(st, 'P');
            tap_hash_json(st, part);
        }
    }
}


static void
tap_gen_hash_string(XXH3_state_t *st, char tag, cJSON *v)
{
    if (tap_json_is_string(v)) {
        tap_hash_field(st, tag, tap_json_string(v), tap_json_strlen(v));
    }
}


/* Each element of an array, or a single non-null value, as tag + canonical JSON. */
static void
tap_gen_hash_each(XXH3_state_t *st, char tag, cJSON *v)
{
    size_t   i;
    cJSON   *e;

    if (v == NULL || tap_json_is_null(v)) {
        return;
    }

    if (!tap_json_is_array(v)) {
        tap_hash_tag(st, tag);
        tap_hash_json(st, v);
        return;
    }

    tap_json_foreach(v, i, e) {
        tap_hash_tag(st, tag);
        tap_hash_json(st, e);
    }
}


/*
 * One chat message: 'R' role and 'N' name when they are strings, the
 * content, 'T' for each tool_calls entry (and a legacy function_call),
 * 'P' for each of Ollama's "images", 'I' tool_call_id when a string, 'E'.
 * Other members (Ollama's "thinking", vendor extensions) are not hashed.
 */
static void
tap_gen_hash_message(XXH3_state_t *st, cJSON *m, uint64_t *chars)
{
    tap_gen_hash_string(st, 'R', tap_json_get(m, "role"));
    tap_gen_hash_string(st, 'N', tap_json_get(m, "name"));
    tap_gen_hash_content(st, tap_json_get(m, "content"), chars);
    tap_gen_hash_each(st, 'T', tap_json_get(m, "tool_calls"));
    tap_gen_hash_each(st, 'T', tap_json_get(m, "function_call"));
    tap_gen_hash_each(st, 'P', tap_json_get(m, "images"));
    tap_gen_hash_string(st, 'I', tap_json_get(m, "tool_call_id"));
    tap_hash_tag(st, 'E');
}


static void
tap_gen_prompt_start(const tap_gen_t *g, XXH3_state_t *st)
{
    XXH3_INITSTATE(st);
    XXH3_64bits_reset(st);
    tap_hash_field(st, 'M', g->model, strnlen(g->model, sizeof(g->model)));
}


/*
 * Chat: messages must be an array of objects (an empty array is accepted:
 * the hash is the model's alone).  The prompt hash is 'M' model then each
 * message; the prefix hash is the state before the last message, so the
 * prefix of [a, b, c] equals the prompt hash of [a, b]; it is set only with
 * two messages or more (and cleared otherwise).  prompt_chars grows by the
 * text bytes (it is added to, so a filter may count other text as well).
 * Returns -1 without touching g for another shape or when the hashing state
 * cannot be allocated.
 */
int
tap_gen_hash_chat(tap_gen_t *g, cJSON *messages)
{
    XXH3_state_t   stbuf, *st = &stbuf;
    uint64_t       chars, prefix;
    size_t         i, n;
    cJSON         *m;

    if (!tap_json_is_array(messages)) {
        return -1;
    }

    n = 0;
    tap_json_foreach(messages, i, m) {
        if (!tap_json_is_object(m)) {
            return -1;
        }
        n++;
    }

    tap_gen_prompt_start(g, st);

    chars = 0;
    prefix = 0;
    tap_json_foreach(messages, i, m) {
        if (n >= 2 && i == n - 1) {
            prefix = XXH3_64bits_digest(st);
        }
        tap_gen_hash_message(st, m, &chars);
    }

    g->prompt_hash = XXH3_64bits_digest(st);
    g->has_prompt_hash = 1;
    g->prefix_hash = prefix;
    g->has_prefix_hash = n >= 2;
    g->nmessages = (unsigned) n;
    g->prompt_chars += chars;

    return 0;
}


/* 1 when every element of the array v is an integer. */
static int
tap_gen_is_token_ids(cJSON *v)
{
    size_t   i;
    cJSON   *e;

    if (!tap_json_is_array(v)) {
        return 0;
    }
    tap_json_foreach(v, i, e) {
        if (!tap_json_is_int(e)) {
            return 0;
        }
    }
    return 1;
}


/*
 * Completion prompt: a string ('S' field), an array of strings (an 'S'
 * field each, so "x" and ["x"] hash the same), an array of token ids ('K' +
 * canonical JSON of the array) or an array of such arrays (a 'K' each, so
 * [1,2] and [[1,2]] hash the same); an empty array hashes as no prompt.
 * `system`, a string or an array of content parts (NULL or JSON null: none),
 * comes first, hashed exactly as a chat message {"role":"system",
 * "content":system}; when it is non-empty the prefix hash is the state after
 * it, which is then also the prefix hash of a chat request with the same
 * model and system message.  Token ids add nothing to prompt_chars;
 * nmessages is not touched.  Returns -1 without touching g for another
 * shape or when the hashing state cannot be allocated.
 */
int
tap_gen_hash_prompt(tap_gen_t *g, cJSON *prompt, cJSON *system)
{
    XXH3_state_t   stbuf, *st = &stbuf;
    uint64_t       chars;
    size_t         i, n, strings, ids, lists;
    cJSON         *e;
    int            has_system;

    if (tap_json_is_null(system)) {
        system = NULL;
    }
    if (system != NULL && !tap_json_is_string(system) && !tap_json_is_array(system)) {
        return -1;
    }

    if (!tap_json_is_string(prompt) && !tap_json_is_array(prompt)) {
        return -1;
    }

    n = 0;
    strings = ids = lists = 0;
    tap_json_foreach(prompt, i, e) {
        n++;
        strings += tap_json_is_string(e);
        ids += tap_json_is_int(e);
        lists += tap_gen_is_token_ids(e);
    }
    if (strings != n && ids != n && lists != n) {
        return -1;
    }

    tap_gen_prompt_start(g, st);

    chars = 0;
    has_system = system != NULL
                 && (tap_json_is_string(system) ? tap_json_strlen(system)
                                                 : tap_json_size(system)) > 0;
    if (system != NULL) {
        tap_hash_field(st, 'R', "system", 6);
        tap_gen_hash_content(st, system, &chars);
        tap_hash_tag(st, 'E');
    }
    if (has_system) {
        g->prefix_hash = XXH3_64bits_digest(st);
    }
    g->has_prefix_hash = has_system;

    if (tap_json_is_string(prompt)) {
        tap_hash_field(st, 'S', tap_json_string(prompt), tap_json_strlen(prompt));
        chars += tap_json_strlen(prompt);

    } else if (n > 0 && ids == n) {
        tap_hash_tag(st, 'K');
        tap_hash_json(st, prompt);

    } else {
        tap_json_foreach(prompt, i, e) {
            if (tap_json_is_string(e)) {
                tap_hash_field(st, 'S', tap_json_string(e), tap_json_strlen(e));
                chars += tap_json_strlen(e);
            } else {
                tap_hash_tag(st, 'K');
                tap_hash_json(st, e);
            }
        }
    }

    g->prompt_hash = XXH3_64bits_digest(st);
    g->has_prompt_hash = 1;
    g->prompt_chars += chars;

    return 0;
}


/* A sampling parameter: field tag with its name, then the 8 bytes of v. */
static void
tap_gen_param(XXH3_state_t *st, char tag, const char *name, uint64_t v)
{
    unsigned char  b[9 + TAP_HASH_INLINE + 8];
    size_t         len = strlen(name);

    if (len > TAP_HASH_INLINE) {
        tap_hash_field(st, tag, name, len);
        tap_hash_u64(st, v);
        return;
    }
    /* the same bytes in one update: the name is short */
    b[0] = (unsigned char) tag;
    tap_hash_le64(b + 1, len);
    memcpy(b + 9, name, len);
    tap_hash_le64(b + 9 + len, v);
    XXH3_64bits_update(st, b, 17 + len);
}


static void
tap_gen_param_real(XXH3_state_t *st, const char *name, double v)
{
    if (!isnan(v)) {
        tap_gen_param(st, 'p', name, tap_hash_double_bits(v));
    }
}


static void
tap_gen_param_int(XXH3_state_t *st, const char *name, int64_t v)
{
    if (v != TAP_GEN_UNSET) {
        tap_gen_param(st, 'i', name, (uint64_t) v);
    }
}


/*
 * Params hash: each parameter present in g, in a fixed order, as its name
 * field then 8 bytes: real parameters ('p') as their IEEE double (so 1 and
 * 1.0 are the same once the filter stored them), integer ones ('i') as
 * their int64 value (exact for any seed); then 'X' + canonical JSON of
 * extra when not NULL.  Always sets the hash: a request with no parameter
 * gets the hash of the empty stream, the same for every such request.
 */
void
tap_gen_hash_params(tap_gen_t *g, cJSON *extra)
{
    XXH3_state_t   stbuf, *st = &stbuf;

    XXH3_INITSTATE(st);
    XXH3_64bits_reset(st);
    tap_gen_param_real(st, "temperature", g->temperature);
    tap_gen_param_real(st, "top_p", g->top_p);
    tap_gen_param_real(st, "top_k", g->top_k);
    tap_gen_param_real(st, "frequency_penalty", g->frequency_penalty);
    tap_gen_param_real(st, "presence_penalty", g->presence_penalty);
    tap_gen_param_int(st, "max_tokens", g->max_tokens);
    tap_gen_param_int(st, "seed", g->seed);
    tap_gen_param_int(st, "n", g->n);
    tap_gen_param_int(st, "logprobs", g->logprobs);
    tap_gen_param_int(st, "top_logprobs", g->top_logprobs);
    if (extra != NULL) {
        tap_hash_tag(st, 'X');
        tap_hash_json(st, extra);
    }

    g->params_hash = XXH3_64bits_digest(st);
    g->has_params_hash = 1;
}


int
tap_gen_number(cJSON *v, double *out)
{
    if (!tap_json_is_number(v)) {
        return -1;
    }
    *out = v->valuedouble;
    return 0;
}


/*
 * A number with an exact integral value in the int64 range (3 and 3.0 yes;
 * 3.5, 1e30 no).  *out is untouched on -1.  cJSON keeps every number as a
 * double, so integers beyond 2^53 are read rounded, the same way each time.
 */
int
tap_gen_integer(cJSON *v, int64_t *out)
{
    return tap_json_is_number(v) ? tap_gen_integer_of(v->valuedouble, out) : -1;
}


int
tap_gen_integer_of(double d, int64_t *out)
{
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0 && d == trunc(d))) {
        return -1;
    }
    *out = (int64_t) d;
    return 0;
}


int
tap_json_is_int(const cJSON *v)
{
    int64_t  n;

    return tap_json_is_number(v) && tap_gen_integer_of(v->valuedouble, &n) == 0;
}


size_t
tap_json_size(const cJSON *v)
{
    size_t  n = 0;

    if (tap_json_is_array(v) || tap_json_is_object(v)) {
        for (v = v->child; v != NULL; v = v->next) {
            n++;
        }
    }
    return n;
}


cJSON *
tap_json_at(const cJSON *a, size_t i)
{
    cJSON  *v;

    if (!tap_json_is_array(a)) {
        return NULL;
    }
    for (v = a->child; v != NULL && i > 0; v = v->next) {
        i--;
    }
    return v;
}


static void
tap_gen_seen(tap_gen_t *g, unsigned choice)
{
    if (choice >= g->nchoices && choice != (unsigned) -1) {
        g->nchoices = choice + 1;
    }
}


/*
 * Generated text of one choice.  Every byte counts in completion_chars;
 * only choices below TAP_GEN_MAX_CHOICES are hashed.  The choice's state is
 * created on its first call, also with len 0, so a choice that produced
 * nothing hashes as XXH3-64 of "".  When the state cannot be allocated the
 * choice is not hashed (tap_gen_finish then treats it as "").
 */
void
tap_gen_text(tap_gen_t *g, unsigned choice, const char *s, size_t len)
{
    g->completion_chars += len;
    tap_gen_seen(g, choice);

    if (choice >= TAP_GEN_MAX_CHOICES) {
        return;
    }

    if (g->text[choice] == NULL) {
        g->text[choice] = tap_gen_state_new();
        if (g->text[choice] == NULL) {
            return;
        }
        XXH3_64bits_reset(g->text[choice]);
    }

    if (len) {
        XXH3_64bits_update(g->text[choice], s, len);
    }
}


/* Kept (truncated to 23 bytes at a UTF-8 boundary) for choices below the maximum. */
void
tap_gen_finish_reason(tap_gen_t *g, unsigned choice, const char *s, size_t len)
{
    tap_gen_seen(g, choice);

    if (choice < TAP_GEN_MAX_CHOICES) {
        tap_gen_strlcpy(g->finish_reasons[choice], sizeof(g->finish_reasons[choice]), s, len);
    }
}


/* A token logprob; NaN and infinities (log of 0) are ignored. */
void
tap_gen_logprob(tap_gen_t *g, double lp)
{
    if (!isfinite(lp)) {
        return;
    }

    g->lp_sum += lp;
    if (g->lp_count == 0 || lp < g->lp_min) {
        g->lp_min = lp;
    }
    g->lp_count++;
}


/*
 * A token probability in (0, 1] adds log(p).  0 (whose log is -inf) and
 * anything out of range are ignored, like infinite logprobs.
 */
void
tap_gen_prob(tap_gen_t *g, double p)
{
    if (p > 0 && p <= 1) {
        tap_gen_logprob(g, log(p));
    }
}


/* A classifier score; non-finite values are ignored. */
void
tap_gen_score(tap_gen_t *g, double v)
{
    if (isfinite(v)) {
        g->score = v;
    }
}


/*
 * One event carrying generated tokens: token_events counts events, not
 * tokens (ntokens == 0 is no token event and is ignored; a filter that
 * knows exact counts adds them to counted_tokens).  first_token is the
 * first event's time; max_gap the longest time between two consecutive
 * events (TAP_GEN_UNSET with fewer than two; a clock going back counts 0).
 */
void
tap_gen_tokens(tap_gen_t *g, int64_t now, uint64_t ntokens)
{
    int64_t  gap;

    if (ntokens == 0) {
        return;
    }

    if (g->token_events == 0) {
        g->first_token = now;

    } else {
        gap = now - g->last_token;
        if (gap < 0) {
            gap = 0;
        }
        if (gap > g->max_gap) {
            g->max_gap = gap;
        }
    }

    g->last_token = now;
    g->token_events++;
}


/*
 * Reported usage: each figure >= 0 replaces what g had (negative ones,
 * TAP_GEN_UNSET among them, are not given).  usage_reported is set even
 * when no figure was given: the server sent a usage object.
 */
void
tap_gen_usage(tap_gen_t *g, int64_t prompt, int64_t completion, int64_t cached)
{
    if (prompt >= 0) {
        g->prompt_tokens = prompt;
        g->prompt_derived = 0;
    }
    if (completion >= 0) {
        g->completion_tokens = completion;
        g->completion_derived = 0;
    }
    if (cached >= 0) {
        g->cached_tokens = cached;
    }
    g->usage_reported = 1;
}


/* The last error wins; an empty or NULL type is recorded as "error". */
void
tap_gen_error(tap_gen_t *g, const char *type, size_t len)
{
    if (type == NULL || len == 0 || type[0] == '\0') {
        type = "error";
        len = 5;
    }
    tap_gen_strlcpy(g->error_type, sizeof(g->error_type), type, len);
}


static uint64_t
tap_gen_ceil4(uint64_t n)
{
    return n / 4 + (n % 4 != 0);
}


/*
 * Completion hash: with at most one choice, the digest of choice 0's text;
 * with several, XXH3-64 over the 8-byte little-endian digests of choices
 * 0 .. min(nchoices, TAP_GEN_MAX_CHOICES) - 1, a choice without text
 * counting as ""; with no text at all, no hash.
 *
 * completion_tokens: reported (tap_gen_usage or set by the filter) stays;
 * else counted_tokens when > 0; else token_events when > 0 (the servers we
 * know send one token per stream event); else ceil(completion_chars / 4),
 * estimated; else TAP_GEN_UNSET.  prompt_tokens: reported stays; else
 * ceil(prompt_chars / 4), estimated, when there was prompt text.
 * tokens_estimated: 1 when either figure is an estimate, 0 when there are
 * figures and none is, TAP_GEN_UNSET when there is none.
 *
 * Figures it derives are marked (prompt_derived, completion_derived) and
 * derived again on the next call, so calling it twice, or again after more
 * usage arrived, gives what one call at that point would.  Frees nothing.
 */
void
tap_gen_finish(tap_gen_t *g)
{
    unsigned char  buf[8 * TAP_GEN_MAX_CHOICES];
    uint64_t       d, empty;
    unsigned       i, j, n, any;
    int            estimated;

    n = TAP_MIN(g->nchoices, TAP_GEN_MAX_CHOICES);
    any = 0;
    for (i = 0; i < n; i++) {
        any |= g->text[i] != NULL;
    }

    if (any && n <= 1) {
        g->completion_hash = XXH3_64bits_digest(g->text[0]);
        g->has_completion_hash = 1;

    } else if (any) {
        empty = XXH3_64bits("", 0);
        for (i = 0; i < n; i++) {
            d = g->text[i] != NULL ? XXH3_64bits_digest(g->text[i]) : empty;
            for (j = 0; j < 8; j++) {
                buf[8 * i + j] = (unsigned char) (d >> (8 * j));
            }
        }
        g->completion_hash = XXH3_64bits(buf, 8 * (size_t) n);
        g->has_completion_hash = 1;
    }

    if (g->completion_derived) {
        g->completion_tokens = TAP_GEN_UNSET;
        g->completion_derived = 0;
    }
    if (g->prompt_derived) {
        g->prompt_tokens = TAP_GEN_UNSET;
        g->prompt_derived = 0;
    }

    estimated = 0;

    if (g->completion_tokens == TAP_GEN_UNSET) {
        if (g->counted_tokens > 0) {
            g->completion_tokens = (int64_t) g->counted_tokens;
        } else if (g->token_events > 0) {
            g->completion_tokens = (int64_t) g->token_events;
        } else if (g->completion_chars > 0) {
            g->completion_tokens = (int64_t) tap_gen_ceil4(g->completion_chars);
            estimated = 1;
        }
        g->completion_derived = g->completion_tokens != TAP_GEN_UNSET;
    }

    if (g->prompt_tokens == TAP_GEN_UNSET && g->prompt_chars > 0) {
        g->prompt_tokens = (int64_t) tap_gen_ceil4(g->prompt_chars);
        g->prompt_derived = 1;
        estimated = 1;
    }

    if (estimated) {
        g->tokens_estimated = 1;
    } else if (g->prompt_tokens != TAP_GEN_UNSET || g->completion_tokens != TAP_GEN_UNSET) {
        g->tokens_estimated = 0;
    } else {
        g->tokens_estimated = TAP_GEN_UNSET;
    }
}


/* Any output pointer may be NULL. */
int
tap_gen_confidence(const tap_gen_t *g, double *mean, double *min, double *perplexity)
{
    double  m;

    if (g->lp_count == 0) {
        return 0;
    }

    m = g->lp_sum / (double) g->lp_count;
    if (mean != NULL) {
        *mean = m;
    }
    if (min != NULL) {
        *min = g->lp_min;
    }
    if (perplexity != NULL) {
        *perplexity = exp(-m);
    }
    return 1;
}


/*
 * The non-empty reasons in choice order joined with ','.  A reason that
 * does not fit in buf is left out with all after it (never cut); NULL when
 * nothing was written.
 */
const char *
tap_gen_finish_reasons(const tap_gen_t *g, char *buf, size_t size)
{
    size_t    used, len, need;
    unsigned  i, n;

    if (size == 0) {
        return NULL;
    }

    used = 0;
    buf[0] = '\0';
    n = TAP_MIN(g->nchoices, TAP_GEN_MAX_CHOICES);

    for (i = 0; i < n; i++) {
        len = strnlen(g->finish_reasons[i], sizeof(g->finish_reasons[i]));
        if (len == 0) {
            continue;
        }
        need = (used > 0) + len;
        if (need >= size - used) {
            break;
        }
        if (used > 0) {
            buf[used++] = ',';
        }
        memcpy(buf + used, g->finish_reasons[i], len);
        used += len;
        buf[used] = '\0';
    }

    return used ? buf : NULL;
}


/*
 * Decodes one reference token (t[0..len)) into out (len + 1 bytes):
 * "~0" is '~', "~1" is '/', any other '~' is an error (-1).  Returns the
 * decoded length.
 */
static ssize_t
tap_json_pointer_token(const char *t, size_t len, char *out)
{
    size_t  i, n;

    n = 0;
    for (i = 0; i < len; i++) {
        if (t[i] != '~') {
            out[n++] = t[i];
            continue;
        }
        if (i + 1 == len || (t[i + 1] != '0' && t[i + 1] != '1')) {
            return -1;
        }
        out[n++] = t[++i] == '0' ? '~' : '/';
    }
    out[n] = '\0';
    return (ssize_t) n;
}


/* An array index: "0" or digits without a leading zero, below size. */
static cJSON *
tap_json_pointer_index(cJSON *arr, const char *t, size_t len)
{
    size_t  i, idx, size;

    size = tap_json_size(arr);
    if (len == 0 || (len > 1 && t[0] == '0')) {
        return NULL;
    }

    idx = 0;
    for (i = 0; i < len; i++) {
        if (t[i] < '0' || t[i] > '9' || idx >= size) {
            return NULL;
        }
        idx = idx * 10 + (size_t) (t[i] - '0');
    }

    return idx < size ? tap_json_at(arr, idx) : NULL;
}


/*
 * RFC 6901.  "" is root; anything else must start with '/'.  Object
 * members are matched on the decoded token (a token holding a NUL byte
 * matches no key); arrays take indexes only ("-",
 * the element past the end, does not exist).  Any step that fails, or a
 * token that cannot be buffered, gives NULL.
 */
cJSON *
tap_json_pointer(cJSON *root, const char *ptr)
{
    char         stack[TAP_GEN_PTR_STACK], *tok;
    const char  *p, *end;
    cJSON       *v;
    ssize_t      n;
    size_t       len;

    if (root == NULL || ptr == NULL || (ptr[0] != '\0' && ptr[0] != '/')) {
        return NULL;
    }

    v = root;
    p = ptr;

    while (v != NULL && *p == '/') {
        p++;
        end = p + strcspn(p, "/");
        len = (size_t) (end - p);

        tok = len < sizeof(stack) ? stack : malloc(len + 1);
        if (tok == NULL) {
            return NULL;
        }

        n = tap_json_pointer_token(p, len, tok);
        if (n < 0) {
            v = NULL;
        } else if (tap_json_is_object(v)) {
            v = (size_t) n == strlen(tok) ? tap_json_get(v, tok) : NULL;
        } else if (tap_json_is_array(v)) {
            v = tap_json_pointer_index(v, tok, (size_t) n);
        } else {
            v = NULL;
        }

        if (tok != stack) {
            free(tok);
        }
        p = end;
    }

    return v;
}
