/*
 * upstream.c - the shared log in PostgreSQL: connect, check, LISTEN, read by position
 * (see upstream.h).
 *
 * Why positions can be read with "> cursor": the schema takes a transaction-scoped advisory
 * lock before each id (sse_log_take), so writers commit in id order, and a snapshot always
 * holds a prefix of the positions. A batch is read in one REPEATABLE READ snapshot, so its
 * events, session changes and newest position agree with each other.
 *
 * Every query is sent non-blocking and waited for with poll() on the connection's socket
 * and stop_fd, bounded by timeout_ms: libpq's own blocking calls would wait forever on a
 * server that stopped answering, and would not let SIGTERM through.
 */
#include "upstream.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum upstream_statement {
    S_EVENTS,
    S_SESSIONS,
    S_PRUNED,
    S_NEWEST,
    S_STATEMENT_COUNT
};

/* $1 = position; S_EVENTS: $2 = rows, $3 = bytes; S_SESSIONS: $2 = through, $3 = rows.
 * S_EVENTS stops at the first row that would pass $3 bytes of data, keeping at least one;
 * the running sum is computed under the LIMIT, so the scan stops at $2 rows. */
static const char *const STATEMENTS[S_STATEMENT_COUNT] = {
    [S_EVENTS] = "SELECT id, session_id, type, stream_id, node_id, execution_id, data, "
                 "timestamp, correlation_id, colony_id, run_id, session_created_at FROM ("
                 "SELECT e.*, s.created_at AS session_created_at, sum(octet_length(e.data)) "
                 "OVER (ORDER BY e.id ROWS UNBOUNDED PRECEDING) AS running "
                 "FROM events AS e LEFT JOIN sessions AS s ON s.id = e.session_id "
                 "WHERE e.id > $1 ORDER BY e.id LIMIT $2) AS t "
                 "WHERE running - octet_length(data) < $3 OR running = octet_length(data) "
                 "ORDER BY id",
    [S_SESSIONS] = "SELECT log_id, id, created_at, closed_at FROM sessions "
                   "WHERE log_id > $1 AND log_id <= $2 ORDER BY log_id LIMIT $3",
    [S_PRUNED] = "SELECT scope, through_id FROM pruned WHERE through_id > $1 ORDER BY scope",
    [S_NEWEST] = "SELECT greatest(e.newest, coalesce((SELECT max(log_id) FROM sessions), 0)), "
                 "e.newest FROM (SELECT coalesce(max(id), 0) AS newest FROM events) AS e",
};

static const char *const STATEMENT_NAMES[S_STATEMENT_COUNT] = {
    [S_EVENTS] = "sse_events", [S_SESSIONS] = "sse_sessions",
    [S_PRUNED] = "sse_pruned", [S_NEWEST] = "sse_newest",
};

/* The columns of S_EVENTS after id, in enum replica_column order, then created_at. */
enum { EVENT_FIRST_TEXT = 1, EVENT_CREATED_AT = 1 + REPLICA_COLUMN_COUNT };

struct upstream {
    const struct upstream_options *opt;   /* borrowed */
    PGconn *conn;
    PGresult *results[S_STATEMENT_COUNT];   /* the last fetch's, which its batch points into */
    struct replica_event *events;
    struct replica_session *sessions;
    struct replica_pruned *pruned;
    size_t events_cap, sessions_cap, pruned_cap;
    char errmsg[1024];
};

