/*
 * test_external.c - sse-fcgi as a standalone FastCGI server (issue 3: spawn-fcgi or a
 * systemd socket unit, for lighttpd/nginx setups with external backends).
 *
 * The responder runs under the real spawn-fcgi on a unix socket, lighttpd connects to it
 * without bin-path (tests/conf/lighttpd-external.conf.in, as deploy/lighttpd/
 * sse-fcgi-external.conf); the suite runs again as external_nginx, behind nginx, which
 * only ever has such a backend (deploy/nginx/sse-fcgi.conf). One process serves several
 * streams at once. Restarting the backend (SIGTERM, then a new one) ends the streams with
 * reason=shutdown and the clients resume with Last-Event-ID without loss (issues 11 and 15,
 * what the front end answers meanwhile):
 * - under spawn-fcgi the socket goes with the process; lighttpd answers 503 while the
 *   connect fails and for 1-2 s after ("disable-time" 0), and the shipped soft-refusal
 *   script turns that into 200 text/event-stream with retry: for SSE clients only; nginx
 *   answers 502 while the connect is refused and serves the first request after the
 *   restart (one server is never marked failed), and the snippet's error_page turns the
 *   502 into the same soft refusal;
 * - on a socket held across the restart, as the systemd socket unit holds it, either
 *   front end answers nothing but 200: a request made meanwhile waits and is then served.
 */
#include <check.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

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

static const char STREAM_PATH[] = "/api/sessions/s1/events";

enum { SOFT_RETRY_MS = 2000 };  /* the retry: of both front ends' soft refusals */

/* server_start, after checking that lighttpd's configuration has its mod_magnet. */
static void
start_external(const struct server_options *opt)
{
    DIAG_CHECK(server_front_end != SERVER_LIGHTTPD
               || access("/usr/lib/lighttpd/mod_magnet.so", R_OK) == 0,
               "lighttpd's mod_magnet is missing: run `make deps` (lighttpd-modules-lua)");
    server_start(&test_srv, &test_env, opt);
}

