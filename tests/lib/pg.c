/*
 * pg.c - a real PostgreSQL per test, and psql (see pg.h).
 *
 * The server's processes are the postgres user's when the suite runs as root: the child
 * opens its log as root, then takes that user's groups, gid and uid, then execs, as
 * command.c does for sse-fcgi. Readiness is PQping answering PQPING_OK while the PID we
 * forked has not exited, polled every few ms against a deadline; nothing here sleeps to
 * hope. A SIGKILLed postmaster leaves its System V segment behind (a clean shutdown
 * removes it), so the hard stop removes it by the id postmaster.pid names.
 */
#define _DEFAULT_SOURCE  /* initgroups, shmctl */

#include "tests/lib/pg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/diag.h"

enum {
    PG_READY_MS = 30000,        /* initdb'd cluster, or a standby replaying its WAL */
    PG_STOP_MS = 15000,         /* fast shutdown: a checkpoint, without fsync */
    PG_INITDB_MS = 60000,
    PG_PSQL_MS = 30000,
    PG_PROMOTE_MS = 30000,
    PG_START_TRIES = 3,
};

static const char PG_SERVER_USER[] = "postgres";  /* Debian's postgresql package makes it */
static struct pg_result scratch;  /* 32 KiB, off the stack; one test, one thread */

/* The highest /usr/lib/postgresql/<version>/bin holding postgres, or $SSE_PG_BINDIR. */
static void
find_bin_dir(char *out, size_t size)
{
    const char *given = getenv("SSE_PG_BINDIR");
    if (given != NULL && given[0] != '\0') {
        snprintf(out, size, "%s", given);
        return;
    }
    long best = -1;
    DIR *dir = opendir("/usr/lib/postgresql");
    struct dirent *de;
    while (dir != NULL && (de = readdir(dir)) != NULL) {
        char path[TESTENV_PATH_MAX], *end = NULL;
        long version = strtol(de->d_name, &end, 10);
        snprintf(path, sizeof(path), "/usr/lib/postgresql/%s/bin/postgres", de->d_name);
        if (end != de->d_name && version > best && access(path, X_OK) == 0) {
            best = version;
            snprintf(out, size, "/usr/lib/postgresql/%s/bin", de->d_name);
        }
    }
    if (dir != NULL)
        closedir(dir);
    DIAG_CHECK(best >= 0, "no /usr/lib/postgresql/<version>/bin/postgres: run `make deps`");
}

/* The user the server runs as: postgres when we are root, else ourselves (*pw NULL). */
static const struct passwd *
server_user(void)
{
    if (geteuid() != 0)
        return NULL;
    const struct passwd *pw = getpwnam(PG_SERVER_USER);
    DIAG_CHECK(pw != NULL, "no user %s to run PostgreSQL as: run `make deps` (the postgresql "
               "package makes it)", PG_SERVER_USER);
    return pw;
}

/* Forks argv[0] (a path) with stdin /dev/null, stdout and stderr appended to log_path, in
 * pg->dir, as the server user. The child exits 126 when it cannot get there, 127 when
 * argv[0] cannot be run. Returns its PID. */
static pid_t
spawn_as_server(const struct pg *pg, const char *const *argv, const char *log_path)
{
    const struct passwd *pw = server_user();
    fflush(NULL);
    pid_t pid = fork();
    DIAG_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid != 0)
        return pid;
    int in = open("/dev/null", O_RDONLY);
    int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || log < 0 || dup2(in, STDIN_FILENO) < 0 || dup2(log, STDOUT_FILENO) < 0
        || dup2(log, STDERR_FILENO) < 0 || chdir(pg->dir) != 0)
        _exit(126);
    if (pw != NULL && (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0
                       || setuid(pw->pw_uid) != 0))
        _exit(126);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

static void
set_conninfo(struct pg *pg)
{
    snprintf(pg->conninfo, sizeof(pg->conninfo), "host=127.0.0.1 port=%d user=sse "
             "dbname=postgres connect_timeout=5", pg->port);
}

