/*
 * telemetry.c: the telemetry hub on the control thread (see telemetry.h).
 *
 * Rings: a worker writes slot head & mask and then publishes head + 1 with a
 * release store; the control thread reads head with an acquire load, reads
 * the slots up to it and publishes tail with a release store, which the
 * worker reads (acquire) to know what it may overwrite.  Slots are large
 * (an exchange record), so the ring holds few enough to stay small; the
 * drain timer runs every 10 ms while traffic flows, every 50 ms otherwise,
 * and /metrics drains before it reads.
 *
 * Per exchange the hub records the metrics, then encodes the spans (when
 * kept) and the log record in an arena (spans.c) and copies each at once
 * after the items of the current batch; when the batch holds max_batch items
 * or its delay has passed, the fields of the request around them are written
 * in the room left before them (tap_pb_frame) and the body goes to every
 * endpoint of the signal.
 */

#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tap_core.h"
#include "proxy/accesslog.h"
#include "telemetry/telemetry.h"

#define TAP_TEL_FAST_MS       10
#define TAP_TEL_SLOW_MS       50
#define TAP_TEL_METRIC_QUEUE  65536
#define TAP_TEL_TOP_PROMPTS   10
#define TAP_TEL_BATCH_BYTES   (64 * 1024)   /* first room for a batch body's items */
#define TAP_TEL_MKEYS         4             /* label sets remembered with their series */
#define TAP_TEL_MKEY_MAX      512           /* bytes of one label set's values */

/* a resource anomaly must also be this far from the prompt's mean, relatively */
#define TAP_TEL_ANOMALY_TOLERANCE  0.25

/* Why an exchange's spans were exported, or not. */
typedef enum {
    TAP_KEEP_HEAD = 0,
    TAP_KEEP_ERROR,
    TAP_KEEP_SLOW,
    TAP_KEEP_TOKENS,
    TAP_KEEP_ANOMALY,
    TAP_KEEP_DROP,
    TAP_KEEP_N,
} tap_keep_e;

static const char *const  tap_keep_names[TAP_KEEP_N] = {
    "head", "tail_error", "tail_slow", "tail_tokens", "tail_anomaly", "dropped",
};

/* What decides the metric series of an exchange (the token types are fixed). */
typedef enum {
    TAP_MK_OP = 0,
    TAP_MK_PROVIDER,
    TAP_MK_MODEL,
    TAP_MK_RMODEL,
    TAP_MK_UPSTREAM,
    TAP_MK_ERROR,
    TAP_MK_N,
} tap_mkey_e;

/* The series an exchange records into, besides infertap.proxy.overhead. */
typedef enum {
    TAP_MS_SERVER = 0,
    TAP_MS_CLIENT,
    TAP_MS_INPUT,
    TAP_MS_OUTPUT,
    TAP_MS_TTFT,
    TAP_MS_TPOT,
    TAP_MS_LOGPROB,
    TAP_MS_SCORE,
    TAP_MS_N,
} tap_mser_e;

/*
 * A label set seen lately and the series it went to, so that the next
 * exchange with the same values (most of them: one model behind a few
 * upstreams) records without a lookup per family.  The values are kept one
 * after another in buf, an absent one as "" (which the registry takes as
 * absent too); a series is NULL until first recorded, and stays NULL when
 * the registry wants the lookup each time (a value folded by the cap).
 */
typedef struct tap_tel_mkey_s {
    char         buf[TAP_TEL_MKEY_MAX];
    uint16_t     off[TAP_MK_N];
    char         host[80];             /* the upstream's, as labels */
    char         port[8];
    tap_mser_t  *s[TAP_MS_N];
} tap_tel_mkey_t;

/*
 * Spans or log records waiting to be sent.  Each is encoded in the arena
 * when it is recorded (the arena is then reset) and copied at once, as a
 * field of the request, after the items already in the body being filled.
 * The body keeps room before its items for the fields around them
 * (tap_pb_frame), so a full batch is sent as it lies.  Encoding each item
 * once, instead of packing the whole request at flush time, spares
 * protobuf-c from measuring every span again at each level of nesting above
 * it; framing in place spares copying the batch.  A body comes back to
 * `spare` once every endpoint is done with it.
 */
typedef struct tap_tel_batch_s {
    tap_tel_t            *tel;
    tap_signal_e          signal;
    tap_arena_t           arena;
    tap_body_t           *body;        /* being filled, or NULL */
    tap_body_t           *spare;       /* a sent body back for reuse, or NULL */
    size_t                room;        /* bytes before the items, for the fields around */
    size_t                used;        /* bytes of items */
    size_t                n;           /* up to max (+1 for the second span of a pair) */
    unsigned              max;
    int64_t               delay_ms;
    struct event         *timer;
    unsigned              timer_on:1;
} tap_tel_batch_t;

struct tap_tel_s {
    struct event_base      *base;
    const tap_tsettings_t  *ts;
    tap_tring_t            *rings;
    unsigned                nrings;
    struct event           *drain_ev;
    struct event           *metrics_ev;
    tap_mreg_t             *reg;
    void                  (*collect)(tap_mreg_t *r, void *arg);
    void                   *collect_arg;

    tap_exporter_t        **exp[TAP_SIGNAL_N];
    size_t                  nexp[TAP_SIGNAL_N];
    tap_tel_batch_t         traces;
    tap_tel_batch_t         logs;
    uint8_t                *resource;  /* the Resource and InstrumentationScope, encoded */
    size_t                  resource_len;
    uint8_t                *scope;
    size_t                  scope_len;
    tap_arena_t             marena;    /* metric exports */

    uint64_t                keep[TAP_KEEP_N];
    uint64_t                unpacked[TAP_SIGNAL_N];  /* items lost to a failed pack */

