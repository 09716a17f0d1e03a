/*
 * test_pg_schema.c - deploy/postgresql/schema.sql against a real PostgreSQL (pg.h) and the
 * real psql, beside schema.sql and the real sqlite3 CLI.
 *
 * Each test starts its own PostgreSQL with the schema applied and session s1, as testenv
 * makes the SQLite database. Parity: every refusal of schema.sql that PostgreSQL can express
 * is tried in both through their CLIs, and both must refuse with the same message, leave the
 * tables as they were and take a good row after it; rows both accept are stored alike; the
 * differences the schema's top comment names hold as written. Then what the relay relies
 * on: ids in order, sessions.log_id from the same sequence, NOTIFY at commit, and the
 * ordering trap: concurrent producers against a naive `id > last` reader lose nothing, while
 * the same run on a plain sequence (the control) loses ids, so the test can fail.
 */
#include <check.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/event.h"
#include "tests/lib/diag.h"
#include "tests/lib/pg.h"
#include "tests/lib/publish.h"
#include "tests/lib/testenv.h"

enum {
    MESSAGE_MAX = 256,
    NOTIFY_WAIT_MS = 5000,
    TRAP_PRODUCERS = 8,
    TRAP_HOLD_MAX_MS = 20,          /* a producer holds its transaction open 0..this */
    TRAP_DEFAULT_MS = 3000,         /* PG_TRAP_MS */
};

static struct testenv env;
static struct pg pg;
static struct publish_result lite;      /* the sqlite3 CLI's last run; 16 KiB, off the stack */
static struct pg_result post;           /* psql's last run */
static char sql_buf[EVENT_DATA_MAX + 8192];  /* one rendered statement (1 MiB of data) */

/* s1 in both databases: testenv_open makes it in SQLite. */
static void
setup(void)
{
    testenv_open(&env);
    pg_start(&pg, &env);
    pg_apply_schema(&pg);
    pg_psql_ok(&pg, "INSERT INTO sessions(id) VALUES ('s1');");
}

static void
teardown(void)
{
    pg_stop(&pg);
    testenv_close(&env);
}

/* ------------------------------------------------------------------------------------- */
/* Refusal parity */

enum value_kind {
    VALUE_NONE,         /* the statement has no '@' */
    VALUE_TEXT,         /* the bytes of text (control bytes raw inside the literal) */
    VALUE_X,            /* bytes 'x's */
    VALUE_JSON_STRING,  /* a JSON string of bytes bytes: '"', bytes - 2 'a's, '"' */
    VALUE_NESTED,       /* bytes '[' then bytes ']': JSON nested that deep */
};

/* Bad rows: setup (may be NULL) runs first and must pass; then sql, where '@' stands for the
 * value's literal, must be refused by both with message. Only standard SQL, so that one
 * text serves both CLIs. Refusals PostgreSQL cannot express (NUL, BLOBs) are in
 * DIFFERENCES. */
