/*
 * test_conf.c: unit tests of the configuration (src/conf.c).
 *
 * Covers the value parsers one notation at a time (good values, bad ones, overflow), the YAML
 * reader on the fixtures in tests/data/conf/ (nesting, error messages with their line), the
 * environment (INFERTAP_* and the OTEL_* mapping), the layering of defaults < file < environment
 * < flags including how lists are replaced or extended, the cross-key checks, and that
 * conf/infertap.yaml spells out every key with exactly the built-in default.  Files are found
 * under $TAP_SRCDIR (exported by the test harness).  Output is TAP (CMOCKA_MESSAGE_OUTPUT=TAP).
 */

#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf.h"

extern char **environ;

/* Helpers. */

static const char *
tap_t_srcdir(void)
{
    const char *d;

    d = getenv("TAP_SRCDIR");
    return d != NULL && *d != '\0' ? d : "..";
}

static char *
tap_t_path(const char *rel)
{
    static char buf[4096];

    snprintf(buf, sizeof(buf), "%s/%s", tap_t_srcdir(), rel);
    return buf;
}

/* Remove every INFERTAP_* and OTEL_* variable so that each test starts from a known state. */
static void
tap_t_clear_env(void)
{
    char name[256];
    size_t i, n;
    int again;

    do {
        again = 0;
        for (i = 0; environ[i] != NULL; i++) {
            if (strncmp(environ[i], "INFERTAP_", 9) == 0 || strncmp(environ[i], "OTEL_", 5) == 0) {
                n = strcspn(environ[i], "=");
                if (n >= sizeof(name)) {
                    continue;
                }
                memcpy(name, environ[i], n);
                name[n] = '\0';
                unsetenv(name);
                again = 1;
                break;
            }
        }
    } while (again);
}

static int
tap_t_setup(void **state)
{
    tap_conf_t *cf;

    tap_t_clear_env();
    cf = calloc(1, sizeof(*cf));
    assert_non_null(cf);
    tap_conf_init(cf);
    *state = cf;

    return 0;
}

static int
tap_t_teardown(void **state)
{
    tap_conf_t *cf = *state;

    tap_conf_cleanup(cf);
    free(cf);
    tap_t_clear_env();

    return 0;
}

/* Load a fixture, expecting failure with an error containing want. */
static void
tap_t_expect_file_error(const char *fixture, const char *want)
{
    tap_conf_t cf;
    char *err = NULL;
    char rel[256];

    snprintf(rel, sizeof(rel), "tests/data/conf/%s", fixture);
    tap_conf_init(&cf);
    assert_int_equal(tap_conf_load_file(&cf, tap_t_path(rel), &err), TAP_ERROR);
    assert_non_null(err);
    if (strstr(err, want) == NULL) {
        fail_msg("%s: error '%s' lacks '%s'", fixture, err, want);
    }
    free(err);
    tap_conf_cleanup(&cf);
}

/* Set key=value through the flags layer, expecting failure with an error containing want. */
static void
tap_t_expect_set_error(tap_conf_t *cf, const char *key, const char *value, const char *want)
{
    char *err = NULL;

    assert_int_equal(tap_conf_set(cf, key, value, &err), TAP_ERROR);
    assert_non_null(err);
    if (strstr(err, want) == NULL) {
        fail_msg("%s=%s: error '%s' lacks '%s'", key, value, err, want);
    }
    free(err);
}

static void
tap_t_set_ok(tap_conf_t *cf, const char *key, const char *value)
{
    char *err = NULL;

    if (tap_conf_set(cf, key, value, &err) != TAP_OK) {
        fail_msg("%s=%s: %s", key, value, err);
    }
}

static int
tap_t_load_buffer(tap_conf_t *cf, const char *text, char **err)
{
    return tap_conf_load_buffer(cf, "inline.yaml", text, strlen(text), err);
}

/* Defaults. */

static void
test_defaults(void **state)
{
    tap_conf_t *cf = *state;
    char *err = NULL;

    assert_int_equal(cf->listen.n, 1);
    assert_string_equal(cf->listen.items[0], "127.0.0.1:8080");
    assert_string_equal(cf->admin, "127.0.0.1:9901");
    assert_string_equal(cf->admin_token, "");
    assert_int_equal(cf->workers, 0);
    assert_string_equal(cf->access_log, "-");
    assert_int_equal(cf->error_log.level, TAP_CONF_LOG_INFO);
    assert_int_equal(cf->upstreams.n, 0);
    assert_int_equal(cf->balance, TAP_CONF_BALANCE_LEAST_REQUEST);
    assert_int_equal(cf->pool.max_idle, 32);
    assert_int_equal(cf->pool.idle_timeout, 60000);
    assert_int_equal(cf->health.interval, 5000);
    assert_string_equal(cf->health.path, "/health");
    assert_int_equal(cf->health.timeout, 2000);
    assert_int_equal(cf->health.fails, 3);
    assert_int_equal(cf->health.backoff, 5000);
    assert_int_equal(cf->health.backoff_max, 60000);
    assert_int_equal(cf->retries, 1);
    assert_int_equal(cf->timeouts.connect, 2000);
    assert_int_equal(cf->timeouts.response_header, 300000);
    assert_int_equal(cf->timeouts.stream_idle, 120000);
    assert_int_equal(cf->timeouts.client_header, 10000);
    assert_int_equal(cf->timeouts.client_body, 60000);
    assert_int_equal(cf->timeouts.keepalive, 75000);
    assert_int_equal(cf->timeouts.drain, 30000);
    assert_int_equal(cf->limits.max_header_bytes, 32 * 1024);
    assert_int_equal(cf->limits.max_body_bytes, 16 * 1024 * 1024);
    assert_int_equal(cf->limits.max_connections, 10000);
    assert_int_equal(cf->limits.capture_bytes, 4 * 1024 * 1024);
    assert_string_equal(cf->tls.cert, "");
    assert_string_equal(cf->tls.key, "");
    assert_int_equal(cf->tls.min_version, TAP_CONF_TLS_1_2);
    assert_int_equal(cf->upstream_tls.verify, 1);
    assert_string_equal(cf->upstream_tls.sni, "");
    assert_string_equal(cf->request_id_header, "x-request-id");
    assert_string_equal(cf->service_name, "infertap");
    assert_int_equal(cf->otlp.endpoint.n, 0);
    assert_int_equal(cf->otlp.compression, TAP_CONF_COMPRESSION_NONE);
    assert_int_equal(cf->otlp.timeout, 10000);
    assert_int_equal(cf->otlp.metrics_interval, 60000);
    assert_int_equal(cf->otlp.traces_batch.delay, 5000);
    assert_int_equal(cf->otlp.traces_batch.max_queue, 2048);
    assert_int_equal(cf->otlp.traces_batch.max_batch, 512);
    assert_int_equal(cf->otlp.logs_batch.delay, 1000);
    assert_int_equal(cf->sampling.sampler, TAP_CONF_SAMPLER_PARENTBASED_ALWAYS_ON);
    assert_true(cf->sampling.ratio == 1.0);

    assert_int_equal(tap_conf_check(cf, &err), TAP_OK);
    assert_null(err);
}

