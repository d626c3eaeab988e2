/*
 * worker.c: start-up, worker threads, signals and drain.
 *
 * tap_proxy_run() resolves the configuration, opens the access log, binds
 * the admin listener and starts N workers.  Each worker is a thread with its
 * own event_base, its own SO_REUSEPORT listener per listen address (the
 * kernel spreads connections), its own upstream pools, random generator and
 * counters: nothing on the request path is shared but the passive-health
 * table and the connection count, which are atomics.  Workers are told about
 * drain through a pipe each (not through libevent's cross-thread locking, so
 * event bases run without locks).
 *
 * The calling thread runs a separate event_base with the admin server and
 * the SIGTERM/SIGINT handlers (signals are blocked in the workers).  On a
 * signal: the draining flag turns /readyz to 503, workers free their
 * listeners, close idle keep-alive and pooled connections and let requests
 * in flight finish; after timeouts.drain the rest are cut.  When every
 * worker's loop has ended the threads are joined, everything is freed and
 * tap_proxy_run() returns 0.
 */

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/http.h>

#include "tap_core.h"
#include "proxy/proxy.h"
#include "proxy/proxy-int.h"


/* How long exporters may take to send what is left at exit. */
#define TAP_TEL_SHUTDOWN_MS  3000

typedef struct tap_ctl_s {
    tap_proxy_t    *px;
    struct event   *sigterm;
    struct event   *sigint;
    struct event   *drain_timer;
    struct event   *poll_timer;
    unsigned        killed:1;
} tap_ctl_t;


static void
tap_worker_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int socklen, void *arg)
{
    tap_worker_t  *w = arg;

    if (w->draining) {
        evutil_closesocket(fd);
        return;
    }
    tap_dconn_accept(w, fd, sa);
}


static void
tap_worker_on_accept_error(struct evconnlistener *l, void *arg)
{
    /* EMFILE and friends: keep listening; connections wait in the backlog */
}


void
tap_worker_conn_gone(tap_worker_t *w)
{
    if (w->draining && w->nconns == 0) {
        event_base_loopexit(w->base, NULL);
    }
}


static void
tap_worker_free_listeners(tap_worker_t *w)
{
    size_t  i;

    for (i = 0; i < w->nlisteners; i++) {
        if (w->listeners[i] != NULL) {
            evconnlistener_free(w->listeners[i]);
            w->listeners[i] = NULL;
        }
    }
}


static void
tap_worker_drain(tap_worker_t *w)
{
    tap_dconn_t  *dc, *next;

    if (w->draining) {
        return;
    }
    w->draining = 1;
    tap_worker_free_listeners(w);
    for (dc = w->conns; dc != NULL; dc = next) {
        next = dc->next;
        tap_dconn_close_idle(dc);
    }
    tap_upool_close_all(w);
    if (w->nconns == 0) {
        event_base_loopexit(w->base, NULL);
    }
}


static void
tap_worker_kill_all(tap_worker_t *w)
{
    w->draining = 1;
    while (w->conns != NULL) {
        tap_dconn_kill(w->conns, "drain_timeout");
    }
    tap_upool_close_all(w);
    tap_txn_spares_free(w);
}


static void
tap_worker_on_notify(evutil_socket_t fd, short what, void *arg)
{
    tap_worker_t  *w = arg;
    char           cmd[16];
    ssize_t        n, i;

    while ((n = read(fd, cmd, sizeof(cmd))) > 0) {
        for (i = 0; i < n; i++) {
            if (cmd[i] == 'D') {
                tap_worker_drain(w);
            } else if (cmd[i] == 'K') {
                tap_worker_kill_all(w);
                event_base_loopexit(w->base, NULL);
            }
        }
    }
}


static void *
tap_worker_main(void *arg)
{
    tap_worker_t  *w = arg;

    event_base_dispatch(w->base);

    tap_worker_free_listeners(w);
    tap_worker_kill_all(w);
    tap_alog_buf_cleanup(&w->log);
    tap_fx_thread_done();
    tap_gen_thread_done();
    __atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
    return NULL;
}


