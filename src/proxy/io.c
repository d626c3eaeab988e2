/*
 * io.c: socket reads and writes without the system calls a bufferevent
 * adds around them.
 *
 * Connections are libevent bufferevents, plain or OpenSSL, so that the rest
 * of the code has one interface for both.  For plain sockets two habits of
 * the socket bufferevent cost as much as the forwarding itself: each read
 * asks the kernel how much is waiting (ioctl FIONREAD) before it reads, and
 * each write arms the write event, waits one loop round and disarms it (two
 * epoll_ctl calls).  nginx and HAProxy do neither.  So on plain sockets:
 *
 * - reading is done by a reader of ours (tap_rd_t): one EV_READ|EV_PERSIST
 *   event on the socket, registered once, that receives up to
 *   TAP_RD_CHUNK bytes straight into the bufferevent's input buffer and
 *   then runs the bufferevent's read callback, as the bufferevent would.
 *   The bufferevent's own read event stays disabled.  EOF, errors and read
 *   timeouts reach the bufferevent's event callback with the flags it would
 *   have used.
 * - writing is done at once by tap_bev_send(); only what the socket does not
 *   take is left to the bufferevent's write event.
 *
 * On TLS connections the same calls just drive the bufferevent.
 */

#include "config.h"

#include <errno.h>
#include <sys/socket.h>

#include <event2/bufferevent_ssl.h>

#include "tap_core.h"
#include "proxy/proxy-int.h"

#define TAP_RD_CHUNK  16384


static void tap_rd_on_ready(evutil_socket_t fd, short what, void *arg);


void
tap_rd_init(tap_rd_t *rd, struct bufferevent *bev)
{
    *rd = (tap_rd_t) { 0 };
    rd->bev = bev;
    rd->plain = bufferevent_openssl_get_ssl(bev) == NULL;
}


/* Arms or disarms the read event to match what is wanted. */
void
tap_rd_update(tap_rd_t *rd)
{
    evutil_socket_t  fd;
    int              want;

    if (!rd->plain) {
        return;
    }
    want = rd->on
           && (rd->high == 0 || evbuffer_get_length(bufferevent_get_input(rd->bev)) < rd->high);
    if (want && !rd->added) {
        if (!rd->assigned) {
            fd = bufferevent_getfd(rd->bev);
            if (fd < 0) {
                return;                /* not connected yet */
            }
            event_assign(&rd->ev, bufferevent_get_base(rd->bev), fd, EV_READ | EV_PERSIST,
                tap_rd_on_ready, rd);
            rd->assigned = 1;
        }
        event_add(&rd->ev, rd->has_tv ? &rd->tv : NULL);
        rd->added = 1;

    } else if (!want && rd->added) {
        event_del(&rd->ev);
        rd->added = 0;
    }
}


void
tap_rd_enable(tap_rd_t *rd)
{
    if (!rd->plain) {
        bufferevent_enable(rd->bev, EV_READ);
        return;
    }
    rd->on = 1;
    tap_rd_update(rd);
}


void
tap_rd_disable(tap_rd_t *rd)
{
    if (!rd->plain) {
        bufferevent_disable(rd->bev, EV_READ);
        return;
    }
    rd->on = 0;
    tap_rd_update(rd);
}


/* Stops reading once the input holds high bytes (0: no limit). */
void
tap_rd_set_high(tap_rd_t *rd, size_t high)
{
    if (!rd->plain) {
        bufferevent_setwatermark(rd->bev, EV_READ, 0, high);
        return;
    }
    rd->high = high;
    tap_rd_update(rd);
}


/* A read timeout (idle time between reads), or none when tv is NULL. */
void
tap_rd_set_timeout(tap_rd_t *rd, const struct timeval *tv)
{
    if (!rd->plain) {
        bufferevent_set_timeouts(rd->bev, tv, NULL);
        return;
    }
    rd->has_tv = tv != NULL;
    if (tv != NULL) {
        rd->tv = *tv;
    }
    if (rd->added) {
        if (tv != NULL) {
            event_add(&rd->ev, &rd->tv);
        } else {
            event_remove_timer(&rd->ev);   /* event_add(ev, NULL) would keep it */
        }
    }
}


/* Before the bufferevent is freed. */
void
tap_rd_stop(tap_rd_t *rd)
{
    if (rd->assigned) {
        event_del(&rd->ev);
        rd->added = 0;
    }
}


static void
tap_rd_on_ready(evutil_socket_t fd, short what, void *arg)
{
    tap_rd_t              *rd = arg;
    struct bufferevent    *bev = rd->bev;
    struct evbuffer       *in = bufferevent_get_input(bev);
    struct evbuffer_iovec  v;
    bufferevent_data_cb    readcb;
    bufferevent_event_cb   eventcb;
    void                  *cbarg;
    size_t                 len = evbuffer_get_length(in), room = TAP_RD_CHUNK;
    ssize_t                n;
    short                  flags;

    bufferevent_getcb(bev, &readcb, NULL, &eventcb, &cbarg);

    if (what & EV_TIMEOUT) {
        flags = BEV_EVENT_READING | BEV_EVENT_TIMEOUT;
        goto stop;
    }
    if (rd->high > 0) {
        if (len >= rd->high) {
            tap_rd_update(rd);
            return;
        }
        room = TAP_MIN(room, rd->high - len);
    }

    /* the socket bufferevent keeps the end of its input frozen except while
     * it reads itself: do as it does */
    evbuffer_unfreeze(in, 0);
    if (evbuffer_reserve_space(in, (ev_ssize_t) room, &v, 1) < 1) {
        evbuffer_freeze(in, 0);
        flags = BEV_EVENT_READING | BEV_EVENT_ERROR;
        goto stop;
    }
    n = recv(fd, v.iov_base, TAP_MIN(v.iov_len, room), 0);
    if (n > 0) {
        v.iov_len = (size_t) n;
        evbuffer_commit_space(in, &v, 1);
    }
    evbuffer_freeze(in, 0);

    if (n > 0) {
        if (readcb != NULL) {
            readcb(bev, cbarg);        /* may free rd: do not touch it after */
        }
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        return;
    }
    flags = BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR);

stop:

    /* as a bufferevent does: reading stops, then the event callback runs */
    rd->on = 0;
    tap_rd_update(rd);
    if (eventcb != NULL) {
        eventcb(bev, flags, cbarg);
    }
}


/*
 * Sends what bev's output holds now instead of one loop round later: plain
 * sockets keep EV_WRITE disabled and are written here, directly; only what
 * the socket does not take is left to the write event, which then also runs
 * the write callback (backpressure) and reports errors.  TLS bufferevents do
 * their own writing.
 */
void
tap_bev_send(struct bufferevent *bev)
{
    struct evbuffer  *out = bufferevent_get_output(bev);
    evutil_socket_t   fd;

    if (bufferevent_openssl_get_ssl(bev) != NULL) {
        bufferevent_enable(bev, EV_WRITE);
        return;
    }
    /* the front of the output is frozen likewise */
    fd = bufferevent_getfd(bev);
    evbuffer_unfreeze(out, 1);
    while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0) {
        /* again, until the socket is full */
    }
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0) {
        bufferevent_enable(bev, EV_WRITE);
    }
}


/* A write callback ran: once the output is empty, back to direct writes. */
void
tap_bev_sent(struct bufferevent *bev)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0
        && bufferevent_openssl_get_ssl(bev) == NULL)
    {
        bufferevent_disable(bev, EV_WRITE);
    }
}
