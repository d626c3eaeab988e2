/*
 * metrics.c: the simulator's process-wide state and what exposes it:
 * Prometheus text in vLLM's naming (/metrics), the JSON counters tests read
 * (/sim/stats), the ring of the last 64 request heads (/sim/requests) and
 * the ring of the last 256 finished generations (/sim/generations).
 *
 * Counters are C11 atomics updated by every worker thread without locks.
 * Each ring takes its own mutex once per request; each slot keeps one
 * buffer with a copy of its strings (for a head "method\0url\0name\0value\0
 * ...", for a generation "request_id\0path\0model\0"), reused when the slot
 * is overwritten.
 */

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

const double  tap_sim_ttft_bounds[TAP_SIM_TTFT_BUCKETS] = {
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
};


uint64_t
tap_sim_now_us(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


void
tap_sim_conf_defaults(tap_sim_conf_t *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->listen = "127.0.0.1:8000";
    conf->model = "sim-model";
    conf->threads = 1;
    conf->tokens = 16;
    conf->error_kind = TAP_SIM_ERR_500;
    conf->slow_factor = 10;
    conf->drift_amount = 1.0;
}


tap_sim_shared_t *
tap_sim_shared_create(const tap_sim_conf_t *conf)
{
    tap_sim_shared_t  *sh;

    sh = calloc(1, sizeof(*sh));
    if (sh == NULL) {
        return NULL;
    }

    sh->conf = conf;
    sh->model_len = strlen(conf->model);
    sh->started = (int64_t) time(NULL);
    pthread_mutex_init(&sh->ring_lock, NULL);
    pthread_mutex_init(&sh->gen_lock, NULL);
    pthread_mutex_init(&sh->adm_lock, NULL);
    return sh;
}


void
tap_sim_shared_destroy(tap_sim_shared_t *sh)
{
    unsigned  i;

    if (sh == NULL) {
        return;
    }

    for (i = 0; i < TAP_SIM_RING; i++) {
        free(sh->ring[i].data);
    }
    for (i = 0; i < TAP_SIM_GEN_RING; i++) {
        free(sh->gen[i].data);
    }
    pthread_mutex_destroy(&sh->ring_lock);
    pthread_mutex_destroy(&sh->gen_lock);
    pthread_mutex_destroy(&sh->adm_lock);
    free(sh);
}


void
tap_sim_shared_record_head(tap_sim_shared_t *sh, const char *method, const char *data,
    size_t len, unsigned nhdr)
{
    tap_sim_head_t  *e;
    size_t           mlen, cap;
    char            *p;

    mlen = strlen(method) + 1;

    pthread_mutex_lock(&sh->ring_lock);
    e = &sh->ring[sh->ring_next];
    if (e->cap < mlen + len) {
        /* slots keep their buffer; grow only for a larger head */
        cap = TAP_MAX(mlen + len, 512);
        p = realloc(e->data, cap);
        if (p == NULL) {
            pthread_mutex_unlock(&sh->ring_lock);
            return;
        }
        e->data = p;
        e->cap = cap;
    }
    memcpy(e->data, method, mlen);
    memcpy(e->data + mlen, data, len);
    e->len = mlen + len;
    e->nhdr = nhdr;
    sh->ring_next = (sh->ring_next + 1) % TAP_SIM_RING;
    if (sh->ring_count < TAP_SIM_RING) {
        sh->ring_count++;
    }
    pthread_mutex_unlock(&sh->ring_lock);
}


/* Copy a string into a slot buffer; NULL stays NULL. */
static const char *
tap_sim_slot_str(char **at, const char *s, size_t len)
{
    char  *p;

    if (s == NULL) {
        return NULL;
    }
    p = *at;
    memcpy(p, s, len);
    p[len] = '\0';
    *at = p + len + 1;
    return p;
}


/*
 * Append o to the generations ring, copying its borrowed strings (request
 * id, path, model).  Silently drops the entry when a slot cannot grow.
 */
void
tap_sim_shared_record_outcome(tap_sim_shared_t *sh, const tap_sim_outcome_t *o)
{
    tap_sim_outcome_slot_t  *e;
    size_t                   rlen, plen, need, cap;
    char                    *p;

    rlen = o->request_id != NULL ? o->request_id_len : 0;
    plen = o->path != NULL ? strlen(o->path) : 0;
    need = rlen + 1 + plen + 1 + o->model_len + 1;

    pthread_mutex_lock(&sh->gen_lock);
    e = &sh->gen[sh->gen_next];
    if (e->cap < need) {
        cap = TAP_MAX(need, 256);
        p = realloc(e->data, cap);
        if (p == NULL) {
            pthread_mutex_unlock(&sh->gen_lock);
            return;
        }
        e->data = p;
        e->cap = cap;
    }
    e->o = *o;
    p = e->data;
    e->o.request_id = tap_sim_slot_str(&p, o->request_id, rlen);
    e->o.path = tap_sim_slot_str(&p, o->path, plen);
    e->o.model = tap_sim_slot_str(&p, o->model, o->model_len);
    sh->gen_next = (sh->gen_next + 1) % TAP_SIM_GEN_RING;
    if (sh->gen_count < TAP_SIM_GEN_RING) {
        sh->gen_count++;
    }
    pthread_mutex_unlock(&sh->gen_lock);
}


void
tap_sim_shared_observe_ttft(tap_sim_shared_t *sh, uint64_t us)
{
    double    s;
    unsigned  i;

    s = (double) us / 1e6;
    for (i = 0; i < TAP_SIM_TTFT_BUCKETS && s > tap_sim_ttft_bounds[i]; i++) {
        /* first bucket whose bound holds s */
    }
    atomic_fetch_add(&sh->ttft_bucket[i], 1);
    atomic_fetch_add(&sh->ttft_sum_us, us);
    atomic_fetch_add(&sh->ttft_count, 1);
}


static void
tap_sim_metric_head(tap_sim_sb_t *sb, const char *name, const char *type, const char *help)
{
    tap_sim_sb_addf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}


static void
tap_sim_label(tap_sim_sb_t *sb, const tap_sim_shared_t *sh)
{
    const char  *m;

    /* label values escape backslash, quote and newline */
    tap_sim_sb_adds(sb, "{model_name=\"");
    for (m = sh->conf->model; *m != '\0'; m++) {
        if (*m == '\\' || *m == '"') {
            tap_sim_sb_addc(sb, '\\');
            tap_sim_sb_addc(sb, *m);
        } else if (*m == '\n') {
            tap_sim_sb_adds(sb, "\\n");
        } else {
            tap_sim_sb_addc(sb, *m);
        }
    }
    tap_sim_sb_addc(sb, '"');
}


void
tap_sim_metrics_reply(tap_sim_req_t *r)
{
    tap_sim_shared_t  *sh = r->w->shared;
    tap_sim_sb_t      *sb = &r->w->sb;
    uint64_t           cum;
    int_fast64_t       running, waiting;
    double             usage;
    unsigned           i;

    running = atomic_load(&sh->running);
    waiting = atomic_load(&sh->waiting);
    if (sh->conf->max_concurrency > 0) {
        usage = (double) running / sh->conf->max_concurrency;
    } else {
        usage = running > 0 ? 1.0 - 1.0 / (1.0 + (double) running / 16.0) : 0.0;
    }
    usage = TAP_MIN(TAP_MAX(usage, 0.0), 1.0);

    tap_sim_sb_reset(sb);
    tap_sim_metric_head(sb, "vllm:num_requests_running", "gauge",
                        "Number of requests currently running.");
    tap_sim_sb_adds(sb, "vllm:num_requests_running");
    tap_sim_label(sb, sh);
    tap_sim_sb_addf(sb, "} %lld\n", (long long) running);

    tap_sim_metric_head(sb, "vllm:num_requests_waiting", "gauge",
                        "Number of requests waiting for admission.");
    tap_sim_sb_adds(sb, "vllm:num_requests_waiting");
    tap_sim_label(sb, sh);
    tap_sim_sb_addf(sb, "} %lld\n", (long long) waiting);

    tap_sim_metric_head(sb, "vllm:kv_cache_usage_perc", "gauge",
                        "Fraction of the KV cache in use (1 means full).");
    tap_sim_sb_adds(sb, "vllm:kv_cache_usage_perc");
    tap_sim_label(sb, sh);
    tap_sim_sb_addf(sb, "} %.6f\n", usage);

    tap_sim_metric_head(sb, "vllm:prompt_tokens_total", "counter",
                        "Number of prompt tokens processed.");
    tap_sim_sb_adds(sb, "vllm:prompt_tokens_total");
    tap_sim_label(sb, sh);
    tap_sim_sb_addf(sb, "} %llu\n", (unsigned long long) atomic_load(&sh->prompt_tokens));

    tap_sim_metric_head(sb, "vllm:generation_tokens_total", "counter",
                        "Number of generated tokens.");
    tap_sim_sb_adds(sb, "vllm:generation_tokens_total");
    tap_sim_label(sb, sh);
    tap_sim_sb_addf(sb, "} %llu\n", (unsigned long long) atomic_load(&sh->generation_tokens));

    tap_sim_metric_head(sb, "vllm:request_success_total", "counter",
                        "Number of successfully finished requests.");
    tap_sim_sb_adds(sb, "vllm:request_success_total");
    tap_sim_label(sb, sh);
    tap_sim_sb_addf(sb, ",finished_reason=\"stop\"} %llu\n",
                    (unsigned long long) atomic_load(&sh->success_stop));
    tap_sim_sb_adds(sb, "vllm:request_success_total");
    tap_sim_label(sb, sh);
    tap_sim_sb_addf(sb, ",finished_reason=\"length\"} %llu\n",
                    (unsigned long long) atomic_load(&sh->success_length));

    tap_sim_metric_head(sb, "vllm:time_to_first_token_seconds", "histogram",
                        "Histogram of time to first token in seconds.");
    cum = 0;
    for (i = 0; i <= TAP_SIM_TTFT_BUCKETS; i++) {
        cum += atomic_load(&sh->ttft_bucket[i]);
        tap_sim_sb_adds(sb, "vllm:time_to_first_token_seconds_bucket");
        tap_sim_label(sb, sh);
        if (i < TAP_SIM_TTFT_BUCKETS) {
            tap_sim_sb_addf(sb, ",le=\"%g\"} %llu\n", tap_sim_ttft_bounds[i],
                            (unsigned long long) cum);
        } else {
            tap_sim_sb_addf(sb, ",le=\"+Inf\"} %llu\n", (unsigned long long) cum);
        }
    }
    tap_sim_sb_adds(sb, "vllm:time_to_first_token_seconds_sum");
    tap_sim_label(sb, sh);
    tap_sim_sb_addf(sb, "} %.6f\n", (double) atomic_load(&sh->ttft_sum_us) / 1e6);
    tap_sim_sb_adds(sb, "vllm:time_to_first_token_seconds_count");
    tap_sim_label(sb, sh);
    tap_sim_sb_addf(sb, "} %llu\n", (unsigned long long) cum);

    tap_sim_req_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", sb->p, sb->len,
                      NULL);
}


