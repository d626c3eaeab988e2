/*
 * job.c: pacing and lifecycle of one simulated generation.
 *
 * Timing is event driven: the first token is due ttft (+jitter) after the
 * job starts running, each later one itl (+jitter) after the previous; a
 * non-streaming response is written once, after the sum of those delays.
 * Zero delays are handled inline, without timers, which keeps the common
 * benchmark path (and the fuzz target) free of event-loop round trips.
 *
 * Failure injection, drift and nondeterminism are decided from the global
 * request counter n and --seed, never from the prompt, so a test can predict
 * which request fails.  Admission control (--max-concurrency) is a FIFO of
 * waiting requests under one mutex; a finishing job hands its slot to the
 * first waiter and wakes it on the waiter's own event_base with
 * event_active().
 *
 * Every request that reached a job leaves one /sim/generations entry when it
 * ends (finished, failed, cut, or abandoned by its client), describing what
 * the client could decode.  The text hash and logprob sum are computed then,
 * by regenerating the tokens sent: they are pure functions of the seed, so
 * the job keeps no text and one XXH3 state per worker serves every job.
 */

#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <xxhash.h>

#include "job.h"

#define TAP_SIM_SALT_FAIL    0x243f6a8885a308d3ULL
#define TAP_SIM_SALT_NONDET  0x13198a2e03707344ULL
#define TAP_SIM_SALT_SEED    0xa4093822299f31d0ULL

static void tap_sim_job_step(tap_sim_req_t *r);


uint64_t
tap_sim_job_next_index(tap_sim_shared_t *sh, int *fail, int *drift, int *nondet)
{
    const tap_sim_conf_t  *conf = sh->conf;
    uint64_t               n;

    n = atomic_fetch_add(&sh->requests, 1) + 1;
    *fail = conf->error_rate > 0
            && tap_sim_unit(tap_sim_mix64(n ^ tap_sim_mix64(conf->seed ^ TAP_SIM_SALT_FAIL)))
               < conf->error_rate;
    *nondet = conf->nondeterminism > 0
              && tap_sim_unit(tap_sim_mix64(n ^ tap_sim_mix64(conf->seed ^ TAP_SIM_SALT_NONDET)))
                 < conf->nondeterminism;
    *drift = conf->drift_set && n > conf->drift_after;
    return n;
}


void
tap_sim_tok_text(tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t)
{
    if (i > 0) {
        tap_sim_sb_addc(sb, ' ');
    }
    tap_sim_sb_add(sb, t->text, t->len);
}


/* The whole completion text (without quotes or escaping: it is plain ASCII). */
void
tap_sim_job_text(const tap_sim_job_t *j, tap_sim_sb_t *sb)
{
    tap_sim_tok_t  t;
    unsigned       i;

    for (i = 0; i < j->ntok; i++) {
        tap_sim_gen_token(&j->gen, i, &t);
        tap_sim_tok_text(sb, i, &t);
    }
}


void
tap_sim_add_model(tap_sim_sb_t *sb, const tap_sim_job_t *j)
{
    tap_sim_sb_add_jstr(sb, j->model, j->model_len);
}


void
tap_sim_add_rfc3339(tap_sim_sb_t *sb)
{
    struct timespec  ts;
    struct tm        tm;
    char             buf[64];
    size_t           n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    tap_sim_sb_addc(sb, '"');
    tap_sim_sb_add(sb, buf, n);
    tap_sim_sb_addf(sb, ".%09ldZ\"", (long) ts.tv_nsec);
}


static const char *
tap_sim_err_name(tap_sim_err_e err)
{
    switch (err) {
    case TAP_SIM_ERR_500: return "500";
    case TAP_SIM_ERR_429: return "429";
    case TAP_SIM_ERR_CUT: return "cut";
    case TAP_SIM_ERR_MALFORMED: return "malformed";
    default: return NULL;
    }
}


/*
 * Record what r's client received.  body: the client got a decodable body
 * or a stream that had begun; its text is that of the first j->ntok tokens
 * when ended (the response reached its end), else of the j->next sent.  The
 * finish reason is recorded only for an ended response whose format shows
 * one.  error is a static string or NULL.
 */
