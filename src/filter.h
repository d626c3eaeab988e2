/*
 * filter.h: the filter interface and the chain that runs filters over one
 * exchange.
 *
 * A filter is a table of optional hooks plus per-exchange state.  Filters
 * live in filters/, one file each, and are registered in one table
 * (filters/registry.c).  Configuration picks and orders them, per route
 * (a path prefix).  A protocol filter (openai, ollama, tgi, llamacpp,
 * kserve) claims the requests whose endpoints it knows through match(); at
 * most one protocol filter runs per exchange, and all of them fill the same
 * tap_gen_t, so whatever reads the record never cares which server spoke.
 *
 * The chain never touches sockets: the proxy hands it the request body when
 * complete and response bytes after they were forwarded (or, when a usage
 * chunk must be removed, through tap_fx_response_data's out callback).
 * Everything it parses is a bounded copy; a body it cannot understand is
 * only counted, never altered or delayed.
 */

#ifndef TAP_FILTER_H
#define TAP_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "exchange.h"
#include "tap_core.h"
#include "genai/genai.h"
#include "genai/split.h"

#define TAP_FILTER_MAX   16
#define TAP_FX_KEEP      (64 * 1024)

typedef struct tap_fx_s      tap_fx_t;
typedef struct tap_filter_s  tap_filter_t;

typedef enum {
    TAP_FRAME_NONE = 0,                /* not parsed */
    TAP_FRAME_JSON,                    /* one JSON document, parsed at the end */
    TAP_FRAME_SSE,                     /* text/event-stream */
    TAP_FRAME_NDJSON,                  /* one JSON document per line */
} tap_frame_e;

/*
 * One response event: an SSE event's data, an NDJSON line or a whole body.
 * Its tree is parsed when a hook first asks for it (tap_fev_json()), so
 * that a filter that reads the data another way saves the tree.
 */
typedef struct tap_fevent_s {
    const char  *data;
    size_t       len;
    const char  *name;                 /* SSE "event" field; "" */
    int64_t      now;                  /* monotonic ns when it was seen */
    unsigned     whole:1;              /* the complete body of a plain response */
    unsigned     parsed:1;             /* json is known (filter.c's) */
    unsigned     valid:1;              /* the data is known to be JSON (filter.c's) */
    cJSON       *json;                 /* filter.c's: read it with tap_fev_json() */
} tap_fevent_t;

/* The event's data parsed, NULL when it is not JSON. */
cJSON *tap_fev_json(const tap_fevent_t *ev);

/* Tells the chain that a hook read the data as JSON without asking for its tree. */
void tap_fev_valid(const tap_fevent_t *ev);

#define TAP_FEV_PASS   0
#define TAP_FEV_DROP   1               /* remove from the client's stream (usage injection) */

struct tap_filter_s {
    const char  *name;
    unsigned     protocol:1;
    size_t       state_size;           /* zeroed per exchange; 0: none */

    /* Protocol filters: non-zero when this request is theirs. */
    int   (*match)(tap_fx_t *fx);

    void  (*request_head)(tap_fx_t *fx, void *st);
    /* The request body, complete; json is the body when it is a JSON object, else NULL
     * (gen->req_parse says why: not kept, not JSON, or JSON of another shape). */
    void  (*request_body)(tap_fx_t *fx, void *st, const char *body, size_t len, cJSON *json);
    /* May set fx->frame when the content type does not tell. */
    void  (*response_head)(tap_fx_t *fx, void *st);
    int   (*response_event)(tap_fx_t *fx, void *st, const tap_fevent_t *ev);
    void  (*complete)(tap_fx_t *fx, void *st);
};

/* A route: requests whose path starts with prefix run these filters. */
typedef struct tap_froute_s {
    char                *prefix;       /* "" matches every path */
    size_t               prefix_len;
    const tap_filter_t  *filters[TAP_FILTER_MAX];
    unsigned             n;
    size_t               state_size;   /* the filters' states, each rounded up */
} tap_froute_t;

/* A classifier score: the number at pointer in responses of a route or model. */
typedef struct tap_fscore_s {
    char  *match;                      /* "/path/prefix" or a model name */
    char  *pointer;
} tap_fscore_t;

/* The filter configuration, shared read-only by every worker. */
typedef struct tap_fconf_s {
    tap_froute_t  *routes;             /* longest prefix first; the last is "" */
    size_t         nroutes;
    tap_fscore_t  *scores;
    size_t         nscores;
    size_t         capture;            /* bytes of a body kept for parsing */
    unsigned       inject_usage:1;     /* ask streaming OpenAI requests for usage */
} tap_fconf_t;

struct tap_fx_s {
    const tap_fconf_t    *fc;
    const tap_froute_t   *route;
    tap_exchange_t       *ex;
    tap_gen_t            *gen;         /* &ex->gen */
    const char           *method;
    const char           *path;        /* without the query */
    size_t                path_len;

