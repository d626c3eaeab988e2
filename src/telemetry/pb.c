/*
 * pb.c: the arena and attribute builders behind every OTLP message.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap_core.h"
#include "version.h"
#include "telemetry/pb.h"

#define TAP_ARENA_BLOCK  (64 * 1024)

struct tap_arena_blk_s {
    tap_arena_blk_t  *next;
    size_t            size;            /* usable bytes after the header */
    max_align_t       data[];
};


void
tap_arena_init(tap_arena_t *a)
{
    *a = (tap_arena_t) { 0 };
}


/* n bytes, not zeroed; NULL (and a->failed set) when out of memory. */
static void *
tap_arena_take(tap_arena_t *a, size_t n)
{
    tap_arena_blk_t  *b;
    size_t            size;
    void             *p;

    n = (n + 15) & ~(size_t) 15;
    if (a->head == NULL || a->head->size - a->used < n) {
        if (n <= TAP_ARENA_BLOCK && a->spare != NULL) {
            b = a->spare;
            a->spare = b->next;
        } else {
            size = n > TAP_ARENA_BLOCK ? n : TAP_ARENA_BLOCK;
            b = malloc(sizeof(tap_arena_blk_t) + size);
            if (b == NULL) {
                a->failed = 1;
                return NULL;
            }
            b->size = size;
            a->total += size;
        }
        b->next = a->head;
        a->head = b;
        a->used = 0;
    }
    p = (char *) a->head->data + a->used;
    a->used += n;
    return p;
}


void *
tap_arena_alloc(tap_arena_t *a, size_t n)
{
    void  *p = tap_arena_take(a, n);

    if (p != NULL) {
        memset(p, 0, n);
    }
    return p;
}


char *
tap_arena_strndup(tap_arena_t *a, const char *s, size_t n)
{
    char  *p = tap_arena_alloc(a, n + 1);

    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}


char *
tap_arena_strdup(tap_arena_t *a, const char *s)
{
    return tap_arena_strndup(a, s, strlen(s));
}


void
tap_arena_reset(tap_arena_t *a)
{
    tap_arena_blk_t  *b, *next;
    size_t            kept = 0;

    for (b = a->spare; b != NULL; b = b->next) {
        kept += b->size;
    }
    for (b = a->head; b != NULL; b = next) {
        next = b->next;
        if (b->size == TAP_ARENA_BLOCK && kept + b->size <= TAP_ARENA_KEEP) {
            b->next = a->spare;
            a->spare = b;
            kept += b->size;
        } else {
            a->total -= b->size;
            free(b);
        }
    }
    a->head = NULL;
    a->used = 0;
    a->failed = 0;
}


void
tap_arena_free(tap_arena_t *a)
{
    tap_arena_blk_t  *b, *next;

    tap_arena_reset(a);
    for (b = a->spare; b != NULL; b = next) {
        next = b->next;
        free(b);
    }
    tap_arena_init(a);
}


void
tap_attrs_init(tap_attrs_t *at, tap_arena_t *a)
{
    *at = (tap_attrs_t) { .a = a };
}


void
tap_attrs_init_wire(tap_attrs_t *at, tap_arena_t *a, unsigned field)
{
    *at = (tap_attrs_t) { .a = a, .field = field };
}


/*
 * Wire mode.  The encodings, from the protobuf wire format: a field is its
 * tag (number << 3 | wire type) as a varint, then a varint for type 0, eight
 * little-endian bytes for type 1, or a varint length and the bytes for type
 * 2.  KeyValue: key = 1 (string), value = 2 (AnyValue).  AnyValue:
 * string_value = 1, bool_value = 2, int_value = 3 (int64: two's complement,
 * ten bytes when negative), double_value = 4, array_value = 5 (ArrayValue:
 * values = 1).
 */
static size_t
tap_pb_varint_len(uint64_t v)
{
    size_t  n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}


static uint8_t *
tap_pb_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t) (v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t) v;
    return p;
}


/* A length-delimited field of n bytes, all told. */
static size_t
tap_pb_ld_len(size_t n)
{
    return 1 + tap_pb_varint_len(n) + n;
}


size_t
tap_pb_item_len(size_t len)
{
    return tap_pb_ld_len(len);
}


uint8_t *
tap_pb_item(uint8_t *p, const void *data, size_t len)
{
    *p++ = 2 << 3 | 2;
    p = tap_pb_varint(p, len);
    memcpy(p, data, len);
    return p + len;
}


size_t
tap_pb_frame_room(size_t resource_len, size_t scope_len)
{
    /* two fields of up to 2^35 bytes around the resource's and the scope's */
    return tap_pb_ld_len(resource_len) + tap_pb_ld_len(scope_len) + 2 * (1 + 5);
}