    tap_mfam_t             *f_tokens;
    tap_mfam_t             *f_client_dur;
    tap_mfam_t             *f_server_dur;
    tap_mfam_t             *f_ttft;
    tap_mfam_t             *f_tpot;
    tap_mfam_t             *f_overhead;
    tap_mfam_t             *f_logprob;
    tap_mfam_t             *f_score;
    tap_mfam_t             *f_sampling;
    tap_mfam_t             *f_queued;
    tap_mfam_t             *f_exported;
    tap_mfam_t             *f_rejected;
    tap_mfam_t             *f_dropped;
    tap_mfam_t             *f_failed;
    tap_mfam_t             *f_retried;
    tap_mfam_t             *f_anomalies;
    tap_mfam_t             *f_top_requests;
    tap_mfam_t             *f_top_e2e;
    tap_mfam_t             *f_top_distinct;
    tap_tel_mkey_t          mkeys[TAP_TEL_MKEYS];
    unsigned                mkey_next; /* the entry replaced next */
    tap_mser_t             *s_overhead;

    tap_prompts_t          *prompts;
    tap_prompts_t          *templates;
    tap_alog_buf_t          alog;      /* alog.log NULL: the workers write the access log */
};


/* The metric families of exchanges (OpenTelemetry GenAI semantic conventions v1.41.1). */

static const double  tap_b_tokens[] = {
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
};
const double  tap_b_duration[] = {
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
};
const double  tap_b_ttft[] = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
};
const double  tap_b_tpot[] = {
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
};
const double  tap_b_overhead[] = {
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1,
};
static const double  tap_b_logprob[] = {
    -5, -3, -2, -1.5, -1, -0.75, -0.5, -0.25, -0.1, -0.05, -0.01, 0,
};
static const double  tap_b_score[] = {
    0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0,
};

/* Label orders: the first six are shared, the seventh differs. */
enum { TAP_L_OP = 0, TAP_L_PROVIDER, TAP_L_MODEL, TAP_L_RMODEL, TAP_L_ADDR, TAP_L_PORT, TAP_L_7 };

static const char *const  tap_l_genai[] = {
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
    "gen_ai.response.model", "server.address", "server.port",
};
static const char *const  tap_l_tokens[] = {
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
    "gen_ai.response.model", "server.address", "server.port", "gen_ai.token.type",
};
static const char *const  tap_l_error[] = {
    "gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model",
    "gen_ai.response.model", "server.address", "server.port", "error.type",
};
static const char *const  tap_l_conf[] = { "gen_ai.provider.name", "gen_ai.request.model" };
static const char *const  tap_l_decision[] = { "decision" };
static const char *const  tap_l_export[] = { "signal", "endpoint" };

#define TAP_HIST(n, u, h, b, l, i)                                                              \
    { n, u, h, TAP_METRIC_HISTOGRAM, i, b, TAP_NELEMS(b), l, TAP_NELEMS(l) }
#define TAP_COUNTER(n, h, l)                                                                    \
    { n, "", h, TAP_METRIC_COUNTER, 1, NULL, 0, l, TAP_NELEMS(l) }

static const tap_mfam_def_t  tap_d_tokens = TAP_HIST("gen_ai.client.token.usage", "{token}",
    "Tokens used per operation, as the model server reported them.", tap_b_tokens,
    tap_l_tokens, 1);
static const tap_mfam_def_t  tap_d_client_dur = TAP_HIST("gen_ai.client.operation.duration",
    "s", "Duration of the call to the model server.", tap_b_duration, tap_l_error, 0);
static const tap_mfam_def_t  tap_d_server_dur = TAP_HIST("gen_ai.server.request.duration", "s",
    "Duration of the request through infertap, first byte in to last byte out.",
    tap_b_duration, tap_l_error, 0);
static const tap_mfam_def_t  tap_d_ttft = TAP_HIST("gen_ai.server.time_to_first_token", "s",
    "Time from the end of the request to the first generated token.", tap_b_ttft,
    tap_l_genai, 0);
static const tap_mfam_def_t  tap_d_tpot = TAP_HIST("gen_ai.server.time_per_output_token", "s",
    "Time per output token after the first.", tap_b_tpot, tap_l_genai, 0);
static const tap_mfam_def_t  tap_d_overhead = {
    "infertap.proxy.overhead", "s", "Time an exchange spent inside infertap (end to end minus "
    "the upstream call).", TAP_METRIC_HISTOGRAM, 0, tap_b_overhead, TAP_NELEMS(tap_b_overhead),
    NULL, 0,
};
static const tap_mfam_def_t  tap_d_logprob = TAP_HIST("infertap.confidence.mean_logprob", "",
    "Mean token log-probability of a completion.", tap_b_logprob, tap_l_conf, 0);
static const tap_mfam_def_t  tap_d_score = TAP_HIST("infertap.confidence.score", "",
    "Classifier score read from a response.", tap_b_score, tap_l_conf, 0);
static const tap_mfam_def_t  tap_d_sampling = TAP_COUNTER("infertap.sampling.decisions",
    "Exchanges by span sampling decision: head, a tail rule, or dropped.", tap_l_decision);
static const tap_mfam_def_t  tap_d_queued = {
    "infertap.telemetry.queued", "", "Items waiting for export, per signal and endpoint.",
    TAP_METRIC_GAUGE, 1, NULL, 0, tap_l_export, TAP_NELEMS(tap_l_export),
};
static const tap_mfam_def_t  tap_d_exported = TAP_COUNTER("infertap.telemetry.exported",
    "Items an endpoint accepted.", tap_l_export);
static const tap_mfam_def_t  tap_d_rejected = TAP_COUNTER("infertap.telemetry.rejected",
    "Items an endpoint refused in a partial success.", tap_l_export);
static const tap_mfam_def_t  tap_d_dropped = TAP_COUNTER("infertap.telemetry.dropped",
    "Items never sent: a full queue, or shutdown.  signal=\"exchanges\": finished exchanges "
    "a worker could not hand over.", tap_l_export);