static enum upstream_result
fail(struct upstream *u, enum upstream_result rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static enum upstream_result
fail(struct upstream *u, enum upstream_result rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(u->errmsg, sizeof(u->errmsg), fmt, ap);
    va_end(ap);
    /* libpq's messages end with a newline; a log line must not. */
    size_t len = strlen(u->errmsg);
    while (len > 0 && (u->errmsg[len - 1] == '\n' || u->errmsg[len - 1] == ' '))
        u->errmsg[--len] = '\0';
    for (char *p = u->errmsg; *p != '\0'; p++)
        if (*p == '\n')
            *p = ' ';
    return rc;
}

static int64_t
now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until the socket is ready (readable; writable too when is_writing), stop_fd is
 * readable, or deadline (CLOCK_MONOTONIC ms) passes. */
static enum upstream_result
await_socket(struct upstream *u, bool is_writing, int64_t deadline, bool *timed_out)
{
    *timed_out = false;
    struct pollfd fds[2] = {
        {.fd = PQsocket(u->conn), .events = (short)(POLLIN | (is_writing ? POLLOUT : 0))},
        {.fd = u->opt->stop_fd, .events = POLLIN},
    };
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0) {
            *timed_out = true;
            return UPSTREAM_OK;
        }
        int n = poll(fds, fds[1].fd >= 0 ? 2 : 1, (int)(left > 60000 ? 60000 : left));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return fail(u, UPSTREAM_FAILED, "poll: %s", strerror(errno));
        if (n > 0 && fds[1].fd >= 0 && (fds[1].revents & POLLIN))
            return UPSTREAM_STOPPED;
        if (n > 0)
            return UPSTREAM_OK;
    }
}

/* Waits for the answer to what was sent, within timeout_ms, and returns its last result
 * (owned by the caller), or a failure. An error result is turned into a failure. */
static enum upstream_result
await_result(struct upstream *u, const char *what, PGresult **out)
{
    *out = NULL;
    int64_t deadline = now_ms() + u->opt->timeout_ms;
    PGresult *last = NULL;
    for (;;) {
        int flushed = PQflush(u->conn);
        while (flushed != 0 || PQisBusy(u->conn)) {
            if (flushed < 0)
                break;
            bool timed_out;
            enum upstream_result rc = await_socket(u, flushed == 1, deadline, &timed_out);
            if (rc != UPSTREAM_OK || timed_out) {
                PQclear(last);
                return rc != UPSTREAM_OK ? rc
                                         : fail(u, UPSTREAM_FAILED, "%s: no answer within "
                                                "%d ms", what, u->opt->timeout_ms);
            }
            if (!PQconsumeInput(u->conn))
                break;
            flushed = PQflush(u->conn);
        }
        if (flushed < 0 || PQstatus(u->conn) == CONNECTION_BAD) {
            PQclear(last);
            return fail(u, UPSTREAM_FAILED, "%s: %s", what, PQerrorMessage(u->conn));
        }
        PGresult *res = PQgetResult(u->conn);
        if (res == NULL)
            break;
        if (last != NULL && PQresultStatus(last) == PGRES_FATAL_ERROR)
            PQclear(res);       /* the first error is the one to report */
        else {
            PQclear(last);
            last = res;
        }
    }
    if (last == NULL)
        return fail(u, UPSTREAM_FAILED, "%s: no result", what);
    ExecStatusType st = PQresultStatus(last);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fail(u, UPSTREAM_FAILED, "%s: %s", what, PQresultErrorMessage(last));
        PQclear(last);
        return UPSTREAM_FAILED;
    }
    *out = last;
    return UPSTREAM_OK;
}

/* Runs a fixed command (no parameters) and drops its result. */
static enum upstream_result
run_command(struct upstream *u, const char *sql)
{
    if (!PQsendQuery(u->conn, sql))
        return fail(u, UPSTREAM_FAILED, "%s: %s", sql, PQerrorMessage(u->conn));
    PGresult *res;
    enum upstream_result rc = await_result(u, sql, &res);
    PQclear(res);
    return rc;
}

/* Runs a fixed query (no parameters) that returns one row. */
static enum upstream_result
run_query(struct upstream *u, const char *sql, PGresult **out)
{
    if (!PQsendQuery(u->conn, sql))
        return fail(u, UPSTREAM_FAILED, "%s: %s", sql, PQerrorMessage(u->conn));
    enum upstream_result rc = await_result(u, sql, out);
    if (rc == UPSTREAM_OK && PQntuples(*out) != 1) {
        PQclear(*out);
        *out = NULL;
        return fail(u, UPSTREAM_FAILED, "%s: expected one row", sql);
    }
    return rc;
}

