/*
 * store.c - the responder's reads: its statements, cursor queries, rows and health facts.
 *
 * The connection (store/db.c) is opened read-only (SPEC §1) and only ever runs the prepared
 * statements in QUERIES below; nothing from a request is spliced into SQL. Statements are
 * prepared on first use and kept. Rows are copied out of SQLite (one allocation per row) and
 * the statement is reset before the caller sees them, so no read snapshot outlives a call.
 */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

#define EVENT_COLUMNS "id, session_id, type, stream_id, node_id, execution_id, data, " \
                      "timestamp, correlation_id, colony_id, run_id"

enum query_id {
    Q_SESSION,
    Q_POLICY,
    Q_AFTER_SESSION,
    Q_AFTER_WORKER,
    Q_AFTER_GLOBAL,
    Q_AFTER_ALL,
    Q_REPLAY_SESSION,
    Q_REPLAY_WORKER,
    Q_NEWEST_ID,
    Q_PRUNED_SCOPE,
    Q_PRUNED_ANY,
    Q_OLDEST_SESSION,
    Q_OLDEST_WORKER,
    Q_OLDEST_GLOBAL,
    Q_OLDEST_ALL,
    Q_ROW_KEYS,
    Q_DATA_VERSION,
    Q_USER_VERSION,
    Q_JOURNAL_MODE,
    Q_READ_TOKENS,
    Q_SESSION_COUNTS,
    Q_SCHEMA_OBJECT,
    Q_RELAY_STATE,
    Q_COUNT
};

/* Every statement the responder runs. ?1 = session id / stream id / scope, ?2 = after id,
 * ?3 = row limit, ?4 = a second text. Each range query is an index range scan (tests/
 * check EXPLAIN). */
static const struct db_sql QUERIES[Q_COUNT] = {
    [Q_SESSION] = {"session", "SELECT closed_at IS NOT NULL FROM sessions WHERE id = ?1"},
    [Q_POLICY] = {"policy", "SELECT name, streamed_by_default, replayed, critical, "
                  "worker_fanin FROM event_types"},
    [Q_AFTER_SESSION] = {"after_session", "SELECT " EVENT_COLUMNS " FROM events WHERE "
                         "session_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"},
    [Q_AFTER_WORKER] = {"after_worker", "SELECT " EVENT_COLUMNS " FROM events WHERE "
                        "stream_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"},
    [Q_AFTER_GLOBAL] = {"after_global", "SELECT " EVENT_COLUMNS " FROM events WHERE "
                        "session_id IS NULL AND id > ?2 ORDER BY id LIMIT ?3"},
    [Q_AFTER_ALL] = {"after_all", "SELECT " EVENT_COLUMNS " FROM events WHERE id > ?2 "
                     "ORDER BY id LIMIT ?3"},
    [Q_REPLAY_SESSION] = {"replay_session", "SELECT min(id) FROM (SELECT id FROM events "
                          "WHERE session_id = ?1 ORDER BY id DESC LIMIT ?3)"},
    [Q_REPLAY_WORKER] = {"replay_worker", "SELECT min(id) FROM (SELECT id FROM events "
                         "WHERE stream_id = ?1 ORDER BY id DESC LIMIT ?3)"},
    /* The newest id ever issued: AUTOINCREMENT's counter, which never goes back while the
     * file lives (pruning the newest rows leaves it), or the newest row of a file made
     * without it. sqlite_sequence holds one row per AUTOINCREMENT table: its scan reads
     * one page, so it is not listed as a cursor query. */
    [Q_NEWEST_ID] = {"newest_id", "SELECT max((SELECT coalesce(max(id), 0) FROM events), "
                     "coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))"},
    [Q_PRUNED_SCOPE] = {"pruned_scope", "SELECT through_id FROM pruned WHERE scope = ?1"},
    [Q_PRUNED_ANY] = {"pruned_any", "SELECT coalesce(max(through_id), 0) FROM pruned"},
    [Q_OLDEST_SESSION] = {"oldest_session", "SELECT min(id) FROM events WHERE "
                          "session_id = ?1 AND id > ?2"},
    [Q_OLDEST_WORKER] = {"oldest_worker", "SELECT min(id) FROM events WHERE "
                         "stream_id = ?1 AND id > ?2"},
    [Q_OLDEST_GLOBAL] = {"oldest_global", "SELECT min(id) FROM events WHERE "
                         "session_id IS NULL AND id > ?2"},
    [Q_OLDEST_ALL] = {"oldest_all", "SELECT min(id) FROM events WHERE id > ?2"},
    /* An oversized row's keys (a value over STORE_VALUE_MAX elsewhere in it) */
    [Q_ROW_KEYS] = {"row_keys", "SELECT id, session_id, stream_id FROM events WHERE id = ?2"},
    [Q_DATA_VERSION] = {"data_version", "PRAGMA data_version"},
    [Q_USER_VERSION] = {"user_version", "PRAGMA user_version"},
    [Q_JOURNAL_MODE] = {"journal_mode", "SELECT journal_mode = 'wal' FROM pragma_journal_mode"},
    [Q_READ_TOKENS] = {"read_tokens", "SELECT salt, hash FROM read_tokens WHERE scope = ?1 "
                       "LIMIT ?3"},
    /* `sse-fcgi --check` only (deploycheck.c), never a request: a scan is fine. */
    [Q_SESSION_COUNTS] = {"session_counts", "SELECT coalesce(sum(closed_at IS NULL), 0), "
                          "count(*) FROM sessions"},
    [Q_SCHEMA_OBJECT] = {"schema_object", "SELECT count(*) FROM sqlite_master WHERE "
                         "type = ?1 AND name = ?4"},
    /* sse-fcgi-relay's row (store/replica.c), for /api/health on a node of a shared log. */
    [Q_RELAY_STATE] = {"relay_state", "SELECT state, position, upstream_newest, "
                       "CAST((julianday('now') - julianday(since)) * 86400 AS INTEGER), "
                       "copied_at, detail FROM relay_state WHERE id = 1"},
};

