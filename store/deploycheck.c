/*
 * deploycheck.c - `sse-fcgi --check`'s database checks (see deploycheck.h).
 *
 * The file checks use faccessat(AT_EACCESS), so they answer for the effective user, the
 * one the web server runs the responder as. The open check is the responder's own
 * store_open; the rest read through store.h, so this file needs no SQL of its own. The
 * "wal access" check states DEPLOY-NOTES Q11: a reader that cannot write the directory
 * works only while -wal and -shm exist, and the last connection to close deletes them.
 * "permissions" looks for what any user of the host may write: the database files, and the
 * directories that hold them.
 */
#define _XOPEN_SOURCE 700  /* realpath and S_ISVTX (the sticky bit) are XSI */
#include "deploycheck.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store.h"

enum {
    CHECK_BUSY_TIMEOUT_MS = 1000,   /* as a stream waits for a writer at start */
    CHECK_TEXT_MAX = 1024,
    CHECK_PATH_MAX = 4096,
};

#define APPLY_SCHEMA_HINT "apply the schema as the producers' user: sqlite3 %s < schema.sql " \
                          "(it only adds, so it is safe on a database in use)"

struct checker {
    const struct deploycheck_options *opt;  /* borrowed */
    deploycheck_report_fn *report;          /* borrowed */
    void *ctx;
    int failures;
    char detail[CHECK_TEXT_MAX];            /* the line being reported */
    char hint[CHECK_TEXT_MAX];
    char schema_error[CHECK_TEXT_MAX];      /* store_open's message for a missing schema */
};

/* Sets the hint of the next FAIL line. */
static void
set_hint(struct checker *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
set_hint(struct checker *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->hint, sizeof(c->hint), fmt, ap);
    va_end(ap);
}

/* Reports one line; a FAIL carries the hint set before. Returns status == OK. */
static bool
report(struct checker *c, const char *name, enum deploycheck_status status, const char *fmt,
       ...) __attribute__((format(printf, 4, 5)));

static bool
report(struct checker *c, const char *name, enum deploycheck_status status, const char *fmt,
       ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof(c->detail), fmt, ap);
    va_end(ap);
    struct deploycheck_line line = {
        .name = name,
        .status = status,
        .detail = c->detail,
        .hint = (status == DEPLOYCHECK_FAIL || status == DEPLOYCHECK_WARN) && c->hint[0] != '\0'
                    ? c->hint : NULL,
    };
    c->report(c->ctx, &line);
    c->failures += status == DEPLOYCHECK_FAIL;
    c->hint[0] = '\0';
    return status == DEPLOYCHECK_OK;
}

static bool
can_access(const char *path, int mode)
{
    return faccessat(AT_FDCWD, path, mode, AT_EACCESS) == 0;
}

/* "mode 0664, owner alice:www-data" for a file's stat. */
static const char *
describe_owner(const struct stat *sb, char *out, size_t size)
{
    const struct passwd *pw = getpwuid(sb->st_uid);
    char user[64];
    snprintf(user, sizeof(user), "%s", pw ? pw->pw_name : "?");
    const struct group *gr = getgrgid(sb->st_gid);
    snprintf(out, size, "mode %04o, owner %s:%s", (unsigned)(sb->st_mode & 07777), user,
             gr ? gr->gr_name : "?");
    return out;
}

/* ---- the checks, in order ----------------------------------------------------------- */

