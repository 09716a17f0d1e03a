/*
 * prune.c - retention: plan each scope, delete a prefix by id, checkpoint (see prune.h).
 *
 * For each scope the plan finds keep_from, the oldest id any rule keeps (index searches on
 * events(session_id, id); the age walk reads rows in id order from the oldest and stops at
 * the first kept one). Rows with id < keep_from are deleted; when no rule keeps anything,
 * keep_from is the scope's newest id + 1 as seen by the plan, so a row committed after the
 * plan (a higher id: AUTOINCREMENT) is never touched. Planning holds no write lock; the
 * plans go into a temp table, one row per scope that loses rows.
 * Deleting then walks the table once in id order, in transactions of at most batch_rows
 * rows, deleting each row below its scope's keep_from. In id order because sessions
 * interleave: a session's rows lie on every page, so deleting scope by scope rewrote each
 * page once per session. Measured, 949,000 of 1,000,000 rows over 51 sessions, 5,000 rows
 * per transaction: scope by scope 180 ms per transaction (at most 520 ms), in id order
 * 33 ms (at most 90 ms). Each transaction still leaves a prefix of every scope deleted,
 * since a scope's doomed rows go oldest first.
 * Every statement is prepared from PRUNE_QUERIES (store/db.c opens, prepares and reports
 * failures); nothing is spliced into SQL.
 */
#include "prune.h"

#include <assert.h>
#include <sqlite3.h>
#include <stdio.h>
#include <time.h>

#include "db.h"

/* A timestamp has an age when it is ISO-8601 text that julianday() reads: it starts with
 * YYYY-MM-DD (a bare number would read as a Julian day number, year -4713). */
#define AGE_OF_TIMESTAMP "julianday(CASE WHEN timestamp GLOB " \
                         "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' THEN timestamp END)"

enum prune_query {
    P_NOW_MS,
    P_JOURNAL_MODE,
    P_FIRST_SESSION,
    P_NEXT_SESSION,
    P_IS_OPEN,
    P_MIN_ID,
    P_MAX_ID,
    P_NTH_NEWEST,
    P_FIRST_YOUNG,
    P_LAST_BELOW,
    P_COUNT_RANGE,
    P_TEMP_STORE,
    P_PLAN_TABLE,
    P_PLAN_INDEX,
    P_PLAN_ADD,
    P_BATCH_END,
    P_DELETE,
    P_QUERY_COUNT
};

/* ?1 = scope (session id, NULL for the global channel), ?2 = low id, ?3 = high id, ?4 = a
 * julianday cutoff, ?5 = a count. */
static const struct db_sql PRUNE_QUERIES[P_QUERY_COUNT] = {
    [P_NOW_MS] = {.sql = "SELECT CAST(julianday('now') * 86400000 AS INTEGER)"},
    [P_JOURNAL_MODE] = {.sql = "SELECT journal_mode = 'wal' FROM pragma_journal_mode"},
    [P_FIRST_SESSION] = {.sql = "SELECT session_id FROM events WHERE session_id IS NOT NULL "
                                "ORDER BY session_id LIMIT 1"},
    [P_NEXT_SESSION] = {.sql = "SELECT session_id FROM events WHERE session_id > ?1 "
                               "ORDER BY session_id LIMIT 1"},
    [P_IS_OPEN] = {.sql = "SELECT closed_at IS NULL FROM sessions WHERE id = ?1"},
    [P_MIN_ID] = {.sql = "SELECT min(id) FROM events WHERE session_id IS ?1"},
    [P_MAX_ID] = {.sql = "SELECT max(id) FROM events WHERE session_id IS ?1"},
    [P_NTH_NEWEST] = {.sql = "SELECT id FROM events WHERE session_id IS ?1 ORDER BY id DESC "
                             "LIMIT 1 OFFSET ?5"},
    [P_FIRST_YOUNG] = {.sql = "SELECT id FROM events WHERE session_id IS ?1 AND id < ?3 AND "
                              "coalesce(" AGE_OF_TIMESTAMP " >= ?4, 1) ORDER BY id LIMIT 1"},
    [P_LAST_BELOW] = {.sql = "SELECT max(id) FROM events WHERE session_id IS ?1 AND id < ?3"},
    [P_COUNT_RANGE] = {.sql = "SELECT count(*) FROM events WHERE session_id IS ?1 AND "
                              "id >= ?2 AND id < ?3"},
    [P_TEMP_STORE] = {.sql = "PRAGMA temp_store = MEMORY"},
    [P_PLAN_TABLE] = {.sql = "CREATE TEMP TABLE prune_plan (scope, keep_from INTEGER NOT NULL)"},
    [P_PLAN_INDEX] = {.sql = "CREATE UNIQUE INDEX temp.prune_plan_scope ON prune_plan(scope)"},
    [P_PLAN_ADD] = {.sql = "INSERT INTO temp.prune_plan(scope, keep_from) VALUES (?1, ?3)"},
    /* The last id of the next batch: rows of scopes without a plan compare with NULL. */
    [P_BATCH_END] = {.sql = "SELECT max(id) FROM (SELECT id FROM events AS e WHERE id > ?2 "
                            "AND id < ?3 AND id < (SELECT keep_from FROM temp.prune_plan "
                            "WHERE scope IS e.session_id) ORDER BY id LIMIT ?5)"},
    [P_DELETE] = {.sql = "DELETE FROM events WHERE id > ?2 AND id <= ?3 AND id < (SELECT "
                         "keep_from FROM temp.prune_plan WHERE scope IS events.session_id)"},
};