static const tap_mfam_def_t  tap_d_failed = TAP_COUNTER("infertap.telemetry.failed",
    "Items an endpoint refused, or still failing after the last attempt.", tap_l_export);
static const tap_mfam_def_t  tap_d_retried = TAP_COUNTER("infertap.telemetry.retried",
    "Items sent again after a retryable failure.", tap_l_export);
static const char *const     tap_l_prompt[] = { "prompt_hash", "model" };
static const tap_mfam_def_t  tap_d_top_requests = {
    "infertap.prompt.top.requests", "", "The most requested prompts now (GET /stats/prompts): "
    "requests, an upper bound off by at most the entry's error bound.", TAP_METRIC_GAUGE, 1,
    NULL, 0, tap_l_prompt, TAP_NELEMS(tap_l_prompt),
};
static const tap_mfam_def_t  tap_d_top_e2e = {
    "infertap.prompt.top.e2e_mean", "s", "The most requested prompts now: mean end-to-end "
    "latency.", TAP_METRIC_GAUGE, 0, NULL, 0, tap_l_prompt, TAP_NELEMS(tap_l_prompt),
};
static const tap_mfam_def_t  tap_d_top_distinct = {
    "infertap.prompt.top.distinct_completions", "", "The most requested prompts now: distinct "
    "completions.", TAP_METRIC_GAUGE, 1, NULL, 0, tap_l_prompt, TAP_NELEMS(tap_l_prompt),
};
static const char *const     tap_l_kind[] = { "kind" };
static const tap_mfam_def_t  tap_d_anomalies = TAP_COUNTER("infertap.analysis.anomalies",
    "Exchanges flagged: e2e, ttft or output_tokens far from their prompt's mean, or "
    "nondeterministic.", tap_l_kind);


int
tap_tring_push(tap_tring_t *r, const tap_exchange_t *ex)
{
    uint64_t     head = r->head;
    tap_trec_t  *rec;
    size_t       n;

    if (head - __atomic_load_n(&r->tail, __ATOMIC_ACQUIRE) > r->mask) {
        __atomic_store_n(&r->dropped, r->dropped + 1, __ATOMIC_RELAXED);
        return TAP_DECLINED;
    }
    rec = &r->slots[head & r->mask];
    rec->ex = *ex;
    memset(rec->ex.gen.text, 0, sizeof(rec->ex.gen.text));
    n = ex->path != NULL ? TAP_MIN(ex->path_len, TAP_TREC_PATH_MAX - 1) : 0;
    if (n > 0) {
        memcpy(rec->path, ex->path, n);
    }
    rec->path[n] = '\0';
    rec->ex.path = rec->path;
    rec->ex.path_len = n;
    __atomic_store_n(&r->head, head + 1, __ATOMIC_RELEASE);
    return TAP_OK;
}


static uint64_t
tap_tel_realtime(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}


/* Metrics. */

void
tap_tel_split_addr(const char *up, char *host, size_t hsize, char *port, size_t psize)
{
    const char  *colon = strrchr(up, ':');
    size_t       n;

    host[0] = port[0] = '\0';
    if (up[0] == '\0' || colon == NULL) {
        return;
    }
    n = (size_t) (colon - up);
    if (n >= 2 && up[0] == '[' && up[n - 1] == ']') {
        up++;
        n -= 2;
    }
    if (hsize == 0 || psize == 0) {
        return;
    }
    n = TAP_MIN(n, hsize - 1);
    memcpy(host, up, n);
    host[n] = '\0';
    tap_cpystr(port, colon + 1, psize - 1);
}


const char *
tap_tel_error_type(const tap_exchange_t *ex, int client, char *buf, size_t size)
{
    if (ex->error != NULL) {
        return ex->error;
    }
    if (ex->status >= 500 || (client && ex->status >= 400)) {
        snprintf(buf, size, "%d", ex->status);
        return buf;
    }
    if (client && ex->gen.error_type[0] != '\0') {
        return ex->gen.error_type;
    }
    return NULL;
}


/*
 * The entry of tel->mkeys holding these values (TAP_MK_N of them, NULL for
 * absent), made when none does by replacing the oldest; scratch, emptied,
 * when the values do not fit one.
 */
static tap_tel_mkey_t *
tap_tel_mkey(tap_tel_t *tel, const char *const *kv, tap_tel_mkey_t *scratch)
{
    tap_tel_mkey_t  *k;
    const char      *v[TAP_MK_N];
    size_t           len[TAP_MK_N], off;
    unsigned         i, j;

    for (j = 0; j < TAP_MK_N; j++) {
        v[j] = kv[j] != NULL ? kv[j] : "";
    }
    for (i = 0; i < TAP_TEL_MKEYS; i++) {
        k = &tel->mkeys[i];
        for (j = 0; j < TAP_MK_N && strcmp(k->buf + k->off[j], v[j]) == 0; j++) {
            /* compare */
        }
        if (j == TAP_MK_N) {
            return k;
        }
    }

    for (j = 0, off = 0; j < TAP_MK_N; j++) {
        len[j] = strlen(v[j]);
        off += len[j] + 1;
    }
    if (off <= TAP_TEL_MKEY_MAX) {
        k = &tel->mkeys[tel->mkey_next];
        tel->mkey_next = (tel->mkey_next + 1) % TAP_TEL_MKEYS;
        for (j = 0, off = 0; j < TAP_MK_N; j++) {
            memcpy(k->buf + off, v[j], len[j] + 1);
            k->off[j] = (uint16_t) off;
            off += len[j] + 1;
        }
    } else {
        k = scratch;
    }
    memset(k->s, 0, sizeof(k->s));
    tap_tel_split_addr(v[TAP_MK_UPSTREAM], k->host, sizeof(k->host), k->port, sizeof(k->port));
    return k;
}


