/*
 * store.h - the responder's SQLite reads (on store/db.h, the one SQLite layer).
 *
 * A store is one read-only connection (WAL, busy timeout) with its prepared statements. It
 * never writes the database. One store belongs to one thread. Functions that can fail
 * return 0 or a negative enum store_error and keep a message for store_errmsg().
 *
 * Batches copy every column into memory of their own before the statement is reset, so no
 * SQLite read snapshot is held while a stream writes to a slow client (a held snapshot would
 * stop checkpoints and let the WAL grow).
 */
#ifndef SSE_STORE_H
#define SSE_STORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "event.h"

enum store_error {
    STORE_ERR_MISSING = -1,     /* no database file at the path */
    STORE_ERR_UNREADABLE = -2,  /* permissions, -wal/-shm not creatable, corrupt (also a
                                 * schema SQLite cannot parse); the message is SQLite's */
    STORE_ERR_SCHEMA = -3,      /* a database without the sse-fcgi schema: user_version 0,
                                 * or a table or column a query needs is missing */
    STORE_ERR_NOMEM = -4,
    STORE_ERR_NOT_FOUND = -5,   /* store_session_lookup: no such session */
    STORE_ERR_BUSY = -6,        /* locked past the busy timeout: try again later */
};

/* Which rows a stream reads (SPEC §3). */
enum store_scope {
    STORE_SCOPE_SESSION,        /* session_id = key */
    STORE_SCOPE_WORKER,         /* stream_id = key ("worker:<id>") */
    STORE_SCOPE_GLOBAL,         /* session_id IS NULL; key unused */
    STORE_SCOPE_ALL,            /* every row (the process's watcher, store/hub.c) */
};

struct store_channel {
    enum store_scope scope;
    const char *key;            /* borrowed */
};

enum {
    /* The longest value a connection reads (SQLITE_LIMIT_LENGTH): a row holding a longer
     * one (only a hand-edited database can: schema.sql bounds every column) is read as an
     * oversized stub, never into memory. */
    STORE_VALUE_MAX = 64 * 1024 * 1024,
};

/* One row as read from the database: the event and every string it points to in one
 * allocation, shared by reference (the hub's ring, every stream that copies it) and freed
 * with its last reference. Immutable once another thread can see it. */
struct store_row {
    atomic_long refs;
    size_t bytes;               /* what the row costs: this allocation plus frame */
    struct event event;         /* its strings live in text[] */
    char *frame;                /* owned (free()); the frame's JSON, built once by whoever
                                 * publishes the row (store/hub.c), or NULL */
    size_t frame_len;
    char text[];
};

/* A new row holding a deep copy of e (for tests and the fuzz target: rows are otherwise
 * read from the database), one reference. NULL when out of memory. */
struct store_row *store_row_new(const struct event *e);

/* Takes one more reference to row and returns it. Thread-safe. */
struct store_row *store_row_ref(struct store_row *row);

/* Drops a reference; the last one frees the row. NULL is safe. Thread-safe. */
void store_row_unref(struct store_row *row);

/* Attaches frame (takes ownership; malloc'd, len bytes) to a row nobody else sees yet. */
void store_row_set_frame(struct store_row *row, char *frame, size_t len);

/* Rows read in one query, in id order, with everything they point to. */
struct store_batch {
    struct event *events;       /* owned; events[i] is rows[i]->event */
    struct store_row **rows;    /* one reference each */
    size_t count;
    bool is_full;               /* the query hit max_rows/max_bytes: more rows may follow */
    size_t capacity;            /* slots in events and rows */
};

/* Whether e belongs to ch, exactly as the SQL of store_events_after decides it: session_id
 * (TEXT, every byte) equal to the key, stream_id likewise, or session_id NULL for GLOBAL. A
 * pure function. */
bool store_event_in_channel(const struct event *e, const struct store_channel *ch);

struct store;

/* Opens path read-only with a busy timeout and checks the schema (user_version >= 1 and
 * the events table). Returns 0 and *out; on failure a negative store_error, *out = NULL and
 * a message copied into errbuf (errbuf_size > 0). Thread-safe (each call its own connection). */
int store_open(const char *path, int busy_timeout_ms, struct store **out, char *errbuf,
               size_t errbuf_size);

/* Finalizes every statement and closes the connection. NULL is safe. */
void store_close(struct store *st);

/* Message of the last failure; borrowed, valid until the next call on st. */
const char *store_errmsg(const struct store *st);

