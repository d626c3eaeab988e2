/*
 * conf.h: infertap's configuration.
 *
 * One table of items (key, type, place in tap_conf_t, default, description) drives every source of
 * configuration: the built-in defaults, a YAML file, the environment (INFERTAP_<KEY> and the
 * OpenTelemetry SDK variables) and command-line flags, applied in that order, later winning.
 * tap_conf_t is a plain struct of typed fields that the rest of the program reads directly once
 * tap_conf_check() has accepted it; it lives as long as the process (or until a reload replaces
 * it).
 *
 * Errors come back as an allocated message through `char **err` (free() it); the caller decides
 * whether to exit, which only main.c does.  Nothing here logs or exits.
 */

#ifndef TAP_CONF_H
#define TAP_CONF_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

#include "tap_core.h"

#define TAP_CONF_MAX_ITEMS 256 /* room for the table to grow; checked at compile time */

/* Where a value came from; a list set again from the same layer grows, otherwise it is replaced. */
typedef enum {
    TAP_CONF_LAYER_DEFAULT = 0,
    TAP_CONF_LAYER_FILE,
    TAP_CONF_LAYER_ENV,
    TAP_CONF_LAYER_FLAGS,
} tap_conf_layer_e;

/* Values of the enum keys, in the order their words are listed in conf.c. */
typedef enum {
    TAP_CONF_LOG_ERROR = 0,
    TAP_CONF_LOG_WARN,
    TAP_CONF_LOG_INFO,
    TAP_CONF_LOG_DEBUG,
} tap_conf_log_level_e;

typedef enum {
    TAP_CONF_BALANCE_ROUND_ROBIN = 0,
    TAP_CONF_BALANCE_LEAST_REQUEST,
} tap_conf_balance_e;

typedef enum {
    TAP_CONF_TLS_1_2 = 0,
    TAP_CONF_TLS_1_3,
} tap_conf_tls_version_e;

typedef enum {
    TAP_CONF_COMPRESSION_NONE = 0,
    TAP_CONF_COMPRESSION_GZIP,
} tap_conf_compression_e;

typedef enum {
    TAP_CONF_TEMPORALITY_CUMULATIVE = 0,
    TAP_CONF_TEMPORALITY_DELTA,
    TAP_CONF_TEMPORALITY_LOWMEMORY,    /* delta, as the SDK specification has it for counters and histograms */
} tap_conf_temporality_e;

typedef enum {
    TAP_CONF_SAMPLER_ALWAYS_ON = 0,
    TAP_CONF_SAMPLER_ALWAYS_OFF,
    TAP_CONF_SAMPLER_TRACEIDRATIO,
    TAP_CONF_SAMPLER_PARENTBASED_ALWAYS_ON,
    TAP_CONF_SAMPLER_PARENTBASED_ALWAYS_OFF,
    TAP_CONF_SAMPLER_PARENTBASED_TRACEIDRATIO,
} tap_conf_sampler_e;

/* A list of owned, NUL-terminated strings. */
typedef struct tap_conf_list_s {
    char **items;
    size_t n;
} tap_conf_list_t;

/* Private bookkeeping: where each item was last set (for error messages and list layering). */
typedef struct tap_conf_origin_s {
    unsigned layer;  /* tap_conf_layer_e */
    unsigned file;   /* index into tap_conf_t.files when layer is FILE */
    unsigned line;   /* 1-based line in that file */
    const char *var; /* static name of the OTEL_* variable, or NULL */
} tap_conf_origin_t;

/*
 * The whole configuration.  Strings are owned and never NULL ("" means unset), durations are
 * milliseconds, sizes are bytes, enums hold the tap_conf_*_e values above, bools are 0 or 1.
 */
