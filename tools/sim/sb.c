/*
 * sb.c: the growable string behind every body the simulator writes.
 *
 * Integers are formatted by hand and JSON strings are escaped byte by byte
 * because these run for every token of every response; printf is kept for
 * the rare, irregular pieces.  Memory grows by doubling and is never shrunk;
 * workers keep one scratch builder each and reset it between uses.
 */

#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sb.h"


void
tap_sim_sb_init(tap_sim_sb_t *sb)
{
    sb->p = NULL;
    sb->len = 0;
    sb->cap = 0;
}


void
tap_sim_sb_cleanup(tap_sim_sb_t *sb)
{
    free(sb->p);
    tap_sim_sb_init(sb);
}


void
tap_sim_sb_reset(tap_sim_sb_t *sb)
{
    sb->len = 0;
}


void
tap_sim_sb_reserve(tap_sim_sb_t *sb, size_t more)
{
    size_t  cap;
    char   *p;

    if (sb->len + more + 1 <= sb->cap) {
        return;
    }

    cap = sb->cap ? sb->cap : 256;
    while (cap < sb->len + more + 1) {
        cap *= 2;
    }

    p = realloc(sb->p, cap);
    if (p == NULL) {
        abort();
    }

    sb->p = p;
    sb->cap = cap;
}


void
tap_sim_sb_add(tap_sim_sb_t *sb, const char *s, size_t len)
{
    tap_sim_sb_reserve(sb, len);
    if (len > 0) {
        memcpy(sb->p + sb->len, s, len);
    }
    sb->len += len;
    sb->p[sb->len] = '\0';
}


void
tap_sim_sb_adds(tap_sim_sb_t *sb, const char *s)
{
    tap_sim_sb_add(sb, s, strlen(s));
}


void
tap_sim_sb_addc(tap_sim_sb_t *sb, char c)
{
    tap_sim_sb_reserve(sb, 1);
    sb->p[sb->len++] = c;
    sb->p[sb->len] = '\0';
}


void
tap_sim_sb_addf(tap_sim_sb_t *sb, const char *fmt, ...)
{
    va_list  ap;
    int      n;

    tap_sim_sb_reserve(sb, 64);
    va_start(ap, fmt);
    n = vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }

    if ((size_t) n >= sb->cap - sb->len) {
        tap_sim_sb_reserve(sb, (size_t) n);
        va_start(ap, fmt);
        n = vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
        va_end(ap);
    }

    sb->len += (size_t) n;
}


void
tap_sim_sb_add_u64(tap_sim_sb_t *sb, unsigned long long v)
{
    char    tmp[24];
    size_t  i;

    i = sizeof(tmp);
    do {
        tmp[--i] = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);

    tap_sim_sb_add(sb, tmp + i, sizeof(tmp) - i);
}


void
tap_sim_sb_add_i64(tap_sim_sb_t *sb, long long v)
{
    if (v < 0) {
        tap_sim_sb_addc(sb, '-');
        tap_sim_sb_add_u64(sb, 0ULL - (unsigned long long) v);
        return;
    }

    tap_sim_sb_add_u64(sb, (unsigned long long) v);
}


/* The value tap_sim_sb_add_lp() writes for v, as a reader parses it back. */
double
tap_sim_lp_round(double v)
{
    double  a;

    if (v != v || v > 1e12 || v < -1e12) {
        return 0;
    }

    a = (double) (unsigned long long) ((v < 0 ? -v : v) * 1e6 + 0.5) / 1e6;
    return v < 0 ? -a : a;
}


/* A log-probability (or any value in a modest range) with 6 decimals. */
void
tap_sim_sb_add_lp(tap_sim_sb_t *sb, double v)
{
    unsigned long long  scaled;
    char                frac[8];
    int                 i;

    if (v != v || v > 1e12 || v < -1e12) {
        tap_sim_sb_adds(sb, "0");
        return;
    }

    if (v < 0) {
        v = -v;
        tap_sim_sb_addc(sb, '-');
    }

    scaled = (unsigned long long) (v * 1e6 + 0.5);
    tap_sim_sb_add_u64(sb, scaled / 1000000);
    scaled %= 1000000;
    for (i = 5; i >= 0; i--) {
        frac[i] = (char) ('0' + scaled % 10);
        scaled /= 10;
    }
    tap_sim_sb_addc(sb, '.');
    tap_sim_sb_add(sb, frac, 6);
}


void
tap_sim_sb_add_jstr(tap_sim_sb_t *sb, const char *s, size_t len)
{
    static const char   tap_sim_hex[] = "0123456789abcdef";
    unsigned char       c;
    size_t              i;

    tap_sim_sb_reserve(sb, len + 2);
    sb->p[sb->len++] = '"';
    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c != 0x7f) {
            tap_sim_sb_reserve(sb, 1);
            sb->p[sb->len++] = (char) c;
            continue;
        }

        tap_sim_sb_reserve(sb, 6);
        sb->p[sb->len++] = '\\';
        switch (c) {
        case '"': sb->p[sb->len++] = '"'; break;
        case '\\': sb->p[sb->len++] = '\\'; break;
        case '\n': sb->p[sb->len++] = 'n'; break;
        case '\r': sb->p[sb->len++] = 'r'; break;
        case '\t': sb->p[sb->len++] = 't'; break;
        default:
            sb->p[sb->len++] = 'u';
            sb->p[sb->len++] = '0';
            sb->p[sb->len++] = '0';
            sb->p[sb->len++] = tap_sim_hex[c >> 4];
            sb->p[sb->len++] = tap_sim_hex[c & 15];
            break;
        }
    }

    tap_sim_sb_reserve(sb, 1);
    sb->p[sb->len++] = '"';
    sb->p[sb->len] = '\0';
}


/* The OpenAI "bytes" field: the UTF-8 bytes of a token as a JSON array. */
void
tap_sim_sb_add_bytes_array(tap_sim_sb_t *sb, const char *s, size_t len)
{
    size_t  i;

    tap_sim_sb_addc(sb, '[');
    for (i = 0; i < len; i++) {
        if (i > 0) {
            tap_sim_sb_addc(sb, ',');
        }
        tap_sim_sb_add_u64(sb, (unsigned char) s[i]);
    }
    tap_sim_sb_addc(sb, ']');
}
