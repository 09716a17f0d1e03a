/*
 * diag.h - what a failing integration test prints and cleans up before it fails.
 *
 * Check's ck_assert ends a forked test with _exit(), so neither the checked teardown nor
 * atexit handlers run. Helpers that own something worth printing (a server's logs, the bytes
 * a client received) or something to stop (a server by PID, a temp dir) register a hook here;
 * DIAG_CHECK runs every dump hook, then every cleanup hook (newest first), then fails.
 * One test is one process, so the registry is process-wide and not thread-safe.
 */
#ifndef SSE_TEST_DIAG_H
#define SSE_TEST_DIAG_H

#include <check.h>
#include <stdbool.h>

typedef void diag_fn(void *ctx);

/* Registers dump (may be NULL) and cleanup (may be NULL) for ctx, which stays borrowed until
 * diag_unregister(ctx). At most DIAG_HOOKS_MAX hooks; more fail the test. */
void diag_register(void *ctx, diag_fn *dump, diag_fn *cleanup);

/* Forgets every hook registered for ctx. Unknown ctx: no-op. */
void diag_unregister(void *ctx);

/* Runs every dump hook, then every cleanup hook, newest first, and forgets them all. */
void diag_fail_cleanup(void);

/* Prints len bytes to stderr with control bytes escaped (\r, \n shown, then a line break),
 * at most max_bytes of them (the tail when longer), under a "--- label ---" heading. */
void diag_print_bytes(const char *label, const char *bytes, size_t len, size_t max_bytes);

/* Prints a text file to stderr under a heading (its last max_bytes bytes). */
void diag_print_file(const char *label, const char *path, size_t max_bytes);

/* Like ck_assert_msg, but dumps and cleans up first. */
#define DIAG_CHECK(cond, ...)                                                               \
    do {                                                                                    \
        if (!(cond)) {                                                                      \
            diag_fail_cleanup();                                                            \
            ck_abort_msg(__VA_ARGS__);                                                      \
        }                                                                                   \
    } while (0)

#endif
