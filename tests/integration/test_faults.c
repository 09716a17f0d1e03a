/*
 * test_faults.c - faults that must lose nothing and duplicate nothing (issue 5).
 *
 * Real processes, real files: the responder SIGKILLed mid-stream (what a web server does to
 * a busy fcgid process), a producer SIGKILLed inside a multi-row transaction, checkpoint,
 * VACUUM and a pruning DELETE while streams run, a writer that locks the database
 * exclusively for 5 s. Each test reads ids and compares them with the exact list expected.
 */
#include <check.h>
#include <errno.h>
#include <signal.h>
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

/* A statement that runs until killed (it would take hours), keeping its transaction open. */
#define BURN_SQL "SELECT count(*) FROM (WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL " \
                 "SELECT i + 1 FROM k WHERE i < 100000000000) SELECT i FROM k);\n"

/* Resumes session s1 after last_id, as EventSource would (frames_resume). */
static void
reconnect(struct sse_client *c, long long last_id, int timeout_ms)
{
    frames_resume(c, test_srv.port, "/api/sessions/s1/events", last_id, timeout_ms);
}

/* The CPU time (ticks) pid has used, from /proc/<pid>/stat; -1 when it is gone. */
static long
cpu_ticks(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if (testenv_read_file(path, line, sizeof(line)) <= 0)
        return -1;
    const char *p = strrchr(line, ')');
    long utime = 0, stime = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %ld %ld",
                            &utime, &stime) != 2)
        return -1;
    return utime + stime;
}

/* Waits until the producer pid is past its INSERTs and inside BURN_SQL: it has used
 * 100 ms of CPU (the INSERTs take well under that). */
static void
wait_until_burning(pid_t pid)
{
    int64_t deadline = testenv_now_ms() + 10000;
    while (cpu_ticks(pid) >= 0 && cpu_ticks(pid) < 10 && testenv_now_ms() < deadline)
        testenv_poll_step();
    if (cpu_ticks(pid) >= 10)
        return;
    struct publish_result r;
    int status = publish_wait(&test_env, pid, 100, &r);
    DIAG_CHECK(false, "the producer never got to its long statement (exit %d): %s", status,
               r.err);
}

/* Starts the server, opens a stream on s1 and has ids 1..n published and received. */
static void
start_streaming(struct sse_client *c, int n)
{
    static const long long IDS[] = {1, 2, 3, 4, 5};
    server_start(&test_srv, &test_env, NULL);
    frames_open_stream(c, test_srv.port, "/api/sessions/s1/events", NULL);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, n);
    frames_expect_ids(c, IDS, (size_t)n, 5000);
}

/* The web server SIGKILLs a busy process: the stream dies without a last word; the client
 * reconnects with Last-Event-ID and gets every later event exactly once. */
START_TEST(test_responder_sigkill_then_exact_resume)
{
    struct sse_client c;
    start_streaming(&c, 5);
    pid_t backend = server_find_backend(&test_srv, 2000);
    DIAG_CHECK(backend > 0 && kill(backend, SIGKILL) == 0, "cannot SIGKILL the backend");
    sse_client_expect_end(&c, 5000);
    sse_client_close(&c);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 5);  /* 6..10 while it is dead */
    reconnect(&c, 5, 10000);  /* lighttpd starts a new backend */
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);  /* 11, 12 live */
    frames_expect_ids(&c, (const long long[]){6, 7, 8, 9, 10, 11, 12}, 7, 5000);
    sse_client_close(&c);
}
END_TEST

/* A producer killed inside a multi-row transaction: no stream ever shows its rows. The
 * next committed row is the next event, with the next id. */
START_TEST(test_killed_producer_rows_never_show)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    pid_t producer = publish_start(&test_env,
        "BEGIN;\n"
        "INSERT INTO events(session_id, type, data) VALUES ('s1', 'llm_text_delta', "
        "'{\"uncommitted\":1}'), ('s1', 'llm_text_delta', '{\"uncommitted\":2}');\n"
        BURN_SQL "COMMIT;\n");
    wait_until_burning(producer);
    DIAG_CHECK(kill(producer, SIGKILL) == 0, "cannot SIGKILL the producer");
    publish_wait(&test_env, producer, 5000, NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type, data) VALUES ('s1', "
               "'llm_text_delta', '{\"committed\":1}');\n");
    frames_expect_ids(&c, (const long long[]){1}, 1, 5000);
    DIAG_CHECK(strstr(c.body, "uncommitted") == NULL, "a killed transaction's row was sent");
    sse_client_close(&c);
}
END_TEST

