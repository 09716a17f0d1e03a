/*
 * test_stream.c - what one session stream sends: head, opening, filters, frames, keepalive
 * (SPEC §3 query parameters, §4.1, §4.6, §4.7, §6 warning line).
 *
 * Every test connects first and publishes afterwards with the sqlite3 CLI, so the events
 * arrive live and no replay rule is involved; ids are known (fresh database), and a last
 * event that must pass ends each read, so "not sent" is checked exactly, not by waiting.
 * Hostile rows are inserted after dropping the INSERT trigger, as a hand-edited or older
 * database could hold them: the frames must stay well-formed whatever a row holds.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"


/* Inserts one event per type into s1, in order (ids 1..n on a fresh database). */
static void
publish_types(const char *const *types)
{
    char sql[4096] = "";
    for (size_t i = 0; types[i]; i++) {
        size_t len = strlen(sql);
        snprintf(sql + len, sizeof(sql) - len,
                 "INSERT INTO events(session_id, type) VALUES ('s1', '%s');\n", types[i]);
    }
    publish_ok(&test_env, sql);
}

START_TEST(test_stream_head_and_opening)
{
    const char *const settings[] = {"SSE_RETRY_MS", "1234", "SSE_CORS_ORIGIN",
                                    "https://app.example", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.env = settings});
    const char *const headers[] = {"Origin: https://app.example", NULL};
    struct sse_client c;
    sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", headers);
    char value[256];
    DIAG_CHECK(c.status == 200, "status %d", c.status);
    const char *type = sse_client_header(&c, "Content-Type", value, sizeof(value));
    DIAG_CHECK(type && strcmp(type, "text/event-stream; charset=utf-8") == 0,
               "Content-Type: %s", type ? type : "(none)");
    const char *cache = sse_client_header(&c, "Cache-Control", value, sizeof(value));
    DIAG_CHECK(cache && strstr(cache, "no-cache"), "Cache-Control: %s", cache ? cache : "-");
    const char *accel = sse_client_header(&c, "X-Accel-Buffering", value, sizeof(value));
    DIAG_CHECK(accel && strcmp(accel, "no") == 0, "X-Accel-Buffering: %s", accel ? accel : "-");
    const char *cors = sse_client_header(&c, "Access-Control-Allow-Origin", value,
                                         sizeof(value));
    DIAG_CHECK(cors && strcmp(cors, "https://app.example") == 0, "CORS: %s", cors ? cors : "-");
    struct sse_frame f;
    sse_client_expect_block(&c, &f, 5000);  /* at once, before any event exists */
    DIAG_CHECK(strncmp(c.body, "retry: 1234\n", 12) == 0, "the body does not start with "
               "retry: 1234");
    DIAG_CHECK(f.has_retry && f.retry_ms == 1234 && f.comment_lines >= 1 && f.data == NULL,
               "the opening block is not retry + comment");
    sse_frame_release(&f);
    logwait_expect_line(test_srv.sse_log, "sse connected session=s1", "types=", 2000);
    sse_client_close(&c);
}
END_TEST

/* SSE_CORS_ORIGIN is an allowlist: an origin not on it gets no CORS header (the browser
 * then refuses the stream), and no setting means no CORS header at all. */
START_TEST(test_cors_origin_not_allowed)
{
    const char *const settings[] = {"SSE_CORS_ORIGIN", "https://a.example, https://app.example",
                                    NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.env = settings});
    const char *const evil[] = {"Origin: https://app.example.evil", NULL};
    struct sse_client c;
    sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", evil);
    char value[256];
    DIAG_CHECK(c.status == 200, "status %d", c.status);
    DIAG_CHECK(sse_client_header(&c, "Access-Control-Allow-Origin", value, sizeof(value))
               == NULL, "CORS header for an origin not on the list: %s", value);
    sse_client_close(&c);
    const char *const good[] = {"Origin: https://a.example", NULL};
    sse_client_open(&c, test_srv.port, "GET", "/api/health", good);
    const char *cors = sse_client_header(&c, "Access-Control-Allow-Origin", value,
                                         sizeof(value));
    DIAG_CHECK(cors && strcmp(cors, "https://a.example") == 0, "CORS: %s", cors ? cors : "-");
    DIAG_CHECK(sse_client_header(&c, "Access-Control-Allow-Credentials", value, sizeof(value))
               != NULL, "no Access-Control-Allow-Credentials");
    sse_client_close(&c);
}
END_TEST

