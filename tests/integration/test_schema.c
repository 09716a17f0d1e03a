/*
 * test_schema.c - schema.sql against the real sqlite3 CLI (SPEC §2).
 *
 * Each test applies schema.sql to a fresh database in its own temp dir, then checks that bad
 * rows are refused at INSERT time with the documented message and good rows are accepted:
 * the producer's side of the contract. Also: WAL mode, re-applying the schema is harmless,
 * DELETE records the pruned range, UPDATE of events is refused.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/publish.h"
#include "tests/lib/testenv.h"

static struct testenv env;

/* Runs sql through the sqlite3 CLI; r->out holds its stdout followed by its stderr. */
static void
run_cli(const char *sql, struct publish_result *r)
{
    publish_sql(&env, sql, r);
    size_t len = strlen(r->out);
    snprintf(r->out + len, sizeof(r->out) - len, "%s", r->err);
}

/* A database made from schema.sql, with session s1 (testenv_open). */
static void
setup(void)
{
    testenv_open(&env);
}

static void
teardown(void)
{
    testenv_close(&env);
}

/* Bad rows and the message each must be refused with. */
static const struct {
    const char *sql;
    const char *message;
} REFUSED[] = {
    {"INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', '{bad');",
     "events.data must be valid JSON"},
    {"INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', NULL);",
     "events.data must be valid JSON"},
    {"INSERT INTO events(session_id, type) VALUES ('s1', '');",
     "events.type must be a non-empty text"},
    {"INSERT INTO events(session_id, type) VALUES ('s1', NULL);",
     "events.type must be a non-empty text"},
    {"INSERT INTO events(session_id, type) VALUES ('s1', 'a' || char(10) || 'b');",
     "events.type must not contain control characters"},
    {"INSERT INTO events(session_id, type) VALUES ('s1', 'a' || char(13));",
     "events.type must not contain control characters"},
    {"INSERT INTO events(session_id, type) VALUES ('s1', printf('%.129c', 'x'));",
     "events.type must be at most 128 bytes"},
    {"INSERT INTO events(session_id, type, stream_id) VALUES ('s1', 'custom', 'w' || char(10));",
     "events.stream_id must not contain control characters"},
    {"INSERT INTO events(session_id, type, stream_id) VALUES ('s1', 'custom', "
     "printf('%.129c', 'x'));", "events.stream_id must be at most 128 bytes"},
    {"INSERT INTO events(session_id, type) VALUES ('nope', 'custom');",
     "events.session_id: no such session"},
    {"UPDATE sessions SET closed_at = 'now' WHERE id = 's1';\n"
     "INSERT INTO events(session_id, type) VALUES ('s1', 'custom');",
     "events.session_id: session is closed"},
    {"INSERT INTO sessions(id) VALUES ('a/b');", "sessions.id must be 1-128 bytes"},
    {"INSERT INTO sessions(id) VALUES ('');", "sessions.id must be 1-128 bytes"},
    {"INSERT INTO sessions(id) VALUES (printf('%.129c', 'x'));", "sessions.id must be 1-128"},
    {"INSERT INTO events(session_id, type) VALUES ('s1', 'custom');\n"
     "UPDATE events SET type = 'other';", "events are append-only"},
};

START_TEST(test_bad_rows_refused_with_message)
{
    struct publish_result r;
    run_cli(REFUSED[_i].sql, &r);
    ck_assert_msg(r.status != 0, "accepted: %s", REFUSED[_i].sql);
    ck_assert_msg(strstr(r.out, REFUSED[_i].message) != NULL,
                  "for %s\nexpected message '%s', got: %s", REFUSED[_i].sql,
                  REFUSED[_i].message, r.out);
}
END_TEST

