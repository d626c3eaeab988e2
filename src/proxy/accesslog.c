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


static void
tap_alog_json_str(struct evbuffer *out, const char *s, size_t len)
{
    static const char  hex[] = "0123456789abcdef";
    char               esc[6];
    size_t             i, run;

    evbuffer_add(out, "\"", 1);
    run = 0;
    for (i = 0; i < len; i++) {
        unsigned char  c = (unsigned char) s[i];

        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x7f) {
            continue;
        }
        evbuffer_add(out, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char) c;
            evbuffer_add(out, esc, 2);
        } else {
            /* control bytes and non-ASCII bytes, byte for byte, so the
             * line is valid JSON whatever the client sent */
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xf];
            evbuffer_add(out, esc, 6);
        }
    }
    evbuffer_add(out, s + run, len - run);
    evbuffer_add(out, "\"", 1);
}


static void
tap_alog_opt_str(struct evbuffer *out, const char *key, const char *v)
{
    evbuffer_add_printf(out, ",\"%s\":", key);
    if (v == NULL) {
        evbuffer_add(out, "null", 4);
    } else {
        tap_alog_json_str(out, v, strlen(v));
    }
}


static void
tap_alog_opt_int(struct evbuffer *out, const char *key, int64_t v)
{
    if (v < 0) {
        evbuffer_add_printf(out, ",\"%s\":null", key);
    } else {
        evbuffer_add_printf(out, ",\"%s\":%lld", key, (long long) v);
    }
}


static void
tap_alog_opt_ms(struct evbuffer *out, const char *key, double v)
{
    if (v < 0 || isnan(v)) {
        evbuffer_add_printf(out, ",\"%s\":null", key);
    } else {
        evbuffer_add_printf(out, ",\"%s\":%.3f", key, v);
    }
}


static void
tap_alog_opt_hash(struct evbuffer *out, const char *key, int has, uint64_t v)
{
    if (!has) {
        evbuffer_add_printf(out, ",\"%s\":null", key);
    } else {
        evbuffer_add_printf(out, ",\"%s\":\"%016llx\"", key, (unsigned long long) v);
    }
}


static void
tap_alog_opt_bool(struct evbuffer *out, const char *key, int v)
{
    evbuffer_add_printf(out, ",\"%s\":%s", key, v < 0 ? "null" : (v ? "true" : "false"));
}


void
tap_alog_format(struct evbuffer *out, const tap_exchange_t *ex)
{
    char        ts[80], trace[33], span[17], parent[17];
    struct tm   tm;
    time_t      sec;
    int64_t     end, dur_ns, up_ns;

    sec = (time_t) (ex->wall_t0_ms / 1000);
    gmtime_r(&sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
        (int) (ex->wall_t0_ms % 1000));
    tap_hex_encode(trace, ex->trace_id, 16);
    tap_hex_encode(span, ex->span_id, 8);
    tap_hex_encode(parent, ex->parent_span_id, 8);

    end = ex->last_byte ? ex->last_byte : ex->t0;
    dur_ns = end > ex->t0 ? end - ex->t0 : 0;
    up_ns = (ex->upstream_start && end > ex->upstream_start) ? end - ex->upstream_start : 0;

    evbuffer_add_printf(out, "{\"ts\":\"%s\",\"request_id\":", ts);
    tap_alog_json_str(out, ex->request_id, strlen(ex->request_id));
    evbuffer_add_printf(out, ",\"trace_id\":\"%s\",\"span_id\":\"%s\"", trace, span);
    if (ex->has_parent) {
        evbuffer_add_printf(out, ",\"parent_span_id\":\"%s\"", parent);
    } else {
        evbuffer_add(out, ",\"parent_span_id\":null", 22);
    }
    evbuffer_add(out, ",\"method\":", 10);
    tap_alog_json_str(out, ex->method, strlen(ex->method));
    evbuffer_add(out, ",\"path\":", 8);
    tap_alog_json_str(out, ex->path ? ex->path : "", ex->path ? ex->path_len : 0);
    evbuffer_add_printf(out, ",\"status\":%d", ex->status);
    tap_alog_opt_str(out, "upstream", ex->upstream[0] ? ex->upstream : NULL);
    tap_alog_opt_str(out, "model", ex->model);
    tap_alog_opt_bool(out, "stream", ex->stream);
    tap_alog_opt_int(out, "prompt_tokens", ex->prompt_tokens);
    tap_alog_opt_int(out, "completion_tokens", ex->completion_tokens);
    tap_alog_opt_bool(out, "tokens_estimated", ex->tokens_estimated);
    tap_alog_opt_ms(out, "ttft_ms", ex->ttft_ms);
    tap_alog_opt_ms(out, "tpot_ms", ex->tpot_ms);
    evbuffer_add_printf(out, ",\"duration_ms\":%.3f", (double) dur_ns / 1e6);
    if (ex->upstream_start) {
        evbuffer_add_printf(out, ",\"upstream_ms\":%.3f,\"overhead_us\":%lld",
            (double) up_ns / 1e6, (long long) ((dur_ns - up_ns) / 1000));
    } else {
        evbuffer_add_printf(out, ",\"upstream_ms\":null,\"overhead_us\":%lld",
            (long long) (dur_ns / 1000));
    }
    tap_alog_opt_hash(out, "prompt_hash", ex->has_prompt_hash, ex->prompt_hash);
    tap_alog_opt_hash(out, "params_hash", ex->has_params_hash, ex->params_hash);
    tap_alog_opt_hash(out, "completion_hash", ex->has_completion_hash, ex->completion_hash);
    tap_alog_opt_str(out, "finish_reason", ex->finish_reason);
    evbuffer_add_printf(out, ",\"confidence\":%s",
        ex->confidence_json ? ex->confidence_json : "null");
    tap_alog_opt_str(out, "error", ex->error);
    evbuffer_add_printf(out, ",\"bytes_in\":%llu,\"bytes_out\":%llu,\"retries\":%u}\n",
        (unsigned long long) ex->bytes_in, (unsigned long long) ex->bytes_out, ex->retries);
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