static void
test_cleanup_is_safe(void **state)
{
    tap_conf_t cf;

    TAP_UNUSED(state);
    tap_conf_cleanup(NULL);
    tap_conf_init(&cf);
    tap_conf_cleanup(&cf);
    tap_conf_cleanup(&cf); /* emptied by the first call */
    tap_conf_list_free(NULL);
}

/* Value parsers. */

static void
test_parse_duration(void **state)
{
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"0", 0},      {"2", 2000},     {"250ms", 250},     {"2s", 2000},
        {"1m", 60000}, {"1h", 3600000}, {"1h30m", 5400000}, {"1m30s", 90000},
        {"0.5s", 500}, {"1.5", 1500},   {"300s", 300000},   {"18446744073709551615ms", UINT64_MAX},
    };
    static const char *const bad[] = {
        "",
        "abc",
        "2x",
        "s",
        "-1s",
        " 2s",
        "2s ",
        "2 s",
        "1.2.3s",
        "5ms3",
        "2sec",
        ".",
        "18446744073709551616ms",
        "18446744073709551615s",
        "99999999999999999999",
        "5124095576030431h",
        "ms",
    };
    uint64_t ms;
    size_t i;

    TAP_UNUSED(state);
    for (i = 0; i < TAP_NELEMS(good); i++) {
        ms = 12345;
        if (tap_parse_duration(good[i].s, &ms) != TAP_OK || ms != good[i].ms) {
            fail_msg("duration '%s': got %llu", good[i].s, (unsigned long long)ms);
        }
    }
    for (i = 0; i < TAP_NELEMS(bad); i++) {
        if (tap_parse_duration(bad[i], &ms) != TAP_ERROR) {
            fail_msg("duration '%s' accepted", bad[i]);
        }
    }
}

static void
test_parse_size(void **state)
{
    static const struct {
        const char *s;
        uint64_t bytes;
    } good[] = {
        {"0", 0},
        {"512", 512},
        {"512B", 512},
        {"64k", 64000},
        {"64kB", 64000},
        {"64KiB", 65536},
        {"64Ki", 65536},
        {"4MiB", 4194304},
        {"4M", 4000000},
        {"1GiB", 1073741824ULL},
        {"1G", 1000000000ULL},
        {"2TiB", 2199023255552ULL},
        {"1gib", 1073741824ULL},
        {"18446744073709551615", UINT64_MAX},
        {"16777215TiB", 16777215ULL << 40},
    };
    static const char *const bad[] = {
        "",
        "KiB",
        "-1",
        "1.5MiB",
        "64 KiB",
        "64KiBs",
        "64X",
        " 1",
        "18446744073709551616",
        "16777216TiB",
        "99999999999999999999999",
    };
    uint64_t b;
    size_t i;

    TAP_UNUSED(state);
    for (i = 0; i < TAP_NELEMS(good); i++) {
        b = 7;
        if (tap_parse_size(good[i].s, &b) != TAP_OK || b != good[i].bytes) {
            fail_msg("size '%s': got %llu", good[i].s, (unsigned long long)b);
        }
    }
    for (i = 0; i < TAP_NELEMS(bad); i++) {
        if (tap_parse_size(bad[i], &b) != TAP_ERROR) {
            fail_msg("size '%s' accepted", bad[i]);
        }
    }
}

static void
test_parse_bool(void **state)
{
    static const char *const yes[] = {"true", "on", "yes", "1", "TRUE", "On", "Yes"};
    static const char *const no[] = {"false", "off", "no", "0", "FALSE", "Off", "NO"};
    static const char *const bad[] = {"", "y", "n", "2", "truthy", "enable"};
    size_t i;
    int v;

    TAP_UNUSED(state);
    for (i = 0; i < TAP_NELEMS(yes); i++) {
        v = 0;
        assert_int_equal(tap_parse_bool(yes[i], &v), TAP_OK);
        assert_int_equal(v, 1);
    }
    for (i = 0; i < TAP_NELEMS(no); i++) {
        v = 1;
        assert_int_equal(tap_parse_bool(no[i], &v), TAP_OK);
        assert_int_equal(v, 0);
    }
    for (i = 0; i < TAP_NELEMS(bad); i++) {
        assert_int_equal(tap_parse_bool(bad[i], &v), TAP_ERROR);
    }
}

