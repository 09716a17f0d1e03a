/*
 * replica.c - the relay's writes into a node's SQLite file (see replica.h).
 *
 * Rows go in through schema.sql's own triggers, so a row the local schema would refuse
 * stops the copy with that schema's message instead of slipping in. The session rows a
 * batch needs come first: an event's session is created (open, with its created_at) just
 * before the event, and a session's close is applied at its position, after the events
 * written before it. Every statement is prepared from REPLICA_SQL.
 */
#include "replica.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"

#define NOW_TEXT "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

enum replica_sql {
    R_SYNCHRONOUS,
    R_NO_AUTOCHECKPOINT,
    R_CREATE_STATE,
    R_READ_STATE,
    R_NEWEST_LOCAL,
    R_INIT_STATE,
    R_ENSURE_SESSION,
    R_SESSION_CHANGE,
    R_EVENT,
    R_PRUNED,
    R_SET_POSITION,
    R_SET_STATE,
    R_SQL_COUNT
};

static const struct db_sql REPLICA_SQL[R_SQL_COUNT] = {
    /* A commit does not wait for the disk (WAL, NORMAL: still atomic, durable at the next
     * checkpoint). A batch lost to a power cut takes its position with it, so the relay
     * copies it again from the log. FULL cost an fdatasync per batch: at 1,000 ev/s, one per
     * event, 2.5 ms of p50 (make bench, h). */
    [R_SYNCHRONOUS] = {"synchronous", "PRAGMA synchronous = NORMAL"},
    /* The writer never checkpoints in its commit: the checkpointer thread does (below). */
    [R_NO_AUTOCHECKPOINT] = {"wal_autocheckpoint", "PRAGMA wal_autocheckpoint = 0"},
    /* One row: where the copy stands, for the relay's restart and for /api/health. */
    [R_CREATE_STATE] = {"relay_state", "CREATE TABLE IF NOT EXISTS relay_state ("
                        "id INTEGER PRIMARY KEY CHECK (id = 1), system_identifier TEXT, "
                        "timeline INTEGER, position INTEGER NOT NULL, "
                        "upstream_newest INTEGER NOT NULL, state TEXT NOT NULL, "
                        "detail TEXT NOT NULL DEFAULT '', since TEXT NOT NULL, "
                        "copied_at TEXT)"},
    [R_READ_STATE] = {"relay_state", "SELECT system_identifier, timeline, position, "
                      "upstream_newest, state, detail FROM relay_state WHERE id = 1"},
    [R_NEWEST_LOCAL] = {"newest id", "SELECT coalesce(max(id), 0) FROM events"},
    [R_INIT_STATE] = {"relay_state", "INSERT OR IGNORE INTO relay_state(id, position, "
                      "upstream_newest, state, since) VALUES (1, ?1, ?1, 'copying', "
                      NOW_TEXT ")"},
    [R_ENSURE_SESSION] = {"session", "INSERT INTO sessions(id, created_at) VALUES (?1, "
                          "coalesce(?2, " NOW_TEXT ")) ON CONFLICT(id) DO NOTHING"},
    [R_SESSION_CHANGE] = {"session", "INSERT INTO sessions(id, created_at, closed_at) "
                          "VALUES (?1, coalesce(?2, " NOW_TEXT "), ?3) ON CONFLICT(id) DO "
                          "UPDATE SET closed_at = excluded.closed_at "
                          "WHERE closed_at IS NOT excluded.closed_at"},
    [R_EVENT] = {"event", "INSERT INTO events(id, session_id, type, stream_id, node_id, "
                 "execution_id, data, timestamp, correlation_id, colony_id, run_id) "
                 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"},
    [R_PRUNED] = {"pruned", "INSERT INTO pruned(scope, through_id) VALUES (?1, ?2) "
                  "ON CONFLICT(scope) DO UPDATE SET "
                  "through_id = max(through_id, excluded.through_id)"},
    [R_SET_POSITION] = {"relay_state", "UPDATE relay_state SET position = ?1, "
                        "upstream_newest = ?2, copied_at = " NOW_TEXT " WHERE id = 1"},
    [R_SET_STATE] = {"relay_state", "UPDATE relay_state SET state = ?1, detail = ?2, "
                     "system_identifier = coalesce(?3, system_identifier), "
                     "timeline = coalesce(?4, timeline), since = " NOW_TEXT " WHERE id = 1"},
};

static const char *const STATE_NAMES[] = {
    [REPLICA_COPYING] = "copying",
    [REPLICA_RECONNECTING] = "reconnecting",
    [REPLICA_STOPPED] = "stopped",
};

/* Checkpoints run on a connection and thread of their own, PASSIVE (they never wait for
 * the writer or a reader). SQLite's automatic checkpoint would run inside the relay's
 * commit: 20-36 ms every few hundred batches, during which no row reaches the streams
 * (make bench, h: the two-node p99). */
enum { CHECKPOINT_EVERY_MS = 200 };

struct checkpointer {
    struct db *db;                  /* owned; the thread's own connection */
    pthread_t thread;
    bool is_running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool is_stopping;               /* under lock */
};

struct replica {
    struct db *db;
    struct replica_state cached;    /* what relay_state holds, to skip idle writes */
    bool has_cached;
    struct checkpointer ckpt;
};

static void *
checkpoint_loop(void *arg)
{
    struct checkpointer *c = arg;
    pthread_mutex_lock(&c->lock);
    while (!c->is_stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += CHECKPOINT_EVERY_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&c->wake, &c->lock, &until);
        if (c->is_stopping)
            break;
        pthread_mutex_unlock(&c->lock);
        /* A failure (a reader in the way, I/O) only leaves the WAL longer until the next. */
        sqlite3_wal_checkpoint_v2(db_handle(c->db), NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                  NULL);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static int
checkpointer_start(struct checkpointer *c, const char *path, const struct db_options *opt,
                   char *errbuf, size_t errbuf_size)
{
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    if (db_open(path, opt, &c->db, errbuf, errbuf_size) != 0)
        return -1;
    if (pthread_create(&c->thread, NULL, checkpoint_loop, c) != 0) {
        snprintf(errbuf, errbuf_size, "cannot start the checkpoint thread");
        return -1;
    }
    c->is_running = true;
    return 0;
}

static void
checkpointer_stop(struct checkpointer *c)
{
    if (c->is_running) {
        pthread_mutex_lock(&c->lock);
        c->is_stopping = true;
        pthread_cond_signal(&c->wake);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->thread, NULL);
        c->is_running = false;
    }
    db_close(c->db);
    c->db = NULL;
}

const char *
replica_state_name(enum replica_state_kind kind)
{
    return STATE_NAMES[kind];
}

int
replica_open(const char *path, int busy_timeout_ms, struct replica **out, char *errbuf,
             size_t errbuf_size)
{
    *out = NULL;
    struct replica *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        snprintf(errbuf, errbuf_size, "out of memory");
        return -1;
    }
    const struct db_options opt = {
        .mode = DB_READ_WRITE, .busy_timeout_ms = busy_timeout_ms, .sql = REPLICA_SQL,
        .sql_count = R_SQL_COUNT, .program = "sse-fcgi-relay",
        .busy_advice = "nothing of this batch was written; the relay tries again",
    };
    static const struct db_object REQUIRED[] = {
        {"table", "events"}, {"table", "sessions"}, {"table", "pruned"},
        {"trigger", "events_check_insert"},
    };
    int64_t version;
    int rc = db_open(path, &opt, &r->db, errbuf, errbuf_size);
    if (rc == 0 && (db_check_schema(r->db, REQUIRED, sizeof(REQUIRED) / sizeof(REQUIRED[0]),
                                    &version) < 0 ||
                    db_run(r->db, R_SYNCHRONOUS) < 0 || db_run(r->db, R_NO_AUTOCHECKPOINT) < 0 ||
                    db_run(r->db, R_CREATE_STATE) < 0)) {
        snprintf(errbuf, errbuf_size, "%s", db_errmsg(r->db));
        rc = -1;
    }
    if (rc == 0)
        rc = checkpointer_start(&r->ckpt, path, &opt, errbuf, errbuf_size);
    if (rc != 0) {
        replica_close(r);
        return -1;
    }
    *out = r;
    return 0;
}

