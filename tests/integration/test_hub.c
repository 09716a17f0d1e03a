/*
 * test_hub.c - what a producer (or a hand-edited database) can do to the process's watcher
 * (store/hub.c), found by an audit (issue 11), each as it was reported:
 *   - one read larger than the hub's memory: it evicted rows of the batch it was still
 *     waking for (a use after free, found by ASan under `make sanitize`);
 *   - a database restored from an older copy in place, or truncated and replaced: streams
 *     went on as if the new file continued the old one;
 *   - rows whose timestamp the memory bound did not count, and one big row framed by every
 *     stream on its own: the backend's memory grew past any bound;
 *   - session ids with a NUL inside or stored as BLOB: delivered live but not on replay.
 * Rows the schema would refuse are written after its check trigger is dropped, as in a
 * hand-edited file. Memory is read from /proc (VmRSS, VmHWM) of the one lighttpd backend.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

enum { MEBIBYTE = 1024 * 1024 };

/* Drops the INSERT-time checks, as a database edited by hand or made by an older schema. */
static void
drop_checks(void)
{
    publish_ok(&test_env, "DROP TRIGGER IF EXISTS events_check_insert;\n"
               "DROP TRIGGER IF EXISTS events_check_bounds;\n");
}

/* The backend's settings for a memory test: under `make sanitize`, ASan's quarantine of
 * freed blocks (256 MB by default) would read as growth, so it is turned off. The tests
 * read their streams one after another at the test client's pace (about 5 MB/s), so a
 * stream waits its turn longer than SSE_SLOW_CLIENT_S's 30 s would allow it. */
static const char *const *
memory_settings(const char *threads)
{
    static const char *settings[10];
    size_t n = 0;
    settings[n++] = "SSE_THREADS";
    settings[n++] = threads;
    settings[n++] = "SSE_SLOW_CLIENT_S";
    settings[n++] = "600";
    if (getenv("SSE_SANITIZED") != NULL) {
        settings[n++] = "ASAN_OPTIONS";
        settings[n++] = "quarantine_size_mb=0:thread_local_quarantine_size_kb=0";
    }
    settings[n] = NULL;
    return settings;
}

/* How much more than the plain build a sanitized one may take: ASan's shadow memory (one
 * byte per eight) and redzones around every block. */
static long
memory_slack(void)
{
    return getenv("SSE_SANITIZED") != NULL ? 2 : 1;
}

/* The `data` of the next event, which must have id `id`; its length goes to *len. */
static void
expect_event_data_len(struct sse_client *c, long long id, size_t *len)
{
    struct sse_frame f;
    sse_client_expect_event(c, &f, 20000);
    frames_expect_wellformed(&f);
    long long got = sse_frame_id(&f);
    cJSON *json = sse_frame_json(&f);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
    *len = cJSON_IsString(data) ? strlen(data->valuestring) : 0;
    cJSON_Delete(json);
    sse_frame_release(&f);
    DIAG_CHECK(got == id, "event id %lld, expected %lld", got, id);
}

/* SQL for n rows of session s1 in one transaction, each data a JSON string of bytes 'a'. */
static void
publish_big_rows(int n, int bytes)
{
    publish_okf(&test_env, "BEGIN;\nINSERT INTO events(session_id, type, data) SELECT 's1', "
                "'llm_text_delta', '\"' || replace(hex(zeroblob(%d)), '0', 'a') || '\"' FROM "
                "(WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < %d) "
                "SELECT i FROM k);\nCOMMIT;\n", bytes / 2, n);
}

/* One transaction larger than the hub's memory (HUB_RING_BYTES, 16 MiB): two 10 MiB rows,
 * then twenty of 1 MiB. Every row arrives whole, the backend lives on. */
