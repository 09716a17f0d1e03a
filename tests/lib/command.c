/*
 * command.c - sse-fcgi as a command (see command.h).
 *
 * The child opens its output files while still root (they are in the test's root-owned
 * dir), then drops to the requested user, then execs; so the binary's own file access is
 * exactly that user's. Output goes to files, not pipes, so nothing can block on a full
 * pipe; testenv_reap enforces the deadline.
 */
#define _DEFAULT_SOURCE  /* initgroups */

#include "tests/lib/command.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/testenv.h"

enum { COMMAND_TIMEOUT_MS = 30000, COMMAND_ARGS_MAX = 32 };

static unsigned command_counter;  /* names the output files of this test process */

/* In the child: stdout and stderr to files, the environment, the user. Exits 126 when one
 * of them cannot be had (the parent reports it). */
static void
prepare_child(const char *out_path, const char *err_path, const struct command_options *opt)
{
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0 || dup2(out, STDOUT_FILENO) < 0 || dup2(err, STDERR_FILENO) < 0)
        _exit(126);
    close(out);
    close(err);
    unsetenv("SSE_DB");
    for (size_t i = 0; opt->env != NULL && opt->env[i] != NULL; i += 2) {
        int rc = opt->env[i + 1] ? setenv(opt->env[i], opt->env[i + 1], 1)
                                 : unsetenv(opt->env[i]);
        if (rc != 0)
            _exit(126);
    }
    if (opt->user == NULL)
        return;
    const struct passwd *pw = getpwnam(opt->user);
    if (pw == NULL || initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0
        || setuid(pw->pw_uid) != 0)
        _exit(126);
}

int
command_run(const struct testenv *env, const char *const *args,
            const struct command_options *opt, struct command_result *r)
{
    static const struct command_options defaults = {0};
    opt = opt != NULL ? opt : &defaults;
    const char *bin = opt->program ? opt->program : testenv_require("SSE_FCGI_BIN");
    char *argv[COMMAND_ARGS_MAX + 2] = {(char *)bin};
    for (size_t i = 0; args[i] != NULL; i++) {
        DIAG_CHECK(i < COMMAND_ARGS_MAX, "command_run: too many arguments");
        argv[i + 1] = (char *)args[i];
    }
    char name[64], out_path[TESTENV_PATH_MAX], err_path[TESTENV_PATH_MAX];
    snprintf(name, sizeof(name), "command-%u.out", command_counter);
    testenv_path(env, name, out_path, sizeof(out_path));
    snprintf(name, sizeof(name), "command-%u.err", command_counter++);
    testenv_path(env, name, err_path, sizeof(err_path));
    fflush(NULL);
    pid_t pid = fork();
    DIAG_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prepare_child(out_path, err_path, opt);
        execv(bin, argv);
        _exit(127);
    }
    r->status = testenv_reap(pid, opt->timeout_ms > 0 ? opt->timeout_ms : COMMAND_TIMEOUT_MS);
    testenv_read_file(out_path, r->out, sizeof(r->out));
    testenv_read_file(err_path, r->err, sizeof(r->err));
    if (r->status == 126 || r->status == 127 || testenv_has_sanitizer_report(r->err))
        command_dump(r);
    DIAG_CHECK(r->status != 126 && r->status != 127, "could not run %s (as %s)", bin,
               opt->user ? opt->user : "root");
    DIAG_CHECK(!testenv_has_sanitizer_report(r->err), "a sanitizer report from %s (above)", bin);
    return r->status;
}

void
command_dump(const struct command_result *r)
{
    fprintf(stderr, "exit status %d\n", r->status);
    diag_print_bytes("command stdout", r->out, strlen(r->out), 8192);
    diag_print_bytes("command stderr", r->err, strlen(r->err), 8192);
}

void
command_expect_status(const struct command_result *r, int status)
{
    if (r->status != status)
        command_dump(r);
    DIAG_CHECK(r->status == status, "sse-fcgi exited %d, expected %d (output above)",
               r->status, status);
}

void
command_expect_line(const struct command_result *r, const char *prefix, const char *also)
{
    char line[2048];
    for (const char *at = r->out; *at != '\0';) {
        size_t len = strcspn(at, "\n");
        snprintf(line, sizeof(line), "%.*s", (int)len, at);
        if (strncmp(line, prefix, strlen(prefix)) == 0 && (also == NULL || strstr(line, also)))
            return;
        at += len + (at[len] == '\n');
    }
    command_dump(r);
    DIAG_CHECK(false, "no output line \"%s...\"%s%s (output above)", prefix,
               also ? " with " : "", also ? also : "");
}

void
command_expect_no(const struct command_result *r, const char *needle)
{
    if (strstr(r->out, needle) != NULL)
        command_dump(r);
    DIAG_CHECK(strstr(r->out, needle) == NULL, "\"%s\" in the output (above)", needle);
}