struct query_args {
    sqlite3_value *scope;       /* borrowed; NULL binds SQL NULL (the global channel) */
    int64_t low, high;          /* ?2, ?3 */
    double cutoff;              /* ?4 */
    int64_t count;              /* ?5 */
};

struct pruner {
    const struct prune_options *opt;        /* borrowed */
    struct db *db;                          /* owned; read-write; the last failure */
    double days_cutoff;                     /* julianday: younger rows kept by keep_days */
    double floor_cutoff;                    /* julianday: younger rows of open scopes kept */
    bool has_plans;                         /* a scope loses rows */
    int64_t delete_low;                     /* the smallest id planned to go */
    int64_t delete_below;                   /* the largest keep_from of the plans */
    struct prune_summary *sum;              /* borrowed: the caller's */
};

/* Binds every parameter q has from a (see PRUNE_QUERIES). */
static void
bind_args(sqlite3_stmt *s, const struct query_args *a)
{
    int count = sqlite3_bind_parameter_count(s);
    if (count >= 1 && a->scope != NULL)
        sqlite3_bind_value(s, 1, a->scope);
    else if (count >= 1)
        sqlite3_bind_null(s, 1);
    if (count >= 2)
        sqlite3_bind_int64(s, 2, a->low);
    if (count >= 3)
        sqlite3_bind_int64(s, 3, a->high);
    if (count >= 4)
        sqlite3_bind_double(s, 4, a->cutoff);
    if (count >= 5)
        sqlite3_bind_int64(s, 5, a->count);
}

/* Runs q with a (may be NULL) and reads column 0 of its first row into *out (an INSERT or
 * a DELETE is done in that one step). Returns 1 for a non-NULL value, 0 for no row or NULL,
 * or a negative prune_error. */
static int
query_integer(struct pruner *p, enum prune_query q, const struct query_args *a, int64_t *out)
{
    sqlite3_stmt *s;
    int rc = db_prepare(p->db, q, &s);
    if (rc == 0)
        bind_args(s, a != NULL ? a : &(struct query_args){0});
    return rc < 0 ? rc : db_query_integer(p->db, q, out);
}

/* ---- opening ------------------------------------------------------------------------ */

/* A user who may not write the database or its directory is told who may (db.h). */
static const struct db_codes PRUNE_CODES = {
    .missing = PRUNE_ERR_MISSING, .cantopen = PRUNE_ERR_READONLY,
    .readonly = PRUNE_ERR_READONLY, .busy = PRUNE_ERR_BUSY, .nomem = PRUNE_ERR_NOMEM,
    .schema = PRUNE_ERR_SCHEMA, .sqlite = PRUNE_ERR_SQLITE,
};