static void
tap_sim_job_record(tap_sim_req_t *r, const char *error, int body, int ended)
{
    tap_sim_job_t      *j = r->job;
    XXH3_state_t       *st = r->w->xxh;
    tap_sim_outcome_t   o;
    tap_sim_tok_t       t;
    unsigned            i, sent, shows;
    double              p;

    memset(&o, 0, sizeof(o));
    o.request_id = r->request_id;
    o.request_id_len = r->request_id_len;
    o.path = r->log_path;
    o.model = j->model;
    o.model_len = j->model_len;
    o.api = j->api->name;
    o.error = error;
    o.prompt_tokens = j->prompt_tokens;
    o.n = 1;
    o.stream = j->stream;

    shows = j->api->shows(j);
    if (ended && (shows & TAP_SIM_SHOWS_FINISH)) {
        o.finish = j->finish_length ? "length" : "stop";
        o.finish_native = j->finish_length ? j->api->finish_length : j->api->finish_stop;
    }

    if (body) {
        sent = ended ? j->ntok : j->next;
        o.completion_tokens = sent;
        o.has_text = 1;
        o.has_logprobs = sent > 0
                         && (shows & (TAP_SIM_SHOWS_LOGPROBS | TAP_SIM_SHOWS_PROBS)) != 0;
        XXH3_64bits_reset(st);
        for (i = 0; i < sent; i++) {
            tap_sim_gen_token(&j->gen, i, &t);
            if (i > 0) {
                XXH3_64bits_update(st, " ", 1);
            }
            XXH3_64bits_update(st, t.text, t.len);

            /* sum what a client parses: values rounded as printed */
            if (shows & TAP_SIM_SHOWS_PROBS) {
                p = tap_sim_lp_round(exp(t.logprob));
                o.logprob_sum += p > 0 ? log(p) : t.logprob;
            } else {
                o.logprob_sum += tap_sim_lp_round(t.logprob);
            }
        }
        o.text_hash = XXH3_64bits_digest(st);
    }

    tap_sim_shared_record_outcome(r->w->shared, &o);
}


/* Delay before token i, in microseconds. */
static uint64_t
tap_sim_job_delay(const tap_sim_job_t *j, const tap_sim_conf_t *conf, unsigned i)
{
    double  ms;

    ms = i == 0 ? conf->ttft_ms : conf->itl_ms;
    if (conf->jitter_ms > 0) {
        ms += (double) (tap_sim_mix64(j->gen.seed ^ tap_sim_mix64(i + 0x77))
                        % ((uint64_t) conf->jitter_ms + 1));
    }
    if (j->slow > 0) {
        ms = TAP_MAX(ms, 1.0) * j->slow;
    }
    return (uint64_t) (ms * 1000.0);
}


static void
tap_sim_job_on_timer(evutil_socket_t fd, short what, void *arg)
{
    tap_sim_req_t   *r = arg;
    tap_sim_conn_t  *c = r->conn;

    tap_sim_job_step(r);
    tap_sim_conn_notify(c);
}


static void
tap_sim_job_wait(tap_sim_req_t *r, uint64_t us)
{
    struct timeval  tv;

    if (r->timer == NULL) {
        r->timer = evtimer_new(r->w->base, tap_sim_job_on_timer, r);
        if (r->timer == NULL) {
            abort();
        }
    }

    tv.tv_sec = (time_t) (us / 1000000);
    tv.tv_usec = (suseconds_t) (us % 1000000);
    evtimer_add(r->timer, &tv);
}


static void
tap_sim_job_run(tap_sim_req_t *r)
{
    tap_sim_shared_t  *sh = r->w->shared;
    tap_sim_job_t     *j = r->job;
    int_fast64_t       run, max;
    uint64_t           us;
    unsigned           i;

    run = atomic_fetch_add(&sh->running, 1) + 1;
    r->running = 1;
    max = atomic_load(&sh->max_running);
    while (run > max && !atomic_compare_exchange_weak(&sh->max_running, &max, run)) {
        /* retry with the fresh max */
    }

    if (j->stream) {
        us = tap_sim_job_delay(j, sh->conf, 0);
    } else {
        us = 0;
        for (i = 0; i < j->ntok; i++) {
            us += tap_sim_job_delay(j, sh->conf, i);
        }
        j->ttft_us = tap_sim_now_us() - j->t0_us + tap_sim_job_delay(j, sh->conf, 0);
    }

    if (us == 0) {
        tap_sim_job_step(r);
    } else {
        tap_sim_job_wait(r, us);
    }
}


