/*
 * wait.h - sleeping until the database changes, the client leaves, a deadline passes or the
 * process is told to stop.
 *
 * A waiter watches one database for one stream: inotify on the -wal file (and the directory,
 * to follow the -wal being recreated) where the kernel allows, confirmed by PRAGMA
 * data_version, with a data_version poll every poll_ms as the safety net and the only
 * mechanism when inotify is unavailable (DEPLOY-NOTES §7, §8, Q13). One waiter belongs to one
 * thread.
 */
#ifndef SSE_WAIT_H
#define SSE_WAIT_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

enum wait_result {
    WAIT_CHANGED,        /* data_version moved: read new rows */
    WAIT_DEADLINE,       /* the caller's deadline passed */
    WAIT_CLIENT_GONE,    /* the client's connection closed (or its server aborted) */
    WAIT_SHUTDOWN,       /* shutdown_fd became readable (SIGTERM) */
    WAIT_ERROR,          /* data_version could not be read */
};

struct wait_options {
    long poll_ms;        /* SSE_POLL_MS */
    int client_fd;       /* fd to watch for the client leaving; -1 for none */
    bool is_client_socket; /* FastCGI socket: POLLIN+recv()==0 or POLLRDHUP means gone;
                            * otherwise (CGI stdout) POLLERR/POLLHUP means gone */
    int shutdown_fd;     /* readable when the process must stop; -1 for none */
};

struct waiter;

/* Creates a waiter for st, whose database is at db_path. Reads data_version first (so the
 * -wal exists, DEPLOY-NOTES §8), then adds the watches; falls back to polling when inotify
 * fails. Returns 0 and *out, or -errno / a store_error. */
int wait_open(struct store *st, const char *db_path, const struct wait_options *opt,
              struct waiter **out);

/* Closes the inotify descriptor and frees the waiter. NULL is safe. */
void wait_close(struct waiter *w);

/* Blocks until one of the wait_result conditions; deadline_ms is on wait_now_ms()'s clock.
 * Returns WAIT_CHANGED at once when data_version moved since the last WAIT_CHANGED. */
enum wait_result wait_for_change(struct waiter *w, int64_t deadline_ms);

/* A stream's sleep when the process's watcher (store/hub.c) reads the database for it:
 * until wake_fd (an eventfd, drained here) is readable (WAIT_CHANGED), the client leaves,
 * shutdown, or deadline_ms. opt->poll_ms is unused. */
enum wait_result wait_for_wake(const struct wait_options *opt, int wake_fd, int64_t deadline_ms);

/* Milliseconds on the monotonic clock. */
int64_t wait_now_ms(void);

#endif
