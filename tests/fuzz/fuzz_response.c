/*
 * fuzz_response.c: libFuzzer harness for infertap's upstream response path.
 *
 * The input is an upstream's answer, fed to tap_respp_t the way
 * tap_uconn_on_read() in src/proxy/client.c does, followed by
 * tap_respp_eof() when every byte was taken (the upstream closed).  It is
 * parsed twice on one tap_respp_t re-armed with tap_respp_init(), as a
 * pooled connection does: as the answer to a GET and as the answer to a HEAD
 * (head_only).  The first byte seeds the piece sizes; each answer is parsed
 * once in one piece and once in pieces of 1 to 64 bytes, and both must end
 * the same way (complete, truncated or refused) with the same status, body
 * and leftover.  Any broken invariant aborts: consumed <= len, interim and
 * 101 heads never reach on_head, a head has at most one Content-Length and
 * Transfer-Encoding and not both, a HEAD, 204 or 304 answer has no body, a
 * Content-Length body is exactly that long, callbacks come in order.  Leaks
 * are left to LeakSanitizer.
 */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap_core.h"
#include "proxy/headers.h"
#include "proxy/response.h"

#define TAP_FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)

typedef struct tap_fuzz_rs_s {
    tap_respp_t  rp;
    unsigned     first;           /* on_first_byte calls */
    unsigned     heads;
    unsigned     done;
    int          status;
    int          has_cl;
    uint64_t     cl;
    uint64_t     body;
    uint64_t     hash;
} tap_fuzz_rs_t;

/* How one parse ended. */
typedef struct tap_fuzz_end_s {
    int          rc;              /* TAP_AGAIN: complete, TAP_ERROR: refused or truncated */
    size_t       off;             /* bytes consumed */
    int          status;
    unsigned     heads;
    unsigned     done;
    uint64_t     body;
    uint64_t     hash;
} tap_fuzz_end_t;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static uint64_t
tap_fuzz_hash(uint64_t h, const void *p, size_t len)
{
    const uint8_t  *b = p;
    size_t          i;

    for (i = 0; i < len; i++) {
        h = (h ^ b[i]) * 0x100000001b3ULL;
    }
    return h;
}


static void
tap_fuzz_on_first_byte(void *ctx)
{
    tap_fuzz_rs_t  *f = ctx;

    TAP_FUZZ_CHECK(f->heads == 0);
    f->first++;
}


static int
tap_fuzz_on_head(void *ctx)
{
    tap_fuzz_rs_t  *f = ctx;
    tap_respp_t    *rp = &f->rp;
    tap_hlist_t    *hl = &rp->hl;
    const char     *v;
    size_t          vlen, k;
    unsigned        i, ncl, nte;

    TAP_FUZZ_CHECK(f->first == 1 && f->heads == 0 && f->done == 0);
    TAP_FUZZ_CHECK(rp->got_head && !rp->done && !rp->failed && !rp->interim);
    TAP_FUZZ_CHECK(rp->status >= 200 && rp->status <= 999);
    TAP_FUZZ_CHECK(llhttp_get_http_major(&rp->parser) == 1);

    ncl = tap_hlist_count(hl, "content-length");
    nte = tap_hlist_count(hl, "transfer-encoding");
    TAP_FUZZ_CHECK(ncl <= 1 && nte <= 1 && !(ncl && nte));

    f->has_cl = tap_respp_has_cl(rp);
    f->cl = 0;
    if (f->has_cl) {
        /* llhttp validated the digits; the relayed length comes from here */
        TAP_FUZZ_CHECK(ncl == 1);
        i = (unsigned) tap_hlist_find(hl, "content-length", 0);
        v = tap_hlist_value(hl, i);
        vlen = hl->h[i].vlen;
        tap_trim(&v, &vlen);
        TAP_FUZZ_CHECK(vlen > 0);
        for (k = 0; k < vlen; k++) {
            TAP_FUZZ_CHECK(v[k] >= '0' && v[k] <= '9');
            TAP_FUZZ_CHECK(f->cl <= (UINT64_MAX - (uint64_t) (v[k] - '0')) / 10);
            f->cl = f->cl * 10 + (uint64_t) (v[k] - '0');
        }
        TAP_FUZZ_CHECK(f->cl == rp->parser.content_length);
    }

    TAP_FUZZ_CHECK(hl->n <= hl->max_n && hl->len <= hl->limit);
    TAP_FUZZ_CHECK(hl->uoff + (size_t) hl->ulen <= hl->len);
    for (i = 0; i < hl->n; i++) {
        TAP_FUZZ_CHECK(hl->h[i].nlen > 0);
        TAP_FUZZ_CHECK(memchr(tap_hlist_name(hl, i), ' ', hl->h[i].nlen) == NULL);
        TAP_FUZZ_CHECK(hl->h[i].noff + (size_t) hl->h[i].nlen <= hl->len);
        TAP_FUZZ_CHECK(hl->h[i].voff + (size_t) hl->h[i].vlen <= hl->len);
        v = tap_hlist_value(hl, i);
        TAP_FUZZ_CHECK(memchr(v, '\r', hl->h[i].vlen) == NULL);
        TAP_FUZZ_CHECK(memchr(v, '\n', hl->h[i].vlen) == NULL);
        (void) tap_hlist_is_hop(hl, i);
        TAP_FUZZ_CHECK(tap_hlist_find(hl, "content-length", 0) != (int) i
            || tap_hlist_is_hop(hl, i));
    }

    f->heads++;
    f->status = rp->status;
    f->hash = tap_fuzz_hash(f->hash, &rp->status, sizeof(rp->status));
    f->hash = tap_fuzz_hash(f->hash, hl->buf, hl->len);
    return TAP_OK;
}


