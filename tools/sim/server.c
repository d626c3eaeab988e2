/*
 * server.c: workers, listeners and connection sockets of infertap-sim.
 *
 * Each worker owns an event_base and, when serving, its own listening socket
 * bound with SO_REUSEPORT, so the kernel spreads connections across threads
 * and no lock is taken on the accept or request path.  A connection is a
 * socket with two plain events rather than a bufferevent: bytes read go
 * straight to the connection core (http.c), and what it writes into the
 * output evbuffer is written at once, in the same callback.  EV_WRITE is
 * armed only when the socket is full, which saves the epoll_ctl and FIONREAD
 * calls a bufferevent makes on every request.
 *
 * Closing: the core asks to close after a "Connection: close", a parse error
 * or an injected cut; once the output has drained the socket lingers (see
 * tap_sim_sock_linger) and is then freed.  A
 * peer EOF while a request is still being generated is a client abort: the
 * socket and its requests are freed at once (the core counts the abort).
 * Reading pauses while more than TAP_SIM_PIPELINE requests are queued or
 * while the peer is not reading its answers.
 */

#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>

#include "http.h"
#include "server.h"

#define TAP_SIM_PIPELINE   64
#define TAP_SIM_LINGER_MS  2000

typedef struct tap_sim_sock_s tap_sim_sock_t;

struct tap_sim_sock_s {
    tap_sim_worker_t    *w;
    evutil_socket_t      fd;
    struct event         rev;
    struct event         wev;
    struct evbuffer     *out;
    tap_sim_conn_t      *conn;
    tap_sim_sock_t      *prev;
    tap_sim_sock_t      *next;
    unsigned             eof:1;
    unsigned             reading:1;
    unsigned             writing:1;
    unsigned             lingering:1;
};


tap_sim_worker_t *
tap_sim_worker_create(tap_sim_shared_t *sh)
{
    tap_sim_worker_t    *w;
    struct event_config *cfg;

    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return NULL;
    }

    w->shared = sh;
    tap_sim_sb_init(&w->sb);
    tap_sim_sb_init(&w->sb2);
    tap_sim_sb_init(&w->prompt);
    w->xxh = XXH3_createState();
    if (w->xxh == NULL) {
        free(w);
        return NULL;
    }
    /*
     * Token pacing runs on millisecond timers: ask for the precise clock
     * (timerfd under epoll) so that --itl-ms 1 means 1 ms, not 4.
     */
    cfg = event_config_new();
    if (cfg != NULL) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        w->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (w->base == NULL) {
        XXH3_freeState(w->xxh);
        free(w);
        return NULL;
    }

    return w;
}


static void
tap_sim_sock_free(tap_sim_sock_t *s)
{
    tap_sim_worker_t  *w = s->w;

    if (s->prev != NULL) {
        s->prev->next = s->next;
    } else {
        w->socks = s->next;
    }
    if (s->next != NULL) {
        s->next->prev = s->prev;
    }

    tap_sim_conn_destroy(s->conn);
    event_del(&s->rev);
    event_del(&s->wev);
    evbuffer_free(s->out);
    evutil_closesocket(s->fd);
    free(s);
}


void
tap_sim_worker_destroy(tap_sim_worker_t *w)
{
    if (w == NULL) {
        return;
    }

    while (w->socks != NULL) {
        tap_sim_sock_free(w->socks);
    }
    if (w->listener != NULL) {
        evconnlistener_free(w->listener);
    }
    event_base_free(w->base);
    tap_sim_sb_cleanup(&w->sb);
    tap_sim_sb_cleanup(&w->sb2);
    tap_sim_sb_cleanup(&w->prompt);
    XXH3_freeState(w->xxh);
    free(w);
}


/*
 * Lingering close: a socket closed with unread input sends a reset, which
 * can destroy the answer (a 413, a 400) before the client has read it.  So
 * the write side is shut down and input is read and dropped until the peer
 * closes too, for at most TAP_SIM_LINGER_MS.
 */
static void
tap_sim_sock_on_linger(evutil_socket_t fd, short what, void *arg)
{
    char     buf[16384];
    ssize_t  n;

    if (what & EV_READ) {
        do {
            n = recv(fd, buf, sizeof(buf), 0);
        } while (n > 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            return;
        }
    }
    tap_sim_sock_free(arg);
}


static int
tap_sim_sock_linger(tap_sim_sock_t *s)
{
    struct timeval  tv = { TAP_SIM_LINGER_MS / 1000, (TAP_SIM_LINGER_MS % 1000) * 1000 };

    if (s->lingering) {
        return TAP_OK;
    }
    s->lingering = 1;
    shutdown(s->fd, SHUT_WR);
    event_del(&s->rev);
    event_assign(&s->rev, s->w->base, s->fd, EV_READ | EV_PERSIST, tap_sim_sock_on_linger, s);
    event_add(&s->rev, &tv);
    s->reading = 1;
    return TAP_OK;
}


/*
 * Write what the core produced, then close, throttle or keep reading.
 * Returns TAP_ERROR when s was freed.
 */