void
tap_sim_stats_reply(tap_sim_req_t *r)
{
    tap_sim_shared_t  *sh = r->w->shared;
    tap_sim_sb_t      *sb = &r->w->sb;

    tap_sim_sb_reset(sb);
    tap_sim_sb_addf(sb, "{\"requests\":%llu,\"completed\":%llu,\"aborted\":%llu,"
                    "\"running\":%lld,\"waiting\":%lld,\"max_running\":%lld,"
                    "\"errors_injected\":%llu}",
                    (unsigned long long) atomic_load(&sh->requests),
                    (unsigned long long) atomic_load(&sh->completed),
                    (unsigned long long) atomic_load(&sh->aborted),
                    (long long) atomic_load(&sh->running),
                    (long long) atomic_load(&sh->waiting),
                    (long long) atomic_load(&sh->max_running),
                    (unsigned long long) atomic_load(&sh->errors_injected));
    tap_sim_req_json(r, 200, sb);
}


void
tap_sim_requests_reply(tap_sim_req_t *r)
{
    tap_sim_shared_t  *sh = r->w->shared;
    tap_sim_sb_t      *sb = &r->w->sb;
    tap_sim_head_t    *e;
    const char        *p, *v;
    unsigned           i, k, idx, first;

    tap_sim_sb_reset(sb);
    tap_sim_sb_addc(sb, '[');

    pthread_mutex_lock(&sh->ring_lock);
    first = (sh->ring_next + TAP_SIM_RING - sh->ring_count) % TAP_SIM_RING;
    for (i = 0; i < sh->ring_count; i++) {
        idx = (first + i) % TAP_SIM_RING;
        e = &sh->ring[idx];
        p = e->data;
        tap_sim_sb_adds(sb, i > 0 ? ",{\"method\":" : "{\"method\":");
        tap_sim_sb_add_jstr(sb, p, strlen(p));
        p += strlen(p) + 1;
        tap_sim_sb_adds(sb, ",\"path\":");
        tap_sim_sb_add_jstr(sb, p, strlen(p));
        p += strlen(p) + 1;
        tap_sim_sb_adds(sb, ",\"headers\":{");
        for (k = 0; k < e->nhdr && p < e->data + e->len; k++) {
            v = p + strlen(p) + 1;
            if (v >= e->data + e->len) {
                break;
            }
            if (k > 0) {
                tap_sim_sb_addc(sb, ',');
            }
            tap_sim_sb_add_jstr(sb, p, strlen(p));
            tap_sim_sb_addc(sb, ':');
            tap_sim_sb_add_jstr(sb, v, strlen(v));
            p = v + strlen(v) + 1;
        }
        tap_sim_sb_adds(sb, "}}");
    }
    pthread_mutex_unlock(&sh->ring_lock);

    tap_sim_sb_addc(sb, ']');
    tap_sim_req_json(r, 200, sb);
}


