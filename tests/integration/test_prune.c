/*
 * test_prune.c - `sse-fcgi prune`, the retention command (issue 6; SPEC §2, §4.3).
 *
 * The built binary runs as a command (tests/lib/command.h) on a database the sqlite3 CLI
 * filled, with explicit timestamps (old: 2020; relative: SQLite's 'now' +- hours); each test
 * then reads the ids left with the CLI and compares them with the exact list expected, and
 * checks the output line and the exit status. Covered: the count rule per session (the
 * global channel as one), the age rule and timestamp formats, the floor (open vs closed,
 * and a timestamp without an age), the union of the keep options and the prefix rule, a dry
 * run, batching, a producer writing throughout, the WAL truncated (or not, with a reader in
 * the way: not an error), ids that keep growing, session ids of a hand-edited database (a
 * BLOB, a NUL inside) pruned by their exact value, usage and error exits; and end to end
 * behind lighttpd: a stream open during the prune
 * goes on, a resume from before the kept range gets `event: gap` and then exactly the kept
 * events, and a closed session pruned to nothing still answers 204.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/lib/command.h"
#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/publish.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

#define OLD "'2020-01-01T00:00:00Z'"
#define HOURS_AGO(h) "strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-" #h " hours')"

enum { ARGS_MAX = 16 };

static struct command_result result;  /* 32 KiB, off the stack */

/* Runs `sse-fcgi prune --db <test db> args...` as root and returns the exit status. */
static int
run_prune(const char *const *args)
{
    const char *argv[ARGS_MAX + 3] = {"prune", "--db", test_env.db_path};
    for (size_t i = 0; args[i] != NULL; i++) {
        DIAG_CHECK(i < ARGS_MAX, "run_prune: too many arguments");
        argv[i + 3] = args[i];
    }
    return command_run(&test_env, argv, NULL, &result);
}

static void
expect_status(int status)
{
    command_expect_status(&result, status);
}

/* Fails unless stdout has the line (as a prefix of a line: the lines tested are whole).
 * A "deleted ... in N transactions; kept ..." line is matched around the "(longest N ms)"
 * the command prints before "; kept", which varies from run to run. */
static void
expect_output_line(const char *line)
{
    const char *kept = strstr(line, "; kept ");
    if (strncmp(line, "sse-fcgi prune: deleted ", 24) != 0 || kept == NULL) {
        command_expect_line(&result, line, NULL);
        return;
    }
    char head[512], tail[256];
    snprintf(head, sizeof(head), "%.*s (longest ", (int)(kept - line), line);
    snprintf(tail, sizeof(tail), " ms)%s", kept);
    command_expect_line(&result, head, tail);
}

/* The ids of the rows that satisfy where, in order, comma-separated ("" for none). */
static const char *
ids_where(const char *where)
{
    static struct publish_result r;
    char sql[512];
    snprintf(sql, sizeof(sql), "SELECT coalesce(group_concat(id), '') FROM (SELECT id FROM "
             "events WHERE %s ORDER BY id);\n", where);
    DIAG_CHECK(publish_sql(&test_env, sql, &r) == 0, "sqlite3: %s", r.err);
    r.out[strcspn(r.out, "\n")] = '\0';
    return r.out;
}

static void
expect_ids(const char *where, const char *expected)
{
    const char *ids = ids_where(where);
    if (strcmp(ids, expected) != 0)
        command_dump(&result);
    DIAG_CHECK(strcmp(ids, expected) == 0, "ids where %s: \"%s\", expected \"%s\"", where,
               ids, expected);
}

/* pruned.through_id of a scope ('' = global), 0 when it has none. */
static long long
pruned_through(const char *scope)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT coalesce((SELECT through_id FROM pruned WHERE "
             "scope = '%s'), 0);\n", scope);
    return publish_query_number(&test_env, sql);
}

/* s1 (open), s2 (closed), the global channel, ids interleaved: s1 1,4,7,10; s2 2,5,8,11;
 * global 3,6,9,12; and s3 (open) with one event, 13. All from 2020. */
