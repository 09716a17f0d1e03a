/*
 * test_db.c - store/db.h, the one SQLite layer, called in this process on files the sqlite3
 * CLI made: what a writer (the relay's kind: BEGIN IMMEDIATE, INSERT, COMMIT) and a reader
 * are told when SQLite fails, and that a rollback after a failure keeps its message.
 *
 * The suite runs as root, who may write any file, so a database this user may not write
 * is faked with PRAGMA query_only: SQLite then fails a write with the same SQLITE_READONLY.
 * (prune's suite covers the real thing, as nobody.) Out of memory is not tested here.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store/db.h"
#include "tests/lib/diag.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/testenv.h"

enum { DB_TEST_BUSY_MS = 200 };

enum test_query { T_INSERT, T_NO_TABLE, T_QUERY_ONLY, T_QUERY_COUNT };

static const struct db_sql TEST_SQL[T_QUERY_COUNT] = {
    [T_INSERT] = {"insert", "INSERT INTO sessions(id) VALUES ('relayed')"},
    [T_NO_TABLE] = {"no_table", "SELECT x FROM nope"},
    [T_QUERY_ONLY] = {NULL, "PRAGMA query_only = 1"},
};

static const struct db_codes TEST_CODES = {
    .missing = -101, .cantopen = -102, .readonly = -103, .busy = -104, .nomem = -105,
    .schema = -106, .sqlite = -107,
};

static char err[1024];

/* Opens path as mode, like the relay's writer (codes NULL: the db_error values). */
static int
open_db(const char *path, enum db_mode mode, const struct db_codes *codes, struct db **out)
{
    const struct db_options opt = {
        .mode = mode, .busy_timeout_ms = DB_TEST_BUSY_MS, .sql = TEST_SQL,
        .sql_count = T_QUERY_COUNT, .codes = codes, .program = "the relay",
        .busy_advice = "the batch is copied again on the next round",
    };
    err[0] = '\0';
    return db_open(path, &opt, out, err, sizeof(err));
}

static long long
relayed_rows(void)
{
    return publish_query_number(&test_env, "SELECT count(*) FROM sessions WHERE id = "
                                           "'relayed';\n");
}

/* A missing file is never created, whichever the mode, and says so; the caller's codes. */
START_TEST(test_missing_file_is_missing)
{
    char path[TESTENV_PATH_MAX], expected[TESTENV_PATH_MAX + 64];
    testenv_path(&test_env, "nope.db", path, sizeof(path));
    snprintf(expected, sizeof(expected), "cannot open database %s: No such file or directory",
             path);
    for (int mode = DB_READ_ONLY; mode <= DB_READ_WRITE; mode++) {
        struct db *db = NULL;
        int rc = open_db(path, (enum db_mode)mode, NULL, &db);
        DIAG_CHECK(rc == DB_ERR_MISSING && db == NULL && strcmp(err, expected) == 0,
                   "mode %d: %d %s", mode, rc, err);
        rc = open_db(path, (enum db_mode)mode, &TEST_CODES, &db);
        DIAG_CHECK(rc == TEST_CODES.missing, "mode %d with codes: %d %s", mode, rc, err);
    }
    DIAG_CHECK(access(path, F_OK) != 0, "db_open created %s", path);
}
END_TEST

/* A directory: a reader is told it is no readable file; a writer gets SQLite's CANTOPEN,
 * told who may write there. */
START_TEST(test_directory_cannot_be_opened)
{
    struct db *db = NULL;
    int rc = open_db(test_env.dir, DB_READ_ONLY, NULL, &db);
    DIAG_CHECK(rc == DB_ERR_CANTOPEN && strstr(err, "is not a readable file") != NULL,
               "reader: %d %s", rc, err);
    rc = open_db(test_env.dir, DB_READ_WRITE, NULL, &db);
    DIAG_CHECK(rc == DB_ERR_CANTOPEN && strstr(err, "open: unable to open database file") != NULL
               && strstr(err, "cannot write") != NULL
               && strstr(err, "run the relay as a user who can write both, such as root")
               != NULL, "writer: %d %s", rc, err);
}
END_TEST

/* Another writer holds the write lock past the busy timeout: BEGIN IMMEDIATE is busy, the
 * message gives the timeout and the caller's advice, and neither db_rollback nor db_end
 * (no transaction is open) replaces it with ROLLBACK's "no transaction is active". */
START_TEST(test_writer_busy_keeps_its_message)
{
    struct db *db = NULL;
    int rc = open_db(test_env.db_path, DB_READ_WRITE, NULL, &db);
    DIAG_CHECK(rc == 0, "open: %d %s", rc, err);
    pid_t writer = publish_start_holding(&test_env, "BEGIN IMMEDIATE;\n"
                                         "INSERT INTO sessions(id) VALUES ('lock');");
    rc = db_begin(db, DB_BEGIN_IMMEDIATE);
    char message[1024];
    snprintf(message, sizeof(message), "%s", db_errmsg(db));
    db_rollback(db);
    int end_rc = db_end(db, rc);
    publish_wait(&test_env, writer, 0, NULL);  /* SIGKILLed: its transaction rolls back */
    DIAG_CHECK(rc == DB_ERR_BUSY && strstr(message, "BEGIN IMMEDIATE: database is locked: "
               "another writer held the database for more than 200 ms; the batch is copied "
               "again on the next round") != NULL, "begin: %d %s", rc, message);
    DIAG_CHECK(end_rc == rc && strcmp(db_errmsg(db), message) == 0,
               "after the rollback: %d %s", end_rc, db_errmsg(db));
    db_close(db);
}
END_TEST