static int
tap_fuzz_on_body(void *ctx, const char *p, size_t len)
{
    tap_fuzz_rs_t  *f = ctx;

    TAP_FUZZ_CHECK(f->heads == 1 && f->done == 0);
    TAP_FUZZ_CHECK(!f->rp.head_only);
    TAP_FUZZ_CHECK(f->status != 204 && f->status != 304);
    f->body += len;
    if (f->has_cl) {
        TAP_FUZZ_CHECK(f->body <= f->cl);
    }
    f->hash = tap_fuzz_hash(f->hash, p, len);
    return TAP_OK;
}


static int
tap_fuzz_on_done(void *ctx)
{
    tap_fuzz_rs_t  *f = ctx;

    TAP_FUZZ_CHECK(f->heads == 1 && f->done == 0);
    if (f->rp.head_only || f->status == 204 || f->status == 304) {
        TAP_FUZZ_CHECK(f->body == 0);
    } else if (f->has_cl) {
        TAP_FUZZ_CHECK(f->body == f->cl);
    }
    f->done++;
    return TAP_OK;
}


static const tap_respp_cbs_t  tap_fuzz_cbs = {
    .on_first_byte = tap_fuzz_on_first_byte,
    .on_head = tap_fuzz_on_head,
    .on_body = tap_fuzz_on_body,
    .on_done = tap_fuzz_on_done,
};


/* Parses one answer on f->rp (re-armed here) and says how it ended. */
static void
tap_fuzz_run(tap_fuzz_rs_t *f, const uint8_t *data, size_t size, uint64_t seed, int head_only,
    tap_fuzz_end_t *end)
{
    tap_respp_t  *rp = &f->rp;
    uint64_t      x = seed;
    size_t        off, n, used;
    int           rc;

    f->first = f->heads = f->done = 0;
    f->status = 0;
    f->body = 0;
    f->hash = 0xcbf29ce484222325ULL;
    tap_respp_init(rp, &tap_fuzz_cbs, f, head_only);
    TAP_FUZZ_CHECK(rp->hl.n == 0 && rp->hl.len == 0 && !rp->done && !rp->got_head);

    rc = TAP_OK;
    for (off = 0; off < size; off += used) {
        n = size - off;
        if (seed != 0) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            n = TAP_MIN(n, 1 + (size_t) (x % 64));
        }
        used = (size_t) -1;
        rc = tap_respp_feed(rp, (const char *) data + off, n, &used);
        TAP_FUZZ_CHECK(used <= n);
        if (rc == TAP_OK) {
            TAP_FUZZ_CHECK(used == n);
            continue;
        }
        off += used;
        break;
    }

    if (rc == TAP_OK) {
        /* every byte was taken and the upstream closed */
        rc = tap_respp_eof(rp);
        TAP_FUZZ_CHECK(rc == TAP_AGAIN || rc == TAP_ERROR);
    }

    if (rc == TAP_AGAIN) {
        TAP_FUZZ_CHECK(rp->done && f->done == 1 && f->heads == 1);
        TAP_FUZZ_CHECK(tap_respp_feed(rp, "x", 1, &used) == TAP_AGAIN && used == 0);
        TAP_FUZZ_CHECK(tap_respp_eof(rp) == TAP_AGAIN);
    } else {
        TAP_FUZZ_CHECK(rc == TAP_ERROR);
        TAP_FUZZ_CHECK(!rp->done && f->done == 0);
        if (rp->failed) {
            TAP_FUZZ_CHECK(rp->err != NULL);
            TAP_FUZZ_CHECK(tap_respp_feed(rp, "x", 1, &used) == TAP_ERROR && used == 0);
        }
    }
    TAP_FUZZ_CHECK(f->first == (size > 0));

    end->rc = rc;
    end->off = off;
    end->status = f->status;
    end->heads = f->heads;
    end->done = f->done;
    end->body = f->body;
    end->hash = f->hash;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tap_fuzz_end_t   whole, split;
    tap_fuzz_rs_t   *f;
    uint64_t         seed;
    int              head_only;

    if (size == 0) {
        return 0;
    }
    seed = data[0] * 0x9e3779b97f4a7c15ULL + 1;
    data++;
    size--;

    f = calloc(1, sizeof(*f));
    if (f == NULL) {
        return 0;
    }

    for (head_only = 0; head_only <= 1; head_only++) {
        tap_fuzz_run(f, data, size, 0, head_only, &whole);
        tap_fuzz_run(f, data, size, seed, head_only, &split);

        /* how the bytes arrive must not change the outcome */
        TAP_FUZZ_CHECK(whole.rc == split.rc);
        TAP_FUZZ_CHECK(whole.heads == split.heads);
        if (whole.rc == TAP_AGAIN) {
            TAP_FUZZ_CHECK(whole.off == split.off);
            TAP_FUZZ_CHECK(whole.status == split.status);
            TAP_FUZZ_CHECK(whole.body == split.body);
            TAP_FUZZ_CHECK(whole.hash == split.hash);
        }
    }

    tap_respp_cleanup(&f->rp);
    free(f);
    return 0;
}
