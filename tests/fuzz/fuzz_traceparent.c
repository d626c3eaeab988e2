/*
 * fuzz_traceparent.c: libFuzzer harness for the W3C Trace Context checks
 * (src/proxy/trace.c): tap_traceparent_parse() and tap_tracestate_check().
 *
 * The whole input is tried as a traceparent and as a tracestate value.
 * Both verdicts must match a reference written here from the Trace Context
 * rules that trace.h documents (OWS trimmed; version two lowercase hex
 * digits, not ff; version 00 exactly 55 characters, a higher version
 * followed by '-' or nothing; lowercase hex ids, neither all zero;
 * tracestate at most 512 characters and 32 members, printable or tab).
 * When a traceparent is accepted: neither id is all zero; re-formatting it
 * with tap_traceparent_format() gives a 55-character version-00 header equal
 * to the trimmed input past the version (the whole of it for version 00),
 * which parses back to the same ids and flags; adding OWS around the input
 * changes nothing; and uppercasing any hex letter, or zeroing either id,
 * makes it invalid.  An accepted tracestate stays accepted when cut short.
 * Every value is parsed from an allocation of its exact size, so that ASan
 * sees any read past its end.
 */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tap_core.h"
#include "proxy/trace.h"

#define TAP_FUZZ_CHECK(c)  do { if (!(c)) { abort(); } } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* Parses a private copy of v (exactly len bytes long). */
static int
tap_fuzz_parse(tap_traceparent_t *tp, const uint8_t *v, size_t len)
{
    char  *copy;
    int    rc;

    copy = malloc(len ? len : 1);
    TAP_FUZZ_CHECK(copy != NULL);
    if (len > 0) {
        memcpy(copy, v, len);
    }
    rc = tap_traceparent_parse(tp, copy, len);
    free(copy);
    TAP_FUZZ_CHECK(rc == TAP_OK || rc == TAP_ERROR);
    return rc;
}


static int
tap_fuzz_state(const uint8_t *v, size_t len)
{
    char  *copy;
    int    rc;

    copy = malloc(len ? len : 1);
    TAP_FUZZ_CHECK(copy != NULL);
    if (len > 0) {
        memcpy(copy, v, len);
    }
    rc = tap_tracestate_check(copy, len);
    free(copy);
    TAP_FUZZ_CHECK(rc == TAP_OK || rc == TAP_ERROR);
    return rc;
}


/* 1 if p holds n lowercase hex digits (and, if nonzero, not all '0'). */
static int
tap_fuzz_ref_hex(const uint8_t *p, size_t n, int nonzero)
{
    size_t  i;
    int     any;

    any = 0;
    for (i = 0; i < n; i++) {
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) {
            return 0;
        }
        any |= p[i] != '0';
    }
    return any || !nonzero;
}


static int
tap_fuzz_ows(uint8_t c)
{
    return c == ' ' || c == '\t';
}


/* The reference verdict on a traceparent already stripped of OWS. */
static int
tap_fuzz_ref_traceparent(const uint8_t *v, size_t len)
{
    int  v00;

    if (len < TAP_TRACEPARENT_LEN || !tap_fuzz_ref_hex(v, 2, 0)
        || (v[0] == 'f' && v[1] == 'f'))
    {
        return 0;
    }
    v00 = v[0] == '0' && v[1] == '0';
    if (v00 ? len != TAP_TRACEPARENT_LEN
            : len > TAP_TRACEPARENT_LEN && v[TAP_TRACEPARENT_LEN] != '-')
    {
        return 0;
    }
    return v[2] == '-' && v[35] == '-' && v[52] == '-'
           && tap_fuzz_ref_hex(v + 3, 32, 1) && tap_fuzz_ref_hex(v + 36, 16, 1)
           && tap_fuzz_ref_hex(v + 53, 2, 0);
}


static int
tap_fuzz_ref_tracestate(const uint8_t *v, size_t len)
{
    size_t  i, members;

    if (len > TAP_TRACESTATE_MAX_LEN) {
        return 0;
    }
    members = 1;
    for (i = 0; i < len; i++) {
        if ((v[i] < 0x20 && v[i] != '\t') || v[i] >= 0x7f) {
            return 0;
        }
        members += v[i] == ',';
    }
    return members <= TAP_TRACESTATE_MAX_MEMBERS;
}


static int
tap_fuzz_zero(const uint8_t *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (p[i] != 0) {
            return 0;
        }
    }
    return 1;
}