/* Records x into the series *s, found (and kept in *s) with the values v when NULL. */
static void
tap_tel_observe(tap_mfam_t *f, tap_mser_t **s, const char *const *v, double x)
{
    if (*s != NULL) {
        tap_metric_observe_at(f, *s, x);
    } else {
        *s = tap_metric_observe_keep(f, v, x);
    }
}


static void
tap_tel_record_metrics(tap_tel_t *tel, const tap_exchange_t *ex)
{
    const tap_gen_t  *g = &ex->gen;
    const char       *v[7], *kv[TAP_MK_N];
    char              ebuf[16];
    tap_tel_mkey_t   *k, scratch;
    const char       *err;
    int64_t           end, up_ns;
    double            mean, min, ppl;

    end = ex->last_byte ? ex->last_byte : ex->t0;
    up_ns = (ex->upstream_start && end > ex->upstream_start) ? end - ex->upstream_start : 0;
    tap_tel_observe(tel->f_overhead, &tel->s_overhead, NULL,
        (double) ((end > ex->t0 ? end - ex->t0 : 0) - up_ns) / 1e9);

    if (!ex->analysed || g->operation == NULL) {
        return;
    }

    err = tap_tel_error_type(ex, 1, ebuf, sizeof(ebuf));
    kv[TAP_MK_OP] = g->operation;
    kv[TAP_MK_PROVIDER] = g->provider;
    kv[TAP_MK_MODEL] = g->model;
    kv[TAP_MK_RMODEL] = g->response_model;
    kv[TAP_MK_UPSTREAM] = ex->upstream;
    kv[TAP_MK_ERROR] = err;
    k = tap_tel_mkey(tel, kv, &scratch);

    v[TAP_L_OP] = g->operation;
    v[TAP_L_PROVIDER] = g->provider;
    v[TAP_L_MODEL] = g->model[0] ? g->model : NULL;
    v[TAP_L_RMODEL] = g->response_model[0] ? g->response_model : NULL;
    v[TAP_L_ADDR] = k->host;
    v[TAP_L_PORT] = k->port;

    v[TAP_L_7] = err;
    tap_tel_observe(tel->f_server_dur, &k->s[TAP_MS_SERVER], v, (double) (end - ex->t0) / 1e9);
    if (ex->upstream_start) {
        tap_tel_observe(tel->f_client_dur, &k->s[TAP_MS_CLIENT], v, (double) up_ns / 1e9);
    }

    /* reported (or counted) tokens only: estimates are not usage */
    if (g->tokens_estimated != 1) {
        if (g->prompt_tokens >= 0) {
            v[TAP_L_7] = "input";
            tap_tel_observe(tel->f_tokens, &k->s[TAP_MS_INPUT], v, (double) g->prompt_tokens);
        }
        if (g->completion_tokens >= 0) {
            v[TAP_L_7] = "output";
            tap_tel_observe(tel->f_tokens, &k->s[TAP_MS_OUTPUT], v,
                (double) g->completion_tokens);
        }
    }

    if (err == NULL) {
        if (ex->ttft_ms >= 0) {
            tap_tel_observe(tel->f_ttft, &k->s[TAP_MS_TTFT], v, ex->ttft_ms / 1e3);
        }
        if (ex->tpot_ms >= 0) {
            tap_tel_observe(tel->f_tpot, &k->s[TAP_MS_TPOT], v, ex->tpot_ms / 1e3);
        }
    }

    v[0] = g->provider;
    v[1] = g->model[0] ? g->model : NULL;
    if (tap_gen_confidence(g, &mean, &min, &ppl)) {
        tap_tel_observe(tel->f_logprob, &k->s[TAP_MS_LOGPROB], v, mean);
    }
    if (!isnan(g->score)) {
        tap_tel_observe(tel->f_score, &k->s[TAP_MS_SCORE], v, g->score);
    }
}


/* Sampling: the head decision, else the first tail rule that holds. */
static tap_keep_e
tap_tel_keep(tap_tel_t *tel, const tap_exchange_t *ex)
{
    const tap_tsettings_t  *ts = tel->ts;
    const tap_gen_t        *g = &ex->gen;
    int64_t                 end, tokens;

    if (ex->trace_flags & 0x01) {
        return TAP_KEEP_HEAD;
    }
    if (ts->tail_errors
        && (ex->error != NULL || ex->status >= 500 || g->error_type[0] != '\0'))
    {
        return TAP_KEEP_ERROR;
    }
    end = ex->last_byte ? ex->last_byte : ex->t0;
    if (ts->tail_slower_than_ms > 0 && end - ex->t0 >= ts->tail_slower_than_ms * 1000000) {
        return TAP_KEEP_SLOW;
    }
    tokens = (g->prompt_tokens > 0 ? g->prompt_tokens : 0)
             + (g->completion_tokens > 0 ? g->completion_tokens : 0);
    if (ts->tail_min_tokens > 0 && tokens >= ts->tail_min_tokens) {
        return TAP_KEEP_TOKENS;
    }
    if (ts->tail_anomalies && ex->anomaly) {
        return TAP_KEEP_ANOMALY;
    }
    return TAP_KEEP_DROP;
}


/* Batches. */

static void
tap_tel_batch_flush(tap_tel_batch_t *b)
{
    tap_tel_t   *tel = b->tel;
    tap_body_t  *body = b->body, *z;
    uint8_t     *items;
    size_t       i;

    if (b->timer_on) {
        evtimer_del(b->timer);
        b->timer_on = 0;
    }
    if (body == NULL || b->n == 0) {
        return;
    }

    items = body->mem + b->room;
    body->data = tap_pb_frame(items, b->used, tel->resource, tel->resource_len, tel->scope,
        tel->scope_len);
    body->len = (size_t) (items + b->used - body->data);
    body->items = (unsigned) b->n;
    b->body = NULL;

    if (tel->ts->gzip) {
        z = tap_body_gzip(body->data, body->len, body->items);
        tap_body_unref(body);
        body = z;
    }

    if (body == NULL) {
        tel->unpacked[b->signal] += b->n;
    } else {
        for (i = 0; i < tel->nexp[b->signal]; i++) {
            tap_exporter_send(tel->exp[b->signal][i], body);
        }
        tap_body_unref(body);
    }

    b->n = 0;
    b->used = 0;
    tap_arena_reset(&b->arena);
}


