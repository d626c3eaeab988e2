/*
 * genai.h: what one exchange's model traffic says, in protocol-neutral form.
 *
 * The protocol filters (filters/) read requests and responses in their own
 * formats and fill one tap_gen_t through the functions below; the access
 * log, metrics and spans read only this struct.  Nothing here does I/O.
 *
 * Definitions (docs/ARCHITECTURE.md, "What an exchange knows"):
 *   prompt hash      XXH3-64 over the canonical prompt: the model, then each
 *                    message's role, name, content (text parts joined; other
 *                    parts canonical JSON with sorted keys), tool calls and
 *                    tool_call_id, or the prompt string(s).  Built from
 *                    decoded JSON, so key order and escapes do not matter.
 *   prefix hash      the same over all messages but the last (the template).
 *   params hash      the sampling parameters present, each as name + value.
 *   completion hash  XXH3-64 of the generated text of choice 0; with several
 *                    choices, XXH3-64 of their digests in index order.  Fed
 *                    incrementally: a stream and the same text sent whole
 *                    give the same hash, and no text is kept.
 *   confidence       over token logprobs: mean, min, perplexity = exp(-mean),
 *                    count; or one classifier score.
 * Numbers that are unknown are TAP_GEN_UNSET (integers) or NAN (doubles).
 */

#ifndef TAP_GENAI_H
#define TAP_GENAI_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <xxhash.h>

#define TAP_GEN_UNSET         (-1)
#define TAP_GEN_MAX_CHOICES   8
#define TAP_GEN_STR           128

/* Why a body was not (fully) understood; TAP_GEN_PARSE_OK when it was. */
typedef enum {
    TAP_GEN_PARSE_NONE = 0,            /* nothing looked at it (no protocol filter) */
    TAP_GEN_PARSE_OK,
    TAP_GEN_PARSE_TOO_LARGE,           /* larger than the capture limit */
    TAP_GEN_PARSE_COMPRESSED,          /* Content-Encoding other than identity */
    TAP_GEN_PARSE_NOT_JSON,            /* did not parse as JSON */
    TAP_GEN_PARSE_CUT,                 /* the body or stream ended early */
    TAP_GEN_PARSE_UNEXPECTED,          /* JSON, but not the expected shape */
    TAP_GEN_PARSE_N,
} tap_gen_parse_e;

/* The outcomes' names, for logs and metrics; [TAP_GEN_PARSE_NONE] is NULL. */
extern const char *const  tap_gen_parse_names[TAP_GEN_PARSE_N];

typedef struct tap_gen_s {
    /* what was asked */
    const char    *provider;           /* protocol filter name, static; NULL: none */
    const char    *operation;          /* "chat", "text_completion", "embeddings", ... */
    char           model[TAP_GEN_STR]; /* requested model; "" unknown */
    int            stream;             /* TAP_GEN_UNSET, 0, 1 */
    int            include_usage;      /* the client asked for usage: TAP_GEN_UNSET, 0, 1 */
    int64_t        max_tokens;
    int64_t        n;
    int64_t        seed;
    int64_t        top_logprobs;
    int            logprobs;           /* TAP_GEN_UNSET, 0, 1 */
    double         temperature;
    double         top_p;
    double         top_k;
    double         frequency_penalty;
    double         presence_penalty;
    unsigned       ntools;
    unsigned       nmessages;
    uint64_t       prompt_chars;       /* bytes of prompt text, for estimates */

    /* what came back */
    char           response_id[TAP_GEN_STR];
    char           response_model[TAP_GEN_STR];
    char           finish_reasons[TAP_GEN_MAX_CHOICES][24];   /* by choice index */
    unsigned       nchoices;           /* highest choice index seen + 1 */
    char           error_type[64];     /* an error object's type/code; "" none */
    int64_t        prompt_tokens;
    int64_t        completion_tokens;
    int64_t        cached_tokens;
    int            usage_reported;     /* the server reported usage */
    uint64_t       token_events;       /* stream events that carried tokens */
    uint64_t       counted_tokens;     /* tokens counted from logprob or token entries */
    uint64_t       completion_chars;   /* bytes of generated text */
    int            tokens_estimated;   /* TAP_GEN_UNSET, 0, 1 (set by tap_gen_finish) */
    unsigned       prompt_derived:1;   /* prompt_tokens was filled by tap_gen_finish */
    unsigned       completion_derived:1;  /* completion_tokens was filled by tap_gen_finish */

    /* hashes */
    uint64_t       prompt_hash, prefix_hash, params_hash, completion_hash;
    unsigned       has_prompt_hash:1;
    unsigned       has_prefix_hash:1;
    unsigned       has_params_hash:1;
    unsigned       has_completion_hash:1;
    XXH3_state_t  *text[TAP_GEN_MAX_CHOICES];  /* created on first text */

    /* confidence */
    double         lp_sum;
    double         lp_min;
    uint64_t       lp_count;
    double         score;              /* classifier score; NAN none */

    /* clocks (monotonic ns), set by tap_gen_tokens() */
    int64_t        first_token;
    int64_t        last_token;
    int64_t        max_gap;            /* longest gap between token events */

    tap_gen_parse_e  req_parse;
    tap_gen_parse_e  resp_parse;
} tap_gen_t;


