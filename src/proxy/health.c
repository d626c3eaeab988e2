/*
 * health.c: active health checks of the upstream servers.
 *
 * The control thread (the one that runs the admin listener and takes the
 * signals) sends each server `GET <health.path>` every health.interval, on a
 * fresh connection (TLS for https:// servers) with "Connection: close", and
 * reads no more than the status line.  A check fails when the connection or
 * the answer does not come within health.timeout, or when the status is 5xx:
 * vLLM answers 503 while it loads a model.  Any other status counts as
 * alive, so a server without a health endpoint (a 404) is not ejected for
 * it.  health.fails consecutive failed checks mark the server down; one
 * good check brings it back.  The verdict is one atomic flag in the shared
 * health table (tap_health_t.down), which the workers' balancer and /readyz
 * read; the passive ejection of upstream.c works alongside it.
 */

#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "tap_core.h"
#include "proxy/proxy-int.h"


typedef struct tap_hcheck_s {
    tap_proxy_t         *px;
    unsigned             server;
    struct event        *timer;
    struct bufferevent  *bev;
    unsigned             fails;        /* consecutive failed checks */
} tap_hcheck_t;


static void tap_hcheck_on_timer(evutil_socket_t fd, short what, void *arg);


static void
tap_hcheck_done(tap_hcheck_t *hc, int ok, const char *why)
{
    tap_proxy_t            *px = hc->px;
    const tap_psettings_t  *ps = px->ps;
    tap_health_t           *h = &px->health[hc->server];
    struct timeval          tv = tap_ms_tv(ps->health_interval_ms);

    if (hc->bev != NULL) {
        bufferevent_free(hc->bev);
        hc->bev = NULL;
    }

    if (ok) {
        hc->fails = 0;
        if (__atomic_load_n(&h->down, __ATOMIC_RELAXED)) {
            __atomic_store_n(&h->down, 0, __ATOMIC_RELAXED);
            fprintf(stderr, "infertap: upstream %s is up again\n", ps->servers[hc->server].text);
        }

    } else if (++hc->fails >= TAP_MAX(ps->health_fails, 1)
               && !__atomic_load_n(&h->down, __ATOMIC_RELAXED))
    {
        __atomic_store_n(&h->down, 1, __ATOMIC_RELAXED);
        fprintf(stderr, "infertap: upstream %s is down: %s\n", ps->servers[hc->server].text, why);
    }

    evtimer_add(hc->timer, &tv);
}


static void
tap_hcheck_on_read(struct bufferevent *bev, void *arg)
{
    tap_hcheck_t     *hc = arg;
    struct evbuffer  *in = bufferevent_get_input(bev);
    char              line[16];
    int               status;

    /* "HTTP/1.1 200 " is all we need */
    if (evbuffer_get_length(in) < 13) {
        return;
    }
    evbuffer_copyout(in, line, 13);
    line[13] = '\0';
    if (memcmp(line, "HTTP/1.", 7) != 0 || line[8] != ' '
        || line[9] < '1' || line[9] > '9' || line[10] < '0' || line[10] > '9'
        || line[11] < '0' || line[11] > '9')
    {
        tap_hcheck_done(hc, 0, "not an HTTP response");
        return;
    }
    status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    if (status >= 500) {
        snprintf(line, sizeof(line), "status %d", status);
        tap_hcheck_done(hc, 0, line);
        return;
    }
    tap_hcheck_done(hc, 1, NULL);
}


static void
tap_hcheck_on_event(struct bufferevent *bev, short what, void *arg)
{
    tap_hcheck_t           *hc = arg;
    const tap_psettings_t  *ps = hc->px->ps;
    const tap_paddr_t      *a = &ps->servers[hc->server];

    if (what & BEV_EVENT_CONNECTED) {
        evbuffer_add_printf(bufferevent_get_output(bev),
            "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: infertap-health\r\n"
            "Connection: close\r\n\r\n", ps->health_path, a->host);
        bufferevent_enable(bev, EV_READ | EV_WRITE);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT) {
        tap_hcheck_done(hc, 0, "timed out");
    } else if (what & BEV_EVENT_EOF) {
        tap_hcheck_done(hc, 0, "connection closed before a status line");
    } else if (tap_tls_failed(bev)) {
        tap_hcheck_done(hc, 0, "TLS handshake failed");
    } else {
        tap_hcheck_done(hc, 0, "cannot connect");
    }
}


static void
tap_hcheck_on_timer(evutil_socket_t fd, short what, void *arg)
{
    tap_hcheck_t           *hc = arg;
    tap_proxy_t            *px = hc->px;
    const tap_paddr_t      *a = &px->ps->servers[hc->server];
    struct timeval          tv = tap_ms_tv(px->ps->health_timeout_ms);

    hc->bev = tap_tls_connect_bev(px, px->base, hc->server);
    if (hc->bev == NULL) {
        tap_hcheck_done(hc, 0, "out of memory");
        return;
    }
    bufferevent_setcb(hc->bev, tap_hcheck_on_read, NULL, tap_hcheck_on_event, hc);
    bufferevent_set_timeouts(hc->bev, &tv, &tv);
    bufferevent_enable(hc->bev, EV_READ | EV_WRITE);
    if (bufferevent_socket_connect(hc->bev, (const struct sockaddr *) &a->ss, (int) a->len) != 0) {
        tap_hcheck_done(hc, 0, "cannot connect");
    }
}


int
tap_hcheck_start(tap_proxy_t *px)
{
    const tap_psettings_t  *ps = px->ps;
    struct timeval          now = { 0, 0 };
    tap_hcheck_t           *hc;
    size_t                  i;

    if (ps->health_interval_ms <= 0 || ps->nservers == 0) {
        return TAP_OK;
    }
    px->checks = calloc(ps->nservers, sizeof(tap_hcheck_t));
    if (px->checks == NULL) {
        return TAP_ERROR;
    }
    for (i = 0; i < ps->nservers; i++) {
        hc = &px->checks[i];
        hc->px = px;
        hc->server = (unsigned) i;
        hc->timer = evtimer_new(px->base, tap_hcheck_on_timer, hc);
        if (hc->timer == NULL) {
            return TAP_ERROR;
        }
        evtimer_add(hc->timer, &now);
    }
    return TAP_OK;
}


void
tap_hcheck_stop(tap_proxy_t *px)
{
    tap_hcheck_t  *hc;
    size_t         i;

    if (px->checks == NULL) {
        return;
    }
    for (i = 0; i < px->ps->nservers; i++) {
        hc = &px->checks[i];
        if (hc->bev != NULL) {
            bufferevent_free(hc->bev);
        }
        if (hc->timer != NULL) {
            event_free(hc->timer);
        }
    }
    free(px->checks);
    px->checks = NULL;
}
