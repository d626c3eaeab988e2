/*
 * job.h: one generation in progress, and the protocol hooks that format it.
 *
 * A protocol (OpenAI chat, OpenAI completions, Ollama, TGI, llama.cpp) parses
 * its request into tap_sim_params_t and hands it to tap_sim_job_start(),
 * which decides error injection, drift and slowness from the global request
 * counter, waits for an admission slot when --max-concurrency is set, then
 * paces tokens with evtimers and calls the protocol's hooks to format them.
 */

#ifndef TAP_SIM_JOB_H
#define TAP_SIM_JOB_H

#include <jansson.h>

#include "gen.h"
#include "http.h"

/* What a format shows of a finished generation (tap_sim_api_t.shows). */
#define TAP_SIM_SHOWS_FINISH    0x1     /* a finish reason */
#define TAP_SIM_SHOWS_LOGPROBS  0x2     /* the chosen tokens' log-probabilities */
#define TAP_SIM_SHOWS_PROBS     0x4     /* their probabilities (llama.cpp) */

typedef struct tap_sim_api_s {
    const char  *name;                  /* /sim/generations "api" */
    const char  *finish_stop;           /* the format's finish reasons */
    const char  *finish_length;
    const char  *stream_ctype;
    /* whole non-streaming body */
    void       (*full)(tap_sim_job_t *j, tap_sim_sb_t *sb);
    /* the event(s) carrying token i; i == 0 may add a preamble */
    void       (*token)(tap_sim_job_t *j, tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t);
    /* events after the last token (may be NULL) */
    void       (*tail)(tap_sim_job_t *j, tap_sim_sb_t *sb);
    /* one event whose payload is broken JSON */
    void       (*broken)(tap_sim_job_t *j, tap_sim_sb_t *sb);
    /* TAP_SIM_SHOWS_* for a response that reached its end */
    unsigned   (*shows)(const tap_sim_job_t *j);
} tap_sim_api_t;

typedef struct tap_sim_params_s {
    const tap_sim_api_t  *api;
    const char           *model;            /* NULL: the served model */
    size_t                model_len;
    const char           *prompt;           /* canonical prompt text */
    size_t                prompt_len;
    unsigned              prompt_tokens;
    long long             max_tokens;       /* < 0: none */
    long long             seed;
    double                temperature;
    int                   top_n;            /* < 0: no logprobs */
    unsigned              has_seed:1;
    unsigned              stream:1;
    unsigned              include_usage:1;
    unsigned              details:1;        /* TGI parameters.details */
} tap_sim_params_t;

struct tap_sim_job_s {
    const tap_sim_api_t  *api;
    tap_sim_req_t        *req;
    tap_sim_gen_t         gen;
    char                 *model;
    size_t                model_len;
    char                  id[40];
    long long             created;
    long long             seed;
    uint64_t              n;
    uint64_t              t0_us;
    uint64_t              ttft_us;
    unsigned              ntok;
    unsigned              next;             /* next token index */
    unsigned              prompt_tokens;
    unsigned              cut_at;
    unsigned              broken_at;
    int                   top_n;
    double                slow;             /* delay multiplier, 0 = normal */
    tap_sim_err_e         err;
    unsigned              finish_length:1;
    unsigned              stream:1;
    unsigned              include_usage:1;
    unsigned              details:1;
    unsigned              has_seed:1;
};

/* parse.c: request body helpers; on a bad request they reply 400 and finish r */
json_t *tap_sim_body_json(tap_sim_req_t *r);
void tap_sim_bad(tap_sim_req_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tap_sim_opt_int(tap_sim_req_t *r, json_t *o, const char *key, long long lo, long long hi,
    long long *v);
int tap_sim_opt_num(tap_sim_req_t *r, json_t *o, const char *key, double lo, double hi,
    double *v);
int tap_sim_opt_bool(tap_sim_req_t *r, json_t *o, const char *key, int *v);
int tap_sim_opt_str(tap_sim_req_t *r, json_t *o, const char *key, const char **s, size_t *len);
int tap_sim_opt_obj(tap_sim_req_t *r, json_t *o, const char *key, json_t **v);
int tap_sim_prompt_value(tap_sim_req_t *r, json_t *v, const char *key, tap_sim_sb_t *sb,
    unsigned *words);
int tap_sim_chat_prompt(tap_sim_req_t *r, json_t *msgs, tap_sim_sb_t *sb, unsigned *words);
void tap_sim_params_init(tap_sim_params_t *p, const tap_sim_api_t *api);

void tap_sim_job_start(tap_sim_req_t *r, const tap_sim_params_t *p);
void tap_sim_job_release(tap_sim_req_t *r);
uint64_t tap_sim_job_next_index(tap_sim_shared_t *sh, int *fail, int *drift, int *nondet);
void tap_sim_job_simple(tap_sim_req_t *r, int fail, const tap_sim_sb_t *body,
    tap_sim_outcome_t *o);
void tap_sim_job_text(const tap_sim_job_t *j, tap_sim_sb_t *sb);
void tap_sim_tok_text(tap_sim_sb_t *sb, unsigned i, const tap_sim_tok_t *t);
void tap_sim_add_model(tap_sim_sb_t *sb, const tap_sim_job_t *j);
void tap_sim_add_rfc3339(tap_sim_sb_t *sb);


#endif /* TAP_SIM_JOB_H */
