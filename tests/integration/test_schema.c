/*
 * test_schema.c - schema.sql against the real sqlite3 CLI (SPEC §2).
 *
 * Each test applies schema.sql to a fresh database in its own temp dir, then checks that bad
 * rows are refused at INSERT time with the documented message and good rows are accepted:
 * the producer's side of the contract. Every column the responder loads has a byte limit,
 * and the limits are store/event.h's: each is tried at the limit (accepted) and one byte
 * over (refused, the message naming column and limit), so schema.sql and the C code cannot
 * drift apart. Also: WAL mode, re-applying the schema is harmless, also to a database made
 * with an older schema.sql (whose triggers it replaces), DELETE records the pruned range,
 * UPDATE of events is refused.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/event.h"
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
    {"INSERT INTO events(session_id, type, node_id) VALUES ('s1', 'custom', 'n' || char(10));",
     "events.node_id must not contain control characters"},
    {"INSERT INTO events(session_id, type, execution_id) VALUES ('s1', 'custom', "
     "'e' || char(0) || 'x');", "events.execution_id must not contain control characters"},
    {"INSERT INTO events(session_id, type, correlation_id) VALUES ('s1', 'custom', "
     "char(127));", "events.correlation_id must not contain control characters"},
    {"INSERT INTO events(session_id, type, colony_id) VALUES ('s1', 'custom', 'a' || char(9));",
     "events.colony_id must not contain control characters"},
    {"INSERT INTO events(session_id, type, run_id) VALUES ('s1', 'custom', x'720072');",
     "events.run_id must not contain control characters"},
    {"INSERT INTO events(session_id, type) VALUES (x'7331', 'custom');",
     "events.session_id must be text"},
    {"INSERT INTO events(session_id, type) VALUES ('s1' || char(0) || 'x', 'custom');",
     "events.session_id: no such session"},
    {"INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', x'00');",
     "events.timestamp must be text or a number"},
    {"INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', NULL);",
     "events.timestamp must be text or a number"},
    {"INSERT INTO event_types(name) VALUES ('');", "event_types.name must be a non-empty text"},
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
            "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', "
            "1700000000), ('s1', 'custom', 1.5e300), ('s1', 'custom', -9223372036854775808);\n"
            "SELECT count(*), min(data), max(timestamp LIKE '____-__-__T__:__:__.___Z') "
            "FROM events;\n", &r);
    ck_assert_msg(r.status == 0, "refused: %s", r.out);
    ck_assert_msg(strstr(r.out, "6|{\"a\":[1,2]}|1") != NULL, "got: %s", r.out);
}
END_TEST

/* Every byte limit of the schema, as store/event.h states it. The value is max bytes of
 * text (a JSON string for data); prefix and suffix make the statement around it. */
static const struct {
    const char *column;         /* as the message names it */
    int max_bytes;
    bool is_json;               /* the value is a JSON string: '"' + max - 2 bytes + '"' */
    const char *prefix;
    const char *suffix;
} LIMITS[] = {
    {"events.type", EVENT_NAME_MAX, false,
     "INSERT INTO events(session_id, type) VALUES ('s1', ", ");"},
    {"events.stream_id", EVENT_NAME_MAX, false,
     "INSERT INTO events(session_id, type, stream_id) VALUES ('s1', 'custom', ", ");"},
    {"events.node_id", EVENT_ID_FIELD_MAX, false,
     "INSERT INTO events(session_id, type, node_id) VALUES ('s1', 'custom', ", ");"},
    {"events.execution_id", EVENT_ID_FIELD_MAX, false,
     "INSERT INTO events(session_id, type, execution_id) VALUES ('s1', 'custom', ", ");"},
    {"events.correlation_id", EVENT_ID_FIELD_MAX, false,
     "INSERT INTO events(session_id, type, correlation_id) VALUES ('s1', 'custom', ", ");"},
    {"events.colony_id", EVENT_ID_FIELD_MAX, false,
     "INSERT INTO events(session_id, type, colony_id) VALUES ('s1', 'custom', ", ");"},
    {"events.run_id", EVENT_ID_FIELD_MAX, false,
     "INSERT INTO events(session_id, type, run_id) VALUES ('s1', 'custom', ", ");"},
    {"events.timestamp", EVENT_TIMESTAMP_MAX, false,
     "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', ", ");"},
    {"events.data", EVENT_DATA_MAX, true,
     "INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', ", ");"},
    {"event_types.name", EVENT_NAME_MAX, false, "INSERT INTO event_types(name) VALUES (", ");"},
};

