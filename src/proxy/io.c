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
 *   TAP_RD_CHUNK bytes and then runs the bufferevent's read callback, as
 *   the bufferevent would.  Into an empty input, the usual case, the bytes
 *   land in the worker's read buffer and the callback consumes them there
 *   (what it leaves moves to the input); else they are appended to the
 *   input.  The bufferevent's own read event stays disabled.  EOF, errors
 *   and read timeouts reach the bufferevent's event callback with the flags
 *   it would have used.  The read timeout is a lazy timer (tap_lazy_t) moved on each
 *   read, not a timeout on the read event, which libevent would take out of
 *   its timer heap and put back in on every read.
 * - writing: what a callback has for a connection gathers in the worker's
 *   write buffer (tap_rd_write(), tap_rd_space()) and tap_rd_send() hands
 *   it to the socket at once, with one send(); only what the socket does
 *   not take goes to the bufferevent's output and its write event.  The
 *   output evbuffer is used only when it already holds bytes (a slow peer)
 *   or by code that asks for it (tap_rd_output()).
 *
 * On TLS connections the same calls just drive the bufferevent.
 *
 * Also here: the lazy timers that run the read and phase timeouts, on the
 * coarse clock, and tap_wall_ns().
 */

#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/bufferevent_ssl.h>

#include "tap_core.h"
#include "proxy/proxy-int.h"

#define TAP_RD_CHUNK  16384
#define TAP_WR_CHUNK  32768            /* a full read and a head */

/* The worker's read buffer, and the reader whose callback is running on it
 * (NULL once that reader stops: its connection was freed). */
static __thread char       tap_rd_buf[TAP_RD_CHUNK];
static __thread tap_rd_t  *tap_rd_live;

/*
 * The worker's write buffer and the connection whose bytes it holds (NULL:
 * none).  Bytes wait here only while that connection's output evbuffer is
 * empty, so whoever takes the evbuffer (tap_rd_output()) moves them there
 * first and their order is kept.  Another connection that wants the buffer
 * sends them first.
 */
static __thread char       tap_wr_buf[TAP_WR_CHUNK];
static __thread size_t     tap_wr_len;
static __thread tap_rd_t  *tap_wr_rd;


static int tap_rd_keep(tap_rd_t *rd);
static void tap_rd_flush(void);
static void tap_rd_on_ready(evutil_socket_t fd, short what, void *arg);
static void tap_rd_on_timeout(evutil_socket_t fd, short what, void *arg);


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
    want = rd->on && (rd->high == 0 || tap_rd_pending(rd) < rd->high);
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
        event_add(&rd->ev, NULL);
        rd->added = 1;
        tap_lazy_set(&rd->timer, rd->timeout_ms);

    } else if (!want && rd->added) {
        event_del(&rd->ev);
        rd->added = 0;
        tap_lazy_set(&rd->timer, 0);
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


/* A read timeout (idle time between reads) of ms milliseconds, or none when ms <= 0. */
void
tap_rd_set_timeout(tap_rd_t *rd, int64_t ms)
{
    struct timeval  tv;

    if (!rd->plain) {
        tv = tap_ms_tv(ms);
        bufferevent_set_timeouts(rd->bev, ms > 0 ? &tv : NULL, NULL);
        return;
    }
    rd->timeout_ms = 0;
    if (ms > 0) {
        if (rd->timer.ev == NULL) {
            rd->timer.ev = evtimer_new(bufferevent_get_base(rd->bev), tap_rd_on_timeout, rd);
            if (rd->timer.ev == NULL) {
                return;                /* out of memory: no timeout */
            }
        }
        rd->timeout_ms = ms;
    }
    tap_lazy_set(&rd->timer, rd->added ? rd->timeout_ms : 0);
}


/* Before the bufferevent is freed. */
void
tap_rd_stop(tap_rd_t *rd)
{
    if (tap_rd_live == rd) {
        tap_rd_live = NULL;
    }
    if (tap_wr_rd == rd) {
        tap_wr_rd = NULL;              /* its unsent bytes go with it */
        tap_wr_len = 0;
    }
    rd->dlen = 0;
    if (rd->assigned) {
        event_del(&rd->ev);
        rd->added = 0;
    }
    if (rd->timer.ev != NULL) {
        event_free(rd->timer.ev);
        rd->timer.ev = NULL;
    }
    rd->timer.due = rd->timer.armed = 0;
}


static void
tap_rd_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    tap_rd_t  *rd = arg;

    if (tap_lazy_fired(&rd->timer) && rd->added) {
        tap_rd_on_ready(-1, EV_TIMEOUT, rd);
    }
}


