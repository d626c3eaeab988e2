/*
 * json-simd.cc: request and response bodies parsed by simdjson, then built
 * as the cJSON tree the rest of infertap reads.
 *
 * simdjson validates the whole body (UTF-8 included) and leaves a tape with
 * strings decoded and numbers converted; the tree is built from it in one
 * walk.  It matches cJSON's for every body both accept: same types and
 * values (a number is its double, valueint saturated as cJSON does),
 * members in order, duplicate keys kept, strings NUL-terminated and so
 * ending at a decoded U+0000.  A body simdjson refuses goes to cJSON, so
 * what is accepted and what is not stays cJSON's decision, except that
 * valid JSON cJSON cannot read (a number of 64 characters or more) is read.
 *
 * Each thread keeps one parser and one padded copy buffer (simdjson reads
 * up to SIMDJSON_PADDING bytes past the end), both bounded by
 * TAP_JSON_SIMD_MAX: larger bodies always take cJSON's path.
 */

#include "config.h"

#include <cstdlib>
#include <cstring>
#include <climits>

#include <simdjson.h>

#include "genai/json-simd.h"

#define TAP_JSON_DEPTH  1000           /* cJSON's nesting limit */

namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

struct tap_simd_s {
    simdjson::dom::parser   parser{TAP_JSON_SIMD_MAX};
    char                   *pad = nullptr;     /* TAP_JSON_SIMD_MAX + SIMDJSON_PADDING bytes */

    ~tap_simd_s() { std::free(pad); }
};

thread_local tap_simd_s  tap_simd;

struct tap_build_s {
    void      *(*mem)(size_t);
    unsigned    depth;
};


cJSON *
tap_simd_node(tap_build_s &b)
{
    cJSON  *v = static_cast<cJSON *>(b.mem(sizeof(cJSON)));

    if (v != nullptr) {
        std::memset(v, 0, sizeof(cJSON));
    }
    return v;
}


char *
tap_simd_string(tap_build_s &b, std::string_view s)
{
    char  *p = static_cast<char *>(b.mem(s.size() + 1));

    if (p != nullptr) {
        std::memcpy(p, s.data(), s.size());
        p[s.size()] = '\0';
    }
    return p;
}


void
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


/* appends a fresh value to the container v, after last */
cJSON *
tap_simd_append(tap_build_s &b, cJSON *v, cJSON *&last)
{
    cJSON  *e = tap_simd_node(b);

    if (e == nullptr) {
        return nullptr;
    }
    if (last == nullptr) {
        v->child = e;
    } else {
        last->next = e;
        e->prev = last;
    }
    v->child->prev = e;                  /* cJSON keeps the last one there */
    last = e;
    return e;
}


bool
tap_simd_build(tap_build_s &b, element el, cJSON *v)
{
    cJSON                   *e, *last = nullptr;
    simdjson::dom::array     arr;
    simdjson::dom::object    obj;

    switch (el.type()) {
    case element_type::ARRAY:
        if (++b.depth > TAP_JSON_DEPTH) {
            return false;
        }
        v->type = cJSON_Array;
        if (el.get_array().get(arr) != simdjson::SUCCESS) {
            return false;
        }
        for (element c : arr) {
            e = tap_simd_append(b, v, last);
            if (e == nullptr || !tap_simd_build(b, c, e)) {
                return false;
            }
        }
        b.depth--;
        return true;

    case element_type::OBJECT:
        if (++b.depth > TAP_JSON_DEPTH) {
            return false;
        }
        v->type = cJSON_Object;
        if (el.get_object().get(obj) != simdjson::SUCCESS) {
            return false;
        }
        for (simdjson::dom::key_value_pair kv : obj) {
            e = tap_simd_append(b, v, last);
            if (e == nullptr) {
                return false;
            }
            e->string = tap_simd_string(b, kv.key);
            if (e->string == nullptr || !tap_simd_build(b, kv.value, e)) {
                return false;
            }
        }
        b.depth--;
        return true;

    case element_type::STRING:
        v->type = cJSON_String;
        v->valuestring = tap_simd_string(b, el.get_string().value_unsafe());
        return v->valuestring != nullptr;

    case element_type::INT64:
        tap_simd_number(v, (double) el.get_int64().value_unsafe());
        return true;

    case element_type::UINT64:
        tap_simd_number(v, (double) el.get_uint64().value_unsafe());
        return true;

    case element_type::DOUBLE:
        tap_simd_number(v, el.get_double().value_unsafe());
        return true;

    case element_type::BOOL:
        if (el.get_bool().value_unsafe()) {
            v->type = cJSON_True;
            v->valueint = 1;
        } else {
            v->type = cJSON_False;
        }
        return true;

    case element_type::NULL_VALUE:
        v->type = cJSON_NULL;
        return true;
    }
    return false;
}

} /* namespace */


extern "C" int
tap_json_simd(const char *buf, size_t len, void *(*mem)(size_t), cJSON **out)
{
    tap_simd_s   &s = tap_simd;
    tap_build_s   b = { mem, 0 };
    element       root;

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
    std::memcpy(s.pad, buf, len);
    if (s.parser.parse(s.pad, len, false).get(root) != simdjson::SUCCESS) {
        return -1;
    }

    *out = tap_simd_node(b);
    if (*out == nullptr || !tap_simd_build(b, root, *out)) {
        return -1;
    }
    return 0;
}