static void
test_parse_addr(void **state)
{
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    char buf[INET6_ADDRSTRLEN];
    size_t i;
    static const char *const bad[] = {
        "",
        "8080",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:80x",
        "127.0.0.1:123456",
        "::1:8080",
        "[::1]",
        "[::1]8080",
        "[nothost]:80",
        "example.com:80",
        "256.0.0.1:80",
        "[::1]:",
        "[]:80",
    };

    TAP_UNUSED(state);
    assert_int_equal(tap_parse_addr("127.0.0.1:8080", &ss, &len), TAP_OK);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(ntohs(sin->sin_port), 8080);
    assert_string_equal(inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof(buf)), "127.0.0.1");

    assert_int_equal(tap_parse_addr("[::1]:9901", &ss, &len), TAP_OK);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));
    assert_int_equal(ntohs(sin6->sin6_port), 9901);
    assert_string_equal(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof(buf)), "::1");

    assert_int_equal(tap_parse_addr("localhost:80", &ss, &len), TAP_OK);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_LOOPBACK);
    assert_int_equal(tap_parse_addr("*:443", &ss, &len), TAP_OK);
    assert_int_equal(ntohl(sin->sin_addr.s_addr), INADDR_ANY);
    assert_int_equal(ntohs(sin->sin_port), 443);
    assert_int_equal(tap_parse_addr(":0", &ss, &len), TAP_OK);
    assert_int_equal(tap_parse_addr("0.0.0.0:65535", &ss, &len), TAP_OK);
    assert_int_equal(ntohs(sin->sin_port), 65535);

    for (i = 0; i < TAP_NELEMS(bad); i++) {
        if (tap_parse_addr(bad[i], &ss, &len) != TAP_ERROR) {
            fail_msg("address '%s' accepted", bad[i]);
        }
    }
}

static void
test_parse_url(void **state)
{
    tap_url_t u;
    size_t i;
    static const char *const bad[] = {
        "",
        "127.0.0.1:8000",
        "ftp://host",
        "http://",
        "http:///path",
        "http://host:",
        "http://host:0",
        "http://host:65536",
        "http://user@host",
        "http://host/?q=1",
        "http://host/#f",
        "http://ho st",
        "http://[::1",
        "http://[zz]:80",
        "http://host:8x/",
        "http://a/b c",
    };

    TAP_UNUSED(state);
    assert_int_equal(tap_parse_url("http://127.0.0.1:8000", &u), TAP_OK);
    assert_false(u.https);
    assert_string_equal(u.host, "127.0.0.1");
    assert_int_equal(u.port, 8000);
    assert_string_equal(u.path, "");
    assert_string_equal(u.authority, "127.0.0.1:8000");

    assert_int_equal(tap_parse_url("HTTPS://model.example/api/v1/", &u), TAP_OK);
    assert_true(u.https);
    assert_string_equal(u.host, "model.example");
    assert_int_equal(u.port, 443);
    assert_string_equal(u.path, "/api/v1");
    assert_string_equal(u.authority, "model.example");

    assert_int_equal(tap_parse_url("http://[::1]:8443/", &u), TAP_OK);
    assert_true(u.ipv6);
    assert_string_equal(u.host, "::1");
    assert_int_equal(u.port, 8443);
    assert_string_equal(u.path, "");
    assert_string_equal(u.authority, "[::1]:8443");

    assert_int_equal(tap_parse_url("http://vllm-0.vllm.svc", &u), TAP_OK);
    assert_int_equal(u.port, 80);
    assert_string_equal(u.authority, "vllm-0.vllm.svc");
    assert_int_equal(tap_parse_url("https://h:443", &u), TAP_OK);
    assert_string_equal(u.authority, "h");

    for (i = 0; i < TAP_NELEMS(bad); i++) {
        if (tap_parse_url(bad[i], &u) != TAP_ERROR) {
            fail_msg("URL '%s' accepted", bad[i]);
        }
    }
}

static void
test_parse_pairs(void **state)
{
    tap_conf_list_t l = {NULL, 0};
    char *err = NULL;
    size_t i;
    static const char *const bad[] = {
        "novalue", "a=1,b", "=v", "k=%4", "k=%zz", "k=a%0Ab", "k=%7f", "%=v",
    };

    TAP_UNUSED(state);
    assert_int_equal(tap_conf_parse_pairs(" api-key = secret , x=a%20b%2Cc,, e= ", &l, &err),
                     TAP_OK);
    assert_int_equal(l.n, 6);
    assert_string_equal(l.items[0], "api-key");
    assert_string_equal(l.items[1], "secret");
    assert_string_equal(l.items[2], "x");
    assert_string_equal(l.items[3], "a b,c");
    assert_string_equal(l.items[4], "e");
    assert_string_equal(l.items[5], "");
    tap_conf_list_free(&l);

    assert_int_equal(tap_conf_parse_pairs("", &l, &err), TAP_OK);
    assert_int_equal(l.n, 0);

    for (i = 0; i < TAP_NELEMS(bad); i++) {
        err = NULL;
        if (tap_conf_parse_pairs(bad[i], &l, &err) != TAP_ERROR) {
            fail_msg("pairs '%s' accepted", bad[i]);
        }
        assert_non_null(err);
        free(err);
        tap_conf_list_free(&l);
    }
}

static void
test_signal_url(void **state)
{
    char *s;

    TAP_UNUSED(state);
    s = tap_conf_otlp_signal_url("http://c:4318", "traces");
    assert_string_equal(s, "http://c:4318/v1/traces");
    free(s);
    s = tap_conf_otlp_signal_url("http://c:4318/prefix/", "metrics");
    assert_string_equal(s, "http://c:4318/prefix/v1/metrics");
    free(s);
}

