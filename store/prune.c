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
 * Every statement is prepared from PRUNE_QUERIES; nothing is spliced into SQL.
 */
#include "prune.h"

#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A timestamp has an age when it is ISO-8601 text that julianday() reads: it starts with
 * YYYY-MM-DD (a bare number would read as a Julian day number, year -4713). */
#define AGE_OF_TIMESTAMP "julianday(CASE WHEN timestamp GLOB " \
                         "'[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]*' THEN timestamp END)"

enum prune_query {
    P_USER_VERSION,
    P_SCHEMA_OBJECTS,
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
    P_BEGIN_READ,
    P_BEGIN_WRITE,
    P_COMMIT,
    P_ROLLBACK,
    P_QUERY_COUNT
};

/* ?1 = scope (session id, NULL for the global channel), ?2 = low id, ?3 = high id, ?4 = a
 * julianday cutoff, ?5 = a count. */
static const char *const PRUNE_QUERIES[P_QUERY_COUNT] = {
    [P_USER_VERSION] = "PRAGMA user_version",
    [P_SCHEMA_OBJECTS] = "SELECT count(*) FROM sqlite_master WHERE (type = 'table' AND name "
                         "IN ('events', 'sessions', 'pruned')) OR (type = 'trigger' AND "
                         "name = 'events_record_prune')",
    [P_NOW_MS] = "SELECT CAST(julianday('now') * 86400000 AS INTEGER)",
    [P_JOURNAL_MODE] = "SELECT journal_mode = 'wal' FROM pragma_journal_mode",
    [P_FIRST_SESSION] = "SELECT session_id FROM events WHERE session_id IS NOT NULL "
                        "ORDER BY session_id LIMIT 1",
    [P_NEXT_SESSION] = "SELECT session_id FROM events WHERE session_id > ?1 "
                       "ORDER BY session_id LIMIT 1",
    [P_IS_OPEN] = "SELECT closed_at IS NULL FROM sessions WHERE id = ?1",
    [P_MIN_ID] = "SELECT min(id) FROM events WHERE session_id IS ?1",
    [P_MAX_ID] = "SELECT max(id) FROM events WHERE session_id IS ?1",
    [P_NTH_NEWEST] = "SELECT id FROM events WHERE session_id IS ?1 ORDER BY id DESC "
                     "LIMIT 1 OFFSET ?5",
    [P_FIRST_YOUNG] = "SELECT id FROM events WHERE session_id IS ?1 AND id < ?3 AND "
                      "coalesce(" AGE_OF_TIMESTAMP " >= ?4, 1) ORDER BY id LIMIT 1",
    [P_LAST_BELOW] = "SELECT max(id) FROM events WHERE session_id IS ?1 AND id < ?3",
    [P_COUNT_RANGE] = "SELECT count(*) FROM events WHERE session_id IS ?1 AND id >= ?2 "
                      "AND id < ?3",
    [P_TEMP_STORE] = "PRAGMA temp_store = MEMORY",
    [P_PLAN_TABLE] = "CREATE TEMP TABLE prune_plan (scope, keep_from INTEGER NOT NULL)",
    [P_PLAN_INDEX] = "CREATE UNIQUE INDEX temp.prune_plan_scope ON prune_plan(scope)",
    [P_PLAN_ADD] = "INSERT INTO temp.prune_plan(scope, keep_from) VALUES (?1, ?3)",
    /* The last id of the next batch: rows of scopes without a plan compare with NULL. */
    [P_BATCH_END] = "SELECT max(id) FROM (SELECT id FROM events AS e WHERE id > ?2 AND "
                    "id < ?3 AND id < (SELECT keep_from FROM temp.prune_plan WHERE "
                    "scope IS e.session_id) ORDER BY id LIMIT ?5)",
    [P_DELETE] = "DELETE FROM events WHERE id > ?2 AND id <= ?3 AND id < (SELECT keep_from "
                 "FROM temp.prune_plan WHERE scope IS events.session_id)",
    [P_BEGIN_READ] = "BEGIN",
    [P_BEGIN_WRITE] = "BEGIN IMMEDIATE",
    [P_COMMIT] = "COMMIT",
    [P_ROLLBACK] = "ROLLBACK",
};

