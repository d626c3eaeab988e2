/*
 * response.c: upstream response parsing.
 *
 * The same strict llhttp as for requests, in HTTP_RESPONSE mode.  A HEAD
 * request's response (the owner sets head_only), a 204 and a 304 are parsed
 * as bodiless whatever their Content-Length or Transfer-Encoding says.
 * Interim 1xx heads, which never have content whatever their framing headers
 * say, are consumed and dropped: infertap answers Expect: 100-continue
 * itself and never forwards Upgrade, so 101 is a protocol error here.
 * Repeated Content-Length headers are refused even when equal,
 * Content-Length with Transfer-Encoding is refused by llhttp; header names
 * that are empty or hold a space are refused here, and the head is bounded
 * to TAP_RESP_MAX_HEAD bytes.  The parser pauses after the final response so
 * any byte that follows it (which would desynchronise a pooled connection)
 * is visible to the owner.
 */

#include "config.h"

#include <string.h>

#include "tap_core.h"
#include "proxy/response.h"


static int tap_respp_on_message_begin(llhttp_t *p);
static int tap_respp_on_status(llhttp_t *p, const char *at, size_t len);
static int tap_respp_on_header_field(llhttp_t *p, const char *at, size_t len);
static int tap_respp_on_header_field_complete(llhttp_t *p);
static int tap_respp_on_header_value(llhttp_t *p, const char *at, size_t len);
static int tap_respp_on_headers_complete(llhttp_t *p);
static int tap_respp_on_body(llhttp_t *p, const char *at, size_t len);
static int tap_respp_on_message_complete(llhttp_t *p);


static const llhttp_settings_t  tap_respp_settings = {
    .on_message_begin = tap_respp_on_message_begin,
    .on_status = tap_respp_on_status,
    .on_header_field = tap_respp_on_header_field,
    .on_header_field_complete = tap_respp_on_header_field_complete,
    .on_header_value = tap_respp_on_header_value,
    .on_headers_complete = tap_respp_on_headers_complete,
    .on_body = tap_respp_on_body,
    .on_message_complete = tap_respp_on_message_complete,
};


void
tap_respp_init(tap_respp_t *rp, const tap_respp_cbs_t *cbs, void *ctx, int head_only)
{
    tap_hlist_t  hl = rp->hl;

    *rp = (tap_respp_t) { 0 };
    rp->hl = hl;
    if (rp->hl.limit == 0) {
        tap_hlist_init(&rp->hl, TAP_RESP_MAX_HEAD, 256);
    }
    tap_hlist_reset(&rp->hl);
    llhttp_init(&rp->parser, HTTP_RESPONSE, &tap_respp_settings);
    rp->parser.data = rp;
    rp->cbs = cbs;
    rp->ctx = ctx;
    rp->head_only = head_only ? 1 : 0;
}


void
tap_respp_cleanup(tap_respp_t *rp)
{
    if (rp != NULL) {
        tap_hlist_cleanup(&rp->hl);
    }
}


static int
tap_respp_fail(tap_respp_t *rp, const char *why)
{
    if (rp->err == NULL) {
        rp->err = why;
    }
    rp->failed = 1;
    return -1;
}


int
tap_respp_feed(tap_respp_t *rp, const char *p, size_t len, size_t *consumed)
{
    llhttp_errno_t  err;

    *consumed = 0;
    if (rp->failed) {
        return TAP_ERROR;
    }
    if (rp->done) {
        return TAP_AGAIN;
    }
    if (len > 0 && !rp->any_byte) {
        rp->any_byte = 1;
        if (rp->cbs->on_first_byte != NULL) {
            rp->cbs->on_first_byte(rp->ctx);
        }
    }

    err = llhttp_execute(&rp->parser, p, len);
    if (err == HPE_OK) {
        *consumed = len;
        return TAP_OK;
    }
    if (err == HPE_PAUSED && rp->done && !rp->failed) {
        *consumed = (size_t) (llhttp_get_error_pos(&rp->parser) - p);
        return TAP_AGAIN;
    }
    tap_respp_fail(rp, llhttp_get_error_reason(&rp->parser));
    return TAP_ERROR;
}