static void
tap_sim_job_on_wake(evutil_socket_t fd, short what, void *arg)
{
    tap_sim_req_t   *r = arg;
    tap_sim_conn_t  *c = r->conn;

    tap_sim_job_run(r);
    tap_sim_conn_notify(c);
}


/* Give the slot r held to the first waiter, or return it.  Lock held. */
static void
tap_sim_adm_handoff_locked(tap_sim_shared_t *sh)
{
    tap_sim_req_t  *w;

    w = sh->adm_head;
    if (w == NULL) {
        sh->adm_running--;
        return;
    }

    sh->adm_head = w->adm_next;
    if (sh->adm_head != NULL) {
        sh->adm_head->adm_prev = NULL;
    } else {
        sh->adm_tail = NULL;
    }
    w->adm_next = NULL;
    w->adm_queued = 0;
    w->adm_slot = 1;
    atomic_fetch_sub(&sh->waiting, 1);
    event_active(w->wake, EV_TIMEOUT, 0);
}


/* Free everything the job holds; count an abort if it had not finished. */
void
tap_sim_job_release(tap_sim_req_t *r)
{
    tap_sim_shared_t  *sh = r->w->shared;

    if (r->timer != NULL) {
        event_free(r->timer);
        r->timer = NULL;
    }

    /* before any hand-off, so that running never exceeds the limit */
    if (r->running) {
        atomic_fetch_sub(&sh->running, 1);
        r->running = 0;
    }

    if (r->adm_queued || r->adm_slot) {
        pthread_mutex_lock(&sh->adm_lock);
        if (r->adm_queued) {
            if (r->adm_prev != NULL) {
                r->adm_prev->adm_next = r->adm_next;
            } else {
                sh->adm_head = r->adm_next;
            }
            if (r->adm_next != NULL) {
                r->adm_next->adm_prev = r->adm_prev;
            } else {
                sh->adm_tail = r->adm_prev;
            }
            r->adm_queued = 0;
            atomic_fetch_sub(&sh->waiting, 1);
        }
        if (r->adm_slot) {
            r->adm_slot = 0;
            tap_sim_adm_handoff_locked(sh);
        }
        pthread_mutex_unlock(&sh->adm_lock);
    }

    if (r->wake != NULL) {
        event_free(r->wake);
        r->wake = NULL;
    }

    if (r->active) {
        atomic_fetch_add(&sh->aborted, 1);
        r->active = 0;
        if (r->job != NULL) {
            tap_sim_job_record(r, "client_gone", r->job->stream && r->status == 200, 0);
        }
    }

    if (r->job != NULL) {
        free(r->job->model);
        free(r->job);
        r->job = NULL;
    }
}


static void
tap_sim_job_complete(tap_sim_req_t *r, int cut)
{
    tap_sim_shared_t  *sh = r->w->shared;
    tap_sim_job_t     *j = r->job;
    int                body;

    r->tokens = cut ? j->next : j->ntok;
    atomic_fetch_add(&sh->prompt_tokens, j->prompt_tokens);
    atomic_fetch_add(&sh->generation_tokens, r->tokens);
    if (!cut) {
        atomic_fetch_add(&sh->completed, 1);
        atomic_fetch_add(j->finish_length ? &sh->success_length : &sh->success_stop, 1);
    }
    tap_sim_shared_observe_ttft(sh, j->ttft_us);

    /* a plain body cut or broken in half carries nothing a client can decode */
    body = j->stream || (!cut && j->err != TAP_SIM_ERR_MALFORMED);
    tap_sim_job_record(r, tap_sim_err_name(j->err), body, body && !cut);

    r->active = 0;
    tap_sim_job_release(r);
    if (cut) {
        tap_sim_req_cut(r);
    } else {
        tap_sim_req_finish(r);
    }
}


