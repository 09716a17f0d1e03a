/*
 * test_pg_producers.c - the example producers of deploy/postgresql/examples/ (README
 * "Publishing to PostgreSQL", issue 14), run as shipped: publish.sh by its #! line (sh and
 * the real psql), publish.py by Debian's /usr/bin/python3 (psycopg 3), publish.php by
 * /usr/bin/php (PDO pgsql). None is copied or rewritten.
 *
 * Each producer test starts a real PostgreSQL with deploy/postgresql/schema.sql (pg.h), a
 * relay into a node's own SQLite file (relay.h) and a lighttpd node on that file (server.h).
 * The producer opens session s1; a stream opened on the node then gets what the producer
 * publishes, live, with exactly the ids the log gave, and ends when the producer closes the
 * session. A batch with a refused row fails with the schema's own message, and none of its
 * rows is in the log, while the rows committed before it are. The last test runs README's
 * retention DELETE, as README gives it, on a log with old and new timestamps.
 */
#include <check.h>
#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/lib/command.h"
#include "tests/lib/diag.h"
#include "tests/lib/frames.h"
#include "tests/lib/pg.h"
#include "tests/lib/publish.h"
#include "tests/lib/relay.h"
#include "tests/lib/server.h"
#include "tests/lib/sse_client.h"
#include "tests/lib/testenv.h"

#define SESSION_PATH "/api/sessions/s1/events"
#define PYTHON "/usr/bin/python3"   /* Debian's: a pyenv python3 on PATH lacks psycopg */
#define PHP "/usr/bin/php"
#define NO_SESSION "events.session_id: no such session; INSERT INTO sessions(id) first"
#define LOG_IDS_SQL "SELECT id FROM events WHERE session_id = 's1' ORDER BY id"

enum { WAIT_MS = 20000, IDS_MAX = 64, EXAMPLE_ARGS_MAX = 16 };

static struct command_result run;       /* the last example's output; 32 KiB, off the stack */
static struct pg_result query;          /* the last query_text's */

/* One log and one node on it: what every producer test starts. */
struct node {
    struct pg pg;
    struct relay_proc relay;
    char db[TESTENV_PATH_MAX];
};

/* Runs deploy/postgresql/examples/<file> with args (NULL-terminated): by interpreter, or
 * by its #! line when interpreter is NULL; env as command_options.env (may be NULL). Fills
 * run and fails the test, printing the output, unless it exits status. */
