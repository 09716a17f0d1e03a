/*
 * prune.h - retention for `sse-fcgi prune`: deletes old events, as a prefix by id in each
 * scope, on a read-write connection of its own.
 *
 * The responder never writes the database (SPEC §1). This module is the one exception, and
 * only the admin command uses it, run by a user who can write the database (the
 * producers'). A scope is one session, or the global channel (session_id NULL). A row is
 * deleted only when no rule keeps it:
 *   keep_days    rows whose timestamp is within the last keep_days days;
 *   keep_events  the last keep_events rows of the scope;
 *   the floor    rows of an open scope (closed_at NULL, a session with no `sessions` row,
 *                and the global channel) newer than floor_hours.
 * A timestamp that is not ISO-8601 text SQLite can read has no age: the age rules keep it.
 * A scope is an exact stored session_id value, type and bytes: in a hand-edited database the
 * BLOB x'7331' and the text 's1' followed by a NUL are scopes of their own, pruned by the same
 * rules as 's1' and reported as ids no stream can ask for.
 * Deletion is a prefix: every row older than the scope's oldest kept row goes, none after
 * it, so schema.sql's `pruned` trigger records exactly what a resume lost (SPEC §4.3).
 * `sessions` rows are never deleted (a closed session still answers 204).
 */
#ifndef SSE_PRUNE_H
#define SSE_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum prune_error {
    PRUNE_ERR_MISSING = -1,     /* no database file at the path */
    PRUNE_ERR_SCHEMA = -2,      /* not an sse-fcgi database, or without its prune trigger */
    PRUNE_ERR_READONLY = -3,    /* this user cannot write the database or its directory */
    PRUNE_ERR_BUSY = -4,        /* another writer held the lock past the busy timeout */
    PRUNE_ERR_NOMEM = -5,
    PRUNE_ERR_SQLITE = -6,      /* any other SQLite failure; the message names it */
};

struct prune_options {
    const char *db_path;        /* borrowed */
    long keep_days;             /* 0: no age rule */
    long keep_events;           /* 0: no count rule; at least one of the two is set */
    long floor_hours;           /* 0: no floor */
    bool is_dry_run;            /* plan and report, delete nothing, no checkpoint */
    int busy_timeout_ms;        /* for the write lock and the checkpoint */
    int batch_rows;             /* at most this many rows deleted per transaction */
};

/* One scope's plan, reported before anything of it is deleted. */
struct prune_scope {
    const char *session_id;     /* NULL: the global channel; else session_id_len bytes, not
                                 * NUL-terminated, borrowed for the callback */
    size_t session_id_len;
    bool is_blob;               /* stored as a BLOB (hand-edited) */
    bool is_irregular;          /* a BLOB, or text that is no session id (SPEC §5: 1-128
                                 * bytes of A-Za-z0-9._:-): no stream can ask for it */
    bool is_open;               /* the floor applies */
    int64_t deleted;            /* rows that go (planned) */
    int64_t first_deleted_id;   /* 0 when none go */
    int64_t last_deleted_id;    /* 0 when none go */
    int64_t kept;               /* rows that stay */
    int64_t oldest_kept_id;     /* 0 when none stay */
    int64_t held_by_floor;      /* rows that only the floor keeps */
};

enum prune_checkpoint {
    PRUNE_CHECKPOINT_NOT_RUN,   /* dry run */
    PRUNE_CHECKPOINT_TRUNCATED, /* every WAL frame copied, the -wal file is 0 bytes */
    PRUNE_CHECKPOINT_BUSY,      /* a reader or writer was active: partly done, no error */
    PRUNE_CHECKPOINT_NOT_WAL,   /* the database is not in WAL mode: nothing to do */
};

struct prune_summary {
    int64_t scopes;             /* scopes that have events */
    int64_t scopes_pruned;      /* of them, scopes that lose events */
    int64_t scopes_irregular;   /* of them, scopes whose session id is_irregular */
    int64_t planned;            /* rows planned to go */
    int64_t deleted;            /* rows deleted and committed (0 in a dry run) */
    int64_t kept;               /* rows planned to stay */
    int64_t held_by_floor;      /* rows that only the floor keeps */
    int64_t transactions;       /* write transactions committed */
    int64_t longest_transaction_ms; /* the longest of them: BEGIN IMMEDIATE to COMMIT */
    enum prune_checkpoint checkpoint;
    int wal_frames;             /* BUSY: frames in the WAL */
    int wal_frames_done;        /* BUSY: frames copied into the database */
};

/* Called once per scope that has events, in scope order (global channel first). */
typedef void prune_scope_fn(void *ctx, const struct prune_scope *scope);

/* Opens opt->db_path read-write (never creating it), plans every scope and reports it
 * through each (may be NULL), deletes in transactions of at most opt->batch_rows rows
 * (unless a dry run), then runs a TRUNCATE checkpoint. Returns 0 with *out filled, or a
 * negative prune_error with a message that says what to do in errbuf (errbuf_size > 0);
 * *out then counts what was committed before the failure, which stays deleted (each
 * transaction deletes a prefix, so the database is consistent after any of them).
 * Not thread-safe: one call at a time per process. */
int prune_run(const struct prune_options *opt, prune_scope_fn *each, void *ctx,
              struct prune_summary *out, char *errbuf, size_t errbuf_size);

#endif
