/*
 * test_live.c - live delivery and how streams end (SPEC §4.4, §4.9, §4.10, §4.11).
 *
 * A producer inserts 10,000 rows as fast as one sqlite3 CLI can (one transaction each)
 * while the client reads: every id must arrive once, in order. Then each way a stream ends:
 * the session is closed (and a reconnect gets 204), SSE_MAX_STREAM_S passes (and a resume
 * loses nothing), the client leaves (noticed within a second of close()), the backend gets
 * SIGTERM (streams end with reason=shutdown, it exits within a second), and lighttpd is
 * stopped with SIGTERM (everything ends and exits; behind nginx the streams end and the
 * standalone backend stays).
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdbool.h>
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

enum { PRODUCER_ROWS = 10000 };


/* PRODUCER_ROWS INSERT statements, each its own transaction. Owned by the caller (free). */
static char *
producer_sql(void)
{
    const char head[] = ".timeout 10000\nPRAGMA synchronous=NORMAL;\n";
    const char row[] = "INSERT INTO events(session_id, type, data) VALUES "
                       "('s1', 'client_output_delta', '{\"chunk\":\"0123456789\"}');\n";
    size_t size = sizeof(head) + (size_t)PRODUCER_ROWS * (sizeof(row) - 1);
    char *sql = malloc(size);
    DIAG_CHECK(sql != NULL, "out of memory");
    char *p = sql + sprintf(sql, "%s", head);
    for (int i = 0; i < PRODUCER_ROWS; i++)
        p += sprintf(p, "%s", row);
    return sql;
}

START_TEST(test_live_order_under_fast_producer)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    char *sql = producer_sql();
    pid_t producer = publish_start(&test_env, sql);
    free(sql);
    long long *ids = calloc(PRODUCER_ROWS + 64, sizeof(*ids));
    DIAG_CHECK(ids != NULL, "out of memory");
    size_t n = frames_read_until(&c, PRODUCER_ROWS, ids, PRODUCER_ROWS + 64, 10000);
    struct publish_result r;
    int status = publish_wait(&test_env, producer, 30000, &r);
    DIAG_CHECK(status == 0, "producer exited %d: %s", status, r.err);
    for (size_t i = 0; i < n; i++)
        DIAG_CHECK(ids[i] == (long long)i + 1, "event %zu has id %lld, expected %zu (of %zu)",
                   i, ids[i], i + 1, n);
    free(ids);
    DIAG_CHECK(n == PRODUCER_ROWS, "%zu events, expected %d", n, PRODUCER_ROWS);
    frames_expect_clean_body(&c);
    sse_client_close(&c);
}
END_TEST

enum { ONE_BY_ONE_ROUNDS = 20 };

/* The row carries the wall-clock time of its INSERT, in ms (julianday has ms precision). */
static const char INSERT_STAMPED_SQL[] =
    "INSERT INTO events(session_id, type, data) VALUES ('s1', 'llm_text_delta', "
    "json_object('t', (julianday('now') - 2440587.5) * 86400000.0));\n";

/* Issue 3: a front end that buffers (mod_fcgid's 64 KiB default, DEPLOY-NOTES §1) delivers
 * at the end or never; each event must arrive before the next one is inserted. The INSERT
 * stamps the commit time; the delay to the client is printed per front end. */
