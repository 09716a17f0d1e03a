/*
 * commands.c - `sse-fcgi prune` and `sse-fcgi --check`: options in, lines out.
 *
 * The work is in store/prune.c and store/deploycheck.c, which return facts through
 * callbacks; this file only parses (cli.h), chooses the database (--db, else $SSE_DB) and
 * words the output. The output is for a person at a shell or in cron mail, not a log line
 * (SPEC §6 is the responder's log), so it is printed here and does not go through log.c.
 */
#include "commands.h"

#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../store/deploycheck.h"
#include "../store/prune.h"
#include "cli.h"
#include "config.h"
#include "crypto.h"

enum {
    PRUNE_BUSY_TIMEOUT_MS = 5000,   /* a producer's transaction is far shorter */
    PRUNE_BATCH_ROWS = 5000,        /* rows per write transaction: a producer waits for one */
    COUNT_TEXT_MAX = 32,
};

static const char PRUNE_USAGE[] =
    "usage: sse-fcgi prune [--db PATH] [--keep-days N] [--keep-events N]\n"
    "                      [--floor-hours N] [--dry-run] [--verbose]\n"
    "Deletes old events. Run it as a user who can write the database and its directory.\n"
    "  --db PATH          the database (default: $SSE_DB)\n"
    "  --keep-days N      keep the events of the last N days (by their timestamp)\n"
    "  --keep-events N    keep the last N events of each session (the global channel is one)\n"
    "  --floor-hours N    never delete events of open sessions newer than N hours\n"
    "                     (default 24; 0 turns the floor off)\n"
    "  --dry-run          print what would be deleted; delete nothing\n"
    "  --verbose          one line per session that loses events\n"
    "At least one --keep option is needed. An event is deleted only when no option keeps it,\n"
    "and only together with every older event of its session. README: Retention (pruning).\n";

static const char CHECK_USAGE[] =
    "usage: sse-fcgi --check [--db PATH]\n"
    "Checks a deployment as the user who runs it; run it as the web server's user with the\n"
    "web server's SSE_* settings, e.g. sudo -u www-data SSE_DB=/var/lib/sse/events.db\n"
    "sse-fcgi --check. Exit status 0 when no check failed (WARN lines included), else 1.\n"
    "README: Checking a deployment.\n";

/* "1 event", "2 events" (count with thousands separators). */
static const char *
count_of(int64_t n, const char *noun, char *out, size_t size)
{
    char digits[COUNT_TEXT_MAX];
    snprintf(out, size, "%s %s%s", cli_format_count(n, digits, sizeof(digits)), noun,
             n == 1 ? "" : "s");
    return out;
}

/* Prints a usage error and returns 2. */
static int
usage_error(const char *command, const char *bad_arg, const char *why)
{
    if (bad_arg != NULL)
        fprintf(stderr, "sse-fcgi %s: %s: %s\n", command, bad_arg, why);
    else
        fprintf(stderr, "sse-fcgi %s: %s\n", command, why);
    fprintf(stderr, "sse-fcgi %s: see sse-fcgi %s --help\n", command, command);
    return 2;
}

/* ---- prune -------------------------------------------------------------------------- */

struct prune_report {
    bool is_dry_run;
    bool is_verbose;
};

enum { SCOPE_HEX_MAX = 64 };   /* bytes of an irregular session id shown in hex */

/* "session s1 (open)", or for an id no stream can ask for (it may hold any bytes) its
 * first SCOPE_HEX_MAX bytes in SQL hex: "session x'7331' (a BLOB; open)". */
static void
describe_scope(const struct prune_scope *sc, char *out, size_t size)
{
    const char *state = sc->is_open ? "open" : "closed";
    if (sc->session_id == NULL) {
        snprintf(out, size, "global channel");
        return;
    }
    if (!sc->is_irregular) {
        snprintf(out, size, "session %.*s (%s)", (int)sc->session_id_len, sc->session_id,
                 state);
        return;
    }
    char hex[2 * SCOPE_HEX_MAX + 1];
    size_t shown = sc->session_id_len < SCOPE_HEX_MAX ? sc->session_id_len : SCOPE_HEX_MAX;
    for (size_t i = 0; i < shown; i++)
        snprintf(hex + 2 * i, 3, "%02X", (unsigned char)sc->session_id[i]);
    hex[2 * shown] = '\0';
    snprintf(out, size, "session x'%s'%s (%s; %s)", hex,
             shown < sc->session_id_len ? "..." : "",
             sc->is_blob ? "a BLOB" : "text that is no session id", state);
}

