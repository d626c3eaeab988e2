/*
 * accesslog.c: the access log, one JSON object per exchange per line.
 *
 * Lines are formatted into the worker's buffer when an exchange ends, and a
 * flush event (activated once, run after the other callbacks of the same
 * loop iteration) writes them.  For a regular file opened O_APPEND the whole
 * batch goes in one write(), which the kernel appends atomically with
 * respect to the other workers.  For a pipe or terminal (stdout) batches are
 * cut at line boundaries into pieces of at most PIPE_BUF bytes so that lines
 * of different workers never interleave.  The log descriptor is used as it
 * is: a slow disk can delay one write of at most a loop iteration's lines,
 * and a reader that stops reading a pipe makes the pending batch grow up to
 * TAP_ALOG_MAX_PENDING, after which lines are dropped and counted (the
 * descriptor is non-blocking only if whoever opened stdout made it so).
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tap_core.h"
#include "proxy/accesslog.h"
#include "proxy/trace.h"


static void tap_alog_on_flush(evutil_socket_t fd, short what, void *arg);


int
tap_alog_open(const char *spec, tap_alog_t **out, char **err)
{
    tap_alog_t   *log;
    struct stat   st;
    int           fd;

    *out = NULL;
    if (spec == NULL || *spec == '\0' || strcmp(spec, "off") == 0) {
        return TAP_OK;
    }

    log = calloc(1, sizeof(*log));
    if (log == NULL) {
        goto failed;
    }
    if (strcmp(spec, "-") == 0) {
        fd = STDOUT_FILENO;
    } else {
        fd = open(spec, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            if (asprintf(err, "access log %s: %s", spec, strerror(errno)) < 0) {
                *err = NULL;
            }
            free(log);
            return TAP_ERROR;
        }
        log->own_fd = 1;
    }
    log->fd = fd;
    log->regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    *out = log;
    return TAP_OK;

failed:

    *err = strdup("access log: out of memory");
    return TAP_ERROR;
}


void
tap_alog_close(tap_alog_t *log)
{
    if (log == NULL) {
        return;
    }
    if (log->own_fd) {
        close(log->fd);
    }
    free(log);
}


int
tap_alog_buf_init(tap_alog_buf_t *b, tap_alog_t *log, struct event_base *base)
{
    *b = (tap_alog_buf_t) { 0 };
    b->log = log;
    if (log == NULL) {
        return TAP_OK;
    }
    b->buf = evbuffer_new();
    b->flush_ev = event_new(base, -1, 0, tap_alog_on_flush, b);
    return (b->buf != NULL && b->flush_ev != NULL) ? TAP_OK : TAP_ERROR;
}


/* Writes as much as possible without splitting lines across pipe writes.
 * Returns TAP_OK when everything was written, TAP_AGAIN when the descriptor
 * would block, TAP_ERROR on a write error (the batch is dropped). */
static int
tap_alog_drain(tap_alog_buf_t *b)
{
    struct evbuffer_ptr  nl;
    size_t               len, piece;
    unsigned char       *p;
    ssize_t              n;

    while ((len = evbuffer_get_length(b->buf)) > 0) {
        piece = len;
        if (!b->log->regular && len > PIPE_BUF) {
            /* the last newline within PIPE_BUF bytes, or the first at all */
            p = evbuffer_pullup(b->buf, PIPE_BUF);
            piece = 0;
            for (size_t i = PIPE_BUF; i > 0; i--) {
                if (p[i - 1] == '\n') {
                    piece = i;
                    break;
                }
            }
            if (piece == 0) {
                nl = evbuffer_search(b->buf, "\n", 1, NULL);
                piece = nl.pos < 0 ? len : (size_t) nl.pos + 1;
            }
        }
        p = evbuffer_pullup(b->buf, (ssize_t) piece);
        n = write(b->log->fd, p, piece);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return TAP_AGAIN;
        }
        if (n <= 0) {
            b->dropped++;
            evbuffer_drain(b->buf, len);
            return TAP_ERROR;
        }
        evbuffer_drain(b->buf, (size_t) n);
    }
    return TAP_OK;
}


static void
tap_alog_on_flush(evutil_socket_t fd, short what, void *arg)
{
    tap_alog_buf_t        *b = arg;
    const struct timeval   retry = { 0, 50000 };

    if (tap_alog_drain(b) == TAP_AGAIN) {
        event_add(b->flush_ev, &retry);
    }
}


void
tap_alog_buf_cleanup(tap_alog_buf_t *b)
{
    if (b == NULL || b->buf == NULL) {
        return;
    }
    tap_alog_drain(b);
    event_free(b->flush_ev);
    evbuffer_free(b->buf);
    b->buf = NULL;
    b->flush_ev = NULL;
}