START_TEST(test_events_arrive_one_by_one)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    double delays[ONE_BY_ONE_ROUNDS];
    for (int i = 0; i < ONE_BY_ONE_ROUNDS; i++) {
        /* The CLI runs while the client waits, so the delay is the commit to the read. */
        pid_t producer = publish_start(&test_env, INSERT_STAMPED_SQL);
        struct sse_frame f = {0};
        int64_t deadline = testenv_now_ms() + 2000;
        while (f.data == NULL && testenv_now_ms() < deadline) {
            sse_frame_release(&f);
            sse_client_expect_block(&c, &f, (int)(deadline - testenv_now_ms()));
        }
        double arrived_ms = testenv_wall_ms();
        struct publish_result r;
        int status = publish_wait(&test_env, producer, 5000, &r);
        DIAG_CHECK(status == 0, "sqlite3 exited %d: %s", status, r.err);
        DIAG_CHECK(f.data != NULL && sse_frame_id(&f) == i + 1, "event %d did not arrive "
                   "within 2 s of its INSERT", i + 1);
        cJSON *event = cJSON_Parse(f.data);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(event, "data"), "t");
        DIAG_CHECK(cJSON_IsNumber(t), "event %d carries no commit time: %s", i + 1, f.data);
        delays[i] = arrived_ms - t->valuedouble;
        cJSON_Delete(event);
        sse_frame_release(&f);
    }
    qsort(delays, ONE_BY_ONE_ROUNDS, sizeof(delays[0]), testenv_compare_doubles);
    fprintf(stderr, "INSERT -> client, %d events one by one: p50 %.1f ms, max %.1f ms\n",
            ONE_BY_ONE_ROUNDS, delays[ONE_BY_ONE_ROUNDS / 2], delays[ONE_BY_ONE_ROUNDS - 1]);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_closed_session_ends_stream_then_204)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type) VALUES ('s1', 'llm_text_delta'),"
               " ('s1', 'execution_completed');\n"
               "UPDATE sessions SET closed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
               "WHERE id = 's1';\n");
    frames_expect_ids(&c, (const long long[]){1, 2}, 2, 5000);
    sse_client_expect_end(&c, 3000);
    sse_client_close(&c);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", "reason=session_closed",
                        2000);
    const char *const headers[] = {"Last-Event-ID: 2", NULL};
    sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", headers);
    DIAG_CHECK(c.status == 204, "reconnect after the last event of a closed session: status "
               "%d, expected 204", c.status);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_closed_session_with_events_left_streams_them)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, "INSERT INTO events(session_id, type) VALUES ('s1', 'llm_text_delta'),"
               " ('s1', 'llm_text_delta'), ('s1', 'llm_text_delta');\n"
               "UPDATE sessions SET closed_at = 'x' WHERE id = 's1';\n");
    const char *const headers[] = {"Last-Event-ID: 1", NULL};
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", headers);
    frames_expect_ids(&c, (const long long[]){2, 3}, 2, 5000);
    sse_client_expect_end(&c, 3000);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_max_stream_time_then_resume_loses_nothing)
{
    const char *const settings[] = {"SSE_MAX_STREAM_S", "2", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.env = settings});
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    int64_t start_ms = testenv_now_ms();
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 3);
    long long ids[32];
    size_t n = frames_read_until(&c, 3, ids, 32, 5000);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 3);  /* 4..6: before or after the end */
    n = frames_read_to_end(&c, ids, n, 32, 5000);
    int64_t lived_ms = testenv_now_ms() - start_ms;
    DIAG_CHECK(lived_ms >= 1500 && lived_ms <= 3500, "the stream lived %lld ms with "
               "SSE_MAX_STREAM_S=2", (long long)lived_ms);
    /* It ends after a whole event, a keepalive or a probe line ":\n" (§4.10). */
    bool is_whole = (c.body_len >= 2 && memcmp(c.body + c.body_len - 2, "\n\n", 2) == 0)
                    || (c.body_len >= 3 && memcmp(c.body + c.body_len - 3, "\n:\n", 3) == 0);
    DIAG_CHECK(is_whole, "the stream was cut mid-frame");
    sse_client_close(&c);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", "reason=max_stream_time",
                        2000);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);  /* 7, 8 */
    char header[64];
    snprintf(header, sizeof(header), "Last-Event-ID: %lld", n > 0 ? ids[n - 1] : 0);
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events",
                       (const char *const[]){header, NULL});
    n += frames_read_until(&c, 8, ids + n, 32 - n, 5000);
    frames_expect_one_to(ids, n, 8, "both connections");
    sse_client_close(&c);
}
END_TEST

/* The client leaves: the stream ends and its process is free for the next client. Under
 * mod_cgid, Apache SIGTERMs the CGI process once it notices, racing the responder's own
 * write error, so there the reason may be shutdown and "free" means the process is gone. */