static const struct db_object PRUNE_OBJECTS[] = {
    {"table", "events"}, {"table", "sessions"}, {"table", "pruned"},
    {"trigger", "events_record_prune"},
};

static int
open_database(struct pruner *p, char *errbuf, size_t errbuf_size)
{
    const struct db_options opt = {
        .mode = DB_READ_WRITE, .busy_timeout_ms = p->opt->busy_timeout_ms,
        .sql = PRUNE_QUERIES, .sql_count = P_QUERY_COUNT, .codes = &PRUNE_CODES,
        .program = "prune",
        .busy_advice = "what was committed stays deleted, run prune again later",
        .is_read_only_ok = p->opt->is_dry_run,
    };
    int rc = db_open(p->opt->db_path, &opt, &p->db, errbuf, errbuf_size);
    if (rc == PRUNE_ERR_MISSING)
        snprintf(errbuf, errbuf_size, "no database at %s: give its path with --db or SSE_DB",
                 p->opt->db_path);
    return rc;
}

static int
check_schema(struct pruner *p)
{
    int64_t version = 0;
    int rc = db_check_schema(p->db, PRUNE_OBJECTS,
                             sizeof(PRUNE_OBJECTS) / sizeof(PRUNE_OBJECTS[0]), &version);
    if (rc == PRUNE_ERR_SCHEMA)
        db_fail(p->db, rc, "%s has no sse-fcgi schema (user_version %lld; it needs the "
                "events, sessions and pruned tables and the events_record_prune trigger): "
                "apply schema.sql to it", p->opt->db_path, (long long)version);
    return rc;
}

/* The cutoffs, from one reading of SQLite's clock (UTC, like the default timestamps), in
 * milliseconds of the Julian day so that it comes back as an exact integer. */
static int
read_cutoffs(struct pruner *p)
{
    int64_t now_ms = 0;
    int rc = query_integer(p, P_NOW_MS, NULL, &now_ms);
    if (rc < 0)
        return rc;
    double now = (double)now_ms / 86400000.0;
    p->days_cutoff = now - (double)p->opt->keep_days;
    p->floor_cutoff = now - (double)p->opt->floor_hours / 24.0;
    return 0;
}

/* ---- planning ----------------------------------------------------------------------- */

/* Lowers *keep_from to the oldest row below it whose age is unknown or at or after
 * cutoff. Returns 0 or an error. */
static int
keep_young_rows(struct pruner *p, struct query_args *a, double cutoff, int64_t *keep_from)
{
    a->high = *keep_from;
    a->cutoff = cutoff;
    int64_t young = 0;
    int rc = query_integer(p, P_FIRST_YOUNG, a, &young);
    if (rc == 1)
        *keep_from = young;
    return rc < 0 ? rc : 0;
}

/* Counts the scope's rows with low <= id < high into *out. Returns 0 or an error. */
static int
count_range(struct pruner *p, struct query_args *a, int64_t low, int64_t high, int64_t *out)
{
    a->low = low;
    a->high = high;
    int rc = query_integer(p, P_COUNT_RANGE, a, out);
    return rc < 0 ? rc : 0;
}

/* Finds keep_from for a scope that has rows (min_id..max_id). Returns 0 or an error. */
static int
find_keep_from(struct pruner *p, struct query_args *a, bool is_open, int64_t min_id,
               int64_t max_id, int64_t *keep_from, int64_t *keep_from_without_floor)
{
    int rc = 0;
    *keep_from = max_id + 1;  /* nothing kept yet */
    if (p->opt->keep_events > 0) {
        a->count = p->opt->keep_events - 1;
        int64_t nth = 0;
        rc = query_integer(p, P_NTH_NEWEST, a, &nth);
        *keep_from = rc == 1 ? nth : min_id;  /* fewer rows than keep_events: all stay */
    }
    if (rc >= 0 && p->opt->keep_days > 0 && *keep_from > min_id)
        rc = keep_young_rows(p, a, p->days_cutoff, keep_from);
    *keep_from_without_floor = *keep_from;
    if (rc >= 0 && is_open && p->opt->floor_hours > 0 && *keep_from > min_id)
        rc = keep_young_rows(p, a, p->floor_cutoff, keep_from);
    return rc < 0 ? rc : 0;
}