/* Typed keys through tap_conf_set(). */

static void
test_set_types(void **state)
{
    tap_conf_t *cf = *state;

    tap_t_set_ok(cf, "workers", "8");
    assert_int_equal(cf->workers, 8);
    tap_t_set_ok(cf, "workers", "1024");
    tap_t_expect_set_error(cf, "workers", "1025", "out of range 0..1024");
    tap_t_expect_set_error(cf, "workers", "-1", "out of range");
    tap_t_expect_set_error(cf, "workers", "12x", "invalid integer '12x'");
    tap_t_expect_set_error(cf, "workers", "", "invalid integer");
    tap_t_expect_set_error(cf, "workers", " 1", "invalid integer");
    tap_t_expect_set_error(cf, "workers", "99999999999999999999", "invalid integer");
    assert_int_equal(cf->workers, 1024); /* unchanged by the failures */

    tap_t_set_ok(cf, "sampling.ratio", "0.25");
    assert_true(cf->sampling.ratio == 0.25);
    tap_t_set_ok(cf, "sampling.ratio", "0");
    tap_t_expect_set_error(cf, "sampling.ratio", "1.5", "out of range");
    tap_t_expect_set_error(cf, "sampling.ratio", "nan", "invalid number");
    tap_t_expect_set_error(cf, "sampling.ratio", "1e999", "invalid number");
    tap_t_expect_set_error(cf, "sampling.ratio", "half", "invalid number 'half'");

    tap_t_set_ok(cf, "upstream_tls.verify", "no");
    assert_int_equal(cf->upstream_tls.verify, 0);
    tap_t_expect_set_error(cf, "upstream_tls.verify", "maybe", "invalid boolean 'maybe'");

    tap_t_set_ok(cf, "balance", "round_robin");
    assert_int_equal(cf->balance, TAP_CONF_BALANCE_ROUND_ROBIN);
    tap_t_expect_set_error(cf, "balance", "random", "expected round_robin|least_request");
    tap_t_set_ok(cf, "tls.min_version", "1.3");
    assert_int_equal(cf->tls.min_version, TAP_CONF_TLS_1_3);
    tap_t_set_ok(cf, "otlp.compression", "gzip");
    assert_int_equal(cf->otlp.compression, TAP_CONF_COMPRESSION_GZIP);

    tap_t_set_ok(cf, "timeouts.connect", "750ms");
    assert_int_equal(cf->timeouts.connect, 750);
    tap_t_expect_set_error(cf, "timeouts.connect", "abc", "invalid duration 'abc'");
    tap_t_expect_set_error(cf, "timeouts.connect", "0", "below 1ms");
    tap_t_set_ok(cf, "timeouts.keepalive", "0");
    assert_int_equal(cf->timeouts.keepalive, 0);

    tap_t_set_ok(cf, "limits.max_body_bytes", "1GiB");
    assert_int_equal(cf->limits.max_body_bytes, 1ULL << 30);
    tap_t_expect_set_error(cf, "limits.max_body_bytes", "lots", "invalid size 'lots'");
    tap_t_expect_set_error(cf, "limits.max_header_bytes", "100", "below 1024 bytes");

    tap_t_set_ok(cf, "admin", "off");
    tap_t_set_ok(cf, "admin", "[::1]:9901");
    tap_t_expect_set_error(cf, "admin", "9901", "invalid address '9901'");
    tap_t_expect_set_error(cf, "request_id_header", "x request id", "invalid header name");
    tap_t_expect_set_error(cf, "health.path", "health", "invalid path");
    tap_t_expect_set_error(cf, "service_name", "", "must not be empty");
    tap_t_expect_set_error(cf, "otlp.headers", "a=b,c", "has no '='");
    tap_t_expect_set_error(cf, "otlp.traces_endpoint", "collector:4318", "invalid URL");
    tap_t_set_ok(cf, "otlp.traces_endpoint", "");

    tap_t_expect_set_error(cf, "timeouts.conect", "2s", "key 'timeouts.conect': unknown key");
    tap_t_expect_set_error(cf, "timeouts", "2s", "unknown key");
}

/* Lists: the first set from a layer replaces, later ones from the same layer append. */
static void
test_list_layers(void **state)
{
    tap_conf_t *cf = *state;
    char *err = NULL;

    assert_int_equal(
        tap_t_load_buffer(cf, "upstreams: [http://f1:1, http://f2:2]\nlisten: ['127.0.0.1:1']\n",
                          &err),
        TAP_OK);
    assert_int_equal(cf->upstreams.n, 2);

    tap_t_set_ok(cf, "upstreams", "http://a:1");
    tap_t_set_ok(cf, "upstreams", "http://b:2");
    assert_int_equal(cf->upstreams.n, 2);
    assert_string_equal(cf->upstreams.items[0], "http://a:1");
    assert_string_equal(cf->upstreams.items[1], "http://b:2");
    tap_t_set_ok(cf, "upstreams", "http://c:3");
    assert_int_equal(cf->upstreams.n, 3);

    /* a bad element is rejected and leaves the list as it was */
    tap_t_expect_set_error(cf, "upstreams", "nope", "invalid URL 'nope'");
    tap_t_expect_set_error(cf, "upstreams", "", "empty list element");
    assert_int_equal(cf->upstreams.n, 3);

    /* the file's other list is untouched */
    assert_int_equal(cf->listen.n, 1);
    assert_string_equal(cf->listen.items[0], "127.0.0.1:1");

    /* a flag replaces the default list too */
    tap_t_set_ok(cf, "otlp.endpoint", "http://c:4318");
    assert_int_equal(cf->otlp.endpoint.n, 1);
}