static const struct {
    const char *setup;
    const char *sql;
    enum value_kind kind;
    const char *text;
    int bytes;
    const char *message;
} REFUSED[] = {
    {NULL, "INSERT INTO events(session_id, type) VALUES ('s1', '');", VALUE_NONE, NULL, 0,
     "events.type must be a non-empty text"},
    {NULL, "INSERT INTO events(session_id, type) VALUES ('s1', NULL);", VALUE_NONE, NULL, 0,
     "events.type must be a non-empty text"},
    {NULL, "INSERT INTO events(session_id, type) VALUES ('s1', @);", VALUE_X, NULL,
     EVENT_NAME_MAX + 1, "events.type must be at most 128 bytes"},
    {NULL, "INSERT INTO events(session_id, type) VALUES ('s1', @);", VALUE_TEXT, "a\nb", 0,
     "events.type must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type) VALUES ('s1', @);", VALUE_TEXT, "a\r", 0,
     "events.type must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type) VALUES ('s1', @);", VALUE_TEXT, "\x7f", 0,
     "events.type must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type) VALUES ('s1', @);", VALUE_TEXT, "a\x01" "b",
     0, "events.type must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type, stream_id) VALUES ('s1', 'custom', @);",
     VALUE_X, NULL, EVENT_NAME_MAX + 1, "events.stream_id must be at most 128 bytes"},
    {NULL, "INSERT INTO events(session_id, type, stream_id) VALUES ('s1', 'custom', @);",
     VALUE_TEXT, "w\n", 0, "events.stream_id must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type, node_id) VALUES ('s1', 'custom', @);",
     VALUE_X, NULL, EVENT_ID_FIELD_MAX + 1, "events.node_id must be at most 256 bytes"},
    {NULL, "INSERT INTO events(session_id, type, node_id) VALUES ('s1', 'custom', @);",
     VALUE_TEXT, "n\x1f", 0, "events.node_id must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type, execution_id) VALUES ('s1', 'custom', @);",
     VALUE_X, NULL, EVENT_ID_FIELD_MAX + 1, "events.execution_id must be at most 256 bytes"},
    {NULL, "INSERT INTO events(session_id, type, execution_id) VALUES ('s1', 'custom', @);",
     VALUE_TEXT, "e\x01" "x", 0, "events.execution_id must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type, correlation_id) VALUES ('s1', 'custom', @);",
     VALUE_X, NULL, EVENT_ID_FIELD_MAX + 1, "events.correlation_id must be at most 256 bytes"},
    {NULL, "INSERT INTO events(session_id, type, correlation_id) VALUES ('s1', 'custom', @);",
     VALUE_TEXT, "\x7f", 0, "events.correlation_id must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type, colony_id) VALUES ('s1', 'custom', @);",
     VALUE_X, NULL, EVENT_ID_FIELD_MAX + 1, "events.colony_id must be at most 256 bytes"},
    {NULL, "INSERT INTO events(session_id, type, colony_id) VALUES ('s1', 'custom', @);",
     VALUE_TEXT, "a\t", 0, "events.colony_id must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type, run_id) VALUES ('s1', 'custom', @);",
     VALUE_X, NULL, EVENT_ID_FIELD_MAX + 1, "events.run_id must be at most 256 bytes"},
    {NULL, "INSERT INTO events(session_id, type, run_id) VALUES ('s1', 'custom', @);",
     VALUE_TEXT, "r\x1b[0m", 0, "events.run_id must not contain control characters"},
    {NULL, "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', @);",
     VALUE_X, NULL, EVENT_TIMESTAMP_MAX + 1, "events.timestamp must be at most 64 bytes"},
    {NULL, "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', NULL);",
     VALUE_NONE, NULL, 0, "events.timestamp must be text or a number"},
    {NULL, "INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', @);",
     VALUE_JSON_STRING, NULL, EVENT_DATA_MAX + 1, "events.data must be at most 1048576 bytes"},
    {NULL, "INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', '{bad');",
     VALUE_NONE, NULL, 0, "events.data must be valid JSON (json_valid failed)"},
    {NULL, "INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', NULL);",
     VALUE_NONE, NULL, 0, "events.data must be valid JSON (json_valid failed)"},
    {NULL, "INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', '');",
     VALUE_NONE, NULL, 0, "events.data must be valid JSON (json_valid failed)"},
    {NULL, "INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', '[1,]');",
     VALUE_NONE, NULL, 0, "events.data must be valid JSON (json_valid failed)"},
    {NULL, "INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', '{''a'': 1}');",
     VALUE_NONE, NULL, 0, "events.data must be valid JSON (json_valid failed)"},
    {NULL, "INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', @);",
     VALUE_TEXT, "\"a\tb\"", 0, "events.data must be valid JSON (json_valid failed)"},
    /* json_valid's JSON_MAX_DEPTH is 2000 */
    {NULL, "INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', @);",
     VALUE_NESTED, NULL, 2001, "events.data must be valid JSON (json_valid failed)"},
    {NULL, "INSERT INTO events(session_id, type) VALUES ('nope', 'custom');", VALUE_NONE,
     NULL, 0, "events.session_id: no such session; INSERT INTO sessions(id) first"},
    {"INSERT INTO sessions(id) VALUES ('c1');\n"
     "UPDATE sessions SET closed_at = 'now' WHERE id = 'c1';\n",
     "INSERT INTO events(session_id, type) VALUES ('c1', 'custom');", VALUE_NONE, NULL, 0,
     "events.session_id: session is closed; no more events may be added"},
    /* the first failing check speaks, in schema.sql's order */
    {NULL, "INSERT INTO events(session_id, type, data) VALUES ('nope', @, '{bad');",
     VALUE_TEXT, "a\n", 0, "events.type must not contain control characters"},
    {NULL, "INSERT INTO sessions(id) VALUES ('a/b');", VALUE_NONE, NULL, 0,
     "sessions.id must be 1-128 bytes of A-Z a-z 0-9 . _ : -"},
    {NULL, "INSERT INTO sessions(id) VALUES ('');", VALUE_NONE, NULL, 0,
     "sessions.id must be 1-128 bytes of A-Z a-z 0-9 . _ : -"},
    {NULL, "INSERT INTO sessions(id) VALUES (NULL);", VALUE_NONE, NULL, 0,
     "sessions.id must be 1-128 bytes of A-Z a-z 0-9 . _ : -"},
    {NULL, "INSERT INTO sessions(id) VALUES (@);", VALUE_X, NULL, 129,
     "sessions.id must be 1-128 bytes of A-Z a-z 0-9 . _ : -"},
    {NULL, "INSERT INTO sessions(id) VALUES (@);", VALUE_TEXT, "caf\xc3\xa9", 0,
     "sessions.id must be 1-128 bytes of A-Z a-z 0-9 . _ : -"},
    {NULL, "INSERT INTO sessions(id) VALUES (@);", VALUE_TEXT, "s\n", 0,
     "sessions.id must be 1-128 bytes of A-Z a-z 0-9 . _ : -"},
    {"INSERT INTO events(session_id, type) VALUES ('s1', 'custom');\n",
     "UPDATE events SET type = 'other';", VALUE_NONE, NULL, 0,
     "events are append-only: UPDATE is refused (DELETE to prune)"},
    {NULL, "INSERT INTO event_types(name) VALUES ('');", VALUE_NONE, NULL, 0,
     "event_types.name must be a non-empty text"},
    {NULL, "INSERT INTO event_types(name) VALUES (NULL);", VALUE_NONE, NULL, 0,
     "event_types.name must be a non-empty text"},
    {NULL, "INSERT INTO event_types(name) VALUES (@);", VALUE_X, NULL, EVENT_NAME_MAX + 1,
     "event_types.name must be at most 128 bytes"},
};

/* Rows both take, and a query whose answer must be the same in both: the limits exactly,
 * numbers for text columns (both store their text), JSON at json_valid's depth. */
