/*
 * db.c - the one SQLite layer (see db.h): open, statements prepared on first use,
 * transactions, and SQLite failures turned into messages that say what to do.
 *
 * It holds no policy: which statements run, which schema objects must exist and which
 * codes come back are the caller's. It never creates a database file and never prints.
 * A failure's message stays until the next failure; a rollback after one keeps it.
 */
#include "db.h"

#include <assert.h>
#include <errno.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct db {
    sqlite3 *handle;                /* owned */
    struct db_options opt;          /* a copy; what it points to is the caller's */
    bool is_writer;                 /* opt.mode == DB_READ_WRITE */
    char *path;                     /* owned copy, named in messages */
    char errmsg[1024];              /* the last failure; a path and a hint fit */
    sqlite3_stmt *stmts[];          /* owned; opt.sql_count of them, prepared on first use */
};

/* The caller's code for e (db_options.codes), or e itself; by_error is indexed by -e, as
 * db.h numbers the errors from -1 in the order of struct db_codes. */
static int
code_of(const struct db_codes *c, enum db_error e)
{
    if (c == NULL)
        return e;
    const int by_error[] = {0, c->missing, c->cantopen, c->readonly, c->busy, c->nomem,
                            c->schema, c->sqlite};
    return by_error[-e];
}

int
db_fail(struct db *db, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
    va_end(ap);
    return code;
}

/* The failure of a writer run by a user who may not write the database or its directory
 * (where the journal and -wal/-shm go); ext is SQLite's extended code, or -1 when the
 * failure is not SQLite's. It names who may: the owner, and the group's members when the
 * group may write it too (DEPLOY-NOTES Q11's setup). */
static int
fail_unwritable(struct db *db, enum db_error e, const char *what, const char *msg, int ext)
{
    char writers[256] = "the owner of the database", code[48] = "";
    struct stat sb;
    if (stat(db->path, &sb) == 0) {
        const struct passwd *pw = getpwuid(sb.st_uid);
        int len = pw != NULL ? snprintf(writers, sizeof(writers), "%s", pw->pw_name)
                             : snprintf(writers, sizeof(writers), "uid %ld", (long)sb.st_uid);
        const struct group *gr = (sb.st_mode & S_IWGRP) ? getgrgid(sb.st_gid) : NULL;
        if (gr != NULL && len > 0 && (size_t)len < sizeof(writers))
            snprintf(writers + len, sizeof(writers) - (size_t)len, " or a member of group %s",
                     gr->gr_name);
    }
    if (ext >= 0)
        snprintf(code, sizeof(code), " (extended code %d)", ext);
    return db_fail(db, code_of(db->opt.codes, e), "%s: %s%s: this user (uid %ld) cannot "
                   "write %s or its directory; run %s as a user who can write both, such as "
                   "%s", what, msg, code, (long)geteuid(), db->path, db->opt.program, writers);
}

int
db_fail_sqlite(struct db *db, int rc, const char *what)
{
    int ext = db->handle ? sqlite3_extended_errcode(db->handle) : rc;
    const char *msg = db->handle ? sqlite3_errmsg(db->handle) : sqlite3_errstr(rc);
    const struct db_codes *c = db->opt.codes;
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        if (db->is_writer)
            return db_fail(db, code_of(c, DB_ERR_BUSY), "%s: %s: another writer held the "
                           "database for more than %d ms; %s", what, msg,
                           db->opt.busy_timeout_ms,
                           db->opt.busy_advice ? db->opt.busy_advice : "try again later");
        return db_fail(db, code_of(c, DB_ERR_BUSY), "%s: database is locked (%s)", what, msg);
    case SQLITE_NOMEM:
        return db_fail(db, code_of(c, DB_ERR_NOMEM), "%s: out of memory", what);
    case SQLITE_READONLY:
        if (db->is_writer)
            return fail_unwritable(db, DB_ERR_READONLY, what, msg, ext);
        /* DEPLOY-NOTES §9: a reader that cannot create -wal/-shm. */
        return db_fail(db, code_of(c, DB_ERR_READONLY), "%s: %s (extended code %d): the web "
                       "server user needs write access to the database directory, or the "
                       "-wal and -shm files must exist", what, msg, ext);
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
        if (db->is_writer)
            return fail_unwritable(db, DB_ERR_CANTOPEN, what, msg, ext);
        return db_fail(db, code_of(c, DB_ERR_CANTOPEN), "%s: %s (code %d)", what, msg, ext);
    default:
        return db_fail(db, code_of(c, DB_ERR_SQLITE), "%s: %s (code %d)", what, msg, ext);
    }
}