/* A filter test: query, the types published in order, the ids that must arrive. */
static const struct filter_case {
    const char *query;
    const char *types[8];
    long long expected[8];
    const char *warning;        /* a "sse warning unknown event type filter" value or NULL */
} FILTERS[] = {
    {"", {"llm_reasoning_delta", "client_output_delta", "custom", "llm_text_delta", NULL},
     {2, 4}, NULL},
    {"?types=llm_reasoning_delta,custom",
     {"client_output_delta", "llm_reasoning_delta", "custom", "llm_text_delta", "custom",
      NULL}, {2, 3, 5}, NULL},
    {"?types=*", {"llm_reasoning_delta", "client_output_delta", "custom", NULL}, {1, 2, 3},
     NULL},
    {"?types=client_output_delta,no_such_type",
     {"llm_text_delta", "no_such_type", "client_output_delta", NULL}, {3},
     "no_such_type"},
    {"?types=no_such_type,", {"llm_reasoning_delta", "llm_text_delta", NULL}, {2},
     "no_such_type"},
    {"?types=", {"llm_reasoning_delta", "execution_started", NULL}, {2}, NULL},
};

START_TEST(test_type_filter)
{
    const struct filter_case *fc = &FILTERS[_i];
    server_start(&test_srv, &test_env, NULL);
    char path[256];
    snprintf(path, sizeof(path), "/api/sessions/s1/events%s", fc->query);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, path, NULL);
    publish_types(fc->types);
    size_t n = 0;
    while (n < 8 && fc->expected[n])
        n++;
    frames_expect_ids(&c, fc->expected, n, 5000);
    DIAG_CHECK(strstr(c.body, "\nevent:") == NULL, "an event: line without named=1");
    if (fc->warning)
        logwait_expect_line(test_srv.sse_log, "sse warning unknown event type filter",
                            fc->warning, 2000);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_named_events)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events?named=1", NULL);
    publish_types((const char *const[]){"client_output_delta", "execution_started", NULL});
    const char *names[] = {"client_output_delta", "execution_started"};
    for (int i = 0; i < 2; i++) {
        struct sse_frame f;
        sse_client_expect_event(&c, &f, 5000);
        frames_expect_wellformed(&f);
        bool is_named = f.has_event && strcmp(f.event, names[i]) == 0;
        sse_frame_release(&f);
        DIAG_CHECK(is_named, "event %d: no 'event: %s' line", i + 1, names[i]);
    }
    sse_client_close(&c);
}
END_TEST

/* Reads the next event, checks it is well-formed and returns its JSON (cJSON_Delete it). */
static cJSON *
next_event_json(struct sse_client *c, long long id)
{
    struct sse_frame f;
    sse_client_expect_event(c, &f, 5000);
    frames_expect_wellformed(&f);
    long long got = sse_frame_id(&f);
    cJSON *json = sse_frame_json(&f);
    sse_frame_release(&f);
    DIAG_CHECK(got == id, "event id %lld, expected %lld", got, id);
    return json;
}

static const char *const FRAME_KEYS[] = {"type", "stream_id", "node_id", "execution_id",
                                         "data", "timestamp", "correlation_id", "colony_id",
                                         "seq", "run_id"};

/* Fails unless json has exactly the SPEC §4.6 keys (run_id only when has_run_id). */
static void
expect_frame_keys(const cJSON *json, bool has_run_id)
{
    size_t want = has_run_id ? 10 : 9;
    for (size_t i = 0; i < want; i++)
        DIAG_CHECK(cJSON_HasObjectItem(json, FRAME_KEYS[i]), "no key \"%s\"", FRAME_KEYS[i]);
    DIAG_CHECK(has_run_id || !cJSON_HasObjectItem(json, "run_id"), "run_id without a value");
    DIAG_CHECK(cJSON_GetArraySize(json) == (int)want, "%d keys, expected %zu",
               cJSON_GetArraySize(json), want);
}

