/*
 * request.c: downstream request parsing and validation.
 *
 * llhttp runs in strict mode (the bundled copy is built with
 * LLHTTP_STRICT_MODE, and no lenient flag is ever set); it already refuses
 * bare LF, bad header tokens, bad chunk sizes and, for requests, a
 * Transfer-Encoding whose last coding is not chunked.  On top of it this
 * file refuses what a proxy must not pass on because the next hop could
 * frame it differently (request smuggling): Content-Length together with
 * Transfer-Encoding, repeated or malformed Content-Length, any
 * Transfer-Encoding other than exactly "chunked" (so "gzip, chunked" and an
 * empty value too), obs-fold, a missing (HTTP/1.1) or repeated Host, header
 * names that are empty or hold a space (llhttp takes both, the second when
 * not built strict), and header names such as content_length that some
 * servers read as framing.  Upgrade and CONNECT are refused (infertap does
 * not tunnel).  The head size is measured in wire bytes from the method to
 * the last header, so padding with whitespace counts too.  Trailer fields
 * are parsed, bounded the same way from their first byte, and dropped
 * (infertap re-chunks the body).
 *
 * Data callbacks copy into the header list before returning; nothing keeps
 * a pointer into the caller's buffer.  The parser pauses at the end of every
 * message so the owner answers pipelined requests one at a time.
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tap_core.h"
#include "proxy/request.h"


static int tap_reqp_on_message_begin(llhttp_t *p);
static int tap_reqp_on_method(llhttp_t *p, const char *at, size_t len);
static int tap_reqp_on_url(llhttp_t *p, const char *at, size_t len);
static int tap_reqp_on_header_field(llhttp_t *p, const char *at, size_t len);
static int tap_reqp_on_header_field_complete(llhttp_t *p);
static int tap_reqp_on_header_value(llhttp_t *p, const char *at, size_t len);
static int tap_reqp_on_headers_complete(llhttp_t *p);
static int tap_reqp_on_body(llhttp_t *p, const char *at, size_t len);
static int tap_reqp_on_message_complete(llhttp_t *p);


static const llhttp_settings_t  tap_reqp_settings = {
    .on_message_begin = tap_reqp_on_message_begin,
    .on_method = tap_reqp_on_method,
    .on_url = tap_reqp_on_url,
    .on_header_field = tap_reqp_on_header_field,
    .on_header_field_complete = tap_reqp_on_header_field_complete,
    .on_header_value = tap_reqp_on_header_value,
    .on_headers_complete = tap_reqp_on_headers_complete,
    .on_body = tap_reqp_on_body,
    .on_message_complete = tap_reqp_on_message_complete,
};


void
tap_reqp_init(tap_reqp_t *rp, const tap_reqp_cbs_t *cbs, void *ctx, size_t max_header_bytes,
    unsigned max_headers, uint64_t max_body)
{
    *rp = (tap_reqp_t) { 0 };
    llhttp_init(&rp->parser, HTTP_REQUEST, &tap_reqp_settings);
    rp->parser.data = rp;
    tap_hlist_init(&rp->hl, max_header_bytes, max_headers);
    rp->cbs = cbs;
    rp->ctx = ctx;
    rp->max_body = max_body;
    rp->max_head = max_header_bytes;
}


void
tap_reqp_cleanup(tap_reqp_t *rp)
{
    if (rp != NULL) {
        tap_hlist_cleanup(&rp->hl);
    }
}


void
tap_reqp_fail(tap_reqp_t *rp, int status, const char *code, const char *msg)
{
    if (rp->err_status == 0) {
        rp->err_status = status;
        rp->err_code = code;
        rp->err_msg = msg;
    }
}


void
tap_reqp_next(tap_reqp_t *rp)
{
    if (llhttp_get_errno(&rp->parser) == HPE_PAUSED) {
        llhttp_resume(&rp->parser);
    }
    tap_hlist_reset(&rp->hl);
    rp->content_length = 0;
    rp->body_bytes = 0;
    rp->aoff = rp->alen = 0;
    rp->has_cl = rp->chunked = rp->expect_continue = 0;
    rp->in_head = rp->begun = rp->done = 0;
}


int
tap_reqp_feed(tap_reqp_t *rp, const char *p, size_t len, size_t *consumed)
{
    llhttp_errno_t  err;
    size_t          used, k;

    rp->feed_start = p;
    err = llhttp_execute(&rp->parser, p, len);

    if (err == HPE_OK) {
        used = len;

    } else if (err == HPE_PAUSED && rp->err_status == 0) {
        used = (size_t) (llhttp_get_error_pos(&rp->parser) - p);

    } else {
        if (rp->err_status == 0) {
            tap_reqp_fail(rp, 400, "bad_request", llhttp_get_error_reason(&rp->parser));
        }
        *consumed = 0;
        return TAP_ERROR;
    }

    /* the last byte that is not a space or a tab, for the obs-fold check */
    for (k = used; k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'); k--) {
        /* void */
    }
    if (k > 0) {
        rp->last_char = p[k - 1];
    }
    rp->fed += used;
    *consumed = used;
    return err == HPE_OK ? TAP_OK : TAP_AGAIN;
}