/* <env dir>/pg for the server user, who must also get through env's dir. */
static void
make_dirs(struct pg *pg, const struct testenv *env)
{
    testenv_path(env, "pg", pg->dir, sizeof(pg->dir));
    testenv_path(env, "pg/data", pg->data_dir, sizeof(pg->data_dir));
    testenv_path(env, "pg/postgres.log", pg->log_path, sizeof(pg->log_path));
    DIAG_CHECK(mkdir(pg->dir, 0700) == 0, "mkdir %s: %s", pg->dir, strerror(errno));
    const struct passwd *pw = server_user();
    if (pw == NULL)
        return;
    DIAG_CHECK(chmod(env->dir, 0711) == 0, "chmod %s: %s", env->dir, strerror(errno));
    DIAG_CHECK(chown(pg->dir, pw->pw_uid, pw->pw_gid) == 0, "chown %s: %s", pg->dir,
               strerror(errno));
}

static void
run_initdb(struct pg *pg)
{
    char initdb[TESTENV_PATH_MAX + 16], log_path[TESTENV_PATH_MAX];
    snprintf(initdb, sizeof(initdb), "%s/initdb", pg->bin_dir);
    testenv_path(pg->env, "pg/initdb.log", log_path, sizeof(log_path));
    const char *const argv[] = {initdb, "-D", pg->data_dir, "-U", "sse", "--auth=trust",
                                "-E", "UTF8", "--locale=C", "--no-sync", NULL};
    int status = testenv_reap(spawn_as_server(pg, argv, log_path), PG_INITDB_MS);
    if (status != 0)
        diag_print_file("initdb log", log_path, 8192);
    DIAG_CHECK(status != 127, "%s cannot be run: run `make deps`", initdb);
    DIAG_CHECK(status == 0, "initdb exited %d (its log above)", status);
}

/* Removes the System V segment a killed postmaster left (line 7 of postmaster.pid holds its
 * key and id); a no-op when the file is gone, as after a clean shutdown. */
static void
remove_leftover_segment(const struct pg *pg)
{
    char path[TESTENV_PATH_MAX + 32], text[1024];
    snprintf(path, sizeof(path), "%s/postmaster.pid", pg->data_dir);
    if (testenv_read_file(path, text, sizeof(text)) <= 0)
        return;
    const char *line = text;
    for (int i = 1; i < 7 && line != NULL; i++) {
        line = strchr(line, '\n');
        line = line != NULL ? line + 1 : NULL;
    }
    unsigned long key = 0, id = 0;
    if (line != NULL && sscanf(line, "%lu %lu", &key, &id) == 2)
        shmctl((int)id, IPC_RMID, NULL);
}

/* SIGKILLs the postmaster and its children (backends that would otherwise linger until
 * they notice) by PID, reaps it and removes its segment. */
static void
kill_hard(struct pg *pg)
{
    if (pg->pid <= 0)
        return;
    testenv_signal_children(pg->pid, SIGKILL, NULL, 0);
    kill(pg->pid, SIGKILL);
    waitpid(pg->pid, NULL, 0);
    pg->pid = -1;
    remove_leftover_segment(pg);
}

static void
dump_hook(void *ctx)
{
    pg_dump(ctx);
}

static void
cleanup_hook(void *ctx)
{
    kill_hard(ctx);
}

/* Polls until the server answers PQPING_OK (true) or the postmaster exits or the deadline
 * passes (false; *status holds the exit status when it exited, else -1). */
static bool
wait_ready(struct pg *pg, int *status)
{
    int64_t deadline = testenv_now_ms() + PG_READY_MS;
    *status = -1;
    for (;;) {
        if (waitpid(pg->pid, status, WNOHANG) == pg->pid) {
            pg->pid = -1;
            return false;
        }
        if (PQping(pg->conninfo) == PQPING_OK)
            return true;
        if (testenv_now_ms() >= deadline)
            return false;
        testenv_poll_step();
    }
}

/* Starts the postmaster on pg->port (a fresh port per try unless is_same_port) and waits
 * until it answers. */
static void
start_server(struct pg *pg, bool is_same_port)
{
    char postgres[TESTENV_PATH_MAX + 16], port[16];
    snprintf(postgres, sizeof(postgres), "%s/postgres", pg->bin_dir);
    int status = -1;
    for (int attempt = 0; attempt < PG_START_TRIES; attempt++) {
        if (!is_same_port)
            pg->port = testenv_pick_port();
        set_conninfo(pg);
        snprintf(port, sizeof(port), "%d", pg->port);
        const char *const argv[] = {postgres, "-D", pg->data_dir, "-p", port,
                                    "-c", "listen_addresses=127.0.0.1",
                                    "-c", "unix_socket_directories=", "-c", "fsync=off",
                                    "-c", "log_min_error_statement=fatal",
                                    NULL};
        pg->pid = spawn_as_server(pg, argv, pg->log_path);
        diag_register(pg, dump_hook, cleanup_hook);
        if (wait_ready(pg, &status))
            return;
        DIAG_CHECK(pg->pid < 0, "postgres pid %ld never answered on 127.0.0.1:%d",
                   (long)pg->pid, pg->port);
        diag_unregister(pg);
        DIAG_CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 127),
                   "%s cannot be run: run `make deps`", postgres);
        if (is_same_port)
            break;
    }
    pg_dump(pg);
    DIAG_CHECK(false, "postgres exited during start-up (status %d), %d tries",
               WIFEXITED(status) ? WEXITSTATUS(status) : -1,
               is_same_port ? 1 : PG_START_TRIES);
}

