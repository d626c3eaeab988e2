/*
 * server.h: sockets for infertap-sim workers: one SO_REUSEPORT listener per
 * worker thread and a bufferevent per accepted connection, glued to the
 * socket-free connection core of http.h.
 */

#ifndef TAP_SIM_SERVER_H
#define TAP_SIM_SERVER_H

#include <sys/socket.h>

#include "sim.h"

int tap_sim_worker_listen(tap_sim_worker_t *w, const struct sockaddr *sa, socklen_t len,
    char **err);
int tap_sim_worker_local(tap_sim_worker_t *w, struct sockaddr_storage *ss, socklen_t *len);


#endif /* TAP_SIM_SERVER_H */