int
tap_respp_eof(tap_respp_t *rp)
{
    llhttp_errno_t  err;

    if (rp->done) {
        return TAP_AGAIN;
    }
    if (rp->failed || !rp->got_head) {
        return TAP_ERROR;
    }
    err = llhttp_finish(&rp->parser);
    if ((err == HPE_OK || err == HPE_PAUSED) && rp->done) {
        return TAP_AGAIN;
    }
    return TAP_ERROR;
}


static int
tap_respp_on_message_begin(llhttp_t *p)
{
    tap_respp_t  *rp = p->data;

    tap_hlist_reset(&rp->hl);
    rp->interim = 0;
    return 0;
}


static int
tap_respp_append(tap_respp_t *rp, tap_hpart_e part, const char *at, size_t len)
{
    if (tap_hlist_append(&rp->hl, part, at, len) != TAP_OK) {
        return tap_respp_fail(rp, "response head too large");
    }
    return 0;
}


static int
tap_respp_on_status(llhttp_t *p, const char *at, size_t len)
{
    return tap_respp_append(p->data, TAP_HPART_URL, at, len);
}


static int
tap_respp_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    return tap_respp_append(p->data, TAP_HPART_NAME, at, len);
}


static int
tap_respp_on_header_field_complete(llhttp_t *p)
{
    tap_respp_t  *rp = p->data;

    tap_hlist_name_done(&rp->hl);
    return 0;
}


static int
tap_respp_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    return tap_respp_append(p->data, TAP_HPART_VALUE, at, len);
}


static int
tap_respp_on_headers_complete(llhttp_t *p)
{
    tap_respp_t  *rp = p->data;
    int           status = llhttp_get_status_code(p);
    unsigned      i;

    if (llhttp_get_http_major(p) != 1) {
        return tap_respp_fail(rp, "unsupported HTTP version");
    }
    if (status == 101 || status < 100 || status > 999) {
        return tap_respp_fail(rp, "unexpected status");
    }
    if (status < 200) {
        /* no content whatever the head says (llhttp only knows this of
         * 100, 102 and 103) */
        rp->interim = 1;
        return 1;
    }
    if (tap_hlist_framings(&rp->hl) > 1) {
        return tap_respp_fail(rp, "ambiguous response framing");
    }
    /* llhttp takes an empty name, and spaces inside one unless built with
     * LLHTTP_STRICT_MODE; neither may be relayed */
    for (i = 0; i < rp->hl.n; i++) {
        if (rp->hl.h[i].nlen == 0
            || memchr(tap_hlist_name(&rp->hl, i), ' ', rp->hl.h[i].nlen) != NULL)
        {
            return tap_respp_fail(rp, "invalid response header name");
        }
    }

    rp->status = status;
    rp->got_head = 1;
    if (rp->cbs->on_head(rp->ctx) != TAP_OK) {
        return tap_respp_fail(rp, "response refused");
    }
    /* RFC 9112 6.3: no content whatever the head says; llhttp only knows
     * this of a 204 or 304 without Content-Length or Transfer-Encoding */
    return rp->head_only || status == 204 || status == 304 ? 1 : 0;
}


static int
tap_respp_on_body(llhttp_t *p, const char *at, size_t len)
{
    tap_respp_t  *rp = p->data;

    if (rp->cbs->on_body != NULL && rp->cbs->on_body(rp->ctx, at, len) != TAP_OK) {
        return tap_respp_fail(rp, "body refused");
    }
    return 0;
}


static int
tap_respp_on_message_complete(llhttp_t *p)
{
    tap_respp_t  *rp = p->data;

    if (rp->interim) {
        return 0;
    }
    rp->done = 1;
    if (rp->cbs->on_done != NULL && rp->cbs->on_done(rp->ctx) != TAP_OK) {
        rp->done = 0;
        return tap_respp_fail(rp, "response refused");
    }
    return HPE_PAUSED;
}