/* --verbose: one line per scope that loses events. */
static void
print_scope(void *ctx, const struct prune_scope *sc)
{
    const struct prune_report *pr = ctx;
    if (!pr->is_verbose || sc->deleted == 0)
        return;
    char what[64 + 2 * SCOPE_HEX_MAX + 128], deleted[64], kept[64];
    describe_scope(sc, what, sizeof(what));
    printf("sse-fcgi prune: %s: %s ids %" PRId64 "-%" PRId64 " (%s); ", what,
           pr->is_dry_run ? "would delete" : "deletes", sc->first_deleted_id,
           sc->last_deleted_id, count_of(sc->deleted, "event", deleted, sizeof(deleted)));
    if (sc->kept == 0)
        printf("keeps none\n");
    else
        printf("keeps %s from id %" PRId64 "\n", count_of(sc->kept, "event", kept,
                                                          sizeof(kept)), sc->oldest_kept_id);
}

static void
print_checkpoint(const struct prune_summary *sum)
{
    switch (sum->checkpoint) {
    case PRUNE_CHECKPOINT_TRUNCATED:
        puts("sse-fcgi prune: checkpoint: wal truncated");
        break;
    case PRUNE_CHECKPOINT_BUSY:
        printf("sse-fcgi prune: checkpoint: busy, %d of %d WAL frames copied (a reader or "
               "writer was active); not an error: SQLite finishes it at a later checkpoint\n",
               sum->wal_frames_done, sum->wal_frames);
        break;
    case PRUNE_CHECKPOINT_NOT_WAL:
        puts("sse-fcgi prune: checkpoint: not needed (journal_mode is not wal)");
        break;
    case PRUNE_CHECKPOINT_NOT_RUN:
        break;
    }
}

static void
print_summary(const struct prune_summary *sum, long floor_hours, bool is_dry_run)
{
    char deleted[64], pruned[COUNT_TEXT_MAX], kept[64], scopes[64], held[64], tx[64];
    char odd[COUNT_TEXT_MAX];
    count_of(is_dry_run ? sum->planned : sum->deleted, "event", deleted, sizeof(deleted));
    cli_format_count(sum->scopes_pruned, pruned, sizeof(pruned));
    count_of(sum->kept, "event", kept, sizeof(kept));
    count_of(sum->scopes, "session", scopes, sizeof(scopes));
    if (is_dry_run && sum->planned > 0)
        printf("sse-fcgi prune: dry run: would delete %s from %s of %s; would keep %s; "
               "nothing deleted\n", deleted, pruned, scopes, kept);
    else if (is_dry_run)
        printf("sse-fcgi prune: dry run: nothing would be deleted; would keep %s in %s\n",
               kept, scopes);
    else if (sum->deleted > 0)
        printf("sse-fcgi prune: deleted %s from %s of %s in %s (longest %ld ms); kept %s\n",
               deleted, pruned, scopes,
               count_of(sum->transactions, "transaction", tx, sizeof(tx)),
               (long)sum->longest_transaction_ms, kept);
    else
        printf("sse-fcgi prune: nothing to delete; kept %s in %s\n", kept, scopes);
    if (sum->held_by_floor > 0)
        printf("sse-fcgi prune: the %ld-hour floor kept %s of open sessions that the keep "
               "options let go\n", floor_hours,
               count_of(sum->held_by_floor, "event", held, sizeof(held)));
    if (sum->scopes_irregular > 0)
        printf("sse-fcgi prune: %s of the sessions %s an id no stream can ask for (a BLOB, "
               "or text that is no session id: a hand-edited database); the same rules "
               "pruned them\n", cli_format_count(sum->scopes_irregular, odd, sizeof(odd)),
               sum->scopes_irregular == 1 ? "has" : "have");
    print_checkpoint(sum);
}

