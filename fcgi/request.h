/*
 * request.h - one request, from its route to its last byte, in the process's event loop.
 *
 * The server (fcgi/server.c) hands each accepted request's conn to request_serve, in the
 * loop's thread. A request that is answered at once (an error, health, HEAD, 204, a
 * refusal) is written and ended there; one that streams lives on in the loop
 * (fcgi/stream.h): the hub's wakeup, its socket and its one timer drive it, and it never
 * blocks. Nothing per request is a thread.
 */
#ifndef SSE_REQUEST_H
#define SSE_REQUEST_H

#include <stdatomic.h>
#include <stdbool.h>

#include "config.h"
#include "conn.h"
#include "loop.h"

struct request;

/* Process-wide state every request shares. The server fills it before the first request;
 * everything but the atomics belongs to the loop's thread. */
struct request_shared {
    struct loop *loop;
    int shutdown_fd;          /* readable once SIGTERM arrived; -1 for none */
    atomic_bool is_shutting_down;
    atomic_long streams_open; /* streams now running in this process (/api/health) */
    struct config process;    /* the settings read once at start from the environment; its
                               * per-process fields (config_is_per_process) serve every
                               * request; strings borrowed from the environment */
    atomic_uint warned_params; /* bit i: config_per_process_name(i) came as a request
                                * parameter and its warning was logged (once a process) */
    struct request *open;     /* every request not yet freed (for shutdown) */
    long open_count;
    /* Called when a request is freed; had_slot says it was served with a stream slot. */
    void (*on_done)(struct request_shared *shared, bool had_slot);
};

/* Serves the request on conn (owned from now on) with a stream slot when has_slot. Returns
 * once it is answered, or once its stream lives in the loop. */
void request_serve(struct conn *conn, struct request_shared *shared, bool has_slot);

/* True when the request may stream and so needs one of the process's stream slots: a GET
 * of a stream route with a well-formed id and query string. Health, HEAD and every request
 * answered 4xx need none (SPEC §4.12). Only reads the parameters. */
bool request_needs_slot(const struct conn *conn);

/* Answers the request on conn (owned from now on) with the busy refusal: every stream slot
 * of this process is taken (SPEC §4.12), and logs it. */
void request_reject_busy(struct conn *conn, struct request_shared *shared);

/* Ends every open stream with reason=shutdown (SPEC §4.11). */
void request_shutdown_all(struct request_shared *shared);

#endif
