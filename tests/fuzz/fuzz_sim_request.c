/*
 * fuzz_sim_request.c: libFuzzer harness for infertap-sim's request path.
 *
 * The input is fed to the simulator's socket-free connection core twice:
 * once in one piece and once cut into pieces whose sizes derive from the
 * first byte, so that every llhttp callback sees split spans.  The first
 * byte also selects an injected failure (none, 500, 429, cut, malformed)
 * and drift.  Delays are zero, so responses are produced inline; the event
 * loop still runs a bounded number of non-blocking iterations in case any
 * timer or wake-up was armed.  Everything is freed per input.
 */

#include "config.h"

#include <stdint.h>
#include <stdlib.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "../../tools/sim/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static void
tap_fuzz_sim_run(tap_sim_worker_t *w, const uint8_t *data, size_t size, int split)
{
    struct evbuffer  *out;
    tap_sim_conn_t   *c;
    uint64_t          x;
    size_t            off, n;
    int               i;

    out = evbuffer_new();
    c = out != NULL ? tap_sim_conn_create(w, out, NULL, NULL) : NULL;
    if (c == NULL) {
        goto done;
    }

    x = size > 0 ? data[0] * 0x9e3779b97f4a7c15ULL + 1 : 1;
    for (off = 0; off < size; off += n) {
        n = size - off;
        if (split) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            n = TAP_MIN(n, 1 + (size_t) (x % 64));
        }
        tap_sim_conn_feed(c, (const char *) data + off, n);
        evbuffer_drain(out, evbuffer_get_length(out));
        if (tap_sim_conn_wants_close(c)) {
            break;
        }
    }

    for (i = 0; i < 64; i++) {
        if (event_base_loop(w->base, EVLOOP_NONBLOCK) != 0) {
            break;
        }
        evbuffer_drain(out, evbuffer_get_length(out));
    }

done:

    tap_sim_conn_destroy(c);
    if (out != NULL) {
        evbuffer_free(out);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const tap_sim_err_e  kinds[] = {
        TAP_SIM_ERR_500, TAP_SIM_ERR_429, TAP_SIM_ERR_CUT, TAP_SIM_ERR_MALFORMED,
    };
    tap_sim_conf_t     conf;
    tap_sim_shared_t  *sh;
    tap_sim_worker_t  *w;
    uint8_t            b;

    tap_sim_conf_defaults(&conf);
    conf.quiet = 1;
    conf.tokens = 4;
    b = size > 0 ? data[0] : 0;
    if (b & 0x80) {
        conf.error_rate = 1.0;
        conf.error_kind = kinds[(b >> 5) & 3];
        if (b & 0x10) {
            conf.drift_set = 1;
            conf.nondeterminism = 0.5;
        }
        data++;
        size--;
    }

    sh = tap_sim_shared_create(&conf);
    w = sh != NULL ? tap_sim_worker_create(sh) : NULL;
    if (w != NULL) {
        tap_fuzz_sim_run(w, data, size, 0);
        tap_fuzz_sim_run(w, data, size, 1);
    }

    tap_sim_worker_destroy(w);
    tap_sim_shared_destroy(sh);
    return 0;
}
