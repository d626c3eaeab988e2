# tests/integration: node:test suites run against the built programs.  Each
# file is one automake test speaking TAP (see MJS_LOG_COMPILER); the shared
# helpers live in tests/integration/lib/.
TESTS += \
	tests/integration/sim_openai.mjs \
	tests/integration/sim_stream.mjs \
	tests/integration/sim_native.mjs \
	tests/integration/sim_knobs.mjs \
	tests/integration/sim_http.mjs \
	tests/integration/proxy_forward.mjs \
	tests/integration/proxy_stream.mjs \
	tests/integration/proxy_errors.mjs \
	tests/integration/proxy_upstreams.mjs \
	tests/integration/proxy_lifecycle.mjs \
	tests/integration/proxy_memory.mjs

EXTRA_DIST += \
	tests/integration/lib/harness.mjs \
	tests/integration/sim_openai.mjs \
	tests/integration/sim_stream.mjs \
	tests/integration/sim_native.mjs \
	tests/integration/sim_knobs.mjs \
	tests/integration/sim_http.mjs \
	tests/integration/proxy_forward.mjs \
	tests/integration/proxy_stream.mjs \
	tests/integration/proxy_errors.mjs \
	tests/integration/proxy_upstreams.mjs \
	tests/integration/proxy_lifecycle.mjs \
	tests/integration/proxy_memory.mjs

# TLS on both sides, with a CA made by the test
TESTS += tests/integration/proxy_tls.mjs
EXTRA_DIST += tests/integration/proxy_tls.mjs

# active health checks
TESTS += tests/integration/proxy_health.mjs
EXTRA_DIST += tests/integration/proxy_health.mjs

# the command line and configuration checks
TESTS += tests/integration/conf_cli.mjs
EXTRA_DIST += tests/integration/conf_cli.mjs

# what the filters learn from OpenAI traffic
TESTS += tests/integration/filters_openai.mjs
EXTRA_DIST += tests/integration/filters_openai.mjs

# what the filters learn from Ollama, TGI, llama.cpp and KServe traffic
TESTS += tests/integration/filters_native.mjs
EXTRA_DIST += tests/integration/filters_native.mjs

# what the simulator sent for each request (/sim/generations)
TESTS += tests/integration/sim_generations.mjs
EXTRA_DIST += tests/integration/sim_generations.mjs

# the OTLP bodies of tests/unit/test_otlp through the official decoder
TESTS += tests/integration/otlp_decode.mjs
EXTRA_DIST += tests/integration/otlp_decode.mjs

# the OTLP/HTTP receiver the exporter tests post to (lib/otlp.mjs)
TESTS += tests/integration/otlp_receiver.mjs
EXTRA_DIST += tests/integration/otlp_receiver.mjs tests/integration/lib/otlp.mjs

# a real Prometheus scraping the simulator (lib/prometheus.mjs)
TESTS += tests/integration/prometheus_scrape.mjs
EXTRA_DIST += tests/integration/prometheus_scrape.mjs tests/integration/lib/prometheus.mjs

TESTS += tests/integration/telemetry_otlp.mjs
EXTRA_DIST += tests/integration/telemetry_otlp.mjs
TESTS += tests/integration/telemetry_collector.mjs
EXTRA_DIST += tests/integration/telemetry_collector.mjs
TESTS += tests/integration/telemetry_prometheus.mjs
EXTRA_DIST += tests/integration/telemetry_prometheus.mjs
TESTS += tests/integration/analysis_prompts.mjs
EXTRA_DIST += tests/integration/analysis_prompts.mjs
TESTS += tests/integration/analysis_stats.mjs
EXTRA_DIST += tests/integration/analysis_stats.mjs