static const char *
string_of(const cJSON *json, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

START_TEST(test_frame_json_fields)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type, stream_id, node_id, execution_id, "
               "data, correlation_id, colony_id, run_id) VALUES ('s1', 'client_output_delta', "
               "'queen', 'n1', 'e1', '{\"content\":\"hi\",\"k\":[1,2]}', 'c1', 'col1', 'r1');\n"
               "INSERT INTO events(session_id, type) VALUES ('s1', 'llm_text_delta');\n");
    cJSON *full = next_event_json(&c, 1);
    expect_frame_keys(full, true);
    const char *ts = string_of(full, "timestamp");
    DIAG_CHECK(ts && strlen(ts) == 24 && ts[10] == 'T' && ts[19] == '.' && ts[23] == 'Z',
               "timestamp is not ISO-8601 UTC with ms: %s", ts ? ts : "(not a string)");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(full, "data");
    DIAG_CHECK(cJSON_IsObject(data) && string_of(data, "content")
               && strcmp(string_of(data, "content"), "hi") == 0, "data is not embedded JSON");
    DIAG_CHECK(strcmp(string_of(full, "type"), "client_output_delta") == 0
               && strcmp(string_of(full, "run_id"), "r1") == 0
               && strcmp(string_of(full, "colony_id"), "col1") == 0, "column values differ");
    cJSON_Delete(full);
    cJSON *bare = next_event_json(&c, 2);
    expect_frame_keys(bare, false);
    DIAG_CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(bare, "stream_id"))
               && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(bare, "node_id"))
               && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(bare, "correlation_id")),
               "absent columns are not null");
    DIAG_CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(bare, "data")),
               "default data '{}' not embedded as an object");
    cJSON_Delete(bare);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_keepalive_when_idle)
{
    server_start(&test_srv, &test_env, NULL);  /* SSE_KEEPALIVE_S=1 */
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    for (int i = 0; i < 2; i++) {
        int64_t start_ms = testenv_now_ms();
        struct sse_frame f;
        sse_client_expect_block(&c, &f, 1600);
        int64_t waited_ms = testenv_now_ms() - start_ms;
        /* Under Apache and CGI, probe lines (a bare ':', SPEC §4.10) share the block. */
        bool is_keepalive = f.data == NULL && strcmp(f.comment, "keepalive") == 0
                            && (f.comment_lines == 1
                                || server_front_end_is_apache(server_front_end));
        sse_frame_release(&f);
        DIAG_CHECK(is_keepalive, "block %d is not ': keepalive'", i + 1);
        DIAG_CHECK(waited_ms >= 700, "keepalive after %lld ms, before SSE_KEEPALIVE_S=1",
                   (long long)waited_ms);
    }
    DIAG_CHECK(strstr(c.body, ": keepalive\n\n") != NULL, "keepalive is not ': keepalive\\n\\n'");
    sse_client_close(&c);
}
END_TEST

/* Rows no current schema accepts: the INSERT trigger is dropped first (an older schema or a
 * hand-edited file). The odd types are made default types, so the filter passes them; a
 * stream reads the policy when it starts, so this runs before the client connects. */
static const char HOSTILE_POLICY_SQL[] =
    "DROP TRIGGER events_check_insert;\n"
    "INSERT INTO event_types(name, streamed_by_default) VALUES ('bad' || char(13) || 'cr', 1),"
    " ('bad' || char(10) || 'lf', 1), (CAST(x'6261640075' AS TEXT), 1);\n";

static const char HOSTILE_SQL[] =
    "INSERT INTO events(session_id, type, data) VALUES ('s1', 'client_output_delta',"
    " '{\"text\":\"line1\\nline2\\r\\ndata: x\"}');\n"                               /* 1 */
    "INSERT INTO events(session_id, type, data) VALUES ('s1', 'client_output_delta',"
    " '{' || char(10) || '  \"a\": 1,' || char(13) || char(10) || '  \"b\": [1,' ||"
    " char(13) || '2]' || char(10) || '}');\n"                                     /* 2 */
    "INSERT INTO events(session_id, type) VALUES ('s1', 'bad' || char(13) || 'cr');\n" /* 3 */
    "INSERT INTO events(session_id, type) VALUES ('s1', 'bad' || char(10) || 'lf');\n" /* 4 */
    "INSERT INTO events(session_id, type) VALUES ('s1', CAST(x'6261640075' AS TEXT));\n"
    "INSERT INTO events(session_id, type, stream_id, node_id, correlation_id) VALUES"
    " ('s1', 'client_output_delta', 'q' || char(13) || char(10) || 'id: 99',"
    " CAST(x'6e0078' AS TEXT), char(13));\n"                                       /* 6 */
    "INSERT INTO events(session_id, type, data) VALUES ('s1', 'client_output_delta',"
    " 'not json' || char(10) || 'data: injected' || char(13));\n"                  /* 7 */
    "INSERT INTO events(session_id, type, data) VALUES ('s1', 'client_output_delta',"
    " CAST(x'7b2261223a227800792221' AS TEXT));\n"                                 /* 8 */
    "INSERT INTO events(session_id, type, data) VALUES ('s1', 'client_output_delta',"
    " '\"' || char(10) || '\"');\n"                                                /* 9 */
    "INSERT INTO events(session_id, type) VALUES ('s1', 'client_output_delta');\n"; /* 10 */