static void
tap_sim_job_full(tap_sim_req_t *r)
{
    tap_sim_job_t    *j = r->job;
    tap_sim_sb_t     *sb = &r->w->sb;
    struct evbuffer  *out;
    size_t            half;

    tap_sim_sb_reset(sb);
    j->api->full(j, sb);
    j->next = j->ntok;

    if (j->err == TAP_SIM_ERR_CUT) {
        half = sb->len / 2;
        out = tap_sim_req_out(r);
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nserver: infertap-sim\r\n"
                            "content-type: application/json\r\ncontent-length: %zu\r\n\r\n",
                            sb->len);
        evbuffer_add(out, sb->p, half);
        r->status = 200;
        j->next = j->ntok / 2;
        tap_sim_job_complete(r, 1);
        return;
    }

    if (j->err == TAP_SIM_ERR_MALFORMED) {
        sb->len /= 2;
        tap_sim_sb_adds(sb, "<<malformed");
    }

    tap_sim_req_json(r, 200, sb);
    tap_sim_job_complete(r, 0);
}


static void
tap_sim_job_step(tap_sim_req_t *r)
{
    tap_sim_job_t       *j = r->job;
    const tap_sim_conf_t *conf = r->w->shared->conf;
    tap_sim_sb_t        *sb = &r->w->sb;
    tap_sim_tok_t        t;
    uint64_t             us;
    unsigned             i;

    if (!j->stream) {
        tap_sim_job_full(r);
        return;
    }

    for ( ;; ) {
        i = j->next;
        if (i == 0) {
            j->ttft_us = tap_sim_now_us() - j->t0_us;
            tap_sim_req_stream_begin(r, j->api->stream_ctype);
        }

        if (j->err == TAP_SIM_ERR_CUT && i == j->cut_at) {
            tap_sim_job_complete(r, 1);
            return;
        }

        tap_sim_sb_reset(sb);
        if (j->err == TAP_SIM_ERR_MALFORMED && i == j->broken_at) {
            j->api->broken(j, sb);
        }
        tap_sim_gen_token(&j->gen, i, &t);
        j->api->token(j, sb, i, &t);
        j->next = i + 1;

        if (j->next == j->ntok) {
            if (j->api->tail != NULL) {
                j->api->tail(j, sb);
            }
            tap_sim_req_stream_chunk(r, sb->p, sb->len);
            tap_sim_req_stream_end(r);
            tap_sim_job_complete(r, 0);
            return;
        }

        tap_sim_req_stream_chunk(r, sb->p, sb->len);
        us = tap_sim_job_delay(j, conf, j->next);
        if (us > 0) {
            tap_sim_job_wait(r, us);
            return;
        }
    }
}