struct query_args {
    sqlite3_value *scope;       /* borrowed; NULL binds SQL NULL (the global channel) */
    int64_t low, high;          /* ?2, ?3 */
    double cutoff;              /* ?4 */
    int64_t count;              /* ?5 */
};

struct pruner {
    const struct prune_options *opt;        /* borrowed */
    sqlite3 *db;                            /* owned; read-write */
    sqlite3_stmt *stmts[P_QUERY_COUNT];     /* owned; prepared on first use */
    double days_cutoff;                     /* julianday: younger rows kept by keep_days */
    double floor_cutoff;                    /* julianday: younger rows of open scopes kept */
    bool has_plans;                         /* a scope loses rows */
    int64_t delete_low;                     /* the smallest id planned to go */
    int64_t delete_below;                   /* the largest keep_from of the plans */
    struct prune_summary *sum;              /* borrowed: the caller's */
    char *errbuf;                           /* borrowed: the caller's */
    size_t errbuf_size;
};

static int
fail(struct pruner *p, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
fail(struct pruner *p, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errbuf, p->errbuf_size, fmt, ap);
    va_end(ap);
    return rc;
}

/* Who may write the database, for the READONLY hint: its owner, and its group's members
 * when the group may write it too (DEPLOY-NOTES Q11's setup). */
static const char *
writers_of(const char *path, char *out, size_t size)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        snprintf(out, size, "the owner of the database");
        return out;
    }
    const struct passwd *pw = getpwuid(sb.st_uid);
    int len = pw != NULL ? snprintf(out, size, "%s", pw->pw_name)
                         : snprintf(out, size, "uid %ld", (long)sb.st_uid);
    const struct group *gr = (sb.st_mode & S_IWGRP) ? getgrgid(sb.st_gid) : NULL;
    if (gr != NULL && len > 0 && (size_t)len < size)
        snprintf(out + len, size - (size_t)len, " or a member of group %s", gr->gr_name);
    return out;
}

/* The failure of a user who may not write the database or its directory; ext is SQLite's
 * extended code, or -1 when the failure is not SQLite's. */
static int
fail_readonly(struct pruner *p, const char *what, const char *msg, int ext)
{
    char writers[256], code[48] = "";
    if (ext >= 0)
        snprintf(code, sizeof(code), " (extended code %d)", ext);
    return fail(p, PRUNE_ERR_READONLY, "%s: %s%s: this user (uid %ld) cannot write %s or "
                "its directory; run prune as a user who can write both, such as %s", what,
                msg, code, (long)geteuid(), p->opt->db_path,
                writers_of(p->opt->db_path, writers, sizeof(writers)));
}

/* Maps a SQLite failure to a prune_error, with a message that says what to do. */
static int
sqlite_failure(struct pruner *p, int rc, const char *what)
{
    const char *msg = p->db ? sqlite3_errmsg(p->db) : sqlite3_errstr(rc);
    int ext = p->db ? sqlite3_extended_errcode(p->db) : rc;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return fail(p, PRUNE_ERR_BUSY, "%s: %s: another writer held the database for more "
                    "than %d ms; what was committed stays deleted, run prune again later",
                    what, msg, p->opt->busy_timeout_ms);
    case SQLITE_NOMEM:
        return fail(p, PRUNE_ERR_NOMEM, "%s: out of memory", what);
    case SQLITE_READONLY:
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        return fail_readonly(p, what, msg, ext);
    default:
        return fail(p, PRUNE_ERR_SQLITE, "%s: %s (code %d)", what, msg, ext);
    }
}