START_TEST(test_read_larger_than_hub_memory)
{
    server_start(&test_srv, &test_env, NULL);
    drop_checks();
    pid_t backend = server_find_backend(&test_srv, 2000);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    publish_big_rows(2, 10 * MEBIBYTE);
    size_t len = 0;
    for (long long id = 1; id <= 2; id++) {
        expect_event_data_len(&c, id, &len);
        DIAG_CHECK(len == 10 * MEBIBYTE, "id %lld: data of %zu bytes", id, len);
    }
    publish_big_rows(20, MEBIBYTE);
    for (long long id = 3; id <= 22; id++) {
        expect_event_data_len(&c, id, &len);
        DIAG_CHECK(len == MEBIBYTE, "id %lld: data of %zu bytes", id, len);
    }
    sse_client_close(&c);
    DIAG_CHECK(server_find_backend(&test_srv, 0) == backend, "the backend %ld died",
               (long)backend);
}
END_TEST

/* Expects the stream to end because its database is no longer the one it read. */
static void
expect_database_gone(struct sse_client *c)
{
    sse_client_expect_end(c, 5000);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1",
                        "reason=error:database_gone", 3000);
}

/* `sqlite3 events.db ".restore backup.db"` (README's restore) puts back ids 1..100 of
 * 300 in the same file: open streams end; a client that saw 300 is told of the gap and
 * gets the rows published afterwards, although their ids (101..) are below 300. */
START_TEST(test_restore_of_older_copy)
{
    char backup[TESTENV_PATH_MAX];
    testenv_path(&test_env, "backup.db", backup, sizeof(backup));
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 100);
    publish_okf(&test_env, ".backup '%s'\n", backup);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 200);
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    const char *const seen_all[] = {"Last-Event-ID: 300", NULL};
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", seen_all);
    publish_okf(&test_env, ".restore '%s'\n", backup);
    frames_expect_gap(&c, 300, 101, 5000);  /* then "id: 100": its Last-Event-ID */
    expect_database_gone(&c);
    DIAG_CHECK(strstr(c.body, "\nid: 100\n\n") != NULL, "no id: 100 before the end:\n%s",
               c.body);
    sse_client_close(&c);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 5);  /* 101..105 */
    frames_resume(&c, test_srv.port, "/api/sessions/s1/events", 100, 10000);
    frames_expect_ids(&c, (const long long[]){101, 102, 103, 104, 105}, 5, 5000);
    sse_client_close(&c);
    /* A client that was away: its cursor is past the newest id, so the gap is named and it
     * resumes after the newest row */
    frames_resume(&c, test_srv.port, "/api/sessions/s1/events", 300, 10000);
    frames_expect_gap(&c, 300, 106, 5000);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 1);
    frames_expect_ids(&c, (const long long[]){106}, 1, 5000);
    sse_client_close(&c);
}
END_TEST

/* The file is truncated, then another database is moved in its place: the stream ends,
 * and never sends the other file's rows as if they continued its own. */
START_TEST(test_truncated_then_replaced)
{
    struct testenv other = test_env;
    testenv_path(&test_env, "other.db", other.db_path, sizeof(other.db_path));
    publish_okf(&other, ".read '%s'\nINSERT INTO sessions(id) VALUES ('s1');\n",
                testenv_require("SSE_SCHEMA"));
    publish_events(&other, "s1", "llm_text_delta", NULL, 301);
    publish_ok(&other, "PRAGMA wal_checkpoint(TRUNCATE);\n");
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 100);
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    const char *const seen_most[] = {"Last-Event-ID: 99", NULL};
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", seen_most);
    frames_expect_ids(&c, (const long long[]){100}, 1, 5000);  /* live, from the hub */
    DIAG_CHECK(truncate(test_env.db_path, 0) == 0, "truncate %s", test_env.db_path);
    /* The scenario, not a wait for an outcome: an admin moves the file in a while later,
     * after the watcher (every SSE_POLL_MS, 250 ms) has found the truncated one unreadable */
    for (int64_t until = testenv_now_ms() + 1000; testenv_now_ms() < until;)
        testenv_poll_step();
    DIAG_CHECK(rename(other.db_path, test_env.db_path) == 0, "rename %s", other.db_path);
    /* Which the watcher sees first is a race: the broken file (a read fails) or the new
     * inode. Either way the stream ends, and nothing of the other file is sent. */
    sse_client_expect_end(&c, 5000);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", "reason=error:", 3000);
    DIAG_CHECK(strstr(c.body, "id: 101") == NULL, "the stream sent the other file's rows:\n%s",
               c.body);
    sse_client_close(&c);
}
END_TEST