static void
tap_worker_cleanup(tap_worker_t *w)
{
    if (w->ps == NULL) {
        return;                                 /* never initialised */
    }
    tap_worker_free_listeners(w);
    tap_worker_kill_all(w);
    tap_alog_buf_cleanup(&w->log);
    tap_lstats_cleanup(&w->lat);
    free(w->listeners);
    free(w->pools);
    if (w->notify_ev != NULL) {
        event_free(w->notify_ev);
    }
    if (w->notify[0] >= 0) {
        close(w->notify[0]);
        close(w->notify[1]);
    }
    if (w->base != NULL) {
        event_base_free(w->base);
    }
}


static void
tap_worker_notify(tap_worker_t *w, char cmd)
{
    ssize_t  n;

    do {
        n = write(w->notify[1], &cmd, 1);
    } while (n < 0 && errno == EINTR);
}


/* Binds the worker's listeners.  addrs may have port 0: the first worker's
 * port is then written back so that every worker shares it. */
static int
tap_worker_init(tap_worker_t *w, tap_proxy_t *px, unsigned id, tap_paddr_t *addrs, size_t n)
{
    const unsigned  flags = LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE
        | LEV_OPT_CLOSE_ON_EXEC;
    size_t          i;

    w->px = px;
    w->ps = px->ps;
    w->id = id;
    w->notify[0] = w->notify[1] = -1;
    w->tring = px->tel != NULL ? tap_tel_ring(px->tel, id) : NULL;
    tap_rng_seed(&w->rng);

    w->base = event_base_new();
    w->pools = calloc(px->ps->nservers ? px->ps->nservers : 1, sizeof(tap_upool_t));
    w->listeners = calloc(n ? n : 1, sizeof(struct evconnlistener *));
    if (w->base == NULL || w->pools == NULL || w->listeners == NULL
        || pipe2(w->notify, O_NONBLOCK | O_CLOEXEC) != 0)
    {
        fprintf(stderr, "infertap: worker %u: out of resources\n", id);
        return TAP_ERROR;
    }
    w->notify_ev = event_new(w->base, w->notify[0], EV_READ | EV_PERSIST, tap_worker_on_notify,
        w);
    if (w->notify_ev == NULL || event_add(w->notify_ev, NULL) != 0
        || tap_alog_buf_init(&w->log, px->alog, w->base) != TAP_OK
        || (px->ps->has_admin && px->ps->max_series > 0
            && tap_lstats_init(&w->lat, px->ps->max_series) != TAP_OK))
    {
        fprintf(stderr, "infertap: worker %u: out of resources\n", id);
        return TAP_ERROR;
    }

    for (i = 0; i < n; i++) {
        /* a deep accept queue: a burst of connects must not wait for SYN
         * retransmits (the kernel caps it at net.core.somaxconn) */
        w->listeners[i] = evconnlistener_new_bind(w->base, tap_worker_on_accept, w, flags, 4096,
            (struct sockaddr *) &addrs[i].ss, (int) addrs[i].len);
        if (w->listeners[i] == NULL) {
            fprintf(stderr, "infertap: cannot listen on %s: %s\n", addrs[i].text,
                strerror(errno));
            return TAP_ERROR;
        }
        w->nlisteners = i + 1;
        evconnlistener_set_error_cb(w->listeners[i], tap_worker_on_accept_error);

        if (id == 0) {
            struct sockaddr_storage  ss;
            socklen_t                len = sizeof(ss);

            if (getsockname(evconnlistener_get_fd(w->listeners[i]), (struct sockaddr *) &ss,
                    &len) == 0)
            {
                in_port_t  port = ss.ss_family == AF_INET6
                    ? ((struct sockaddr_in6 *) &ss)->sin6_port
                    : ((struct sockaddr_in *) &ss)->sin_port;

                if (addrs[i].ss.ss_family == AF_INET6) {
                    ((struct sockaddr_in6 *) &addrs[i].ss)->sin6_port = port;
                } else {
                    ((struct sockaddr_in *) &addrs[i].ss)->sin_port = port;
                }
                fprintf(stderr, "infertap: listening on %s (port %u)\n", addrs[i].text,
                    (unsigned) ntohs(port));
            }
        }
    }
    return TAP_OK;
}


