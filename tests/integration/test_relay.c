/*
 * test_relay.c - several web nodes on one shared log (issue 14, README "Several web nodes").
 *
 * Every test starts a real PostgreSQL (tests/lib/pg.h) with deploy/postgresql/schema.sql,
 * publishes with the real psql, and runs the real sse-fcgi-relay into a node's own SQLite
 * file, which a real front end streams from with the unchanged responder. Covered:
 * - two nodes (lighttpd, and Apache + mod_fcgid), a client that switches node at every
 *   reconnect while a producer publishes: exact ids, no gap, no duplicate; the close;
 * - a resume on a node whose relay lags behind the id the client has: it waits there;
 * - the relay SIGKILLed while copying and restarted: every row once, locally and on a
 *   stream that stayed open;
 * - PostgreSQL restarted, and PostgreSQL gone for 10 s: streams keep their keepalives,
 *   /api/health says the relay is reconnecting, nothing is lost afterwards;
 * - a standby refused (health reconnecting, with the reason), then promoted;
 * - a timeline change (a promotion): the relay stops (exit 3), logs it, health and --check
 *   report it, a restart refuses again, --adopt goes on;
 * - pruning: the node's own prune and the log's DELETE both give exact gap events;
 * - --check on a good and on a bad log.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/lib/command.h"
#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/logwait.h"
#include "tests/lib/pg.h"
#include "tests/lib/publish.h"
#include "tests/lib/relay.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

#define SESSION_PATH "/api/sessions/s1/events"

enum { WAIT_MS = 20000 };

/* The ids of session s1 in the log, in order, into ids (cap). Returns the count. */
static size_t
log_session_ids(struct pg *pg, long long *ids, size_t cap)
{
    return pg_query_numbers(pg, "SELECT id FROM events WHERE session_id = 's1' ORDER BY id",
                            ids, cap);
}

/* n events for s1 in one transaction (one statement). */
static void
publish_to_log(struct pg *pg, int n)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "INSERT INTO events(session_id, type, data) SELECT 's1', "
             "'client_output_delta', json_build_object('i', g)::text "
             "FROM generate_series(1, %d) AS g", n);
    pg_psql_ok(pg, sql);
}

/* A producer in the background: n events for s1, each its own transaction, with a short
 * pause between them, by the real psql. Returns its PID (reap with testenv_reap). */
static pid_t
start_log_producer(struct pg *pg, int n, const char *pause_s)
{
    char path[TESTENV_PATH_MAX], log[TESTENV_PATH_MAX], port[16];
    testenv_path(&test_env, "producer.sql", path, sizeof(path));
    testenv_path(&test_env, "producer.log", log, sizeof(log));
    FILE *f = fopen(path, "w");
    DIAG_CHECK(f != NULL, "%s", path);
    for (int i = 0; i < n; i++)
        fprintf(f, "INSERT INTO events(session_id, type, data) VALUES ('s1', "
                "'client_output_delta', '{\"n\":%d}');\nSELECT pg_sleep(%s);\n", i, pause_s);
    fclose(f);
    snprintf(port, sizeof(port), "%d", pg->port);
    const char *argv[] = {"psql", "-X", "-q", "-o", "/dev/null", "-v", "ON_ERROR_STOP=1",
                          "-h", "127.0.0.1", "-p", port, "-U", "sse", "-d", "postgres",
                          "-f", path, NULL};
    return testenv_spawn(log, argv, NULL, false);
}

/* A log with the schema and an open session s1, and a relay feeding node file "a". */
static void
start_log_and_relay(struct pg *pg, struct relay_proc *relay, char *db, size_t size,
                    const char *const *relay_args)
{
    pg_start(pg, &test_env);
    pg_apply_schema(pg);
    pg_psql_ok(pg, "INSERT INTO sessions(id) VALUES ('s1')");
    relay_make_node_db(&test_env, "a", db, size);
    relay_start(relay, &test_env, "a", db, pg_conninfo(pg), relay_args);
    relay_wait_position(relay, pg_log_newest(pg), WAIT_MS);
}