static void
tap_sim_add_str_or_null(tap_sim_sb_t *sb, const char *s, size_t len)
{
    if (s == NULL) {
        tap_sim_sb_adds(sb, "null");
    } else {
        tap_sim_sb_add_jstr(sb, s, len);
    }
}


void
tap_sim_generations_reply(tap_sim_req_t *r)
{
    tap_sim_shared_t         *sh = r->w->shared;
    tap_sim_sb_t             *sb = &r->w->sb;
    const tap_sim_outcome_t  *o;
    unsigned                  i, first;

    tap_sim_sb_reset(sb);
    tap_sim_sb_addc(sb, '[');

    pthread_mutex_lock(&sh->gen_lock);
    first = (sh->gen_next + TAP_SIM_GEN_RING - sh->gen_count) % TAP_SIM_GEN_RING;
    for (i = 0; i < sh->gen_count; i++) {
        o = &sh->gen[(first + i) % TAP_SIM_GEN_RING].o;
        tap_sim_sb_adds(sb, i > 0 ? ",{\"request_id\":" : "{\"request_id\":");
        tap_sim_add_str_or_null(sb, o->request_id, o->request_id_len);
        tap_sim_sb_adds(sb, ",\"path\":");
        tap_sim_add_str_or_null(sb, o->path, o->path ? strlen(o->path) : 0);
        tap_sim_sb_adds(sb, ",\"api\":");
        tap_sim_add_str_or_null(sb, o->api, o->api ? strlen(o->api) : 0);
        tap_sim_sb_adds(sb, o->stream ? ",\"stream\":true,\"model\":"
                                      : ",\"stream\":false,\"model\":");
        tap_sim_add_str_or_null(sb, o->model, o->model_len);
        tap_sim_sb_addf(sb, ",\"prompt_tokens\":%u,\"completion_tokens\":%u,"
                        "\"finish_reason\":", o->prompt_tokens, o->completion_tokens);
        tap_sim_add_str_or_null(sb, o->finish, o->finish ? strlen(o->finish) : 0);
        tap_sim_sb_adds(sb, ",\"finish_reason_native\":");
        tap_sim_add_str_or_null(sb, o->finish_native,
                                o->finish_native ? strlen(o->finish_native) : 0);
        if (o->has_text) {
            tap_sim_sb_addf(sb, ",\"text_hash\":\"%016llx\"",
                            (unsigned long long) o->text_hash);
        } else {
            tap_sim_sb_adds(sb, ",\"text_hash\":null");
        }
        tap_sim_sb_addf(sb, ",\"n\":%u,\"error\":", o->n);
        tap_sim_add_str_or_null(sb, o->error, o->error ? strlen(o->error) : 0);
        tap_sim_sb_adds(sb, ",\"logprob_sum\":");
        if (o->has_logprobs) {
            tap_sim_sb_add_lp(sb, o->logprob_sum);
        } else {
            tap_sim_sb_adds(sb, "null");
        }
        tap_sim_sb_addc(sb, '}');
    }
    pthread_mutex_unlock(&sh->gen_lock);

    tap_sim_sb_addc(sb, ']');
    tap_sim_req_json(r, 200, sb);
}
