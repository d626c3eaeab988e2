/*
 * pb.h: building OTLP messages with protobuf-c.
 *
 * The messages of one export request (spans, metric points, log records and
 * every attribute they hold) are allocated from one arena and dropped all at
 * once after packing: no per-field free, no leak on an error path.  The
 * generated type names are long; each is spelled once here.
 *
 * Attribute values are copied into the arena, so the source (an exchange
 * record, a label table) may change or go away before the message is packed.
 */

#ifndef TAP_TELEMETRY_PB_H
#define TAP_TELEMETRY_PB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "otlp_collector_logs.pb-c.h"
#include "otlp_collector_metrics.pb-c.h"
#include "otlp_collector_trace.pb-c.h"

typedef Opentelemetry__Proto__Common__V1__AnyValue               tap_pb_any_t;
typedef Opentelemetry__Proto__Common__V1__ArrayValue             tap_pb_array_t;
typedef Opentelemetry__Proto__Common__V1__KeyValue               tap_pb_kv_t;
typedef Opentelemetry__Proto__Common__V1__InstrumentationScope   tap_pb_scope_t;
typedef Opentelemetry__Proto__Resource__V1__Resource             tap_pb_resource_t;
typedef Opentelemetry__Proto__Trace__V1__ResourceSpans           tap_pb_rspans_t;
typedef Opentelemetry__Proto__Trace__V1__ScopeSpans              tap_pb_sspans_t;
typedef Opentelemetry__Proto__Trace__V1__Span                    tap_pb_span_t;
typedef Opentelemetry__Proto__Trace__V1__Span__Event             tap_pb_event_t;
typedef Opentelemetry__Proto__Trace__V1__Status                  tap_pb_status_t;
typedef Opentelemetry__Proto__Metrics__V1__ResourceMetrics       tap_pb_rmetrics_t;
typedef Opentelemetry__Proto__Metrics__V1__ScopeMetrics          tap_pb_smetrics_t;
typedef Opentelemetry__Proto__Metrics__V1__Metric                tap_pb_metric_t;
typedef Opentelemetry__Proto__Metrics__V1__Sum                   tap_pb_sum_t;
typedef Opentelemetry__Proto__Metrics__V1__Gauge                 tap_pb_gauge_t;
typedef Opentelemetry__Proto__Metrics__V1__Histogram             tap_pb_hist_t;
typedef Opentelemetry__Proto__Metrics__V1__NumberDataPoint       tap_pb_ndp_t;
typedef Opentelemetry__Proto__Metrics__V1__HistogramDataPoint    tap_pb_hdp_t;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs             tap_pb_rlogs_t;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs                tap_pb_slogs_t;
typedef Opentelemetry__Proto__Logs__V1__LogRecord                tap_pb_log_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequest      tap_pb_treq_t;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceRequest  tap_pb_mreq_t;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest        tap_pb_lreq_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceRequestPacked tap_pb_treqp_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ResourceSpansPacked            tap_pb_rspansp_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ScopeSpansPacked               tap_pb_sspansp_t;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequestPacked  tap_pb_lreqp_t;
typedef Opentelemetry__Proto__Collector__Logs__V1__ResourceLogsPacked              tap_pb_rlogsp_t;
typedef Opentelemetry__Proto__Collector__Logs__V1__ScopeLogsPacked                 tap_pb_slogsp_t;
typedef Opentelemetry__Proto__Collector__Trace__V1__ExportTraceServiceResponse     tap_pb_tresp_t;
typedef Opentelemetry__Proto__Collector__Metrics__V1__ExportMetricsServiceResponse tap_pb_mresp_t;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse       tap_pb_lresp_t;

#define TAP_PB_ANY(c)  OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_##c

/*
 * A bump allocator: blocks of at least 64 KiB, 16-byte aligned, zeroed.  A
 * reset keeps the standard blocks (up to TAP_ARENA_KEEP bytes) for the next
 * message, so a steady stream of batches allocates nothing.
 */
typedef struct tap_arena_blk_s  tap_arena_blk_t;

#define TAP_ARENA_KEEP  (8 * 1024 * 1024)

typedef struct tap_arena_s {
    tap_arena_blk_t  *head;            /* the block being filled; older ones follow */
    tap_arena_blk_t  *spare;           /* kept blocks not in use since the last reset */
    size_t            used;            /* bytes taken from head */
    size_t            total;           /* bytes of all blocks, for limits and tests */
    unsigned          failed:1;        /* an allocation failed since the last reset */
} tap_arena_t;

void tap_arena_init(tap_arena_t *a);
/* Zeroed memory, or NULL (and a->failed set) when out of memory. */
void *tap_arena_alloc(tap_arena_t *a, size_t n);
char *tap_arena_strndup(tap_arena_t *a, const char *s, size_t n);
char *tap_arena_strdup(tap_arena_t *a, const char *s);
/* Empties the arena, keeping its standard blocks (up to TAP_ARENA_KEEP bytes). */
void tap_arena_reset(tap_arena_t *a);
void tap_arena_free(tap_arena_t *a);

#define TAP_ARENA_NEW(a, type)  ((type *) tap_arena_alloc(a, sizeof(type)))