/* YAML. */

static void
test_yaml_nested(void **state)
{
    tap_conf_t *cf = *state;
    char *err = NULL;
    char where[512];

    if (tap_conf_load_file(cf, tap_t_path("tests/data/conf/nested.yaml"), &err) != TAP_OK) {
        fail_msg("%s", err);
    }
    assert_int_equal(cf->listen.n, 2);
    assert_string_equal(cf->listen.items[1], "[::1]:18080");
    assert_int_equal(cf->upstreams.n, 2);
    assert_string_equal(cf->upstreams.items[1], "https://model.example:8443/api/");
    assert_int_equal(cf->timeouts.connect, 250);
    assert_int_equal(cf->timeouts.response_header, 90000);
    assert_int_equal(cf->timeouts.drain, 5000);
    assert_int_equal(cf->limits.max_header_bytes, 65536);
    assert_int_equal(cf->limits.max_body_bytes, 1000000000ULL);
    assert_int_equal(cf->upstream_tls.verify, 0);
    assert_int_equal(cf->sampling.sampler, TAP_CONF_SAMPLER_TRACEIDRATIO);
    assert_true(cf->sampling.ratio == 0.25);
    assert_int_equal(cf->workers, 4);
    assert_string_equal(cf->tls.cert, "");
    assert_string_equal(cf->tls.key, "");
    assert_int_equal(cf->health.interval, 5000); /* empty section: defaults stay */
    assert_int_equal(tap_conf_check(cf, &err), TAP_OK);

    assert_non_null(tap_conf_origin(cf, "timeouts.connect", where, sizeof(where)));
    assert_non_null(strstr(where, "nested.yaml:9"));
    tap_conf_origin(cf, "timeouts.drain", where, sizeof(where));
    assert_non_null(strstr(where, "nested.yaml:11"));
    tap_conf_origin(cf, "admin", where, sizeof(where));
    assert_string_equal(where, "default");
    assert_null(tap_conf_origin(cf, "nope", where, sizeof(where)));
}

static void
test_yaml_file_errors(void **state)
{
    TAP_UNUSED(state);
    tap_t_expect_file_error("unknown_key.yaml",
                            "unknown_key.yaml:7: key 'timeouts.conect': unknown key");
    tap_t_expect_file_error("bad_duration.yaml",
                            "bad_duration.yaml:3: key 'timeouts.connect': invalid duration 'abc'");
    tap_t_expect_file_error("syntax_error.yaml", "syntax_error.yaml:5: syntax error:");
    tap_t_expect_file_error("syntax_error.yaml", "starts on line 3");
    tap_t_expect_file_error("syntax_indent.yaml", "syntax_indent.yaml:3: syntax error:");
    tap_t_expect_file_error("duplicate.yaml", "duplicate.yaml:4: key 'workers': given twice");
    tap_t_expect_file_error("section_scalar.yaml",
                            "section_scalar.yaml:2: key 'timeouts': is a section");
    tap_t_expect_file_error("bad_url.yaml",
                            "bad_url.yaml:3: key 'upstreams': invalid URL 'ftp://127.0.0.1:21'");
    tap_t_expect_file_error("not_mapping.yaml", "not_mapping.yaml:1: the top level must be");
    tap_t_expect_file_error("does_not_exist.yaml", "does_not_exist.yaml: cannot open:");
}

static void
test_yaml_inline(void **state)
{
    static const struct {
        const char *yaml;
        const char *want; /* NULL: must load */
    } cases[] = {
        {"", NULL},
        {"---\n...\n", NULL},
        {"---\n", NULL},
        {"workers: 3\n", NULL},
        {"upstreams: http://one:1\n", NULL}, /* a scalar list: one element */
        {"upstreams:\n", NULL},              /* null: empty list */
        {"timeouts:\n  connect: 5\n", NULL},
        {"'timeouts':\n  \"connect\": 5\n", NULL},
        {"a: &x 1\nworkers: *x\n", ":1: key 'a': unknown key"},
        {"workers: &x 1\nretries: *x\n", ":2: key 'retries': aliases are not supported"},
        {"workers: 1\n---\nworkers: 2\n", ":2: only one YAML document"},
        {"workers:\n", ":1: key 'workers': missing value"},
        {"workers: [1, 2]\n", ":1: key 'workers': expected a single value"},
        {"upstreams:\n  - {a: b}\n", ":2: key 'upstreams': list elements must be plain"},
        {"upstreams: {a: b}\n", ":1: key 'upstreams': expected a list"},
        {"timeouts:\n  connect: {a: 1}\n", "expected a single value"},
        {"? [a, b]\n: 1\n", ":1: keys must be plain names"},
        {"listen: []\n", NULL},
        {"just a string\n", ":1: the top level must be a mapping"},
        {"workers: 1\nadmin_token: a: b\n", ":2: syntax error: mapping values are not allowed"},
        {"nope:\n  deeper:\n    still: 1\n", ":1: key 'nope': unknown key"},
        {"timeouts:\n  deeper:\n    still: 1\n", ":2: key 'timeouts.deeper': unknown key"},
    };
    tap_conf_t cf;
    char *err;
    size_t i;
    int rc;

    TAP_UNUSED(state);
    for (i = 0; i < TAP_NELEMS(cases); i++) {
        err = NULL;
        tap_conf_init(&cf);
        rc = tap_t_load_buffer(&cf, cases[i].yaml, &err);
        if (cases[i].want == NULL && rc != TAP_OK) {
            fail_msg("case %zu: %s", i, err);
        }
        if (cases[i].want != NULL &&
            (rc != TAP_ERROR || err == NULL || strstr(err, cases[i].want) == NULL)) {
            fail_msg("case %zu: want '%s', got '%s'", i, cases[i].want, err ? err : "success");
        }
        if (i == 4) {
            assert_int_equal(cf.upstreams.n, 1);
        }
        free(err);
        tap_conf_cleanup(&cf);
    }
}

