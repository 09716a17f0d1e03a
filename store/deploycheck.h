/*
 * deploycheck.h - the database checks of `sse-fcgi --check`, made as the user who runs
 * them (the web server's user: `sudo -u www-data sse-fcgi --check`).
 *
 * Each check reports one line: ok, FAIL with a hint that says what to do, WARN (with a
 * hint) for a risk that does not stop the responder, or skipped when an earlier failure
 * leaves nothing to check. The database is opened exactly as the responder opens it
 * (store_open: read-only) and never written.
 */
#ifndef SSE_DEPLOYCHECK_H
#define SSE_DEPLOYCHECK_H

#include <stdbool.h>

enum deploycheck_status {
    DEPLOYCHECK_OK,
    DEPLOYCHECK_FAIL,
    DEPLOYCHECK_SKIPPED,
    DEPLOYCHECK_WARN,               /* works, but see the hint; not a failure */
};

struct deploycheck_line {
    const char *name;               /* what is checked ("file", "open", ...); static */
    enum deploycheck_status status;
    const char *detail;             /* what was found; borrowed for the callback */
    const char *hint;               /* what to do about a FAIL or WARN, else NULL; borrowed */
};

typedef void deploycheck_report_fn(void *ctx, const struct deploycheck_line *line);

struct deploycheck_options {
    const char *db_path;            /* borrowed */
    const char *user_name;          /* who runs the checks, for the messages; borrowed */
    bool needs_read_tokens;         /* SSE_AUTH=token: the read_tokens table is required */
};

/* Runs the checks in order - file, open, schema, journal, wal access, permissions, events -
 * and reports each through report. Returns the number of checks that failed (0 when none
 * did; a WARN is not a failure).
 * Not thread-safe (getpwuid). */
int deploycheck_run(const struct deploycheck_options *opt, deploycheck_report_fn *report,
                    void *ctx);

#endif
