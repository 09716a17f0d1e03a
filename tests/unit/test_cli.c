/*
 * test_cli.c - the admin commands' options (fcgi/cli.h), through its header only.
 *
 * Covers: every prune option in both spellings ("--x N", "--x=N"), the defaults, the last
 * of a repeated option winning, abbreviations getopt allows; a table of bad command lines
 * (no keep option, unknown options, a missing value, an empty --db, a positional argument)
 * each refused with the reason and the argument at fault; a table of hostile values for
 * every numeric option (empty, signs, spaces, CR/LF, hex, exponent, fractions, 2^63 and
 * more, one past each end of the range) all refused, and each end of each range accepted;
 * --check's options; sse-fcgi-relay's options, their defaults, ranges and refusals; the thousands separators of cli_format_count, negatives, INT64_MIN
 * and a short buffer.
 */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fcgi/cli.h"

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

enum { ARGS_MAX = 16 };

/* getopt takes char **: copies of a NULL-terminated list of literals, in storage that
 * lives as long as the parse results that point into it. */
struct argv_copy {
    char text[ARGS_MAX][256];
    char *argv[ARGS_MAX + 1];
    int argc;
};

static char **
copy_args(struct argv_copy *a, const char *const *args)
{
    a->argc = 0;
    for (; args[a->argc] != NULL; a->argc++) {
        ck_assert_int_lt(a->argc, ARGS_MAX);
        snprintf(a->text[a->argc], sizeof(a->text[a->argc]), "%s", args[a->argc]);
        a->argv[a->argc] = a->text[a->argc];
    }
    a->argv[a->argc] = NULL;
    return a->argv;
}

static int
parse_prune(struct argv_copy *a, const char *const *args, struct cli_prune *out,
            const char **bad, const char **why)
{
    char **argv = copy_args(a, args);
    *why = NULL;
    return cli_parse_prune(a->argc, argv, out, bad, why);
}

START_TEST(test_prune_defaults_and_forms)
{
    struct argv_copy a;
    struct cli_prune p;
    const char *bad, *why;
    const char *const keep_days[] = {"prune", "--keep-days", "30", NULL};
    ck_assert_int_eq(parse_prune(&a, keep_days, &p, &bad, &why), 0);
    ck_assert_int_eq(p.keep_days, 30);
    ck_assert_int_eq(p.keep_events, 0);
    ck_assert_int_eq(p.floor_hours, CLI_FLOOR_HOURS_DEFAULT);
    ck_assert_ptr_null(p.db_path);
    ck_assert(!p.is_dry_run && !p.is_verbose && !p.is_help);

    const char *const every[] = {"prune", "--db=/x/events.db", "--keep-events=10000",
                                 "--keep-days", "7", "--floor-hours=0", "--dry-run", "-v",
                                 NULL};
    ck_assert_int_eq(parse_prune(&a, every, &p, &bad, &why), 0);
    ck_assert_str_eq(p.db_path, "/x/events.db");
    ck_assert_int_eq(p.keep_events, 10000);
    ck_assert_int_eq(p.keep_days, 7);
    ck_assert_int_eq(p.floor_hours, 0);
    ck_assert(p.is_dry_run && p.is_verbose && !p.is_help);

    const char *const repeated[] = {"prune", "--keep-days", "3", "--keep-days=4",
                                    "--verbose", "--db", "a", "--db", "b", NULL};
    ck_assert_int_eq(parse_prune(&a, repeated, &p, &bad, &why), 0);
    ck_assert_int_eq(p.keep_days, 4);
    ck_assert_str_eq(p.db_path, "b");
    ck_assert(p.is_verbose);

    const char *const abbreviated[] = {"prune", "--keep-e", "5", "--dry", NULL};
    ck_assert_int_eq(parse_prune(&a, abbreviated, &p, &bad, &why), 0);
    ck_assert_int_eq(p.keep_events, 5);
    ck_assert(p.is_dry_run);
}
END_TEST

START_TEST(test_prune_help_needs_nothing_else)
{
    struct argv_copy a;
    struct cli_prune p;
    const char *bad, *why;
    const char *const help[] = {"prune", "--help", NULL};
    ck_assert_int_eq(parse_prune(&a, help, &p, &bad, &why), 0);
    ck_assert(p.is_help);
    const char *const h[] = {"prune", "-h", NULL};
    ck_assert_int_eq(parse_prune(&a, h, &p, &bad, &why), 0);
    ck_assert(p.is_help);
}
END_TEST

