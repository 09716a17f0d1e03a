/*
 * test_fcgid.c - what only Apache + mod_fcgid does to a stream (issue 3, DEPLOY-NOTES Q2-Q4).
 *
 * Keepalives keep a stream alive past FcgidIOTimeout; SSE_MAX_STREAM_S below
 * FcgidBusyTimeout ends the stream cleanly and the client resumes without loss; a client
 * that leaves frees its fcgid process, so that at the process limit the next client is
 * served (the time it took is printed).
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


/* FcgidIOTimeout 3 cuts a stream silent for 3 s (Q2); keepalives every second keep it. */
START_TEST(test_stream_outlives_io_timeout)
{
    server_start(&test_srv, &test_env, &(struct server_options){
        .apache_directives = "FcgidIOTimeout 3\nFcgidBusyScanInterval 1\n"});
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    int64_t start_ms = testenv_now_ms();
    while (testenv_now_ms() - start_ms < 5000) {
        struct sse_frame f;
        sse_client_expect_block(&c, &f, 1600);  /* a keepalive at least every second */
        sse_frame_release(&f);
    }
    publish_events(&test_env, "s1", "execution_started", NULL, 1);
    frames_expect_ids(&c, (const long long[]){1}, 1, 3000);
    sse_client_close(&c);
}
END_TEST

/* SSE_MAX_STREAM_S ends the stream before FcgidBusyTimeout would kill it (§2); the client
 * resumes with Last-Event-ID and gets exactly what it missed. */
START_TEST(test_max_stream_time_then_resume)
{
    const char *const settings[] = {"SSE_MAX_STREAM_S", "2", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){
        .env = settings, .apache_directives = "FcgidBusyTimeout 10\n"});
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    publish_events(&test_env, "s1", "execution_started", NULL, 1);
    frames_expect_ids(&c, (const long long[]){1}, 1, 3000);
    sse_client_expect_end(&c, 4000);
    sse_client_close(&c);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", "reason=max_stream_time",
                        2000);
    publish_events(&test_env, "s1", "execution_started", NULL, 2);
    const char *const resume[] = {"Last-Event-ID: 1", NULL};
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", resume);
    frames_expect_ids(&c, (const long long[]){2, 3}, 2, 3000);
    sse_client_close(&c);
}
END_TEST

/* With one process allowed, a client that leaves must free it for the next one (Q3, Q4). */
START_TEST(test_disconnect_frees_process_at_limit)
{
    server_start(&test_srv, &test_env, &(struct server_options){
        .apache_directives = "FcgidMaxProcessesPerClass 1\n"});
    struct sse_client first, second;
    frames_open_stream(&first, test_srv.port, "/api/sessions/s1/events", NULL);
    int64_t closed_ms = testenv_now_ms();
    sse_client_close(&first);
    frames_open_stream(&second, test_srv.port, "/api/sessions/s1/events", NULL);
    int64_t served_ms = testenv_now_ms() - closed_ms;
    publish_events(&test_env, "s1", "execution_started", NULL, 1);
    frames_expect_ids(&second, (const long long[]){1}, 1, 3000);
    fprintf(stderr, "mod_fcgid at its process limit: next client served %lld ms after the "
            "previous one left\n", (long long)served_ms);
    logwait_expect_line(test_srv.sse_log, "sse disconnected session=s1", "reason=client_disconnected",
                        3000);
    sse_client_close(&second);
}
END_TEST

Suite *suite_fcgid(void);

Suite *
suite_fcgid(void)
{
    Suite *s = server_suite_create("apache");
    TCase *tc = server_tcase_create("apache");
    tcase_set_timeout(tc, 40);
    tcase_add_test(tc, test_stream_outlives_io_timeout);
    tcase_add_test(tc, test_max_stream_time_then_resume);
    tcase_add_test(tc, test_disconnect_frees_process_at_limit);
    suite_add_tcase(s, tc);
    return s;
}