/* The cursor queries, listed by store_explain; the others read a page or two, or serve
 * only `sse-fcgi --check`. */
static const enum query_id EXPLAINED[] = {
    Q_SESSION, Q_AFTER_SESSION, Q_AFTER_WORKER, Q_AFTER_GLOBAL, Q_AFTER_ALL, Q_REPLAY_SESSION,
    Q_REPLAY_WORKER, Q_PRUNED_SCOPE, Q_OLDEST_SESSION, Q_OLDEST_WORKER, Q_OLDEST_GLOBAL,
    Q_OLDEST_ALL, Q_ROW_KEYS, Q_READ_TOKENS,
};

/* The responder tells missing, schema, busy and out of memory apart (SPEC §5); anything
 * else leaves the database unreadable. */
static const struct db_codes STORE_CODES = {
    .missing = STORE_ERR_MISSING, .cantopen = STORE_ERR_UNREADABLE,
    .readonly = STORE_ERR_UNREADABLE, .busy = STORE_ERR_BUSY, .nomem = STORE_ERR_NOMEM,
    .schema = STORE_ERR_SCHEMA, .sqlite = STORE_ERR_UNREADABLE,
};

static const struct db_object STORE_TABLES[] = {
    {"table", "events"}, {"table", "sessions"}, {"table", "event_types"}, {"table", "pruned"},
};

struct store {
    struct db *db;                      /* owned; read-only; keeps the last failure's
                                         * message, for logs and 503 bodies */
};

/* Runs a query that yields one integer (NULL reads as 0), with text1 as ?1 (unless NULL)
 * and arg2 as ?2 (if it has one). Returns 0, STORE_ERR_NOT_FOUND, or an error. */
static int
query_integer(struct store *st, enum query_id q, const char *text1, int64_t arg2,
              int64_t *out)
{
    sqlite3_stmt *s;
    int rc = db_prepare(st->db, q, &s);
    if (rc < 0)
        return rc;
    if (text1 != NULL)
        sqlite3_bind_text(s, 1, text1, -1, SQLITE_STATIC);
    if (sqlite3_bind_parameter_count(s) >= 2)
        sqlite3_bind_int64(s, 2, arg2);
    rc = db_query_integer(st->db, q, out);
    return rc < 0 ? rc : rc == 1 ? 0 : STORE_ERR_NOT_FOUND;
}

