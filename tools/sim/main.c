/*
 * main.c: infertap-sim, a model-server simulator for infertap's demo,
 * integration tests and benchmarks.
 *
 * This file parses the command line, starts one worker per --threads (each
 * with its own event_base and SO_REUSEPORT listener; the main thread runs
 * worker 0), prints the "listening on" line tests wait for, and on SIGINT or
 * SIGTERM stops every loop, joins the threads and frees everything so that
 * sanitizer builds report no leaks.
 */

#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/thread.h>

#include "server.h"
#include "sim.h"
#include "version.h"

#define TAP_SIM_MAX_THREADS  64

typedef struct tap_sim_main_s {
    tap_sim_conf_t       conf;
    tap_sim_shared_t    *shared;
    tap_sim_worker_t    *workers[TAP_SIM_MAX_THREADS];
    int                  nworkers;
} tap_sim_main_t;

int main(int argc, char **argv);

static const char  tap_sim_usage[] =
    "usage: infertap-sim [--listen ADDR] [--threads N] [--model NAME] [--ttft-ms N]\n"
    "                    [--itl-ms N] [--jitter-ms N] [--tokens N] [--seed N]\n"
    "                    [--error-rate P] [--error-kind 500|429|cut|malformed]\n"
    "                    [--max-concurrency N] [--nondeterminism P] [--slow-prompt SUBSTR]\n"
    "                    [--slow-factor K] [--drift-after N] [--drift-amount X] [--quiet]\n"
    "                    [-V] [-h]\n"
    "\n"
    "A model-server simulator speaking the OpenAI (vLLM), Ollama, TGI, llama.cpp and\n"
    "KServe v2 APIs with deterministic output, configurable latency and injected faults.\n"
    "\n"
    "  --listen ADDR          host:port or [v6]:port (default 127.0.0.1:8000; port 0 = any)\n"
    "  --threads N            worker threads, one listener each (default 1)\n"
    "  --model NAME           served model id (default sim-model)\n"
    "  --ttft-ms N            delay before the first token (default 0)\n"
    "  --itl-ms N             delay between tokens (default 0)\n"
    "  --jitter-ms N          add a deterministic 0..N ms to every delay (default 0)\n"
    "  --tokens N             completion length without max_tokens (default 16)\n"
    "  --seed N               global seed mixed into every completion (default 0)\n"
    "  --error-rate P         fraction of requests that fail (0..1, default 0)\n"
    "  --error-kind KIND      500, 429, cut or malformed (default 500)\n"
    "  --max-concurrency N    requests generating at once; others queue (0 = no limit)\n"
    "  --nondeterminism P     fraction of requests whose text ignores the prompt cache\n"
    "  --slow-prompt SUBSTR   prompts containing SUBSTR are slowed down\n"
    "  --slow-factor K        delay multiplier for slow prompts (default 10)\n"
    "  --drift-after N        after N requests, lower every logprob (default: never)\n"
    "  --drift-amount X       how much to lower them (default 1.0)\n"
    "  --quiet                no per-request line on stderr\n"
    "  -V                     print the version\n"
    "  -h                     this help\n"
    "\n"
    "For tests: GET /sim/stats (counters), /sim/requests (the last 64 request heads),\n"
    "/sim/generations (the last 256 finished generations: api, tokens, finish reason,\n"
    "XXH3-64 of the text sent, logprob sum, injected error or client_gone).\n";


static int
tap_sim_arg_long(const char *s, long long lo, long long hi, long long *v)
{
    char       *end;
    long long   x;

    errno = 0;
    x = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || x < lo || x > hi) {
        return TAP_ERROR;
    }
    *v = x;
    return TAP_OK;
}


static int
tap_sim_arg_double(const char *s, double lo, double hi, double *v)
{
    char    *end;
    double   x;

    errno = 0;
    x = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !(x >= lo && x <= hi)) {
        return TAP_ERROR;
    }
    *v = x;
    return TAP_OK;
}