/* Environment. */

static void
test_env_keys(void **state)
{
    tap_conf_t *cf = *state;
    char *err = NULL;
    char where[256];

    setenv("INFERTAP_TIMEOUTS_CONNECT", "5s", 1);
    setenv("INFERTAP_UPSTREAMS", "http://a:1, http://b:2", 1);
    setenv("INFERTAP_ERROR_LOG_LEVEL", "debug", 1);
    setenv("INFERTAP_UPSTREAM_TLS_VERIFY", "off", 1);
    setenv("INFERTAP_ADMIN_TOKEN", "", 1); /* empty means unset */
    assert_int_equal(tap_conf_load_env(cf, &err), TAP_OK);
    assert_int_equal(cf->timeouts.connect, 5000);
    assert_int_equal(cf->upstreams.n, 2);
    assert_string_equal(cf->upstreams.items[0], "http://a:1");
    assert_string_equal(cf->upstreams.items[1], "http://b:2");
    assert_int_equal(cf->error_log.level, TAP_CONF_LOG_DEBUG);
    assert_int_equal(cf->upstream_tls.verify, 0);
    tap_conf_origin(cf, "timeouts.connect", where, sizeof(where));
    assert_string_equal(where, "INFERTAP_TIMEOUTS_CONNECT");

    setenv("INFERTAP_WORKERS", "many", 1);
    assert_int_equal(tap_conf_load_env(cf, &err), TAP_ERROR);
    assert_non_null(strstr(err, "INFERTAP_WORKERS: key 'workers': invalid integer 'many'"));
    free(err);
    err = NULL;
    unsetenv("INFERTAP_WORKERS");

    setenv("INFERTAP_UPSTREAMS", "http://a:1,,http://b:2", 1);
    assert_int_equal(tap_conf_load_env(cf, &err), TAP_ERROR);
    assert_non_null(strstr(err, "INFERTAP_UPSTREAMS: key 'upstreams': empty list element"));
    free(err);
}

static void
test_env_otel(void **state)
{
    tap_conf_t *cf = *state;
    char *err = NULL;
    char where[256];

    setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318", 1);
    setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/v1/traces", 1);
    setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4318/v1/metrics", 1);
    setenv("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://logs/v1/logs", 1);
    setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=abc%20def,tenant=t1", 1);
    setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip", 1);
    setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "2500", 1);
    setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,deployment.environment=dev", 1);
    setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio", 1);
    setenv("OTEL_TRACES_SAMPLER_ARG", "0.1", 1);
    setenv("OTEL_METRIC_EXPORT_INTERVAL", "15000", 1);
    setenv("OTEL_BSP_SCHEDULE_DELAY", "200", 1);
    setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4096", 1);
    setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "256", 1);
    setenv("OTEL_BLRP_SCHEDULE_DELAY", "300", 1);

    assert_int_equal(tap_conf_load_env(cf, &err), TAP_OK);
    assert_int_equal(cf->otlp.endpoint.n, 1);
    assert_string_equal(cf->otlp.endpoint.items[0], "http://collector:4318");
    assert_string_equal(cf->otlp.traces_endpoint, "http://traces:4318/v1/traces");
    assert_string_equal(cf->otlp.metrics_endpoint, "http://metrics:4318/v1/metrics");
    assert_string_equal(cf->otlp.logs_endpoint, "https://logs/v1/logs");
    assert_string_equal(cf->otlp.headers, "api-key=abc%20def,tenant=t1");
    assert_int_equal(cf->otlp.compression, TAP_CONF_COMPRESSION_GZIP);
    assert_int_equal(cf->otlp.timeout, 2500);
    assert_string_equal(cf->resource_attributes,
                        "service.name=from-attrs,deployment.environment=dev");
    assert_string_equal(cf->service_name, "from-attrs");
    tap_conf_origin(cf, "service_name", where, sizeof(where));
    assert_string_equal(where, "OTEL_RESOURCE_ATTRIBUTES");
    assert_int_equal(cf->sampling.sampler, TAP_CONF_SAMPLER_PARENTBASED_TRACEIDRATIO);
    assert_true(cf->sampling.ratio == 0.1);
    assert_int_equal(cf->otlp.metrics_interval, 15000);
    assert_int_equal(cf->otlp.traces_batch.delay, 200);
    assert_int_equal(cf->otlp.traces_batch.max_queue, 4096);
    assert_int_equal(cf->otlp.traces_batch.max_batch, 256);
    assert_int_equal(cf->otlp.logs_batch.delay, 300);
    tap_conf_origin(cf, "otlp.endpoint", where, sizeof(where));
    assert_string_equal(where, "OTEL_EXPORTER_OTLP_ENDPOINT");
    assert_int_equal(tap_conf_check(cf, &err), TAP_OK);

    /* OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES ... */
    setenv("OTEL_SERVICE_NAME", "from-name", 1);
    assert_int_equal(tap_conf_load_env(cf, &err), TAP_OK);
    assert_string_equal(cf->service_name, "from-name");
    tap_conf_origin(cf, "service_name", where, sizeof(where));
    assert_string_equal(where, "OTEL_SERVICE_NAME");

    /* ... and INFERTAP_* wins over both, and over OTEL_* in general */
    setenv("INFERTAP_SERVICE_NAME", "from-infertap", 1);
    setenv("INFERTAP_OTLP_ENDPOINT", "http://a:1,http://b:2", 1);
    assert_int_equal(tap_conf_load_env(cf, &err), TAP_OK);
    assert_string_equal(cf->service_name, "from-infertap");
    assert_int_equal(cf->otlp.endpoint.n, 2); /* replaced, not appended */
}