int
store_open(const char *path, int busy_timeout_ms, struct store **out, char *errbuf,
           size_t errbuf_size)
{
    const struct db_options opt = {
        .mode = DB_READ_ONLY, .busy_timeout_ms = busy_timeout_ms, .sql = QUERIES,
        .sql_count = Q_COUNT, .codes = &STORE_CODES,
    };
    int64_t version;
    struct store *st = calloc(1, sizeof(*st));
    if (st == NULL) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return STORE_ERR_NOMEM;
    }
    int rc = db_open(path, &opt, &st->db, errbuf, errbuf_size);
    if (rc == 0) {
        sqlite3 *h = db_handle(st->db);
        /* No value longer than this is read into memory: such a row is a stub (run_batch) */
        sqlite3_limit(h, SQLITE_LIMIT_LENGTH, STORE_VALUE_MAX);
        /* Reads are short index range scans the OS page cache serves well; SQLite's
         * default cache (2 MB per connection) would only multiply memory per stream. A
         * connection fills its cache as it reads (a replay, a watcher over hours): with
         * 256 KiB it held 220 KiB more per process than with 64 KiB after replaying 1 MB
         * (make memory, MEMORY_HISTORY=2000), and 10,000 events replayed as fast (70 ms)
         * with 256, 64 or 32. 64 KiB (14 pages) still holds every page a watcher's round
         * reads again: the tree's upper pages and the last leaves. */
        sqlite3_exec(h, "PRAGMA cache_size = -64", NULL, NULL, NULL);
        rc = db_check_schema(st->db, STORE_TABLES, sizeof(STORE_TABLES) / sizeof(STORE_TABLES[0]),
                             &version);
        if (rc < 0)
            snprintf(errbuf, errbuf_size, "%s", db_errmsg(st->db));
    }
    if (rc < 0) {
        store_close(st);
        st = NULL;
    }
    *out = st;
    return rc;
}

void
store_close(struct store *st)
{
    if (st == NULL)
        return;
    db_close(st->db);
    free(st);
}

const char *
store_errmsg(const struct store *st)
{
    return st ? db_errmsg(st->db) : "no store";
}

int
store_read_tokens(struct store *st, const char *scope, struct stored_token *out,
                  size_t cap, size_t *count)
{
    *count = 0;
    sqlite3_stmt *s;
    int rc = db_prepare(st->db, Q_READ_TOKENS, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)cap);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW && *count < cap) {
        const unsigned char *salt = sqlite3_column_text(s, 0);
        const unsigned char *hash = sqlite3_column_text(s, 1);
        snprintf(out[*count].salt, sizeof(out[*count].salt), "%s", salt ? (const char *)salt : "");
        snprintf(out[*count].hash_hex, sizeof(out[*count].hash_hex), "%s",
                 hash ? (const char *)hash : "");
        (*count)++;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_fail_sqlite(st->db, rc, "read_tokens");
}

int
store_session_lookup(struct store *st, const char *session_id, bool *is_closed)
{
    int64_t closed = 0;
    int rc = query_integer(st, Q_SESSION, session_id, 0, &closed);
    if (rc == STORE_ERR_NOT_FOUND)
        db_fail(st->db, rc, "no such session");
    *is_closed = closed != 0;
    return rc;
}

static int
compare_policy(const void *a, const void *b)
{
    return strcmp(((const struct event_type_policy *)a)->name,
                  ((const struct event_type_policy *)b)->name);
}

static int
append_policy_row(sqlite3_stmt *s, struct event_type_policy **table, size_t *count,
                  size_t *capacity)
{
    if (*count == *capacity) {
        size_t cap = *capacity ? *capacity * 2 : 128;
        struct event_type_policy *grown = realloc(*table, cap * sizeof(**table));
        if (grown == NULL)
            return -1;
        *table = grown;
        *capacity = cap;
    }
    const char *name = (const char *)sqlite3_column_text(s, 0);
    char *copy = strdup(name ? name : "");
    if (copy == NULL)
        return -1;
    (*table)[(*count)++] = (struct event_type_policy){
        .name = copy,
        .is_streamed_by_default = sqlite3_column_int(s, 1) != 0,
        .is_replayed = sqlite3_column_int(s, 2) != 0,
        .is_critical = sqlite3_column_int(s, 3) != 0,
        .is_worker_fanin = sqlite3_column_int(s, 4) != 0,
    };
    return 0;
}

int
store_policy_load(struct store *st, struct event_type_policy **out, size_t *count)
{
    struct event_type_policy *table = NULL;
    size_t n = 0, capacity = 0;
    sqlite3_stmt *s;
    int rc = db_prepare(st->db, Q_POLICY, &s);
    if (rc < 0)
        return rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (append_policy_row(s, &table, &n, &capacity) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        store_policy_free(table, n);
        return db_fail_sqlite(st->db, rc, "policy");
    }
    /* filter_find_type does a binary search with strcmp. */
    if (n > 0)
        qsort(table, n, sizeof(*table), compare_policy);
    *out = table;
    *count = n;
    return 0;
}

