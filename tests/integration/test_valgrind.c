/*
 * test_valgrind.c - a long stream under valgrind: no leak, no error, no growth (issue 5).
 *
 * lighttpd starts the responder through a wrapper that runs it under valgrind (memcheck,
 * leak check on). One client streams 11,000 events, published in rounds; the backend's RSS
 * after the first round and after the last must not differ by more than 1 MiB (valgrind's
 * own memory included, so a leak per event would show). lighttpd's SIGTERM ends the
 * responder; valgrind's report must then say 0 errors and nothing definitely lost.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

/* The first round fills the watcher's ring of recent rows (HUB_RING_ROWS, 8192), which is
 * memory the process keeps by design; growth is measured after it. It is the anonymous
 * memory that is measured (the heap, valgrind's included): the shared hub's mapping
 * (RssFile or RssShmem) grows by design as its 16 MiB ring is written the first time. */
enum { ROUNDS = 6, FIRST_ROUND = 8500, PER_ROUND = 500 };
/* --freelist-vol=0: memcheck would otherwise keep 20 MB of freed blocks, which reads as
 * growth. -q: the report holds only errors, so an empty one is a clean one. */

START_TEST(test_long_stream_under_valgrind)
{
    char wrapper[TESTENV_PATH_MAX], report[TESTENV_PATH_MAX], script[3 * TESTENV_PATH_MAX];
    testenv_path(&test_env, "valgrind-sse-fcgi", wrapper, sizeof(wrapper));
    testenv_path(&test_env, "valgrind.log", report, sizeof(report));
    snprintf(script, sizeof(script), "#!/bin/sh\nexec valgrind -q --freelist-vol=0 --leak-check=full "
             "--errors-for-leak-kinds=definite --log-file=%s %s\n", report,
             testenv_require("SSE_FCGI_BIN"));
    testenv_write_script(wrapper, script);
    const char *const settings[] = {"SSE_KEEPALIVE_S", "15", NULL};
    server_start(&test_srv, &test_env, &(struct server_options){.bin = wrapper, .env = settings});
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    pid_t backend = server_find_backend(&test_srv, 5000);
    DIAG_CHECK(backend > 0, "no backend under lighttpd");
    long anon_first = 0;
    long long last_id = 0;
    static long long ids[FIRST_ROUND];
    for (int round = 0; round < ROUNDS; round++) {
        int count = round == 0 ? FIRST_ROUND : PER_ROUND;
        publish_events(&test_env, "s1", "llm_text_delta", NULL, count);
        size_t n = frames_read_until(&c, last_id + count, ids, FIRST_ROUND, 30000);
        DIAG_CHECK(n == (size_t)count, "round %d: %zu events", round, n);
        last_id = ids[n - 1];
        sse_client_close(&c);  /* the client keeps every byte: reopen and resume */
        char header[64];
        snprintf(header, sizeof(header), "Last-Event-ID: %lld", last_id);
        frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events",
                           (const char *const[]){header, NULL});
        if (round == 0)
            anon_first = testenv_proc_status_kib(backend, "RssAnon:");
    }
    long anon_last = testenv_proc_status_kib(backend, "RssAnon:");
    sse_client_close(&c);
    fprintf(stderr, "under valgrind: %lld events, backend RssAnon %ld KiB after the first round, "
            "%ld KiB after the last\n", last_id, anon_first, anon_last);
    DIAG_CHECK(anon_last - anon_first <= 1024, "RssAnon grew by %ld KiB over the last %d events",
               anon_last - anon_first, (ROUNDS - 1) * PER_ROUND);
    server_stop(&test_srv);
    int64_t deadline = testenv_now_ms() + 10000;
    static char text[1 << 16];
    while (!server_is_pid_gone(backend) && testenv_now_ms() < deadline)
        testenv_poll_step();
    struct stat sb;
    DIAG_CHECK(stat(report, &sb) == 0, "no valgrind report at %s: did valgrind run?", report);
    testenv_read_file(report, text, sizeof(text));
    DIAG_CHECK(strstr(text, "definitely lost") == NULL && strstr(text, "Invalid ") == NULL
               && strstr(text, "uninitialised") == NULL,
               "valgrind reports:\n%.4000s", text);
}
END_TEST

Suite *suite_valgrind(void);

Suite *
suite_valgrind(void)
{
    Suite *s = suite_create("valgrind");
    TCase *tc = server_tcase_create("valgrind");
    tcase_set_timeout(tc, 120);
    /* valgrind cannot run an ASan binary: make sanitize says so with SSE_SANITIZED */
    if (getenv("SSE_SANITIZED") == NULL)
        tcase_add_test(tc, test_long_stream_under_valgrind);
    suite_add_tcase(s, tc);
    return s;
}