int
commands_prune(int argc, char **argv)
{
    struct cli_prune args;
    const char *bad_arg = NULL, *why = NULL;
    if (cli_parse_prune(argc, argv, &args, &bad_arg, &why) < 0)
        return usage_error("prune", bad_arg, why);
    if (args.is_help) {
        fputs(PRUNE_USAGE, stdout);
        return 0;
    }
    const char *db_path = args.db_path != NULL ? args.db_path : getenv("SSE_DB");
    if (db_path == NULL || db_path[0] == '\0')
        return usage_error("prune", NULL, "no database: give --db PATH or set SSE_DB");
    struct prune_options opt = {
        .db_path = db_path,
        .keep_days = args.keep_days,
        .keep_events = args.keep_events,
        .floor_hours = args.floor_hours,
        .is_dry_run = args.is_dry_run,
        .busy_timeout_ms = PRUNE_BUSY_TIMEOUT_MS,
        .batch_rows = PRUNE_BATCH_ROWS,
    };
    struct prune_report pr = {.is_dry_run = args.is_dry_run, .is_verbose = args.is_verbose};
    struct prune_summary sum;
    char err[1024];
    int rc = prune_run(&opt, print_scope, &pr, &sum, err, sizeof(err));
    if (rc == 0) {
        print_summary(&sum, args.floor_hours, args.is_dry_run);
        return 0;
    }
    fprintf(stderr, "sse-fcgi prune: error: %s\n", err);
    if (sum.deleted > 0) {
        char deleted[64];
        fprintf(stderr, "sse-fcgi prune: %s were deleted before the error; they stay "
                "deleted, and the database is consistent\n",
                count_of(sum.deleted, "event", deleted, sizeof(deleted)));
    }
    return 1;
}

/* ---- check -------------------------------------------------------------------------- */

struct check_tally {
    int passed, failed, skipped;    /* passed counts the warned too */
    int warned;
    char failed_names[256];         /* "file, open" */
    char warned_names[256];         /* "permissions" */
};

/* Appends name to a ", "-separated list of count names. */
static void
add_name(char *names, size_t size, int count, const char *name)
{
    size_t used = strlen(names);
    snprintf(names + used, size - used, "%s%s", count > 0 ? ", " : "", name);
}

static void
print_check_line(void *ctx, const struct deploycheck_line *line)
{
    static const char *const LABELS[] = {
        [DEPLOYCHECK_OK] = "ok  ", [DEPLOYCHECK_FAIL] = "FAIL", [DEPLOYCHECK_SKIPPED] = "--  ",
        [DEPLOYCHECK_WARN] = "WARN",
    };
    struct check_tally *t = ctx;
    printf("%s %s: %s\n", LABELS[line->status], line->name, line->detail);
    if (line->hint != NULL)
        printf("     hint: %s\n", line->hint);
    t->passed += line->status == DEPLOYCHECK_OK || line->status == DEPLOYCHECK_WARN;
    t->skipped += line->status == DEPLOYCHECK_SKIPPED;
    if (line->status == DEPLOYCHECK_FAIL)
        add_name(t->failed_names, sizeof(t->failed_names), t->failed++, line->name);
    if (line->status == DEPLOYCHECK_WARN)
        add_name(t->warned_names, sizeof(t->warned_names), t->warned++, line->name);
}

/* Reports a line of commands.c's own (settings, database). */
static void
print_own_line(struct check_tally *t, const char *name, bool is_ok, const char *detail,
               const char *hint)
{
    struct deploycheck_line line = {
        .name = name,
        .status = is_ok ? DEPLOYCHECK_OK : DEPLOYCHECK_FAIL,
        .detail = detail,
        .hint = is_ok ? NULL : hint,
    };
    print_check_line(t, &line);
}

static const char *
env_lookup(void *ctx, const char *name)
{
    (void)ctx;
    return getenv(name);
}

/* The SSE_* settings of this environment, as the responder would read them at start; its
 * SSE_AUTH into *auth_mode (none when a setting is bad). */
static void
check_settings(struct check_tally *t, enum auth_mode *auth_mode)
{
    struct config cfg;
    const char *bad_name = NULL, *why = NULL;
    char detail[512], hint[512];
    bool is_ok = config_load(&cfg, env_lookup, NULL, &bad_name, &why) == 0;
    *auth_mode = is_ok ? cfg.auth_mode : AUTH_MODE_NONE;
    if (is_ok)
        snprintf(detail, sizeof(detail), "every SSE_* variable set here is valid");
    else
        snprintf(detail, sizeof(detail), "%s: %s", bad_name, why);
    snprintf(hint, sizeof(hint), "fix %s where the web server sets it (README, "
             "Configuration)", bad_name ? bad_name : "it");
    print_own_line(t, "settings", is_ok, detail, hint);
}

/* SSE_AUTH=token or jwt: the responder loads libcrypto at the first credential (crypto.h),
 * and answers every one 503 when it cannot. */
static void
check_crypto(struct check_tally *t)
{
    bool is_ok = crypto_load() != NULL;
    print_own_line(t, "crypto", is_ok, is_ok ? CRYPTO_SONAME " loads (SSE_AUTH needs it)"
                   : crypto_error(), "SSE_AUTH needs OpenSSL 3's " CRYPTO_SONAME
                   ": apt-get install libssl3");
}