static const char THREE_SCOPES_SQL[] =
    "INSERT INTO sessions(id) VALUES ('s2'), ('s3');\n"
    "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 12)\n"
    "INSERT INTO events(session_id, type, timestamp) SELECT CASE i % 3 WHEN 1 THEN 's1' "
    "WHEN 2 THEN 's2' ELSE NULL END, 'llm_text_delta', " OLD " FROM k;\n"
    "INSERT INTO events(session_id, type, timestamp) VALUES ('s3', 'llm_text_delta', " OLD
    ");\n"
    "UPDATE sessions SET closed_at = " OLD " WHERE id = 's2';\n";

START_TEST(test_keep_events_per_session)
{
    publish_ok(&test_env, THREE_SCOPES_SQL);
    const char *const env[] = {"SSE_DB", test_env.db_path, NULL};  /* no --db: SSE_DB */
    command_run(&test_env, (const char *const[]){"prune", "--keep-events", "2", NULL},
                &(struct command_options){.env = env}, &result);
    expect_status(0);
    expect_ids("1", "7,8,9,10,11,12,13");
    expect_output_line("sse-fcgi prune: deleted 6 events from 3 of 4 sessions in 1 "
                       "transaction; kept 7 events");
    expect_output_line("sse-fcgi prune: checkpoint: wal truncated");
    DIAG_CHECK(pruned_through("") == 6 && pruned_through("s1") == 4
               && pruned_through("s2") == 5 && pruned_through("s3") == 0,
               "pruned: global %lld, s1 %lld, s2 %lld, s3 %lld", pruned_through(""),
               pruned_through("s1"), pruned_through("s2"), pruned_through("s3"));
    DIAG_CHECK(publish_query_number(&test_env, "SELECT count(*) FROM sessions;\n") == 3,
               "sessions rows were deleted");
}
END_TEST

START_TEST(test_dry_run_deletes_nothing)
{
    publish_ok(&test_env, THREE_SCOPES_SQL);
    run_prune((const char *const[]){"--keep-events", "2", "--dry-run", "--verbose", NULL});
    expect_status(0);
    expect_output_line("sse-fcgi prune: global channel: would delete ids 3-6 (2 events); "
                       "keeps 2 events from id 9");
    expect_output_line("sse-fcgi prune: session s1 (open): would delete ids 1-4 (2 events); "
                       "keeps 2 events from id 7");
    expect_output_line("sse-fcgi prune: session s2 (closed): would delete ids 2-5 "
                       "(2 events); keeps 2 events from id 8");
    expect_output_line("sse-fcgi prune: dry run: would delete 6 events from 3 of 4 sessions; "
                       "would keep 7 events; nothing deleted");
    DIAG_CHECK(strstr(result.out, "checkpoint") == NULL, "a dry run checkpointed:\n%s",
               result.out);
    expect_ids("1", "1,2,3,4,5,6,7,8,9,10,11,12,13");
    DIAG_CHECK(publish_query_number(&test_env, "SELECT count(*) FROM pruned;\n") == 0,
               "a dry run recorded a prune");
}
END_TEST

/* s1, closed: timestamps in several ISO-8601 forms, one that is no time at all (it has no
 * age, so it is kept, and so is everything after it: prefix). s2, closed: a bare number
 * as its first timestamp (julianday would read it as year -4713 without the ISO check).
 * s3, closed: only old events. */
static const char AGES_SQL[] =
    "INSERT INTO sessions(id) VALUES ('s2'), ('s3');\n"
    "INSERT INTO events(session_id, type, timestamp) VALUES\n"
    " ('s1', 'llm_text_delta', '2020-01-01T00:00:00Z'),\n"            /* 1 */
    " ('s1', 'llm_text_delta', '2020-01-02 00:00:00'),\n"             /* 2 */
    " ('s1', 'llm_text_delta', '2020-01-03T00:00:00.123+02:00'),\n"   /* 3 */
    " ('s1', 'llm_text_delta', " HOURS_AGO(240) "),\n"                /* 4: 10 days */
    " ('s1', 'llm_text_delta', 'not a time'),\n"                      /* 5 */
    " ('s1', 'llm_text_delta', '2020-01-04T00:00:00Z'),\n"            /* 6 */
    " ('s1', 'llm_text_delta', " HOURS_AGO(1) "),\n"                  /* 7 */
    " ('s2', 'llm_text_delta', 5),\n"                                 /* 8 */
    " ('s2', 'llm_text_delta', " OLD "),\n"                           /* 9 */
    " ('s3', 'llm_text_delta', " OLD "),\n"                           /* 10 */
    " ('s3', 'llm_text_delta', '2021-06-30T23:59:59.999Z');\n"        /* 11 */
    "UPDATE sessions SET closed_at = " OLD ";\n";

