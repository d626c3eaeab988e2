/*
 * test_genai.c: unit tests of the protocol-neutral exchange record (src/genai/genai.c).
 *
 * Hashes: prompt hashes do not change with key order or JSON escaping but do with one character;
 * text parts hash as the same text sent as a string; prefix hashes ignore the last message; the
 * chat and prompt APIs hash apart; params hashes see 1 and 1.0 as equal; completion hashes fed in
 * pieces equal XXH3-64 of the whole text, and several choices combine their digests in index
 * order.  Figures: confidence against hand-computed values, the token count precedence (reported,
 * counted, events, chars / 4) with its estimated flag, token clocks.  Helpers: JSON pointers,
 * integer reads, string copies.  Output is TAP (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cjson/cJSON.h>
#include <xxhash.h>

#include "tap_core.h"
#include "genai/genai.h"

/* cmocka's assert_float_equal() passes on NaN; this does not */
#define TAP_T_NEAR(a, b, eps)  assert_true(fabs((double) (a) - (double) (b)) <= (eps))

typedef struct tap_t_hashes_s {
    int       rc;
    uint64_t  prompt;
    uint64_t  prefix;
    unsigned  has_prefix:1;
    unsigned  nmessages;
    uint64_t  chars;
} tap_t_hashes_t;

typedef struct tap_t_ptr_case_s {
    const char  *ptr;
    const char  *expect;       /* the value's JSON text; NULL: not found */
} tap_t_ptr_case_t;


static cJSON *
tap_t_json(const char *text)
{
    cJSON  *v;

    v = tap_json_parse(text, strlen(text));
    if (v == NULL) {
        fail_msg("bad JSON in test: %s", text);
    }
    return v;
}


static tap_t_hashes_t
tap_t_chat(const char *model, const char *messages)
{
    tap_t_hashes_t  h;
    tap_gen_t       g;
    cJSON          *v;

    tap_gen_init(&g);
    snprintf(g.model, sizeof(g.model), "%s", model);
    v = tap_t_json(messages);

    memset(&h, 0, sizeof(h));
    h.rc = tap_gen_hash_chat(&g, v);
    assert_int_equal(g.has_prompt_hash, h.rc == 0);
    h.prompt = g.prompt_hash;
    h.prefix = g.prefix_hash;
    h.has_prefix = g.has_prefix_hash;
    h.nmessages = g.nmessages;
    h.chars = g.prompt_chars;

    cJSON_Delete(v);
    tap_gen_cleanup(&g);
    return h;
}


static tap_t_hashes_t
tap_t_prompt(const char *model, const char *prompt, const char *system)
{
    tap_t_hashes_t  h;
    tap_gen_t       g;
    cJSON          *p, *s;

    tap_gen_init(&g);
    snprintf(g.model, sizeof(g.model), "%s", model);
    p = tap_t_json(prompt);
    s = system ? tap_t_json(system) : NULL;

    memset(&h, 0, sizeof(h));
    h.rc = tap_gen_hash_prompt(&g, p, s);
    assert_int_equal(g.has_prompt_hash, h.rc == 0);
    h.prompt = g.prompt_hash;
    h.prefix = g.prefix_hash;
    h.has_prefix = g.has_prefix_hash;
    h.chars = g.prompt_chars;

    cJSON_Delete(p);
    cJSON_Delete(s);
    tap_gen_cleanup(&g);
    return h;
}


static uint64_t
tap_t_json_hash(const char *text)
{
    XXH3_state_t  *st;
    uint64_t       h;
    cJSON         *v;

    v = tap_t_json(text);
    st = XXH3_createState();
    assert_non_null(st);
    XXH3_64bits_reset(st);
    tap_hash_json(st, v);
    h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    cJSON_Delete(v);
    return h;
}


static void
test_init(void **state)
{
    tap_gen_t  g;

    tap_gen_init(&g);
    assert_int_equal(g.stream, TAP_GEN_UNSET);
    assert_int_equal(g.max_tokens, TAP_GEN_UNSET);
    assert_int_equal(g.seed, TAP_GEN_UNSET);
    assert_int_equal(g.prompt_tokens, TAP_GEN_UNSET);
    assert_int_equal(g.completion_tokens, TAP_GEN_UNSET);
    assert_int_equal(g.cached_tokens, TAP_GEN_UNSET);
    assert_int_equal(g.tokens_estimated, TAP_GEN_UNSET);
    assert_int_equal(g.first_token, TAP_GEN_UNSET);
    assert_true(isnan(g.temperature));
    assert_true(isnan(g.score));
    assert_int_equal(g.nchoices, 0);
    assert_false(g.has_prompt_hash || g.has_prefix_hash || g.has_params_hash
                 || g.has_completion_hash);
    assert_int_equal(tap_gen_confidence(&g, NULL, NULL, NULL), 0);

    /* nothing at all: no hash and no figure */
    tap_gen_finish(&g);
    assert_false(g.has_completion_hash);
    assert_int_equal(g.completion_tokens, TAP_GEN_UNSET);
    assert_int_equal(g.tokens_estimated, TAP_GEN_UNSET);
    tap_gen_cleanup(&g);
    tap_gen_cleanup(&g);
}