typedef struct tap_conf_s {
    tap_conf_list_t listen;
    char *admin; /* "" or "off": no admin server */
    char *admin_token;
    int workers;      /* 0: one per core */
    char *access_log; /* "-": stdout, "off", or a path */
    struct {
        int level; /* tap_conf_log_level_e */
    } error_log;
    tap_conf_list_t upstreams;
    int balance; /* tap_conf_balance_e */
    struct {
        int max_idle;
        uint64_t idle_timeout;
    } pool;
    struct {
        uint64_t interval;
        char *path;
        uint64_t timeout;
        int fails;
        uint64_t backoff;
        uint64_t backoff_max;
    } health;
    int retries;
    struct {
        uint64_t connect;
        uint64_t response_header;
        uint64_t stream_idle;
        uint64_t client_header;
        uint64_t client_body;
        uint64_t keepalive;
        uint64_t drain;
    } timeouts;
    struct {
        uint64_t max_header_bytes;
        uint64_t max_body_bytes;
        int max_connections;
        uint64_t capture_bytes;
    } limits;
    char *filters;          /* comma-separated names, or "off" */
    tap_conf_list_t routes; /* "/prefix = name,name" */
    tap_conf_list_t scores; /* "/prefix-or-model = /pointer" */
    int inject_usage;
    struct {
        char *cert;
        char *key;
        int min_version; /* tap_conf_tls_version_e */
    } tls;
    struct {
        char *ca_file;
        int verify;
        char *sni;
        char *cert;
        char *key;
    } upstream_tls;
    char *request_id_header;
    char *service_name;
    char *resource_attributes; /* "k=v,k2=v2", see tap_conf_parse_pairs() */
    struct {
        tap_conf_list_t endpoint; /* base URLs; each gets /v1/<signal> appended */
        char *traces_endpoint;    /* full URLs, used as given, instead of the bases */
        char *metrics_endpoint;
        char *logs_endpoint;
        char *headers;   /* "k=v,k2=v2", see tap_conf_parse_pairs() */
        int compression; /* tap_conf_compression_e */
        uint64_t timeout;
        uint64_t metrics_interval;
        struct {
            uint64_t delay;
            int max_queue;
            int max_batch;
        } traces_batch;
        struct {
            uint64_t delay;
            int max_queue;
            int max_batch;
        } logs_batch;
        int metrics_temporality; /* tap_conf_temporality_e */
        struct {
            int max_attempts;
            uint64_t backoff;
            uint64_t backoff_max;
        } retry;
        struct {
            char *ca_file;
            int verify;
            char *cert;
            char *key;
        } tls;
    } otlp;
    struct {
        int queue_size; /* per worker */
    } telemetry;
    struct {
        int max_label_values;
    } metrics;
    struct {
        int enabled;
        int prompt_table_size;
        int template_table_size;
        double anomaly_k;
        int anomaly_min_samples;
        int max_series;
    } analysis;
    struct {
        int sampler; /* tap_conf_sampler_e */
        double ratio;
        struct {
            int errors;
            uint64_t slower_than;
            int min_tokens;
            int anomalies;
        } tail;
    } sampling;

    /* private */
    tap_conf_list_t files; /* every file loaded, for origins */
    tap_conf_origin_t origin[TAP_CONF_MAX_ITEMS];
} tap_conf_t;

/* A parsed http:// or https:// URL. */
typedef struct tap_url_s {
    unsigned https : 1;
    unsigned ipv6 : 1; /* host is an IPv6 literal (without brackets) */
    uint16_t port;     /* 80 or 443 when not given */
    char host[256];
    char authority[272]; /* host[:port] as for a Host header; port if not default */
    char path[512];      /* "" or "/prefix" without a trailing slash */
} tap_url_t;

/*
 * Fill cf with the built-in defaults.  cf must not hold a previous configuration (call
 * tap_conf_cleanup() first).  Aborts only if memory runs out.
 */
void tap_conf_init(tap_conf_t *cf);

/*
 * Release everything cf owns; cf may then be initialised again.  NULL-safe.
 */
void tap_conf_cleanup(tap_conf_t *cf);

/*
 * Read a YAML file into cf on top of what it holds.  Nested mappings form dotted keys
 * (`timeouts: {connect: 2s}` sets "timeouts.connect"); lists are YAML sequences and replace the
 * previous list.  Unknown keys, keys given twice, bad values and YAML syntax errors fail.
 * Returns TAP_OK, or TAP_ERROR with *err = "PATH:LINE: key 'k': reason" (or "PATH: reason" when the
 * file cannot be read); cf then holds the keys set before the error.
 */
int tap_conf_load_file(tap_conf_t *cf, const char *path, char **err);

/*
 * Same as tap_conf_load_file() on a buffer; name stands for the file name in messages.
 */
