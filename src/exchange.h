/*
 * exchange.h: the record of one request (an "exchange").
 *
 * Every request infertap sees yields exactly one tap_exchange_t, whatever the
 * outcome: success, rejected request, client abort, upstream reset or timeout.
 * The proxy fills the identity, timing and transport fields; the GenAI fields
 * (model, tokens, hashes, confidence) belong to the protocol filters and stay
 * unset (TAP_EX_UNSET / NULL / has_* = 0) until a filter fills them.  The
 * access log, metrics and spans all read this one struct.
 *
 * Clock stamps are CLOCK_MONOTONIC nanoseconds, 0 meaning "never happened".
 * Strings are owned by the exchange's transaction and live as long as it.
 */

#ifndef TAP_EXCHANGE_H
#define TAP_EXCHANGE_H

#include <stdint.h>

#define TAP_EX_UNSET        (-1)
#define TAP_EX_REQID_MAX    128

typedef struct tap_exchange_s {
    /* identity */
    char         request_id[TAP_EX_REQID_MAX + 1];
    uint8_t      trace_id[16];
    uint8_t      span_id[8];
    uint8_t      parent_span_id[8];    /* the caller's span, when has_parent */
    uint8_t      trace_flags;
    unsigned     has_parent:1;

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

    /* clocks: monotonic ns; wall_t0_ms is the realtime of t0 for "ts" */
    int64_t      wall_t0_ms;
    int64_t      t0;                   /* first byte of the request head */
    int64_t      t_req;                /* last byte of the request */
    int64_t      upstream_start;       /* the successful attempt began (connect or reuse) */
    int64_t      upstream_connect;     /* upstream connection ready */
    int64_t      upstream_first_byte;  /* first byte of the response */
    int64_t      last_byte;            /* last byte queued to the client */

    /* GenAI fields, filled by protocol filters */
    const char  *model;
    int          stream;               /* TAP_EX_UNSET, 0 or 1 */
    int64_t      prompt_tokens;        /* TAP_EX_UNSET when unknown */
    int64_t      completion_tokens;
    int          tokens_estimated;     /* TAP_EX_UNSET, 0 or 1 */
    double       ttft_ms;              /* < 0 when unknown */
    double       tpot_ms;
    uint64_t     prompt_hash;
    uint64_t     params_hash;
    uint64_t     completion_hash;
    unsigned     has_prompt_hash:1;
    unsigned     has_params_hash:1;
    unsigned     has_completion_hash:1;
    const char  *finish_reason;
    const char  *confidence_json;      /* a JSON object, or NULL */
} tap_exchange_t;


/* Resets every field to "unset". */
static inline void
tap_exchange_init(tap_exchange_t *ex)
{
    *ex = (tap_exchange_t) { 0 };
    ex->stream = TAP_EX_UNSET;
    ex->prompt_tokens = TAP_EX_UNSET;
    ex->completion_tokens = TAP_EX_UNSET;
    ex->tokens_estimated = TAP_EX_UNSET;
    ex->ttft_ms = -1.0;
    ex->tpot_ms = -1.0;
}

#endif /* TAP_EXCHANGE_H */