/* The checks on a traceparent v (trimmed: t, tlen) that was accepted. */
static void
tap_fuzz_accepted(const tap_traceparent_t *tp, const uint8_t *v, size_t len,
    const uint8_t *t, size_t tlen)
{
    tap_traceparent_t   tp2;
    uint8_t            *w;
    char                out[TAP_TRACEPARENT_LEN + 1];
    size_t              i;

    TAP_FUZZ_CHECK(!tap_fuzz_zero(tp->trace_id, sizeof(tp->trace_id)));
    TAP_FUZZ_CHECK(!tap_fuzz_zero(tp->parent_id, sizeof(tp->parent_id)));

    /* re-formatted: version 00, the same ids and flags, parsing back */
    memset(out, 'X', sizeof(out));
    tap_traceparent_format(out, tp->trace_id, tp->parent_id, tp->flags);
    TAP_FUZZ_CHECK(out[TAP_TRACEPARENT_LEN] == '\0' && strlen(out) == TAP_TRACEPARENT_LEN);
    TAP_FUZZ_CHECK(out[0] == '0' && out[1] == '0');
    TAP_FUZZ_CHECK(memcmp(out + 2, t + 2, TAP_TRACEPARENT_LEN - 2) == 0);
    if (t[0] == '0' && t[1] == '0') {
        TAP_FUZZ_CHECK(tlen == TAP_TRACEPARENT_LEN && memcmp(out, t, tlen) == 0);
    }
    TAP_FUZZ_CHECK(tap_fuzz_parse(&tp2, (const uint8_t *) out, TAP_TRACEPARENT_LEN) == TAP_OK);
    TAP_FUZZ_CHECK(memcmp(tp2.trace_id, tp->trace_id, sizeof(tp->trace_id)) == 0);
    TAP_FUZZ_CHECK(memcmp(tp2.parent_id, tp->parent_id, sizeof(tp->parent_id)) == 0);
    TAP_FUZZ_CHECK(tp2.flags == tp->flags);

    w = malloc(len + 3);
    TAP_FUZZ_CHECK(w != NULL);

    /* OWS around it changes nothing */
    w[0] = '\t';
    w[1] = ' ';
    memcpy(w + 2, v, len);
    w[len + 2] = ' ';
    TAP_FUZZ_CHECK(tap_fuzz_parse(&tp2, w, len + 3) == TAP_OK);
    TAP_FUZZ_CHECK(memcmp(tp2.trace_id, tp->trace_id, sizeof(tp->trace_id)) == 0);
    TAP_FUZZ_CHECK(memcmp(tp2.parent_id, tp->parent_id, sizeof(tp->parent_id)) == 0);
    TAP_FUZZ_CHECK(tp2.flags == tp->flags);

    /* hex is lowercase only: uppercasing any letter of the fields is invalid */
    for (i = 0; i < TAP_TRACEPARENT_LEN; i++) {
        if (t[i] < 'a' || t[i] > 'f') {
            continue;
        }
        memcpy(w, t, tlen);
        w[i] = (uint8_t) (t[i] - 'a' + 'A');
        TAP_FUZZ_CHECK(tap_fuzz_parse(&tp2, w, tlen) == TAP_ERROR);
    }

    /* all-zero ids are invalid */
    memcpy(w, t, tlen);
    memset(w + 3, '0', 32);
    TAP_FUZZ_CHECK(tap_fuzz_parse(&tp2, w, tlen) == TAP_ERROR);
    memcpy(w, t, tlen);
    memset(w + 36, '0', 16);
    TAP_FUZZ_CHECK(tap_fuzz_parse(&tp2, w, tlen) == TAP_ERROR);

    free(w);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tap_traceparent_t   tp;
    const uint8_t      *t;
    size_t              tlen;
    int                 rc, ref;

    t = data;
    tlen = size;
    while (tlen > 0 && tap_fuzz_ows(t[tlen - 1])) {
        tlen--;
    }
    while (tlen > 0 && tap_fuzz_ows(t[0])) {
        t++;
        tlen--;
    }

    memset(&tp, 0, sizeof(tp));
    rc = tap_fuzz_parse(&tp, data, size);
    ref = tap_fuzz_ref_traceparent(t, tlen);
    TAP_FUZZ_CHECK((rc == TAP_OK) == ref);
    if (rc == TAP_OK) {
        tap_fuzz_accepted(&tp, data, size, t, tlen);
    }

    rc = tap_fuzz_state(data, size);
    TAP_FUZZ_CHECK((rc == TAP_OK) == tap_fuzz_ref_tracestate(data, size));
    if (rc == TAP_OK && size > 0) {
        TAP_FUZZ_CHECK(tap_fuzz_state(data, size / 2) == TAP_OK);
        TAP_FUZZ_CHECK(tap_fuzz_state(data, size - 1) == TAP_OK);
    }

    return 0;
}
