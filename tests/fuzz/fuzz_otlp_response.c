/*
 * fuzz_otlp_response.c: libFuzzer harness for what an OTLP collector sends
 * back (src/telemetry/export.c): the Export*ServiceResponse body, plain or
 * gzip-compressed, and the Retry-After header.
 *
 * The first input byte picks the signal (low two bits) and gzip (bit 2); the
 * rest is the body.  The body is also read as a Retry-After value.  Checks:
 * nothing crashes or leaks; a Retry-After wait is -1 or within [0, cap]; a
 * body that is not gzip, read as gzip, reports nothing rejected; and a
 * valid plain body gives the same answer when it is compressed first.
 */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "tap_core.h"
#include "telemetry/export.h"

#define TAP_FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)
#define TAP_FUZZ_CAP_MS    30000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* gzip of in, or NULL */
static uint8_t *
tap_fuzz_gzip(const uint8_t *in, size_t len, size_t *out_len)
{
    z_stream   zs;
    uint8_t   *out;
    size_t     cap = compressBound((uLong) len) + 64;

    out = malloc(cap);
    memset(&zs, 0, sizeof(zs));
    if (out == NULL
        || deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    {
        free(out);
        return NULL;
    }
    zs.next_in = (Bytef *) in;
    zs.avail_in = (uInt) len;
    zs.next_out = out;
    zs.avail_out = (uInt) cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) {
        deflateEnd(&zs);
        free(out);
        return NULL;
    }
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tap_signal_e   sig;
    uint8_t       *body, *gz;
    char          *text;
    size_t         len, gzlen;
    int64_t        wait;
    uint64_t       plain, again;
    int            gzip;

    if (size == 0) {
        return 0;
    }
    sig = (tap_signal_e) (data[0] & 3);
    gzip = (data[0] >> 2) & 1;
    len = size - 1;

    /* an allocation of the exact size, so ASan sees any read past it */
    body = malloc(len ? len : 1);
    text = malloc(len + 1);
    if (body == NULL || text == NULL) {
        free(body);
        free(text);
        return 0;
    }
    memcpy(body, data + 1, len);
    memcpy(text, data + 1, len);
    text[len] = '\0';

    wait = tap_export_parse_retry_after(text, TAP_FUZZ_CAP_MS, 1700000000);
    TAP_FUZZ_CHECK(wait == -1 || (wait >= 0 && wait <= TAP_FUZZ_CAP_MS));

    plain = tap_export_parse_response(sig, body, len, gzip);
    if (gzip && (len < 2 || body[0] != 0x1f || body[1] != 0x8b)
        && (len < 2 || (body[0] & 0x0f) != 8))
    {
        TAP_FUZZ_CHECK(plain == 0);          /* neither gzip nor zlib */
    }

    if (!gzip && (unsigned) sig < TAP_SIGNAL_N) {
        gz = tap_fuzz_gzip(body, len, &gzlen);
        if (gz != NULL) {
            again = tap_export_parse_response(sig, gz, gzlen, 1);
            TAP_FUZZ_CHECK(again == plain || len == 0);
            free(gz);
        }
    }

    free(body);
    free(text);
    return 0;
}