static void
tap_tel_on_batch_timer(evutil_socket_t fd, short what, void *arg)
{
    tap_tel_batch_t  *b = arg;

    b->timer_on = 0;
    tap_tel_batch_flush(b);
}


/*
 * Copies one item encoded in b's arena after the items already there.  An
 * item whose arena ran out of memory, or that finds no room, is counted as
 * lost.
 */
static void
tap_tel_batch_pack(tap_tel_batch_t *b, const tap_tel_item_t *it)
{
    size_t  need, cap;

    if (b->arena.failed) {
        b->tel->unpacked[b->signal]++;
        return;
    }
    if (b->body == NULL) {
        b->body = b->spare;
        b->spare = NULL;
        if (b->body == NULL) {
            b->body = tap_body_new(b->room + TAP_TEL_BATCH_BYTES);
            if (b->body == NULL) {
                b->tel->unpacked[b->signal]++;
                return;
            }
            b->body->spare = &b->spare;
        }
        b->body->refs = 1;
    }
    need = b->room + b->used + tap_pb_item_len(it->len);
    if (need > b->body->cap) {
        cap = TAP_MAX(2 * b->body->cap, need);
        if (tap_body_grow(&b->body, cap) != TAP_OK) {
            b->tel->unpacked[b->signal]++;
            return;
        }
    }
    tap_pb_item(b->body->mem + b->room + b->used, it->data, it->len);
    b->used += tap_pb_item_len(it->len);
    b->n++;
}


static void
tap_tel_batch_added(tap_tel_batch_t *b)
{
    struct timeval  tv;

    tap_arena_reset(&b->arena);
    if (b->n >= b->max) {
        tap_tel_batch_flush(b);
        return;
    }
    if (!b->timer_on) {
        tv.tv_sec = b->delay_ms / 1000;
        tv.tv_usec = (b->delay_ms % 1000) * 1000;
        evtimer_add(b->timer, &tv);
        b->timer_on = 1;
    }
}


static void
tap_tel_record(tap_tel_t *tel, tap_trec_t *r)
{
    tap_keep_e             keep;
    tap_tel_item_t         items[2];
    tap_prompt_anomaly_t   an;
    const tap_prompt_t    *prompt;
    size_t                 n, i;

    an.flags = 0;
    an.reason = NULL;
    prompt = NULL;
    if (tel->ts->analysis) {
        prompt = tap_prompts_observe(tel->prompts, &r->ex, &an);
        tap_prompts_observe(tel->templates, &r->ex, NULL);
        if (an.flags != 0) {
            r->ex.anomaly = 1;
            r->ex.anomaly_kind = an.reason;
        }
    }
    tap_alog_write(&tel->alog, &r->ex);

    tap_tel_record_metrics(tel, &r->ex);

    keep = tap_tel_keep(tel, &r->ex);
    tel->keep[keep]++;

    if (keep != TAP_KEEP_DROP && tel->nexp[TAP_SIGNAL_TRACES] > 0) {
        n = tap_tel_spans(&tel->traces.arena, r, an.flags ? &an : NULL, prompt, items);
        for (i = 0; i < n; i++) {
            tap_tel_batch_pack(&tel->traces, &items[i]);
        }
        tap_tel_batch_added(&tel->traces);
    }

    if (tel->nexp[TAP_SIGNAL_LOGS] > 0) {
        n = tap_tel_log(&tel->logs.arena, r, an.flags ? &an : NULL, items);
        for (i = 0; i < n; i++) {
            tap_tel_batch_pack(&tel->logs, &items[i]);
        }
        tap_tel_batch_added(&tel->logs);
    }
}


void
tap_tel_drain(tap_tel_t *tel)
{
    tap_tring_t  *r;
    uint64_t      head, tail;
    unsigned      i;

    for (i = 0; i < tel->nrings; i++) {
        r = &tel->rings[i];
        head = __atomic_load_n(&r->head, __ATOMIC_ACQUIRE);
        for (tail = r->tail; tail != head; tail++) {
            tap_tel_record(tel, &r->slots[tail & r->mask]);
            if (((tail + 1) & 63) == 0) {
                /* hand slots back as we go, so a busy worker need not wait for all */
                __atomic_store_n(&r->tail, tail + 1, __ATOMIC_RELEASE);
            }
        }
        __atomic_store_n(&r->tail, tail, __ATOMIC_RELEASE);
    }
}


static void
tap_tel_on_drain(evutil_socket_t fd, short what, void *arg)
{
    tap_tel_t       *tel = arg;
    struct timeval   tv = { 0, TAP_TEL_SLOW_MS * 1000 };
    uint64_t         seen = 0;
    unsigned         i;

    for (i = 0; i < tel->nrings; i++) {
        seen += __atomic_load_n(&tel->rings[i].head, __ATOMIC_ACQUIRE) - tel->rings[i].tail;
    }
    if (seen > 0) {
        tap_tel_drain(tel);
        tv.tv_usec = TAP_TEL_FAST_MS * 1000;
    }
    evtimer_add(tel->drain_ev, &tv);
}


/* Collection: values kept elsewhere, copied into the registry before a read. */