static void
start_node(struct server *srv, enum server_front_end front_end, const char *db)
{
    server_front_end = front_end;
    const struct server_options opt = {.db_path = db};
    server_start(srv, &test_env, &opt);
    server_front_end = SERVER_LIGHTTPD;
}

static void
stop_node(struct server *srv, enum server_front_end front_end)
{
    server_front_end = front_end;
    server_stop(srv);
    server_front_end = SERVER_LIGHTTPD;
}

enum { SWITCH_EVENTS = 300, SWITCH_IDS_MAX = SWITCH_EVENTS + 8 };

/* Issue 14: one log, two nodes, each with its own file and relay; a client that resumes
 * on the other node at every reconnect gets exactly the log's ids, while a producer runs. */
START_TEST(test_two_nodes_client_switches_node)
{
    struct pg pg;
    struct relay_proc relay_a, relay_b;
    char db_a[TESTENV_PATH_MAX], db_b[TESTENV_PATH_MAX];
    start_log_and_relay(&pg, &relay_a, db_a, sizeof(db_a), NULL);
    relay_make_node_db(&test_env, "b", db_b, sizeof(db_b));
    relay_start(&relay_b, &test_env, "b", db_b, pg_conninfo(&pg), NULL);
    relay_wait_position(&relay_b, pg_log_newest(&pg), WAIT_MS);
    struct server node_b;
    /* Apache first: its responder (www-data) makes the shared SSE_LOG file, which the
     * lighttpd node's (root) can append to; the other way round www-data could not. */
    start_node(&node_b, SERVER_APACHE_FCGID, db_b);
    start_node(&test_srv, SERVER_LIGHTTPD, db_a);
    const int ports[2] = {test_srv.port, node_b.port};

    pid_t producer = start_log_producer(&pg, SWITCH_EVENTS, "0.005");
    long long seen[SWITCH_IDS_MAX];
    size_t n = 0;
    int64_t start = testenv_now_ms();
    for (int round = 0; n < SWITCH_EVENTS; round++) {
        DIAG_CHECK(testenv_now_ms() - start < 60000, "%zu of %d events after 60 s", n,
                   SWITCH_EVENTS);
        struct sse_client c;
        frames_resume(&c, ports[round % 2], SESSION_PATH, n > 0 ? seen[n - 1] : 0, 10000);
        /* 1 to 17 events on this node, then leave and resume on the other */
        size_t want = n + 1 + (size_t)(round % 17);
        while (n < want && n < SWITCH_EVENTS) {
            struct sse_frame f;
            sse_client_expect_event(&c, &f, 10000);
            frames_expect_wellformed(&f);
            seen[n++] = sse_frame_id(&f);
            sse_frame_release(&f);
        }
        sse_client_close(&c);
    }
    DIAG_CHECK(testenv_reap(producer, 30000) == 0, "the psql producer failed");
    long long expected[SWITCH_IDS_MAX];
    size_t count = log_session_ids(&pg, expected, SWITCH_IDS_MAX);
    DIAG_CHECK(count == SWITCH_EVENTS, "the log holds %zu events, not %d", count,
               SWITCH_EVENTS);
    for (size_t i = 0; i < count; i++)
        if (seen[i] != expected[i]) {
            frames_print_ids("seen", seen, n);
            frames_print_ids("log", expected, count);
            DIAG_CHECK(false, "event %zu: id %lld, the log's is %lld", i, seen[i],
                       expected[i]);
        }
    /* The close reaches both nodes: a resume from the last id is 204 on each. */
    pg_psql_ok(&pg, "UPDATE sessions SET closed_at = 'now' WHERE id = 's1'");
    relay_wait_position(&relay_a, pg_log_newest(&pg), WAIT_MS);
    relay_wait_position(&relay_b, pg_log_newest(&pg), WAIT_MS);
    for (int i = 0; i < 2; i++) {
        char header[64];
        snprintf(header, sizeof(header), "Last-Event-ID: %lld", seen[n - 1]);
        const char *const headers[] = {header, NULL};
        struct sse_client c;
        sse_client_open(&c, ports[i], "GET", SESSION_PATH, headers);
        DIAG_CHECK(c.status == 204, "node %d: a resume of the closed session got %d", i,
                   c.status);
        sse_client_close(&c);
    }
    stop_node(&node_b, SERVER_APACHE_FCGID);
    DIAG_CHECK(relay_stop(&relay_a) == 0 && relay_stop(&relay_b) == 0,
               "a relay did not exit 0 on SIGTERM");
    pg_stop(&pg);
}
END_TEST

