/*
 * esclient.c - npm `eventsource` clients through tests/eventsource/clients.mjs (see
 * esclient.h).
 *
 * The script does the connecting; this side only starts it, waits on its progress file and
 * reads its result lines, both JSON parsed with cJSON. Every wait is a poll with a deadline;
 * node is reaped by PID (testenv_reap), and killed by PID when a test fails first.
 */
#include "tests/lib/esclient.h"

#include <cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/diag.h"

enum {
    ESCLIENT_REAP_MARGIN_MS = 5000,   /* after the script's own deadline */
    ESCLIENT_FILE_MAX = 1 << 20,
    ESCLIENT_ARGS_MAX = 16,
};

static unsigned run_counter;  /* names the files of this test process's runs */

static void
dump_hook(void *ctx)
{
    esclient_dump(ctx);
}

static void
cleanup_hook(void *ctx)
{
    struct esclient_run *run = ctx;
    if (run->pid > 0) {
        kill(run->pid, SIGKILL);
        waitpid(run->pid, NULL, 0);
        run->pid = -1;
    }
}

/* Fails (pointing at `make deps`) unless the script and the package are in the tree. */
static void
require_package(char *script, size_t size)
{
    const char *src = testenv_require("SSE_SRC_DIR");
    char package[TESTENV_PATH_MAX];
    struct stat sb;
    snprintf(script, size, "%s/tests/eventsource/clients.mjs", src);
    snprintf(package, sizeof(package),
             "%s/tests/eventsource/node_modules/eventsource/package.json", src);
    DIAG_CHECK(stat(script, &sb) == 0, "%s is missing", script);
    DIAG_CHECK(stat(package, &sb) == 0, "npm package eventsource is not installed (%s): run "
               "`make deps`", package);
}

void
esclient_start(struct esclient_run *run, const struct testenv *env, int port,
               const char *path, int count, const char *const *headers, int deadline_ms)
{
    static char script[TESTENV_PATH_MAX], deadline[32], clients[32], progress[600];
    static char header_args[ESCLIENT_ARGS_MAX][256];
    DIAG_CHECK(count > 0 && count <= ESCLIENT_MAX, "esclient_start: %d clients", count);
    memset(run, 0, sizeof(*run));
    require_package(script, sizeof(script));
    run->count = count;
    run->deadline_ms = deadline_ms;
    snprintf(run->url, sizeof(run->url), "http://127.0.0.1:%d%s", port, path);
    char name[64];
    unsigned n = run_counter++;
    snprintf(name, sizeof(name), "esclient-%u.log", n);
    testenv_path(env, name, run->log_path, sizeof(run->log_path));
    snprintf(name, sizeof(name), "esclient-%u-progress.jsonl", n);
    testenv_path(env, name, run->progress_path, sizeof(run->progress_path));
    snprintf(deadline, sizeof(deadline), "--deadline-ms=%d", deadline_ms);
    snprintf(clients, sizeof(clients), "--count=%d", count);
    snprintf(progress, sizeof(progress), "--progress=%s", run->progress_path);
    const char *argv[ESCLIENT_ARGS_MAX + 8] = {"node", script, deadline, clients, progress};
    size_t argc = 5;
    for (size_t i = 0; headers && headers[i]; i++) {
        DIAG_CHECK(i < ESCLIENT_ARGS_MAX, "esclient_start: too many headers");
        snprintf(header_args[i], sizeof(header_args[i]), "--header=%s", headers[i]);
        argv[argc++] = header_args[i];
    }
    argv[argc++] = run->url;
    argv[argc] = NULL;
    testenv_write_file(run->progress_path, "", 0);
    run->pid = testenv_spawn(run->log_path, argv, NULL, false);
    diag_register(run, dump_hook, cleanup_hook);
}

/* Reaps node when it has exited; fails when it could not run. Returns true when gone. */
static bool
check_exited(struct esclient_run *run)
{
    int status = 0;
    if (run->pid <= 0 || waitpid(run->pid, &status, WNOHANG) != run->pid)
        return run->pid <= 0;
    run->pid = -1;
    run->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    DIAG_CHECK(run->exit_status != 127, "node not found in PATH: run `make deps`");
    DIAG_CHECK(run->exit_status == 0 || run->exit_status == 3, "clients.mjs exited %d",
               run->exit_status);
    return true;
}

/* The number of distinct clients with a progress line of kind what (and id, for >= 0). */
static int
count_progress(const struct esclient_run *run, const char *what, long long id)
{
    char *text = malloc(ESCLIENT_FILE_MAX);
    DIAG_CHECK(text != NULL, "out of memory");
    testenv_read_file(run->progress_path, text, ESCLIENT_FILE_MAX);
    bool seen[ESCLIENT_MAX] = {false};
    int distinct = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        cJSON *json = cJSON_Parse(line);
        const cJSON *client = cJSON_GetObjectItemCaseSensitive(json, "client");
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(json, "what");
        const cJSON *event_id = cJSON_GetObjectItemCaseSensitive(json, "id");
        int k = cJSON_IsNumber(client) ? client->valueint : -1;
        bool is_match = k >= 0 && k < ESCLIENT_MAX && cJSON_IsString(kind)
                        && strcmp(kind->valuestring, what) == 0
                        && (id < 0 || (cJSON_IsString(event_id)
                                       && strtoll(event_id->valuestring, NULL, 10) == id));
        if (is_match && !seen[k]) {
            seen[k] = true;
            distinct++;
        }
        cJSON_Delete(json);
    }
    free(text);
    return distinct;
}

