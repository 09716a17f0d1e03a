/*
 * test_external.c - sse-fcgi as a standalone FastCGI server (issue 3: spawn-fcgi or a
 * systemd socket unit, for lighttpd/nginx setups with external backends).
 *
 * The responder runs under the real spawn-fcgi on a unix socket, lighttpd connects to it
 * without bin-path (tests/conf/lighttpd-external.conf.in, as deploy/lighttpd/
 * sse-fcgi-external.conf). One process serves several streams at once; restarting the
 * backend (systemctl restart does SIGTERM, then starts it again) ends the streams with
 * reason=shutdown, lighttpd answers 503 while it is down, and the clients resume with
 * Last-Event-ID without loss.
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

static const struct server_options EXTERNAL = {.is_external_backend = true};

START_TEST(test_external_backend_streams)
{
    server_start(&test_srv, &test_env, &EXTERNAL);
    publish_ok(&test_env, "INSERT INTO sessions(id) VALUES ('s2');\n");
    struct sse_client one, two;
    frames_open_stream(&one, test_srv.port, "/api/sessions/s1/events", NULL);
    frames_open_stream(&two, test_srv.port, "/api/sessions/s2/events", NULL);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);
    publish_events(&test_env, "s2", "llm_text_delta", NULL, 1);
    frames_expect_ids(&one, (const long long[]){1, 2}, 2, 5000);
    frames_expect_ids(&two, (const long long[]){3}, 1, 5000);
    pid_t pids[4];
    DIAG_CHECK(server_list_backends(&test_srv, pids, 4) == 1 && pids[0] == test_srv.backend_pid,
               "the streams are not served by the one spawn-fcgi process");
    logwait_expect_line(test_srv.sse_log, "sse started", "mode=fastcgi", 1000);
    sse_client_close(&one);
    sse_client_close(&two);
}
END_TEST

START_TEST(test_backend_restart_then_resume)
{
    server_start(&test_srv, &test_env, &EXTERNAL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);
    frames_expect_ids(&c, (const long long[]){1, 2}, 2, 5000);
    int64_t stop_ms = server_stop_backend(&test_srv);
    sse_client_expect_end(&c, 3000);
    sse_client_close(&c);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", "reason=shutdown", 2000);
    DIAG_CHECK(stop_ms <= 1000, "the backend exited %lld ms after SIGTERM (SPEC: within 1 s)",
               (long long)stop_ms);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 2);  /* 3, 4 while it is down */
    sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", NULL);
    DIAG_CHECK(c.status == 503, "with the backend down lighttpd answered %d, expected 503",
               c.status);
    sse_client_close(&c);
    server_start_backend(&test_srv, &test_env, &EXTERNAL);
    /* lighttpd keeps a backend that refused a connection disabled for its disable-time
     * (1 s); the client retries as EventSource does, until it is served. */
    long waited_ms = frames_resume(&c, test_srv.port, "/api/sessions/s1/events", 2, 5000);
    fprintf(stderr, "backend restarted: served again after %ld ms\n", waited_ms);
    frames_expect_ids(&c, (const long long[]){3, 4}, 2, 5000);
    sse_client_close(&c);
}
END_TEST

Suite *suite_external(void);

Suite *
suite_external(void)
{
    Suite *s = suite_create("external");
    TCase *tc = server_tcase_create("external");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_external_backend_streams);
    tcase_add_test(tc, test_backend_restart_then_resume);
    suite_add_tcase(s, tc);
    return s;
}