static const struct {
    const char *days;
    const char *ids_left;
    const char *line;
} AGES[] = {
    {"7", "5,6,7,8,9", "sse-fcgi prune: deleted 6 events from 2 of 3 sessions in 1 "
                       "transaction; kept 5 events"},
    {"11", "4,5,6,7,8,9", "sse-fcgi prune: deleted 5 events from 2 of 3 sessions in 1 "
                          "transaction; kept 6 events"},
    {"36500", "1,2,3,4,5,6,7,8,9,10,11", "sse-fcgi prune: nothing to delete; kept 11 events "
                                         "in 3 sessions"},
};

START_TEST(test_keep_days_by_timestamp)
{
    publish_ok(&test_env, AGES_SQL);
    run_prune((const char *const[]){"--keep-days", AGES[_i].days, NULL});
    expect_status(0);
    expect_ids("1", AGES[_i].ids_left);
    expect_output_line(AGES[_i].line);
}
END_TEST

/* s1 open, s2 closed, the global channel: each an event 48 hours old, then two 1 hour
 * old; s3 open: a timestamp with no age, then an old one. --keep-events 1. */
static const char FLOOR_SQL[] =
    "INSERT INTO sessions(id) VALUES ('s2'), ('s3');\n"
    "INSERT INTO events(session_id, type, timestamp) VALUES\n"
    " ('s1', 'llm_text_delta', " HOURS_AGO(48) "), ('s1', 'llm_text_delta', " HOURS_AGO(1)
    "),\n ('s1', 'llm_text_delta', " HOURS_AGO(1) "),\n"
    " ('s2', 'llm_text_delta', " HOURS_AGO(48) "), ('s2', 'llm_text_delta', " HOURS_AGO(1)
    "),\n ('s2', 'llm_text_delta', " HOURS_AGO(1) "),\n"
    " (NULL, 'llm_text_delta', " HOURS_AGO(48) "), (NULL, 'llm_text_delta', " HOURS_AGO(1)
    "),\n (NULL, 'llm_text_delta', " HOURS_AGO(1) "),\n"
    " ('s3', 'llm_text_delta', 'yesterday'), ('s3', 'llm_text_delta', " OLD ");\n"
    "UPDATE sessions SET closed_at = " OLD " WHERE id = 's2';\n";

static const struct {
    const char *floor_hours;    /* NULL: the default, 24 */
    const char *ids_left;
    const char *held_line;      /* NULL: none */
} FLOORS[] = {
    {NULL, "2,3,6,8,9,10,11", "sse-fcgi prune: the 24-hour floor kept 3 events of open "
                              "sessions that the keep options let go"},
    {"0", "3,6,9,11", NULL},
    {"72", "1,2,3,6,7,8,9,10,11", "sse-fcgi prune: the 72-hour floor kept 5 events of open "
                                  "sessions that the keep options let go"},
};

START_TEST(test_floor_protects_open_sessions_only)
{
    publish_ok(&test_env, FLOOR_SQL);
    if (FLOORS[_i].floor_hours == NULL)
        run_prune((const char *const[]){"--keep-events", "1", NULL});
    else
        run_prune((const char *const[]){"--keep-events", "1", "--floor-hours",
                                        FLOORS[_i].floor_hours, NULL});
    expect_status(0);
    expect_ids("1", FLOORS[_i].ids_left);
    if (FLOORS[_i].held_line != NULL)
        expect_output_line(FLOORS[_i].held_line);
    else
        DIAG_CHECK(strstr(result.out, "floor") == NULL, "a floor line:\n%s", result.out);
}
END_TEST

/* Four closed sessions (no floor): s1 where the count keeps more than the age, s2 where the
 * age keeps more, s3 where a recent first event keeps everything after it (prefix), s4
 * where only the count keeps anything. */
