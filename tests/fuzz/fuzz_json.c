/*
 * fuzz_json.c: libFuzzer harness for the body parser, tap_json_parse()
 * (src/genai/json.c, json-simd.cc), differential against cJSON's parser.
 *
 * Whatever cJSON accepts (one value, only blanks after it) must be accepted
 * with the same tree: types (ownership flags aside), member names and their
 * order, strings, numbers (equal as doubles, so -0 and 0 are one), valueint,
 * and cJSON's link from the first child to the last.  Whatever cJSON
 * refuses must be refused, unless the input holds a run of 64 or more
 * number characters: a number cJSON cannot read and json.c documents that
 * it reads.  Both parses run with the arena on, one tree alive while the
 * other is made, and the input is a copy of its own size, so that ASan sees
 * any read past it.
 */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "tap_core.h"
#include "genai/genai.h"

#define TAP_FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static int
tap_fuzz_streq(const char *a, const char *b)
{
    return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}


static int
tap_fuzz_same(const cJSON *a, const cJSON *b)
{
    for ( /* void */ ; a != NULL && b != NULL; a = a->next, b = b->next) {
        if ((a->type & 0xff) != (b->type & 0xff) || a->valueint != b->valueint
            || !(a->valuedouble == b->valuedouble)
            || !tap_fuzz_streq(a->string, b->string)
            || !tap_fuzz_streq(a->valuestring, b->valuestring)
            || (a->child == NULL) != (b->child == NULL))
        {
            return 0;
        }
        if (a->child != NULL) {
            if (a->child->prev == NULL || a->child->prev->next != NULL
                || b->child->prev == NULL || b->child->prev->next != NULL
                || !tap_fuzz_same(a->child, b->child))
            {
                return 0;
            }
        }
    }
    return a == NULL && b == NULL;
}


static int
tap_fuzz_long_number(const char *s, size_t len)
{
    size_t  i, run = 0;

    for (i = 0; i < len; i++) {
        run = strchr("0123456789+-.eE", s[i]) != NULL && s[i] != '\0' ? run + 1 : 0;
        if (run >= 64) {
            return 1;
        }
    }
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int   ready;
    char        *buf;
    cJSON       *ours, *ref;

    if (!ready) {
        tap_json_init();
        ready = 1;
    }
    buf = malloc(size ? size : 1);
    TAP_FUZZ_CHECK(buf != NULL);
    if (size) {
        memcpy(buf, data, size);
    }

    ref = tap_json_parse_cjson(buf, size);
    ours = tap_json_parse(buf, size);
    if (ref != NULL) {
        TAP_FUZZ_CHECK(ours != NULL);
        TAP_FUZZ_CHECK(tap_fuzz_same(ours, ref));
    } else if (ours != NULL) {
        TAP_FUZZ_CHECK(tap_fuzz_long_number(buf, size));
    }
    tap_json_delete(ours);
    cJSON_Delete(ref);
    free(buf);
    return 0;
}