static void
test_hash_json_canonical(void **state)
{
    /* key order, nested too, and escapes */
    assert_int_equal(tap_t_json_hash("{\"a\":1,\"b\":{\"x\":[1,2],\"y\":\"\\u00e9\\/\"}}"),
                     tap_t_json_hash("{\"b\":{\"y\":\"\xc3\xa9/\",\"x\":[1,2]},\"a\":1}"));

    /* numbers as doubles */
    assert_int_equal(tap_t_json_hash("1"), tap_t_json_hash("1.0"));
    assert_int_equal(tap_t_json_hash("0"), tap_t_json_hash("-0.0"));
    assert_int_equal(tap_t_json_hash("[100]"), tap_t_json_hash("[1e2]"));

    /* but types, order in arrays and embedded NULs count */
    assert_int_not_equal(tap_t_json_hash("1"), tap_t_json_hash("\"1\""));
    assert_int_not_equal(tap_t_json_hash("[1,2]"), tap_t_json_hash("[2,1]"));
    assert_int_not_equal(tap_t_json_hash("[]"), tap_t_json_hash("{}"));
    assert_int_not_equal(tap_t_json_hash("null"), tap_t_json_hash("false"));
    assert_int_not_equal(tap_t_json_hash("true"), tap_t_json_hash("false"));
    /* cJSON keeps strings NUL-terminated: a string ends at its first U+0000 */
    assert_int_equal(tap_t_json_hash("\"a\\u0000b\""), tap_t_json_hash("\"a\""));
    assert_int_not_equal(tap_t_json_hash("[\"ab\",\"c\"]"), tap_t_json_hash("[\"a\",\"bc\"]"));
    assert_int_not_equal(tap_t_json_hash("{\"a\":\"b\"}"), tap_t_json_hash("{\"ab\":\"\"}"));
    assert_int_not_equal(tap_t_json_hash("[[1],2]"), tap_t_json_hash("[[1,2]]"));
    assert_int_not_equal(tap_t_json_hash("{\"a\":1}"), tap_t_json_hash("{\"a\":2}"));
}


static void
test_hash_json_large_object(void **state)
{
    char      a[1024], b[1024];
    size_t    na, nb;
    int       i;

    /* more keys than the sort's stack array, in opposite orders */
    na = (size_t) snprintf(a, sizeof(a), "{");
    nb = (size_t) snprintf(b, sizeof(b), "{");
    for (i = 0; i < 40; i++) {
        na += (size_t) snprintf(a + na, sizeof(a) - na, "%s\"k%d\":%d", i ? "," : "", i, i);
        nb += (size_t) snprintf(b + nb, sizeof(b) - nb, "%s\"k%d\":%d", i ? "," : "", 39 - i,
                                39 - i);
    }
    snprintf(a + na, sizeof(a) - na, "}");
    snprintf(b + nb, sizeof(b) - nb, "}");

    assert_int_equal(tap_t_json_hash(a), tap_t_json_hash(b));
    b[nb - 1] = '8';                      /* "k0":0 becomes "k0":8 */
    assert_int_not_equal(tap_t_json_hash(a), tap_t_json_hash(b));
}


static void
test_hash_field(void **state)
{
    XXH3_state_t  *st;
    uint64_t       h1, h2;

    /* field boundaries are part of the hash */
    st = XXH3_createState();
    assert_non_null(st);
    XXH3_64bits_reset(st);
    tap_hash_field(st, 'C', "ab", 2);
    tap_hash_field(st, 'C', "c", 1);
    h1 = XXH3_64bits_digest(st);
    XXH3_64bits_reset(st);
    tap_hash_field(st, 'C', "a", 1);
    tap_hash_field(st, 'C', "bc", 2);
    h2 = XXH3_64bits_digest(st);
    assert_int_not_equal(h1, h2);

    XXH3_64bits_reset(st);
    tap_hash_field(st, 'C', "a", 1);
    h1 = XXH3_64bits_digest(st);
    XXH3_64bits_reset(st);
    tap_hash_field(st, 'S', "a", 1);
    h2 = XXH3_64bits_digest(st);
    assert_int_not_equal(h1, h2);

    /* tag, 8-byte little-endian length, bytes */
    XXH3_64bits_reset(st);
    tap_hash_field(st, 'C', "xy", 2);
    assert_int_equal(XXH3_64bits_digest(st), XXH3_64bits("C\x02\0\0\0\0\0\0\0xy", 11));
    XXH3_freeState(st);
}


static void
test_chat_key_order_and_escapes(void **state)
{
    tap_t_hashes_t  a, b, c, d;

    a = tap_t_chat("m1",
        "[{\"role\":\"system\",\"content\":\"Be \\\"brief\\\"\"},"
        " {\"role\":\"user\",\"name\":\"bob\",\"content\":\"caf\\u00e9 \\/ na\\u00efve \\ud83d\\ude00\"}]");
    b = tap_t_chat("m1",
        "[{\"content\":\"Be \\\"brief\\\"\",\"role\":\"system\"},"
        " {\"content\":\"caf\xc3\xa9 / na\xc3\xafve \xf0\x9f\x98\x80\",\"name\":\"bob\",\"role\":\"user\"}]");
    c = tap_t_chat("m1",
        "[{\"content\":\"Be \\\"brief\\\"\",\"role\":\"system\"},"
        " {\"content\":\"caf\xc3\xa9 / na\xc3\xafve \xf0\x9f\x98\x81\",\"name\":\"bob\",\"role\":\"user\"}]");
    d = tap_t_chat("m2",
        "[{\"content\":\"Be \\\"brief\\\"\",\"role\":\"system\"},"
        " {\"content\":\"caf\xc3\xa9 / na\xc3\xafve \xf0\x9f\x98\x80\",\"name\":\"bob\",\"role\":\"user\"}]");

    assert_int_equal(a.rc, 0);
    assert_int_equal(b.rc, 0);
    assert_int_equal(a.prompt, b.prompt);
    assert_int_equal(a.nmessages, 2);
    assert_int_equal(a.chars, b.chars);
    assert_int_equal(a.chars, strlen("Be \"brief\"") + strlen("caf\xc3\xa9 / na\xc3\xafve ") + 4);

    /* one character, the model, the role, the name */
    assert_int_not_equal(b.prompt, c.prompt);
    assert_int_equal(b.prefix, c.prefix);
    assert_int_not_equal(b.prompt, d.prompt);
    assert_int_not_equal(tap_t_chat("m", "[{\"role\":\"user\",\"content\":\"x\"}]").prompt,
                         tap_t_chat("m", "[{\"role\":\"assistant\",\"content\":\"x\"}]").prompt);
    assert_int_not_equal(
        tap_t_chat("m", "[{\"role\":\"user\",\"content\":\"x\"}]").prompt,
        tap_t_chat("m", "[{\"role\":\"user\",\"name\":\"a\",\"content\":\"x\"}]").prompt);

    /* members that are not part of the prompt do not count */
    assert_int_equal(
        tap_t_chat("m", "[{\"role\":\"user\",\"content\":\"x\"}]").prompt,
        tap_t_chat("m", "[{\"role\":\"user\",\"content\":\"x\",\"x-extra\":1}]").prompt);
}


