/*
 * test_perms.c - a database written by root (the producer) and read by www-data through
 * Apache + mod_fcgid (issue 3; DEPLOY-NOTES Q11).
 *
 * Wrong: directory 0755 and database 0644 owned by root, no -wal/-shm yet: the read-only
 * reader cannot create them, so the stream gets 503 "database unreadable" and one log line
 * that says what to fix. Documented: directory 2775 and database 0664 in group www-data:
 * www-data streams what root inserts with the sqlite3 CLI.
 */
#include <check.h>
#include <string.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

START_TEST(test_unwritable_directory_gives_503_and_log)
{
    testenv_place_database(&test_env, 0755, 0644, (gid_t)-1);
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", NULL);
    frames_expect_refusal(&c, "database unreadable", -1);  /* SPEC §4.12: EventSource */
    sse_client_close(&c);
    const char *const curl[] = {"Accept: */*", NULL};
    sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", curl);
    char value[64];
    DIAG_CHECK(c.status == 503, "status %d for an unreadable database", c.status);
    DIAG_CHECK(sse_client_header(&c, "Retry-After", value, sizeof(value)) != NULL,
               "503 without Retry-After");
    sse_client_read_body(&c, 5000);
    DIAG_CHECK(strstr(c.body, "database unreadable") != NULL, "body: %s", c.body);
    logwait_expect_line(test_srv.sse_log, "sse error status=503", "write access", 3000);
    sse_client_close(&c);
}
END_TEST

START_TEST(test_documented_permissions_stream)
{
    testenv_place_database(&test_env, 02775, 0664, testenv_www_data_gid());
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    struct publish_result r;
    publish_sql(&test_env, "INSERT INTO events(session_id, type) VALUES ('s1', "
                "'execution_started');\n", &r);
    DIAG_CHECK(r.status == 0, "root could not publish: %s", r.err);
    frames_expect_ids(&c, (const long long[]){1}, 1, 5000);
    sse_client_close(&c);
}
END_TEST

Suite *suite_perms(void);

/* Listed as FCGID_SUITE: behind Apache + mod_fcgid only, where the reader is www-data. */
Suite *
suite_perms(void)
{
    Suite *s = server_suite_create("perms");
    TCase *tc = server_tcase_create("perms");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_unwritable_directory_gives_503_and_log);
    tcase_add_test(tc, test_documented_permissions_stream);
    suite_add_tcase(s, tc);
    return s;
}