/* Bad command lines: the arguments, the argument blamed (NULL: none) and a word of the
 * reason. */
static const struct {
    const char *args[8];
    const char *bad;
    const char *why_part;
} BAD_LINES[] = {
    {{"prune", NULL}, NULL, "what to keep"},
    {{"prune", "--dry-run", "--floor-hours", "5", NULL}, NULL, "what to keep"},
    {{"prune", "--db", "x", NULL}, NULL, "what to keep"},
    {{"prune", "--keep-days", NULL}, "--keep-days", "needs a value"},
    {{"prune", "--keep-days", "3", "--keep-events", NULL}, "--keep-events", "needs a value"},
    {{"prune", "--keep-days", "3", "--bogus", NULL}, "--bogus", "unknown option"},
    {{"prune", "--keep-days", "3", "-x", NULL}, "-x", "unknown option"},
    {{"prune", "--keep", "3", NULL}, "--keep", "unknown option"},  /* ambiguous */
    {{"prune", "--keep-days", "3", "--dry-run=yes", NULL}, "--dry-run=yes", "unknown option"},
    {{"prune", "--keep-days", "3", "extra", NULL}, "extra", "unexpected argument"},
    {{"prune", "extra", "--keep-days", "3", NULL}, "extra", "unexpected argument"},
    {{"prune", "--keep-days", "3", "--db", "", NULL}, "--db", "path"},
    {{"prune", "--keep-days", "3", "--db=", NULL}, "--db", "path"},
};

START_TEST(test_prune_bad_lines)
{
    struct argv_copy a;
    struct cli_prune p;
    const char *bad = "unset", *why;
    ck_assert_int_eq(parse_prune(&a, BAD_LINES[_i].args, &p, &bad, &why), -1);
    ck_assert_ptr_nonnull(why);
    ck_assert_msg(strstr(why, BAD_LINES[_i].why_part) != NULL, "why: %s", why);
    if (BAD_LINES[_i].bad == NULL)
        ck_assert_ptr_null(bad);
    else
        ck_assert_str_eq(bad, BAD_LINES[_i].bad);
}
END_TEST

static const char *const NUMERIC_OPTIONS[] = {"--keep-days", "--keep-events", "--floor-hours"};

static const char *const HOSTILE_VALUES[] = {
    "", "-1", "-0x1", "+1", " 1", "1 ", "\t1", "1\n", "\r1", "1\r\n", "abc", "1x", "x1",
    "1.5", "1e3", "0x10", "9223372036854775807", "9223372036854775808",
    "-9223372036854775809", "99999999999999999999", "--keep-days", "-",
};

/* Every hostile value for every numeric option: refused, the value blamed, the option
 * named in the reason. */
START_TEST(test_prune_hostile_values)
{
    const char *option = NUMERIC_OPTIONS[_i / COUNT(HOSTILE_VALUES)];
    const char *value = HOSTILE_VALUES[_i % COUNT(HOSTILE_VALUES)];
    const char *const args[] = {"prune", "--keep-days", "1", option, value, NULL};
    struct argv_copy a;
    struct cli_prune p;
    const char *bad, *why;
    ck_assert_int_eq(parse_prune(&a, args, &p, &bad, &why), -1);
    ck_assert_str_eq(bad, value);
    ck_assert_msg(strstr(why, option) != NULL, "why: %s", why);
}
END_TEST

/* Each end of each range, and one past it. */
static const struct {
    const char *option;
    const char *value;
    long expected;          /* -1: refused */
} RANGES[] = {
    {"--keep-days", "0", -1},
    {"--keep-days", "1", 1},
    {"--keep-days", "36500", 36500},
    {"--keep-days", "36501", -1},
    {"--keep-events", "0", -1},
    {"--keep-events", "1", 1},
    {"--keep-events", "1000000000", 1000000000},
    {"--keep-events", "1000000001", -1},
    {"--floor-hours", "-1", -1},
    {"--floor-hours", "0", 0},
    {"--floor-hours", "876000", 876000},
    {"--floor-hours", "876001", -1},
    {"--keep-days", "007", 7},
};