START_TEST(test_client_disconnect_noticed)
{
    bool is_cgi = server_front_end == SERVER_APACHE_CGI;
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    logwait_expect_line(test_srv.sse_log, "sse connected session=s1", NULL, 2000);
    pid_t cgi = is_cgi ? server_find_backend(&test_srv, 2000) : -1;
    DIAG_CHECK(!is_cgi || cgi > 0, "no CGI process serves the stream");
    int64_t closed_ms = testenv_now_ms();
    sse_client_close(&c);
    const char *reason = is_cgi ? "reason=" : "reason=client_disconnected";
    int64_t waited_ms = logwait_for_line(test_srv.sse_log, "sse disconnected session=s1",
                                         reason, 3000);
    DIAG_CHECK(waited_ms >= 0, "no 'sse disconnected ... %s' line within 3 s of close()",
               reason);
    while (is_cgi && !server_is_pid_gone(cgi) && testenv_now_ms() - closed_ms < 3000)
        testenv_poll_step();
    DIAG_CHECK(!is_cgi || server_is_pid_gone(cgi), "the CGI process still runs 3 s after "
               "its client left");
    int64_t freed_ms = testenv_now_ms() - closed_ms;
    /* SPEC §4.10 says 0.1 s under lighttpd with tcp-fin-propagate, 1 s leaves room for a
     * loaded machine; nginx closes the backend's connection as soon as it sees the
     * client's FIN (fastcgi_ignore_client_abort off), the same limit. Apache tells the
     * responder nothing, the probe every SSE_PROBE_MS (500 ms) finds out within two writes
     * (the first one still succeeds), 1 s, with as much again for a loaded machine. The
     * times are printed. */
    int64_t limit_ms = server_front_end_is_apache(server_front_end) ? 2000 : 1000;
    DIAG_CHECK(freed_ms <= limit_ms, "the stream ended and its process was free %lld ms "
               "after close(), over %lld ms", (long long)freed_ms, (long long)limit_ms);
    fprintf(stderr, "client left: stream end logged after %lld ms, process free after %lld ms"
            "%s\n", (long long)waited_ms, (long long)freed_ms, is_cgi ? " (exited)" : "");
}
END_TEST

enum { BACKENDS_MAX = 8 };

/* Opens a session and a global stream and finds the processes serving them (one under
 * lighttpd and nginx, one per stream under Apache). Returns how many. */
static size_t
open_two_streams(struct sse_client *session, struct sse_client *global, pid_t *backends)
{
    frames_open_stream(session, test_srv.port, "/api/sessions/s1/events", NULL);
    frames_open_stream(global, test_srv.port, "/api/events/global", NULL);
    size_t n = 0, want = server_front_end_is_apache(server_front_end) ? 2 : 1;
    int64_t deadline = testenv_now_ms() + 2000;
    while ((n = server_list_backends(&test_srv, backends, BACKENDS_MAX)) < want
           && testenv_now_ms() < deadline)
        testenv_poll_step();
    DIAG_CHECK(n >= want, "%zu responder processes serve two streams, expected %zu", n, want);
    return n;
}

/* Polls until every pid is gone; fails after timeout_ms. Returns the ms since start_ms. */
static int64_t
expect_pids_gone(const pid_t *pids, size_t n, int64_t start_ms, int timeout_ms)
{
    size_t i = 0;
    while (i < n && testenv_now_ms() - start_ms < timeout_ms) {
        if (server_is_pid_gone(pids[i]))
            i++;
        else
            testenv_poll_step();
    }
    int64_t gone_ms = testenv_now_ms() - start_ms;
    DIAG_CHECK(i == n, "sse-fcgi pid %ld still runs %lld ms after SIGTERM", (long)pids[i],
               (long long)gone_ms);
    return gone_ms;
}

/* SPEC §4.11 as the web server recycling a process does it: SIGTERM to the backend. */
START_TEST(test_backend_sigterm_ends_streams_with_shutdown)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c, global;
    pid_t backends[BACKENDS_MAX];
    size_t n = open_two_streams(&c, &global, backends);
    int64_t start_ms = testenv_now_ms();
    for (size_t i = 0; i < n; i++)
        DIAG_CHECK(kill(backends[i], SIGTERM) == 0, "kill(%ld, SIGTERM) failed",
                   (long)backends[i]);
    sse_client_expect_end(&c, 3000);
    sse_client_expect_end(&global, 3000);
    int64_t gone_ms = expect_pids_gone(backends, n, start_ms, 3000);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", "reason=shutdown", 2000);
    logwait_expect_line(test_srv.sse_log, "sse disconnected channel=global", "reason=shutdown",
                        2000);
    DIAG_CHECK(gone_ms <= 1000, "sse-fcgi exited %lld ms after SIGTERM (SPEC: within 1 s)",
               (long long)gone_ms);
    sse_client_close(&c);
    sse_client_close(&global);
}
END_TEST