/* A client that read further on one node than another node's relay has copied resumes
 * there without a gap notice and without a repeat: the id is one the log issued, not one
 * from another database (which is what an id past the newest means on a single node). */
START_TEST(test_resume_on_a_lagging_node)
{
    struct pg pg;
    struct relay_proc relay_a, relay_b;
    char db_a[TESTENV_PATH_MAX], db_b[TESTENV_PATH_MAX];
    start_log_and_relay(&pg, &relay_a, db_a, sizeof(db_a), NULL);
    relay_make_node_db(&test_env, "b", db_b, sizeof(db_b));
    relay_start(&relay_b, &test_env, "b", db_b, pg_conninfo(&pg), NULL);
    publish_to_log(&pg, 10);
    relay_wait_position(&relay_b, pg_log_newest(&pg), WAIT_MS);
    DIAG_CHECK(relay_stop(&relay_b) == 0, "relay b did not exit 0 on SIGTERM");
    publish_to_log(&pg, 10);    /* node b lags 10 events behind */
    relay_wait_position(&relay_a, pg_log_newest(&pg), WAIT_MS);
    long long ids[32];
    size_t count = log_session_ids(&pg, ids, 32);
    DIAG_CHECK(count == 20, "%zu events in the log", count);
    struct server node_b;
    start_node(&node_b, SERVER_APACHE_FCGID, db_b);
    start_node(&test_srv, SERVER_LIGHTTPD, db_a);
    struct sse_client c;
    frames_resume(&c, test_srv.port, SESSION_PATH, ids[9], 10000);
    frames_expect_ids(&c, ids + 10, 5, 5000);     /* read 5 of the 10 on node a */
    sse_client_close(&c);
    frames_resume(&c, node_b.port, SESSION_PATH, ids[14], 10000);
    relay_restart(&relay_b, NULL);
    frames_expect_ids(&c, ids + 15, 5, WAIT_MS);  /* no gap notice, nothing twice */
    sse_client_close(&c);
    stop_node(&node_b, SERVER_APACHE_FCGID);
    DIAG_CHECK(relay_stop(&relay_a) == 0 && relay_stop(&relay_b) == 0,
               "a relay did not exit 0 on SIGTERM");
    pg_stop(&pg);
}
END_TEST

enum { KILL_EVENTS = 60000 };

/* The relay SIGKILLed while it copies, and restarted: every row arrives once, in the file
 * and on a stream that stayed open through it. */
