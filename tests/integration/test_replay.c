/*
 * test_replay.c - fresh connect, resume and retention (SPEC §4.2, §4.3, §5 Last-Event-ID).
 *
 * History is published before the client connects, then one live event after; the ids that
 * arrive, up to and including the live one, must be exactly the expected list: the replay
 * window (replayed types only, at most SSE_REPLAY_LIMIT rows), or everything after the
 * resume point, with no gap, no duplicate and nothing seen twice. Pruning is a DELETE with
 * the sqlite3 CLI; the schema records it in `pruned`, and the stream must announce the gap.
 * Rows of a hand-edited database whose session_id only resembles s1 (a NUL inside, a BLOB)
 * are no part of s1's replay or resume.
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


/* History for resume tests: ids 1..10, odd client_output_delta (replayed), even
 * llm_text_delta (default, not replayed). */
static const char HISTORY_SQL[] =
    "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 10)\n"
    "INSERT INTO events(session_id, type, data) SELECT 's1', CASE i % 2 WHEN 1 THEN "
    "'client_output_delta' ELSE 'llm_text_delta' END, json_object('n', i) FROM k;\n";

static void
publish_live_event(void)
{
    publish_ok(&test_env, "INSERT INTO events(session_id, type) VALUES ('s1', 'llm_text_delta');\n");
}

START_TEST(test_replay_on_fresh_connect)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type) VALUES\n"
               " ('s1', 'client_output_delta'), ('s1', 'llm_text_delta'),\n"
               " ('s1', 'execution_started'), ('s1', 'llm_reasoning_delta'),\n"
               " ('s1', 'trigger_available');\n");
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    publish_live_event();  /* 6 */
    frames_expect_ids(&c, (const long long[]){1, 3, 5, 6}, 4, 5000);
    logwait_expect_line(test_srv.sse_log, "sse replayed 3 session=s1", NULL, 2000);
    logwait_expect_line(test_srv.sse_log, "sse first event session=s1", "type=client_output_delta",
                        2000);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_replay_only_requested_types)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type) VALUES\n"
               " ('s1', 'client_output_delta'), ('s1', 'execution_started'),\n"
               " ('s1', 'llm_text_delta');\n");
    struct sse_client c;
    frames_open_stream(&c, test_srv.port,
                       "/api/sessions/s1/events?types=llm_text_delta,client_output_delta", NULL);
    publish_live_event();  /* 4 */
    frames_expect_ids(&c, (const long long[]){1, 4}, 2, 5000);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_replay_limit)
{
    const char *const settings[] = {"SSE_REPLAY_LIMIT", "3", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.env = settings});
    publish_events(&test_env, "s1", "client_output_delta", NULL, 10);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    publish_live_event();  /* 11 */
    frames_expect_ids(&c, (const long long[]){8, 9, 10, 11}, 4, 5000);
    sse_client_close(&c);
}
END_TEST

/* Resume cases: path, header (or NULL), the first id expected (then up to 11). */
static const struct {
    const char *path;
    const char *header;
    long long first_id;
} RESUME[] = {
    {"/api/sessions/s1/events", "Last-Event-ID: 4", 5},
    {"/api/sessions/s1/events?last_event_id=4", NULL, 5},
    {"/api/sessions/s1/events?last_event_id=2", "Last-Event-ID: 6", 7},  /* header wins */
    {"/api/sessions/s1/events?last_event_id=9", "Last-Event-ID: 0", 1},
    {"/api/sessions/s1/events", "Last-Event-ID: 10", 11},
};

START_TEST(test_resume_exact)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, HISTORY_SQL);
    const char *const headers[] = {RESUME[_i].header, NULL};
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, RESUME[_i].path, headers);
    publish_live_event();  /* 11 */
    long long expected[11];
    size_t n = 0;
    for (long long id = RESUME[_i].first_id; id <= 11; id++)
        expected[n++] = id;
    frames_expect_ids(&c, expected, n, 5000);
    DIAG_CHECK(strstr(c.body, "event: gap") == NULL, "a gap where nothing was pruned");
    sse_client_close(&c);
}
END_TEST

static const char *const MALFORMED_IDS[] = {
    "abc", "-3", "1.5", "99999999999999999999", "4 4", "0x10",
};