    /* response */
    int                   status;
    const char           *ctype;       /* response Content-Type value, or NULL */
    size_t                ctype_len;
    tap_frame_e           frame;
    int64_t               now;         /* monotonic ns the bytes fed were read; 0: ask the clock */

    /* usage injection: the filter sets want_usage while reading the request
     * body and may then call tap_fx_replace_body(); usage_injected says the
     * upstream request was changed, so the usage event is to be removed */
    unsigned              want_hold:1; /* a filter may rewrite the body: hold it */
    unsigned              can_rewrite:1;
    unsigned              usage_injected:1;
    unsigned              strip:1;     /* response bytes go through the out callback */
    unsigned              strip_on:1;  /* ... and events may still be dropped */
    unsigned              cut:1;

    const tap_filter_t   *active[TAP_FILTER_MAX];
    void                 *state[TAP_FILTER_MAX];
    unsigned              nactive;

    /* private to filter.c */
    char                 *new_body;
    size_t                new_len;
    char                 *body;        /* capture: request body, then plain response body */
    size_t                body_len, body_cap;
    unsigned              body_over:1;
    unsigned              lf:2;        /* a LF may end the last event: 1 pass, 2 drop */
    unsigned              fed:1;
    tap_sse_t             sse;
    tap_ndjson_t          nd;
    char                 *hold;        /* raw bytes of an unfinished event while stripping */
    size_t                hold_len, hold_cap;
    size_t                fwd;
    void                (*out)(void *ctx, const char *p, size_t len);
    void                 *out_ctx;
    int                   out_drop;
    tap_fx_t             *next;        /* in its thread's spare blocks */
    size_t                size;        /* of this block, with the states after it */
    _Alignas(max_align_t) unsigned char  mem[];  /* the states */
};

/* --- configuration (filter.c) --- */

/* The registered filters, NULL-terminated (filters/registry.c). */
extern const tap_filter_t  *tap_filters[];
const tap_filter_t *tap_filter_find(const char *name);

/*
 * Builds fc from configuration values: `filters` is the default chain (names),
 * `routes` holds "PREFIX = name,name" entries (an empty list after '=' means
 * no filters), `scores` holds "MATCH = /json/pointer" entries.  Returns
 * TAP_OK, or TAP_ERROR with *err (malloc'd) naming the bad entry.
 */
int tap_fconf_build(tap_fconf_t *fc, char **filters, size_t nfilters, char **routes,
    size_t nroutes, char **scores, size_t nscores, size_t capture, int inject_usage, char **err);
void tap_fconf_cleanup(tap_fconf_t *fc);

/* --- one exchange (filter.c) --- */

/*
 * Starts the chain for a request whose head was parsed.  Returns NULL when
 * no filter applies (the proxy then does nothing more for this exchange).
 */
tap_fx_t *tap_fx_begin(const tap_fconf_t *fc, tap_exchange_t *ex, const char *method,
    const char *path, size_t path_len);

/* Copies request body bytes (up to the capture limit); unused for a held body. */
void tap_fx_request_data(tap_fx_t *fx, const char *p, size_t len);

/*
 * The request is complete.  body/len is the whole body when the proxy held it
 * (can_rewrite), else NULL and the captured copy is used.  Returns 1 when the
 * filters replaced the body: the proxy then sends fx->new_body/new_len.
 */
int tap_fx_request_end(tap_fx_t *fx, const char *body, size_t len);

/* Filters: replace the held request body (takes a malloc'd buffer). */
void tap_fx_replace_body(tap_fx_t *fx, char *body, size_t len);

/*
 * The response head.  can_strip: the proxy re-frames the body for the client,
 * so events may be removed from it.
 */
void tap_fx_response_head(tap_fx_t *fx, int status, const char *ctype, size_t ctype_len,
    int encoded, int can_strip);

/*
 * Response body bytes.  When fx->strip is set, the bytes to forward are
 * handed to out() (in order, possibly in several pieces, possibly later);
 * otherwise the caller has already forwarded them and out is not used.
 */
void tap_fx_response_data(tap_fx_t *fx, const char *p, size_t len,
    void (*out)(void *ctx, const char *p, size_t len), void *ctx);

/*
 * The response ended; cut when it ended early.  While stripping, bytes still
 * held are handed to out() first.  Then runs the complete hooks and fills
 * the exchange's computed fields.
 */
void tap_fx_complete(tap_fx_t *fx, int cut, void (*out)(void *ctx, const char *p, size_t len),
    void *ctx);

/*
 * Ends an exchange.  Its thread keeps the block, with a capture buffer of
 * up to TAP_FX_KEEP bytes, for a later exchange (a few dozen blocks at
 * most); tap_fx_thread_done() frees what a thread keeps, before it exits.
 */
void tap_fx_free(tap_fx_t *fx);
void tap_fx_thread_done(void);

#endif /* TAP_FILTER_H */