/* 600 rows with a 1 MiB timestamp nobody streams: the hub's memory counts every byte of a
 * row, so the backend stays within its bound (it went from 5 MB to 638 MB). */
START_TEST(test_memory_counts_every_column)
{
    server_start(&test_srv, &test_env, &(struct server_options){.env = memory_settings("4")});
    drop_checks();
    publish_ok(&test_env, "INSERT INTO sessions(id) VALUES ('s2');\n");
    pid_t backend = server_find_backend(&test_srv, 2000);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s2/events", NULL);
    for (int round = 0; round < 6; round++)
        publish_okf(&test_env, "INSERT INTO events(session_id, type, timestamp) SELECT 's1', "
                    "'llm_text_delta', hex(zeroblob(%d)) FROM (WITH RECURSIVE k(i) AS (SELECT "
                    "1 UNION ALL SELECT i + 1 FROM k WHERE i < 100) SELECT i FROM k);\n",
                    MEBIBYTE / 2);
    publish_events(&test_env, "s2", "llm_text_delta", NULL, 1);  /* 601: read after them */
    frames_expect_ids(&c, (const long long[]){601}, 1, 20000);
    long rss_kib = testenv_proc_status_kib(backend, "VmRSS:");
    fprintf(stderr, "hub memory: 600 MiB of timestamps read, backend VmRSS %ld KiB\n", rss_kib);
    DIAG_CHECK(rss_kib > 0 && rss_kib < 96 * 1024 * memory_slack(), "backend VmRSS %ld KiB "
               "after 600 rows of 1 MiB timestamps (bound: ring 16 MiB + one read 4 MiB + one "
               "row)", rss_kib);
    sse_client_close(&c);
}
END_TEST

/* Issue 12: the first request that joins the host's hub, in a process alone on the host,
 * already reports it as the leader (it said "follower" with leader pid 0 while its link
 * thread had not yet taken the lock). */
START_TEST(test_first_health_knows_its_role)
{
    server_start(&test_srv, &test_env, NULL);
    pid_t backend = server_find_backend(&test_srv, 2000);
    cJSON *health = sse_client_get_json(test_srv.port, "/api/health", NULL);
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(health, "hub_role");
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(health, "hub_leader_pid");
    char *text = cJSON_PrintUnformatted(health);
    DIAG_CHECK(cJSON_IsString(role) && strcmp(role->valuestring, "leader") == 0
               && cJSON_IsNumber(pid) && (pid_t)pid->valuedouble == backend,
               "first health of backend %ld: %s", (long)backend, text);
    free(text);
    cJSON_Delete(health);
}
END_TEST

enum { FANOUT_STREAMS = 8, FANOUT_ROW_MIB = 30 };

/* One 30 MiB row to 8 streams: the frame is built once and shared (it peaked at 1.0 GB
 * when every stream framed it on its own). */
START_TEST(test_big_row_framed_once)
{
    drop_checks();
    server_start(&test_srv, &test_env, &(struct server_options){.env = memory_settings("8")});
    pid_t backend = server_find_backend(&test_srv, 2000);
    struct sse_client c[FANOUT_STREAMS];
    for (int i = 0; i < FANOUT_STREAMS; i++)
        frames_open_stream(&c[i], test_srv.port, "/api/sessions/s1/events", NULL);
    long before_kib = testenv_proc_status_kib(backend, "VmHWM:");
    publish_big_rows(1, FANOUT_ROW_MIB * MEBIBYTE);
    size_t len = 0;
    for (int i = 0; i < FANOUT_STREAMS; i++) {
        expect_event_data_len(&c[i], 1, &len);
        DIAG_CHECK(len == (size_t)FANOUT_ROW_MIB * MEBIBYTE, "stream %d: data of %zu bytes", i,
                   len);
        sse_client_close(&c[i]);
    }
    long peak_kib = testenv_proc_status_kib(backend, "VmHWM:");
    fprintf(stderr, "hub memory: a %d MiB row to %d streams, backend peak %ld KiB (before "
            "it: %ld KiB)\n", FANOUT_ROW_MIB, FANOUT_STREAMS, peak_kib, before_kib);
    DIAG_CHECK(peak_kib > 0
               && peak_kib - before_kib < 8L * FANOUT_ROW_MIB * 1024 * memory_slack(),
               "backend peak grew by %ld KiB for one %d MiB row to %d streams", peak_kib
               - before_kib, FANOUT_ROW_MIB, FANOUT_STREAMS);
}
END_TEST