void
store_policy_free(struct event_type_policy *policy, size_t count)
{
    if (policy == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        free((char *)policy[i].name);
    free(policy);
}

/* Where each text column of EVENT_COLUMNS lands in struct event (timestamp is separate). */
static const struct {
    int column;
    size_t text_offset;     /* const char * field */
    size_t len_offset;      /* its size_t length field */
} TEXT_COLUMNS[] = {
    {1, offsetof(struct event, session_id), offsetof(struct event, session_id_len)},
    {2, offsetof(struct event, type), offsetof(struct event, type_len)},
    {3, offsetof(struct event, stream_id), offsetof(struct event, stream_id_len)},
    {4, offsetof(struct event, node_id), offsetof(struct event, node_id_len)},
    {5, offsetof(struct event, execution_id), offsetof(struct event, execution_id_len)},
    {6, offsetof(struct event, data), offsetof(struct event, data_len)},
    {8, offsetof(struct event, correlation_id), offsetof(struct event, correlation_id_len)},
    {9, offsetof(struct event, colony_id), offsetof(struct event, colony_id_len)},
    {10, offsetof(struct event, run_id), offsetof(struct event, run_id_len)},
};
enum { TEXT_COLUMN_COUNT = sizeof(TEXT_COLUMNS) / sizeof(TEXT_COLUMNS[0]), COL_TIMESTAMP = 7 };

void
store_batch_init(struct store_batch *b)
{
    memset(b, 0, sizeof(*b));
}

struct store_row *
store_row_ref(struct store_row *row)
{
    atomic_fetch_add_explicit(&row->refs, 1, memory_order_relaxed);
    return row;
}

void
store_row_unref(struct store_row *row)
{
    if (row == NULL || atomic_fetch_sub_explicit(&row->refs, 1, memory_order_acq_rel) != 1)
        return;
    free(row->frame);
    free(row);
}

void
store_row_set_frame(struct store_row *row, char *frame, size_t len)
{
    free(row->frame);
    row->bytes = row->bytes - row->frame_len + len;
    row->frame = frame;
    row->frame_len = len;
}

void
store_batch_clear(struct store_batch *b)
{
    for (size_t i = 0; i < b->count; i++)
        store_row_unref(b->rows[i]);
    b->count = 0;
    b->is_full = false;
}

void
store_batch_release(struct store_batch *b)
{
    if (b == NULL)
        return;
    store_batch_clear(b);
    free(b->events);
    free(b->rows);
    memset(b, 0, sizeof(*b));
}

/* Room for rows rows, doubling. Grown one row at a time, a batch past 64 KiB of events
 * (about 330 rows), which glibc mmaps (main.c), was moved by an mremap every 20 rows. */
static int
batch_reserve(struct store_batch *b, size_t rows)
{
    if (rows <= b->capacity)
        return 0;
    size_t capacity = b->capacity > 0 ? b->capacity : 16;
    while (capacity < rows)
        capacity *= 2;
    struct event *events = realloc(b->events, capacity * sizeof(*events));
    if (events == NULL)
        return -1;
    b->events = events;
    struct store_row **grown = realloc(b->rows, capacity * sizeof(*grown));
    if (grown == NULL)
        return -1;
    b->rows = grown;
    b->capacity = capacity;
    return 0;
}

long
store_batch_add_row(struct store_batch *b, struct store_row *row)
{
    if (batch_reserve(b, b->count + 1) < 0)
        return -1;
    b->rows[b->count] = store_row_ref(row);
    b->events[b->count++] = row->event;
    return (long)row->bytes;
}

/* Gives a new row (one reference: the batch's) to the batch. */
static void
batch_take(struct store_batch *b, struct store_row *row)
{
    b->rows[b->count] = row;
    b->events[b->count++] = row->event;
}

/* A new row of text_bytes of string space, one reference. NULL when out of memory. */
static struct store_row *
row_new(size_t text_bytes)
{
    struct store_row *row = malloc(offsetof(struct store_row, text) + text_bytes);
    if (row == NULL)
        return NULL;
    memset(row, 0, offsetof(struct store_row, text));
    atomic_init(&row->refs, 1);
    row->bytes = offsetof(struct store_row, text) + text_bytes;
    return row;
}

/* Copies len bytes of text (NULL stays NULL) into text at *used; returns the copy. */
static const char *
copy_field(const char *field, size_t len, char *text, size_t *used)
{
    if (field == NULL)
        return NULL;
    char *copy = text + *used;
    memcpy(copy, field, len);
    copy[len] = '\0';
    *used += len + 1;
    return copy;
}

struct store_row *
store_row_new(const struct event *e)
{
    size_t stamp_len = e->timestamp.kind == EVENT_VALUE_TEXT ? e->timestamp.text_len : 0;
    struct store_row *row = row_new(e->session_id_len + e->type_len + e->stream_id_len
                                    + e->node_id_len + e->execution_id_len + e->data_len
                                    + e->correlation_id_len + e->colony_id_len + e->run_id_len
                                    + stamp_len + 10);
    if (row == NULL)
        return NULL;
    struct event *c = &row->event;
    *c = *e;
    size_t used = 0;
    c->session_id = copy_field(e->session_id, e->session_id_len, row->text, &used);
    c->type = copy_field(e->type, e->type_len, row->text, &used);
    c->stream_id = copy_field(e->stream_id, e->stream_id_len, row->text, &used);
    c->node_id = copy_field(e->node_id, e->node_id_len, row->text, &used);
    c->execution_id = copy_field(e->execution_id, e->execution_id_len, row->text, &used);
    c->data = copy_field(e->data, e->data_len, row->text, &used);
    c->correlation_id = copy_field(e->correlation_id, e->correlation_id_len, row->text, &used);
    c->colony_id = copy_field(e->colony_id, e->colony_id_len, row->text, &used);
    c->run_id = copy_field(e->run_id, e->run_id_len, row->text, &used);
    if (e->timestamp.kind == EVENT_VALUE_TEXT)
        c->timestamp.text = copy_field(e->timestamp.text, stamp_len, row->text, &used);
    return row;
}

/* Copies a text column into text at *used; sets the event's pointer and length. */
static void
copy_text(sqlite3_stmt *s, int col, struct event *e, size_t text_off, size_t len_off,
          char *text, size_t *used)
{
    const char **field = (const char **)((char *)e + text_off);
    size_t *len = (size_t *)((char *)e + len_off);
    if (sqlite3_column_type(s, col) == SQLITE_NULL) {
        *field = NULL;
        *len = 0;
        return;
    }
    const unsigned char *value = sqlite3_column_text(s, col);
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    memcpy(text + *used, value ? (const char *)value : "", n);
    text[*used + n] = '\0';
    *field = text + *used;
    *len = n;
    *used += n + 1;
}

/* type: the column's type before any conversion (sqlite3_column_type is undefined after) */
static void
copy_timestamp(sqlite3_stmt *s, int type, struct event *e, char *text, size_t *used)
{
    struct event_value *v = &e->timestamp;
    memset(v, 0, sizeof(*v));
    switch (type) {
    case SQLITE_INTEGER:
        v->kind = EVENT_VALUE_INTEGER;
        v->integer = sqlite3_column_int64(s, COL_TIMESTAMP);
        break;
    case SQLITE_FLOAT:
        v->kind = EVENT_VALUE_REAL;
        v->real = sqlite3_column_double(s, COL_TIMESTAMP);
        break;
    case SQLITE_NULL:
        break;
    default: {
        const unsigned char *value = sqlite3_column_text(s, COL_TIMESTAMP);
        size_t n = (size_t)sqlite3_column_bytes(s, COL_TIMESTAMP);
        memcpy(text + *used, value ? (const char *)value : "", n);
        text[*used + n] = '\0';
        v->kind = EVENT_VALUE_TEXT;
        v->text = text + *used;
        v->text_len = n;
        *used += n + 1;
    }
    }
}

/* The string space the current row needs. (A value over STORE_VALUE_MAX never gets here:
 * the connection's length limit makes sqlite3_step fail with SQLITE_TOOBIG first.) */
static void
row_text_bytes(sqlite3_stmt *s, size_t *total)
{
    *total = 1;
    for (int c = 0; c < TEXT_COLUMN_COUNT; c++) {
        sqlite3_column_text(s, TEXT_COLUMNS[c].column);  /* converts numbers to text */
        *total += (size_t)sqlite3_column_bytes(s, TEXT_COLUMNS[c].column) + 1;
    }
    sqlite3_column_text(s, COL_TIMESTAMP);
    *total += (size_t)sqlite3_column_bytes(s, COL_TIMESTAMP) + 1;
}

/* Copies the current row into the batch. Returns the row's bytes, or -SQLITE_NOMEM. */
static long
batch_add_row(struct store_batch *b, sqlite3_stmt *s)
{
    /* The types first: sqlite3_column_text converts the value, and its type with it */
    bool is_session_id_blob = sqlite3_column_type(s, 1) == SQLITE_BLOB;
    bool is_stream_id_blob = sqlite3_column_type(s, 3) == SQLITE_BLOB;
    int timestamp_type = sqlite3_column_type(s, COL_TIMESTAMP);
    size_t total;
    row_text_bytes(s, &total);
    struct store_row *row = batch_reserve(b, b->count + 1) == 0 ? row_new(total) : NULL;
    if (row == NULL)
        return -SQLITE_NOMEM;
    struct event *e = &row->event;
    e->id = sqlite3_column_int64(s, 0);
    e->is_session_id_blob = is_session_id_blob;
    e->is_stream_id_blob = is_stream_id_blob;
    size_t used = 0;
    for (int c = 0; c < TEXT_COLUMN_COUNT; c++)
        copy_text(s, TEXT_COLUMNS[c].column, e, TEXT_COLUMNS[c].text_offset,
                  TEXT_COLUMNS[c].len_offset, row->text, &used);
    copy_timestamp(s, timestamp_type, e, row->text, &used);
    batch_take(b, row);
    return (long)row->bytes;
}

/* Copies column col of the current row (TEXT or BLOB) into text at *used; the stub's key. */
static const char *
copy_key(sqlite3_stmt *s, int col, char *text, size_t *used, size_t *len, bool *is_blob)
{
    *is_blob = sqlite3_column_type(s, col) == SQLITE_BLOB;
    if (sqlite3_column_type(s, col) == SQLITE_NULL)
        return NULL;
    const void *value = *is_blob ? sqlite3_column_blob(s, col) : sqlite3_column_text(s, col);
    *len = (size_t)sqlite3_column_bytes(s, col);
    char *copy = text + *used;
    memcpy(copy, value ? value : "", *len);
    copy[*len] = '\0';
    *used += *len + 1;
    return copy;
}

/* The stub of the oversized row id: its keys when they can be read (they are in the
 * schema's bounds unless the file was edited by hand), so that it reaches its channel's
 * streams, which log it and skip it. Returns 0 or a store error. */
static int
add_oversized_stub(struct store *st, int64_t id, struct store_batch *out)
{
    sqlite3_stmt *s;
    int rc = db_prepare(st->db, Q_ROW_KEYS, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(s, 2, id);
    rc = sqlite3_step(s);
    size_t bytes = rc == SQLITE_ROW ? (size_t)sqlite3_column_bytes(s, 1)
                                        + (size_t)sqlite3_column_bytes(s, 2) + 2 : 0;
    struct store_row *row = batch_reserve(out, out->count + 1) == 0 ? row_new(bytes) : NULL;
    if (row != NULL) {
        struct event *e = &row->event;
        e->id = id;
        e->is_oversized = true;
        size_t used = 0;
        if (rc == SQLITE_ROW) {
            e->session_id = copy_key(s, 1, row->text, &used, &e->session_id_len,
                                     &e->is_session_id_blob);
            e->stream_id = copy_key(s, 2, row->text, &used, &e->stream_id_len,
                                    &e->is_stream_id_blob);
        } else {  /* the keys are oversized too: a stub that belongs to no channel */
            e->is_session_id_blob = e->is_stream_id_blob = true;
        }
        batch_take(out, row);
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (row == NULL)
        return db_fail(st->db, STORE_ERR_NOMEM, "oversized row: out of memory");
    return rc == SQLITE_ROW || rc == SQLITE_DONE || rc == SQLITE_TOOBIG
               ? 0 : db_fail_sqlite(st->db, rc, "row_keys");
}

/* The first row of ch after after_id holds a value over STORE_VALUE_MAX: SQLite refused to
 * read it (SQLITE_TOOBIG). Its id comes from the index alone, then its stub. */
static int
add_oversized_row(struct store *st, const struct store_channel *ch, int64_t after_id,
                  struct store_batch *out)
{
    static const enum query_id NEXT[] = {
        [STORE_SCOPE_SESSION] = Q_OLDEST_SESSION, [STORE_SCOPE_WORKER] = Q_OLDEST_WORKER,
        [STORE_SCOPE_GLOBAL] = Q_OLDEST_GLOBAL, [STORE_SCOPE_ALL] = Q_OLDEST_ALL,
    };
    bool has_key = ch->scope == STORE_SCOPE_SESSION || ch->scope == STORE_SCOPE_WORKER;
    int64_t id = 0;
    int rc = query_integer(st, NEXT[ch->scope], has_key ? ch->key : NULL, after_id, &id);
    if (rc < 0 || id <= after_id)
        return rc < 0 && rc != STORE_ERR_NOT_FOUND ? rc : 0;
    return add_oversized_stub(st, id, out);
}

/* Steps s (query q, bound) to the end (or the limits) and copies the rows into out. A row
 * with a value over STORE_VALUE_MAX ends the batch as a stub (is_full: the rest follows). */
static int
run_batch(struct store *st, sqlite3_stmt *s, enum query_id q, const struct store_channel *ch,
          int64_t after_id, size_t max_bytes, size_t max_rows, struct store_batch *out)
{
    size_t bytes = 0;
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        long n = batch_add_row(out, s);
        if (n < 0) {
            rc = (int)-n;
            break;
        }
        bytes += (size_t)n;
        if (bytes >= max_bytes || out->count >= max_rows) {
            out->is_full = true;
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc == SQLITE_TOOBIG) {
        int64_t last = out->count > 0 ? out->events[out->count - 1].id : after_id;
        rc = add_oversized_row(st, ch, last, out);
        out->is_full = true;
        if (rc == 0)
            return 0;
        store_batch_clear(out);
        return rc;
    }
    if (rc != SQLITE_DONE) {
        store_batch_clear(out);
        return db_fail_sqlite(st->db, rc, QUERIES[q].name);
    }
    return 0;
}

bool
store_event_in_channel(const struct event *e, const struct store_channel *ch)
{
    switch (ch->scope) {
    case STORE_SCOPE_SESSION:
        return e->session_id != NULL && !e->is_session_id_blob
               && e->session_id_len == strlen(ch->key)
               && memcmp(e->session_id, ch->key, e->session_id_len) == 0;
    case STORE_SCOPE_WORKER:
        return e->stream_id != NULL && !e->is_stream_id_blob
               && e->stream_id_len == strlen(ch->key)
               && memcmp(e->stream_id, ch->key, e->stream_id_len) == 0;
    case STORE_SCOPE_GLOBAL:
        return e->session_id == NULL && !e->is_session_id_blob;
    default:
        return true;
    }
}

static enum query_id
after_query(enum store_scope scope)
{
    switch (scope) {
    case STORE_SCOPE_SESSION:
        return Q_AFTER_SESSION;
    case STORE_SCOPE_WORKER:
        return Q_AFTER_WORKER;
    case STORE_SCOPE_GLOBAL:
        return Q_AFTER_GLOBAL;
    default:
        return Q_AFTER_ALL;
    }
}

int
store_events_after(struct store *st, const struct store_channel *ch, int64_t after_id,
                   size_t max_rows, size_t max_bytes, struct store_batch *out)
{
    store_batch_clear(out);
    enum query_id q = after_query(ch->scope);
    sqlite3_stmt *s;
    int rc = db_prepare(st->db, q, &s);
    if (rc < 0)
        return rc;
    if (ch->scope == STORE_SCOPE_SESSION || ch->scope == STORE_SCOPE_WORKER)
        sqlite3_bind_text(s, 1, ch->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, after_id);
    sqlite3_bind_int64(s, 3, (sqlite3_int64)max_rows);
    return run_batch(st, s, q, ch, after_id, max_bytes, max_rows, out);
}

int
store_read_begin(struct store *st)
{
    return db_begin(st->db, DB_BEGIN_DEFERRED);
}

void
store_read_end(struct store *st)
{
    db_commit(st->db);
}

int
store_replay_window(struct store *st, const struct store_channel *ch, size_t limit,
                    int64_t *first_id, int64_t *live_from)
{
    *first_id = 0;
    /* One read transaction: the window and the live cursor come from the same snapshot, so
     * a row committed in between is either in the window or after the cursor (SPEC §4.2). */
    int rc = db_begin(st->db, DB_BEGIN_DEFERRED);
    if (rc < 0)
        return rc;
    rc = query_integer(st, Q_NEWEST_ID, NULL, 0, live_from);
    if (rc == 0 && limit > 0 && ch->scope != STORE_SCOPE_GLOBAL) {
        enum query_id q = ch->scope == STORE_SCOPE_SESSION ? Q_REPLAY_SESSION : Q_REPLAY_WORKER;
        sqlite3_stmt *s;
        rc = db_prepare(st->db, q, &s);
        if (rc == 0) {
            sqlite3_bind_int64(s, 3, (sqlite3_int64)limit);
            rc = query_integer(st, q, ch->key, 0, first_id);
            rc = rc == STORE_ERR_NOT_FOUND ? 0 : rc;
        }
    }
    return db_end(st->db, rc);
}

int
store_newest_id(struct store *st, int64_t *out)
{
    return query_integer(st, Q_NEWEST_ID, NULL, 0, out);
}

int
store_retention(struct store *st, const struct store_channel *ch, int64_t after_id,
                int64_t *pruned_through, int64_t *oldest_kept)
{
    int rc;
    if (ch->scope == STORE_SCOPE_WORKER)
        rc = query_integer(st, Q_PRUNED_ANY, NULL, 0, pruned_through);
    else
        rc = query_integer(st, Q_PRUNED_SCOPE, ch->scope == STORE_SCOPE_SESSION ? ch->key : "",
                           0, pruned_through);
    if (rc < 0 && rc != STORE_ERR_NOT_FOUND)
        return rc;
    enum query_id q = ch->scope == STORE_SCOPE_SESSION ? Q_OLDEST_SESSION
                      : ch->scope == STORE_SCOPE_WORKER ? Q_OLDEST_WORKER : Q_OLDEST_GLOBAL;
    rc = query_integer(st, q, ch->scope == STORE_SCOPE_GLOBAL ? NULL : ch->key, after_id,
                       oldest_kept);
    return rc == STORE_ERR_NOT_FOUND ? 0 : rc;
}

int
store_data_version(struct store *st, int64_t *out)
{
    return query_integer(st, Q_DATA_VERSION, NULL, 0, out);
}

int
store_health(struct store *st, int *schema_version, bool *is_wal)
{
    int64_t version = 0;
    int rc = query_integer(st, Q_USER_VERSION, NULL, 0, &version);
    if (rc < 0)
        return rc;
    *schema_version = (int)version;
    int64_t wal = 0;
    rc = query_integer(st, Q_JOURNAL_MODE, NULL, 0, &wal);
    *is_wal = wal != 0;
    return rc;
}

int
store_session_counts(struct store *st, int64_t *open, int64_t *closed)
{
    sqlite3_stmt *s;
    int rc = db_prepare(st->db, Q_SESSION_COUNTS, &s);
    if (rc < 0)
        return rc;
    rc = sqlite3_step(s);
    *open = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    *closed = rc == SQLITE_ROW ? sqlite3_column_int64(s, 1) - *open : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : db_fail_sqlite(st->db, rc, QUERIES[Q_SESSION_COUNTS].name);
}

int
store_relay_state(struct store *st, struct store_relay_state *out)
{
    *out = (struct store_relay_state){0};
    bool exists;
    int rc = store_schema_has(st, "table", "relay_state", &exists);
    if (rc < 0 || !exists)
        return rc;
    sqlite3_stmt *s;
    if ((rc = db_prepare(st->db, Q_RELAY_STATE, &s)) < 0)
        return rc;
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        const unsigned char *state = sqlite3_column_text(s, 0);
        const unsigned char *copied_at = sqlite3_column_text(s, 4);
        const unsigned char *detail = sqlite3_column_text(s, 5);
        snprintf(out->state, sizeof(out->state), "%s", state ? (const char *)state : "");
        out->position = sqlite3_column_int64(s, 1);
        out->upstream_newest = sqlite3_column_int64(s, 2);
        out->seconds_in_state = sqlite3_column_int64(s, 3);
        out->has_copied_at = copied_at != NULL;
        snprintf(out->copied_at, sizeof(out->copied_at), "%s",
                 copied_at ? (const char *)copied_at : "");
        snprintf(out->detail, sizeof(out->detail), "%s", detail ? (const char *)detail : "");
    }
    sqlite3_reset(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail_sqlite(st->db, rc, QUERIES[Q_RELAY_STATE].name);
    return rc == SQLITE_ROW;
}

int
store_schema_has(struct store *st, const char *type, const char *name, bool *exists)
{
    sqlite3_stmt *s;
    int rc = db_prepare(st->db, Q_SCHEMA_OBJECT, &s);
    if (rc < 0)
        return rc;
    sqlite3_bind_text(s, 4, name, -1, SQLITE_STATIC);
    int64_t count = 0;
    rc = query_integer(st, Q_SCHEMA_OBJECT, type, 0, &count);
    *exists = count > 0;
    return rc == STORE_ERR_NOT_FOUND ? 0 : rc;
}

int
store_explain(struct store *st, void (*report)(void *ctx, const char *query_name,
                                               const char *detail), void *ctx)
{
    for (size_t i = 0; i < sizeof(EXPLAINED) / sizeof(EXPLAINED[0]); i++) {
        enum query_id q = EXPLAINED[i];
        char sql[1024];
        snprintf(sql, sizeof(sql), "EXPLAIN QUERY PLAN %s", QUERIES[q].sql);
        sqlite3_stmt *s = NULL;
        int rc = sqlite3_prepare_v2(db_handle(st->db), sql, -1, &s, NULL);
        if (rc == SQLITE_OK) {
            while ((rc = sqlite3_step(s)) == SQLITE_ROW)
                report(ctx, QUERIES[q].name, (const char *)sqlite3_column_text(s, 3));
        }
        sqlite3_finalize(s);
        if (rc != SQLITE_DONE)
            return db_fail_sqlite(st->db, rc, QUERIES[q].name);
    }
    return 0;
}