static void
test_env_otel_errors(void **state)
{
    static const struct {
        const char *var;
        const char *value;
        const char *want;
    } cases[] = {
        {"OTEL_TRACES_SAMPLER", "jaeger_remote", "OTEL_TRACES_SAMPLER: key 'sampling.sampler'"},
        {"OTEL_TRACES_SAMPLER_ARG", "2", "OTEL_TRACES_SAMPLER_ARG: key 'sampling.ratio'"},
        {"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "OTEL_EXPORTER_OTLP_COMPRESSION:"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4318", "OTEL_EXPORTER_OTLP_ENDPOINT:"},
        {"OTEL_EXPORTER_OTLP_HEADERS", "novalue", "OTEL_EXPORTER_OTLP_HEADERS:"},
        {"OTEL_EXPORTER_OTLP_HEADERS", "k=a%0d%0aX: y", "OTEL_EXPORTER_OTLP_HEADERS:"},
        {"OTEL_RESOURCE_ATTRIBUTES", "a=%zz", "OTEL_RESOURCE_ATTRIBUTES:"},
        {"OTEL_METRIC_EXPORT_INTERVAL", "60s", "OTEL_METRIC_EXPORT_INTERVAL: invalid number"},
        {"OTEL_BSP_SCHEDULE_DELAY", "-5", "OTEL_BSP_SCHEDULE_DELAY: invalid number"},
        {"OTEL_BSP_MAX_QUEUE_SIZE", "0", "OTEL_BSP_MAX_QUEUE_SIZE: key"},
        {"OTEL_BLRP_SCHEDULE_DELAY", "0", "OTEL_BLRP_SCHEDULE_DELAY: key"},
        {"OTEL_BLRP_SCHEDULE_DELAY", "99999999999999999999", "OTEL_BLRP_SCHEDULE_DELAY:"},
    };
    tap_conf_t *cf = *state;
    char *err;
    size_t i;

    for (i = 0; i < TAP_NELEMS(cases); i++) {
        err = NULL;
        setenv(cases[i].var, cases[i].value, 1);
        if (tap_conf_load_env(cf, &err) != TAP_ERROR || strstr(err, cases[i].want) == NULL) {
            fail_msg("%s=%s: want '%s', got '%s'", cases[i].var, cases[i].value, cases[i].want,
                     err ? err : "success");
        }
        free(err);
        unsetenv(cases[i].var);
    }
}

/* Precedence: defaults < file < environment < flags. */
static void
test_precedence(void **state)
{
    tap_conf_t *cf = *state;
    char *err = NULL;

    assert_int_equal(tap_t_load_buffer(cf,
                                       "workers: 1\nretries: 2\nservice_name: file\n"
                                       "upstreams: [http://file:1]\nlisten: ['127.0.0.1:1']\n",
                                       &err),
                     TAP_OK);
    setenv("INFERTAP_WORKERS", "2", 1);
    setenv("INFERTAP_LISTEN", "127.0.0.1:2,127.0.0.1:3", 1);
    setenv("OTEL_SERVICE_NAME", "env", 1);
    assert_int_equal(tap_conf_load_env(cf, &err), TAP_OK);
    tap_t_set_ok(cf, "workers", "3");
    tap_t_set_ok(cf, "upstreams", "http://flag:1");
    tap_t_set_ok(cf, "upstreams", "http://flag:2");

    assert_int_equal(cf->workers, 3);             /* flag over env over file */
    assert_int_equal(cf->retries, 2);             /* file over default */
    assert_string_equal(cf->service_name, "env"); /* env over file */
    assert_int_equal(cf->listen.n, 2);            /* env list replaced the file's */
    assert_string_equal(cf->listen.items[0], "127.0.0.1:2");
    assert_int_equal(cf->upstreams.n, 2); /* flags replaced the file's list */
    assert_string_equal(cf->upstreams.items[0], "http://flag:1");
    assert_string_equal(cf->upstreams.items[1], "http://flag:2");
    assert_int_equal(cf->timeouts.drain, 30000); /* default */
}

/* Cross-key checks. */

static void
test_check(void **state)
{
    static const struct {
        const char *yaml;
        const char *want;
    } cases[] = {
        {"tls:\n  cert: /c.pem\n", "inline.yaml:2: key 'tls.cert': tls.cert is set but"},
        {"tls:\n  key: /k.pem\n", "inline.yaml:2: key 'tls.key': tls.key is set but"},
        {"upstream_tls: {cert: /c}\n", "key 'upstream_tls.cert': upstream_tls.cert is set"},
        {"upstream_tls: {key: /k}\n", "key 'upstream_tls.key': upstream_tls.key is set"},
        {"health:\n  backoff: 2m\n", "inline.yaml:2: key 'health.backoff': is longer than"},
        {"listen: []\n", "inline.yaml:1: key 'listen': at least one address"},
        {"otlp.traces_batch: {max_queue: 10, max_batch: 20}\n", "max_batch': is larger"},
        {"request_id_header: Host\n", "key 'request_id_header': names a header infertap"},
        {"request_id_header: traceparent\n", "key 'request_id_header': names a header"},
    };
    tap_conf_t cf;
    char *err;
    size_t i;

    TAP_UNUSED(state);
    for (i = 0; i < TAP_NELEMS(cases); i++) {
        err = NULL;
        tap_conf_init(&cf);
        if (tap_t_load_buffer(&cf, cases[i].yaml, &err) != TAP_OK) {
            fail_msg("case %zu: %s", i, err);
        }
        if (tap_conf_check(&cf, &err) != TAP_ERROR || strstr(err, cases[i].want) == NULL) {
            fail_msg("case %zu: want '%s', got '%s'", i, cases[i].want, err ? err : "success");
        }
        free(err);
        tap_conf_cleanup(&cf);
    }

    tap_conf_init(&cf);
    err = NULL;
    assert_int_equal(tap_t_load_buffer(&cf, "tls: {cert: /c, key: /k}\n", &err), TAP_OK);
    assert_int_equal(tap_conf_check(&cf, &err), TAP_OK);
    tap_t_set_ok(&cf, "tls.key", "");
    assert_int_equal(tap_conf_check(&cf, &err), TAP_ERROR);
    assert_non_null(strstr(err, "inline.yaml:1: key 'tls.cert'"));
    free(err);
    tap_conf_cleanup(&cf);
}