START_TEST(test_relay_killed_while_copying)
{
    struct pg pg;
    struct relay_proc relay;
    char db[TESTENV_PATH_MAX];
    const char *const small_batches[] = {"--batch-rows", "500", NULL};
    start_log_and_relay(&pg, &relay, db, sizeof(db), small_batches);
    start_node(&test_srv, SERVER_LIGHTTPD, db);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, SESSION_PATH, NULL);
    int64_t before = relay_position(db);
    publish_to_log(&pg, KILL_EVENTS);
    long long last = pg_log_newest(&pg);
    relay_wait_position(&relay, before + KILL_EVENTS / 3, WAIT_MS);
    relay_kill(&relay);
    int64_t at_kill = relay_position(db);
    DIAG_CHECK(at_kill < last, "the relay had copied everything (%lld) before the kill",
               (long long)at_kill);
    fprintf(stderr, "relay: killed at position %lld of %lld\n", (long long)at_kill, last);
    relay_restart(&relay, small_batches);
    relay_wait_position(&relay, last, 60000);
    long long *ids = calloc(KILL_EVENTS + 8, sizeof(*ids));
    DIAG_CHECK(ids != NULL, "out of memory");
    size_t n = frames_read_until(&c, last, ids, KILL_EVENTS + 8, 10000);
    for (size_t i = 1; i < n; i++)
        DIAG_CHECK(ids[i] == ids[i - 1] + 1, "event %zu: id %lld after %lld", i, ids[i],
                   ids[i - 1]);
    DIAG_CHECK(n == KILL_EVENTS, "the stream got %zu events, not %d", n, KILL_EVENTS);
    free(ids);
    sse_client_close(&c);
    /* The file holds exactly the log's rows. */
    const char *sum = "SELECT count(*) || ':' || sum(id) || ':' || sum(length(data)) FROM events";
    char local[64], remote[64];
    struct publish_result lr;
    struct pg_result *pr = malloc(sizeof(*pr));
    DIAG_CHECK(pr != NULL, "out of memory");
    char line[2 * TESTENV_PATH_MAX];
    snprintf(line, sizeof(line), "sqlite3 '%s' \"%s\"", db, sum);
    DIAG_CHECK(publish_shell(&test_env, line, &lr) == 0, "%s", lr.err);
    DIAG_CHECK(pg_psql(&pg, sum, pr) == 0, "%s", pr->err);
    snprintf(local, sizeof(local), "%.*s", (int)strcspn(lr.out, "\n"), lr.out);
    snprintf(remote, sizeof(remote), "%.*s", (int)strcspn(pr->out, "\n"), pr->out);
    free(pr);
    DIAG_CHECK(strcmp(local, remote) == 0, "local rows %s, the log's %s (count:sum:bytes)",
               local, remote);
    DIAG_CHECK(relay_stop(&relay) == 0, "the relay did not exit 0 on SIGTERM");
    pg_stop(&pg);
}
END_TEST

/* Reads blocks for ms, counting keepalive comments and failing on any event. */
static int
count_keepalives(struct sse_client *c, int ms)
{
    int comments = 0;
    int64_t end = testenv_now_ms() + ms;
    while (testenv_now_ms() < end) {
        struct sse_frame f;
        enum sse_client_result rc = sse_client_next(c, &f, (int)(end - testenv_now_ms()));
        if (rc == SSE_CLIENT_TIMEOUT)
            break;
        DIAG_CHECK(rc == SSE_CLIENT_BLOCK, "the stream ended while the log was away");
        DIAG_CHECK(f.data == NULL, "an event while the log was away");
        comments += f.comment_lines > 0;
        sse_frame_release(&f);
    }
    return comments;
}

/* The node's /api/health relay object's state ("" when there is none). */
static const char *
health_relay_state(int port, char *out, size_t size)
{
    cJSON *json = sse_client_get_json(port, "/api/health", NULL);
    const cJSON *relay = cJSON_GetObjectItemCaseSensitive(json, "relay");
    const cJSON *state = cJSON_GetObjectItemCaseSensitive(relay, "state");
    snprintf(out, size, "%s", cJSON_IsString(state) ? state->valuestring : "");
    cJSON_Delete(json);
    return out;
}

static void
expect_health_state(int port, const char *state, int timeout_ms)
{
    char got[32];
    int64_t start = testenv_now_ms();
    while (strcmp(health_relay_state(port, got, sizeof(got)), state) != 0) {
        DIAG_CHECK(testenv_now_ms() - start < timeout_ms, "health says relay %s, not %s",
                   got, state);
        testenv_poll_step();
    }
}

/* PostgreSQL restarted under a running relay and an open stream: the relay reconnects,
 * and the stream gets the events of before and after, once each. */
