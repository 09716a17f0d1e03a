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
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

static char data_dir[TESTENV_PATH_MAX];
static char db_path[TESTENV_PATH_MAX];

/* Moves the test's database into data/ with the given modes and group (-1: root's). */
static void
place_database(mode_t dir_mode, mode_t db_mode, gid_t group)
{
    testenv_path(&test_env, "data", data_dir, sizeof(data_dir));
    DIAG_CHECK(mkdir(data_dir, 0700) == 0, "mkdir %s: %s", data_dir, strerror(errno));
    testenv_path(&test_env, "data/events.db", db_path, sizeof(db_path));
    DIAG_CHECK(rename(test_env.db_path, db_path) == 0, "rename: %s", strerror(errno));
    DIAG_CHECK(chown(data_dir, 0, group) == 0 && chown(db_path, 0, group) == 0, "chown: %s",
               strerror(errno));
    DIAG_CHECK(chmod(data_dir, dir_mode) == 0 && chmod(db_path, db_mode) == 0, "chmod: %s",
               strerror(errno));
}

static gid_t
www_data_gid(void)
{
    struct group *g = getgrnam("www-data");
    DIAG_CHECK(g != NULL, "no group www-data: run `make deps` (apache2 creates it)");
    return g->gr_gid;
}

START_TEST(test_unwritable_directory_gives_503_and_log)
{
    place_database(0755, 0644, (gid_t)-1);
    server_start(&test_srv, &test_env, &(struct server_options){.db_path = db_path});
    struct sse_client c;
    sse_client_open(&c, test_srv.port, "GET", "/api/sessions/s1/events", NULL);
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
    place_database(02775, 0664, www_data_gid());
    server_start(&test_srv, &test_env, &(struct server_options){.db_path = db_path});
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events", NULL);
    struct publish_result r;
    char sql[TESTENV_PATH_MAX + 128];
    snprintf(sql, sizeof(sql), ".open %s\nINSERT INTO events(session_id, type) "
             "VALUES ('s1', 'execution_started');\n", db_path);
    publish_sql(&test_env, sql, &r);
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
