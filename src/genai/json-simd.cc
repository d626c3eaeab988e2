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
 *
 * tap_json_simd_chunk() reads an OpenAI stream chunk or answer from the
 * tape without a tree, as the tree would read it (json-simd.h): streams
 * send one chunk per token, and the tree was most of the filter's cost per
 * event.
 */

#include "config.h"

#include <cstddef>
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

/* Copies buf into the padded buffer and parses it with p: false when simdjson refuses it. */
bool
tap_simd_parse(tap_simd_s &s, simdjson::dom::parser &p, const char *buf, size_t len)
{
    simdjson::dom::element  root;

    if (len > TAP_JSON_SIMD_MAX) {
        return false;
    }
    if (s.pad == nullptr) {
        s.pad = static_cast<char *>(std::calloc(1, TAP_JSON_SIMD_MAX + simdjson::SIMDJSON_PADDING));
        if (s.pad == nullptr) {
            return false;
        }
    }
    std::memcpy(s.pad, buf, len);
    return p.parse(s.pad, len, false).get(root) == simdjson::SUCCESS;
}


/* --- the chunk reader -------------------------------------------------------------------- */

inline tape_type
tap_simd_type(uint64_t w)
{
    return static_cast<tape_type>(w >> 56);
}


/* The index just past the value at tape[i]. */
inline size_t
tap_simd_skip(const uint64_t *tape, size_t i)
{
    switch (tap_simd_type(tape[i])) {
    case tape_type::START_ARRAY:
    case tape_type::START_OBJECT:
        return (uint32_t) tape[i];
    case tape_type::INT64:
    case tape_type::UINT64:
    case tape_type::DOUBLE:
        return i + 2;
    default:
        return i + 1;
    }
}


struct tap_chunk_s {
    const uint64_t  *tape;
    const char      *strings;
    const char      *message;
    size_t           message_len;
};


/* The decoded string of a string word, NUL-terminated as the tree keeps it. */
inline const char *
tap_chunk_cstr(const tap_chunk_s &c, uint64_t w)
{
    return c.strings + (w & JSON_VALUE_MASK) + sizeof(uint32_t);
}


struct tap_name_s {
    const char  *s;
    size_t       len;
};

#define TAP_NAME(s)  { s, sizeof(s) - 1 }


/*
 * Which of names[0, n) the member name w is, the first time that name
 * comes; else -1.  Names compare as the tree's do, as C strings: a name
 * with a U+0000 matches what comes before it.
 */
int
tap_chunk_name(const tap_chunk_s &c, uint64_t w, const tap_name_s *names, int n, unsigned *seen)
{
    const char  *k = tap_chunk_cstr(c, w);
    uint32_t     len;

    std::memcpy(&len, k - sizeof(len), sizeof(len));
    for (int j = 0; j < n; j++) {
        if ((len == names[j].len || (len > names[j].len && k[names[j].len] == '\0'))
            && std::memcmp(k, names[j].s, names[j].len) == 0)
        {
            if (*seen & (1u << j)) {
                return -1;
            }
            *seen |= 1u << j;
            return j;
        }
    }
    return -1;
}


/* The value at tape[i] into *s when it is a string, up to its first NUL. */
inline void
tap_chunk_str(const tap_chunk_s &c, size_t i, tap_jstr_t *s)
{
    if (tap_simd_type(c.tape[i]) == tape_type::STRING) {
        s->s = tap_chunk_cstr(c, c.tape[i]);
        s->len = std::strlen(s->s);
    }
}


/* The number at tape[i] into *d, as the tree's double. */
inline bool
tap_chunk_number(const tap_chunk_s &c, size_t i, double *d)
{
    int64_t  n;

    switch (tap_simd_type(c.tape[i])) {
    case tape_type::INT64:
        std::memcpy(&n, &c.tape[i + 1], sizeof(n));
        *d = (double) n;
        return true;
    case tape_type::UINT64:
        *d = (double) c.tape[i + 1];
        return true;
    case tape_type::DOUBLE:
        std::memcpy(d, &c.tape[i + 1], sizeof(*d));
        return true;
    default:
        return false;
    }
}