START_TEST(test_log_restarted)
{
    struct pg pg;
    struct relay_proc relay;
    char db[TESTENV_PATH_MAX];
    start_log_and_relay(&pg, &relay, db, sizeof(db), NULL);
    start_node(&test_srv, SERVER_LIGHTTPD, db);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, SESSION_PATH, NULL);
    publish_to_log(&pg, 100);
    long long ids[256];
    size_t n = frames_read_until(&c, pg_log_newest(&pg), ids, 256, 10000);
    pg_restart(&pg);
    publish_to_log(&pg, 100);
    long long last = pg_log_newest(&pg);
    n += frames_read_until(&c, last, ids + n, 256 - n, WAIT_MS);
    long long expected[256];
    size_t count = log_session_ids(&pg, expected, 256);
    DIAG_CHECK(n == count && n == 200, "%zu events on the stream, %zu in the log", n, count);
    DIAG_CHECK(memcmp(ids, expected, n * sizeof(*ids)) == 0, "the ids differ from the log's");
    logwait_expect_line(relay.log_path, "relay disconnected", NULL, 1000);
    sse_client_close(&c);
    DIAG_CHECK(relay_stop(&relay) == 0, "the relay did not exit 0 on SIGTERM");
    pg_stop(&pg);
}
END_TEST

/* PostgreSQL gone for 10 s: the stream keeps its keepalives (SSE_KEEPALIVE_S=1 in tests),
 * health says the relay is reconnecting, and once the log is back nothing is lost. */
START_TEST(test_log_unreachable_for_10_s)
{
    struct pg pg;
    struct relay_proc relay;
    char db[TESTENV_PATH_MAX];
    start_log_and_relay(&pg, &relay, db, sizeof(db), NULL);
    start_node(&test_srv, SERVER_LIGHTTPD, db);
    publish_to_log(&pg, 50);
    relay_wait_position(&relay, pg_log_newest(&pg), WAIT_MS);
    struct sse_client c;
    frames_open_stream(&c, test_srv.port, SESSION_PATH, NULL);
    long long ids[128];
    size_t n = frames_read_until(&c, pg_log_newest(&pg), ids, 128, 10000);
    pg_stop(&pg);
    int64_t down_at = testenv_now_ms();
    int keepalives = count_keepalives(&c, 3000);
    expect_health_state(test_srv.port, "reconnecting", 5000);
    keepalives += count_keepalives(&c, (int)(10000 - (testenv_now_ms() - down_at)));
    DIAG_CHECK(keepalives >= 7, "%d keepalives in 10 s without the log", keepalives);
    pg_restart(&pg);
    publish_to_log(&pg, 50);
    n += frames_read_until(&c, pg_log_newest(&pg), ids + n, 128 - n, WAIT_MS);
    long long expected[128];
    size_t count = log_session_ids(&pg, expected, 128);
    DIAG_CHECK(n == count && n == 100, "%zu events on the stream, %zu in the log", n, count);
    DIAG_CHECK(memcmp(ids, expected, n * sizeof(*ids)) == 0, "the ids differ from the log's");
    expect_health_state(test_srv.port, "copying", 5000);
    sse_client_close(&c);
    DIAG_CHECK(relay_stop(&relay) == 0, "the relay did not exit 0 on SIGTERM");
    pg_stop(&pg);
}
END_TEST

/* Runs sse-fcgi-relay --check (or other args) and returns its result. */
static void
run_relay_command(struct pg *pg, const char *db, const char *flag, struct command_result *r)
{
    char bin[TESTENV_PATH_MAX];
    relay_binary(bin, sizeof(bin));
    const char *const args[] = {flag, "--pg", pg_conninfo(pg), "--db", db, NULL};
    const struct command_options opt = {.program = bin};
    command_run(&test_env, args, &opt, r);
}

/* A relay pointed at a standby (a server in recovery, where LISTEN is refused and the log
 * may be behind what clients saw) copies nothing: it says why, health says reconnecting,
 * and it retries; once the server is promoted, the new timeline stops the copy as below. */