/* Checks the head size from the method to the end of [at, at + len). */
static int
tap_reqp_head_room(tap_reqp_t *rp, const char *at, size_t len)
{
    uint64_t  end = rp->fed + (uint64_t) (at - rp->feed_start) + len;

    if (end - rp->head_start > rp->max_head) {
        tap_reqp_fail(rp, 431, "headers_too_large", "request head too large");
        return -1;
    }
    return 0;
}


static int
tap_reqp_append(tap_reqp_t *rp, tap_hpart_e part, const char *at, size_t len)
{
    int  rc;

    if (tap_reqp_head_room(rp, at, len) != 0) {
        return -1;
    }
    rc = tap_hlist_append(&rp->hl, part, at, len);
    if (rc == TAP_DECLINED) {
        tap_reqp_fail(rp, 431, "headers_too_large", "request head too large");
        return -1;
    }
    if (rc != TAP_OK) {
        tap_reqp_fail(rp, 503, "out_of_memory", "out of memory");
        return -1;
    }
    return 0;
}


static int
tap_reqp_on_message_begin(llhttp_t *p)
{
    tap_reqp_t  *rp = p->data;

    rp->begun = 1;
    rp->in_head = 1;
    rp->head_start = UINT64_MAX;
    if (rp->cbs->on_begin != NULL) {
        rp->cbs->on_begin(rp->ctx);
    }
    return 0;
}


static int
tap_reqp_on_method(llhttp_t *p, const char *at, size_t len)
{
    tap_reqp_t  *rp = p->data;

    if (rp->head_start == UINT64_MAX) {
        rp->head_start = rp->fed + (uint64_t) (at - rp->feed_start);
    }
    return tap_reqp_head_room(rp, at, len);
}


static int
tap_reqp_on_url(llhttp_t *p, const char *at, size_t len)
{
    return tap_reqp_append(p->data, TAP_HPART_URL, at, len);
}


/* A piece of a trailer field: bounded like a head, counted from the first
 * trailer byte, and not kept. */
static int
tap_reqp_trailer(tap_reqp_t *rp, const char *at, size_t len)
{
    if (rp->head_start == UINT64_MAX) {
        rp->head_start = rp->fed + (uint64_t) (at - rp->feed_start);
    }
    return tap_reqp_head_room(rp, at, len);
}


static int
tap_reqp_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    tap_reqp_t  *rp = p->data;

    if (!rp->in_head) {
        return tap_reqp_trailer(rp, at, len);
    }
    return tap_reqp_append(rp, TAP_HPART_NAME, at, len);
}


static int
tap_reqp_on_header_field_complete(llhttp_t *p)
{
    tap_reqp_t  *rp = p->data;

    if (rp->in_head) {
        tap_hlist_name_done(&rp->hl);
    }
    return 0;
}


static int
tap_reqp_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    tap_reqp_t  *rp = p->data;
    const char  *b;
    char         prev;

    /* llhttp delivers an obs-fold continuation as one more value piece that
     * starts after a line break and the fold's spaces, or, when the value
     * before the fold is empty, as the only piece; either way the last byte
     * before the piece other than a space or a tab is a line break.  A piece
     * split by the reads follows what ended the previous read. */
    for (b = at; b > rp->feed_start && (b[-1] == ' ' || b[-1] == '\t'); b--) {
        /* void */
    }
    prev = b > rp->feed_start ? b[-1] : rp->last_char;
    if (prev == '\n') {
        tap_reqp_fail(rp, 400, "bad_request", "obsolete line folding is not allowed");
        return -1;
    }
    if (!rp->in_head) {
        return tap_reqp_trailer(rp, at, len);
    }
    return tap_reqp_append(rp, TAP_HPART_VALUE, at, len);
}