static sqlite3_stmt *
statement(struct pruner *p, enum prune_query q)
{
    if (p->stmts[q] == NULL) {
        int rc = sqlite3_prepare_v3(p->db, PRUNE_QUERIES[q], -1, SQLITE_PREPARE_PERSISTENT,
                                    &p->stmts[q], NULL);
        if (rc != SQLITE_OK) {
            sqlite_failure(p, rc, PRUNE_QUERIES[q]);
            p->stmts[q] = NULL;
        }
    }
    return p->stmts[q];
}

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

/* Runs q with a (may be NULL) and reads column 0 of its first row into *out. Returns 1 for
 * a non-NULL value, 0 for no row or NULL, or a negative prune_error. */
static int
query_integer(struct pruner *p, enum prune_query q, const struct query_args *a, int64_t *out)
{
    sqlite3_stmt *s = statement(p, q);
    if (s == NULL)
        return PRUNE_ERR_SQLITE;
    bind_args(s, a != NULL ? a : &(struct query_args){0});
    int rc = sqlite3_step(s);
    bool has_value = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL;
    *out = has_value ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sqlite_failure(p, rc, PRUNE_QUERIES[q]);
    return has_value;
}

/* Runs a statement whose rows do not matter (BEGIN, INSERT, ...) with a (may be NULL).
 * Returns 0 or an error. */
static int
run_simple_with(struct pruner *p, enum prune_query q, const struct query_args *a)
{
    int64_t ignored;
    int rc = query_integer(p, q, a, &ignored);
    return rc < 0 ? rc : 0;
}

static int
run_simple(struct pruner *p, enum prune_query q)
{
    return run_simple_with(p, q, NULL);
}

/* Ends a transaction: COMMIT after rc == 0, else ROLLBACK and rc. */
static int
end_transaction(struct pruner *p, int rc)
{
    if (rc == 0)
        return run_simple(p, P_COMMIT);
    run_simple(p, P_ROLLBACK);
    return rc;
}

/* ---- opening ------------------------------------------------------------------------ */