/* The stored read tokens of scope (SSE_AUTH=token): at most cap into out, *count of them.
 * Returns 0, or STORE_ERR_SCHEMA when the database has no read_tokens table (an older
 * schema.sql: apply the current one, it only adds). */
int store_read_tokens(struct store *st, const char *scope, struct stored_token *out,
                      size_t cap, size_t *count);

/* Looks up a session. Returns 0 with *is_closed set, STORE_ERR_NOT_FOUND, or an error. */
int store_session_lookup(struct store *st, const char *session_id, bool *is_closed);

/* Loads event_types sorted by name (strcmp order). *out and *count are owned by the caller,
 * free with store_policy_free. Returns 0 or an error. */
int store_policy_load(struct store *st, struct event_type_policy **out, size_t *count);

/* Frees a policy table from store_policy_load. NULL is safe. */
void store_policy_free(struct event_type_policy *policy, size_t count);

/* Reads the channel's rows with id > after_id in id order, at most max_rows rows and about
 * max_bytes of column bytes (at least one row). Replaces the batch's previous contents.
 * Returns 0 or an error. */
int store_events_after(struct store *st, const struct store_channel *ch, int64_t after_id,
                       size_t max_rows, size_t max_bytes, struct store_batch *out);

/* One read transaction around several queries: one snapshot, and SQLite's WAL locks
 * taken once instead of per statement. store_read_end never fails (read-only). */
int store_read_begin(struct store *st);
void store_read_end(struct store *st);

/* The replay window (SPEC §4.2), read in one snapshot: *first_id is the smallest id among
 * the channel's last `limit` rows (0 when there are none), *live_from the newest id of the
 * whole table; rows with first_id <= id <= live_from are the window. Returns 0 or an error. */
int store_replay_window(struct store *st, const struct store_channel *ch, size_t limit,
                        int64_t *first_id, int64_t *live_from);

/* The newest event id of the table (0 when empty). Returns 0 or an error. */
int store_newest_id(struct store *st, int64_t *out);

/* Retention facts for a resume from after_id (SPEC §4.3): *pruned_through is the highest id
 * deleted from the channel (0 when none; the worker scope uses every scope's highest), and
 * *oldest_kept is the channel's smallest id > after_id (0 when none). Returns 0 or error. */
int store_retention(struct store *st, const struct store_channel *ch, int64_t after_id,
                    int64_t *pruned_through, int64_t *oldest_kept);

/* PRAGMA data_version: changes whenever another connection commits. Returns 0 or error. */
int store_data_version(struct store *st, int64_t *out);

/* Health facts: schema version, WAL mode. Returns 0 or an error. */
int store_health(struct store *st, int *schema_version, bool *is_wal);

/* Counts the sessions: *open with closed_at NULL, *closed the others. Reads the whole
 * table (for `sse-fcgi --check`, not for requests). Returns 0 or an error. */
int store_session_counts(struct store *st, int64_t *open, int64_t *closed);

/* The relay_state row that sse-fcgi-relay keeps on a node of a shared log (README "Several
 * web nodes"); text is cut to fit. */
struct store_relay_state {
    char state[16];                 /* "copying", "reconnecting" or "stopped" */
    int64_t position;               /* copied through this position of the log */
    int64_t upstream_newest;        /* the log's newest position when last read */
    int64_t seconds_in_state;
    bool has_copied_at;
    char copied_at[40];             /* the last batch's commit time, UTC */
    char detail[512];
};

/* Reads relay_state. Returns 1 with *out filled, 0 when no relay writes this database (no
 * table or no row), or an error. */
int store_relay_state(struct store *st, struct store_relay_state *out);

/* Sets *exists to whether the schema has an object of type ("table", "trigger", ...) named
 * name (both borrowed for the call). Returns 0 or an error. */
int store_schema_has(struct store *st, const char *type, const char *name, bool *exists);

/* Runs EXPLAIN QUERY PLAN on each cursor query and calls report(ctx, query_name, detail)
 * for each plan line. Returns 0 or an error. For tests and `sse-fcgi --explain`. */
int store_explain(struct store *st, void (*report)(void *ctx, const char *query_name,
                                                   const char *detail), void *ctx);

/* Prepares an empty batch. */
void store_batch_init(struct store_batch *b);

/* Frees a batch's memory and leaves it empty. NULL is safe. */
void store_batch_release(struct store_batch *b);

/* Frees the rows but keeps the arrays for the next fill. */
void store_batch_clear(struct store_batch *b);

/* Appends a reference to row (no copy). Returns row->bytes, or -1 when out of memory. */
long store_batch_add_row(struct store_batch *b, struct store_row *row);

#endif
