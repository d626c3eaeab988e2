/*
 * run.c: from a checked configuration to a running proxy.
 */

#include "config.h"

#include "genai/genai.h"
#include "proxy/proxy.h"
#include "run.h"

int
tap_run(const tap_conf_t *cf)
{
    tap_json_init();
    return tap_proxy_run(cf);
}