static const struct {
    const char *sql;
    enum value_kind kind;
    int bytes;
    const char *query;
} ACCEPTED[] = {
    {"INSERT INTO events(session_id, type) VALUES ('s1', @);", VALUE_X, EVENT_NAME_MAX,
     "SELECT length(type) FROM events ORDER BY id DESC LIMIT 1;"},
    {"INSERT INTO events(session_id, type, run_id) VALUES ('s1', 'custom', @);", VALUE_X,
     EVENT_ID_FIELD_MAX, "SELECT length(run_id) FROM events ORDER BY id DESC LIMIT 1;"},
    {"INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', @);", VALUE_X,
     EVENT_TIMESTAMP_MAX, "SELECT length(timestamp) FROM events ORDER BY id DESC LIMIT 1;"},
    {"INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', @);",
     VALUE_JSON_STRING, EVENT_DATA_MAX,
     "SELECT length(data) FROM events ORDER BY id DESC LIMIT 1;"},
    {"INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', @);", VALUE_NESTED,
     2000, "SELECT length(data) FROM events ORDER BY id DESC LIMIT 1;"},
    {"INSERT INTO events(session_id, type, data) VALUES ('s1', 'custom', "
     "'{\"a\":\"\\u0000]\\\"\", \"b\":[1e400, -0, \"\\ud800\"]}');", VALUE_NONE, 0,
     "SELECT data FROM events ORDER BY id DESC LIMIT 1;"},
    {"INSERT INTO event_types(name) VALUES (@);", VALUE_X, EVENT_NAME_MAX,
     "SELECT count(*) FROM event_types WHERE length(name) = 128;"},
    {"INSERT INTO sessions(id) VALUES (@);", VALUE_X, 128,
     "SELECT count(*) FROM sessions WHERE length(id) = 128;"},
    {"INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 5, 1700000000);",
     VALUE_NONE, 0, "SELECT type || ' ' || timestamp FROM events ORDER BY id DESC LIMIT 1;"},
    {"INSERT INTO sessions(id) VALUES (42);", VALUE_NONE, 0,
     "SELECT id FROM sessions WHERE id = '42';"},
    {"INSERT INTO events(session_id, type) VALUES (NULL, 'crm_changed');", VALUE_NONE, 0,
     "SELECT count(*) FROM events WHERE session_id IS NULL;"},
};

/* Appends the SQL literal of a value: quoted, '' for '. */
static void
append_literal(char *out, size_t size, size_t *len, enum value_kind kind, const char *text,
               int bytes)
{
    size_t need = kind == VALUE_TEXT ? 2 * strlen(text)
                  : (kind == VALUE_NESTED ? 2 : 1) * (size_t)bytes;
    need += 3;  /* the quotes and the NUL */
    DIAG_CHECK(*len + need < size, "a value of %d bytes does not fit", bytes);
    out[(*len)++] = '\'';
    if (kind == VALUE_TEXT) {
        for (const char *c = text; *c != '\0'; c++) {
            if (*c == '\'')
                out[(*len)++] = '\'';
            out[(*len)++] = *c;
        }
    } else if (kind == VALUE_X) {
        memset(out + *len, 'x', (size_t)bytes);
        *len += (size_t)bytes;
    } else if (kind == VALUE_JSON_STRING) {
        out[*len] = '"';
        memset(out + *len + 1, 'a', (size_t)bytes - 2);
        out[*len + (size_t)bytes - 1] = '"';
        *len += (size_t)bytes;
    } else {
        memset(out + *len, '[', (size_t)bytes);
        memset(out + *len + bytes, ']', (size_t)bytes);
        *len += 2 * (size_t)bytes;
    }
    out[(*len)++] = '\'';
}

/* Renders prefix, then sql with '@' replaced by the value's literal, into sql_buf. Returns
 * sql_buf. */
static const char *
render(const char *prefix, const char *sql, enum value_kind kind, const char *text, int bytes)
{
    const char *at = strchr(sql, '@');
    DIAG_CHECK((at != NULL) == (kind != VALUE_NONE), "'@' and the value disagree: %s", sql);
    size_t len = (size_t)snprintf(sql_buf, sizeof(sql_buf), "%s%.*s", prefix,
                                  at ? (int)(at - sql) : (int)strlen(sql), sql);
    if (at == NULL)
        return sql_buf;
    append_literal(sql_buf, sizeof(sql_buf), &len, kind, text, bytes);
    DIAG_CHECK(len + strlen(at + 1) < sizeof(sql_buf), "statement too long");
    memcpy(sql_buf + len, at + 1, strlen(at + 1) + 1);
    return sql_buf;
}

/* Runs sql through both CLIs: lite and post hold their results. */
static void
run_both(const char *sql)
{
    publish_sql(&env, sql, &lite);
    pg_psql(&pg, sql, &post);
}

/* What both tables look like: row counts. */
static const char FINGERPRINT[] = "SELECT (SELECT count(*) FROM events), (SELECT count(*) "
    "FROM sessions), (SELECT count(*) FROM event_types), (SELECT count(*) FROM pruned);\n";

/* The events count of line (a FINGERPRINT's) of out, 0 the first; -1 when there is none. */
static long long
events_in(const char *out, int line)
{
    for (; line > 0 && out != NULL; line--) {
        out = strchr(out, '\n');
        out = out != NULL ? out + 1 : NULL;
    }
    return out != NULL && *out != '\0' ? strtoll(out, NULL, 10) : -1;
}

/* After REFUSED[i]: the tables as the fingerprints before it showed, and a good row taken.
 * Prints what is wrong to stderr and returns false when anything is. */
static bool
is_kept_after(int i, const char *before_lite, const char *before_post)
{
    char sql[512];
    snprintf(sql, sizeof(sql), "%sINSERT INTO events(session_id, type) VALUES ('s1', "
             "'custom');\n%s", FINGERPRINT, FINGERPRINT);
    run_both(sql);
    bool is_kept = lite.status == 0 && post.status == 0 && before_lite[0] != '\0'
                   && before_post[0] != '\0'
                   && strncmp(lite.out, before_lite, strlen(before_lite)) == 0
                   && strncmp(post.out, before_post, strlen(before_post)) == 0
                   && events_in(lite.out, 1) == events_in(lite.out, 0) + 1
                   && events_in(post.out, 1) == events_in(post.out, 0) + 1;
    if (!is_kept)
        fprintf(stderr, "REFUSED[%d] %.200s changed the tables or refused the good row after "
                "it:\n  sqlite3 before %s  after (exit %d) %s %s\n  psql before %s  after "
                "(exit %d) %s %s\n", i, REFUSED[i].sql, before_lite, lite.status, lite.out,
                lite.err, before_post, post.status, post.out, post.err);
    return is_kept;
}

/* Tries REFUSED[i] in both (setup; FINGERPRINT; the bad row). Prints what is wrong to
 * stderr and returns false when anything is. */