/* The top prompts by count, as bounded gauge families redrawn at every read. */
static void
tap_tel_collect_top(tap_tel_t *tel)
{
    const tap_prompt_t  *top[TAP_TEL_TOP_PROMPTS];
    const char          *v[2];
    char                 hash[17];
    size_t               n, i;
    int                  exact;

    tap_metric_clear(tel->f_top_requests);
    tap_metric_clear(tel->f_top_e2e);
    tap_metric_clear(tel->f_top_distinct);
    n = tap_prompts_rank(tel->prompts, TAP_PROMPTS_BY_COUNT, TAP_TEL_TOP_PROMPTS, top);
    for (i = 0; i < n; i++) {
        snprintf(hash, sizeof(hash), "%016llx", (unsigned long long) top[i]->hash);
        v[0] = hash;
        v[1] = top[i]->model[0] ? top[i]->model : NULL;
        tap_metric_set(tel->f_top_requests, v, (double) top[i]->count);
        if (top[i]->e2e.n > 0) {
            tap_metric_set(tel->f_top_e2e, v, top[i]->e2e.mean / 1e3);
        }
        tap_metric_set(tel->f_top_distinct, v, (double) tap_prompt_distinct(top[i], &exact));
    }
}



static void
tap_tel_on_collect(tap_mreg_t *reg, void *arg)
{
    tap_tel_t           *tel = arg;
    tap_export_stats_t   st;
    const char          *v[2];
    uint64_t             dropped = 0;
    size_t               s, i;

    for (i = 0; i < TAP_KEEP_N; i++) {
        v[0] = tap_keep_names[i];
        tap_metric_set(tel->f_sampling, v, (double) tel->keep[i]);
    }

    for (i = 0; i < tel->nrings; i++) {
        dropped += __atomic_load_n(&tel->rings[i].dropped, __ATOMIC_RELAXED);
    }
    v[0] = "exchanges";
    v[1] = NULL;
    tap_metric_set(tel->f_dropped, v, (double) dropped);

    for (i = 0; i < TAP_PROMPT_ANOMALY_N; i++) {
        v[0] = tap_prompt_anomaly_names[i];
        tap_metric_set(tel->f_anomalies, v,
            (double) tap_prompts_totals(tel->prompts)->anomalies[i]);
    }
    if (tel->ts->analysis) {
        tap_tel_collect_top(tel);
    }

    for (s = 0; s < TAP_SIGNAL_N; s++) {
        for (i = 0; i < tel->nexp[s]; i++) {
            tap_exporter_stats(tel->exp[s][i], &st);
            v[0] = tap_signal_names[s];
            v[1] = tap_exporter_url(tel->exp[s][i]);
            tap_metric_set(tel->f_queued, v, (double) st.queued);
            tap_metric_set(tel->f_exported, v, (double) st.exported);
            tap_metric_set(tel->f_rejected, v, (double) st.rejected);
            tap_metric_set(tel->f_dropped, v, (double) (st.dropped + tel->unpacked[s]));
            tap_metric_set(tel->f_failed, v, (double) st.failed);
            tap_metric_set(tel->f_retried, v, (double) st.retried);
        }
    }

    if (tel->collect != NULL) {
        tel->collect(reg, tel->collect_arg);
    }
}


static void
tap_tel_export_metrics(tap_tel_t *tel)
{
    tap_pb_mreq_t       req = OPENTELEMETRY__PROTO__COLLECTOR__METRICS__V1__EXPORT_METRICS_SERVICE_REQUEST__INIT;
    tap_pb_rmetrics_t  *rm;
    tap_pb_resource_t  *res;
    tap_body_t         *body;
    size_t              npoints = 0, i;

    if (tel->nexp[TAP_SIGNAL_METRICS] == 0) {
        return;
    }
    tap_tel_drain(tel);
    res = tap_pb_resource(&tel->marena, tel->ts->service_name, tel->ts->resource,
        tel->ts->nresource);
    rm = res != NULL ? tap_mreg_otlp(tel->reg, &tel->marena, res, tap_tel_realtime(),
                           tel->ts->delta, &npoints)
                     : NULL;
    if (rm != NULL && !tel->marena.failed) {
        req.resource_metrics = &rm;
        req.n_resource_metrics = 1;
        body = tap_body_pack(&req.base, (unsigned) npoints, tel->ts->gzip);
        if (body != NULL) {
            for (i = 0; i < tel->nexp[TAP_SIGNAL_METRICS]; i++) {
                tap_exporter_send(tel->exp[TAP_SIGNAL_METRICS][i], body);
            }
            tap_body_unref(body);
        } else {
            tel->unpacked[TAP_SIGNAL_METRICS] += npoints;
        }
    }
    tap_arena_reset(&tel->marena);
}


static void
tap_tel_on_metrics(evutil_socket_t fd, short what, void *arg)
{
    tap_tel_export_metrics(arg);
}


void
tap_tel_on_collect_hook(tap_tel_t *tel, void (*fn)(tap_mreg_t *r, void *arg), void *arg)
{
    tel->collect = fn;
    tel->collect_arg = arg;
}


/* Packs the resource and the scope every trace and log request carries, once. */
static int
tap_tel_encode_resource(tap_tel_t *tel)
{
    tap_pb_resource_t  *res;
    tap_pb_scope_t     *scope;

    res = tap_pb_resource(&tel->marena, tel->ts->service_name, tel->ts->resource,
        tel->ts->nresource);
    scope = tap_pb_scope(&tel->marena);
    if (res != NULL && scope != NULL && !tel->marena.failed) {
        tel->resource_len = protobuf_c_message_get_packed_size(&res->base);
        tel->scope_len = protobuf_c_message_get_packed_size(&scope->base);
        tel->resource = malloc(tel->resource_len + 1);
        tel->scope = malloc(tel->scope_len + 1);
        if (tel->resource != NULL && tel->scope != NULL) {
            protobuf_c_message_pack(&res->base, tel->resource);
            protobuf_c_message_pack(&scope->base, tel->scope);
        }
    }
    tap_arena_reset(&tel->marena);
    return tel->resource != NULL && tel->scope != NULL ? TAP_OK : TAP_ERROR;
}