/* Plans one scope into *out, in one read transaction. Returns 1 when the scope has rows,
 * 0 when it has none, or an error. */
static int
plan_scope(struct pruner *p, sqlite3_value *scope, bool is_open, struct prune_scope *out,
           int64_t *keep_from)
{
    struct query_args a = {.scope = scope};
    int64_t min_id = 0, max_id = 0, without_floor = 0;
    int rc = db_begin(p->db, DB_BEGIN_DEFERRED);
    if (rc == 0 && (rc = query_integer(p, P_MIN_ID, &a, &min_id)) == 1)
        rc = query_integer(p, P_MAX_ID, &a, &max_id);
    int has_rows = rc;
    if (has_rows == 1)
        rc = find_keep_from(p, &a, is_open, min_id, max_id, keep_from, &without_floor);
    if (has_rows == 1 && rc == 0)
        rc = count_range(p, &a, min_id, *keep_from, &out->deleted);
    if (has_rows == 1 && rc == 0)
        rc = count_range(p, &a, *keep_from, without_floor, &out->held_by_floor);
    if (has_rows == 1 && rc == 0)
        rc = count_range(p, &a, *keep_from, max_id + 1, &out->kept);
    a.high = *keep_from;
    if (has_rows == 1 && rc == 0 && out->deleted > 0)
        rc = query_integer(p, P_LAST_BELOW, &a, &out->last_deleted_id);
    rc = db_end(p->db, rc < 0 ? rc : 0);
    out->first_deleted_id = out->deleted > 0 ? min_id : 0;
    out->oldest_kept_id = *keep_from <= max_id ? *keep_from : 0;
    return rc < 0 ? rc : has_rows;
}

/* True when the floor applies to the scope: the global channel, an open session, or a
 * session without a `sessions` row (an unknown state counts as open). */
static int
scope_is_open(struct pruner *p, sqlite3_value *scope, bool *is_open)
{
    struct query_args a = {.scope = scope};
    int64_t open = 1;
    int rc = scope == NULL ? 0 : query_integer(p, P_IS_OPEN, &a, &open);
    *is_open = rc == 0 || open != 0;
    return rc < 0 ? rc : 0;
}

/* ---- deleting ----------------------------------------------------------------------- */

/* The temp table of plans, kept in memory. Returns 0 or an error. */
static int
create_plan_table(struct pruner *p)
{
    int rc = db_run(p->db, P_TEMP_STORE);
    if (rc == 0)
        rc = db_run(p->db, P_PLAN_TABLE);
    return rc == 0 ? db_run(p->db, P_PLAN_INDEX) : rc;
}

/* Records that the rows of scope below keep_from go, from first_id on. Returns 0 or an
 * error. */
static int
add_plan(struct pruner *p, sqlite3_value *scope, int64_t first_id, int64_t keep_from)
{
    struct query_args a = {.scope = scope, .high = keep_from};
    int64_t ignored;
    int rc = query_integer(p, P_PLAN_ADD, &a, &ignored);
    if (rc == 0 && (!p->has_plans || first_id < p->delete_low))
        p->delete_low = first_id;
    if (rc == 0 && (!p->has_plans || keep_from > p->delete_below))
        p->delete_below = keep_from;
    p->has_plans = p->has_plans || rc == 0;
    return rc;
}

/* One write transaction: deletes the next batch_rows planned rows after *cursor, in id
 * order, and moves *cursor to the last. Returns 1 when it deleted some, 0 when none were
 * left, or an error. */