static void
tap_ctl_on_poll(evutil_socket_t fd, short what, void *arg)
{
    tap_ctl_t     *ctl = arg;
    tap_proxy_t   *px = ctl->px;
    unsigned       i;

    for (i = 0; i < px->nworkers; i++) {
        if (!__atomic_load_n(&px->workers[i].done, __ATOMIC_ACQUIRE)) {
            return;
        }
    }
    event_base_loopexit(px->base, NULL);
}


static void
tap_ctl_on_drain_timeout(evutil_socket_t fd, short what, void *arg)
{
    tap_ctl_t    *ctl = arg;
    unsigned      i;

    ctl->killed = 1;
    for (i = 0; i < ctl->px->nworkers; i++) {
        tap_worker_notify(&ctl->px->workers[i], 'K');
    }
}


static void
tap_ctl_on_signal(evutil_socket_t sig, short what, void *arg)
{
    tap_ctl_t             *ctl = arg;
    tap_proxy_t           *px = ctl->px;
    const struct timeval   poll = { 0, 20000 };
    struct timeval         tv;
    unsigned               i;

    if (__atomic_exchange_n(&px->draining, 1, __ATOMIC_RELAXED)) {
        /* a second signal: stop now */
        tap_ctl_on_drain_timeout(-1, 0, ctl);
        return;
    }
    fprintf(stderr, "infertap: signal %d, draining\n", (int) sig);
    for (i = 0; i < px->nworkers; i++) {
        tap_worker_notify(&px->workers[i], 'D');
    }
    tv = tap_ms_tv(px->ps->drain_ms > 0 ? px->ps->drain_ms : 0);
    evtimer_add(ctl->drain_timer, &tv);
    event_add(ctl->poll_timer, &poll);
}