/* Writes a length-delimited field's tag and length so that they end at end; returns their start. */
static uint8_t *
tap_pb_head_before(uint8_t *end, unsigned field, size_t len)
{
    uint8_t  *p = end - 1 - tap_pb_varint_len(len);

    p[0] = (uint8_t) (field << 3 | 2);
    tap_pb_varint(p + 1, len);
    return p;
}


uint8_t *
tap_pb_frame(uint8_t *items, size_t items_len, const uint8_t *resource, size_t resource_len,
    const uint8_t *scope, size_t scope_len)
{
    uint8_t  *p = items;

    p -= scope_len;
    memcpy(p, scope, scope_len);
    p = tap_pb_head_before(p, 1, scope_len);
    p = tap_pb_head_before(p, 2, (size_t) (items + items_len - p));
    p -= resource_len;
    memcpy(p, resource, resource_len);
    p = tap_pb_head_before(p, 1, resource_len);
    return tap_pb_head_before(p, 1, (size_t) (items + items_len - p));
}


/* Makes room for n more bytes in at->wire.  Returns TAP_OK or TAP_ERROR. */
static int
tap_wire_grow(tap_attrs_t *at, size_t n)
{
    size_t    cap;
    uint8_t  *nw;

    cap = TAP_MAX(TAP_MAX(2 * at->wcap, at->wlen + n), 2048);
    nw = tap_arena_take(at->a, cap);
    if (nw == NULL) {
        return TAP_ERROR;
    }
    if (at->wlen > 0) {
        memcpy(nw, at->wire, at->wlen);
    }
    at->wire = nw;
    at->wcap = cap;
    return TAP_OK;
}


/*
 * Room for n more bytes at the end of at->wire, taken (at->wlen moves past
 * them); NULL when out of memory.  The first buffer is large enough for the
 * attributes of most spans and log records, so most never grow.
 */
static inline uint8_t *
tap_wire_take(tap_attrs_t *at, size_t n)
{
    uint8_t  *p;

    if (at->wlen + n > at->wcap && tap_wire_grow(at, n) != TAP_OK) {
        return NULL;
    }
    p = at->wire + at->wlen;
    at->wlen += n;
    return p;
}


void
tap_wire_varint(tap_attrs_t *at, unsigned field, uint64_t v)
{
    uint8_t  *p = tap_wire_take(at, tap_pb_varint_len(field << 3) + tap_pb_varint_len(v));

    if (p != NULL) {
        p = tap_pb_varint(p, field << 3);
        tap_pb_varint(p, v);
    }
}


static void
tap_wire_fixed(tap_attrs_t *at, unsigned field, unsigned type, uint64_t v, unsigned n)
{
    uint8_t   *p = tap_wire_take(at, tap_pb_varint_len(field << 3) + n);
    unsigned   k;

    if (p != NULL) {
        p = tap_pb_varint(p, field << 3 | type);
        for (k = 0; k < n; k++) {
            *p++ = (uint8_t) (v >> (8 * k));
        }
    }
}


void
tap_wire_fixed64(tap_attrs_t *at, unsigned field, uint64_t v)
{
    tap_wire_fixed(at, field, 1, v, 8);
}


void
tap_wire_fixed32(tap_attrs_t *at, unsigned field, uint32_t v)
{
    tap_wire_fixed(at, field, 5, v, 4);
}


void
tap_wire_bytes(tap_attrs_t *at, unsigned field, const void *data, size_t n)
{
    uint8_t  *p = tap_wire_take(at, tap_pb_varint_len(field << 3 | 2) + tap_pb_varint_len(n) + n);

    if (p != NULL) {
        p = tap_pb_varint(p, field << 3 | 2);
        p = tap_pb_varint(p, n);
        memcpy(p, data, n);
    }
}


void
tap_wire_any_str(tap_attrs_t *at, unsigned field, const char *s, size_t n)
{
    size_t    alen = tap_pb_ld_len(n);
    uint8_t  *p = tap_wire_take(at, tap_pb_varint_len(field << 3 | 2) + tap_pb_varint_len(alen)
                                    + alen);

    if (p != NULL) {
        p = tap_pb_varint(p, field << 3 | 2);
        p = tap_pb_varint(p, alen);
        *p++ = 0x0a;                            /* AnyValue.string_value */
        p = tap_pb_varint(p, n);
        memcpy(p, s, n);
    }
}


/*
 * Writes the field, the KeyValue around an AnyValue of alen bytes, and its
 * key; returns where the AnyValue's alen bytes go, or NULL when out of memory.
 */
