/*
 * db.h - the one SQLite layer: a connection, its statements, its transactions, and what a
 * failure tells the user. store.c (the responder, read-only), prune.c and the relay's
 * writer (read-write) are built on it; nothing outside store/ includes this header.
 *
 * A connection (struct db) is opened read-only or read-write, never creating the file,
 * with a busy timeout. Its statements are the caller's table of SQL texts, indexed by the
 * caller's own enum, each prepared on first use (SQLITE_PREPARE_PERSISTENT) and kept until
 * db_close; nothing is spliced into SQL. A statement is bound by the caller through
 * db_prepare and the sqlite3_bind_* calls, then run with db_run or db_query_integer, which
 * reset it and clear its bindings whatever happens.
 *
 * Return codes. A function that can fail returns 0 (or a count, where it says so) or a
 * negative code: the caller's own, chosen once in db_options.codes, one for each
 * enum db_error below, so that store.c returns store_error and prune.c prune_error without
 * a translation at each call. With codes NULL the layer returns the db_error itself.
 * The connection keeps the message of its last failure (db_errmsg): it says what failed
 * and, where there is something to do, what to do. A reader's and a writer's messages
 * differ where their remedies differ (busy, read-only).
 *
 * Threads: one connection belongs to one thread at a time; db_open may be called from any
 * thread (SQLite's process-wide settings are made once, before the first connection).
 */
#ifndef SSE_DB_H
#define SSE_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sqlite3;         /* sqlite3.h's sqlite3; store/ modules include it to bind and step */
struct sqlite3_stmt;    /* sqlite3.h's sqlite3_stmt */

/* What went wrong, as the layer sees it. Each maps to one field of struct db_codes. */
enum db_error {
    DB_ERR_MISSING = -1,    /* no file at the path (a connection never creates one) */
    DB_ERR_CANTOPEN = -2,   /* the file cannot be opened: stat failed, not a readable
                             * regular file (reader), SQLITE_CANTOPEN or SQLITE_PERM */
    DB_ERR_READONLY = -3,   /* SQLITE_READONLY: a writer that may not write the file or
                             * its directory; a reader that cannot create -wal/-shm */
    DB_ERR_BUSY = -4,       /* locked past the busy timeout: try again later */
    DB_ERR_NOMEM = -5,
    DB_ERR_SCHEMA = -6,     /* user_version < 1, a required object missing, or a statement
                             * naming a table or column the database lacks */
    DB_ERR_SQLITE = -7,     /* anything else (damaged file, I/O, a constraint): the
                             * message has SQLite's text and extended code */
};

/* The caller's code for each db_error; every field negative. */
struct db_codes {
    int missing, cantopen, readonly, busy, nomem, schema, sqlite;
};

/* One statement of the caller's table. */
struct db_sql {
    const char *name;       /* how messages call it ("policy"); NULL: by its SQL text */
    const char *sql;        /* one statement */
};

enum db_mode {
    DB_READ_ONLY,           /* SQLITE_OPEN_READONLY: the responder (SPEC §1) */
    DB_READ_WRITE,          /* SQLITE_OPEN_READWRITE: prune, the relay */
};

/* How to open a connection. Copied by db_open; what its pointers point to is borrowed for
 * the connection's life (static tables and string literals). */
struct db_options {
    enum db_mode mode;
    int busy_timeout_ms;            /* how long a statement waits for a lock, then BUSY */
    const struct db_sql *sql;       /* the caller's statements, indexed by its enum */
    int sql_count;
    const struct db_codes *codes;   /* NULL: return the db_error values themselves */
    /* Writers only (DB_READ_WRITE): */
    const char *program;            /* named in the read-only hint: "run <program> as a user
                                     * who can write both, such as <owner>" */
    const char *busy_advice;        /* ends the BUSY message, after "another writer held
                                     * the database for more than N ms; ": what the
                                     * failure left behind and what to do ("what was
                                     * committed stays deleted, run prune again later") */
    bool is_read_only_ok;           /* a file this user may not write opens read-only
                                     * instead of failing (a dry run, which only reads) */
};

/* A schema object a caller needs: type as in sqlite_master ("table", "trigger", ...). */
struct db_object {
    const char *type;
    const char *name;
};

struct db;

/* ---- lifecycle ---------------------------------------------------------------------- */

/* Opens path (borrowed for the call; the connection keeps a copy) as opt says, with its
 * busy timeout, never creating the file. A reader must find a readable regular file; a
 * writer that may not write it fails DB_ERR_READONLY unless opt->is_read_only_ok. No
 * statement is prepared yet and the schema is not checked (db_check_schema).
 * Returns 0 and *out (owned by the caller, close with db_close); on failure a negative
 * code, *out = NULL, and the message copied into errbuf (errbuf_size > 0):
 *   missing    "cannot open database <path>: No such file or directory"
 *   cantopen   "database <path> is not a readable file" (reader), SQLite's reason, or
 *              for a writer the read-only hint (see db_fail_sqlite)
 *   readonly   the read-only hint
 * Thread-safe. */