static bool
check_file(struct checker *c)
{
    const char *path = c->opt->db_path, *user = c->opt->user_name;
    struct stat sb;
    char owner[256];
    if (stat(path, &sb) != 0) {
        int err = errno;
        if (err == ENOENT)
            set_hint(c, "create it as the producers' user (sqlite3 %s < schema.sql), or give "
                     "the path the web server uses (SSE_DB, --db)", path);
        else if (err == EACCES)
            set_hint(c, "%s needs search (x) permission on every directory above it", user);
        return report(c, "file", DEPLOYCHECK_FAIL, "%s: %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        set_hint(c, "SSE_DB must name the database file itself");
        return report(c, "file", DEPLOYCHECK_FAIL, "%s is not a regular file", path);
    }
    if (!can_access(path, R_OK)) {
        set_hint(c, "give %s read access: the documented setup is the database 0664 and its "
                 "directory 2775, both in the web server's group (README, lighttpd)", user);
        return report(c, "file", DEPLOYCHECK_FAIL, "%s cannot read %s (%s)", user, path,
                      describe_owner(&sb, owner, sizeof(owner)));
    }
    return report(c, "file", DEPLOYCHECK_OK, "%s is readable by %s (%s)", path, user,
                  describe_owner(&sb, owner, sizeof(owner)));
}

/* Opens like the responder. A missing schema is the schema check's failure, not this
 * one's: the file opened and a query ran. Returns true with *st when there is a store. */
static bool
check_open(struct checker *c, struct store **st)
{
    char err[CHECK_TEXT_MAX];
    int rc = store_open(c->opt->db_path, CHECK_BUSY_TIMEOUT_MS, st, err, sizeof(err));
    int64_t newest = 0;
    if (rc == 0 && store_newest_id(*st, &newest) < 0) {
        snprintf(err, sizeof(err), "%s", store_errmsg(*st));
        store_close(*st);
        *st = NULL;
        rc = STORE_ERR_UNREADABLE;
    }
    if (rc == STORE_ERR_SCHEMA)
        snprintf(c->schema_error, sizeof(c->schema_error), "%s", err);
    if (rc == 0 || rc == STORE_ERR_SCHEMA)
        return report(c, "open", DEPLOYCHECK_OK, "opened read-only as the responder opens "
                      "it; a query ran") && rc == 0;
    if (strstr(err, "readonly") != NULL)
        set_hint(c, "%s must be able to create the -wal and -shm files: see \"wal access\" "
                 "below", c->opt->user_name);
    else if (rc == STORE_ERR_BUSY)
        set_hint(c, "a writer holds an exclusive lock; run the check again");
    else
        set_hint(c, "is it an SQLite database? sqlite3 %s 'PRAGMA integrity_check'",
                 c->opt->db_path);
    return report(c, "open", DEPLOYCHECK_FAIL, "%s", err);
}

/* The tables and the trigger the responder relies on, beyond what store_open checks. */
static bool
check_objects(struct checker *c, struct store *st, int version)
{
    bool has_trigger = false, has_tokens = false;
    if (store_schema_has(st, "trigger", "events_record_prune", &has_trigger) < 0
        || store_schema_has(st, "table", "read_tokens", &has_tokens) < 0)
        return report(c, "schema", DEPLOYCHECK_FAIL, "%s", store_errmsg(st));
    set_hint(c, APPLY_SCHEMA_HINT, c->opt->db_path);
    if (!has_trigger)
        return report(c, "schema", DEPLOYCHECK_FAIL, "no events_record_prune trigger: a "
                      "resume from pruned events would get no gap event");
    if (!has_tokens && c->opt->needs_read_tokens)
        return report(c, "schema", DEPLOYCHECK_FAIL, "no read_tokens table, which "
                      "SSE_AUTH=token needs");
    return report(c, "schema", DEPLOYCHECK_OK, "version %d; tables events, sessions, "
                  "event_types, pruned%s; trigger events_record_prune", version,
                  has_tokens ? ", read_tokens" : " (no read_tokens: SSE_AUTH=token needs it)");
}

/* Schema version and objects, then the journal mode. */
static void
check_schema_and_journal(struct checker *c, struct store *st)
{
    int version = 0;
    bool is_wal = false;
    if (st == NULL) {
        set_hint(c, APPLY_SCHEMA_HINT, c->opt->db_path);
        if (c->schema_error[0] != '\0')
            report(c, "schema", DEPLOYCHECK_FAIL, "%s", c->schema_error);
        else
            report(c, "schema", DEPLOYCHECK_SKIPPED, "not checked: the database did not open");
        report(c, "journal", DEPLOYCHECK_SKIPPED, "not checked: no usable database");
        return;
    }
    if (store_health(st, &version, &is_wal) < 0) {
        report(c, "schema", DEPLOYCHECK_FAIL, "%s", store_errmsg(st));
    } else if (version != 1) {
        set_hint(c, "this sse-fcgi reads schema version 1: install the sse-fcgi that "
                 "came with the newer schema.sql");
        report(c, "schema", DEPLOYCHECK_FAIL, "schema version %d", version);
    } else {
        check_objects(c, st, version);
    }
    set_hint(c, "as the producers' user: sqlite3 %s 'PRAGMA journal_mode=WAL' (schema.sql "
             "sets it; in another mode a writer blocks every stream)", c->opt->db_path);
    if (is_wal)
        report(c, "journal", DEPLOYCHECK_OK, "journal_mode is wal");
    else
        report(c, "journal", DEPLOYCHECK_FAIL, "journal_mode is not wal");
}

/* DEPLOY-NOTES Q11: the reader must be able to create -wal and -shm when they are
 * missing, that is write the directory. */
static bool
check_wal_access(struct checker *c)
{
    const char *path = c->opt->db_path, *user = c->opt->user_name;
    char dir_buf[CHECK_PATH_MAX], wal[CHECK_PATH_MAX + 8], shm[CHECK_PATH_MAX + 8];
    snprintf(dir_buf, sizeof(dir_buf), "%s", path);
    const char *dir = dirname(dir_buf);
    if (can_access(dir, W_OK | X_OK))
        return report(c, "wal access", DEPLOYCHECK_OK, "%s can write %s, so SQLite can "
                      "create %s-wal and -shm whenever they are missing", user, dir, path);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    snprintf(shm, sizeof(shm), "%s-shm", path);
    const struct group *gr = getgrgid(getegid());
    set_hint(c, "let %s write the directory: chgrp %s %s && chmod 2775 %s, with the "
             "database 0664 and the producers in that group (FILES in sse-fcgi(1))", user,
             gr ? gr->gr_name : "<its group>", dir, dir);
    if (can_access(wal, F_OK) && can_access(shm, F_OK))
        return report(c, "wal access", DEPLOYCHECK_FAIL, "%s cannot write %s: reads work "
                      "only while %s-wal and -shm exist, and the last connection to close "
                      "deletes them", user, dir, path);
    return report(c, "wal access", DEPLOYCHECK_FAIL, "%s cannot write %s and %s-wal or -shm "
                  "is missing: the first query fails with \"attempt to write a readonly "
                  "database\"", user, dir, path);
}

/* Appends separator (unless out is empty) and the formatted text to out. */
static void
append(char *out, size_t size, const char *separator, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
append(char *out, size_t size, const char *separator, const char *fmt, ...)
{
    size_t len = strlen(out);
    if (len > 0 && len + strlen(separator) < size) {
        memcpy(out + len, separator, strlen(separator) + 1);
        len += strlen(separator);
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + len, size - len, fmt, ap);
    va_end(ap);
}

/* The database, -wal and -shm that every user may write: anyone who can write one of them
 * can write rows, read tokens included. */
static void
find_writable_files(const char *db_path, char *found, size_t size, char *paths,
                    size_t paths_size)
{
    static const char *const SUFFIXES[] = {"", "-wal", "-shm"};
    char files[CHECK_TEXT_MAX] = "";
    for (size_t i = 0; i < sizeof(SUFFIXES) / sizeof(SUFFIXES[0]); i++) {
        char file[CHECK_PATH_MAX + 8];
        struct stat sb;
        snprintf(file, sizeof(file), "%s%s", db_path, SUFFIXES[i]);
        if (stat(file, &sb) != 0 || !S_ISREG(sb.st_mode) || !(sb.st_mode & S_IWOTH))
            continue;
        append(files, sizeof(files), ", ", "%s (mode %04o)", file,
               (unsigned)(sb.st_mode & 07777));
        append(paths, paths_size, " ", "%s", file);
    }
    if (files[0] != '\0')
        append(found, size, "; ", "%s: writable by every user, so anyone on this host can add "
               "events and read tokens", files);
}

/* The database's directory and those above it that every user may write. Without the
 * sticky bit, anyone may rename or delete what is in them: the database, or a directory on
 * its path, and put their own in its place. With it (as /tmp), that is kept from them, but
 * anyone may still create a name that does not exist yet: in the database's own directory,
 * a -wal or -shm, which SQLite would take for the database's. */
static void
find_writable_dirs(const char *db_path, char *found, size_t size, char *paths,
                   size_t paths_size)
{
    char copy[CHECK_PATH_MAX], dir[CHECK_PATH_MAX];
    snprintf(copy, sizeof(copy), "%s", db_path);
    if (realpath(dirname(copy), dir) == NULL)
        snprintf(dir, sizeof(dir), "%s", dirname(strcpy(copy, db_path)));
    for (bool is_own = true;; is_own = false) {
        struct stat sb;
        bool is_sticky = false;
        if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) && (sb.st_mode & S_IWOTH)) {
            unsigned mode = (unsigned)(sb.st_mode & 07777);
            is_sticky = (sb.st_mode & S_ISVTX) != 0;
            if (!is_sticky)
                append(found, size, "; ", "%s%s is writable by every user and not sticky (mode "
                       "%04o): anyone can rename or delete %s and put another file in its "
                       "place", dir, is_own ? "" : ", above the database,", mode,
                       is_own ? "the database" : "it");
            else if (is_own)
                append(found, size, "; ", "%s is writable by every user (mode %04o, sticky): "
                       "others cannot rename or delete the database, but anyone can create a "
                       "missing -wal or -shm there, which SQLite would then use", dir, mode);
            if (!is_sticky || is_own)
                append(paths, paths_size, " ", "%s", dir);
        }
        if (strcmp(dir, "/") == 0 || strcmp(dir, ".") == 0)
            return;
        snprintf(copy, sizeof(copy), "%s", dir);
        snprintf(dir, sizeof(dir), "%s", dirname(copy));
    }
}

