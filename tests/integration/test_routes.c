/*
 * test_routes.c - routes, errors and health through every front end (SPEC §3, §5).
 *
 * Each test gets its own temp dir, database and web server on a free port (tests/lib). Errors
 * are checked end to end: status, JSON body {"error": "..."}, the Allow and Retry-After
 * headers, and a log line; health is checked for its facts, also while a stream is open.
 * The same binary must answer at any mount point, so lighttpd (fastcgi.server prefixes)
 * and nginx (location prefixes) mount it at several, and Apache reaches it through the
 * rewrite and through the script's own URL.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"


enum db_mode { DB_OK, DB_MISSING, DB_NO_SCHEMA, DB_GARBAGE };

static const struct error_case {
    const char *method;
    const char *path;           /* "{id}" stands for an id of id_len 'x' bytes */
    int id_len;
    enum db_mode db;
    int status;
    const char *header;         /* a header the answer must have, or NULL */
    bool is_apache_own;         /* Apache answers 404 itself (AllowEncodedSlashes Off) */
} ERRORS[] = {
    {"GET", "/api/nope", 0, DB_OK, 404, NULL, false},
    {"GET", "/api/sessions/s1/other", 0, DB_OK, 404, NULL, false},
    {"GET", "/api/sessions/s1", 0, DB_OK, 404, NULL, false},
    {"GET", "/api/api/sessions/s1/events", 0, DB_OK, 404, NULL, false},  /* repeated prefix */
    {"GET", "/api/sessions/nosuch/events", 0, DB_OK, 404, NULL, false},
    {"GET", "/api/sessions/{id}/events", 128, DB_OK, 404, NULL, false},  /* valid id, no session */
    {"GET", "/api/sessions/{id}/events", 129, DB_OK, 400, NULL, false},
    {"GET", "/api/workers/{id}/events", 129, DB_OK, 400, NULL, false},
    {"GET", "/api/sessions/a%2Fb/events", 0, DB_OK, 400, NULL, true},
    {"GET", "/api/sessions/a%20b/events", 0, DB_OK, 400, NULL, false},
    {"GET", "/api/workers/a%2Fb/events", 0, DB_OK, 400, NULL, true},
    {"GET", "/api/sessions/s1/events?watch=bogus", 0, DB_OK, 400, NULL, false},
    {"GET", "/api/sessions/s1/events?watch=worker:a%2Fb", 0, DB_OK, 400, NULL, false},
    {"GET", "/api/sessions/s1/events?types=client_output_delta%00x", 0, DB_OK, 400, NULL, false},
    {"GET", "/api/sessions/s1/events?watch=worker:abc%00", 0, DB_OK, 400, NULL, false},
    {"POST", "/api/sessions/s1/events", 0, DB_OK, 405, "Allow", false},
    {"DELETE", "/api/sessions/s1/events", 0, DB_OK, 405, "Allow", false},
    {"PUT", "/api/health", 0, DB_OK, 405, "Allow", false},
    {"GET", "/api/sessions/s1/events", 0, DB_MISSING, 503, "Retry-After", false},
    {"GET", "/api/health", 0, DB_MISSING, 503, "Retry-After", false},
    {"GET", "/api/events/global", 0, DB_MISSING, 503, "Retry-After", false},
    {"GET", "/api/sessions/s1/events", 0, DB_NO_SCHEMA, 503, "Retry-After", false},
    {"GET", "/api/health", 0, DB_NO_SCHEMA, 503, "Retry-After", false},
    {"GET", "/api/sessions/s1/events", 0, DB_GARBAGE, 503, "Retry-After", false},
    {"GET", "/api/workers/abc/events", 0, DB_GARBAGE, 503, "Retry-After", false},
};