/*
 * A growing attribute list.  Allocation failures are sticky in the arena
 * (a->failed): build the whole message, then check once.
 *
 * In wire mode (tap_attrs_init_wire) each attribute is encoded at once, as
 * the parent message's repeated KeyValue field number `field` (tag, length,
 * KeyValue), into at->wire, after the parent's own fields (tap_wire_*
 * below): the parent message is written whole, without protobuf-c, which
 * sizes a nested message again for every level above it (an attribute is
 * three levels down in a span) and walks descriptor tables for each field.
 * Protobuf lets a message's fields come in any order, so attributes after
 * the other fields decode exactly as if protobuf-c had packed them.
 */
typedef struct tap_attrs_s {
    tap_arena_t   *a;
    tap_pb_kv_t  **kv;                 /* message mode */
    size_t         n;                  /* attributes, in either mode */
    size_t         cap;
    unsigned       field;              /* wire mode: the parent's field number; 0: message mode */
    uint8_t       *wire;
    size_t         wlen;
    size_t         wcap;
} tap_attrs_t;

void tap_attrs_init(tap_attrs_t *at, tap_arena_t *a);
void tap_attrs_init_wire(tap_attrs_t *at, tap_arena_t *a, unsigned field);
void tap_attr_strs(tap_attrs_t *at, const char *key, const char *const *v, size_t n);

/*
 * The builders below take the key's length from the inline wrappers after
 * them, where it is a constant when the key is a literal (every key but the
 * configured resource attributes): no strlen per attribute.  A string value
 * is taken whole (tap_attr_str) or up to its first NUL within len bytes
 * (tap_attr_strn).
 */
void tap_attrk_str(tap_attrs_t *at, const char *key, size_t klen, const char *v, size_t len);
void tap_attrk_int(tap_attrs_t *at, const char *key, size_t klen, int64_t v);
void tap_attrk_double(tap_attrs_t *at, const char *key, size_t klen, double v);
void tap_attrk_bool(tap_attrs_t *at, const char *key, size_t klen, int v);
void tap_attrk_hex64(tap_attrs_t *at, const char *key, size_t klen, uint64_t v);


static inline void
tap_attr_str(tap_attrs_t *at, const char *key, const char *v)
{
    tap_attrk_str(at, key, strlen(key), v, strlen(v));
}


static inline void
tap_attr_strn(tap_attrs_t *at, const char *key, const char *v, size_t len)
{
    tap_attrk_str(at, key, strlen(key), v, strnlen(v, len));
}


static inline void
tap_attr_int(tap_attrs_t *at, const char *key, int64_t v)
{
    tap_attrk_int(at, key, strlen(key), v);
}


static inline void
tap_attr_double(tap_attrs_t *at, const char *key, double v)
{
    tap_attrk_double(at, key, strlen(key), v);
}


static inline void
tap_attr_bool(tap_attrs_t *at, const char *key, int v)
{
    tap_attrk_bool(at, key, strlen(key), v);
}


/* 16 lowercase hex digits of v. */
static inline void
tap_attr_hex64(tap_attrs_t *at, const char *key, uint64_t v)
{
    tap_attrk_hex64(at, key, strlen(key), v);
}


/*
 * Wire mode: the parent's own fields, written as they come.  Called before
 * any attribute and in field number order, they give the bytes protobuf-c
 * packs for those fields (varint: int, enum and uint fields; fixed64 and
 * fixed32; bytes: bytes, strings, and messages already encoded, such as a
 * nested tap_attrs_t's wire), so the parent is what protobuf-c would make
 * of it followed by its attributes.
 */
void tap_wire_varint(tap_attrs_t *at, unsigned field, uint64_t v);
void tap_wire_fixed64(tap_attrs_t *at, unsigned field, uint64_t v);
void tap_wire_fixed32(tap_attrs_t *at, unsigned field, uint32_t v);
void tap_wire_bytes(tap_attrs_t *at, unsigned field, const void *data, size_t n);
/* An AnyValue field holding the string s[0..n). */
void tap_wire_any_str(tap_attrs_t *at, unsigned field, const char *s, size_t n);

/*
 * A trace or log export request framed in place.  For one resource and one
 * scope, ExportTraceServiceRequest and ExportLogsServiceRequest are alike:
 *
 *   1 (resource_spans | resource_logs): {
 *       1 (resource): Resource,
 *       2 (scope_spans | scope_logs): { 1 (scope): InstrumentationScope, 2: item, 2: item... } }
 *
 * where an item is an encoded Span or LogRecord.  The items are written one
 * after the other (tap_pb_item, tap_pb_item_len bytes each) after
 * tap_pb_frame_room() bytes of room; tap_pb_frame() then writes the fields
 * around them into that room, so a batch is never copied to be sent.
 * resource and scope are the encoded messages.
 */
size_t tap_pb_item_len(size_t len);
uint8_t *tap_pb_item(uint8_t *p, const void *data, size_t len);
size_t tap_pb_frame_room(size_t resource_len, size_t scope_len);
/* Returns where the request starts, before items; it ends at items + items_len. */
uint8_t *tap_pb_frame(uint8_t *items, size_t items_len, const uint8_t *resource,
    size_t resource_len, const uint8_t *scope, size_t scope_len);

/*
 * The resource every request carries: service.name, the telemetry.sdk.*
 * attributes and `pairs` (key, value, key, value...; from resource_attributes),
 * where a service.name in pairs yields to service_name.
 */
tap_pb_resource_t *tap_pb_resource(tap_arena_t *a, const char *service_name,
    char *const *pairs, size_t npairs);

/* The instrumentation scope: name "infertap", the package version. */
tap_pb_scope_t *tap_pb_scope(tap_arena_t *a);

#endif /* TAP_TELEMETRY_PB_H */