/* The relay's transaction: what db_end commits stays, what it rolls back does not. */
START_TEST(test_writer_commits_and_rolls_back)
{
    struct db *db = NULL;
    int rc = open_db(test_env.db_path, DB_READ_WRITE, NULL, &db);
    DIAG_CHECK(rc == 0, "open: %d %s", rc, err);
    rc = db_begin(db, DB_BEGIN_IMMEDIATE);
    rc = db_end(db, rc == 0 ? db_run(db, T_INSERT) : rc);
    DIAG_CHECK(rc == 0 && relayed_rows() == 1, "commit: %d %s", rc, db_errmsg(db));
    rc = db_begin(db, DB_BEGIN_IMMEDIATE);
    rc = rc == 0 ? db_run(db, T_INSERT) : rc;  /* UNIQUE: the id is there */
    DIAG_CHECK(rc == DB_ERR_SQLITE && strstr(db_errmsg(db), "insert: UNIQUE constraint "
               "failed: sessions.id (code 1555)") != NULL, "duplicate: %d %s", rc,
               db_errmsg(db));
    rc = db_end(db, rc);
    DIAG_CHECK(rc == DB_ERR_SQLITE && relayed_rows() == 1, "rollback: %d %s", rc,
               db_errmsg(db));
    db_close(db);
}
END_TEST

/* A write refused as SQLITE_READONLY: a writer is told who may write the file, a reader
 * what the web server user needs (DEPLOY-NOTES §9). */
START_TEST(test_readonly_hints)
{
    struct db *db = NULL;
    int rc = open_db(test_env.db_path, DB_READ_WRITE, NULL, &db);
    rc = rc == 0 ? db_run(db, T_QUERY_ONLY) : rc;
    rc = rc == 0 ? db_run(db, T_INSERT) : rc;
    DIAG_CHECK(rc == DB_ERR_READONLY && strstr(db_errmsg(db), "insert: attempt to write a "
               "readonly database (extended code 8): this user (uid 0) cannot write ") != NULL
               && strstr(db_errmsg(db), "run the relay as a user who can write both, such "
                                        "as root") != NULL, "writer: %d %s", rc,
               db_errmsg(db));
    db_close(db);
    rc = open_db(test_env.db_path, DB_READ_ONLY, NULL, &db);
    rc = rc == 0 ? db_run(db, T_INSERT) : rc;
    DIAG_CHECK(rc == DB_ERR_READONLY && strstr(db_errmsg(db), "the web server user needs "
               "write access to the database directory") != NULL, "reader: %d %s", rc,
               db_errmsg(db));
    DIAG_CHECK(relayed_rows() == 0, "a refused write was written");
    db_close(db);
}
END_TEST

/* A statement naming a table the database lacks, and the schema check: both schema, both
 * saying to apply schema.sql. */
START_TEST(test_schema_failures)
{
    struct db *db = NULL;
    int64_t version = 0, ignored;
    int rc = open_db(test_env.db_path, DB_READ_ONLY, &TEST_CODES, &db);
    DIAG_CHECK(rc == 0, "open: %d %s", rc, err);
    rc = db_query_integer(db, T_NO_TABLE, &ignored);
    DIAG_CHECK(rc == TEST_CODES.schema && strcmp(db_errmsg(db), "no_table: no such table: "
               "nope: apply schema.sql") == 0, "no table: %d %s", rc, db_errmsg(db));
    const struct db_object present[] = {{"table", "events"}, {"trigger", "events_record_prune"}};
    rc = db_check_schema(db, present, 2, &version);
    DIAG_CHECK(rc == 0 && version >= 1, "the real schema: %d %s", rc, db_errmsg(db));
    const struct db_object absent[] = {{"table", "events"}, {"table", "relay_cursor"}};
    rc = db_check_schema(db, absent, 2, &version);
    DIAG_CHECK(rc == TEST_CODES.schema && strstr(db_errmsg(db), "database has no sse-fcgi "
               "schema (user_version ") != NULL, "an object missing: %d %s", rc,
               db_errmsg(db));
    db_close(db);
}
END_TEST

Suite *suite_db(void);

Suite *
suite_db(void)
{
    Suite *s = suite_create("db");
    TCase *tc = server_tcase_create("db");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_missing_file_is_missing);
    tcase_add_test(tc, test_directory_cannot_be_opened);
    tcase_add_test(tc, test_writer_busy_keeps_its_message);
    tcase_add_test(tc, test_writer_commits_and_rolls_back);
    tcase_add_test(tc, test_readonly_hints);
    tcase_add_test(tc, test_schema_failures);
    suite_add_tcase(s, tc);
    return s;
}