static void
test_chat_parts(void **state)
{
    uint64_t  s, p;

    s = tap_t_chat("m", "[{\"role\":\"user\",\"content\":\"ab\"}]").prompt;
    p = tap_t_chat("m", "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
                        "{\"text\":\"b\",\"type\":\"text\"}]}]").prompt;
    assert_int_equal(s, p);
    assert_int_equal(tap_t_chat("m", "[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                                     "\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]").chars,
                     2);

    /* the order of the text matters */
    assert_int_not_equal(s, tap_t_chat("m", "[{\"role\":\"user\",\"content\":["
                                            "{\"type\":\"text\",\"text\":\"b\"},"
                                            "{\"type\":\"text\",\"text\":\"a\"}]}]").prompt);

    /* a non-text part adds to the hash, canonically */
    p = tap_t_chat("m", "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"ab\"},"
                        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"u\",\"detail\":\"low\"}}]}]")
            .prompt;
    assert_int_not_equal(s, p);
    assert_int_equal(p, tap_t_chat("m", "[{\"content\":[{\"image_url\":{\"detail\":\"low\","
                                        "\"url\":\"u\"},\"type\":\"image_url\"},"
                                        "{\"text\":\"ab\",\"type\":\"text\"}],\"role\":\"user\"}]")
                            .prompt);
    assert_int_not_equal(p, tap_t_chat("m", "[{\"role\":\"user\",\"content\":["
                                            "{\"type\":\"text\",\"text\":\"ab\"},"
                                            "{\"type\":\"image_url\",\"image_url\":{\"url\":\"v\","
                                            "\"detail\":\"low\"}}]}]").prompt);

    /* null content, absent content and "" are: nothing, nothing, empty text */
    assert_int_equal(tap_t_chat("m", "[{\"role\":\"assistant\",\"content\":null}]").prompt,
                     tap_t_chat("m", "[{\"role\":\"assistant\"}]").prompt);
    assert_int_not_equal(tap_t_chat("m", "[{\"role\":\"assistant\",\"content\":null}]").prompt,
                         tap_t_chat("m", "[{\"role\":\"assistant\",\"content\":\"\"}]").prompt);

    /* tool calls and tool results */
    assert_int_not_equal(
        tap_t_chat("m", "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\","
                        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}]")
            .prompt,
        tap_t_chat("m", "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"1\","
                        "\"type\":\"function\",\"function\":{\"name\":\"g\",\"arguments\":\"{}\"}}]}]")
            .prompt);
    assert_int_not_equal(
        tap_t_chat("m", "[{\"role\":\"tool\",\"tool_call_id\":\"1\",\"content\":\"r\"}]").prompt,
        tap_t_chat("m", "[{\"role\":\"tool\",\"tool_call_id\":\"2\",\"content\":\"r\"}]").prompt);
}


static void
test_chat_prefix_and_shapes(void **state)
{
    tap_t_hashes_t  a, b, ab, one;
    tap_gen_t       g;
    cJSON          *v;

    a = tap_t_chat("m", "[{\"role\":\"system\",\"content\":\"S\"},"
                        "{\"role\":\"user\",\"content\":\"q1\"},"
                        "{\"role\":\"assistant\",\"content\":\"r1\"},"
                        "{\"role\":\"user\",\"content\":\"q2\"}]");
    b = tap_t_chat("m", "[{\"role\":\"system\",\"content\":\"S\"},"
                        "{\"role\":\"user\",\"content\":\"q1\"},"
                        "{\"role\":\"assistant\",\"content\":\"r1\"},"
                        "{\"role\":\"user\",\"content\":\"another question\"}]");
    ab = tap_t_chat("m", "[{\"role\":\"system\",\"content\":\"S\"},"
                         "{\"role\":\"user\",\"content\":\"q1\"},"
                         "{\"role\":\"assistant\",\"content\":\"r1\"}]");
    assert_true(a.has_prefix && b.has_prefix);
    assert_int_equal(a.prefix, b.prefix);
    assert_int_not_equal(a.prompt, b.prompt);
    assert_int_not_equal(a.prefix, a.prompt);
    /* the prefix is the prompt hash of the conversation without its last message */
    assert_int_equal(a.prefix, ab.prompt);
    assert_int_not_equal(a.prefix, ab.prefix);

    one = tap_t_chat("m", "[{\"role\":\"user\",\"content\":\"q\"}]");
    assert_int_equal(one.rc, 0);
    assert_false(one.has_prefix);
    assert_int_equal(tap_t_chat("m", "[]").rc, 0);

    /* shapes that are refused leave g alone */
    tap_gen_init(&g);
    g.prompt_chars = 7;
    v = tap_t_json("[{\"role\":\"user\",\"content\":\"q\"}, \"text\"]");
    assert_int_equal(tap_gen_hash_chat(&g, v), -1);
    cJSON_Delete(v);
    v = tap_t_json("{\"role\":\"user\",\"content\":\"q\"}");
    assert_int_equal(tap_gen_hash_chat(&g, v), -1);
    cJSON_Delete(v);
    assert_int_equal(tap_gen_hash_chat(&g, NULL), -1);
    assert_false(g.has_prompt_hash || g.has_prefix_hash);
    assert_int_equal(g.nmessages, 0);
    assert_int_equal(g.prompt_chars, 7);
    tap_gen_cleanup(&g);
}


