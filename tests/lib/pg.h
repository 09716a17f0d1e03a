/*
 * pg.h - a real PostgreSQL for one integration test, and the real psql CLI against it.
 *
 * pg_start runs initdb into <test dir>/pg/data (-U sse --auth=trust, UTF8, locale C), then
 * the postmaster itself in the foreground, fork/exec'd with its PID kept (no pg_ctl):
 * listening on 127.0.0.1 only, on a port the kernel picked, no unix socket, fsync off. It
 * returns once PQping answers, polled with a deadline. As root (the suite in CI) initdb and
 * postgres run as the `postgres` OS user, which owns <test dir>/pg; otherwise as the caller.
 * pg_stop sends SIGINT (fast shutdown) by PID and waits with a deadline, then SIGKILLs it and
 * its children. A failing DIAG_CHECK prints the server's log and kills it by PID (diag.h);
 * Check's process-group kill is only the backstop. The binaries are those of the highest
 * version under /usr/lib/postgresql/ (or $SSE_PG_BINDIR); none fails the test, pointing at
 * `make deps`. Not thread-safe (one test, one process), except where a function says so.
 */
#ifndef SSE_TEST_PG_H
#define SSE_TEST_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <sys/types.h>

#include "tests/lib/testenv.h"

enum { PG_OUTPUT_MAX = 16384, PG_CONNINFO_MAX = 128 };

struct pg {
    pid_t pid;                          /* the postmaster; -1 when stopped */
    int port;                           /* 127.0.0.1 port, kept by restarts */
    char dir[TESTENV_PATH_MAX];         /* <test dir>/pg, the server user's: logs */
    char data_dir[TESTENV_PATH_MAX];    /* <dir>/data, made by initdb */
    char log_path[TESTENV_PATH_MAX];    /* postgres's stdout and stderr, every start */
    char bin_dir[TESTENV_PATH_MAX];     /* /usr/lib/postgresql/<version>/bin */
    char conninfo[PG_CONNINFO_MAX];     /* libpq keyword/value string, see pg_conninfo */
    const struct testenv *env;          /* borrowed from pg_start: psql's files go there */
    unsigned psql_count;                /* names psql's files */
};

struct pg_result {
    int status;                         /* psql's exit status; -1 when killed or timed out */
    char out[PG_OUTPUT_MAX];            /* stdout (its head) */
    char err[PG_OUTPUT_MAX];            /* stderr (its head) */
};

/* Makes a new cluster in env's dir and starts it; env stays borrowed until pg_stop. A port
 * taken between picking and binding is retried on a new one. Fails the test (with the log)
 * when initdb fails or the server never answers. */
void pg_start(struct pg *pg, const struct testenv *env);

/* Stops the server (SIGINT, up to 15 s, then SIGKILL of it and its children) and reaps it.
 * Accepts a stopped or never started pg (zeroed). The data dir stays. */
void pg_stop(struct pg *pg);

/* pg_stop, then the same data dir on the same port again; waits until it answers. */
void pg_restart(struct pg *pg);

/* A real timeline change: stops the server, writes standby.signal into the data dir,
 * starts it (a standby of nothing, replaying its own WAL), runs SELECT pg_promote() over
 * psql and waits until pg_is_in_recovery() is false. The timeline goes 1, 2, 3, ...; the
 * system identifier, the port and the data stay. Fails the test when any step does. */
void pg_new_timeline(struct pg *pg);

/* The two halves of pg_new_timeline: stop, write standby.signal and start again in
 * recovery (read-only, LISTEN refused); then pg_promote ends the recovery on a new
 * timeline and waits until it has. */
void pg_become_standby(struct pg *pg);
void pg_promote(struct pg *pg);

/* The timeline of the WAL the server writes now (1 after initdb). Fails the test on error. */
int pg_timeline(struct pg *pg);

/* "host=127.0.0.1 port=<port> user=sse dbname=postgres connect_timeout=5", for
 * PQconnectdb. Borrowed; valid until pg changes. Thread-safe. */
const char *pg_conninfo(const struct pg *pg);

/* A libpq connection to the server; fails the test (with libpq's message) when there is
 * none. Owned by the caller: PQfinish it. */
PGconn *pg_connect(const struct pg *pg);

/* Writes sql to a file in the test's dir and runs the real psql on it:
 *     psql -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p <port> -U sse -d postgres -f <file>
 * so statements run one by one (autocommit) and the first error stops it, as `sqlite3 -bail`
 * does; stdout is rows only, one a line, columns split by '|' (sqlite3's list mode).
 * Waits up to 30 s. Fills r (may be NULL) and returns psql's exit status (0 ok, 3 an SQL
 * error). psql missing fails the test, pointing at `make deps`. */
int pg_psql(struct pg *pg, const char *sql, struct pg_result *r);

/* pg_psql on an existing file (a schema), not copied. */
int pg_psql_file(struct pg *pg, const char *path, struct pg_result *r);

/* pg_psql, failing the test (printing the SQL's head and psql's stderr) unless it exits 0. */
void pg_psql_ok(struct pg *pg, const char *sql);

/* Runs sql with pg_psql_ok and returns the first line of its stdout as a number. */
long long pg_query_number(struct pg *pg, const char *sql);

/* Runs sql with pg_psql_ok and stores the leading number of each line of its stdout (the
 * first column of each row) into out, at most cap of them (more fail the test). Returns the
 * count. */
size_t pg_query_numbers(struct pg *pg, const char *sql, long long *out, size_t cap);

/* The log's newest position: the greatest events.id and sessions.log_id (0 when there are
 * none), which is what a caught-up relay has copied (deploy/postgresql/schema.sql). */
long long pg_log_newest(struct pg *pg);

/* Applies $SSE_SRC_DIR/deploy/postgresql/schema.sql with psql; fails the test unless psql
 * exits 0. */
void pg_apply_schema(struct pg *pg);

/* Copies the message of psql's first "ERROR:  <message>" line in r->err into out (at most
 * size - 1 bytes, NUL-terminated). Returns out, or NULL (out "") when there is none. */
char *pg_error_message(const struct pg_result *r, char *out, size_t size);

/* Prints the server's log (its tail) and the port to stderr. */
void pg_dump(const struct pg *pg);

#endif
