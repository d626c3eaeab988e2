/*
 * json-simd.h: the fast path of tap_json_parse() (json.c), in C++ because
 * simdjson is a C++ library.
 */

#ifndef TAP_JSON_SIMD_H
#define TAP_JSON_SIMD_H

#include <stddef.h>

#include <cjson/cJSON.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest body the fast path takes; its buffers never grow beyond this size. */
#define TAP_JSON_SIMD_MAX  (64 * 1024)

/*
 * Parses buf[0, len) with simdjson and builds the cJSON tree, every value
 * from mem().  With borrow, its strings stay in this thread's parser, valid
 * until the thread borrows again; without, they are copies from mem().
 * Returns 0 and the tree in *out; -1 when simdjson refuses the body, it is
 * larger than TAP_JSON_SIMD_MAX, nests deeper than cJSON would take or
 * mem() fails: the caller then deletes *out (a partial tree, or NULL) and
 * parses with cJSON, whose verdict stands.
 */
int tap_json_simd(const char *buf, size_t len, void *(*mem)(size_t), int borrow, cJSON **out);

/*
 * A chunk of an OpenAI stream, or a whole answer, read straight from
 * simdjson's tape without a tree: what the openai filter takes from each.  Every member is the
 * first of its name, compared and read as the tree would (names and strings
 * end at their first U+0000; numbers are doubles), so that the reader and
 * the tree agree on every chunk the reader takes.
 */
typedef struct {
    const char  *s;                    /* NULL: absent, or not a string */
    size_t       len;
} tap_jstr_t;

typedef struct {
    tap_jstr_t   content, reasoning_content, reasoning;   /* of the delta (or message) */
    tap_jstr_t   text, finish_reason;                     /* of the choice */
    double       index;
    unsigned     is_object:1;          /* else the choice carries nothing */
    unsigned     has_index:1;          /* index is a number */
    unsigned     has_message:1;        /* the delta (or message) is an object */
} tap_json_choice_t;

#define TAP_JSON_CHOICES  8

typedef struct {
    double       value;
    unsigned     set:1;                /* the member is a number */
} tap_jnum_t;

typedef struct {
    tap_jstr_t          id, model;
    tap_jnum_t          prompt_tokens, completion_tokens, cached_tokens;   /* of usage */
    unsigned            has_usage:1;   /* usage is an object */
    unsigned            has_choices:1; /* choices is an array */
    size_t              nchoices;      /* its elements, else 0 */
    tap_json_choice_t   choice[TAP_JSON_CHOICES];   /* [0, nchoices) are filled */
} tap_json_chunk_t;

/*
 * Reads buf[0, len), a JSON object, into *out, the choices' text from their
 * member named message ("delta" in a stream, "message" in a whole answer).
 * Returns -1, and the caller reads the tree instead, for anything else and
 * for what the reader leaves to the tree: an error member that is not null,
 * logprobs objects, tool_calls arrays, more than
 * TAP_JSON_CHOICES choices, a body simdjson refuses or too large for it, a
 * tape long enough to nest deeper than the tree may.  The strings live in
 * the thread's parser until its next parse.  Must not be called while a
 * tree borrows from that parser: tap_json_chunk() (json.c) sees to that.
 */
int tap_json_simd_chunk(const char *buf, size_t len, const char *message, tap_json_chunk_t *out);

/* tap_json_simd_chunk(), or -1 while a tree borrows the thread's parser. */
int tap_json_chunk(const char *buf, size_t len, const char *message, tap_json_chunk_t *out);

#ifdef __cplusplus
}
#endif

#endif /* TAP_JSON_SIMD_H */