START_TEST(test_standby_is_refused)
{
    struct pg pg;
    struct relay_proc relay;
    char db[TESTENV_PATH_MAX];
    start_log_and_relay(&pg, &relay, db, sizeof(db), NULL);
    start_node(&test_srv, SERVER_LIGHTTPD, db);
    pg_become_standby(&pg);
    logwait_expect_line(relay.log_path, "relay unreachable", "the server is a standby", 20000);
    expect_health_state(test_srv.port, "reconnecting", 5000);
    cJSON *json = sse_client_get_json(test_srv.port, "/api/health", NULL);
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(json, "relay"), "detail");
    DIAG_CHECK(cJSON_IsString(detail) && strstr(detail->valuestring, "standby") != NULL,
               "health's relay detail: %s", cJSON_IsString(detail) ? detail->valuestring : "-");
    cJSON_Delete(json);
    DIAG_CHECK(relay.pid > 0 && relay_wait_exit(&relay, 0) == -1, "the relay gave up");
    pg_promote(&pg);
    DIAG_CHECK(relay_wait_exit(&relay, 30000) == 3, "the relay did not stop on the promotion");
    pg_stop(&pg);
}
END_TEST

/* A promotion gives the log a new timeline: ids after the last common point may have been
 * reissued, so the relay stops, says so in its log, in health and in --check, refuses again
 * when restarted, and goes on only after --adopt. */
START_TEST(test_timeline_change_stops_the_copy)
{
    struct pg pg;
    struct relay_proc relay;
    char db[TESTENV_PATH_MAX];
    start_log_and_relay(&pg, &relay, db, sizeof(db), NULL);
    start_node(&test_srv, SERVER_LIGHTTPD, db);
    publish_to_log(&pg, 10);
    relay_wait_position(&relay, pg_log_newest(&pg), WAIT_MS);
    expect_health_state(test_srv.port, "copying", 5000);
    DIAG_CHECK(pg_timeline(&pg) == 1, "a new cluster is on timeline %d", pg_timeline(&pg));
    pg_new_timeline(&pg);
    DIAG_CHECK(pg_timeline(&pg) == 2, "the promotion gave timeline %d", pg_timeline(&pg));
    int status = relay_wait_exit(&relay, 30000);
    DIAG_CHECK(status == 3, "the relay exited %d, not 3, after the timeline changed", status);
    logwait_expect_line(relay.log_path, "relay stopped reason=history_changed", "timeline=2",
                        1000);
    expect_health_state(test_srv.port, "stopped", 1000);
    struct command_result r;
    run_relay_command(&pg, db, "--check", &r);
    command_expect_status(&r, 1);
    command_expect_line(&r, "FAIL history:", NULL);
    relay_restart(&relay, NULL);
    DIAG_CHECK(relay_wait_exit(&relay, 10000) == 3, "a restart did not refuse again");
    /* The operator has looked (README "Failover") and adopts the new history. */
    const char *const adopt[] = {"--adopt", NULL};
    relay_restart(&relay, adopt);
    publish_to_log(&pg, 5);
    relay_wait_position(&relay, pg_log_newest(&pg), WAIT_MS);
    expect_health_state(test_srv.port, "copying", 5000);
    logwait_expect_line(relay.log_path, "relay adopted", "timeline=2", 1000);
    run_relay_command(&pg, db, "--check", &r);
    command_expect_status(&r, 0);
    DIAG_CHECK(relay_stop(&relay) == 0, "the relay did not exit 0 on SIGTERM");
    pg_stop(&pg);
}
END_TEST

/* The node prunes its file on its own schedule, and the log prunes its own: a resume from
 * before either gets the exact gap event (SPEC §4.3), then exactly what was kept. */