START_TEST(test_hostile_rows_stay_wellformed)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, HOSTILE_POLICY_SQL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events?named=1", NULL);
    publish_ok(&test_env, HOSTILE_SQL);
    cJSON *json[10];
    for (int i = 0; i < 10; i++)
        json[i] = next_event_json(&c, i + 1);  /* one data line that parses as JSON */
    frames_expect_clean_body(&c);
    const char *text = string_of(cJSON_GetObjectItemCaseSensitive(json[0], "data"), "text");
    DIAG_CHECK(text && strcmp(text, "line1\nline2\r\ndata: x") == 0,
               "escaped newlines in data did not survive: %s", text ? text : "(none)");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(json[1], "data"), "b");
    DIAG_CHECK(cJSON_GetArraySize(b) == 2, "pretty-printed data was not embedded as JSON");
    for (int i = 0; i < 10; i++)
        cJSON_Delete(json[i]);
    DIAG_CHECK(strstr(c.body, "\nid: 99") == NULL, "a row value injected an id: line");
    DIAG_CHECK(strstr(c.body, "\ndata: injected") == NULL, "a row value injected a data: line");
    sse_client_close(&c);
}
END_TEST

enum { MEBIBYTE = 1024 * 1024 };

/* Issue 5: 1 MiB texts end to end. A stream_id and a data column (not JSON) of 1 MiB each,
 * full of CR and LF, reach the client as one well-formed event with every byte (the trigger that would refuse them is dropped, as in an older schema). */
START_TEST(test_mebibyte_row_end_to_end)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, "DROP TRIGGER events_check_insert;\n");
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events?types=*", NULL);
    publish_okf(&test_env, "INSERT INTO events(session_id, type, stream_id, data) VALUES ('s1', "
                "'client_output_delta', replace(hex(zeroblob(%d)), '00', 'ab' || char(13)), "
                "replace(hex(zeroblob(%d)), '00', 'x' || char(10)));\n", MEBIBYTE / 3,
                MEBIBYTE / 2);
    cJSON *json = next_event_json(&c, 1);
    const char *stream_id = string_of(json, "stream_id");
    const char *data = string_of(json, "data");
    DIAG_CHECK(stream_id != NULL && strlen(stream_id) == (size_t)MEBIBYTE / 3 * 3,
               "stream_id of %zu bytes, expected %d", stream_id ? strlen(stream_id) : 0,
               MEBIBYTE / 3 * 3);
    DIAG_CHECK(data != NULL && strlen(data) == (size_t)MEBIBYTE, "data of %zu bytes, expected "
               "%d", data ? strlen(data) : 0, MEBIBYTE);
    DIAG_CHECK(strchr(stream_id, '\r') != NULL && strchr(data, '\n') != NULL,
               "CR/LF did not survive as JSON escapes");
    cJSON_Delete(json);
    frames_expect_clean_body(&c);
    sse_client_close(&c);
}
END_TEST

Suite *suite_stream(void);

Suite *
suite_stream(void)
{
    Suite *s = server_suite_create("stream");
    TCase *tc = server_tcase_create("stream");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_stream_head_and_opening);
    tcase_add_test(tc, test_cors_origin_not_allowed);
    tcase_add_loop_test(tc, test_type_filter, 0, (int)(sizeof(FILTERS) / sizeof(FILTERS[0])));
    tcase_add_test(tc, test_named_events);
    tcase_add_test(tc, test_frame_json_fields);
    tcase_add_test(tc, test_keepalive_when_idle);
    tcase_add_test(tc, test_hostile_rows_stay_wellformed);
    tcase_add_test(tc, test_mebibyte_row_end_to_end);
    suite_add_tcase(s, tc);
    return s;
}