static int
tap_sim_sock_update(tap_sim_sock_t *s)
{
    int  n;

    while (evbuffer_get_length(s->out) > 0) {
        n = evbuffer_write(s->out, s->fd);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                break;
            }
            tap_sim_sock_free(s);          /* peer gone: pending requests abort */
            return TAP_ERROR;
        }
        if (n == 0) {
            break;
        }
    }

    if (evbuffer_get_length(s->out) > 0) {
        if (!s->writing) {
            event_add(&s->wev, NULL);
            s->writing = 1;
        }
    } else if (s->writing) {
        event_del(&s->wev);
        s->writing = 0;
    }

    if (tap_sim_conn_wants_close(s->conn) || (s->eof && !tap_sim_conn_busy(s->conn))) {
        if (!s->writing) {
            if (!s->eof && tap_sim_conn_wants_close(s->conn)) {
                return tap_sim_sock_linger(s);
            }
            tap_sim_sock_free(s);
            return TAP_ERROR;
        }
        if (s->reading) {
            event_del(&s->rev);
            s->reading = 0;
        }
        return TAP_OK;
    }

    if (s->eof) {
        return TAP_OK;
    }

    if (tap_sim_conn_pending(s->conn) > TAP_SIM_PIPELINE || s->writing) {
        /* let the peer read before we read more from it */
        if (s->reading) {
            event_del(&s->rev);
            s->reading = 0;
        }
    } else if (!s->reading) {
        event_add(&s->rev, NULL);
        s->reading = 1;
    }

    return TAP_OK;
}


static void
tap_sim_sock_on_read(evutil_socket_t fd, short what, void *arg)
{
    tap_sim_sock_t  *s = arg;
    char             buf[16384];
    ssize_t          n;

    n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
        tap_sim_conn_feed(s->conn, buf, (size_t) n);

    } else if (n == 0) {
        s->eof = 1;
        if (tap_sim_conn_busy(s->conn)) {
            /* the client went away before its answer was complete */
            tap_sim_sock_free(s);
            return;
        }
        event_del(&s->rev);
        s->reading = 0;

    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        tap_sim_sock_free(s);
        return;
    }

    tap_sim_sock_update(s);
}


static void
tap_sim_sock_on_write(evutil_socket_t fd, short what, void *arg)
{
    tap_sim_sock_update(arg);
}


static void
tap_sim_sock_on_conn_event(tap_sim_conn_t *c, void *arg)
{
    tap_sim_sock_update(arg);
}


static void
tap_sim_worker_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
    tap_sim_worker_t  *w = arg;
    tap_sim_sock_t    *s;
    int                one = 1;

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        evutil_closesocket(fd);
        return;
    }

    if (sa->sa_family != AF_UNIX) {
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    evutil_make_socket_nonblocking(fd);

    s->w = w;
    s->fd = fd;
    s->out = evbuffer_new();
    s->conn = s->out != NULL
              ? tap_sim_conn_create(w, s->out, tap_sim_sock_on_conn_event, s) : NULL;
    if (s->conn == NULL) {
        if (s->out != NULL) {
            evbuffer_free(s->out);
        }
        evutil_closesocket(fd);
        free(s);
        return;
    }

    event_assign(&s->rev, w->base, fd, EV_READ | EV_PERSIST, tap_sim_sock_on_read, s);
    event_assign(&s->wev, w->base, fd, EV_WRITE | EV_PERSIST, tap_sim_sock_on_write, s);

    s->next = w->socks;
    if (s->next != NULL) {
        s->next->prev = s;
    }
    w->socks = s;

    event_add(&s->rev, NULL);
    s->reading = 1;
}


/*
 * Bind a SO_REUSEPORT listener for w.  Returns TAP_OK, or TAP_ERROR with an
 * allocated message in *err.
 */
int
tap_sim_worker_listen(tap_sim_worker_t *w, const struct sockaddr *sa, socklen_t len,
    char **err)
{
    evutil_socket_t  fd;
    char             buf[256];
    int              one = 1;

    fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        goto failed;
    }

    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0
        || bind(fd, sa, len) != 0 || listen(fd, 1024) != 0)
    {
        goto failed;
    }

    w->listener = evconnlistener_new(w->base, tap_sim_worker_on_accept, w,
                                     LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (w->listener == NULL) {
        goto failed;
    }

    return TAP_OK;

failed:

    snprintf(buf, sizeof(buf), "cannot listen: %s", strerror(errno));
    *err = strdup(buf);
    if (fd >= 0) {
        close(fd);
    }
    return TAP_ERROR;
}


int
tap_sim_worker_local(tap_sim_worker_t *w, struct sockaddr_storage *ss, socklen_t *len)
{
    *len = sizeof(*ss);
    if (w->listener == NULL
        || getsockname(evconnlistener_get_fd(w->listener), (struct sockaddr *) ss, len) != 0)
    {
        return TAP_ERROR;
    }
    return TAP_OK;
}
