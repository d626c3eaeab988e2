# tests/unit: one cmocka binary per unit, TAP on stdout (CMOCKA_MESSAGE_OUTPUT=TAP).

check_PROGRAMS += tests/unit/test_conf
TESTS += tests/unit/test_conf
tests_unit_test_conf_SOURCES = tests/unit/test_conf.c
tests_unit_test_conf_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_conf_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)
EXTRA_DIST += tests/data/conf

check_PROGRAMS += tests/unit/test_request
TESTS += tests/unit/test_request
tests_unit_test_request_SOURCES = tests/unit/test_request.c
tests_unit_test_request_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_request_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_trace
TESTS += tests/unit/test_trace
tests_unit_test_trace_SOURCES = tests/unit/test_trace.c
tests_unit_test_trace_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_trace_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_split
TESTS += tests/unit/test_split
tests_unit_test_split_SOURCES = tests/unit/test_split.c
tests_unit_test_split_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_split_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_genai
TESTS += tests/unit/test_genai
tests_unit_test_genai_SOURCES = tests/unit/test_genai.c
tests_unit_test_genai_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_genai_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_filters_openai
TESTS += tests/unit/test_filters_openai
tests_unit_test_filters_openai_SOURCES = tests/unit/test_filters_openai.c
tests_unit_test_filters_openai_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_filters_openai_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_filters_native
TESTS += tests/unit/test_filters_native
tests_unit_test_filters_native_SOURCES = tests/unit/test_filters_native.c
tests_unit_test_filters_native_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_filters_native_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)
EXTRA_DIST += tests/data/filters

# the OTLP protobuf subset (proto/); also writes the bodies that
# tests/integration/otlp_decode.mjs decodes with the official decoder
check_PROGRAMS += tests/unit/test_otlp
TESTS += tests/unit/test_otlp
tests_unit_test_otlp_SOURCES = tests/unit/test_otlp.c
tests_unit_test_otlp_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_otlp_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)
CLEANFILES += tests/unit/otlp_traces.bin tests/unit/otlp_metrics.bin tests/unit/otlp_logs.bin

# the OTLP/HTTP exporters against an in-process collector (also over TLS)
check_PROGRAMS += tests/unit/test_export
TESTS += tests/unit/test_export
tests_unit_test_export_SOURCES = tests/unit/test_export.c
tests_unit_test_export_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_export_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)

# the metric registry: Prometheus and OpenMetrics text, OTLP points; also
# writes the bodies that tests/integration/otlp_decode.mjs decodes
check_PROGRAMS += tests/unit/test_metrics
TESTS += tests/unit/test_metrics
tests_unit_test_metrics_SOURCES = tests/unit/test_metrics.c
tests_unit_test_metrics_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_metrics_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)

# the prompt table (src/stats/prompts.c): Space-Saving, statistics, anomalies, JSON
check_PROGRAMS += tests/unit/test_prompts
TESTS += tests/unit/test_prompts
tests_unit_test_prompts_SOURCES = tests/unit/test_prompts.c
tests_unit_test_prompts_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_prompts_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)

# latency histograms and windows (src/stats/hist.c); the concurrent one is
# what build-tsan/ (tools/check --sanitize) runs under ThreadSanitizer
check_PROGRAMS += tests/unit/test_hist
TESTS += tests/unit/test_hist
tests_unit_test_hist_SOURCES = tests/unit/test_hist.c
tests_unit_test_hist_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_hist_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)

check_PROGRAMS += tests/unit/test_hist_concurrent
TESTS += tests/unit/test_hist_concurrent
tests_unit_test_hist_concurrent_SOURCES = tests/unit/test_hist_concurrent.c
tests_unit_test_hist_concurrent_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_hist_concurrent_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)