START_TEST(test_pruning_keeps_gaps_exact)
{
    struct pg pg;
    struct relay_proc relay;
    char db[TESTENV_PATH_MAX];
    start_log_and_relay(&pg, &relay, db, sizeof(db), NULL);
    publish_to_log(&pg, 100);
    relay_wait_position(&relay, pg_log_newest(&pg), WAIT_MS);
    long long log_ids[256];
    size_t count = log_session_ids(&pg, log_ids, 256);
    /* the node's own prune */
    const char *const prune[] = {"prune", "--db", db, "--keep-events", "10",
                                 "--floor-hours", "0", NULL};
    struct command_result r;
    command_run(&test_env, prune, NULL, &r);
    command_expect_status(&r, 0);
    publish_to_log(&pg, 10);    /* copying goes on after a prune, ids unchanged */
    relay_wait_position(&relay, pg_log_newest(&pg), WAIT_MS);
    count = log_session_ids(&pg, log_ids, 256);
    start_node(&test_srv, SERVER_LIGHTTPD, db);
    struct sse_client c;
    frames_resume(&c, test_srv.port, SESSION_PATH, log_ids[4], 10000);
    frames_expect_gap(&c, log_ids[4], log_ids[90], 5000);
    frames_expect_ids(&c, log_ids + 90, count - 90, 5000);
    sse_client_close(&c);
    stop_node(&test_srv, SERVER_LIGHTTPD);
    /* the log's own retention, before a new node's relay copies anything */
    char sql[128];
    snprintf(sql, sizeof(sql), "DELETE FROM events WHERE id < %lld", log_ids[50]);
    pg_psql_ok(&pg, sql);
    struct relay_proc relay_b;
    char db_b[TESTENV_PATH_MAX];
    relay_make_node_db(&test_env, "b", db_b, sizeof(db_b));
    relay_start(&relay_b, &test_env, "b", db_b, pg_conninfo(&pg), NULL);
    relay_wait_position(&relay_b, pg_log_newest(&pg), WAIT_MS);
    start_node(&test_srv, SERVER_LIGHTTPD, db_b);
    frames_resume(&c, test_srv.port, SESSION_PATH, log_ids[4], 10000);
    frames_expect_gap(&c, log_ids[4], log_ids[50], 5000);
    frames_expect_ids(&c, log_ids + 50, count - 50, 5000);
    sse_client_close(&c);
    DIAG_CHECK(relay_stop(&relay) == 0 && relay_stop(&relay_b) == 0,
               "a relay did not exit 0 on SIGTERM");
    pg_stop(&pg);
}
END_TEST

/* A session created, written to and closed in one transaction reaches the node in one
 * batch: its rows are applied in position order, so the close comes after the events (the
 * node's own trigger would refuse an event for a closed session). */
START_TEST(test_session_life_in_one_batch)
{
    struct pg pg;
    struct relay_proc relay;
    char db[TESTENV_PATH_MAX];
    start_log_and_relay(&pg, &relay, db, sizeof(db), NULL);
    pg_psql_ok(&pg, "BEGIN;\n"
                    "INSERT INTO sessions(id) VALUES ('s2');\n"
                    "INSERT INTO events(session_id, type) VALUES ('s2', 'custom'), "
                    "('s2', 'custom'), (NULL, 'custom');\n"
                    "UPDATE sessions SET closed_at = '2026-12-01T00:00:00.000Z' WHERE id = 's2';\n"
                    "COMMIT;\n");
    relay_wait_position(&relay, pg_log_newest(&pg), WAIT_MS);
    char line[2 * TESTENV_PATH_MAX];
    snprintf(line, sizeof(line), "sqlite3 '%s' \"SELECT count(*) FROM events WHERE "
             "session_id = 's2'; SELECT closed_at FROM sessions WHERE id = 's2'; "
             "SELECT count(*) FROM events WHERE session_id IS NULL\"", db);
    struct publish_result r;
    DIAG_CHECK(publish_shell(&test_env, line, &r) == 0, "%s", r.err);
    DIAG_CHECK(strcmp(r.out, "2\n2026-12-01T00:00:00.000Z\n1\n") == 0,
               "the node holds: %s", r.out);
    logwait_expect_line(relay.log_path, "relay copied events=3 sessions=1", NULL, 1000);
    DIAG_CHECK(relay_stop(&relay) == 0, "the relay did not exit 0 on SIGTERM");
    pg_stop(&pg);
}
END_TEST