static void
run_example(const char *interpreter, const char *file, const char *const *args,
            const char *const *env, int status)
{
    char path[TESTENV_PATH_MAX];
    snprintf(path, sizeof(path), "%s/deploy/postgresql/examples/%s",
             testenv_require("SSE_SRC_DIR"), file);
    const char *argv[EXAMPLE_ARGS_MAX + 2];
    size_t n = 0;
    if (interpreter != NULL)
        argv[n++] = path;
    for (size_t i = 0; args[i] != NULL; i++) {
        DIAG_CHECK(n < EXAMPLE_ARGS_MAX, "run_example: too many arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    const struct command_options opt = {.program = interpreter ? interpreter : path,
                                        .env = env};
    command_run(&test_env, argv, &opt, &run);
    if (run.status != status)
        command_dump(&run);
    DIAG_CHECK(run.status == status, "%s %s exited %d, not %d (output above; `make deps` "
               "installs psql, python3-psycopg, php-cli and php-pgsql)", file, args[0],
               run.status, status);
}

/* Fails the test, printing the output, unless text (the last run's stdout or stderr)
 * holds line as a whole line. */
static void
expect_line(const char *text, const char *line)
{
    const char *at = text;
    size_t len = strlen(line);
    while ((at = strstr(at, line)) != NULL &&
           !((at == text || at[-1] == '\n') && (at[len] == '\n' || at[len] == '\0')))
        at++;
    if (at == NULL)
        command_dump(&run);
    DIAG_CHECK(at != NULL, "no line \"%s\" in the output (above)", line);
}

/* Runs sql and returns its stdout without the last line break (a value with line breaks
 * comes whole). Borrowed until the next call. */
static const char *
query_text(struct pg *pg, const char *sql)
{
    int status = pg_psql(pg, sql, &query);
    DIAG_CHECK(status == 0, "psql exited %d on %s: %s", status, sql, query.err);
    size_t len = strlen(query.out);
    if (len > 0 && query.out[len - 1] == '\n')
        query.out[len - 1] = '\0';
    return query.out;
}

/* A new log (the schema, no session) and a relay feeding node file "a", with lighttpd on
 * it as test_srv. */
static void
start_log_and_node(struct node *n)
{
    pg_start(&n->pg, &test_env);
    pg_apply_schema(&n->pg);
    relay_make_node_db(&test_env, "a", n->db, sizeof(n->db));
    relay_start(&n->relay, &test_env, "a", n->db, pg_conninfo(&n->pg), NULL);
    const struct server_options opt = {.db_path = n->db};
    server_start(&test_srv, &test_env, &opt);
}

static void
stop_log_and_node(struct node *n)
{
    DIAG_CHECK(relay_stop(&n->relay) == 0, "the relay did not exit 0 on SIGTERM");
    pg_stop(&n->pg);
}

/* After the producer's open: waits until the node has the session, then opens its
 * stream, which gets the producer's events live from then on. */
static void
open_stream_when_copied(struct node *n, struct sse_client *c)
{
    relay_wait_position(&n->relay, pg_log_newest(&n->pg), WAIT_MS);
    frames_open_stream(c, test_srv.port, SESSION_PATH, NULL);
}

/* The log's events count, for "the refused batch left nothing". */
static long long
log_count(struct node *n)
{
    return pg_query_number(&n->pg, "SELECT count(*) FROM events");
}

/* After the producer's close: the stream's first event is first_id with data.content
 * equal to content; then it sends the rest and ends, and its ids are exactly the log's
 * events of s1, in order, count of them. */
static void
expect_stream_is_the_log(struct node *n, struct sse_client *c, long long first_id,
                         const char *content, size_t count)
{
    long long ids[IDS_MAX], log_ids[IDS_MAX];
    struct sse_frame f;
    sse_client_expect_event(c, &f, WAIT_MS);
    frames_expect_wellformed(&f);
    ids[0] = sse_frame_id(&f);
    cJSON *json = sse_frame_json(&f);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(json, "data");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(data, "content");
    bool is_content = cJSON_IsString(text) && strcmp(text->valuestring, content) == 0;
    cJSON_Delete(json);
    if (!is_content)
        sse_client_dump(c);
    DIAG_CHECK(ids[0] == first_id && is_content, "the first event is %lld, not %lld, or "
               "its content is not %s: %.300s", ids[0], first_id, content, f.data);
    sse_frame_release(&f);
    size_t got = frames_read_to_end(c, ids, 1, IDS_MAX, WAIT_MS);
    size_t logged = pg_query_numbers(&n->pg, LOG_IDS_SQL, log_ids, IDS_MAX);
    if (got != logged || logged != count || memcmp(ids, log_ids, got * sizeof(*ids)) != 0) {
        frames_print_ids("stream", ids, got);
        frames_print_ids("log", log_ids, logged);
        DIAG_CHECK(false, "the stream's events are not the log's %zu (ids above)", count);
    }
    sse_client_close(c);
}

/* The libpq environment that points at pg, for a producer run without -d. */
struct libpq_env {
    char port[16];
    const char *pairs[9];
};

static const char *const *
libpq_env(const struct pg *pg, struct libpq_env *e)
{
    snprintf(e->port, sizeof(e->port), "%d", pg->port);
    const char *const pairs[] = {"PGHOST", "127.0.0.1", "PGPORT", e->port, "PGUSER", "sse",
                                 "PGDATABASE", "postgres", NULL};
    memcpy(e->pairs, pairs, sizeof(pairs));
    return e->pairs;
}

/* The shell producer: libpq's environment, a text with every quote a shell or SQL knows
 * becomes exact JSON, a batch of documents, then a batch with a document that is not JSON:
 * psql's ERROR line with the schema's message, exit 3, nothing of it stored. */
START_TEST(test_psql_shell_script)
{
    static struct node n;
    start_log_and_node(&n);
    struct libpq_env e;
    const char *const *env = libpq_env(&n.pg, &e);
    run_example(NULL, "publish.sh", (const char *const[]){"open", "s1", NULL}, env, 0);
    struct sse_client c;
    open_stream_when_copied(&n, &c);
    const char *hostile = "it's \"quoted\" \\ back'); DELETE FROM events; -- :'session' $x\n"
                          "`two` lines";
    run_example(NULL, "publish.sh",
                (const char *const[]){"text", "s1", "client_output_delta", hostile, NULL},
                env, 0);
    long long first = strtoll(run.out, NULL, 10);
    char sql[128];
    snprintf(sql, sizeof(sql), "SELECT data::json->>'content' FROM events WHERE id = %lld",
             first);
    DIAG_CHECK(strcmp(query_text(&n.pg, sql), hostile) == 0, "stored as '%s'", query.out);
    run_example(NULL, "publish.sh", (const char *const[]){"event", "s1", "llm_text_delta",
                "{\"content\":\"a\"}", "{\"content\":\"b\"}", NULL}, env, 0);
    DIAG_CHECK(log_count(&n) == 3, "%lld events, not 3", log_count(&n));
    run_example(NULL, "publish.sh", (const char *const[]){"event", "s1", "llm_text_delta",
                "{\"content\":\"c\"}", "{\"content\":", NULL}, env, 3);
    expect_line(run.err,
                "psql:<stdin>:1: ERROR:  events.data must be valid JSON (json_valid failed)");
    DIAG_CHECK(log_count(&n) == 3, "the refused batch left %lld events, not 3",
               log_count(&n));
    run_example(NULL, "publish.sh", (const char *const[]){"close", "s1", NULL}, env, 0);
    expect_stream_is_the_log(&n, &c, first, hostile, 3);
    run_example(NULL, "publish.sh", (const char *const[]){"close", "s1", NULL}, env, 1);
    expect_line(run.err, "publish.sh: no open session s1");
    stop_log_and_node(&n);
}
END_TEST

/* publish.py or publish.php, which share their steps: open (by libpq's environment), then
 * publish, refused and close with the connection given by -d (a PDO DSN when is_pdo, else
 * a libpq conninfo); refused must print refused_line and the rollback line, nothing else. */
static void
check_step_producer(const char *interpreter, const char *file, bool is_pdo,
                    const char *refused_line)
{
    static struct node n;
    start_log_and_node(&n);
    struct libpq_env e;
    run_example(interpreter, file, (const char *const[]){"open", "s1", NULL},
                libpq_env(&n.pg, &e), 0);
    struct sse_client c;
    open_stream_when_copied(&n, &c);
    char dsn[PG_CONNINFO_MAX + 64];
    if (is_pdo)
        snprintf(dsn, sizeof(dsn), "pgsql:host=127.0.0.1;port=%d;user=sse;dbname=postgres",
                 n.pg.port);
    else
        snprintf(dsn, sizeof(dsn), "%s", pg_conninfo(&n.pg));
    run_example(interpreter, file, (const char *const[]){"-d", dsn, "publish", "s1", NULL},
                NULL, 0);
    long long first = strtoll(run.out, NULL, 10);
    DIAG_CHECK(log_count(&n) == 4, "%lld events, not 4", log_count(&n));
    run_example(interpreter, file, (const char *const[]){"-d", dsn, "refused", "s1", NULL},
                NULL, 0);
    char refused[512];
    snprintf(refused, sizeof(refused), "%s\nthe whole batch was rolled back: none of its rows "
             "is in the log\n", refused_line);
    if (strcmp(run.out, refused) != 0)
        command_dump(&run);
    DIAG_CHECK(strcmp(run.out, refused) == 0, "%s refused printed other lines than:\n%s", file,
               refused);
    DIAG_CHECK(log_count(&n) == 4, "the refused batch left %lld events, not 4",
               log_count(&n));
    run_example(interpreter, file, (const char *const[]){"-d", dsn, "close", "s1", NULL},
                NULL, 0);
    expect_stream_is_the_log(&n, &c, first, "it's \"Hi\"", 4);
    stop_log_and_node(&n);
}

START_TEST(test_python_psycopg)
{
    check_step_producer(PYTHON, "publish.py", false,
                        "refused: CheckViolation (SQLSTATE 23514): " NO_SESSION);
}
END_TEST

START_TEST(test_php_pdo)
{
    check_step_producer(PHP, "publish.php", true,
                        "refused: PDOException (SQLSTATE 23514): " NO_SESSION);
}
END_TEST

/* README's cron line for the log's retention: the statement between its -c " and the next
 * quote, into out. */
static void
readme_retention_statement(char *out, size_t size)
{
    static const char MARK[] = "-c \"DELETE FROM events ";
    char *readme = testenv_read_source("README.md");
    const char *at = strstr(readme, MARK);
    DIAG_CHECK(at != NULL, "README has no line with %s", MARK);
    at += strlen("-c \"");
    size_t len = strcspn(at, "\"\n");
    DIAG_CHECK(at[len] == '"' && len < size, "README's DELETE does not end on its line");
    snprintf(out, size, "%.*s", (int)len, at);
    free(readme);
}

#define OLD "'2000-01-01T00:00:00.000Z'"
/* Each scope's highest id older than OLD's year, "scope:id,..." by scope ('' global). */
#define OLD_MARKS_SQL                                                                       \
    "SELECT string_agg(scope || ':' || through_id, ',' ORDER BY scope) FROM (SELECT "      \
    "coalesce(session_id, '') AS scope, max(id) AS through_id FROM events WHERE "          \
    "timestamp < '2001' GROUP BY 1) AS old"
#define SCOPE_SQL "CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN 's1' ELSE 's2' END"

/* README's retention DELETE on a log whose older rows (s1, s2 and the global channel
 * interleaved) are stamped in 2000 and newer ones now: exactly the old prefix goes, in
 * every scope, and `pruned` records each scope's last id; a node copying after it gets the
 * marks, and a resume from before the cut gets the exact gap, then the kept rows; a node
 * that had copied the rows keeps them until its own `sse-fcgi prune` takes the same. */
START_TEST(test_readme_retention_delete)
{
    static struct pg pg;
    static struct relay_proc relay_a, relay_b;
    char db_a[TESTENV_PATH_MAX], db_b[TESTENV_PATH_MAX], statement[512], marks[256];
    pg_start(&pg, &test_env);
    pg_apply_schema(&pg);
    pg_psql_ok(&pg, "INSERT INTO sessions(id) VALUES ('s1'), ('s2');"
                    "INSERT INTO events(session_id, type, timestamp) SELECT " SCOPE_SQL ", "
                    "'client_output_delta', " OLD " FROM generate_series(1, 12) AS g;"
                    "INSERT INTO events(session_id, type) SELECT " SCOPE_SQL ", "
                    "'client_output_delta' FROM generate_series(1, 6) AS g;");
    relay_make_node_db(&test_env, "a", db_a, sizeof(db_a));
    relay_start(&relay_a, &test_env, "a", db_a, pg_conninfo(&pg), NULL);
    relay_wait_position(&relay_a, pg_log_newest(&pg), WAIT_MS);
    long long old_ids[IDS_MAX], new_ids[IDS_MAX];
    size_t n_old = pg_query_numbers(&pg, "SELECT id FROM events WHERE session_id = 's1' AND "
                                    "timestamp < '2001' ORDER BY id", old_ids, IDS_MAX);
    size_t n_new = pg_query_numbers(&pg, "SELECT id FROM events WHERE session_id = 's1' AND "
                                    "timestamp >= '2001' ORDER BY id", new_ids, IDS_MAX);
    DIAG_CHECK(n_old == 4 && n_new == 2, "s1 has %zu old and %zu new events", n_old, n_new);
    snprintf(marks, sizeof(marks), "%s", query_text(&pg, OLD_MARKS_SQL));

    readme_retention_statement(statement, sizeof(statement));
    pg_psql_ok(&pg, statement);
    DIAG_CHECK(pg_query_number(&pg, "SELECT count(*) FROM events WHERE timestamp < '2001'")
               == 0 && pg_query_number(&pg, "SELECT count(*) FROM events") == 6,
               "the DELETE left other rows than the 6 new ones");
    const char *pruned = query_text(&pg, "SELECT string_agg(scope || ':' || through_id, ',' "
                                         "ORDER BY scope) FROM pruned");
    DIAG_CHECK(strcmp(pruned, marks) == 0, "pruned is %s, not %s", pruned, marks);
    pg_psql_ok(&pg, statement);     /* nothing old left: max(id) is NULL, nothing goes */
    DIAG_CHECK(pg_query_number(&pg, "SELECT count(*) FROM events") == 6,
               "a second DELETE took new rows");

    relay_make_node_db(&test_env, "b", db_b, sizeof(db_b));
    relay_start(&relay_b, &test_env, "b", db_b, pg_conninfo(&pg), NULL);
    relay_wait_position(&relay_b, pg_log_newest(&pg), WAIT_MS);
    const struct server_options opt = {.db_path = db_b};
    server_start(&test_srv, &test_env, &opt);
    struct sse_client c;
    frames_resume(&c, test_srv.port, SESSION_PATH, old_ids[0], 10000);
    frames_expect_gap(&c, old_ids[0], new_ids[0], 5000);
    frames_expect_ids(&c, new_ids, n_new, 5000);
    sse_client_close(&c);

    char line[2 * TESTENV_PATH_MAX];
    struct publish_result local;
    snprintf(line, sizeof(line), "sqlite3 '%s' \"SELECT count(*) FROM events WHERE "
             "timestamp < '2001'; SELECT count(*) FROM pruned\"", db_a);
    DIAG_CHECK(publish_shell(&test_env, line, &local) == 0, "%s: %s", line, local.err);
    DIAG_CHECK(strcmp(local.out, "12\n0\n") == 0, "node a, which had copied the old rows, "
               "has %s old rows and marks, not 12 and 0", local.out);
    const char *const prune[] = {"prune", "--db", db_a, "--keep-days", "30",
                                 "--floor-hours", "0", NULL};
    command_run(&test_env, prune, NULL, &run);
    command_expect_status(&run, 0);
    snprintf(line, sizeof(line), "sqlite3 '%s' \"SELECT group_concat(scope || ':' || "
             "through_id, ',') FROM (SELECT * FROM pruned ORDER BY scope)\"", db_a);
    DIAG_CHECK(publish_shell(&test_env, line, &local) == 0, "%s: %s", line, local.err);
    local.out[strcspn(local.out, "\n")] = '\0';
    DIAG_CHECK(strcmp(local.out, marks) == 0, "node a's own prune: pruned is %s, not %s",
               local.out, marks);
    DIAG_CHECK(relay_stop(&relay_a) == 0 && relay_stop(&relay_b) == 0,
               "a relay did not exit 0 on SIGTERM");
    pg_stop(&pg);
}
END_TEST

/* Every ```python and ```php block of README's "Publishing to PostgreSQL" stands in
 * publish.py and publish.php, byte for byte: README quotes the files, never a variant. */
START_TEST(test_readme_quotes_the_files)
{
    static const struct {
        const char *fence, *file;
    } QUOTED[] = {{"```python\n", "publish.py"}, {"```php\n", "publish.php"}};
    char *readme = testenv_read_source("README.md");
    char *section = strstr(readme, "\n## Publishing to PostgreSQL\n");
    DIAG_CHECK(section != NULL, "README has no section Publishing to PostgreSQL");
    char *end = strstr(section + 1, "\n## ");
    if (end != NULL)
        *end = '\0';
    for (size_t i = 0; i < sizeof(QUOTED) / sizeof(QUOTED[0]); i++) {
        char name[64];
        snprintf(name, sizeof(name), "deploy/postgresql/examples/%s", QUOTED[i].file);
        char *file = testenv_read_source(name);
        int blocks = 0;
        for (char *at = strstr(section, QUOTED[i].fence); at != NULL;
             at = strstr(at, QUOTED[i].fence), blocks++) {
            at += strlen(QUOTED[i].fence);
            char *close = strstr(at, "```");
            DIAG_CHECK(close != NULL, "README: a block for %s does not end", QUOTED[i].file);
            *close = '\0';
            DIAG_CHECK(strstr(file, at) != NULL, "README quotes what %s does not hold:\n%s",
                       QUOTED[i].file, at);
            *close = '`';
            at = close + 1;
        }
        DIAG_CHECK(blocks > 0, "README quotes nothing of %s", QUOTED[i].file);
        free(file);
    }
    free(readme);
}
END_TEST

Suite *suite_pg_producers(void);

Suite *
suite_pg_producers(void)
{
    Suite *s = suite_create("pg_producers");
    TCase *tc = server_tcase_create("pg_producers");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_psql_shell_script);
    tcase_add_test(tc, test_python_psycopg);
    tcase_add_test(tc, test_php_pdo);
    tcase_add_test(tc, test_readme_retention_delete);
    tcase_add_test(tc, test_readme_quotes_the_files);
    suite_add_tcase(s, tc);
    return s;
}