static void
test_prompt(void **state)
{
    tap_t_hashes_t  p, c, s1, s2, none, empty;

    p = tap_t_prompt("m", "\"hi\"", NULL);
    c = tap_t_chat("m", "[{\"role\":\"user\",\"content\":\"hi\"}]");
    assert_int_equal(p.rc, 0);
    assert_int_not_equal(p.prompt, c.prompt);
    assert_false(p.has_prefix);
    assert_int_equal(p.chars, 2);

    assert_int_equal(p.prompt, tap_t_prompt("m", "[\"hi\"]", NULL).prompt);
    assert_int_equal(p.prompt, tap_t_prompt("m", "\"h\\u0069\"", NULL).prompt);
    assert_int_not_equal(p.prompt, tap_t_prompt("m", "\"ho\"", NULL).prompt);
    assert_int_not_equal(p.prompt, tap_t_prompt("n", "\"hi\"", NULL).prompt);
    assert_int_not_equal(tap_t_prompt("m", "[\"a\",\"b\"]", NULL).prompt,
                         tap_t_prompt("m", "[\"ab\"]", NULL).prompt);

    /* token ids */
    assert_int_equal(tap_t_prompt("m", "[1,2,3]", NULL).rc, 0);
    assert_int_equal(tap_t_prompt("m", "[1,2,3]", NULL).prompt,
                     tap_t_prompt("m", "[[1,2,3]]", NULL).prompt);
    assert_int_not_equal(tap_t_prompt("m", "[1,2,3]", NULL).prompt,
                         tap_t_prompt("m", "[1,2,4]", NULL).prompt);
    assert_int_not_equal(tap_t_prompt("m", "[[1,2],[3]]", NULL).prompt,
                         tap_t_prompt("m", "[[1],[2,3]]", NULL).prompt);
    assert_int_equal(tap_t_prompt("m", "[1,2,3]", NULL).chars, 0);
    assert_int_equal(tap_t_prompt("m", "[]", NULL).rc, 0);

    /* other shapes */
    assert_int_equal(tap_t_prompt("m", "[1,\"a\"]", NULL).rc, -1);
    assert_int_equal(tap_t_prompt("m", "[[1],\"a\"]", NULL).rc, -1);
    assert_int_equal(tap_t_prompt("m", "[[1,\"a\"]]", NULL).rc, -1);
    assert_int_equal(tap_t_prompt("m", "[1.5]", NULL).rc, -1);
    assert_int_equal(tap_t_prompt("m", "{\"a\":1}", NULL).rc, -1);
    assert_int_equal(tap_t_prompt("m", "3", NULL).rc, -1);
    assert_int_equal(tap_t_prompt("m", "\"hi\"", "3").rc, -1);

    /* the system prompt: part of the prompt, and the prefix, the same as a chat's */
    s1 = tap_t_prompt("m", "\"hi\"", "\"You are terse.\"");
    s2 = tap_t_prompt("m", "\"bye\"", "\"You are terse.\"");
    c = tap_t_chat("m", "[{\"role\":\"system\",\"content\":\"You are terse.\"},"
                        "{\"role\":\"user\",\"content\":\"anything\"}]");
    assert_int_not_equal(s1.prompt, p.prompt);
    assert_true(s1.has_prefix && s2.has_prefix && c.has_prefix);
    assert_int_equal(s1.prefix, s2.prefix);
    assert_int_equal(s1.prefix, c.prefix);
    assert_int_equal(s1.chars, 2 + strlen("You are terse."));
    assert_int_equal(s1.prompt,
                     tap_t_prompt("m", "\"hi\"", "[{\"type\":\"text\",\"text\":\"You are \"},"
                                                 "{\"type\":\"text\",\"text\":\"terse.\"}]").prompt);

    none = tap_t_prompt("m", "\"hi\"", "null");
    empty = tap_t_prompt("m", "\"hi\"", "\"\"");
    assert_int_equal(none.prompt, p.prompt);
    assert_false(none.has_prefix);
    assert_false(empty.has_prefix);
}


static uint64_t
tap_t_params(const char *temperature, cJSON *extra)
{
    tap_gen_t  g;
    cJSON     *v;
    double     d = 0;

    tap_gen_init(&g);
    if (temperature != NULL) {
        v = tap_t_json(temperature);
        assert_int_equal(tap_gen_number(v, &d), 0);
        g.temperature = d;
        cJSON_Delete(v);
    }
    g.max_tokens = 100;
    tap_gen_hash_params(&g, extra);
    assert_true(g.has_params_hash);
    tap_gen_cleanup(&g);
    return g.params_hash;
}


static void
test_params(void **state)
{
    tap_gen_t  g1, g2;
    cJSON     *stop1, *stop2;

    assert_int_equal(tap_t_params("1", NULL), tap_t_params("1.0", NULL));
    assert_int_equal(tap_t_params("0.7", NULL), tap_t_params("7e-1", NULL));
    assert_int_not_equal(tap_t_params("0.7", NULL), tap_t_params("0.8", NULL));
    assert_int_not_equal(tap_t_params("0.7", NULL), tap_t_params(NULL, NULL));

    stop1 = tap_t_json("[\"\\n\",\"END\"]");
    stop2 = tap_t_json("[\"\\n\",\"STOP\"]");
    assert_int_not_equal(tap_t_params("1", stop1), tap_t_params("1", stop2));
    assert_int_not_equal(tap_t_params("1", stop1), tap_t_params("1", NULL));
    assert_int_equal(tap_t_params("1", stop1), tap_t_params("1.0", stop1));
    cJSON_Delete(stop1);
    cJSON_Delete(stop2);

    /* no parameter at all: a hash all the same, the same for everyone */
    tap_gen_init(&g1);
    tap_gen_init(&g2);
    tap_gen_hash_params(&g1, NULL);
    tap_gen_hash_params(&g2, NULL);
    assert_true(g1.has_params_hash);
    assert_int_equal(g1.params_hash, g2.params_hash);

    /* which parameter holds a value matters, and large seeds are exact */
    g1.top_p = 0.5;
    g2.temperature = 0.5;
    tap_gen_hash_params(&g1, NULL);
    tap_gen_hash_params(&g2, NULL);
    assert_int_not_equal(g1.params_hash, g2.params_hash);
    tap_gen_init(&g1);
    tap_gen_init(&g2);
    g1.seed = 9007199254740993LL;
    g2.seed = 9007199254740992LL;
    tap_gen_hash_params(&g1, NULL);
    tap_gen_hash_params(&g2, NULL);
    assert_int_not_equal(g1.params_hash, g2.params_hash);
}