START_TEST(test_malformed_last_event_id_means_fresh)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, HISTORY_SQL);
    char header[128];
    snprintf(header, sizeof(header), "Last-Event-ID: %s", MALFORMED_IDS[_i]);
    const char *const headers[] = {header, NULL};
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", headers);
    publish_live_event();  /* 11 */
    frames_expect_ids(&c, (const long long[]){1, 3, 5, 7, 9, 11}, 6, 5000);  /* a replay */
    logwait_expect_line(test_srv.sse_log, "Last-Event-ID", "session=s1", 2000);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_gap_after_prune)
{
    server_start(&test_srv, &test_env, NULL);
    publish_events(&test_env, "s1", "client_output_delta", NULL, 10);
    publish_ok(&test_env, "DELETE FROM events WHERE id <= 5;\n");
    const char *const headers[] = {"Last-Event-ID: 2", NULL};
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", headers);
    frames_expect_gap(&c, 2, 6, 5000);  /* before anything else */
    publish_live_event();  /* 11 */
    frames_expect_ids(&c, (const long long[]){6, 7, 8, 9, 10, 11}, 6, 5000);
    logwait_expect_line(test_srv.sse_log, "gap", "session=s1", 2000);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_no_gap_at_prune_boundary)
{
    server_start(&test_srv, &test_env, NULL);
    publish_events(&test_env, "s1", "client_output_delta", NULL, 10);
    publish_ok(&test_env, "INSERT INTO sessions(id) VALUES ('s2');\n"
               "INSERT INTO events(session_id, type) VALUES ('s2', 'client_output_delta');\n"
               "DELETE FROM events WHERE id <= 5 OR session_id = 's2';\n");
    const char *const headers[] = {"Last-Event-ID: 5", NULL};
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", headers);
    publish_live_event();  /* 12: the client saw 5, nothing of s1 after it was pruned */
    frames_expect_ids(&c, (const long long[]){6, 7, 8, 9, 10, 12}, 6, 5000);
    DIAG_CHECK(strstr(c.body, "event: gap") == NULL, "a gap, but nothing the client had "
               "not seen was pruned");
    sse_client_close(&c);
}
END_TEST

/* A hand-edited database (the INSERT trigger dropped) holds rows whose session_id is not s1
 * but close to it: s1 then a NUL (text, two spellings), s1 as a BLOB, s1 and a NUL as a BLOB.
 * Ids 1, 4 and 7 are s1's own. Neither a fresh connect (the replay window) nor a resume of s1
 * may send the others, and every row of s1 itself is sent. */
static const char NEAR_S1_SQL[] =
    "DROP TRIGGER events_check_insert;\n"
    "INSERT INTO events(session_id, type) VALUES\n"
    " ('s1', 'client_output_delta'), ('s1' || char(0) || 'x', 'client_output_delta'),\n"
    " (x'7331', 'client_output_delta'), ('s1', 'client_output_delta'),\n"
    " (CAST(x'733100' AS TEXT), 'client_output_delta'), (x'733100', 'client_output_delta'),\n"
    " ('s1', 'client_output_delta');\n";

static const struct {
    const char *header;         /* NULL: a fresh connect */
    long long expected[4];      /* then 8, live */
    size_t count;
} NEAR_S1[] = {
    {NULL, {1, 4, 7, 8}, 4},
    {"Last-Event-ID: 0", {1, 4, 7, 8}, 4},
    {"Last-Event-ID: 1", {4, 7, 8}, 3},
};

START_TEST(test_replay_skips_near_session_ids)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, NEAR_S1_SQL);
    const char *const headers[] = {NEAR_S1[_i].header, NULL};
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", headers);
    publish_ok(&test_env, "INSERT INTO events(session_id, type) VALUES ('s1', "
               "'client_output_delta');\n");  /* 8 */
    frames_expect_ids(&c, NEAR_S1[_i].expected, NEAR_S1[_i].count, 5000);
    sse_client_close(&c);
}
END_TEST

Suite *suite_replay(void);

Suite *
suite_replay(void)
{
    Suite *s = server_suite_create("replay");
    TCase *tc = server_tcase_create("replay");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_replay_on_fresh_connect);
    tcase_add_test(tc, test_replay_only_requested_types);
    tcase_add_test(tc, test_replay_limit);
    tcase_add_loop_test(tc, test_resume_exact, 0, (int)(sizeof(RESUME) / sizeof(RESUME[0])));
    tcase_add_loop_test(tc, test_malformed_last_event_id_means_fresh, 0,
                        (int)(sizeof(MALFORMED_IDS) / sizeof(MALFORMED_IDS[0])));
    tcase_add_test(tc, test_gap_after_prune);
    tcase_add_test(tc, test_no_gap_at_prune_boundary);
    tcase_add_loop_test(tc, test_replay_skips_near_session_ids, 0,
                        (int)(sizeof(NEAR_S1) / sizeof(NEAR_S1[0])));
    suite_add_tcase(s, tc);
    return s;
}