static bool
try_refused(int i)
{
    char prefix[4096], before_lite[MESSAGE_MAX], before_post[MESSAGE_MAX];
    char said_lite[MESSAGE_MAX], said_post[MESSAGE_MAX];
    snprintf(prefix, sizeof(prefix), "%s%s", REFUSED[i].setup ? REFUSED[i].setup : "",
             FINGERPRINT);
    run_both(render(prefix, REFUSED[i].sql, REFUSED[i].kind, REFUSED[i].text,
                    REFUSED[i].bytes));
    snprintf(before_lite, sizeof(before_lite), "%.*s", MESSAGE_MAX - 1, lite.out);
    snprintf(before_post, sizeof(before_post), "%.*s", MESSAGE_MAX - 1, post.out);
    publish_error_message(&lite, said_lite, sizeof(said_lite));
    pg_error_message(&post, said_post, sizeof(said_post));
    bool is_alike = lite.status != 0 && post.status != 0 && strcmp(said_lite, said_post) == 0
                    && strcmp(said_lite, REFUSED[i].message) == 0;
    if (!is_alike)
        fprintf(stderr, "REFUSED[%d] %.200s\n  sqlite3 exit %d: '%s'\n  psql exit %d: '%s'\n"
                "  expected: '%s'\n  psql stderr: %.300s\n", i, REFUSED[i].sql, lite.status,
                said_lite, post.status, said_post, REFUSED[i].message, post.err);
    return is_kept_after(i, before_lite, before_post) && is_alike;
}

START_TEST(test_refusals_match_sqlite)
{
    int failed = 0, count = (int)(sizeof(REFUSED) / sizeof(REFUSED[0]));
    for (int i = 0; i < count; i++)
        failed += !try_refused(i);
    DIAG_CHECK(failed == 0, "%d of %d bad rows were not refused alike (above)", failed, count);
}
END_TEST

START_TEST(test_accepted_alike)
{
    int failed = 0, count = (int)(sizeof(ACCEPTED) / sizeof(ACCEPTED[0]));
    for (int i = 0; i < count; i++) {
        const char *insert = render("", ACCEPTED[i].sql, ACCEPTED[i].kind, NULL,
                                    ACCEPTED[i].bytes);
        size_t len = strlen(insert);
        DIAG_CHECK(len + strlen(ACCEPTED[i].query) + 2 < sizeof(sql_buf), "too long");
        snprintf(sql_buf + len, sizeof(sql_buf) - len, "\n%s\n", ACCEPTED[i].query);
        run_both(sql_buf);
        if (lite.status == 0 && post.status == 0 && lite.out[0] != '\0'
            && strcmp(lite.out, post.out) == 0)
            continue;
        failed++;
        fprintf(stderr, "ACCEPTED[%d] %.200s\n  sqlite3 exit %d: %s %s\n  psql exit %d: %s "
                "%s\n", i, ACCEPTED[i].sql, lite.status, lite.out, lite.err, post.status,
                post.out, post.err);
    }
    DIAG_CHECK(failed == 0, "%d of %d good rows were not taken alike (above)", failed, count);
}
END_TEST

/* What the schema's top comment says differs, as it says. A "!" answer is the refusal's
 * message; any other, the statement's stdout. NULL sqlite_sql: PostgreSQL only. */
static const struct {
    const char *sqlite_sql;
    const char *sqlite_says;
    const char *pg_sql;
    const char *pg_says;
} DIFFERENCES[] = {
    /* PostgreSQL text cannot hold NUL, nor invalid UTF-8 in a UTF8 database */
    {"INSERT INTO events(session_id, type) VALUES ('s1', 'a' || char(0));",
     "!events.type must not contain control characters",
     "INSERT INTO events(session_id, type) VALUES ('s1', 'a' || chr(0));",
     "!null character not permitted"},
    {"INSERT INTO events(session_id, type, run_id) VALUES ('s1', 'custom', x'720072');",
     "!events.run_id must not contain control characters",
     "INSERT INTO events(session_id, type, run_id) VALUES ('s1', 'custom', E'r\\x00r');",
     "!invalid byte sequence for encoding \"UTF8\": 0x00"},
    {"INSERT INTO events(session_id, type) VALUES ('s1', CAST(x'ff' AS TEXT));\n"
     "SELECT hex(type) FROM events ORDER BY id DESC LIMIT 1;", "FF\n",
     "INSERT INTO events(session_id, type) VALUES ('s1', E'\\xff');",
     "!invalid byte sequence for encoding \"UTF8\": 0xff"},
    /* a BLOB is refused by type; a bytea is cast to its text, '\x...' */
    {"INSERT INTO events(session_id, type) VALUES ('s1', x'41');",
     "!events.type must be a non-empty text",
     "INSERT INTO events(session_id, type) VALUES ('s1', '\\x41'::bytea) RETURNING type;",
     "\\x41\n"},
    {"INSERT INTO events(session_id, type) VALUES (x'7331', 'custom');",
     "!events.session_id must be text, or NULL for the global channel",
     "INSERT INTO events(session_id, type) VALUES ('\\x7331'::bytea, 'custom');",
     "!events.session_id: no such session; INSERT INTO sessions(id) first"},
    {"INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', x'00');",
     "!events.timestamp must be text or a number",
     "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', "
     "'\\x00'::bytea) RETURNING timestamp;", "\\x00\n"},
    /* a non-integer number's text: SQLite's REAL, PostgreSQL's numeric with every digit */
    {"INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', 1.5e300);\n"
     "SELECT timestamp FROM events ORDER BY id DESC LIMIT 1;", "1.5e+300\n",
     "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', 1.5e300);",
     "!events.timestamp must be at most 64 bytes"},
    {"INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', 0.10);\n"
     "SELECT timestamp FROM events ORDER BY id DESC LIMIT 1;", "0.1\n",
     "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', 'custom', 0.10) "
     "RETURNING timestamp;", "0.10\n"},
    /* a producer's id: SQLite keeps it, PostgreSQL takes the next of sse_log */
    {"INSERT INTO events(id, session_id, type) VALUES (1000000, 's1', 'custom');\n"
     "SELECT max(id) FROM events;", "1000000\n",
     "INSERT INTO events(id, session_id, type) VALUES (1000000, 's1', 'custom') "
     "RETURNING id < 1000000;", "t\n"},
    /* CHECK constraints speak each database's words */
    {"INSERT INTO event_types(name, replayed) VALUES ('t2', 2);",
     "!CHECK constraint failed: replayed IN (0, 1)",
     "INSERT INTO event_types(name, replayed) VALUES ('t2', 2);",
     "!new row for relation \"event_types\" violates check constraint "
     "\"event_types_replayed_check\""},
    {NULL, NULL, "TRUNCATE events;", "!events: TRUNCATE is refused (DELETE to prune)"},
};

