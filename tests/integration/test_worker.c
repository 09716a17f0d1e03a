/*
 * test_worker.c - the worker rule, watch=, the worker route and the global channel
 * (SPEC §3 routes and watch=, §4.5).
 *
 * One fixed set of rows, published after the client connected, is read through each route
 * and watch= setting; the ids that must arrive are listed per case, and the last row of
 * each set passes every case, so reading up to it proves what was dropped.
 */
#include <check.h>
#include <stdio.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"


/* Session s1 rows, ids 1..8: the worker rule's corner cases. */
static const char WORKER_ROWS_SQL[] =
    "INSERT INTO events(session_id, type, stream_id) VALUES\n"
    " ('s1', 'client_output_delta', 'worker:abc'),\n"   /* 1 chatter of abc */
    " ('s1', 'subagent_report', 'worker:abc'),\n"       /* 2 worker_fanin: always */
    " ('s1', 'llm_text_delta', 'worker'),\n"            /* 3 bare "worker" */
    " ('s1', 'client_output_delta', 'worker:xyz'),\n"   /* 4 chatter of xyz */
    " ('s1', 'client_output_delta', 'queen'),\n"        /* 5 not a worker */
    " ('s1', 'execution_completed', 'worker:xyz'),\n"   /* 6 worker_fanin: always */
    " ('s1', 'client_output_delta', 'workerbee'),\n"    /* 7 not "worker" nor "worker:" */
    " ('s1', 'client_output_delta', NULL);\n";          /* 8 */

static const struct {
    const char *query;
    long long expected[8];
    size_t count;
} WATCH[] = {
    {"", {2, 5, 6, 7, 8}, 5},
    {"?watch=worker:abc", {1, 2, 5, 6, 7, 8}, 6},
    {"?watch=worker:abc,worker:xyz", {1, 2, 4, 5, 6, 7, 8}, 7},
    {"?watch=*", {1, 2, 3, 4, 5, 6, 7, 8}, 8},
};

START_TEST(test_worker_rule_and_watch)
{
    server_start(&test_srv, &test_env, NULL);
    char path[256];
    snprintf(path, sizeof(path), "/api/sessions/s1/events%s", WATCH[_i].query);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, path, NULL);
    publish_ok(&test_env, WORKER_ROWS_SQL);
    frames_expect_ids(&c, WATCH[_i].expected, WATCH[_i].count, 5000);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_worker_route_unfiltered_by_worker_rule)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, "INSERT INTO sessions(id) VALUES ('s2');\n");
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/workers/abc/events", NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type, stream_id) VALUES\n"
               " ('s1', 'client_output_delta', 'worker:abc'),\n"  /* 1 */
               " ('s1', 'client_output_delta', 'worker:xyz'),\n"  /* 2 another worker */
               " (NULL, 'llm_text_delta', 'worker:abc'),\n"       /* 3 any session */
               " ('s1', 'client_output_delta', 'worker:abcd'),\n" /* 4 prefix only */
               " ('s2', 'subagent_report', 'worker:abc'),\n"      /* 5 */
               " ('s1', 'llm_reasoning_delta', 'worker:abc'),\n"  /* 6 not a default type */
               " ('s1', 'tool_call_started', 'worker:abc');\n");  /* 7 */
    frames_expect_ids(&c, (const long long[]){1, 3, 5, 7}, 4, 5000);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_global_channel_no_replay)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type) VALUES (NULL, 'client_output_delta');"
               "\n");  /* 1: history; the global channel does not replay it */
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/events/global", NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type, stream_id) VALUES\n"
               " ('s1', 'client_output_delta', NULL),\n"          /* 2 a session's */
               " (NULL, 'client_output_delta', NULL),\n"          /* 3 */
               " (NULL, 'client_output_delta', 'worker:abc'),\n"  /* 4 no worker rule */
               " ('s1', 'execution_started', NULL),\n"            /* 5 a session's */
               " (NULL, 'execution_started', NULL);\n");          /* 6 */
    frames_expect_ids(&c, (const long long[]){3, 4, 6}, 3, 5000);
    sse_client_close(&c);
}
END_TEST

/* SPEC §3 (issue 11): README's own global example, a row of type crm_changed, which
 * event_types does not know, reaches a client that names no types=; types= narrows the
 * channel by name as given, and a name the table does not know is no typo there. */
START_TEST(test_global_channel_streams_app_types)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client every, narrowed;
    frames_open_stream(&every, test_srv.port, "/api/events/global", NULL);
    frames_open_stream(&narrowed, test_srv.port, "/api/events/global?types=other", NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type, data) VALUES\n"
               " (NULL, 'crm_changed', '{}'),\n"              /* 1 README's example */
               " (NULL, 'other', '{}'),\n"                    /* 2 */
               " (NULL, 'llm_reasoning_delta', '{}');\n");    /* 3 known, not default */
    frames_expect_ids(&every, (const long long[]){1, 2, 3}, 3, 5000);
    frames_expect_ids(&narrowed, (const long long[]){2}, 1, 5000);
    sse_client_close(&every);
    sse_client_close(&narrowed);
    DIAG_CHECK(logwait_count_lines(test_srv.sse_log, "unknown event type filter", NULL) == 0,
               "types=other on the global channel was logged as an unknown type");
}
END_TEST

Suite *suite_worker(void);

Suite *
suite_worker(void)
{
    Suite *s = server_suite_create("worker");
    TCase *tc = server_tcase_create("worker");
    tcase_set_timeout(tc, 30);
    tcase_add_loop_test(tc, test_worker_rule_and_watch, 0,
                        (int)(sizeof(WATCH) / sizeof(WATCH[0])));
    tcase_add_test(tc, test_worker_route_unfiltered_by_worker_rule);
    tcase_add_test(tc, test_global_channel_no_replay);
    tcase_add_test(tc, test_global_channel_streams_app_types);
    suite_add_tcase(s, tc);
    return s;
}