static void
test_number_integer(void **state)
{
    cJSON    *v;
    int64_t   i = 0;
    double    d = 0;

    v = cJSON_CreateNumber(3.0);
    assert_int_equal(tap_gen_integer(v, &i), 0);
    assert_int_equal(i, 3);
    cJSON_Delete(v);

    i = 42;
    v = cJSON_CreateNumber(3.5);
    assert_int_equal(tap_gen_integer(v, &i), -1);
    assert_int_equal(i, 42);
    cJSON_Delete(v);

    v = cJSON_CreateNumber(1e30);
    assert_int_equal(tap_gen_integer(v, &i), -1);
    cJSON_Delete(v);

    v = cJSON_CreateNumber(9223372036854775808.0);
    assert_int_equal(tap_gen_integer(v, &i), -1);
    cJSON_Delete(v);

    v = cJSON_CreateNumber(-9223372036854775808.0);
    assert_int_equal(tap_gen_integer(v, &i), 0);
    assert_true(i == INT64_MIN);
    cJSON_Delete(v);

    v = cJSON_CreateNumber(-7);
    assert_int_equal(tap_gen_integer(v, &i), 0);
    assert_int_equal(i, -7);
    assert_int_equal(tap_gen_number(v, &d), 0);
    assert_true(d == -7.0);
    cJSON_Delete(v);

    v = cJSON_CreateString("3");
    assert_int_equal(tap_gen_integer(v, &i), -1);
    assert_int_equal(tap_gen_number(v, &d), -1);
    cJSON_Delete(v);

    assert_int_equal(tap_gen_integer(NULL, &i), -1);
    assert_int_equal(tap_gen_number(NULL, &d), -1);
    v = cJSON_CreateTrue();
    assert_int_equal(tap_gen_number(v, &d), -1);
    cJSON_Delete(v);
}


static void
test_completion_hash(void **state)
{
    const char  *text = "The quick brown fox jumps over the lazy dog. \xc3\xa9";
    tap_gen_t    g;
    size_t       i, len;

    len = strlen(text);

    /* in pieces, one byte at a time (splitting a UTF-8 sequence), equals the whole */
    tap_gen_init(&g);
    for (i = 0; i < len; i++) {
        tap_gen_text(&g, 0, text + i, 1);
    }
    tap_gen_finish(&g);
    assert_true(g.has_completion_hash);
    assert_int_equal(g.completion_hash, XXH3_64bits(text, len));
    assert_int_equal(g.completion_chars, len);
    assert_int_equal(g.nchoices, 1);
    tap_gen_finish(&g);
    assert_int_equal(g.completion_hash, XXH3_64bits(text, len));
    tap_gen_cleanup(&g);

    /* an empty completion is the hash of "" */
    tap_gen_init(&g);
    tap_gen_text(&g, 0, NULL, 0);
    tap_gen_text(&g, 0, "", 0);
    tap_gen_finish(&g);
    assert_true(g.has_completion_hash);
    assert_int_equal(g.completion_hash, XXH3_64bits("", 0));
    tap_gen_cleanup(&g);

    /* a finish reason without text is no completion hash */
    tap_gen_init(&g);
    tap_gen_finish_reason(&g, 0, "stop", 4);
    tap_gen_finish(&g);
    assert_false(g.has_completion_hash);
    tap_gen_cleanup(&g);
}


static void
test_completion_choices(void **state)
{
    unsigned char  buf[24];
    uint64_t       d[3];
    tap_gen_t      g;
    int            i, j;

    tap_gen_init(&g);
    tap_gen_text(&g, 2, "cc", 2);
    tap_gen_text(&g, 0, "a", 1);
    tap_gen_text(&g, 0, "a", 1);
    tap_gen_finish_reason(&g, 1, "length", 6);
    tap_gen_text(&g, TAP_GEN_MAX_CHOICES + 3, "zzzz", 4);      /* counted, not hashed */
    assert_int_equal(g.nchoices, TAP_GEN_MAX_CHOICES + 4);
    tap_gen_finish(&g);

    /* choices 0..7: "aa", none, "cc", then five without text */
    d[0] = XXH3_64bits("aa", 2);
    d[1] = XXH3_64bits("", 0);
    d[2] = XXH3_64bits("cc", 2);
    assert_true(g.has_completion_hash);
    {
        unsigned char  all[8 * TAP_GEN_MAX_CHOICES];

        for (i = 0; i < TAP_GEN_MAX_CHOICES; i++) {
            for (j = 0; j < 8; j++) {
                all[8 * i + j] = (unsigned char) ((i < 3 ? d[i] : d[1]) >> (8 * j));
            }
        }
        assert_int_equal(g.completion_hash, XXH3_64bits(all, sizeof(all)));
    }
    assert_int_equal(g.completion_chars, 8);
    tap_gen_cleanup(&g);

    /* three choices */
    tap_gen_init(&g);
    tap_gen_text(&g, 1, "b", 1);
    tap_gen_text(&g, 0, "aa", 2);
    tap_gen_text(&g, 2, "cc", 2);
    tap_gen_finish(&g);
    d[1] = XXH3_64bits("b", 1);
    for (i = 0; i < 3; i++) {
        for (j = 0; j < 8; j++) {
            buf[8 * i + j] = (unsigned char) (d[i] >> (8 * j));
        }
    }
    assert_int_equal(g.completion_hash, XXH3_64bits(buf, sizeof(buf)));
    assert_int_not_equal(g.completion_hash, XXH3_64bits("aa", 2));
    tap_gen_cleanup(&g);
}


static void
test_confidence(void **state)
{
    double     mean, min, ppl;
    tap_gen_t  g;

    tap_gen_init(&g);
    tap_gen_logprob(&g, -0.1);
    tap_gen_logprob(&g, NAN);
    tap_gen_logprob(&g, -0.3);
    tap_gen_logprob(&g, -INFINITY);
    tap_gen_logprob(&g, -0.2);
    assert_int_equal(g.lp_count, 3);
    assert_int_equal(tap_gen_confidence(&g, &mean, &min, &ppl), 1);
    TAP_T_NEAR(mean, -0.2, 1e-12);
    TAP_T_NEAR(min, -0.3, 1e-12);
    TAP_T_NEAR(ppl, 1.2214027581601699, 1e-12);
    assert_int_equal(tap_gen_confidence(&g, NULL, NULL, NULL), 1);
    tap_gen_cleanup(&g);

    tap_gen_init(&g);
    tap_gen_prob(&g, 0.5);
    tap_gen_prob(&g, 0.25);
    tap_gen_prob(&g, 0);
    tap_gen_prob(&g, 1.5);
    tap_gen_prob(&g, NAN);
    assert_int_equal(g.lp_count, 2);
    assert_int_equal(tap_gen_confidence(&g, &mean, &min, &ppl), 1);
    TAP_T_NEAR(mean, (log(0.5) + log(0.25)) / 2, 1e-12);
    TAP_T_NEAR(mean, -1.0397207708399179, 1e-12);
    TAP_T_NEAR(min, log(0.25), 1e-12);
    TAP_T_NEAR(ppl, 2.8284271247461903, 1e-12);         /* sqrt(8) */

    tap_gen_prob(&g, 1);
    assert_int_equal(g.lp_count, 3);
    tap_gen_score(&g, 0.875);
    tap_gen_score(&g, NAN);
    TAP_T_NEAR(g.score, 0.875, 0);
    tap_gen_cleanup(&g);
}