static const char UNION_SQL[] =
    "INSERT INTO sessions(id) VALUES ('s2'), ('s3'), ('s4');\n"
    "INSERT INTO events(session_id, type, timestamp) VALUES\n"
    " ('s1', 'llm_text_delta', " OLD "), ('s1', 'llm_text_delta', " OLD "),\n"
    " ('s1', 'llm_text_delta', " OLD "), ('s1', 'llm_text_delta', " HOURS_AGO(1) "),\n"
    " ('s2', 'llm_text_delta', " OLD "), ('s2', 'llm_text_delta', " HOURS_AGO(1) "),\n"
    " ('s2', 'llm_text_delta', " HOURS_AGO(1) "), ('s2', 'llm_text_delta', " HOURS_AGO(1)
    "),\n ('s3', 'llm_text_delta', " HOURS_AGO(1) "), ('s3', 'llm_text_delta', " OLD "),\n"
    " ('s3', 'llm_text_delta', " OLD "), ('s3', 'llm_text_delta', " OLD "),\n"
    " ('s4', 'llm_text_delta', " OLD "), ('s4', 'llm_text_delta', " OLD "),\n"
    " ('s4', 'llm_text_delta', " OLD "), ('s4', 'llm_text_delta', " OLD ");\n"
    "UPDATE sessions SET closed_at = " OLD ";\n";

static const struct {
    const char *args[5];
    const char *ids_left;
} UNIONS[] = {
    {{"--keep-days", "1", "--keep-events", "2", NULL}, "3,4,6,7,8,9,10,11,12,15,16"},
    {{"--keep-days", "1", NULL}, "4,6,7,8,9,10,11,12"},
    {{"--keep-events", "2", NULL}, "3,4,7,8,11,12,15,16"},
};

START_TEST(test_keep_options_union_and_prefix)
{
    publish_ok(&test_env, UNION_SQL);
    run_prune(UNIONS[_i].args);
    expect_status(0);
    expect_ids("1", UNIONS[_i].ids_left);
}
END_TEST

START_TEST(test_batches_of_5000)
{
    publish_ok(&test_env, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
               "WHERE i < 12000)\nINSERT INTO events(session_id, type, timestamp) SELECT "
               "'s1', 'llm_text_delta', " OLD " FROM k;\n");
    run_prune((const char *const[]){"--keep-events", "10", NULL});
    expect_status(0);
    expect_output_line("sse-fcgi prune: deleted 11,990 events from 1 of 1 session in 3 "
                       "transactions; kept 10 events");
    expect_ids("1", "11991,11992,11993,11994,11995,11996,11997,11998,11999,12000");
    DIAG_CHECK(pruned_through("s1") == 11990, "pruned s1 %lld", pruned_through("s1"));
}
END_TEST

/* A producer commits 5,000 events in 500 transactions (with a 5 s busy timeout, as a
 * producer should have) while prune deletes 12,000 older ones in batches: the producer
 * never fails, nothing it wrote is deleted, and what is left is a suffix of ids with
 * pruned.through_id just below it. */
START_TEST(test_producer_writes_during_prune)
{
    publish_ok(&test_env, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
               "WHERE i < 12000)\nINSERT INTO events(session_id, type, timestamp) SELECT "
               "'s1', 'llm_text_delta', " OLD " FROM k;\n");
    static char sql[128 * 1024];
    size_t len = (size_t)snprintf(sql, sizeof(sql), ".timeout 5000\n");
    for (int i = 0; i < 500 && len < sizeof(sql); i++)
        len += (size_t)snprintf(sql + len, sizeof(sql) - len, "INSERT INTO events(session_id, "
                                "type) SELECT 's1', 'llm_text_delta' FROM (WITH RECURSIVE "
                                "k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 10) "
                                "SELECT i FROM k);\n");
    DIAG_CHECK(len < sizeof(sql), "producer SQL too long");
    pid_t producer = publish_start(&test_env, sql);
    run_prune((const char *const[]){"--keep-events", "50", "--floor-hours", "0", NULL});
    struct publish_result r;
    int producer_status = publish_wait(&test_env, producer, 60000, &r);
    expect_status(0);
    DIAG_CHECK(producer_status == 0, "the producer failed (%d): %s", producer_status, r.err);
    long long count = publish_query_number(&test_env, "SELECT count(*) FROM events;\n");
    long long min_id = publish_query_number(&test_env, "SELECT min(id) FROM events;\n");
    long long max_id = publish_query_number(&test_env, "SELECT max(id) FROM events;\n");
    DIAG_CHECK(max_id == 17000 && count == max_id - min_id + 1 && min_id > 11950
               && min_id <= 16951, "ids left %lld..%lld, %lld of them", min_id, max_id, count);
    DIAG_CHECK(pruned_through("s1") == min_id - 1, "pruned s1 %lld, oldest kept %lld",
               pruned_through("s1"), min_id);
}
END_TEST