/* Non-zero if name spells a framing header with '_' for '-'. */
static int
tap_reqp_underscore_framing(const char *name, size_t len)
{
    static const char *const  framing[] = { "content-length", "transfer-encoding" };
    size_t                    i, k;

    if (memchr(name, '_', len) == NULL) {
        return 0;
    }
    for (k = 0; k < TAP_NELEMS(framing); k++) {
        if (strlen(framing[k]) != len) {
            continue;
        }
        for (i = 0; i < len; i++) {
            char  c = name[i] == '_' ? '-' : (char) (name[i] | 0x20);

            if (c != framing[k][i]) {
                break;
            }
        }
        if (i == len) {
            return 1;
        }
    }
    return 0;
}


/*
 * "GET http://host/path HTTP/1.1" (RFC 9112 3.2.2): a server must accept the
 * absolute form.  The target is narrowed to its path, which goes upstream,
 * and the authority is kept for the Host header, which it overrides.
 */
static int
tap_reqp_absolute_form(tap_reqp_t *rp)
{
    tap_hlist_t  *hl = &rp->hl;
    const char   *u = hl->buf + hl->uoff, *a, *end = u + hl->ulen, *path;
    size_t        skip;

    if (hl->ulen > 7 && strncasecmp(u, "http://", 7) == 0) {
        skip = 7;
    } else if (hl->ulen > 8 && strncasecmp(u, "https://", 8) == 0) {
        skip = 8;
    } else {
        return TAP_OK;                 /* not absolute-form: refused below */
    }
    a = u + skip;
    path = memchr(a, '/', (size_t) (end - a));
    if (path == NULL || path == a || memchr(a, '@', (size_t) (path - a)) != NULL
        || memchr(a, '?', (size_t) (path - a)) != NULL)
    {
        tap_reqp_fail(rp, 400, "bad_request", "invalid absolute-form request target");
        return TAP_ERROR;
    }
    rp->aoff = (uint32_t) (a - hl->buf);
    rp->alen = (uint32_t) (path - a);
    hl->uoff = (uint32_t) (path - hl->buf);
    hl->ulen = (uint32_t) (end - path);
    return TAP_OK;
}


