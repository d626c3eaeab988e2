/*
 * exchange.h: the record of one request (an "exchange").
 *
 * Every request infertap sees yields exactly one tap_exchange_t, whatever the
 * outcome: success, rejected request, client abort, upstream reset or timeout.
 * The proxy fills the identity, timing and transport fields; the GenAI fields
 * (model, tokens, hashes, confidence) belong to the protocol filters and stay
 * unset (see genai.h) until a filter fills them.  The
 * access log, metrics and spans all read this one struct.
 *
 * Clock stamps are CLOCK_MONOTONIC nanoseconds, 0 meaning "never happened".
 * Strings are owned by the exchange's transaction and live as long as it.
 */

#ifndef TAP_EXCHANGE_H
#define TAP_EXCHANGE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "genai/genai.h"

#define TAP_EX_UNSET        (-1)
#define TAP_EX_REQID_MAX    128

typedef struct tap_exchange_s {
    /* identity */
    char         request_id[TAP_EX_REQID_MAX + 1];
    uint8_t      trace_id[16];
    uint8_t      span_id[8];           /* infertap's SERVER span */
    uint8_t      client_span_id[8];    /* the CLIENT span of the upstream call */
    uint8_t      parent_span_id[8];    /* the caller's span, when has_parent */
    uint8_t      trace_flags;          /* sent upstream: 01 when the head sampler keeps it */
    unsigned     has_parent:1;
    unsigned     anomaly:1;            /* flagged by the analysis (tail sampling keeps it) */
    const char  *anomaly_kind;         /* static: "e2e", "nondeterministic", ...; NULL none */

    /* request and response */
    char         method[24];
    const char  *path;                 /* request target without the query */
    size_t       path_len;
    int          status;               /* 0 until a response status is known */
    uint64_t     bytes_in;             /* request body bytes received */
    uint64_t     bytes_out;            /* response body bytes sent */
    char         upstream[80];         /* "host:port" of the last server tried */
    unsigned     retries;
    const char  *error;                /* static reason string, NULL on success */

    /* clocks: monotonic ns; wall_t0_ns is the realtime of t0 */
    int64_t      wall_t0_ns;
    int64_t      t0;                   /* the head began: the read (or resumption) parsing it */
    int64_t      t_req;                /* the request was whole: the read that ended it */
    int64_t      upstream_start;       /* the successful attempt began (connect or reuse) */
    int64_t      upstream_connect;     /* upstream connection ready */
    int64_t      upstream_first_byte;  /* first byte of the response */
    int64_t      last_byte;            /* last byte queued to the client */

    /* GenAI fields, filled by the protocol filters (src/filter.h) */
    tap_gen_t    gen;
    unsigned     analysed:1;           /* a protocol filter looked at it */
    double       ttft_ms;              /* < 0 when unknown */
    double       tpot_ms;
    double       itl_max_ms;           /* longest gap between token events */
} tap_exchange_t;


/* Resets every field to "unset". */
static inline void
tap_exchange_init(tap_exchange_t *ex)
{
    memset(ex, 0, offsetof(tap_exchange_t, gen));     /* tap_gen_init() clears the rest */
    tap_gen_init(&ex->gen);
    ex->analysed = 0;
    ex->ttft_ms = -1.0;
    ex->tpot_ms = -1.0;
    ex->itl_max_ms = -1.0;
}

#endif /* TAP_EXCHANGE_H */
