/*
 * cli.h - the command lines of the admin commands, `sse-fcgi prune` and `sse-fcgi --check`,
 * and of `sse-fcgi-relay`, parsed without I/O (pure), and the number format their output
 * uses.
 *
 * Parsing is glibc's getopt_long: "--name value" and "--name=value", options in any order,
 * no positional arguments. Strings in the results are borrowed from argv. The parsers use
 * getopt's global state, so they are not thread-safe; call them from main() only.
 */
#ifndef SSE_CLI_H
#define SSE_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The version both programs print for --version ("sse-fcgi 0.1.0", "sse-fcgi-relay 0.1.0"),
 * written here only: the Makefile reads it from this line, and make deb stops unless
 * deploy/debian/changelog names the same version. */
#define CLI_VERSION "0.1.0"

/* Ranges of the prune options (README "Retention (pruning)"). */
enum {
    CLI_KEEP_DAYS_MAX = 36500,          /* a hundred years */
    CLI_KEEP_EVENTS_MAX = 1000000000,
    CLI_FLOOR_HOURS_MAX = 876000,       /* a hundred years */
    CLI_FLOOR_HOURS_DEFAULT = 24,
};

/* Ranges of the relay's options (README "Several web nodes"). */
enum {
    CLI_BATCH_ROWS_MAX = 100000,
    CLI_BATCH_ROWS_DEFAULT = 5000,
    CLI_TIMEOUT_S_MAX = 3600,
    CLI_TIMEOUT_S_DEFAULT = 30,
};

struct cli_prune {
    const char *db_path;    /* --db PATH; NULL: not given (the caller uses $SSE_DB) */
    long keep_days;         /* --keep-days N, 1..CLI_KEEP_DAYS_MAX; 0 = not given */
    long keep_events;       /* --keep-events N, 1..CLI_KEEP_EVENTS_MAX; 0 = not given */
    long floor_hours;       /* --floor-hours N, 0..CLI_FLOOR_HOURS_MAX; 0 = no floor */
    bool is_dry_run;        /* --dry-run */
    bool is_verbose;        /* --verbose / -v: one line per session that loses events */
    bool is_help;           /* --help / -h: nothing else is checked */
};

struct cli_check {
    const char *db_path;    /* --db PATH; NULL: not given */
    bool is_help;
};

struct cli_relay {
    const char *pg;         /* --pg CONNINFO; NULL: not given (the caller uses $SSE_PG) */
    const char *db_path;    /* --db PATH; NULL: not given ($SSE_DB) */
    long batch_rows;        /* --batch-rows N, 1..CLI_BATCH_ROWS_MAX */
    long timeout_s;         /* --timeout S, 1..CLI_TIMEOUT_S_MAX: the longest wait for the log */
    bool is_check;          /* --check: report and exit */
    bool is_adopt;          /* --adopt: accept the log's new history, once */
    bool is_help;           /* --help / -h */
    bool is_version;        /* --version */
};

/* Parses the arguments of `prune`: argv[0] is the command name, argv[1..argc) its options.
 * Returns 0 with *out filled (at least one of keep_days and keep_events set, unless
 * is_help), or -1 with *bad_arg (borrowed from argv, or NULL) and *why (a static
 * reason) for a usage error. argv may be permuted. Not thread-safe (getopt). */
int cli_parse_prune(int argc, char **argv, struct cli_prune *out, const char **bad_arg,
                    const char **why);

/* Parses the arguments of `--check` (argv[0] is "--check" or "check"), like
 * cli_parse_prune. Returns 0, or -1 with *bad_arg and *why. Not thread-safe (getopt). */
int cli_parse_check(int argc, char **argv, struct cli_check *out, const char **bad_arg,
                    const char **why);

/* Parses sse-fcgi-relay's arguments (argv[0] is the program), like cli_parse_prune.
 * Returns 0, or -1 with *bad_arg and *why. Not thread-safe (getopt). */
int cli_parse_relay(int argc, char **argv, struct cli_relay *out, const char **bad_arg,
                    const char **why);

/* Writes n in decimal with a comma between groups of three digits ("12,345", "-1,000")
 * into out, cut to size - 1 bytes (size > 0). Returns out. Thread-safe. */
const char *cli_format_count(int64_t n, char *out, size_t size);

#endif
