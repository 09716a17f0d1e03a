/*
 * test_config.c - SSE_* settings (SPEC §7): defaults, each variable parsed, every bad value
 * refused with an error that names the variable, the probe default per server (§4.10).
 */
#include <check.h>
#include <string.h>

#include "fcgi/config.h"

/* A lookup over a NULL-terminated list of "NAME", "value" pairs. */
static const char *
lookup_pairs(void *ctx, const char *name)
{
    const char *const *pairs = ctx;
    for (size_t i = 0; pairs != NULL && pairs[i] != NULL; i += 2) {
        if (strcmp(pairs[i], name) == 0)
            return pairs[i + 1];
    }
    return NULL;
}

START_TEST(test_defaults)
{
    struct config c;
    const char *bad = NULL, *why = NULL;
    ck_assert_int_eq(config_load(&c, lookup_pairs, NULL, &bad, &why), 0);
    ck_assert_ptr_null(c.db_path);
    ck_assert_int_eq(c.keepalive_s, 15);
    ck_assert_int_eq(c.poll_ms, 250);
    ck_assert_int_eq(c.replay_limit, 1000);
    ck_assert_int_eq(c.max_lag, 0);
    ck_assert_int_eq(c.retry_ms, 3000);
    ck_assert_int_eq(c.max_stream_s, 0);
    ck_assert_int_eq(c.threads, 1);
    ck_assert_int_eq(c.probe_ms, -1);
    ck_assert_int_eq(c.log_level, LOG_LEVEL_INFO);
    ck_assert_ptr_null(c.cors_origin);
}
END_TEST

START_TEST(test_values)
{
    const char *pairs[] = {
        "SSE_DB", "/x/e.db", "SSE_KEEPALIVE_S", "1", "SSE_POLL_MS", "60000",
        "SSE_REPLAY_LIMIT", "0", "SSE_MAX_LAG", "5", "SSE_RETRY_MS", "10", "SSE_MAX_STREAM_S",
        "270", "SSE_THREADS", "4096", "SSE_PROBE_MS", "0", "SSE_LOG_LEVEL", "debug",
        "SSE_LOG", "syslog", "SSE_CORS_ORIGIN", "*", NULL,
    };
    struct config c;
    const char *bad = NULL, *why = NULL;
    ck_assert_int_eq(config_load(&c, lookup_pairs, pairs, &bad, &why), 0);
    ck_assert_str_eq(c.db_path, "/x/e.db");
    ck_assert(c.keepalive_s == 1 && c.poll_ms == 60000 && c.replay_limit == 0);
    ck_assert(c.max_lag == 5 && c.retry_ms == 10 && c.max_stream_s == 270);
    ck_assert(c.threads == 4096 && c.probe_ms == 0 && c.log_level == LOG_LEVEL_DEBUG);
    ck_assert_str_eq(c.log_target, "syslog");
    ck_assert_str_eq(c.cors_origin, "*");
}
END_TEST

static const char *const BAD[][2] = {
    {"SSE_KEEPALIVE_S", ""}, {"SSE_KEEPALIVE_S", "abc"}, {"SSE_KEEPALIVE_S", "0"},
    {"SSE_KEEPALIVE_S", "1x"}, {"SSE_KEEPALIVE_S", " 5"}, {"SSE_KEEPALIVE_S", "+5"},
    {"SSE_POLL_MS", "9"}, {"SSE_POLL_MS", "99999999999999999999999"},
    {"SSE_REPLAY_LIMIT", "-1"}, {"SSE_MAX_LAG", "-1"}, {"SSE_RETRY_MS", "3600001"},
    {"SSE_MAX_STREAM_S", "1.5"}, {"SSE_THREADS", "0"}, {"SSE_THREADS", "4097"},
    {"SSE_PROBE_MS", "-1"}, {"SSE_LOG_LEVEL", "verbose"}, {"SSE_LOG_LEVEL", ""},
    {"SSE_DB", ""}, {"SSE_LOG", ""},
};

START_TEST(test_bad_value_names_variable)
{
    const char *pairs[] = {BAD[_i][0], BAD[_i][1], NULL};
    struct config c;
    const char *bad = NULL, *why = NULL;
    ck_assert_int_eq(config_load(&c, lookup_pairs, pairs, &bad, &why), -1);
    ck_assert_str_eq(bad, BAD[_i][0]);
    ck_assert_ptr_nonnull(why);
}
END_TEST

START_TEST(test_probe_default)
{
    struct config c;
    const char *bad, *why;
    ck_assert_int_eq(config_load(&c, lookup_pairs, NULL, &bad, &why), 0);
    ck_assert_int_eq(config_probe_ms(&c, "Apache/2.4.62 (Debian)", false), 500);
    ck_assert_int_eq(config_probe_ms(&c, "lighttpd/1.4.69", true), 500);
    ck_assert_int_eq(config_probe_ms(&c, "lighttpd/1.4.69", false), 0);
    ck_assert_int_eq(config_probe_ms(&c, NULL, false), 0);
    c.probe_ms = 200;
    ck_assert_int_eq(config_probe_ms(&c, "Apache", false), 200);
    enum log_level level;
    ck_assert_int_eq(config_parse_log_level("warn", &level), 0);
    ck_assert_int_eq(level, LOG_LEVEL_WARN);
    ck_assert_int_eq(config_parse_log_level(NULL, &level), -1);
    ck_assert_int_eq(config_parse_log_level("WARN", &level), -1);
}
END_TEST

Suite *suite_config(void);

Suite *
suite_config(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_values);
    tcase_add_loop_test(tc, test_bad_value_names_variable, 0, (int)(sizeof(BAD) / sizeof(BAD[0])));
    tcase_add_test(tc, test_probe_default);
    suite_add_tcase(s, tc);
    return s;
}