enum { MAINTENANCE_ROUNDS = 30 };

/* Checkpoint (TRUNCATE), VACUUM and a pruning DELETE of rows already sent, between the
 * commits of a live stream: it goes on, in order, without gap or repeat. */
START_TEST(test_maintenance_while_streaming)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    static const char *const MAINTENANCE[] = {
        "PRAGMA wal_checkpoint(TRUNCATE);\n",
        "VACUUM;\n",
        "DELETE FROM events WHERE id <= (SELECT max(id) - 3 FROM events);\n",
    };
    long long expected[MAINTENANCE_ROUNDS * 2];
    for (int i = 0; i < MAINTENANCE_ROUNDS; i++) {
        publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);
        expected[2 * i] = 2 * i + 1;
        expected[2 * i + 1] = 2 * i + 2;
        frames_expect_ids(&c, expected + 2 * i, 2, 5000);
        publish_ok(&test_env, MAINTENANCE[i % 3]);
    }
    frames_expect_clean_body(&c);
    sse_client_close(&c);
}
END_TEST

/* A writer holds the exclusive (write) lock for 5 s, then dies: the stream stalls but keeps
 * sending keepalives; a producer queued behind the lock commits once the writer is gone,
 * and the stream catches up. (locking_mode=EXCLUSIVE, which would lock readers out too,
 * cannot even be had while a reader is connected: in WAL mode every open connection holds
 * a shared lock on the file, so that writer gets "database is locked".) */
START_TEST(test_exclusive_lock_stalls_then_catches_up)
{
    struct sse_client c;
    start_streaming(&c, 1);
    pid_t locker = publish_start(&test_env,
        "BEGIN EXCLUSIVE;\n"
        "INSERT INTO events(session_id, type, data) VALUES ('s1', 'llm_text_delta', "
        "'{\"uncommitted\":1}');\n" BURN_SQL "COMMIT;\n");
    wait_until_burning(locker);
    pid_t queued = publish_start(&test_env, ".timeout 20000\nINSERT INTO events(session_id, "
                                 "type) VALUES ('s1', 'execution_started');\n");
    int64_t start_ms = testenv_now_ms();
    int keepalives = 0;
    while (testenv_now_ms() - start_ms < 5000) {
        struct sse_frame f;
        sse_client_expect_block(&c, &f, 2500);  /* SSE_KEEPALIVE_S=1 */
        DIAG_CHECK(f.data == NULL, "an event arrived while the database was locked");
        keepalives += f.comment_lines > 0;
        sse_frame_release(&f);
    }
    DIAG_CHECK(keepalives >= 3, "%d keepalives in 5 s of lock", keepalives);
    DIAG_CHECK(kill(locker, SIGKILL) == 0, "cannot SIGKILL the locking writer");
    publish_wait(&test_env, locker, 5000, NULL);
    struct publish_result r;
    DIAG_CHECK(publish_wait(&test_env, queued, 20000, &r) == 0, "the queued producer failed: "
               "%s", r.err);
    frames_expect_ids(&c, (const long long[]){2}, 1, 5000);
    DIAG_CHECK(strstr(c.body, "uncommitted") == NULL, "the killed writer's row was sent");
    sse_client_close(&c);
}
END_TEST

/* The web server restarts while streams are open (an upgrade, a crash): the clients
 * resume on the same port, nothing lost, nothing twice. */
START_TEST(test_web_server_restart_then_resume)
{
    struct sse_client c;
    start_streaming(&c, 3);
    int port = test_srv.port;
    server_stop(&test_srv);
    sse_client_expect_end(&c, 3000);
    sse_client_close(&c);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);  /* 4, 5 while it is down */
    server_start(&test_srv, &test_env, &(struct server_options){.port = port});
    reconnect(&c, 3, 5000);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 1);  /* 6 */
    frames_expect_ids(&c, (const long long[]){4, 5, 6}, 3, 5000);
    sse_client_close(&c);
}
END_TEST