void
replica_close(struct replica *r)
{
    if (r == NULL)
        return;
    checkpointer_stop(&r->ckpt);
    db_close(r->db);
    free(r);
}

const char *
replica_errmsg(const struct replica *r)
{
    return db_errmsg(r->db);
}

static enum replica_state_kind
kind_of(const unsigned char *name)
{
    for (int k = 0; k <= REPLICA_STOPPED; k++)
        if (name != NULL && strcmp((const char *)name, STATE_NAMES[k]) == 0)
            return (enum replica_state_kind)k;
    return REPLICA_COPYING;
}

/* Reads the relay_state row into *out; returns 1 when there is one, 0 when not, or < 0. */
static int
read_state(struct replica *r, struct replica_state *out)
{
    sqlite3_stmt *s;
    int rc = db_prepare(r->db, R_READ_STATE, &s);
    if (rc < 0)
        return rc;
    *out = (struct replica_state){0};
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        const unsigned char *system = sqlite3_column_text(s, 0);
        out->has_source = system != NULL;
        snprintf(out->source.system_identifier, sizeof(out->source.system_identifier), "%s",
                 system != NULL ? (const char *)system : "");
        out->source.timeline = sqlite3_column_int64(s, 1);
        out->position = sqlite3_column_int64(s, 2);
        out->upstream_newest = sqlite3_column_int64(s, 3);
        out->kind = kind_of(sqlite3_column_text(s, 4));
        const unsigned char *detail = sqlite3_column_text(s, 5);
        snprintf(out->detail, sizeof(out->detail), "%s",
                 detail != NULL ? (const char *)detail : "");
    }
    sqlite3_reset(s);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return db_fail_sqlite(r->db, step, "relay_state");
    return step == SQLITE_ROW;
}

