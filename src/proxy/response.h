/*
 * response.h: the upstream response parser (llhttp, strict) with the checks
 * infertap needs before relaying a head: a final status (interim 1xx heads
 * are dropped), unambiguous framing, bounded head size.  No socket involved.
 */

#ifndef TAP_PROXY_RESPONSE_H
#define TAP_PROXY_RESPONSE_H

#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>

#include "proxy/headers.h"

#define TAP_RESP_MAX_HEAD  (64 * 1024)

typedef struct tap_respp_s tap_respp_t;

typedef struct tap_respp_cbs_s {
    void  (*on_first_byte)(void *ctx);
    int   (*on_head)(void *ctx);           /* a final, valid head */
    int   (*on_body)(void *ctx, const char *p, size_t len);
    int   (*on_done)(void *ctx);
} tap_respp_cbs_t;

struct tap_respp_s {
    llhttp_t               parser;
    tap_hlist_t            hl;             /* headers; uoff/ulen: the reason phrase */
    const tap_respp_cbs_t *cbs;
    void                  *ctx;
    int                    status;
    unsigned               head_only:1;    /* answer to HEAD: no body whatever it says */
    unsigned               interim:1;
    unsigned               got_head:1;
    unsigned               done:1;
    unsigned               any_byte:1;
    unsigned               failed:1;
    const char            *err;           /* reason when TAP_ERROR */
};

void tap_respp_init(tap_respp_t *rp, const tap_respp_cbs_t *cbs, void *ctx, int head_only);
void tap_respp_cleanup(tap_respp_t *rp);

/* Returns TAP_OK (all consumed), TAP_AGAIN (response complete; *consumed
 * bytes used: any byte left over means the connection is not reusable) or
 * TAP_ERROR (malformed; rp->err says why). */
int tap_respp_feed(tap_respp_t *rp, const char *p, size_t len, size_t *consumed);

/* The connection reached EOF.  Returns TAP_AGAIN if this completed a
 * close-delimited response (on_done was called), TAP_ERROR if the response
 * is truncated. */
int tap_respp_eof(tap_respp_t *rp);

/* Non-zero if the response is framed by Content-Length / chunked / EOF. */
static inline int
tap_respp_has_cl(const tap_respp_t *rp)
{
    return (rp->parser.flags & F_CONTENT_LENGTH) != 0 && !(rp->parser.flags & F_CHUNKED);
}

static inline int
tap_respp_keepalive(tap_respp_t *rp)
{
    return llhttp_should_keep_alive(&rp->parser);
}

#endif /* TAP_PROXY_RESPONSE_H */
