/*
 * test_check.c - `sse-fcgi --check`, run as a user runs it after deploying (issue 6).
 *
 * The built binary runs as a command, as root or, through tests/lib/command.h, as www-data
 * or nobody (the suite runs as root), on databases the sqlite3 CLI made: a good one, one in
 * the documented group-writable setup, a missing file, a file without the schema, a file
 * that is no database, a rollback-journal database, one without read_tokens under
 * SSE_AUTH=token, a file the user cannot read, a directory the user cannot write (with and
 * without -wal/-shm present), a world-writable database and directory (sticky or not: a
 * WARN, exit 0), no SSE_DB, a bad SSE_* value, bad options. Each test checks the exit
 * status, the exact ok/WARN/FAIL lines that matter, their hints and the verdict.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/lib/command.h"
#include "tests/lib/diag.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/testenv.h"

static struct command_result result;  /* 32 KiB, off the stack */

/* Runs `sse-fcgi --check` with args (NULL-terminated, or NULL), as user (NULL: root), with
 * SSE_DB set to db (NULL: unset) and one more variable extra_env0=extra_env1 (or NULL). */
static int
run_check(const char *user, const char *db, const char *const *args, const char *extra_env0,
          const char *extra_env1)
{
    const char *env[] = {"SSE_DB", db, extra_env0, extra_env1, NULL};
    const char *argv[8] = {"--check"};
    for (size_t i = 0; args != NULL && args[i] != NULL && i < 6; i++)
        argv[i + 1] = args[i];
    return command_run(&test_env, argv, &(struct command_options){.env = env, .user = user},
                       &result);
}

static void
expect_status(int status)
{
    command_expect_status(&result, status);
}

static void
expect_line(const char *prefix, const char *also)
{
    command_expect_line(&result, prefix, also);
}

static void
expect_no(const char *needle)
{
    command_expect_no(&result, needle);
}

START_TEST(test_good_database)
{
    publish_ok(&test_env, "INSERT INTO sessions(id) VALUES ('s2');\n"
               "INSERT INTO events(session_id, type) VALUES ('s1', 'llm_text_delta'), "
               "('s2', 'llm_text_delta'), (NULL, 'crm_changed');\n"
               "UPDATE sessions SET closed_at = 'x' WHERE id = 's2';\n");
    run_check(NULL, test_env.db_path, NULL, NULL, NULL);
    expect_status(0);
    expect_line("sse-fcgi --check: as user root (uid 0, group root)", NULL);
    expect_line("note: root may read and write anything", "sudo -u www-data");
    expect_line("ok   settings: every SSE_* variable set here is valid", NULL);
    expect_line("ok   hub: /dev/shm is writable: one hub per host", NULL);
    expect_line("ok   database: ", "(from SSE_DB)");
    expect_line("ok   file: ", "is readable by root (mode 0644, owner root:root)");
    expect_line("ok   open: opened read-only as the responder opens it; a query ran", NULL);
    expect_line("ok   schema: version 1; tables events, sessions, event_types, pruned, "
                "read_tokens; trigger events_record_prune", NULL);
    expect_line("ok   journal: journal_mode is wal", NULL);
    expect_line("ok   wal access: root can write ", NULL);
    expect_line("ok   permissions: no one but owners and groups can write ", NULL);
    expect_line("ok   events: newest event id 3; sessions: 1 open, 1 closed", NULL);
    expect_line("verdict: ok, all 10 checks passed", NULL);
    expect_no("FAIL");
}
END_TEST

/* DEPLOY-NOTES Q11's setup, checked as www-data, with the `check` spelling and --db. */
START_TEST(test_documented_permissions_as_www_data)
{
    testenv_place_database(&test_env, 02775, 0664, testenv_www_data_gid());
    command_run(&test_env, (const char *const[]){"check", "--db", test_env.db_path, NULL},
                &(struct command_options){.user = "www-data"}, &result);
    expect_status(0);
    expect_line("sse-fcgi --check: as user www-data", NULL);
    expect_no("note: root");
    expect_line("ok   database: ", "(from --db)");
    expect_line("ok   file: ", "readable by www-data (mode 0664, owner root:www-data)");
    expect_line("ok   wal access: www-data can write ", "create");
    expect_line("ok   permissions: ", NULL);
    expect_line("verdict: ok, all 10 checks passed", NULL);
}
END_TEST

/* Issue 12: a hub directory this user cannot write is a warning (streams work, each
 * process with a hub of its own), with what to do; off is fine. */