static int64_t
monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
delete_batch(struct pruner *p, int64_t *cursor)
{
    struct query_args a = {
        .low = *cursor, .high = p->delete_below, .count = p->opt->batch_rows,
    };
    int64_t last = 0, ignored, started_ms = monotonic_ms();
    int rc = db_begin(p->db, DB_BEGIN_IMMEDIATE);
    int has_rows = rc == 0 ? query_integer(p, P_BATCH_END, &a, &last) : rc;
    a.high = last;
    if (has_rows == 1)
        rc = query_integer(p, P_DELETE, &a, &ignored);
    int64_t deleted = has_rows == 1 && rc >= 0 ? sqlite3_changes(db_handle(p->db)) : 0;
    rc = db_end(p->db, has_rows < 0 ? has_rows : rc < 0 ? rc : 0);
    if (rc < 0)
        return rc;
    if (has_rows == 1) {
        int64_t held_ms = monotonic_ms() - started_ms;  /* producers wait at most this */
        /* Copy this transaction's WAL frames into the database now, here, without blocking
         * anyone. Left alone, SQLite's autocheckpoint runs it inside whichever commit
         * crosses 1,000 WAL pages next, often a producer's. `make bench` scenario p, the
         * slowest producer commit during the prune: 0.7-1.5 s without this line (3 runs),
         * 0.10-1.5 s with it, median 0.23 s (12 runs; the rest is the disk's fsyncs). */
        sqlite3_wal_checkpoint_v2(db_handle(p->db), "main", SQLITE_CHECKPOINT_PASSIVE, NULL,
                                  NULL);
        p->sum->deleted += deleted;
        p->sum->transactions++;
        p->sum->longest_transaction_ms = held_ms > p->sum->longest_transaction_ms
                                             ? held_ms : p->sum->longest_transaction_ms;
        *cursor = last;
    }
    return has_rows;
}

/* Deletes every planned row. Returns 0 or an error. */
static int
delete_planned(struct pruner *p)
{
    int64_t cursor = p->delete_low - 1;
    int rc = p->has_plans ? 1 : 0;
    while (rc == 1)
        rc = delete_batch(p, &cursor);
    return rc;
}

/* ---- the scopes, one by one --------------------------------------------------------- */

/* True when the len bytes at id are a session id a stream can ask for (SPEC §5). */
static bool
is_session_id(const unsigned char *id, size_t len)
{
    if (len < 1 || len > 128)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = id[i];
        bool is_alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!is_alnum && c != '.' && c != '_' && c != ':' && c != '-')
            return false;
    }
    return true;
}

/* Fills sc's session id from scope (NULL: the global channel) without changing the value:
 * sqlite3_value_text() would turn a BLOB into text in place, and the value is bound again
 * for the scope's queries, so the BLOB x'7331' planned as the text 's1' (UNIQUE constraint
 * failed: prune_plan.scope) and a BLOB holding a NUL was found again and again as the next
 * session, for ever. */
static void
describe_scope(sqlite3_value *scope, struct prune_scope *sc)
{
    if (scope == NULL)
        return;
    sc->is_blob = sqlite3_value_type(scope) == SQLITE_BLOB;
    const void *bytes = sc->is_blob ? sqlite3_value_blob(scope)
                                    : (const void *)sqlite3_value_text(scope);
    sc->session_id_len = (size_t)sqlite3_value_bytes(scope);
    sc->session_id = bytes != NULL ? bytes : "";
    sc->is_irregular = sc->is_blob || !is_session_id(bytes, sc->session_id_len);
}

/* Plans and reports one scope, and records its plan unless a dry run. Returns 0 or an
 * error. */
static int
prune_scope(struct pruner *p, sqlite3_value *scope, prune_scope_fn *each, void *ctx)
{
    struct prune_scope sc = {0};
    describe_scope(scope, &sc);
    int64_t keep_from = 0;
    int rc = scope_is_open(p, scope, &sc.is_open);
    if (rc == 0)
        rc = plan_scope(p, scope, sc.is_open, &sc, &keep_from);
    if (rc <= 0)
        return rc;
    p->sum->scopes++;
    p->sum->scopes_pruned += sc.deleted > 0;
    p->sum->scopes_irregular += sc.is_irregular;
    p->sum->planned += sc.deleted;
    p->sum->kept += sc.kept;
    p->sum->held_by_floor += sc.held_by_floor;
    if (each != NULL)
        each(ctx, &sc);
    if (sc.deleted == 0 || p->opt->is_dry_run)
        return 0;
    return add_plan(p, scope, sc.first_deleted_id, keep_from);
}