/*
 * The line is built in a small stack buffer, flushed into the evbuffer when
 * full, with hand-written number, hex and string formatting: printf was the
 * largest cost of the access log.
 */
typedef struct tap_lw_s {
    struct evbuffer  *out;
    char             *p;
    char              buf[1024];
} tap_lw_t;

#define TAP_LW_LIT(w, s)  tap_lw_put(w, s, sizeof(s) - 1)


static void
tap_lw_flush(tap_lw_t *w)
{
    evbuffer_add(w->out, w->buf, (size_t) (w->p - w->buf));
    w->p = w->buf;
}


static void
tap_lw_put(tap_lw_t *w, const char *s, size_t n)
{
    if (n > (size_t) (w->buf + sizeof(w->buf) - w->p)) {
        tap_lw_flush(w);
        if (n > sizeof(w->buf)) {
            evbuffer_add(w->out, s, n);
            return;
        }
    }
    memcpy(w->p, s, n);
    w->p += n;
}


static void
tap_lw_u64(tap_lw_t *w, uint64_t v)
{
    char  tmp[20], *p = tmp + sizeof(tmp);

    do {
        *--p = (char) ('0' + v % 10);
        v /= 10;
    } while (v != 0);
    tap_lw_put(w, p, (size_t) (tmp + sizeof(tmp) - p));
}


/* Microseconds as milliseconds with three decimals: 12345 -> 12.345. */
static void
tap_lw_ms(tap_lw_t *w, uint64_t us)
{
    char  frac[4];

    tap_lw_u64(w, us / 1000);
    frac[0] = '.';
    frac[1] = (char) ('0' + us / 100 % 10);
    frac[2] = (char) ('0' + us / 10 % 10);
    frac[3] = (char) ('0' + us % 10);
    tap_lw_put(w, frac, 4);
}


/* A JSON string; control and non-ASCII bytes are escaped byte for byte, so
 * the line is valid JSON whatever the client sent. */
static void
tap_lw_str(tap_lw_t *w, const char *s, size_t len)
{
    static const char  hex[] = "0123456789abcdef";
    char               esc[6];
    size_t             i, run = 0;
    unsigned char      c;

    TAP_LW_LIT(w, "\"");
    for (i = 0; i < len; i++) {
        c = (unsigned char) s[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
            continue;
        }
        tap_lw_put(w, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char) c;
            tap_lw_put(w, esc, 2);
        } else {
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            tap_lw_put(w, esc, 6);
        }
    }
    tap_lw_put(w, s + run, len - run);
    TAP_LW_LIT(w, "\"");
}


/* ,"key": */
static void
tap_lw_key(tap_lw_t *w, const char *key)
{
    TAP_LW_LIT(w, ",\"");
    tap_lw_put(w, key, strlen(key));
    TAP_LW_LIT(w, "\":");
}


static void
tap_lw_opt_str(tap_lw_t *w, const char *key, const char *v)
{
    tap_lw_key(w, key);
    if (v == NULL) {
        TAP_LW_LIT(w, "null");
    } else {
        tap_lw_str(w, v, strlen(v));
    }
}


static void
tap_lw_opt_int(tap_lw_t *w, const char *key, int64_t v)
{
    tap_lw_key(w, key);
    if (v < 0) {
        TAP_LW_LIT(w, "null");
    } else {
        tap_lw_u64(w, (uint64_t) v);
    }
}


static void
tap_lw_opt_ms(tap_lw_t *w, const char *key, double v)
{
    tap_lw_key(w, key);
    if (v < 0 || isnan(v) || v > 1e12) {
        TAP_LW_LIT(w, "null");
    } else {
        tap_lw_ms(w, (uint64_t) llround(v * 1000.0));
    }
}


static void
tap_lw_opt_hash(tap_lw_t *w, const char *key, int has, uint64_t v)
{
    uint8_t  be[8];
    char     hex[17];
    int      i;

    tap_lw_key(w, key);
    if (!has) {
        TAP_LW_LIT(w, "null");
        return;
    }
    for (i = 7; i >= 0; i--) {
        be[i] = (uint8_t) v;
        v >>= 8;
    }
    tap_hex_encode(hex, be, 8);
    TAP_LW_LIT(w, "\"");
    tap_lw_put(w, hex, 16);
    TAP_LW_LIT(w, "\"");
}


static void
tap_lw_opt_bool(tap_lw_t *w, const char *key, int v)
{
    tap_lw_key(w, key);
    if (v < 0) {
        TAP_LW_LIT(w, "null");
    } else if (v) {
        TAP_LW_LIT(w, "true");
    } else {
        TAP_LW_LIT(w, "false");
    }
}


