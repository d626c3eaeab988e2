/*
 * split.h: incremental event splitters for streamed model responses.
 *
 * Server-Sent Events (text/event-stream, as the WHATWG HTML standard defines
 * the parsing) and newline-delimited JSON (Ollama's application/x-ndjson).
 * Both are fed the body in whatever pieces the network delivers and call back
 * once per event, so the events are the same whatever the chunk boundaries.
 * A splitter keeps at most `max` bytes of one pending event; an event that
 * grows past it is skipped to its end and counted in `oversized`.
 *
 * Each callback also says where the event ends in the piece being fed
 * (`end`: offset just past the line ending that completed it), so a caller
 * can forward or drop the exact bytes of each event.
 */

#ifndef TAP_SPLIT_H
#define TAP_SPLIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct tap_sse_event_s {
    const char  *data;         /* "data" lines joined with '\n'; NULL: no data line */
    size_t       len;
    const char  *event;        /* the "event" field, NUL-terminated; "" when none */
    const char  *id;           /* the "id" field, NUL-terminated; "" when none */
    size_t       end;          /* offset in the fed piece just past the blank line */
} tap_sse_event_t;

/*
 * Called at every blank line, that is every event boundary, also for blocks
 * that carried no data (comments only, keep-alives) or whose data was
 * dropped for exceeding max: then data is NULL.  ev and what it points to
 * are valid only during the call (data may point into the fed piece).
 * Returns 0 to go on, non-zero to stop feeding (tap_sse_feed returns it).
 */
typedef int (*tap_sse_cb)(void *ctx, const tap_sse_event_t *ev);

typedef struct tap_sse_s {
    char      *buf;            /* pending line and data of the event being built */
    size_t     len, cap, max;
    size_t     line;           /* start of the current, unfinished line in buf */
    size_t     data_len;       /* bytes of joined data at the start of buf */
    char       event[64];
    char       id[128];
    unsigned   has_data:1;
    unsigned   after_cr:1;     /* the last byte fed was a CR ending a line */
    unsigned   skipping:1;     /* the current event overflowed: drop to its end */
    unsigned   first:1;        /* at the very start: a BOM may follow */
    uint64_t   events;         /* events with data dispatched */
    uint64_t   oversized;      /* events dropped for exceeding max */
} tap_sse_t;

void tap_sse_init(tap_sse_t *s, size_t max);
void tap_sse_cleanup(tap_sse_t *s);

/*
 * Feeds one piece; returns 0 once all of it is consumed, or the callback's
 * non-zero value: feeding then stops right after that event, and the bytes
 * of the piece past ev->end are not consumed (feed p + end to go on).
 */
int tap_sse_feed(tap_sse_t *s, const char *p, size_t len, tap_sse_cb cb, void *ctx);

/*
 * The stream ended.  Returns 1 when an event was left unfinished (a cut
 * stream: data lines not yet dispatched, an oversized event being skipped,
 * or an unfinished line other than spaces and tabs), else 0.  The
 * unfinished event is not dispatched.  The splitter is reset for a new
 * stream (it keeps its buffer and counters).
 */
int tap_sse_finish(tap_sse_t *s);


typedef struct tap_ndjson_line_s {
    const char  *data;         /* the line without its LF or CRLF; never empty */
    size_t       len;
    size_t       end;          /* offset in the fed piece just past the LF */
} tap_ndjson_line_t;

typedef int (*tap_ndjson_cb)(void *ctx, const tap_ndjson_line_t *line);

typedef struct tap_ndjson_s {
    char      *buf;
    size_t     len, cap, max;
    unsigned   skipping:1;
    uint64_t   lines;
    uint64_t   oversized;
} tap_ndjson_t;

void tap_ndjson_init(tap_ndjson_t *s, size_t max);
void tap_ndjson_cleanup(tap_ndjson_t *s);

/*
 * Blank lines (only spaces, tabs, CR) are skipped.  line->data is valid only
 * during the callback.  A non-zero callback value stops feeding as for
 * tap_sse_feed(): the bytes past line->end are not consumed.
 */
int tap_ndjson_feed(tap_ndjson_t *s, const char *p, size_t len, tap_ndjson_cb cb, void *ctx);

/*
 * The stream ended.  A last line without LF is dispatched when it is
 * complete JSON-wise is not known here, so it is dispatched as is (end =
 * 0) and 1 is returned when there was one; 0 otherwise.
 */
int tap_ndjson_finish(tap_ndjson_t *s, tap_ndjson_cb cb, void *ctx);

#endif /* TAP_SPLIT_H */
