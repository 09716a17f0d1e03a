/*
 * relay.c - the real sse-fcgi-relay for a test (see relay.h).
 */
#include "tests/lib/relay.h"

#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/publish.h"

enum { RELAY_ARGS_MAX = 16 };



static void
dump_hook(void *ctx)
{
    relay_dump(ctx);
}

static void
cleanup_hook(void *ctx)
{
    struct relay_proc *r = ctx;
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        r->pid = -1;
    }
}

/* A relay that printed a sanitizer report fails its test, as a responder does. */
static void
expect_clean_log(struct relay_proc *r)
{
    static char text[1 << 20];
    testenv_read_file(r->log_path, text, sizeof(text));
    DIAG_CHECK(!testenv_has_sanitizer_report(text), "a sanitizer report from relay %s (its "
               "log is above)", r->name);
}

void
relay_make_node_db(const struct testenv *env, const char *name, char *path, size_t size)
{
    char file[64];
    snprintf(file, sizeof(file), "node-%s.db", name);
    testenv_path(env, file, path, size);
    char line[3 * TESTENV_PATH_MAX];
    snprintf(line, sizeof(line), "sqlite3 -bail '%s' < '%s' && chmod 0666 '%s'", path,
             testenv_require("SSE_SCHEMA"), path);
    struct publish_result r;
    DIAG_CHECK(publish_shell(env, line, &r) == 0, "%s: %s", line, r.err);
}

const char *
relay_binary(char *out, size_t size)
{
    char copy[TESTENV_PATH_MAX - 32];
    snprintf(copy, sizeof(copy), "%s", testenv_require("SSE_FCGI_BIN"));
    snprintf(out, size, "%s/sse-fcgi-relay", dirname(copy));
    DIAG_CHECK(access(out, X_OK) == 0, "%s: %s (make builds it)", out, strerror(errno));
    return out;
}

static void
spawn(struct relay_proc *r, const char *const *extra)
{
    char bin[TESTENV_PATH_MAX];
    relay_binary(bin, sizeof(bin));
    const char *argv[RELAY_ARGS_MAX] = {bin, "--pg", r->conninfo, "--db", r->db_path};
    size_t n = 5;
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        DIAG_CHECK(n + 1 < RELAY_ARGS_MAX, "too many relay arguments");
        argv[n++] = extra[i];
    }
    argv[n] = NULL;
    const char *env[] = {"SSE_LOG_LEVEL", "debug", NULL};
    r->pid = testenv_spawn(r->log_path, argv, env, false);
}

void
relay_start(struct relay_proc *r, const struct testenv *env, const char *name,
            const char *db_path, const char *conninfo, const char *const *extra)
{

    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->db_path, sizeof(r->db_path), "%s", db_path);
    snprintf(r->conninfo, sizeof(r->conninfo), "%s", conninfo);
    char file[64];
    snprintf(file, sizeof(file), "relay-%s.log", name);
    testenv_path(env, file, r->log_path, sizeof(r->log_path));
    spawn(r, extra);
    diag_register(r, dump_hook, cleanup_hook);
}

void
relay_restart(struct relay_proc *r, const char *const *extra)
{
    DIAG_CHECK(r->pid < 0, "relay %s still runs (pid %ld)", r->name, (long)r->pid);
    spawn(r, extra);
}

int
relay_wait_exit(struct relay_proc *r, int timeout_ms)
{
    if (r->pid < 0)
        return -1;
    int64_t start = testenv_now_ms();
    int status;
    pid_t got;
    while ((got = waitpid(r->pid, &status, WNOHANG)) == 0) {
        if (testenv_now_ms() - start >= timeout_ms)
            return -1;
        testenv_poll_step();
    }
    DIAG_CHECK(got == r->pid, "waitpid relay %s: %s", r->name, strerror(errno));
    r->pid = -1;
    expect_clean_log(r);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int
relay_stop(struct relay_proc *r)
{
    if (r->pid < 0)
        return -1;
    kill(r->pid, SIGTERM);
    int status = relay_wait_exit(r, 10000);
    if (status == -1)
        relay_kill(r);
    return status;
}

void
relay_kill(struct relay_proc *r)
{
    cleanup_hook(r);
    expect_clean_log(r);
}

/* Runs one single-value query of relay_state; false when there is no such row or table. */
static bool
read_state(const char *db_path, const char *sql, char *out, size_t size)
{
    sqlite3 *db = NULL;
    out[0] = '\0';
    bool found = false;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 2000);
        sqlite3_stmt *s = NULL;
        if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK &&
            sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0) != NULL) {
            snprintf(out, size, "%s", (const char *)sqlite3_column_text(s, 0));
            found = true;
        }
        sqlite3_finalize(s);
    }
    sqlite3_close(db);
    return found;
}

int64_t
relay_position(const char *db_path)
{
    char text[32];
    if (!read_state(db_path, "SELECT position FROM relay_state WHERE id = 1", text,
                    sizeof(text)))
        return -1;
    return strtoll(text, NULL, 10);
}

const char *
relay_state_name(const char *db_path, char *out, size_t size)
{
    read_state(db_path, "SELECT state FROM relay_state WHERE id = 1", out, size);
    return out;
}

int64_t
relay_wait_position(struct relay_proc *r, int64_t position, int timeout_ms)
{
    int64_t start = testenv_now_ms();
    while (relay_position(r->db_path) < position) {
        DIAG_CHECK(testenv_now_ms() - start < timeout_ms, "relay %s: position %lld, not %lld, "
                   "after %d ms", r->name, (long long)relay_position(r->db_path),
                   (long long)position, timeout_ms);
        testenv_poll_step();
    }
    return testenv_now_ms() - start;
}

void
relay_dump(const struct relay_proc *r)
{
    static char text[32768];
    long n = testenv_read_file(r->log_path, text, sizeof(text));
    fprintf(stderr, "---- relay %s (pid %ld) log %s:\n%s\n----\n", r->name, (long)r->pid,
            r->log_path, n > 0 ? text : "(empty)");
}