START_TEST(test_external_backend_streams)
{
    start_external(&EXTERNAL);
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
    start_external(opt);
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

/* Sends SSE requests (each must get the soft refusal) while the backend is down, until
 * lighttpd's error log shows its count-th failed connect. Returns the time it showed. */
static int64_t
refuse_until_failed_connects(int count, int timeout_ms)
{
    const char *const resume[] = {"Last-Event-ID: 2", NULL};
    int64_t deadline = testenv_now_ms() + timeout_ms;
    for (;;) {
        struct sse_client c;
        sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", resume);
        frames_expect_soft_refusal(&c, 2000, "2");
        sse_client_close(&c);
        int failed = logwait_count_lines(test_srv.error_log, "establishing connection failed",
                                         NULL);
        if (failed >= count)
            return testenv_now_ms();
        DIAG_CHECK(testenv_now_ms() < deadline, "lighttpd tried %d connects in %d ms, "
                   "expected %d", failed, timeout_ms, count);
        testenv_poll_step();
    }
}

/* Under spawn-fcgi the restart removes the socket: lighttpd answers the request that finds
 * it gone, and every request after it until a whole-second check re-enables the backend,
 * itself. Before issue 11 that was 503 for 2-3 s, which ends a standard EventSource for
 * good. Now an SSE client gets the soft refusal and a plain client the honest 503.
 * Where in lighttpd's second a connect fails decides how long the 503s last after it
 * (gw_backend.c: gw_proc_check_enable against the whole-second log_monotonic_secs), so the
 * window is measured from the 2nd failed connect, which comes right after such a check:
 * then it is the whole period, under 2 s with "disable-time" 0 (3 s with the default 1).
 * The stream then resumes with ids 3, 4 exactly. */
START_TEST(test_backend_restart_then_resume)
{
    stream_then_stop_backend(&EXTERNAL);
    int64_t first_ms = testenv_now_ms();
    int status = sse_client_plain_status(test_srv.port, "/api/health", 5000);
    DIAG_CHECK(status == 503, "with the backend down lighttpd answered a plain client %d, "
               "expected 503", status);
    int64_t failed_ms = refuse_until_failed_connects(2, 5000);
    server_start_backend(&test_srv, &test_env, &EXTERNAL);
    int64_t up_ms = testenv_now_ms();
    struct sse_client c;
    int refusals = frames_resume_through_refusals(&c, test_srv.port, STREAM_PATH, 2,
                                                  SOFT_RETRY_MS, 5000);
    int64_t served_ms = testenv_now_ms();
    fprintf(stderr, "backend restarted (spawn-fcgi): lighttpd retried the connect after "
            "%lld ms; served again %lld ms after that failed connect, %lld ms after the "
            "backend was back, %d soft refusals between\n", (long long)(failed_ms - first_ms),
            (long long)(served_ms - failed_ms), (long long)(served_ms - up_ms), refusals);
    DIAG_CHECK(served_ms - failed_ms < 2500, "lighttpd kept the backend disabled %lld ms after "
               "a failed connect: is \"disable-time\" 0 still set?",
               (long long)(served_ms - failed_ms));
    frames_expect_ids(&c, (const long long[]){3, 4}, 2, 5000);
    sse_client_close(&c);
}
END_TEST

/* What the nginx snippet's soft refusal carries back as id: for each way a client says
 * where it is (SPEC §3: the header wins over the query); NULL: no id: line. */
static const struct {
    const char *path;
    const char *headers[3];
    const char *cursor;
} NGINX_REFUSED[] = {
    {STREAM_PATH, {"Last-Event-ID: 2", NULL}, "2"},
    {"/api/sessions/s1/events?last_event_id=2", {NULL}, "2"},
    {"/api/sessions/s1/events?last_event_id=7", {"Last-Event-ID: 2", NULL}, "2"},
    {STREAM_PATH, {NULL}, NULL},                                    /* Accept only */
    {STREAM_PATH, {"Last-Event-ID: 2x", NULL}, NULL},               /* not a number */
    {STREAM_PATH, {"Accept: */*", "Last-Event-ID: 2", NULL}, "2"},  /* a cursor, no Accept */
};

/* nginx, under spawn-fcgi: the socket file stays but nothing listens, so nginx's connect
 * is refused. A plain client gets nginx's 502 and every SSE client the soft refusal with
 * its cursor, at once; nginx never marks its one server failed, so the first request after
 * the restart is served (no refusal), with ids 3, 4. */
START_TEST(test_nginx_backend_restart_then_resume)
{
    stream_then_stop_backend(&EXTERNAL);
    int64_t start_ms = testenv_now_ms();
    int status = sse_client_plain_status(test_srv.port, "/api/health", 5000);
    int64_t plain_ms = testenv_now_ms() - start_ms;
    DIAG_CHECK(status == 502, "with the backend down nginx answered a plain client %d, "
               "expected 502", status);
    size_t count = sizeof(NGINX_REFUSED) / sizeof(NGINX_REFUSED[0]);
    for (size_t i = 0; i < count; i++) {
        struct sse_client c;
        sse_client_open(&c, test_srv.port, "GET", NGINX_REFUSED[i].path,
                        NGINX_REFUSED[i].headers);
        frames_expect_soft_refusal(&c, SOFT_RETRY_MS, NGINX_REFUSED[i].cursor);
        sse_client_close(&c);
    }
    int refused = logwait_count_lines(test_srv.error_log, "connect() to unix:",
                                      "Connection refused");
    DIAG_CHECK(refused >= (int)count + 1, "nginx logged %d refused connects for %zu requests",
               refused, count + 1);
    server_start_backend(&test_srv, &test_env, &EXTERNAL);
    int64_t up_ms = testenv_now_ms();
    struct sse_client c;
    int refusals = frames_resume_through_refusals(&c, test_srv.port, STREAM_PATH, 2,
                                                  SOFT_RETRY_MS, 5000);
    fprintf(stderr, "backend restarted (spawn-fcgi): nginx answered 502 to a plain client in "
            "%lld ms; the first stream after the restart came %lld ms after the backend was "
            "back, after %d soft refusals\n", (long long)plain_ms,
            (long long)(testenv_now_ms() - up_ms), refusals);
    DIAG_CHECK(refusals == 0, "nginx refused %d requests after the backend was back", refusals);
    frames_expect_ids(&c, (const long long[]){3, 4}, 2, 5000);
    sse_client_close(&c);
}
END_TEST

/* With the socket held across the restart (the systemd socket unit), no request ever fails
 * to connect: one made while no backend runs waits in the socket's backlog, gets nothing
 * (no 503 or 502) meanwhile, and is served by the new backend with exactly ids 3, 4.
 * Behind nginx a wait longer than the snippet's fastcgi_read_timeout (60 s) would end in
 * its 504 and the soft refusal. */
START_TEST(test_backend_restart_socket_held)
{
    stream_then_stop_backend(&EXTERNAL_HELD);
    const char *const resume[] = {"Last-Event-ID: 2", NULL};
    struct sse_client c;
    int64_t sent_ms = testenv_now_ms();
    sse_client_send(&c, test_srv.port, "GET", STREAM_PATH, resume);
    struct pollfd queued = {.fd = test_srv.backend_listen_fd, .events = POLLIN};
    DIAG_CHECK(poll(&queued, 1, 3000) == 1, "the front end never connected to the held socket");
    DIAG_CHECK(!sse_client_has_bytes(&c), "with no backend running the front end answered: "
               "%.200s", c.head);
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

/* Listed as SUITE (lighttpd) and as NGINX_SUITE (external_nginx). */
Suite *
suite_external(void)
{
    Suite *s = server_suite_create("external");
    TCase *tc = server_tcase_create("external");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_external_backend_streams);
    if (server_building_front_end == SERVER_NGINX)  /* its own statuses: 502, no disabling */
        tcase_add_test(tc, test_nginx_backend_restart_then_resume);
    else
        tcase_add_test(tc, test_backend_restart_then_resume);
    tcase_add_test(tc, test_backend_restart_socket_held);
    suite_add_tcase(s, tc);
    return s;
}
