/*
 * stream.h - one request, from route to last byte: errors, health, and the event stream
 * (headers, replay or resume, live, keepalive, end).
 *
 * The caller (main.c) supplies the transport as a struct stream_io, so the same code serves
 * FastCGI and plain CGI. Memory per stream is bounded: one batch of at most
 * STREAM_BATCH_ROWS rows and about STREAM_BATCH_BYTES bytes (plus the row that crosses that
 * line, each of its values at most STORE_VALUE_MAX), whose rows it shares with the hub when
 * the hub's memory serves them; one frame at a time built for a row the hub did not frame
 * (at most SSE_FRAME_JSON_MAX, rarely: the hub frames every row a stream subscribes to
 * when it reads it); and one output buffer of at most STREAM_OUT_MAX. A frame of
 * STREAM_FLUSH_BYTES or more is sent from where it lies, never copied.
 * stream_serve is thread-safe; each call owns everything it opens.
 */
#ifndef SSE_STREAM_H
#define SSE_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

enum {
    STREAM_BATCH_ROWS = 256,
    STREAM_BATCH_BYTES = 256 * 1024,
    STREAM_FLUSH_BYTES = 64 * 1024,
    /* What r->out may hold: it is flushed once it holds STREAM_FLUSH_BYTES, and a frame
     * that goes into it is smaller than that, with its head (an event: line of a 128-byte
     * type, sanitized). */
    STREAM_OUT_MAX = 2 * STREAM_FLUSH_BYTES + 1024,
};

/* The transport of one request. */
struct stream_io {
    void *ctx;
    /* Returns a request parameter (CGI: the environment) or NULL; borrowed until the
     * request ends. */
    const char *(*param)(void *ctx, const char *name);
    /* Writes all bytes and flushes them to the web server. Returns 0, or -errno. */
    int (*send)(void *ctx, const char *bytes, size_t len);
    int client_fd;            /* polled for the client leaving */
    bool is_client_socket;    /* see struct wait_options */
    bool is_cgi;              /* plain CGI: one request per process */
};

/* Process-wide state every stream shares. main.c fills it before the first request. */
struct stream_shared {
    int shutdown_fd;          /* readable once SIGTERM arrived; -1 for none */
    atomic_long streams_open; /* streams now running in this process (/api/health) */
    struct config process;    /* the settings read once at start from the environment; its
                               * per-process fields (config_is_per_process) serve every
                               * request; strings borrowed from the environment */
    atomic_uint warned_params; /* bit i: config_per_process_name(i) came as a request
                                * parameter and its warning was logged (once a process) */
};

/* Serves one request completely and returns when its response has ended. Never exits the
 * process; every failure becomes a response or a log line. */
void stream_serve(const struct stream_io *io, struct stream_shared *shared);

/* True when the request may stream and so needs one of the process's stream slots: a GET
 * of a stream route with a well-formed id and query string. Health, HEAD and every request
 * answered 4xx need none (SPEC §4.12). Only reads io->param; thread-safe. */
bool stream_needs_slot(const struct stream_io *io);

/* Answers a request at once with 503 and Retry-After because every stream slot of this
 * process is taken (SPEC §4.12), and logs it. Thread-safe. */
void stream_reject_busy(const struct stream_io *io);

#endif
