/*
 * proxy-int.h: types shared by the files of src/proxy/ (workers, downstream
 * and upstream connections, transactions).  Not for use outside src/proxy/.
 *
 * Ownership: a tap_proxy_t owns its workers and the shared health table; a
 * worker owns its listeners, downstream connections (tap_dconn_t), upstream
 * pools and connections (tap_uconn_t); a downstream connection owns at most
 * one transaction (tap_txn_t) at a time, and the transaction borrows one
 * upstream connection while it is attached.  Everything but the health
 * table, the draining flag and the connection count is touched by its
 * worker's thread only.
 */

#ifndef TAP_PROXY_INT_H
#define TAP_PROXY_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>

#include "exchange.h"
#include "filter.h"
#include "tap_core.h"
#include "proxy/accesslog.h"
#include "proxy/request.h"
#include "proxy/response.h"
#include "proxy/settings.h"
#include "proxy/trace.h"
#include "stats/series.h"
#include "telemetry/telemetry.h"

/* Bytes queued toward a peer before the other side stops reading. */
#define TAP_PROXY_HIGH_WATER   (256 * 1024)
#define TAP_TXN_SPARES         32      /* finished transactions a worker keeps for reuse */
#define TAP_PROXY_LOW_WATER    (64 * 1024)
#define TAP_PROXY_LINGER_MS    5000

typedef struct tap_proxy_s   tap_proxy_t;
typedef struct tap_worker_s  tap_worker_t;
typedef struct tap_dconn_s   tap_dconn_t;
typedef struct tap_uconn_s   tap_uconn_t;
typedef struct tap_txn_s     tap_txn_t;

struct evhttp;
struct ssl_ctx_st;

typedef enum {
    TAP_LIMIT_CONNECT_TIMEOUT = 0,
    TAP_LIMIT_RESPONSE_HEADER_TIMEOUT,
    TAP_LIMIT_STREAM_IDLE_TIMEOUT,
    TAP_LIMIT_CLIENT_HEADER_TIMEOUT,
    TAP_LIMIT_CLIENT_BODY_TIMEOUT,
    TAP_LIMIT_KEEPALIVE_TIMEOUT,
    TAP_LIMIT_MAX_HEADER_BYTES,
    TAP_LIMIT_MAX_BODY_BYTES,
    TAP_LIMIT_MAX_CONNECTIONS,
    TAP_LIMIT_ACCESS_LOG,
    TAP_LIMIT_N,
} tap_limit_e;

/* Per-worker counters: written by their worker only, read by the admin
 * thread; both sides use relaxed atomics so no lock is ever taken. */
typedef struct tap_wstats_s {
    uint64_t  requests[6];             /* by status class; [0]: no status */
    uint64_t  limits[TAP_LIMIT_N];
    uint64_t  retries;
    uint64_t  parse[2][TAP_GEN_PARSE_N];   /* analysed exchanges: [request/response][outcome] */
    uint64_t  active_conns;
    uint64_t  accepted;
} tap_wstats_t;

#define TAP_STAT_ADD(var, n)                                                                    \
    __atomic_store_n(&(var), __atomic_load_n(&(var), __ATOMIC_RELAXED) + (uint64_t) (n),       \
        __ATOMIC_RELAXED)
#define TAP_STAT_GET(var)  __atomic_load_n(&(var), __ATOMIC_RELAXED)

/* Passive health of one server, shared by all workers (atomics). */
typedef struct tap_health_s {
    unsigned  fails;
    unsigned  down;                    /* failed its active checks */
    int64_t   until_ms;                /* ejected until this coarse monotonic ms */
    int64_t   backoff_ms;              /* next ejection length */
} __attribute__((aligned(64))) tap_health_t;

/*
 * A deadline moved on every request (io.c).  The libevent timer stays armed
 * at the earliest deadline asked for: setting a later one, or none, costs no
 * call into libevent, and a timer that fires before the deadline of the
 * moment re-arms itself for the rest.  Its callback starts with
 * tap_lazy_fired(), and does its work only when that returns 1.
 */