/* SSE_HUB_DIR (default /dev/shm): whether this user can make the shared hub's files there
 * (README "One hub per host"). Without, every process keeps a hub of its own: streams work,
 * but each process reads the database itself, which a host with one process per stream
 * (mod_fcgid) pays for in CPU. So a warning, not a failure. */
static void
check_hub_dir(struct check_tally *t)
{
    const char *dir = getenv("SSE_HUB_DIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/dev/shm";
    char detail[4200];
    struct deploycheck_line line = {.name = "hub", .status = DEPLOYCHECK_OK, .detail = detail};
    struct stat sb;
    errno = 0;
    if (strcmp(dir, "off") == 0) {
        snprintf(detail, sizeof(detail), "SSE_HUB_DIR=off: every process keeps a hub of its "
                 "own");
    } else if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode) && access(dir, W_OK | X_OK) == 0) {
        snprintf(detail, sizeof(detail), "%.4000s is writable: one hub per host", dir);
    } else {
        line.status = DEPLOYCHECK_WARN;
        snprintf(detail, sizeof(detail), "%.4000s: %s: every process would keep a hub of its "
                 "own and read the database itself", dir,
                 errno != 0 ? strerror(errno) : "not a directory");
        line.hint = "set SSE_HUB_DIR to a directory this user can write (default /dev/shm); "
                    "README, One hub per host";
    }
    print_check_line(t, &line);
}

/* The database path: --db, else SSE_DB. Returns it, or NULL after a FAIL line. */
static const char *
check_database_path(struct check_tally *t, const char *db_arg)
{
    const char *env_db = getenv("SSE_DB");
    const char *path = db_arg != NULL ? db_arg : env_db;
    char detail[4200];
    if (path == NULL || path[0] == '\0') {
        print_own_line(t, "database", false, "SSE_DB is not set and no --db was given",
                       "give the path the web server gives the responder: "
                       "SSE_DB=/path/events.db sse-fcgi --check, or --db PATH");
        return NULL;
    }
    snprintf(detail, sizeof(detail), "%.4000s (from %s)", path,
             db_arg != NULL ? "--db" : "SSE_DB");
    print_own_line(t, "database", true, detail, NULL);
    return path;
}

/* The first line: who runs the checks, since every answer is about that user. */
static void
print_whoami(char *user, size_t size)
{
    const struct passwd *pw = getpwuid(geteuid());
    snprintf(user, size, "%s", pw ? pw->pw_name : "this user");
    const struct group *gr = getgrgid(getegid());
    printf("sse-fcgi --check: as user %s (uid %ld, group %s)\n", user, (long)geteuid(),
           gr ? gr->gr_name : "?");
    if (geteuid() == 0)
        puts("note: root may read and write anything, so the file checks say little; run "
             "it as the web server's user: sudo -u www-data sse-fcgi --check");
}

int
commands_check(int argc, char **argv)
{
    struct cli_check args;
    const char *bad_arg = NULL, *why = NULL;
    if (cli_parse_check(argc, argv, &args, &bad_arg, &why) < 0)
        return usage_error("--check", bad_arg, why);
    if (args.is_help) {
        fputs(CHECK_USAGE, stdout);
        return 0;
    }
    char user[64];
    print_whoami(user, sizeof(user));
    struct check_tally t = {0};
    enum auth_mode auth_mode;
    check_settings(&t, &auth_mode);
    if (auth_mode != AUTH_MODE_NONE)
        check_crypto(&t);
    check_hub_dir(&t);
    const char *path = check_database_path(&t, args.db_path);
    if (path != NULL) {
        struct deploycheck_options opt = {
            .db_path = path,
            .user_name = user,
            .needs_read_tokens = auth_mode == AUTH_MODE_TOKEN,
        };
        deploycheck_run(&opt, print_check_line, &t);
    }
    char warnings[320] = "";
    if (t.warned > 0)
        snprintf(warnings, sizeof(warnings), "; %d with a warning (%s)", t.warned,
                 t.warned_names);
    if (t.failed == 0)
        printf("verdict: ok, all %d checks passed%s\n", t.passed, warnings);
    else
        printf("verdict: FAIL, %d of %d checks failed (%s); %d not run%s\n", t.failed,
               t.passed + t.failed, t.failed_names, t.skipped, warnings);
    return t.failed == 0 ? 0 : 1;  /* a warning does not fail (README) */
}
