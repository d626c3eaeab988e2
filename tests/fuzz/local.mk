# tests/fuzz: libFuzzer harnesses, one per parser of untrusted bytes.  In a
# normal build each is linked with standalone.c and replays its corpus in
# `make check`; with --enable-fuzzing it is a libFuzzer binary and
# `make fuzz-check` runs each for FUZZ_SECONDS (tests/run-test.sh).

FUZZ_TESTS = tests/fuzz/fuzz_sim_request tests/fuzz/fuzz_request tests/fuzz/fuzz_response \
	tests/fuzz/fuzz_sse tests/fuzz/fuzz_ndjson
FUZZ_TESTS += tests/fuzz/fuzz_filters_native tests/fuzz/fuzz_filters_openai
FUZZ_TESTS += tests/fuzz/fuzz_traceparent tests/fuzz/fuzz_otlp_response
FUZZ_TESTS += tests/fuzz/fuzz_json
check_PROGRAMS += $(FUZZ_TESTS)
TESTS += $(FUZZ_TESTS)
EXTRA_DIST += tests/fuzz/corpus tests/run-test.sh
LOG_COMPILER = $(SHELL) $(top_srcdir)/tests/run-test.sh

if FUZZING
FUZZ_MAIN =
FUZZ_LINK = $(AM_LDFLAGS) $(FUZZ_LDFLAGS)
else
FUZZ_MAIN = tests/fuzz/standalone.c
FUZZ_LINK = $(AM_LDFLAGS)
endif

tests_fuzz_fuzz_sim_request_SOURCES = tests/fuzz/fuzz_sim_request.c $(FUZZ_MAIN)
tests_fuzz_fuzz_sim_request_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_sim_request_LDADD = $(SIM_LIBS)

tests_fuzz_fuzz_request_SOURCES = tests/fuzz/fuzz_request.c $(FUZZ_MAIN)
tests_fuzz_fuzz_request_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_request_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

tests_fuzz_fuzz_response_SOURCES = tests/fuzz/fuzz_response.c $(FUZZ_MAIN)
tests_fuzz_fuzz_response_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_response_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

tests_fuzz_fuzz_sse_SOURCES = tests/fuzz/fuzz_sse.c $(FUZZ_MAIN)
tests_fuzz_fuzz_sse_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_sse_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

tests_fuzz_fuzz_ndjson_SOURCES = tests/fuzz/fuzz_ndjson.c $(FUZZ_MAIN)
tests_fuzz_fuzz_ndjson_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_ndjson_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

tests_fuzz_fuzz_filters_native_SOURCES = tests/fuzz/fuzz_filters_native.c $(FUZZ_MAIN)
tests_fuzz_fuzz_filters_native_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_filters_native_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

tests_fuzz_fuzz_filters_openai_SOURCES = tests/fuzz/fuzz_filters_openai.c $(FUZZ_MAIN)
tests_fuzz_fuzz_filters_openai_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_filters_openai_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

tests_fuzz_fuzz_json_SOURCES = tests/fuzz/fuzz_json.c $(FUZZ_MAIN)
tests_fuzz_fuzz_json_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_json_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

tests_fuzz_fuzz_traceparent_SOURCES = tests/fuzz/fuzz_traceparent.c $(FUZZ_MAIN)
tests_fuzz_fuzz_traceparent_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_traceparent_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

tests_fuzz_fuzz_otlp_response_SOURCES = tests/fuzz/fuzz_otlp_response.c $(FUZZ_MAIN)
tests_fuzz_fuzz_otlp_response_LDFLAGS = $(FUZZ_LINK)
tests_fuzz_fuzz_otlp_response_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

fuzz-check:
	TAP_FUZZING=1 $(MAKE) $(AM_MAKEFLAGS) check TESTS="$(FUZZ_TESTS)"
.PHONY: fuzz-check