/* --check: ok lines and exit 0 on a good log; a log without the schema fails with the
 * command that fixes it; a missing local file fails before anything else. */
START_TEST(test_check)
{
    struct pg pg;
    struct relay_proc relay;
    char db[TESTENV_PATH_MAX];
    start_log_and_relay(&pg, &relay, db, sizeof(db), NULL);
    DIAG_CHECK(relay_stop(&relay) == 0, "the relay did not exit 0 on SIGTERM");
    struct command_result r;
    run_relay_command(&pg, db, "--check", &r);
    command_expect_status(&r, 0);
    command_expect_line(&r, "ok   log:", "timeline 1");
    command_expect_line(&r, "ok   history:", NULL);
    command_expect_line(&r, "ok   lag: 0 positions", NULL);
    pg_psql_ok(&pg, "INSERT INTO events(session_id, type) VALUES ('s1', 'custom')");
    run_relay_command(&pg, db, "--check", &r);
    command_expect_status(&r, 0);
    command_expect_line(&r, "ok   lag: 1 positions", NULL);
    pg_psql_ok(&pg, "DROP FUNCTION sse_schema_version()");
    run_relay_command(&pg, db, "--check", &r);
    command_expect_status(&r, 1);
    command_expect_line(&r, "FAIL log: the database has no sse-fcgi schema",
                        "deploy/postgresql/schema.sql");
    char missing[TESTENV_PATH_MAX];
    testenv_path(&test_env, "missing.db", missing, sizeof(missing));
    run_relay_command(&pg, missing, "--check", &r);
    command_expect_status(&r, 1);
    DIAG_CHECK(strstr(r.err, "sse-fcgi-relay: cannot open database") != NULL,
               "a missing local file: %s", r.err);
    pg_stop(&pg);
}
END_TEST

/* A setting the relay cannot read is a usage error, as it is for sse-fcgi: SSE_LOG_LEVEL=loud
 * must not run at a level nobody asked for. */
START_TEST(test_bad_log_level_refused)
{
    char bin[TESTENV_PATH_MAX], db[TESTENV_PATH_MAX];
    relay_binary(bin, sizeof(bin));
    relay_make_node_db(&test_env, "a", db, sizeof(db));
    const char *const args[] = {"--pg", "host=127.0.0.1 port=1", "--db", db, NULL};
    const char *const env[] = {"SSE_LOG_LEVEL", "loud", NULL};
    const struct command_options opt = {.program = bin, .env = env, .timeout_ms = 10000};
    struct command_result r;
    command_run(&test_env, args, &opt, &r);
    command_expect_status(&r, 2);
    DIAG_CHECK(strstr(r.err, "SSE_LOG_LEVEL") != NULL, "the refusal names no setting: %s",
               r.err);
}
END_TEST

Suite *suite_relay(void);

Suite *
suite_relay(void)
{
    Suite *s = suite_create("relay");
    TCase *tc = server_tcase_create("relay");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_two_nodes_client_switches_node);
    tcase_add_test(tc, test_resume_on_a_lagging_node);
    tcase_add_test(tc, test_relay_killed_while_copying);
    tcase_add_test(tc, test_log_restarted);
    tcase_add_test(tc, test_log_unreachable_for_10_s);
    tcase_add_test(tc, test_timeline_change_stops_the_copy);
    tcase_add_test(tc, test_standby_is_refused);
    tcase_add_test(tc, test_pruning_keeps_gaps_exact);
    tcase_add_test(tc, test_session_life_in_one_batch);
    tcase_add_test(tc, test_check);
    tcase_add_test(tc, test_bad_log_level_refused);
    suite_add_tcase(s, tc);
    return s;
}
