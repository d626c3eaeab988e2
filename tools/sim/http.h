/*
 * http.h: the simulator's HTTP/1.1 connection core, free of sockets.
 *
 * A connection is fed request bytes (tap_sim_conn_feed) and appends
 * responses to an output evbuffer given at creation.  The socket layer
 * (server.c) passes bufferevent buffers; the fuzz target passes a plain
 * evbuffer.  Requests are answered in order: a request that is not at the
 * head of the pipeline writes into its own buffer, moved to the output when
 * it reaches the head.
 *
 * Ownership: the connection owns its requests; a request owns its job,
 * timers and buffers.  Nothing here frees the connection itself: whoever
 * created it destroys it, after tap_sim_conn_wants_close() or a socket
 * error.  Timer callbacks call the on_event hook last so the socket layer
 * can flush or close.
 */

#ifndef TAP_SIM_HTTP_H
#define TAP_SIM_HTTP_H

#include <event2/buffer.h>
#include <event2/event.h>

#include "sim.h"

typedef struct tap_sim_conn_s tap_sim_conn_t;
typedef struct tap_sim_job_s tap_sim_job_t;
typedef void (*tap_sim_conn_event_cb)(tap_sim_conn_t *c, void *arg);

typedef enum {
    TAP_SIM_R_NONE = 0,
    TAP_SIM_R_HEALTH,
    TAP_SIM_R_MODELS,
    TAP_SIM_R_METRICS,
    TAP_SIM_R_STATS,
    TAP_SIM_R_REQUESTS,
    TAP_SIM_R_GENERATIONS,
    TAP_SIM_R_CHAT,
    TAP_SIM_R_COMPLETIONS,
    TAP_SIM_R_EMBEDDINGS,
    TAP_SIM_R_OLLAMA_CHAT,
    TAP_SIM_R_OLLAMA_GENERATE,
    TAP_SIM_R_TGI,
    TAP_SIM_R_TGI_STREAM,
    TAP_SIM_R_LLAMA,
    TAP_SIM_R_KSERVE_INFER,
    TAP_SIM_R_KSERVE_READY,
    TAP_SIM_R_NOT_FOUND,
    TAP_SIM_R_BAD_METHOD,
} tap_sim_route_e;

struct tap_sim_req_s {
    tap_sim_conn_t      *conn;
    tap_sim_worker_t    *w;
    tap_sim_req_t       *next;              /* pipeline order */
    tap_sim_req_t       *adm_prev;          /* admission queue (sim.h) */
    tap_sim_req_t       *adm_next;
    struct evbuffer     *out;               /* buffered while not at the head */
    struct event        *timer;
    struct event        *wake;
    tap_sim_job_t       *job;
    char                *body;
    size_t               body_len;
    char                *request_id;        /* x-request-id value, or NULL */
    size_t               request_id_len;
    size_t               body_cap;
    const char          *path;              /* valid during dispatch only */
    size_t               path_len;
    const char          *allow;             /* for 405 */
    tap_sim_route_e      route;
    int                  method;
    int                  status;
    unsigned             tokens;
    char                 log_path[96];
    unsigned             done:1;
    unsigned             close_after:1;
    unsigned             active:1;          /* model work started, not finished */
    unsigned             running:1;         /* counted in shared->running */
    unsigned             adm_queued:1;
    unsigned             adm_slot:1;        /* holds (or was handed) a slot */
    unsigned             expect:1;
};

tap_sim_conn_t *tap_sim_conn_create(tap_sim_worker_t *w, struct evbuffer *out,
    tap_sim_conn_event_cb on_event, void *arg);
void tap_sim_conn_destroy(tap_sim_conn_t *c);
void tap_sim_conn_feed(tap_sim_conn_t *c, const char *data, size_t len);
int tap_sim_conn_wants_close(const tap_sim_conn_t *c);
int tap_sim_conn_busy(const tap_sim_conn_t *c);
unsigned tap_sim_conn_pending(const tap_sim_conn_t *c);
void tap_sim_conn_notify(tap_sim_conn_t *c);

struct evbuffer *tap_sim_req_out(tap_sim_req_t *r);
void tap_sim_req_reply(tap_sim_req_t *r, int status, const char *ctype, const char *body,
    size_t len, const char *extra);
void tap_sim_req_json(tap_sim_req_t *r, int status, const tap_sim_sb_t *sb);
void tap_sim_req_error(tap_sim_req_t *r, int status, const char *msg);
void tap_sim_req_stream_begin(tap_sim_req_t *r, const char *ctype);
void tap_sim_req_stream_chunk(tap_sim_req_t *r, const char *data, size_t len);
void tap_sim_req_stream_end(tap_sim_req_t *r);
void tap_sim_req_finish(tap_sim_req_t *r);
void tap_sim_req_cut(tap_sim_req_t *r);

/* routes, implemented in openai.c, native.c and metrics.c */
void tap_sim_openai_chat(tap_sim_req_t *r);
void tap_sim_openai_completions(tap_sim_req_t *r);
void tap_sim_openai_embeddings(tap_sim_req_t *r);
void tap_sim_openai_models(tap_sim_req_t *r);
void tap_sim_ollama_chat(tap_sim_req_t *r);
void tap_sim_ollama_generate(tap_sim_req_t *r);
void tap_sim_tgi_generate(tap_sim_req_t *r, int stream);
void tap_sim_llama_completion(tap_sim_req_t *r);
void tap_sim_kserve_infer(tap_sim_req_t *r);
void tap_sim_metrics_reply(tap_sim_req_t *r);
void tap_sim_stats_reply(tap_sim_req_t *r);
void tap_sim_requests_reply(tap_sim_req_t *r);
void tap_sim_generations_reply(tap_sim_req_t *r);


#endif /* TAP_SIM_HTTP_H */