static int
open_database(struct pruner *p)
{
    struct stat sb;
    if (stat(p->opt->db_path, &sb) != 0) {
        int err = errno;
        if (err != ENOENT)
            return fail_readonly(p, "open", strerror(err), -1);
        return fail(p, PRUNE_ERR_MISSING, "no database at %s: give its path with --db or "
                    "SSE_DB", p->opt->db_path);
    }
    int rc = sqlite3_open_v2(p->opt->db_path, &p->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        return sqlite_failure(p, rc, "open");
    sqlite3_busy_timeout(p->db, p->opt->busy_timeout_ms);
    /* SQLite opens a file it may not write read-only without a word. */
    if (!p->opt->is_dry_run && sqlite3_db_readonly(p->db, "main") == 1)
        return fail_readonly(p, "open", "the file is read-only for this user", -1);
    return 0;
}

static int
check_schema(struct pruner *p)
{
    int64_t version = 0, objects = 0;
    int rc = query_integer(p, P_USER_VERSION, NULL, &version);
    if (rc >= 0)
        rc = query_integer(p, P_SCHEMA_OBJECTS, NULL, &objects);
    if (rc < 0)
        return rc;
    if (version < 1 || objects != 4)
        return fail(p, PRUNE_ERR_SCHEMA, "%s has no sse-fcgi schema (user_version %lld; it "
                    "needs the events, sessions and pruned tables and the "
                    "events_record_prune trigger): apply schema.sql to it",
                    p->opt->db_path, (long long)version);
    return 0;
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
    int rc = run_simple(p, P_BEGIN_READ);
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
    rc = end_transaction(p, rc < 0 ? rc : 0);
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
    int rc = run_simple(p, P_TEMP_STORE);
    if (rc == 0)
        rc = run_simple(p, P_PLAN_TABLE);
    return rc == 0 ? run_simple(p, P_PLAN_INDEX) : rc;
}

/* Records that the rows of scope below keep_from go, from first_id on. Returns 0 or an
 * error. */
static int
add_plan(struct pruner *p, sqlite3_value *scope, int64_t first_id, int64_t keep_from)
{
    struct query_args a = {.scope = scope, .high = keep_from};
    int rc = run_simple_with(p, P_PLAN_ADD, &a);
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
    int rc = run_simple(p, P_BEGIN_WRITE);
    int has_rows = rc == 0 ? query_integer(p, P_BATCH_END, &a, &last) : rc;
    a.high = last;
    if (has_rows == 1)
        rc = query_integer(p, P_DELETE, &a, &ignored);
    int64_t deleted = has_rows == 1 && rc >= 0 ? sqlite3_changes(p->db) : 0;
    rc = end_transaction(p, has_rows < 0 ? has_rows : rc < 0 ? rc : 0);
    if (rc < 0)
        return rc;
    if (has_rows == 1) {
        int64_t held_ms = monotonic_ms() - started_ms;  /* producers wait at most this */
        /* Copy this transaction's WAL frames into the database now, here, without blocking
         * anyone. Left alone, SQLite's autocheckpoint runs it inside whichever commit
         * crosses 1,000 WAL pages next, often a producer's. `make bench` scenario p, the
         * slowest producer commit during the prune: 0.7-1.5 s without this line (3 runs),
         * 0.10-1.5 s with it, median 0.23 s (12 runs; the rest is the disk's fsyncs). */
        sqlite3_wal_checkpoint_v2(p->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
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
    sqlite3_stmt *s = statement(p, q);
    if (s == NULL)
        return PRUNE_ERR_SQLITE;
    bind_args(s, &(struct query_args){.scope = *cursor});
    int rc = sqlite3_step(s);
    sqlite3_value *next = rc == SQLITE_ROW ? sqlite3_value_dup(sqlite3_column_value(s, 0))
                                           : NULL;
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    sqlite3_value_free(*cursor);
    *cursor = next;
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sqlite_failure(p, rc, PRUNE_QUERIES[q]);
    return rc == SQLITE_ROW && next == NULL ? fail(p, PRUNE_ERR_NOMEM, "out of memory") : 0;
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
    rc = sqlite3_wal_checkpoint_v2(p->db, "main", SQLITE_CHECKPOINT_TRUNCATE, &frames, &done);
    if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED) {
        p->sum->checkpoint = PRUNE_CHECKPOINT_BUSY;
        p->sum->wal_frames = frames;
        p->sum->wal_frames_done = done;
        return 0;
    }
    if (rc != SQLITE_OK)
        return sqlite_failure(p, rc, "wal_checkpoint(TRUNCATE)");
    p->sum->checkpoint = PRUNE_CHECKPOINT_TRUNCATED;
    return 0;
}

static void
pruner_close(struct pruner *p)
{
    for (int q = 0; q < P_QUERY_COUNT; q++)
        sqlite3_finalize(p->stmts[q]);
    sqlite3_close(p->db);
    free(p);
}

int
prune_run(const struct prune_options *opt, prune_scope_fn *each, void *ctx,
          struct prune_summary *out, char *errbuf, size_t errbuf_size)
{
    assert(opt->keep_days > 0 || opt->keep_events > 0);  /* cli_parse_prune ensures it */
    assert(opt->batch_rows > 0 && errbuf_size > 0);
    *out = (struct prune_summary){.checkpoint = PRUNE_CHECKPOINT_NOT_RUN};
    errbuf[0] = '\0';
    struct pruner *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return PRUNE_ERR_NOMEM;
    }
    *p = (struct pruner){.opt = opt, .sum = out, .errbuf = errbuf, .errbuf_size = errbuf_size};
    int rc = open_database(p);
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
    pruner_close(p);
    return rc;
}
