/*
 * accesslog.h: one JSON line per exchange, batched per worker.
 */

#ifndef TAP_PROXY_ACCESSLOG_H
#define TAP_PROXY_ACCESSLOG_H

#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "exchange.h"

#define TAP_ALOG_MAX_PENDING  (4 * 1024 * 1024)

typedef struct tap_alog_s {
    int       fd;
    unsigned  regular:1;       /* a regular file: one write() per batch */
    unsigned  own_fd:1;
} tap_alog_t;

typedef struct tap_alog_buf_s {
    tap_alog_t       *log;
    struct evbuffer  *buf;
    struct event     *flush_ev;
    uint64_t          dropped; /* lines lost: buffer full or write error */
} tap_alog_buf_t;


/* Opens the access log named by spec: "-" (stdout), a path (O_APPEND), or
 * NULL / "off" (disabled: *out = NULL).  Returns TAP_OK or TAP_ERROR with an
 * allocated message in *err. */
int tap_alog_open(const char *spec, tap_alog_t **out, char **err);
void tap_alog_close(tap_alog_t *log);

int tap_alog_buf_init(tap_alog_buf_t *b, tap_alog_t *log, struct event_base *base);
/* Flushes what is pending (blocking briefly if need be) and frees. */
void tap_alog_buf_cleanup(tap_alog_buf_t *b);

/* Formats ex as one line and schedules a flush at the end of this loop
 * iteration.  Returns TAP_OK, or TAP_DECLINED when the line was dropped. */
int tap_alog_write(tap_alog_buf_t *b, const tap_exchange_t *ex);

/* Formats ex as one JSON object plus '\n' into out (exported for tests). */
void tap_alog_format(struct evbuffer *out, const tap_exchange_t *ex);

#endif /* TAP_PROXY_ACCESSLOG_H */
