/*
 * stream.h - one request, from route to last byte: errors, health, and the event stream
 * (headers, replay or resume, live, keepalive, end).
 *
 * The caller (main.c) supplies the transport as a struct stream_io, so the same code serves
 * FastCGI and plain CGI. Memory per stream is bounded: one batch of at most
 * STREAM_BATCH_ROWS rows and about STREAM_BATCH_BYTES bytes of row data (plus the row that
 * crosses that line), and one output buffer flushed at STREAM_FLUSH_BYTES.
 * stream_serve is thread-safe; each call owns everything it opens.
 */
#ifndef SSE_STREAM_H
#define SSE_STREAM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

enum {
    STREAM_BATCH_ROWS = 256,
    STREAM_BATCH_BYTES = 256 * 1024,
    STREAM_FLUSH_BYTES = 64 * 1024,
    STREAM_FRAME_MAX = 64 * 1024 * 1024,  /* one frame; larger rows are skipped and logged */
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

/* Process-wide state every stream shares. */
struct stream_shared {
    int shutdown_fd;          /* readable once SIGTERM arrived; -1 for none */
    atomic_long streams_open; /* streams now running in this process (/api/health) */
};

/* Serves one request completely and returns when its response has ended. Never exits the
 * process; every failure becomes a response or a log line. */
void stream_serve(const struct stream_io *io, struct stream_shared *shared);

/* Answers a request at once with 503 and Retry-After because every stream slot of this
 * process is taken (SPEC §4.12), and logs it. Thread-safe. */
void stream_reject_busy(const struct stream_io *io);

#endif