typedef struct tap_lazy_s {
    struct event  *ev;
    int64_t        due;                /* tap_coarse_ns() deadline; 0: none */
    int64_t        armed;              /* when ev will fire; 0: not pending */
} tap_lazy_t;

/*
 * The reading, and direct writing, of one connection (io.c).  A read into an
 * empty input lands in the worker's read buffer, not in the bufferevent:
 * while the read callback runs, [dp, dp + dlen) holds what it has not
 * consumed yet, and what is left when it returns moves to the input.  The
 * callback reads with tap_rd_peek() and tap_rd_drain(), and asks
 * tap_rd_pending() how much is waiting.
 */
typedef struct tap_rd_s {
    struct event         ev;
    struct bufferevent  *bev;
    const char          *dp;           /* unconsumed bytes of the read in progress */
    size_t               dlen;
    size_t               high;         /* stop reading at this much input; 0: no limit */
    int64_t              timeout_ms;   /* idle time between reads; 0: none */
    tap_lazy_t           timer;        /* runs the timeout while reading is on */
    unsigned             plain:1;      /* ours; on TLS the bufferevent reads */
    unsigned             on:1;         /* reading is wanted */
    unsigned             added:1;
    unsigned             assigned:1;
} tap_rd_t;

/* The first contiguous piece of what is waiting, in *v; 0 when nothing is. */
static inline int
tap_rd_peek(tap_rd_t *rd, struct evbuffer_iovec *v)
{
    if (rd->dlen > 0) {
        v->iov_base = (void *) rd->dp;
        v->iov_len = rd->dlen;
        return 1;
    }
    return evbuffer_peek(bufferevent_get_input(rd->bev), -1, NULL, v, 1) >= 1
           && v->iov_len > 0;
}

/* Consumes n bytes of the piece tap_rd_peek() gave. */
static inline void
tap_rd_drain(tap_rd_t *rd, size_t n)
{
    if (rd->dlen > 0) {
        rd->dp += n;
        rd->dlen -= n;
        return;
    }
    evbuffer_drain(bufferevent_get_input(rd->bev), n);
}

static inline size_t
tap_rd_pending(tap_rd_t *rd)
{
    return rd->dlen + evbuffer_get_length(bufferevent_get_input(rd->bev));
}

/* Throws away everything waiting. */
static inline void
tap_rd_discard(tap_rd_t *rd)
{
    struct evbuffer  *in = bufferevent_get_input(rd->bev);

    rd->dlen = 0;
    evbuffer_drain(in, evbuffer_get_length(in));
}

typedef struct tap_upool_s {
    tap_uconn_t  *idle;                /* most recently used first */
    unsigned      nidle;
    unsigned      inflight;            /* connections attached to a txn */
} tap_upool_t;

struct tap_uconn_s {
    tap_worker_t        *w;
    unsigned             server;
    struct bufferevent  *bev;
    tap_rd_t             rd;
    tap_txn_t           *txn;          /* NULL while idle in the pool */
    tap_uconn_t         *prev;
    tap_uconn_t         *next;
    int64_t              now;          /* when the input being parsed was read */
    unsigned             connected:1;
    unsigned             reused:1;
    unsigned             idle:1;
};

typedef enum {
    TAP_DPHASE_NONE = 0,
    TAP_DPHASE_IDLE,                   /* keep-alive wait between requests */
    TAP_DPHASE_HEADER,                 /* reading a request head */
    TAP_DPHASE_BODY,                   /* reading a request body */
    TAP_DPHASE_LINGER,                 /* flushing and closing */
} tap_dphase_e;

typedef enum {
    TAP_UPHASE_NONE = 0,
    TAP_UPHASE_CONNECT,
    TAP_UPHASE_HEADER,                 /* waiting for the response head */
} tap_uphase_e;

