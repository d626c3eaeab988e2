# src/: the proxy.  Everything but main.c goes into libinfertap.a so that the
# unit tests and fuzz targets link exactly the code the binary runs.

TAP_DEP_CFLAGS = $(LIBEVENT_CFLAGS) $(LIBEVENT_OPENSSL_CFLAGS) $(OPENSSL_CFLAGS) \
	$(PROTOBUF_C_CFLAGS) $(CJSON_CFLAGS) $(SIMDJSON_CFLAGS) $(XXHASH_CFLAGS) $(YAML_CFLAGS) $(ZLIB_CFLAGS)
TAP_DEP_LIBS = $(LIBEVENT_OPENSSL_LIBS) $(LIBEVENT_PTHREADS_LIBS) $(LIBEVENT_LIBS) \
	$(OPENSSL_LIBS) $(PROTOBUF_C_LIBS) $(CJSON_LIBS) $(SIMDJSON_LIBS) -lstdc++ $(XXHASH_LIBS) $(YAML_LIBS) \
	$(ZLIB_LIBS) -lm -lpthread
AM_CPPFLAGS += $(TAP_DEP_CFLAGS)

noinst_LIBRARIES += libinfertap.a
libinfertap_a_SOURCES = \
	src/tap_core.h \
	src/conf.c src/conf.h src/tlsctx.c src/tlsctx.h \
	src/run.c src/run.h \
	src/version.h

bin_PROGRAMS += infertap
infertap_SOURCES = src/main.c
infertap_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS)

# the proxy data path (src/proxy/)
libinfertap_a_SOURCES += src/exchange.h src/proxy/proxy.h src/proxy/proxy-int.h \
	src/proxy/settings.c src/proxy/settings.h src/proxy/worker.c src/proxy/server.c \
	src/proxy/client.c src/proxy/upstream.c src/proxy/request.c src/proxy/request.h \
	src/proxy/response.c src/proxy/response.h src/proxy/headers.c src/proxy/headers.h \
	src/proxy/trace.c src/proxy/trace.h src/proxy/accesslog.c src/proxy/accesslog.h \
	src/proxy/admin.c src/proxy/tls.c src/proxy/health.c src/proxy/io.c

# the filter chain and the filters (filters/)
libinfertap_a_SOURCES += src/filter.c src/filter.h filters/filters.h filters/registry.c \
	filters/openai.c
libinfertap_a_SOURCES += filters/ollama.c filters/tgi.c filters/llamacpp.c filters/kserve.c

# streamed model responses (src/genai/)
libinfertap_a_SOURCES += src/genai/split.c src/genai/split.h

# protocol-neutral model traffic analysis (src/genai/)
libinfertap_a_SOURCES += src/genai/genai.c src/genai/genai.h src/genai/json.c \
	src/genai/json-simd.cc src/genai/json-simd.h

# telemetry: OTLP messages, metric registry, exporters (src/telemetry/)
libinfertap_a_SOURCES += src/telemetry/pb.c src/telemetry/pb.h src/telemetry/metrics.h \
	src/telemetry/export.h src/telemetry/export.c src/telemetry/metrics.c src/telemetry/telemetry.c src/telemetry/telemetry.h \
	src/telemetry/spans.c

# statistics (src/stats/)
libinfertap_a_SOURCES += src/stats/prompts.c src/stats/prompts.h
libinfertap_a_SOURCES += src/stats/hist.c src/stats/hist.h
libinfertap_a_SOURCES += src/stats/series.c src/stats/series.h