static void
test_tokens_estimate(void **state)
{
    tap_gen_t  g;

    /* text only: ceil(chars / 4), estimated */
    tap_gen_init(&g);
    tap_gen_text(&g, 0, "123456789", 9);
    tap_gen_finish(&g);
    assert_int_equal(g.completion_tokens, 3);
    assert_int_equal(g.prompt_tokens, TAP_GEN_UNSET);
    assert_int_equal(g.tokens_estimated, 1);

    /* events beat characters, and are not an estimate */
    tap_gen_tokens(&g, 1000, 1);
    tap_gen_tokens(&g, 1500, 1);
    tap_gen_finish(&g);
    assert_int_equal(g.completion_tokens, 2);
    assert_int_equal(g.tokens_estimated, 0);

    /* counted tokens beat events */
    g.counted_tokens = 5;
    tap_gen_finish(&g);
    assert_int_equal(g.completion_tokens, 5);
    assert_int_equal(g.tokens_estimated, 0);
    tap_gen_finish(&g);
    assert_int_equal(g.completion_tokens, 5);

    /* reported usage beats everything, also when it arrives after a finish */
    tap_gen_usage(&g, TAP_GEN_UNSET, 7, TAP_GEN_UNSET);
    assert_true(g.usage_reported);
    tap_gen_finish(&g);
    assert_int_equal(g.completion_tokens, 7);
    assert_int_equal(g.tokens_estimated, 0);
    assert_int_equal(g.cached_tokens, TAP_GEN_UNSET);

    /* a prompt estimate marks the figures estimated */
    g.prompt_chars = 10;
    tap_gen_finish(&g);
    assert_int_equal(g.prompt_tokens, 3);
    assert_int_equal(g.tokens_estimated, 1);
    tap_gen_usage(&g, 11, TAP_GEN_UNSET, 4);
    tap_gen_finish(&g);
    assert_int_equal(g.prompt_tokens, 11);
    assert_int_equal(g.completion_tokens, 7);
    assert_int_equal(g.cached_tokens, 4);
    assert_int_equal(g.tokens_estimated, 0);
    tap_gen_cleanup(&g);

    /* a reported zero stays zero */
    tap_gen_init(&g);
    tap_gen_text(&g, 0, "abcdefgh", 8);
    tap_gen_usage(&g, 0, 0, TAP_GEN_UNSET);
    tap_gen_finish(&g);
    assert_int_equal(g.completion_tokens, 0);
    assert_int_equal(g.prompt_tokens, 0);
    assert_int_equal(g.tokens_estimated, 0);
    tap_gen_cleanup(&g);

    /* prompt text only */
    tap_gen_init(&g);
    g.prompt_chars = 4;
    tap_gen_finish(&g);
    assert_int_equal(g.prompt_tokens, 1);
    assert_int_equal(g.completion_tokens, TAP_GEN_UNSET);
    assert_int_equal(g.tokens_estimated, 1);
    tap_gen_cleanup(&g);
}


static void
test_token_clock(void **state)
{
    tap_gen_t  g;

    tap_gen_init(&g);
    tap_gen_tokens(&g, 100, 1);
    assert_int_equal(g.first_token, 100);
    assert_int_equal(g.last_token, 100);
    assert_int_equal(g.max_gap, TAP_GEN_UNSET);

    tap_gen_tokens(&g, 130, 1);
    tap_gen_tokens(&g, 200, 3);
    tap_gen_tokens(&g, 210, 0);              /* carried no token */
    tap_gen_tokens(&g, 220, 1);
    assert_int_equal(g.first_token, 100);
    assert_int_equal(g.last_token, 220);
    assert_int_equal(g.max_gap, 70);
    assert_int_equal(g.token_events, 4);
    tap_gen_cleanup(&g);
}


/*
 * Trees from the per-thread arena and from malloc, alive at the same time and
 * freed in any order: a large body overflows the arena in the middle of its
 * parse, and a small one parsed while it lives still reads right.
 */