/* The number at tape[i] into *n when it is one. */
inline void
tap_chunk_num(const tap_chunk_s &c, size_t i, tap_jnum_t *n)
{
    n->set = tap_chunk_number(c, i, &n->value);
}


/* The usage object at tape[i]. */
void
tap_chunk_usage(const tap_chunk_s &c, size_t i, tap_json_chunk_t *out)
{
    static const tap_name_s  names[] = {
        TAP_NAME("prompt_tokens"), TAP_NAME("completion_tokens"), TAP_NAME("prompt_tokens_details"),
    };
    static const tap_name_s  cached[] = { TAP_NAME("cached_tokens") };
    size_t     end = (uint32_t) c.tape[i], j, dend;
    unsigned   seen = 0, dseen = 0;

    out->has_usage = 1;
    for (i++; i + 1 < end; i = tap_simd_skip(c.tape, i + 1)) {
        switch (tap_chunk_name(c, c.tape[i], names, 3, &seen)) {
        case 0: tap_chunk_num(c, i + 1, &out->prompt_tokens); break;
        case 1: tap_chunk_num(c, i + 1, &out->completion_tokens); break;
        case 2:
            if (tap_simd_type(c.tape[i + 1]) != tape_type::START_OBJECT) {
                break;
            }
            dend = (uint32_t) c.tape[i + 1];
            for (j = i + 2; j + 1 < dend; j = tap_simd_skip(c.tape, j + 1)) {
                if (tap_chunk_name(c, c.tape[j], cached, 1, &dseen) == 0) {
                    tap_chunk_num(c, j + 1, &out->cached_tokens);
                }
            }
            break;
        }
    }
}


/* The delta (or message) object at tape[i]. */
bool
tap_chunk_message(const tap_chunk_s &c, size_t i, tap_json_choice_t *ch)
{
    static const tap_name_s  names[] = {
        TAP_NAME("content"), TAP_NAME("reasoning_content"), TAP_NAME("reasoning"),
        TAP_NAME("tool_calls"),
    };
    size_t     end = (uint32_t) c.tape[i];
    unsigned   seen = 0;

    ch->has_message = 1;
    for (i++; i + 1 < end; i = tap_simd_skip(c.tape, i + 1)) {
        switch (tap_chunk_name(c, c.tape[i], names, 4, &seen)) {
        case 0: tap_chunk_str(c, i + 1, &ch->content); break;
        case 1: tap_chunk_str(c, i + 1, &ch->reasoning_content); break;
        case 2: tap_chunk_str(c, i + 1, &ch->reasoning); break;
        case 3:
            if (tap_simd_type(c.tape[i + 1]) == tape_type::START_ARRAY) {
                return false;
            }
            break;
        }
    }
    return true;
}


/* The choice object at tape[i]. */
bool
tap_chunk_choice(const tap_chunk_s &c, size_t i, tap_json_choice_t *ch)
{
    const tap_name_s  names[] = {
        TAP_NAME("index"), { c.message, c.message_len }, TAP_NAME("text"), TAP_NAME("logprobs"),
        TAP_NAME("finish_reason"),
    };
    size_t       end = (uint32_t) c.tape[i];
    unsigned     seen = 0;
    tape_type    t;

    ch->is_object = 1;
    for (i++; i + 1 < end; i = tap_simd_skip(c.tape, i + 1)) {
        t = tap_simd_type(c.tape[i + 1]);
        switch (tap_chunk_name(c, c.tape[i], names, 5, &seen)) {
        case 0:
            ch->has_index = tap_chunk_number(c, i + 1, &ch->index);
            break;
        case 1:
            if (t == tape_type::START_OBJECT && !tap_chunk_message(c, i + 1, ch)) {
                return false;
            }
            break;
        case 2: tap_chunk_str(c, i + 1, &ch->text); break;
        case 3:
            if (t == tape_type::START_OBJECT) {
                return false;
            }
            break;
        case 4: tap_chunk_str(c, i + 1, &ch->finish_reason); break;
        }
    }
    return true;
}


