/*
 * publish.h - producers: the real sqlite3 CLI, fork/exec'd with SQL on stdin.
 *
 * Every call runs `sqlite3 -bail <db>` with its stdin read from a file holding the SQL, and
 * captures stdout and stderr. Nothing here talks to SQLite through the library: the suite
 * publishes exactly as a user's shell script would. sqlite3 missing fails the test and points
 * at `make deps`. Not thread-safe (one test, one process).
 */
#ifndef SSE_TEST_PUBLISH_H
#define SSE_TEST_PUBLISH_H

#include <stdbool.h>
#include <sys/types.h>

struct testenv;

enum { PUBLISH_OUTPUT_MAX = 8192 };

struct publish_result {
    int status;                         /* exit status; -1 when killed by a signal */
    char out[PUBLISH_OUTPUT_MAX];       /* stdout (its head) */
    char err[PUBLISH_OUTPUT_MAX];       /* stderr (its head) */
};

/* Runs sql against env's database and waits (deadline 30 s). Returns the exit status;
 * r may be NULL. */
int publish_sql(const struct testenv *env, const char *sql, struct publish_result *r);

/* Runs sql after ".timeout 5000" (a producer's busy timeout, as README advises) and fails
 * the test, printing stderr, unless sqlite3 exits 0. */
void publish_ok(const struct testenv *env, const char *sql);

/* printf-style publish_ok (at most 64 KiB of SQL). */
void publish_okf(const struct testenv *env, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs command_line with `sh -c` (a producer as a user types it: the line `make run`
 * prints, a shell script) and waits (deadline 30 s). Returns the exit status; r may be
 * NULL. */
int publish_shell(const struct testenv *env, const char *command_line, struct publish_result *r);

/* Runs sql and returns the first line of its stdout as a number (for SELECT max(id)). */
long long publish_query_number(const struct testenv *env, const char *sql);

/* Inserts n events of type into session_id (NULL: global) with stream_id (may be NULL) in
 * one CLI process and one statement; data is {"n":<i>} for i = 1..n. */
void publish_events(const struct testenv *env, const char *session_id, const char *type,
                    const char *stream_id, int n);

/* Copies the message of the sqlite3 CLI's first error in r->err into out (at most size - 1
 * bytes, NUL-terminated): what follows "error near line N: " (SQL on stdin) or "Error: ",
 * without the trailing " (<code>)". Returns out, or NULL (out "") when there is none. */
char *publish_error_message(const struct publish_result *r, char *out, size_t size);

/* Starts sqlite3 on sql in the background. Returns its PID (the caller must reap it with
 * publish_wait). sql is copied to a file first. */
pid_t publish_start(const struct testenv *env, const char *sql);

/* Starts sqlite3 on hold_sql (a BEGIN and what it should take: a read snapshot, a write
 * lock) followed by a statement that would run for hours, and returns its PID once hold_sql
 * is done: it writes a marker file then, polled for up to 10 s (a miss fails the test with
 * its stderr). What hold_sql took stays held until the caller ends the PID with
 * publish_wait(env, pid, 0, NULL), which SIGKILLs it. */
pid_t publish_start_holding(const struct testenv *env, const char *hold_sql);

/* True once the publish_start PID has exited; it is not reaped (publish_wait collects its
 * status and output). For a test that keeps reading streams while producers run. */
bool publish_is_done(pid_t pid);

/* Waits for a publish_start PID up to timeout_ms, then SIGKILLs and reaps it. Returns the
 * exit status (-1 killed or timed out); fills r when not NULL. */
int publish_wait(const struct testenv *env, pid_t pid, int timeout_ms,
                 struct publish_result *r);

#endif