struct tap_txn_s {
    tap_dconn_t      *dc;
    tap_txn_t        *next;            /* among a worker's spares */
    tap_exchange_t    ex;
    tap_uconn_t      *uc;
    int               server;          /* server of the current attempt, -1 none */
    uint64_t          tried;           /* bit per server index (first 64) */
    struct evbuffer  *ubody;           /* body bytes not yet handed to a connection */
    char             *path;            /* path_buf, or malloc'd when longer */
    char              path_buf[128];
    tap_fx_t         *fx;              /* filter chain, NULL when no filter applies */
    uint64_t          body_len;        /* Content-Length sent upstream when rewritten */
    tap_uphase_e      uphase;
    unsigned          has_body:1;
    unsigned          req_done:1;      /* the whole request was received */
    unsigned          body_sent:1;     /* some body byte went to a connection */
    unsigned          end_sent:1;      /* the last chunk went upstream */
    unsigned          resp_started:1;  /* a response head went to the client */
    unsigned          resp_done:1;
    unsigned          resp_chunked:1;  /* we chunk the body for the client */
    unsigned          resp_close:1;    /* the client connection closes after this */
    unsigned          head_req:1;
    unsigned          expect_continue:1;
    unsigned          fresh_only:1;    /* next attempt must not use the pool */
    unsigned          held:1;          /* body held until complete: filters may rewrite it */
    unsigned          rewritten:1;     /* ... and they did */
    unsigned          fx_req:1;        /* request-end filters still to run */
    unsigned          fx_done:1;       /* the chain completed */
};

struct tap_dconn_s {
    tap_worker_t        *w;
    struct bufferevent  *bev;
    tap_rd_t             rd;
    tap_reqp_t           rp;
    tap_respp_t          rsp;          /* response parser, reused per txn */
    tap_txn_t           *txn;
    int64_t              now;          /* when the input being parsed was read */
    tap_lazy_t           timer;        /* downstream phases */
    tap_lazy_t           utimer;       /* upstream phases of the txn */
    struct event        *resume_ev;    /* deferred parsing of pipelined input */
    tap_dconn_t         *prev;
    tap_dconn_t         *next;
    char                 ip[INET6_ADDRSTRLEN];
    tap_dphase_e         phase;
    unsigned             busy;
    unsigned             nreq;
    unsigned             dead:1;
    unsigned             closing:1;
    unsigned             shut:1;
    unsigned             rp_paused:1;  /* stopped after a request, awaiting its response */
    unsigned             in_process:1; /* parsing input: upstream writes wait for its end */
    unsigned             read_blocked:1;
};

struct tap_worker_s {
    tap_proxy_t             *px;
    const tap_psettings_t   *ps;
    unsigned                 id;
    struct event_base       *base;
    pthread_t                thread;
    unsigned                 started:1;
    unsigned                 draining:1;
    int                      done;     /* atomic: loop finished */
    struct evconnlistener  **listeners;
    size_t                   nlisteners;
    int                      notify[2];
    struct event            *notify_ev;
    tap_rng_t                rng;
    tap_wstats_t             st;
    tap_upool_t             *pools;
    unsigned                 rr;
    tap_dconn_t             *conns;
    unsigned                 nconns;
    tap_alog_buf_t           log;
    tap_tring_t             *tring;    /* to the telemetry hub; NULL: none */
    tap_lstats_t             lat;      /* latency percentiles per series (GET /stats) */
    tap_txn_t               *spare;    /* finished transactions kept for reuse */
    unsigned                 nspare;
};

struct tap_proxy_s {
    const tap_psettings_t   *ps;
    tap_worker_t            *workers;
    unsigned                 nworkers;
    tap_health_t            *health;
    tap_alog_t              *alog;
    int                      draining;          /* atomic */
    unsigned                 nconns;            /* atomic, for max_connections */
    struct event_base       *base;              /* admin, signals, health checks */
    struct ssl_ctx_st       *tls_server;        /* listener TLS, or NULL */
    struct ssl_ctx_st       *tls_client;        /* https upstreams, or NULL */
    struct tap_hcheck_s     *checks;            /* active health checks */
    tap_tel_t               *tel;               /* metrics, spans, logs; NULL: none */
    struct tap_admin_fams_s *fams;              /* the proxy's metric families */
};


/*
 * Clocks.  An exchange's timestamps come from tap_now_ns(), read once per
 * event where one reading serves several stamps (the read that brought the
 * bytes in).  Deadlines, which are seconds long, use the coarse clock, which
 * costs a tenth as much and lags by at most one tick (clock_getres() of
 * CLOCK_MONOTONIC_COARSE, 4 ms on most kernels).  Wall-clock times derive
 * from monotonic ones (tap_wall_ns()).
 */