int
replica_state(struct replica *r, struct replica_state *out)
{
    int rc = read_state(r, out);
    if (rc == 0) {
        /* A file no relay wrote yet: it starts after whatever it already holds (a copy
         * seeded from a backup of the log, or nothing). */
        int64_t newest = 0;
        sqlite3_stmt *s;
        if ((rc = db_query_integer(r->db, R_NEWEST_LOCAL, &newest)) >= 0 &&
            (rc = db_prepare(r->db, R_INIT_STATE, &s)) == 0) {
            sqlite3_bind_int64(s, 1, newest);
            if ((rc = db_run(r->db, R_INIT_STATE)) == 0)
                rc = read_state(r, out);
        }
    }
    if (rc < 0)
        return -1;
    r->cached = *out;
    r->has_cached = true;
    return 0;
}

static void
bind_text(sqlite3_stmt *s, int i, const char *text, size_t len)
{
    if (text == NULL)
        sqlite3_bind_null(s, i);
    else
        sqlite3_bind_text64(s, i, text, len, SQLITE_STATIC, SQLITE_UTF8);
}

static int
apply_session(struct replica *r, const struct replica_session *sn)
{
    sqlite3_stmt *s;
    int rc = db_prepare(r->db, R_SESSION_CHANGE, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, sn->id, strlen(sn->id));
    bind_text(s, 2, sn->created_at, sn->created_at ? strlen(sn->created_at) : 0);
    bind_text(s, 3, sn->closed_at, sn->closed_at ? strlen(sn->closed_at) : 0);
    return db_run(r->db, R_SESSION_CHANGE);
}

/* Writes event e, creating its session first unless the batch's previous event, *prev
 * (NULL: none), was of the same session: a session's events come in runs, and the upsert
 * per event was a sixth of the relay's insert cost (make bench, h). */