static uint8_t *
tap_attr_wire(tap_attrs_t *at, const char *key, size_t klen, size_t alen)
{
    size_t    kvlen;
    uint64_t  tag = (uint64_t) at->field << 3 | 2;
    uint8_t  *p;

    kvlen = tap_pb_ld_len(klen) + tap_pb_ld_len(alen);
    p = tap_wire_take(at, tap_pb_varint_len(tag) + tap_pb_varint_len(kvlen) + kvlen);
    if (p == NULL) {
        return NULL;
    }
    at->n++;

    p = tap_pb_varint(p, tag);
    p = tap_pb_varint(p, kvlen);
    *p++ = 0x0a;                                /* KeyValue.key */
    p = tap_pb_varint(p, klen);
    memcpy(p, key, klen);
    p += klen;
    *p++ = 0x12;                                /* KeyValue.value */
    return tap_pb_varint(p, alen);
}


static void
tap_attr_wire_str(tap_attrs_t *at, const char *key, size_t klen, const char *s, size_t len)
{
    uint8_t  *p;

    p = tap_attr_wire(at, key, klen, tap_pb_ld_len(len));
    if (p != NULL) {
        *p++ = 0x0a;                            /* AnyValue.string_value */
        p = tap_pb_varint(p, len);
        memcpy(p, s, len);
    }
}


static void
tap_attr_wire_int(tap_attrs_t *at, const char *key, size_t klen, int64_t i)
{
    uint8_t  *p = tap_attr_wire(at, key, klen, 1 + tap_pb_varint_len((uint64_t) i));

    if (p != NULL) {
        *p++ = 0x18;                            /* AnyValue.int_value */
        tap_pb_varint(p, (uint64_t) i);
    }
}


static void
tap_attr_wire_double(tap_attrs_t *at, const char *key, size_t klen, double d)
{
    uint8_t   *p = tap_attr_wire(at, key, klen, 9);
    uint64_t   bits;
    unsigned   k;

    if (p != NULL) {
        memcpy(&bits, &d, sizeof(bits));
        *p++ = 0x21;                            /* AnyValue.double_value */
        for (k = 0; k < 8; k++) {
            *p++ = (uint8_t) (bits >> (8 * k));
        }
    }
}


static void
tap_attr_wire_bool(tap_attrs_t *at, const char *key, size_t klen, int b)
{
    uint8_t  *p = tap_attr_wire(at, key, klen, 2);

    if (p != NULL) {
        *p++ = 0x10;                            /* AnyValue.bool_value */
        *p = b ? 1 : 0;
    }
}


static void
tap_attr_wire_strs(tap_attrs_t *at, const char *key, const char *const *s, size_t n)
{
    size_t    arr = 0, i, len;
    uint8_t  *p;

    for (i = 0; i < n; i++) {
        arr += tap_pb_ld_len(tap_pb_ld_len(strlen(s[i])));
    }
    p = tap_attr_wire(at, key, strlen(key), tap_pb_ld_len(arr));
    if (p == NULL) {
        return;
    }
    *p++ = 0x2a;                                /* AnyValue.array_value */
    p = tap_pb_varint(p, arr);
    for (i = 0; i < n; i++) {
        len = strlen(s[i]);
        *p++ = 0x0a;                            /* ArrayValue.values */
        p = tap_pb_varint(p, tap_pb_ld_len(len));
        *p++ = 0x0a;                            /* AnyValue.string_value */
        p = tap_pb_varint(p, len);
        memcpy(p, s[i], len);
        p += len;
    }
}


/* A new pair at the end of the list, its value initialised; NULL when out of memory. */
static tap_pb_any_t *
tap_attr_new(tap_attrs_t *at, const char *key)
{
    tap_pb_kv_t   *kv, **nkv;
    tap_pb_any_t  *v;
    size_t         cap;

    if (at->n == at->cap) {
        cap = at->cap ? at->cap * 2 : 16;
        nkv = tap_arena_alloc(at->a, cap * sizeof(tap_pb_kv_t *));
        if (nkv == NULL) {
            return NULL;
        }
        if (at->n > 0) {
            memcpy(nkv, at->kv, at->n * sizeof(tap_pb_kv_t *));
        }
        at->kv = nkv;
        at->cap = cap;
    }
    kv = TAP_ARENA_NEW(at->a, tap_pb_kv_t);
    v = TAP_ARENA_NEW(at->a, tap_pb_any_t);
    if (kv == NULL || v == NULL) {
        return NULL;
    }
    opentelemetry__proto__common__v1__key_value__init(kv);
    opentelemetry__proto__common__v1__any_value__init(v);
    kv->key = (char *) key;             /* keys are static strings */
    kv->value = v;
    at->kv[at->n++] = kv;
    return v;
}