static void
test_json_arena(void **state)
{
    cJSON   *small, *big, *again, *v;
    char    *text;
    size_t   i, n = 4000, len = 0;

    (void) state;

    text = malloc(n * 32 + 16);
    assert_non_null(text);
    text[len++] = '[';
    for (i = 0; i < n; i++) {
        len += (size_t) sprintf(text + len, "%s{\"k%zu\":\"v%zu\"}", i ? "," : "", i, i);
    }
    text[len++] = ']';

    small = tap_json_parse("{\"a\":1}", 7);
    assert_non_null(small);
    big = tap_json_parse(text, len);
    assert_non_null(big);
    assert_int_equal(tap_json_size(big), n);
    v = tap_json_get(tap_json_at(big, n - 1), "k3999");
    assert_string_equal(v->valuestring, "v3999");

    cJSON_Delete(small);
    again = tap_json_parse("{\"b\":[true,\"x\"]}", 16);
    assert_non_null(again);
    assert_string_equal(tap_json_at(tap_json_get(again, "b"), 1)->valuestring, "x");
    v = tap_json_get(tap_json_at(big, 0), "k0");
    assert_string_equal(v->valuestring, "v0");

    cJSON_Delete(big);
    cJSON_Delete(again);
    for (i = 0; i < 1000; i++) {
        again = tap_json_parse("[1,2,3]", 7);
        assert_int_equal(tap_json_size(again), 3);
        tap_json_delete(again);
    }

    /* a tree deleted while a later one lives must not take the later one with it */
    small = tap_json_parse("{\"a\":\"first\"}", strlen("{\"a\":\"first\"}"));
    again = tap_json_parse("{\"b\":\"second\"}", strlen("{\"b\":\"second\"}"));
    assert_non_null(small);
    assert_non_null(again);
    tap_json_delete(small);
    small = tap_json_parse("{\"c\":\"third!\"}", strlen("{\"c\":\"third!\"}"));
    assert_string_equal(tap_json_get(again, "b")->valuestring, "second");
    assert_string_equal(tap_json_get(small, "c")->valuestring, "third!");
    tap_json_delete(again);
    tap_json_delete(small);

    /* values made after the parse and still alive survive the tree */
    small = tap_json_parse("{\"a\":\"first\"}", strlen("{\"a\":\"first\"}"));
    v = cJSON_CreateString("made later");
    tap_json_delete(small);
    again = tap_json_parse("{\"b\":\"overwrite\"}", strlen("{\"b\":\"overwrite\"}"));
    assert_string_equal(v->valuestring, "made later");
    cJSON_Delete(v);
    tap_json_delete(again);
    tap_json_delete(NULL);
    free(text);
}


/*
 * The parser (json.c): simdjson's fast path and cJSON's fallback give one
 * tree.  Checked here: what json.c documents beyond tests/fuzz/fuzz_json.c,
 * which holds every body to cJSON's tree: the nesting limit, a number too
 * long for cJSON, strings cut at U+0000, surrogates, saturated valueint,
 * the link to the last child, a byte order mark, a body past the fast path.
 */
static void
test_json_parse(void **state)
{
    cJSON   *v;
    char    *text;
    size_t   i, n = 1001, len;

    (void) state;

    text = malloc(2 * n + 80 * 1024);
    assert_non_null(text);
    for (i = 0; i < n; i++) {
        text[i] = '[';
        text[2 * n - 1 - i] = ']';
    }
    v = tap_json_parse(text + 1, 2 * n - 2);          /* 1,000 levels */
    assert_non_null(v);
    tap_json_delete(v);
    assert_null(tap_json_parse(text, 2 * n));          /* 1,001 */

    len = (size_t) sprintf(text, "[1.%070d]", 0);
    v = tap_json_parse(text, len);
    assert_non_null(v);
    assert_true(tap_json_at(v, 0)->valuedouble == 1.0);
    tap_json_delete(v);

    v = tap_t_json("[\"a\\u0000b\", \"\\ud83d\\ude00\", 2147483648, -2147483649, 18446744073709551616, -0.5]");
    assert_string_equal(tap_json_at(v, 0)->valuestring, "a");
    assert_string_equal(tap_json_at(v, 1)->valuestring, "\xf0\x9f\x98\x80");
    assert_int_equal(tap_json_at(v, 2)->valueint, 2147483647);
    assert_int_equal(tap_json_at(v, 3)->valueint, -2147483647 - 1);
    assert_true(tap_json_at(v, 4)->valuedouble == 18446744073709551616.0);
    assert_int_equal(tap_json_at(v, 5)->valueint, 0);
    assert_ptr_equal(v->child->prev, tap_json_at(v, 5));
    tap_json_delete(v);

    assert_null(tap_json_parse("[\"\\ud800\"]", 10));
    assert_null(tap_json_parse("[\"\\udc00\"]", 10));
    assert_null(tap_json_parse("[1e]", 4));
    assert_null(tap_json_parse("{} {}", 5));
    assert_null(tap_json_parse("{\"a\":1,}", 8));

    v = tap_json_parse("\xef\xbb\xbf {\"a\":true} \n", 16);
    assert_non_null(v);
    assert_true(cJSON_IsTrue(tap_json_get(v, "a")));
    tap_json_delete(v);

    /* past the fast path's 64 KiB: cJSON's parser, the same tree */
    len = 0;
    text[len++] = '{';
    for (i = 0; len < 70 * 1024; i++) {
        len += (size_t) sprintf(text + len, "%s\"k%zu\":[%zu,\"\\u00e9\"]", i ? "," : "", i, i);
    }
    text[len++] = '}';
    v = tap_json_parse(text, len);
    assert_non_null(v);
    assert_int_equal(tap_json_size(v), i);
    assert_string_equal(tap_json_at(tap_json_get(v, "k7"), 1)->valuestring, "\xc3\xa9");
    assert_true(tap_json_at(tap_json_get(v, "k7"), 0)->valuedouble == 7.0);
    tap_json_delete(v);
    free(text);
}


