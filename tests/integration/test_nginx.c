/*
 * test_nginx.c - what nginx itself does when something goes wrong (issue 15).
 *
 * The FRONT_SUITE copies (_nginx) check that a stream behind nginx is the stream behind
 * the other front ends, and external_nginx (test_external.c) what nginx answers while its
 * standalone backend restarts. This suite measures the rest of what only nginx decides,
 * with the shipped deploy/nginx/sse-fcgi.conf (tests/lib/server.h):
 * - a client that stops reading and then leaves while nginx holds bytes for it: nginx
 *   closes the backend's connection and the stream ends with reason=client_disconnected;
 * - nginx reloaded (SIGHUP to the master, what `nginx -s reload` sends) with streams open:
 *   the old worker keeps serving them, live, until they end, unless worker_shutdown_timeout
 *   closes them; then the clients resume with Last-Event-ID on the new worker, exactly.
 * The figures are printed (README "nginx").
 */
#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

enum {
    NGINX_WORKERS_MAX = 8,
    NGINX_SHUTDOWN_MS = 1000,       /* worker_shutdown_timeout in the reload test */
};

static const char STREAM_PATH[] = "/api/sessions/s1/events";

/* 8 MiB: more than nginx's socket to the client (up to 4 MiB, tcp_wmem) and the backend's
 * socket to nginx hold together. */
enum { STALL_ROWS = 1000, STALL_ROW_BYTES = 8192 };

/* A client stops reading (a 4 KiB receive buffer), the rows pile up in nginx's socket to
 * it and in the backend's socket to nginx, then the client closes with bytes unread: nginx
 * closes the backend's connection and the stream ends with reason=client_disconnected,
 * within a second. */
START_TEST(test_client_leaves_while_nginx_holds_bytes)
{
    server_start(&test_srv, &test_env, NULL);
    int stalled = sse_client_send_get(test_srv.port, STREAM_PATH, 4096);
    logwait_expect_line(test_srv.sse_log, "sse connected session=s1", NULL, 2000);
    publish_okf(&test_env, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
                "WHERE i < %d)\nINSERT INTO events(session_id, type, data) SELECT 's1', "
                "'llm_text_delta', json_object('pad', hex(zeroblob(%d))) FROM k;\n",
                STALL_ROWS, STALL_ROW_BYTES / 2);
    struct sse_client reader;  /* reads them all, so they were sent as far as they could go */
    frames_open_stream(&reader, test_srv.port, "/api/sessions/s1/events?last_event_id=0",
                       NULL);
    static long long ids[STALL_ROWS + 1];
    size_t n = frames_read_until(&reader, STALL_ROWS, ids, STALL_ROWS + 1, 15000);
    DIAG_CHECK(n == STALL_ROWS, "the reading client got %zu of %d events", n, STALL_ROWS);
    int64_t closed_ms = testenv_now_ms();
    close(stalled);
    int64_t waited_ms = logwait_for_line(test_srv.sse_log, "sse disconnected session=s1",
                                         "reason=client_disconnected", 3000);
    DIAG_CHECK(waited_ms >= 0, "no 'reason=client_disconnected' within 3 s of close()");
    int64_t gone_ms = testenv_now_ms() - closed_ms;
    DIAG_CHECK(logwait_count_lines(test_srv.sse_log, "sse disconnected session=s1",
                                   "events_sent=1000 ") == 0,
               "the stalled stream sent every event: it never stalled, the test proves nothing");
    fprintf(stderr, "a stalled client left: its stream ended %lld ms after close()\n",
            (long long)gone_ms);
    DIAG_CHECK(gone_ms <= 1000, "the stream ended %lld ms after its client left, over 1 s",
               (long long)gone_ms);
    sse_client_close(&reader);
}
END_TEST

/* nginx's workers: the master's children. Returns how many, the first cap into pids. */
static size_t
list_workers(pid_t *pids, size_t cap)
{
    return (size_t)testenv_signal_children(test_srv.pid, 0, pids, cap);
}

/* The one worker nginx runs now; fails unless there is exactly one. */
static pid_t
only_worker(void)
{
    pid_t pids[NGINX_WORKERS_MAX];
    size_t n = list_workers(pids, NGINX_WORKERS_MAX);
    DIAG_CHECK(n == 1, "nginx runs %zu workers, expected 1", n);
    return pids[0];
}

/* Reloads nginx (SIGHUP to the master, what `nginx -s reload` sends) and waits until a
 * worker other than old runs and old has stopped accepting: it logs "gracefully shutting
 * down" and closes its listening sockets in the same step, so a connection made after
 * that line reaches the new worker only. */
static void
reload(pid_t old)
{
    char old_tag[32];
    snprintf(old_tag, sizeof(old_tag), "%ld#", (long)old);
    server_signal(&test_srv, SIGHUP);
    int64_t deadline = testenv_now_ms() + 5000;
    bool has_new = false;
    while (!has_new) {
        pid_t pids[NGINX_WORKERS_MAX];
        size_t n = list_workers(pids, NGINX_WORKERS_MAX);
        for (size_t i = 0; i < n; i++)
            has_new = has_new || pids[i] != old;
        DIAG_CHECK(has_new || testenv_now_ms() < deadline, "no new nginx worker 5 s after "
                   "SIGHUP");
        if (!has_new)
            testenv_poll_step();
    }
    logwait_expect_line(test_srv.error_log, old_tag, "gracefully shutting down",
                        (int)(deadline - testenv_now_ms()));
}

