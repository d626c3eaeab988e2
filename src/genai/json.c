/*
 * json.c: request and response bodies as cJSON trees, in a thread's arena.
 *
 * Parsing.  A body up to TAP_JSON_SIMD_MAX bytes is parsed by simdjson and
 * its tree built in one walk (json-simd.cc), twice as fast as cJSON's own
 * parser with the same arena; anything simdjson refuses, and every larger
 * body, is parsed by cJSON, whose verdict then stands.  Either way the tree
 * is a cJSON tree with the same shape and values, deleted with
 * cJSON_Delete().
 *
 * Strings.  A tree from simdjson borrows its strings from the thread's
 * parser, which keeps them until its next parse, as long as no other tree
 * borrows them: the one borrowing tree is remembered, and while it lives a
 * later tree copies its strings.  Bodies are parsed, read and deleted one at
 * a time, so they always borrow.
 *
 * The arena: bump allocation from a thread's own block, a count of live
 * values, and the whole block back when the count reaches zero.  Under
 * AddressSanitizer every value comes from malloc, so that the sanitizer
 * keeps watching each one.
 */

#include "config.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tap_core.h"
#include "genai/genai.h"
#include "genai/json-simd.h"

#if TAP_ASAN
#define TAP_JSON_ARENA  0
#else
#define TAP_JSON_ARENA  32768
#endif

#if TAP_JSON_ARENA > 0

typedef struct {
    size_t   used;
    size_t   live;
    size_t   allocs;                   /* values handed out, ever (from malloc too) */
    cJSON   *alone;                    /* a tree that is all the arena holds, or NULL */
    size_t   alone_live;               /* live and allocs when it was parsed */
    size_t   alone_allocs;
    _Alignas(max_align_t) unsigned char  mem[TAP_JSON_ARENA];
} tap_json_arena_t;

static __thread tap_json_arena_t  tap_json_arena;


static void *
tap_json_alloc(size_t size)
{
    tap_json_arena_t  *a = &tap_json_arena;
    size_t             n = (size + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);

    a->allocs++;
    if (n >= size && n <= sizeof(a->mem) - a->used) {
        a->live++;
        a->used += n;
        return a->mem + a->used - n;
    }
    return malloc(size);
}


static void
tap_json_free(void *p)
{
    tap_json_arena_t  *a = &tap_json_arena;

    if ((unsigned char *) p >= a->mem && (unsigned char *) p < a->mem + sizeof(a->mem)) {
        if (--a->live == 0) {
            a->used = 0;
            a->alone = NULL;
        }
        return;
    }
    free(p);
}

#endif

/* where the fast path takes values from: cJSON's allocator, so that cJSON_Delete() frees them */
static void  *(*tap_json_mem)(size_t) = malloc;

/* the live tree whose strings lie in this thread's simdjson parser, or NULL */
static __thread cJSON  *tap_json_borrower;


void
tap_json_init(void)
{
#if TAP_JSON_ARENA > 0
    cJSON_Hooks  hooks = { tap_json_alloc, tap_json_free };

    cJSON_InitHooks(&hooks);
    tap_json_mem = tap_json_alloc;
#endif
}


cJSON *
tap_json_parse_cjson(const char *buf, size_t len)
{
    cJSON       *v;
    const char  *end = NULL;

    if (len == 0) {
        return NULL;
    }
    v = cJSON_ParseWithLengthOpts(buf, len, &end, 0);
    if (v == NULL) {
        return NULL;
    }
    /* cJSON stops after the value; anything but blanks after it is an error */
    while (end < buf + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) {
        end++;
    }
    if (end != buf + len) {
        cJSON_Delete(v);
        return NULL;
    }
    return v;
}


cJSON *
tap_json_parse(const char *buf, size_t len)
{
    cJSON  *v;
    int     borrow;
#if TAP_JSON_ARENA > 0
    tap_json_arena_t  *a = &tap_json_arena;
    size_t             allocs = a->allocs;
    int                empty = a->live == 0 && tap_json_mem == tap_json_alloc;
#endif

    if (len == 0) {
        return NULL;
    }
    borrow = tap_json_borrower == NULL;
    if (tap_json_simd(buf, len, tap_json_mem, borrow, &v) != 0) {
        cJSON_Delete(v);
        v = tap_json_parse_cjson(buf, len);
        if (v == NULL) {
            return NULL;
        }
    } else if (borrow) {
        tap_json_borrower = v;
    }
#if TAP_JSON_ARENA > 0
    /* every value of the tree, and nothing else, is in the arena */
    if (empty && a->live == a->allocs - allocs) {
        a->alone = v;
        a->alone_live = a->live;
        a->alone_allocs = a->allocs;
    }
#endif
    return v;
}


int
tap_json_chunk(const char *buf, size_t len, const char *message, tap_json_chunk_t *out)
{
    if (tap_json_borrower != NULL) {
        return -1;                     /* its strings are in the parser */
    }
    return tap_json_simd_chunk(buf, len, message, out);
}


void
tap_json_delete(cJSON *v)
{
    if (v != NULL && v == tap_json_borrower) {
        tap_json_borrower = NULL;
    }
#if TAP_JSON_ARENA > 0
    tap_json_arena_t  *a = &tap_json_arena;

    /* the tree is all the arena holds, and nothing came or went since: the
     * arena starts over, without a walk over the tree */
    if (v != NULL && v == a->alone && a->live == a->alone_live
        && a->allocs == a->alone_allocs)
    {
        a->alone = NULL;
        a->live = 0;
        a->used = 0;
        return;
    }
#endif
    cJSON_Delete(v);
}