/* What the read callback left of the worker's buffer moves to the input. */
static int
tap_rd_keep(tap_rd_t *rd)
{
    struct evbuffer  *in;
    int               rc;

    if (rd->dlen == 0) {
        return TAP_OK;
    }
    in = bufferevent_get_input(rd->bev);
    evbuffer_unfreeze(in, 0);
    rc = evbuffer_add(in, rd->dp, rd->dlen);
    evbuffer_freeze(in, 0);
    rd->dlen = 0;
    if (rc != 0) {
        return TAP_ERROR;              /* out of memory: the bytes are lost */
    }
    tap_rd_update(rd);                 /* it may now be over its high mark */
    return TAP_OK;
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
    if (rd->timeout_ms > 0) {
        tap_lazy_set(&rd->timer, rd->timeout_ms);   /* idle time counts from now */
    }
    if (rd->high > 0) {
        if (len >= rd->high) {
            tap_rd_update(rd);
            return;
        }
        room = TAP_MIN(room, rd->high - len);
    }

    if (len == 0) {
        /* nothing waiting: read into the worker's buffer and let the
         * callback consume it there; only what it leaves is copied */
        n = recv(fd, tap_rd_buf, room, 0);
        if (n > 0) {
            rd->dp = tap_rd_buf;
            rd->dlen = (size_t) n;
            tap_rd_live = rd;
            if (readcb != NULL) {
                readcb(bev, cbarg);    /* may free rd: tap_rd_stop() tells */
            }
            tap_rd_flush();
            if (tap_rd_live != rd) {
                return;
            }
            tap_rd_live = NULL;
            if (tap_rd_keep(rd) == TAP_OK) {
                return;
            }
            flags = BEV_EVENT_READING | BEV_EVENT_ERROR;
            goto stop;
        }

    } else {
        /* the socket bufferevent keeps the end of its input frozen except
         * while it reads itself: do as it does */
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
                readcb(bev, cbarg);    /* may free rd: do not touch it after */
            }
            tap_rd_flush();
            return;
        }
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
    tap_rd_flush();
}


/*
 * Room for n more bytes to send on rd's connection, in the worker's write
 * buffer: the caller writes them there and calls tap_rd_wrote(n).  NULL when
 * they must go through the output evbuffer (tap_rd_output()) instead: a TLS
 * connection, bytes already waiting there, or no room.
 */
char *
tap_rd_space(tap_rd_t *rd, size_t n)
{
    if (tap_wr_rd == rd) {
        return n <= TAP_WR_CHUNK - tap_wr_len ? tap_wr_buf + tap_wr_len : NULL;
    }
    if (!rd->plain || n > TAP_WR_CHUNK
        || evbuffer_get_length(bufferevent_get_output(rd->bev)) > 0)
    {
        return NULL;
    }
    if (tap_wr_rd != NULL) {
        tap_rd_send(tap_wr_rd);        /* another connection's bytes go first */
    }
    tap_wr_rd = rd;
    return tap_wr_buf;
}


void
tap_rd_wrote(size_t n)
{
    tap_wr_len += n;
}


void
tap_rd_write(tap_rd_t *rd, const void *p, size_t n)
{
    char  *s = tap_rd_space(rd, n);

    if (s == NULL) {
        evbuffer_add(tap_rd_output(rd), p, n);
        return;
    }
    memcpy(s, p, n);
    tap_wr_len += n;
}


/* The output evbuffer of rd's connection, with the bytes it has waiting in
 * the write buffer moved to it. */
struct evbuffer *
tap_rd_output(tap_rd_t *rd)
{
    struct evbuffer  *out = bufferevent_get_output(rd->bev);

    if (tap_wr_rd == rd) {
        evbuffer_add(out, tap_wr_buf, tap_wr_len);
        tap_wr_rd = NULL;
        tap_wr_len = 0;
    }
    return out;
}


/*
 * Sends what rd's connection has waiting now instead of one loop round
 * later: plain sockets keep EV_WRITE disabled and are written here,
 * directly; only what the socket does not take is left to the write event,
 * which then also runs the write callback (backpressure) and reports errors.
 * TLS bufferevents do their own writing.
 */
