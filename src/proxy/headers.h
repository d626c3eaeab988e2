/*
 * headers.h: a parsed header list (one growable byte buffer plus offsets)
 * and the header rules of a proxy: hop-by-hop names, names listed in
 * Connection, case-insensitive lookup.
 */

#ifndef TAP_PROXY_HEADERS_H
#define TAP_PROXY_HEADERS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

struct evbuffer;

/*
 * The names the proxy acts on.  Each header's name is looked up once, when
 * it is complete (tap_hlist_name_done()); after that, finding, counting and
 * the hop-by-hop test compare small integers, not strings.
 */
typedef enum {
    TAP_H_OTHER = 0,
    /* hop-by-hop: RFC 9110 7.6.1, plus the proxy credentials and challenges,
     * which belong to the hop between a client and the proxy it chose (as in
     * Go's httputil.ReverseProxy): a reverse proxy must not hand them on */
    TAP_H_CONNECTION,
    TAP_H_KEEP_ALIVE,
    TAP_H_PROXY_CONNECTION,
    TAP_H_TE,
    TAP_H_TRAILER,
    TAP_H_TRANSFER_ENCODING,
    TAP_H_UPGRADE,
    TAP_H_CONTENT_LENGTH,
    TAP_H_HTTP2_SETTINGS,
    TAP_H_PROXY_AUTHORIZATION,
    TAP_H_PROXY_AUTHENTICATE,
    /* read or replaced by the proxy */
    TAP_H_HOST,
    TAP_H_EXPECT,
    TAP_H_TRACEPARENT,
    TAP_H_TRACESTATE,
    TAP_H_X_FORWARDED_FOR,
    TAP_H_X_FORWARDED_PROTO,
    TAP_H_X_FORWARDED_HOST,
    TAP_H_CONTENT_TYPE,
    TAP_H_CONTENT_ENCODING,
    TAP_H_REQUEST_ID,                  /* the list's rid, when no name above */
    TAP_H_MAX
} tap_hid_e;

#define TAP_H_IS_HOP(id)  ((id) >= TAP_H_CONNECTION && (id) <= TAP_H_PROXY_AUTHENTICATE)

typedef struct tap_hdr_s {
    uint32_t  noff;
    uint32_t  nlen;
    uint32_t  voff;
    uint32_t  vlen;
    uint32_t  id;                      /* tap_hid_e */
} tap_hdr_t;

typedef struct tap_hlist_s {
    char       *buf;          /* names, values and the url, back to back */
    size_t      len;
    size_t      cap;
    size_t      limit;        /* max bytes in buf */
    tap_hdr_t  *h;
    unsigned    n;
    unsigned    hcap;
    unsigned    max_n;        /* max number of headers */
    uint32_t    uoff;         /* request target / reason phrase */
    uint32_t    ulen;
    const char *rid;          /* the request-id header's name (TAP_H_REQUEST_ID), or NULL */
    size_t      rid_len;
    uint8_t     nid[TAP_H_MAX];  /* headers of each name, up to 255 */
    unsigned    in_value:1;   /* the last piece appended was a value */
} tap_hlist_t;

typedef enum {
    TAP_HPART_URL = 0,
    TAP_HPART_NAME,
    TAP_HPART_VALUE,
} tap_hpart_e;


void tap_hlist_init(tap_hlist_t *hl, size_t limit, unsigned max_n);
void tap_hlist_cleanup(tap_hlist_t *hl);
/* Forgets the contents, keeps the memory. */
void tap_hlist_reset(tap_hlist_t *hl);

/* Appends a piece of a url, name or value (a name piece after a value
 * starts a new header).  Returns TAP_OK, or TAP_DECLINED when a limit
 * (bytes or count) would be exceeded, or TAP_ERROR on allocation failure. */
int tap_hlist_append(tap_hlist_t *hl, tap_hpart_e part, const char *p, size_t len);

/* The last header's name is complete: looks it up (the parser's
 * on_header_field_complete). */
void tap_hlist_name_done(tap_hlist_t *hl);

/* The id of a header name (TAP_H_OTHER for names the proxy leaves alone). */
tap_hid_e tap_hid_of(const char *name, size_t len);

/* The name tap_hlist_find_id() and tap_hlist_count_id() know rid by. */
void tap_hlist_set_rid(tap_hlist_t *hl, const char *rid);

static inline const char *
tap_hlist_name(const tap_hlist_t *hl, unsigned i)
{
    return hl->buf + hl->h[i].noff;
}