static inline int64_t
tap_now_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static inline int64_t
tap_coarse_ns(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


int64_t tap_wall_ns(int64_t mono);


static inline struct timeval
tap_ms_tv(int64_t ms)
{
    struct timeval  tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}


/* server.c */
void tap_dconn_accept(tap_worker_t *w, evutil_socket_t fd, const struct sockaddr *sa);
void tap_dconn_close_idle(tap_dconn_t *dc);
void tap_txn_spares_free(tap_worker_t *w);
void tap_dconn_kill(tap_dconn_t *dc, const char *why);
void tap_txn_respond_error(tap_txn_t *t, int status, const char *code, const char *msg);
void tap_txn_complete(tap_txn_t *t);
void tap_txn_truncate(tap_txn_t *t, const char *why);
void tap_dconn_read_unblock(tap_dconn_t *dc);
void tap_txn_analyse_request(tap_txn_t *t);
void tap_txn_analyse_end(tap_txn_t *t, int cut);

/* io.c */
void tap_rd_init(tap_rd_t *rd, struct bufferevent *bev);
void tap_rd_enable(tap_rd_t *rd);
void tap_rd_disable(tap_rd_t *rd);
void tap_rd_update(tap_rd_t *rd);
void tap_rd_set_high(tap_rd_t *rd, size_t high);
void tap_rd_set_timeout(tap_rd_t *rd, int64_t ms);
void tap_rd_stop(tap_rd_t *rd);
void tap_lazy_set(tap_lazy_t *lz, int64_t ms);
int tap_lazy_fired(tap_lazy_t *lz);
char *tap_rd_space(tap_rd_t *rd, size_t n);
void tap_rd_wrote(size_t n);
void tap_rd_write(tap_rd_t *rd, const void *p, size_t n);
struct evbuffer *tap_rd_output(tap_rd_t *rd);
void tap_rd_send(tap_rd_t *rd);
void tap_rd_sent(tap_rd_t *rd);

/* client.c */
void tap_txn_build_head(tap_txn_t *t, tap_rd_t *rd);
void tap_txn_upstream_start(tap_txn_t *t);
void tap_txn_flush_body(tap_txn_t *t);
void tap_txn_upstream_drop(tap_txn_t *t);
void tap_txn_client_drained(tap_txn_t *t);
void tap_txn_client_write(void *ctx, const char *p, size_t len);
void tap_uconn_on_utimer(evutil_socket_t fd, short what, void *arg);

/* upstream.c */
int tap_upstream_pick(tap_worker_t *w, uint64_t tried);
tap_uconn_t *tap_upool_get(tap_worker_t *w, unsigned server);
tap_uconn_t *tap_uconn_connect(tap_worker_t *w, unsigned server);
void tap_uconn_release(tap_uconn_t *uc);
void tap_uconn_close(tap_uconn_t *uc);
void tap_upool_close_all(tap_worker_t *w);
void tap_health_fail(tap_proxy_t *px, unsigned server);
void tap_health_ok(tap_proxy_t *px, unsigned server);
int tap_health_up(tap_proxy_t *px, unsigned server, int64_t now_ms);

/* worker.c */
void tap_worker_conn_gone(tap_worker_t *w);

/* tls.c */
int tap_tls_init(tap_proxy_t *px, char **err);
void tap_tls_cleanup(tap_proxy_t *px);
struct bufferevent *tap_tls_accept_bev(tap_proxy_t *px, struct event_base *base,
    evutil_socket_t fd);
struct bufferevent *tap_tls_connect_bev(tap_proxy_t *px, struct event_base *base,
    unsigned server);
int tap_tls_failed(struct bufferevent *bev);

/* health.c */
int tap_hcheck_start(tap_proxy_t *px);
void tap_hcheck_stop(tap_proxy_t *px);

/* admin.c */
int tap_admin_start(tap_proxy_t *px, struct evhttp **out);
int tap_admin_metrics_init(tap_proxy_t *px);
void tap_admin_metrics_cleanup(tap_proxy_t *px);

#endif /* TAP_PROXY_INT_H */
