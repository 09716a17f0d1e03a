/*
 * esclient.h - standard EventSource clients: npm's `eventsource` (the WHATWG EventSource for
 * Node) run by tests/eventsource/clients.mjs, a client this project did not write (issue 11).
 *
 * esclient_start spawns `node clients.mjs` (testenv_spawn, PID kept) with N clients on one
 * URL and a deadline; the script reconnects only as the library does (retry:, Last-Event-ID;
 * 204 ends; any other status fails for good) and exits once every client is CLOSED or at the
 * deadline. While it runs, its progress file (one JSON line per open, message and error) can
 * be waited on; esclient_finish reaps it by PID with a deadline and reads one JSON line per
 * client. A failure prints every client's record and the progress; a failing test kills node
 * by its PID (diag.h). Node or the package missing fails the test and points at `make deps`.
 * Not thread-safe (one test, one process).
 */
#ifndef SSE_TEST_ESCLIENT_H
#define SSE_TEST_ESCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tests/lib/testenv.h"

enum { ESCLIENT_MAX = 32, ESCLIENT_IDS_MAX = 256, ESCLIENT_ERRORS_MAX = 64 };

/* What one client went through, from its line of clients.mjs output. */
struct esclient_result {
    long long ids[ESCLIENT_IDS_MAX];    /* lastEventId of every message, in order (-1: none) */
    size_t id_count;                    /* may exceed ESCLIENT_IDS_MAX; the rest not kept */
    int opens;                          /* `open` events */
    int error_codes[ESCLIENT_ERRORS_MAX];   /* HTTP status of each `error`, 0: none given */
    int error_states[ESCLIENT_ERRORS_MAX];  /* readyState right after it (2: CLOSED) */
    size_t error_count;                 /* may exceed ESCLIENT_ERRORS_MAX */
    int ready_state;                    /* at the end: 0 CONNECTING, 1 OPEN, 2 CLOSED */
    bool is_deadline;                   /* still not CLOSED at the deadline */
};

struct esclient_run {
    pid_t pid;                              /* node; -1 once reaped */
    int count;                              /* clients */
    int deadline_ms;                        /* given to the script */
    char url[TESTENV_PATH_MAX];             /* every client's URL */
    char log_path[TESTENV_PATH_MAX];        /* node's stdout+stderr: the result lines */
    char progress_path[TESTENV_PATH_MAX];   /* one line per open, message, error */
    struct esclient_result results[ESCLIENT_MAX];   /* filled by esclient_finish */
    int exit_status;                        /* node's; -1 killed or timed out */
};

/* Starts count (1..ESCLIENT_MAX) clients on http://127.0.0.1:<port><path>, each with the
 * headers ("Name: value", NULL-terminated; NULL for none) added, ending at deadline_ms.
 * Several runs may exist in one test (files are named after the run's number). */
void esclient_start(struct esclient_run *run, const struct testenv *env, int port,
                    const char *path, int count, const char *const *headers, int deadline_ms);

/* Polls up to timeout_ms until at least min_clients distinct clients have a progress line
 * of kind what ("open", "message", "error") and, for a message, the given id (-1: any), or
 * until the clients have all ended (the script exited: esclient_expect_ended_with_ids then
 * says how). Fails the test (printing the progress) on timeout. Returns the ms waited. */
int64_t esclient_wait_for(struct esclient_run *run, const char *what, long long id,
                          int min_clients, int timeout_ms);

/* Waits for node to exit (up to its deadline plus a margin; then KILL) and reads every
 * client's line into run->results. Fails the test when a line is missing or unreadable. */
void esclient_finish(struct esclient_run *run);

/* Fails the test, printing every client's record, unless each client ended CLOSED on a 204
 * (its last error, code 204; no error before it with a status), before the deadline, and
 * received exactly the ids first_id..last_id, in order, each once. */
void esclient_expect_ended_with_ids(const struct esclient_run *run, long long first_id,
                                    long long last_id);

/* Prints node's output (the result lines) and the progress file to stderr. */
void esclient_dump(const struct esclient_run *run);

#endif