/* Starts lighttpd with SSE_DB as the case wants it. */
static void
start_for(enum db_mode db)
{
    char path[TESTENV_PATH_MAX];
    struct server_options opt = {0};
    if (db == DB_MISSING)
        opt.db_path = testenv_path(&test_env, "missing.db", path, sizeof(path));
    if (db == DB_GARBAGE) {
        opt.db_path = testenv_path(&test_env, "garbage.db", path, sizeof(path));
        static const char junk[] = "this is not an SQLite database, just 64 bytes of text....";
        testenv_write_file(path, junk, sizeof(junk) - 1);
    }
    if (db == DB_NO_SCHEMA) {
        opt.db_path = testenv_path(&test_env, "plain.db", path, sizeof(path));
        struct testenv plain = test_env;
        snprintf(plain.db_path, sizeof(plain.db_path), "%s", path);
        publish_ok(&plain, "CREATE TABLE notes(x);\nINSERT INTO notes VALUES (1);\n");
    }
    server_start(&test_srv, &test_env, &opt);
}

static cJSON *get_health(const char *prefix);

/* Fails unless the body is a JSON object with a string "error". */
static void
expect_json_error(struct sse_client *c)
{
    char value[128];
    sse_client_read_body(c, 5000);
    const char *type = sse_client_header(c, "Content-Type", value, sizeof(value));
    DIAG_CHECK(type && strstr(type, "application/json"), "%s: Content-Type %s", c->request,
               type ? type : "(none)");
    cJSON *body = cJSON_Parse(c->body);
    bool is_ok = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(body, "error"));
    cJSON_Delete(body);
    DIAG_CHECK(is_ok, "%s: body is not {\"error\": \"...\"}: %s", c->request, c->body);
}

/* A %2F in the path never reaches the responder under Apache: Apache refuses it with its
 * own 404 page (AllowEncodedSlashes Off, the default). A refusal all the same. */
static void
expect_apache_refusal(const struct error_case *e, const char *path)
{
    struct sse_client c;
    sse_client_open(&c, test_srv.port, e->method, path, NULL);
    DIAG_CHECK(c.status == 404, "%s: status %d, expected Apache's own 404", c.request,
               c.status);
    sse_client_close(&c);
    DIAG_CHECK(logwait_count_lines(test_srv.sse_log, "sse error", "a%2Fb") == 0,
               "%s reached the responder", path);
}

START_TEST(test_error_answers)
{
    const struct error_case *e = &ERRORS[_i];
    bool is_apache = server_front_end_is_apache(server_front_end);
    char path[400], value[128], status_text[16];
    const char *mark = strstr(e->path, "{id}");
    size_t head_len = mark ? (size_t)(mark - e->path) : strlen(e->path);
    snprintf(path, sizeof(path), "%.*s%.*s%s", (int)head_len, e->path, e->id_len,
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
             mark ? mark + 4 : "");
    start_for(e->db);
    if (is_apache && e->is_apache_own) {
        expect_apache_refusal(e, path);
        return;
    }
    pid_t backend = server_find_backend(&test_srv, is_apache ? 0 : 2000);
    snprintf(status_text, sizeof(status_text), "%d", e->status);
    int logged = logwait_count_lines(test_srv.sse_log, status_text, NULL);
    /* A plain HTTP client (curl's Accept): the honest statuses of SPEC §5 */
    const char *const headers[] = {"Content-Length: 0", "Accept: */*", NULL};
    struct sse_client c;
    sse_client_open(&c, test_srv.port, e->method, path, headers);
    DIAG_CHECK(c.status == e->status, "%s: status %d, expected %d", c.request, c.status,
               e->status);
    expect_json_error(&c);
    if (e->header != NULL)
        DIAG_CHECK(sse_client_header(&c, e->header, value, sizeof(value)) != NULL,
                   "%s: no %s header", c.request, e->header);
    if (e->status == 405)
        DIAG_CHECK(strstr(value, "GET") != NULL, "%s: Allow: %s", c.request, value);
    /* SPEC §5: one log line; it names the status (the probe made the earlier ones). */
    logwait_expect_count(test_srv.sse_log, status_text, NULL, logged + 1, 2000);
    sse_client_close(&c);
    /* SPEC §5: nothing a client sends crashes the process; the same one answers again.
     * mod_fcgid picks any idle process and a CGI process exits after each request, so
     * behind Apache a crash is what mod_fcgid logs about an exit by signal. */
    cJSON_Delete(e->db == DB_OK ? get_health("/api") : NULL);
    if (!is_apache)
        DIAG_CHECK(backend > 0 && !server_is_pid_gone(backend)
                   && server_find_backend(&test_srv, 0) == backend, "the backend pid %ld did "
                   "not survive %s", (long)backend, path);
    else
        DIAG_CHECK(logwait_count_lines(test_srv.error_log, "signal", NULL) == 0,
                   "a responder died by a signal after %s", path);
}
END_TEST

