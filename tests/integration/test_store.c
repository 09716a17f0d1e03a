/*
 * test_store.c - what the store says when SQLite fails, on real files (issue 11).
 *
 * store.h is called in this process on databases the sqlite3 CLI made, damaged or locked.
 * Only a missing table or column means "no sse-fcgi schema" (an older schema.sql); a lock is
 * busy and a damaged schema unreadable, also when they meet a statement prepared late: the
 * store prepares each statement on first use, and SQLite loads the schema again once another
 * connection has changed it, so a prepare can meet a lock or a damaged file as well as a
 * step can. End to end: a stream and /api/health that connect while a writer holds the
 * database exclusively are answered "database busy".
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "store/store.h"
#include "tests/lib/diag.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

enum { STORE_TEST_BUSY_MS = 300 };

static struct store *
open_store(void)
{
    struct store *st = NULL;
    char err[512];
    int rc = store_open(test_env.db_path, STORE_TEST_BUSY_MS, &st, err, sizeof(err));
    DIAG_CHECK(rc == 0, "store_open: %d %s", rc, err);
    return st;
}

/* Adds (is_broken) or removes a table whose SQL does not parse, and bumps the schema
 * version, so that every other connection loads the schema again and fails while it is
 * there ("malformed database schema"). */
static void
set_schema_broken(bool is_broken)
{
    long long version = publish_query_number(&test_env, "PRAGMA schema_version;\n");
    publish_okf(&test_env, "PRAGMA writable_schema = ON;\n%s;\nPRAGMA schema_version = %lld;\n",
                is_broken ? "INSERT INTO sqlite_master(type, name, tbl_name, rootpage, sql) "
                            "VALUES ('table', 'broken', 'broken', 0, 'CREATE TABLE broken(')"
                          : "DELETE FROM sqlite_master WHERE name = 'broken'",
                version + 1);
}

/* Leaves st with its schema unloaded: a step meets the broken schema, and SQLite forgets the
 * schema it had. The next prepare must load it again. */
static void
unload_schema(struct store *st)
{
    set_schema_broken(true);
    int64_t newest = 0;
    int rc = store_newest_id(st, &newest);
    DIAG_CHECK(rc == STORE_ERR_UNREADABLE && strstr(store_errmsg(st), "malformed") != NULL,
               "a step on a broken schema: %d %s", rc, store_errmsg(st));
}

/* A statement first prepared after the schema broke: unreadable, SQLite's message, not
 * "no sse-fcgi schema". */
START_TEST(test_late_prepare_on_broken_schema_is_unreadable)
{
    struct store *st = open_store();
    unload_schema(st);
    struct event_type_policy *policy = NULL;
    size_t count = 0;
    int rc = store_policy_load(st, &policy, &count);
    DIAG_CHECK(rc == STORE_ERR_UNREADABLE
               && strstr(store_errmsg(st), "malformed database schema") != NULL,
               "prepare on a broken schema: %d %s", rc, store_errmsg(st));
    store_close(st);
}
END_TEST

/* A statement first prepared while another connection holds the database exclusively
 * (a rollback journal: in WAL mode a reader is never locked out this way) and the schema
 * must be loaded again: busy, and once the writer is gone the same call works. */
START_TEST(test_late_prepare_while_locked_is_busy)
{
    publish_ok(&test_env, "PRAGMA journal_mode = DELETE;\n");
    struct store *st = open_store();
    unload_schema(st);
    set_schema_broken(false);
    pid_t writer = publish_start_holding(&test_env, "BEGIN EXCLUSIVE;\n"
                                         "INSERT INTO sessions(id) VALUES ('lock');");
    struct event_type_policy *policy = NULL;
    size_t count = 0;
    int rc = store_policy_load(st, &policy, &count);
    publish_wait(&test_env, writer, 0, NULL);  /* SIGKILLed: its transaction rolls back */
    DIAG_CHECK(rc == STORE_ERR_BUSY && strstr(store_errmsg(st), "locked") != NULL,
               "prepare while locked: %d %s", rc, store_errmsg(st));
    rc = store_policy_load(st, &policy, &count);
    DIAG_CHECK(rc == 0 && count > 0, "after the lock: %d %s", rc, store_errmsg(st));
    store_policy_free(policy, count);
    store_close(st);
}
END_TEST

/* What "no sse-fcgi schema" is for: a table an older schema.sql did not have. */
START_TEST(test_missing_table_is_schema)
{
    publish_ok(&test_env, "DROP TABLE read_tokens;\n");
    struct store *st = open_store();
    struct stored_token tokens[2];
    size_t count = 0;
    int rc = store_read_tokens(st, "s1", tokens, 2, &count);
    DIAG_CHECK(rc == STORE_ERR_SCHEMA && strstr(store_errmsg(st), "no such table: read_tokens")
               != NULL, "read_tokens without the table: %d %s", rc, store_errmsg(st));
    store_close(st);
}
END_TEST

/* A writer in exclusive locking mode (WAL, but no reader may share it) holds the database
 * while a stream and /api/health connect: both are refused as busy, neither as a database
 * without the schema. */
START_TEST(test_connect_while_locked_is_busy)
{
    server_start(&test_srv, &test_env, NULL);
    pid_t writer = publish_start_holding(&test_env, "PRAGMA locking_mode = EXCLUSIVE;\n"
                                         "BEGIN EXCLUSIVE;\n"
                                         "INSERT INTO sessions(id) VALUES ('lock');");
    const char *const paths[] = {"/api/sessions/s1/events", "/api/health"};
    const char *const subjects[] = {"session=s1", "channel=global"};
    for (int i = 0; i < 2; i++) {
        struct sse_client c;
        sse_client_open(&c, test_srv.port, "GET", paths[i], NULL);
        sse_client_close(&c);
        logwait_expect_line(test_srv.sse_log, subjects[i], "reason=database busy", 5000);
    }
    publish_wait(&test_env, writer, 0, NULL);
    DIAG_CHECK(logwait_count_lines(test_srv.sse_log, "no sse-fcgi schema", NULL) == 0,
               "a lock was reported as a missing schema");
}
END_TEST

Suite *suite_store(void);

Suite *
suite_store(void)
{
    Suite *s = suite_create("store");
    TCase *tc = server_tcase_create("store");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_late_prepare_on_broken_schema_is_unreadable);
    tcase_add_test(tc, test_late_prepare_while_locked_is_busy);
    tcase_add_test(tc, test_missing_table_is_schema);
    tcase_add_test(tc, test_connect_while_locked_is_busy);
    suite_add_tcase(s, tc);
    return s;
}