START_TEST(test_ids_keep_growing)
{
    publish_ok(&test_env, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
               "WHERE i < 5)\nINSERT INTO events(session_id, type, timestamp) SELECT "
               "'s1', 'llm_text_delta', " OLD " FROM k;\n");
    run_prune((const char *const[]){"--keep-days", "1", NULL});
    expect_status(0);
    expect_ids("1", "");
    publish_ok(&test_env, "INSERT INTO events(session_id, type) VALUES ('s1', "
               "'llm_text_delta');\n");
    expect_ids("1", "6");
    DIAG_CHECK(pruned_through("s1") == 5, "pruned s1 %lld", pruned_through("s1"));
}
END_TEST

/* Another connection (the responder's) keeps the WAL from being deleted at close, so its
 * size after the prune is the checkpoint's doing. */
START_TEST(test_wal_truncated)
{
    server_start(&test_srv, &test_env, NULL);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, "/api/sessions/s1/events?types=*", NULL);
    publish_events(&test_env, "s1", "llm_text_delta", NULL, 20);
    frames_expect_ids(&c, (const long long[]){1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                              15, 16, 17, 18, 19, 20}, 20, 5000);
    char wal[TESTENV_PATH_MAX];
    testenv_path(&test_env, "events.db-wal", wal, sizeof(wal));
    struct stat sb;
    DIAG_CHECK(stat(wal, &sb) == 0 && sb.st_size > 0, "no WAL content before the prune");
    run_prune((const char *const[]){"--keep-events", "5", "--floor-hours", "0", NULL});
    expect_status(0);
    expect_output_line("sse-fcgi prune: checkpoint: wal truncated");
    DIAG_CHECK(stat(wal, &sb) == 0 && sb.st_size == 0, "the WAL is %lld bytes after the "
               "prune", (long long)sb.st_size);
    sse_client_close(&c);
}
END_TEST

/* A reader holds a read transaction from before the prune (a sqlite3 CLI in BEGIN, then
 * busy in a statement that would take hours): the deletes commit, the TRUNCATE checkpoint
 * waits its 5 s busy timeout and gives up, and that is reported, not an error. */
START_TEST(test_busy_checkpoint_is_not_an_error)
{
    publish_ok(&test_env, "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', "
               "'llm_text_delta', " OLD "), ('s1', 'llm_text_delta', " OLD ");\n");
    pid_t reader = publish_start_holding(&test_env, "BEGIN;\nSELECT count(*) FROM events;");
    run_prune((const char *const[]){"--keep-events", "1", NULL});
    publish_wait(&test_env, reader, 0, NULL);  /* SIGKILLed and reaped */
    expect_status(0);
    expect_ids("1", "2");
    command_expect_line(&result, "sse-fcgi prune: checkpoint: busy, ", "not an error");
}
END_TEST

START_TEST(test_not_wal_checkpoint_not_needed)
{
    publish_ok(&test_env, "PRAGMA journal_mode = DELETE;\n"
               "INSERT INTO events(session_id, type, timestamp) VALUES ('s1', "
               "'llm_text_delta', " OLD "), ('s1', 'llm_text_delta', " OLD ");\n");
    run_prune((const char *const[]){"--keep-events", "1", NULL});
    expect_status(0);
    expect_ids("1", "2");
    expect_output_line("sse-fcgi prune: checkpoint: not needed (journal_mode is not wal)");
}
END_TEST

/* End to end: a stream open during the prune goes on; a resume from before the kept range
 * gets the gap notice, then exactly the kept events; a resume at the boundary gets none. */