static inline const char *
tap_hlist_value(const tap_hlist_t *hl, unsigned i)
{
    return hl->buf + hl->h[i].voff;
}

/* Index of the first header named name (case-insensitive) at or after
 * from, or -1.  Inline, so that the length of a literal name is known. */
static inline int
tap_hlist_find(const tap_hlist_t *hl, const char *name, unsigned from)
{
    size_t    len = strlen(name);
    unsigned  i;

    for (i = from; i < hl->n; i++) {
        if (hl->h[i].nlen == len && strncasecmp(hl->buf + hl->h[i].noff, name, len) == 0) {
            return (int) i;
        }
    }
    return -1;
}

/* Index of the first header of name id at or after from, or -1. */
static inline int
tap_hlist_find_id(const tap_hlist_t *hl, tap_hid_e id, unsigned from)
{
    unsigned  i;

    if (hl->nid[id] == 0) {
        return -1;
    }
    for (i = from; i < hl->n; i++) {
        if (hl->h[i].id == (uint32_t) id) {
            return (int) i;
        }
    }
    return -1;
}

/* How many headers are of name id (at most 255). */
static inline unsigned
tap_hlist_count_id(const tap_hlist_t *hl, tap_hid_e id)
{
    return hl->nid[id];
}

/*
 * The Content-Length and Transfer-Encoding fields of a head together: more
 * than one is ambiguous framing, whatever their values (llhttp misses a
 * Content-Length beside an empty Transfer-Encoding).
 */
static inline unsigned
tap_hlist_framings(const tap_hlist_t *hl)
{
    return tap_hlist_count_id(hl, TAP_H_CONTENT_LENGTH)
           + tap_hlist_count_id(hl, TAP_H_TRANSFER_ENCODING);
}

static inline unsigned
tap_hlist_count(const tap_hlist_t *hl, const char *name)
{
    unsigned  n = 0;
    int       i = -1;

    while ((i = tap_hlist_find(hl, name, (unsigned) (i + 1))) >= 0) {
        n++;
    }
    return n;
}

/* Non-zero if header i must not be forwarded: a hop-by-hop name, or a
 * name listed in a Connection header. */
int tap_hlist_is_hop(const tap_hlist_t *hl, unsigned i);

/* Non-zero if the comma-separated list v contains token (case-insensitive,
 * OWS trimmed). */
int tap_token_list_has(const char *v, size_t vlen, const char *token, size_t tlen);

/* Is the name [a, a + alen) equal to b, ignoring case?  Inline, so that a
 * literal b costs a length compare for most names. */
static inline int
tap_name_eq(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen && strncasecmp(a, b, alen) == 0;
}

/*
 * A head being written: the pieces gather in a buffer on the stack and go to
 * the connection at once, as one piece (tap_rd_write(): one piece per part
 * cost more than all the copies).  A piece that does not fit flushes what is
 * gathered; one larger than the buffer goes straight through.
 * tap_hbuf_flush() ends.
 */
typedef struct {
    struct tap_rd_s  *rd;
    size_t            len;
    char              buf[4096];
} tap_hbuf_t;

void tap_hbuf_spill(tap_hbuf_t *hb, const char *p, size_t n);
void tap_hbuf_flush(tap_hbuf_t *hb);
/* unsigned decimal */
void tap_hbuf_u64(tap_hbuf_t *hb, uint64_t v);

static inline void
tap_hbuf_add(tap_hbuf_t *hb, const char *p, size_t n)
{
    if (n > sizeof(hb->buf) - hb->len) {
        tap_hbuf_spill(hb, p, n);
        return;
    }
    memcpy(hb->buf + hb->len, p, n);
    hb->len += n;
}

#define tap_hbuf_lit(hb, s)  tap_hbuf_add(hb, s, sizeof(s) - 1)

static inline void
tap_hbuf_str(tap_hbuf_t *hb, const char *s)
{
    tap_hbuf_add(hb, s, strlen(s));
}

/* "name: value\r\n" */
static inline void
tap_hbuf_header(tap_hbuf_t *hb, const char *name, size_t nlen, const char *v, size_t vlen)
{
    tap_hbuf_add(hb, name, nlen);
    tap_hbuf_lit(hb, ": ");
    tap_hbuf_add(hb, v, vlen);
    tap_hbuf_lit(hb, "\r\n");
}

/* Trims spaces and tabs at both ends of [*p, *p + *len). */
void tap_trim(const char **p, size_t *len);

#endif /* TAP_PROXY_HEADERS_H */
