/*
 * test_php.c - PHP producers (issue 15): deploy/php/SseFcgiPublisher.php, its demo page and
 * README's "From PHP" page, run by Debian's /usr/bin/php (php-cli, php-sqlite3) against a
 * live stream behind lighttpd.
 *
 * tests/php/steps.php calls the helper as an app does, one step per run, so that the rows
 * can be counted and the stream read between steps. The ids the helper returns are exactly
 * the ids a stream then gets, in order; a batch with one bad row raises the helper's
 * exception with the schema's message alone and leaves none of its rows, while the batches
 * before it stay; closing ends the stream, and a resume gets 204; a database another writer
 * holds (a sqlite3 CLI in BEGIN IMMEDIATE) makes it wait its busy timeout, then raise its
 * busy exception, storing nothing, and a call that waits for the lock to go stores all.
 * Last, the web server's user: the group-writable setup of README "Apache" lets it write.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/lib/command.h"
#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

#define PHP "/usr/bin/php"          /* Debian's: php-sqlite3 is its module */
#define SESSION_PATH "/api/sessions/s1/events"
#define NO_SESSION "events.session_id: no such session; INSERT INTO sessions(id) first"
#define CLOSED "events.session_id: session is closed; no more events may be added"
#define COUNT_SQL "SELECT count(*) FROM events;\n"
/* steps.php's first event (its HOSTILE), UTF-8. */
#define HOSTILE "it's \"quoted\" \\ back'); DELETE FROM events; -- /\xc3\xa9\xf0\x9f\x98\x80" \
                "\nline two"

enum {
    WAIT_MS = 5000,
    IDS_MAX = 64,
    PHP_ARGS_MAX = 8,
    BUSY_TIMEOUT_MS = 400,      /* the busy timeout of the call that gives up */
    HOLD_MS = 300,              /* how long the lock stays held while a call waits for it */
    PAGE_MAX = 16384,
};

static struct command_result run;   /* the last PHP run's output; 32 KiB, off the stack */

/* Runs /usr/bin/php script args... (NULL-terminated) as user (NULL: root) with env (may be
 * NULL), fills run, and fails the test, printing the output, unless it exits status. */