START_TEST(test_prune_ranges)
{
    char joined[64];
    snprintf(joined, sizeof(joined), "%s=%s", RANGES[_i].option, RANGES[_i].value);
    const char *const args[] = {"prune", "--keep-events", "9", joined, NULL};
    struct argv_copy a;
    struct cli_prune p;
    const char *bad, *why;
    int rc = parse_prune(&a, args, &p, &bad, &why);
    if (RANGES[_i].expected < 0) {
        ck_assert_int_eq(rc, -1);
        ck_assert_str_eq(bad, RANGES[_i].value);
        return;
    }
    ck_assert_int_eq(rc, 0);
    long got = strcmp(RANGES[_i].option, "--keep-days") == 0     ? p.keep_days
               : strcmp(RANGES[_i].option, "--keep-events") == 0 ? p.keep_events
                                                                 : p.floor_hours;
    ck_assert_int_eq(got, RANGES[_i].expected);
}
END_TEST

START_TEST(test_check_options)
{
    struct argv_copy a;
    struct cli_check c;
    const char *bad, *why;
    const char *const none[] = {"--check", NULL};
    copy_args(&a, none);
    ck_assert_int_eq(cli_parse_check(a.argc, a.argv, &c, &bad, &why), 0);
    ck_assert_ptr_null(c.db_path);
    ck_assert(!c.is_help);
    const char *const db[] = {"check", "--db", "/srv/e.db", NULL};
    copy_args(&a, db);
    ck_assert_int_eq(cli_parse_check(a.argc, a.argv, &c, &bad, &why), 0);
    ck_assert_str_eq(c.db_path, "/srv/e.db");
    const char *const help[] = {"--check", "-h", NULL};
    copy_args(&a, help);
    ck_assert_int_eq(cli_parse_check(a.argc, a.argv, &c, &bad, &why), 0);
    ck_assert(c.is_help);
    const char *const keep[] = {"--check", "--keep-days", "3", NULL};  /* prune's */
    copy_args(&a, keep);
    ck_assert_int_eq(cli_parse_check(a.argc, a.argv, &c, &bad, &why), -1);
    ck_assert_str_eq(bad, "--keep-days");
    const char *const empty[] = {"--check", "--db=", NULL};
    copy_args(&a, empty);
    ck_assert_int_eq(cli_parse_check(a.argc, a.argv, &c, &bad, &why), -1);
    const char *const extra[] = {"--check", "/srv/e.db", NULL};
    copy_args(&a, extra);
    ck_assert_int_eq(cli_parse_check(a.argc, a.argv, &c, &bad, &why), -1);
    ck_assert_str_eq(bad, "/srv/e.db");
}
END_TEST

static int
parse_relay(struct argv_copy *a, const char *const *args, struct cli_relay *out,
            const char **bad, const char **why)
{
    char **argv = copy_args(a, args);
    *why = NULL;
    return cli_parse_relay(a->argc, argv, out, bad, why);
}

START_TEST(test_relay_options)
{
    struct argv_copy a;
    struct cli_relay r;
    const char *bad, *why;
    const char *const none[] = {"sse-fcgi-relay", NULL};
    ck_assert_int_eq(parse_relay(&a, none, &r, &bad, &why), 0);
    ck_assert_ptr_null(r.pg);
    ck_assert_ptr_null(r.db_path);
    ck_assert_int_eq(r.batch_rows, CLI_BATCH_ROWS_DEFAULT);
    ck_assert_int_eq(r.timeout_s, CLI_TIMEOUT_S_DEFAULT);
    ck_assert(!r.is_check && !r.is_adopt && !r.is_help && !r.is_version);
    const char *const all[] = {"sse-fcgi-relay", "--pg", "host=127.0.0.1 dbname=log",
                               "--db=/srv/node.db", "--batch-rows", "100000", "--timeout=1",
                               "--check", NULL};
    ck_assert_int_eq(parse_relay(&a, all, &r, &bad, &why), 0);
    ck_assert_str_eq(r.pg, "host=127.0.0.1 dbname=log");
    ck_assert_str_eq(r.db_path, "/srv/node.db");
    ck_assert_int_eq(r.batch_rows, 100000);
    ck_assert_int_eq(r.timeout_s, 1);
    ck_assert(r.is_check);
    const char *const adopt[] = {"sse-fcgi-relay", "--adopt", NULL};
    ck_assert_int_eq(parse_relay(&a, adopt, &r, &bad, &why), 0);
    ck_assert(r.is_adopt);
}
END_TEST