void
pg_start(struct pg *pg, const struct testenv *env)
{
    memset(pg, 0, sizeof(*pg));
    pg->pid = -1;
    pg->env = env;
    find_bin_dir(pg->bin_dir, sizeof(pg->bin_dir));
    make_dirs(pg, env);
    run_initdb(pg);
    start_server(pg, false);
}

void
pg_stop(struct pg *pg)
{
    if (pg->pid <= 0)
        return;
    int64_t deadline = testenv_now_ms() + PG_STOP_MS;
    kill(pg->pid, SIGINT);  /* fast shutdown: ends the sessions, then a checkpoint */
    pid_t rc;
    while ((rc = waitpid(pg->pid, NULL, WNOHANG)) == 0 && testenv_now_ms() < deadline)
        testenv_poll_step();
    if (rc == 0) {
        fprintf(stderr, "pg: postgres pid %ld ignored SIGINT for %d ms; SIGKILL\n",
                (long)pg->pid, PG_STOP_MS);
        kill_hard(pg);
    }
    pg->pid = -1;
    diag_unregister(pg);
}

void
pg_restart(struct pg *pg)
{
    pg_stop(pg);
    start_server(pg, true);
}

void
pg_become_standby(struct pg *pg)
{
    char path[TESTENV_PATH_MAX + 32];
    pg_stop(pg);
    snprintf(path, sizeof(path), "%s/standby.signal", pg->data_dir);
    testenv_write_file(path, "", 0);
    const struct passwd *pw = server_user();
    DIAG_CHECK(pw == NULL || chown(path, pw->pw_uid, pw->pw_gid) == 0, "chown %s: %s", path,
               strerror(errno));
    start_server(pg, true);
    DIAG_CHECK(pg_query_number(pg, "SELECT pg_is_in_recovery()::int;") == 1,
               "postgres with standby.signal is not in recovery");
}

void
pg_promote(struct pg *pg)
{
    pg_psql_ok(pg, "SELECT pg_promote(wait_seconds => 25);");
    int64_t deadline = testenv_now_ms() + PG_PROMOTE_MS;
    while (pg_query_number(pg, "SELECT pg_is_in_recovery()::int;") != 0) {
        if (testenv_now_ms() >= deadline)
            pg_dump(pg);
        DIAG_CHECK(testenv_now_ms() < deadline, "still in recovery %d ms after pg_promote()",
                   PG_PROMOTE_MS);
        testenv_poll_step();
    }
}

void
pg_new_timeline(struct pg *pg)
{
    pg_become_standby(pg);
    pg_promote(pg);
}

int
pg_timeline(struct pg *pg)
{
    return (int)pg_query_number(pg, "SELECT ('x' || substr(pg_walfile_name("
                                "pg_current_wal_lsn()), 1, 8))::bit(32)::int;");
}

const char *
pg_conninfo(const struct pg *pg)
{
    return pg->conninfo;
}

PGconn *
pg_connect(const struct pg *pg)
{
    PGconn *conn = PQconnectdb(pg->conninfo);
    DIAG_CHECK(conn != NULL, "PQconnectdb: out of memory");
    if (PQstatus(conn) != CONNECTION_OK) {
        char message[512];
        snprintf(message, sizeof(message), "%s", PQerrorMessage(conn));
        PQfinish(conn);
        DIAG_CHECK(false, "cannot connect to %s: %s", pg->conninfo, message);
    }
    return conn;
}