/* Runs LIMITS[i]'s statement with a value of bytes bytes. */
static void
insert_sized(int i, int bytes, struct publish_result *r)
{
    char value[96], sql[512];
    if (LIMITS[i].is_json)
        snprintf(value, sizeof(value), "'\"' || printf('%%.%dc', 'a') || '\"'", bytes - 2);
    else
        snprintf(value, sizeof(value), "printf('%%.%dc', 'x')", bytes);
    snprintf(sql, sizeof(sql), "%s%s%s\nSELECT 'rows', (SELECT count(*) FROM events), "
             "(SELECT count(*) FROM event_types);\n", LIMITS[i].prefix, value, LIMITS[i].suffix);
    run_cli(sql, r);
}

/* Exactly the limit is accepted, one byte more is refused with "<column> must be at most
 * <max> bytes", max being event.h's number: the schema and the C code agree. */
START_TEST(test_limits_are_event_h_limits)
{
    struct publish_result r;
    insert_sized(_i, LIMITS[_i].max_bytes, &r);
    ck_assert_msg(r.status == 0 && strstr(r.out, "rows|") != NULL, "%s of %d bytes (the "
                  "limit) refused: %.300s", LIMITS[_i].column, LIMITS[_i].max_bytes, r.out);
    insert_sized(_i, LIMITS[_i].max_bytes + 1, &r);
    char message[128];
    snprintf(message, sizeof(message), "%s must be at most %d bytes", LIMITS[_i].column,
             LIMITS[_i].max_bytes);
    ck_assert_msg(r.status != 0 && strstr(r.out, message) != NULL, "%s of %d bytes: expected "
                  "'%s', got: %.300s", LIMITS[_i].column, LIMITS[_i].max_bytes + 1, message,
                  r.out);
}
END_TEST

/* A database made with schema.sql as it was at 07674e4 (tests/conf/schema-07674e4.sql, that
 * file unchanged), which bounded neither timestamp nor the ids. Its triggers were CREATE
 * TRIGGER IF NOT EXISTS; applying today's schema.sql (twice) must still put today's checks
 * in place, and keep the rows, the ids and the site's own policy changes. */
START_TEST(test_reapply_over_older_schema)
{
    char old_db[TESTENV_PATH_MAX], sql[4 * TESTENV_PATH_MAX];
    testenv_path(&env, "old.db", old_db, sizeof(old_db));
    const char *conf = testenv_require("SSE_TEST_CONF"), *schema = testenv_require("SSE_SCHEMA");
    struct testenv old = env;
    snprintf(old.db_path, sizeof(old.db_path), "%s", old_db);
    snprintf(sql, sizeof(sql), ".read %s/schema-07674e4.sql\n"
             "INSERT INTO sessions(id) VALUES ('s1');\n"
             "UPDATE event_types SET replayed = 0 WHERE name = 'client_output_delta';\n"
             "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', "
             "printf('%%.65c', '1'));\n", conf);
    struct publish_result r;
    publish_sql(&old, sql, &r);
    ck_assert_msg(r.status == 0, "the old schema refused a 65-byte timestamp, so this is no "
                  "old database: %s", r.err);
    snprintf(sql, sizeof(sql), ".read %s\n.read %s\nSELECT 'rows', count(*), max(id) FROM "
             "events;\nSELECT 'replayed', replayed FROM event_types WHERE name = "
             "'client_output_delta';\nSELECT 'version', user_version FROM pragma_user_version;"
             "\n", schema, schema);
    publish_sql(&old, sql, &r);
    ck_assert_msg(r.status == 0, "applying schema.sql to the old database failed: %s", r.err);
    ck_assert_msg(strstr(r.out, "rows|1|1\nreplayed|0\nversion|1\n") != NULL, "got: %s",
                  r.out);
    publish_sql(&old, "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', "
                "'custom', printf('%.65c', '1'));\n", &r);
    ck_assert_msg(r.status != 0 && strstr(r.err, "events.timestamp must be at most 64 bytes")
                  != NULL, "the old trigger is still in place: %s", r.err);
    publish_sql(&old, "INSERT INTO events(session_id, type, node_id) VALUES ('s1', 'custom', "
                "'n1');\nSELECT 'id', max(id) FROM events;\n", &r);
    ck_assert_msg(r.status == 0 && strstr(r.out, "id|2\n") != NULL, "got: %s %s", r.out,
                  r.err);
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
    tcase_add_loop_test(tc, test_limits_are_event_h_limits, 0,
                        (int)(sizeof(LIMITS) / sizeof(LIMITS[0])));
    tcase_add_test(tc, test_reapply_over_older_schema);
    tcase_add_test(tc, test_wal_mode_and_reapply);
    tcase_add_test(tc, test_delete_records_pruned_range);
    tcase_add_test(tc, test_policy_seeded_from_reference);
    suite_add_tcase(s, tc);
    return s;
}
