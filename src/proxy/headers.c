/*
 * headers.c: parsed header lists and hop-by-hop rules.
 *
 * llhttp hands names and values over in pieces that point into the read
 * buffer, so each piece is copied at once into the list's single buffer;
 * headers are kept as offsets into it, which survive the buffer growing.
 * The buffer and the count are bounded (limits.max_header_bytes and a header
 * count), and the caller turns TAP_DECLINED into 431.  Nothing here allocates
 * per header: a request head costs at most two reallocations once warm,
 * because tap_hlist_reset() keeps the memory for the next request.
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>


#include "tap_core.h"
#include "proxy/headers.h"
#include "proxy/proxy-int.h"


void
tap_hlist_init(tap_hlist_t *hl, size_t limit, unsigned max_n)
{
    *hl = (tap_hlist_t) { 0 };
    hl->limit = limit;
    hl->max_n = max_n;
}


void
tap_hlist_cleanup(tap_hlist_t *hl)
{
    if (hl == NULL) {
        return;
    }
    free(hl->buf);
    free(hl->h);
    hl->buf = NULL;
    hl->h = NULL;
    hl->len = hl->cap = 0;
    hl->n = hl->hcap = 0;
}


void
tap_hlist_reset(tap_hlist_t *hl)
{
    hl->len = 0;
    hl->n = 0;
    hl->uoff = hl->ulen = 0;
    memset(hl->nid, 0, sizeof(hl->nid));
    hl->in_value = 0;
}


void
tap_hlist_set_rid(tap_hlist_t *hl, const char *rid)
{
    hl->rid = rid;
    hl->rid_len = rid != NULL ? strlen(rid) : 0;
}


static int
tap_hlist_reserve(tap_hlist_t *hl, size_t more)
{
    size_t   cap;
    char    *nb;

    if (hl->len + more <= hl->cap) {
        return TAP_OK;
    }
    cap = hl->cap ? hl->cap : 1024;
    while (cap < hl->len + more) {
        cap *= 2;
    }
    nb = realloc(hl->buf, cap);
    if (nb == NULL) {
        return TAP_ERROR;
    }
    hl->buf = nb;
    hl->cap = cap;
    return TAP_OK;
}


int
tap_hlist_append(tap_hlist_t *hl, tap_hpart_e part, const char *p, size_t len)
{
    tap_hdr_t  *nh;
    unsigned    hcap;

    if (hl->len + len > hl->limit) {
        return TAP_DECLINED;
    }

    if (part == TAP_HPART_NAME && (hl->n == 0 || hl->in_value)) {
        if (hl->n >= hl->max_n) {
            return TAP_DECLINED;
        }
        if (hl->n == hl->hcap) {
            hcap = hl->hcap ? hl->hcap * 2 : 32;
            nh = realloc(hl->h, hcap * sizeof(tap_hdr_t));
            if (nh == NULL) {
                return TAP_ERROR;
            }
            hl->h = nh;
            hl->hcap = hcap;
        }
        hl->h[hl->n++] = (tap_hdr_t) { (uint32_t) hl->len, 0, (uint32_t) hl->len, 0, 0 };
        hl->in_value = 0;
    }

    if (part == TAP_HPART_VALUE && !hl->in_value) {
        if (hl->n == 0) {
            return TAP_ERROR;
        }
        hl->h[hl->n - 1].voff = (uint32_t) hl->len;
        hl->in_value = 1;
    }

    if (part == TAP_HPART_URL && hl->ulen == 0) {
        hl->uoff = (uint32_t) hl->len;
    }

    if (len == 0) {
        return TAP_OK;
    }
    if (tap_hlist_reserve(hl, len) != TAP_OK) {
        return TAP_ERROR;
    }
    memcpy(hl->buf + hl->len, p, len);
    hl->len += len;

    switch (part) {
    case TAP_HPART_URL:
        hl->ulen += (uint32_t) len;
        break;
    case TAP_HPART_NAME:
        hl->h[hl->n - 1].nlen += (uint32_t) len;
        hl->h[hl->n - 1].voff = (uint32_t) hl->len;
        break;
    case TAP_HPART_VALUE:
        hl->h[hl->n - 1].vlen += (uint32_t) len;
        break;
    }
    return TAP_OK;
}


void
tap_trim(const char **p, size_t *len)
{
    while (*len > 0 && ((*p)[0] == ' ' || (*p)[0] == '\t')) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && ((*p)[*len - 1] == ' ' || (*p)[*len - 1] == '\t')) {
        (*len)--;
    }
}


int
tap_token_list_has(const char *v, size_t vlen, const char *token, size_t tlen)
{
    const char  *end = v + vlen, *comma, *t;
    size_t       len;

    while (v < end) {
        comma = memchr(v, ',', (size_t) (end - v));
        if (comma == NULL) {
            comma = end;
        }
        t = v;
        len = (size_t) (comma - v);
        tap_trim(&t, &len);
        if (len == tlen && strncasecmp(t, token, tlen) == 0) {
            return 1;
        }
        v = comma + 1;
    }
    return 0;
}


/*
 * Does a equal the lower-case name b, ignoring the case of a?  Header names
 * are tokens (llhttp checks those it parses, tap_conf_check_token() the
 * configured one): no control bytes, so setting bit 0x20 only lowers
 * letters, and b, made of letters, digits and '-', has it set already.  That
 * compares eight bytes at a time.
 */