/* The shipped files. */

static void
test_default_file_is_defaults(void **state)
{
    tap_conf_t *cf = *state;
    tap_conf_t file;
    const char *key;
    char *err = NULL;
    char where[512], *out = NULL, *line, *sp, *save;
    size_t size = 0;
    FILE *fp;

    tap_conf_init(&file);
    if (tap_conf_load_file(&file, tap_t_path("conf/infertap.yaml"), &err) != TAP_OK) {
        fail_msg("%s", err);
    }
    key = tap_conf_diff(cf, &file);
    if (key != NULL) {
        fail_msg("conf/infertap.yaml differs from the defaults at '%s'", key);
    }
    assert_int_equal(tap_conf_check(&file, &err), TAP_OK);

    /* every key is written in the file (its origin is the file, not the default) */
    fp = open_memstream(&out, &size);
    assert_non_null(fp);
    tap_conf_print_items(fp);
    fclose(fp);
    for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == ' ') {
            continue; /* a description */
        }
        sp = strchr(line, ' ');
        assert_non_null(sp);
        *sp = '\0';
        assert_non_null(tap_conf_origin(&file, line, where, sizeof(where)));
        if (strstr(where, "infertap.yaml:") == NULL) {
            fail_msg("key '%s' is not written in conf/infertap.yaml", line);
        }
    }
    free(out);
    tap_conf_cleanup(&file);
}

static void
test_example_files(void **state)
{
    static const char *const files[] = {
        "conf/sidecar.yaml",
        "conf/ingress.yaml",
        "conf/eval.yaml",
    };
    tap_conf_t cf;
    char *err = NULL;
    size_t i;

    TAP_UNUSED(state);
    for (i = 0; i < TAP_NELEMS(files); i++) {
        tap_conf_init(&cf);
        if (tap_conf_load_file(&cf, tap_t_path(files[i]), &err) != TAP_OK ||
            tap_conf_check(&cf, &err) != TAP_OK) {
            fail_msg("%s", err);
        }
        assert_true(cf.upstreams.n > 0);
        tap_conf_cleanup(&cf);
    }
}

static void
test_print_items(void **state)
{
    char *out = NULL;
    size_t size = 0;
    FILE *fp;

    TAP_UNUSED(state);
    fp = open_memstream(&out, &size);
    assert_non_null(fp);
    tap_conf_print_items(fp);
    fclose(fp);
    assert_non_null(strstr(out, "timeouts.connect  duration  default 2s  "
                                "INFERTAP_TIMEOUTS_CONNECT\n    "));
    assert_non_null(strstr(out, "balance  enum round_robin|least_request  default least_request"));
    assert_non_null(strstr(out, "workers  integer 0..1024  default 0"));
    assert_non_null(strstr(out, "upstreams  list  default \"\""));
    free(out);
}

static void
test_diff(void **state)
{
    tap_conf_t *cf = *state;
    tap_conf_t b;

    tap_conf_init(&b);
    assert_null(tap_conf_diff(cf, &b));
    tap_t_set_ok(&b, "sampling.ratio", "0.5");
    assert_string_equal(tap_conf_diff(cf, &b), "sampling.ratio");
    tap_conf_cleanup(&b);
    tap_conf_init(&b);
    tap_t_set_ok(&b, "listen", "127.0.0.1:8080"); /* same list, rebuilt */
    assert_null(tap_conf_diff(cf, &b));
    tap_t_set_ok(&b, "listen", "127.0.0.1:8081");
    assert_string_equal(tap_conf_diff(cf, &b), "listen");
    tap_conf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, tap_t_setup, tap_t_teardown),
        cmocka_unit_test(test_cleanup_is_safe),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_parse_addr),
        cmocka_unit_test(test_parse_url),
        cmocka_unit_test(test_parse_pairs),
        cmocka_unit_test(test_signal_url),
        cmocka_unit_test_setup_teardown(test_set_types, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_list_layers, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_yaml_nested, tap_t_setup, tap_t_teardown),
        cmocka_unit_test(test_yaml_file_errors),
        cmocka_unit_test(test_yaml_inline),
        cmocka_unit_test_setup_teardown(test_env_keys, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_env_otel, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_env_otel_errors, tap_t_setup, tap_t_teardown),
        cmocka_unit_test_setup_teardown(test_precedence, tap_t_setup, tap_t_teardown),
        cmocka_unit_test(test_check),
        cmocka_unit_test_setup_teardown(test_default_file_is_defaults, tap_t_setup, tap_t_teardown),
        cmocka_unit_test(test_example_files),
        cmocka_unit_test(test_print_items),
        cmocka_unit_test_setup_teardown(test_diff, tap_t_setup, tap_t_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
