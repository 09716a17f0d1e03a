/*
 * command.h - the built sse-fcgi ($SSE_FCGI_BIN) run as a command, the way a user runs it
 * from a shell or cron: `sse-fcgi prune ...`, `sse-fcgi --check`.
 *
 * fork/exec with a deadline; stdout and stderr go to files in the test's dir, read back
 * after the exit. Optionally as another user: the child takes that user's groups, gid and
 * uid before exec, as `sudo -u` would (the suite runs as root). A child past the deadline is
 * SIGKILLed and reaped. A sanitizer report on its stderr fails the test (STYLE §8). Not
 * thread-safe (one test, one process).
 */
#ifndef SSE_TEST_COMMAND_H
#define SSE_TEST_COMMAND_H

struct testenv;

enum { COMMAND_OUTPUT_MAX = 16384 };

struct command_result {
    int status;                         /* exit status; -1 when killed or timed out */
    char out[COMMAND_OUTPUT_MAX];       /* stdout (its head) */
    char err[COMMAND_OUTPUT_MAX];       /* stderr (its head) */
};

struct command_options {
    const char *const *env;             /* "NAME", "value", ..., NULL: set in the child; a
                                         * NULL value unsets NAME. SSE_DB starts unset. */
    const char *user;                   /* run as this user, or NULL (root) */
    int timeout_ms;                     /* 0: 30 s */
    const char *program;                /* another binary than $SSE_FCGI_BIN, or NULL */
};

/* Runs $SSE_FCGI_BIN (or opt->program) with args (NULL-terminated, argv[0] not included) and opt (may be
 * NULL), waits, and fills r. Returns the exit status. Fails the test when the binary
 * cannot be started or its stderr holds a sanitizer report. */
int command_run(const struct testenv *env, const char *const *args,
                const struct command_options *opt, struct command_result *r);

/* Prints the command's stdout and stderr to stderr (for a failing test's message). */
void command_dump(const struct command_result *r);

/* Fails the test, printing the output, unless the command exited with status. */
void command_expect_status(const struct command_result *r, int status);

/* Fails the test, printing the output, unless a line of stdout starts with prefix and
 * also contains also (NULL: anything). */
void command_expect_line(const struct command_result *r, const char *prefix,
                         const char *also);

/* Fails the test, printing the output, when stdout contains needle. */
void command_expect_no(const struct command_result *r, const char *needle);

#endif