static void
run_php(const char *script, const char *const *args, const char *const *env,
        const char *user, int status)
{
    const char *argv[PHP_ARGS_MAX + 2] = {script};
    size_t n = 1;
    for (size_t i = 0; args[i] != NULL; i++) {
        DIAG_CHECK(n < PHP_ARGS_MAX, "run_php: too many arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    const struct command_options opt = {.program = PHP, .env = env, .user = user};
    command_run(&test_env, argv, &opt, &run);
    if (run.status != status)
        command_dump(&run);
    DIAG_CHECK(run.status == status, "php %s exited %d, not %d (output above; `make deps` "
               "installs php-cli and php-sqlite3)", script, run.status, status);
}

/* $SSE_SRC_DIR/<name> into out. */
static const char *
source_path(const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", testenv_require("SSE_SRC_DIR"), name);
    return out;
}

/* tests/php/steps.php <db> step arg as user (NULL: root), expecting status. */
static void
run_step_as(const char *user, const char *step, const char *arg, int status)
{
    char steps[TESTENV_PATH_MAX];
    source_path("tests/php/steps.php", steps, sizeof(steps));
    run_php(steps, (const char *const[]){test_env.db_path, step, arg, NULL}, NULL, user,
            status);
}

static void
run_step(const char *step, const char *arg, int status)
{
    run_step_as(NULL, step, arg, status);
}

/* Fails the test, printing the output, unless the last run's stdout is exactly expected. */
static void
expect_output(const char *expected)
{
    if (strcmp(run.out, expected) != 0)
        command_dump(&run);
    DIAG_CHECK(strcmp(run.out, expected) == 0, "php printed other lines (above) than:\n%s",
               expected);
}

/* Appends the ids of the last run's first line ("3 4 5") to ids[*n...]. Fails unless
 * that line is want ids and nothing else. */
static void
take_ids(long long *ids, size_t *n, size_t want)
{
    char line[512], *at = line, *end = line;
    size_t len = strcspn(run.out, "\n"), got = 0;
    snprintf(line, sizeof(line), "%.*s", (int)len, run.out);
    for (long long id; (id = strtoll(at, &end, 10)) > 0; at = end) {
        DIAG_CHECK(*n < IDS_MAX, "take_ids: too many ids");
        ids[(*n)++] = id;
        got++;
    }
    bool is_ids = got == want && *end == '\0' && run.out[len] == '\n';
    if (!is_ids)
        command_dump(&run);
    DIAG_CHECK(is_ids, "php's first line is not %zu ids (output above)", want);
}

static long long
event_count(void)
{
    return publish_query_number(&test_env, COUNT_SQL);
}

/* Starts lighttpd and opens session s1's stream (live from now on). */
static void
start_and_open(struct sse_client *c)
{
    server_start(&test_srv, &test_env, NULL);
    frames_open_stream(c, test_srv.port, SESSION_PATH, NULL);
}

/* Two runs of publish() and publishBatch(): the 8 ids the helper returned are 1..8 (a new
 * database) and exactly the ids the stream gets, in order; the first event's data is the
 * hostile text, JSON-encoded by the helper, its stream_id the one given. */
START_TEST(test_published_ids_arrive_in_order)
{
    struct sse_client c;
    start_and_open(&c);
    long long ids[IDS_MAX];
    size_t n = 0;
    for (int i = 0; i < 2; i++) {
        run_step("publish", "s1", 0);
        take_ids(ids, &n, 4);
    }
    for (size_t i = 0; i < n; i++)
        DIAG_CHECK(ids[i] == (long long)i + 1, "the helper returned id %lld for event %zu",
                   ids[i], i + 1);
    struct sse_frame f;
    sse_client_expect_event(&c, &f, WAIT_MS);
    frames_expect_wellformed(&f);
    cJSON *json = sse_frame_json(&f);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(data, "content");
    const cJSON *stream = cJSON_GetObjectItemCaseSensitive(json, "stream_id");
    bool is_exact = sse_frame_id(&f) == ids[0] && cJSON_IsString(text)
                    && strcmp(text->valuestring, HOSTILE) == 0 && cJSON_IsString(stream)
                    && strcmp(stream->valuestring, "queen") == 0;
    cJSON_Delete(json);
    DIAG_CHECK(is_exact, "the first event is not id %lld with the hostile text from "
               "stream queen: %.400s", ids[0], f.data);
    sse_frame_release(&f);
    frames_expect_ids(&c, ids + 1, n - 1, WAIT_MS);
    frames_expect_clean_body(&c);
    sse_client_close(&c);
}
END_TEST

/* The middle row of a batch of three, and what the helper raises for it. */
static const struct {
    const char *kind, *line;
} REFUSED[] = {
    {"json", "SseFcgiRefused: events.data must be valid JSON (json_valid failed)\n"},
    {"stream_id", "SseFcgiRefused: events.stream_id must be at most 128 bytes\n"},
    {"data", "SseFcgiRefused: events.data must be at most 1048576 bytes\n"},
    {"typo", "SseFcgiRefused: " NO_SESSION "\n"},
    {"closed", "SseFcgiRefused: " CLOSED "\n"},
    /* Encoding fails before BEGIN: PHP's own exception, nothing begun. */
    {"utf8", "JsonException: Malformed UTF-8 characters, possibly incorrectly encoded\n"},
};

/* A good batch, then each bad one: the exception's line is exact, the count of rows stays
 * at the good batch's (neither the bad row nor its good neighbours stored), and a good
 * batch after them is stored; the stream gets both good batches and nothing else. */
START_TEST(test_batch_is_all_or_none)
{
    struct sse_client c;
    start_and_open(&c);
    run_step("open", "s2", 0);
    expect_output("created\n");
    run_step("close", "s2", 0);
    expect_output("closed\n");
    long long ids[IDS_MAX];
    size_t n = 0;
    run_step("batch", "good", 0);
    take_ids(ids, &n, 3);
    for (size_t i = 0; i < sizeof(REFUSED) / sizeof(REFUSED[0]); i++) {
        run_step("batch", REFUSED[i].kind, 1);
        expect_output(REFUSED[i].line);
        long long count = event_count();
        DIAG_CHECK(count == 3, "after the refused batch (%s) there are %lld events, not the "
                   "first batch's 3", REFUSED[i].kind, count);
    }
    run_step("batch", "good", 0);
    take_ids(ids, &n, 3);
    frames_expect_ids(&c, ids, n, WAIT_MS);
    DIAG_CHECK(event_count() == 6, "%lld events, not 6", event_count());
    sse_client_close(&c);
}
END_TEST

/* closeSession: the stream gets what was published and ends (SPEC: a closed session ends
 * with the close), a resume from its last id gets 204; a second close finds no open
 * session, createSession does not reopen it, and a publish into it is refused. */
START_TEST(test_close_ends_stream_then_204)
{
    struct sse_client c;
    start_and_open(&c);
    long long ids[IDS_MAX];
    size_t n = 0;
    run_step("publish", "s1", 0);
    take_ids(ids, &n, 4);
    run_step("close", "s1", 0);
    expect_output("closed\n");
    frames_expect_ids(&c, ids, n, WAIT_MS);
    sse_client_expect_end(&c, WAIT_MS);
    sse_client_close(&c);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1",
                        "reason=session_closed", 2000);
    char header[64];
    snprintf(header, sizeof(header), "Last-Event-ID: %lld", ids[n - 1]);
    sse_client_open(&c, test_srv.port, "GET", SESSION_PATH, (const char *const[]){header, NULL});
    DIAG_CHECK(c.status == 204, "a resume of the closed session got %d, not 204", c.status);
    sse_client_close(&c);
    run_step("close", "s1", 0);
    expect_output("not open\n");
    run_step("open", "s1", 0);
    expect_output("exists\n");
    run_step("publish", "s1", 1);
    expect_output("SseFcgiRefused: " CLOSED "\n");
    DIAG_CHECK(event_count() == 4, "%lld events, not 4", event_count());
}
END_TEST

/* steps.php's "waited N ms" line: N. Fails unless text ends with one. */
static long
parse_waited_ms(const char *text)
{
    const char *at = strstr(text, "\nwaited ");
    DIAG_CHECK(at != NULL, "no \"waited\" line in:\n%s", text);
    return strtol(at + strlen("\nwaited "), NULL, 10);
}

/* With the write lock held by another writer: a call with a BUSY_TIMEOUT_MS busy timeout
 * raises SseFcgiBusy after that long and stores nothing. Returns the ms it waited. */
static long
expect_busy_gives_up(void)
{
    char timeout[16], expected[512];
    snprintf(timeout, sizeof(timeout), "%d", BUSY_TIMEOUT_MS);
    run_step("busy", timeout, 1);
    snprintf(expected, sizeof(expected), "waiting\nSseFcgiBusy: database is locked: another "
             "writer held the database for more than %d ms; nothing was stored, the call "
             "may be made again\nwaited ", BUSY_TIMEOUT_MS);
    if (strncmp(run.out, expected, strlen(expected)) != 0)
        command_dump(&run);
    DIAG_CHECK(strncmp(run.out, expected, strlen(expected)) == 0, "php printed other lines "
               "(above) than:\n%s", expected);
    long gave_up_ms = parse_waited_ms(run.out);
    DIAG_CHECK(gave_up_ms >= BUSY_TIMEOUT_MS && gave_up_ms < BUSY_TIMEOUT_MS + 2000,
               "SseFcgiBusy came after %ld ms, with a busy timeout of %d ms", gave_up_ms,
               BUSY_TIMEOUT_MS);
    DIAG_CHECK(event_count() == 0, "the busy call stored %lld events", event_count());
    return gave_up_ms;
}

/* With the write lock held by holder: starts a call with a 10 s busy timeout, checks that
 * it is still waiting HOLD_MS after it said so, then ends holder and expects the call to
 * store its batch of two. Returns the ms it waited. */
static long
expect_waiting_call_goes_through(pid_t holder)
{
    static const char STORED[] = "waiting\n1 2\nwaited ";
    char steps[TESTENV_PATH_MAX], log[TESTENV_PATH_MAX], out[1024];
    source_path("tests/php/steps.php", steps, sizeof(steps));
    testenv_path(&test_env, "php-waits.log", log, sizeof(log));
    const char *const argv[] = {PHP, steps, test_env.db_path, "busy", "10000", NULL};
    pid_t php = testenv_spawn(log, argv, NULL, false);
    logwait_expect_line(log, "waiting", NULL, WAIT_MS);
    int64_t release_ms = testenv_now_ms() + HOLD_MS;
    int wstatus;
    while (testenv_now_ms() < release_ms) {
        DIAG_CHECK(waitpid(php, &wstatus, WNOHANG) == 0, "php ended while the lock was "
                   "held, with a busy timeout of 10 s");
        testenv_poll_step();
    }
    publish_wait(&test_env, holder, 0, NULL);   /* SIGKILL: the lock goes with it */
    int status = testenv_reap(php, WAIT_MS);
    testenv_read_file(log, out, sizeof(out));
    DIAG_CHECK(status == 0 && strncmp(out, STORED, strlen(STORED)) == 0, "php exited %d "
               "after the lock went, printing:\n%s", status, out);
    long waited = parse_waited_ms(out);
    DIAG_CHECK(waited >= HOLD_MS, "php waited %ld ms, the lock was held %d ms after it "
               "said so", waited, HOLD_MS);
    return waited;
}

/* Another writer (a sqlite3 CLI in BEGIN IMMEDIATE) holds the write lock: a call gives up
 * after its busy timeout with SseFcgiBusy, storing nothing; a call with a longer timeout
 * waits, and once the lock goes its whole batch is stored and streamed, nothing lost. */
START_TEST(test_busy_database_waits_then_raises)
{
    struct sse_client c;
    start_and_open(&c);
    pid_t holder = publish_start_holding(&test_env, "BEGIN IMMEDIATE;");
    long gave_up_ms = expect_busy_gives_up();
    long went_through_ms = expect_waiting_call_goes_through(holder);
    frames_expect_ids(&c, (const long long[]){1, 2}, 2, WAIT_MS);
    DIAG_CHECK(event_count() == 2, "%lld events, not 2", event_count());
    fprintf(stderr, "php busy: SseFcgiBusy after %ld ms (busy timeout %d ms); a call that "
            "waited went through after %ld ms (the lock held %d ms after it began)\n",
            gave_up_ms, BUSY_TIMEOUT_MS, went_through_ms, HOLD_MS);
    sse_client_close(&c);
}
END_TEST

/* deploy/php/publish-demo.php from a shell, no pause: one "<id> <type>" line per event, the
 * summary, and the stream gets exactly those ids. */
START_TEST(test_demo_page_from_a_shell)
{
    struct sse_client c;
    start_and_open(&c);
    char demo[TESTENV_PATH_MAX];
    source_path("deploy/php/publish-demo.php", demo, sizeof(demo));
    run_php(demo, (const char *const[]){test_env.db_path, "s1", NULL},
            (const char *const[]){"SSE_DEMO_PAUSE_MS", "0", NULL}, NULL, 0);
    char *summary = strstr(run.out, "\n8 events published into session s1\n");
    DIAG_CHECK(summary != NULL, "the demo printed no summary:\n%s", run.out);
    summary[1] = '\0';                 /* the lines before it are the events' */
    long long ids[IDS_MAX];
    size_t n = 0;
    char *save = NULL;
    for (char *line = strtok_r(run.out, "\n", &save); line != NULL && n < IDS_MAX;
         line = strtok_r(NULL, "\n", &save)) {
        char *end;
        long long id = strtoll(line, &end, 10);
        if (end != line && *end == ' ')
            ids[n++] = id;
    }
    DIAG_CHECK(n == 8, "the demo printed %zu \"<id> <type>\" lines, not 8", n);
    frames_expect_ids(&c, ids, n, WAIT_MS);
    sse_client_close(&c);
}
END_TEST

/* Writes README "From PHP"'s page to <dir>/www/publish.php with only its database path
 * changed to the test's, and SseFcgiPublisher.php next to it (a symlink, as a copy would
 * be), into page_path. */
static void
write_readme_page(char *page_path, size_t size)
{
    static const char SECTION[] = "\n### From PHP\n", FENCE[] = "```php\n",
                      PATH[] = "'/var/lib/sse-fcgi/events.db'";
    static char readme[1 << 20], page[PAGE_MAX];
    char path[TESTENV_PATH_MAX], helper[TESTENV_PATH_MAX];
    long len = testenv_read_file(source_path("README.md", path, sizeof(path)), readme,
                                 sizeof(readme));
    DIAG_CHECK(len > 0 && len < (long)sizeof(readme) - 1, "cannot read README.md whole");
    const char *at = strstr(readme, SECTION);
    at = at ? strstr(at, FENCE) : NULL;
    const char *end = at ? strstr(at + strlen(FENCE), "```") : NULL;
    DIAG_CHECK(end != NULL, "README has no %s with a ```php block", SECTION + 1);
    at += strlen(FENCE);
    const char *db = strstr(at, PATH), *again = db ? strstr(db + 1, PATH) : NULL;
    DIAG_CHECK(db != NULL && db < end && (again == NULL || again > end), "README's page "
               "names %s not exactly once", PATH);
    int n = snprintf(page, sizeof(page), "%.*s'%s'%.*s", (int)(db - at), at,
                     test_env.db_path, (int)(end - db - strlen(PATH)), db + strlen(PATH));
    DIAG_CHECK(n > 0 && n < (int)sizeof(page), "README's page is over %d bytes", PAGE_MAX);
    DIAG_CHECK(mkdir(testenv_path(&test_env, "www", path, sizeof(path)), 0755) == 0,
               "mkdir %s", path);
    testenv_path(&test_env, "www/SseFcgiPublisher.php", helper, sizeof(helper));
    DIAG_CHECK(symlink(source_path("deploy/php/SseFcgiPublisher.php", path, sizeof(path)),
                       helper) == 0, "symlink %s", helper);
    testenv_write_file(testenv_path(&test_env, "www/publish.php", page_path, size), page,
                       (size_t)n);
}

/* README "From PHP": its page, run as written: what it prints, and the stream gets its
 * three events and ends with its close. */
START_TEST(test_readme_page_runs)
{
    char page[TESTENV_PATH_MAX];
    write_readme_page(page, sizeof(page));
    struct sse_client c;
    start_and_open(&c);
    run_php(page, (const char *const[]){NULL}, NULL, NULL, 0);
    expect_output("published 1, then 2 and 3\nrefused: " NO_SESSION "\n");
    frames_expect_ids(&c, (const long long[]){1, 2, 3}, 3, WAIT_MS);
    sse_client_expect_end(&c, WAIT_MS);
    sse_client_close(&c);
}
END_TEST

/* README's permissions note: PHP runs as the web server's user. With the database in group
 * www-data, 0664 in a 2775 directory (README "Apache"), www-data publishes; with the file
 * 0644 it gets PDO's readonly error, and nothing is stored. */
START_TEST(test_web_server_user_writes)
{
    testenv_place_database(&test_env, 02775, 0664, testenv_www_data_gid());
    run_step_as("www-data", "publish", "s1", 0);
    expect_output("1 2 3 4\n");
    DIAG_CHECK(chmod(test_env.db_path, 0644) == 0, "chmod %s", test_env.db_path);
    run_step_as("www-data", "publish", "s1", 1);
    expect_output("PDOException: SQLSTATE[HY000]: General error: 8 attempt to write a "
                  "readonly database\n");
    DIAG_CHECK(event_count() == 4, "%lld events, not 4", event_count());
}
END_TEST

Suite *suite_php(void);

Suite *
suite_php(void)
{
    Suite *s = suite_create("php");
    TCase *tc = server_tcase_create("php");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_published_ids_arrive_in_order);
    tcase_add_test(tc, test_batch_is_all_or_none);
    tcase_add_test(tc, test_close_ends_stream_then_204);
    tcase_add_test(tc, test_busy_database_waits_then_raises);
    tcase_add_test(tc, test_demo_page_from_a_shell);
    tcase_add_test(tc, test_readme_page_runs);
    tcase_add_test(tc, test_web_server_user_writes);
    suite_add_tcase(s, tc);
    return s;
}