void tap_gen_init(tap_gen_t *g);
/* Gives the text states back: the thread keeps a few dozen for its next
 * exchanges, which tap_gen_thread_done() frees before the thread exits. */
void tap_gen_cleanup(tap_gen_t *g);
void tap_gen_thread_done(void);

/* Copies a JSON string (or nothing when v is not a string) into dst[TAP_GEN_STR]. */
void tap_gen_copy(char *dst, cJSON *v);

/* The same with the string s[0, len), nothing when s is NULL. */
void tap_gen_copy_str(char *dst, const char *s, size_t len);

/*
 * Request side: called by filters with the parsed request body.
 * tap_gen_hash_chat: messages array (OpenAI/Ollama chat shape); sets prompt,
 * prefix, nmessages, prompt_chars.  tap_gen_hash_prompt: a prompt that is a
 * string, an array of strings, an array of token ids or of arrays of them;
 * `system` (may be NULL) is hashed first as a system message and becomes the
 * prefix.  Both mix in g->model, which must be set first.  Return 0, or -1
 * when the value has an unexpected shape (nothing set then).
 */
int tap_gen_hash_chat(tap_gen_t *g, cJSON *messages);
int tap_gen_hash_prompt(tap_gen_t *g, cJSON *prompt, cJSON *system);

/*
 * Params hash over the sampling parameters set in g (temperature, top_p,
 * top_k, max_tokens, seed, n, penalties, logprobs, top_logprobs) plus any
 * extra JSON value the filter passes (e.g. "stop"; NULL for none).
 */
void tap_gen_hash_params(tap_gen_t *g, cJSON *extra);

/* Reads a JSON number (integer or real) into *out; returns 0, or -1 when v is not a number. */
int tap_gen_number(cJSON *v, double *out);
int tap_gen_integer(cJSON *v, int64_t *out);

/* The same for the number d. */
int tap_gen_integer_of(double d, int64_t *out);

/* Response side. */
void tap_gen_text(tap_gen_t *g, unsigned choice, const char *s, size_t len);
void tap_gen_finish_reason(tap_gen_t *g, unsigned choice, const char *s, size_t len);
void tap_gen_logprob(tap_gen_t *g, double lp);
void tap_gen_prob(tap_gen_t *g, double p);            /* a probability: adds log(p) */
void tap_gen_score(tap_gen_t *g, double v);

/* An event carrying `ntokens` (>= 1) generated tokens arrived at `now`. */
void tap_gen_tokens(tap_gen_t *g, int64_t now, uint64_t ntokens);

/* Usage reported by the server; TAP_GEN_UNSET for a figure it did not give. */
void tap_gen_usage(tap_gen_t *g, int64_t prompt, int64_t completion, int64_t cached);

/* An error object in a response (also one in the middle of a stream). */
void tap_gen_error(tap_gen_t *g, const char *type, size_t len);

/*
 * End of the exchange: completion hash, token counts (reported usage, else
 * counted tokens, else events, else text length / 4, marking
 * tokens_estimated), prompt estimate when none was reported.
 */
void tap_gen_finish(tap_gen_t *g);

/* Confidence figures; 0 when there is no logprob. */
int tap_gen_confidence(const tap_gen_t *g, double *mean, double *min, double *perplexity);

/* The finish reasons joined with ',' into buf; returns buf, or NULL when none. */
const char *tap_gen_finish_reasons(const tap_gen_t *g, char *buf, size_t size);

/*
 * JSON values are cJSON trees.  The lookups below are NULL-safe and
 * type-safe like the library's own: a missing member, an index out of range
 * or a value of another type reads as NULL, 0 or an empty loop.  Strings end
 * at their first U+0000, because cJSON keeps them NUL-terminated without a
 * length.
 */
