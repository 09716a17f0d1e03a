/*
 * stream.h - one request, from route to last byte: errors, health, and the event stream
 * (headers, replay or resume, live, keepalive, end), served in the process's event loop.
 *
 * The server (fcgi/server.c) hands each accepted request's conn to stream_serve, in the
 * loop's thread. A request that is answered at once (an error, health, HEAD, 204) is
 * written and ended there; a stream stays in the loop: the hub's wakeup, its socket and its
 * one timer drive it, and it never blocks. Nothing per stream is a thread.
 *
 * Memory per stream is bounded: one batch of at most STREAM_BATCH_ROWS rows and about
 * STREAM_BATCH_BYTES bytes (plus the row that crosses that line), whose rows it shares with
 * the hub when the hub's memory serves them; one frame at a time built for a row the hub
 * did not frame; and its output waiting for the socket, which it stops adding to once
 * STREAM_OUTPUT_MARK bytes wait (so at most that plus one frame). A stream over the mark
 * reads no rows until the socket drains; then it goes on from its cursor, from the hub's
 * memory or the database: a slow client loses nothing (unless SSE_MAX_LAG sheds, SPEC §4.8)
 * and delays nobody. One whose socket takes nothing for SSE_SLOW_CLIENT_S (default 30)
 * while output waits ends with reason=slow_client; it resumes exactly with Last-Event-ID.
 */
#ifndef SSE_STREAM_H
#define SSE_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "conn.h"
#include "loop.h"

enum {
    STREAM_BATCH_ROWS = 256,
    STREAM_BATCH_BYTES = 256 * 1024,
    /* Output waiting for the socket past which a stream reads no more rows. */
    STREAM_OUTPUT_MARK = 256 * 1024,
};

struct request;

/* Process-wide state every request shares. The server fills it before the first request;
 * everything but the atomics belongs to the loop's thread. */
struct stream_shared {
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
    void (*on_done)(struct stream_shared *shared, bool had_slot);
};

/* Serves the request on conn (owned from now on) with a stream slot when has_slot. Returns
 * once it is answered, or once its stream lives in the loop. */
void stream_serve(struct conn *conn, struct stream_shared *shared, bool has_slot);

/* True when the request may stream and so needs one of the process's stream slots: a GET
 * of a stream route with a well-formed id and query string. Health, HEAD and every request
 * answered 4xx need none (SPEC §4.12). Only reads the parameters. */
bool stream_needs_slot(const struct conn *conn);

/* Answers the request on conn (owned from now on) with the busy refusal: every stream slot
 * of this process is taken (SPEC §4.12), and logs it. */
void stream_reject_busy(struct conn *conn, struct stream_shared *shared);

/* Ends every open stream with reason=shutdown (SPEC §4.11). */
void stream_shutdown_all(struct stream_shared *shared);

#endif