static int
tap_sim_parse_args(tap_sim_conf_t *conf, int argc, char **argv)
{
    static const struct option  tap_sim_opts[] = {
        { "listen", required_argument, NULL, 'l' },
        { "threads", required_argument, NULL, 't' },
        { "model", required_argument, NULL, 'm' },
        { "ttft-ms", required_argument, NULL, 'T' },
        { "itl-ms", required_argument, NULL, 'I' },
        { "jitter-ms", required_argument, NULL, 'J' },
        { "tokens", required_argument, NULL, 'n' },
        { "seed", required_argument, NULL, 's' },
        { "error-rate", required_argument, NULL, 'e' },
        { "error-kind", required_argument, NULL, 'k' },
        { "max-concurrency", required_argument, NULL, 'c' },
        { "nondeterminism", required_argument, NULL, 'N' },
        { "slow-prompt", required_argument, NULL, 'S' },
        { "slow-factor", required_argument, NULL, 'F' },
        { "drift-after", required_argument, NULL, 'D' },
        { "drift-amount", required_argument, NULL, 'A' },
        { "quiet", no_argument, NULL, 'q' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long long   v;
    int         opt, rc, idx;

    opterr = 0;
    for ( ;; ) {
        idx = -1;
        opt = getopt_long(argc, argv, ":Vh", tap_sim_opts, &idx);
        if (opt == -1) {
            break;
        }
        rc = TAP_OK;
        switch (opt) {
        case 'l': conf->listen = optarg; break;
        case 'm':
            conf->model = optarg;
            rc = optarg[0] != '\0' ? TAP_OK : TAP_ERROR;
            break;
        case 't':
            rc = tap_sim_arg_long(optarg, 1, TAP_SIM_MAX_THREADS, &v);
            conf->threads = (int) v;
            break;
        case 'T':
            rc = tap_sim_arg_long(optarg, 0, 3600000, &v);
            conf->ttft_ms = (unsigned) v;
            break;
        case 'I':
            rc = tap_sim_arg_long(optarg, 0, 3600000, &v);
            conf->itl_ms = (unsigned) v;
            break;
        case 'J':
            rc = tap_sim_arg_long(optarg, 0, 3600000, &v);
            conf->jitter_ms = (unsigned) v;
            break;
        case 'n':
            rc = tap_sim_arg_long(optarg, 1, 1000000, &v);
            conf->tokens = (int) v;
            break;
        case 's':
            rc = tap_sim_arg_long(optarg, LLONG_MIN, LLONG_MAX, &v);
            conf->seed = (uint64_t) v;
            break;
        case 'e': rc = tap_sim_arg_double(optarg, 0, 1, &conf->error_rate); break;
        case 'k':
            if (strcmp(optarg, "500") == 0) {
                conf->error_kind = TAP_SIM_ERR_500;
            } else if (strcmp(optarg, "429") == 0) {
                conf->error_kind = TAP_SIM_ERR_429;
            } else if (strcmp(optarg, "cut") == 0) {
                conf->error_kind = TAP_SIM_ERR_CUT;
            } else if (strcmp(optarg, "malformed") == 0) {
                conf->error_kind = TAP_SIM_ERR_MALFORMED;
            } else {
                rc = TAP_ERROR;
            }
            break;
        case 'c':
            rc = tap_sim_arg_long(optarg, 0, 1000000, &v);
            conf->max_concurrency = (int) v;
            break;
        case 'N': rc = tap_sim_arg_double(optarg, 0, 1, &conf->nondeterminism); break;
        case 'S': conf->slow_prompt = optarg; break;
        case 'F': rc = tap_sim_arg_double(optarg, 0, 1e6, &conf->slow_factor); break;
        case 'D':
            rc = tap_sim_arg_long(optarg, 0, LLONG_MAX, &v);
            conf->drift_after = (uint64_t) v;
            conf->drift_set = 1;
            break;
        case 'A': rc = tap_sim_arg_double(optarg, -1e6, 1e6, &conf->drift_amount); break;
        case 'q': conf->quiet = 1; break;
        case 'V':
            printf("infertap-sim %s\n", TAP_VERSION);
            return 1;
        case 'h':
            fputs(tap_sim_usage, stdout);
            return 1;
        case ':':
            fprintf(stderr, "infertap-sim: option %s needs a value\n", argv[optind - 1]);
            return TAP_ERROR;
        default:
            fprintf(stderr, "infertap-sim: unknown option %s\n", argv[optind - 1]);
            return TAP_ERROR;
        }

        if (rc != TAP_OK) {
            fprintf(stderr, "infertap-sim: bad value for --%s: '%s'\n",
                    idx >= 0 ? tap_sim_opts[idx].name : "?", optarg);
            return TAP_ERROR;
        }
    }

    if (optind < argc) {
        fprintf(stderr, "infertap-sim: unexpected argument '%s'\n", argv[optind]);
        return TAP_ERROR;
    }

    return TAP_OK;
}


/* "host:port", "[v6]:port", ":port" or "port" -> an address; blocking, start-up only. */
static int
tap_sim_resolve(const char *listen, struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo   hints, *res;
    const char       *colon, *port;
    char              host[256];
    size_t            hlen;
    int               rc;

    if (listen[0] == '[') {
        colon = strstr(listen, "]:");
        if (colon == NULL) {
            return TAP_ERROR;
        }
        hlen = (size_t) (colon - listen - 1);
        if (hlen >= sizeof(host)) {
            return TAP_ERROR;
        }
        memcpy(host, listen + 1, hlen);
        port = colon + 2;

    } else if ((colon = strrchr(listen, ':')) != NULL) {
        hlen = (size_t) (colon - listen);
        if (hlen >= sizeof(host)) {
            return TAP_ERROR;
        }
        memcpy(host, listen, hlen);
        port = colon + 1;

    } else {
        hlen = 0;
        port = listen;
    }
    host[hlen] = '\0';
    if (hlen == 0) {
        strcpy(host, "127.0.0.1");
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) != 0) {
        return TAP_ERROR;
    }

    rc = TAP_ERROR;
    if (res != NULL && res->ai_addrlen <= sizeof(*ss)) {
        memcpy(ss, res->ai_addr, res->ai_addrlen);
        *len = res->ai_addrlen;
        rc = TAP_OK;
    }
    freeaddrinfo(res);
    return rc;
}


static void
tap_sim_print_listening(const struct sockaddr_storage *ss)
{
    char  host[INET6_ADDRSTRLEN];
    int   port;

    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6  *s6 = (const struct sockaddr_in6 *) ss;

        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        printf("infertap-sim listening on [%s]:%d\n", host, port);

    } else {
        const struct sockaddr_in  *s4 = (const struct sockaddr_in *) ss;

        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        printf("infertap-sim listening on %s:%d\n", host, port);
    }
    fflush(stdout);
}