/* The choices array at tape[i]. */
bool
tap_chunk_choices(const tap_chunk_s &c, size_t i, tap_json_chunk_t *out)
{
    size_t  end = (uint32_t) c.tape[i];

    for (i++; i + 1 < end; i = tap_simd_skip(c.tape, i)) {
        if (out->nchoices == TAP_JSON_CHOICES) {
            return false;
        }
        std::memset(&out->choice[out->nchoices], 0, sizeof(tap_json_choice_t));
        if (tap_simd_type(c.tape[i]) == tape_type::START_OBJECT
            && !tap_chunk_choice(c, i, &out->choice[out->nchoices]))
        {
            return false;
        }
        out->nchoices++;
    }
    return true;
}

} /* namespace */


extern "C" int
tap_json_simd(const char *buf, size_t len, void *(*mem)(size_t), int borrow, cJSON **out)
{
    tap_simd_s   &s = tap_simd;
    tap_build_s   b = { mem, nullptr, nullptr, borrow != 0, 0 };

    *out = nullptr;
    if (!borrow && s.spare == nullptr) {
        s.spare = new (std::nothrow) simdjson::dom::parser(TAP_JSON_SIMD_MAX);
        if (s.spare == nullptr) {
            return -1;
        }
    }
    simdjson::dom::parser  &p = borrow ? s.parser : *s.spare;

    if (!tap_simd_parse(s, p, buf, len)) {
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


extern "C" int
tap_json_simd_chunk(const char *buf, size_t len, const char *message, tap_json_chunk_t *out)
{
    static const tap_name_s  names[] = {
        TAP_NAME("error"), TAP_NAME("id"), TAP_NAME("model"), TAP_NAME("usage"),
        TAP_NAME("choices"),
    };
    tap_simd_s   &s = tap_simd;
    tap_chunk_s   c;
    size_t        i, end;
    unsigned      seen = 0;
    tape_type     t;

    std::memset(out, 0, offsetof(tap_json_chunk_t, choice));     /* choices: as they are read */
    if (!tap_simd_parse(s, s.parser, buf, len)) {
        return -1;
    }
    c.tape = s.parser.doc.tape.get();
    c.strings = reinterpret_cast<const char *>(s.parser.doc.string_buf.get());
    c.message = message;
    c.message_len = std::strlen(message);

    /* a nesting d takes 2d words: a tape this short nests no deeper than the tree may */
    if ((c.tape[0] & JSON_VALUE_MASK) > 2 * TAP_JSON_DEPTH
        || tap_simd_type(c.tape[1]) != tape_type::START_OBJECT)
    {
        return -1;
    }

    end = (uint32_t) c.tape[1];
    for (i = 2; i + 1 < end; i = tap_simd_skip(c.tape, i + 1)) {
        t = tap_simd_type(c.tape[i + 1]);
        switch (tap_chunk_name(c, c.tape[i], names, 5, &seen)) {
        case 0:
            if (t != tape_type::NULL_VALUE) {
                return -1;
            }
            break;
        case 1: tap_chunk_str(c, i + 1, &out->id); break;
        case 2: tap_chunk_str(c, i + 1, &out->model); break;
        case 3:
            if (t == tape_type::START_OBJECT) {
                tap_chunk_usage(c, i + 1, out);
            }
            break;
        case 4:
            if (t == tape_type::START_ARRAY) {
                out->has_choices = 1;
                if (!tap_chunk_choices(c, i + 1, out)) {
                    return -1;
                }
            }
            break;
        }
    }
    return 0;
}