START_TEST(test_resume_after_prune_gets_gap)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k "
               "WHERE i < 10)\nINSERT INTO events(session_id, type, timestamp) SELECT "
               "'s1', 'client_output_delta', " OLD " FROM k;\n");
    const long long all[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    struct sse_client live, old_resume, edge_resume;
    const char *const from_zero[] = {"Last-Event-ID: 0", NULL};
    frames_open_stream(&live, test_srv.port, "/api/sessions/s1/events", from_zero);
    frames_expect_ids(&live, all, 10, 5000);

    run_prune((const char *const[]){"--keep-events", "4", NULL});
    expect_status(0);
    expect_output_line("sse-fcgi prune: deleted 6 events from 1 of 1 session in 1 "
                       "transaction; kept 4 events");
    publish_ok(&test_env, "INSERT INTO events(session_id, type) VALUES ('s1', "
               "'client_output_delta');\n");  /* 11 */
    frames_expect_ids(&live, (const long long[]){11}, 1, 5000);
    DIAG_CHECK(strstr(live.body, "event: gap") == NULL, "the open stream got a gap");

    const char *const from_two[] = {"Last-Event-ID: 2", NULL};
    frames_open_stream(&old_resume, test_srv.port, "/api/sessions/s1/events", from_two);
    frames_expect_gap(&old_resume, 2, 7, 5000);
    frames_expect_ids(&old_resume, (const long long[]){7, 8, 9, 10, 11}, 5, 5000);

    const char *const from_six[] = {"Last-Event-ID: 6", NULL};
    frames_open_stream(&edge_resume, test_srv.port, "/api/sessions/s1/events", from_six);
    frames_expect_ids(&edge_resume, (const long long[]){7, 8, 9, 10, 11}, 5, 5000);
    DIAG_CHECK(strstr(edge_resume.body, "event: gap") == NULL, "a gap, but the client had "
               "seen everything that was pruned");
    logwait_expect_line(test_srv.sse_log, "gap", "requested=2", 2000);
    DIAG_CHECK(logwait_count_lines(test_srv.sse_log, "sse error status=5", NULL) == 0
               && logwait_count_lines(test_srv.sse_log, "reason=error", NULL) == 0,
               "an error in the responder's log");
    sse_client_close(&live);
    sse_client_close(&old_resume);
    sse_client_close(&edge_resume);
}
END_TEST

/* A hand-edited database (the INSERT trigger dropped): besides s1, rows whose session_id is
 * s1 with a NUL inside (text), s1 as a BLOB, and a BLOB with a NUL. Each is a scope of its
 * own, by exact stored value: ids 1,5,9 are s1; 2,6 the NUL text; 3,7 and 4,8 the BLOBs.
 * Before, the BLOB scope planned as the text s1 (UNIQUE constraint failed: prune_plan.scope)
 * and the BLOB with a NUL never ended. */
static const char ODD_SCOPES_SQL[] =
    "DROP TRIGGER events_check_insert;\n"
    "INSERT INTO events(session_id, type, timestamp) VALUES\n"
    " ('s1', 'llm_text_delta', " OLD "), ('s1' || char(0) || 'x', 'llm_text_delta', " OLD "),\n"
    " (x'7331', 'llm_text_delta', " OLD "), (x'733100', 'llm_text_delta', " OLD "),\n"
    " ('s1', 'llm_text_delta', " OLD "), (CAST(x'733100' || 'x' AS TEXT), 'llm_text_delta', "
    OLD "),\n (x'7331', 'llm_text_delta', " OLD "), (x'733100', 'llm_text_delta', " OLD "),\n"
    " ('s1', 'llm_text_delta', " OLD ");\n";

START_TEST(test_hand_edited_session_ids_pruned_by_exact_value)
{
    publish_ok(&test_env, ODD_SCOPES_SQL);
    command_run(&test_env, (const char *const[]){"prune", "--db", test_env.db_path,
                                                 "--keep-events", "1", "--verbose", NULL},
                &(struct command_options){.timeout_ms = 10000}, &result);
    expect_status(0);
    expect_ids("1", "6,7,8,9");
    expect_output_line("sse-fcgi prune: session s1 (open): deletes ids 1-5 (2 events); "
                       "keeps 1 event from id 9");
    expect_output_line("sse-fcgi prune: session x'73310078' (text that is no session id; "
                       "open): deletes ids 2-2 (1 event); keeps 1 event from id 6");
    expect_output_line("sse-fcgi prune: session x'7331' (a BLOB; open): deletes ids 3-3 "
                       "(1 event); keeps 1 event from id 7");
    expect_output_line("sse-fcgi prune: session x'733100' (a BLOB; open): deletes ids 4-4 "
                       "(1 event); keeps 1 event from id 8");
    expect_output_line("sse-fcgi prune: deleted 5 events from 4 of 4 sessions in 1 "
                       "transaction; kept 4 events");
    expect_output_line("sse-fcgi prune: 3 of the sessions have an id no stream can ask for "
                       "(a BLOB, or text that is no session id: a hand-edited database); the "
                       "same rules pruned them");
    struct publish_result r;
    DIAG_CHECK(publish_sql(&test_env, "SELECT group_concat(typeof(scope) || ':' || hex(scope) "
                           "|| '=' || through_id, ' ') FROM (SELECT * FROM pruned ORDER BY "
                           "scope);\n", &r) == 0, "sqlite3: %s", r.err);
    DIAG_CHECK(strcmp(r.out, "text:7331=5 text:73310078=2 blob:7331=3 blob:733100=4\n") == 0,
               "pruned: %s", r.out);
}
END_TEST