void
tap_attrk_str(tap_attrs_t *at, const char *key, size_t klen, const char *s, size_t len)
{
    tap_pb_any_t  *v;
    char          *copy;

    if (at->field != 0) {
        tap_attr_wire_str(at, key, klen, s, len);
        return;
    }
    v = tap_attr_new(at, key);
    if (v == NULL || (copy = tap_arena_strndup(at->a, s, len)) == NULL) {
        return;
    }
    v->value_case = TAP_PB_ANY(STRING_VALUE);
    v->string_value = copy;
}


void
tap_attrk_int(tap_attrs_t *at, const char *key, size_t klen, int64_t i)
{
    tap_pb_any_t  *v;

    if (at->field != 0) {
        tap_attr_wire_int(at, key, klen, i);
        return;
    }
    v = tap_attr_new(at, key);
    if (v != NULL) {
        v->value_case = TAP_PB_ANY(INT_VALUE);
        v->int_value = i;
    }
}


void
tap_attrk_double(tap_attrs_t *at, const char *key, size_t klen, double d)
{
    tap_pb_any_t  *v;

    if (at->field != 0) {
        tap_attr_wire_double(at, key, klen, d);
        return;
    }
    v = tap_attr_new(at, key);
    if (v != NULL) {
        v->value_case = TAP_PB_ANY(DOUBLE_VALUE);
        v->double_value = d;
    }
}


void
tap_attrk_bool(tap_attrs_t *at, const char *key, size_t klen, int b)
{
    tap_pb_any_t  *v;

    if (at->field != 0) {
        tap_attr_wire_bool(at, key, klen, b);
        return;
    }
    v = tap_attr_new(at, key);
    if (v != NULL) {
        v->value_case = TAP_PB_ANY(BOOL_VALUE);
        v->bool_value = b ? 1 : 0;
    }
}


void
tap_attr_strs(tap_attrs_t *at, const char *key, const char *const *s, size_t n)
{
    tap_pb_any_t    *v, **items;
    tap_pb_array_t  *arr;
    size_t           i;

    if (at->field != 0) {
        tap_attr_wire_strs(at, key, s, n);
        return;
    }
    v = tap_attr_new(at, key);
    if (v == NULL
        || (arr = TAP_ARENA_NEW(at->a, tap_pb_array_t)) == NULL
        || (items = tap_arena_alloc(at->a, (n ? n : 1) * sizeof(tap_pb_any_t *))) == NULL)
    {
        return;
    }
    opentelemetry__proto__common__v1__array_value__init(arr);
    for (i = 0; i < n; i++) {
        items[i] = TAP_ARENA_NEW(at->a, tap_pb_any_t);
        if (items[i] == NULL) {
            return;
        }
        opentelemetry__proto__common__v1__any_value__init(items[i]);
        items[i]->value_case = TAP_PB_ANY(STRING_VALUE);
        items[i]->string_value = tap_arena_strdup(at->a, s[i]);
        if (items[i]->string_value == NULL) {
            return;
        }
    }
    arr->values = items;
    arr->n_values = n;
    v->value_case = TAP_PB_ANY(ARRAY_VALUE);
    v->array_value = arr;
}


void
tap_attrk_hex64(tap_attrs_t *at, const char *key, size_t klen, uint64_t x)
{
    static const char  digits[] = "0123456789abcdef";
    char               buf[16];
    int                i;

    for (i = 15; i >= 0; i--, x >>= 4) {
        buf[i] = digits[x & 0xf];
    }
    tap_attrk_str(at, key, klen, buf, 16);
}


tap_pb_resource_t *
tap_pb_resource(tap_arena_t *a, const char *service_name, char *const *pairs, size_t npairs)
{
    tap_pb_resource_t  *res = TAP_ARENA_NEW(a, tap_pb_resource_t);
    tap_attrs_t         at;
    size_t              i;

    if (res == NULL) {
        return NULL;
    }
    opentelemetry__proto__resource__v1__resource__init(res);
    tap_attrs_init(&at, a);
    tap_attr_str(&at, "service.name", service_name);
    for (i = 0; i + 1 < npairs; i += 2) {
        if (strcmp(pairs[i], "service.name") != 0) {
            tap_attr_str(&at, pairs[i], pairs[i + 1]);
        }
    }
    tap_attr_str(&at, "telemetry.sdk.name", "infertap");
    tap_attr_str(&at, "telemetry.sdk.language", "c");
    tap_attr_str(&at, "telemetry.sdk.version", TAP_VERSION);
    res->attributes = at.kv;
    res->n_attributes = at.n;
    return a->failed ? NULL : res;
}


tap_pb_scope_t *
tap_pb_scope(tap_arena_t *a)
{
    tap_pb_scope_t  *sc = TAP_ARENA_NEW(a, tap_pb_scope_t);

    if (sc != NULL) {
        opentelemetry__proto__common__v1__instrumentation_scope__init(sc);
        sc->name = "infertap";
        sc->version = TAP_VERSION;
    }
    return sc;
}
