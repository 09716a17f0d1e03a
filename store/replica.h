/*
 * replica.h - the local copy of a shared log: what sse-fcgi-relay writes into a node's
 * SQLite file (README "Several web nodes").
 *
 * The relay reads batches from PostgreSQL and hands each one here; one batch is one SQLite
 * transaction, together with the relay's cursor in the relay_state table, so a relay
 * killed at any moment resumes exactly where its last commit left it. Rows keep their
 * PostgreSQL ids: every node holds the same ids, and a client that reconnects to another
 * node resumes with the same Last-Event-ID.
 *
 * Positions: PostgreSQL gives events.id and sessions.log_id from one sequence, visible in
 * order (deploy/postgresql/schema.sql). A batch is every change with position in
 * (state.position, batch.through], applied in position order, so a session is closed
 * locally only after the events written before its close. This module knows nothing of
 * PostgreSQL: text arrives as pointers and lengths, NULL for SQL NULL.
 */
#ifndef SSE_REPLICA_H
#define SSE_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The text columns of one event row, in this order (schema.sql's events, after id). */
enum replica_column {
    REPLICA_SESSION_ID,
    REPLICA_TYPE,
    REPLICA_STREAM_ID,
    REPLICA_NODE_ID,
    REPLICA_EXECUTION_ID,
    REPLICA_DATA,
    REPLICA_TIMESTAMP,
    REPLICA_CORRELATION_ID,
    REPLICA_COLONY_ID,
    REPLICA_RUN_ID,
    REPLICA_COLUMN_COUNT
};

struct replica_event {
    int64_t id;
    const char *text[REPLICA_COLUMN_COUNT];   /* borrowed; NULL is SQL NULL */
    size_t len[REPLICA_COLUMN_COUNT];
    const char *session_created_at;           /* the session's created_at, to create it */
};

/* A session as it is after its latest change, which took position log_id. */
struct replica_session {
    int64_t log_id;
    const char *id;
    const char *created_at;
    const char *closed_at;                    /* NULL: open */
};

/* PostgreSQL deleted the scope's rows through through_id ('' scope: global channel). */
struct replica_pruned {
    const char *scope;
    int64_t through_id;
};

struct replica_batch {
    const struct replica_event *events;       /* in id order */
    size_t event_count;
    const struct replica_session *sessions;   /* in log_id order */
    size_t session_count;
    const struct replica_pruned *pruned;
    size_t pruned_count;
    int64_t through;                          /* the position the batch brings us to */
    int64_t upstream_newest;                  /* the log's newest position, when read */
};

/* Which history the copy comes from: a PostgreSQL cluster and its timeline. A promoted
 * standby keeps the identifier and takes a new timeline, and may reissue ids that clients
 * have already seen; a new cluster has a new identifier. */
struct replica_source {
    char system_identifier[32];               /* decimal, as pg_control_system() prints it */
    int64_t timeline;
};

enum replica_state_kind {
    REPLICA_COPYING,        /* connected to the log, copying or caught up */
    REPLICA_RECONNECTING,   /* the log cannot be reached; retrying */
    REPLICA_STOPPED,        /* the log's history changed: copying stops until an operator acts */
};

/* The relay_state row. */
struct replica_state {
    bool has_source;                          /* false: never connected yet */
    struct replica_source source;
    int64_t position;                         /* copied through this position */
    int64_t upstream_newest;
    enum replica_state_kind kind;
    char detail[512];
};

struct replica;

/* Opens the node's SQLite file read-write (made from schema.sql beforehand), checks its
 * schema, and creates relay_state when missing. Returns 0 and *out, or -1 with a message
 * in errbuf. */
int replica_open(const char *path, int busy_timeout_ms, struct replica **out, char *errbuf,
                 size_t errbuf_size);

void replica_close(struct replica *r);

/* Reads relay_state. A file never written by a relay reads as position = the newest local
 * event id, no source. Returns 0 or -1 (replica_errmsg). */
int replica_state(struct replica *r, struct replica_state *out);

/* Applies one batch and moves the position to batch->through, in one transaction. Returns
 * 0, or -1 with nothing applied (replica_errmsg says why: busy, refused row, disk). */
int replica_apply(struct replica *r, const struct replica_batch *batch);

/* Records the state kind, the source (NULL: keep) and a detail line for /api/health.
 * Writes only when something changed, since every commit wakes the node's streams' hub.
 * Returns 0 or -1. */
int replica_set_state(struct replica *r, enum replica_state_kind kind,
                      const struct replica_source *source, const char *detail);

/* The message of the last failure; borrowed, valid until the next call. */
const char *replica_errmsg(const struct replica *r);

/* The name /api/health and the logs use for a state kind. */
const char *replica_state_name(enum replica_state_kind kind);

#endif