START_TEST(test_hub_dir_unwritable_warns)
{
    testenv_place_database(&test_env, 02775, 0664, testenv_www_data_gid());
    char dir[TESTENV_PATH_MAX];
    testenv_path(&test_env, "root-only", dir, sizeof(dir));
    DIAG_CHECK(mkdir(dir, 0755) == 0, "mkdir %s", dir);
    run_check("www-data", test_env.db_path, NULL, "SSE_HUB_DIR", dir);
    expect_status(0);
    char line[TESTENV_PATH_MAX + 160];
    snprintf(line, sizeof(line), "WARN hub: %s: Permission denied: every process would keep "
             "a hub of its own and read the database itself", dir);
    expect_line(line, NULL);
    expect_line("     hint: set SSE_HUB_DIR to a directory this user can write", NULL);
    expect_line("verdict: ok, all 10 checks passed; 1 with a warning (hub)", NULL);
    run_check("www-data", test_env.db_path, NULL, "SSE_HUB_DIR", "off");
    expect_line("ok   hub: SSE_HUB_DIR=off: every process keeps a hub of its own", NULL);
}
END_TEST

/* Issue 11: a 0666 database in a 0777 directory passed. Anyone on the host could add events
 * and read tokens, or put another file in the database's place: a warning, not a failure
 * (exit 0), with the fix. */
START_TEST(test_world_writable_warns)
{
    testenv_place_database(&test_env, 0777, 0666, (gid_t)-1);
    run_check("www-data", test_env.db_path, NULL, NULL, NULL);
    expect_status(0);
    char line[TESTENV_PATH_MAX + 128];
    snprintf(line, sizeof(line), "WARN permissions: %s (mode 0666)", test_env.db_path);
    expect_line(line, ": writable by every user, so anyone on this host can add events and "
                "read tokens");
    expect_line("WARN permissions: ", "/data is writable by every user and not sticky (mode "
                "0777): anyone can rename or delete the database and put another file in its "
                "place");
    expect_line("     hint: chmod o-w ", "/data");
    expect_line("verdict: ok, all 10 checks passed; 1 with a warning (permissions)", NULL);
    expect_no("FAIL");
}
END_TEST

/* A sticky world-writable directory (like /tmp) keeps others from renaming the database,
 * but not from creating a -wal or -shm before SQLite does: still a warning, saying why. */
START_TEST(test_sticky_world_writable_directory_warns)
{
    testenv_place_database(&test_env, 01777, 0664, (gid_t)-1);
    run_check("www-data", test_env.db_path, NULL, NULL, NULL);
    expect_status(0);
    expect_line("WARN permissions: ", "/data is writable by every user (mode 1777, sticky): "
                "others cannot rename or delete the database, but anyone can create a missing "
                "-wal or -shm there, which SQLite would then use");
    expect_no("anyone on this host can add events");
    expect_line("verdict: ok, all 10 checks passed; 1 with a warning (permissions)", NULL);
}
END_TEST

/* A directory above the database that anyone may write, without the sticky bit: anyone
 * can rename it and put a directory with another database in its place. */
START_TEST(test_world_writable_parent_warns)
{
    testenv_place_database(&test_env, 02775, 0664, testenv_www_data_gid());
    DIAG_CHECK(chmod(test_env.dir, 0777) == 0, "chmod: %s", strerror(errno));
    run_check("www-data", test_env.db_path, NULL, NULL, NULL);
    expect_status(0);
    char line[TESTENV_PATH_MAX + 128];
    snprintf(line, sizeof(line), "WARN permissions: %s, above the database, is writable by "
             "every user and not sticky (mode 0777): anyone can rename or delete it",
             test_env.dir);
    expect_line(line, NULL);
    expect_no("/data is writable");
}
END_TEST

START_TEST(test_missing_file)
{
    char path[TESTENV_PATH_MAX];
    testenv_path(&test_env, "missing.db", path, sizeof(path));
    run_check(NULL, path, NULL, NULL, NULL);
    expect_status(1);
    expect_line("FAIL file: ", "No such file or directory");
    expect_line("     hint: create it as the producers' user (sqlite3 ", "< schema.sql)");
    expect_line("--   open: not checked", NULL);
    expect_line("--   schema: not checked", NULL);
    expect_line("--   events: not checked", NULL);
    expect_line("verdict: FAIL, 1 of 6 checks failed (file); 4 not run", NULL);
    DIAG_CHECK(access(path, F_OK) != 0, "--check created %s", path);
}
END_TEST