/* Waits up to timeout_ms until a new stream request gets want_status. */
static void
expect_stream_status(int want_status, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    int status = 0;
    for (;;) {
        struct sse_client c;
        const char *const curl[] = {"Accept: */*", NULL};  /* not EventSource: SPEC §4.12 */
        sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", curl);
        status = c.status;
        sse_client_close(&c);
        if (status == want_status || testenv_now_ms() >= deadline)
            break;
        testenv_poll_step();
    }
    DIAG_CHECK(status == want_status, "a new stream got %d, expected %d", status, want_status);
}

/* The database file is moved away: streams end with reason=error:database_gone, new ones
 * get 503 (EventSource: a soft refusal) while it is missing, and once it is back a client resumes where it was. */
START_TEST(test_database_removed_then_back)
{
    struct sse_client c;
    start_streaming(&c, 3);
    testenv_move_database(&test_env, "", ".away");
    sse_client_expect_end(&c, 3000);
    sse_client_close(&c);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1",
                        "reason=error:database_gone", 2000);
    expect_stream_status(503, 3000);
    logwait_expect_line(test_srv.sse_log, "status=503", "database missing", 2000);
    const char *const resuming[] = {"Last-Event-ID: 3", NULL};
    sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", resuming);
    frames_expect_refusal(&c, "database missing", 3);  /* EventSource comes back later */
    sse_client_close(&c);
    testenv_move_database(&test_env, ".away", "");
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);  /* 4, 5 */
    reconnect(&c, 3, 5000);
    frames_expect_ids(&c, (const long long[]){4, 5}, 2, 5000);
    sse_client_close(&c);
}
END_TEST

/* The database is replaced by another file (a restored copy: new inode, same rows and
 * more): streams end, and a client resumes from the new file without gap or repeat. */
START_TEST(test_database_replaced_by_new_file)
{
    struct sse_client c;
    start_streaming(&c, 3);
    char copy[TESTENV_PATH_MAX];
    testenv_path(&test_env, "restored.db", copy, sizeof(copy));
    publish_okf(&test_env, "VACUUM INTO '%s';\n", copy);  /* a copy: a new inode */
    struct testenv restored = test_env;
    snprintf(restored.db_path, sizeof(restored.db_path), "%s", copy);
    publish_events(&restored, "s1", "llm_text_delta", NULL, 2);  /* 4, 5 in the new file */
    publish_ok(&restored, "PRAGMA wal_checkpoint(TRUNCATE);\n");
    /* The old -wal and -shm go first: SQLite would apply the old WAL to the new file
     * ("database disk image is malformed"; README, Reliability). */
    const char *const stale[] = {"events.db-wal", "events.db-shm", "restored.db-wal",
                                 "restored.db-shm"};
    for (int i = 0; i < 4; i++) {
        char path[TESTENV_PATH_MAX];
        unlink(testenv_path(&test_env, stale[i], path, sizeof(path)));
    }
    DIAG_CHECK(rename(copy, test_env.db_path) == 0, "rename: %s", strerror(errno));
    sse_client_expect_end(&c, 3000);
    sse_client_close(&c);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1",
                        "reason=error:database_gone", 2000);
    reconnect(&c, 3, 5000);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 1);  /* 6, live */
    frames_expect_ids(&c, (const long long[]){4, 5, 6}, 3, 5000);
    sse_client_close(&c);
}
END_TEST

Suite *suite_faults(void);

Suite *
suite_faults(void)
{
    Suite *s = suite_create("faults");
    TCase *tc = server_tcase_create("faults");
    tcase_set_timeout(tc, 40);
    tcase_add_test(tc, test_responder_sigkill_then_exact_resume);
    tcase_add_test(tc, test_killed_producer_rows_never_show);
    tcase_add_test(tc, test_maintenance_while_streaming);
    tcase_add_test(tc, test_exclusive_lock_stalls_then_catches_up);
    tcase_add_test(tc, test_web_server_restart_then_resume);
    tcase_add_test(tc, test_database_removed_then_back);
    tcase_add_test(tc, test_database_replaced_by_new_file);
    suite_add_tcase(s, tc);
    return s;
}