static int
tap_reqp_validate(tap_reqp_t *rp)
{
    llhttp_t     *p = &rp->parser;
    tap_hlist_t  *hl = &rp->hl;
    const char   *v, *url;
    size_t        vlen, k;
    unsigned      i;
    uint64_t      cl;
    int           te, clh, ex;

    if (llhttp_get_http_major(p) != 1 || llhttp_get_http_minor(p) > 1) {
        tap_reqp_fail(rp, 400, "bad_request", "unsupported HTTP version");
        return TAP_ERROR;
    }
    if (llhttp_get_method(p) == HTTP_CONNECT) {
        tap_reqp_fail(rp, 405, "method_not_allowed", "CONNECT is not supported");
        return TAP_ERROR;
    }
    if (llhttp_get_upgrade(p) || tap_hlist_find_id(hl, TAP_H_UPGRADE, 0) >= 0) {
        tap_reqp_fail(rp, 400, "bad_request", "protocol upgrade is not supported");
        return TAP_ERROR;
    }
    url = hl->ulen > 0 ? hl->buf + hl->uoff : NULL;
    if (url != NULL && url[0] != '/' && tap_reqp_absolute_form(rp) != TAP_OK) {
        return TAP_ERROR;
    }
    url = hl->ulen > 0 ? hl->buf + hl->uoff : NULL;
    if (url == NULL
        || (url[0] != '/'
            && !(hl->ulen == 1 && url[0] == '*' && llhttp_get_method(p) == HTTP_OPTIONS)))
    {
        tap_reqp_fail(rp, 400, "bad_request", "request target must be an absolute path");
        return TAP_ERROR;
    }

    for (i = 0; i < hl->n; i++) {
        /* llhttp takes an empty name, and spaces inside one unless built
         * with LLHTTP_STRICT_MODE */
        if (hl->h[i].nlen == 0 || memchr(tap_hlist_name(hl, i), ' ', hl->h[i].nlen) != NULL) {
            tap_reqp_fail(rp, 400, "bad_request", "invalid header name");
            return TAP_ERROR;
        }
        if (tap_reqp_underscore_framing(tap_hlist_name(hl, i), hl->h[i].nlen)) {
            tap_reqp_fail(rp, 400, "bad_request", "framing header spelled with '_'");
            return TAP_ERROR;
        }
    }

    k = tap_hlist_count_id(hl, TAP_H_HOST);
    if (k > 1 || (k == 0 && llhttp_get_http_minor(p) == 1)) {
        tap_reqp_fail(rp, 400, "bad_request", k ? "repeated Host" : "missing Host");
        return TAP_ERROR;
    }

    clh = tap_hlist_find_id(hl, TAP_H_CONTENT_LENGTH, 0);
    te = tap_hlist_find_id(hl, TAP_H_TRANSFER_ENCODING, 0);
    if (tap_hlist_framings(hl) > 1) {
        tap_reqp_fail(rp, 400, "bad_request", "ambiguous message framing");
        return TAP_ERROR;
    }

    if (te >= 0) {
        /* RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message means the
         * framing is faulty (a 1.0 hop before us may have read no body) */
        if (llhttp_get_http_minor(p) == 0) {
            tap_reqp_fail(rp, 400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request");
            return TAP_ERROR;
        }
        v = tap_hlist_value(hl, (unsigned) te);
        vlen = hl->h[te].vlen;
        tap_trim(&v, &vlen);
        if (vlen != 7 || strncasecmp(v, "chunked", 7) != 0 || !(p->flags & F_CHUNKED)) {
            tap_reqp_fail(rp, 400, "bad_request", "unsupported Transfer-Encoding");
            return TAP_ERROR;
        }
        rp->chunked = 1;
    }

    if (clh >= 0) {
        v = tap_hlist_value(hl, (unsigned) clh);
        vlen = hl->h[clh].vlen;
        tap_trim(&v, &vlen);
        cl = 0;
        for (k = 0; k < vlen; k++) {
            if (v[k] < '0' || v[k] > '9' || cl > (UINT64_MAX - 9) / 10) {
                break;
            }
            cl = cl * 10 + (uint64_t) (v[k] - '0');
        }
        if (vlen == 0 || k != vlen || !(p->flags & F_CONTENT_LENGTH)) {
            tap_reqp_fail(rp, 400, "bad_request", "malformed Content-Length");
            return TAP_ERROR;
        }
        if (cl > rp->max_body) {
            tap_reqp_fail(rp, 413, "payload_too_large", "request body too large");
            return TAP_ERROR;
        }
        rp->has_cl = 1;
        rp->content_length = cl;
    }

    ex = tap_hlist_find_id(hl, TAP_H_EXPECT, 0);
    if (ex >= 0) {
        v = tap_hlist_value(hl, (unsigned) ex);
        vlen = hl->h[ex].vlen;
        tap_trim(&v, &vlen);
        if (tap_hlist_count_id(hl, TAP_H_EXPECT) > 1 || vlen != 12
            || strncasecmp(v, "100-continue", 12) != 0)
        {
            tap_reqp_fail(rp, 417, "expectation_failed", "unsupported expectation");
            return TAP_ERROR;
        }
        rp->expect_continue = llhttp_get_http_minor(p) == 1;
    }

    return TAP_OK;
}


static int
tap_reqp_on_headers_complete(llhttp_t *p)
{
    tap_reqp_t  *rp = p->data;

    rp->in_head = 0;
    rp->head_start = UINT64_MAX;       /* trailers, if any, start afresh */
    if (tap_reqp_validate(rp) != TAP_OK || rp->cbs->on_head(rp->ctx) != TAP_OK) {
        if (rp->err_status == 0) {
            tap_reqp_fail(rp, 400, "bad_request", "request refused");
        }
        return -1;
    }
    return HPE_PAUSED;                 /* the caller starts the transaction */
}


static int
tap_reqp_on_body(llhttp_t *p, const char *at, size_t len)
{
    tap_reqp_t  *rp = p->data;

    rp->body_bytes += len;
    if (rp->body_bytes > rp->max_body) {
        tap_reqp_fail(rp, 413, "payload_too_large", "request body too large");
        return -1;
    }
    if (rp->cbs->on_body != NULL && rp->cbs->on_body(rp->ctx, at, len) != TAP_OK) {
        tap_reqp_fail(rp, 400, "bad_request", "request body refused");
        return -1;
    }
    return 0;
}


static int
tap_reqp_on_message_complete(llhttp_t *p)
{
    tap_reqp_t  *rp = p->data;

    rp->done = 1;
    if (rp->cbs->on_done != NULL && rp->cbs->on_done(rp->ctx) != TAP_OK) {
        tap_reqp_fail(rp, 400, "bad_request", "request refused");
        return -1;
    }
    return HPE_PAUSED;
}