void
tap_sim_job_start(tap_sim_req_t *r, const tap_sim_params_t *p)
{
    tap_sim_shared_t      *sh = r->w->shared;
    const tap_sim_conf_t  *conf = sh->conf;
    tap_sim_job_t         *j;
    uint64_t               seed;
    int                    fail, drift, nondet;

    j = calloc(1, sizeof(*j));
    if (j == NULL) {
        abort();
    }
    r->job = j;
    r->active = 1;

    j->req = r;
    j->api = p->api;
    j->t0_us = tap_sim_now_us();
    j->n = tap_sim_job_next_index(sh, &fail, &drift, &nondet);
    if (p->model != NULL && p->model_len > 0) {
        j->model_len = p->model_len;
        j->model = strndup(p->model, p->model_len);
    } else {
        j->model_len = sh->model_len;
        j->model = strdup(conf->model);
    }
    if (j->model == NULL) {
        abort();
    }

    seed = tap_sim_hash(p->prompt, p->prompt_len) ^ tap_sim_mix64(conf->seed);
    if (p->has_seed) {
        seed ^= tap_sim_mix64((uint64_t) p->seed ^ TAP_SIM_SALT_SEED);
    }
    if (nondet) {
        seed ^= tap_sim_mix64(j->n * TAP_SIM_SALT_NONDET);
    }
    tap_sim_gen_init(&j->gen, seed, p->temperature, drift ? conf->drift_amount : 0.0);

    j->ntok = (unsigned) conf->tokens;
    if (p->max_tokens >= 0 && p->max_tokens <= conf->tokens) {
        j->ntok = (unsigned) p->max_tokens;
        j->finish_length = 1;
    }
    j->prompt_tokens = p->prompt_tokens;
    j->seed = p->has_seed ? p->seed : (long long) (seed >> 1);
    j->has_seed = p->has_seed;
    j->top_n = p->top_n;
    j->stream = p->stream;
    j->include_usage = p->include_usage;
    j->details = p->details;
    j->created = (long long) time(NULL);
    j->cut_at = j->ntok / 2;
    j->broken_at = j->ntok / 2;
    snprintf(j->id, sizeof(j->id), "%016llx%08llx",
             (unsigned long long) tap_sim_mix64(seed ^ j->n ^ j->t0_us),
             (unsigned long long) (j->n & 0xffffffffULL));

    if (conf->slow_prompt != NULL && conf->slow_prompt[0] != '\0' && p->prompt_len > 0
        && memmem(p->prompt, p->prompt_len, conf->slow_prompt, strlen(conf->slow_prompt)))
    {
        j->slow = conf->slow_factor;
    }

    if (fail) {
        atomic_fetch_add(&sh->errors_injected, 1);
        if (conf->error_kind == TAP_SIM_ERR_500 || conf->error_kind == TAP_SIM_ERR_429) {
            tap_sim_req_error(r, conf->error_kind == TAP_SIM_ERR_500 ? 500 : 429,
                              conf->error_kind == TAP_SIM_ERR_500
                              ? "simulated server error" : "simulated rate limit");
            r->active = 0;
            atomic_fetch_add(&sh->completed, 1);
            tap_sim_job_record(r, tap_sim_err_name(conf->error_kind), 0, 0);
            tap_sim_job_release(r);
            tap_sim_req_finish(r);
            return;
        }
        j->err = conf->error_kind;
    }

    if (conf->max_concurrency > 0) {
        pthread_mutex_lock(&sh->adm_lock);
        if (sh->adm_running < conf->max_concurrency) {
            sh->adm_running++;
            r->adm_slot = 1;

        } else {
            r->wake = event_new(r->w->base, -1, 0, tap_sim_job_on_wake, r);
            if (r->wake == NULL) {
                abort();
            }
            r->adm_queued = 1;
            r->adm_prev = sh->adm_tail;
            r->adm_next = NULL;
            if (sh->adm_tail != NULL) {
                sh->adm_tail->adm_next = r;
            } else {
                sh->adm_head = r;
            }
            sh->adm_tail = r;
            atomic_fetch_add(&sh->waiting, 1);
        }
        pthread_mutex_unlock(&sh->adm_lock);
        if (r->adm_queued) {
            return;
        }
    }

    tap_sim_job_run(r);
}


/*
 * A response that needs no pacing (embeddings, KServe): apply the injected
 * failure, if any, write body, record o (api, model, prompt_tokens and n
 * filled by the caller; the rest here) and finish r.
 */
void
tap_sim_job_simple(tap_sim_req_t *r, int fail, const tap_sim_sb_t *body,
    tap_sim_outcome_t *o)
{
    tap_sim_shared_t      *sh = r->w->shared;
    const tap_sim_conf_t  *conf = sh->conf;
    struct evbuffer       *out;
    tap_sim_sb_t          *sb;

    o->request_id = r->request_id;
    o->request_id_len = r->request_id_len;
    o->path = r->log_path;
    o->stream = 0;
    o->error = NULL;
    if (fail) {
        atomic_fetch_add(&sh->errors_injected, 1);
        o->error = tap_sim_err_name(conf->error_kind);
    }
    tap_sim_shared_record_outcome(sh, o);

    if (fail && conf->error_kind == TAP_SIM_ERR_CUT) {
        out = tap_sim_req_out(r);
        evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nserver: infertap-sim\r\n"
                            "content-type: application/json\r\ncontent-length: %zu\r\n\r\n",
                            body->len);
        evbuffer_add(out, body->p, body->len / 2);
        r->status = 200;
        tap_sim_req_cut(r);
        return;
    }

    if (fail && conf->error_kind == TAP_SIM_ERR_MALFORMED) {
        sb = &r->w->sb2;
        tap_sim_sb_reset(sb);
        tap_sim_sb_add(sb, body->p, body->len / 2);
        tap_sim_sb_adds(sb, "<<malformed");
        tap_sim_req_json(r, 200, sb);

    } else if (fail) {
        tap_sim_req_error(r, conf->error_kind == TAP_SIM_ERR_500 ? 500 : 429,
                          conf->error_kind == TAP_SIM_ERR_500
                          ? "simulated server error" : "simulated rate limit");
    } else {
        tap_sim_req_json(r, 200, body);
    }

    atomic_fetch_add(&sh->completed, 1);
    tap_sim_req_finish(r);
}
