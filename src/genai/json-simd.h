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

#ifdef __cplusplus
}
#endif

#endif /* TAP_JSON_SIMD_H */