int db_open(const char *path, const struct db_options *opt, struct db **out, char *errbuf,
            size_t errbuf_size);

/* Finalizes every statement and closes the connection; an open transaction rolls back.
 * NULL is safe. */
void db_close(struct db *db);

/* Checks that the database is an sse-fcgi one: user_version >= 1 and every one of the
 * count objects in required (borrowed for the call) exists. Sets *user_version (0 when it
 * could not be read). Returns 0, the schema code with the message "database has no sse-fcgi
 * schema (user_version N): apply schema.sql" (a caller that can say more replaces it with
 * db_fail), or the code of a failed read (named "user_version" or "schema check"). */
int db_check_schema(struct db *db, const struct db_object *required, size_t count,
                    int64_t *user_version);

/* The SQLite connection, for the calls this layer does not wrap (sqlite3_limit,
 * sqlite3_changes, sqlite3_wal_checkpoint_v2, ...). Borrowed, valid until db_close. */
struct sqlite3 *db_handle(struct db *db);

/* ---- statements ----------------------------------------------------------------------- */

/* Sets *out to statement q of the table (0 <= q < sql_count), prepared now if this is its
 * first use. The statement is borrowed until db_close; bind it, then run it with db_run or
 * db_query_integer (or step it, then sqlite3_reset it). Returns 0, or a negative code with
 * *out = NULL: schema when it names a table or column the database lacks ("<name>: no such
 * table: t: apply schema.sql"), else as db_fail_sqlite (a prepare can meet a lock, a
 * damaged file or a full heap, since it may load the schema again). */
int db_prepare(struct db *db, int q, struct sqlite3_stmt **out);

/* Runs statement q, as bound, to its end (rows are skipped), then resets it and clears its
 * bindings. Returns 0 or a negative code. */
int db_run(struct db *db, int q);

/* Runs statement q, as bound, for its first row and sets *out to that row's first column
 * (0 when there is no row or the value is NULL), then resets it and clears its bindings.
 * Returns 1 when a non-NULL value was read, 0 when none was, or a negative code. */
int db_query_integer(struct db *db, int q, int64_t *out);

/* ---- transactions --------------------------------------------------------------------- */

enum db_begin {
    DB_BEGIN_DEFERRED,      /* BEGIN: a read snapshot from the first read */
    DB_BEGIN_IMMEDIATE,     /* BEGIN IMMEDIATE: the write lock now, or BUSY after the
                             * busy timeout */
};

/* Starts a transaction. Returns 0 or a negative code (named "BEGIN" or "BEGIN IMMEDIATE"). */
int db_begin(struct db *db, enum db_begin kind);

/* Commits the open transaction. Returns 0, or a negative code (named "COMMIT") after which
 * the transaction has been rolled back: the connection is never left inside one. */
int db_commit(struct db *db);

/* Rolls back the open transaction, if there is one. It cannot fail as far as the caller is
 * concerned, and it leaves the last message alone: it runs after the failure whose message
 * is the one to report. */
void db_rollback(struct db *db);

/* Ends the open transaction by rc, the outcome of the work in it: when rc >= 0 commits and
 * returns 0 or db_commit's failure; when rc < 0 rolls back and returns rc. */
int db_end(struct db *db, int rc);

/* ---- failures ------------------------------------------------------------------------- */

/* Maps a SQLite result code rc, from a call on this connection about what (borrowed for
 * the call: a statement name, "open", ...), to a negative code and a message:
 *   BUSY, LOCKED  reader: "<what>: database is locked (<sqlite>)"
 *                 writer: "<what>: <sqlite>: another writer held the database for more
 *                 than N ms; <busy_advice>"
 *   NOMEM         "<what>: out of memory"
 *   READONLY      reader: "<what>: <sqlite> (extended code N): the web server user needs
 *                 write access to the database directory, or the -wal and -shm files
 *                 must exist" (DEPLOY-NOTES §9)
 *                 writer: the read-only hint, "<what>: <sqlite> (extended code N): this
 *                 user (uid U) cannot write <path> or its directory; run <program> as a
 *                 user who can write both, such as <owner>[ or a member of group <g>]"
 *   CANTOPEN, PERM  writer: the read-only hint, with the cantopen code; reader: as below
 *   anything else "<what>: <sqlite> (code <extended code>)"
 * Returns the code. */
int db_fail_sqlite(struct db *db, int rc, const char *what);

/* Sets the message from fmt and returns code unchanged (the caller's own, or one of its
 * codes for a db_error), for failures the caller finds itself. */
int db_fail(struct db *db, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The message of the last failure; borrowed, valid until the next call on db. NULL gives
 * "no database". */
const char *db_errmsg(const struct db *db);

#endif