/* Session and stream ids that only a hand-edited file holds: "s1" NUL "x", and "s1" or
 * "worker:w1" as a BLOB. Like SQL's =, live delivery matches none of them to s1 or w1:
 * live and replay agree. */
START_TEST(test_hand_edited_keys_live_and_replay)
{
    server_start(&test_srv, &test_env, NULL);
    drop_checks();
    struct sse_client session, worker;
    frames_open_stream(&session, test_srv.port, "/api/sessions/s1/events", NULL);
    frames_open_stream(&worker, test_srv.port, "/api/workers/w1/events", NULL);
    publish_ok(&test_env,
               "INSERT INTO events(session_id, type) VALUES ('s1', 'llm_text_delta');\n"
               "INSERT INTO events(session_id, type) VALUES (CAST('s1' || char(0) || 'x' AS "
               "TEXT), 'llm_text_delta');\n"
               "INSERT INTO events(session_id, type) VALUES (x'7331', 'llm_text_delta');\n"
               "INSERT INTO events(session_id, type, stream_id) VALUES (NULL, "
               "'llm_text_delta', x'776f726b65723a7731');\n"
               "INSERT INTO events(session_id, type, stream_id) VALUES ('s1', "
               "'llm_text_delta', 'worker:w1');\n");
    frames_expect_ids(&session, (const long long[]){1}, 1, 5000);
    frames_expect_ids(&worker, (const long long[]){5}, 1, 5000);
    sse_client_close(&session);
    sse_client_close(&worker);
    frames_resume(&session, test_srv.port, "/api/sessions/s1/events?watch=*", 0, 5000);
    frames_expect_ids(&session, (const long long[]){1, 5}, 2, 5000);
    sse_client_close(&session);
}
END_TEST

/* A value over 64 MiB (never read into memory: the row is a stub) and, on a named stream,
 * a type whose event: line cannot fit the output buffer: both skipped with a log line,
 * the rows after them delivered. */
START_TEST(test_oversized_rows_skipped)
{
    server_start(&test_srv, &test_env, NULL);
    drop_checks();
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events?types=*&named=1", NULL);
    publish_okf(&test_env, "INSERT INTO events(session_id, type) VALUES ('s1', 'a');\n"
                "INSERT INTO events(session_id, type, data) VALUES ('s1', 'b', '\"' || "
                "hex(zeroblob(%d)) || '\"');\n"
                "INSERT INTO events(session_id, type) VALUES ('s1', hex(zeroblob(%d)));\n"
                "INSERT INTO events(session_id, type) VALUES ('s1', 'd');\n",
                33 * MEBIBYTE, 100 * 1024);
    frames_expect_ids(&c, (const long long[]){1, 4}, 2, 20000);
    logwait_expect_line(test_srv.sse_log, "sse warning event too large", "id=2", 2000);
    logwait_expect_line(test_srv.sse_log, "sse warning event too large", "id=3", 2000);
    sse_client_close(&c);
}
END_TEST

Suite *suite_hub(void);

Suite *
suite_hub(void)
{
    Suite *s = suite_create("hub");
    TCase *tc = server_tcase_create("hub");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_read_larger_than_hub_memory);
    tcase_add_test(tc, test_restore_of_older_copy);
    tcase_add_test(tc, test_truncated_then_replaced);
    tcase_add_test(tc, test_memory_counts_every_column);
    tcase_add_test(tc, test_big_row_framed_once);
    tcase_add_test(tc, test_hand_edited_keys_live_and_replay);
    tcase_add_test(tc, test_oversized_rows_skipped);
    tcase_add_test(tc, test_first_health_knows_its_role);
    suite_add_tcase(s, tc);
    return s;
}
