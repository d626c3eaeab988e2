/*
 * test_trace.c: unit tests of W3C Trace Context handling (src/proxy/trace.c).
 *
 * traceparent: the version-00 form with its exact length, lowercase hex and non-zero ids; the
 * invalid version ff; higher versions read by their version-00 prefix and accepted with extra
 * fields as the Trace Context spec asks; flags kept as sent.  tracestate: the member and length
 * bounds and the allowed characters.  Formatting: what tap_traceparent_format() writes parses
 * back to the same ids, and the id generator never yields an all-zero id.  Output is TAP
 * (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tap_core.h"
#include "proxy/trace.h"

#define TAP_T_TRACE  "4bf92f3577b34da6a3ce929d0e0e4736"
#define TAP_T_SPAN   "00f067aa0ba902b7"

typedef struct tap_t_tp_case_s {
    const char  *v;
    int          ok;
    uint8_t      flags;
} tap_t_tp_case_t;


static const uint8_t  tap_t_trace_bin[16] = {
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6,
    0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
};

static const uint8_t  tap_t_span_bin[8] = {
    0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7,
};

static const tap_t_tp_case_t  tap_t_tp_cases[] = {
    /* version 00 */
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-01", 1, 0x01 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-00", 1, 0x00 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-09", 1, 0x09 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-ff", 1, 0xff },
    { " \t00-" TAP_T_TRACE "-" TAP_T_SPAN "-01\t ", 1, 0x01 },

    /* version ff is invalid whatever follows */
    { "ff-" TAP_T_TRACE "-" TAP_T_SPAN "-01", 0, 0 },
    { "ff-" TAP_T_TRACE "-" TAP_T_SPAN "-01-00", 0, 0 },

    /* zero ids */
    { "00-00000000000000000000000000000000-" TAP_T_SPAN "-01", 0, 0 },
    { "00-" TAP_T_TRACE "-0000000000000000-01", 0, 0 },
    { "00-00000000000000000000000000000000-0000000000000000-01", 0, 0 },
    { "00-00000000000000000000000000000001-0000000000000001-01", 1, 0x01 },

    /* uppercase hex, anywhere */
    { "00-4BF92F3577B34DA6A3CE929D0E0E4736-" TAP_T_SPAN "-01", 0, 0 },
    { "00-4bf92f3577b34da6a3ce929d0e0e473A-" TAP_T_SPAN "-01", 0, 0 },
    { "00-" TAP_T_TRACE "-00F067AA0BA902B7-01", 0, 0 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-0A", 0, 0 },
    { "0A-" TAP_T_TRACE "-" TAP_T_SPAN "-01", 0, 0 },

    /* not hex */
    { "00-4bf92f3577b34da6a3ce929d0e0e473g-" TAP_T_SPAN "-01", 0, 0 },
    { "00-" TAP_T_TRACE "-00f067aa0ba902bz-01", 0, 0 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-0x", 0, 0 },
    { "0g-" TAP_T_TRACE "-" TAP_T_SPAN "-01", 0, 0 },
    { "00-4bf92f3577b34da6a3ce929d0e0e47 6-" TAP_T_SPAN "-01", 0, 0 },

    /* wrong lengths and separators */
    { "", 0, 0 },
    { "00", 0, 0 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-1", 0, 0 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-011", 0, 0 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-01-", 0, 0 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "-01-what", 0, 0 },
    { "00-4bf92f3577b34da6a3ce929d0e0e473-" TAP_T_SPAN "-01", 0, 0 },
    { "00-4bf92f3577b34da6a3ce929d0e0e47361-" TAP_T_SPAN "-01", 0, 0 },
    { "00-" TAP_T_TRACE "-00f067aa0ba902b-01", 0, 0 },
    { "00-" TAP_T_TRACE "-00f067aa0ba902b71-01", 0, 0 },
    { "00_" TAP_T_TRACE "-" TAP_T_SPAN "-01", 0, 0 },
    { "00-" TAP_T_TRACE "_" TAP_T_SPAN "-01", 0, 0 },
    { "00-" TAP_T_TRACE "-" TAP_T_SPAN "_01", 0, 0 },
    { "00--" TAP_T_TRACE TAP_T_SPAN "-01", 0, 0 },

    /* future versions: the version-00 prefix, then nothing or '-' and more */
    { "01-" TAP_T_TRACE "-" TAP_T_SPAN "-01", 1, 0x01 },
    { "01-" TAP_T_TRACE "-" TAP_T_SPAN "-01-", 1, 0x01 },
    { "cc-" TAP_T_TRACE "-" TAP_T_SPAN "-01-what-the-future-will-be-like", 1, 0x01 },
    { "fe-" TAP_T_TRACE "-" TAP_T_SPAN "-03-x", 1, 0x03 },
    { "01-" TAP_T_TRACE "-" TAP_T_SPAN "-01x", 0, 0 },
    { "01-" TAP_T_TRACE "-" TAP_T_SPAN "-011", 0, 0 },
    { "01-" TAP_T_TRACE "-" TAP_T_SPAN "-1", 0, 0 },
    { "01-" TAP_T_TRACE "-" TAP_T_SPAN "-0g-x", 0, 0 },
    { "01-00000000000000000000000000000000-" TAP_T_SPAN "-01-x", 0, 0 },
    { "01-" TAP_T_TRACE "-0000000000000000-01-x", 0, 0 },
    { "01-4BF92F3577B34DA6A3CE929D0E0E4736-" TAP_T_SPAN "-01-x", 0, 0 },
};


static void
test_traceparent_cases(void **state)
{
    const tap_t_tp_case_t  *c;
    tap_traceparent_t       tp;
    size_t                  i;
    int                     rc;

    for (i = 0; i < TAP_NELEMS(tap_t_tp_cases); i++) {
        c = &tap_t_tp_cases[i];
        memset(&tp, 0xaa, sizeof(tp));
        rc = tap_traceparent_parse(&tp, c->v, strlen(c->v));
        if ((rc == TAP_OK) != c->ok) {
            fail_msg("traceparent \"%s\": got %s, expected %s", c->v,
                rc == TAP_OK ? "valid" : "invalid", c->ok ? "valid" : "invalid");
        }
        if (c->ok) {
            assert_int_equal(tp.flags, c->flags);
        }
    }
}


static void
test_traceparent_fields(void **state)
{
    static const char  v[] = "00-" TAP_T_TRACE "-" TAP_T_SPAN "-01";
    tap_traceparent_t  tp;

    assert_int_equal(strlen(v), TAP_TRACEPARENT_LEN);
    assert_int_equal(tap_traceparent_parse(&tp, v, sizeof(v) - 1), TAP_OK);
    assert_memory_equal(tp.trace_id, tap_t_trace_bin, 16);
    assert_memory_equal(tp.parent_id, tap_t_span_bin, 8);
    assert_int_equal(tp.flags, 0x01);

    assert_int_equal(tap_traceparent_parse(&tp,
        "cc-" TAP_T_TRACE "-" TAP_T_SPAN "-02-future", 62), TAP_OK);
    assert_memory_equal(tp.trace_id, tap_t_trace_bin, 16);
    assert_memory_equal(tp.parent_id, tap_t_span_bin, 8);
    assert_int_equal(tp.flags, 0x02);
}


/* Only len bytes are read: a valid value followed by garbage in the buffer
 * is valid, a prefix of a valid value is not. */
static void
test_traceparent_bounds(void **state)
{
    static const char  v[] = "00-" TAP_T_TRACE "-" TAP_T_SPAN "-01garbage";
    tap_traceparent_t  tp;
    char              *copy;
    size_t             n;

    assert_int_equal(tap_traceparent_parse(&tp, v, TAP_TRACEPARENT_LEN), TAP_OK);
    for (n = 0; n < TAP_TRACEPARENT_LEN; n++) {
        copy = malloc(n + 1);
        assert_non_null(copy);
        memcpy(copy, v, n);
        assert_int_equal(tap_traceparent_parse(&tp, copy, n), TAP_ERROR);
        free(copy);
    }
}


static void
test_traceparent_format(void **state)
{
    static const uint8_t  zero_flags = 0x00;
    char                  out[TAP_TRACEPARENT_LEN + 1];
    tap_traceparent_t     tp;
    tap_rng_t             rng;
    uint8_t               trace[16], span[8];
    int                   i;

    memset(out, 'x', sizeof(out));
    tap_traceparent_format(out, tap_t_trace_bin, tap_t_span_bin, 0x01);
    assert_string_equal(out, "00-" TAP_T_TRACE "-" TAP_T_SPAN "-01");

    tap_traceparent_format(out, tap_t_trace_bin, tap_t_span_bin, zero_flags);
    assert_string_equal(out, "00-" TAP_T_TRACE "-" TAP_T_SPAN "-00");

    tap_rng_seed(&rng);
    for (i = 0; i < 1000; i++) {
        tap_rng_bytes(&rng, trace, sizeof(trace));
        tap_rng_bytes(&rng, span, sizeof(span));
        tap_traceparent_format(out, trace, span, (uint8_t) i);
        assert_int_equal(strlen(out), TAP_TRACEPARENT_LEN);
        assert_int_equal(tap_traceparent_parse(&tp, out, strlen(out)), TAP_OK);
        assert_memory_equal(tp.trace_id, trace, 16);
        assert_memory_equal(tp.parent_id, span, 8);
        assert_int_equal(tp.flags, (uint8_t) i);
    }
}


static void
test_hex_and_rng(void **state)
{
    static const uint8_t  bin[] = { 0x00, 0x01, 0x7f, 0x80, 0xab, 0xff };
    char                  out[2 * sizeof(bin) + 1];
    uint8_t               buf[3];
    tap_rng_t             rng;
    uint64_t              a, b;
    int                   i;

    tap_hex_encode(out, bin, sizeof(bin));
    assert_string_equal(out, "00017f80abff");
    tap_hex_encode(out, bin, 0);
    assert_string_equal(out, "");

    /* a generator stuck at a tiny state still never yields a zero id */
    memset(&rng, 0, sizeof(rng));
    rng.s[0] = 1;
    for (i = 0; i < 10000; i++) {
        tap_rng_bytes(&rng, buf, 1);
        assert_int_not_equal(buf[0], 0);
    }

    tap_rng_seed(&rng);
    a = tap_rng_next(&rng);
    b = tap_rng_next(&rng);
    assert_true(a != b);
}


static void
test_tracestate(void **state)
{
    char      buf[1024];
    size_t    n;
    int       i;

    assert_int_equal(tap_tracestate_check("", 0), TAP_OK);
    assert_int_equal(tap_tracestate_check("congo=t61rcWkgMzE", 17), TAP_OK);
    n = strlen("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
    assert_int_equal(tap_tracestate_check("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", n), TAP_OK);
    n = strlen("rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE");
    assert_int_equal(tap_tracestate_check("rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE", n),
        TAP_OK);
    /* OWS around the commas may be tabs */
    n = strlen("rojo=1\t,\tcongo=2");
    assert_int_equal(tap_tracestate_check("rojo=1\t,\tcongo=2", n), TAP_OK);

    /* controls, DEL, non-ASCII */
    assert_int_equal(tap_tracestate_check("a=1\r\nb=2", 8), TAP_ERROR);
    assert_int_equal(tap_tracestate_check("a=\0012", 4), TAP_ERROR);
    assert_int_equal(tap_tracestate_check("a=\x7f", 3), TAP_ERROR);
    assert_int_equal(tap_tracestate_check("a=\xc3\xa9", 4), TAP_ERROR);
    assert_int_equal(tap_tracestate_check("a=1\0", 4), TAP_ERROR);

    /* 32 members pass, 33 do not */
    n = 0;
    for (i = 0; i < 32; i++) {
        n += (size_t) snprintf(buf + n, sizeof(buf) - n, "%sk%d=v", i ? "," : "", i);
    }
    assert_int_equal(tap_tracestate_check(buf, n), TAP_OK);
    n += (size_t) snprintf(buf + n, sizeof(buf) - n, ",k32=v");
    assert_int_equal(tap_tracestate_check(buf, n), TAP_ERROR);

    /* 512 characters pass, 513 do not */
    memset(buf, 'a', sizeof(buf));
    buf[0] = 'k';
    buf[1] = '=';
    assert_int_equal(tap_tracestate_check(buf, TAP_TRACESTATE_MAX_LEN), TAP_OK);
    assert_int_equal(tap_tracestate_check(buf, TAP_TRACESTATE_MAX_LEN + 1), TAP_ERROR);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_traceparent_cases),
        cmocka_unit_test(test_traceparent_fields),
        cmocka_unit_test(test_traceparent_bounds),
        cmocka_unit_test(test_traceparent_format),
        cmocka_unit_test(test_hex_and_rng),
        cmocka_unit_test(test_tracestate),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