static void *
tap_sim_thread_main(void *arg)
{
    tap_sim_worker_t  *w = arg;

    event_base_dispatch(w->base);
    return NULL;
}


static void
tap_sim_on_signal(evutil_socket_t sig, short what, void *arg)
{
    tap_sim_main_t  *m = arg;
    int              i;

    for (i = 0; i < m->nworkers; i++) {
        event_base_loopexit(m->workers[i]->base, NULL);
    }
}


int
main(int argc, char **argv)
{
    tap_sim_main_t           m;
    struct sockaddr_storage  ss;
    struct event            *sigint, *sigterm;
    socklen_t                sslen;
    char                    *err;
    int                      i, rc;

    memset(&m, 0, sizeof(m));
    sigint = NULL;
    sigterm = NULL;
    err = NULL;
    tap_sim_conf_defaults(&m.conf);

    rc = tap_sim_parse_args(&m.conf, argc, argv);
    if (rc != TAP_OK) {
        return rc == 1 ? 0 : 2;
    }

    if (tap_sim_resolve(m.conf.listen, &ss, &sslen) != TAP_OK) {
        fprintf(stderr, "infertap-sim: bad --listen address '%s'\n", m.conf.listen);
        return 2;
    }

    signal(SIGPIPE, SIG_IGN);
    rc = 1;
    if (evthread_use_pthreads() != 0) {
        fprintf(stderr, "infertap-sim: libevent has no thread support\n");
        goto done;
    }

    m.shared = tap_sim_shared_create(&m.conf);
    if (m.shared == NULL) {
        goto done;
    }

    for (i = 0; i < m.conf.threads; i++) {
        m.workers[i] = tap_sim_worker_create(m.shared);
        if (m.workers[i] == NULL) {
            fprintf(stderr, "infertap-sim: cannot create worker\n");
            goto done;
        }
        m.nworkers++;

        if (tap_sim_worker_listen(m.workers[i], (struct sockaddr *) &ss, sslen, &err)
            != TAP_OK)
        {
            fprintf(stderr, "infertap-sim: %s: %s\n", m.conf.listen, err);
            goto done;
        }

        /* port 0: the others bind the port the first one got */
        if (i == 0 && tap_sim_worker_local(m.workers[0], &ss, &sslen) != TAP_OK) {
            goto done;
        }
    }

    sigint = evsignal_new(m.workers[0]->base, SIGINT, tap_sim_on_signal, &m);
    sigterm = evsignal_new(m.workers[0]->base, SIGTERM, tap_sim_on_signal, &m);
    if (sigint == NULL || sigterm == NULL || evsignal_add(sigint, NULL) != 0
        || evsignal_add(sigterm, NULL) != 0)
    {
        goto done;
    }

    tap_sim_print_listening(&ss);

    for (i = 1; i < m.nworkers; i++) {
        if (pthread_create(&m.workers[i]->thread, NULL, tap_sim_thread_main, m.workers[i])
            != 0)
        {
            fprintf(stderr, "infertap-sim: cannot start thread\n");
            tap_sim_on_signal(-1, 0, &m);
            break;
        }
        m.workers[i]->thread_started = 1;
    }

    event_base_dispatch(m.workers[0]->base);
    for (i = 0; i < m.nworkers; i++) {
        event_base_loopexit(m.workers[i]->base, NULL);
    }
    rc = 0;

done:

    for (i = 1; i < m.nworkers; i++) {
        if (m.workers[i]->thread_started) {
            pthread_join(m.workers[i]->thread, NULL);
        }
    }
    if (sigint != NULL) {
        event_free(sigint);
    }
    if (sigterm != NULL) {
        event_free(sigterm);
    }
    for (i = 0; i < m.nworkers; i++) {
        tap_sim_worker_destroy(m.workers[i]);
    }
    tap_sim_shared_destroy(m.shared);
    free(err);
    libevent_global_shutdown();
    return rc;
}
