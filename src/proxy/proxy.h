/*
 * proxy.h: the proxy data path's entry points.
 */

#ifndef TAP_PROXY_H
#define TAP_PROXY_H

#include "conf.h"

struct tap_psettings_s;

/* Runs the proxy described by cf (workers, listeners, upstream pools, admin
 * listener, access log) until SIGTERM or SIGINT, then drains in-flight
 * requests for up to timeouts.drain and returns 0; returns 1 if it could not
 * start (the reason is printed on stderr). */
int tap_proxy_run(const tap_conf_t *cf);

/* The same, from already resolved settings (tests, tools). */
int tap_proxy_run_settings(const struct tap_psettings_s *ps);

#endif /* TAP_PROXY_H */
