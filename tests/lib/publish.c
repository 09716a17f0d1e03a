/*
 * publish.c - the sqlite3 CLI as the producer (see publish.h).
 *
 * SQL goes to <dir>/publish-<pid>.sql and becomes the child's stdin; stdout and stderr go to
 * files named after the child's PID, read back after it exits. Files rather than pipes so a
 * 1 MiB script cannot deadlock against a full pipe. testenv_reap waits with a deadline; a
 * child past it is SIGKILLed and reaped.
 */
#include "tests/lib/publish.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/testenv.h"

enum { PUBLISH_TIMEOUT_MS = 30000, PUBLISH_SQL_MAX = 65536 };

static unsigned publish_counter;  /* names the SQL files of this test process */
static struct publish_result scratch;  /* 16 KiB, off the stack; one test, one thread */
static char sql_scratch[PUBLISH_SQL_MAX];  /* publish_okf's formatted SQL */

static void
redirect(const char *path, int flags, int target_fd)
{
    int fd = open(path, flags, 0600);
    if (fd < 0 || dup2(fd, target_fd) < 0)
        _exit(126);
    close(fd);
}

/* Output file of child pid: <dir>/publish-<pid>.<ext>. */
static char *
output_path(const struct testenv *env, pid_t pid, const char *ext, char *out, size_t size)
{
    char name[64];
    snprintf(name, sizeof(name), "publish-%ld.%s", (long)pid, ext);
    return testenv_path(env, name, out, size);
}

/* Forks argv (found in PATH) with stdin from stdin_path and stdout, stderr to files named
 * after its PID. Returns the PID. */
static pid_t
spawn_producer(const struct testenv *env, const char *const *argv, const char *stdin_path)
{
    fflush(NULL);
    pid_t pid = fork();
    DIAG_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        char out_path[TESTENV_PATH_MAX], err_path[TESTENV_PATH_MAX];
        output_path(env, getpid(), "out", out_path, sizeof(out_path));
        output_path(env, getpid(), "err", err_path, sizeof(err_path));
        redirect(stdin_path, O_RDONLY, STDIN_FILENO);
        redirect(out_path, O_WRONLY | O_CREAT | O_TRUNC, STDOUT_FILENO);
        redirect(err_path, O_WRONLY | O_CREAT | O_TRUNC, STDERR_FILENO);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    return pid;
}

pid_t
publish_start(const struct testenv *env, const char *sql)
{
    char name[64], sql_path[TESTENV_PATH_MAX];
    snprintf(name, sizeof(name), "publish-in-%u.sql", publish_counter++);
    testenv_path(env, name, sql_path, sizeof(sql_path));
    testenv_write_file(sql_path, sql, strlen(sql));
    const char *const argv[] = {"sqlite3", "-bail", env->db_path, NULL};
    return spawn_producer(env, argv, sql_path);
}

bool
publish_is_done(pid_t pid)
{
    siginfo_t info = {0};
    return waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0
           && info.si_pid == pid;
}

int
publish_wait(const struct testenv *env, pid_t pid, int timeout_ms, struct publish_result *r)
{
    int status = testenv_reap(pid, timeout_ms);
    DIAG_CHECK(status != 127, "sqlite3 (or sh) not found in PATH: run `make deps`");
    if (r != NULL) {
        char path[TESTENV_PATH_MAX];
        r->status = status;
        testenv_read_file(output_path(env, pid, "out", path, sizeof(path)), r->out,
                          sizeof(r->out));
        testenv_read_file(output_path(env, pid, "err", path, sizeof(path)), r->err,
                          sizeof(r->err));
    }
    return status;
}

pid_t
publish_start_holding(const struct testenv *env, const char *hold_sql)
{
    char name[64], marker[TESTENV_PATH_MAX], text[16] = "";
    snprintf(name, sizeof(name), "publish-held-%u", publish_counter++);
    testenv_path(env, name, marker, sizeof(marker));
    int n = snprintf(sql_scratch, sizeof(sql_scratch), "%s\n.once %s\nSELECT 'held';\n"
                     "SELECT count(*) FROM (WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT "
                     "i + 1 FROM k WHERE i < 100000000000) SELECT i FROM k);\n", hold_sql,
                     marker);
    DIAG_CHECK(n > 0 && n < (int)sizeof(sql_scratch), "publish_start_holding: SQL too long");
    pid_t pid = publish_start(env, sql_scratch);
    int64_t deadline = testenv_now_ms() + 10000;
    while (strstr(text, "held") == NULL && testenv_now_ms() < deadline) {
        testenv_poll_step();
        testenv_read_file(marker, text, sizeof(text));
    }
    if (strstr(text, "held") != NULL)
        return pid;
    publish_wait(env, pid, 0, &scratch);
    DIAG_CHECK(false, "sqlite3 never got through:\n%.2000s\nstderr: %s", hold_sql,
               scratch.err);
    return -1;
}