/* True when a CLI's run matches says (see DIFFERENCES); message is its refusal. */
static bool
is_as_said(int status, const char *out, const char *message, const char *says)
{
    if (says[0] == '!')
        return status != 0 && strcmp(message, says + 1) == 0;
    return status == 0 && strcmp(out, says) == 0;
}

START_TEST(test_documented_differences)
{
    int failed = 0, count = (int)(sizeof(DIFFERENCES) / sizeof(DIFFERENCES[0]));
    for (int i = 0; i < count; i++) {
        char said_lite[MESSAGE_MAX] = "", said_post[MESSAGE_MAX];
        bool is_lite_ok = true;
        if (DIFFERENCES[i].sqlite_sql != NULL) {
            publish_sql(&env, DIFFERENCES[i].sqlite_sql, &lite);
            publish_error_message(&lite, said_lite, sizeof(said_lite));
            is_lite_ok = is_as_said(lite.status, lite.out, said_lite,
                                    DIFFERENCES[i].sqlite_says);
        }
        pg_psql(&pg, DIFFERENCES[i].pg_sql, &post);
        pg_error_message(&post, said_post, sizeof(said_post));
        if (is_lite_ok && is_as_said(post.status, post.out, said_post, DIFFERENCES[i].pg_says))
            continue;
        failed++;
        fprintf(stderr, "DIFFERENCES[%d]\n  sqlite3: %s\n    exit %d, '%s', out %s\n  "
                "psql: %s\n    exit %d, '%s', out %s\n", i,
                DIFFERENCES[i].sqlite_sql ? DIFFERENCES[i].sqlite_sql : "-", lite.status,
                said_lite, lite.out, DIFFERENCES[i].pg_sql, post.status, said_post, post.out);
    }
    DIAG_CHECK(failed == 0, "%d of %d documented differences do not hold (above)", failed,
               count);
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* Re-applying, the seed */

static const char SEED_QUERY[] = "SELECT name || ',' || streamed_by_default || ',' || "
    "replayed || ',' || critical || ',' || worker_fanin FROM event_types ORDER BY name;\n";

START_TEST(test_reapply_keeps_rows_and_seed_matches)
{
    publish_sql(&env, SEED_QUERY, &lite);
    pg_psql(&pg, SEED_QUERY, &post);
    DIAG_CHECK(lite.status == 0 && post.status == 0 && strlen(lite.out) > 1000
               && strcmp(lite.out, post.out) == 0, "the event_types seeds differ:\n"
               "--- schema.sql ---\n%s\n--- deploy/postgresql/schema.sql ---\n%s%s",
               lite.out, post.out, post.err);
    pg_psql_ok(&pg, "INSERT INTO event_types(name) VALUES ('mine');\n"
               "UPDATE event_types SET replayed = 0 WHERE name = 'client_output_delta';\n"
               "INSERT INTO events(session_id, type) VALUES ('s1', 'custom'), (NULL, 'a');\n"
               "INSERT INTO read_tokens(scope, salt, hash) VALUES ('global', "
               "'0123456789abcdef', repeat('ab', 32));\n");
    long long max_id = pg_query_number(&pg, "SELECT max(id) FROM events;");
    char path[TESTENV_PATH_MAX];
    snprintf(path, sizeof(path), "%s/deploy/postgresql/schema.sql",
             testenv_require("SSE_SRC_DIR"));
    for (int i = 0; i < 2; i++) {
        pg_psql_file(&pg, path, &post);
        DIAG_CHECK(post.status == 0 && post.err[0] == '\0', "re-applying exited %d: %s",
                   post.status, post.err);
    }
    pg_psql(&pg, "SELECT count(*) FROM events;\nSELECT count(*) FROM sessions;\n"
            "SELECT count(*) FROM read_tokens;\n"
            "SELECT count(*) FROM event_types WHERE name = 'mine';\n"
            "SELECT replayed FROM event_types WHERE name = 'client_output_delta';\n"
            "SELECT sse_schema_version();\n", &post);
    DIAG_CHECK(post.status == 0 && strcmp(post.out, "2\n1\n1\n1\n0\n1\n") == 0,
               "after re-applying: %s %s", post.out, post.err);
    DIAG_CHECK(pg_query_number(&pg, "INSERT INTO events(session_id, type) VALUES ('s1', "
                               "'custom') RETURNING id;") > max_id,
               "ids went back after re-applying the schema");
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* Ids, log positions, NOTIFY */

/* Waits up to timeout_ms for a notification on conn. Returns it (PQfreemem it) or NULL. */
static PGnotify *
wait_notify(PGconn *conn, int timeout_ms)
{
    int64_t deadline = testenv_now_ms() + timeout_ms;
    for (;;) {
        DIAG_CHECK(PQconsumeInput(conn) == 1, "PQconsumeInput: %s", PQerrorMessage(conn));
        PGnotify *n = PQnotifies(conn);
        int64_t left_ms = deadline - testenv_now_ms();
        if (n != NULL || left_ms <= 0)
            return n;
        struct pollfd p = {.fd = PQsocket(conn), .events = POLLIN};
        poll(&p, 1, (int)left_ms);
    }
}

/* A notification on 'sse_fcgi' with an empty payload must come within NOTIFY_WAIT_MS, after
 * what; then every other one queued is read too. */
static void
expect_notify(PGconn *conn, const char *what)
{
    PGnotify *n = wait_notify(conn, NOTIFY_WAIT_MS);
    DIAG_CHECK(n != NULL, "no NOTIFY within %d ms after %s", NOTIFY_WAIT_MS, what);
    bool is_ours = strcmp(n->relname, "sse_fcgi") == 0 && n->extra[0] == '\0';
    char channel[64];
    snprintf(channel, sizeof(channel), "%s", n->relname);
    PQfreemem(n);
    DIAG_CHECK(is_ours, "NOTIFY on '%s' after %s", channel, what);
    while ((n = wait_notify(conn, 0)) != NULL)
        PQfreemem(n);
}

/* Runs sql on conn; fails the test unless it returns status. */
static PGresult *
exec_expect(PGconn *conn, const char *sql, ExecStatusType status)
{
    PGresult *res = PQexec(conn, sql);
    if (PQresultStatus(res) != status) {
        char message[512];
        snprintf(message, sizeof(message), "%s", PQresultErrorMessage(res));
        PQclear(res);
        DIAG_CHECK(false, "%s: %s", sql, message);
    }
    return res;
}

static void
exec_ok(PGconn *conn, const char *sql)
{
    PQclear(exec_expect(conn, sql, PGRES_COMMAND_OK));
}

START_TEST(test_ids_and_log_positions)
{
    PGconn *listener = pg_connect(&pg), *producer = pg_connect(&pg);
    exec_ok(listener, "LISTEN sse_fcgi");
    pg_psql(&pg, "INSERT INTO events(session_id, type) VALUES ('s1', 'a') RETURNING id;\n"
            "INSERT INTO events(session_id, type) VALUES ('s1', 'b'), (NULL, 'c') RETURNING "
            "id;\nINSERT INTO sessions(id) VALUES ('p1') RETURNING log_id;\n"
            "INSERT INTO events(session_id, type) VALUES ('p1', 'd') RETURNING id;\n"
            "UPDATE sessions SET closed_at = sse_now_text() WHERE id = 'p1' RETURNING log_id;\n"
            "SELECT log_id FROM sessions WHERE id = 's1';\n", &post);
    long long n[7] = {0};
    int count = sscanf(post.out, "%lld %lld %lld %lld %lld %lld %lld", &n[0], &n[1], &n[2],
                       &n[3], &n[4], &n[5], &n[6]);
    DIAG_CHECK(post.status == 0 && count == 7, "got %s %s", post.out, post.err);
    /* s1's log_id, then each id in order: three events, p1 created, its event, its close */
    DIAG_CHECK(n[6] < n[0] && n[0] < n[1] && n[1] < n[2] && n[2] < n[3] && n[3] < n[4]
               && n[4] < n[5], "not one increasing sequence: %s", post.out);
    expect_notify(listener, "INSERTs into events and sessions and a close");
    pg_psql(&pg, "INSERT INTO events(session_id, type) VALUES ('p1', 'late');\n", &post);
    DIAG_CHECK(post.status != 0 && strstr(post.err, "session is closed") != NULL,
               "an event after the close: %s %s", post.out, post.err);
    /* the NOTIFY comes with the commit, not before (once the earlier ones stopped coming) */
    PGnotify *late;
    while ((late = wait_notify(listener, 200)) != NULL)
        PQfreemem(late);
    exec_ok(producer, "BEGIN");
    exec_ok(producer, "INSERT INTO events(session_id, type) VALUES ('s1', 'held')");
    PGnotify *early = wait_notify(listener, 200);
    DIAG_CHECK(early == NULL, "a NOTIFY before the commit");
    exec_ok(producer, "COMMIT");
    expect_notify(listener, "COMMIT");
    pg_psql_ok(&pg, "DELETE FROM events WHERE type = 'held';\n");
    expect_notify(listener, "DELETE");
    pg_psql(&pg, "SELECT cache_size FROM pg_sequences WHERE sequencename = 'sse_log';\n"
            "SELECT sse_schema_version();\n"
            "SELECT count(*) FROM events WHERE timestamp !~ "
            "'^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$' OR abs(extract(epoch FROM "
            "timestamp::timestamp - (now() AT TIME ZONE 'UTC'))) > 60;\n"
            "SELECT count(*) FROM sessions WHERE created_at !~ "
            "'^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$';\n", &post);
    DIAG_CHECK(post.status == 0 && strcmp(post.out, "1\n1\n0\n0\n") == 0,
               "cache 1, version 1, UTC ms timestamps: got %s %s", post.out, post.err);
    PQfinish(producer);
    PQfinish(listener);
}
END_TEST

/* DELETE records the highest pruned id per scope, kept when a later DELETE prunes less. */
START_TEST(test_delete_records_pruned_range)
{
    pg_psql_ok(&pg, "INSERT INTO sessions(id) VALUES ('s2');\n"
               "INSERT INTO events(session_id, type) VALUES ('s1', 'a'), ('s1', 'b'), "
               "('s2', 'c'), (NULL, 'd'), ('s1', 'e');\n");
    const char *expected_sql = "SELECT string_agg(coalesce(session_id, '') || '=' || m, ',' "
        "ORDER BY coalesce(session_id, '')) FROM (SELECT session_id, max(id) AS m FROM events "
        "WHERE type <> 'e' GROUP BY session_id) AS scopes;\n";
    pg_psql(&pg, expected_sql, &post);
    char expected[MESSAGE_MAX];
    snprintf(expected, sizeof(expected), "%.*s", MESSAGE_MAX - 1, post.out);
    pg_psql(&pg, "DELETE FROM events WHERE type <> 'e';\n"
            "INSERT INTO events(session_id, type) VALUES ('s1', 'f');\n"
            "DELETE FROM events WHERE type = 'nothing';\n"
            "SELECT string_agg(scope || '=' || through_id, ',' ORDER BY scope) FROM pruned;\n",
            &post);
    DIAG_CHECK(post.status == 0 && strlen(expected) > 5 && strcmp(post.out, expected) == 0,
               "pruned: expected %s got %s %s", expected, post.out, post.err);
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* The harness itself: restart and timelines, as the relay's tests will use them */

START_TEST(test_restart_and_new_timeline)
{
    const char *identity = "SELECT system_identifier FROM pg_control_system();";
    long long system_id = pg_query_number(&pg, identity);
    int port = pg.port;
    pid_t first_pid = pg.pid;
    long long id = pg_query_number(&pg, "INSERT INTO events(session_id, type) VALUES "
                                   "('s1', 'custom') RETURNING id;");
    DIAG_CHECK(pg_timeline(&pg) == 1, "timeline %d after initdb", pg_timeline(&pg));
    pg_restart(&pg);
    DIAG_CHECK(pg.port == port && pg.pid != first_pid && kill(first_pid, 0) != 0,
               "restart: port %d (was %d), pid %ld (was %ld)", pg.port, port, (long)pg.pid,
               (long)first_pid);
    for (int timeline = 2; timeline <= 3; timeline++) {
        pg_new_timeline(&pg);
        DIAG_CHECK(pg_timeline(&pg) == timeline, "timeline %d, expected %d", pg_timeline(&pg),
                   timeline);
        DIAG_CHECK(pg_query_number(&pg, identity) == system_id && pg.port == port,
                   "another system or port after the timeline change");
        long long next = pg_query_number(&pg, "INSERT INTO events(session_id, type) VALUES "
                                         "('s1', 'custom') RETURNING id;");
        DIAG_CHECK(next > id, "id %lld after %lld on timeline %d", next, id, timeline);
        id = next;
    }
    DIAG_CHECK(pg_query_number(&pg, "SELECT count(*) FROM events;") == 3, "rows lost");
    pid_t pid = pg.pid, found = -1;
    int children = testenv_signal_children(pid, 0, NULL, 0);
    DIAG_CHECK(testenv_signal_by_arg(pg.data_dir, 0, &found, 1) == 1 && found == pid
               && children >= 3, "the postmaster (its -D) and its children: found %ld, %d "
               "children", (long)found, children);
    pg_stop(&pg);
    pg_stop(&pg);
    DIAG_CHECK(pg.pid < 0 && kill(pid, 0) != 0 && !testenv_is_port_accepting(port)
               && testenv_signal_children(pid, 0, NULL, 0) == 0
               && testenv_signal_by_arg(pg.data_dir, 0, NULL, 0) == 0,
               "postgres still there after pg_stop");
}
END_TEST

/* ------------------------------------------------------------------------------------- */
/* The ordering trap */

struct id_list {
    long long *ids;
    size_t count;
    size_t cap;
};

struct producer {
    pthread_t thread;
    PGconn *conn;                   /* its own connection, owned */
    unsigned seed;                  /* rand_r */
    int64_t deadline_ms;            /* testenv_now_ms() at which it stops */
    struct id_list committed;       /* ids of its committed transactions */
    atomic_int *done_count;         /* shared: producers finished */
    char error[256];                /* "" or what failed */
};

/* Appends id; false when out of memory. */
static bool
add_id(struct id_list *list, long long id)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? 2 * list->cap : 1024;
        long long *ids = realloc(list->ids, cap * sizeof(*ids));
        if (ids == NULL)
            return false;
        list->ids = ids;
        list->cap = cap;
    }
    list->ids[list->count++] = id;
    return true;
}

/* Runs sql on the producer's connection; the one row's first column into *id (may be NULL).
 * False, with p->error set, on failure. Thread-safe: its own connection only. */
static bool
producer_exec(struct producer *p, const char *sql, long long *id)
{
    PGresult *res = PQexec(p->conn, sql);
    ExecStatusType status = PQresultStatus(res);
    bool is_ok = status == (id ? PGRES_TUPLES_OK : PGRES_COMMAND_OK)
                 && (id == NULL || PQntuples(res) == 1);
    if (is_ok && id != NULL)
        *id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    if (!is_ok)
        snprintf(p->error, sizeof(p->error), "%s: %s", sql, PQresultErrorMessage(res));
    PQclear(res);
    return is_ok;
}

/* BEGIN; INSERT; hold 0..TRAP_HOLD_MAX_MS; INSERT; COMMIT until the deadline. */
static void *
run_producer(void *arg)
{
    struct producer *p = arg;
    static const char INSERT[] = "INSERT INTO events(session_id, type) VALUES ('s1', 'trap') "
                                 "RETURNING id";
    while (testenv_now_ms() < p->deadline_ms && p->error[0] == '\0') {
        long long first = 0, second = 0;
        long hold_us = rand_r(&p->seed) % (TRAP_HOLD_MAX_MS * 1000 + 1);
        if (!producer_exec(p, "BEGIN", NULL) || !producer_exec(p, INSERT, &first))
            break;
        nanosleep(&(struct timespec){.tv_nsec = hold_us * 1000}, NULL);  /* the workload */
        if (!producer_exec(p, INSERT, &second) || !producer_exec(p, "COMMIT", NULL))
            break;
        if (!add_id(&p->committed, first) || !add_id(&p->committed, second))
            snprintf(p->error, sizeof(p->error), "out of memory");
    }
    if (p->error[0] != '\0')
        PQclear(PQexec(p->conn, "ROLLBACK"));  /* an aborted transaction keeps the lock */
    atomic_fetch_add(p->done_count, 1);
    return NULL;
}

/* One poll of the naive reader: every id > *last, in order, into seen; *last the max. */
static void
read_after(PGconn *conn, long long *last, struct id_list *seen)
{
    char cursor[32];
    snprintf(cursor, sizeof(cursor), "%lld", *last);
    const char *const params[] = {cursor};
    PGresult *res = PQexecParams(conn, "SELECT id FROM events WHERE id > $1 ORDER BY id", 1,
                                 NULL, params, NULL, NULL, 0);
    bool is_ok = PQresultStatus(res) == PGRES_TUPLES_OK;
    for (int i = 0; is_ok && i < PQntuples(res); i++) {
        long long id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        is_ok = add_id(seen, id);
        *last = id > *last ? id : *last;
    }
    char message[256];
    snprintf(message, sizeof(message), "%s", PQresultErrorMessage(res));
    PQclear(res);
    DIAG_CHECK(is_ok, "the reader's poll failed: %s", message);
}

static int
compare_ids(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

struct trap_result {
    size_t committed, seen, lost, duplicated;
    long reads;
};

/* Sorts both lists; counts committed ids not seen, and ids seen more than once. */
static void
count_trap(struct id_list *committed, struct id_list *seen, struct trap_result *r)
{
    qsort(committed->ids, committed->count, sizeof(long long), compare_ids);
    qsort(seen->ids, seen->count, sizeof(long long), compare_ids);
    r->committed = committed->count;
    r->seen = seen->count;
    for (size_t i = 1; i < seen->count; i++)
        r->duplicated += seen->ids[i] == seen->ids[i - 1];
    size_t at = 0;
    for (size_t i = 0; i < committed->count; i++) {
        while (at < seen->count && seen->ids[at] < committed->ids[i])
            at++;
        r->lost += at == seen->count || seen->ids[at] != committed->ids[i];
    }
}

static long
trap_ms(void)
{
    const char *value = getenv("PG_TRAP_MS");
    return value != NULL && atol(value) > 0 ? atol(value) : TRAP_DEFAULT_MS;
}

/* Joins every producer, closes its connection and moves its ids into committed; the first
 * producer error (or "") into errors. */
static void
join_producers(struct producer *producers, struct id_list *committed, char *errors,
               size_t size)
{
    errors[0] = '\0';
    for (int i = 0; i < TRAP_PRODUCERS; i++) {
        pthread_join(producers[i].thread, NULL);
        PQfinish(producers[i].conn);
        for (size_t k = 0; k < producers[i].committed.count; k++)
            DIAG_CHECK(add_id(committed, producers[i].committed.ids[k]), "out of memory");
        free(producers[i].committed.ids);
        if (producers[i].error[0] != '\0' && errors[0] == '\0')
            snprintf(errors, size, "%s", producers[i].error);
    }
}

/* TRAP_PRODUCERS producers for PG_TRAP_MS against a reader polling `id > last` as fast as
 * it can; then one more poll, when all have committed. */
static void
run_trap(const char *label, struct trap_result *r)
{
    struct producer producers[TRAP_PRODUCERS];
    atomic_int done_count = 0;
    int64_t deadline = testenv_now_ms() + trap_ms();
    PGconn *reader = pg_connect(&pg);
    memset(producers, 0, sizeof(producers));
    for (int i = 0; i < TRAP_PRODUCERS; i++) {
        producers[i].conn = pg_connect(&pg);
        producers[i].seed = (unsigned)(i * 7919 + testenv_now_ms());
        producers[i].deadline_ms = deadline;
        producers[i].done_count = &done_count;
        DIAG_CHECK(pthread_create(&producers[i].thread, NULL, run_producer, &producers[i])
                   == 0, "pthread_create failed");
    }
    struct id_list seen = {0}, committed = {0};
    long long last = 0;
    memset(r, 0, sizeof(*r));
    while (atomic_load(&done_count) < TRAP_PRODUCERS) {
        read_after(reader, &last, &seen);
        r->reads++;
    }
    char errors[256];
    join_producers(producers, &committed, errors, sizeof(errors));
    read_after(reader, &last, &seen);
    PQfinish(reader);
    DIAG_CHECK(errors[0] == '\0', "a producer failed: %s", errors);
    count_trap(&committed, &seen, r);
    free(committed.ids);
    free(seen.ids);
    fprintf(stderr, "pg_schema trap (%s, %ld ms, %d producers): %zu committed, %zu seen, "
            "%zu lost, %zu duplicated, %ld reads\n", label, trap_ms(), TRAP_PRODUCERS,
            r->committed, r->seen, r->lost, r->duplicated, r->reads);
}

START_TEST(test_trap_nothing_lost)
{
    struct trap_result r;
    run_trap("sse_log_take with the lock", &r);
    DIAG_CHECK(r.committed >= 20 && r.lost == 0 && r.duplicated == 0
               && pg_query_number(&pg, "SELECT count(*) FROM events;") == (long long)r.committed,
               "%zu committed, %zu lost, %zu duplicated", r.committed, r.lost, r.duplicated);
}
END_TEST

/* The control: without the lock the same run must lose ids, or the trap proves nothing. */
START_TEST(test_trap_control_loses_ids)
{
    pg_psql_ok(&pg, "CREATE OR REPLACE FUNCTION sse_log_take() RETURNS bigint LANGUAGE sql "
               "VOLATILE AS $$ SELECT nextval('sse_log') $$;\n");
    struct trap_result r;
    run_trap("plain sequence, the control", &r);
    DIAG_CHECK(r.committed >= 20 && r.lost > 0 && r.duplicated == 0,
               "the control lost nothing (%zu committed, %zu duplicated): the trap cannot fail",
               r.committed, r.duplicated);
}
END_TEST

Suite *suite_pg_schema(void);

Suite *
suite_pg_schema(void)
{
    Suite *s = suite_create("pg_schema");
    TCase *tc = tcase_create("pg_schema");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_refusals_match_sqlite);
    tcase_add_test(tc, test_accepted_alike);
    tcase_add_test(tc, test_documented_differences);
    tcase_add_test(tc, test_reapply_keeps_rows_and_seed_matches);
    tcase_add_test(tc, test_ids_and_log_positions);
    tcase_add_test(tc, test_delete_records_pruned_range);
    tcase_add_test(tc, test_restart_and_new_timeline);
    suite_add_tcase(s, tc);
    TCase *trap = tcase_create("pg_schema_trap");
    tcase_add_checked_fixture(trap, setup, teardown);
    tcase_set_timeout(trap, (double)trap_ms() / 1000.0 + 30.0);
    tcase_add_test(trap, test_trap_nothing_lost);
    tcase_add_test(trap, test_trap_control_loses_ids);
    suite_add_tcase(s, trap);
    return s;
}