/* SPEC §4.12: a transient refusal that an SSE client comes back from. */
static const struct refusal_case {
    const char *path;
    enum db_mode db;
    const char *header;         /* an extra request header, or NULL */
    const char *reason;         /* in the refusal's comment */
    long long cursor;           /* its id: line; -1 for none */
} REFUSALS[] = {
    {"/api/sessions/s1/events", DB_MISSING, NULL, "database missing", -1},
    {"/api/sessions/s1/events", DB_MISSING, "Last-Event-ID: 42", "database missing", 42},
    {"/api/sessions/s1/events?last_event_id=7", DB_MISSING, NULL, "database missing", 7},
    {"/api/sessions/s1/events?last_event_id=7", DB_MISSING, "Last-Event-ID: 9",
     "database missing", 9},
    {"/api/events/global", DB_MISSING, NULL, "database missing", -1},
    {"/api/sessions/s1/events", DB_NO_SCHEMA, "Last-Event-ID: 3", "no sse-fcgi schema", 3},
    {"/api/workers/abc/events", DB_GARBAGE, NULL, "unreadable", -1},
};

/* An SSE client gets 200, retry:, its cursor back and the reason, then the end, and the
 * same log line a 503 has; health and HEAD keep the 503 even when they ask for SSE. */
START_TEST(test_soft_refusals)
{
    const struct refusal_case *e = &REFUSALS[_i];
    start_for(e->db);
    int logged = logwait_count_lines(test_srv.sse_log, "status=503", NULL);
    const char *const headers[] = {e->header, NULL};
    struct sse_client c;
    sse_client_open(&c, test_srv.port, "GET", e->path, headers);
    frames_expect_refusal(&c, e->reason, e->cursor);
    sse_client_close(&c);
    logwait_expect_count(test_srv.sse_log, "status=503", NULL, logged + 1, 2000);
    sse_client_open(&c, test_srv.port, "HEAD", e->path, headers);
    DIAG_CHECK(c.status == 503, "%s: status %d, expected 503", c.request, c.status);
    sse_client_close(&c);
    sse_client_open(&c, test_srv.port, "GET", "/api/health", headers);
    DIAG_CHECK(c.status == 503, "%s: status %d, expected 503", c.request, c.status);
    sse_client_close(&c);
}
END_TEST

/* GETs /api/health (under prefix) and returns the parsed body (cJSON_Delete it). */
static cJSON *
get_health(const char *prefix)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/health", prefix);
    return sse_client_get_json(test_srv.port, path, NULL);
}

static double
number_field(const cJSON *json, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, name);
    char *text = cJSON_PrintUnformatted(json);
    bool is_number = cJSON_IsNumber(item);
    if (!is_number)
        fprintf(stderr, "health body: %s\n", text);
    cJSON_free(text);
    DIAG_CHECK(is_number, "health: \"%s\" is not a number", name);
    return item->valuedouble;
}