int
publish_sql(const struct testenv *env, const char *sql, struct publish_result *r)
{
    return publish_wait(env, publish_start(env, sql), PUBLISH_TIMEOUT_MS, r);
}

/* A producer that must succeed waits for a lock as README tells producers to (a busy
 * timeout): a reader opening the database may hold the WAL index for a moment, and the
 * CLI without one fails at once ("database is locked"; seen once in 1,261 tests). */
static const char PRODUCER_TIMEOUT[] = ".timeout 5000\n";

void
publish_ok(const struct testenv *env, const char *sql)
{
    size_t len = strlen(PRODUCER_TIMEOUT) + strlen(sql) + 1;
    char *timed = malloc(len);
    DIAG_CHECK(timed != NULL, "publish_ok: out of memory");
    snprintf(timed, len, "%s%s", PRODUCER_TIMEOUT, sql);
    int status = publish_sql(env, timed, &scratch);
    free(timed);
    DIAG_CHECK(status == 0, "sqlite3 exited %d on:\n%.2000s\nstderr: %s", status, sql,
               scratch.err);
}

void
publish_okf(const struct testenv *env, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql_scratch, sizeof(sql_scratch), fmt, ap);
    va_end(ap);
    DIAG_CHECK(n >= 0 && n < (int)sizeof(sql_scratch), "publish_okf: SQL too long");
    publish_ok(env, sql_scratch);
}

int
publish_shell(const struct testenv *env, const char *command_line, struct publish_result *r)
{
    const char *const argv[] = {"sh", "-c", command_line, NULL};
    return publish_wait(env, spawn_producer(env, argv, "/dev/null"), PUBLISH_TIMEOUT_MS, r);
}

long long
publish_query_number(const struct testenv *env, const char *sql)
{
    int status = publish_sql(env, sql, &scratch);
    DIAG_CHECK(status == 0, "sqlite3 exited %d on %s: %s", status, sql, scratch.err);
    char *end = NULL;
    long long value = strtoll(scratch.out, &end, 10);
    DIAG_CHECK(end != scratch.out, "not a number from %s: '%s'", sql, scratch.out);
    return value;
}

char *
publish_error_message(const struct publish_result *r, char *out, size_t size)
{
    const char *at = strstr(r->err, "error near line ");
    at = at != NULL ? strstr(at, ": ") : strstr(r->err, "Error: ");
    out[0] = '\0';
    if (at == NULL)
        return NULL;
    at = strchr(at, ' ') + 1;
    size_t len = strcspn(at, "\n");
    size_t digits = len > 0 && at[len - 1] == ')' ? len - 1 : 0;  /* " (19)": the code */
    while (digits > 0 && at[digits - 1] >= '0' && at[digits - 1] <= '9')
        digits--;
    if (digits >= 2 && digits < len - 1 && strncmp(at + digits - 2, " (", 2) == 0)
        len = digits - 2;
    snprintf(out, size, "%.*s", (int)len, at);
    return out;
}

static void
append_quoted(char *out, size_t size, const char *value)
{
    size_t len = strlen(out);
    if (value == NULL)
        snprintf(out + len, size - len, "NULL");
    else
        snprintf(out + len, size - len, "'%s'", value);  /* test values hold no quote */
}

void
publish_events(const struct testenv *env, const char *session_id, const char *type,
               const char *stream_id, int n)
{
    char sql[1024] = "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
                     "WHERE i < ";
    size_t len = strlen(sql);
    snprintf(sql + len, sizeof(sql) - len, "%d)\nINSERT INTO events(session_id, type, "
             "stream_id, data) SELECT ", n);
    append_quoted(sql, sizeof(sql), session_id);
    strcat(sql, ", ");
    append_quoted(sql, sizeof(sql), type);
    strcat(sql, ", ");
    append_quoted(sql, sizeof(sql), stream_id);
    strcat(sql, ", json_object('n', i) FROM k;\n");
    publish_ok(env, sql);
}
