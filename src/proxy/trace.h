/*
 * trace.h: W3C Trace Context (traceparent / tracestate) and the per-worker
 * random generator used for trace, span and request ids.
 */

#ifndef TAP_PROXY_TRACE_H
#define TAP_PROXY_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define TAP_TRACEPARENT_LEN       55      /* "00-" 32 "-" 16 "-" 2 */
#define TAP_TRACESTATE_MAX_LEN    512
#define TAP_TRACESTATE_MAX_MEMBERS 32

typedef struct tap_rng_s {
    uint64_t  s[4];
} tap_rng_t;

typedef struct tap_traceparent_s {
    uint8_t   trace_id[16];
    uint8_t   parent_id[8];
    uint8_t   flags;
} tap_traceparent_t;


/* Seeds r from getrandom(); falls back to time and address bits. */
void tap_rng_seed(tap_rng_t *r);
uint64_t tap_rng_next(tap_rng_t *r);
/* Fills buf with n random bytes, never all zero when n > 0. */
void tap_rng_bytes(tap_rng_t *r, uint8_t *buf, size_t n);

/* Writes 2n lowercase hex digits of bin to out and a NUL. */
void tap_hex_encode(char *out, const uint8_t *bin, size_t n);

/* Parses a traceparent header value.  Returns TAP_OK when valid (version 00
 * in its exact form, or a higher version parsed by its 00 prefix), else
 * TAP_ERROR (the caller starts a new trace). */
int tap_traceparent_parse(tap_traceparent_t *tp, const char *v, size_t len);

/* Formats "00-<trace>-<span>-<flags>" into out (at least 56 bytes). */
void tap_traceparent_format(char *out, const uint8_t trace_id[16], const uint8_t span_id[8],
    uint8_t flags);

/* Returns TAP_OK if a tracestate value may be passed on (at most 32
 * list-members and 512 characters, printable), else TAP_ERROR. */
int tap_tracestate_check(const char *v, size_t len);

/*
 * The head sampler (values of tap_conf_sampler_e).  The parentbased samplers
 * follow the caller's sampled flag when there is a caller (has_parent);
 * traceidratio keeps a trace when the 56 random low-order bits of its id,
 * read as an integer, fall below ratio * 2^56, so every service that samples
 * by the same ratio keeps the same traces.  Returns 1 to sample.
 */
int tap_sample_head(int sampler, double ratio, int has_parent, uint8_t parent_flags,
    const uint8_t trace_id[16]);

#endif /* TAP_PROXY_TRACE_H */