static int
tap_tel_batch_init(tap_tel_t *tel, tap_tel_batch_t *b, tap_signal_e sig, unsigned max,
    int64_t delay_ms)
{
    b->tel = tel;
    b->signal = sig;
    b->max = max;
    b->delay_ms = delay_ms;
    b->room = tap_pb_frame_room(tel->resource_len, tel->scope_len);
    tap_arena_init(&b->arena);
    b->timer = evtimer_new(tel->base, tap_tel_on_batch_timer, b);
    return b->timer != NULL ? TAP_OK : TAP_ERROR;
}


/* A prompt table (prompts or templates, by key) with the anomaly settings. */
static tap_prompts_t *
tap_tel_prompts_create(const tap_tsettings_t *ts, tap_prompts_key_e key, size_t capacity)
{
    tap_prompts_conf_t  pc;

    tap_prompts_conf_init(&pc, key);
    pc.capacity = capacity;
    pc.k = ts->anomaly_k;
    pc.min_samples = ts->anomaly_min_samples;
    /* latency wobbles by a few percent between identical requests: a prompt
     * whose samples are nearly equal must not flag the first that is not */
    pc.tolerance = TAP_TEL_ANOMALY_TOLERANCE;
    return tap_prompts_create(&pc);
}


tap_tel_t *
tap_tel_new(struct event_base *base, const tap_tsettings_t *ts, unsigned nrings, char **err)
{
    tap_tel_t          *tel;
    tap_export_conf_t   ec;
    struct timeval      tv;
    size_t              s, i;

    *err = NULL;
    tel = calloc(1, sizeof(tap_tel_t));
    if (tel == NULL) {
        goto nomem;
    }
    tel->base = base;
    tel->ts = ts;
    tap_arena_init(&tel->marena);

    tel->nrings = nrings;
    tel->rings = aligned_alloc(64, sizeof(tap_tring_t) * (nrings ? nrings : 1));
    if (tel->rings == NULL) {
        goto nomem;
    }
    memset(tel->rings, 0, sizeof(tap_tring_t) * (nrings ? nrings : 1));
    for (i = 0; i < nrings; i++) {
        tel->rings[i].mask = ts->queue_size - 1;
        tel->rings[i].slots = calloc(ts->queue_size, sizeof(tap_trec_t));
        if (tel->rings[i].slots == NULL) {
            goto nomem;
        }
    }

    tel->reg = tap_mreg_new(ts->max_label_values, tap_tel_realtime());
    if (tel->reg == NULL
        || (tel->f_client_dur = tap_mreg_add(tel->reg, &tap_d_client_dur)) == NULL
        || (tel->f_tokens = tap_mreg_add(tel->reg, &tap_d_tokens)) == NULL
        || (tel->f_server_dur = tap_mreg_add(tel->reg, &tap_d_server_dur)) == NULL
        || (tel->f_ttft = tap_mreg_add(tel->reg, &tap_d_ttft)) == NULL
        || (tel->f_tpot = tap_mreg_add(tel->reg, &tap_d_tpot)) == NULL
        || (tel->f_overhead = tap_mreg_add(tel->reg, &tap_d_overhead)) == NULL
        || (tel->f_logprob = tap_mreg_add(tel->reg, &tap_d_logprob)) == NULL
        || (tel->f_score = tap_mreg_add(tel->reg, &tap_d_score)) == NULL
        || (tel->f_sampling = tap_mreg_add(tel->reg, &tap_d_sampling)) == NULL
        || (tel->f_queued = tap_mreg_add(tel->reg, &tap_d_queued)) == NULL
        || (tel->f_exported = tap_mreg_add(tel->reg, &tap_d_exported)) == NULL
        || (tel->f_rejected = tap_mreg_add(tel->reg, &tap_d_rejected)) == NULL
        || (tel->f_dropped = tap_mreg_add(tel->reg, &tap_d_dropped)) == NULL
        || (tel->f_failed = tap_mreg_add(tel->reg, &tap_d_failed)) == NULL
        || (tel->f_retried = tap_mreg_add(tel->reg, &tap_d_retried)) == NULL
        || (tel->f_anomalies = tap_mreg_add(tel->reg, &tap_d_anomalies)) == NULL
        || (tel->f_top_requests = tap_mreg_add(tel->reg, &tap_d_top_requests)) == NULL
        || (tel->f_top_e2e = tap_mreg_add(tel->reg, &tap_d_top_e2e)) == NULL
        || (tel->f_top_distinct = tap_mreg_add(tel->reg, &tap_d_top_distinct)) == NULL)
    {
        goto nomem;
    }

    tel->prompts = tap_tel_prompts_create(ts, TAP_PROMPTS_KEY_PROMPT, ts->prompt_capacity);
    tel->templates = tap_tel_prompts_create(ts, TAP_PROMPTS_KEY_PREFIX, ts->prefix_capacity);
    if (tel->prompts == NULL || tel->templates == NULL) {
        goto nomem;
    }
    tap_mreg_on_collect(tel->reg, tap_tel_on_collect, tel);

    for (s = 0; s < TAP_SIGNAL_N; s++) {
        ec = ts->export;
        ec.max_queue = s == TAP_SIGNAL_TRACES ? ts->traces_max_queue
                       : s == TAP_SIGNAL_LOGS ? ts->logs_max_queue : TAP_TEL_METRIC_QUEUE;
        tel->exp[s] = calloc(ts->nurls[s] ? ts->nurls[s] : 1, sizeof(tap_exporter_t *));
        if (tel->exp[s] == NULL) {
            goto nomem;
        }
        for (i = 0; i < ts->nurls[s]; i++) {
            tel->exp[s][i] = tap_exporter_new(base, (tap_signal_e) s, ts->urls[s][i], &ec, err);
            if (tel->exp[s][i] == NULL) {
                goto failed;
            }
            tel->nexp[s] = i + 1;
        }
    }

    if (tap_tel_encode_resource(tel) != TAP_OK
        || tap_tel_batch_init(tel, &tel->traces, TAP_SIGNAL_TRACES, ts->traces_max_batch,
            ts->traces_delay_ms) != TAP_OK
        || tap_tel_batch_init(tel, &tel->logs, TAP_SIGNAL_LOGS, ts->logs_max_batch,
            ts->logs_delay_ms) != TAP_OK)
    {
        goto nomem;
    }

    tel->drain_ev = evtimer_new(base, tap_tel_on_drain, tel);
    tel->metrics_ev = event_new(base, -1, EV_PERSIST, tap_tel_on_metrics, tel);
    if (tel->drain_ev == NULL || tel->metrics_ev == NULL) {
        goto nomem;
    }
    tv.tv_sec = 0;
    tv.tv_usec = TAP_TEL_SLOW_MS * 1000;
    evtimer_add(tel->drain_ev, &tv);
    if (tel->nexp[TAP_SIGNAL_METRICS] > 0) {
        tv.tv_sec = ts->metrics_interval_ms / 1000;
        tv.tv_usec = (ts->metrics_interval_ms % 1000) * 1000;
        event_add(tel->metrics_ev, &tv);
    }
    return tel;

nomem:

    *err = strdup("telemetry: out of memory");

failed:

    tap_tel_shutdown(tel, -1);
    return NULL;
}