/* A double with 6 significant digits; rare fields only (confidence). */
static void
tap_lw_double(tap_lw_t *w, double v)
{
    char  buf[32];
    int   n;

    if (!isfinite(v)) {
        TAP_LW_LIT(w, "null");
        return;
    }
    n = snprintf(buf, sizeof(buf), "%.6g", v);
    tap_lw_put(w, buf, (size_t) n);
}


static void
tap_lw_confidence(tap_lw_t *w, const tap_gen_t *g)
{
    double  mean, min, ppl;
    int     lp;

    TAP_LW_LIT(w, ",\"confidence\":");
    lp = tap_gen_confidence(g, &mean, &min, &ppl);
    if (!lp && isnan(g->score)) {
        TAP_LW_LIT(w, "null");
        return;
    }
    TAP_LW_LIT(w, "{");
    if (lp) {
        TAP_LW_LIT(w, "\"mean_logprob\":");
        tap_lw_double(w, mean);
        TAP_LW_LIT(w, ",\"min_logprob\":");
        tap_lw_double(w, min);
        TAP_LW_LIT(w, ",\"perplexity\":");
        tap_lw_double(w, ppl);
        TAP_LW_LIT(w, ",\"tokens\":");
        tap_lw_u64(w, g->lp_count);
    }
    if (!isnan(g->score)) {
        if (lp) {
            TAP_LW_LIT(w, ",");
        }
        TAP_LW_LIT(w, "\"score\":");
        tap_lw_double(w, g->score);
    }
    TAP_LW_LIT(w, "}");
}


