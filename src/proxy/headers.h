/*
 * headers.h: a parsed header list (one growable byte buffer plus offsets)
 * and the header rules of a proxy: hop-by-hop names, names listed in
 * Connection, case-insensitive lookup.
 */

#ifndef TAP_PROXY_HEADERS_H
#define TAP_PROXY_HEADERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct tap_hdr_s {
    uint32_t  noff;
    uint32_t  nlen;
    uint32_t  voff;
    uint32_t  vlen;
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
 * from, or -1. */
int tap_hlist_find(const tap_hlist_t *hl, const char *name, unsigned from);
unsigned tap_hlist_count(const tap_hlist_t *hl, const char *name);

/* Non-zero if header i must not be forwarded: a hop-by-hop name, or a
 * name listed in a Connection header. */
int tap_hlist_is_hop(const tap_hlist_t *hl, unsigned i);

/* Non-zero if the comma-separated list v contains token (case-insensitive,
 * OWS trimmed). */
int tap_token_list_has(const char *v, size_t vlen, const char *token, size_t tlen);

int tap_name_eq(const char *a, size_t alen, const char *b);

/* Trims spaces and tabs at both ends of [*p, *p + *len). */
void tap_trim(const char **p, size_t *len);

#endif /* TAP_PROXY_HEADERS_H */
