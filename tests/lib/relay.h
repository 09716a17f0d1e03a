/*
 * relay.h - the real sse-fcgi-relay for an integration test: started by fork/exec with its
 * PID kept, stopped by PID, and watched through the relay_state row it writes.
 *
 * The binary is build/sse-fcgi-relay, next to $SSE_FCGI_BIN. A failing check prints the
 * relay's log and SIGKILLs it (diag.h). Not thread-safe (one test, one process).
 */
#ifndef SSE_TEST_RELAY_H
#define SSE_TEST_RELAY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "tests/lib/testenv.h"

struct relay_proc {
    pid_t pid;                          /* -1 when not running */
    char name[32];                      /* "a", "b": names the log */
    char db_path[TESTENV_PATH_MAX];     /* the node's SQLite file (--db) */
    char conninfo[256];                 /* --pg */
    char log_path[TESTENV_PATH_MAX];    /* <dir>/relay-<name>.log: stdout and stderr */
};

/* A node's SQLite file <env dir>/node-<name>.db, made from $SSE_SCHEMA with the real
 * sqlite3 CLI, its path into path: mode 0666, so that the web server's user can read and
 * write it (Apache runs the responder as www-data; SQLite gives -wal and -shm the
 * database's mode). Fails the test on error. */
void relay_make_node_db(const struct testenv *env, const char *name, char *path, size_t size);

/* The path of build/sse-fcgi-relay into out; fails the test when it is not there. */
const char *relay_binary(char *out, size_t size);

/* Starts sse-fcgi-relay --pg conninfo --db db_path [extra args ...] (extra may be NULL,
 * else NULL-terminated) with SSE_LOG_LEVEL=debug; returns at once. */
void relay_start(struct relay_proc *r, const struct testenv *env, const char *name,
                 const char *db_path, const char *conninfo, const char *const *extra);

/* Starts it again with the same settings (and extra). */
void relay_restart(struct relay_proc *r, const char *const *extra);

/* SIGTERM, then waits up to 10 s. Returns the exit status (128 + signal when a signal
 * ended it; -1: it had to be killed). */
int relay_stop(struct relay_proc *r);

/* SIGKILL and reap: a crash at any point. */
void relay_kill(struct relay_proc *r);

/* Waits up to timeout_ms for the relay to exit by itself. Returns its exit status (128 +
 * signal when a signal ended it), or -1
 * when it still runs (it keeps running). */
int relay_wait_exit(struct relay_proc *r, int timeout_ms);

/* relay_state's position in db_path (-1 when there is no row yet). Reads read-only. */
int64_t relay_position(const char *db_path);

/* relay_state's state ("copying", ...) into out; "" when there is no row. */
const char *relay_state_name(const char *db_path, char *out, size_t size);

/* Waits up to timeout_ms until relay_position(db_path) >= position; fails the test (with
 * the relay's log) otherwise. Returns the ms it took. */
int64_t relay_wait_position(struct relay_proc *r, int64_t position, int timeout_ms);

/* Prints the relay's log to stderr. */
void relay_dump(const struct relay_proc *r);

#endif
