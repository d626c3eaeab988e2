/*
 * sim.h: types shared by the parts of infertap-sim, the model-server
 * simulator: its configuration, the process-wide state every worker thread
 * updates (atomic counters, the TTFT histogram, the rings of recent request
 * heads and of finished generations, the admission queue of
 * --max-concurrency) and the per-thread worker.
 *
 * Lifetimes: the conf and the shared state live as long as the process (or
 * the fuzz iteration); a worker lives as long as its thread; connections and
 * requests are described in http.h.
 */

#ifndef TAP_SIM_H
#define TAP_SIM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <event2/event.h>
#include <xxhash.h>

#include "sb.h"
#include "tap_core.h"

#define TAP_SIM_MAX_BODY        (8u * 1024 * 1024)
#define TAP_SIM_MAX_HEADER      (64u * 1024)
#define TAP_SIM_RING            64
#define TAP_SIM_GEN_RING        256
#define TAP_SIM_TTFT_BUCKETS    16

typedef enum {
    TAP_SIM_ERR_NONE = 0,
    TAP_SIM_ERR_500,
    TAP_SIM_ERR_429,
    TAP_SIM_ERR_CUT,
    TAP_SIM_ERR_MALFORMED,
} tap_sim_err_e;

typedef struct tap_sim_conf_s {
    const char     *listen;
    const char     *model;
    int             threads;
    unsigned        ttft_ms;
    unsigned        itl_ms;
    unsigned        jitter_ms;
    int             tokens;
    uint64_t        seed;
    double          error_rate;
    tap_sim_err_e   error_kind;
    int             max_concurrency;
    double          nondeterminism;
    const char     *slow_prompt;
    double          slow_factor;
    uint64_t        drift_after;
    unsigned        drift_set:1;
    double          drift_amount;
    unsigned        quiet:1;
} tap_sim_conf_t;

typedef struct tap_sim_req_s tap_sim_req_t;

/* One /sim/requests entry: "method\0path\0name\0value\0..." with nhdr pairs. */
typedef struct tap_sim_head_s {
    char      *data;
    size_t     len;
    size_t     cap;
    unsigned   nhdr;
} tap_sim_head_t;

/*
 * What the simulator sent for one finished request (/sim/generations).
 * Strings are borrowed when passed to tap_sim_shared_record_outcome(), which
 * copies them; static strings (api, finish reasons, error) are kept as they
 * are.  NULL strings are written as JSON null.
 */
typedef struct tap_sim_outcome_s {
    const char  *request_id;            /* x-request-id of the request */
    size_t       request_id_len;
    const char  *path;
    const char  *model;
    size_t       model_len;
    const char  *api;                   /* "openai_chat", "tgi", ... */
    const char  *finish;                /* OpenAI vocabulary: "stop", "length" */
    const char  *finish_native;         /* as the format sent it: "eos_token"... */
    const char  *error;                 /* "500", "429", "cut", "malformed", "client_gone" */
    uint64_t     text_hash;             /* XXH3-64 of choice 0's text */
    double       logprob_sum;           /* of choice 0, as sent */
    unsigned     prompt_tokens;
    unsigned     completion_tokens;     /* tokens whose text was sent */
    unsigned     n;                     /* choices (embeddings: vectors) */
    unsigned     stream:1;
    unsigned     has_text:1;            /* text_hash is meaningful */
    unsigned     has_logprobs:1;        /* logprob_sum is meaningful */
} tap_sim_outcome_t;

/* A /sim/generations slot: the outcome, its strings copied into data. */
typedef struct tap_sim_outcome_slot_s {
    tap_sim_outcome_t   o;
    char               *data;
    size_t              cap;
} tap_sim_outcome_slot_t;

typedef struct tap_sim_shared_s {
    const tap_sim_conf_t    *conf;
    size_t                   model_len;

    atomic_uint_fast64_t     requests;
    atomic_uint_fast64_t     completed;
    atomic_uint_fast64_t     aborted;
    atomic_int_fast64_t      running;
    atomic_int_fast64_t      waiting;
    atomic_int_fast64_t      max_running;
    atomic_uint_fast64_t     errors_injected;
    atomic_uint_fast64_t     prompt_tokens;
    atomic_uint_fast64_t     generation_tokens;
    atomic_uint_fast64_t     success_stop;
    atomic_uint_fast64_t     success_length;
    atomic_uint_fast64_t     ttft_bucket[TAP_SIM_TTFT_BUCKETS + 1];
    atomic_uint_fast64_t     ttft_sum_us;
    atomic_uint_fast64_t     ttft_count;

    pthread_mutex_t          ring_lock;
    tap_sim_head_t           ring[TAP_SIM_RING];
    unsigned                 ring_next;
    unsigned                 ring_count;

    pthread_mutex_t          gen_lock;
    tap_sim_outcome_slot_t   gen[TAP_SIM_GEN_RING];
    unsigned                 gen_next;
    unsigned                 gen_count;

    /* admission control, used only when conf->max_concurrency > 0 */
    pthread_mutex_t          adm_lock;
    int                      adm_running;
    tap_sim_req_t           *adm_head;
    tap_sim_req_t           *adm_tail;

    int64_t                  started;           /* unix time of start-up */
} tap_sim_shared_t;

typedef struct tap_sim_worker_s {
    tap_sim_shared_t        *shared;
    struct event_base       *base;
    struct evconnlistener   *listener;
    void                    *socks;             /* server.c: list of open sockets */
    tap_sim_sb_t             sb;                /* scratch for bodies and events */
    tap_sim_sb_t             sb2;               /* scratch for error bodies */
    tap_sim_sb_t             prompt;            /* scratch for prompt text */
    XXH3_state_t            *xxh;               /* scratch for text hashes */
    pthread_t                thread;
    unsigned                 thread_started:1;
} tap_sim_worker_t;

extern const double  tap_sim_ttft_bounds[TAP_SIM_TTFT_BUCKETS];

/* shared.c (metrics.c): process-wide state */
tap_sim_shared_t *tap_sim_shared_create(const tap_sim_conf_t *conf);
void tap_sim_shared_destroy(tap_sim_shared_t *sh);
void tap_sim_shared_record_head(tap_sim_shared_t *sh, const char *method,
    const char *data, size_t len, unsigned nhdr);
void tap_sim_shared_record_outcome(tap_sim_shared_t *sh, const tap_sim_outcome_t *o);
void tap_sim_shared_observe_ttft(tap_sim_shared_t *sh, uint64_t us);
void tap_sim_conf_defaults(tap_sim_conf_t *conf);

/* worker without a listener (server.c adds one) */
tap_sim_worker_t *tap_sim_worker_create(tap_sim_shared_t *sh);
void tap_sim_worker_destroy(tap_sim_worker_t *w);

uint64_t tap_sim_now_us(void);


#endif /* TAP_SIM_H */
