/*
 * request.h: the downstream request parser: llhttp (strict) plus the
 * framing and smuggling checks a proxy must add, with no socket involved.
 *
 * The owner feeds bytes with tap_reqp_feed() and is called back when a valid
 * head is complete, for each piece of body, and at the end of the message.
 * After the end of a message the parser stops (TAP_AGAIN) so that pipelined
 * requests are handled one at a time; tap_reqp_next() re-arms it.
 */

#ifndef TAP_PROXY_REQUEST_H
#define TAP_PROXY_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "proxy/headers.h"

typedef struct tap_reqp_s tap_reqp_t;

typedef struct tap_reqp_cbs_s {
    /* first byte of a new request */
    void  (*on_begin)(void *ctx);
    /* a valid head; return TAP_OK, or TAP_ERROR after setting an error with
     * tap_reqp_fail() */
    int   (*on_head)(void *ctx);
    /* a piece of the (de-chunked) body, valid during the call */
    int   (*on_body)(void *ctx, const char *p, size_t len);
    /* end of the message */
    int   (*on_done)(void *ctx);
} tap_reqp_cbs_t;

struct tap_reqp_s {
    llhttp_t               parser;
    tap_hlist_t            hl;
    const tap_reqp_cbs_t  *cbs;
    void                  *ctx;
    uint64_t               max_body;

    /* framing of the current request, valid from on_head */
    uint64_t               content_length;
    uint64_t               body_bytes;
    uint32_t               aoff;          /* absolute-form target: its authority in hl.buf */
    uint32_t               alen;          /* 0 for the usual origin-form */
    unsigned               has_cl:1;
    unsigned               chunked:1;
    unsigned               expect_continue:1;
    unsigned               in_head:1;
    unsigned               begun:1;
    unsigned               done:1;

    /* error, when tap_reqp_feed() returned TAP_ERROR */
    int                    err_status;
    const char            *err_code;
    const char            *err_msg;

    /* position tracking, for head size and obs-fold checks */
    const char            *feed_start;
    uint64_t               fed;           /* bytes fed before feed_start */
    uint64_t               head_start;    /* absolute offset of the method */
    char                   last_char;     /* last byte of the previous feed */
    size_t                 max_head;
};


void tap_reqp_init(tap_reqp_t *rp, const tap_reqp_cbs_t *cbs, void *ctx, size_t max_header_bytes,
    unsigned max_headers, uint64_t max_body);
void tap_reqp_cleanup(tap_reqp_t *rp);

/* Feeds len bytes.  Returns TAP_OK (all consumed), TAP_AGAIN (a message
 * ended; *consumed bytes were used, call tap_reqp_next() before feeding the
 * rest) or TAP_ERROR (rp->err_* say what to answer; the connection must be
 * closed). */
int tap_reqp_feed(tap_reqp_t *rp, const char *p, size_t len, size_t *consumed);

/* Re-arms the parser for the next pipelined request. */
void tap_reqp_next(tap_reqp_t *rp);

/* Records an error for the current request (used by callbacks). */
void tap_reqp_fail(tap_reqp_t *rp, int status, const char *code, const char *msg);

static inline int
tap_reqp_keepalive(tap_reqp_t *rp)
{
    return llhttp_should_keep_alive(&rp->parser);
}

#endif /* TAP_PROXY_REQUEST_H */
