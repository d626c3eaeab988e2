/*
 * tap_core.h: return codes, string spans and small helpers shared by every
 * part of infertap (the proxy, the simulator, the tests).
 *
 * Functions returning int return one of the TAP_* codes below; functions
 * returning pointers return NULL on failure.  A tap_str_t is a borrowed span
 * of bytes: it owns nothing and is not NUL-terminated unless said so.
 */

#ifndef TAP_CORE_H
#define TAP_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define TAP_OK        0
#define TAP_ERROR    -1
#define TAP_AGAIN    -2     /* would block; call again on the next event */
#define TAP_DECLINED -3     /* not mine; let the next one try */

#define TAP_NELEMS(a)    (sizeof(a) / sizeof((a)[0]))
#define TAP_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define TAP_MAX(a, b)    ((a) > (b) ? (a) : (b))
#define TAP_UNUSED(x)    (void) (x)

#define TAP_STR(s)       { (char *) (s), sizeof(s) - 1 }
#define TAP_NULL_STR     { NULL, 0 }

/* Built with AddressSanitizer: memory kept for reuse goes back to malloc
 * instead, so that the sanitizer keeps watching every block. */
#if defined(__SANITIZE_ADDRESS__)
#define TAP_ASAN  1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TAP_ASAN  1
#endif
#endif
#ifndef TAP_ASAN
#define TAP_ASAN  0
#endif

typedef struct tap_str_s {
    char    *p;
    size_t   len;
} tap_str_t;


static inline int
tap_str_eq(const tap_str_t *a, const char *b, size_t blen)
{
    return a->len == blen && memcmp(a->p, b, blen) == 0;
}


/*
 * Copies the NUL-terminated string s, cut to at most max bytes, into d (which has room for
 * max + 1) and terminates it; returns the length copied.  What snprintf
 * "%.*s" does, without the formatting machinery on the request path.
 */
static inline size_t
tap_cpystr(char *d, const char *s, size_t max)
{
    size_t  n = strlen(s);

    n = n < max ? n : max;
    memcpy(d, s, n);
    d[n] = '\0';
    return n;
}


#endif /* TAP_CORE_H */
