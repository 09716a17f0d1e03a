/*
 * test_external.c - sse-fcgi as a standalone FastCGI server (issue 3: spawn-fcgi or a
 * systemd socket unit, for lighttpd/nginx setups with external backends).
 *
 * The responder runs under the real spawn-fcgi on a unix socket, lighttpd connects to it
 * without bin-path (tests/conf/lighttpd-external.conf.in, as deploy/lighttpd/
 * sse-fcgi-external.conf). One process serves several streams at once. Restarting the
 * backend (SIGTERM, then a new one) ends the streams with reason=shutdown and the clients
 * resume with Last-Event-ID without loss. Under spawn-fcgi the socket goes with the
 * process and lighttpd answers 503 meanwhile; on a socket held across the restart, as the
 * systemd socket unit holds it, lighttpd answers nothing but 200: a request made meanwhile
 * waits and is then served.
 */
#include <check.h>
#include <poll.h>
#include <stdio.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

static const struct server_options EXTERNAL = {.is_external_backend = true};
static const struct server_options EXTERNAL_HELD = {.is_external_backend = true,
                                                    .is_socket_held = true};

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

/* Starts lighttpd with opt, opens a stream, sees ids 1 and 2, then stops the backend
 * (SIGTERM, as systemctl stop does), checks that the stream ended with reason=shutdown
 * within the SPEC's second, and publishes 3 and 4 while no backend runs. */
static void
stream_then_stop_backend(const struct server_options *opt)
{
    server_start(&test_srv, &test_env, opt);
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
}

START_TEST(test_backend_restart_then_resume)
{
    stream_then_stop_backend(&EXTERNAL);
    struct sse_client c;
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

/* With the socket held across the restart (the systemd socket unit), no request ever fails
 * to connect: one made while no backend runs waits in the socket's backlog, gets nothing
 * (no 503) meanwhile, and is served by the new backend with exactly ids 3, 4. */
START_TEST(test_backend_restart_socket_held)
{
    stream_then_stop_backend(&EXTERNAL_HELD);
    const char *const resume[] = {"Last-Event-ID: 2", NULL};
    struct sse_client c;
    int64_t sent_ms = testenv_now_ms();
    sse_client_send(&c, test_srv.port, "GET", "/api/sessions/s1/events", resume);
    struct pollfd queued = {.fd = test_srv.backend_listen_fd, .events = POLLIN};
    DIAG_CHECK(poll(&queued, 1, 3000) == 1, "lighttpd never connected to the held socket");
    DIAG_CHECK(!sse_client_has_bytes(&c), "with no backend running lighttpd answered: %.200s",
               c.head);
    server_start_backend(&test_srv, &test_env, &EXTERNAL_HELD);
    sse_client_wait_head(&c, 5000);
    fprintf(stderr, "backend restarted (held socket): a request made while it was down "
            "answered %d after %lld ms\n", c.status, (long long)(testenv_now_ms() - sent_ms));
    DIAG_CHECK(c.status == 200, "%s after the restart: %d, expected 200", c.request, c.status);
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
    tcase_add_test(tc, test_backend_restart_socket_held);
    suite_add_tcase(s, tc);
    return s;
}
