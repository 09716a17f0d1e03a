/*
 * testenv.c - temp dir and database of one integration test (see testenv.h).
 *
 * The database is made the way a user makes it: `sqlite3 events.db < schema.sql` through
 * publish.c, so the test sees the real CLI's result. The dir is removed with `rm -rf` by
 * fork/exec (no shell), also on the failure path through diag.h.
 */
#define _DEFAULT_SOURCE  /* mkdtemp */

#include "tests/lib/testenv.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/publish.h"

const char *
testenv_require(const char *name)
{
    const char *value = getenv(name);
    ck_assert_msg(value != NULL && value[0] != '\0',
                  "%s is not set: run the suite through `make test` / `make test-suite`", name);
    return value;
}

int64_t
testenv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double
testenv_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

int
testenv_compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

void
testenv_poll_step(void)
{
    nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
}

int
testenv_reap(pid_t pid, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    int status = 0;
    for (;;) {
        pid_t rc = waitpid(pid, &status, WNOHANG);
        if (rc == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (rc < 0 && errno != EINTR)
            return -1;
        if (testenv_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        testenv_poll_step();
    }
}

char *
testenv_path(const struct testenv *env, const char *name, char *out, size_t size)
{
    int n = snprintf(out, size, "%s/%s", env->dir, name);
    ck_assert_msg(n > 0 && (size_t)n < size, "path too long: %s/%s", env->dir, name);
    return out;
}

static void
remove_dir(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
        execl("/bin/rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
}

static void
cleanup_env(void *ctx)
{
    testenv_close(ctx);
}

void
testenv_open(struct testenv *env)
{
    snprintf(env->dir, sizeof(env->dir), "/tmp/sse-integ-XXXXXX");
    ck_assert_msg(mkdtemp(env->dir) != NULL, "mkdtemp: %s", strerror(errno));
    diag_register(env, NULL, cleanup_env);
    testenv_path(env, "events.db", env->db_path, sizeof(env->db_path));
    char sql[TESTENV_PATH_MAX + 128];
    snprintf(sql, sizeof(sql), ".read %s\nINSERT INTO sessions(id) VALUES ('s1');\n",
             testenv_require("SSE_SCHEMA"));
    publish_ok(env, sql);
}

void
testenv_close(struct testenv *env)
{
    if (env->dir[0] == '\0')
        return;
    diag_unregister(env);
    remove_dir(env->dir);
    env->dir[0] = '\0';
}

void
testenv_place_database(struct testenv *env, mode_t dir_mode, mode_t db_mode, gid_t group)
{
    char data_dir[TESTENV_PATH_MAX], db_path[TESTENV_PATH_MAX];
    testenv_path(env, "data", data_dir, sizeof(data_dir));
    testenv_path(env, "data/events.db", db_path, sizeof(db_path));
    DIAG_CHECK(chmod(env->dir, 0755) == 0, "chmod %s: %s", env->dir, strerror(errno));
    DIAG_CHECK(mkdir(data_dir, 0700) == 0, "mkdir %s: %s", data_dir, strerror(errno));
    DIAG_CHECK(rename(env->db_path, db_path) == 0, "rename: %s", strerror(errno));
    DIAG_CHECK(chown(data_dir, 0, group) == 0 && chown(db_path, 0, group) == 0, "chown: %s",
               strerror(errno));
    DIAG_CHECK(chmod(data_dir, dir_mode) == 0 && chmod(db_path, db_mode) == 0, "chmod: %s",
               strerror(errno));
    memcpy(env->db_path, db_path, sizeof(db_path));
}

gid_t
testenv_www_data_gid(void)
{
    const struct group *g = getgrnam("www-data");
    DIAG_CHECK(g != NULL, "no group www-data: run `make deps` (apache2 creates it)");
    return g->gr_gid;
}

void
testenv_write_file(const char *path, const char *bytes, size_t len)
{
    FILE *f = fopen(path, "w");
    DIAG_CHECK(f != NULL, "cannot write %s: %s", path, strerror(errno));
    size_t n = fwrite(bytes, 1, len, f);
    int rc = fclose(f);
    DIAG_CHECK(n == len && rc == 0, "short write to %s", path);
}

void
testenv_write_script(const char *path, const char *text)
{
    testenv_write_file(path, text, strlen(text));
    DIAG_CHECK(chmod(path, 0755) == 0, "chmod %s: %s", path, strerror(errno));
}

long
testenv_read_file(const char *path, char *out, size_t size)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(out, 1, size - 1, f);
    out[n] = '\0';
    fclose(f);
    return (long)n;
}

char *
testenv_read_source(const char *name)
{
    char path[TESTENV_PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", testenv_require("SSE_SRC_DIR"), name);
    char *text = malloc(TESTENV_SOURCE_MAX);
    DIAG_CHECK(text != NULL, "out of memory");
    long len = testenv_read_file(path, text, TESTENV_SOURCE_MAX);
    DIAG_CHECK(len > 0 && len < TESTENV_SOURCE_MAX - 1, "cannot read %s whole", path);
    return text;
}

bool
testenv_has_sanitizer_report(const char *text)
{
    return strstr(text, "AddressSanitizer") != NULL || strstr(text, "runtime error:") != NULL
           || strstr(text, "LeakSanitizer") != NULL || strstr(text, "ThreadSanitizer") != NULL;
}

/* Asks the kernel for a free loopback port. */
int
testenv_pick_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    DIAG_CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_in addr = {.sin_family = AF_INET};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    if (rc == 0)
        rc = getsockname(fd, (struct sockaddr *)&addr, &len);
    close(fd);
    DIAG_CHECK(rc == 0, "cannot pick a port: %s", strerror(errno));
    return ntohs(addr.sin_port);
}

/* True when 127.0.0.1:port accepts a connection. */
bool
testenv_is_port_accepting(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool is_up = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return is_up;
}

/* The parent of pid from /proc/<pid>/stat; -1 when pid is gone or a zombie (kill(pid, 0)
 * still succeeds on a zombie). */
static long
read_live_parent(long pid)
{
    char path[64], stat[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    if (testenv_read_file(path, stat, sizeof(stat)) <= 0)
        return -1;
    const char *after_name = strrchr(stat, ')');  /* the command name may hold spaces */
    char state = '?';
    long parent = -1;
    if (after_name == NULL || sscanf(after_name + 1, " %c %ld", &state, &parent) != 2
        || state == 'Z' || state == 'X')
        return -1;
    return parent;
}

/* True when one of the NUL-separated arguments in cmdline[0, len) starts with prefix. */
static bool
has_arg_with_prefix(const char *cmdline, size_t len, const char *prefix)
{
    size_t prefix_len = strlen(prefix);
    for (size_t at = 0; at < len; at += strlen(cmdline + at) + 1) {
        if (strncmp(cmdline + at, prefix, prefix_len) == 0)
            return true;
    }
    return false;
}

/* What a process must be for signal_matching: every field that is set. */
struct process_match {
    const char *arg_prefix;     /* an argument starts with it; NULL: any */
    long parent;                /* its parent; -1: any */
};

static bool
is_match(long pid, const struct process_match *m)
{
    static char cmdline[16384];
    char path[300];
    long parent = read_live_parent(pid);
    if (parent < 0 || (m->parent >= 0 && parent != m->parent))
        return false;
    if (m->arg_prefix == NULL)
        return true;
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    long len = testenv_read_file(path, cmdline, sizeof(cmdline));
    return len > 0 && has_arg_with_prefix(cmdline, (size_t)len, m->arg_prefix);
}

/* Sends sig to every live process that matches m; see testenv_signal_by_arg. */
static int
signal_matching(const struct process_match *m, int sig, pid_t *pids, size_t cap)
{
    DIR *proc = opendir("/proc");
    DIAG_CHECK(proc != NULL, "opendir /proc: %s", strerror(errno));
    int count = 0;
    struct dirent *de;
    while ((de = readdir(proc)) != NULL) {
        long pid = strtol(de->d_name, NULL, 10);
        if (pid <= 0 || !is_match(pid, m) || kill((pid_t)pid, sig) != 0)
            continue;
        if ((size_t)count < cap)
            pids[count] = (pid_t)pid;
        count++;
    }
    closedir(proc);
    return count;
}

int
testenv_signal_by_arg(const char *arg_prefix, int sig, pid_t *pids, size_t cap)
{
    return signal_matching(&(struct process_match){arg_prefix, -1}, sig, pids, cap);
}

int
testenv_signal_children(pid_t parent, int sig, pid_t *pids, size_t cap)
{
    return signal_matching(&(struct process_match){NULL, (long)parent}, sig, pids, cap);
}

int
testenv_count_fds(pid_t pid, const char *suffix, int *first)
{
    char dir_path[64];
    snprintf(dir_path, sizeof(dir_path), "/proc/%ld/fd", (long)pid);
    DIR *dir = opendir(dir_path);
    int count = 0, lowest = -1;
    size_t suffix_len = suffix != NULL ? strlen(suffix) : 0;
    struct dirent *de;
    while (dir != NULL && (de = readdir(dir)) != NULL) {
        char link[352], target[TESTENV_PATH_MAX];
        if (de->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "%s/%s", dir_path, de->d_name);
        ssize_t n = readlink(link, target, sizeof(target) - 1);
        if (n <= 0 || (size_t)n < suffix_len)
            continue;
        target[n] = '\0';
        if (suffix_len > 0 && strcmp(target + n - suffix_len, suffix) != 0)
            continue;
        int fd = atoi(de->d_name);
        lowest = lowest < 0 || fd < lowest ? fd : lowest;
        count++;
    }
    if (dir != NULL)
        closedir(dir);
    if (first != NULL)
        *first = lowest;
    return count;
}

long
testenv_proc_status_kib(pid_t pid, const char *field)
{
    char path[64], text[4096];
    snprintf(path, sizeof(path), "/proc/%ld/status", (long)pid);
    if (testenv_read_file(path, text, sizeof(text)) <= 0)
        return -1;
    const char *line = strstr(text, field);
    return line ? strtol(line + strlen(field), NULL, 10) : -1;
}

void
testenv_move_database(const struct testenv *env, const char *from_suffix,
                      const char *to_suffix)
{
    static const char *const PARTS[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        char from[TESTENV_PATH_MAX + 16], to[TESTENV_PATH_MAX + 16];
        snprintf(from, sizeof(from), "%s%s%s", env->db_path, from_suffix, PARTS[i]);
        snprintf(to, sizeof(to), "%s%s%s", env->db_path, to_suffix, PARTS[i]);
        DIAG_CHECK(rename(from, to) == 0 || (i > 0 && errno == ENOENT), "rename %s: %s", from,
                   strerror(errno));
    }
}

pid_t
testenv_spawn(const char *log_path, const char *const *argv, const char *const *env_pairs,
              bool is_group_leader)
{
    return testenv_spawn_stdin(log_path, argv, env_pairs, is_group_leader, -1);
}

pid_t
testenv_spawn_stdin(const char *log_path, const char *const *argv,
                    const char *const *env_pairs, bool is_group_leader, int stdin_fd)
{
    fflush(NULL);
    pid_t pid = fork();
    DIAG_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (is_group_leader)
            setpgid(0, 0);
        if (stdin_fd >= 0 && dup2(stdin_fd, STDIN_FILENO) < 0)  /* dup2 clears CLOEXEC */
            _exit(126);
        int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0 || dup2(fd, STDERR_FILENO) < 0)
            _exit(126);
        for (size_t i = 0; env_pairs && env_pairs[i] && env_pairs[i + 1]; i += 2)
            setenv(env_pairs[i], env_pairs[i + 1], 1);
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    if (is_group_leader)
        setpgid(pid, pid);  /* also here, so that the group exists before either runs on */
    return pid;
}