/* ---- opening -------------------------------------------------------------------------- */

static pthread_once_t configure_once = PTHREAD_ONCE_INIT;

/* Process-wide SQLite settings, before its first connection. No page-cache bulk: by default
 * (SQLITE_DEFAULT_PCACHE_INITSZ, 20 on Debian) each connection mallocs 20 pages at its first
 * read and writes the header of each, so all 87 KiB are touched however few pages it
 * reads; pages are now allocated one by one as they are read (issue 12: 50 KiB less per
 * process behind mod_fcgid, where the stream's connection and the watcher's each had one). */
static void
configure_sqlite(void)
{
    sqlite3_config(SQLITE_CONFIG_PAGECACHE, NULL, 0, 0);
    sqlite3_initialize();
}

/* Before SQLite sees the path, so that a missing file is said so (SQLite only says it
 * cannot open it) and a writer is told who may write it. Then the connection: SQLite
 * opens a file it may not write read-only without a word, so a writer asks. */
static int
open_connection(struct db *db)
{
    struct stat sb;
    const struct db_codes *c = db->opt.codes;
    if (stat(db->path, &sb) != 0) {
        int err = errno;
        if (err != ENOENT && db->is_writer)
            return fail_unwritable(db, DB_ERR_CANTOPEN, "open", strerror(err), -1);
        return db_fail(db, code_of(c, err == ENOENT ? DB_ERR_MISSING : DB_ERR_CANTOPEN),
                       "cannot open database %s: %s", db->path, strerror(err));
    }
    if (!db->is_writer && (!S_ISREG(sb.st_mode) || access(db->path, R_OK) != 0))
        return db_fail(db, code_of(c, DB_ERR_CANTOPEN), "database %s is not a readable file",
                       db->path);
    int flags = (db->is_writer ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY)
                | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(db->path, &db->handle, flags, NULL);
    if (rc != SQLITE_OK)
        return db_fail_sqlite(db, rc, "open");
    sqlite3_busy_timeout(db->handle, db->opt.busy_timeout_ms);
    if (db->is_writer && !db->opt.is_read_only_ok
        && sqlite3_db_readonly(db->handle, "main") == 1)
        return fail_unwritable(db, DB_ERR_READONLY, "open",
                               "the file is read-only for this user", -1);
    return 0;
}