static int
apply_event(struct replica *r, const struct replica_event *e, const struct replica_event *prev)
{
    sqlite3_stmt *s;
    int rc;
    const char *session = e->text[REPLICA_SESSION_ID];
    size_t len = e->len[REPLICA_SESSION_ID];
    bool is_same_session = prev != NULL && session != NULL &&
                           prev->text[REPLICA_SESSION_ID] != NULL &&
                           prev->len[REPLICA_SESSION_ID] == len &&
                           memcmp(prev->text[REPLICA_SESSION_ID], session, len) == 0;
    if (session != NULL && !is_same_session) {
        if ((rc = db_prepare(r->db, R_ENSURE_SESSION, &s)) < 0)
            return rc;
        bind_text(s, 1, session, e->len[REPLICA_SESSION_ID]);
        bind_text(s, 2, e->session_created_at,
                  e->session_created_at ? strlen(e->session_created_at) : 0);
        if ((rc = db_run(r->db, R_ENSURE_SESSION)) < 0)
            return rc;
    }
    if ((rc = db_prepare(r->db, R_EVENT, &s)) < 0)
        return rc;
    sqlite3_bind_int64(s, 1, e->id);
    for (int c = 0; c < REPLICA_COLUMN_COUNT; c++)
        bind_text(s, 2 + c, e->text[c], e->len[c]);
    if ((rc = db_run(r->db, R_EVENT)) < 0)
        return db_fail(r->db, rc, "event id %lld: %s", (long long)e->id, db_errmsg(r->db));
    return 0;
}

static int
apply_pruned(struct replica *r, const struct replica_pruned *p)
{
    sqlite3_stmt *s;
    int rc = db_prepare(r->db, R_PRUNED, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, p->scope, strlen(p->scope));
    sqlite3_bind_int64(s, 2, p->through_id);
    return db_run(r->db, R_PRUNED);
}

/* The batch's writes, in position order, inside the caller's transaction. */
static int
apply_in_order(struct replica *r, const struct replica_batch *b)
{
    size_t next_session = 0;
    int rc = 0;
    for (size_t i = 0; i < b->event_count && rc == 0; i++) {
        while (rc == 0 && next_session < b->session_count &&
               b->sessions[next_session].log_id < b->events[i].id)
            rc = apply_session(r, &b->sessions[next_session++]);
        if (rc == 0)
            rc = apply_event(r, &b->events[i], i > 0 ? &b->events[i - 1] : NULL);
    }
    while (rc == 0 && next_session < b->session_count)
        rc = apply_session(r, &b->sessions[next_session++]);
    for (size_t i = 0; i < b->pruned_count && rc == 0; i++)
        rc = apply_pruned(r, &b->pruned[i]);
    if (rc == 0) {
        sqlite3_stmt *s;
        if ((rc = db_prepare(r->db, R_SET_POSITION, &s)) == 0) {
            sqlite3_bind_int64(s, 1, b->through);
            sqlite3_bind_int64(s, 2, b->upstream_newest);
            rc = db_run(r->db, R_SET_POSITION);
        }
    }
    return rc;
}

int
replica_apply(struct replica *r, const struct replica_batch *batch)
{
    int rc = db_begin(r->db, DB_BEGIN_IMMEDIATE);
    if (rc == 0)
        rc = db_end(r->db, apply_in_order(r, batch));
    if (rc < 0)
        return -1;
    r->cached.position = batch->through;
    r->cached.upstream_newest = batch->upstream_newest;
    return 0;
}

int
replica_set_state(struct replica *r, enum replica_state_kind kind,
                  const struct replica_source *source, const char *detail)
{
    const struct replica_state *c = &r->cached;
    bool is_same_source = source == NULL ||
                          (c->has_source && c->source.timeline == source->timeline &&
                           strcmp(c->source.system_identifier, source->system_identifier) == 0);
    if (r->has_cached && c->kind == kind && is_same_source && strcmp(c->detail, detail) == 0)
        return 0;
    sqlite3_stmt *s;
    int rc = db_prepare(r->db, R_SET_STATE, &s);
    if (rc < 0)
        return -1;
    sqlite3_bind_text(s, 1, STATE_NAMES[kind], -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, detail, -1, SQLITE_STATIC);
    if (source != NULL) {
        sqlite3_bind_text(s, 3, source->system_identifier, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s, 4, source->timeline);
    }
    if (db_run(r->db, R_SET_STATE) < 0)
        return -1;
    r->cached.kind = kind;
    snprintf(r->cached.detail, sizeof(r->cached.detail), "%s", detail);
    if (source != NULL) {
        r->cached.has_source = true;
        r->cached.source = *source;
    }
    return 0;
}