/* Runs psql -f path, stdout and stderr to files in the test's dir, and reads them into r. */
static int
run_psql(struct pg *pg, const char *path, struct pg_result *r)
{
    char psql[TESTENV_PATH_MAX + 16], port[16], name[64];
    char out_path[TESTENV_PATH_MAX], err_path[TESTENV_PATH_MAX];
    snprintf(psql, sizeof(psql), "%s/psql", pg->bin_dir);
    snprintf(port, sizeof(port), "%d", pg->port);
    snprintf(name, sizeof(name), "psql-%u.out", pg->psql_count);
    testenv_path(pg->env, name, out_path, sizeof(out_path));
    snprintf(name, sizeof(name), "psql-%u.err", pg->psql_count++);
    testenv_path(pg->env, name, err_path, sizeof(err_path));
    const char *const argv[] = {psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                "-h", "127.0.0.1", "-p", port, "-U", "sse", "-d", "postgres",
                                "-f", path, NULL};
    fflush(NULL);
    pid_t pid = fork();
    DIAG_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (in < 0 || out < 0 || err < 0 || dup2(in, STDIN_FILENO) < 0
            || dup2(out, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0)
            _exit(126);
        execv(psql, (char *const *)argv);
        _exit(127);
    }
    r = r != NULL ? r : &scratch;
    r->status = testenv_reap(pid, PG_PSQL_MS);
    testenv_read_file(out_path, r->out, sizeof(r->out));
    testenv_read_file(err_path, r->err, sizeof(r->err));
    DIAG_CHECK(r->status != 127, "%s cannot be run: run `make deps`", psql);
    return r->status;
}

int
pg_psql_file(struct pg *pg, const char *path, struct pg_result *r)
{
    return run_psql(pg, path, r);
}

int
pg_psql(struct pg *pg, const char *sql, struct pg_result *r)
{
    char name[64], path[TESTENV_PATH_MAX];
    snprintf(name, sizeof(name), "psql-%u.sql", pg->psql_count);
    testenv_path(pg->env, name, path, sizeof(path));
    testenv_write_file(path, sql, strlen(sql));
    return run_psql(pg, path, r);
}

void
pg_psql_ok(struct pg *pg, const char *sql)
{
    int status = pg_psql(pg, sql, &scratch);
    DIAG_CHECK(status == 0, "psql exited %d on:\n%.2000s\nstderr: %s", status, sql,
               scratch.err);
}

long long
pg_query_number(struct pg *pg, const char *sql)
{
    pg_psql_ok(pg, sql);
    char *end = NULL;
    long long value = strtoll(scratch.out, &end, 10);
    DIAG_CHECK(end != scratch.out, "not a number from %s: '%s'", sql, scratch.out);
    return value;
}

size_t
pg_query_numbers(struct pg *pg, const char *sql, long long *out, size_t cap)
{
    pg_psql_ok(pg, sql);
    size_t n = 0;
    for (const char *line = scratch.out; *line != '\0';) {
        DIAG_CHECK(n < cap, "more than %zu rows from %s", cap, sql);
        char *end = NULL;
        out[n++] = strtoll(line, &end, 10);
        DIAG_CHECK(end != line, "not a number from %s: '%.40s'", sql, line);
        line += strcspn(line, "\n");
        line += *line == '\n';
    }
    return n;
}

long long
pg_log_newest(struct pg *pg)
{
    return pg_query_number(pg, "SELECT greatest(coalesce((SELECT max(id) FROM events), 0), "
                               "coalesce((SELECT max(log_id) FROM sessions), 0))");
}

void
pg_apply_schema(struct pg *pg)
{
    char path[TESTENV_PATH_MAX];
    snprintf(path, sizeof(path), "%s/deploy/postgresql/schema.sql",
             testenv_require("SSE_SRC_DIR"));
    int status = pg_psql_file(pg, path, &scratch);
    DIAG_CHECK(status == 0, "psql -f %s exited %d: %s", path, status, scratch.err);
}

char *
pg_error_message(const struct pg_result *r, char *out, size_t size)
{
    static const char MARK[] = "ERROR:  ";
    const char *at = strstr(r->err, MARK);
    out[0] = '\0';
    if (at == NULL)
        return NULL;
    at += strlen(MARK);
    snprintf(out, size, "%.*s", (int)strcspn(at, "\n"), at);
    return out;
}

void
pg_dump(const struct pg *pg)
{
    fprintf(stderr, "=== postgres pid %ld on 127.0.0.1:%d, data %s ===\n", (long)pg->pid,
            pg->port, pg->data_dir);
    diag_print_file("postgres log", pg->log_path, 16384);
}