static void
test_strings(void **state)
{
    char       buf[64], big[300];
    tap_gen_t  g;
    cJSON     *v;
    size_t     i;

    tap_gen_init(&g);

    /* copies: NUL-safe, truncated on a UTF-8 boundary, non-strings ignored */
    v = tap_t_json("\"gpt\\u0000-4\"");
    tap_gen_copy(g.model, v);
    assert_string_equal(g.model, "gpt");
    cJSON_Delete(v);
    v = cJSON_CreateNumber(3);
    tap_gen_copy(g.model, v);
    assert_string_equal(g.model, "gpt");
    cJSON_Delete(v);
    tap_gen_copy(g.model, NULL);
    assert_string_equal(g.model, "gpt");

    memset(big, 'a', sizeof(big));
    big[TAP_GEN_STR - 2] = '\xc3';           /* a 2-byte é over the last two places */
    big[TAP_GEN_STR - 1] = '\xa9';
    big[sizeof(big) - 1] = '\0';
    v = cJSON_CreateString(big);
    tap_gen_copy(g.model, v);
    assert_int_equal(strlen(g.model), TAP_GEN_STR - 2);
    cJSON_Delete(v);
    big[TAP_GEN_STR - 3] = '\xc3';
    big[TAP_GEN_STR - 2] = '\xa9';
    big[TAP_GEN_STR - 1] = 'a';
    v = cJSON_CreateString(big);
    tap_gen_copy(g.model, v);
    assert_int_equal(strlen(g.model), TAP_GEN_STR - 1);
    cJSON_Delete(v);

    /* errors */
    tap_gen_error(&g, "", 0);
    assert_string_equal(g.error_type, "error");
    tap_gen_error(&g, "rate_limit_exceeded", 10);
    assert_string_equal(g.error_type, "rate_limit");
    tap_gen_error(&g, NULL, 0);
    assert_string_equal(g.error_type, "error");

    /* finish reasons */
    assert_null(tap_gen_finish_reasons(&g, buf, sizeof(buf)));
    tap_gen_finish_reason(&g, 2, "length", 6);
    tap_gen_finish_reason(&g, 0, "stop", 4);
    tap_gen_finish_reason(&g, 20, "stop", 4);
    assert_int_equal(g.nchoices, 21);
    assert_string_equal(tap_gen_finish_reasons(&g, buf, sizeof(buf)), "stop,length");
    assert_string_equal(tap_gen_finish_reasons(&g, buf, 10), "stop");
    assert_null(tap_gen_finish_reasons(&g, buf, 4));
    assert_null(tap_gen_finish_reasons(&g, buf, 0));
    tap_gen_finish_reason(&g, 1, "a_very_long_finish_reason_indeed", 32);
    assert_int_equal(strlen(g.finish_reasons[1]), sizeof(g.finish_reasons[1]) - 1);

    for (i = 0; i < TAP_GEN_MAX_CHOICES; i++) {
        tap_gen_finish_reason(&g, (unsigned) i, "", 0);
    }
    assert_null(tap_gen_finish_reasons(&g, buf, sizeof(buf)));
    tap_gen_cleanup(&g);
}


static const tap_t_ptr_case_t  tap_t_ptr_cases[] = {
    /* RFC 6901 section 5 */
    { "", "DOC" },
    { "/foo", "[\"bar\",\"baz\"]" },
    { "/foo/0", "\"bar\"" },
    { "/foo/1", "\"baz\"" },
    { "/", "0" },
    { "/a~1b", "1" },
    { "/c%d", "2" },
    { "/e^f", "3" },
    { "/g|h", "4" },
    { "/i\\j", "5" },
    { "/k\"l", "6" },
    { "/ ", "7" },
    { "/m~0n", "8" },

    /* ours */
    { "/~01", "9" },                        /* "~01" is "~1", not "/" */
    { "/~10", NULL },                       /* "/0" does not exist */
    { "/x/y/0/z", "true" },
    { "/x/y/1", "[0,1,2,3,4,5,6,7,8,9,10,11]" },
    { "/x/y/1/10", "10" },
    { "/x/y/1/010", NULL },                 /* leading zero */
    { "/x/y/1/00", NULL },
    { "/x/y/1/12", NULL },                  /* past the end */
    { "/x/y/1/-", NULL },
    { "/x/y/1/-1", NULL },
    { "/x/y/1/1a", NULL },
    { "/x/y/1/+1", NULL },
    { "/x/y/1/", NULL },
    { "/x/y/1/99999999999999999999999", NULL },
    { "/foo/0/bar", NULL },                 /* into a string */
    { "/nope", NULL },
    { "/x/y/0/z/", NULL },
    { "/a~2b", NULL },                      /* bad escapes */
    { "/a~", NULL },
    { "/x~", NULL },
    { "foo", NULL },                        /* not starting with '/' */
    { "#/foo", NULL },
};


static void
test_json_pointer(void **state)
{
    const tap_t_ptr_case_t  *c;
    char                     path[400];
    cJSON                   *root, *v, *want;
    size_t                   i;

    root = tap_t_json("{\"foo\":[\"bar\",\"baz\"],\"\":0,\"a/b\":1,\"c%d\":2,\"e^f\":3,"
                      "\"g|h\":4,\"i\\\\j\":5,\"k\\\"l\":6,\" \":7,\"m~n\":8,\"~1\":9,"
                      "\"x\":{\"y\":[{\"z\":true},[0,1,2,3,4,5,6,7,8,9,10,11]]}}");

    for (i = 0; i < TAP_NELEMS(tap_t_ptr_cases); i++) {
        c = &tap_t_ptr_cases[i];
        v = tap_json_pointer(root, c->ptr);
        if (c->expect == NULL) {
            if (v != NULL) {
                fail_msg("pointer \"%s\" found something", c->ptr);
            }
            continue;
        }
        if (strcmp(c->expect, "DOC") == 0) {
            assert_ptr_equal(v, root);
            continue;
        }
        if (v == NULL) {
            fail_msg("pointer \"%s\" found nothing", c->ptr);
        }
        want = tap_t_json(c->expect);
        if (!cJSON_Compare(v, want, 1)) {
            fail_msg("pointer \"%s\": wrong value", c->ptr);
        }
        cJSON_Delete(want);
    }

    assert_null(tap_json_pointer(NULL, ""));
    assert_null(tap_json_pointer(root, NULL));

    /* a key longer than the decoding buffer on the stack */
    memset(path, 'k', sizeof(path));
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    assert_true(cJSON_AddItemToObject(root, path + 1, cJSON_CreateNumber(42)));
    v = tap_json_pointer(root, path);
    assert_non_null(v);
    assert_true(cJSON_GetNumberValue(v) == 42);
    path[sizeof(path) - 2] = '~';
    assert_null(tap_json_pointer(root, path));

    cJSON_Delete(root);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_hash_json_canonical),
        cmocka_unit_test(test_hash_json_large_object),
        cmocka_unit_test(test_hash_field),
        cmocka_unit_test(test_chat_key_order_and_escapes),
        cmocka_unit_test(test_chat_parts),
        cmocka_unit_test(test_chat_prefix_and_shapes),
        cmocka_unit_test(test_prompt),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_number_integer),
        cmocka_unit_test(test_completion_hash),
        cmocka_unit_test(test_completion_choices),
        cmocka_unit_test(test_confidence),
        cmocka_unit_test(test_tokens_estimate),
        cmocka_unit_test(test_token_clock),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_json_arena),
        cmocka_unit_test(test_json_parse),
        cmocka_unit_test(test_json_pointer),
    };

    tap_json_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