/* The next session id after *cursor (the first when *cursor is NULL), by a search on the
 * index: a loose scan that costs one search per session, not one step per row. Replaces
 * *cursor (owned) with it, or with NULL after the last. Returns 0 or an error. */
static int
next_session(struct pruner *p, sqlite3_value **cursor)
{
    enum prune_query q = *cursor == NULL ? P_FIRST_SESSION : P_NEXT_SESSION;
    sqlite3_stmt *s;
    int rc = db_prepare(p->db, q, &s);
    if (rc < 0)
        return rc;
    bind_args(s, &(struct query_args){.scope = *cursor});
    rc = sqlite3_step(s);
    sqlite3_value *next = rc == SQLITE_ROW ? sqlite3_value_dup(sqlite3_column_value(s, 0))
                                           : NULL;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    sqlite3_value_free(*cursor);
    *cursor = next;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail_sqlite(p->db, rc, PRUNE_QUERIES[q].sql);
    return rc == SQLITE_ROW && next == NULL ? db_fail(p->db, PRUNE_ERR_NOMEM, "out of memory")
                                            : 0;
}

/* The global channel, then every session in id order. Returns 0 or an error. */
static int
prune_every_scope(struct pruner *p, prune_scope_fn *each, void *ctx)
{
    int rc = prune_scope(p, NULL, each, ctx);
    sqlite3_value *session = NULL;
    while (rc == 0 && (rc = next_session(p, &session)) == 0 && session != NULL)
        rc = prune_scope(p, session, each, ctx);
    sqlite3_value_free(session);
    return rc;
}

/* ---- checkpoint --------------------------------------------------------------------- */

static int
checkpoint(struct pruner *p)
{
    int64_t is_wal = 0;
    int rc = query_integer(p, P_JOURNAL_MODE, NULL, &is_wal);
    if (rc < 0)
        return rc;
    if (!is_wal) {
        p->sum->checkpoint = PRUNE_CHECKPOINT_NOT_WAL;
        return 0;
    }
    int frames = -1, done = -1;
    rc = sqlite3_wal_checkpoint_v2(db_handle(p->db), "main", SQLITE_CHECKPOINT_TRUNCATE,
                                   &frames, &done);
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
        p->sum->checkpoint = PRUNE_CHECKPOINT_BUSY;
        p->sum->wal_frames = frames;
        p->sum->wal_frames_done = done;
        return 0;
    }
    if (rc != SQLITE_OK)
        return db_fail_sqlite(p->db, rc, "wal_checkpoint(TRUNCATE)");
    p->sum->checkpoint = PRUNE_CHECKPOINT_TRUNCATED;
    return 0;
}

int
prune_run(const struct prune_options *opt, prune_scope_fn *each, void *ctx,
          struct prune_summary *out, char *errbuf, size_t errbuf_size)
{
    assert(opt->keep_days > 0 || opt->keep_events > 0);  /* cli_parse_prune ensures it */
    assert(opt->batch_rows > 0 && errbuf_size > 0);
    *out = (struct prune_summary){.checkpoint = PRUNE_CHECKPOINT_NOT_RUN};
    errbuf[0] = '\0';
    struct pruner pruner = {.opt = opt, .sum = out}, *p = &pruner;
    int rc = open_database(p, errbuf, errbuf_size);
    if (rc == 0)
        rc = check_schema(p);
    if (rc == 0)
        rc = read_cutoffs(p);
    if (rc == 0 && !opt->is_dry_run)
        rc = create_plan_table(p);
    if (rc == 0)
        rc = prune_every_scope(p, each, ctx);
    if (rc == 0 && !opt->is_dry_run)
        rc = delete_planned(p);
    if (rc == 0 && !opt->is_dry_run)
        rc = checkpoint(p);
    if (rc < 0 && p->db != NULL)
        snprintf(errbuf, errbuf_size, "%s", db_errmsg(p->db));
    db_close(p->db);
    return rc;
}