int64_t
esclient_wait_for(struct esclient_run *run, const char *what, long long id, int min_clients,
                  int timeout_ms)
{
    int64_t start = testenv_now_ms();
    for (;;) {
        int have = count_progress(run, what, id);
        if (have >= min_clients)
            return testenv_now_ms() - start;
        if (check_exited(run))
            return testenv_now_ms() - start;  /* every client ended: the final check says how */
        DIAG_CHECK(testenv_now_ms() - start < timeout_ms,
                   "%d of %d EventSource clients had '%s'%s%.0lld within %d ms", have,
                   min_clients, what, id >= 0 ? " id " : "", id >= 0 ? id : 0, timeout_ms);
        testenv_poll_step();
    }
}

/* Fills r from one result line's JSON. */
static void
read_result(struct esclient_result *r, const cJSON *json)
{
    const cJSON *item = NULL;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(json, "ids")) {
        char *end = NULL;
        long long id = cJSON_IsString(item) ? strtoll(item->valuestring, &end, 10) : -1;
        if (r->id_count < ESCLIENT_IDS_MAX)
            r->ids[r->id_count] = end && end != item->valuestring && *end == '\0' ? id : -1;
        r->id_count++;
    }
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(json, "errors")) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(item, "code");
        const cJSON *state = cJSON_GetObjectItemCaseSensitive(item, "ready_state");
        if (r->error_count < ESCLIENT_ERRORS_MAX) {
            r->error_codes[r->error_count] = cJSON_IsNumber(code) ? code->valueint : 0;
            r->error_states[r->error_count] = cJSON_IsNumber(state) ? state->valueint : -1;
        }
        r->error_count++;
    }
    const cJSON *opens = cJSON_GetObjectItemCaseSensitive(json, "opens");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(json, "ready_state");
    r->opens = cJSON_IsNumber(opens) ? opens->valueint : -1;
    r->ready_state = cJSON_IsNumber(state) ? state->valueint : -1;
    r->is_deadline = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "is_deadline"));
}

void
esclient_finish(struct esclient_run *run)
{
    if (run->pid > 0) {
        int status = testenv_reap(run->pid, run->deadline_ms + ESCLIENT_REAP_MARGIN_MS);
        run->pid = -1;
        run->exit_status = status;
        DIAG_CHECK(status != 127, "node not found in PATH: run `make deps`");
    }
    char *text = malloc(ESCLIENT_FILE_MAX);
    DIAG_CHECK(text != NULL, "out of memory");
    testenv_read_file(run->log_path, text, ESCLIENT_FILE_MAX);
    bool seen[ESCLIENT_MAX] = {false};
    int lines = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        *nl = '\0';
        cJSON *json = strncmp(line, "{\"client\":", 10) == 0 ? cJSON_Parse(line) : NULL;
        const cJSON *client = cJSON_GetObjectItemCaseSensitive(json, "client");
        int k = cJSON_IsNumber(client) ? client->valueint : -1;
        if (k >= 0 && k < run->count && !seen[k]) {
            seen[k] = true;
            lines++;
            read_result(&run->results[k], json);
        }
        cJSON_Delete(json);
    }
    free(text);
    DIAG_CHECK(lines == run->count, "clients.mjs (exit %d) reported %d of %d clients",
               run->exit_status, lines, run->count);
    diag_unregister(run);
}

/* Why client r did not end as expected, into why; false when it did. */
static bool
find_fault(const struct esclient_result *r, long long first_id, long long last_id, char *why,
           size_t size)
{
    size_t errors = r->error_count < ESCLIENT_ERRORS_MAX ? r->error_count : ESCLIENT_ERRORS_MAX;
    if (r->is_deadline || r->ready_state != 2)
        snprintf(why, size, "still readyState %d at the deadline", r->ready_state);
    else if (errors == 0 || r->error_codes[errors - 1] != 204)
        snprintf(why, size, "failed for good on HTTP %d, not on the 204",
                 errors ? r->error_codes[errors - 1] : 0);
    for (size_t i = 0; why[0] == '\0' && i + 1 < errors; i++) {
        if (r->error_codes[i] != 0 || r->error_states[i] == 2)
            snprintf(why, size, "error %zu of %zu: status %d, readyState %d", i + 1,
                     r->error_count, r->error_codes[i], r->error_states[i]);
    }
    if (why[0] == '\0'
        && (r->id_count != (size_t)(last_id - first_id + 1) || r->id_count > ESCLIENT_IDS_MAX))
        snprintf(why, size, "%zu ids, expected %lld", r->id_count, last_id - first_id + 1);
    for (size_t i = 0; why[0] == '\0' && i < r->id_count; i++) {
        if (r->ids[i] != first_id + (long long)i)
            snprintf(why, size, "id %lld at position %zu, expected %lld", r->ids[i], i + 1,
                     first_id + (long long)i);
    }
    return why[0] != '\0';
}

void
esclient_expect_ended_with_ids(const struct esclient_run *run, long long first_id,
                               long long last_id)
{
    for (int k = 0; k < run->count; k++) {
        char why[160] = "";
        bool is_wrong = find_fault(&run->results[k], first_id, last_id, why, sizeof(why));
        if (is_wrong)
            esclient_dump(run);
        DIAG_CHECK(!is_wrong, "EventSource client %d of %d: %s (expected ids %lld..%lld, then "
                   "the 204); its line is above", k, run->count, why, first_id, last_id);
    }
}

void
esclient_dump(const struct esclient_run *run)
{
    fprintf(stderr, "=== EventSource clients (npm eventsource), %d on %s ===\n", run->count,
            run->url);
    diag_print_file("clients.mjs output (one line per client)", run->log_path, 32768);
    diag_print_file("clients.mjs progress", run->progress_path, 16384);
}
