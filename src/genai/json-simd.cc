/*
 * json-simd.cc: request and response bodies parsed by simdjson, then built
 * as the cJSON tree the rest of infertap reads.
 *
 * simdjson validates the whole body (UTF-8 included) and leaves a tape with
 * strings decoded and numbers converted; the tree is built from the tape in
 * one walk, its strings borrowed where simdjson decoded them or copied
 * (json.c says which).  It matches cJSON's for every body both accept: same
 * types and values (a number is its double, valueint saturated as cJSON
 * does), members in order, duplicate keys kept, strings NUL-terminated and
 * so ending at a decoded U+0000.  Only borrowed strings differ, by the
 * ownership flags cJSON_IsReference (values) and cJSON_StringIsConst
 * (member names), which cJSON_Delete() obeys and cJSON_Is*() ignore.  A
 * body simdjson refuses goes to cJSON, so what is accepted and what is not
 * stays cJSON's decision, except that valid JSON cJSON cannot read (a
 * number of 64 characters or more) is read.
 *
 * Each thread keeps one parser and one padded copy buffer (simdjson reads
 * up to SIMDJSON_PADDING bytes past the end), both bounded by
 * TAP_JSON_SIMD_MAX: larger bodies always take cJSON's path.  Trees that
 * borrow their strings come from that parser; those that copy them, from a
 * second one made when first needed, so that they leave the borrowed
 * strings alone.
 */

#include "config.h"

#include <cstdlib>
#include <cstring>
#include <climits>
#include <new>

#include <simdjson.h>

#include "genai/json-simd.h"

#define TAP_JSON_DEPTH  1000           /* cJSON's nesting limit */

namespace {

/*
 * The tape (simdjson's doc/tape.md): one 64-bit word per value, its type in
 * the top byte and a payload below.  An array or object word holds, in its
 * low 32 bits, the index just past its closing word; an object's members
 * follow it as key, value, key, value.  A string's payload is its offset in
 * the string buffer, where a 32-bit length, the decoded bytes and a NUL lie.
 * An integer or a double takes the word after its own.
 */
using simdjson::internal::tape_type;
using simdjson::internal::JSON_VALUE_MASK;

struct tap_simd_s {
    simdjson::dom::parser   parser{TAP_JSON_SIMD_MAX};
    simdjson::dom::parser  *spare = nullptr;   /* for copies while a tree borrows from parser */
    char                   *pad = nullptr;     /* TAP_JSON_SIMD_MAX + SIMDJSON_PADDING bytes */