START_TEST(test_good_rows_accepted)
{
    struct publish_result r;
    run_cli("INSERT INTO events(session_id, type, stream_id, data) VALUES "
            "('s1', 'client_output_delta', 'worker:abc', '{\"a\":[1,2]}');\n"
            "INSERT INTO events(session_id, type) VALUES (NULL, 'crm_changed');\n"
            "INSERT INTO events(session_id, type, stream_id) VALUES "
            "('s1', 'custom', printf('%.128c', 'x'));\n"
            "SELECT count(*), min(data), max(timestamp LIKE '____-__-__T__:__:__.___Z') "
            "FROM events;\n", &r);
    ck_assert_msg(r.status == 0, "refused: %s", r.out);
    ck_assert_msg(strstr(r.out, "3|{\"a\":[1,2]}|1") != NULL, "got: %s", r.out);
}
END_TEST

START_TEST(test_wal_mode_and_reapply)
{
    char sql[600];
    snprintf(sql, sizeof(sql), "INSERT INTO event_types(name) VALUES ('mine');\n"
             "UPDATE event_types SET replayed = 0 WHERE name = 'client_output_delta';\n"
             ".read %s\nPRAGMA journal_mode;\nPRAGMA user_version;\n"
             "SELECT count(*) FROM event_types WHERE name = 'mine';\n"
             "SELECT replayed FROM event_types WHERE name = 'client_output_delta';\n",
             testenv_require("SSE_SCHEMA"));
    struct publish_result r;
    run_cli(sql, &r);
    ck_assert_msg(r.status == 0, "re-apply failed: %s", r.out);
    /* wal twice (schema.sql prints it, then the query), version 1, the site's own row and
     * its own flag survive re-applying the schema. */
    ck_assert_msg(strstr(r.out, "wal\nwal\n1\n1\n0\n") != NULL, "got: %s", r.out);
}
END_TEST

START_TEST(test_delete_records_pruned_range)
{
    struct publish_result r;
    run_cli("INSERT INTO sessions(id) VALUES ('s2');\n"
            "INSERT INTO events(session_id, type) VALUES ('s1','a'),('s1','b'),('s2','c'),"
            "(NULL,'d'),('s1','e');\n"
            "DELETE FROM events WHERE id <= 4;\n"
            "SELECT scope || '=' || through_id FROM pruned ORDER BY scope;\n", &r);
    ck_assert_msg(r.status == 0, "failed: %s", r.out);
    ck_assert_msg(strstr(r.out, "=4\ns1=2\ns2=3\n") != NULL, "got: %s", r.out);
}
END_TEST

START_TEST(test_policy_seeded_from_reference)
{
    struct publish_result r;
    run_cli("SELECT count(*) FROM event_types WHERE streamed_by_default;\n"
            "SELECT group_concat(name) FROM (SELECT name FROM event_types WHERE replayed "
            "ORDER BY name);\n"
            "SELECT group_concat(name) FROM (SELECT name FROM event_types WHERE worker_fanin "
            "ORDER BY name);\n"
            "SELECT count(*) FROM event_types WHERE critical;\n", &r);
    ck_assert_msg(r.status == 0, "failed: %s", r.out);
    /* The reference route: 33 default types, 9 replay types, 3 fan-in types, 11 critical. */
    ck_assert_msg(strstr(r.out, "33\nclient_input_received,client_input_requested,"
                         "client_output_delta,execution_started,trigger_activated,"
                         "trigger_available,trigger_deactivated,trigger_removed,"
                         "trigger_updated\nexecution_completed,execution_failed,"
                         "subagent_report\n11\n") != NULL, "got: %s", r.out);
}
END_TEST

Suite *suite_schema(void);

Suite *
suite_schema(void)
{
    Suite *s = suite_create("schema");
    TCase *tc = tcase_create("schema");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_loop_test(tc, test_bad_rows_refused_with_message, 0,
                        (int)(sizeof(REFUSED) / sizeof(REFUSED[0])));
    tcase_add_test(tc, test_good_rows_accepted);
    tcase_add_test(tc, test_wal_mode_and_reapply);
    tcase_add_test(tc, test_delete_records_pruned_range);
    tcase_add_test(tc, test_policy_seeded_from_reference);
    suite_add_tcase(s, tc);
    return s;
}