/* Polls up to timeout_ms for pid to be gone. Returns the ms it took, or -1. */
static int64_t
wait_gone(pid_t pid, int timeout_ms)
{
    int64_t start_ms = testenv_now_ms();
    while (!server_is_pid_gone(pid)) {
        if (testenv_now_ms() - start_ms >= timeout_ms)
            return -1;
        testenv_poll_step();
    }
    return testenv_now_ms() - start_ms;
}

/* Reads two keepalives (SSE_KEEPALIVE_S=1) from c: two seconds of life, measured by the
 * stream itself. */
static void
expect_two_keepalives(struct sse_client *c)
{
    for (int i = 0; i < 2; i++) {
        struct sse_frame f;
        sse_client_expect_block(c, &f, 3000);
        bool is_keepalive = f.data == NULL && strcmp(f.comment, "keepalive") == 0;
        sse_frame_release(&f);
        DIAG_CHECK(is_keepalive, "block %d after the reload is not a keepalive", i + 1);
    }
}

/* By default a reload leaves open streams alone: the old worker stops accepting, keeps
 * serving its streams, live, for as long as they last, and exits when the last one ends;
 * new streams go to the new worker. */
START_TEST(test_reload_keeps_open_streams)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client old_stream, new_stream;
    frames_open_stream(&old_stream, test_srv.port, STREAM_PATH, NULL);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 1);
    frames_expect_ids(&old_stream, (const long long[]){1}, 1, 5000);
    pid_t old_worker = only_worker();
    int64_t reload_ms = testenv_now_ms();
    reload(old_worker);
    frames_open_stream(&new_stream, test_srv.port, STREAM_PATH, NULL);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 1);
    frames_expect_ids(&old_stream, (const long long[]){2}, 1, 5000);
    frames_expect_ids(&new_stream, (const long long[]){2}, 1, 5000);
    expect_two_keepalives(&old_stream);
    DIAG_CHECK(!server_is_pid_gone(old_worker), "the old worker left with a stream open");
    DIAG_CHECK(logwait_count_lines(test_srv.sse_log, "sse disconnected", NULL) == 0,
               "a stream ended at the reload");
    int64_t closed_ms = testenv_now_ms();
    sse_client_close(&old_stream);
    int64_t gone_ms = wait_gone(old_worker, 3000);
    DIAG_CHECK(gone_ms >= 0, "the old worker still runs 3 s after its last stream ended");
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1",
                        "reason=client_disconnected", 2000);
    fprintf(stderr, "reload: the open stream stayed on the old worker, live, until its client "
            "left %lld ms later; the old worker exited %lld ms after that\n",
            (long long)(closed_ms - reload_ms), (long long)gone_ms);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 1);
    frames_expect_ids(&new_stream, (const long long[]){3}, 1, 5000);
    sse_client_close(&new_stream);
}
END_TEST

/* With worker_shutdown_timeout the old worker closes its connections when it runs out: the
 * streams end at that time, with reason=client_disconnected, cut between events; the
 * clients resume with Last-Event-ID on the new worker and miss nothing, see nothing twice. */
START_TEST(test_reload_with_shutdown_timeout_then_resume)
{
    char main_lines[64];
    snprintf(main_lines, sizeof(main_lines), "worker_shutdown_timeout %dms;", NGINX_SHUTDOWN_MS);
    const struct server_options opt = {.nginx_main = main_lines};
    server_start(&test_srv, &test_env, &opt);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, STREAM_PATH, NULL);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);
    long long ids[16];
    size_t n = frames_read_until(&c, 2, ids, 16, 5000);
    pid_t old_worker = only_worker();
    int64_t reload_ms = testenv_now_ms();
    reload(old_worker);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 1);  /* 3: before or after */
    n = frames_read_to_end(&c, ids, n, 16, NGINX_SHUTDOWN_MS + 3000);
    int64_t cut_ms = testenv_now_ms() - reload_ms;
    sse_client_close(&c);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1",
                        "reason=client_disconnected", 2000);
    int64_t gone_ms = wait_gone(old_worker, 3000);
    DIAG_CHECK(gone_ms >= 0, "the old worker still runs 3 s after its streams were cut");
    DIAG_CHECK(cut_ms >= NGINX_SHUTDOWN_MS - 100 && cut_ms <= NGINX_SHUTDOWN_MS + 1500,
               "the stream was cut %lld ms after the reload, worker_shutdown_timeout %d ms",
               (long long)cut_ms, NGINX_SHUTDOWN_MS);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 1);  /* 4: while it is cut */
    long resumed_ms = frames_resume(&c, test_srv.port, STREAM_PATH, ids[n - 1], 5000);
    n += frames_read_until(&c, 4, ids + n, 16 - n, 5000);
    fprintf(stderr, "reload with worker_shutdown_timeout %d ms: the stream was cut %lld ms "
            "after the reload, resumed %ld ms later\n", NGINX_SHUTDOWN_MS, (long long)cut_ms,
            resumed_ms);
    frames_expect_one_to(ids, n, 4, "both connections");
    sse_client_close(&c);
}
END_TEST

Suite *suite_nginx(void);

Suite *
suite_nginx(void)
{
    Suite *s = suite_create("nginx");
    TCase *tc = server_tcase_create("nginx");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_client_leaves_while_nginx_holds_bytes);
    tcase_add_test(tc, test_reload_keeps_open_streams);
    tcase_add_test(tc, test_reload_with_shutdown_timeout_then_resume);
    suite_add_tcase(s, tc);
    return s;
}
