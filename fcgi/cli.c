/*
 * cli.c - the admin commands' options (pure; see cli.h).
 *
 * getopt_long does the parsing; this file only names the options, checks their values with
 * config_parse_long (one integer rule for settings and options) and turns getopt's error
 * returns into a usage reason. opterr is 0, so getopt never prints: the caller does.
 * Invariant: a successful prune parse always names something to keep.
 */
#define _GNU_SOURCE  /* getopt_long is a GNU extension (glibc) */

#include "cli.h"

#include <getopt.h>
#include <stddef.h>
#include <string.h>

#include "config.h"

enum {
    OPT_DB = 256,
    OPT_KEEP_DAYS,
    OPT_KEEP_EVENTS,
    OPT_FLOOR_HOURS,
    OPT_DRY_RUN,
    OPT_PG,
    OPT_CHECK,
    OPT_ADOPT,
    OPT_BATCH_ROWS,
    OPT_TIMEOUT,
    OPT_VERSION,
    OPT_END = -1,           /* no more options */
    OPT_USAGE_ERROR = -2,   /* *bad_arg and *why are set */
};

static const struct option PRUNE_OPTIONS[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"keep-days", required_argument, NULL, OPT_KEEP_DAYS},
    {"keep-events", required_argument, NULL, OPT_KEEP_EVENTS},
    {"floor-hours", required_argument, NULL, OPT_FLOOR_HOURS},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"verbose", no_argument, NULL, 'v'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option CHECK_OPTIONS[] = {
    {"db", required_argument, NULL, OPT_DB},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static const struct option RELAY_OPTIONS[] = {
    {"pg", required_argument, NULL, OPT_PG},
    {"db", required_argument, NULL, OPT_DB},
    {"check", no_argument, NULL, OPT_CHECK},
    {"adopt", no_argument, NULL, OPT_ADOPT},
    {"batch-rows", required_argument, NULL, OPT_BATCH_ROWS},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"version", no_argument, NULL, OPT_VERSION},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The numeric prune options: range, field, and the reason given for a bad value. */
static const struct {
    int option;
    long min, max;
    size_t offset;          /* of the long in struct cli_prune */
    const char *why;
} PRUNE_NUMBERS[] = {
    {OPT_KEEP_DAYS, 1, CLI_KEEP_DAYS_MAX, offsetof(struct cli_prune, keep_days),
     "--keep-days takes a whole number of days from 1 to 36500"},
    {OPT_KEEP_EVENTS, 1, CLI_KEEP_EVENTS_MAX, offsetof(struct cli_prune, keep_events),
     "--keep-events takes a whole number of events from 1 to 1000000000"},
    {OPT_FLOOR_HOURS, 0, CLI_FLOOR_HOURS_MAX, offsetof(struct cli_prune, floor_hours),
     "--floor-hours takes a whole number of hours from 0 to 876000"},
};

/* Starts a new parse: glibc re-initialises getopt completely when optind is 0. */
static void
begin_options(void)
{
    optind = 0;
    opterr = 0;
}

/* One getopt_long step ("+": stop at the first non-option; ":": report a missing value
 * apart from an unknown option). Returns the option, OPT_END, or OPT_USAGE_ERROR. */
static int
next_option(int argc, char **argv, const char *shortopts, const struct option *longopts,
            const char **bad_arg, const char **why)
{
    int c = getopt_long(argc, argv, shortopts, longopts, NULL);
    if (c == '?' || c == ':') {
        *bad_arg = optind > 1 ? argv[optind - 1] : NULL;
        *why = c == ':' ? "this option needs a value" : "unknown option";
        return OPT_USAGE_ERROR;
    }
    if (c == -1 && optind < argc) {
        *bad_arg = argv[optind];
        *why = "unexpected argument";
        return OPT_USAGE_ERROR;
    }
    return c == -1 ? OPT_END : c;
}

/* Takes --db's value (optarg). Returns 0, or -1 with *bad_arg and *why when it is empty. */
static int
set_db_path(const char **db_path, const char **bad_arg, const char **why)
{
    *db_path = optarg;
    if (optarg[0] != '\0')
        return 0;
    *bad_arg = "--db";
    *why = "--db takes the path of the database";
    return -1;
}

/* Sets a numeric prune option from optarg. Returns 0, or -1 with *bad_arg and *why. */
static int
set_prune_number(struct cli_prune *out, int option, const char **bad_arg, const char **why)
{
    for (size_t i = 0; i < sizeof(PRUNE_NUMBERS) / sizeof(PRUNE_NUMBERS[0]); i++) {
        if (PRUNE_NUMBERS[i].option != option)
            continue;
        long *field = (long *)((char *)out + PRUNE_NUMBERS[i].offset);
        const char *ignored;
        if (config_parse_long(optarg, PRUNE_NUMBERS[i].min, PRUNE_NUMBERS[i].max, field,
                              &ignored) == 0)
            return 0;
        *bad_arg = optarg;
        *why = PRUNE_NUMBERS[i].why;
        return -1;
    }
    return 0;
}

/* Applies one prune option. Returns 0, or -1 with *bad_arg and *why. */
static int
apply_prune_option(struct cli_prune *out, int option, const char **bad_arg,
                   const char **why)
{
    switch (option) {
    case 'h':
        out->is_help = true;
        return 0;
    case 'v':
        out->is_verbose = true;
        return 0;
    case OPT_DRY_RUN:
        out->is_dry_run = true;
        return 0;
    case OPT_DB:
        return set_db_path(&out->db_path, bad_arg, why);
    default:
        return set_prune_number(out, option, bad_arg, why);
    }
}

int
cli_parse_prune(int argc, char **argv, struct cli_prune *out, const char **bad_arg,
                const char **why)
{
    *out = (struct cli_prune){.floor_hours = CLI_FLOOR_HOURS_DEFAULT};
    *bad_arg = NULL;
    begin_options();
    int c;
    while ((c = next_option(argc, argv, "+:hv", PRUNE_OPTIONS, bad_arg, why)) != OPT_END) {
        if (c == OPT_USAGE_ERROR || apply_prune_option(out, c, bad_arg, why) < 0)
            return -1;
    }
    if (!out->is_help && out->keep_days == 0 && out->keep_events == 0) {
        *why = "say what to keep: --keep-days N, --keep-events N, or both";
        return -1;
    }
    return 0;
}

int
cli_parse_check(int argc, char **argv, struct cli_check *out, const char **bad_arg,
                const char **why)
{
    *out = (struct cli_check){0};
    *bad_arg = NULL;
    begin_options();
    int c;
    while ((c = next_option(argc, argv, "+:h", CHECK_OPTIONS, bad_arg, why)) != OPT_END) {
        if (c == OPT_USAGE_ERROR)
            return -1;
        if (c == 'h')
            out->is_help = true;
        else if (set_db_path(&out->db_path, bad_arg, why) < 0)
            return -1;
    }
    return 0;
}

/* Applies one relay option. Returns 0, or -1 with *bad_arg and *why. */
static int
apply_relay_option(struct cli_relay *out, int option, const char **bad_arg, const char **why)
{
    const char *ignored;
    switch (option) {
    case 'h':
        out->is_help = true;
        return 0;
    case OPT_VERSION:
        out->is_version = true;
        return 0;
    case OPT_CHECK:
        out->is_check = true;
        return 0;
    case OPT_ADOPT:
        out->is_adopt = true;
        return 0;
    case OPT_DB:
        return set_db_path(&out->db_path, bad_arg, why);
    case OPT_PG:
        out->pg = optarg;
        if (optarg[0] != '\0')
            return 0;
        *why = "--pg takes a libpq connection string, such as 'host=db1 dbname=events'";
        break;
    case OPT_BATCH_ROWS:
        if (config_parse_long(optarg, 1, CLI_BATCH_ROWS_MAX, &out->batch_rows, &ignored) == 0)
            return 0;
        *why = "--batch-rows takes a whole number of rows from 1 to 100000";
        break;
    default:  /* OPT_TIMEOUT */
        if (config_parse_long(optarg, 1, CLI_TIMEOUT_S_MAX, &out->timeout_s, &ignored) == 0)
            return 0;
        *why = "--timeout takes a whole number of seconds from 1 to 3600";
        break;
    }
    *bad_arg = optarg;
    return -1;
}

int
cli_parse_relay(int argc, char **argv, struct cli_relay *out, const char **bad_arg,
                const char **why)
{
    *out = (struct cli_relay){.batch_rows = CLI_BATCH_ROWS_DEFAULT,
                              .timeout_s = CLI_TIMEOUT_S_DEFAULT};
    *bad_arg = NULL;
    begin_options();
    int c;
    while ((c = next_option(argc, argv, "+:h", RELAY_OPTIONS, bad_arg, why)) != OPT_END) {
        if (c == OPT_USAGE_ERROR || apply_relay_option(out, c, bad_arg, why) < 0)
            return -1;
    }
    if (out->is_check && out->is_adopt) {
        *bad_arg = "--adopt";
        *why = "--check only reports; run --adopt on its own";
        return -1;
    }
    return 0;
}

const char *
cli_format_count(int64_t n, char *out, size_t size)
{
    char digits[24], text[32];
    uint64_t rest = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
    size_t count = 0, len = 0;
    do {
        digits[count++] = (char)('0' + rest % 10);
        rest /= 10;
    } while (rest > 0);
    if (n < 0)
        text[len++] = '-';
    for (size_t i = count; i-- > 0;) {
        text[len++] = digits[i];
        if (i > 0 && i % 3 == 0)
            text[len++] = ',';
    }
    len = len < size - 1 ? len : size - 1;
    memcpy(out, text, len);
    out[len] = '\0';
    return out;
}
