/*
 * testenv.h - one integration test's temp dir and database.
 *
 * testenv_open makes /tmp/sse-integ-XXXXXX, creates events.db in it with the real sqlite3
 * CLI from $SSE_SCHEMA plus session "s1", and registers a failure cleanup (diag.h);
 * testenv_close removes the dir. Paths are absolute. Not thread-safe (one test, one process).
 */
#ifndef SSE_TEST_TESTENV_H
#define SSE_TEST_TESTENV_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

enum { TESTENV_PATH_MAX = 512, TESTENV_SOURCE_MAX = 1 << 20 };

struct testenv {
    char dir[TESTENV_PATH_MAX];       /* the temp dir; "" when not open */
    char db_path[TESTENV_PATH_MAX];   /* <dir>/events.db */
};

/* Creates the dir and the database; fails the test (pointing at `make deps` when sqlite3
 * is missing) on any error. */
void testenv_open(struct testenv *env);

/* Removes the dir and everything in it. Accepts a closed env. */
void testenv_close(struct testenv *env);

/* Writes "<dir>/<name>" into out. Returns out. */
char *testenv_path(const struct testenv *env, const char *name, char *out, size_t size);

/* Returns the value of a variable the Makefile passes (SSE_FCGI_BIN, SSE_SCHEMA, ...);
 * fails the test when it is unset. Borrowed from the environment. */
const char *testenv_require(const char *name);

/* Monotonic clock in milliseconds. */
int64_t testenv_now_ms(void);

/* Wall-clock milliseconds (CLOCK_REALTIME), the clock SQLite's julianday('now') reads: a row
 * stamped with it at its INSERT tells how long it took to reach a client. */
double testenv_wall_ms(void);

/* qsort comparator of doubles, ascending (percentiles of delays). */
int testenv_compare_doubles(const void *a, const void *b);

/* One step of a polling loop (5 ms). Only for loops that re-check a condition against a
 * deadline, never to wait for something to happen. */
void testenv_poll_step(void);

/* Waits for the child pid up to timeout_ms (polling waitpid), then SIGKILLs and reaps it.
 * Returns its exit status, or -1 when it was killed by a signal or timed out. */
int testenv_reap(pid_t pid, int timeout_ms);

/* Moves env's database into <dir>/data/, with the directory dir_mode and the database
 * db_mode, both owned by root and group ((gid_t)-1: root's), lets every user through env's
 * dir, and points env->db_path at the new place. For tests that read the database as
 * another user (DEPLOY-NOTES Q11). Fails the test on any error. */
void testenv_place_database(struct testenv *env, mode_t dir_mode, mode_t db_mode,
                            gid_t group);

/* The gid of group www-data; fails the test (pointing at `make deps`) when there is none. */
gid_t testenv_www_data_gid(void);

/* Writes len bytes to path (created or truncated); fails the test on error. */
void testenv_write_file(const char *path, const char *bytes, size_t len);

/* Writes text to path as an executable (mode 0755): a wrapper script for a bin-path. */
void testenv_write_script(const char *path, const char *text);

/* Reads at most size - 1 bytes of path into out, NUL-terminated. Returns the byte count,
 * or -1 when the file cannot be opened (out is then ""). */
long testenv_read_file(const char *path, char *out, size_t size);

/* $SSE_SRC_DIR/<name> (README.md, a source file, a man page), whole and NUL-terminated,
 * at most TESTENV_SOURCE_MAX bytes; fails the test when it cannot be read whole. Owned by
 * the caller (free). */
char *testenv_read_source(const char *name);

/* True when text holds a sanitizer report (ASan, UBSan's "runtime error:", LSan, TSan):
 * a process of ours that printed one fails its test (STYLE §8). */
bool testenv_has_sanitizer_report(const char *text);

/* A free 127.0.0.1 TCP port, picked by the kernel (bind to port 0). */
int testenv_pick_port(void);

/* True when 127.0.0.1:port accepts a TCP connection now. */
bool testenv_is_port_accepting(int port);

/* Sends sig to every live process (zombies skipped) one of whose arguments starts with
 * arg_prefix; sig 0 only finds them. Returns how many there were; the first cap PIDs go to
 * pids (may be NULL when cap is 0). */
int testenv_signal_by_arg(const char *arg_prefix, int sig, pid_t *pids, size_t cap);

/* Sends sig to every live child (zombies skipped) of parent; sig 0 only finds them. Returns
 * how many there were; the first cap PIDs go to pids (may be NULL when cap is 0). */
int testenv_signal_children(pid_t parent, int sig, pid_t *pids, size_t cap);

/* Walks /proc/<pid>/fd: the descriptors of pid whose link target ends with suffix (NULL or
 * "": every descriptor). Returns how many, and the number of the first one (-1 when none)
 * into *first (may be NULL); 0 when pid is gone. */
int testenv_count_fds(pid_t pid, const char *suffix, int *first);

/* A field of /proc/<pid>/status in KiB ("VmRSS:", "VmHWM:", "RssAnon:"); -1 when pid is
 * gone or the field is missing. */
long testenv_proc_status_kib(pid_t pid, const char *field);

/* Renames the database and its -wal and -shm from one suffix to another ("" is the
 * database's own name), as `mv` would; a missing -wal or -shm is fine. */
void testenv_move_database(const struct testenv *env, const char *from_suffix,
                           const char *to_suffix);

/* Forks and execs argv (argv[0] looked up in PATH when it has no slash) with stdout and
 * stderr appended to log_path and env_pairs ("NAME", "value", ..., NULL; may be NULL) set.
 * With is_group_leader the child leads a process group of its own (its PID). Returns the
 * child's PID; the child exits 126 when the log cannot be opened, 127 when argv[0] cannot
 * be run. */
pid_t testenv_spawn(const char *log_path, const char *const *argv, const char *const *env_pairs,
                    bool is_group_leader);

/* testenv_spawn with the child's stdin on stdin_fd (-1: the runner's own), the way a
 * systemd socket unit with StandardInput=socket hands a listening socket to its service. */
pid_t testenv_spawn_stdin(const char *log_path, const char *const *argv,
                          const char *const *env_pairs, bool is_group_leader, int stdin_fd);

#endif