/* Each refused with the argument at fault and a reason. */
static const struct {
    const char *args[5];
    const char *bad;
} RELAY_BAD_LINES[] = {
    {{"sse-fcgi-relay", "--pg", NULL}, "--pg"},
    {{"sse-fcgi-relay", "--pg=", NULL}, ""},
    {{"sse-fcgi-relay", "--db=", NULL}, "--db"},
    {{"sse-fcgi-relay", "--batch-rows", "0", NULL}, "0"},
    {{"sse-fcgi-relay", "--batch-rows", "100001", NULL}, "100001"},
    {{"sse-fcgi-relay", "--batch-rows", "5k", NULL}, "5k"},
    {{"sse-fcgi-relay", "--timeout", "0", NULL}, "0"},
    {{"sse-fcgi-relay", "--timeout", "3601", NULL}, "3601"},
    {{"sse-fcgi-relay", "--timeout", "-1", NULL}, "-1"},
    {{"sse-fcgi-relay", "--keep-days", "3", NULL}, "--keep-days"},
    {{"sse-fcgi-relay", "--check", "--adopt", NULL}, "--adopt"},
    {{"sse-fcgi-relay", "node.db", NULL}, "node.db"},
};

START_TEST(test_relay_bad_lines)
{
    struct argv_copy a;
    struct cli_relay r;
    const char *bad, *why;
    ck_assert_int_eq(parse_relay(&a, RELAY_BAD_LINES[_i].args, &r, &bad, &why), -1);
    ck_assert_ptr_nonnull(bad);
    ck_assert_str_eq(bad, RELAY_BAD_LINES[_i].bad);
    ck_assert_ptr_nonnull(why);
    ck_assert_int_gt((int)strlen(why), 10);
}
END_TEST

static const struct {
    int64_t n;
    const char *text;
} COUNTS[] = {
    {0, "0"},
    {1, "1"},
    {999, "999"},
    {1000, "1,000"},
    {12345, "12,345"},
    {999999, "999,999"},
    {1000000, "1,000,000"},
    {-1, "-1"},
    {-1000, "-1,000"},
    {-123456, "-123,456"},
    {INT64_MAX, "9,223,372,036,854,775,807"},
    {INT64_MIN, "-9,223,372,036,854,775,808"},
};

START_TEST(test_format_count)
{
    char out[40];
    memset(out, 'x', sizeof(out));
    ck_assert_str_eq(cli_format_count(COUNTS[_i].n, out, sizeof(out)), COUNTS[_i].text);
}
END_TEST

START_TEST(test_format_count_short_buffer)
{
    char out[6];
    ck_assert_str_eq(cli_format_count(12345678, out, sizeof(out)), "12,34");
    char one[1];
    ck_assert_str_eq(cli_format_count(5, one, sizeof(one)), "");
}
END_TEST

Suite *suite_cli(void);

Suite *
suite_cli(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 10);
    tcase_add_test(tc, test_prune_defaults_and_forms);
    tcase_add_test(tc, test_prune_help_needs_nothing_else);
    tcase_add_loop_test(tc, test_prune_bad_lines, 0, COUNT(BAD_LINES));
    tcase_add_loop_test(tc, test_prune_hostile_values, 0,
                        COUNT(NUMERIC_OPTIONS) * COUNT(HOSTILE_VALUES));
    tcase_add_loop_test(tc, test_prune_ranges, 0, COUNT(RANGES));
    tcase_add_test(tc, test_check_options);
    tcase_add_test(tc, test_relay_options);
    tcase_add_loop_test(tc, test_relay_bad_lines, 0, COUNT(RELAY_BAD_LINES));
    tcase_add_loop_test(tc, test_format_count, 0, COUNT(COUNTS));
    tcase_add_test(tc, test_format_count_short_buffer);
    suite_add_tcase(s, tc);
    return s;
}
