/*
 * trace.c: W3C Trace Context parsing and id generation.
 *
 * Each worker owns a tap_rng_t (xoshiro256**, seeded from getrandom()), so
 * generating trace, span and request ids takes no lock and no system call on
 * the request path.  traceparent is validated as the Trace Context spec asks:
 * version 00 must have its exact 55-character form with lowercase hex and
 * non-zero ids; a higher version is read by its version-00 prefix (and must
 * be followed by '-' or end there); "ff" and anything else invalid make the
 * caller start a new trace.  tracestate is only bounded (members, length,
 * printable characters and the tabs its OWS allows), never rewritten.
 */

#include "config.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "conf.h"
#include "tap_core.h"
#include "proxy/trace.h"


static inline uint64_t
tap_rng_rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}


static uint64_t
tap_rng_splitmix(uint64_t *x)
{
    uint64_t  z;

    z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}


void
tap_rng_seed(tap_rng_t *r)
{
    struct timespec  ts;
    uint64_t         seed;
    size_t           i;

    if (getrandom(r->s, sizeof(r->s), 0) == (ssize_t) sizeof(r->s)
        && (r->s[0] | r->s[1] | r->s[2] | r->s[3]) != 0)
    {
        return;
    }

    clock_gettime(CLOCK_REALTIME, &ts);
    seed = (uint64_t) ts.tv_nsec ^ ((uint64_t) ts.tv_sec << 20) ^ (uint64_t) (uintptr_t) r;
    for (i = 0; i < 4; i++) {
        r->s[i] = tap_rng_splitmix(&seed);
    }
}


uint64_t
tap_rng_next(tap_rng_t *r)
{
    uint64_t  *s = r->s;
    uint64_t   result, t;

    result = tap_rng_rotl(s[1] * 5, 7) * 9;
    t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = tap_rng_rotl(s[3], 45);
    return result;
}


void
tap_rng_bytes(tap_rng_t *r, uint8_t *buf, size_t n)
{
    uint64_t  v, any;
    size_t    i;

    do {
        any = 0;
        for (i = 0; i + 8 <= n; i += 8) {
            v = tap_rng_next(r);
            memcpy(buf + i, &v, 8);
            any |= v;
        }
        if (i < n) {
            v = tap_rng_next(r);
            memcpy(buf + i, &v, n - i);
            any |= v & ((1ULL << (8 * (n - i))) - 1);
        }
    } while (n > 0 && any == 0);
}


/* The two hex digits of every byte value, "00" to "ff", in order. */
#define TAP_HEX16(h)                                                                        \
    h "0" h "1" h "2" h "3" h "4" h "5" h "6" h "7" h "8" h "9" h "a" h "b" h "c" h "d"     \
    h "e" h "f"

static const char  tap_hex_pairs[] =
    TAP_HEX16("0") TAP_HEX16("1") TAP_HEX16("2") TAP_HEX16("3") TAP_HEX16("4") TAP_HEX16("5")
    TAP_HEX16("6") TAP_HEX16("7") TAP_HEX16("8") TAP_HEX16("9") TAP_HEX16("a") TAP_HEX16("b")
    TAP_HEX16("c") TAP_HEX16("d") TAP_HEX16("e") TAP_HEX16("f");


void
tap_hex_encode(char *out, const uint8_t *bin, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        memcpy(out + 2 * i, tap_hex_pairs + 2 * bin[i], 2);
    }
    out[2 * n] = '\0';
}


static int
tap_trace_hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}


/* Decodes 2n lowercase hex digits; returns TAP_ERROR on any other byte or
 * when every byte decodes to zero and nonzero is asked for. */
static int
tap_trace_hex_decode(uint8_t *out, const char *p, size_t n, int nonzero)
{
    size_t  i;
    int     hi, lo, any;

    any = 0;
    for (i = 0; i < n; i++) {
        hi = tap_trace_hexval(p[2 * i]);
        lo = tap_trace_hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return TAP_ERROR;
        }
        out[i] = (uint8_t) (hi << 4 | lo);
        any |= out[i];
    }
    return (nonzero && !any) ? TAP_ERROR : TAP_OK;
}


int
tap_traceparent_parse(tap_traceparent_t *tp, const char *v, size_t len)
{
    uint8_t  version;

    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t')) {
        len--;
    }
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }

    if (len < TAP_TRACEPARENT_LEN
        || tap_trace_hex_decode(&version, v, 1, 0) != TAP_OK
        || version == 0xff
        || (version == 0 && len != TAP_TRACEPARENT_LEN)
        || (version != 0 && len > TAP_TRACEPARENT_LEN && v[TAP_TRACEPARENT_LEN] != '-')
        || v[2] != '-' || v[35] != '-' || v[52] != '-'
        || tap_trace_hex_decode(tp->trace_id, v + 3, 16, 1) != TAP_OK
        || tap_trace_hex_decode(tp->parent_id, v + 36, 8, 1) != TAP_OK
        || tap_trace_hex_decode(&tp->flags, v + 53, 1, 0) != TAP_OK)
    {
        return TAP_ERROR;
    }

    return TAP_OK;
}


void
tap_traceparent_format(char *out, const uint8_t trace_id[16], const uint8_t span_id[8],
    uint8_t flags)
{
    memcpy(out, "00-", 3);
    tap_hex_encode(out + 3, trace_id, 16);
    out[35] = '-';
    tap_hex_encode(out + 36, span_id, 8);
    out[52] = '-';
    tap_hex_encode(out + 53, &flags, 1);
}


int
tap_tracestate_check(const char *v, size_t len)
{
    size_t    i;
    unsigned  members;

    if (len > TAP_TRACESTATE_MAX_LEN) {
        return TAP_ERROR;
    }

    members = 1;
    for (i = 0; i < len; i++) {
        if (((unsigned char) v[i] < 0x20 && v[i] != '\t') || (unsigned char) v[i] > 0x7e) {
            return TAP_ERROR;
        }
        if (v[i] == ',' && ++members > TAP_TRACESTATE_MAX_MEMBERS) {
            return TAP_ERROR;
        }
    }
    return TAP_OK;
}


static int
tap_sample_ratio(double ratio, const uint8_t trace_id[16])
{
    uint64_t  r = 0;
    size_t    i;

    if (ratio >= 1.0) {
        return 1;
    }
    if (ratio <= 0.0) {
        return 0;
    }
    for (i = 9; i < 16; i++) {
        r = r << 8 | trace_id[i];
    }
    return (double) r < ratio * 72057594037927936.0;          /* 2^56 */
}


int
tap_sample_head(int sampler, double ratio, int has_parent, uint8_t parent_flags,
    const uint8_t trace_id[16])
{
    switch (sampler) {
    case TAP_CONF_SAMPLER_ALWAYS_ON:
        return 1;
    case TAP_CONF_SAMPLER_ALWAYS_OFF:
        return 0;
    case TAP_CONF_SAMPLER_TRACEIDRATIO:
        return tap_sample_ratio(ratio, trace_id);
    case TAP_CONF_SAMPLER_PARENTBASED_ALWAYS_OFF:
        return has_parent ? (parent_flags & 0x01) : 0;
    case TAP_CONF_SAMPLER_PARENTBASED_TRACEIDRATIO:
        return has_parent ? (parent_flags & 0x01) : tap_sample_ratio(ratio, trace_id);
    default:
        return has_parent ? (parent_flags & 0x01) : 1;
    }
}