/* "2026-11-23T10:00:00.123Z": the part up to the second is kept per thread. */
static void
tap_lw_ts(tap_lw_t *w, int64_t wall_ms)
{
    static __thread time_t  sec = -1;
    static __thread char    prefix[32];
    static __thread size_t  plen;
    time_t                  now = (time_t) (wall_ms / 1000);
    unsigned                ms = (unsigned) (wall_ms % 1000);
    struct tm               tm;
    char                    tail[5];
    int                     n;

    if (now != sec) {
        gmtime_r(&now, &tm);
        n = snprintf(prefix, sizeof(prefix), "%04d-%02d-%02dT%02d:%02d:%02d.",
            tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        plen = n > 0 && (size_t) n < sizeof(prefix) ? (size_t) n : 0;
        sec = now;
    }
    tap_lw_put(w, prefix, plen);
    tail[0] = (char) ('0' + ms / 100);
    tail[1] = (char) ('0' + ms / 10 % 10);
    tail[2] = (char) ('0' + ms % 10);
    tail[3] = 'Z';
    tap_lw_put(w, tail, 4);
}


void
tap_alog_format(struct evbuffer *out, const tap_exchange_t *ex)
{
    tap_lw_t         w;
    const tap_gen_t *g;
    char             hex[33];
    char             reasons[TAP_GEN_MAX_CHOICES * 25];
    int64_t          end, dur_ns, up_ns;

    w.out = out;
    w.p = w.buf;

    end = ex->last_byte ? ex->last_byte : ex->t0;
    dur_ns = end > ex->t0 ? end - ex->t0 : 0;
    up_ns = (ex->upstream_start && end > ex->upstream_start) ? end - ex->upstream_start : 0;

    TAP_LW_LIT(&w, "{\"ts\":\"");
    tap_lw_ts(&w, ex->wall_t0_ns / 1000000);
    TAP_LW_LIT(&w, "\",\"request_id\":");
    tap_lw_str(&w, ex->request_id, strlen(ex->request_id));
    TAP_LW_LIT(&w, ",\"trace_id\":\"");
    tap_hex_encode(hex, ex->trace_id, 16);
    tap_lw_put(&w, hex, 32);
    TAP_LW_LIT(&w, "\",\"span_id\":\"");
    tap_hex_encode(hex, ex->span_id, 8);
    tap_lw_put(&w, hex, 16);
    TAP_LW_LIT(&w, "\",\"client_span_id\":\"");
    tap_hex_encode(hex, ex->client_span_id, 8);
    tap_lw_put(&w, hex, 16);
    if (ex->has_parent) {
        TAP_LW_LIT(&w, "\",\"parent_span_id\":\"");
        tap_hex_encode(hex, ex->parent_span_id, 8);
        tap_lw_put(&w, hex, 16);
        TAP_LW_LIT(&w, "\"");
    } else {
        TAP_LW_LIT(&w, "\",\"parent_span_id\":null");
    }
    TAP_LW_LIT(&w, ",\"method\":");
    tap_lw_str(&w, ex->method, strlen(ex->method));
    TAP_LW_LIT(&w, ",\"path\":");
    tap_lw_str(&w, ex->path ? ex->path : "", ex->path ? ex->path_len : 0);
    TAP_LW_LIT(&w, ",\"status\":");
    tap_lw_u64(&w, (uint64_t) (ex->status > 0 ? ex->status : 0));
    tap_lw_opt_str(&w, "upstream", ex->upstream[0] ? ex->upstream : NULL);
    g = &ex->gen;
    tap_lw_opt_str(&w, "provider", g->provider);
    tap_lw_opt_str(&w, "operation", g->operation);
    tap_lw_opt_str(&w, "model", g->model[0] ? g->model
                                 : g->response_model[0] ? g->response_model : NULL);
    tap_lw_opt_str(&w, "response_model", g->response_model[0] ? g->response_model : NULL);
    tap_lw_opt_str(&w, "response_id", g->response_id[0] ? g->response_id : NULL);
    tap_lw_opt_bool(&w, "stream", g->stream);
    tap_lw_opt_int(&w, "prompt_tokens", g->prompt_tokens);
    tap_lw_opt_int(&w, "completion_tokens", g->completion_tokens);
    tap_lw_opt_int(&w, "cached_tokens", g->cached_tokens);
    tap_lw_opt_bool(&w, "tokens_estimated", g->tokens_estimated);
    tap_lw_opt_ms(&w, "ttft_ms", ex->ttft_ms);
    tap_lw_opt_ms(&w, "tpot_ms", ex->tpot_ms);
    tap_lw_opt_ms(&w, "itl_max_ms", ex->itl_max_ms);
    TAP_LW_LIT(&w, ",\"duration_ms\":");
    tap_lw_ms(&w, (uint64_t) (dur_ns + 500) / 1000);
    TAP_LW_LIT(&w, ",\"upstream_ms\":");
    if (ex->upstream_start) {
        tap_lw_ms(&w, (uint64_t) (up_ns + 500) / 1000);
    } else {
        TAP_LW_LIT(&w, "null");
    }
    tap_lw_opt_ms(&w, "upstream_ttfb_ms",
        ex->upstream_first_byte > ex->upstream_start && ex->upstream_start > 0
        ? (double) (ex->upstream_first_byte - ex->upstream_start) / 1e6 : -1.0);
    TAP_LW_LIT(&w, ",\"overhead_us\":");
    tap_lw_u64(&w, (uint64_t) (dur_ns - up_ns) / 1000);
    tap_lw_opt_hash(&w, "prompt_hash", g->has_prompt_hash, g->prompt_hash);
    tap_lw_opt_hash(&w, "params_hash", g->has_params_hash, g->params_hash);
    tap_lw_opt_hash(&w, "prefix_hash", g->has_prefix_hash, g->prefix_hash);
    tap_lw_opt_hash(&w, "completion_hash", g->has_completion_hash, g->completion_hash);
    tap_lw_opt_str(&w, "finish_reason", tap_gen_finish_reasons(g, reasons, sizeof(reasons)));
    tap_lw_confidence(&w, g);
    tap_lw_opt_str(&w, "request_parse", tap_gen_parse_names[g->req_parse]);
    tap_lw_opt_str(&w, "response_parse", tap_gen_parse_names[g->resp_parse]);
    tap_lw_opt_str(&w, "upstream_error", g->error_type[0] ? g->error_type : NULL);
    tap_lw_opt_str(&w, "anomaly", ex->anomaly_kind);
    tap_lw_opt_str(&w, "error", ex->error);
    TAP_LW_LIT(&w, ",\"bytes_in\":");
    tap_lw_u64(&w, ex->bytes_in);
    TAP_LW_LIT(&w, ",\"bytes_out\":");
    tap_lw_u64(&w, ex->bytes_out);
    TAP_LW_LIT(&w, ",\"retries\":");
    tap_lw_u64(&w, ex->retries);
    TAP_LW_LIT(&w, "}\n");
    tap_lw_flush(&w);
}


int
tap_alog_write(tap_alog_buf_t *b, const tap_exchange_t *ex)
{
    if (b->log == NULL) {
        return TAP_OK;
    }
    if (evbuffer_get_length(b->buf) > TAP_ALOG_MAX_PENDING) {
        b->dropped++;
        return TAP_DECLINED;
    }
    tap_alog_format(b->buf, ex);
    if (!event_pending(b->flush_ev, EV_TIMEOUT, NULL)) {
        event_active(b->flush_ev, 0, 0);
    }
    return TAP_OK;
}