int tap_conf_load_buffer(tap_conf_t *cf, const char *name, const char *buf, size_t len, char **err);

/*
 * Apply the environment (getenv): first the OpenTelemetry SDK variables mapped onto their keys,
 * then INFERTAP_<KEY> for every key (dots as underscores, upper case), so the specific variable
 * wins.  List variables are comma-separated and replace the list.  Returns TAP_OK, or TAP_ERROR
 * with *err = "VARIABLE: reason".
 */
int tap_conf_load_env(tap_conf_t *cf, char **err);

/*
 * Set one key from the command line (the flags layer).  For a list key, the first call replaces
 * the list from the lower layers and later calls append, so repeated flags build a list.
 * Returns TAP_OK, or TAP_ERROR with *err = "key 'k': reason" (also for an unknown key).
 */
int tap_conf_set(tap_conf_t *cf, const char *key, const char *value, char **err);

/*
 * Same as tap_conf_set() for a given layer; a list set from a layer other than the one it last
 * came from is replaced, from the same layer appended.
 */
int tap_conf_set_layer(tap_conf_t *cf, const char *key, const char *value, tap_conf_layer_e layer,
                       char **err);

/*
 * Cross-key validation: addresses, URLs, TLS pairs, header syntax, ranges that depend on each
 * other.  Does not require an upstream (the caller decides).  Returns TAP_OK, or TAP_ERROR with
 * *err = "ORIGIN: key 'k': reason" where ORIGIN is "FILE:LINE", the variable, or "command line".
 */
int tap_conf_check(const tap_conf_t *cf, char **err);

/*
 * Print every item (key, type, default, environment variable, description) to out, for -T.
 */
void tap_conf_print_items(FILE *out);

/*
 * Where key was last set, written into buf ("FILE:LINE", "INFERTAP_X", "OTEL_X", "command line"
 * or "default").  Returns buf, or NULL for an unknown key.
 */
const char *tap_conf_origin(const tap_conf_t *cf, const char *key, char *buf, size_t size);

/*
 * Compare two configurations item by item.  Returns the key of the first item that differs
 * (a static string), or NULL when they are equal.
 */
const char *tap_conf_diff(const tap_conf_t *a, const tap_conf_t *b);

/*
 * The URL of one signal ("traces", "metrics", "logs") under an OTLP base URL, as the SDK
 * specification builds it: base + "/v1/" + signal (one slash).  Returns a malloc'd string.
 */
char *tap_conf_otlp_signal_url(const char *base, const char *signal);

/* Value parsers, shared with the rest of the program.  Each returns TAP_OK or TAP_ERROR. */

/* "250ms", "2s", "1m", "1h", "1h30m", or a bare number of seconds; into milliseconds. */
int tap_parse_duration(const char *s, uint64_t *ms);

/* "512", "64k"/"64kB" (1000), "64KiB"/"64Ki" (1024), likewise M, G, T; into bytes. */
int tap_parse_size(const char *s, uint64_t *bytes);

/* true/false, on/off, yes/no, 1/0 (any case) into 1 or 0. */
int tap_parse_bool(const char *s, int *v);

/*
 * "IPv4:port", "[IPv6]:port", "localhost:port" (127.0.0.1), ":port" or "*:port" (any IPv4).
 * Numeric only: no name lookup.  Port 0..65535.
 */
int tap_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);

/* http:// or https:// URL without user info, query or fragment. */
int tap_parse_url(const char *s, tap_url_t *u);

/*
 * "k=v,k2=v2" with percent-encoded keys and values (OTEL_EXPORTER_OTLP_HEADERS,
 * OTEL_RESOURCE_ATTRIBUTES).  Appends decoded key and value alternately to out (2 entries per
 * pair; free with tap_conf_list_free()).  Blanks around items are ignored; empty items are
 * skipped.  Rejects a missing '=', an empty key, bad escapes, and control characters.
 * Returns TAP_OK, or TAP_ERROR with *err set.
 */
int tap_conf_parse_pairs(const char *s, tap_conf_list_t *out, char **err);

/* Free the strings of a list and empty it.  NULL-safe. */
void tap_conf_list_free(tap_conf_list_t *l);

#endif /* TAP_CONF_H */