static void
check_permissions(struct checker *c)
{
    char found[CHECK_TEXT_MAX] = "", paths[CHECK_TEXT_MAX] = "";
    find_writable_files(c->opt->db_path, found, sizeof(found), paths, sizeof(paths));
    find_writable_dirs(c->opt->db_path, found, sizeof(found), paths, sizeof(paths));
    if (found[0] == '\0') {
        report(c, "permissions", DEPLOYCHECK_OK, "no one but owners and groups can write %s, "
               "its -wal and -shm, or the directories above them", c->opt->db_path);
        return;
    }
    set_hint(c, "chmod o-w %s (the documented setup: the database 0664 and its directory "
             "2775, in the web server's group)", paths);
    report(c, "permissions", DEPLOYCHECK_WARN, "%s", found);
}

static void
check_events(struct checker *c, struct store *st)
{
    int64_t newest = 0, open = 0, closed = 0;
    if (st == NULL) {
        report(c, "events", DEPLOYCHECK_SKIPPED, "not checked: no usable database");
        return;
    }
    if (store_newest_id(st, &newest) < 0 || store_session_counts(st, &open, &closed) < 0) {
        report(c, "events", DEPLOYCHECK_FAIL, "%s", store_errmsg(st));
        return;
    }
    report(c, "events", DEPLOYCHECK_OK, "newest event id %lld; sessions: %lld open, %lld "
           "closed", (long long)newest, (long long)open, (long long)closed);
}

int
deploycheck_run(const struct deploycheck_options *opt, deploycheck_report_fn *report_fn,
                void *ctx)
{
    struct checker c = {.opt = opt, .report = report_fn, .ctx = ctx};
    struct store *st = NULL;
    if (!check_file(&c))
        report(&c, "open", DEPLOYCHECK_SKIPPED, "not checked: no readable file");
    else
        check_open(&c, &st);
    check_schema_and_journal(&c, st);
    check_wal_access(&c);
    check_permissions(&c);
    check_events(&c, st);
    store_close(st);
    return c.failures;
}