START_TEST(test_file_without_schema)
{
    char path[TESTENV_PATH_MAX], sql[TESTENV_PATH_MAX + 64];
    testenv_path(&test_env, "plain.db", path, sizeof(path));
    snprintf(sql, sizeof(sql), ".open %s\nCREATE TABLE t(x);\n", path);
    publish_ok(&test_env, sql);
    run_check(NULL, path, NULL, NULL, NULL);
    expect_status(1);
    expect_line("ok   open: ", NULL);
    expect_line("FAIL schema: database has no sse-fcgi schema (user_version 0): apply "
                "schema.sql", NULL);
    expect_line("     hint: apply the schema as the producers' user: sqlite3 ", "schema.sql");
    expect_line("verdict: FAIL, 1 of ", "(schema)");
}
END_TEST

START_TEST(test_file_that_is_no_database)
{
    char path[TESTENV_PATH_MAX];
    testenv_path(&test_env, "notes.db", path, sizeof(path));
    const char text[] = "these are not the pages you are looking for\n";
    testenv_write_file(path, text, sizeof(text) - 1);
    run_check(NULL, path, NULL, NULL, NULL);
    expect_status(1);
    expect_line("FAIL open: ", "file is not a database");
    expect_line("     hint: is it an SQLite database? sqlite3 ", "integrity_check");
}
END_TEST

START_TEST(test_rollback_journal_database)
{
    publish_ok(&test_env, "PRAGMA journal_mode = DELETE;\n");
    run_check(NULL, test_env.db_path, NULL, NULL, NULL);
    expect_status(1);
    expect_line("ok   schema: version 1", NULL);
    expect_line("FAIL journal: journal_mode is not wal", NULL);
    expect_line("     hint: as the producers' user: sqlite3 ", "'PRAGMA journal_mode=WAL'");
    expect_line("verdict: FAIL, 1 of 10 checks failed (journal); 0 not run", NULL);
}
END_TEST

START_TEST(test_token_auth_needs_read_tokens)
{
    publish_ok(&test_env, "DROP TABLE read_tokens;\n");
    run_check(NULL, test_env.db_path, NULL, NULL, NULL);
    expect_status(0);
    expect_line("ok   schema: ", "(no read_tokens: SSE_AUTH=token needs it)");
    run_check(NULL, test_env.db_path, NULL, "SSE_AUTH", "token");
    expect_status(1);
    expect_line("ok   crypto: libcrypto.so.3 loads (SSE_AUTH needs it)", NULL);
    expect_line("FAIL schema: no read_tokens table, which SSE_AUTH=token needs", NULL);
}
END_TEST

START_TEST(test_unreadable_file_as_nobody)
{
    testenv_place_database(&test_env, 0755, 0600, (gid_t)-1);
    run_check("nobody", test_env.db_path, NULL, NULL, NULL);
    expect_status(1);
    expect_line("sse-fcgi --check: as user nobody", NULL);
    expect_line("FAIL file: nobody cannot read ", "(mode 0600, owner root:root)");
    expect_line("     hint: give nobody read access", NULL);
    expect_line("--   open: not checked: no readable file", NULL);
    expect_line("FAIL wal access: nobody cannot write ", NULL);
    expect_line("verdict: FAIL, 2 of 6 checks failed (file, wal access); 4 not run", NULL);
}
END_TEST

/* DEPLOY-NOTES §9: readable, but the directory is not writable and no -wal/-shm exist:
 * the responder's own first query fails. */
START_TEST(test_unwritable_directory_as_www_data)
{
    testenv_place_database(&test_env, 0755, 0644, (gid_t)-1);
    run_check("www-data", test_env.db_path, NULL, NULL, NULL);
    expect_status(1);
    expect_line("ok   file: ", "readable by www-data");
    expect_line("FAIL open: ", "attempt to write a readonly database");
    expect_line("     hint: www-data must be able to create the -wal and -shm files", NULL);
    expect_line("FAIL wal access: www-data cannot write ", "-shm is missing");
    expect_line("     hint: let www-data write the directory: chgrp www-data ", "2775");
    expect_line("verdict: FAIL, 2 of 7 checks failed (open, wal access); 3 not run", NULL);
}
END_TEST

/* The same, but -wal and -shm were left behind (persist_wal): reads work now, and the
 * check says why that is not a deployment. */