/* Fails unless GET path with headers (NULL-terminated or NULL) answers status. */
static void
expect_get_status(const char *path, const char *header, int status)
{
    const char *const headers[] = {header, NULL};
    struct sse_client c;
    sse_client_open(&c, test_srv.port, "GET", path, headers);
    if (c.status != status)
        sse_client_dump(&c);
    DIAG_CHECK(c.status == status, "GET %s (%s): status %d, expected %d", path,
               header ? header : "fresh", c.status, status);
    sse_client_close(&c);
}

START_TEST(test_closed_session_pruned_to_nothing_answers_204)
{
    server_start(&test_srv, &test_env, NULL);
    publish_ok(&test_env, "INSERT INTO sessions(id) VALUES ('s2');\n"
               "INSERT INTO events(session_id, type, timestamp) VALUES\n"
               " ('s2', 'client_output_delta', " OLD "), ('s2', 'client_output_delta', " OLD
               "),\n ('s2', 'client_output_delta', " OLD "), ('s1', 'client_output_delta', "
               HOURS_AGO(1) ");\n"
               "UPDATE sessions SET closed_at = " OLD " WHERE id = 's2';\n");
    run_prune((const char *const[]){"--keep-days", "1", NULL});
    expect_status(0);
    expect_ids("1", "4");
    DIAG_CHECK(publish_query_number(&test_env, "SELECT count(*) FROM sessions WHERE id = "
                                    "'s2';\n") == 1, "the sessions row of s2 is gone");
    expect_get_status("/api/sessions/s2/events", "Last-Event-ID: 3", 204);
    expect_get_status("/api/sessions/s2/events", "Last-Event-ID: 1", 204);
    expect_get_status("/api/sessions/s2/events", NULL, 204);
    expect_get_status("/api/sessions/s9/events", NULL, 404);
}
END_TEST

/* Usage errors: exit 2 and a reason on stderr, the database untouched. */
static const struct {
    const char *args[6];
    bool has_db;                /* --db <test db> added */
    const char *err_part;
} USAGE[] = {
    {{NULL}, true, "say what to keep"},
    {{"--dry-run", NULL}, true, "say what to keep"},
    {{"--keep-days", "abc", NULL}, true, "--keep-days takes a whole number"},
    {{"--keep-days", "0", NULL}, true, "--keep-days takes a whole number"},
    {{"--keep-events", "-5", NULL}, true, "--keep-events takes a whole number"},
    {{"--keep-events", "5", "--floor-hours", "1.5", NULL}, true, "--floor-hours takes"},
    {{"--keep-days", "3", "--bogus", NULL}, true, "--bogus: unknown option"},
    {{"--keep-days", "3", "extra", NULL}, true, "extra: unexpected argument"},
    {{"--keep-days", NULL}, true, "--keep-days: this option needs a value"},
    {{"--keep-days", "3", NULL}, false, "no database: give --db PATH or set SSE_DB"},
};

START_TEST(test_usage_errors)
{
    publish_ok(&test_env, THREE_SCOPES_SQL);
    if (USAGE[_i].has_db)
        run_prune(USAGE[_i].args);
    else
        command_run(&test_env, (const char *const[]){"prune", USAGE[_i].args[0],
                                                     USAGE[_i].args[1], NULL}, NULL, &result);
    expect_status(2);
    DIAG_CHECK(strstr(result.err, USAGE[_i].err_part) != NULL, "stderr: %s", result.err);
    DIAG_CHECK(result.out[0] == '\0', "stdout: %s", result.out);
    expect_ids("1", "1,2,3,4,5,6,7,8,9,10,11,12,13");
}
END_TEST