void
tap_rd_send(tap_rd_t *rd)
{
    struct bufferevent  *bev = rd->bev;
    struct evbuffer     *out = bufferevent_get_output(bev);
    evutil_socket_t      fd;
    size_t               len;
    ssize_t              n;

    if (!rd->plain) {
        bufferevent_enable(bev, EV_WRITE);
        return;
    }
    fd = bufferevent_getfd(bev);

    if (tap_wr_rd == rd) {
        /* the output evbuffer is empty: send from the write buffer */
        len = tap_wr_len;
        tap_wr_rd = NULL;
        tap_wr_len = 0;
        n = len > 0 ? send(fd, tap_wr_buf, len, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
        if ((size_t) n == len) {
            return;
        }
        /* the socket is full, or failed: the write event retries, and
         * reports the error */
        n = n > 0 ? n : 0;
        evbuffer_add(out, tap_wr_buf + n, len - (size_t) n);
        bufferevent_enable(bev, EV_WRITE);
        return;
    }

    /* the front of the output is frozen likewise */
    evbuffer_unfreeze(out, 1);
    while (evbuffer_get_length(out) > 0 && evbuffer_write(out, fd) > 0) {
        /* again, until the socket is full */
    }
    evbuffer_freeze(out, 1);
    if (evbuffer_get_length(out) > 0) {
        bufferevent_enable(bev, EV_WRITE);
    }
}


/* What a callback left in the write buffer is sent when it returns at the
 * latest; the callbacks send it themselves, this only makes sure. */
static void
tap_rd_flush(void)
{
    if (tap_wr_rd != NULL) {
        tap_rd_send(tap_wr_rd);
    }
}


/* A write callback ran: once the output is empty, back to direct writes. */
void
tap_rd_sent(tap_rd_t *rd)
{
    if (rd->plain && evbuffer_get_length(bufferevent_get_output(rd->bev)) == 0) {
        bufferevent_disable(rd->bev, EV_WRITE);
    }
}


/* Lazy timers */

/*
 * A timer firing this close to its deadline has reached it: the coarse clock
 * lags the timer's own by up to one tick, plus a millisecond.
 */
static int64_t
tap_lazy_slack(void)
{
    static int64_t   slack;
    struct timespec  res;

    if (slack == 0) {
        if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0) {
            res.tv_sec = 0;
            res.tv_nsec = 10000000;
        }
        __atomic_store_n(&slack, (int64_t) res.tv_sec * 1000000000 + res.tv_nsec + 1000000,
            __ATOMIC_RELAXED);
    }
    return __atomic_load_n(&slack, __ATOMIC_RELAXED);
}

static void
tap_lazy_arm(tap_lazy_t *lz, int64_t now)
{
    struct timeval  tv;
    int64_t         ns = lz->due - now;

    ns = ns > 0 ? ns : 0;
    tv.tv_sec = (time_t) (ns / 1000000000);
    tv.tv_usec = (suseconds_t) (ns % 1000000000 / 1000);
    evtimer_add(lz->ev, &tv);
    lz->armed = lz->due;
}


/* A deadline ms from now, or none when ms <= 0. */
void
tap_lazy_set(tap_lazy_t *lz, int64_t ms)
{
    int64_t  now;

    if (ms <= 0) {
        lz->due = 0;
        return;
    }
    now = tap_coarse_ns();
    lz->due = now + ms * 1000000;
    if (lz->armed != 0 && lz->armed <= lz->due) {
        return;                        /* it fires first, and re-arms then */
    }
    tap_lazy_arm(lz, now);
}


int
tap_lazy_fired(tap_lazy_t *lz)
{
    int64_t  now;

    lz->armed = 0;
    if (lz->due == 0) {
        return 0;
    }
    now = tap_coarse_ns();
    if (now + tap_lazy_slack() < lz->due) {
        tap_lazy_arm(lz, now);
        return 0;
    }
    lz->due = 0;
    return 1;
}


/*
 * The wall-clock time of a monotonic one: their offset, read once a second
 * per thread, so that a step of the system clock shows within a second.
 */
int64_t
tap_wall_ns(int64_t mono)
{
    static __thread int64_t  offset, until;
    struct timespec          ts;

    if (mono >= until) {            /* also the first time: until is 0 */
        clock_gettime(CLOCK_REALTIME, &ts);
        offset = (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec - tap_now_ns();
        until = mono + 1000000000;
    }
    return mono + offset;
}
