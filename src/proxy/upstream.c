/*
 * upstream.c: upstream servers as seen by one worker: balancing, passive
 * health, and the keep-alive pool.
 *
 * Pools are per worker and per server, so taking or returning a connection
 * takes no lock.  Idle connections are kept most-recently-used first (the
 * warmest socket is reused, the coldest times out), at most pool.max_idle per
 * server, and each is watched while idle: any byte or EOF from the server,
 * or pool.idle_timeout without use, closes it, so a connection the server
 * has closed is normally gone before anyone tries to reuse it.
 *
 * Health is passive and shared by the workers through relaxed atomics on a
 * small table (one cache line per server): health.fails consecutive
 * failures eject a server for health.backoff, doubled at each new ejection
 * up to health.backoff_max; a success resets it.  The table is only written
 * on failure or on the first success after one, so the common path reads it
 * and never writes.  least_request looks at this worker's in-flight count
 * only (no shared counter on the request path); ties go round-robin.
 */

#include "config.h"

#include <stdlib.h>

#include "tap_core.h"
#include "proxy/proxy-int.h"


static void tap_uconn_on_idle_read(struct bufferevent *bev, void *arg);
static void tap_uconn_on_idle_event(struct bufferevent *bev, short what, void *arg);


int
tap_health_up(tap_proxy_t *px, unsigned server, int64_t now_ms)
{
    return __atomic_load_n(&px->health[server].until_ms, __ATOMIC_RELAXED) <= now_ms
           && !__atomic_load_n(&px->health[server].down, __ATOMIC_RELAXED);
}


void
tap_health_fail(tap_proxy_t *px, unsigned server)
{
    tap_health_t           *h = &px->health[server];
    const tap_psettings_t  *ps = px->ps;
    int64_t                 backoff;
    unsigned                fails;

    fails = __atomic_add_fetch(&h->fails, 1, __ATOMIC_RELAXED);
    if (ps->health_fails == 0 || fails < ps->health_fails) {
        return;
    }
    backoff = __atomic_load_n(&h->backoff_ms, __ATOMIC_RELAXED);
    if (backoff <= 0) {
        backoff = ps->health_backoff_ms;
    }
    __atomic_store_n(&h->until_ms, tap_coarse_ns() / 1000000 + backoff, __ATOMIC_RELAXED);
    backoff = TAP_MIN(backoff * 2, ps->health_backoff_max_ms);
    __atomic_store_n(&h->backoff_ms, backoff, __ATOMIC_RELAXED);
}


void
tap_health_ok(tap_proxy_t *px, unsigned server)
{
    tap_health_t  *h = &px->health[server];

    if (__atomic_load_n(&h->fails, __ATOMIC_RELAXED) != 0) {
        __atomic_store_n(&h->fails, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&h->backoff_ms, px->ps->health_backoff_ms, __ATOMIC_RELAXED);
    }
}


int
tap_upstream_pick(tap_worker_t *w, uint64_t tried)
{
    const tap_psettings_t  *ps = w->ps;
    int64_t                 now_ms = tap_coarse_ns() / 1000000;
    unsigned                n = (unsigned) ps->nservers, i, k, best_load = 0;
    int                     best = -1, pass;

    if (n == 0) {
        return -1;
    }

    /* first pass: healthy servers not tried yet; second: any healthy one */
    for (pass = 0; pass < 2 && best < 0; pass++) {
        for (k = 0; k < n; k++) {
            i = (w->rr + k) % n;
            if (!tap_health_up(w->px, i, now_ms)
                || (pass == 0 && i < 64 && (tried & (1ULL << i))))
            {
                continue;
            }
            if (ps->balance == TAP_BALANCE_ROUND_ROBIN) {
                best = (int) i;
                break;
            }
            if (best < 0 || w->pools[i].inflight < best_load) {
                best = (int) i;
                best_load = w->pools[i].inflight;
            }
        }
    }

    if (best >= 0) {
        w->rr = ((unsigned) best + 1) % n;
    }
    return best;
}


static void
tap_upool_unlink(tap_upool_t *pool, tap_uconn_t *uc)
{
    if (uc->prev != NULL) {
        uc->prev->next = uc->next;
    } else {
        pool->idle = uc->next;
    }
    if (uc->next != NULL) {
        uc->next->prev = uc->prev;
    }
    uc->prev = uc->next = NULL;
    uc->idle = 0;
    pool->nidle--;
}


tap_uconn_t *
tap_upool_get(tap_worker_t *w, unsigned server)
{
    tap_upool_t  *pool = &w->pools[server];
    tap_uconn_t  *uc = pool->idle;

    if (uc == NULL) {
        return NULL;
    }
    tap_upool_unlink(pool, uc);
    uc->reused = 1;
    pool->inflight++;
    tap_rd_set_timeout(&uc->rd, 0);
    return uc;
}


void
tap_uconn_close(tap_uconn_t *uc)
{
    if (uc == NULL) {
        return;
    }
    /* every connection is either idle in its pool or counted in flight */
    if (uc->idle) {
        tap_upool_unlink(&uc->w->pools[uc->server], uc);
    } else {
        uc->w->pools[uc->server].inflight--;
    }
    if (uc->bev != NULL) {
        tap_rd_stop(&uc->rd);
        bufferevent_free(uc->bev);
    }
    free(uc);
}


void
tap_uconn_release(tap_uconn_t *uc)
{
    tap_worker_t  *w = uc->w;
    tap_upool_t   *pool = &w->pools[uc->server];

    uc->txn = NULL;
    if (w->draining || pool->nidle >= w->ps->pool_max_idle
        || tap_rd_pending(&uc->rd) > 0)
    {
        tap_uconn_close(uc);
        return;
    }

    pool->inflight--;
    uc->idle = 1;
    uc->prev = NULL;
    uc->next = pool->idle;
    if (pool->idle != NULL) {
        pool->idle->prev = uc;
    }
    pool->idle = uc;
    pool->nidle++;

    bufferevent_setcb(uc->bev, tap_uconn_on_idle_read, NULL, tap_uconn_on_idle_event, uc);
    bufferevent_setwatermark(uc->bev, EV_WRITE, 0, 0);
    tap_rd_set_timeout(&uc->rd,
        w->ps->pool_idle_timeout_ms > 0 ? w->ps->pool_idle_timeout_ms : 60000);
    tap_rd_enable(&uc->rd);
}


static void
tap_uconn_on_idle_read(struct bufferevent *bev, void *arg)
{
    /* a server says nothing between responses: data here is a protocol
     * error (or a late close notice), either way the connection is done */
    tap_uconn_close(arg);
}


static void
tap_uconn_on_idle_event(struct bufferevent *bev, short what, void *arg)
{
    tap_uconn_close(arg);
}


void
tap_upool_close_all(tap_worker_t *w)
{
    size_t  i;

    for (i = 0; i < w->ps->nservers; i++) {
        while (w->pools[i].idle != NULL) {
            tap_uconn_close(w->pools[i].idle);
        }
    }
}
