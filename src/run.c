/*
 * run.c: from a checked configuration to a running proxy.
 */

#include "config.h"

#include "proxy/proxy.h"
#include "run.h"

int
tap_run(const tap_conf_t *cf)
{
    return tap_proxy_run(cf);
}
