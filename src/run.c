/*
 * run.c: stand-in for the proxy's entry point until the data path is built, so that the command
 * line and the configuration can be used and tested on their own.
 */

#include "config.h"

#include <stdio.h>

#include "run.h"

int
tap_run(const tap_conf_t *cf)
{
    TAP_UNUSED(cf);
    fprintf(stderr, "infertap: proxy data path not built yet\n");

    return 1;
}