START_TEST(test_missing_database_not_created)
{
    char path[TESTENV_PATH_MAX];
    testenv_path(&test_env, "nope.db", path, sizeof(path));
    command_run(&test_env, (const char *const[]){"prune", "--db", path, "--keep-days", "3",
                                                 NULL}, NULL, &result);
    expect_status(1);
    DIAG_CHECK(strstr(result.err, "no database at") != NULL, "stderr: %s", result.err);
    DIAG_CHECK(access(path, F_OK) != 0, "prune created %s", path);
}
END_TEST

START_TEST(test_database_without_schema)
{
    char path[TESTENV_PATH_MAX], sql[TESTENV_PATH_MAX + 64];
    testenv_path(&test_env, "plain.db", path, sizeof(path));
    snprintf(sql, sizeof(sql), ".open %s\nCREATE TABLE events(id INTEGER PRIMARY KEY);\n",
             path);
    publish_ok(&test_env, sql);
    command_run(&test_env, (const char *const[]){"prune", "--db", path, "--keep-days", "3",
                                                 NULL}, NULL, &result);
    expect_status(1);
    DIAG_CHECK(strstr(result.err, "has no sse-fcgi schema") != NULL
               && strstr(result.err, "apply schema.sql") != NULL, "stderr: %s", result.err);
}
END_TEST

/* The database belongs to root (0644, directory 0755): nobody may not prune it, and is
 * told who may: root, and the group's members once the group may write it. Nothing is
 * deleted. */
START_TEST(test_permission_denied_names_the_owner)
{
    publish_ok(&test_env, THREE_SCOPES_SQL);
    DIAG_CHECK(chmod(test_env.dir, 0755) == 0, "chmod: %s", strerror(errno));
    command_run(&test_env, (const char *const[]){"prune", "--db", test_env.db_path,
                                                 "--keep-events", "1", NULL},
                &(struct command_options){.user = "nobody"}, &result);
    expect_status(1);
    DIAG_CHECK(strstr(result.err, "cannot write") != NULL
               && strstr(result.err, "run prune as a user who can write both, such as root\n")
               != NULL, "stderr: %s", result.err);
    DIAG_CHECK(chown(test_env.db_path, 0, testenv_www_data_gid()) == 0
               && chmod(test_env.db_path, 0664) == 0, "chown/chmod: %s", strerror(errno));
    command_run(&test_env, (const char *const[]){"prune", "--db", test_env.db_path,
                                                 "--keep-events", "1", NULL},
                &(struct command_options){.user = "nobody"}, &result);
    expect_status(1);
    DIAG_CHECK(strstr(result.err, "such as root or a member of group www-data\n") != NULL,
               "stderr: %s", result.err);
    expect_ids("1", "1,2,3,4,5,6,7,8,9,10,11,12,13");
}
END_TEST

Suite *suite_prune(void);

Suite *
suite_prune(void)
{
    Suite *s = suite_create("prune");
    TCase *tc = server_tcase_create("prune");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_keep_events_per_session);
    tcase_add_test(tc, test_dry_run_deletes_nothing);
    tcase_add_loop_test(tc, test_keep_days_by_timestamp, 0, COUNT(AGES));
    tcase_add_loop_test(tc, test_floor_protects_open_sessions_only, 0, COUNT(FLOORS));
    tcase_add_loop_test(tc, test_keep_options_union_and_prefix, 0, COUNT(UNIONS));
    tcase_add_test(tc, test_batches_of_5000);
    tcase_add_test(tc, test_producer_writes_during_prune);
    tcase_add_test(tc, test_ids_keep_growing);
    tcase_add_test(tc, test_wal_truncated);
    tcase_add_test(tc, test_busy_checkpoint_is_not_an_error);
    tcase_add_test(tc, test_not_wal_checkpoint_not_needed);
    tcase_add_test(tc, test_resume_after_prune_gets_gap);
    tcase_add_test(tc, test_closed_session_pruned_to_nothing_answers_204);
    tcase_add_test(tc, test_hand_edited_session_ids_pruned_by_exact_value);
    tcase_add_loop_test(tc, test_usage_errors, 0, COUNT(USAGE));
    tcase_add_test(tc, test_missing_database_not_created);
    tcase_add_test(tc, test_database_without_schema);
    tcase_add_test(tc, test_permission_denied_names_the_owner);
    suite_add_tcase(s, tc);
    return s;
}
