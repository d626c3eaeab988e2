/*
 * bench/otlp-sink.c: the cheapest OTLP/HTTP receiver, for bench/compare's
 * infertap+otlp row.  It reads each request whole (llhttp frames it), answers
 * 200 with an empty body (a valid, empty Export*ServiceResponse), decodes
 * nothing, and on SIGTERM or SIGINT prints the requests and body bytes it got
 * per path.  It shares the machine's two cores with infertap, so it must cost
 * as little as a receiver can: one thread per connection (an exporter keeps
 * one connection per signal), blocking reads of 1 MB.  A node receiver cost
 * five times as much CPU, about 2 µs per exported exchange.
 *
 *   build/bench/otlp-sink PORT
 */

#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <llhttp.h>

#define TAP_SINK_READ   (1024 * 1024)
#define TAP_SINK_PATHS  8
#define TAP_SINK_PATH   64

typedef struct {
    char      path[TAP_SINK_PATH];
    uint64_t  requests;
    uint64_t  bytes;
} tap_sink_path_t;

typedef struct {
    int        fd;
    unsigned   done;                   /* messages complete, not yet answered */
    size_t     plen;
    char       path[TAP_SINK_PATH];
    uint64_t   bytes;
} tap_sink_conn_t;

static pthread_mutex_t  tap_sink_lock = PTHREAD_MUTEX_INITIALIZER;
static tap_sink_path_t  tap_sink_paths[TAP_SINK_PATHS];
static unsigned         tap_sink_npaths;

static const char  tap_sink_ok[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";

int main(int argc, char **argv);


static int
tap_sink_on_url(llhttp_t *p, const char *at, size_t len)
{
    tap_sink_conn_t  *c = p->data;

    len = len < sizeof(c->path) - 1 - c->plen ? len : sizeof(c->path) - 1 - c->plen;
    memcpy(c->path + c->plen, at, len);
    c->plen += len;
    c->path[c->plen] = '\0';
    return 0;
}


static int
tap_sink_on_body(llhttp_t *p, const char *at, size_t len)
{
    tap_sink_conn_t  *c = p->data;

    (void) at;
    c->bytes += len;
    return 0;
}


static int
tap_sink_on_complete(llhttp_t *p)
{
    tap_sink_conn_t  *c = p->data;
    tap_sink_path_t  *s = NULL;
    unsigned          i;

    pthread_mutex_lock(&tap_sink_lock);
    for (i = 0; i < tap_sink_npaths && s == NULL; i++) {
        if (strcmp(tap_sink_paths[i].path, c->path) == 0) {
            s = &tap_sink_paths[i];
        }
    }
    if (s == NULL && tap_sink_npaths < TAP_SINK_PATHS) {
        s = &tap_sink_paths[tap_sink_npaths++];
        memcpy(s->path, c->path, sizeof(s->path));
    }
    if (s != NULL) {
        s->requests++;
        s->bytes += c->bytes;
    }
    pthread_mutex_unlock(&tap_sink_lock);

    c->plen = 0;
    c->path[0] = '\0';
    c->bytes = 0;
    c->done++;
    return 0;
}


static void *
tap_sink_serve(void *arg)
{
    tap_sink_conn_t     c = { .fd = (int) (intptr_t) arg };
    llhttp_settings_t   settings;
    llhttp_t            parser;
    char               *buf;
    ssize_t             n;

    buf = malloc(TAP_SINK_READ);
    llhttp_settings_init(&settings);
    settings.on_url = tap_sink_on_url;
    settings.on_body = tap_sink_on_body;
    settings.on_message_complete = tap_sink_on_complete;
    llhttp_init(&parser, HTTP_REQUEST, &settings);
    parser.data = &c;

    while (buf != NULL && (n = read(c.fd, buf, TAP_SINK_READ)) > 0) {
        if (llhttp_execute(&parser, buf, (size_t) n) != HPE_OK) {
            break;
        }
        for ( /* void */ ; c.done > 0; c.done--) {
            if (write(c.fd, tap_sink_ok, sizeof(tap_sink_ok) - 1) != sizeof(tap_sink_ok) - 1) {
                goto done;
            }
        }
    }
done:
    close(c.fd);
    free(buf);
    return NULL;
}


static void *
tap_sink_accept(void *arg)
{
    int        ls = (int) (intptr_t) arg, fd, one = 1;
    pthread_t  t;

    for ( ;; ) {
        fd = accept(ls, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (pthread_create(&t, NULL, tap_sink_serve, (void *) (intptr_t) fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
    return NULL;
}


int
main(int argc, char **argv)
{
    struct sockaddr_in  sin;
    sigset_t            sigs;
    pthread_t           t;
    unsigned            i;
    long                port;
    int                 ls, one = 1, sig;

    port = argc == 2 ? strtol(argv[1], NULL, 10) : 0;
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "usage: otlp-sink PORT\n");
        return 2;
    }

    /* every thread leaves SIGTERM and SIGINT to main's sigwait() */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || bind(ls, (struct sockaddr *) &sin, sizeof(sin)) != 0 || listen(ls, 64) != 0
        || pthread_create(&t, NULL, tap_sink_accept, (void *) (intptr_t) ls) != 0)
    {
        fprintf(stderr, "otlp-sink: cannot listen on 127.0.0.1:%ld\n", port);
        return 1;
    }

    sigwait(&sigs, &sig);

    pthread_mutex_lock(&tap_sink_lock);
    for (i = 0; i < tap_sink_npaths; i++) {
        printf("%s %llu requests %llu bytes\n", tap_sink_paths[i].path,
            (unsigned long long) tap_sink_paths[i].requests,
            (unsigned long long) tap_sink_paths[i].bytes);
    }
    fflush(stdout);
    return 0;
}