int
tap_proxy_run_settings(const tap_psettings_t *ps)
{
    tap_proxy_t     px;
    tap_ctl_t       ctl;
    tap_paddr_t    *addrs = NULL;
    struct evhttp  *admin = NULL;
    sigset_t        set, old;
    char           *err = NULL;
    unsigned        i, started = 0;
    long            ncpu;
    int             rc = 1;

    memset(&px, 0, sizeof(px));
    memset(&ctl, 0, sizeof(ctl));
    px.ps = ps;
    ctl.px = &px;
    signal(SIGPIPE, SIG_IGN);

    ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    px.nworkers = ps->workers > 0 ? ps->workers : (unsigned) (ncpu > 0 ? ncpu : 1);

    px.health = aligned_alloc(64, sizeof(tap_health_t) * (ps->nservers ? ps->nservers : 1));
    px.workers = calloc(px.nworkers, sizeof(tap_worker_t));
    addrs = calloc(ps->nlisten ? ps->nlisten : 1, sizeof(tap_paddr_t));
    px.base = event_base_new();
    if (px.health == NULL || px.workers == NULL || addrs == NULL || px.base == NULL) {
        fprintf(stderr, "infertap: out of memory\n");
        goto done;
    }
    memset(px.health, 0, sizeof(tap_health_t) * (ps->nservers ? ps->nservers : 1));
    for (i = 0; i < ps->nservers; i++) {
        px.health[i].backoff_ms = ps->health_backoff_ms;
    }
    if (ps->nlisten > 0) {
        memcpy(addrs, ps->listen, ps->nlisten * sizeof(tap_paddr_t));
    }

    if (tap_alog_open(ps->access_log, &px.alog, &err) != TAP_OK) {
        fprintf(stderr, "infertap: %s\n", err ? err : "cannot open the access log");
        goto done;
    }
    if (tap_tls_init(&px, &err) != TAP_OK) {
        fprintf(stderr, "infertap: %s\n", err ? err : "cannot set up TLS");
        goto done;
    }
    if (ps->has_tel) {
        px.tel = tap_tel_new(px.base, &ps->tel, px.nworkers, &err);
        if (px.tel == NULL || tap_admin_metrics_init(&px) != TAP_OK
            || tap_tel_access_log(px.tel, px.alog) != TAP_OK)
        {
            fprintf(stderr, "infertap: %s\n", err ? err : "telemetry: out of memory");
            goto done;
        }
    }
    if (ps->has_admin && tap_admin_start(&px, &admin) != TAP_OK) {
        goto done;
    }
    if (tap_hcheck_start(&px) != TAP_OK) {
        fprintf(stderr, "infertap: out of memory\n");
        goto done;
    }

    for (i = 0; i < px.nworkers; i++) {
        if (tap_worker_init(&px.workers[i], &px, i, addrs, ps->nlisten) != TAP_OK) {
            goto done;
        }
    }

    /* workers inherit a mask without SIGTERM/SIGINT: the control loop
     * alone takes them */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    for (i = 0; i < px.nworkers; i++) {
        if (pthread_create(&px.workers[i].thread, NULL, tap_worker_main, &px.workers[i]) != 0) {
            break;
        }
        px.workers[i].started = 1;
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    ctl.sigterm = evsignal_new(px.base, SIGTERM, tap_ctl_on_signal, &ctl);
    ctl.sigint = evsignal_new(px.base, SIGINT, tap_ctl_on_signal, &ctl);
    ctl.drain_timer = evtimer_new(px.base, tap_ctl_on_drain_timeout, &ctl);
    ctl.poll_timer = event_new(px.base, -1, EV_PERSIST, tap_ctl_on_poll, &ctl);
    if (started < px.nworkers || ctl.sigterm == NULL || ctl.sigint == NULL
        || ctl.drain_timer == NULL || ctl.poll_timer == NULL
        || evsignal_add(ctl.sigterm, NULL) != 0 || evsignal_add(ctl.sigint, NULL) != 0)
    {
        fprintf(stderr, "infertap: cannot start the workers\n");
        for (i = 0; i < px.nworkers; i++) {
            if (px.workers[i].started) {
                tap_worker_notify(&px.workers[i], 'K');
            }
        }

    } else {
        event_base_dispatch(px.base);
        rc = 0;
    }

    for (i = 0; i < px.nworkers; i++) {
        if (px.workers[i].started) {
            pthread_join(px.workers[i].thread, NULL);
        }
    }

done:

    if (px.workers != NULL) {
        for (i = 0; i < px.nworkers; i++) {
            tap_worker_cleanup(&px.workers[i]);
        }
    }
    tap_hcheck_stop(&px);
    if (px.tel != NULL) {
        /* the workers are gone: export what they left, then stop */
        tap_tel_shutdown(px.tel, rc == 0 ? TAP_TEL_SHUTDOWN_MS : -1);
        px.tel = NULL;
    }
    tap_admin_metrics_cleanup(&px);
    if (admin != NULL) {
        evhttp_free(admin);
    }
    if (ctl.sigterm != NULL) {
        event_free(ctl.sigterm);
    }
    if (ctl.sigint != NULL) {
        event_free(ctl.sigint);
    }
    if (ctl.drain_timer != NULL) {
        event_free(ctl.drain_timer);
    }
    if (ctl.poll_timer != NULL) {
        event_free(ctl.poll_timer);
    }
    if (px.base != NULL) {
        event_base_free(px.base);
    }
    tap_alog_close(px.alog);
    tap_tls_cleanup(&px);
    free(px.workers);
    free(px.health);
    free(addrs);
    free(err);
    return rc;
}


int
tap_proxy_run(const tap_conf_t *cf)
{
    tap_psettings_t  ps;
    char            *err = NULL;
    int              rc;

    if (tap_psettings_from_conf(&ps, cf, &err) != TAP_OK) {
        fprintf(stderr, "infertap: %s\n", err ? err : "invalid configuration");
        free(err);
        return 1;
    }
    rc = tap_proxy_run_settings(&ps);
    tap_psettings_cleanup(&ps);
    return rc;
}