/* type tests and the string of a value, as cJSON_Is*() and cJSON_GetStringValue(), inline */
static inline int
tap_json_is(const cJSON *v, int type)
{
    return v != NULL && (v->type & 0xff) == type;
}

static inline int
tap_json_is_string(const cJSON *v)
{
    return tap_json_is(v, cJSON_String);
}

static inline int
tap_json_is_number(const cJSON *v)
{
    return tap_json_is(v, cJSON_Number);
}

static inline int
tap_json_is_array(const cJSON *v)
{
    return tap_json_is(v, cJSON_Array);
}

static inline int
tap_json_is_object(const cJSON *v)
{
    return tap_json_is(v, cJSON_Object);
}

static inline int
tap_json_is_null(const cJSON *v)
{
    return tap_json_is(v, cJSON_NULL);
}

static inline int
tap_json_is_true(const cJSON *v)
{
    return tap_json_is(v, cJSON_True);
}

static inline int
tap_json_is_bool(const cJSON *v)
{
    return v != NULL && (v->type & (cJSON_True | cJSON_False)) != 0;
}


static inline char *
tap_json_string(const cJSON *v)
{
    return tap_json_is_string(v) ? v->valuestring : NULL;
}


/* cJSON_GetObjectItemCaseSensitive, with the names compared inline: they are short */
static inline cJSON *
tap_json_get(const cJSON *obj, const char *key)
{
    cJSON       *v;
    const char  *a, *b;

    if (obj == NULL || key == NULL) {
        return NULL;
    }
    for (v = obj->child; v != NULL && v->string != NULL; v = v->next) {
        for (a = v->string, b = key; *a == *b; a++, b++) {
            if (*a == '\0') {
                return v;
            }
        }
    }
    return NULL;
}

/* for each element v of the array a (none when a is not an array), i counting from 0 */
#define tap_json_foreach(a, i, v)                                                           \
    for ((i) = 0, (v) = tap_json_first(a); (v) != NULL; (v) = (v)->next, (i)++)

/*
 * Parses one JSON value filling buf[0, len) (blanks around it allowed); NULL
 * when it is not one.  simdjson parses bodies up to 64 KiB, cJSON the rest
 * and whatever simdjson refuses (json.c); the tree is cJSON's either way.
 */
cJSON *tap_json_parse(const char *buf, size_t len);

/* The same with cJSON's parser alone: the fallback, and the reference the fuzz target holds to. */
cJSON *tap_json_parse_cjson(const char *buf, size_t len);

/*
 * Makes cJSON allocate from a small per-thread arena, which is recycled
 * whenever every value taken from it has been freed: a body's tree is parsed,
 * read and deleted within one call, so it never touches malloc.  Values that
 * do not fit come from malloc as before.  Call it once, before any thread
 * parses.  A tree must be deleted by the thread that made it.
 */
void tap_json_init(void);

/*
 * Deletes a tree from tap_json_parse() (or any cJSON value; NULL is fine).
 * cJSON_Delete() would do too, but only this lets the thread's next tree
 * borrow its strings from the parser again instead of copying them.
 */
void tap_json_delete(cJSON *v);

/* Members of an object or elements of an array; 0 for anything else. */
size_t tap_json_size(const cJSON *v);

/* Element i of an array, or NULL. */
cJSON *tap_json_at(const cJSON *a, size_t i);

/* Is v a number with an integral value that fits an int64_t? */
int tap_json_is_int(const cJSON *v);

static inline cJSON *
tap_json_first(const cJSON *a)
{
    return tap_json_is_array(a) ? a->child : NULL;
}


static inline size_t
tap_json_strlen(const cJSON *v)
{
    return tap_json_is_string(v) && v->valuestring != NULL ? strlen(v->valuestring) : 0;
}

/*
 * RFC 6901 JSON pointer ("" is the whole document, "/a/0/b", "~0" "~1"
 * escapes).  Returns the value (borrowed) or NULL.
 */
cJSON *tap_json_pointer(cJSON *root, const char *ptr);

/*
 * Canonical hashing of any JSON value into a running state: objects with
 * keys sorted, strings decoded, numbers as doubles.
 */
void tap_hash_json(XXH3_state_t *st, cJSON *v);

/* A length-prefixed field into a running state: tag byte, 8-byte length, bytes. */
void tap_hash_field(XXH3_state_t *st, char tag, const char *s, size_t len);

#endif /* TAP_GENAI_H */
