/*
 * fuzz_ndjson.c: libFuzzer harness for the NDJSON splitter (src/genai/split.c).
 *
 * The first byte picks the limit (bit 7: max = bits 0-5, so that oversized
 * lines are reached; else 1 MiB) and seeds the piece sizes.  The rest is
 * fed whole, in random pieces of 1 to 64 bytes, byte by byte (up to 4 KiB),
 * and in random pieces with a callback that stops feeding at every line, the
 * caller resuming past line->end.  All runs must give the same lines, each
 * ending at the same offset of the input, the same counters and the same
 * finish result (and last line).  Any broken invariant aborts: end within
 * the piece, after the previous one, just past an LF (0 only from finish);
 * a line non-empty, not blank, no longer than max, without LF.  Each piece
 * is its own allocation, freed after it is fed, so that ASan sees reads
 * past it.
 */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap_core.h"
#include "genai/split.h"

#define TAP_FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)

typedef struct tap_fuzz_nd_s {
    const uint8_t  *in;
    size_t          size;
    size_t          max;
    size_t          base;         /* offset in the input of the piece being fed */
    size_t          plen;
    size_t          last;         /* end of the previous line in this piece */
    int             stop;
    int             called;
    int             finishing;
    uint64_t        n;
    uint64_t        hash;
} tap_fuzz_nd_t;

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


static int
tap_fuzz_on_line(void *ctx, const tap_ndjson_line_t *line)
{
    tap_fuzz_nd_t  *f = ctx;
    size_t          abs, i;

    if (f->finishing) {
        TAP_FUZZ_CHECK(line->end == 0);
        abs = f->size;
    } else {
        TAP_FUZZ_CHECK(line->end > f->last && line->end <= f->plen);
        f->last = line->end;
        abs = f->base + line->end;
        TAP_FUZZ_CHECK(f->in[abs - 1] == '\n');
    }

    TAP_FUZZ_CHECK(line->data != NULL && line->len > 0 && line->len <= f->max);
    TAP_FUZZ_CHECK(memchr(line->data, '\n', line->len) == NULL);
    for (i = 0; i < line->len; i++) {
        if (line->data[i] != ' ' && line->data[i] != '\t' && line->data[i] != '\r') {
            break;
        }
    }
    TAP_FUZZ_CHECK(i < line->len);

    f->hash = tap_fuzz_hash(f->hash, &line->len, sizeof(line->len));
    f->hash = tap_fuzz_hash(f->hash, line->data, line->len);
    f->hash = tap_fuzz_hash(f->hash, &abs, sizeof(abs));
    f->n++;
    f->called = 1;
    return f->stop ? 1 : 0;
}


/* Feeds the input in pieces (of at most step bytes, random when rng != 0). */
static void
tap_fuzz_run(tap_fuzz_nd_t *f, size_t step, uint64_t rng, int stop)
{
    tap_ndjson_t  s;
    uint8_t      *piece;
    size_t        off, n, q;
    int           rc;

    f->hash = 0xcbf29ce484222325ULL;
    f->n = 0;
    f->stop = stop;
    f->finishing = 0;
    tap_ndjson_init(&s, f->max);

    for (off = 0; off < f->size; off += n) {
        n = f->size - off;
        if (rng != 0) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            step = 1 + (size_t) (rng % 64);
        }
        n = TAP_MIN(n, step);

        piece = malloc(n);
        TAP_FUZZ_CHECK(piece != NULL);
        memcpy(piece, f->in + off, n);

        for (q = 0;; q += f->last) {
            f->base = off + q;
            f->plen = n - q;
            f->last = 0;
            f->called = 0;
            rc = tap_ndjson_feed(&s, (const char *) piece + q, n - q, tap_fuzz_on_line, f);
            if (rc == 0) {
                break;
            }
            TAP_FUZZ_CHECK(rc == 1 && stop && f->called);
        }

        free(piece);
        TAP_FUZZ_CHECK(s.len <= f->max && s.cap <= f->max);
    }

    f->finishing = 1;
    rc = tap_ndjson_finish(&s, tap_fuzz_on_line, f);
    TAP_FUZZ_CHECK(rc == 0 || rc == 1);
    TAP_FUZZ_CHECK(s.lines == f->n);
    f->hash = tap_fuzz_hash(f->hash, &rc, sizeof(rc));
    f->hash = tap_fuzz_hash(f->hash, &s.oversized, sizeof(s.oversized));
    TAP_FUZZ_CHECK(tap_ndjson_finish(&s, tap_fuzz_on_line, f) == 0);
    tap_ndjson_cleanup(&s);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tap_fuzz_nd_t  f;
    uint64_t       seed, whole;

    if (size == 0) {
        return 0;
    }
    memset(&f, 0, sizeof(f));
    f.max = (data[0] & 0x80) ? (size_t) (data[0] & 0x3f) : 1024 * 1024;
    seed = (data[0] & 0x7f) * 0x9e3779b97f4a7c15ULL + 1;
    f.in = data + 1;
    f.size = size - 1;

    tap_fuzz_run(&f, f.size, 0, 0);
    whole = f.hash;

    tap_fuzz_run(&f, 0, seed, 0);
    TAP_FUZZ_CHECK(f.hash == whole);

    tap_fuzz_run(&f, 0, seed ^ 0x5555, 1);
    TAP_FUZZ_CHECK(f.hash == whole);

    tap_fuzz_run(&f, f.size, 0, 1);
    TAP_FUZZ_CHECK(f.hash == whole);

    if (f.size <= 4096) {
        tap_fuzz_run(&f, 1, 0, 0);
        TAP_FUZZ_CHECK(f.hash == whole);
    }

    return 0;
}