tap_tring_t *
tap_tel_ring(tap_tel_t *tel, unsigned i)
{
    return &tel->rings[i];
}


tap_mreg_t *
tap_tel_registry(tap_tel_t *tel)
{
    return tel->reg;
}


void
tap_tel_prometheus(tap_tel_t *tel, struct evbuffer *out, int openmetrics)
{
    tap_tel_drain(tel);
    tap_mreg_prometheus(tel->reg, out, openmetrics);
}


int
tap_tel_access_log(tap_tel_t *tel, struct tap_alog_s *log)
{
    return tap_alog_buf_init(&tel->alog, log, tel->base);
}


uint64_t
tap_tel_access_log_dropped(tap_tel_t *tel)
{
    return tel->alog.dropped;
}


int
tap_tel_prompts_json(tap_tel_t *tel, int templates, const char *query, size_t len,
    struct evbuffer *out, const char **err)
{
    tap_prompts_t        *t = templates ? tel->templates : tel->prompts;
    tap_prompts_query_t   q;

    if (tap_prompts_parse_query(t, query, len, &q, err) != TAP_OK) {
        return TAP_ERROR;
    }
    tap_tel_drain(tel);
    if (tap_prompts_json(t, &q, out) != TAP_OK) {
        *err = "out of memory";
        return TAP_ERROR;
    }
    return TAP_OK;
}


static int
tap_tel_busy(tap_tel_t *tel)
{
    size_t  s, i;

    for (s = 0; s < TAP_SIGNAL_N; s++) {
        for (i = 0; i < tel->nexp[s]; i++) {
            if (tap_exporter_busy(tel->exp[s][i])) {
                return 1;
            }
        }
    }
    return 0;
}


static void
tap_tel_on_tick(evutil_socket_t fd, short what, void *arg)
{
    /* only wakes the loop */
}


void
tap_tel_shutdown(tap_tel_t *tel, int64_t timeout_ms)
{
    struct event    *tick;
    struct timeval   tv = { 0, 20000 };
    struct timespec  now;
    int64_t          deadline, t;
    size_t           s, i;

    if (tel == NULL) {
        return;
    }

    if (timeout_ms >= 0 && tel->reg != NULL) {
        tap_tel_drain(tel);
        tap_tel_batch_flush(&tel->traces);
        tap_tel_batch_flush(&tel->logs);
        tap_tel_export_metrics(tel);

        clock_gettime(CLOCK_MONOTONIC, &now);
        deadline = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000 + timeout_ms;
        tick = event_new(tel->base, -1, EV_PERSIST, tap_tel_on_tick, NULL);
        if (tick != NULL) {
            event_add(tick, &tv);
            for ( ;; ) {
                clock_gettime(CLOCK_MONOTONIC, &now);
                t = (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000;
                if (!tap_tel_busy(tel) || t >= deadline) {
                    break;
                }
                event_base_loop(tel->base, EVLOOP_ONCE);
            }
            event_free(tick);
        }
    }

    tap_alog_buf_cleanup(&tel->alog);
    for (s = 0; s < TAP_SIGNAL_N; s++) {
        for (i = 0; i < tel->nexp[s]; i++) {
            tap_exporter_free(tel->exp[s][i]);
        }
        free(tel->exp[s]);
    }
    if (tel->traces.timer != NULL) {
        event_free(tel->traces.timer);
    }
    if (tel->logs.timer != NULL) {
        event_free(tel->logs.timer);
    }
    tap_arena_free(&tel->traces.arena);
    tap_arena_free(&tel->logs.arena);
    free(tel->traces.body);
    free(tel->traces.spare);
    free(tel->logs.body);
    free(tel->logs.spare);
    free(tel->resource);
    free(tel->scope);
    tap_arena_free(&tel->marena);
    if (tel->drain_ev != NULL) {
        event_free(tel->drain_ev);
    }
    if (tel->metrics_ev != NULL) {
        event_free(tel->metrics_ev);
    }
    if (tel->reg != NULL) {
        tap_mreg_free(tel->reg);
    }
    tap_prompts_destroy(tel->prompts);
    tap_prompts_destroy(tel->templates);
    if (tel->rings != NULL) {
        for (i = 0; i < tel->nrings; i++) {
            free(tel->rings[i].slots);
        }
        free(tel->rings);
    }
    free(tel);
}