START_TEST(test_unwritable_directory_with_wal_files)
{
    publish_ok(&test_env, ".filectrl persist_wal 1\nSELECT count(*) FROM events;\n");
    testenv_place_database(&test_env, 0755, 0644, (gid_t)-1);
    char wal[TESTENV_PATH_MAX], shm[TESTENV_PATH_MAX];
    testenv_path(&test_env, "events.db-wal", wal, sizeof(wal));
    testenv_path(&test_env, "events.db-shm", shm, sizeof(shm));
    char wal_to[TESTENV_PATH_MAX + 8], shm_to[TESTENV_PATH_MAX + 8];
    snprintf(wal_to, sizeof(wal_to), "%s-wal", test_env.db_path);
    snprintf(shm_to, sizeof(shm_to), "%s-shm", test_env.db_path);
    DIAG_CHECK(rename(wal, wal_to) == 0 && rename(shm, shm_to) == 0, "no -wal/-shm left "
               "behind: %s", strerror(errno));
    run_check("www-data", test_env.db_path, NULL, NULL, NULL);
    expect_status(1);
    expect_line("ok   open: ", NULL);
    expect_line("ok   events: newest event id 0; sessions: 1 open, 0 closed", NULL);
    expect_line("FAIL wal access: www-data cannot write ", "reads work only while");
    expect_line("verdict: FAIL, 1 of 10 checks failed (wal access); 0 not run", NULL);
}
END_TEST

START_TEST(test_no_database_given)
{
    run_check(NULL, NULL, NULL, NULL, NULL);
    expect_status(1);
    expect_line("FAIL database: SSE_DB is not set and no --db was given", NULL);
    expect_line("     hint: give the path the web server gives the responder", NULL);
    expect_no("file:");
    expect_line("verdict: FAIL, 1 of 3 checks failed (database); 0 not run", NULL);
}
END_TEST

START_TEST(test_bad_setting)
{
    run_check(NULL, test_env.db_path, NULL, "SSE_THREADS", "0");
    expect_status(1);
    expect_line("FAIL settings: SSE_THREADS: out of range", NULL);
    expect_line("     hint: fix SSE_THREADS where the web server sets it", NULL);
    expect_line("ok   journal: journal_mode is wal", NULL);
    expect_line("verdict: FAIL, 1 of 10 checks failed (settings); 0 not run", NULL);
}
END_TEST

START_TEST(test_usage_errors)
{
    run_check(NULL, test_env.db_path, (const char *const[]){"--bogus", NULL}, NULL, NULL);
    expect_status(2);
    DIAG_CHECK(strstr(result.err, "--bogus: unknown option") != NULL, "stderr: %s",
               result.err);
    DIAG_CHECK(result.out[0] == '\0', "stdout: %s", result.out);
    run_check(NULL, test_env.db_path, (const char *const[]){"--db", NULL}, NULL, NULL);
    expect_status(2);
    DIAG_CHECK(strstr(result.err, "--db: this option needs a value") != NULL, "stderr: %s",
               result.err);
    run_check(NULL, test_env.db_path, (const char *const[]){"--help", NULL}, NULL, NULL);
    expect_status(0);
    expect_line("usage: sse-fcgi --check [--db PATH]", NULL);
}
END_TEST

/* The binary's own usage: asked for (--help) on stdout, exit 0; a wrong word on stderr,
 * exit 2 (a shell script's `sse-fcgi --help | less` works, a typo fails). */
START_TEST(test_top_level_usage)
{
    struct command_result r;
    command_run(&test_env, (const char *const[]){"--help", NULL}, NULL, &r);
    command_expect_status(&r, 0);
    command_expect_line(&r, "usage: sse-fcgi ", "serve");
    command_expect_line(&r, "       sse-fcgi prune ", NULL);
    command_run(&test_env, (const char *const[]){"--chek", NULL}, NULL, &r);
    command_expect_status(&r, 2);
    DIAG_CHECK(r.out[0] == '\0' && strstr(r.err, "usage: sse-fcgi ") != NULL,
               "stdout: %s\nstderr: %s", r.out, r.err);
}
END_TEST

Suite *suite_check(void);

Suite *
suite_check(void)
{
    Suite *s = suite_create("check");
    TCase *tc = server_tcase_create("check");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_good_database);
    tcase_add_test(tc, test_top_level_usage);
    tcase_add_test(tc, test_documented_permissions_as_www_data);
    tcase_add_test(tc, test_world_writable_warns);
    tcase_add_test(tc, test_hub_dir_unwritable_warns);
    tcase_add_test(tc, test_sticky_world_writable_directory_warns);
    tcase_add_test(tc, test_world_writable_parent_warns);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_file_without_schema);
    tcase_add_test(tc, test_file_that_is_no_database);
    tcase_add_test(tc, test_rollback_journal_database);
    tcase_add_test(tc, test_token_auth_needs_read_tokens);
    tcase_add_test(tc, test_unreadable_file_as_nobody);
    tcase_add_test(tc, test_unwritable_directory_as_www_data);
    tcase_add_test(tc, test_unwritable_directory_with_wal_files);
    tcase_add_test(tc, test_no_database_given);
    tcase_add_test(tc, test_bad_setting);
    tcase_add_test(tc, test_usage_errors);
    suite_add_tcase(s, tc);
    return s;
}