static enum upstream_result
run_statement(struct upstream *u, enum upstream_statement s, int nparams,
              const char *const *values)
{
    PQclear(u->results[s]);
    u->results[s] = NULL;
    if (!PQsendQueryPrepared(u->conn, STATEMENT_NAMES[s], nparams, values, NULL, NULL, 0))
        return fail(u, UPSTREAM_FAILED, "%s: %s", STATEMENT_NAMES[s], PQerrorMessage(u->conn));
    return await_result(u, STATEMENT_NAMES[s], &u->results[s]);
}

static int64_t
int_value(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static const char *
text_value(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* What the server must be: this project's schema, a primary (LISTEN is refused on a
 * standby, and a standby's log may be behind what clients saw). */
static enum upstream_result
check_server(struct upstream *u, struct replica_source *source)
{
    PGresult *res;
    if (!PQsendQuery(u->conn, "SELECT sse_schema_version()"))
        return fail(u, UPSTREAM_FAILED, "%s", PQerrorMessage(u->conn));
    enum upstream_result rc = await_result(u, "SELECT sse_schema_version()", &res);
    if (rc == UPSTREAM_FAILED && strstr(u->errmsg, "does not exist") != NULL)
        return fail(u, UPSTREAM_REFUSED, "the database has no sse-fcgi schema (%s); apply "
                    "deploy/postgresql/schema.sql with psql", u->errmsg);
    if (rc != UPSTREAM_OK)
        return rc;
    PQclear(res);
    if ((rc = run_query(u, "SELECT pg_is_in_recovery()", &res)) != UPSTREAM_OK)
        return rc;
    bool is_standby = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (is_standby)
        return fail(u, UPSTREAM_REFUSED, "the server is a standby (in recovery): LISTEN is "
                    "refused there and its log may be behind; point --pg at the primary");
    /* The timeline is the first 8 hex digits of the current WAL file's name: current at
     * once after a promotion, unlike pg_control_checkpoint()'s, which waits for one. */
    rc = run_query(u, "SELECT system_identifier::text, ('x' || substr(pg_walfile_name("
                   "pg_current_wal_lsn()), 1, 8))::bit(32)::bigint FROM pg_control_system()",
                   &res);
    if (rc != UPSTREAM_OK)
        return rc;
    snprintf(source->system_identifier, sizeof(source->system_identifier), "%s",
             PQgetvalue(res, 0, 0));
    source->timeline = int_value(res, 0, 1);
    PQclear(res);
    return UPSTREAM_OK;
}

static enum upstream_result
prepare_statements(struct upstream *u)
{
    for (int s = 0; s < S_STATEMENT_COUNT; s++) {
        if (!PQsendPrepare(u->conn, STATEMENT_NAMES[s], STATEMENTS[s], 0, NULL))
            return fail(u, UPSTREAM_FAILED, "prepare: %s", PQerrorMessage(u->conn));
        PGresult *res;
        enum upstream_result rc = await_result(u, STATEMENT_NAMES[s], &res);
        PQclear(res);
        if (rc != UPSTREAM_OK)
            return rc;
    }
    return UPSTREAM_OK;
}

enum upstream_result
upstream_connect(const struct upstream_options *opt, struct upstream **out,
                 struct replica_source *source, char *errbuf, size_t errbuf_size)
{
    *out = NULL;
    struct upstream *u = calloc(1, sizeof(*u));
    if (u == NULL) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return UPSTREAM_FAILED;
    }
    u->opt = opt;
    /* Ours first: the keywords the user's conninfo (expanded from dbname) names win. TCP
     * keepalives find a peer that vanished without a FIN, between our bounded waits. */
    char connect_timeout[16];
    snprintf(connect_timeout, sizeof(connect_timeout), "%d",
             opt->timeout_ms / 1000 > 2 ? opt->timeout_ms / 1000 : 2);
    const char *const keys[] = {"application_name", "connect_timeout", "keepalives_idle",
                                "keepalives_interval", "keepalives_count", "dbname", NULL};
    const char *const values[] = {"sse-fcgi-relay", connect_timeout, "10", "5", "3",
                                  opt->conninfo, NULL};
    u->conn = PQconnectdbParams(keys, values, 1);
    enum upstream_result rc = UPSTREAM_OK;
    if (u->conn == NULL)
        rc = fail(u, UPSTREAM_FAILED, "out of memory");
    else if (PQstatus(u->conn) != CONNECTION_OK)
        rc = fail(u, UPSTREAM_FAILED, "%s", PQerrorMessage(u->conn));
    else if (PQsetnonblocking(u->conn, 1) != 0)
        rc = fail(u, UPSTREAM_FAILED, "%s", PQerrorMessage(u->conn));
    if (rc == UPSTREAM_OK)
        rc = check_server(u, source);
    if (rc == UPSTREAM_OK)
        rc = prepare_statements(u);
    if (rc == UPSTREAM_OK)
        rc = run_command(u, "LISTEN sse_fcgi");
    if (rc != UPSTREAM_OK) {
        snprintf(errbuf, errbuf_size, "%s", u->errmsg);
        upstream_close(u);
        return rc;
    }
    *out = u;
    return UPSTREAM_OK;
}

void
upstream_close(struct upstream *u)
{
    if (u == NULL)
        return;
    for (int s = 0; s < S_STATEMENT_COUNT; s++)
        PQclear(u->results[s]);
    PQfinish(u->conn);
    free(u->events);
    free(u->sessions);
    free(u->pruned);
    free(u);
}

const char *
upstream_errmsg(const struct upstream *u)
{
    return u->errmsg;
}

/* Drops pending notifications; true when there was one. */
static bool
drain_notifications(struct upstream *u)
{
    bool any = false;
    PGnotify *n;
    while ((n = PQnotifies(u->conn)) != NULL) {
        any = true;
        PQfreemem(n);
    }
    return any;
}

enum upstream_result
upstream_wait(struct upstream *u, int timeout_ms)
{
    if (drain_notifications(u))
        return UPSTREAM_OK;
    bool timed_out;
    enum upstream_result rc = await_socket(u, false, now_ms() + timeout_ms, &timed_out);
    if (rc != UPSTREAM_OK || timed_out)
        return rc;
    if (!PQconsumeInput(u->conn))
        return fail(u, UPSTREAM_FAILED, "%s", PQerrorMessage(u->conn));
    drain_notifications(u);
    return UPSTREAM_OK;
}

/* Grows *array to hold n items of size each. */
static bool
reserve(void **array, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return true;
    void *grown = realloc(*array, n * size);
    if (grown == NULL)
        return false;
    *array = grown;
    *cap = n;
    return true;
}

static enum upstream_result
collect_events(struct upstream *u, struct replica_batch *batch)
{
    const PGresult *res = u->results[S_EVENTS];
    size_t n = (size_t)PQntuples(res);
    if (!reserve((void **)&u->events, &u->events_cap, n, sizeof(*u->events)))
        return fail(u, UPSTREAM_FAILED, "out of memory for %zu rows", n);
    for (size_t i = 0; i < n; i++) {
        struct replica_event *e = &u->events[i];
        e->id = int_value(res, (int)i, 0);
        for (int c = 0; c < REPLICA_COLUMN_COUNT; c++) {
            e->text[c] = text_value(res, (int)i, EVENT_FIRST_TEXT + c);
            e->len[c] = (size_t)PQgetlength(res, (int)i, EVENT_FIRST_TEXT + c);
        }
        e->session_created_at = text_value(res, (int)i, EVENT_CREATED_AT);
    }
    batch->events = u->events;
    batch->event_count = n;
    return UPSTREAM_OK;
}

static enum upstream_result
collect_sessions(struct upstream *u, struct replica_batch *batch)
{
    const PGresult *res = u->results[S_SESSIONS];
    size_t n = (size_t)PQntuples(res);
    if (!reserve((void **)&u->sessions, &u->sessions_cap, n, sizeof(*u->sessions)))
        return fail(u, UPSTREAM_FAILED, "out of memory for %zu sessions", n);
    for (size_t i = 0; i < n; i++) {
        u->sessions[i] = (struct replica_session){
            .log_id = int_value(res, (int)i, 0),
            .id = text_value(res, (int)i, 1),
            .created_at = text_value(res, (int)i, 2),
            .closed_at = text_value(res, (int)i, 3),
        };
    }
    batch->sessions = u->sessions;
    batch->session_count = n;
    return UPSTREAM_OK;
}

static enum upstream_result
collect_pruned(struct upstream *u, struct replica_batch *batch)
{
    const PGresult *res = u->results[S_PRUNED];
    size_t n = (size_t)PQntuples(res);
    if (!reserve((void **)&u->pruned, &u->pruned_cap, n, sizeof(*u->pruned)))
        return fail(u, UPSTREAM_FAILED, "out of memory for %zu pruned marks", n);
    for (size_t i = 0; i < n; i++)
        u->pruned[i] = (struct replica_pruned){.scope = text_value(res, (int)i, 0),
                                               .through_id = int_value(res, (int)i, 1)};
    batch->pruned = u->pruned;
    batch->pruned_count = n;
    return UPSTREAM_OK;
}

/* The reads of one batch, inside the caller's snapshot. */
static enum upstream_result
read_batch(struct upstream *u, int64_t position, struct replica_batch *batch, bool *is_full)
{
    char pos[24], rows[24], bytes[24], through[24];
    snprintf(pos, sizeof(pos), "%" PRId64, position);
    snprintf(rows, sizeof(rows), "%zu", u->opt->batch_rows);
    snprintf(bytes, sizeof(bytes), "%zu", u->opt->batch_bytes);
    enum upstream_result rc = run_statement(u, S_NEWEST, 0, NULL);
    if (rc != UPSTREAM_OK)
        return rc;
    batch->upstream_newest = int_value(u->results[S_NEWEST], 0, 0);
    int64_t newest_event = int_value(u->results[S_NEWEST], 0, 1);
    const char *const event_args[] = {pos, rows, bytes};
    if ((rc = run_statement(u, S_EVENTS, 3, event_args)) != UPSTREAM_OK ||
        (rc = collect_events(u, batch)) != UPSTREAM_OK)
        return rc;
    /* The batch reaches the newest position when it holds the snapshot's last event (or
     * there is none): session changes after that come along. Else (rows or bytes cut it)
     * it ends at its last event, and the session changes after that wait for the next. */
    bool events_cut = batch->event_count > 0 &&
                      batch->events[batch->event_count - 1].id < newest_event;
    batch->through = events_cut ? batch->events[batch->event_count - 1].id
                                : batch->upstream_newest;
    if (batch->through < position)
        batch->through = position;
    snprintf(through, sizeof(through), "%" PRId64, batch->through);
    const char *const session_args[] = {pos, through, rows};
    if ((rc = run_statement(u, S_SESSIONS, 3, session_args)) != UPSTREAM_OK ||
        (rc = collect_sessions(u, batch)) != UPSTREAM_OK)
        return rc;
    if (batch->session_count == u->opt->batch_rows) {
        /* Too many session changes for one batch: end it at the last one read, and leave
         * the events after that for the next batch. */
        batch->through = batch->sessions[batch->session_count - 1].log_id;
        while (batch->event_count > 0 &&
               batch->events[batch->event_count - 1].id > batch->through)
            batch->event_count--;
    }
    const char *const pruned_args[] = {pos};
    if ((rc = run_statement(u, S_PRUNED, 1, pruned_args)) != UPSTREAM_OK ||
        (rc = collect_pruned(u, batch)) != UPSTREAM_OK)
        return rc;
    *is_full = batch->through < batch->upstream_newest;
    return UPSTREAM_OK;
}

enum upstream_result
upstream_fetch(struct upstream *u, int64_t position, struct replica_batch *batch,
               bool *is_full)
{
    *batch = (struct replica_batch){.through = position};
    *is_full = false;
    enum upstream_result rc =
        run_command(u, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    if (rc != UPSTREAM_OK)
        return rc;
    rc = read_batch(u, position, batch, is_full);
    /* A read-only snapshot: ending it cannot lose anything, so a failed COMMIT after good
     * reads only means the link broke, and the next fetch reconnects. */
    enum upstream_result end = run_command(u, rc == UPSTREAM_OK ? "COMMIT" : "ROLLBACK");
    return rc != UPSTREAM_OK ? rc : end;
}