START_TEST(test_health_facts)
{
    server_start(&test_srv, &test_env, NULL);
    publish_events(&test_env, "s1", "client_output_delta", NULL, 3);
    cJSON *health = get_health("/api");
    DIAG_CHECK(cJSON_GetObjectItemCaseSensitive(health, "database") != NULL,
               "health: no \"database\" field");
    DIAG_CHECK(number_field(health, "schema_version") == 1, "health: schema_version != 1");
    DIAG_CHECK(number_field(health, "newest_event_id") == 3, "health: newest_event_id != 3");
    DIAG_CHECK(number_field(health, "streams_open") == 0, "health: streams_open != 0");
    cJSON_Delete(health);
    struct sse_client stream;
    frames_open_stream(&stream, test_srv.port, "/api/sessions/s1/events", NULL);
    health = get_health("/api");
    double open = number_field(health, "streams_open");
    cJSON_Delete(health);
    /* streams_open counts the answering process's streams (SPEC §3): mod_fcgid and CGI
     * give the health request a process of its own. */
    double expected = server_front_end_is_apache(server_front_end) ? 0 : 1;
    DIAG_CHECK(open == expected, "health: streams_open %g with one stream open, expected %g",
               open, expected);
    sse_client_close(&stream);
}
END_TEST

/* Mount points (lighttpd fastcgi.server prefixes, nginx location prefixes) and the URL
 * prefix of /api under each. */
static const struct { const char *mount, *api; } MOUNTS[] = {
    {"/api/", "/api"},
    {"/app/", "/app/api"},
    {"/app/cgi-bin/events.fcgi/", "/app/cgi-bin/events.fcgi/api"},
    {"/", "/api"},  /* with fix-root-scriptname: SCRIPT_NAME "" (DEPLOY-NOTES Q8) */
};

/* Apache's two ways in: /api/ rewritten onto the script, and the script URL itself with
 * the route as PATH_INFO. */
static void
apache_mount(int i, char *api, size_t size)
{
    snprintf(api, size, "%s/api", i == 0 ? "" : server_script_url());
}

START_TEST(test_mount_point_independence)
{
    char api[128];
    if (!server_front_end_is_apache(server_front_end)) {
        server_start(&test_srv, &test_env, &(struct server_options){.mount = MOUNTS[_i].mount});
        snprintf(api, sizeof(api), "%s", MOUNTS[_i].api);
    } else {
        server_start(&test_srv, &test_env, NULL);
        apache_mount(_i, api, sizeof(api));
    }
    cJSON_Delete(get_health(api));
    publish_events(&test_env, "s1", "client_output_delta", NULL, 2);
    char path[256];
    snprintf(path, sizeof(path), "%s/sessions/s1/events", api);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, path, NULL);
    frames_expect_ids(&c, (const long long[]){1, 2}, 2, 5000);  /* the replay */
    sse_client_close(&c);
    snprintf(path, sizeof(path), "%s/nope", api);
    sse_client_open(&c, test_srv.port, "GET", path, NULL);
    DIAG_CHECK(c.status == 404, "%s: status %d", c.request, c.status);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_head_of_stream)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    sse_client_open(&c, test_srv.port, "HEAD", "/api/sessions/s1/events", NULL);
    char value[128];
    const char *type = sse_client_header(&c, "Content-Type", value, sizeof(value));
    DIAG_CHECK(c.status == 200 && type && strstr(type, "text/event-stream"),
               "HEAD: status %d, Content-Type %s", c.status, type ? type : "(none)");
    sse_client_close(&c);
}
END_TEST

Suite *suite_routes(void);

Suite *
suite_routes(void)
{
    Suite *s = server_suite_create("routes");
    TCase *tc = server_tcase_create("routes");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_error_answers, 0, (int)(sizeof(ERRORS) / sizeof(ERRORS[0])));
    tcase_add_loop_test(tc, test_soft_refusals, 0, (int)(sizeof(REFUSALS) / sizeof(REFUSALS[0])));
    tcase_add_test(tc, test_health_facts);
    tcase_add_test(tc, test_head_of_stream);
    int mounts = server_front_end_is_apache(server_building_front_end)
                     ? 2 : (int)(sizeof(MOUNTS) / sizeof(MOUNTS[0]));
    tcase_add_loop_test(tc, test_mount_point_independence, 0, mounts);
    suite_add_tcase(s, tc);
    return s;
}