static int
tap_lc_eq(const char *a, const char *b, size_t len)
{
    uint64_t  x, y;

    for ( /* void */ ; len >= 8; a += 8, b += 8, len -= 8) {
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if ((x | 0x2020202020202020ULL) != y) {
            return 0;
        }
    }
    for ( /* void */ ; len > 0; a++, b++, len--) {
        if ((char) (*a | 0x20) != *b) {
            return 0;
        }
    }
    return 1;
}


tap_hid_e
tap_hid_of(const char *n, size_t len)
{
#define TAP_IS(s, id)  if (tap_lc_eq(n, s, len)) return id

    switch (len) {
    case 2:
        TAP_IS("te", TAP_H_TE);
        break;
    case 4:
        TAP_IS("host", TAP_H_HOST);
        break;
    case 6:
        TAP_IS("expect", TAP_H_EXPECT);
        break;
    case 7:
        TAP_IS("trailer", TAP_H_TRAILER);
        TAP_IS("upgrade", TAP_H_UPGRADE);
        break;
    case 10:
        TAP_IS("connection", TAP_H_CONNECTION);
        TAP_IS("keep-alive", TAP_H_KEEP_ALIVE);
        TAP_IS("tracestate", TAP_H_TRACESTATE);
        break;
    case 11:
        TAP_IS("traceparent", TAP_H_TRACEPARENT);
        break;
    case 12:
        TAP_IS("content-type", TAP_H_CONTENT_TYPE);
        break;
    case 14:
        TAP_IS("content-length", TAP_H_CONTENT_LENGTH);
        TAP_IS("http2-settings", TAP_H_HTTP2_SETTINGS);
        break;
    case 15:
        TAP_IS("x-forwarded-for", TAP_H_X_FORWARDED_FOR);
        break;
    case 16:
        TAP_IS("content-encoding", TAP_H_CONTENT_ENCODING);
        TAP_IS("proxy-connection", TAP_H_PROXY_CONNECTION);
        TAP_IS("x-forwarded-host", TAP_H_X_FORWARDED_HOST);
        break;
    case 17:
        TAP_IS("transfer-encoding", TAP_H_TRANSFER_ENCODING);
        TAP_IS("x-forwarded-proto", TAP_H_X_FORWARDED_PROTO);
        break;
    case 18:
        TAP_IS("proxy-authenticate", TAP_H_PROXY_AUTHENTICATE);
        break;
    case 19:
        TAP_IS("proxy-authorization", TAP_H_PROXY_AUTHORIZATION);
        break;
    }
    return TAP_H_OTHER;

#undef TAP_IS
}


void
tap_hlist_name_done(tap_hlist_t *hl)
{
    tap_hdr_t  *h;
    tap_hid_e   id;

    if (hl->n == 0) {
        return;
    }
    h = &hl->h[hl->n - 1];
    id = TAP_H_OTHER;
    if (h->nlen > 0) {                 /* an empty name is refused later */
        id = tap_hid_of(hl->buf + h->noff, h->nlen);
        if (id == TAP_H_OTHER && hl->rid != NULL && hl->rid_len == h->nlen
            && strncasecmp(hl->buf + h->noff, hl->rid, hl->rid_len) == 0)
        {
            id = TAP_H_REQUEST_ID;
        }
    }
    h->id = (uint32_t) id;
    if (hl->nid[id] < UINT8_MAX) {
        hl->nid[id]++;
    }
}


int
tap_hlist_is_hop(const tap_hlist_t *hl, unsigned i)
{
    const char  *name = tap_hlist_name(hl, i);
    size_t       nlen = hl->h[i].nlen;
    int          c = -1;

    if (TAP_H_IS_HOP(hl->h[i].id)) {
        return 1;
    }
    if (hl->nid[TAP_H_CONNECTION] == 0) {
        return 0;              /* no Connection header lists a name */
    }
    while ((c = tap_hlist_find_id(hl, TAP_H_CONNECTION, (unsigned) (c + 1))) >= 0) {
        if (tap_token_list_has(tap_hlist_value(hl, (unsigned) c), hl->h[c].vlen, name, nlen)) {
            return 1;
        }
    }
    return 0;
}


void
tap_hbuf_spill(tap_hbuf_t *hb, const char *p, size_t n)
{
    tap_hbuf_flush(hb);
    if (n > sizeof(hb->buf)) {
        tap_rd_write(hb->rd, p, n);
        return;
    }
    memcpy(hb->buf, p, n);
    hb->len = n;
}


void
tap_hbuf_flush(tap_hbuf_t *hb)
{
    if (hb->len > 0) {
        tap_rd_write(hb->rd, hb->buf, hb->len);
        hb->len = 0;
    }
}


void
tap_hbuf_u64(tap_hbuf_t *hb, uint64_t v)
{
    char  buf[20], *p = buf + sizeof(buf);

    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    tap_hbuf_add(hb, p, (size_t) (buf + sizeof(buf) - p));
}