/* The web server stopping. lighttpd closes the backend's connections and SIGTERMs the
 * backend, in that order, microseconds apart; the responder still logs reason=shutdown for
 * a stream that saw the close first (stream.c waits 20 ms for the signal). Apache lets its
 * handlers finish (up to about 2.5 s) while it closes the client connections; mod_fcgid
 * then SIGTERMs its processes, and a CGI process finds its pipe closed: which reason each
 * stream logs depends on which comes first. Either way: the web server exits, every
 * stream ends, every responder process exits. nginx did not start its backend and does
 * not stop it: its SIGTERM (fast shutdown) closes every connection, the backend's too, so
 * there each stream ends with reason=client_disconnected and the backend stays up. */
START_TEST(test_web_server_sigterm_stops_streams_and_backend)
{
    bool is_lighttpd = server_front_end == SERVER_LIGHTTPD;
    bool is_nginx = server_front_end == SERVER_NGINX;
    const char *reason = is_lighttpd ? "reason=shutdown"
                         : is_nginx ? "reason=client_disconnected" : "reason=";
    int64_t gone_limit_ms = is_lighttpd ? 1500 : 5000;
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c, global;
    pid_t backends[BACKENDS_MAX];
    size_t n = open_two_streams(&c, &global, backends);
    int64_t start_ms = testenv_now_ms();
    server_signal(&test_srv, SIGTERM);
    DIAG_CHECK(server_wait_exit(&test_srv, 8000), "the web server still runs 8 s after SIGTERM");
    int64_t server_ms = testenv_now_ms() - start_ms;
    sse_client_expect_end(&c, 3000);
    sse_client_expect_end(&global, 3000);
    int64_t gone_ms = is_nginx ? 0 : expect_pids_gone(backends, n, start_ms,
                                                      (int)gone_limit_ms + 2000);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", reason, 2000);
    logwait_expect_line(test_srv.sse_log, "sse disconnected channel=global", reason, 2000);
    if (is_nginx) {
        DIAG_CHECK(!server_is_pid_gone(backends[0]), "the standalone backend exited with nginx");
        fprintf(stderr, "web server SIGTERM: nginx exited after %lld ms, both streams ended "
                "(client_disconnected), the backend still runs\n", (long long)server_ms);
        sse_client_close(&c);
        sse_client_close(&global);
        return;
    }
    int shutdown_lines = logwait_count_lines(test_srv.sse_log, "sse disconnected", "=shutdown");
    fprintf(stderr, "web server SIGTERM: it exited after %lld ms, the responders after %lld ms, "
            "%d of 2 streams logged reason=shutdown\n", (long long)server_ms,
            (long long)gone_ms, shutdown_lines);
    DIAG_CHECK(gone_ms <= gone_limit_ms, "sse-fcgi exited %lld ms after SIGTERM to the web "
               "server", (long long)gone_ms);
    sse_client_close(&c);
    sse_client_close(&global);
}
END_TEST

Suite *suite_live(void);

Suite *
suite_live(void)
{
    Suite *s = server_suite_create("live");
    TCase *tc = server_tcase_create("live");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_events_arrive_one_by_one);
    tcase_add_test(tc, test_closed_session_ends_stream_then_204);
    tcase_add_test(tc, test_closed_session_with_events_left_streams_them);
    tcase_add_test(tc, test_max_stream_time_then_resume_loses_nothing);
    tcase_add_test(tc, test_client_disconnect_noticed);
    tcase_add_test(tc, test_backend_sigterm_ends_streams_with_shutdown);
    tcase_add_test(tc, test_web_server_sigterm_stops_streams_and_backend);
    suite_add_tcase(s, tc);
    TCase *bulk = server_tcase_create("live_bulk");
    tcase_set_timeout(bulk, 60);
    tcase_add_test(bulk, test_live_order_under_fast_producer);
    suite_add_tcase(s, bulk);
    return s;
}