int
db_open(const char *path, const struct db_options *opt, struct db **out, char *errbuf,
        size_t errbuf_size)
{
    assert(opt->sql_count >= 0 && errbuf_size > 0);
    *out = NULL;
    pthread_once(&configure_once, configure_sqlite);
    struct db *db = calloc(1, sizeof(*db) + (size_t)opt->sql_count * sizeof(db->stmts[0]));
    char *copy = db != NULL ? strdup(path) : NULL;
    if (copy == NULL) {
        free(db);
        snprintf(errbuf, errbuf_size, "out of memory");
        return code_of(opt->codes, DB_ERR_NOMEM);
    }
    db->opt = *opt;
    db->is_writer = opt->mode == DB_READ_WRITE;
    db->path = copy;
    int rc = open_connection(db);
    if (rc < 0) {
        snprintf(errbuf, errbuf_size, "%s", db->errmsg);
        db_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

void
db_close(struct db *db)
{
    if (db == NULL)
        return;
    for (int q = 0; q < db->opt.sql_count; q++)
        sqlite3_finalize(db->stmts[q]);
    sqlite3_close(db->handle);
    free(db->path);
    free(db);
}

struct sqlite3 *
db_handle(struct db *db)
{
    return db->handle;
}

const char *
db_errmsg(const struct db *db)
{
    return db != NULL ? db->errmsg : "no database";
}

/* ---- statements ----------------------------------------------------------------------- */

static const char *
name_of(const struct db *db, int q)
{
    return db->opt.sql[q].name != NULL ? db->opt.sql[q].name : db->opt.sql[q].sql;
}

/* Only a missing table or column means the database lacks (part of) the schema; a prepare
 * also loads the schema again after another connection changed it, so it can meet a lock,
 * a damaged file or a full heap as a step can, and those are reported as themselves. */
int
db_prepare(struct db *db, int q, struct sqlite3_stmt **out)
{
    assert(q >= 0 && q < db->opt.sql_count);
    int rc = SQLITE_OK;
    if (db->stmts[q] == NULL)
        rc = sqlite3_prepare_v3(db->handle, db->opt.sql[q].sql, -1,
                                SQLITE_PREPARE_PERSISTENT, &db->stmts[q], NULL);
    *out = db->stmts[q];
    if (rc == SQLITE_OK)
        return 0;
    const char *msg = sqlite3_errmsg(db->handle);
    if ((rc & 0xff) == SQLITE_ERROR && (strncmp(msg, "no such table", 13) == 0
                                        || strncmp(msg, "no such column", 14) == 0))
        return db_fail(db, code_of(db->opt.codes, DB_ERR_SCHEMA), "%s: %s: apply schema.sql",
                       name_of(db, q), msg);
    return db_fail_sqlite(db, rc, name_of(db, q));
}

/* Steps s once (to its end when is_to_end) and reads column 0 of the first row, then
 * resets s and clears its bindings. Returns as db_query_integer. */
static int
step(struct db *db, sqlite3_stmt *s, const char *what, bool is_to_end, int64_t *out)
{
    int rc = sqlite3_step(s);
    bool has_value = rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL;
    *out = has_value ? sqlite3_column_int64(s, 0) : 0;
    while (is_to_end && rc == SQLITE_ROW)
        rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail_sqlite(db, rc, what);
    return has_value;
}

int
db_run(struct db *db, int q)
{
    sqlite3_stmt *s;
    int64_t ignored;
    int rc = db_prepare(db, q, &s);
    rc = rc < 0 ? rc : step(db, s, name_of(db, q), true, &ignored);
    return rc < 0 ? rc : 0;
}

int
db_query_integer(struct db *db, int q, int64_t *out)
{
    sqlite3_stmt *s;
    *out = 0;
    int rc = db_prepare(db, q, &s);
    return rc < 0 ? rc : step(db, s, name_of(db, q), false, out);
}

int
db_check_schema(struct db *db, const struct db_object *required, size_t count,
                int64_t *user_version)
{
    sqlite3_stmt *version = NULL, *object = NULL;
    int64_t found = 1;
    *user_version = 0;
    int rc = sqlite3_prepare_v2(db->handle, "PRAGMA user_version", -1, &version, NULL);
    rc = rc != SQLITE_OK ? db_fail_sqlite(db, rc, "user_version")
                         : step(db, version, "user_version", false, user_version);
    if (rc >= 0) {
        rc = sqlite3_prepare_v2(db->handle, "SELECT count(*) FROM sqlite_master WHERE "
                                "type = ?1 AND name = ?2", -1, &object, NULL);
        rc = rc != SQLITE_OK ? db_fail_sqlite(db, rc, "schema check") : 0;
    }
    for (size_t i = 0; rc >= 0 && found > 0 && i < count; i++) {
        sqlite3_bind_text(object, 1, required[i].type, -1, SQLITE_STATIC);
        sqlite3_bind_text(object, 2, required[i].name, -1, SQLITE_STATIC);
        rc = step(db, object, "schema check", false, &found);
    }
    sqlite3_finalize(version);
    sqlite3_finalize(object);
    if (rc >= 0 && (*user_version < 1 || found == 0))
        rc = db_fail(db, code_of(db->opt.codes, DB_ERR_SCHEMA), "database has no sse-fcgi "
                     "schema (user_version %lld): apply schema.sql", (long long)*user_version);
    return rc < 0 ? rc : 0;
}

/* ---- transactions --------------------------------------------------------------------- */

/* sql is also the statement's name in messages, as both callers named them before. */
static int
run_sql(struct db *db, const char *sql)
{
    int rc = sqlite3_exec(db->handle, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : db_fail_sqlite(db, rc, sql);
}

int
db_begin(struct db *db, enum db_begin kind)
{
    return run_sql(db, kind == DB_BEGIN_IMMEDIATE ? "BEGIN IMMEDIATE" : "BEGIN");
}

int
db_commit(struct db *db)
{
    int rc = run_sql(db, "COMMIT");
    if (rc < 0)
        db_rollback(db);  /* a COMMIT that failed (BUSY) leaves the transaction open */
    return rc;
}

void
db_rollback(struct db *db)
{
    /* No transaction when BEGIN itself failed, or when SQLite rolled it back already (a
     * full disk, an I/O error): a ROLLBACK then only fails, and its "no transaction is
     * active" used to replace the message that mattered. */
    if (sqlite3_get_autocommit(db->handle))
        return;
    char kept[sizeof(db->errmsg)];
    memcpy(kept, db->errmsg, sizeof(kept));
    run_sql(db, "ROLLBACK");
    memcpy(db->errmsg, kept, sizeof(kept));
}

int
db_end(struct db *db, int rc)
{
    if (rc >= 0)
        return db_commit(db);
    db_rollback(db);
    return rc;
}