    ~tap_simd_s() { delete spare; std::free(pad); }
};

thread_local tap_simd_s  tap_simd;

struct tap_build_s {
    void             *(*mem)(size_t);
    const uint64_t   *tape;
    const char       *strings;
    bool              borrow;
    unsigned          depth;
};


inline cJSON *
tap_simd_node(tap_build_s &b)
{
    cJSON  *v = static_cast<cJSON *>(b.mem(sizeof(cJSON)));

    if (v != nullptr) {
        std::memset(v, 0, sizeof(cJSON));
    }
    return v;
}


/*
 * A string of the tape: borrowed in place from the parser's buffer, or a
 * copy from mem().  A borrowed string is flagged by the caller, so that
 * cJSON_Delete() leaves it alone.
 */
inline char *
tap_simd_string(const tap_build_s &b, uint64_t word)
{
    const char  *s = b.strings + (word & JSON_VALUE_MASK);
    uint32_t     len;
    char        *p;

    if (b.borrow) {
        return const_cast<char *>(s + sizeof(len));
    }
    std::memcpy(&len, s, sizeof(len));
    p = static_cast<char *>(b.mem((size_t) len + 1));
    if (p != nullptr) {
        std::memcpy(p, s + sizeof(len), (size_t) len + 1);
    }
    return p;
}


inline void
tap_simd_number(cJSON *v, double d)
{
    v->type = cJSON_Number;
    v->valuedouble = d;
    if (d >= INT_MAX) {
        v->valueint = INT_MAX;
    } else if (d <= (double) INT_MIN) {
        v->valueint = INT_MIN;
    } else {
        v->valueint = (int) d;
    }
}


__attribute__((noinline)) size_t tap_simd_container(tap_build_s &b, size_t i, cJSON *v);


/* Builds the value at tape[i] into v; returns the index past it, or 0.
 * Scalars are built here, in the loop that reads them, and containers by
 * a call of tap_simd_container(). */
__attribute__((always_inline)) inline size_t
tap_simd_build(tap_build_s &b, size_t i, cJSON *v)
{
    uint64_t  w = b.tape[i];
    int64_t   n;
    double    d;

    switch (static_cast<tape_type>(w >> 56)) {
    case tape_type::START_ARRAY:
    case tape_type::START_OBJECT:
        return tap_simd_container(b, i, v);

    case tape_type::STRING:
        v->type = cJSON_String | (b.borrow ? cJSON_IsReference : 0);
        v->valuestring = tap_simd_string(b, w);
        return v->valuestring != nullptr ? i + 1 : 0;

    case tape_type::INT64:
        std::memcpy(&n, &b.tape[i + 1], sizeof(n));
        tap_simd_number(v, (double) n);
        return i + 2;

    case tape_type::UINT64:
        tap_simd_number(v, (double) b.tape[i + 1]);
        return i + 2;

    case tape_type::DOUBLE:
        std::memcpy(&d, &b.tape[i + 1], sizeof(d));
        tap_simd_number(v, d);
        return i + 2;

    case tape_type::TRUE_VALUE:
        v->type = cJSON_True;
        v->valueint = 1;
        return i + 1;

    case tape_type::FALSE_VALUE:
        v->type = cJSON_False;
        return i + 1;

    case tape_type::NULL_VALUE:
        v->type = cJSON_NULL;
        return i + 1;

    case tape_type::ROOT:             /* never inside a value */
    case tape_type::END_ARRAY:
    case tape_type::END_OBJECT:
        break;
    }
    return 0;
}


/* The array or object at tape[i] into v, its members in order. */
size_t
tap_simd_container(tap_build_s &b, size_t i, cJSON *v)
{
    uint64_t   w = b.tape[i];
    size_t     end = (uint32_t) w;
    cJSON     *e, *last = nullptr;
    char      *key = nullptr;
    bool       obj = static_cast<tape_type>(w >> 56) == tape_type::START_OBJECT;

    if (++b.depth > TAP_JSON_DEPTH) {
        return 0;
    }
    v->type = obj ? cJSON_Object : cJSON_Array;
    for (i++; i + 1 < end; /* void */) {
        if (obj) {
            key = tap_simd_string(b, b.tape[i++]);
            if (key == nullptr) {
                return 0;
            }
        }
        e = tap_simd_node(b);
        if (e == nullptr) {
            return 0;
        }
        if (last == nullptr) {
            v->child = e;
        } else {
            last->next = e;
            e->prev = last;
        }
        last = e;
        i = tap_simd_build(b, i, e);
        if (i == 0) {
            return 0;
        }
        if (obj) {
            e->string = key;
            e->type |= b.borrow ? cJSON_StringIsConst : 0;
        }
    }
    if (last != nullptr) {
        v->child->prev = last;       /* cJSON keeps the last one there */
    }
    b.depth--;
    return end;
}

} /* namespace */


extern "C" int
tap_json_simd(const char *buf, size_t len, void *(*mem)(size_t), int borrow, cJSON **out)
{
    tap_simd_s   &s = tap_simd;
    tap_build_s   b = { mem, nullptr, nullptr, borrow != 0, 0 };
    simdjson::dom::element  root;

    *out = nullptr;
    if (len > TAP_JSON_SIMD_MAX) {
        return -1;
    }
    if (s.pad == nullptr) {
        s.pad = static_cast<char *>(std::calloc(1, TAP_JSON_SIMD_MAX + simdjson::SIMDJSON_PADDING));
        if (s.pad == nullptr) {
            return -1;
        }
    }
    if (!borrow && s.spare == nullptr) {
        s.spare = new (std::nothrow) simdjson::dom::parser(TAP_JSON_SIMD_MAX);
        if (s.spare == nullptr) {
            return -1;
        }
    }
    simdjson::dom::parser  &p = borrow ? s.parser : *s.spare;

    std::memcpy(s.pad, buf, len);
    if (p.parse(s.pad, len, false).get(root) != simdjson::SUCCESS) {
        return -1;
    }

    /* the root value is the tape's second word, after the root word */
    b.tape = p.doc.tape.get();
    b.strings = reinterpret_cast<const char *>(p.doc.string_buf.get());
    *out = tap_simd_node(b);
    if (*out == nullptr || tap_simd_build(b, 1, *out) == 0) {
        return -1;
    }
    return 0;
}
