/*
 * run.h: the running proxy, entered from main.c once the configuration is loaded and checked.
 */

#ifndef TAP_RUN_H
#define TAP_RUN_H

#include "conf.h"

/*
 * Start the workers, listeners, admin server and exporters described by cf, and serve until a
 * signal ends the process (SIGTERM drains).  cf stays owned by the caller and must outlive the
 * call.  Returns the process exit status: 0 after a clean shutdown, 1 on a start-up failure
 * (already reported on stderr).
 */
int tap_run(const tap_conf_t *cf);

#endif /* TAP_RUN_H */
